"""The sync task: push the outbox to central, pull catalog, cash and PO status, through a connector.

Requisitions due together go out as one order per supplier (lines merged; each line keeps its
own idempotency key); receipts and returns go one by one, in the order they were queued. A
line central refuses is kept as failed with central's reason; the others go on.

Runs on the event loop (the connector bounds every call with timeouts); every rules-database access
goes through the engine's thread (`RulesEngine.call`), so a slow or dead central never
holds the ingest writer or the loop. Back-off is computed on the injectable clock, so a
test can pass an hour of outage in milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hub.purchasing.backoff import backoff_delay_ms
from hub.purchasing.connector import CentralError, Connector
from hub.purchasing.connectors import open_connector
from hub.redact import url_for_log
from hub.rules.clock import Clock
from hub.rules.config import CentralConfig
from hub.rules.core import RulesCore
from hub.rules.model import CatalogItem, PurchaseOrder
from hub.rules.outbox import RECEIPT, REQUISITION, RETURN, OutboxItem
from hub.rules.supplier import SupplierOption

if TYPE_CHECKING:
    from hub.rules.engine import RulesEngine

log = logging.getLogger(__name__)

TICK_S = 1.0  # how often the task looks at the clock; back-off itself runs on the clock
# A step failing the same way every tick: its traceback once, then a line at most this often.
REPEAT_LOG_EVERY_S = 60.0


@dataclass
class SyncStatus:
    """What the page shows about the link to central."""

    central_url: str
    connector: str = ""
    reachable: bool | None = None
    last_error: str | None = None
    last_push_ms: int | None = None
    last_pull_ms: int | None = None
    consecutive_failures: int = 0
    next_attempt_ms: int | None = None


def catalog_item(raw: dict[str, Any]) -> CatalogItem:
    """Central's catalog entry as the rules' type (strict: a bad entry raises KeyError/ValueError)."""
    sups = tuple(SupplierOption(str(s["supplier"]), str(s.get("name") or s["supplier"]), int(s["priority"]),
                                float(s["lead_time_days"]), float(s["unit_price"]), int(s.get("moq", 1)),
                                int(s.get("pack_multiple", 1))) for s in raw.get("suppliers", []))
    weight = raw.get("unit_weight_g")
    return CatalogItem(str(raw["sku"]), raw.get("gtin"), str(raw.get("description", "")),
                       None if weight is None else float(weight), sups)


def purchase_order_lines(raw: dict[str, Any]) -> list[PurchaseOrder]:
    """Central's purchase order (contract v2) as the rules' records, one per line (strict: a bad entry raises)."""
    po_id, supplier, ordered_ms = str(raw["po_id"]), str(raw["supplier"]), int(raw["ordered_ms"])
    order_status = str(raw["status"])
    out = []
    for line in raw["lines"]:
        expected = line.get("expected_ms")
        price = line.get("unit_price")
        out.append(PurchaseOrder(po_id, line.get("requisition_id"), str(line["sku"]), supplier, int(line["qty"]),
                                 int(line.get("qty_received", 0)), ordered_ms,
                                 None if expected is None else int(expected),
                                 str(line.get("status") or order_status), str(line["line_id"]),
                                 str(line.get("unit") or "unit"), None if price is None else float(price)))
    return out


def order_key(site: str, items: list[OutboxItem]) -> str:
    """The idempotency key of one order: its lines' keys, so a resend of the same lines is the same order.

    Central also applies each line's requisition_id once, so lines regrouped on a retry (one
    came due later) are never ordered twice either.
    """
    digest = hashlib.sha256("\n".join(sorted(i.idempotency_key for i in items)).encode()).hexdigest()[:24]
    return f"{site}:order:{digest}"


def order_request(site: str, supplier: str, items: list[OutboxItem]) -> dict[str, Any]:
    """The contract's OrderRequest for requisition lines of one supplier.

    Built from the rows alone (no time of the attempt): a resend under the same key must carry
    the same body, or central rightly refuses it as a different request.
    """
    line_fields = ("requisition_id", "sku", "gtin", "qty", "unit", "unit_price", "expected_ms")
    lines = []
    for item in items:
        body = {"unit": "unit", **item.body}  # outbox rows from before contract v2 name no unit
        lines.append({k: body[k] for k in line_fields if body.get(k) is not None})
    requested_ms = min(int(i.body.get("requested_ms", i.created_ms)) for i in items)
    return {"site": site, "supplier": supplier, "requested_ms": requested_ms, "lines": lines}


def receipt_request(body: dict[str, Any]) -> dict[str, Any]:
    """A receipt from the outbox as the contract's Receipt (rows from before v2 name no line: line 1)."""
    out = {k: v for k, v in body.items() if k != "po_ids"}
    out["po_lines"] = [{"line_id": "1", **x} for x in body.get("po_lines", [])]
    return out


