"""The sync task: push the outbox to central, pull catalog, cash and PO status.

Runs on the event loop with aiohttp (timeouts on every call); every rules-database access
goes through the engine's thread (`RulesEngine.call`), so a slow or dead central never
holds the ingest writer or the loop. Back-off is computed on the injectable clock, so a
test can pass an hour of outage in milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp

from hub.purchasing.backoff import backoff_delay_ms
from hub.purchasing.client import CentralClient, CentralError
from hub.rules.clock import Clock
from hub.rules.config import CentralConfig
from hub.rules.core import RulesCore
from hub.rules.model import CatalogItem, PurchaseOrder
from hub.rules.outbox import OutboxItem
from hub.rules.supplier import SupplierOption

if TYPE_CHECKING:
    from hub.rules.engine import RulesEngine

log = logging.getLogger(__name__)

TICK_S = 1.0  # how often the task looks at the clock; back-off itself runs on the clock


@dataclass
class SyncStatus:
    """What the page shows about the link to central."""

    central_url: str
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


def purchase_order(raw: dict[str, Any]) -> PurchaseOrder:
    return PurchaseOrder(str(raw["po_id"]), raw.get("requisition_id"), str(raw["sku"]), str(raw["supplier"]),
                         int(raw["qty"]), int(raw.get("qty_received", 0)), int(raw["ordered_ms"]),
                         raw.get("promised_ms"), str(raw["status"]))


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
        self.status = SyncStatus(config.base_url)
        self._next_pull_ms = 0
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Look now (after an approval, or when a test moved the clock)."""
        self._wake.set()

    async def run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self.config.timeout_s, connect=min(5.0, self.config.timeout_s))
        async with aiohttp.ClientSession(timeout=timeout) as session:
            client = CentralClient(session, self.config.base_url, self.config.token)
            while True:
                try:
                    await self.step(client)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("purchasing sync step failed; trying again in %.0f s", self.tick_s)
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.tick_s):  # not wait_for: CPython #86296, see edge/link.py
                        await self._wake.wait()

    async def step(self, client: CentralClient) -> None:
        """One round: push what is due, pull if the poll interval has passed."""
        await self.push_due(client)
        if self.clock() >= self._next_pull_ms:
            await self.pull(client)

    async def push_due(self, client: CentralClient) -> int:
        """Send every due outbox request; returns how many were accepted."""
        now = self.clock()
        due = await self.engine.call(lambda core: core.outbox.due(now))
        sent = 0
        for n, item in enumerate(due):
            try:
                response = await client.post(item.path, item.body, item.idempotency_key)
            except CentralError as err:
                if not err.retryable:
                    await self._refused(item, err)
                    continue
                # central is down or struggling: everything due waits for the same back-off
                await self._backoff(due[n:], err)
                break
            sent += 1
            self.status.reachable, self.status.last_error = True, None
            self.status.consecutive_failures = 0
            self.status.last_push_ms = self.clock()
            await self._accepted(item, response)
        return sent

    async def _accepted(self, item: OutboxItem, response: dict[str, Any]) -> None:
        raw_po = response.get("purchase_order")
        po = purchase_order(raw_po) if isinstance(raw_po, dict) else None
        now = self.clock()
        await self.engine.call(lambda core: core.on_outbox_sent(item, response, po, now))

    async def _refused(self, item: OutboxItem, err: CentralError) -> None:
        now = self.clock()
        self.status.last_error = str(err)
        log.error("central refused %s %s: %s; kept as failed for a person to look at",
                  item.kind, item.idempotency_key, err)
        await self.engine.call(lambda core: core.outbox.mark_failed([item.id], now, str(err)))

    async def _backoff(self, items: list[OutboxItem], err: CentralError) -> None:
        now = self.clock()
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

    async def pull(self, client: CentralClient) -> None:
        """Catalog, cash and PO status from central, handed to the rules."""
        try:
            items = [catalog_item(x) for x in await client.catalog()]
            cash = await client.cash(self.site)
            orders = [purchase_order(x) for x in await client.purchase_orders(self.site)]
        except CentralError as err:
            self.status.reachable, self.status.last_error = False, str(err)
            self._next_pull_ms = self.clock() + int(self.config.retry_base_s * 1000)
            return
        except (KeyError, ValueError, TypeError) as err:
            self.status.last_error = f"central sent data the hub cannot read: {err!r}"
            log.error(self.status.last_error)
            self._next_pull_ms = self.clock() + int(self.config.poll_interval_s * 1000)
            return
        available = float(cash["available"])

        def apply(core: RulesCore) -> None:
            core.set_catalog(items)
            core.set_cash(available)
            core.update_orders(orders)

        await self.engine.call(apply)
        self.status.reachable = True
        self.status.last_pull_ms = self.clock()
        self._next_pull_ms = self.clock() + int(self.config.poll_interval_s * 1000)

    def snapshot(self) -> dict[str, Any]:
        return {"central_url": self.status.central_url, "reachable": self.status.reachable,
                "last_error": self.status.last_error, "last_push_ms": self.status.last_push_ms,
                "last_pull_ms": self.status.last_pull_ms, "consecutive_failures": self.status.consecutive_failures,
                "next_attempt_ms": self.status.next_attempt_ms}

