"""The demo: a private broker, the reference central purchasing (or, with `--central tryton`, a
local Tryton ERP), the hub, and one edge agent with a virtual scanner and a virtual two-bin shelf
working a realistic shift.

Everything runs as it would in production (separate processes, a Mosquitto with a
password file and ACL, real SQLite files, real HTTP to central purchasing); only the
scanner and the load cells are simulated, on ptys. A worker thread plays the shift: the
scanner and the shelf are driven together, so picks and put-aways are confirmed by the
weight, and once per cycle four mistakes are staged on purpose (a pick nobody scanned, a
misread label, a put-away onto the neighbour's bin, someone leaning on a shelf): each is
printed with what the page should show for it, and nothing else should appear. Ctrl+C
stops everything cleanly. Run through `./scripts/demo`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from edge.scan.sim import VirtualScanner, gs1_128
from edge.shelf.pipeline import PipelineParams
from edge.shelf.sim import SimBin, VirtualController, start_simulator
from hub.mosquitto import HUB_USER, PrivateBroker, free_port
from hub.purchasing.connectors import open_connector
from hub.rules.config import TRYTON, CentralConfig
from service.testing import NotifyListener

if TYPE_CHECKING:
    from central_reference.tryton_local import TrytonServer

log = logging.getLogger("demo")

SITE = "demo"
NODE = "pi-demo-1"
BOLT, TIES, GLOVES = "9506000134352", "4012345678901", "4006381333931"
BOLT_SKU, TIES_SKU, GLOVES_SKU = "BOLT-M8-40", "TIES-200", "GLOVES-L"
# The ties arrive in cartons whose GS1-128 label names a lot and its expiry (Shift.receive_ties): the
# catalog keeps them by lot, so the page shows which lots each bin holds (docs/ledger.md, "Lots").
CATALOG_CSV = f"""sku,name,gtin,bin,zone,node,sensored,weight_only,unit_weight_g,unit_weight_cv,tracking
BOLT-M8-40,"Hex bolt M8x40, box of 50",0{BOLT},A-01-1,A,{NODE},yes,no,410,0.01,
TIES-200,"Cable ties 200 mm, bag of 100",0{TIES},A-01-2,A,{NODE},yes,no,120,0.02,lot
GLOVES-L,"Work gloves size L, pair",0{GLOVES},B-01-1,B,{NODE},no,no,,,
"""
TIES_EXPIRY_YYMMDD = "491231"  # on every delivered carton of ties: no lot expires during the demo
# The ties on the shelf when the shift starts: one lot, expiring before the deliveries' lots, so
# first-expiry-first-out picks take it first and the delivered lots stay on the shelf (and the page).
OPENING_TIES_LOT, OPENING_TIES_EXPIRY_YYMMDD = "L050", "481231"


RUNG_DOWN_G = 0.2  # the shelf's ring-down below this is at rest for the edge (its settle spread is 1.5 g)
SETTLE_MARGIN_S = 0.5  # after a settle window at rest: the edge's count is published by then
CAPACITY_G = 20000.0  # the edge's default shelf capacity_g: the shift keeps every bin well below it
LABEL_PREFIXES = ("MODE:", "LOC:", "QTY:", "PO:", "OP:", "CLEAR")  # control labels: no event of their own
CYCLE_ROUNDS = 6  # the shift repeats a cycle of this many rounds; each cycle stages its mistakes once
# A person leaning on the bolts' shelf: with the bolts (5-8 kg) above CAPACITY_G at the peak of
# the sway, and the rebound when they let go (30 % of the force) never lifts the platform below zero.
OVERLOAD_FORCE_G = 20000.0
OVERLOAD_S = 20  # long enough to see on the page (the shelf never settles while it lasts)


@dataclass(frozen=True, slots=True)
class Staged:
    """A mistake the shift makes on purpose, and exactly what the hub must show for it."""

    what: str  # what happened on the floor
    shows_as: str  # "discrepancy", "fault" or "rejected scan"
    kind: str  # the discrepancy kind, the shelf fault, or "rejected"
    bin: str
    sku: str | None = None

    def sentence(self) -> str:
        about = f" for {self.sku}" if self.sku else ""
        words = self.kind.replace("_", " ")  # as the page's headings say it
        return f"{self.what}: look on the page for {self.shows_as} '{words}' at {self.bin}{about}"


# The cycle's staged mistakes by round (1-based within the cycle); the other rounds are clean.
# They come first in the cycle, so a short run (--rounds 4) shows each once.
STAGED: dict[int, Staged] = {
    1: Staged("1 bolt taken from A-01-1 without a scan", "discrepancy", "unscanned_removal", "A-01-1", "BOLT-M8-40"),
    2: Staged("a damaged bolt label misread at A-01-1 (error beep; the worker rescans it)", "rejected scan",
              "rejected", "A-01-1"),
    3: Staged("6 cable ties put away onto shelf A-01-2 after scanning the neighbour's label A-01-1", "discrepancy",
              "wrong_bin", "A-01-1", "TIES-200"),
    4: Staged(f"someone leans on the bolts' shelf A-01-1 (up to {OVERLOAD_FORCE_G / 1000:.0f} kg) for {OVERLOAD_S} s",
              "fault", "overload", "A-01-1"),
}



class Buyer:
    """The site's buyer: places each delivery's purchase order at central before it arrives.

    The worker then scans a PO number central knows, and central books the receipt to that
    order's line, as at a real dock. (A made-up number would make every delivery a receipt
    central cannot book, one decision-log line each: not a mistake the demo stages.)
    """

    def __init__(self, central: CentralConfig, site: str) -> None:
        self.central = central
        self.site = site

    def order(self, sku: str, qty: int) -> str | None:
        """The new PO's number, or None (said in the log) when central would not take it."""
        try:
            return asyncio.run(self._order(sku, qty))
        except Exception as err:  # the demo goes on: the goods still arrive, matched first-in-first-out
            log.warning("the buyer could not order %d %s at central (%s): the delivery is received without a PO",
                        qty, sku, err)
            return None

    async def _order(self, sku: str, qty: int) -> str | None:
        async with open_connector(self.central) as connector:
            item = next(i for i in await connector.catalog() if i["sku"] == sku)
            supplier = min(item["suppliers"], key=lambda s: s["priority"])["supplier"]
            requisition = f"demo-buyer-{secrets.token_hex(6)}"
            answer = await connector.place_order(requisition, {
                "site": self.site, "supplier": supplier, "requested_ms": int(time.time() * 1000),
                "lines": [{"requisition_id": requisition, "sku": sku, "qty": qty}]})
        line = answer["lines"][0]
        if line.get("refused"):
            raise RuntimeError(line["refused"])
        return str(line["po_id"])


