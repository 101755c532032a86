"""The rules' value types: a catalog item, a purchase order, a proposal and its life, a SKU's plan.

Shared by the core (which decides), the store (which keeps them) and the views (which
shape them for pages), so none of those has to import another for its types.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from hub.rules import demand as demand_rule
from hub.rules import leadtime as leadtime_rule
from hub.rules import reorder
from hub.rules import supplier as supplier_rule

# A proposal's life: pending (a supervisor may approve, edit or reject it) → queued (approved,
# in the outbox) → ordered (central made it a PO) → received; or rejected while pending.
PENDING, QUEUED, ORDERED, RECEIVED, REJECTED = "pending", "queued", "ordered", "received", "rejected"
# Open: not yet received or rejected. The core holds these in memory; nothing else is "open".
OPEN_PROPOSAL_STATUSES = frozenset({PENDING, QUEUED, ORDERED})
# Open and not yet a purchase order: while a SKU has one of these it gets no second proposal.
AWAITING_PO_STATUSES = OPEN_PROPOSAL_STATUSES - {ORDERED}


@dataclass(frozen=True, slots=True)
class CatalogItem:
    """A SKU as central purchasing describes it."""

    sku: str
    gtin: str | None
    description: str
    unit_weight_g: float | None
    suppliers: tuple[supplier_rule.SupplierOption, ...]


@dataclass(frozen=True, slots=True)
class PurchaseOrder:
    """One line of a purchase order central placed for one of our requisitions.

    A purchase order may carry many lines (one per SKU, requisitions merged per supplier); the
    hub keeps each line as its own record, named by `po_id` (the number people print and scan)
    and `line_id` (central's id of the line within it).
    """

    po_id: str
    proposal_id: str | None
    sku: str
    supplier: str
    qty_ordered: int
    qty_received: int
    ordered_ms: int
    promised_ms: int | None
    status: str  # open, received, closed, cancelled
    line_id: str = "1"  # orders placed before multi-line orders had one line
    unit: str = "unit"
    unit_price: float | None = None

    @property
    def open_qty(self) -> int:
        return max(0, self.qty_ordered - self.qty_received) if self.status == "open" else 0

    @property
    def line_key(self) -> str:
        """The line's name in the hub: PO number and line id."""
        return line_key(self.po_id, self.line_id)


def line_key(po_id: str, line_id: str) -> str:
    """How the hub names one PO line (PO number, then line id)."""
    return f"{po_id}/{line_id}"


@dataclass(frozen=True, slots=True)
class Proposal:
    """A requisition line the rules propose (or a supervisor edited)."""

    id: str
    sku: str
    supplier: str
    status: str  # pending, queued (approved, in the outbox), ordered, received, rejected
    desired_qty: int
    essential_qty: int
    qty: int  # after the cash rule
    qty_override: int | None
    unit_price: float
    moq: int
    pack_multiple: int
    days_of_cover: float
    position: float
    reorder_point: float
    order_up_to: float
    cash_outcome: str
    created_ms: int
    updated_ms: int
    decided_by: str | None = None
    note: str | None = None
    po_id: str | None = None
    auto: bool = False

    @property
    def final_qty(self) -> int:
        return self.qty if self.qty_override is None else self.qty_override


@dataclass(frozen=True, slots=True)
class ManualLevels:
    """A SKU's min/max set by a person (the SKU page, the API) or the catalog, used until demand is learned."""

    sku: str
    reorder_min: int
    reorder_max: int
    set_by: str  # a user name, or "catalog rev N"
    set_ms: int


MANUAL, LEARNED = "manual", "learned"  # which levels a plan uses (SkuPlan.source)


@dataclass(frozen=True, slots=True)
class SkuPlan:
    """The formula's view of one SKU now."""

    sku: str
    on_hand: int
    on_order: int
    position: int
    demand: demand_rule.DemandState
    lead_time: leadtime_rule.LeadTimeEstimate | None
    choice: supplier_rule.SupplierChoice | None
    levels: reorder.ReorderLevels | None  # the levels in force: the learned ones, or the manual min/max
    factor: float
    learned: reorder.ReorderLevels | None = None  # what the formula gives from demand and lead time
    manual: ManualLevels | None = None
    source: str = LEARNED  # MANUAL or LEARNED: which of the two `levels` are
    why: str = ""  # why that one, in words (for the decision log)


def to_json(obj: Any) -> Any:
    """Dataclasses (nested) as plain JSON values; an infinite float (no demand: cover forever) as None."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_json(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple | list):
        return [to_json(x) for x in obj]
    if isinstance(obj, float) and math.isinf(obj):
        return None
    return obj
