"""Ingest: validate -> dedupe -> append to the ledger -> commit -> ack -> notify pages.

One writer thread owns the write side of the store (DESIGN §6). It drains whatever has
arrived since its last commit and writes it in one transaction (group commit): at low
load every message commits on its own with no added wait, under load many messages share
one fsync. Acks are published only after the commit, so an ack is a promise kept.

A payload that breaks the contract is quarantined with its reason in the same
transaction as the good traffic around it; nothing a node sends can stop the thread.
"""

from __future__ import annotations

import json
import logging
import queue
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from contract import (
    HUB_NODE,
    Ack,
    Birth,
    Channel,
    Command,
    CommandReply,
    ContractError,
    EventBatch,
    NodeState,
    parse_topic,
)
from hub.dedupe import StreamBook
from hub.ledger import BalanceChange, SkuResolver, apply_event, gtin_as_sku
from hub.store.base import Store, WriteTx

log = logging.getLogger(__name__)

MAX_MESSAGES_PER_COMMIT = 2000  # bounds one transaction's duration and memory
IDLE_TICK_S = 0.5  # how often an idle writer wakes to check gaps and report health
GAP_SETTLE_S = 2.0  # a gap may be reordering in flight; ask for it only after this
GAP_REPEAT_S = 5.0


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class Inbound:
    """A message as it came off the broker."""

    topic: str
    payload: bytes
    received_ms: int


@dataclass(frozen=True, slots=True)
class LagSample:
    """The stage times of one committed event (epoch ms), for the signal-lag map."""

    node: str
    device_ms: int
    accepted_ms: int
    received_ms: int
    committed_ms: int


@dataclass
class CommitResult:
    """What one group commit did, handed to the web layer on the event loop."""

    committed_ms: int = 0
    events_new: int = 0
    events_duplicate: int = 0
    quarantined: list[str] = field(default_factory=list)
    balances: list[BalanceChange] = field(default_factory=list)
    nodes_changed: set[str] = field(default_factory=set)
    replies: list[CommandReply] = field(default_factory=list)
    lag: list[LagSample] = field(default_factory=list)