class FailureLog:
    """What the log says of a sync step that fails unexpectedly (a bug, a broken rules database):
    the traceback when it starts failing or fails differently, then one line a REPEAT_LOG_EVERY_S
    while it fails the same way (not a traceback a second), and a line when it works again."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._failure = ""  # "Type: message" of the failure going on, "" when the last step worked
        self._since_logged = 0  # failures since the last line about them
        self._logged_at = 0.0

    def failed(self, exc: Exception, retry_s: float) -> None:
        failure = f"{type(exc).__name__}: {exc}"
        now = self._clock()
        if failure != self._failure:
            log.error("purchasing sync step failed; trying again every %.0f s", retry_s, exc_info=exc)
            self._failure, self._since_logged, self._logged_at = failure, 0, now
        elif now - self._logged_at >= REPEAT_LOG_EVERY_S:
            log.error("purchasing sync step still failing (%d more times since the last line): %s",
                      self._since_logged + 1, failure)
            self._since_logged, self._logged_at = 0, now
        else:
            self._since_logged += 1

    def worked(self) -> None:
        if self._failure:
            log.warning("purchasing sync steps work again (they failed with %s)", self._failure)
        self._failure = ""


class PurchasingSync:
    """Outbox pusher and central poller; start with `run()` as a task."""

    def __init__(self, engine: RulesEngine, config: CentralConfig, site: str, clock: Clock,
                 rng: random.Random | None = None, tick_s: float = TICK_S) -> None:
        self.engine = engine
        self.config = config
        self.site = site
        self.clock = clock
        self.rng = rng or random.Random()
        self.tick_s = tick_s
        self.status = SyncStatus(url_for_log(config.base_url) if config.base_url else "")
        self._next_pull_ms = 0
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Look now (after an approval, or when a test moved the clock)."""
        self._wake.set()

    async def run(self) -> None:
        failures = FailureLog()
        async with open_connector(self.config) as connector:
            self.status.connector = connector.describe
            while True:
                # Cleared before the step, not after: a wake() that arrives while a step runs
                # (an approval, a test moving the clock) must start another step at once, not
                # wait a whole tick.
                self._wake.clear()
                try:
                    await self.step(connector)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    failures.failed(exc, self.tick_s)
                else:
                    failures.worked()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.tick_s):  # not wait_for: CPython #86296, see edge/link.py
                        await self._wake.wait()

    async def step(self, connector: Connector) -> None:
        """One round: push what is due, pull if the poll interval has passed."""
        await self.push_due(connector)
        if self.clock() >= self._next_pull_ms:
            await self.pull(connector)

    @staticmethod
    def batches(due: list[OutboxItem]) -> list[list[OutboxItem]]:
        """What goes out together, in outbox order: one order per supplier, each receipt and return alone."""
        by_supplier: dict[str, list[OutboxItem]] = {}
        out: list[list[OutboxItem]] = []
        for item in due:
            if item.kind == REQUISITION:
                supplier = str(item.body["supplier"])
                if supplier not in by_supplier:
                    by_supplier[supplier] = []
                    out.append(by_supplier[supplier])
                by_supplier[supplier].append(item)
            else:
                out.append([item])
        return out

    async def push_due(self, connector: Connector) -> int:
        """Send every due outbox request; returns how many central accepted."""
        now = self.clock()
        due = await self.engine.call(lambda core: core.outbox.due(now))
        batches = self.batches(due)
        sent = 0
        for n, batch in enumerate(batches):
            try:
                sent += await self._send(connector, batch)
            except CentralError as err:
                if not err.retryable:
                    await self._refused(batch, str(err))
                    continue
                # central is down or struggling: everything due waits for the same back-off
                await self._backoff([i for b in batches[n:] for i in b], err, now)
                break
            self.status.reachable, self.status.last_error = True, None
            self.status.consecutive_failures = 0
            self.status.last_push_ms = self.clock()
        return sent

    async def _send(self, connector: Connector, batch: list[OutboxItem]) -> int:
        first = batch[0]
        if first.kind == REQUISITION:
            return await self._send_order(connector, batch)
        if first.kind == RECEIPT:
            response = await connector.post_receipt(first.idempotency_key, receipt_request(first.body))
        elif first.kind == RETURN:
            response = await connector.return_to_supplier(first.idempotency_key, first.body)
        else:
            await self._refused(batch, f"the hub does not know how to send a {first.kind!r} request")
            return 0
        await self._accepted(first, response, None)
        return 1

    async def _send_order(self, connector: Connector, items: list[OutboxItem]) -> int:
        supplier = str(items[0].body["supplier"])
        answer = await connector.place_order(order_key(self.site, items),
                                             order_request(self.site, supplier, items))
        lines = {str(x.get("requisition_id")): x for x in answer.get("lines", []) if isinstance(x, dict)}
        orders: dict[str, list[PurchaseOrder]] = {}
        for raw in answer.get("purchase_orders", []):
            for po in purchase_order_lines(raw):
                orders.setdefault(po.po_id, []).append(po)
        sent = 0
        for item in items:
            rid = str(item.body["requisition_id"])
            line = lines.get(rid)
            if line is None:
                await self._backoff([item], CentralError(f"central's answer to order {supplier} did not mention "
                                                         f"requisition {rid}; will send it again"))
                continue
            if line.get("refused"):
                await self._refused([item], f"central refused requisition {rid} ({item.body.get('qty')} of "
                                            f"{item.body.get('sku')} from {supplier}): {line['refused']}")
                continue
            placed = next((p for p in orders.get(str(line.get("po_id")), [])
                           if p.line_id == str(line.get("line_id"))), None)
            await self._accepted(item, line, placed)
            sent += 1
        return sent

    async def _accepted(self, item: OutboxItem, response: dict[str, Any], po: PurchaseOrder | None) -> None:
        now = self.clock()
        await self.engine.call(lambda core: core.on_outbox_sent(item, response, po, now))

    async def _refused(self, items: list[OutboxItem], reason: str) -> None:
        now = self.clock()
        self.status.last_error = reason
        for item in items:
            log.error("central refused %s %s: %s; kept as failed for a person to look at",
                      item.kind, item.idempotency_key, reason)
        ids = [i.id for i in items]
        await self.engine.call(lambda core: core.outbox.mark_failed(ids, now, reason))

    async def _backoff(self, items: list[OutboxItem], err: CentralError, attempted_ms: int | None = None) -> None:
        # Timed from when the attempt started (as the pulls are): the clock can move on while
        # central fails to answer: the retry is due a back-off after the attempt, not after the failure was seen.
        now = self.clock() if attempted_ms is None else attempted_ms
        self.status.last_error = str(err)
        self.status.reachable = False
        self.status.consecutive_failures += 1
        delay = backoff_delay_ms(self.status.consecutive_failures, int(self.config.retry_base_s * 1000),
                                 int(self.config.retry_cap_s * 1000), self.rng)
        self.status.next_attempt_ms = now + delay
        log.warning("%s (%d failure(s) in a row, %d request(s) waiting); next try in %.1f s",
                    err, self.status.consecutive_failures, len(items), delay / 1000)
        ids = [i.id for i in items]
        await self.engine.call(lambda core: core.outbox.mark_retry(ids, now + delay, str(err)))

    async def pull(self, connector: Connector) -> None:
        """Catalog, cash and PO status from central, handed to the rules."""
        # The next pull is timed from when this one started: the clock can move on while
        # central answers, and what changed at central meanwhile must not wait a whole interval.
        started_ms = self.clock()
        try:
            items = [catalog_item(x) for x in await connector.catalog()]
            available = await connector.cash(self.site)
            orders = [line for x in await connector.purchase_orders(self.site) for line in purchase_order_lines(x)]
        except CentralError as err:
            self.status.reachable, self.status.last_error = False, str(err)
            self._next_pull_ms = started_ms + int(self.config.retry_base_s * 1000)
            return
        except (KeyError, ValueError, TypeError) as err:
            self.status.last_error = f"central sent data the hub cannot read: {err!r}"
            log.error(self.status.last_error)
            self._next_pull_ms = started_ms + int(self.config.poll_interval_s * 1000)
            return

        def apply(core: RulesCore) -> None:
            core.set_catalog(items)
            if available is not None:
                core.set_cash(available)
            core.update_orders(orders)

        await self.engine.call(apply)
        self.status.reachable = True
        self.status.last_pull_ms = self.clock()
        self._next_pull_ms = started_ms + int(self.config.poll_interval_s * 1000)

    def snapshot(self) -> dict[str, Any]:
        return {"central_url": self.status.central_url, "connector": self.status.connector,
                "reachable": self.status.reachable,
                "last_error": self.status.last_error, "last_push_ms": self.status.last_push_ms,
                "last_pull_ms": self.status.last_pull_ms, "consecutive_failures": self.status.consecutive_failures,
                "next_attempt_ms": self.status.next_attempt_ms}

