"""Receiving and put-away cannot misplace stock: stock enters only at a receiving location,
and a put-away takes from where the goods were received, never from a place nobody named."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contract import BinConfig, NodeConfig, ScanEvent, ScanRejected
from edge.scan.decode import decode
from edge.scan.received import ReceivedGoods
from edge.scan.sim import gs1_128
from edge.scan.workflow import ScanWorkflow, Step

TIES, BOLT = "4012345678901", "9506000134352"
TIES14, BOLT14 = "0" + TIES, "0" + BOLT
BINS = ("A-01-1", "A-01-2", "B-01-1")
NODE_CONFIG = NodeConfig(node="pi-1", rev=1, ts_ms=1, bins=(BinConfig("A-01-1", BOLT14), BinConfig("A-01-2", TIES14),
                                                            BinConfig("B-01-1")))


def run(workflow: ScanWorkflow, *raws: str) -> list[Step]:
    return [workflow.handle(decode(raw), raw, 1_700_000_000_000) for raw in raws]


def events(steps: list[Step]) -> list[ScanEvent]:
    return [s.event for s in steps if isinstance(s.event, ScanEvent)]


def configured(workflow: ScanWorkflow) -> ScanWorkflow:
    workflow.apply_config(NODE_CONFIG)
    return workflow


def test_the_issue_sequence_puts_away_from_the_dock_not_from_a_bin_scanned_while_receiving() -> None:
    # The demo's opening count lost its MODE:COUNT, so the scanner was still receiving when
    # the worker scanned the shelf bins; then a delivery was received without a location scan.
    wf = configured(ScanWorkflow("s", mode="receive"))
    steps = run(wf, "LOC:A-01-1", "QTY:20", BOLT, "LOC:B-01-1", "QTY:40", TIES,
                "MODE:RECEIVE", "PO:4500012001", gs1_128(TIES, "L1", "491231", 6),
                "MODE:PUTAWAY", "LOC:A-01-2", gs1_128(TIES, "L1", "491231", 6))
    assert isinstance(steps[0].event, ScanRejected)
    assert steps[0].message.startswith("A-01-1 is a storage bin in the hub's catalog, not a receiving location")
    assert "To fill A-01-1, scan MODE:PUTAWAY" in steps[0].message
    moved = events(steps)
    # The items scanned at the refused bins were received at the dock (the worker heard
    # "receiving at DOCK" with each); nothing entered a bin.
    assert [(e.mode, e.location, e.from_location, e.qty) for e in moved] == [
        ("receive", "DOCK", None, 20), ("receive", "DOCK", None, 40), ("receive", "DOCK", None, 6),
        ("putaway", "A-01-2", "DOCK", 6)]
    assert moved[2].ref == "4500012001"


def test_a_receipt_without_a_location_scan_is_remembered_at_the_default_dock() -> None:
    wf = configured(ScanWorkflow("s", mode="receive", receiving_locations=["DOCK-2"]))
    steps = run(wf, "LOC:DOCK-2", "]E0" + BOLT14[1:], "MODE:RECEIVE", "]E0" + TIES14[1:],
                "MODE:PUTAWAY", "LOC:A-01-2", "]E0" + TIES14[1:], "LOC:A-01-1", "]E0" + BOLT14[1:])
    assert [(e.mode, e.from_location, e.location) for e in events(steps)] == [
        ("receive", None, "DOCK-2"), ("receive", None, "DOCK"),
        ("putaway", "DOCK", "A-01-2"), ("putaway", "DOCK-2", "A-01-1")]
    assert steps[6].message.endswith("at DOCK -> A-01-2 (received there, receipt)")


def test_putaway_follows_the_lot_and_the_po_to_their_dock() -> None:
    wf = configured(ScanWorkflow("s", mode="receive", receiving_locations=["DOCK-2"]))
    steps = run(wf, "PO:4500000001", gs1_128(TIES, "LA", "491231", 6),
                "LOC:DOCK-2", "PO:4500000002", gs1_128(TIES, "LB", "491231", 6),
                "MODE:PUTAWAY", "LOC:A-01-2", gs1_128(TIES, "LB", "491231", 6), gs1_128(TIES, "LA", "491231", 6),
                "]E0" + TIES,  # no lot on this label: received at two docks, so the worker is asked
                "PO:4500000002", "]E0" + TIES)
    putaways = [e for e in events(steps) if e.mode == "putaway"]
    assert [(p.lot, p.from_location) for p in putaways] == [("LB", "DOCK-2"), ("LA", "DOCK"), (None, "DOCK-2")]
    asked = steps[9]
    assert isinstance(asked.event, ScanRejected)
    assert asked.message == (f"put-away of GTIN {TIES14}: received at DOCK, DOCK-2; scan the LOC: label of the dock "
                             "you took it from, then the item again")


def test_a_gtin_received_at_two_docks_comes_from_the_one_where_some_is_still_waiting() -> None:
    wf = configured(ScanWorkflow("s", mode="receive", receiving_locations=["DOCK-2"]))
    steps = run(wf, "QTY:6", "]E0" + TIES, "LOC:DOCK-2", "QTY:6", "]E0" + TIES,
                "MODE:PUTAWAY", "LOC:A-01-2", "QTY:6", "]E0" + TIES,  # received at two docks: which one?
                "LOC:DOCK-2", "QTY:6", "]E0" + TIES,  # the worker says: DOCK-2, all of it
                "CLEAR", "LOC:A-01-2", "QTY:6", "]E0" + TIES)  # now only DOCK has ties waiting
    assert isinstance(steps[8].event, ScanRejected)
    assert [(e.mode, e.from_location, e.qty) for e in events(steps) if e.mode == "putaway"] == [
        ("putaway", "DOCK-2", 6), ("putaway", "DOCK", 6)]


def test_a_dock_scanned_in_putaway_mode_is_the_source_and_a_dock_is_never_the_destination() -> None:
    wf = configured(ScanWorkflow("s", mode="putaway", receiving_locations=["DOCK-2"]))
    steps = run(wf, "LOC:DOCK-2", "LOC:A-01-2", "QTY:6", "]E0" + TIES, "LOC:DOCK", "]E0" + TIES)
    assert steps[0].message == "put away from DOCK-2; scan the destination bin's LOC: label"
    assert steps[1].message == "put away into A-01-2 from DOCK-2"
    assert [(e.from_location, e.location, e.qty) for e in events(steps)] == [("DOCK-2", "A-01-2", 6),
                                                                              ("DOCK", "A-01-2", 1)]


def test_with_several_docks_a_putaway_of_goods_never_seen_received_asks_for_the_dock() -> None:
    several = configured(ScanWorkflow("s", mode="putaway", receiving_locations=["DOCK-2"]))
    step = run(several, "LOC:A-01-2", "]E0" + TIES)[1]
    assert isinstance(step.event, ScanRejected)
    assert "not received on this node since the agent started" in step.message and "(DOCK, DOCK-2)" in step.message
    # With one dock there is nowhere else it can have come from.
    single = configured(ScanWorkflow("s", mode="putaway"))
    event = run(single, "LOC:A-01-2", "]E0" + TIES)[1].event
    assert isinstance(event, ScanEvent) and event.from_location == "DOCK"


def test_scanners_of_one_node_share_where_goods_were_received() -> None:
    received = ReceivedGoods()
    dock = configured(ScanWorkflow("dock", mode="receive", receiving_locations=["DOCK-2"], received=received))
    forklift = configured(ScanWorkflow("forklift", mode="putaway", receiving_locations=["DOCK-2"], received=received))
    run(dock, "LOC:DOCK-2", "]E0" + TIES)
    event = run(forklift, "LOC:A-01-2", "]E0" + TIES)[1].event
    assert isinstance(event, ScanEvent) and event.from_location == "DOCK-2"


def test_a_catalog_bin_configured_as_a_dock_is_still_a_bin(caplog: pytest.LogCaptureFixture) -> None:
    wf = configured(ScanWorkflow("s", mode="receive", dock_location="A-01-2"))
    assert "A-01-2 configured as receiving location(s) but the hub's catalog has them as bins" in caplog.text
    step = run(wf, "]E0" + TIES)[0]
    assert isinstance(step.event, ScanRejected) and "tell IT to fix dock_location" in step.message


def test_every_mode_change_and_location_tells_the_worker_where_stock_goes() -> None:
    wf = configured(ScanWorkflow("s", mode="pick", receiving_locations=["DOCK-2"]))
    steps = run(wf, "MODE:RECEIVE", "LOC:DOCK-2", "CLEAR", "MODE:PUTAWAY", "LOC:A-01-2", "MODE:PICK", "LOC:B-01-1",
                "MODE:MOVE", "LOC:A-01-1", "LOC:A-01-2", "MODE:COUNT", "LOC:B-01-1")
    assert [s.message for s in steps] == [
        "mode RECEIVE: receiving at DOCK (the default dock; scan another dock's LOC: to change)",
        "receiving at DOCK-2",
        "cleared; mode RECEIVE: receiving at DOCK (the default dock; scan another dock's LOC: to change)",
        "mode PUTAWAY: put away from the dock each item was received at; scan the destination bin's LOC: label",
        "put away into A-01-2 from the dock each item was received at",
        "mode PICK: scan the bin's LOC: label",
        "pick at B-01-1",
        "mode MOVE: scan the source location's LOC: label, then the destination's",
        "move from A-01-1: now scan the items, then the destination",
        "move A-01-1 -> A-01-2",
        "mode COUNT: scan the bin's LOC: label",
        "count at B-01-1",
    ]
    assert all(s.accepted for s in steps)


def test_memory_is_bounded() -> None:
    received = ReceivedGoods(max_keys=100)
    for i in range(1000):
        received.record(f"{i:014d}", "DOCK", 1, lot=f"L{i}", ref=f"PO{i}")
    assert len(received._where) <= 100
    assert received.source(f"{999:014d}").location == "DOCK"


# ---------------------------------------------------------------- any sequence of scans

LOCATIONS = ("DOCK", "DOCK-2", "GOODS-IN", "A-01-1", "A-01-2", "B-01-1", "GATE")
LABELS = (["MODE:RECEIVE", "MODE:PUTAWAY", "MODE:PICK", "MODE:MOVE", "MODE:COUNT", "CLEAR", "QTY:2", "QTY:5",
           "PO:4500000001", "PO:4500000002", "]E0" + TIES, "]E0" + BOLT]
          + [f"LOC:{loc}" for loc in LOCATIONS]
          + [gs1_128(gtin, lot, "491231", 6) for gtin in (TIES, BOLT) for lot in ("L1", "L2")])


@dataclass
class Named:
    """What the workers named, per scanner and for the node (the model the property checks against)."""

    mode: dict[int, str]
    since_mode: dict[int, list[str]] = field(default_factory=dict)  # locations scanned since the last MODE/CLEAR
    scanned_in_receive: set[str] = field(default_factory=set)
    received_at: dict[str, set[str]] = field(default_factory=dict)  # gtin -> locations of its receipts


@settings(max_examples=400, deadline=None)
@given(scans=st.lists(st.tuples(st.integers(0, 1), st.sampled_from(LABELS)), max_size=60),
       receiving=st.sampled_from([[], ["DOCK-2"], ["DOCK-2", "GOODS-IN", "A-01-2"]]),
       start_modes=st.tuples(st.sampled_from(["receive", "putaway", "pick"]), st.sampled_from(["receive", "putaway"])),
       config_arrived=st.booleans())
def test_no_scan_sequence_books_a_move_from_a_location_nobody_named_for_it(
        scans: list[tuple[int, str]], receiving: list[str], start_modes: tuple[str, str], config_arrived: bool) -> None:
    received = ReceivedGoods()
    scanners = [ScanWorkflow(f"s{i}", mode=start_modes[i], receiving_locations=receiving, received=received)
                for i in range(2)]
    if config_arrived:
        for wf in scanners:
            wf.apply_config(NODE_CONFIG)
    bins = set(BINS) if config_arrived else set()
    docks = ({"DOCK", *receiving}) - bins
    named = Named(mode={i: start_modes[i] for i in range(2)}, since_mode={0: [], 1: []})
    for who, raw in scans:
        step = scanners[who].handle(decode(raw), raw, 1_700_000_000_000)
        if raw.startswith(("MODE:", "CLEAR")):
            named.mode[who] = scanners[who].state.mode
            named.since_mode[who] = []
        elif raw.startswith("LOC:"):
            named.since_mode[who].append(raw[4:])
            if named.mode[who] == "receive":
                named.scanned_in_receive.add(raw[4:])
        event = step.event
        if not isinstance(event, ScanEvent):
            continue
        here = named.since_mode[who]
        if event.mode == "receive":
            # Stock enters only at a dock: the one scanned in receive mode, else the default.
            assert event.location in docks and event.location not in bins
            assert event.location in here or event.location == "DOCK"
            named.received_at.setdefault(event.gtin, set()).add(event.location)
        elif event.mode == "putaway":
            source = event.from_location
            assert source is not None and source in docks and source != event.location
            named_here = source in here  # the worker scanned that dock for this put-away
            received_there = source in named.received_at.get(event.gtin, set()) and (
                source in named.scanned_in_receive or source == "DOCK")
            only_dock = docks == {"DOCK"} and source == "DOCK"
            assert named_here or received_there or only_dock, (source, event, named)
            assert event.location in here
        elif event.mode == "move":
            assert event.from_location in here and event.location in here
        else:
            assert event.location in here
