"""A local Tryton ERP as central purchasing, for the demo and the tests: built once, served by trytond.

`build_template` makes a SQLite database with Tryton's purchase and stock modules activated
and seeded like the reference catalog (demo_catalog: suppliers as parties, SKUs as products
with their supplier prices and lead times, a company, a warehouse bin per demo location, and
a user for the hub in the groups Purchase and Stock). Activation takes a minute, so the
result is kept under `cache_dir`, keyed by the trytond version and SEED_VERSION, and copied
for each use. `TrytonServer` runs the real `trytond` on a port over such a copy.

Seeding speaks Tryton's JSON-RPC as an administrator would (the hub's own connector is in
hub/purchasing/tryton.py); nothing here imports Tryton's model classes.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

from central_reference.store import demo_catalog

DATABASE = "shelf"
HUB_USER, HUB_PASSWORD = "shelfsignal", "shelfsignal-hub-1"  # a demo's and a test's Tryton only
ADMIN_PASSWORD = "admin-password-1"
MODULES = ("purchase", "stock_lot", "stock_lot_sled")
SEED_VERSION = 1  # bump when the seed below changes: the cached template is rebuilt
CACHE_DIR = Path(__file__).resolve().parent.parent / "build" / "tryton"  # the checkout's; tests and demo share it
BINS = ("DOCK", "A-01-1", "A-01-2", "B-02-1")  # storage locations the hub's bins map to (put-away)


def trytond_bin(name: str) -> str:
    """A trytond command installed next to this Python (the `tryton` extra)."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise RuntimeError(f"{name} is not installed: run scripts/setup.sh test (the 'tryton' extra)")
    return str(path)


def _config(data_dir: Path, port: int) -> Path:
    conf = data_dir / "trytond.conf"
    conf.write_text(f"[database]\nuri = sqlite://\npath = {data_dir}\n[web]\nlisten = 127.0.0.1:{port}\n"
                    "[session]\nmax_attempt = 100\n")
    return conf


class Rpc:
    """A blocking JSON-RPC client for seeding (the hub's is asynchronous: hub/purchasing/tryton_rpc.py)."""

    def __init__(self, url: str, user: str, password: str) -> None:
        self.url = f"{url}/{DATABASE}/rpc/"
        self.auth = ""
        uid, session = self.call("common.db.login", user, {"password": password}, "en")[:2]
        self.auth = "Session " + base64.b64encode(f"{user}:{uid}:{session}".encode()).decode()
        prefs = self.call("model.res.user.get_preferences", True, {})
        self.context: dict[str, Any] = {k: prefs[k] for k in ("company", "language") if prefs.get(k) is not None}

    def call(self, method: str, *params: Any) -> Any:
        body = json.dumps({"id": 1, "method": method, "params": list(params)}).encode()
        headers = {"Content-Type": "application/json", **({"Authorization": self.auth} if self.auth else {})}
        with urllib.request.urlopen(urllib.request.Request(self.url, body, headers), timeout=60) as resp:
            out = json.load(resp)
        if out.get("error"):
            raise RuntimeError(f"Tryton {method}: {out['error']}")
        return out["result"]

    def model(self, model: str, method: str, *args: Any) -> Any:
        return self.call(f"model.{model}.{method}", *args, self.context)

    def one(self, model: str, domain: list[Any]) -> int:
        (found,) = self.model(model, "search", domain, 0, None, None)
        return int(found)


def decimal(value: float | str) -> dict[str, str]:
    return {"__class__": "Decimal", "decimal": str(value)}


def days(n: float) -> dict[str, Any]:
    return {"__class__": "timedelta", "seconds": n * 86400}


