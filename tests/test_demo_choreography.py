"""The demo's worker scans the goods while the hand is in the shelf, at the README's default pace.

The hub pairs a scan with the movement whose span holds it or lies nearest (docs/ledger.md). A
pick scanned seconds after its shelf settled lies nearer the next pick at the same bin, so at the
default `--pace-s 2` every good order of cable ties showed on the page as an unscanned removal
plus a scan without movement, beside the staged mistakes. The end-to-end test
(tests/test_demo.py) runs at `--pace-s 0.2`, where the scans follow the hand at once, so it
cannot see this; a whole cycle at the default pace takes minutes of real time. Here the shift runs
on a virtual clock (its only clock is `stop.wait`), against a shelf and a scanner that record
when each movement and each scan happened.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import pytest

from edge.scan.decode import ItemScan, decode
from hub.catalog import parse_catalog_csv

ROOT = Path(__file__).resolve().parent.parent
SENSORED_BINS = {"A-01-1", "A-01-2"}  # the demo's shelf-a (scripts/run_demo.py, CATALOG_CSV)
RING_DOWN_S = 1.0  # the recording shelf is at rest this long after the hand leaves


def _run_demo() -> ModuleType:
    spec = importlib.util.spec_from_file_location("run_demo_under_test", ROOT / "scripts" / "run_demo.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


class VirtualClock(threading.Event):
    """The shift's stop event, whose wait() moves time on at once instead of sleeping."""

    def __init__(self) -> None:
        super().__init__()
        self.now_s = 0.0

    def wait(self, timeout: float | None = None) -> bool:
        self.now_s += timeout or 0.0
        return self.is_set()


@dataclass
class RecordingShelf:
    """The virtual controller's interface to the shift: hands in bins, recorded on the virtual clock."""

    clock: VirtualClock
    pieces: list[int] = field(default_factory=lambda: [20, 30])
    movements: list[tuple[float, float, int]] = field(default_factory=list)  # (start_s, hand_s, bin index)

    def pick(self, bin_index: int, pieces: int, hand_s: float = 1.0) -> None:
        self.pieces[bin_index] -= pieces
        self.movements.append((self.clock.now_s, hand_s, bin_index))

    def restock(self, bin_index: int, pieces: int, hand_s: float = 1.0) -> None:
        self.pieces[bin_index] += pieces
        self.movements.append((self.clock.now_s, hand_s, bin_index))

    def add(self, scenario: str) -> None:
        verb, bin_index, _force_g, seconds = scenario.split()
        assert verb == "lean"
        self.movements.append((self.clock.now_s, float(seconds), int(bin_index)))

    def count(self, bin_index: int) -> int:
        return self.pieces[bin_index]

    def still(self, within_g: float) -> bool:
        return all(self.clock.now_s >= start + hand + RING_DOWN_S for start, hand, _ in self.movements)


@dataclass
class RecordingScanner:
    clock: VirtualClock
    scans: list[tuple[float, str]] = field(default_factory=list)

    def scan(self, code: str) -> None:
        self.scans.append((self.clock.now_s, code))


@pytest.mark.parametrize("pace_s", [2.0, 0.2, 4.0])
def test_every_pick_and_put_away_at_a_shelf_is_scanned_while_the_hand_is_in_it(tmp_path: Path,
                                                                                pace_s: float) -> None:
    demo = _run_demo()
    clock = VirtualClock()
    shelf, scanner = RecordingShelf(clock), RecordingScanner(clock)
    shift = demo.Shift(scanner, shelf, pace_s, quiet_s=9.0, staged_path=tmp_path / "staged.jsonl",
                       rounds=demo.CYCLE_ROUNDS)
    shift.stop = clock
    shift.run()
    assert shift.done.is_set(), "the whole cycle ran"

    mode, location, checked = "", "", 0
    for t_s, code in scanner.scans:
        if code.startswith("MODE:"):
            mode = code.removeprefix("MODE:").lower()
        elif code.startswith("LOC:"):
            location = code.removeprefix("LOC:")
        elif not code.startswith(demo.LABEL_PREFIXES) and mode in ("pick", "putaway") and location in SENSORED_BINS:
            checked += 1
            assert any(start <= t_s <= start + hand for start, hand, _ in shelf.movements), (
                f"{mode} scan {code!r} at {location} at {t_s:.1f} s came while no hand was in the shelf "
                f"(movements: {[(round(s, 1), h) for s, h, _ in shelf.movements]})")
    assert checked >= 10, "the cycle's picks and put-aways at the shelf were looked at"


def test_the_demos_catalog_keeps_by_lot_what_the_shift_labels_with_a_lot(tmp_path: Path) -> None:
    # The ties came in cartons naming a lot, but the catalog kept them as a plain SKU: the hub
    # dropped the lots, and the page showed none.
    demo = _run_demo()
    clock = VirtualClock()
    scanner = RecordingScanner(clock)
    shift = demo.Shift(scanner, RecordingShelf(clock), 2.0, quiet_s=9.0, staged_path=tmp_path / "staged.jsonl",
                       rounds=demo.CYCLE_ROUNDS + 1)  # and the next cycle's count
    shift.stop = clock
    shift.run()
    assert shift.done.is_set()
    catalog = parse_catalog_csv(demo.CATALOG_CSV.splitlines())
    assert catalog.bad_rows == []
    tracking = {gtin: sku.tracking for sku in catalog.skus.values() for gtin in sku.gtins}

    mode, location, lots_seen = "", "", []
    for _, code in scanner.scans:
        scanned = decode(code)
        if code.startswith("MODE:"):
            mode = code.removeprefix("MODE:").lower()
        elif code.startswith("LOC:"):
            location = code.removeprefix("LOC:")
        elif isinstance(scanned, ItemScan) and scanned.lot:
            lots_seen.append((mode, location, scanned.gtin, scanned.lot))
    assert {m for m, *_ in lots_seen} == {"count", "receive", "putaway"}
    assert {(gtin, tracking.get(gtin)) for *_, gtin, _ in lots_seen} == {("04012345678901", "lot")}
    # The next count takes back the lot the staged wrong-bin put-away booked to the bolts' bin.
    wrong_bin = [lot for mode, location, _, lot in lots_seen if (mode, location) == ("putaway", "A-01-1")]
    assert len(wrong_bin) == 1
    assert ("count", "A-01-1", "04012345678901", wrong_bin[0]) in lots_seen
