"""The real edge agent and hub processes speak the notify protocol to a NOTIFY_SOCKET of ours:
READY once their local loops run (no broker listening), then WATCHDOG pings, and no pings once
a read loop hangs (the SIGUSR2 test hook of service.Watchdog), then STOPPING on SIGTERM.

Loop names the processes register (docs/deployment.md): `scanner:<name>` and `shelf:<name>` on
the edge, `ingest` on the hub.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hub.mosquitto import free_port
from service import TEST_HANG_ENV
from service.testing import NotifyListener

ROOT = Path(__file__).resolve().parent.parent
START_S = 20.0  # a cold Python start with aiohttp imports on a slow CI runner
WATCHDOG_USEC = 2_000_000  # pings every second; loops stale after 2 s
ROUND_S = 5.0
Messages = list[dict[str, str]]


def _wired(*modules: str) -> bool:
    """True once the program's code uses service.Watchdog (the integration this test checks)."""
    sources = [ROOT / (m.replace(".", "/") + ".py") for m in modules]
    return any(p.exists() and "Watchdog" in p.read_text() for p in sources)


edge_wired = pytest.mark.skipif(
    not _wired("edge.agent", "edge.cli"),
    reason="edge agent does not use service.Watchdog/Notifier yet (see docs/deployment.md, 'Notify and watchdog')")
hub_wired = pytest.mark.skipif(
    not _wired("hub.service", "hub.cli", "hub.app", "hub.web.app"),
    reason="hub does not use service.Watchdog/Notifier yet (see docs/deployment.md, 'Notify and watchdog')")


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[NotifyListener]:
    lst = NotifyListener(tmp_path / "notify.sock")
    yield lst
    lst.close()


def start(module: str, args: list[str], listener: NotifyListener, hang_loop: str,
          log_path: Path) -> subprocess.Popen[bytes]:
    """Start `python -m`-style the program's main() with systemd's environment, as the unit would."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NOTIFY_SOCKET": listener.env_value,
           "WATCHDOG_USEC": str(WATCHDOG_USEC), TEST_HANG_ENV: hang_loop}
    env.pop("WATCHDOG_PID", None)
    code = f"import sys; from {module} import main; sys.exit(main(sys.argv[1:]))"
    with open(log_path, "wb") as log:
        return subprocess.Popen([sys.executable, "-c", code, *args], env=env, cwd=ROOT,
                                stdout=log, stderr=subprocess.STDOUT)


def wait(proc: subprocess.Popen[bytes], listener: NotifyListener, predicate: Callable[[Messages], bool],
         timeout_s: float, what: str) -> None:
    """Wait for a condition on the messages, failing at once if the program exits meanwhile."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            listener.wait_for(predicate, min(0.2, max(0.0, deadline - time.monotonic())), what)
            return
        except AssertionError:
            if proc.poll() is not None:
                raise AssertionError(f"program exited with {proc.returncode} before {what}") from None
            if time.monotonic() >= deadline:
                raise


def check_lifecycle(proc: subprocess.Popen[bytes], listener: NotifyListener, hang_loop: str, log_path: Path) -> None:
    try:
        wait(proc, listener, listener.has("READY"), START_S, "READY (the broker is not running: READY must not wait)")
        ready_at = next(i for i, m in enumerate(listener.messages) if m.get("READY") == "1")
        wait(proc, listener, lambda msgs: sum(m.get("WATCHDOG") == "1" for m in msgs[ready_at:]) >= 2, ROUND_S, "two WATCHDOG pings after READY")

        proc.send_signal(signal.SIGUSR2)  # the test hook: loop `hang_loop` stalls

        def hung(m: dict[str, str]) -> bool:
            return m.get("STATUS", "").startswith("hung: ") and hang_loop in m["STATUS"]

        wait(proc, listener, lambda msgs: any(hung(m) for m in msgs), ROUND_S + 3, f"a status naming {hang_loop} hung")
        first = next(i for i, m in enumerate(listener.messages) if hung(m))
        wait(proc, listener, lambda msgs: sum(hung(m) for m in msgs[first:]) >= 3, ROUND_S, "two more watchdog rounds")
        assert not [m for m in listener.messages[first:] if m.get("WATCHDOG")], "pinged while a read loop hung"

        proc.terminate()
        listener.wait_for(listener.has("STOPPING"), ROUND_S, "STOPPING on SIGTERM")
    except AssertionError as err:
        proc.kill()
        proc.wait(5)
        raise AssertionError(f"{err}\n--- program output ---\n{log_path.read_text()}") from None
    finally:
        if proc.poll() is None:
            try:
                proc.wait(ROUND_S)
            except subprocess.TimeoutExpired:
                proc.kill()  # a thread stalled by the hook may keep it from exiting on time
                proc.wait(5)