class Ingest:
    """The single writer: a thread fed by a queue."""

    def __init__(self, store: Store, site: str, publish_ack: Callable[[Ack], None],
                 send_command: Callable[[str, Command], None],
                 on_commit: Callable[[CommitResult], None],
                 resolve_sku: SkuResolver = gtin_as_sku) -> None:
        self.store = store
        self.site = site
        self._publish_ack = publish_ack
        self._send_command = send_command
        self._on_commit = on_commit
        self._resolve_sku = resolve_sku
        self._queue: queue.SimpleQueue[Inbound | None] = queue.SimpleQueue()
        self.book = StreamBook()
        self._thread = threading.Thread(target=self._run, name="ingest-writer", daemon=True)
        self.last_tick = time.monotonic()  # for the watchdog: the writer loop is alive
        self.committed_total = 0
        self.duplicates_total = 0
        self.quarantined_total = 0
        self.batches_total = 0

    # ----------------------------------------------------------------- control

    def start(self) -> None:
        for pos in self.store.stream_positions():
            self.book.load(pos.node, pos.stream, pos.watermark, set(pos.above), pos.max_seq)
        self._thread.start()

    def submit(self, topic: str, payload: bytes, received_ms: int | None = None) -> None:
        """Queue a message (any thread; called from paho's network thread)."""
        self._queue.put(Inbound(topic, payload, now_ms() if received_ms is None else received_ms))

    def stop(self, timeout_s: float = 10.0) -> None:
        """Finish what is queued, then stop the thread."""
        self._queue.put(None)
        self._thread.join(timeout_s)

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize()

    # ----------------------------------------------------------------- the writer thread

    def _run(self) -> None:
        last_gap_check = time.monotonic()
        while True:
            self.last_tick = time.monotonic()
            if self.last_tick - last_gap_check >= IDLE_TICK_S:
                last_gap_check = self.last_tick
                self._request_gaps()
            try:
                first = self._queue.get(timeout=IDLE_TICK_S)
            except queue.Empty:
                continue
            batch: list[Inbound] = []
            stopping = first is None
            if first is not None:
                batch.append(first)
            while len(batch) < MAX_MESSAGES_PER_COMMIT:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            if batch:
                self._commit(batch)
            if stopping:
                return

    def _commit(self, batch: list[Inbound]) -> None:
        result = CommitResult(committed_ms=now_ms())
        touched: set[tuple[str, str]] = set()
        try:
            with self.store.write() as tx:
                for msg in batch:
                    self._apply(tx, msg, result, touched)
                for node, stream in touched:
                    track = self.book.get(node, stream)
                    tx.set_stream(node, stream, track.watermark, track.max_seq, result.committed_ms)
        except Exception:
            # Storage failed (disk full, I/O error): nothing was acknowledged, so the edges
            # keep their copies and re-send. Reload positions so memory matches the disk.
            log.exception("ingest commit of %d message(s) failed; nothing acknowledged", len(batch))
            self.book = StreamBook()
            for pos in self.store.stream_positions():
                self.book.load(pos.node, pos.stream, pos.watermark, set(pos.above), pos.max_seq)
            return
        self.batches_total += 1
        self.committed_total += result.events_new
        self.duplicates_total += result.events_duplicate
        self.quarantined_total += len(result.quarantined)
        ts = now_ms()
        for node, stream in touched:
            self._publish_ack(Ack(node=node, stream=stream, watermark=self.book.get(node, stream).watermark, ts_ms=ts))
        self._on_commit(result)

    def _apply(self, tx: WriteTx, msg: Inbound, result: CommitResult, touched: set[tuple[str, str]]) -> None:
        node: str | None = None
        try:
            address = parse_topic(msg.topic)
            node = address.node
            if node == HUB_NODE or address.site != self.site:
                return
            if address.channel is Channel.EVENTS:
                self._apply_events(tx, EventBatch.from_json(msg.payload), node, msg, result, touched)
            elif address.channel is Channel.STATE:
                if msg.payload:  # an empty retained message only clears the topic
                    state = NodeState.from_json(msg.payload)
                    _check_node(state.node, node)
                    tx.update_node(node, online=int(state.online), state_ms=msg.received_ms,
                                   last_seen_ms=msg.received_ms)
                    result.nodes_changed.add(node)
            elif address.channel is Channel.BIRTH:
                self._apply_birth(tx, Birth.from_json(msg.payload), node, msg, result)
            elif address.channel is Channel.CMD_REPLY:
                reply = CommandReply.from_json(msg.payload)
                _check_node(reply.node, node)
                result.replies.append(reply)
                tx.update_node(node, last_seen_ms=msg.received_ms)
        except ContractError as err:
            reason = str(err)
            log.warning("quarantined a message on %s: %s", msg.topic, reason)
            tx.quarantine(msg.received_ms, msg.topic, node, reason, msg.payload)
            result.quarantined.append(reason)

    def _apply_events(self, tx: WriteTx, batch: EventBatch, node: str, msg: Inbound, result: CommitResult,
                      touched: set[tuple[str, str]]) -> None:
        _check_node(batch.node, node)
        track = self.book.get(node, batch.stream)
        touched.add((node, batch.stream))
        for event in batch.events:
            if track.is_duplicate(event.seq):
                result.events_duplicate += 1
                continue
            body = event.to_dict()
            event_id = tx.insert_event(node, batch.stream, event.seq, event.KIND, event.ts_ms, event.accepted_ms,
                                       msg.received_ms, result.committed_ms, _json(body))
            track.add(event.seq)
            if event_id is None:  # already on disk (memory lost it): still a duplicate
                result.events_duplicate += 1
                continue
            result.events_new += 1
            result.balances.extend(apply_event(tx, event_id, event, result.committed_ms, self._resolve_sku))
            result.lag.append(LagSample(node, event.ts_ms, event.accepted_ms, msg.received_ms, result.committed_ms))
        # The stream of the latest events is the node's current one (a wiped SD card starts a new one).
        tx.update_node(node, last_seen_ms=msg.received_ms, stream=batch.stream)
        result.nodes_changed.add(node)

    def _apply_birth(self, tx: WriteTx, birth: Birth, node: str, msg: Inbound, result: CommitResult) -> None:
        _check_node(birth.node, node)
        track = self.book.get(node, birth.stream)
        track.max_seq = max(track.max_seq, birth.last_seq)
        tx.update_node(node, online=1, boot_id=birth.boot_id, sw_version=birth.sw_version, stream=birth.stream,
                       last_seq=birth.last_seq, outbox_depth=birth.outbox_depth,
                       clock_skew_ms=birth.clock_ms - msg.received_ms, birth_ms=msg.received_ms,
                       last_seen_ms=msg.received_ms,
                       devices=[{"device": d.device, "device_kind": d.device_kind, "present": d.present,
                                 "path": d.path} for d in birth.devices])
        result.nodes_changed.add(node)
        log.info("birth of node %s: boot %s, stream %s, last seq %d, outbox depth %d, clock skew %d ms",
                 node, birth.boot_id, birth.stream, birth.last_seq, birth.outbox_depth,
                 birth.clock_ms - msg.received_ms)

    def _request_gaps(self) -> None:
        for track, from_seq in self.book.gaps(GAP_SETTLE_S, GAP_REPEAT_S):
            log.warning("node %s stream %s: seq %d missing (have up to %d); asking for a re-send",
                        track.node, track.stream, from_seq, track.max_seq)
            self._send_command(track.node, Command(id=secrets.token_hex(6), cmd="resend_from", ts_ms=now_ms(),
                                                   stream=track.stream, from_seq=from_seq))


def _check_node(payload_node: str, topic_node: str) -> None:
    if payload_node != topic_node:
        raise ContractError(f"payload says node '{payload_node}' but was published under node '{topic_node}'")


def _json(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
