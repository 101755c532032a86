"""The real parts a benchmark runs against: a private Mosquitto, a `stock-hub serve` process, process CPU and RSS.

Shared by the benchmarks that need a whole site (scan_to_screen.py, site_day.py) so each
starts the hub the same way, on its own ledger and its own port.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hub.config import HUB_SETTINGS, HubConfig, hub_config_from  # noqa: E402
from hub.mosquitto import HUB_USER, PrivateBroker, free_port, wait_for_port  # noqa: E402
from settings import resolve  # noqa: E402
from tests.support import toml_text  # noqa: E402

SITE = "bench"
START_TIMEOUT_S = 30.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@contextmanager
def private_broker(workdir: Path, max_queued_messages: int = 100_000) -> Iterator[PrivateBroker]:
    """A started Mosquitto with the hub's user, stopped on exit."""
    broker = PrivateBroker(workdir / "mosquitto", max_queued_messages=max_queued_messages)
    broker.add_user(HUB_USER, secrets.token_hex(8))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@dataclass
class HubProcess:
    """A running `stock-hub serve` and what a benchmark needs to reach it."""

    proc: subprocess.Popen[bytes]
    config: HubConfig
    base_url: str
    log_path: Path

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def ledger(self) -> sqlite3.Connection:
        """A read-only connection to the hub's ledger (WAL: reads do not block the writer)."""
        return sqlite3.connect(f"file:{self.config.db_path}?mode=ro", uri=True, timeout=30)


def start_hub(broker: PrivateBroker, workdir: Path, code_dir: Path | None = None,
              **sections: dict[str, Any]) -> HubProcess:
    """Start `stock-hub serve` on a fresh ledger in workdir; returns once its HTTP port answers.

    code_dir: run the hub (and so the page it serves) from another checkout, e.g. main's,
    to compare it with this one in the same rounds; by default this checkout.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    doc: dict[str, dict[str, Any]] = {
        "site": {"name": SITE},
        "mqtt": {"host": broker.host, "port": broker.port, "username": HUB_USER, "password": broker.users[HUB_USER]},
        "http": {"host": "127.0.0.1", "port": port},
        "db": {"path": str(workdir / "ledger.sqlite3")},
    }
    for name, values in sections.items():
        doc.setdefault(name, {}).update(values)
    cfg = workdir / "hub.toml"
    cfg.write_text(toml_text(doc))
    config = hub_config_from(resolve(doc, HUB_SETTINGS, str(cfg), environ={}))
    log_path = workdir / "hub.log"
    # `-m` puts the working directory first on sys.path: the hub package comes from code_dir.
    code = code_dir or Path(__file__).resolve().parent.parent
    proc = subprocess.Popen([sys.executable, "-m", "hub.cli", "--log-level", "WARNING", "serve", "--config", str(cfg)],
                            stdout=open(log_path, "ab"), stderr=subprocess.STDOUT, cwd=code)
    try:
        wait_for_port("127.0.0.1", port, START_TIMEOUT_S)
    except TimeoutError:
        proc.kill()
        raise SystemExit(f"the hub did not start; see {log_path}") from None
    return HubProcess(proc, config, f"http://127.0.0.1:{port}", log_path)


def add_node_user(broker: PrivateBroker, name: str) -> str:
    """A broker user for an edge node; returns its password."""
    password = secrets.token_hex(8)
    broker.add_user(name, password)
    return password


def cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used so far (its children not included)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime (fields 14 and 15)


def rss_mib(pid: int) -> float:
    """A process's resident set size now."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class CpuMeter:
    """CPU use of one process over an interval, as % of one core."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.start()

    def start(self) -> None:
        self._cpu0 = cpu_s(self.pid)
        self._t0 = time.monotonic()

    def percent(self) -> float:
        return 100 * (cpu_s(self.pid) - self._cpu0) / max(1e-9, time.monotonic() - self._t0)
