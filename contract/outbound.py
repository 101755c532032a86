"""What the hub publishes for other consumers (dashboards, Node-RED, andon lights): read-only,
under the hub's own topics `wh/v1/{site}/hub/...`, documented in docs/asyncapi.yaml.

- `bins/{bin}` (retained): what a location holds, its shelf's last confidence and any fault;
- `skus/{sku}` (retained): a SKU's stock across the site and whether it is low or out;
- `discrepancies` (retained): how many are open, by kind;
- `alerts` (not retained): one message per thing a person should know about now.

Integration accounts (`stock-hub add-integration`) may subscribe to these and nothing else.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from contract._fields import Fields
from contract.messages import LOCATION_RE, SCHEMA_VERSION, SKU_RE, load_payload, read_message
from contract.topics import HUB_NODE, ROOT, check_name

SKU_STATES = frozenset({"ok", "low", "stockout"})
ALERT_KINDS = frozenset({"discrepancy", "stockout", "low_stock", "shelf_fault", "node_offline"})
MAX_BIN_ITEMS = 1000  # a dock can hold many SKUs; beyond this the list is cut and `truncated` set


def _dump(obj: dict[str, Any]) -> bytes:
    return json.dumps({k: v for k, v in obj.items() if v is not None}, separators=(",", ":")).encode()


M = TypeVar("M")


def _read(payload: bytes, what: str, read: Callable[[Fields], M]) -> M:
    """Read a whole message as the inbound ones are read: version, fields, nothing left unread."""
    return read_message(load_payload(payload, what), what, read)


def bin_topic(site: str, bin_name: str) -> str:
    """The retained state topic of one location."""
    check_name("site", site)
    if not LOCATION_RE.fullmatch(bin_name):
        raise ValueError(f"bin {bin_name!r} is not a valid location name")
    return f"{ROOT}/{site}/{HUB_NODE}/bins/{bin_name}"


def sku_topic(site: str, sku: str) -> str:
    """The retained state topic of one SKU."""
    check_name("site", site)
    if not SKU_RE.fullmatch(sku):
        raise ValueError(f"SKU {sku!r} is not a valid SKU")
    return f"{ROOT}/{site}/{HUB_NODE}/skus/{sku}"


def discrepancies_topic(site: str) -> str:
    """The retained open-discrepancy counts."""
    check_name("site", site)
    return f"{ROOT}/{site}/{HUB_NODE}/discrepancies"


def alerts_topic(site: str) -> str:
    """Alerts, one message each, not retained."""
    check_name("site", site)
    return f"{ROOT}/{site}/{HUB_NODE}/alerts"


# Topic filters an integration account may read (its ACL), one per line of the ACL.
CONSUMER_TOPIC_FILTERS = ("bins/#", "skus/#", "discrepancies", "alerts", "state")


@dataclass(frozen=True, slots=True)
class BinItem:
    """One SKU's quantity at a location."""

    sku: str
    qty: int


@dataclass(frozen=True, slots=True)
class BinStock:
    """What a location holds now; `confidence` and `fault` only for a bin on a shelf sensor."""

    bin: str
    qty: int  # all SKUs together, the figure a one-SKU bin's sensor shows
    items: tuple[BinItem, ...]
    ts_ms: int
    confidence: float | None = None
    fault: str | None = None
    truncated: bool = False
    v: int = SCHEMA_VERSION

    def to_json(self) -> bytes:
        return _dump({"v": self.v, "bin": self.bin, "qty": self.qty,
                      "items": [{"sku": i.sku, "qty": i.qty} for i in self.items], "ts_ms": self.ts_ms,
                      "confidence": self.confidence, "fault": self.fault, "truncated": self.truncated or None})

    @classmethod
    def from_json(cls, payload: bytes) -> BinStock:
        return _read(payload, "bin stock", cls._read)

    @classmethod
    def _read(cls, f: Fields) -> BinStock:
        items = []
        for i, raw in enumerate(f.list("items", MAX_BIN_ITEMS)):
            item = Fields(raw, f"bin stock items[{i}]")
            items.append(BinItem(sku=item.str("sku", pattern=SKU_RE), qty=item.int("qty", -10**9, 10**9)))
            item.done()
        return cls(bin=f.str("bin", pattern=LOCATION_RE), qty=f.int("qty", -10**12, 10**12), items=tuple(items),
                   ts_ms=f.ts_ms("ts_ms"), confidence=f.float("confidence", 0.0, 1.0, required=False),
                   fault=f.str("fault", 64, required=False), truncated=bool(f.bool("truncated", required=False)))


