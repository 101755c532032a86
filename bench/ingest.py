"""Hub ingest rate vs a bare MQTT subscriber on the same broker, and publish-to-commit latency.

    .venv/bin/python bench/ingest.py [--events 20000] [--rate 500] [--seconds 10]

1. Baseline: a bare paho subscriber (its own process) receives N single-event messages
   published as fast as possible by one node; rate = N / (last receipt - first publish).
2. Hub: `stock-hub serve` (its own process) ingests the same N messages; rate = N /
   (ack of seq N - first publish): committed to the ledger *and* acknowledged.
3. Latency: the node publishes at a fixed offered rate; each event's publish time (its
   `accepted_ms`) against the ledger's `committed_ms` gives publish-to-commit percentiles.
Everything uses a private Mosquitto with a password file and ACL. Prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from contract import Ack, Channel, EventBatch, ScanEvent, node_topic, subscription  # noqa: E402
from hub.mosquitto import HUB_USER, PrivateBroker, free_port, wait_for_port  # noqa: E402

SITE = "bench"
NODE = "pi-bench"


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


def bare_subscriber(port: int, password: str, expected: int) -> None:
    """Child process: count messages; print the time of the first and last receipt."""
    got = 0
    first = last = 0.0
    done = threading.Event()

    def on_message(c: mqtt.Client, u: object, m: mqtt.MQTTMessage) -> None:
        nonlocal got, first, last
        got += 1
        last = time.time()
        if got == 1:
            first = last
        if got >= expected:
            done.set()

    c = client(HUB_USER, password, "bench-bare")
    c.on_message = on_message
    c.on_connect = lambda c, u, f, rc, p: c.subscribe(subscription(SITE, Channel.EVENTS), qos=1)
    c.connect("127.0.0.1", port)
    c.loop_start()
    print("READY", flush=True)
    done.wait(300)
    c.loop_stop()
    print(json.dumps({"got": got, "first": first, "last": last}), flush=True)


def publish_all(c: mqtt.Client, topic: str, messages: list[bytes]) -> float:
    start = time.time()
    for body in messages:
        c.publish(topic, body, qos=1)
    return start


def run_baseline(broker: PrivateBroker, node_password: str, n: int) -> float:
    sub = subprocess.Popen([sys.executable, __file__, "--role", "bare", "--port", str(broker.port),
                            "--password", broker.users[HUB_USER], "--events", str(n)],
                           stdout=subprocess.PIPE, text=True)
    assert sub.stdout is not None
    assert sub.stdout.readline().strip() == "READY"
    time.sleep(0.5)  # let the subscription reach the broker (a SUBACK is not visible from here)
    pub = client(NODE, node_password, "bench-pub")
    pub.connect("127.0.0.1", broker.port)
    pub.loop_start()
    start = publish_all(pub, node_topic(SITE, NODE, Channel.EVENTS), payloads(secrets.token_hex(8), 1, n))
    result = json.loads(sub.stdout.readline())
    sub.wait(10)
    pub.loop_stop()
    if result["got"] < n:
        print(f"baseline: subscriber got only {result['got']} of {n} (broker dropped the rest)")
    return float(result["got"]) / (result["last"] - start)


class AckWatch:
    """The node's view of its acks."""

    def __init__(self, broker: PrivateBroker, password: str) -> None:
        self.watermark = 0
        self.reached = threading.Event()
        self.target = 0
        self.when = 0.0
        self.c = client(NODE, password, "bench-node")
        self.c.on_message = self._on_message
        self.c.on_connect = lambda c, u, f, rc, p: c.subscribe(node_topic(SITE, NODE, Channel.ACK), qos=1)
        self.c.connect("127.0.0.1", broker.port)
        self.c.loop_start()

    def _on_message(self, c: mqtt.Client, u: object, m: mqtt.MQTTMessage) -> None:
        ack = Ack.from_json(m.payload)
        self.watermark = max(self.watermark, ack.watermark)
        if self.target and self.watermark >= self.target:
            self.when = time.time()
            self.reached.set()


