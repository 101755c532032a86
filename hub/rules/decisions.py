"""The decision log record, and the sentences a supervisor reads in it."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Decision:
    """One rule firing: its inputs, what the formula gave, and why in one sentence."""

    ts_ms: int
    rule: str  # reorder, supplier_demoted, supplier_restored, cash_scaled, feedback_raise, ...
    sku: str
    sentence: str
    inputs: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] = field(default_factory=dict)
    supplier: str | None = None
    proposal_id: str | None = None


def day_label(epoch_ms: int) -> str:
    """'2 Oct' (UTC hub day), the way a supervisor writes a date."""
    d = dt.datetime.fromtimestamp(epoch_ms / 1000, tz=dt.UTC)
    return f"{d.day} {d.strftime('%b')}"


def sku_label(sku: str, gtin: str | None = None) -> str:
    """'GTIN 09506000134352' when the SKU is (or has) a GTIN, else the SKU."""
    if gtin:
        return f"GTIN {gtin}" if gtin == sku else f"{sku} (GTIN {gtin})"
    return f"GTIN {sku}" if sku.isdigit() and len(sku) in (8, 12, 13, 14) else sku


def units(qty: float) -> str:
    return f"{qty:.0f}" if abs(qty - round(qty)) < 1e-9 else f"{qty:.1f}"
