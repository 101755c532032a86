"""The accuracy bench's site: a private broker, the real hub, real edge agents, virtual scanners and shelves.

Everything downstream of the scanner's pty and the shelf controller's pty is the product as
it runs in a warehouse: `edge-agent run` processes (one per zone) read the ptys, keep their
outboxes and publish over MQTT v5 to a private Mosquitto with passwords and the site ACL;
`stock-hub serve` ingests, reconciles and answers on its JSON API, which is all the bench
reads. The hub and edge processes run on a simulated clock (`bench/simclock`), SCALE times
faster than real time, and the shelf simulators run at the same scale, so a day passes
quickly while every time the system stamps and judges stays consistent.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from accuracy_model import PIECE_CV, SitePlan

from edge.scan.sim import VirtualScanner
from edge.shelf.sim import SimBin, VirtualController
from hub.mosquitto import HUB_USER, PrivateBroker, free_port, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
SIMCLOCK_DIR = Path(__file__).resolve().parent / "simclock"
SITE = "accuracy"
SHELF_RATE_HZ = 10.0  # HX711 at 10 samples/s: 200 bins at a 10x clock stay a small load for one machine
BINS_PER_CONTROLLER = 25
PROCESS_STOP_S = 10.0


class SimClock:
    """The simulated wall clock shared by the bench, the hub and the edges (see bench/simclock)."""

    def __init__(self, scale: float, base_s: float | None = None) -> None:
        self.scale = scale
        self.base_s = time.time() if base_s is None else base_s

    def now_s(self) -> float:
        return self.base_s + (time.time() - self.base_s) * self.scale

    def now_ms(self) -> int:
        return int(self.now_s() * 1000)

    def wait(self, sim_s: float, stop: threading.Event | None = None) -> bool:
        """Sleep sim_s simulated seconds; False if `stop` was set meanwhile."""
        real_s = max(0.0, sim_s / self.scale)
        if stop is None:
            time.sleep(real_s)
            return True
        return not stop.wait(real_s)

    def wait_until(self, sim_t_s: float, stop: threading.Event | None = None) -> bool:
        return self.wait(sim_t_s - self.now_s(), stop)

    def environ(self, skew_s: float = 0.0) -> dict[str, str]:
        """Environment for a child process that should run on this clock (with its own skew)."""
        return {**os.environ, "PYTHONPATH": os.pathsep.join([str(SIMCLOCK_DIR), str(ROOT)]),
                "ACCURACY_CLOCK": f"{self.base_s!r}:{self.scale!r}:{skew_s!r}"}


class HubApi:
    """The hub's JSON API with a bearer token (blocking; called from bench threads)."""

    def __init__(self, base_url: str, token: str) -> None:
        self.base_url = base_url
        self.token = token

    def get(self, path: str, **query: Any) -> dict[str, Any]:
        url = self.base_url + path + ("?" + urllib.parse.urlencode(query) if query else "")
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            body: dict[str, Any] = json.loads(response.read())
        return body

    def pages(self, path: str, **query: Any) -> list[dict[str, Any]]:
        """Every item of a newest-first list paged with before_id."""
        items: list[dict[str, Any]] = []
        before: int | None = None
        while True:
            page = self.get(path, limit=1000, **query, **({"before_id": before} if before else {}))
            items.extend(page["items"])
            before = page.get("next_before_id")
            if not before or not page["items"]:
                return items

    def stock(self) -> dict[tuple[str, str], int]:
        """Every balance, as (SKU, location) -> quantity."""
        out: dict[tuple[str, str], int] = {}
        offset = 0
        while True:
            items = self.get("/api/v1/stock", limit=5000, offset=offset)["items"]
            out.update({(b["sku"], b["location"]): b["qty"] for b in items})
            if len(items) < 5000:
                return out
            offset += len(items)


