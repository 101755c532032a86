"""Ingest: message -> ledger. Validate, dedupe, append, then ack after the commit.

The single writer (`hub.writer`, docs/architecture.md hop 9) owns the write side of the
store and hands this module each group of drained messages as one transaction. Acks are
published only after the commit, so an ack is a promise kept.

A payload that breaks the contract is quarantined with its reason in the same
transaction as the good traffic around it; nothing a node sends can stop the thread.

Each channel (events, state, birth, command reply) and each event kind has one small
function here. Events are applied in seq order per stream; the held events above a gap are
kept by `hub.dedupe`. The ack watermark is exactly the applied prefix. Reconciliation
(hub.reconcile) runs here, inside the same transaction, on skew-corrected device time; its
per-bin state is saved with the commit and reloaded at start.
"""

from __future__ import annotations

import functools
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
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
    ScanEvent,
    ScanRejected,
    ShelfCount,
    ShelfFault,
    UnknownToThisVersion,
    load_payload,
    parse_topic,
)
from contract.clock import now_ms
from hub import lots
from hub.catalog import CatalogIndex
from hub.commands import CommandLog
from hub.commit import CommitResult, Inbound
from hub.dedupe import Held, StreamBook, StreamTrack
from hub.discrepancies import Discrepancies
from hub.faults import ActiveFaults
from hub.lag import LagTracker, StageTimes
from hub.ledger import COUNT_ADJUSTMENT, BalanceChange, SkuResolver, apply_adjustment, apply_event, check_known
from hub.plausibility import PlausibilitySettings, count_difference, negative_balances
from hub.reconcile import WRONG_BIN, Reconciler
from hub.refused_events import RefusedEvent, SalvagedBatch, salvage_batch, stored_event
from hub.store.base import Catalog, EventsAlreadyStored, ScanRow, Store, WriteTx
from hub.writer import MessageFailed, SingleWriter

log = logging.getLogger(__name__)

MAX_MESSAGES_PER_COMMIT = 2000  # bounds one transaction's duration and memory
IDLE_TICK_S = 0.5  # how often an idle writer wakes to check gaps and report health
GAP_SETTLE_S = 2.0  # a gap may be reordering in flight; ask for it only after this
GAP_REPEAT_S = 5.0
CATALOG_POLL_S = 2.0  # how soon a `stock-hub import-catalog` from another process is picked up
DEFAULT_WINDOW_MS = 30_000
# Open discrepancies read at start to find the wrong bins whose other half a count would leave
# (whether the neighbour was counted since is not kept across a restart).
OPEN_WRONG_BINS_LOADED = 10_000

# (node, stream) -> receive time of its latest message in this commit: the streams to ack after it.
Touched = dict[tuple[str, str], int]


@dataclass(frozen=True, slots=True)
class _Applying:
    """One event being applied: where it is written and when it happened on the hub's clock."""

    tx: WriteTx
    node: str
    event_id: int
    hub_ms: int  # the commit's time
    t_ms: int  # the device's time of the event, corrected by the node's clock skew
    result: CommitResult


def _tell_done(batch: list[Inbound]) -> None:
    """The writer is done with these messages: wake whoever waits on one (hub.resend_lane)."""
    for message in batch:
        if message.done is not None:
            message.done.set()