@edge_wired
def test_edge_agent_notifies_and_stops_pinging_when_a_scanner_read_hangs(listener: NotifyListener,
                                                                        tmp_path: Path) -> None:
    master, slave = os.openpty()  # a serial scanner that sends nothing: its loop still comes round
    try:
        config = tmp_path / "edge.toml"
        config.write_text(f"""[node]
name = "pi-notify"
site = "test-site"
[mqtt]
host = "127.0.0.1"
port = {free_port()}
password = "unused"
[outbox]
path = "{tmp_path / 'outbox.sqlite3'}"
[state]
path = "{tmp_path / 'state.json'}"
[[scanner]]
name = "bench"
type = "serial"
port = "{os.ttyname(slave)}"
""")
        log_path = tmp_path / "edge.log"
        proc = start("edge.cli", ["run", "--config", str(config)], listener, "scanner:bench", log_path)
        check_lifecycle(proc, listener, "scanner:bench", log_path)
        # READY is the signal a script can wait for before scanning: it says the port is open.
        ready = next(m for m in listener.messages if m.get("READY") == "1")
        assert ready["STATUS"] == f"edge agent pi-notify ready: scanner bench reading {os.ttyname(slave)}"
        assert ready["STATUS"] in log_path.read_text()
    finally:
        os.close(master)
        os.close(slave)


def _hub_toml(tmp_path: Path, http_port: int) -> Path:
    """A hub config whose broker is nowhere (READY does not wait for it) and whose page is on `http_port`."""
    config = tmp_path / "hub.toml"
    config.write_text(f"""[site]
name = "test-site"
[mqtt]
host = "127.0.0.1"
port = {free_port()}
password = "unused"
[http]
host = "127.0.0.1"
port = {http_port}
[db]
path = "{tmp_path / 'ledger.sqlite3'}"
""")
    return config


@hub_wired
def test_hub_notifies_and_stops_pinging_when_ingest_hangs(listener: NotifyListener, tmp_path: Path) -> None:
    config = _hub_toml(tmp_path, http_port=free_port())
    log_path = tmp_path / "hub.log"
    proc = start("hub.cli", ["serve", "--config", str(config)], listener, "ingest", log_path)
    check_lifecycle(proc, listener, "ingest", log_path)


@hub_wired
def test_a_hub_on_port_0_says_which_port_the_system_chose(listener: NotifyListener, tmp_path: Path) -> None:
    """http.port = 0 (any free port, as `scripts/run_demo.py --http-port 0` asks): READY and the log name the
    port the page really listens on, not 0."""
    config = _hub_toml(tmp_path, http_port=0)
    log_path = tmp_path / "hub.log"
    proc = start("hub.cli", ["serve", "--config", str(config)], listener, "", log_path)
    try:
        wait(proc, listener, lambda ms: any(m.get("READY") == "1" for m in ms), START_S, "READY")
        status = next(m["STATUS"] for m in listener.messages if m.get("READY") == "1")
        found = re.search(r"running on port (\d+)$", status)
        assert found and int(found.group(1)) != 0, status
        port = int(found.group(1))
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as resp:
                answer = json.loads(resp.read())
        except urllib.error.HTTPError as err:  # 503: no broker here, so not healthy; still the hub answering
            answer = json.loads(err.read())
        assert "ok" in answer and "role" in answer, answer
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert f"hub page at http://127.0.0.1:{port}/" in log_path.read_text()
