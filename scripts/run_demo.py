"""The demo: a private broker, the reference central purchasing, the hub, and one edge agent
with a virtual scanner and a virtual two-bin shelf working a realistic shift.

Everything runs as it would in production (separate processes, a Mosquitto with a
password file and ACL, real SQLite files, real HTTP to central purchasing); only the
scanner and the load cells are simulated, on ptys. A worker thread plays the shift: the
scanner and the shelf are driven together, so most picks are confirmed by the weight,
and now and then something goes wrong on purpose (a pick nobody scanned, a misread) so
the hub has something to say. Ctrl+C stops everything cleanly. Run through `./scripts/demo`.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

from edge.scan.sim import VirtualScanner, gs1_128
from edge.shelf.sim import SimBin, VirtualController, start_simulator
from hub.mosquitto import HUB_USER, PrivateBroker, free_port, wait_for_port

log = logging.getLogger("demo")

SITE = "demo"
NODE = "pi-demo-1"
BOLT, TIES, GLOVES = "9506000134352", "4012345678901", "4006381333931"
CATALOG_CSV = f"""sku,name,gtin,bin,zone,node,sensored,weight_only,unit_weight_g,unit_weight_cv
BOLT-M8-40,"Hex bolt M8x40, box of 50",0{BOLT},A-01-1,A,{NODE},yes,no,410,0.01
TIES-200,"Cable ties 200 mm, bag of 100",0{TIES},A-01-2,A,{NODE},yes,no,120,0.02
GLOVES-L,"Work gloves size L, pair",0{GLOVES},B-01-1,B,{NODE},no,no,,
"""


class Shift:
    """One worker's shift, driving the virtual scanner and the virtual shelf together."""

    def __init__(self, scanner: VirtualScanner, shelf: VirtualController, pace_s: float, seed: int = 3) -> None:
        self.scanner = scanner
        self.shelf = shelf
        self.pace_s = pace_s
        self.rng = random.Random(seed)
        self.stop = threading.Event()
        self.po = 4500012000

    def scan(self, *barcodes: str) -> bool:
        for code in barcodes:
            if self.stop.wait(self.pace_s * self.rng.uniform(0.3, 0.7)):
                return False
            log.info("scan %r", code)
            self.scanner.scan(code)
        return True

    def pause(self, seconds: float) -> bool:
        return not self.stop.wait(seconds)

    def run(self) -> None:
        # Opening count: the ledger learns what the shelves already hold.
        self.scan("MODE:COUNT", "LOC:A-01-1", f"QTY:{self.shelf.count(0)}", BOLT,
                  "LOC:A-01-2", f"QTY:{self.shelf.count(1)}", TIES, "LOC:B-01-1", "QTY:40", GLOVES)
        round_no = 0
        while not self.stop.is_set():
            round_no += 1
            self.po += 1
            cartons = self.rng.randint(1, 2)
            # A delivery of cable ties against a purchase order, put away to its shelf bin.
            ok = self.scan("MODE:RECEIVE", f"PO:{self.po}",
                           *[gs1_128(TIES, f"L{self.rng.randint(100, 999)}", "271231", 6) for _ in range(cartons)])
            ok = ok and self.scan("MODE:PUTAWAY", "LOC:A-01-2")
            for _ in range(cartons):
                self.shelf.restock(1, 6, hand_s=1.5)
                ok = ok and self.scan(gs1_128(TIES, "L100", "271231", 6)) and self.pause(3)
            # Picks confirmed by the shelf: the hand takes what the scanner says.
            picks = self.rng.randint(1, 3)
            ok = ok and self.scan("MODE:PICK", "LOC:A-01-1")
            self.shelf.pick(0, picks, hand_s=1.5)
            ok = ok and self.scan(*[BOLT] * picks) and self.pause(3)
            ok = ok and self.scan("LOC:B-01-1", *[GLOVES] * self.rng.randint(1, 4))
            if round_no % 3 == 0:  # something taken from a bin without a scan
                self.shelf.pick(1, 1, hand_s=1.0)
            if round_no % 4 == 0:  # a misread label: the worker is told, the hub shows it
                ok = ok and self.scan(BOLT[:-1] + str((int(BOLT[-1]) + 3) % 10))
            if round_no % 5 == 0:  # a cycle count of the unsensored bin
                ok = ok and self.scan("MODE:COUNT", "LOC:B-01-1", f"QTY:{self.rng.randint(25, 40)}", GLOVES)
            if not ok or not self.pause(self.pace_s * 6):  # a break: the bins go quiet and are judged
                return


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default="demo-run", help="where the demo keeps its files (recreated)")
    parser.add_argument("--http-port", type=int, default=8080, help="hub page port (a free one if taken)")
    parser.add_argument("--pace-s", type=float, default=2.0, help="seconds between a worker's scans, roughly")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s demo: %(message)s", datefmt="%H:%M:%S")

    work = Path(args.workdir).resolve()
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    http_port = args.http_port if port_free(args.http_port) else free_port()
    central_port = free_port()

    broker = PrivateBroker(work / "mosquitto", own_session=True)
    hub_password, node_password = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
    broker.add_user(HUB_USER, hub_password)
    broker.add_user(NODE, node_password)
    broker.start()
    log.info("private Mosquitto on 127.0.0.1:%d (password file and ACL in %s)", broker.port, broker.workdir)

    scanner = VirtualScanner(link_path=work / "scanner-tty")
    shelf = start_simulator([SimBin(unit_weight_g=410.0, unit_cv=0.01, pieces=20, container_g=0.0),
                             SimBin(unit_weight_g=120.0, unit_cv=0.02, pieces=30, container_g=0.0)],
                            protocol="hx711-bridge", seed=7, link_path=work / "shelf-tty")

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
[reconcile]
# One machine, no clock skew: a short window makes the demo's verdicts quick.
window_s = 8.0
[central]
base_url = "http://127.0.0.1:{central_port}"
poll_interval_s = 10.0
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
    catalog = write(work / "catalog.csv", CATALOG_CSV)

    files = contextlib.ExitStack()
    logs = {name: files.enter_context(open(work / f"{name}.log", "ab")) for name in ("central", "hub", "edge")}
    procs: dict[str, subprocess.Popen[bytes]] = {}
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    shift = Shift(scanner, shelf, args.pace_s)
    try:
        procs["central"] = subprocess.Popen(
            [sys.executable, "-m", "central_reference.cli", "--db", str(work / "central.sqlite3"),
             "--port", str(central_port), "--seed-demo", "--cash", SITE, "25000"],
            stdout=logs["central"], stderr=subprocess.STDOUT, start_new_session=True)
        subprocess.run([sys.executable, "-m", "hub.cli", "--log-level", "WARNING", "import-catalog", str(catalog),
                        "--config", str(hub_config), "--no-progress"], check=True, stdout=subprocess.DEVNULL)
        # Own sessions: Ctrl+C reaches only this script, which stops them in order (edge, hub,
        # central, broker) instead of the terminal signalling every process at once.
        procs["hub"] = subprocess.Popen([sys.executable, "-m", "hub.cli", "serve", "--config", str(hub_config)],
                                        stdout=logs["hub"], stderr=subprocess.STDOUT, start_new_session=True)
        wait_for_port("127.0.0.1", http_port, 30)
        admin_password = secrets.token_urlsafe(9)
        subprocess.run([sys.executable, "-m", "hub.cli", "add-user", "admin", "--role", "admin", "--password-stdin",
                        "--config", str(hub_config)], input=admin_password + "\n", text=True, check=True,
                       stdout=subprocess.DEVNULL)
        procs["edge"] = subprocess.Popen([sys.executable, "-m", "edge.cli", "run", "--config", str(edge_config)],
                                         stdout=logs["edge"], stderr=subprocess.STDOUT, start_new_session=True)
        threading.Thread(target=shift.run, name="shift", daemon=True).start()
        print(f"\n  Hub page:  http://127.0.0.1:{http_port}/   (login: admin / {admin_password})\n"
              f"  Central:   http://127.0.0.1:{central_port}/v1  (the REFERENCE central purchasing service)\n"
              f"  Logs:      {work}/hub.log, edge.log, central.log\n"
              f"  The shift: receive and put away cable ties (shelf A-01-2), pick bolts (shelf A-01-1) and gloves\n"
              f"             (B-01-1, no sensor); now and then a pick nobody scanned and a misread label.\n"
              f"  Stop:      Ctrl+C\n", flush=True)
        while not stop.wait(0.5):
            for name, proc in procs.items():
                if proc.poll() is not None:
                    log.error("%s exited with code %s; see %s/%s.log", name, proc.returncode, work, name)
                    stop.set()
    finally:
        log.info("stopping")
        shift.stop.set()
        for name in ("edge", "hub", "central"):
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


if __name__ == "__main__":
    sys.exit(main())