class Ingest:
    """Message -> ledger, on the single writer's thread."""

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
        self.book = StreamBook()
        self.commands = CommandLog()  # replies are taken only for commands sent through it
        self.catalog = CatalogIndex(Catalog(0))
        self.faults = ActiveFaults()  # hub.faults: reconciliation asks it whether a bin's weight can be trusted
        # The lookups read self.catalog when called, so a reloaded catalog applies at once.
        self.reconciler = Reconciler(window_ms, unit_weight_of=lambda b, sku: self.catalog.unit_weight(b, sku),
                                     neighbours_of=lambda b: self.catalog.neighbours(b),
                                     fault_of=self.faults.is_faulted)
        self.plausibility = plausibility or PlausibilitySettings()
        # Last certain shelf count per bin (memory only: heartbeats restate it after a restart).
        self._shelf_count: dict[str, int] = {}
        self.lag = LagTracker()
        self._skew_ms: dict[str, int] = {}  # node clock minus hub clock, from the last birth
        self._devices: dict[str, dict[str, dict[str, Any]]] = {}
        self._catalog_checked = 0.0
        # Its heartbeat is called on every pass (at least every IDLE_TICK_S): a writer stuck in
        # the store stops the beats and, under systemd, the watchdog pings.
        self.writer: SingleWriter[Inbound, WriteTx] = SingleWriter(
            "ingest-writer", commit=self._commit, run_job=self._in_transaction, set_aside=self._quarantine_alone,
            recover=self._load_state, on_tick=self._tick, tick_s=IDLE_TICK_S, max_batch=MAX_MESSAGES_PER_COMMIT,
            failure_note="nothing acknowledged: the nodes keep their copies and re-send; memory reloaded from disk",
            done=_tell_done)
        # Opened in commits here; closed by people and by the periodic checks (hub.discrepancies).
        self.discrepancies = Discrepancies(store, self.reconciler, self.plausibility,
                                           self.writer, on_commit, self._load_state)
        self._channel_appliers: dict[Channel, Callable[[WriteTx, str, Inbound, CommitResult, Touched], None]] = {
            Channel.EVENTS: self._apply_events_message, Channel.STATE: self._apply_state,
            Channel.BIRTH: self._apply_birth, Channel.CMD_REPLY: self._apply_command_reply}
        self._event_appliers: dict[type, Callable[[_Applying, Any], None]] = {
            ScanEvent: self._apply_scan, ShelfFault: self._apply_shelf_fault, ShelfCount: self._apply_shelf_count,
            ScanRejected: self._apply_scan_rejected, DeviceChange: self._apply_device_change}
        # Whether re-sent messages of this node wait for the writer (the link sets it to its resend
        # lane's): its gap is being filled, so the hub does not ask the node for it again.
        self.backlog_waiting: Callable[[str], bool] = lambda node: False
        self.committed_total = 0
        self.duplicates_total = 0
        self.quarantined_total = 0
        self.batches_total = 0

    # ----------------------------------------------------------------- control

    def start(self) -> None:
        self._load_state()
        self.writer.start()

    def _load_state(self) -> None:
        """Memory from disk: stream positions, held events, skews, devices, catalog, reconciliation state."""
        self.book = StreamBook()
        for pos in self.store.stream_positions():
            held = {h.seq: Held(h.event_id, stored_event(json.loads(h.body)), h.received_ms)
                    for h in self.store.held_events(pos.node, pos.stream, pos.watermark)} if pos.above else {}
            for item in held.values():
                if isinstance(item.event, RefusedEvent) and item.event.reason.startswith("stored by an earlier hub"):
                    log.warning("node %s stream %s seq %d, held above a gap: %s; it will move no stock", pos.node,
                                pos.stream, item.event.seq, item.event.reason)
            self.book.load(pos.node, pos.stream, pos.watermark, set(pos.above), pos.max_seq, held)
        for row in self.store.nodes():
            if row.clock_skew_ms is not None:
                self._skew_ms[row.node] = row.clock_skew_ms
            self._devices[row.node] = {str(d["device"]): d for d in row.devices}
        self.catalog = CatalogIndex(self.store.catalog())
        self.reconciler.load(self.store.reconcile_states(), self.store.open_discrepancy_ids())
        for found in self.store.discrepancies("open", None, OPEN_WRONG_BINS_LOADED):
            if found.kind == WRONG_BIN:
                self.reconciler.opened_wrong_bin(found.id, found.bin, found.sku, found.device_from_ms,
                                                 found.device_to_ms, found.evidence)
        self.faults.load(self.store.shelf_faults())

    def _resolve_sku(self, gtin: str) -> str:
        if self._fixed_resolver is not None:
            return self._fixed_resolver(gtin)
        return self.catalog.resolve_sku(gtin)

    def submit(self, topic: str, payload: bytes, received_ms: int | None = None) -> None:
        """Queue a message (any thread; called from paho's network thread)."""
        self.writer.put(Inbound(topic, payload, now_ms() if received_ms is None else received_ms))

    def submit_tracked(self, topic: str, payload: bytes, received_ms: int) -> threading.Event:
        """Queue a message; the event is set once the writer is done with it (committed, set aside or dropped)."""
        done = threading.Event()
        self.writer.put(Inbound(topic, payload, received_ms, done))
        return done

    def run_in_writer(self, fn: Callable[[WriteTx], Any]) -> Future[Any]:
        """Run fn(tx) on the writer thread in its own transaction, after what is queued (any thread)."""
        return self.writer.run_in_writer(fn)

    def _in_transaction(self, fn: Callable[[WriteTx], Any]) -> Any:
        with self.store.write() as tx:
            return fn(tx)

    def adjust(self, sku: str, location: str, qty_delta: int, reason: str, note: str,
               operator: str) -> Future[list[BalanceChange]]:
        """Book a supervisor's adjustment (hub.ledger.apply_adjustment) as a correction movement.

        The future's result is the balance change; a ValueError (bad reason, quantity or note, or
        more than the location holds) or LookupError (a SKU or location the hub does not know)
        says why nothing was booked.
        """
        def book(tx: WriteTx) -> list[BalanceChange]:
            # On the writer's thread: everything is committed, so the store's reads are current.
            check_known(tx, self.store, self.catalog, self.plausibility.dock_locations, sku, location)
            return [apply_adjustment(tx, sku, location, qty_delta, reason, note, operator, now_ms())]

        def committed(done: Future[list[BalanceChange]]) -> None:
            if done.exception() is None:  # on the writer thread: the live feed and the rules hear of it
                self._on_commit(CommitResult(committed_ms=now_ms(), balances=done.result()))
        return self.writer.run_in_writer(book, then=committed)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Finish what is queued, then stop the thread."""
        self.writer.stop(timeout_s)

    @property
    def queue_depth(self) -> int:
        return self.writer.queue_depth

    @property
    def last_tick(self) -> float:
        """Monotonic time of the writer loop's last pass (the health check's "alive")."""
        return self.writer.last_tick

    # ----------------------------------------------------------------- the writer thread

    def _tick(self) -> None:
        """Between commits, at least every IDLE_TICK_S."""
        self._request_gaps()
        self._maybe_reload_catalog()
        self.discrepancies.expire_windows()
        self.discrepancies.check_dock()

    def _commit(self, batch: list[Inbound]) -> None:
        """Commit a drained batch in one transaction; MessageFailed names a message that broke the code."""
        try:
            self._commit_once(batch)
        except EventsAlreadyStored as err:
            # Memory missed events the disk holds; nothing was written. Redo it one insert at a time.
            log.warning("ingest: %s; redoing the commit of %d message(s) unbatched", err, len(batch))
            self._load_state()
            self._commit_once(batch, batched=False)

    def _quarantine_alone(self, msg: Inbound, error: Exception) -> None:
        """Set aside a message that broke the code (not the contract), so a person sees it."""
        reason = f"hub could not process this message ({error!r}); report it with the hub log"
        log.error("ingest: quarantining the message on %s that failed with %r; the rest of its commit goes on",
                  msg.topic, error)
        try:
            with self.store.write() as tx:
                tx.quarantine(msg.received_ms, msg.topic, _topic_node(msg.topic), reason[:500], msg.payload)
            self.quarantined_total += 1
            self._on_commit(CommitResult(committed_ms=now_ms(), quarantined=[reason]))
        except Exception:
            log.exception("could not even quarantine the failed message on %s", msg.topic)

    def _commit_once(self, batch: list[Inbound], batched: bool = True) -> None:
        result = CommitResult(committed_ms=now_ms())
        touched: Touched = {}  # latest last
        with self.store.write(batched) as tx:
            for msg in batch:
                try:
                    self._apply(tx, msg, result, touched)
                except self.store.storage_errors:
                    raise  # the store's fault (disk full, I/O), not the message's
                except Exception as err:
                    raise MessageFailed(msg, err) from err
            for (node, stream), received_ms in touched.items():
                track = self.book.get(node, stream)
                tx.set_stream(node, stream, track.watermark, track.max_seq, result.committed_ms)
                # Once per commit, not per message: the stream of the latest events is the
                # node's current one (a wiped SD card starts a new one).
                tx.update_node(node, last_seen_ms=received_ms, stream=stream)
            self.discrepancies.save_windows(tx)
        self.batches_total += 1
        self.committed_total += result.events_new
        self.duplicates_total += result.events_duplicate
        self.quarantined_total += len(result.quarantined)
        ts = now_ms()
        self.lag.record(result.lag)
        for node, stream in touched:
            self._publish_ack(Ack(node=node, stream=stream, watermark=self.book.get(node, stream).watermark, ts_ms=ts))
        self._on_commit(result)

    def _apply(self, tx: WriteTx, msg: Inbound, result: CommitResult, touched: Touched) -> None:
        """One message, by its channel; a payload that breaks the contract is quarantined with the reason."""
        node: str | None = None
        try:
            address = _parse_topic(msg.topic)
            node = address.node
            if node == HUB_NODE or address.site != self.site:
                return
            apply = self._channel_appliers.get(address.channel)  # the hub's own channels are not read back
            if apply is not None:
                apply(tx, node, msg, result, touched)
        except ContractError as err:
            reason = str(err)
            if isinstance(err, UnknownToThisVersion):
                reason += (" (the node may run a newer version than the hub: upgrade the hub; the node keeps what it "
                           "sent until the hub can read it)")
            log.warning("quarantined a message on %s: %s", msg.topic, reason)
            tx.quarantine(msg.received_ms, msg.topic, node, reason, msg.payload)
            result.quarantined.append(reason)

    def _apply_events_message(self, tx: WriteTx, node: str, msg: Inbound, result: CommitResult,
                              touched: Touched) -> None:
        """A batch of events; those that break the contract are refused one by one, the rest applied."""
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

    def _apply_state(self, tx: WriteTx, node: str, msg: Inbound, result: CommitResult,
                     touched: Touched) -> None:
        """The node's online state (its Will says offline)."""
        if msg.payload:  # an empty retained message only clears the topic
            state = NodeState.from_json(msg.payload)
            _check_node(state.node, node)
            tx.update_node(node, online=int(state.online), state_ms=msg.received_ms, last_seen_ms=msg.received_ms)
            result.nodes_changed.add(node)

    def _apply_command_reply(self, tx: WriteTx, node: str, msg: Inbound, result: CommitResult,
                             touched: Touched) -> None:
        """A node's answer to a command the hub sent it."""
        reply = CommandReply.from_json(msg.payload)
        _check_node(reply.node, node)
        self.commands.check(reply)  # UnsolicitedReply (a ContractError): quarantined
        result.replies.append(reply)
        tx.update_node(node, last_seen_ms=msg.received_ms)

    def _apply_events(self, tx: WriteTx, batch: EventBatch | SalvagedBatch, raw_events: list[Any], node: str,
                      msg: Inbound,
                      result: CommitResult, touched: Touched) -> None:
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
        ready = track.arrive(event.seq, Held(event_id, event, received_ms))
        if not ready:
            result.events_held += 1
        self._apply_in_order(tx, track.node, ready, result)

    def _apply_in_order(self, tx: WriteTx, node: str, ready: list[Held], result: CommitResult) -> None:
        for item in ready:
            self._apply_one(tx, node, item.event_id, item.event, item.received_ms, result)

    def _apply_one(self, tx: WriteTx, node: str, event_id: int, event: Event | RefusedEvent, received_ms: int,
                   result: CommitResult) -> None:
        """The event's own effects (one function per kind, below), then its lag sample."""
        if isinstance(event, RefusedEvent):
            return  # its seq is settled; it moves no stock (the quarantine row says why)
        skew = self._skew_ms.get(node, 0)
        self._event_appliers[type(event)](_Applying(tx, node, event_id, result.committed_ms, event.ts_ms - skew,
                                                    result), event)
        result.lag.append(StageTimes(node, event.ts_ms, event.accepted_ms, received_ms, result.committed_ms, skew))

    def _apply_scan(self, at: _Applying, event: ScanEvent) -> None:
        """Movements, then plausibility (a pick that would go negative) or, for a count, what it closes or shows."""
        tx, node, event_id, hub_ms, result = at.tx, at.node, at.event_id, at.hub_ms, at.result
        sku = self._resolve_sku(event.gtin)
        book_before: int | None = None  # a count scan: the book before it, when the bin had one
        if event.mode == "count" and tx.has_balance(sku, event.location):
            book_before = tx.balance(sku, event.location)
        changes = apply_event(tx, event_id, event, hub_ms, self._resolve_sku, self.catalog.bin, self.catalog.tracking)
        result.balances.extend(changes)
        result.scans.append(ScanRow(event_id, node, event.seq, "accepted", event.ts_ms, hub_ms, event.scanner,
                                    event.mode, event.gtin, sku, event.qty, event.location, event.from_location,
                                    None, event.raw, event.operator, event.lot, event.return_reason))
        rec = self.reconciler
        if event.mode == "count":
            if book_before is not None and book_before != event.qty and event.location in rec.bins:
                # The count disagrees with the book: what is pending at the bin says why. Judged now,
                # since the count ends it (and closes what it finds, with the rest).
                self.discrepancies.record(tx, rec.judge_now(event.location, hub_ms), result)
            left = rec.left_by_count(  # a wrong bin's other half stays wrong
                event.location, sku, lambda loc, of: tx.balance(of, loc) if tx.has_balance(of, loc) else None)
            closed = rec.count_scan(event.location, sku)
            if closed:
                adjusted = sum(c.qty_delta for c in changes if c.reason == COUNT_ADJUSTMENT)
                note = (f"count scan by {event.operator or event.scanner} on node {node} set bin "
                        f"{event.location} to {event.qty} (adjustment {adjusted:+d})")
                tx.close_discrepancies(closed, hub_ms, event_id, note)
                result.discrepancies_closed.extend(closed)
                self.discrepancies.record(tx, left, result)
            elif book_before is not None and self._unsensored(event.location):
                # Nothing open explains the difference: it is news (a bin's first count is not).
                found = count_difference(event_id, node, event, sku, book_before, at.t_ms, hub_ms)
                self.discrepancies.record(tx, [found] if found else [], result)
            return
        self.discrepancies.record(tx, negative_balances(tx, event_id, node, event, changes, at.t_ms, hub_ms,
                                           self.plausibility, self._shelf_holds, self._foreign), result)
        # Lot-tracked and serialised SKUs: the lot or serial taken was at the source, a serial is in one place.
        self.discrepancies.record(tx, lots.check_scan(tx, event_id, node, event, sku, self.catalog.tracking(sku),
                                                      at.t_ms, hub_ms), result)
        for change in changes:
            if change.location in rec.bins:
                self.discrepancies.record(tx, rec.scan(change.location, change.sku, at.t_ms, hub_ms, change.qty_delta, {
                    "event_id": event_id, "node": node, "seq": event.seq, "mode": event.mode,
                    "qty": event.qty, "device_ms": event.ts_ms}), result)

    def _apply_shelf_fault(self, at: _Applying, event: ShelfFault) -> None:
        """Set or clear the fault; while it lasts, what the bin weighs is not evidence."""
        at.result.faults_changed.extend(self.faults.apply(at.tx, at.node, at.event_id, event, at.t_ms, at.hub_ms))
        reason = self.faults.is_faulted(event.bin)
        if reason is not None:
            # What the bin weighed while the fault lasts is not evidence; neither is what was pending.
            self.reconciler.fault_seen(event.bin, reason)

    def _apply_shelf_count(self, at: _Applying, event: ShelfCount) -> None:
        """Weight-only bins book it; sensored bins reconcile it against the scans."""
        tx, result = at.tx, at.result
        result.balances.extend(apply_event(tx, at.event_id, event, at.hub_ms, self._resolve_sku, self.catalog.bin))
        # A certain count first clears the range faults it disproves (hub.faults), so
        # reconciliation sees the bin as trusted again from this count on.
        result.faults_changed.extend(self.faults.apply(tx, at.node, at.event_id, event, at.t_ms, at.hub_ms))
        if not event.uncertain:
            result.shelf_confidence[event.bin] = event.confidence
        where = self.catalog.bin(event.bin)
        if not event.uncertain and (where is None or where.sensored):
            self._shelf_count[event.bin] = event.count
        # Reconciled: bins the catalog marks sensored, and bins it does not know yet. Not:
        # weight-only bins (the sensor is the ledger there) and bins the catalog says have
        # no sensor (a misconfigured controller must not invent discrepancies).
        if where is None or (where.sensored and not where.weight_only):
            self.discrepancies.record(tx, self.reconciler.shelf_count(
                event.bin, where.sku if where else None, at.t_ms, at.hub_ms, event.count, event.weight_g,
                event.uncertain, {"event_id": at.event_id, "node": at.node, "seq": event.seq,
                                  "confidence": event.confidence, "quotient": event.quotient,
                                  "device_ms": event.ts_ms}, moving_ms=event.moving_ms), result)

    def _apply_scan_rejected(self, at: _Applying, event: ScanRejected) -> None:
        """No stock moves; the scans page shows what the worker heard and why."""
        at.result.scans.append(ScanRow(at.event_id, at.node, event.seq, "rejected", event.ts_ms, at.hub_ms,
                                       event.scanner, event.mode, None, None, None, event.location, None,
                                       event.reason, event.raw, None))

    def _apply_device_change(self, at: _Applying, event: DeviceChange) -> None:
        """A scanner or shelf controller plugged in or out: the node's device list."""
        devices = self._devices.setdefault(at.node, {})
        devices[event.device] = {"device": event.device, "device_kind": event.device_kind,
                                 "present": event.present, "path": event.path}
        at.tx.update_node(at.node, devices=list(devices.values()))

    def _shelf_holds(self, location: str, sku: str, qty: int) -> bool:
        """A shelf weighs this location, the catalog says it holds this SKU (or names none), and its
        last certain count says it holds at least qty."""
        where = self.catalog.bin(location)
        if where is not None and where.sku is not None and where.sku != sku:
            return False
        return self._shelf_count.get(location, 0) >= qty

    def _foreign(self, location: str, sku: str) -> bool:
        """The catalog puts another SKU in this location (a scan of this one there is a misread)."""
        where = self.catalog.bin(location)
        return where is not None and where.sku is not None and where.sku != sku

    def _unsensored(self, location: str) -> bool:
        """No shelf weighs this location (the catalog says so, or it is not a catalog bin)."""
        where = self.catalog.bin(location)
        return where is None or not where.sensored

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

    def _apply_birth(self, tx: WriteTx, node: str, msg: Inbound, result: CommitResult,
                     touched: Touched) -> None:
        """A node (re)started: its stream, what it no longer holds, clock skew and devices."""
        birth = Birth.from_json(msg.payload)
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
                        touched: Touched) -> None:
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
        lost = gone_through - before - sum(1 for s in track.above if s <= gone_through)  # those held are not lost
        ready = track.skip_through(gone_through)
        if lost:
            reason = (f"node {birth.node} stream {birth.stream}: {lost} event(s) between seq {before + 1} and "
                      f"{gone_through} were acknowledged earlier but are not in the ledger, and the node no longer "
                      f"has them (was the hub's ledger restored from a backup?). They are lost and not in the "
                      f"stock: recount the bins this node serves.")
            log.error("%s", reason)
            tx.quarantine(msg.received_ms, msg.topic, birth.node, reason, msg.payload)
            result.quarantined.append(reason)
        self._apply_in_order(tx, track.node, ready, result)
        touched.setdefault((track.node, track.stream), msg.received_ms)

    def _request_gaps(self) -> None:
        for track, from_seq in self.book.gaps(GAP_SETTLE_S, GAP_REPEAT_S, filling=self.backlog_waiting):
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


def _topic_node(topic: str) -> str | None:
    try:
        return parse_topic(topic).node
    except ContractError:
        return None
