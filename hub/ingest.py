"""Ingest: validate -> dedupe -> append to the ledger -> commit -> ack -> notify pages.

One writer thread owns the write side of the store (docs/architecture.md, hop 9). It drains whatever has
arrived since its last commit and writes it in one transaction (group commit): at low
load every message commits on its own with no added wait, under load many messages share
one fsync. Acks are published only after the commit, so an ack is a promise kept.

A payload that breaks the contract is quarantined with its reason in the same
transaction as the good traffic around it; nothing a node sends can stop the thread.

Events are stored as they arrive but applied to the ledger (movements, balances,
reconciliation) in seq order per stream: one that arrives above a gap is held until the
gap closes. A count scan sets an absolute quantity, so applying in any other order would
make the balance depend on delivery order. The ack watermark is exactly the applied prefix.
Reconciliation (hub.reconcile) runs here, inside the same transaction, on skew-corrected
device time; its per-bin state is saved with the commit and reloaded at start.
"""

from __future__ import annotations

import functools
import json
import logging
import queue
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from contract import (
    HUB_NODE,
    Ack,
    Birth,
    Channel,
    Command,
    CommandReply,
    ContractError,
    DeviceChange,
    Event,
    EventBatch,
    NodeState,
    RefusedEvent,
    SalvagedBatch,
    ScanEvent,
    ScanRejected,
    ShelfCount,
    ShelfFault,
    UnknownToThisVersion,
    load_payload,
    parse_topic,
    salvage_batch,
    stored_event,
)
from hub.catalog import CatalogIndex
from hub.commands import CommandLog
from hub.dedupe import StreamBook, StreamTrack
from hub.faults import ActiveFaults
from hub.lag import LagTracker, StageTimes
from hub.ledger import COUNT_ADJUSTMENT, BalanceChange, SkuResolver, apply_event
from hub.plausibility import (
    STUCK_AT_DOCK,
    PlausibilitySettings,
    apply_fix,
    count_difference,
    negative_balances,
    stuck_at_dock,
)
from hub.reconcile import Reconciler
from hub.store.base import Catalog, EventsAlreadyStored, NewDiscrepancy, ScanRow, ShelfFaultRow, Store, WriteTx

log = logging.getLogger(__name__)

MAX_MESSAGES_PER_COMMIT = 2000  # bounds one transaction's duration and memory
IDLE_TICK_S = 0.5  # how often an idle writer wakes to check gaps and report health
GAP_SETTLE_S = 2.0  # a gap may be reordering in flight; ask for it only after this
GAP_REPEAT_S = 5.0
CATALOG_POLL_S = 2.0  # how soon a `stock-hub import-catalog` from another process is picked up
DEFAULT_WINDOW_MS = 30_000

# The stage times of one committed event (kept under its old name for the web layer).
LagSample = StageTimes


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class Inbound:
    """A message as it came off the broker."""

    topic: str
    payload: bytes
    received_ms: int


@dataclass(frozen=True, slots=True)
class _WriterJob:
    """Work from another thread that must run in the writer's transaction (API writes)."""

    fn: Callable[[WriteTx], Any]
    future: Future[Any]


@dataclass(frozen=True, slots=True)
class _Held:
    """An event stored above a gap, applied when the gap closes."""

    event_id: int
    event: Event | RefusedEvent
    received_ms: int


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
    discrepancies_opened: list[NewDiscrepancy] = field(default_factory=list)
    discrepancies_closed: list[int] = field(default_factory=list)
    events_held: int = 0  # stored above a gap, applied once it closes
    faults_changed: list[ShelfFaultRow] = field(default_factory=list)  # set (active) or cleared, in order
    scans: list[ScanRow] = field(default_factory=list)  # scans and rejected scans applied, in order
    shelf_confidence: dict[str, float] = field(default_factory=dict)  # bin -> confidence of its last certain count