def tie_carton(lot: str) -> str:
    """The GS1-128 label of a delivered carton of 6 bags of ties of one lot."""
    return gs1_128(TIES, lot, TIES_EXPIRY_YYMMDD, 6)


def tie_bag(lot: str, expiry_yymmdd: str) -> str:
    """The GS1-128 label of one bag of ties (GTIN, expiry, lot; no count: one piece)."""
    return f"]C101{'0' + TIES}17{expiry_yymmdd}10{lot}"


class Shift:
    """One worker's shift, driving the virtual scanner and the virtual shelf together.

    Balanced: what is picked from a bin is received and put back, so no shelf fills up or
    runs dry; a bin's load stays far below CAPACITY_G unless a round stages an overload.
    Each staged mistake happens alone on a quiet shelf (nothing else at that bin for a
    reconciliation window before and after), is logged as it happens and written to
    `staged_path` (one JSON object per line), so the page can be checked against it.
    """

    def __init__(self, scanner: VirtualScanner, shelf: VirtualController, pace_s: float, quiet_s: float,
                 staged_path: Path, rounds: int = 0, seed: int = 3,
                 order: Callable[[str, int], str | None] | None = None) -> None:
        self.scanner = scanner
        self.shelf = shelf
        self.pace_s = pace_s
        self.quiet_s = quiet_s
        self.staged_path = staged_path
        self.rounds = rounds
        self.rng = random.Random(seed)
        self.stop = threading.Event()
        self.done = threading.Event()
        # Who orders each delivery at central (the buyer); without one (a test of the choreography
        # alone), made-up PO numbers.
        self.order = order or self._made_up_po
        self.last_po = 4500012000
        self.gloves = 40  # the unsensored bin's truth, kept by the shift itself
        # The lot of the ties a wrong-bin put-away booked to A-01-1 (6 of them), until the next count.
        self.ties_lot_at_bolt_bin: str | None = None
        self.item_scans = 0  # scans that become events (accepted or rejected); labels only change the mode
        self.counted = False  # the opening count is done

    # ------------------------------------------------------------------ the worker's hands

    def _made_up_po(self, sku: str, qty: int) -> str:
        self.last_po += 1
        return str(self.last_po)

    def receive_labels(self, sku: str, qty: int) -> tuple[str, ...]:
        """MODE:RECEIVE and the delivery's PO label (none when the buyer could not order it)."""
        po = self.order(sku, qty)
        return ("MODE:RECEIVE",) if po is None else ("MODE:RECEIVE", f"PO:{po}")

    def scan(self, *barcodes: str) -> bool:
        for code in barcodes:
            if self.stop.wait(self.pace_s * self.rng.uniform(0.3, 0.7)):
                return False
            self._scan_now(code)
        return True

    def scan_in_hand(self, hand_s: float, *barcodes: str) -> bool:
        """Scan the goods while the hand is still in the bin (call it right after starting the movement).

        The hub pairs a scan with the movement whose span holds it or lies nearest (docs/ledger.md):
        scanned while the hand is in the bin, each scan is its own movement's whatever the pace. A
        scan made seconds after the shelf settled lies nearer the next movement at a busy bin and is
        paired with that one, which would show the worker's good picks as discrepancies.
        """
        gap_s = hand_s / (len(barcodes) + 1)
        for code in barcodes:
            if self.stop.wait(gap_s * self.rng.uniform(0.8, 1.2)):
                return False
            self._scan_now(code)
        return True

    def _scan_now(self, code: str) -> None:
        log.info("scan %r", code)
        self.scanner.scan(code)
        if not code.startswith(LABEL_PREFIXES):
            self.item_scans += 1

    def settle(self) -> bool:
        """Wait until the hands are off the shelf, it has rung down, and the edge has seen it at rest.

        The edge calls a shelf settled once a whole settle window of samples lies within a few
        divisions; a hand arriving sooner makes two movements one (their net change, judged on
        the sum), which is not what the shift means to show.
        """
        while not self.shelf.still(RUNG_DOWN_G):
            if self.stop.wait(0.05):
                return False
        return not self.stop.wait(PipelineParams().settle_window_s + SETTLE_MARGIN_S)

    def quiet(self) -> bool:
        """Leave the shelf alone for a reconciliation window, so a staged mistake is judged on its own."""
        return self.settle() and not self.stop.wait(self.quiet_s)

    def stage(self, mistake: Staged) -> None:
        log.warning("STAGED MISTAKE: %s", mistake.sentence())
        with self.staged_path.open("a") as out:
            out.write(json.dumps(asdict(mistake)) + "\n")

    # ------------------------------------------------------------------ the shift

    def run(self) -> None:
        try:
            round_no = 0
            while not self.stop.is_set() and (self.rounds == 0 or round_no < self.rounds):
                round_no += 1
                step = (round_no - 1) % CYCLE_ROUNDS + 1
                ok = (step != 1 or self.count_all()) and self.work()
                mistake = STAGED.get(step)
                if ok and mistake is not None:
                    # Alone on a quiet shelf, so it is judged on its own (a misread is judged by the scanner).
                    judged_by_shelf = mistake.shows_as != "rejected scan"
                    ok = ((not judged_by_shelf or self.quiet()) and self.make(mistake, step)
                          and (not judged_by_shelf or self.quiet()))
                if not ok or not self.pause(self.pace_s * 6):  # a break: the bins go quiet and are judged
                    return
            if self.quiet():
                log.info("the shift is over after %d round(s)", round_no)
                self.done.set()
        except Exception:
            log.exception("the shift stopped")

    def pause(self, seconds: float) -> bool:
        return not self.stop.wait(seconds)

    def count_all(self) -> bool:
        """A cycle count of every bin: the ledger learns (or relearns) what the shelves hold."""
        codes = ["MODE:COUNT", "LOC:A-01-1", f"QTY:{self.shelf.count(0)}", BOLT]
        if self.ties_lot_at_bolt_bin is not None:
            # The wrong-bin put-away's ties were never here: none of that lot (the carton's label names it).
            codes += ["QTY:0", tie_carton(self.ties_lot_at_bolt_bin)]
            self.ties_lot_at_bolt_bin = None
        # The opening count scans a bag of the ties' one lot (the ledger learns the lot); later counts
        # scan the plain EAN: the shelf then holds several lots, and the count is of the SKU.
        ties = TIES if self.counted else tie_bag(OPENING_TIES_LOT, OPENING_TIES_EXPIRY_YYMMDD)
        codes += ["LOC:A-01-2", f"QTY:{self.shelf.count(1)}", ties, "LOC:B-01-1", f"QTY:{self.gloves}", GLOVES]
        self.counted = True
        return self.scan(*codes) and self.settle()

    def work(self) -> bool:
        """A clean round: a delivery of ties put away and picked for orders, bolts and gloves picked, restocks."""
        cartons = self.rng.randint(1, 2)
        lot = f"L{self.rng.randint(100, 999)}"
        if not self.receive_ties(cartons, lot, "A-01-2"):
            return False
        for pieces in [3] * (2 * cartons):  # orders of 3 ties, as many as were put away
            if not self.scan("MODE:PICK", "LOC:A-01-2", f"QTY:{pieces}"):
                return False
            self.shelf.pick(1, pieces, hand_s=1.5)
            if not (self.scan_in_hand(1.5, TIES) and self.settle()):
                return False
        bolts = self.rng.randint(1, 3)
        if not self.scan("LOC:A-01-1"):
            return False
        self.shelf.pick(0, bolts, hand_s=1.5)
        if not (self.scan_in_hand(1.5, *[BOLT] * bolts) and self.settle()):
            return False
        gloves = min(self.rng.randint(1, 4), self.gloves)
        self.gloves -= gloves
        if not self.scan("LOC:B-01-1", *[GLOVES] * gloves):
            return False
        if self.shelf.count(0) < 12:
            refill = 20 - self.shelf.count(0)
            if not self.scan(*self.receive_labels(BOLT_SKU, refill), f"QTY:{refill}", BOLT,
                             "MODE:PUTAWAY", "LOC:A-01-1", f"QTY:{refill}"):
                return False
            self.shelf.restock(0, refill, hand_s=2.0)
            if not (self.scan_in_hand(2.0, BOLT) and self.settle()):
                return False
        if self.gloves < 15:
            if not self.scan(*self.receive_labels(GLOVES_SKU, 25), "QTY:25", GLOVES, "MODE:PUTAWAY", "LOC:B-01-1",
                             "QTY:25", GLOVES):
                return False
            self.gloves += 25
        return True

    def receive_ties(self, cartons: int, lot: str, scanned_bin: str) -> bool:
        """A delivery of ties of one lot against a PO, put away carton by carton onto shelf A-01-2."""
        carton = tie_carton(lot)
        if not self.scan(*self.receive_labels(TIES_SKU, 6 * cartons), *[carton] * cartons, "MODE:PUTAWAY",
                         f"LOC:{scanned_bin}"):
            return False
        for _ in range(cartons):
            self.shelf.restock(1, 6, hand_s=1.5)
            if not (self.scan_in_hand(1.5, carton) and self.settle()):
                return False
        return True

    def make(self, mistake: Staged, step: int) -> bool:
        """Make the cycle's staged mistake, and say so."""
        self.stage(mistake)
        if step == 1:  # a pick nobody scanned
            self.shelf.pick(0, 1, hand_s=1.0)
            return self.settle()
        if step == 2:  # a misread: the damaged label is refused, the good one accepted
            damaged = BOLT[:-1] + str((int(BOLT[-1]) + 3) % 10)
            if not self.scan("MODE:PICK", "LOC:A-01-1"):
                return False
            self.shelf.pick(0, 1, hand_s=1.5)
            return self.scan_in_hand(1.5, damaged, BOLT) and self.settle()
        if step == 3:  # the right shelf, the neighbour's label: the ledger books A-01-1
            self.ties_lot_at_bolt_bin = f"L{self.rng.randint(100, 999)}"
            ok = self.receive_ties(1, self.ties_lot_at_bolt_bin, "A-01-1")
            # The ties went onto A-01-2 after all: orders take them back out (scanned there).
            if not (ok and self.quiet() and self.scan("MODE:PICK", "LOC:A-01-2", "QTY:6")):
                return False
            self.shelf.pick(1, 6, hand_s=1.5)
            return self.scan_in_hand(1.5, TIES) and self.settle()
        if step == 4:  # a person leaning on the shelf: overload while it lasts, cleared when it ends
            self.shelf.add(f"lean 0 {OVERLOAD_FORCE_G} {OVERLOAD_S}")
            return self.settle()
        return True