class Site:
    """One simulated site: start it, drive its scanners and shelves, read the hub, stop it."""

    def __init__(self, plan: SitePlan, work: Path, clock: SimClock, seed: int, window_s: float,
                 skew_s: dict[str, float]) -> None:
        self.plan = plan
        self.work = work
        self.clock = clock
        self.seed = seed
        self.window_s = window_s
        self.skew_s = skew_s
        self.broker = PrivateBroker(work / "mosquitto")
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.scanners: list[VirtualScanner] = []
        self.controllers: list[VirtualController] = []
        self.shelf_of: dict[str, tuple[VirtualController, int]] = {}
        self.api: HubApi | None = None
        self._logs = contextlib.ExitStack()
        self.scanner_node: list[str] = []

    # ------------------------------------------------------------------ start and stop

    def start(self) -> HubApi:
        """Broker, catalog, hub, shelves, scanners, edges; returns the hub's API once every node is online."""
        self.work.mkdir(parents=True, exist_ok=True)
        passwords = {HUB_USER: secrets.token_urlsafe(12), **{n: secrets.token_urlsafe(12) for n in self.plan.nodes}}
        for user, password in passwords.items():
            self.broker.add_user(user, password)
        self.broker.start()
        http_port = free_port()
        hub_toml = self.work / "hub.toml"
        hub_toml.write_text(toml_text({
            "site": {"name": SITE},
            "mqtt": {"port": self.broker.port, "password": passwords[HUB_USER]},
            "http": {"host": "127.0.0.1", "port": http_port},
            "db": {"path": str(self.work / "hub" / "ledger.sqlite3")},
            "log": {"level": "WARNING"},
            "reconcile": {"window_s": self.window_s},
            # The rules (reorder, supplier, cash) do not judge stock; off, they leave the CPU to what is measured.
            "rules": {"enabled": False},
        }))
        catalog = self.work / "catalog.csv"
        catalog.write_text(self.plan.catalog_csv())
        env = self.clock.environ()
        subprocess.run([sys.executable, "-m", "hub.cli", "--log-level", "WARNING", "import-catalog", str(catalog),
                        "--config", str(hub_toml), "--no-progress"], check=True, stdout=subprocess.DEVNULL, env=env)
        token = subprocess.run([sys.executable, "-m", "hub.cli", "--log-level", "WARNING", "add-token",
                                "accuracy-bench", "--role", "supervisor", "--config", str(hub_toml)],
                               check=True, capture_output=True, text=True, env=env).stdout.strip().splitlines()[-1]
        self._spawn("hub", ["-m", "hub.cli", "serve", "--config", str(hub_toml)], env)
        wait_for_port("127.0.0.1", http_port, 30)
        self.api = HubApi(f"http://127.0.0.1:{http_port}", token)
        self._start_shelves()
        self._start_edges(passwords)
        self._wait_online()
        return self.api

    def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> None:
        log = self._logs.enter_context(open(self.work / f"{name}.log", "ab"))
        self.procs[name] = subprocess.Popen([sys.executable, *args], stdout=log, stderr=subprocess.STDOUT, env=env,
                                            cwd=ROOT)

    def _start_shelves(self) -> None:
        for node in self.plan.nodes:
            sensored = [b for b in self.plan.bins if b.node == node and b.sensored]
            for first in range(0, len(sensored), BINS_PER_CONTROLLER):
                chunk = sensored[first:first + BINS_PER_CONTROLLER]
                index = len(self.controllers)
                ctl = VirtualController([SimBin(unit_weight_g=b.unit_weight_g, unit_cv=PIECE_CV, pieces=b.initial,
                                                container_g=0.0) for b in chunk],
                                        protocol="hx711-bridge", rate_hz=SHELF_RATE_HZ, time_scale=self.clock.scale,
                                        seed=self.seed * 1000 + index, link_path=str(self.work / f"shelf-{index}"))
                ctl.start()
                self.controllers.append(ctl)
                for i, b in enumerate(chunk):
                    self.shelf_of[b.name] = (ctl, i)

    def _start_edges(self, passwords: dict[str, str]) -> None:
        for w in range(self.plan.workers):
            self.scanners.append(VirtualScanner(link_path=self.work / f"scanner-{w}"))
            self.scanner_node.append(self.plan.worker_bins(w)[0].node)
        for node in self.plan.nodes:
            shelves = []
            for index, ctl in enumerate(self.controllers):
                bins = [name for name, (c, _) in sorted(self.shelf_of.items(), key=lambda kv: kv[1][1]) if c is ctl]
                if bins and self.plan.bin(bins[0]).node == node:
                    shelves.append({"name": f"shelf-{index}", "protocol": "hx711-bridge", "port": str(ctl.link_path),
                                    "bins": bins, "rate_hz": SHELF_RATE_HZ, "scale_per_g": 100.0})
            scanners = [{"name": f"scanner-{w}", "type": "serial", "port": self.scanners[w].port,
                         "terminator": "crlf", "mode": "pick"}
                        for w in range(self.plan.workers) if self.scanner_node[w] == node]
            doc: dict[str, Any] = {
                "node": {"name": node, "site": SITE},
                "mqtt": {"port": self.broker.port, "password": passwords[node]},
                "outbox": {"path": str(self.work / node / "outbox.sqlite3")},
                "state": {"path": str(self.work / node / "state.json")},
                "log": {"level": "WARNING"},
            }
            if scanners:
                doc["scanner"] = scanners
            if shelves:
                doc["shelf"] = shelves
            config = self.work / f"{node}.toml"
            config.write_text(toml_text(doc))
            self._spawn(node, ["-m", "edge.cli", "run", "--config", str(config)],
                        self.clock.environ(self.skew_s.get(node, 0.0)))

    def _wait_online(self, timeout_s: float = 60.0) -> None:
        """Every node online, then every scanner's port open (a probe scan reaches the hub as a rejected scan)."""
        assert self.api is not None
        api = self.api
        deadline = time.monotonic() + timeout_s

        def online() -> bool:
            items = api.get("/api/v1/node-health")["items"]
            return {i["node"] for i in items if i.get("online")} >= set(self.plan.nodes)

        while not online():
            self._check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"nodes did not come online in {timeout_s:.0f} s; see {self.work}/*.log")
            time.sleep(0.2)
        # pyserial drops what a port received before it was opened: probe until each probe arrives.
        waiting = set(range(len(self.scanners)))
        while waiting:
            for w in waiting:
                self.scanners[w].scan(f"PROBE-{w}")
            time.sleep(0.5)
            seen = {s.get("raw") for s in api.pages("/api/v1/scans", outcome="rejected")}
            waiting = {w for w in waiting if f"PROBE-{w}" not in seen}
            if time.monotonic() > deadline:
                raise RuntimeError(f"scanners {sorted(waiting)} never reached the hub; see {self.work}/*.log")

    def _check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with code {proc.returncode}; see {self.work}/{name}.log")

    def stop(self) -> None:
        """Edges first (their outboxes are durable), then the hub, the devices and the broker."""
        for name in [*self.plan.nodes, "hub"]:
            proc = self.procs.get(name)
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(PROCESS_STOP_S)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        for ctl in self.controllers:
            ctl.stop()
        for scanner in self.scanners:
            scanner.stop()
        self.broker.stop()
        self._logs.close()

    # ------------------------------------------------------------------ the physical world

    def take(self, bin_name: str, pieces: int, hand_s: float = 1.5) -> None:
        """A hand takes pieces from a bin (the shelf weighs it if the bin has a sensor)."""
        shelf = self.shelf_of.get(bin_name)
        if shelf is not None:
            shelf[0].pick(shelf[1], pieces, hand_s)

    def put(self, bin_name: str, pieces: int, hand_s: float = 2.0) -> None:
        shelf = self.shelf_of.get(bin_name)
        if shelf is not None:
            shelf[0].restock(shelf[1], pieces, hand_s)

    def shelf_pieces(self, bin_name: str) -> int | None:
        """What really lies on a sensored bin (the simulator's count); None for a bin without a sensor."""
        shelf = self.shelf_of.get(bin_name)
        return None if shelf is None else shelf[0].count(shelf[1])

    def fault(self, bin_name: str, fault: str, active: bool) -> None:
        """Start or end a shelf fault: a pulled load-cell cable, or 25 kg leaning on the shelf."""
        ctl, index = self.shelf_of[bin_name]
        with ctl._lock:  # the simulator's thread reads these each sample
            sim_bin = ctl.bins[index]
            if fault == "disconnected":
                sim_bin.unplugged = active
            else:
                sim_bin.drift_g += OVERLOAD_G if active else -OVERLOAD_G


OVERLOAD_G = 25000.0  # above the shelf's 20 kg capacity


def toml_text(doc: dict[str, Any]) -> str:
    """A small TOML writer for the configs the bench writes (tables, arrays of tables, scalars, lists)."""
    lines: list[str] = []
    for section, body in doc.items():
        for table in body if isinstance(body, list) else [body]:
            lines.append(f"[[{section}]]" if isinstance(body, list) else f"[{section}]")
            lines.extend(f"{key} = {_toml_value(value)}" for key, value in table.items())
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))
