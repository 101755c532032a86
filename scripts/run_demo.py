"""The demo: a private broker, the hub, one edge agent with a virtual scanner and a virtual shelf.

Everything runs as it would in production (separate processes, a Mosquitto with a
password file and ACL, real SQLite files); only the scanner and the load cells are
simulated, on ptys. Ctrl+C stops everything cleanly. Run through `./scripts/demo`.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import secrets
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

from edge.scan.sim import VirtualScanner
from edge.shelf.sim import start_simulator
from hub.mosquitto import HUB_USER, PrivateBroker, free_port, wait_for_port

log = logging.getLogger("demo")

SITE = "demo"
NODE = "pi-demo-1"
SHELF_SCENARIO = "wait 8; pick 0 3; wait 12; restock 0 10; wait 12; pick 1 2; wait 12; pick 0 1; wait 10; loop"


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", default="demo-run", help="where the demo keeps its files (recreated)")
    parser.add_argument("--http-port", type=int, default=8080)
    parser.add_argument("--scan-interval-s", type=float, default=3.0)
    parser.add_argument("--keep", action="store_true", help="keep the previous demo's ledger")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s demo: %(message)s", datefmt="%H:%M:%S")

    work = Path(args.workdir).resolve()
    if work.exists() and not args.keep:
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    http_port = args.http_port if _port_free(args.http_port) else free_port()

    broker = PrivateBroker(work / "mosquitto")
    hub_password, node_password = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
    broker.add_user(HUB_USER, hub_password)
    broker.add_user(NODE, node_password)
    broker.start()
    log.info("private Mosquitto on 127.0.0.1:%d (password file + ACL in %s)", broker.port, broker.workdir)

    scanner = VirtualScanner(interval_s=args.scan_interval_s, link_path=work / "scanner-tty").start()
    shelf = start_simulator(2, protocol="hx711-bridge", scenario=SHELF_SCENARIO, seed=7,
                            link_path=work / "shelf-tty")

    hub_config = write(work / "hub.toml", f"""[site]
name = "{SITE}"
[mqtt]
port = {broker.port}
password = "{hub_password}"
[http]
host = "127.0.0.1"
port = {http_port}
[db]
path = "{work / 'hub' / 'ledger.sqlite3'}"
""")
    edge_config = write(work / "edge.toml", f"""[node]
name = "{NODE}"
site = "{SITE}"
[mqtt]
port = {broker.port}
password = "{node_password}"
[outbox]
path = "{work / 'edge' / 'outbox.sqlite3'}"
[state]
path = "{work / 'edge' / 'state.json'}"

[[scanner]]
name = "dock-scanner"
type = "serial"
port = "{scanner.port}"
terminator = "crlf"
mode = "receive"

[[shelf]]
name = "shelf-a"
protocol = "hx711-bridge"
port = "{shelf.link_path or shelf.path}"
bins = ["A-01-1", "A-01-2"]
scale_per_g = 100.0
""")

    files = contextlib.ExitStack()
    logs = {name: files.enter_context(open(work / f"{name}.log", "ab")) for name in ("hub", "edge")}
    procs: dict[str, subprocess.Popen[bytes]] = {}
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        procs["hub"] = subprocess.Popen([sys.executable, "-m", "hub.cli", "serve", "--config", str(hub_config)],
                                        stdout=logs["hub"], stderr=subprocess.STDOUT)
        wait_for_port("127.0.0.1", http_port, 30)
        admin_password = secrets.token_urlsafe(9)
        subprocess.run([sys.executable, "-m", "hub.cli", "add-user", "admin", "--role", "admin", "--password-stdin",
                        "--config", str(hub_config)], input=admin_password + "\n", text=True, check=True,
                       stdout=subprocess.DEVNULL)
        procs["edge"] = subprocess.Popen([sys.executable, "-m", "edge.cli", "run", "--config", str(edge_config)],
                                         stdout=logs["edge"], stderr=subprocess.STDOUT)
        print(f"\n  Hub page:  http://127.0.0.1:{http_port}/\n"
              f"  Login:     admin / {admin_password}\n"
              f"  Logs:      {work}/hub.log, {work}/edge.log\n"
              f"  Scanner:   a virtual serial scanner scans every ~{args.scan_interval_s:g} s; "
              f"shelf A-01 runs a pick/restock scenario\n"
              f"  Stop:      Ctrl+C\n", flush=True)
        while not stop.wait(0.5):
            for name, proc in procs.items():
                if proc.poll() is not None:
                    log.error("%s exited with code %s; see %s/%s.log", name, proc.returncode, work, name)
                    stop.set()
    finally:
        log.info("stopping")
        for name in ("edge", "hub"):
            proc = procs.get(name)
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
        scanner.stop()
        shelf.stop()
        broker.stop()
        files.close()
        log.info("stopped; files are in %s", work)
    return 0


def _port_free(port: int) -> bool:
    import socket
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


if __name__ == "__main__":
    sys.exit(main())