def start_hub(broker: PrivateBroker, work: Path) -> tuple[subprocess.Popen[bytes], Path]:
    work.mkdir(parents=True, exist_ok=True)
    http_port = free_port()
    db = work / "ledger.sqlite3"
    cfg = work / "hub.toml"
    cfg.write_text(f'[site]\nname = "{SITE}"\n[mqtt]\nport = {broker.port}\npassword = "{broker.users[HUB_USER]}"\n'
                   f'[http]\nport = {http_port}\n[db]\npath = "{db}"\n')
    proc = subprocess.Popen([sys.executable, "-m", "hub.cli", "--log-level", "WARNING", "serve", "--config", str(cfg)],
                            stdout=open(work / "hub.log", "ab"), stderr=subprocess.STDOUT)
    wait_for_port("127.0.0.1", http_port, 30)
    return proc, db


def run_hub(broker: PrivateBroker, node_password: str, n: int, work: Path) -> float:
    proc, _ = start_hub(broker, work)
    try:
        watch = AckWatch(broker, node_password)
        time.sleep(1.0)  # the hub subscribes on connect; give it the same head start as the baseline
        watch.target = n
        start = publish_all(watch.c, node_topic(SITE, NODE, Channel.EVENTS), payloads(secrets.token_hex(8), 1, n))
        if not watch.reached.wait(300):
            raise SystemExit(f"hub acked only {watch.watermark} of {n}")
        watch.c.loop_stop()
        return n / (watch.when - start)
    finally:
        proc.terminate()
        proc.wait(10)


def run_latency(broker: PrivateBroker, node_password: str, rate: int, seconds: float, work: Path) -> list[float]:
    proc, db = start_hub(broker, work)
    try:
        watch = AckWatch(broker, node_password)
        time.sleep(1.0)
        stream = secrets.token_hex(8)
        total = int(rate * seconds)
        watch.target = total
        topic = node_topic(SITE, NODE, Channel.EVENTS)
        start = time.perf_counter()
        for i in range(total):
            due = start + i / rate
            pause = due - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            watch.c.publish(topic, payloads(stream, i + 1, 1)[0], qos=1)  # accepted_ms = publish time
        if not watch.reached.wait(120):
            raise SystemExit(f"hub acked only {watch.watermark} of {total}")
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        rows = conn.execute("SELECT committed_ms - accepted_ms FROM events WHERE stream=?", (stream,)).fetchall()
        conn.close()
        return sorted(float(r[0]) for r in rows)
    finally:
        proc.terminate()
        proc.wait(10)


def pct(values: list[float], p: float) -> float:
    return values[min(len(values) - 1, int(p / 100 * len(values)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--rate", type=int, default=500, help="offered rate for the latency run, events/s")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--role", default="main", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--password", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "bare":
        bare_subscriber(args.port, args.password, args.events)
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        # Queue limit raised so the baseline is not cut by the broker's default of 1000.
        broker = PrivateBroker(work / "mosquitto", max_queued_messages=max(100_000, args.events * 2))
        broker.add_user(HUB_USER, secrets.token_hex(8))
        node_password = secrets.token_hex(8)
        broker.add_user(NODE, node_password)
        broker.start()
        try:
            bare = run_baseline(broker, node_password, args.events)
            hub = run_hub(broker, node_password, args.events, work / "hub1")
            lat = run_latency(broker, node_password, args.rate, args.seconds, work / "hub2")
        finally:
            broker.stop()
    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"{platform.platform()}")
    print(f"\n| single-event messages ({args.events}) | events/s |\n| --- | ---: |")
    print(f"| bare paho subscriber (baseline) | {bare:,.0f} |")
    print(f"| hub: committed and acked | {hub:,.0f} |")
    print(f"| ratio hub / baseline | {hub / bare:.0%} |")
    print(f"\n| publish-to-commit at {args.rate} events/s for {args.seconds:g} s | ms |\n| --- | ---: |")
    for p in (50, 90, 99, 99.9):
        print(f"| p{p:g} | {pct(lat, p):.1f} |")
    print(f"| max | {lat[-1]:.1f} |")


if __name__ == "__main__":
    main()
