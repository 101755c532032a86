"""bench/ledger_scale.py's traffic, judged by the real hub: a correct day opens no discrepancy and
leaves the book equal to the floor; a misreading scanner has every misread pick flagged.

The figures of the bench mean something only if its day is work a hub judges as correct (the
bench then measures ingest, not discrepancy creation), and its `--mistakes` flood opens what
it should. Real Ingest, real ledger (SQLite, or PostgreSQL in the store pass).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from bench.ledger_scale import (
    DOCK,
    T0_MS,
    Floor,
    batches,
    catalog_lines,
    day,
    history,
    mistakes,
    replay,
)
from contract import ScanEvent
from hub.catalog import parse_catalog_csv
from hub.plausibility import NEGATIVE_BALANCE
from hub.store import SqlStore
from tests.support import open_ledger

BINS = 40
SENSORED_EVERY = 2


def _ledger(tmp_path: Path, history_rows: int = 0) -> SqlStore:
    store = open_ledger(tmp_path / "ledger.sqlite3")
    parsed = parse_catalog_csv(catalog_lines(BINS, SENSORED_EVERY))
    store.import_catalog(list(parsed.skus.values()), list(parsed.bins.values()), T0_MS)
    if history_rows:
        store.bulk_history(history(history_rows, BINS))
    return store


def _book(store: SqlStore) -> dict[tuple[str, str], int]:
    return {(b.location, b.sku): b.qty for b in store.balances_after(None, 100_000) if b.qty}


def test_a_correct_day_opens_no_discrepancy_and_the_book_stays_the_floor(tmp_path: Path) -> None:
    store = _ledger(tmp_path, history_rows=2_000)
    try:
        floor = Floor.of(store, BINS, SENSORED_EVERY)
        assert all(qty >= 0 for qty in floor.pieces.values())  # history is correct work too
        assert not any(qty for (location, _), qty in floor.pieces.items() if location == DOCK)
        opened: Counter[str] = Counter()
        modes: Counter[str] = Counter()
        for stream in ("0000000000000001", "0000000000000002"):  # the second trial continues the first
            events = day(floor, 3_000)
            modes.update(getattr(e, "mode", "shelf_count") for e in events)
            trial = replay(store, batches(stream, events, 500), 30_000)
            assert trial.events == len(events)
            opened += trial.opened
        assert opened == Counter()
        assert {"pick", "receive", "putaway", "count", "shelf_count"} <= set(modes)
        assert _book(store) == {key: qty for key, qty in floor.pieces.items() if qty}
    finally:
        store.close()


def test_a_misreading_scanner_has_each_misread_pick_at_a_sensored_bin_flagged(tmp_path: Path) -> None:
    store = _ledger(tmp_path)
    try:
        floor = Floor.of(store, BINS, SENSORED_EVERY)
        events = mistakes(floor, 2_000)
        # SKU-0 in another SKU's sensored bin: one negative balance per pick (BIN-0 holds SKU-0: its
        # first pick goes negative once, the rest follow an open one).
        misread = sum(1 for e in events if isinstance(e, ScanEvent) and e.mode == "pick" and e.location != "BIN-0")
        trial = replay(store, batches("0000000000000001", events, 500), 30_000)
        assert trial.opened[NEGATIVE_BALANCE] == misread + 1
        rows = store.discrepancies("open", None, 10_000)
        assert sum(1 for r in rows if r.kind == NEGATIVE_BALANCE) == misread + 1
        assert all(r.sku == "SKU-0" for r in rows if r.kind == NEGATIVE_BALANCE)
    finally:
        store.close()
