"""Hub ingest rate against three bare subscribers on the same broker, and publish-to-commit latency.

    .venv/bin/python bench/ingest.py                       # ~3 min on 2 cores
    .venv/bin/python bench/ingest.py --rounds 7 --events 20000
    .venv/bin/python bench/ingest.py --rate-only --postgresql postgresql://postgres@127.0.0.1:5432/postgres

Rate (events/s): one node publishes N single-event messages at QoS 1 as fast as it can, and
one receiver takes them. Every round runs each receiver once, in an order that reverses
from round to round (bench/harness.py); each one is a fresh process on a fresh stream:

- `mosquitto_sub` (the broker's own C client, QoS 1, TCP_NODELAY): the broker's delivery rate
  to a fast client, the practical ceiling; rate = N / (last payload out of it - first publish).
- bare paho subscriber: what a plain Python MQTT v5 client manages, counting and nothing else.
- bare gmqtt subscriber (`hub/rx_session.py`): the receive session the hub's worker runs,
  counting and nothing else.
- the hub (`stock-hub serve`): committed to the ledger *and* acknowledged;
  rate = N / (ack of seq N - first publish).
- with `--postgresql ADMIN_URL`, the hub again with its stores on PostgreSQL (`store.url`, a
  new database per trial made through that admin connection and dropped after), in the same
  rounds as the hub on SQLite files: the ratio of the two is paired round by round.

Latency (ms): the node publishes at a fixed offered rate; each event's publish time (its
`accepted_ms`) against the ledger's `committed_ms` gives publish-to-commit percentiles (on
each backend, with `--postgresql`). The
baseline in the same round is the broker hop alone: publish to receipt by a bare paho subscriber
at the same offered rate.

Everything uses a private Mosquitto with a password file and ACL. Prints markdown tables.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import Comparison, Metrics, pct, report, run_rounds  # noqa: E402
from contract import Ack, Channel, EventBatch, ScanEvent, node_topic, subscription  # noqa: E402
from hub.db import LEDGER, DbTarget  # noqa: E402
from hub.mosquitto import HUB_USER, PrivateBroker, free_port, wait_for_port  # noqa: E402
from hub.rx_session import SessionSettings, run_session  # noqa: E402

SITE = "bench"
NODE = "pi-bench"
PROBE = b"probe"  # not an event: only tells a subscriber's watcher that its subscription is live
READY_TIMEOUT_S = 120.0  # a hub on a new PostgreSQL database runs every migration first: slow on a loaded machine


def client(user: str, password: str, client_id: str) -> mqtt.Client:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    c.username_pw_set(user, password)
    c.max_inflight_messages_set(100)
    c.max_queued_messages_set(0)
    # As the edge and hub do (see edge/link.py): no Nagle delay on small QoS 1 packets.
    c.on_socket_open = lambda cl, ud, sock: sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return c


def payloads(stream: str, first_seq: int, count: int) -> list[bytes]:
    now = int(time.time() * 1000)
    out = []
    for seq in range(first_seq, first_seq + count):
        event = ScanEvent(seq=seq, ts_ms=now, accepted_ms=now, scanner="s1", mode="receive",
                          gtin="09506000134352", location=f"B-{seq % 50:02d}-1", qty=1)
        out.append(EventBatch(node=NODE, stream=stream, events=(event,), sent_ms=now).to_json())
    return out


# --------------------------------------------------------------------------- child processes


def child_paho(port: int, password: str, expected: int) -> None:
    """Child process: a bare paho subscriber; prints READY on SUBACK, then first/last receipt and each latency."""
    got = 0
    first = last = 0.0
    latencies_ms: list[float] = []
    done = threading.Event()

    def on_message(c: mqtt.Client, u: object, m: mqtt.MQTTMessage) -> None:
        nonlocal got, first, last
        last = time.time()
        got += 1
        if got == 1:
            first = last
        if expected < 0:  # latency mode: publish time is the event's accepted_ms
            latencies_ms.append(last * 1000 - json.loads(m.payload)["events"][0]["accepted_ms"])
        if got >= abs(expected):
            done.set()

    c = client(HUB_USER, password, f"bench-paho-{os.getpid()}")
    c.on_message = on_message
    c.on_connect = lambda c, u, f, rc, p: c.subscribe(subscription(SITE, Channel.EVENTS), qos=1)
    c.on_subscribe = lambda c, u, mid, rc, p: print("READY", flush=True)
    c.connect("127.0.0.1", port)
    c.loop_start()
    done.wait(300)
    c.loop_stop()
    print(json.dumps({"got": got, "first": first, "last": last, "latencies_ms": latencies_ms}), flush=True)


def child_session(port: int, password: str, expected: int) -> None:
    """Child process: a bare hub/rx_session.py session (gmqtt) that only counts; prints READY on SUBACK."""
    got = 0
    first = last = 0.0
    stop = threading.Event()

    def deliver(received_ms: int, messages: list[tuple[str, bytes]]) -> None:
        nonlocal got, first, last
        last = time.time()
        if not got:
            first = last
        got += len(messages)
        if got >= expected:
            stop.set()

    settings = SessionSettings(host="127.0.0.1", port=port, client_id=f"bench-rx-{os.getpid()}", username=HUB_USER,
                               password=password, keepalive_s=30, topics=(subscription(SITE, Channel.EVENTS),))
    run_session(settings, deliver, lambda: print("READY", flush=True), stop=stop)
    print(json.dumps({"got": got, "first": first, "last": last}), flush=True)


def run_child(role: str, broker: PrivateBroker, expected: int) -> subprocess.Popen[str]:
    """Start a bare subscriber process and return once it has its SUBACK."""
    proc = subprocess.Popen([sys.executable, __file__, "--role", role, "--port", str(broker.port),
                             "--password", broker.users[HUB_USER], "--events", str(expected)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if line != "READY":
        proc.kill()
        raise SystemExit(f"{role} subscriber did not start (said {line!r})")
    return proc


# --------------------------------------------------------------------------- arms


class Bench:
    """One broker and one publishing node shared by every arm and round."""

    def __init__(self, work: Path, events: int, pg_admin_url: str = "") -> None:
        self.work = work
        self.events = events
        self.round = 0
        self.pg_admin_url = pg_admin_url  # where the PostgreSQL arms make (and drop) their databases
        self.pg_databases: list[str] = []
        # Queue limit raised so a subscriber that falls behind is not cut by the broker's default of 1000.
        self.broker = PrivateBroker(work / "mosquitto", max_queued_messages=max(100_000, events * 2))
        self.broker.add_user(HUB_USER, secrets.token_hex(8))
        self.node_password = secrets.token_hex(8)
        self.broker.add_user(NODE, self.node_password)
        self.broker.start()
        self.topic = node_topic(SITE, NODE, Channel.EVENTS)
        self.pub = client(NODE, self.node_password, "bench-pub")
        self.acks = AckWatch(self.pub)
        self.pub.connect("127.0.0.1", self.broker.port)
        self.pub.loop_start()

    def close(self) -> None:
        self.pub.loop_stop()
        self.broker.stop()
        if self.pg_databases:
            import psycopg
            with psycopg.connect(self.pg_admin_url, autocommit=True) as admin:
                for name in self.pg_databases:
                    admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def publish_all(self, messages: list[bytes]) -> float:
        start = time.time()
        for body in messages:
            self.pub.publish(self.topic, body, qos=1)
        return start

    def publish_paced(self, stream: str, rate: int, seconds: float) -> int:
        """Publish `rate` events/s for `seconds`, each stamped with its publish time; returns how many."""
        total = int(rate * seconds)
        start = time.perf_counter()
        for i in range(total):
            pause = start + i / rate - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            self.pub.publish(self.topic, payloads(stream, i + 1, 1)[0], qos=1)
        return total

    # ---- rate arms

    def bare(self, role: str) -> Metrics:
        proc = run_child(role, self.broker, self.events)
        assert proc.stdout is not None
        start = self.publish_all(payloads(secrets.token_hex(8), 1, self.events))
        result = json.loads(proc.stdout.readline())
        proc.wait(10)
        if result["got"] < self.events:
            print(f"{role}: got only {result['got']} of {self.events}", file=sys.stderr)
        return {"events_per_s": result["got"] / (result["last"] - start)}

    def mosquitto_sub(self) -> Metrics:
        """The broker's own C client at QoS 1; its payload output is read in chunks to time the last one."""
        proc = subprocess.Popen(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(self.broker.port), "-u", HUB_USER,
                                 "-P", self.broker.users[HUB_USER], "-V", "mqttv5", "-q", "1", "--nodelay",
                                 "-i", f"bench-sub-{self.round}", "-t", subscription(SITE, Channel.EVENTS)],
                                stdout=subprocess.PIPE)
        assert proc.stdout is not None
        seen = {"probes": 0, "events": 0, "last": 0.0}
        live = threading.Event()
        done = threading.Event()

        def read() -> None:
            assert proc.stdout is not None
            tail = b""
            while True:
                chunk = os.read(proc.stdout.fileno(), 1 << 20)
                if not chunk:
                    return
                lines = (tail + chunk).split(b"\n")
                tail = lines.pop()
                probes = sum(1 for line in lines if line == PROBE)
                seen["probes"] += probes
                seen["events"] += len(lines) - probes
                if probes:
                    live.set()
                if seen["events"] >= self.events:
                    seen["last"] = time.time()
                    done.set()
                    return

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not live.wait(0.05):  # probe until the subscription is live: mosquitto_sub does not say
            if time.monotonic() > deadline:
                proc.kill()
                raise SystemExit("mosquitto_sub never received a probe")
            self.pub.publish(self.topic, PROBE, qos=1)
        start = self.publish_all(payloads(secrets.token_hex(8), 1, self.events))
        if not done.wait(300):
            raise SystemExit(f"mosquitto_sub got only {seen['events']} of {self.events}")
        proc.terminate()
        proc.wait(10)
        return {"events_per_s": self.events / (seen["last"] - start)}

    def hub(self, store: str = "sqlite") -> Metrics:
        proc, _ = self.start_hub(store)
        try:
            stream = secrets.token_hex(8)
            when = self.acks.expect(stream, self.events)
            start = self.publish_all(payloads(stream, 1, self.events))
            if not when.wait(300):
                raise SystemExit(f"hub acked only {self.acks.watermarks.get(stream, 0)} of {self.events}")
            return {"events_per_s": self.events / (self.acks.reached_at[stream] - start)}
        finally:
            proc.terminate()
            proc.wait(10)

    # ---- latency arms

    def hop_latency(self, rate: int, seconds: float) -> Metrics:
        total = int(rate * seconds)
        proc = run_child("paho", self.broker, -total)
        assert proc.stdout is not None
        self.publish_paced(secrets.token_hex(8), rate, seconds)
        lat = json.loads(proc.stdout.readline())["latencies_ms"]
        proc.wait(10)
        return {"p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99), "max_ms": max(lat)}

    def commit_latency(self, rate: int, seconds: float, store: str = "sqlite") -> Metrics:
        proc, ledger = self.start_hub(store)
        try:
            stream = secrets.token_hex(8)
            total = int(rate * seconds)
            when = self.acks.expect(stream, total)
            self.publish_paced(stream, rate, seconds)
            if not when.wait(120):
                raise SystemExit(f"hub acked only {self.acks.watermarks.get(stream, 0)} of {total}")
            conn = ledger.connect(readonly=True)
            try:
                lat = [float(r[0]) for r in conn.execute("SELECT committed_ms - accepted_ms FROM events"
                                                          " WHERE stream = ?", (stream,))]
            finally:
                conn.close()
            return {"p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99), "max_ms": max(lat)}
        finally:
            proc.terminate()
            proc.wait(10)

    def start_hub(self, store: str = "sqlite") -> tuple[subprocess.Popen[bytes], DbTarget]:
        """A fresh `stock-hub serve` on a fresh ledger (SQLite files, or a new PostgreSQL database);
        returns it and its ledger once it acks a probe event."""
        self.round += 1
        work = self.work / f"hub{self.round}"
        work.mkdir(parents=True)
        http_port = free_port()
        db = work / "ledger.sqlite3"
        ledger, store_table = DbTarget.sqlite(LEDGER, db), ""
        if store == "postgresql":
            import psycopg
            name = f"bench_ingest_{os.getpid()}_{self.round}"
            with psycopg.connect(self.pg_admin_url, autocommit=True) as admin:
                admin.execute(f"CREATE DATABASE {name}")
            self.pg_databases.append(name)
            url = self.pg_admin_url.rsplit("/", 1)[0] + "/" + name
            ledger, store_table = DbTarget.postgresql(LEDGER, url), f'[store]\nurl = "{url}"\n'
        cfg = work / "hub.toml"
        cfg.write_text(f'[site]\nname = "{SITE}"\n[mqtt]\nport = {self.broker.port}\n'
                       f'password = "{self.broker.users[HUB_USER]}"\n[http]\nport = {http_port}\n[db]\npath = "{db}"\n'
                       + store_table)
        proc = subprocess.Popen([sys.executable, "-m", "hub.cli", "--log-level", "WARNING", "serve", "--config",
                                 str(cfg)], stdout=open(work / "hub.log", "ab"), stderr=subprocess.STDOUT)
        try:
            wait_for_port("127.0.0.1", http_port, READY_TIMEOUT_S)
            probe_stream = secrets.token_hex(8)
            acked = self.acks.expect(probe_stream, 1)
            deadline = time.monotonic() + READY_TIMEOUT_S
            while not acked.wait(0.1):  # the hub subscribes after its HTTP port opens; wait for it to ack
                if time.monotonic() > deadline:
                    raise SystemExit(f"the hub never acked a probe; see {work / 'hub.log'}")
                self.pub.publish(self.topic, payloads(probe_stream, 1, 1)[0], qos=1)
        except BaseException:
            proc.kill()
            proc.wait(10)
            raise
        return proc, ledger


class AckWatch:
    """The node's view of its acks, per stream."""

    def __init__(self, c: mqtt.Client) -> None:
        self.watermarks: dict[str, int] = {}
        self.reached_at: dict[str, float] = {}
        self._targets: dict[str, tuple[int, threading.Event]] = {}
        c.on_message = self._on_message
        c.on_connect = lambda c, u, f, rc, p: c.subscribe(node_topic(SITE, NODE, Channel.ACK), qos=1)

    def expect(self, stream: str, seq: int) -> threading.Event:
        """An event set when `stream` is acked up to `seq`."""
        reached = threading.Event()
        self._targets[stream] = (seq, reached)
        return reached

    def _on_message(self, c: mqtt.Client, u: object, m: mqtt.MQTTMessage) -> None:
        ack = Ack.from_json(m.payload)
        mark = self.watermarks[ack.stream] = max(self.watermarks.get(ack.stream, 0), ack.watermark)
        target = self._targets.get(ack.stream)
        if target and mark >= target[0] and not target[1].is_set():
            self.reached_at[ack.stream] = time.time()
            target[1].set()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=10_000, help="messages per rate trial")
    parser.add_argument("--rate", type=int, default=500, help="offered rate for the latency trials, events/s")
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each latency trial")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (pairs) per measurement, at least 5")
    parser.add_argument("--rate-only", action="store_true",
                        help="only the bare gmqtt session and the hub, no latency trials")
    parser.add_argument("--postgresql", metavar="ADMIN_URL", default="",
                        help="also the hub with its stores on PostgreSQL, in the same rounds (a database per"
                             " trial made and dropped through this URL, e.g. postgresql://postgres@127.0.0.1:5432/postgres)")
    parser.add_argument("--role", default="main", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--password", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "paho":
        child_paho(args.port, args.password, args.events)
        return
    if args.role == "gmqtt":
        child_session(args.port, args.password, args.events)
        return
    with tempfile.TemporaryDirectory() as tmp:
        bench = Bench(Path(tmp), args.events, args.postgresql)
        try:
            rate_arms: dict[str, Callable[[], Metrics]] = {
                "mosquitto_sub": bench.mosquitto_sub,
                "paho": lambda: bench.bare("paho"),
                "gmqtt": lambda: bench.bare("gmqtt"),
                "hub": bench.hub,
            }
            latency_arms: dict[str, Callable[[], Metrics]] = {
                "broker hop": lambda: bench.hop_latency(args.rate, args.seconds),
                "hub commit": lambda: bench.commit_latency(args.rate, args.seconds),
            }
            if args.postgresql:
                rate_arms["hub on PostgreSQL"] = lambda: bench.hub("postgresql")
                latency_arms["hub commit on PostgreSQL"] = lambda: bench.commit_latency(args.rate, args.seconds,
                                                                                        "postgresql")
            if args.rate_only:
                del rate_arms["mosquitto_sub"], rate_arms["paho"]
            rates = run_rounds(rate_arms, args.rounds)
            latency = None if args.rate_only else run_rounds(latency_arms, args.rounds)
        finally:
            bench.close()
    baselines = [name for name in ("mosquitto_sub", "paho", "gmqtt") if name in rate_arms]
    rate_comparisons = [Comparison(f"hub / {name}", ("hub", "events_per_s"), (name, "events_per_s"))
                        for name in baselines]
    latency_comparisons = [Comparison("hub commit p99 / broker hop p99", ("hub commit", "p99_ms"),
                                      ("broker hop", "p99_ms"))]
    if args.postgresql:
        rate_comparisons.append(Comparison("hub on PostgreSQL / hub on SQLite", ("hub on PostgreSQL", "events_per_s"),
                                           ("hub", "events_per_s")))
        latency_comparisons.append(Comparison("hub commit p99 on PostgreSQL / on SQLite",
                                              ("hub commit on PostgreSQL", "p99_ms"), ("hub commit", "p99_ms")))
    print(report(rates, rate_comparisons,
                 units={"events_per_s": "events/s"},
                 title=f"single-event ingest, {args.events:,} messages per trial, events/s"))
    if latency is not None:
        print()
        print(report(latency, latency_comparisons,
                     units={"p50_ms": "ms", "p99_ms": "ms", "max_ms": "ms"},
                     title=f"publish to commit at {args.rate} events/s for {args.seconds:g} s (broker hop: publish "
                           "to receipt by a bare paho subscriber)"))

if __name__ == "__main__":
    main()
