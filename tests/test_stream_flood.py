"""A node cannot grow the hub's memory with stream ids: one live stream, a budget, pruning.

Memory is measured by counting the hub's stream trackers, not by timing or RSS.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from contract import Channel, node_topic
from hub.dedupe import MAX_RETIRED_KEPT, NEW_STREAM_BURST, StreamBook, StreamRefused
from hub.mosquitto import PrivateBroker
from tests.support import SITE, RunningHub, playing_node, scan_batch, wait_for

FLOOD_STREAMS = 60


async def test_a_flood_of_new_stream_ids_is_quarantined_and_memory_stays_bounded(
        broker: PrivateBroker, tmp_path: Path) -> None:
    async with RunningHub(broker, tmp_path) as hub:
        with playing_node(broker) as raw:
            node = raw.node
            book = hub.service.ingest.book
            topic = node_topic(SITE, node, Channel.EVENTS)
            for _ in range(FLOOD_STREAMS):
                raw.publish(topic, scan_batch(node, secrets.token_hex(8), [1], "F-01-1"))
            refused = FLOOD_STREAMS - NEW_STREAM_BURST
            await wait_for(lambda: hub.service.ingest.quarantined_total >= refused, timeout_s=30,
                           what=f"{refused} batches of new streams quarantined")
            assert book.per_node(node) <= 1 + NEW_STREAM_BURST
            # Retired streams that hold nothing are pruned between commits: one live tracker stays.
            await wait_for(lambda: book.per_node(node) == 1, what="retired trackers pruned")
            assert hub.balance("F-01-1") == NEW_STREAM_BURST  # the refused batches changed no stock
            reasons = [r.reason for r in hub.service.store.quarantine_rows(FLOOD_STREAMS) if r.node == node]
            assert reasons and all("new streams in a short time" in r and "check the node" in r for r in reasons)


def test_events_of_a_new_stream_wait_while_the_live_one_has_a_gap() -> None:
    book = StreamBook()
    live = book.admit("pi-1", "a" * 16, now=0.0)
    live.add(1)
    live.add(3)  # 2 is missing
    with pytest.raises(StreamRefused, match="still lacks seq 2"):
        book.admit("pi-1", "b" * 16, now=1.0)
    live.add(2)
    assert book.admit("pi-1", "b" * 16, now=2.0).stream == "b" * 16  # settled: the new one takes over
    assert live.retired


def test_a_birth_names_a_new_stream_even_over_a_gap() -> None:
    book = StreamBook()
    old = book.admit("pi-1", "a" * 16, now=0.0)
    old.add(1)
    old.add(3)
    new = book.admit("pi-1", "b" * 16, by_birth=True, now=1.0)
    assert book.retire_others("pi-1", new.stream, now=1.0) == [old]


def test_a_late_batch_of_a_pruned_stream_is_refused_not_taken_for_new() -> None:
    book = StreamBook()
    book.admit("pi-1", "a" * 16, now=0.0).add(1)
    book.admit("pi-1", "b" * 16, now=1.0).add(1)
    assert book.prune() == 1 and book.per_node("pi-1") == 1
    with pytest.raises(StreamRefused, match="was retired"):
        book.admit("pi-1", "a" * 16, now=2.0)


def test_retired_streams_holding_seqs_are_capped_per_node() -> None:
    book = StreamBook()
    for i in range(MAX_RETIRED_KEPT + 3):
        track = book.admit("pi-1", f"{i:016x}", by_birth=True, now=float(i * 10_000))  # budget refilled
        track.add(2)  # held above a gap that can never close once retired
        book.retire_others("pi-1", track.stream, now=float(i * 10_000))
    book.prune()
    assert book.per_node("pi-1") == 1 + MAX_RETIRED_KEPT


def test_after_a_restart_a_loaded_stream_with_a_gap_also_holds_back_a_new_one() -> None:
    book = StreamBook()
    book.load("pi-1", "a" * 16, watermark=3, above={5}, max_seq=5)  # as the hub reloads it from disk
    with pytest.raises(StreamRefused, match="still lacks seq 4"):
        book.admit("pi-1", "b" * 16, now=0.0)
