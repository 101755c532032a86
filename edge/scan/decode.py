"""Barcode text to meaning: an item, a location, a control label, or a reason it is unusable.

GS1 element strings, GS1 Digital Link URIs (QR/DataMatrix codes holding
`https://id.gs1.org/01/<gtin>/10/<lot>?17=<expiry>`, on any domain), GTINs, UPCs and SSCCs
are parsed by biip (a maintained GS1 parser); this module only decides what a parsed
barcode means to the warehouse and words the reasons a worker hears. Both GS1 forms give
the same element strings and so the same scan. Control labels (our own format, see
firmware_config/labels/) are plain Code 128 text with a prefix: `LOC:`, `MODE:`, `QTY:`,
`OP:`, `PO:`, `RET:` (a return's reason card), `CLEAR`.
`decode` never raises: anything it cannot use comes back as a `BadScan` with a reason.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import TypeAlias

import biip
from biip.checksums import gs1_standard_check_digit
from biip.gs1_element_strings import GS1ElementString

from contract.messages import LOCATION_RE, QTY_MAX, RAW_MAX_CHARS, REF_MAX_CHARS, RETURN_REASON_RE
from edge.scan.config import MODES
from edge.scan.keys import UNMAPPED

log = logging.getLogger(__name__)

# AIM symbology letters we know how to read (ISO/IEC 15424); anything else is rejected so a
# scanner with an unexpected symbology enabled is noticed at once.
KNOWN_AIM = {"A": "Code 39", "C": "Code 128", "d": "Data Matrix", "E": "EAN/UPC", "e": "GS1 DataBar",
             "I": "ITF", "Q": "QR Code", "L": "PDF417", "z": "Aztec", "X": "other"}
MODE_ALIASES = {"PUT-AWAY": "putaway", "PUT_AWAY": "putaway", "PUTAWAY": "putaway"}
_BIIP_CONFIG = biip.ParseConfig(separator_chars=("\x1d",))


@dataclass(frozen=True, slots=True)
class ItemScan:
    """A trade item (or a logistic unit's contents), with what the label says about it."""

    gtin: str  # 14 digits
    qty: int | None = None  # from AI 30 or 37
    lot: str | None = None
    expiry: str | None = None  # YYYY-MM-DD, from AI 17 (or 15 best-before when 17 is absent)
    serial: str | None = None
    sscc: str | None = None  # AI 00 on the same label
    po: str | None = None  # AI 400
    net_weight_g: float | None = None  # AI 310n
    symbology: str | None = None


@dataclass(frozen=True, slots=True)
class PalletScan:
    """An SSCC label alone: the logistic unit being received (a reference, not stock)."""

    sscc: str
    symbology: str | None = None


@dataclass(frozen=True, slots=True)
class LocationScan:
    """A bin or dock location label."""

    location: str


@dataclass(frozen=True, slots=True)
class ModeScan:
    """A mode label: receive, putaway, pick, move or count."""

    mode: str


@dataclass(frozen=True, slots=True)
class QtyScan:
    """A quantity label: applies to the next item scan."""

    qty: int


@dataclass(frozen=True, slots=True)
class BadgeScan:
    """An operator badge."""

    operator: str


@dataclass(frozen=True, slots=True)
class RefScan:
    """A purchase-order number for the receipts that follow."""

    ref: str


@dataclass(frozen=True, slots=True)
class ReturnReasonScan:
    """A return's reason card (`RET:DAMAGED`): the reason for the returns that follow."""

    reason: str


@dataclass(frozen=True, slots=True)
class ClearScan:
    """Forget location, quantity and reference (start over)."""


@dataclass(frozen=True, slots=True)
class BadScan:
    """Unusable barcode, with the sentence the worker and the hub page show."""

    reason: str
    symbology: str | None = None


Decoded: TypeAlias = (ItemScan | PalletScan | LocationScan | ModeScan | QtyScan | BadgeScan | RefScan
                      | ReturnReasonScan | ClearScan | BadScan)


def decode(raw: str, location_regex: re.Pattern[str] | None = None) -> Decoded:
    """What one barcode means; never raises."""
    try:
        return _decode(raw, location_regex)
    except Exception as err:  # a parser bug must not lose the scan: it becomes a rejection
        log.exception("decoding %r failed", raw)
        return BadScan(f"could not read barcode {_show(raw)} ({type(err).__name__}); report this label to IT")


def _decode(raw: str, location_regex: re.Pattern[str] | None) -> Decoded:
    if len(raw) > RAW_MAX_CHARS:
        return BadScan(f"barcode of {len(raw)} characters is too long (over {RAW_MAX_CHARS}); "
                       "check the scanner's suffix/terminator setting")
    if UNMAPPED in raw:
        return BadScan(f"barcode {_show(raw)} has keys outside the US layout; set the scanner's keyboard to US")
    symbology, data = _split_aim(raw)
    if symbology is not None and len(symbology) < 3:
        return BadScan(f"barcode {_show(raw)} is an incomplete symbology identifier; rescan")
    if symbology is not None and symbology[1] not in KNOWN_AIM:
        return BadScan(f"unknown symbology {_show(symbology)} in {_show(raw)}; enable only GS1-128, GS1 DataMatrix, "
                       "GS1 QR, EAN/UPC, DataBar and Code 128 on the scanner", symbology)
    stripped = data.strip()
    if stripped[:8].lower().startswith(("https://", "http://")):
        return _digital_link(raw, stripped, symbology)
    control = _control(data, location_regex)
    if control is not None:
        return control
    if not stripped:
        return BadScan("empty barcode; rescan", symbology)
    if not stripped.isprintable() and "\x1d" not in stripped:
        return BadScan(f"barcode {_show(raw)} contains control characters; check the scanner's prefix settings",
                       symbology)
    is_gs1 = symbology in ("]C1", "]d2", "]Q3", "]e0", "]J1") or (symbology is None and stripped[:2] in ("00", "01", "02") and len(stripped) > 14)
    if is_gs1:
        return _gs1(raw, symbology)
    if stripped.isdigit() and len(stripped) in (8, 12, 13, 14):
        return _gtin(stripped, symbology)
    if stripped.isdigit() and len(stripped) in (6, 7):
        return _upc_e(raw, stripped, symbology)
    return BadScan(f"barcode {_show(raw)} is neither a GTIN, a GS1 label nor one of our labels "
                   "(LOC:, MODE:, QTY:, OP:, PO:, RET:); scan the item's EAN/GS1 barcode", symbology)


def _split_aim(raw: str) -> tuple[str | None, str]:
    if raw.startswith("]"):
        return raw[:3], raw[3:]
    return None, raw


def _control(data: str, location_regex: re.Pattern[str] | None) -> Decoded | None:
    head, sep, value = data.partition(":")
    key = head.strip().upper()
    value = value.strip()
    if not sep:
        if key == "CLEAR":
            return ClearScan()
        if location_regex is not None and location_regex.fullmatch(data.strip()):
            return _location(data.strip())
        return None
    if key == "LOC":
        return _location(value)
    if key == "MODE":
        mode = MODE_ALIASES.get(value.upper(), value.lower())
        if mode not in MODES:
            return BadScan(f"mode label {data!r} names no mode; print one of: {', '.join(MODES)}")
        return ModeScan(mode)
    if key == "QTY":
        if not value.isdigit() or int(value) > QTY_MAX:
            return BadScan(f"quantity label {data!r} is not a whole number 0-{QTY_MAX}; reprint the label")
        return QtyScan(int(value))
    if key == "OP":
        if not value or len(value) > 64 or not value.isprintable():
            return BadScan(f"badge {data!r} is not 1-64 printable characters; reprint the badge")
        return BadgeScan(value)
    if key == "RET":
        reason = value.upper()
        if not RETURN_REASON_RE.fullmatch(reason):
            return BadScan(f"return reason card {data!r} is not a reason code (1-32 letters, digits, _ or -, "
                           "e.g. RET:DAMAGED); reprint the card")
        return ReturnReasonScan(reason)
    if key == "PO":
        if not value or len(value) > 35 or not value.isprintable():
            return BadScan(f"purchase-order label {data!r} is not 1-35 printable characters; reprint it")
        return RefScan(value)
    return None


def _location(value: str) -> Decoded:
    if not LOCATION_RE.fullmatch(value):  # fullmatch: `$` would let a trailing newline through
        return BadScan(f"location label {value!r} is not a valid bin name (letters, digits, . _ -; up to 32); "
                       "reprint the label")
    return LocationScan(value)


def _gtin(digits: str, symbology: str | None) -> Decoded:
    expected = gs1_standard_check_digit(digits[:-1])
    if expected != int(digits[-1]):
        return BadScan(f"bad check digit in GTIN {digits}: expected {expected}; rescan, or key the item "
                       "in at the hub if the label is damaged", symbology)
    return ItemScan(gtin=digits.zfill(14), symbology=symbology)


def _upc_e(raw: str, digits: str, symbology: str | None) -> Decoded:
    result = biip.parse(digits, config=_BIIP_CONFIG)
    if result.upc is None:
        return BadScan(f"barcode {_show(raw)} is not a valid UPC-E ({result.upc_error}); rescan", symbology)
    return _gtin(result.upc.as_upc_a(), symbology)


def _gs1(raw: str, symbology: str | None) -> Decoded:
    text = raw if symbology is not None else raw.strip()
    result = biip.parse(text, config=_BIIP_CONFIG)
    message = result.gs1_message
    if message is None:
        return BadScan(f"GS1 barcode {_show(raw)} does not parse: {result.gs1_message_error}; "
                       "check the label or the scanner's GS (Ctrl+]) setting", symbology)
    return _item(message.element_strings, raw, symbology)


def _digital_link(raw: str, uri: str, symbology: str | None) -> Decoded:
    """A GS1 Digital Link URI: its path and query carry the same AIs as an element string."""
    scheme, sep, rest = uri.partition("://")
    result = biip.parse(scheme.lower() + sep + rest, config=_BIIP_CONFIG)  # a scheme is case-insensitive
    link = result.gs1_digital_link_uri
    if link is None:
        return BadScan(f"web address {_show(raw)} is not a GS1 Digital Link "
                       f"({result.gs1_digital_link_uri_error or 'no GS1 identifier in it'}); "
                       "scan the item's GS1 barcode or its Digital Link QR code", symbology)
    return _item(link.element_strings, raw, symbology)


def _item(elements: list[GS1ElementString], raw: str, symbology: str | None) -> Decoded:
    """What a label's GS1 element strings say: an item, a pallet, or why neither."""
    fields: dict[str, str] = {}
    gtin_problem: str | None = None
    weight_g: float | None = None
    expiry = best_before = None
    for element in elements:
        ai = element.ai.ai
        if element.gtin_error:
            gtin_problem = f"{element.value} ({element.gtin_error})"
        if element.sscc_error:
            expected = gs1_standard_check_digit(element.value[:-1]) if element.value.isdigit() else "?"
            return BadScan(f"bad check digit in SSCC {element.value}: expected {expected}; rescan the pallet label",
                           symbology)
        if ai.startswith("310") and isinstance(element.decimal, Decimal):
            weight_g = float(element.decimal * 1000)  # AI 310n is kilograms with n decimals
        elif ai == "17" and element.date is not None:
            expiry = element.date.isoformat()
        elif ai == "15" and element.date is not None:
            best_before = element.date.isoformat()
        fields[ai] = element.value
    if gtin_problem is not None:
        digits = gtin_problem.split(" ", 1)[0]
        expected = gs1_standard_check_digit(digits[:-1]) if digits.isdigit() else "?"
        return BadScan(f"bad check digit in GTIN {digits}: expected {expected}; rescan, or key the item "
                       "in at the hub if the label is damaged", symbology)
    gtin = fields.get("01") or fields.get("02")
    sscc = fields.get("00")
    if gtin is None:
        if sscc is not None:
            return PalletScan(sscc, symbology)
        found = ", ".join(sorted(fields)) or "none"
        return BadScan(f"GS1 barcode {_show(raw)} has no GTIN (AI 01/02) or SSCC (AI 00) (AIs: {found}); "
                       "scan the item's own barcode", symbology)
    qty_text = fields.get("30") or fields.get("37")
    qty = int(qty_text) if qty_text is not None else None
    if qty is not None and qty > QTY_MAX:
        return BadScan(f"quantity {qty} in {_show(raw)} is over {QTY_MAX}; check the label", symbology)
    po = fields.get("400")
    return ItemScan(gtin=gtin, qty=qty, lot=fields.get("10"), expiry=expiry or best_before, serial=fields.get("21"),
                    sscc=sscc, po=po[:REF_MAX_CHARS] if po else None, net_weight_g=weight_g, symbology=symbology)


def _show(raw: str) -> str:
    """The barcode as a worker can read it: GS shown as <GS>, long text shortened."""
    text = raw.replace("\x1d", "<GS>")
    text = "".join(c if c.isprintable() else f"<{ord(c):02X}>" for c in text)
    return repr(text if len(text) <= 60 else text[:57] + "...")
