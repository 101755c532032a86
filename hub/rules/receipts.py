"""Which purchase-order lines a dock receipt belongs to: the PO scanned with the goods, else first in, first out.

A worker receiving against a delivery scans its purchase-order number (a `PO:` label or GS1
AI 400, carried in the scan's `ref`). That receipt belongs to that PO's lines of the SKU and to
no other order (a PO has one line per SKU as a rule; when it has several, the oldest line is
filled first): if the PO is not one of this hub's open orders for the SKU, nothing is matched here and central,
which sees the scanned number, matches it. Only a receipt with no PO scanned is spread over
the SKU's open POs oldest first. A pallet SSCC (AI 00) in `ref` names a pallet, not an
order: it travels with the receipt and the receipt is matched first in, first out.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

SSCC_DIGITS = 18

SCANNED_PO = "po"  # matched to the PO scanned with the goods
FIFO = "fifo"  # no PO scanned: the SKU's open POs, oldest first
UNMATCHED = "none"  # a PO was scanned that this hub cannot match; central matches it by number


@dataclass(frozen=True, slots=True)
class OpenPo:
    """What matching needs of one line of the hub's open purchase orders."""

    po_id: str
    line_id: str
    sku: str
    open_qty: int
    ordered_ms: int


@dataclass(frozen=True, slots=True)
class ReceiptMatch:
    """How one receipt was matched, and why, in words for the decision log."""

    how: str  # SCANNED_PO, FIFO or UNMATCHED
    lines: tuple[tuple[str, str, int], ...]  # (po_id, line_id, qty) in order
    po_ref: str | None  # the purchase-order number scanned, if any
    sscc: str | None  # the pallet SSCC scanned, if that was the reference
    unmatched_qty: int
    why: str


def is_sscc(ref: str) -> bool:
    """18 digits whose last is the GS1 check digit: a pallet's serial shipping container code."""
    if len(ref) != SSCC_DIGITS or not ref.isdigit():
        return False
    body = [int(c) for c in ref[:-1]]
    # GS1 mod 10: weights 3 and 1 alternating from the rightmost digit of the body
    total = sum(d * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return (10 - total % 10) % 10 == int(ref[-1])


def same_po(a: str, b: str) -> bool:
    """PO numbers as people print them: case and surrounding spaces do not matter."""
    return a.strip().upper() == b.strip().upper()


def match(sku: str, qty: int, ref: str | None, open_pos: Iterable[OpenPo]) -> ReceiptMatch:
    """Match `qty` received of `sku` to the hub's open POs, by the scanned reference when there is one."""
    pos = list(open_pos)
    ref = ref.strip() if ref and ref.strip() else None
    if ref is not None and not is_sscc(ref):
        named = [p for p in pos if same_po(p.po_id, ref)]
        if not named:
            return ReceiptMatch(UNMATCHED, (), ref, None, qty,
                                f"PO {ref} is not an open order of this hub: central matches it by number")
        of_sku = [p for p in named if p.sku == sku]
        if not of_sku:
            others = ", ".join(sorted({p.sku for p in named}))
            return ReceiptMatch(UNMATCHED, (), ref, None, qty,
                                f"PO {ref} is an order for {others}, not this SKU: not matched here; central "
                                "sees the scanned number")
        po_id = of_sku[0].po_id
        lines, remaining = _fill(qty, of_sku)
        open_qty = sum(p.open_qty for p in of_sku)
        why = f"PO {po_id} had {open_qty} open"
        if remaining:
            why += f": {remaining} more than ordered, not matched to another PO"
        return ReceiptMatch(SCANNED_PO, lines, ref, None, remaining, why)
    lines, remaining = _fill(qty, [p for p in pos if p.sku == sku])
    matched = ", ".join(f"{po_id} ({n})" for po_id, _, n in lines)
    why = ("no PO was scanned: " + (f"matched first in, first out to {matched}" if lines
                                    else "no open PO for this SKU to match"))
    if lines and remaining:
        why += f"; {remaining} more than the open orders"
    return ReceiptMatch(FIFO, tuple(lines), None, ref, remaining, why)


def _fill(qty: int, lines: Iterable[OpenPo]) -> tuple[tuple[tuple[str, str, int], ...], int]:
    """Spread `qty` over the lines, oldest order first: (po_id, line_id, qty) taken, and what is left."""
    remaining, taken = qty, []
    for po in sorted(lines, key=lambda p: (p.ordered_ms, p.po_id, p.line_id)):
        if remaining <= 0:
            break
        take = min(remaining, po.open_qty)
        if take > 0:
            taken.append((po.po_id, po.line_id, take))
            remaining -= take
    return tuple(taken), remaining