@dataclass(frozen=True, slots=True)
class SkuStock:
    """A SKU across the site: pieces on hand (negative balances count as 0) and its state."""

    sku: str
    on_hand: int
    state: str  # ok, low (at or below the reorder point) or stockout (none on hand, demand waiting)
    ts_ms: int
    reorder_point: int | None = None
    v: int = SCHEMA_VERSION

    def to_json(self) -> bytes:
        return _dump({"v": self.v, "sku": self.sku, "on_hand": self.on_hand, "state": self.state,
                      "reorder_point": self.reorder_point, "ts_ms": self.ts_ms})

    @classmethod
    def from_json(cls, payload: bytes) -> SkuStock:
        return _read(payload, "sku stock", lambda f: cls(
            sku=f.str("sku", pattern=SKU_RE), on_hand=f.int("on_hand", 0, 10**12),
            state=f.str("state", choices=SKU_STATES), ts_ms=f.ts_ms("ts_ms"),
            reorder_point=f.int("reorder_point", 0, 10**12, required=False)))


@dataclass(frozen=True, slots=True)
class DiscrepancyCounts:
    """Open discrepancies at the site, in all and by kind."""

    open: int
    by_kind: dict[str, int]
    ts_ms: int
    v: int = SCHEMA_VERSION

    def to_json(self) -> bytes:
        return _dump({"v": self.v, "open": self.open,
                      "by_kind": [{"kind": k, "open": n} for k, n in sorted(self.by_kind.items())],
                      "ts_ms": self.ts_ms})

    @classmethod
    def from_json(cls, payload: bytes) -> DiscrepancyCounts:
        return _read(payload, "discrepancy counts", cls._read)

    @classmethod
    def _read(cls, f: Fields) -> DiscrepancyCounts:
        counts: dict[str, int] = {}
        for i, raw in enumerate(f.list("by_kind", 100)):
            entry = Fields(raw, f"discrepancy counts by_kind[{i}]")
            counts[entry.str("kind", 64)] = entry.int("open", 0, 10**9)
            entry.done()
        return cls(open=f.int("open", 0, 10**9), by_kind=counts, ts_ms=f.ts_ms("ts_ms"))


@dataclass(frozen=True, slots=True)
class HubAlert:
    """Something a person should know about now, with what it is about and a sentence."""

    kind: str
    subject: str  # the bin, SKU or node it is about
    text: str
    ts_ms: int
    v: int = SCHEMA_VERSION

    def to_json(self) -> bytes:
        return _dump({"v": self.v, "kind": self.kind, "subject": self.subject, "text": self.text,
                      "ts_ms": self.ts_ms})

    @classmethod
    def from_json(cls, payload: bytes) -> HubAlert:
        return _read(payload, "alert", lambda f: cls(
            kind=f.str("kind", choices=ALERT_KINDS), subject=f.str("subject", 64), text=f.str("text", 500),
            ts_ms=f.ts_ms("ts_ms")))


# The outbound message classes by AsyncAPI message name (the contract test keeps the document in step).
OUTBOUND_TYPES: dict[str, Any] = {"BinStock": BinStock, "SkuStock": SkuStock,
                                  "DiscrepancyCounts": DiscrepancyCounts, "HubAlert": HubAlert}
