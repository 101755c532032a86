"""The ledger's read data, built once for both its JSON endpoint and the page that shows it.

Each function takes the service and already-checked arguments and returns the JSON-ready body
(without `ok`). The API handler in hub.web.api checks the query and answers the body; a page
calls the same function, so a page shows exactly what the API serves (Datasette builds a view's
data once for its HTML and its JSON the same way).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Collection, Iterable
from typing import Any

from aiohttp import web

from hub.faults import fault_words
from hub.lag import STAGES
from hub.rules.stock import location_available
from hub.service import HubService

log = logging.getLogger(__name__)


async def or_none(source: Awaitable[dict[str, Any]], what: str) -> dict[str, Any] | None:
    """A page section's data, or None when its source answers an error (the rules engine
    switched off, an unknown SKU): the page then says "not available" instead of failing."""
    try:
        return await source
    except web.HTTPException as exc:
        if exc.status >= 500:
            log.error("%s is not available: %s", what, exc.reason)
        return None


def items(body: dict[str, Any] | None) -> list[dict[str, Any]] | None:
    """The `items` list of a body, or None when the source is not available."""
    return None if body is None else body["items"]


def stock_items(rows: Iterable[Any], unavailable: Collection[str]) -> list[dict[str, Any]]:
    """Balance rows (a dataclass with a `location`) as JSON items, each saying whether its stock is
    `available`: false at stock.unavailable_locations (QUARANTINE), whose stock cannot be picked or ordered."""
    return [{**dataclasses.asdict(r), "available": location_available(r.location, unavailable)} for r in rows]


def keyset_page(rows: list[Any], limit: int) -> dict[str, Any]:
    """A keyset page: items newest first, and the `before_id` that fetches the next page."""
    items = [dataclasses.asdict(r) for r in rows]
    return {"items": items, "next_before_id": items[-1]["id"] if len(items) == limit else None}


async def discrepancies(service: HubService, status: str | None, bin_name: str | None = None, limit: int = 100,
                        before_id: int | None = None) -> dict[str, Any]:
    """Reconciliation findings (open, closed or both), newest first, with the outcome counters."""
    rows = await asyncio.to_thread(service.store.discrepancies, status, bin_name, limit, before_id)
    body = keyset_page(rows, limit)
    body["outcomes"] = dict(service.ingest.reconciler.outcomes)  # since the hub started
    return body


async def shelf_faults(service: HubService) -> dict[str, Any]:
    """Every shelf fault active now, per bin, with a short meaning of its kind."""
    rows = await asyncio.to_thread(service.store.shelf_faults)
    return {"items": [{**dataclasses.asdict(r), "meaning": fault_words(r.fault)} for r in rows]}


def lag(service: HubService) -> dict[str, Any]:
    """Rolling signal-lag percentiles per node and stage (ms), over the last samples of each."""
    by_node: dict[str, dict[str, Any]] = {}
    for s in service.ingest.lag.snapshot():
        row = by_node.setdefault(s.node, {"node": s.node})
        row[s.stage] = {"samples": s.samples, "p50": s.p50_ms, "p90": s.p90_ms, "p99": s.p99_ms, "max": s.max_ms}
    return {"stages": list(STAGES), "items": list(by_node.values())}
