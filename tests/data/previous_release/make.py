"""Make the previous release's databases (run with that release's code on PYTHONPATH) and dump them as SQL.

    PYTHONPATH=/path/to/previous/checkout .venv/bin/python tests/data/previous_release/make.py tests/data/previous_release

The dumps are committed: tests/test_migrations.py loads them and upgrades them with today's code.
"""

import sqlite3
import sys
import tempfile
from pathlib import Path

from hub.auth.roles import Role
from hub.auth.store import AuthStore
from hub.rules.decisions import Decision
from hub.rules.store import RulesDb
from hub.store import SqliteStore

out = Path(sys.argv[1])
with tempfile.TemporaryDirectory() as tmp:
    ledger = SqliteStore(Path(tmp) / "ledger.sqlite3")
    with ledger.write() as tx:
        for seq, (sku, loc, delta) in enumerate([("SKU-1", "A-01-1", 12), ("SKU-1", "A-01-1", -2),
                                                 ("SKU-2", "B-02-1", 5)], start=1):
            eid = tx.insert_event("node-a", "s1", seq, "scan", 1_700_000_000_000 + seq, 1, 2, 3,
                                  f'{{"gtin": "0000000000{seq}", "qty": {delta}}}')
            assert eid is not None
            tx.add_movement(eid, sku, loc, delta, "scan", 1_700_000_000_000 + seq, 1_700_000_000_100 + seq)
        tx.set_stream("node-a", "s1", 3, 3, 1_700_000_000_200)
        tx.update_node("node-a", online=True, stream="s1", notices=["state restored"])
        tx.quarantine(1_700_000_000_300, "wh/v1/site-a/node-a/evt", "node-a", "not JSON", b"\xff garbage")
    ledger.close()
    rules = RulesDb(Path(tmp) / "rules.sqlite3")
    with rules.tx():
        rules.log_decision(Decision(1_700_000_000_000, "reorder", "SKU-1", "ordered 10 of SKU-1", {"stock": 10},
                                    {"qty": 10}, supplier="acme"))
        rules.enqueue("requisition", "key-1", "/v1/requisitions", {"sku": "SKU-1", "qty": 10}, 1_700_000_000_000)
    rules.close()
    auth = AuthStore(Path(tmp) / "auth.sqlite3")
    auth.set_user("admin", Role.ADMIN, "correct horse battery")
    auth.close()
    for name in ("ledger", "rules", "auth"):
        db = sqlite3.connect(Path(tmp) / f"{name}.sqlite3")
        (out / f"{name}.sql").write_text("\n".join(db.iterdump()) + "\n")
        db.close()
