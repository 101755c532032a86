"""Liveness of the guarantee: one bad event, a replaced SD card or a failed commit must not stall a stream."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from contract import ContractError, ScanEvent, ShelfCount, event_from_dict
from edge.outbox import Outbox
from edge.shelf.counting import count_pieces
from edge.sink import OutboxSink
from hub.dedupe import StreamBook
from hub.mosquitto import PrivateBroker
from hub.store import SqliteStore
from tests.support import (
    SITE,
    RunningHub,
    agent_with_an_unacked_scan,
    open_ledger,
    scan,
    wait_for,
    wait_for_sync,
)

NOW = int(time.time() * 1000)


async def test_an_event_that_breaks_the_contract_is_refused_before_the_outbox(tmp_path: Path) -> None:
    sink = OutboxSink(Outbox(tmp_path / "outbox.sqlite3"))
    try:
        bad = ScanEvent(seq=0, ts_ms=NOW, accepted_ms=0, scanner="s1", mode="pick", gtin="123", location="A-1", qty=1)
        with pytest.raises(ContractError, match="gtin"):
            await sink.submit(bad)
        assert sink.outbox.last_seq() == 0  # nothing stored, so nothing can block the stream
        good = await sink.submit(scan())
        assert good.seq == 1
    finally:
        sink.close()


def test_an_absurd_unit_weight_gives_an_uncertain_count_within_the_contract() -> None:
    result = count_pieces(20_000.0, 0.01, 0.01, 0.5, 0.95)  # 2 million "pieces"
    assert result.uncertain and abs(result.quotient) <= 1_000_000
    event_from_dict(ShelfCount(seq=1, ts_ms=NOW, accepted_ms=NOW, bin="A-1", count=result.count,
                               quotient=result.quotient, weight_g=result.weight_g, confidence=result.confidence,
                               uncertain=result.uncertain).to_dict())


def test_a_replaced_sd_card_retires_the_old_stream_and_its_gap() -> None:
    book = StreamBook()
    old = book.get("pi-1", "aaaaaaaaaaaaaaaa")
    for seq in (1, 2, 5):
        old.add(seq)
    assert old.missing == 2
    assert [t.stream for t, _ in book.gaps(settle_s=0.0, repeat_s=0.0)] == ["aaaaaaaaaaaaaaaa"]
    retired = book.retire_others("pi-1", "bbbbbbbbbbbbbbbb")
    assert retired == [old]
    assert old.missing == 0 and old.unreceived() == 2  # not "behind" any more, but the loss is known
    assert book.gaps(settle_s=0.0, repeat_s=0.0) == []  # and never asked for again


@pytest.mark.sqlite_only  # SQLite's deferred foreign keys make COMMIT itself fail
def test_a_failed_commit_leaves_no_transaction_open(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "ledger.sqlite3")
    try:
        db = store._writer
        db.execute("PRAGMA foreign_keys=ON")
        db.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
        db.execute("CREATE TABLE child (pid INTEGER REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED)")
        with pytest.raises(Exception, match="FOREIGN KEY"), store.write() as tx:
            tx.update_node("pi-1", online=1)
            db.execute("INSERT INTO child VALUES (42)")  # only COMMIT notices the dangling reference
        assert not db.in_transaction
        with store.write() as tx:  # the next transaction works
            tx.update_node("pi-1", online=1)
        assert [n.node for n in store.nodes()] == ["pi-1"]
    finally:
        store.close()


async def test_the_edge_replays_when_the_hub_announces_itself_again(broker: PrivateBroker, tmp_path: Path) -> None:
    """After a broker restart the retained state still says online; the hub's fresh announcement
    must still make the edge re-send what the hub may have missed."""
    # The (stale) hub says online, but nobody receives the event.
    async with agent_with_an_unacked_scan(broker, tmp_path, True, "F-01-1", 3) as agent, \
            RunningHub(broker, tmp_path) as hub:
        await wait_for(lambda: agent.sink.outbox.depth() == 0, timeout_s=15,
                       what="the event re-sent on the hub's new announcement and acknowledged")
        assert sum(b.qty for b in hub.service.store.stock("F-01-1", 10, 0)) == 3


def test_a_message_that_trips_a_bug_is_set_aside_and_the_rest_of_the_commit_goes_through(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fault injection: ledger code raising on one message (a bug we cannot produce on purpose)."""
    import hub.ingest as ingest_module
    from contract import Channel, EventBatch, node_topic
    from hub.ingest import Ingest

    real_apply = ingest_module.apply_event

    def buggy_apply(tx, event_id, event, *args, **kwargs):  # type: ignore[no-untyped-def]
        if getattr(event, "location", None) == "BUG-1":
            raise KeyError("a bug in the ledger code")
        return real_apply(tx, event_id, event, *args, **kwargs)

    monkeypatch.setattr(ingest_module, "apply_event", buggy_apply)
    store = open_ledger(tmp_path / "ledger.sqlite3")
    acks: list[object] = []
    ingest = Ingest(store, SITE, publish_ack=acks.append, send_command=lambda n, c: None, on_commit=lambda r: None)
    for node, location in (("pi-a", "OK-1"), ("pi-b", "BUG-1"), ("pi-c", "OK-2")):
        event = scan(location=location, qty=2).with_seq(1, NOW)
        batch = EventBatch(node=node, stream="ab" * 8, events=(event,), sent_ms=NOW)
        ingest.submit(node_topic(SITE, node, Channel.EVENTS), batch.to_json())
    ingest.start()  # all three are drained into one group commit
    try:
        wait_for_sync(lambda: ingest.committed_total >= 2, what="the two good messages committed")
        assert ingest.committed_total == 2
        assert {b.location: b.qty for b in store.stock("", 10, 0)} == {"OK-1": 2, "OK-2": 2}
        assert sorted(a.node for a in acks) == ["pi-a", "pi-c"]  # type: ignore[attr-defined]
        [row] = store.quarantine_rows(10)
        assert row.node == "pi-b" and "hub could not process this message" in row.reason and "KeyError" in row.reason
    finally:
        ingest.stop()
        store.close()