def wait_ready(notify: NotifyListener, program: subprocess.Popen[bytes], stop: threading.Event,
               timeout_s: float = 60.0) -> str | None:
    """The program's READY status line, or None if it exited, Ctrl+C came, or timeout_s passed first."""
    deadline = time.monotonic() + timeout_s
    while not stop.is_set() and program.poll() is None and time.monotonic() < deadline:
        with contextlib.suppress(AssertionError):
            notify.wait_for(notify.has("READY"), 0.5, "READY")
            return next(m.get("STATUS", "ready") for m in notify.messages if m.get("READY") == "1")
    return None


# The hub's READY status names the port its page listens on (hub/cli.py): the one the system
# chose when the demo asked for any (--http-port 0).
HUB_READY_PORT = re.compile(r"running on port (\d+)")


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
    parser.add_argument("--http-port", type=int, default=8080, help="hub page port (a free one if taken; 0: one the system chooses, printed in the banner)")
    parser.add_argument("--pace-s", type=float, default=2.0, help="seconds between a worker's scans, roughly")
    parser.add_argument("--rounds", type=int, default=0,
                        help=f"end the shift after this many rounds (a cycle is {CYCLE_ROUNDS}); 0: until Ctrl+C")
    parser.add_argument("--window-s", type=float, default=8.0,
                        help="the hub's reconciliation window (reconcile.window_s); the shift leaves each staged "
                             "mistake this long alone, plus a margin")
    parser.add_argument("--central", choices=("reference", "tryton"), default="reference",
                        help="central purchasing: the reference service, or a local Tryton ERP (built once under "
                             "build/tryton, then copied into the workdir; docs/purchasing.md)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s demo: %(message)s", datefmt="%H:%M:%S")

    work = Path(args.workdir).resolve()
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    # 0: the hub binds a port the system chooses and says which when it is ready.
    http_port = args.http_port if args.http_port == 0 or port_free(args.http_port) else free_port()
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
window_s = {args.window_s}
[central]
base_url = "http://127.0.0.1:{central_port}"
poll_interval_s = 10.0
{central_settings(args.central, central_port)}""")
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
    buyer = Buyer(central_config(args.central, central_port), SITE)
    shift = Shift(scanner, shelf, args.pace_s, quiet_s=args.window_s + 1.0, staged_path=work / "staged.jsonl",
                  rounds=args.rounds, order=buyer.order)
    # The edge says READY (systemd's notify protocol) once it has opened its devices: the
    # worker starts scanning only then, so the opening count cannot miss a MODE: label.
    notify = NotifyListener(work / "edge-notify.sock")
    hub_notify = NotifyListener(work / "hub-notify.sock")
    tryton = None
    try:
        if args.central == "tryton":
            tryton = start_tryton(work, central_port)
            central_what = f"Tryton at http://127.0.0.1:{central_port} (database shelf, user shelfsignal)"
        else:
            procs["central"] = subprocess.Popen(
                [sys.executable, "-m", "central_reference.cli", "--db", str(work / "central.sqlite3"),
                 "--port", str(central_port), "--seed-demo", "--cash", SITE, "25000"],
                stdout=logs["central"], stderr=subprocess.STDOUT, start_new_session=True)
            central_what = f"http://127.0.0.1:{central_port}/v2  (the REFERENCE central purchasing service)"
        subprocess.run([sys.executable, "-m", "hub.cli", "--log-level", "WARNING", "import-catalog", str(catalog),
                        "--config", str(hub_config), "--no-progress"], check=True, stdout=subprocess.DEVNULL)
        # Own sessions: Ctrl+C reaches only this script, which stops them in order (edge, hub,
        # central, broker) instead of the terminal signalling every process at once.
        procs["hub"] = subprocess.Popen([sys.executable, "-m", "hub.cli", "serve", "--config", str(hub_config)],
                                        stdout=logs["hub"], stderr=subprocess.STDOUT, start_new_session=True,
                                        env={**os.environ, "NOTIFY_SOCKET": hub_notify.env_value})
        hub_ready = wait_ready(hub_notify, procs["hub"], stop)
        bound = HUB_READY_PORT.search(hub_ready or "")
        if bound is None:
            log.error("the hub did not say it was ready (or on which port: %r); see %s/hub.log", hub_ready, work)
            return 1
        http_port = int(bound.group(1))
        admin_password = secrets.token_urlsafe(9)
        subprocess.run([sys.executable, "-m", "hub.cli", "add-user", "admin", "--role", "admin", "--password-stdin",
                        "--config", str(hub_config)], input=admin_password + "\n", text=True, check=True,
                       stdout=subprocess.DEVNULL)
        procs["edge"] = subprocess.Popen([sys.executable, "-m", "edge.cli", "run", "--config", str(edge_config)],
                                         stdout=logs["edge"], stderr=subprocess.STDOUT, start_new_session=True,
                                         env={**os.environ, "NOTIFY_SOCKET": notify.env_value})
        ready = wait_ready(notify, procs["edge"], stop)
        if ready is None:
            log.error("the edge agent did not say it was ready; see %s/edge.log", work)
            return 1
        log.info("%s", ready)
        threading.Thread(target=shift.run, name="shift", daemon=True).start()
        print(f"\n  Hub page:  http://127.0.0.1:{http_port}/   (login: admin / {admin_password})\n"
              f"  Central:   {central_what}\n"
              f"  Logs:      {work}/hub.log, edge.log, {'tryton/trytond.log' if tryton else 'central.log'}\n"
              f"  The shift: receive and put away cable ties (shelf A-01-2), pick bolts (shelf A-01-1) and gloves\n"
              f"             (B-01-1, no sensor), restock what runs low; a cycle count every {CYCLE_ROUNDS} rounds.\n"
              f"  Staged mistakes, once per cycle (everything else on the page would be a real finding):\n"
              + "".join(f"    round {n}: {m.sentence()}\n" for n, m in sorted(STAGED.items()))
              + "  Stop:      Ctrl+C\n", flush=True)
        said_done = False
        while not stop.wait(0.5):
            if shift.done.is_set() and not said_done:
                said_done = True
                print(f"  The shift is over: {args.rounds} rounds, {shift.item_scans} item scans; the page keeps "
                      "running until Ctrl+C.", flush=True)
            for name, proc in procs.items():
                if proc.poll() is not None:
                    log.error("%s exited with code %s; see %s/%s.log", name, proc.returncode, work, name)
                    stop.set()
    finally:
        log.info("stopping")
        shift.stop.set()
        for name in ("edge", "hub", "central"):
            program = procs.get(name)
            if program is not None and program.poll() is None:
                program.terminate()
                try:
                    program.wait(10)
                except subprocess.TimeoutExpired:
                    program.kill()
        if tryton is not None:
            tryton.stop()
        scanner.stop()
        shelf.stop()
        notify.close()
        hub_notify.close()
        broker.stop()
        files.close()
        log.info("stopped; files are in %s", work)
    return 0


def central_config(central: str, port: int) -> CentralConfig:
    """How the hub (and the demo's buyer) reach central: the reference service, or Tryton's
    database and user."""
    base_url = f"http://127.0.0.1:{port}"
    if central != "tryton":
        return CentralConfig(base_url=base_url)
    from central_reference.tryton_local import DATABASE, HUB_PASSWORD, HUB_USER

    return CentralConfig(base_url=base_url, connector=TRYTON, tryton_database=DATABASE, tryton_user=HUB_USER,
                         token=HUB_PASSWORD)


def central_settings(central: str, port: int) -> str:
    """The hub's [central] keys beyond the URL: which connector, and Tryton's database and user."""
    config = central_config(central, port)
    if config.connector != TRYTON:
        return ""
    return (f'connector = "{config.connector}"\ntryton_database = "{config.tryton_database}"\n'
            f'tryton_user = "{config.tryton_user}"\ntoken = "{config.token}"\n')


def start_tryton(work: Path, port: int) -> TrytonServer:
    """A local Tryton over a copy of the seeded database (built the first time: a minute or two)."""
    from central_reference.tryton_local import CACHE_DIR, TrytonServer, build_template

    log.info("preparing the local Tryton (the first run activates its modules, a minute or two)")
    template = build_template(CACHE_DIR, free_port())
    data = work / "tryton"
    data.mkdir()
    shutil.copy(template, data / template.name)
    server = TrytonServer(data, port)
    server.start()
    log.info("Tryton serving on 127.0.0.1:%d", port)
    return server


if __name__ == "__main__":
    sys.exit(main())