class Ingest:
    """The single writer: a thread fed by a queue."""

    def __init__(self, store: Store, site: str, publish_ack: Callable[[Ack], None],
                 send_command: Callable[[str, Command], None],
                 on_commit: Callable[[CommitResult], None],
                 resolve_sku: SkuResolver | None = None, window_ms: int = DEFAULT_WINDOW_MS,
                 plausibility: PlausibilitySettings | None = None) -> None:
        self.store = store
        self.site = site
        self._publish_ack = publish_ack
        self._send_command = send_command
        self._on_commit = on_commit
        self._fixed_resolver = resolve_sku  # None: the catalog's GTIN -> SKU map
        self._queue: queue.SimpleQueue[Inbound | _WriterJob | None] = queue.SimpleQueue()
        self.book = StreamBook()
        self.commands = CommandLog()  # replies are taken only for commands sent through it
        self.catalog = CatalogIndex(Catalog(0))
        self.faults = ActiveFaults()  # hub.faults: reconciliation asks it whether a bin's weight can be trusted
        # The lookups read self.catalog when called, so a reloaded catalog applies at once.
        self.reconciler = Reconciler(window_ms, unit_weight_of=lambda b, sku: self.catalog.unit_weight(b, sku),
                                     neighbours_of=lambda b: self.catalog.neighbours(b),
                                     fault_of=self.faults.is_faulted)
        self.plausibility = plausibility or PlausibilitySettings()
        self._dock_checked = 0.0
        # Last certain shelf count per bin (memory only: heartbeats restate it after a restart).
        self._shelf_count: dict[str, int] = {}
        self.lag = LagTracker()
        self._held: dict[tuple[str, str], dict[int, _Held]] = {}
        self._skew_ms: dict[str, int] = {}  # node clock minus hub clock, from the last birth
        self._devices: dict[str, dict[str, dict[str, Any]]] = {}
        self._catalog_checked = 0.0
        self._thread = threading.Thread(target=self._run, name="ingest-writer", daemon=True)
        self.last_tick = time.monotonic()  # for the watchdog: the writer loop is alive
        # Called by the writer thread on every pass (at least every IDLE_TICK_S): a writer stuck
        # in the store stops the beats and, under systemd, the watchdog pings.
        self.heartbeat: Callable[[], None] = lambda: None
        self.committed_total = 0
        self.duplicates_total = 0
        self.quarantined_total = 0
        self.batches_total = 0

    # ----------------------------------------------------------------- control

    def start(self) -> None:
        self._load_state()
        self._thread.start()

    def _load_state(self) -> None:
        """Memory from disk: stream positions, held events, skews, devices, catalog, reconciliation state."""
        self.book = StreamBook()
        self._held = {}
        for pos in self.store.stream_positions():
            self.book.load(pos.node, pos.stream, pos.watermark, set(pos.above), pos.max_seq)
            if pos.above:
                self._held[(pos.node, pos.stream)] = {
                    h.seq: _Held(h.event_id, stored_event(json.loads(h.body)), h.received_ms)
                    for h in self.store.held_events(pos.node, pos.stream, pos.watermark)}
        for row in self.store.nodes():
            if row.clock_skew_ms is not None:
                self._skew_ms[row.node] = row.clock_skew_ms
            self._devices[row.node] = {str(d["device"]): d for d in row.devices}
        self.catalog = CatalogIndex(self.store.catalog())
        self.reconciler.load(self.store.reconcile_states(), self.store.open_discrepancy_ids())
        self.faults.load(self.store.shelf_faults())

    def _resolve_sku(self, gtin: str) -> str:
        if self._fixed_resolver is not None:
            return self._fixed_resolver(gtin)
        return self.catalog.resolve_sku(gtin)

    def submit(self, topic: str, payload: bytes, received_ms: int | None = None) -> None:
        """Queue a message (any thread; called from paho's network thread)."""
        self._queue.put(Inbound(topic, payload, now_ms() if received_ms is None else received_ms))

    def run_in_writer(self, fn: Callable[[WriteTx], Any]) -> Future[Any]:
        """Run fn(tx) on the writer thread in its own transaction, after what is queued (any thread)."""
        future: Future[Any] = Future()
        self._queue.put(_WriterJob(fn, future))
        return future

    def close_discrepancy(self, ident: int, note: str) -> Future[Any]:
        """Close one open discrepancy with a person's note (API: resolved)."""
        def close(tx: WriteTx) -> None:
            tx.close_discrepancies([ident], now_ms(), None, note)
            for ids in self.reconciler.open_ids.values():
                if ident in ids:
                    ids.remove(ident)
        return self.run_in_writer(close)

    def request_recount(self, ident: int, requested_by: str) -> Future[Any]:
        """Record a person's recount request for one discrepancy (API: recount); it stays open.

        A count scan at the bin closes it (and so answers the request), or a person resolves it.
        """
        def request(tx: WriteTx) -> int:
            requested_ms = now_ms()
            tx.request_recount(ident, requested_by, requested_ms)
            return requested_ms
        return self.run_in_writer(request)

    def apply_fix(self, ident: int, operator: str, reason: str = "") -> Future[Any]:
        """Book an open discrepancy's suggested correction and close it (API: apply-fix).

        The future's result is the balance changes; a ValueError says why nothing was booked.
        """
        def fix(tx: WriteTx) -> list[BalanceChange]:
            found = self.store.discrepancies(None, None, 1, ident + 1)  # the writer's thread: nothing uncommitted
            if not found or found[0].id != ident:
                raise LookupError(f"no discrepancy {ident}")
            return apply_fix(tx, found[0], operator, reason, now_ms())

        def committed(done: Future[Any]) -> None:
            if done.exception() is None:
                self._forget_open([ident])
                changes = done.result()
                self._on_commit(CommitResult(committed_ms=now_ms(), balances=changes, discrepancies_closed=[ident]))
        # Attached before the job is queued, so it runs on the writer thread that owns the reconciler.
        future: Future[Any] = Future()
        future.add_done_callback(committed)
        self._queue.put(_WriterJob(fix, future))
        return future

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
            self.heartbeat()
            if self.last_tick - last_gap_check >= IDLE_TICK_S:
                last_gap_check = self.last_tick
                self._request_gaps()
                self._maybe_reload_catalog()
                self._expire_windows()
                self._check_dock()
            try:
                first = self._queue.get(timeout=IDLE_TICK_S)
            except queue.Empty:
                continue
            batch: list[Inbound] = []
            stopping = first is None
            job = first if isinstance(first, _WriterJob) else None
            if isinstance(first, Inbound):
                batch.append(first)
            while job is None and len(batch) < MAX_MESSAGES_PER_COMMIT:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                if isinstance(item, _WriterJob):
                    job = item
                    break
                batch.append(item)
            if batch:
                self._commit(batch)
            if job is not None:
                self._run_job(job)
            if stopping:
                return

    def _commit(self, batch: list[Inbound]) -> None:
        """Commit a drained batch; a message that breaks the code (not the contract) is set aside.

        A bug triggered by one odd message must not hold back every other node's traffic in
        the same group commit, again at each re-send: the batch is retried without it, and
        it is quarantined with the error so a person sees it.
        """
        batched = True
        while batch:
            try:
                self._commit_once(batch, batched)
                return
            except EventsAlreadyStored as err:
                # Memory missed events the disk holds; nothing was written. Redo it one insert at a time.
                log.warning("ingest: %s; redoing the commit of %d message(s) unbatched", err, len(batch))
                self._load_state()
                batched = False
            except _MessageFailed as failed:
                log.error("ingest: a message on %s failed with %r; quarantining it and committing the rest",
                          failed.msg.topic, failed.error, exc_info=failed.error)
                self._load_state()  # memory may hold half of the failed message: match the disk again
                batch = [m for m in batch if m is not failed.msg]
                self._quarantine_alone(failed.msg, f"hub could not process this message ({failed.error!r}); "
                                                   "report it with the hub log")
            except Exception:
                # Storage failed (disk full, I/O error): nothing was acknowledged, so the edges
                # keep their copies and re-send. Reload everything so memory matches the disk.
                log.exception("ingest commit of %d message(s) failed; nothing acknowledged", len(batch))
                self._load_state()
                return

    def _quarantine_alone(self, msg: Inbound, reason: str) -> None:
        try:
            with self.store.write() as tx:
                tx.quarantine(msg.received_ms, msg.topic, _topic_node(msg.topic), reason[:500], msg.payload)
            self.quarantined_total += 1
            self._on_commit(CommitResult(committed_ms=now_ms(), quarantined=[reason]))
        except Exception:
            log.exception("could not even quarantine the failed message on %s", msg.topic)

    def _commit_once(self, batch: list[Inbound], batched: bool = True) -> None:
        result = CommitResult(committed_ms=now_ms())
        touched: dict[tuple[str, str], int] = {}  # (node, stream) -> last receive time, latest last
        with self.store.write(batched) as tx:
            for msg in batch:
                try:
                    self._apply(tx, msg, result, touched)
                except self.store.storage_errors:
                    raise  # the store's fault (disk full, I/O), not the message's
                except Exception as err:
                    raise _MessageFailed(msg, err) from err
            for (node, stream), received_ms in touched.items():
                track = self.book.get(node, stream)
                tx.set_stream(node, stream, track.watermark, track.max_seq, result.committed_ms)
                # Once per commit, not per message: the stream of the latest events is the
                # node's current one (a wiped SD card starts a new one).
                tx.update_node(node, last_seen_ms=received_ms, stream=stream)
            self._save_windows(tx)
        self.batches_total += 1
        self.committed_total += result.events_new
        self.duplicates_total += result.events_duplicate
        self.quarantined_total += len(result.quarantined)
        ts = now_ms()
        self.lag.record(result.lag)
        for node, stream in touched:
            self._publish_ack(Ack(node=node, stream=stream, watermark=self.book.get(node, stream).watermark, ts_ms=ts))
        self._on_commit(result)

    def _run_job(self, job: _WriterJob) -> None:
        if not job.future.set_running_or_notify_cancel():
            return
        try:
            with self.store.write() as tx:
                value = job.fn(tx)
        except BaseException as err:
            job.future.set_exception(err)
        else:
            job.future.set_result(value)

    def _save_windows(self, tx: WriteTx) -> None:
        """Persist the reconciliation state of the bins this commit changed, with the evidence that changed them."""
        for bin_name in self.reconciler.dirty:
            tx.save_reconcile_state(bin_name, self.reconciler.bins[bin_name].to_json())
        self.reconciler.dirty.clear()

    def _record(self, tx: WriteTx, found: list[NewDiscrepancy], result: CommitResult) -> None:
        for new in found:
            self.reconciler.opened(new.bin, tx.open_discrepancy(new))
            result.discrepancies_opened.append(new)

    def _apply(self, tx: WriteTx, msg: Inbound, result: CommitResult, touched: dict[tuple[str, str], int]) -> None:
        node: str | None = None
        try:
            address = _parse_topic(msg.topic)
            node = address.node
            if node == HUB_NODE or address.site != self.site:
                return
            if address.channel is Channel.EVENTS:
                obj = load_payload(msg.payload, "events")  # decoded once: validated below, stored raw
                batch: EventBatch | SalvagedBatch
                try:
                    batch = EventBatch.from_obj(obj)
                except ContractError:
                    # Some events broke the contract: settle those seqs as refused rather than
                    # hold back every later event of the stream (contract.RefusedEvent).
                    salvaged = salvage_batch(obj)
                    if salvaged is None:
                        raise
                    batch = salvaged
                self._apply_events(tx, batch, obj["events"], node, msg, result, touched)
            elif address.channel is Channel.STATE:
                if msg.payload:  # an empty retained message only clears the topic
                    state = NodeState.from_json(msg.payload)
                    _check_node(state.node, node)
                    tx.update_node(node, online=int(state.online), state_ms=msg.received_ms,
                                   last_seen_ms=msg.received_ms)
                    result.nodes_changed.add(node)
            elif address.channel is Channel.BIRTH:
                self._apply_birth(tx, Birth.from_json(msg.payload), node, msg, result, touched)
            elif address.channel is Channel.CMD_REPLY:
                reply = CommandReply.from_json(msg.payload)
                _check_node(reply.node, node)
                self.commands.check(reply)  # UnsolicitedReply (a ContractError): quarantined
                result.replies.append(reply)
                tx.update_node(node, last_seen_ms=msg.received_ms)
        except ContractError as err:
            reason = str(err)
            if isinstance(err, UnknownToThisVersion):
                reason += (" (the node may run a newer version than the hub: upgrade the hub; the node keeps what it "
                           "sent until the hub can read it)")
            log.warning("quarantined a message on %s: %s", msg.topic, reason)
            tx.quarantine(msg.received_ms, msg.topic, node, reason, msg.payload)
            result.quarantined.append(reason)

    def _apply_events(self, tx: WriteTx, batch: EventBatch | SalvagedBatch, raw_events: list[Any], node: str,
                      msg: Inbound,
                      result: CommitResult, touched: dict[tuple[str, str], int]) -> None:
        _check_node(batch.node, node)
        track = self.book.admit(node, batch.stream)  # StreamRefused (a ContractError): quarantined
        touched.pop((node, batch.stream), None)
        touched[(node, batch.stream)] = msg.received_ms
        # The stored body is the event object as it came (already validated), re-encoded by
        # the C encoder: much cheaper than rebuilding it from the dataclass.
        for event, raw in zip(batch.events, raw_events, strict=True):
            if track.is_duplicate(event.seq):
                result.events_duplicate += 1
                continue
            if isinstance(event, RefusedEvent):
                event_id = self._insert_refused(tx, node, batch, event, msg, result)
            else:
                event_id = tx.insert_event(node, batch.stream, event.seq, event.KIND, event.ts_ms, event.accepted_ms,
                                           msg.received_ms, result.committed_ms, _json(raw))
            if event_id is None:  # already on disk (memory lost it): still a duplicate
                track.add(event.seq)
                result.events_duplicate += 1
                continue
            result.events_new += 1
            self._sequence(tx, track, event_id, event, msg.received_ms, result)
        result.nodes_changed.add(node)

    def _insert_refused(self, tx: WriteTx, node: str, batch: EventBatch | SalvagedBatch, event: RefusedEvent,
                        msg: Inbound, result: CommitResult) -> int | None:
        """Store a refused event's seq (so the stream goes on) and quarantine the event itself."""
        # ensure_ascii: what was refused may hold a lone surrogate, which no UTF-8 store takes.
        raw_text = json.dumps(event.raw)
        reason = (f"event seq {event.seq} of stream {batch.stream} refused, not applied to stock "
                  f"(the rest of its batch was): {event.reason}")
        event_id = tx.insert_event(node, batch.stream, event.seq, event.KIND, batch.sent_ms, batch.sent_ms,
                                   msg.received_ms, result.committed_ms, json.dumps(event.to_dict()))
        if event_id is not None:
            log.warning("node %s: %s", node, reason)
            tx.quarantine(msg.received_ms, msg.topic, node, reason, raw_text.encode())
            result.quarantined.append(reason)
        return event_id

    def _sequence(self, tx: WriteTx, track: StreamTrack, event_id: int, event: Event | RefusedEvent,
                  received_ms: int, result: CommitResult) -> None:
        """Apply the event if it is next in its stream (then any held run after it), else hold it."""
        before = track.watermark
        track.add(event.seq)
        if track.watermark == before:  # above a gap
            self._held.setdefault((track.node, track.stream), {})[event.seq] = _Held(event_id, event, received_ms)
            result.events_held += 1
            return
        self._apply_one(tx, track.node, event_id, event, received_ms, result)
        self._apply_held(tx, track, event.seq, result)

    def _apply_held(self, tx: WriteTx, track: StreamTrack, after_seq: int, result: CommitResult,
                    received_below_skip: set[int] | None = None) -> None:
        """Apply, in seq order, the held events the watermark has just moved over.

        After a skip over lost seqs (`received_below_skip`: the stored seqs up to the skip
        point) the range may be long and mostly empty: only those and the run after are held.
        """
        if track.watermark <= after_seq:
            return
        held = self._held.get((track.node, track.stream), {})
        if received_below_skip is None:
            expected: list[int] | range = range(after_seq + 1, track.watermark + 1)
        else:
            skip_end = max(received_below_skip, default=after_seq)
            expected = sorted(received_below_skip | {k for k in held if skip_end < k <= track.watermark})
        for seq in expected:
            item = held.pop(seq, None)
            if item is None:  # cannot happen while memory matches the disk; say so loudly
                log.error("node %s stream %s: seq %d was held but is not in memory", track.node, track.stream, seq)
                continue
            self._apply_one(tx, track.node, item.event_id, item.event, item.received_ms, result)
        if not held:
            self._held.pop((track.node, track.stream), None)

    def _apply_one(self, tx: WriteTx, node: str, event_id: int, event: Event | RefusedEvent, received_ms: int,
                   result: CommitResult) -> None:
        """Ledger movements, then reconciliation, then device and lag bookkeeping for one event."""
        if isinstance(event, RefusedEvent):
            return  # its seq is settled; it moves no stock (the quarantine row says why)
        hub_ms = result.committed_ms
        book_before: int | None = None  # a count scan: the book before it, when the bin had one
        if isinstance(event, ScanEvent) and event.mode == "count":
            sku = self._resolve_sku(event.gtin)
            if tx.has_balance(sku, event.location):
                book_before = tx.balance(sku, event.location)
        changes = apply_event(tx, event_id, event, hub_ms, self._resolve_sku, self.catalog.bin)
        result.balances.extend(changes)
        skew = self._skew_ms.get(node, 0)
        t_ms = event.ts_ms - skew
        rec = self.reconciler
        if isinstance(event, ScanEvent):
            result.scans.append(ScanRow(event_id, node, event.seq, "accepted", event.ts_ms, hub_ms, event.scanner,
                                        event.mode, event.gtin, self._resolve_sku(event.gtin), event.qty,
                                        event.location, event.from_location, None, event.raw, event.operator))
            if event.mode == "count":
                closed = rec.count_scan(event.location)
                if closed:
                    adjusted = sum(c.qty_delta for c in changes if c.reason == COUNT_ADJUSTMENT)
                    note = (f"count scan by {event.operator or event.scanner} on node {node} set bin "
                            f"{event.location} to {event.qty} (adjustment {adjusted:+d})")
                    tx.close_discrepancies(closed, hub_ms, event_id, note)
                    result.discrepancies_closed.extend(closed)
                elif book_before is not None and self._unsensored(event.location):
                    # Nothing open explains the difference: it is news (a bin's first count is not).
                    found = count_difference(event_id, node, event, self._resolve_sku(event.gtin), book_before,
                                             t_ms, hub_ms)
                    self._record(tx, [found] if found else [], result)
            else:
                self._record(tx, negative_balances(tx, event_id, node, event, changes, t_ms, hub_ms,
                                                   self.plausibility, self._shelf_holds), result)
                for change in changes:
                    if change.location in rec.bins:
                        self._record(tx, rec.scan(change.location, change.sku, t_ms, hub_ms, change.qty_delta, {
                            "event_id": event_id, "node": node, "seq": event.seq, "mode": event.mode,
                            "qty": event.qty, "device_ms": event.ts_ms}), result)
        elif isinstance(event, ShelfFault):
            result.faults_changed.extend(self.faults.apply(tx, node, event_id, event, t_ms, hub_ms))
            reason = self.faults.is_faulted(event.bin)
            if reason is not None:
                # What the bin weighed while the fault lasts is not evidence; neither is what was pending.
                rec.fault_seen(event.bin, reason)
        elif isinstance(event, ShelfCount):
            # A certain count first clears the range faults it disproves (hub.faults), so
            # reconciliation sees the bin as trusted again from this count on.
            result.faults_changed.extend(self.faults.apply(tx, node, event_id, event, t_ms, hub_ms))
            if not event.uncertain:
                result.shelf_confidence[event.bin] = event.confidence
            where = self.catalog.bin(event.bin)
            if not event.uncertain and (where is None or where.sensored):
                self._shelf_count[event.bin] = event.count
            # Reconciled: bins the catalog marks sensored, and bins it does not know yet. Not:
            # weight-only bins (the sensor is the ledger there) and bins the catalog says have
            # no sensor (a misconfigured controller must not invent discrepancies).
            if where is None or (where.sensored and not where.weight_only):
                self._record(tx, rec.shelf_count(
                    event.bin, where.sku if where else None, t_ms, hub_ms, event.count, event.weight_g,
                    event.uncertain, {"event_id": event_id, "node": node, "seq": event.seq,
                                      "confidence": event.confidence, "quotient": event.quotient,
                                      "device_ms": event.ts_ms}, moving_ms=event.moving_ms), result)
        elif isinstance(event, ScanRejected):
            result.scans.append(ScanRow(event_id, node, event.seq, "rejected", event.ts_ms, hub_ms, event.scanner,
                                        event.mode, None, None, None, event.location, None, event.reason, event.raw,
                                        None))
        elif isinstance(event, DeviceChange):
            devices = self._devices.setdefault(node, {})
            devices[event.device] = {"device": event.device, "device_kind": event.device_kind,
                                     "present": event.present, "path": event.path}
            tx.update_node(node, devices=list(devices.values()))
        result.lag.append(LagSample(node, event.ts_ms, event.accepted_ms, received_ms, hub_ms, skew))

    def _shelf_holds(self, location: str, sku: str, qty: int) -> bool:
        """A shelf weighs this location, the catalog says it holds this SKU (or names none), and its
        last certain count says it holds at least qty."""
        where = self.catalog.bin(location)
        if where is not None and where.sku is not None and where.sku != sku:
            return False
        return self._shelf_count.get(location, 0) >= qty

    def _unsensored(self, location: str) -> bool:
        """No shelf weighs this location (the catalog says so, or it is not a catalog bin)."""
        where = self.catalog.bin(location)
        return where is None or not where.sensored

    def _check_dock(self) -> None:
        """Open a "put away or check" task for stock left at a dock too long; close those put away since."""
        settings = self.plausibility
        now = time.monotonic()
        if not settings.dock_locations or now - self._dock_checked < settings.dock_check_s:
            return
        self._dock_checked = now
        at_ms = now_ms()
        try:
            aged = {(a.location, a.sku): a for a in
                    self.store.aged_stock(settings.dock_locations, at_ms - settings.dock_max_age_ms)}
            # Per dock: open discrepancies elsewhere, however many, cannot hide an open task here.
            open_tasks = {(d.bin, d.sku): d.id for dock in settings.dock_locations
                          for d in self.store.discrepancies("open", dock, 1000, None) if d.kind == STUCK_AT_DOCK}
            new = [stuck_at_dock(a, settings, at_ms) for key, a in aged.items() if key not in open_tasks]
            done = [ident for key, ident in open_tasks.items() if key not in aged]
            if not new and not done:
                return
            result = CommitResult(committed_ms=at_ms)
            with self.store.write() as tx:
                self._record(tx, new, result)
                if done:
                    tx.close_discrepancies(done, at_ms, None, "put away (nothing older than the limit left there)")
                    self._forget_open(done)
                    result.discrepancies_closed.extend(done)
        except Exception:
            log.exception("could not check the stock left at %s; will retry", ", ".join(settings.dock_locations))
            self._load_state()
            return
        self._on_commit(result)

    def _forget_open(self, ids: list[int]) -> None:
        """Drop closed discrepancies from the reconciler's index of open ones."""
        gone = set(ids)
        for bin_ids in self.reconciler.open_ids.values():
            bin_ids[:] = [i for i in bin_ids if i not in gone]

    def _maybe_reload_catalog(self) -> None:
        now = time.monotonic()
        if now - self._catalog_checked < CATALOG_POLL_S:
            return
        self._catalog_checked = now
        try:
            if self.store.catalog_rev() != self.catalog.rev:
                self.catalog = CatalogIndex(self.store.catalog())
                log.info("catalog rev %d loaded: %d GTIN(s), %d bin(s)", self.catalog.rev,
                         len(self.catalog.sku_by_gtin), len(self.catalog.bins))
        except Exception:
            log.exception("could not reload the catalog; keeping rev %d", self.catalog.rev)

    def _expire_windows(self) -> None:
        """Judge reconciliation evidence at bins that went quiet (by the hub's clock)."""
        skus = {b: (c.sku if (c := self.catalog.bin(b)) else None) for b in self.reconciler.bins}
        found = self.reconciler.expire(now_ms(), skus)
        if not found and not self.reconciler.dirty:
            return
        result = CommitResult(committed_ms=now_ms())
        try:
            with self.store.write() as tx:
                self._record(tx, found, result)
                self._save_windows(tx)
        except Exception:
            log.exception("could not record %d discrepancy(ies); reloading state", len(found))
            self._load_state()
            return
        self._on_commit(result)

    def _apply_birth(self, tx: WriteTx, birth: Birth, node: str, msg: Inbound, result: CommitResult,
                     touched: dict[tuple[str, str], int]) -> None:
        _check_node(birth.node, node)
        track = self.book.admit(node, birth.stream, by_birth=True)
        track.max_seq = max(track.max_seq, birth.last_seq)
        self._settle_deleted(tx, track, birth, msg, result, touched)
        for old in self.book.retire_others(node, birth.stream):
            if old.unreceived():
                log.warning("node %s: stream %s retired with %d seq(s) never received (the node now writes "
                            "stream %s: its storage was replaced); those events are lost", node, old.stream,
                            old.unreceived(), birth.stream)
        skew = birth.clock_ms - msg.received_ms
        self._skew_ms[node] = skew
        devices = [{"device": d.device, "device_kind": d.device_kind, "present": d.present, "path": d.path}
                   for d in birth.devices]
        self._devices[node] = {str(d["device"]): d for d in devices}
        tx.update_node(node, online=1, boot_id=birth.boot_id, sw_version=birth.sw_version, stream=birth.stream,
                       last_seq=birth.last_seq, outbox_depth=birth.outbox_depth,
                       clock_skew_ms=skew, birth_ms=msg.received_ms,
                       last_seen_ms=msg.received_ms, devices=devices, notices=list(birth.notices))
        result.nodes_changed.add(node)
        log.info("birth of node %s: boot %s, stream %s, last seq %d, outbox depth %d, clock skew %d ms",
                 node, birth.boot_id, birth.stream, birth.last_seq, birth.outbox_depth,
                 birth.clock_ms - msg.received_ms)

    def _settle_deleted(self, tx: WriteTx, track: StreamTrack, birth: Birth, msg: Inbound, result: CommitResult,
                        touched: dict[tuple[str, str], int]) -> None:
        """Seqs the node no longer holds can never be re-sent: settle those the ledger lacks.

        A node deletes an event only on the hub's ack, and its outbox is the unacknowledged
        tail of the stream, so every seq up to last_seq - outbox_depth is gone from it. If the
        ledger lacks some of them, the hub acknowledged them once and lost them since (its
        ledger was restored from a backup, or replaced). Waiting for them would hold back the
        stream for good; they are recorded as lost, loudly, and the stream goes on.
        """
        gone_through = birth.last_seq - birth.outbox_depth
        if gone_through <= track.watermark:
            return
        before = track.watermark
        received = {s for s in track.above if s <= gone_through}  # stored, held: applied below
        lost = gone_through - before - len(received)
        track.skip_through(gone_through)
        if lost:
            reason = (f"node {birth.node} stream {birth.stream}: {lost} event(s) between seq {before + 1} and "
                      f"{gone_through} were acknowledged earlier but are not in the ledger, and the node no longer "
                      f"has them (was the hub's ledger restored from a backup?). They are lost and not in the "
                      f"stock: recount the bins this node serves.")
            log.error("%s", reason)
            tx.quarantine(msg.received_ms, msg.topic, birth.node, reason, msg.payload)
            result.quarantined.append(reason)
        self._apply_held(tx, track, before, result, received_below_skip=received)
        touched.setdefault((track.node, track.stream), msg.received_ms)

    def _request_gaps(self) -> None:
        for track, from_seq in self.book.gaps(GAP_SETTLE_S, GAP_REPEAT_S):
            log.warning("node %s stream %s: seq %d missing (have up to %d); asking for a re-send",
                        track.node, track.stream, from_seq, track.max_seq)
            self._send_command(track.node, Command(id=secrets.token_hex(6), cmd="resend_from", ts_ms=now_ms(),
                                                   stream=track.stream, from_seq=from_seq))


def _check_node(payload_node: str, topic_node: str) -> None:
    if payload_node != topic_node:
        raise ContractError(f"payload says node '{payload_node}' but was published under node '{topic_node}'")


# One encoder, made once: json.dumps with these options would build a new one per call.
_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode

# A node publishes on a handful of topics: parse each once (a bad topic raises every time).
_parse_topic = functools.lru_cache(maxsize=4096)(parse_topic)


class _MessageFailed(Exception):
    """One message raised something other than a ContractError while being applied."""

    def __init__(self, msg: Inbound, error: Exception) -> None:
        super().__init__(repr(error))
        self.msg = msg
        self.error = error


def _topic_node(topic: str) -> str | None:
    try:
        return parse_topic(topic).node
    except ContractError:
        return None