class TrytonServer:
    """`trytond` serving the database in `data_dir` on `port` (a real server process)."""

    def __init__(self, data_dir: Path, port: int) -> None:
        self.data_dir, self.port = data_dir, port
        self.url = f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.log = data_dir / "trytond.log"

    def _spawn(self) -> subprocess.Popen[bytes]:
        conf = _config(self.data_dir, self.port)
        with open(self.log, "ab") as log:
            # -d: load the database's modules at start (a pool first loaded by a request answered
            # KeyError 'res.user' in trytond 8.0 here)
            return subprocess.Popen([trytond_bin("trytond"), "-c", str(conf), "-d", DATABASE],
                                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def start(self, timeout_s: float = 60.0) -> None:
        """Start and wait until it answers. Started again on the same port (after a stop), the port
        can be briefly taken by another program's outgoing connection: trytond then exits saying
        so, and is started again until the deadline."""
        self.process = self._spawn()
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                Rpc(self.url, "admin", ADMIN_PASSWORD)
                return
            except (OSError, urllib.error.URLError, RuntimeError) as err:
                if self.process.poll() is not None:
                    if "in use by another program" in self.log.read_text(errors="replace")[-2000:] \
                            and time.monotonic() < deadline:
                        time.sleep(0.5)
                        self.process = self._spawn()
                        continue
                    raise RuntimeError(f"trytond exited with {self.process.returncode}; see {self.log}") from err
                if time.monotonic() > deadline:
                    raise RuntimeError(f"trytond not answering after {timeout_s} s; see {self.log}") from err
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two runs building the same template wait for each other
        yield


def build_template(cache_dir: Path, port: int) -> Path:
    """The seeded database file (built on first use, then reused): copy it, never open it in place."""
    target = cache_dir.resolve() / f"trytond-{version('trytond')}-seed{SEED_VERSION}" / f"{DATABASE}.sqlite"
    with _locked(target.with_suffix(".lock")):
        if target.exists():
            return target
        activated = _activated(target.parent, port)
        work = target.parent / "seeding"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        shutil.copy(activated, work / f"{DATABASE}.sqlite")
        server = TrytonServer(work, port)
        server.start()
        try:
            seed(Rpc(server.url, "admin", ADMIN_PASSWORD))
        finally:
            server.stop()
        _one_file(work / f"{DATABASE}.sqlite")
        os.replace(work / f"{DATABASE}.sqlite", target)
        shutil.rmtree(work, ignore_errors=True)
        return target


def _activated(folder: Path, port: int) -> Path:
    """The database with the modules activated and nothing else (the slow part, kept on its own)."""
    done = folder / "activated.sqlite"
    if done.exists():
        return done
    work = folder / "activating"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    (work / f"{DATABASE}.sqlite").touch()  # the SQLite backend opens, not creates, the file
    (work / "admin-password").write_text(ADMIN_PASSWORD)
    result = subprocess.run([trytond_bin("trytond-admin"), "-c", str(_config(work, port)), "-d", DATABASE,
                             "--all", "--email", "admin@example.com", "-u", *MODULES, "--activate-dependencies"],
                            capture_output=True, text=True, timeout=900,
                            env={**os.environ, "TRYTONPASSFILE": str(work / "admin-password")})
    if result.returncode != 0:
        raise RuntimeError(f"trytond-admin failed ({result.returncode}):\n{result.stdout[-2000:]}{result.stderr[-4000:]}")
    _one_file(work / f"{DATABASE}.sqlite")
    os.replace(work / f"{DATABASE}.sqlite", done)
    shutil.rmtree(work, ignore_errors=True)
    return done


def _one_file(db_path: Path) -> None:
    """Tryton keeps SQLite in WAL mode: fold the log in so the database is one file to copy."""
    db = sqlite3.connect(db_path)
    try:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.execute("PRAGMA journal_mode=DELETE")
    finally:
        db.close()


def seed(rpc: Rpc) -> None:
    """A company, the demo catalog's suppliers and SKUs, the warehouse bins and the hub's user."""
    groups = {g["name"]: g["id"] for g in rpc.model("res.group", "search_read", [], 0, None, None, ["name"])}
    admin = rpc.one("res.user", [("login", "=", "admin")])
    rpc.model("res.user", "write", [admin], {"groups": [("add", [groups["Purchase"], groups["Purchase Administrator"],
                                                                  groups["Stock"], groups["Stock Administration"],
                                                                  groups["Product Administration"]])]})
    (eur,) = rpc.model("currency.currency", "create", [{"name": "Euro", "code": "EUR", "symbol": "€",
                                                         "rounding": decimal("0.01"), "digits": 2}])
    (company_party,) = rpc.model("party.party", "create", [{"name": "Shelfsignal Demo Site"}])
    (company,) = rpc.model("company.company", "create", [{"party": company_party, "currency": eur}])
    rpc.model("res.user", "write", [admin], {"companies": [("add", [company])], "company": company})
    rpc.context = {"company": company}
    # Purchases are invoiced by hand here: the demo keeps no chart of accounts.
    rpc.model("purchase.configuration", "write", [1], {"purchase_invoice_method": "manual"})
    suppliers: dict[str, int] = {}
    for item in demo_catalog():
        for s in item["suppliers"]:
            if s["supplier"] not in suppliers:
                (party,) = rpc.model("party.party", "create", [{"name": s["name"], "code": s["supplier"],
                                                                 "addresses": [("create", [{}])]}])
                suppliers[s["supplier"]] = party
    unit = rpc.one("product.uom", [("symbol", "=", "u")])
    for item in demo_catalog():
        rpc.model("product.template", "create", [{
            "name": item["description"], "type": "goods", "default_uom": unit, "purchasable": True,
            "purchase_uom": unit, "list_price": decimal(round(item["suppliers"][0]["unit_price"] * 1.5, 2)),
            "products": [("create", [{"suffix_code": item["sku"],
                                      "identifiers": [("create", [{"type": "ean", "code": item["gtin"]}])]}])],
            "product_suppliers": [("create", [{
                "party": suppliers[s["supplier"]], "sequence": s["priority"], "lead_time": days(s["lead_time_days"]),
                "prices": [("create", [{"quantity": s["moq"], "unit_price": decimal(s["unit_price"])}])]}
                for s in sorted(item["suppliers"], key=lambda s: s["priority"])])]}])
    (warehouse,) = rpc.model("stock.location", "search_read", [("code", "=", "WH")], 0, None, None,
                             ["storage_location"])
    rpc.model("stock.location", "create", [{"name": b, "code": b, "type": "storage",
                                            "parent": warehouse["storage_location"]} for b in BINS])
    rpc.model("res.user", "create", [{"name": "shelfsignal hub", "login": HUB_USER, "password": HUB_PASSWORD,
                                      "companies": [("add", [company])], "company": company,
                                      "groups": [("add", [groups["Purchase"], groups["Stock"]])]}])


def main() -> int:
    """`python -m central_reference.tryton_local`: build the seeded template into CACHE_DIR now.

    scripts/test runs this before pytest, so the minutes of a first build are not charged to
    whichever Tryton test happens to run first (pytest-timeout counts fixture set-up).
    """
    import socket

    with socket.socket() as sock:  # a free port for the seeding trytond
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    print(build_template(CACHE_DIR, port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
