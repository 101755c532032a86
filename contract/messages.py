"""Every message on the wire, once, as a frozen dataclass with strict `from_json`/`to_json`.

Rules that hold for all of them: UTF-8 JSON objects, a schema version `v`, no unknown
fields, times in epoch milliseconds (`*_ms`), weights in grams (`*_g`). Optional fields
are omitted when empty, which keeps the bytes written per event small (docs/architecture.md, "Storage").
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, ClassVar, Self, TypeAlias, TypeVar

from contract._fields import (
    INT64_MAX,
    NAME_MAX_CHARS,
    NAME_RE,
    STREAM_RE,
    TEXT_MAX_CHARS,
    TS_MAX_MS,
    TS_MIN_MS,
    Fields,
)
from contract.errors import ContractError, UnknownToThisVersion

SCHEMA_VERSION = 1
MAX_PAYLOAD_BYTES = 256 * 1024  # a full batch of 500 scans is about 100 KiB
MAX_EVENTS_PER_BATCH = 500
MAX_WEIGHT_G = 1_000_000.0  # 1 t: no shelf bin holds more
SEQ_MAX = INT64_MAX  # an event's seq is 1 to this: what a signed 64-bit column holds
# The limits of the event fields, each declared once: the strict readers and the fast paths
# below both read them, and the edge makes its events to fit them.
QTY_MAX = 1_000_000  # pieces in one scan or one shelf count
QUOTIENT_RANGE = (-float(QTY_MAX), float(QTY_MAX))  # a shelf's net weight / unit weight, before rounding
WEIGHT_RANGE_G = (-MAX_WEIGHT_G, MAX_WEIGHT_G)  # a shelf's settled net weight
CONFIDENCE_RANGE = (0.0, 1.0)
DEVICE_NAME_MAX_CHARS = 64  # a scanner's or shelf controller's configured name
OPERATOR_MAX_CHARS = 64
LOT_MAX_CHARS = 20  # GS1 AI (10)
SERIAL_MAX_CHARS = 20  # GS1 AI (21)
REF_MAX_CHARS = 35  # a purchase order number, GS1 AI (400) or an SSCC, AI (00)
SYMBOLOGY_MAX_CHARS = 3  # an AIM identifier such as "]C1"
RAW_MAX_CHARS = 512  # the barcode's text as scanned
DETAIL_MAX_CHARS = 300  # a sentence: a rejection's reason, a fault's or a device's detail
MAX_MOVING_MS = 86_400_000  # a shelf that moved for longer than a day reports a day
# Used with fullmatch() only (see contract._fields).
GTIN_RE = re.compile(r"^[0-9]{14}$")
DATE_RE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
LOCATION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$")
SKU_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# GS1 AI 10 (lot) and AI 21 (serial): 1-20 characters of GS1's "character set 82".
LOT_RE = re.compile(r'^[!"%-?A-Z_a-z]{1,20}$')
SERIAL_RE = LOT_RE
# A return's reason code, from a `RET:` card: DAMAGED, WRONG_ITEM, UNWANTED, ...
RETURN_REASON_RE = re.compile(r"^[A-Z0-9][A-Z0-9_-]{0,31}$")

# "return" (a customer return into a quarantine or restock location) was added in schema 1
# without a version bump, like the newer shelf faults: an older hub holds such events back
# ("upgrade the hub", the node keeps them), so upgrade the hub before the nodes.
SCAN_MODES = frozenset({"receive", "putaway", "pick", "move", "count", "return"})
# Added kinds go at the end and never away: a hub must read every kind an older node sends.
# "unstable" (the weight never settles) and "calibration_due" (calibration out of date) were
# added in schema 1 without a version bump: an older hub quarantines them with a reason and
# the stream goes on, so upgrade the hub before the nodes.
SHELF_FAULTS = frozenset({"silent", "disconnected", "overload", "underload", "out_of_range",
                          "creep", "drift", "garbage", "unstable", "calibration_due"})
DEVICE_KINDS = frozenset({"scanner", "shelf_controller"})
COMMANDS = frozenset({"tare", "zero", "calibrate", "set_unit_weight", "identify",
                      "resend_from", "reload"})


def _dump(obj: Mapping[str, Any]) -> bytes:
    return json.dumps({k: v for k, v in obj.items() if v is not None},
                      separators=(",", ":"), ensure_ascii=False).encode()


M = TypeVar("M")


def read_message(obj: Any, what: str, read: Callable[[Fields], M]) -> M:
    """Read a whole message: its schema version first, then its fields with `read`, then no key left unread."""
    f = Fields(obj, what)
    f.version(SCHEMA_VERSION)
    msg = read(f)
    f.done()
    return msg


def load_payload(payload: bytes, what: str) -> Any:
    """Decode a payload's JSON (size, UTF-8 and syntax checked); ContractError with the reason."""
    return _load(payload, what)


def _load(payload: bytes, what: str) -> Any:
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ContractError(f"{what}: payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    try:
        # Decode first: json.loads would also accept UTF-16/32, which the contract does not.
        return json.loads(payload.decode("utf-8"))
    except UnicodeDecodeError:
        raise ContractError(f"{what}: payload is not UTF-8") from None
    except RecursionError:
        raise ContractError(f"{what}: JSON nested too deeply") from None
    except ValueError as err:
        raise ContractError(f"{what}: malformed JSON ({err})") from None


# --------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class EventBase:
    """Fields every event has: its per-stream seq, device time and edge-accepted time."""

    seq: int
    ts_ms: int  # when it happened, by the edge's clock
    accepted_ms: int  # when the edge outbox made it durable

    KIND: ClassVar[str] = ""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.KIND}
        for f in fields(self):
            val = getattr(self, f.name)
            # Fields at their default are left out: fewer bytes on the wire and on the SD card.
            if val is not None and val != f.default:
                out[f.name] = list(val) if isinstance(val, tuple) else val
        return out

    def with_seq(self, seq: int, accepted_ms: int) -> Self:
        """A copy carrying the seq and time the outbox gave it."""
        return replace(self, seq=seq, accepted_ms=accepted_ms)


def expired_on(expiry: str, ts_ms: int) -> bool:
    """True when an expiry date (YYYY-MM-DD) is before the UTC day of ts_ms: the goods are out of date then."""
    return expiry < time.strftime("%Y-%m-%d", time.gmtime(ts_ms / 1000))


def _base(f: Fields) -> dict[str, Any]:
    return {"seq": f.int("seq", 1, SEQ_MAX), "ts_ms": f.ts_ms("ts_ms"),
            "accepted_ms": f.ts_ms("accepted_ms")}


@dataclass(frozen=True, slots=True)
class ScanEvent(EventBase):
    """An accepted scan: a stock movement the worker made, as the workflow understood it.

    receive: +qty at location. putaway/move: qty from from_location to location.
    pick: -qty at location. count: location now holds exactly qty. return: +qty at location
    (a quarantine or restock location), with the `return_reason` scanned from a card.
    A receipt of goods already out of date (expiry before the scan's UTC day) breaks the contract.
    """

    scanner: str
    mode: str
    gtin: str  # normalised to 14 digits
    location: str
    qty: int
    from_location: str | None = None
    lot: str | None = None
    expiry: str | None = None  # YYYY-MM-DD
    serial: str | None = None
    ref: str | None = None  # purchase order number or SSCC (AI 00) for receipts
    operator: str | None = None
    symbology: str | None = None  # AIM identifier such as "]C1"
    raw: str | None = None
    net_weight_g: float | None = None  # GS1 AI 310n on variable-measure items
    return_reason: str | None = None  # required by mode return; means nothing on the others

    KIND: ClassVar[str] = "scan"

    @classmethod
    def read(cls, f: Fields) -> ScanEvent:
        mode = f.str("mode", choices=SCAN_MODES)
        event = cls(**_base(f), scanner=f.str("scanner", DEVICE_NAME_MAX_CHARS), mode=mode,
                    gtin=f.str("gtin", pattern=GTIN_RE),
                    location=f.str("location", pattern=LOCATION_RE),
                    qty=f.int("qty", _qty_min(mode), QTY_MAX),
                    from_location=f.str("from_location", pattern=LOCATION_RE, required=False),
                    lot=f.str("lot", LOT_MAX_CHARS, required=False, pattern=LOT_RE),
                    expiry=f.str("expiry", pattern=DATE_RE, required=False),
                    serial=f.str("serial", SERIAL_MAX_CHARS, required=False, pattern=SERIAL_RE),
                    ref=f.str("ref", REF_MAX_CHARS, required=False),
                    operator=f.str("operator", OPERATOR_MAX_CHARS, required=False),
                    symbology=f.str("symbology", SYMBOLOGY_MAX_CHARS, required=False),
                    raw=f.str("raw", RAW_MAX_CHARS, required=False),
                    net_weight_g=f.float("net_weight_g", 0.0, MAX_WEIGHT_G, required=False),
                    return_reason=f.str("return_reason", 32, required=False, pattern=RETURN_REASON_RE))
        event.check()
        return event

    def check(self) -> None:
        """The rules between fields; ContractError naming the problem."""
        if self.mode == "return" and self.return_reason is None:
            raise ContractError("scan: a return needs 'return_reason' (the code on the reason card)")
        if self.mode == "receive" and self.expiry is not None and expired_on(self.expiry, self.ts_ms):
            raise ContractError(f"scan: receipt of goods that expired on {self.expiry}, before the day of the scan; "
                                "expired goods are not received into stock")


def _qty_min(mode: str) -> int:
    """A count scan may find a bin empty; every other movement moves at least one piece."""
    return 0 if mode == "count" else 1


@dataclass(frozen=True, slots=True)
class ScanRejected(EventBase):
    """A scan the edge could not turn into a movement, with the reason told to the worker."""

    scanner: str
    reason: str
    raw: str
    mode: str | None = None
    location: str | None = None
    symbology: str | None = None

    KIND: ClassVar[str] = "scan_rejected"

    @classmethod
    def read(cls, f: Fields) -> ScanRejected:
        return cls(**_base(f), scanner=f.str("scanner", DEVICE_NAME_MAX_CHARS),
                   reason=f.str("reason", DETAIL_MAX_CHARS), raw=f.str("raw", RAW_MAX_CHARS), mode=f.str("mode", choices=SCAN_MODES, required=False),
                   location=f.str("location", pattern=LOCATION_RE, required=False),
                   symbology=f.str("symbology", SYMBOLOGY_MAX_CHARS, required=False))


@dataclass(frozen=True, slots=True)
class ShelfCount(EventBase):
    """A settled count of a sensored bin, with how sure the edge is of it."""

    bin: str
    count: int  # nearest whole number of pieces
    quotient: float  # net weight / unit weight, before rounding
    weight_g: float  # settled net weight
    confidence: float  # 0..1
    uncertain: bool  # True: do not treat `count` as a fact
    heartbeat: bool = False  # periodic re-statement, not a change
    # How long the load was moving before it settled at this count: the movement that made the
    # step happened between ts_ms - moving_ms and ts_ms. 0: not measured (a heartbeat, an older node).
    moving_ms: int = 0

    KIND: ClassVar[str] = "shelf_count"

    @classmethod
    def read(cls, f: Fields) -> ShelfCount:
        return cls(**_base(f), bin=f.str("bin", pattern=LOCATION_RE), count=f.int("count", 0, QTY_MAX),
                   quotient=f.float("quotient", *QUOTIENT_RANGE), weight_g=f.float("weight_g", *WEIGHT_RANGE_G),
                   confidence=f.float("confidence", *CONFIDENCE_RANGE), uncertain=f.bool("uncertain"),
                   heartbeat=bool(f.bool("heartbeat", required=False)),
                   moving_ms=f.int("moving_ms", 0, MAX_MOVING_MS, required=False) or 0)


@dataclass(frozen=True, slots=True)
class ShelfFault(EventBase):
    """Something wrong with a shelf: silent controller, overload, creeping weight, ..."""

    bin: str
    fault: str
    detail: str
    active: bool = True  # False when the fault has cleared

    KIND: ClassVar[str] = "shelf_fault"

    @classmethod
    def read(cls, f: Fields) -> ShelfFault:
        active = f.bool("active", required=False)
        return cls(**_base(f), bin=f.str("bin", pattern=LOCATION_RE), fault=f.str("fault", choices=SHELF_FAULTS),
                   detail=f.str("detail", DETAIL_MAX_CHARS), active=True if active is None else active)


@dataclass(frozen=True, slots=True)
class DeviceChange(EventBase):
    """A scanner or shelf controller appeared or disappeared on the node."""

    device: str
    device_kind: str
    present: bool
    path: str | None = None
    detail: str | None = None

    KIND: ClassVar[str] = "device"

    @classmethod
    def read(cls, f: Fields) -> DeviceChange:
        return cls(**_base(f), device=f.str("device", DEVICE_NAME_MAX_CHARS),
                   device_kind=f.str("device_kind", choices=DEVICE_KINDS), present=f.bool("present"),
                   path=f.str("path", TEXT_MAX_CHARS, required=False),
                   detail=f.str("detail", DETAIL_MAX_CHARS, required=False))


Event: TypeAlias = ScanEvent | ScanRejected | ShelfCount | ShelfFault | DeviceChange
EVENT_TYPES: dict[str, Any] = {c.KIND: c for c in (ScanEvent, ScanRejected, ShelfCount, ShelfFault, DeviceChange)}


# ---- fast paths for the hot events (hub ingest reads thousands a second)
#
# Each accepts only objects the strict reader (`cls.read` through `Fields`) certainly accepts,
# and builds the same event from them; anything else (a type, range, pattern or key it is not
# sure about, a non-ASCII string) returns None and the strict reader decides, with its
# exact error. So they can make reading faster, never looser.

_SCAN_STR_MAX = {"scanner": DEVICE_NAME_MAX_CHARS, "lot": LOT_MAX_CHARS, "serial": SERIAL_MAX_CHARS,
                 "ref": REF_MAX_CHARS, "operator": OPERATOR_MAX_CHARS, "symbology": SYMBOLOGY_MAX_CHARS,
                 "raw": RAW_MAX_CHARS}
_SCAN_KEYS = frozenset({"kind", "seq", "ts_ms", "accepted_ms", "scanner", "mode", "gtin", "location", "qty",
                        "from_location", "expiry", *_SCAN_STR_MAX})
_SCAN_PATTERNS = {"from_location": LOCATION_RE, "expiry": DATE_RE, "lot": LOT_RE, "serial": SERIAL_RE}
_SCAN_OPTIONAL = ("from_location", "lot", "expiry", "serial", "ref", "operator", "symbology", "raw")
_SHELF_KEYS = frozenset({"kind", "seq", "ts_ms", "accepted_ms", "bin", "count", "quotient", "weight_g",
                         "confidence", "uncertain", "heartbeat", "moving_ms"})


def _ok_base(obj: dict[str, Any]) -> bool:
    seq, ts_ms, accepted_ms = obj.get("seq"), obj.get("ts_ms"), obj.get("accepted_ms")
    return (type(seq) is int and 1 <= seq <= SEQ_MAX and type(ts_ms) is int and TS_MIN_MS <= ts_ms <= TS_MAX_MS
            and type(accepted_ms) is int and TS_MIN_MS <= accepted_ms <= TS_MAX_MS)


def _fast_scan(obj: dict[str, Any]) -> ScanEvent | None:
    if not _SCAN_KEYS.issuperset(obj) or not _ok_base(obj):
        return None
    mode, scanner, gtin, location, qty = (obj.get("mode"), obj.get("scanner"), obj.get("gtin"), obj.get("location"),
                                          obj.get("qty"))
    if (type(mode) is not str or mode not in SCAN_MODES or type(scanner) is not str or not scanner.isascii()
            or len(scanner) > DEVICE_NAME_MAX_CHARS or type(gtin) is not str or len(gtin) > TEXT_MAX_CHARS
            or not GTIN_RE.fullmatch(gtin) or type(location) is not str or len(location) > TEXT_MAX_CHARS
            or not LOCATION_RE.fullmatch(location) or type(qty) is not int or not _qty_min(mode) <= qty <= QTY_MAX):
        return None
    opt: dict[str, Any] = {}
    for key in _SCAN_OPTIONAL:
        val = obj.get(key)
        if val is None:
            continue
        if type(val) is not str or not val.isascii():
            return None
        pattern = _SCAN_PATTERNS.get(key)
        if len(val) > _SCAN_STR_MAX.get(key, TEXT_MAX_CHARS) or (pattern is not None and not pattern.fullmatch(val)):
            return None
        opt[key] = val
    if mode == "return" or (mode == "receive" and "expiry" in opt and expired_on(opt["expiry"], obj["ts_ms"])):
        return None  # the rules between fields: the strict reader decides, with its reason
    return ScanEvent(seq=obj["seq"], ts_ms=obj["ts_ms"], accepted_ms=obj["accepted_ms"], scanner=scanner, mode=mode,
                     gtin=gtin, location=location, qty=qty, **opt)


def _fast_float(val: Any, bounds: tuple[float, float]) -> float | None:
    lo, hi = bounds
    if type(val) is float:
        return val if lo <= val <= hi else None  # NaN fails the comparison; infinities are out of range
    if type(val) is int and lo <= val <= hi:
        return float(val)
    return None


def _fast_shelf(obj: dict[str, Any]) -> ShelfCount | None:
    if not _SHELF_KEYS.issuperset(obj) or not _ok_base(obj):
        return None
    bin_, count, uncertain, heartbeat = obj.get("bin"), obj.get("count"), obj.get("uncertain"), obj.get("heartbeat")
    moving_ms = obj.get("moving_ms", 0)
    quotient = _fast_float(obj.get("quotient"), QUOTIENT_RANGE)
    weight_g = _fast_float(obj.get("weight_g"), WEIGHT_RANGE_G)
    confidence = _fast_float(obj.get("confidence"), CONFIDENCE_RANGE)
    if (type(bin_) is not str or len(bin_) > TEXT_MAX_CHARS or not LOCATION_RE.fullmatch(bin_) or type(count) is not int
            or not 0 <= count <= QTY_MAX or quotient is None or weight_g is None or confidence is None
            or type(uncertain) is not bool or (heartbeat is not None and type(heartbeat) is not bool)
            or type(moving_ms) is not int or not 0 <= moving_ms <= MAX_MOVING_MS):
        return None
    return ShelfCount(seq=obj["seq"], ts_ms=obj["ts_ms"], accepted_ms=obj["accepted_ms"], bin=bin_, count=count,
                      quotient=quotient, weight_g=weight_g, confidence=confidence, uncertain=uncertain,
                      heartbeat=bool(heartbeat), moving_ms=moving_ms)


_FAST_READERS: dict[str, Any] = {"scan": _fast_scan, "shelf_count": _fast_shelf}


def event_from_dict(obj: Any, where: str = "event") -> Event:
    """Parse one event object, dispatching on its `kind`."""
    if type(obj) is dict and type(kind := obj.get("kind")) is str:
        fast = _FAST_READERS.get(kind)
        if fast is not None:
            event: Event | None = fast(obj)
            if event is not None:
                return event
    f = Fields(obj, where)
    kind = f.str("kind", 32)
    cls = EVENT_TYPES.get(kind)
    if cls is None:
        raise UnknownToThisVersion(f"{where}: unknown event kind {kind!r}")
    strict: Event = cls.read(f)
    f.done()
    return strict


# --------------------------------------------------------------------------- node messages


@dataclass(frozen=True, slots=True)
class EventBatch:
    """1..N events of one outbox stream, in seq order, published on `.../events`."""

    node: str
    stream: str
    events: tuple[Event, ...]
    sent_ms: int
    v: int = SCHEMA_VERSION

    def to_json(self) -> bytes:
        return _dump({"v": self.v, "node": self.node, "stream": self.stream, "sent_ms": self.sent_ms,
                      "events": [e.to_dict() for e in self.events]})

    @classmethod
    def from_json(cls, payload: bytes) -> EventBatch:
        return cls.from_obj(_load(payload, "events"))

    @classmethod
    def from_obj(cls, obj: Any) -> EventBatch:
        """Validate an already-decoded JSON object (lets the hub keep the raw event objects)."""
        if type(obj) is dict and len(obj) == 5:  # fast path: only what the strict reader below certainly accepts
            v, node, stream, sent_ms, raw = (obj.get("v"), obj.get("node"), obj.get("stream"), obj.get("sent_ms"),
                                             obj.get("events"))
            if (type(v) is int and v == SCHEMA_VERSION and type(node) is str and len(node) <= NAME_MAX_CHARS
                    and NAME_RE.fullmatch(node) and type(stream) is str and len(stream) <= TEXT_MAX_CHARS
                    and STREAM_RE.fullmatch(stream)
                    and type(sent_ms) is int and TS_MIN_MS <= sent_ms <= TS_MAX_MS and type(raw) is list
                    and 1 <= len(raw) <= MAX_EVENTS_PER_BATCH):
                events = tuple(event_from_dict(e, f"events[{i}]") for i, e in enumerate(raw))
                return cls(node=node, stream=stream, events=events, sent_ms=sent_ms)
        node, stream, sent_ms, raw_events = read_batch_envelope(obj)
        events = tuple(event_from_dict(e, f"events[{i}]") for i, e in enumerate(raw_events))
        return cls(node=node, stream=stream, events=events, sent_ms=sent_ms)


def read_batch_envelope(obj: Any) -> tuple[str, str, int, list[Any]]:
    """An events batch's envelope, strictly: (node, stream, sent_ms, the events still unread).

    ContractError (UnknownToThisVersion for what a newer edge may send) names the problem.
    """
    return read_message(obj, "events", lambda f: (
        f.name("node"), f.str("stream", pattern=STREAM_RE), f.ts_ms("sent_ms"),
        f.list("events", MAX_EVENTS_PER_BATCH, min_items=1)))


@dataclass(frozen=True, slots=True)
class NodeState:
    """A node's retained online flag; the offline form is registered as its Last Will."""

    node: str
    online: bool
    boot_id: str
    ts_ms: int
    v: int = SCHEMA_VERSION

    def to_json(self) -> bytes:
        return _dump({"v": self.v, "node": self.node, "online": self.online, "boot_id": self.boot_id,
                      "ts_ms": self.ts_ms})

    @classmethod
    def from_json(cls, payload: bytes) -> NodeState:
        return read_message(_load(payload, "state"), "state", lambda f: cls(
            node=f.name("node"), online=f.bool("online"), boot_id=f.str("boot_id", 64), ts_ms=f.ts_ms("ts_ms")))


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """One device attached to a node, as listed in its birth."""

    device: str
    device_kind: str
    present: bool
    path: str | None = None


BIRTH_NOTICES_MAX = 16  # notices on one birth; the node keeps the first ones
BIRTH_NOTICE_MAX_CHARS = 500
# The one kind of notice that asks nothing of anyone: the last bring-up check, all green
# (edge.doctor.report_notice writes it). Every other notice says something to fix.
_ALL_CLEAR_NOTICE_RE = re.compile(r"edge-agent doctor .+: all \d+ checks ok")


def notice_is_all_clear(text: str) -> bool:
    """True for a birth notice that reports nothing to fix (the last bring-up check all green)."""
    return _ALL_CLEAR_NOTICE_RE.fullmatch(text) is not None


@dataclass(frozen=True, slots=True)
class Birth:
    """Sent on every connect: who the node is and where its outbox stands."""

    node: str
    boot_id: str
    sw_version: str
    clock_ms: int  # the node's clock when it sent this, for skew measurement
    stream: str
    last_seq: int  # highest seq ever written to the stream (0: none yet)
    outbox_depth: int  # events not yet acknowledged
    devices: tuple[DeviceInfo, ...] = ()
    # What a person should know about this node since it booted (state restored from a
    # backup copy, the last bring-up check's red lines). Omitted when empty, so that a node
    # with nothing to say stays readable by hubs that predate the field.
    notices: tuple[str, ...] = ()
    v: int = SCHEMA_VERSION

    def to_json(self) -> bytes:
        doc: dict[str, Any] = {
            "v": self.v, "node": self.node, "boot_id": self.boot_id, "sw_version": self.sw_version,
            "clock_ms": self.clock_ms, "stream": self.stream, "last_seq": self.last_seq,
            "outbox_depth": self.outbox_depth,
            "devices": [{k: v for k, v in (("device", d.device), ("device_kind", d.device_kind),
                                          ("present", d.present), ("path", d.path)) if v is not None}
                        for d in self.devices]}
        if self.notices:
            doc["notices"] = list(self.notices)
        return _dump(doc)

    @classmethod
    def from_json(cls, payload: bytes) -> Birth:
        return read_message(_load(payload, "birth"), "birth", cls._read)

    @classmethod
    def _read(cls, f: Fields) -> Birth:
        devices = f.objects("devices", 256, lambda d: DeviceInfo(
            device=d.str("device", DEVICE_NAME_MAX_CHARS), device_kind=d.str("device_kind", choices=DEVICE_KINDS),
            present=d.bool("present"), path=d.str("path", TEXT_MAX_CHARS, required=False)))
        notices = []
        for i, text in enumerate(f.list("notices", BIRTH_NOTICES_MAX, required=False)):
            if not isinstance(text, str) or not 0 < len(text) <= BIRTH_NOTICE_MAX_CHARS:
                raise ContractError(f"birth.notices[{i}]: expected a string of 1 to {BIRTH_NOTICE_MAX_CHARS} "
                                    f"characters")
            notices.append(text)
        return cls(node=f.name("node"), boot_id=f.str("boot_id", 64), sw_version=f.str("sw_version", 64),
                   clock_ms=f.ts_ms("clock_ms"), stream=f.str("stream", pattern=STREAM_RE),
                   last_seq=f.int("last_seq"), outbox_depth=f.int("outbox_depth"), devices=tuple(devices),
                   notices=tuple(notices))


@dataclass(frozen=True, slots=True)
class Ack:
    """Hub->edge: every seq <= watermark of this stream is durably in the ledger."""

    node: str
    stream: str
    watermark: int
    ts_ms: int
    v: int = SCHEMA_VERSION

    def to_json(self) -> bytes:
        return _dump({"v": self.v, "node": self.node, "stream": self.stream, "watermark": self.watermark,
                      "ts_ms": self.ts_ms})

    @classmethod
    def from_json(cls, payload: bytes) -> Ack:
        return read_message(_load(payload, "ack"), "ack", lambda f: cls(
            node=f.name("node"), stream=f.str("stream", pattern=STREAM_RE), watermark=f.int("watermark"),
            ts_ms=f.ts_ms("ts_ms")))


@dataclass(frozen=True, slots=True)
class Command:
    """Hub->edge: an operation on the node or one of its devices; answered on cmd/reply."""

    id: str
    cmd: str
    ts_ms: int
    target: str | None = None  # a bin or scanner name, when the command is about one
    known_weight_g: float | None = None  # calibrate
    sample_pieces: int | None = None  # set_unit_weight by weighing K pieces
    unit_weight_g: float | None = None  # set_unit_weight directly
    stream: str | None = None  # resend_from
    from_seq: int | None = None  # resend_from
    v: int = SCHEMA_VERSION

    def to_json(self) -> bytes:
        return _dump({f.name: getattr(self, f.name) for f in fields(self)})

    @classmethod
    def from_json(cls, payload: bytes) -> Command:
        msg = read_message(_load(payload, "cmd"), "cmd", lambda f: cls(
            id=f.str("id", 64), cmd=f.str("cmd", choices=COMMANDS), ts_ms=f.ts_ms("ts_ms"),
            target=f.str("target", 64, required=False),
            known_weight_g=f.float("known_weight_g", 0.001, MAX_WEIGHT_G, required=False),
            sample_pieces=f.int("sample_pieces", 1, 100_000, required=False),
            unit_weight_g=f.float("unit_weight_g", 0.001, MAX_WEIGHT_G, required=False),
            stream=f.str("stream", pattern=STREAM_RE, required=False),
            from_seq=f.int("from_seq", 1, SEQ_MAX, required=False)))
        if msg.cmd == "resend_from" and msg.from_seq is None:
            raise ContractError("cmd: resend_from needs 'from_seq'")
        if msg.cmd == "calibrate" and msg.known_weight_g is None:
            raise ContractError("cmd: calibrate needs 'known_weight_g'")
        if msg.cmd == "set_unit_weight" and msg.unit_weight_g is None and msg.sample_pieces is None:
            raise ContractError("cmd: set_unit_weight needs 'unit_weight_g' or 'sample_pieces'")
        return msg


ReplyValue: TypeAlias = str | int | float | bool


@dataclass(frozen=True, slots=True)
class CommandReply:
    """Edge->hub: the outcome of a command, with a sentence for the supervisor."""

    node: str
    id: str
    ok: bool
    message: str
    ts_ms: int
    data: Mapping[str, ReplyValue] = field(default_factory=dict)
    v: int = SCHEMA_VERSION

    def to_json(self) -> bytes:
        return _dump({"v": self.v, "node": self.node, "id": self.id, "ok": self.ok, "message": self.message,
                      "ts_ms": self.ts_ms, "data": dict(self.data)})

    @classmethod
    def from_json(cls, payload: bytes) -> CommandReply:
        return read_message(_load(payload, "cmd/reply"), "cmd/reply", cls._read)

    @classmethod
    def _read(cls, f: Fields) -> CommandReply:
        data_f = f.obj("data", required=False)
        data: dict[str, ReplyValue] = {}
        if data_f is not None:
            raw = data_f._obj
            for key, val in raw.items():
                if not isinstance(val, (str, int, float, bool)) or len(key) > 64:
                    raise ContractError(f"cmd/reply.data: field {key!r} must be a string, number or boolean")
                data[key] = val
        return cls(node=f.name("node"), id=f.str("id", 64), ok=f.bool("ok"), message=f.str("message", 500),
                   ts_ms=f.ts_ms("ts_ms"), data=data)


@dataclass(frozen=True, slots=True)
class BinConfig:
    """One sensored or scanned bin as the hub's catalog describes it to the edge."""

    bin: str
    gtin: str | None = None
    unit_weight_g: float | None = None
    unit_weight_cv: float | None = None  # piece-to-piece variation, as a fraction (0.02 = 2 %)


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """Hub->edge, retained: the bins this node serves and how scans should be read."""

    node: str
    rev: int
    ts_ms: int
    bins: tuple[BinConfig, ...] = ()
    require_location: bool = True
    v: int = SCHEMA_VERSION

    def to_json(self) -> bytes:
        bins = [{k: v for k, v in (("bin", b.bin), ("gtin", b.gtin), ("unit_weight_g", b.unit_weight_g),
                                   ("unit_weight_cv", b.unit_weight_cv)) if v is not None} for b in self.bins]
        return _dump({"v": self.v, "node": self.node, "rev": self.rev, "ts_ms": self.ts_ms, "bins": bins,
                      "require_location": self.require_location})

    @classmethod
    def from_json(cls, payload: bytes) -> NodeConfig:
        return read_message(_load(payload, "config"), "config", cls._read)

    @classmethod
    def _read(cls, f: Fields) -> NodeConfig:
        bins = f.objects("bins", 4096, lambda b: BinConfig(
            bin=b.str("bin", pattern=LOCATION_RE), gtin=b.str("gtin", pattern=GTIN_RE, required=False),
            unit_weight_g=b.float("unit_weight_g", 0.001, MAX_WEIGHT_G, required=False),
            unit_weight_cv=b.float("unit_weight_cv", 0.0, 1.0, required=False)))
        req = f.bool("require_location", required=False)
        return cls(node=f.name("node"), rev=f.int("rev"), ts_ms=f.ts_ms("ts_ms"), bins=tuple(bins),
                   require_location=True if req is None else req)


@dataclass(frozen=True, slots=True)
class HubState:
    """The hub's retained online flag; the offline form is its Last Will."""

    online: bool
    boot_id: str
    ts_ms: int
    v: int = SCHEMA_VERSION

    def to_json(self) -> bytes:
        return _dump({"v": self.v, "online": self.online, "boot_id": self.boot_id, "ts_ms": self.ts_ms})

    @classmethod
    def from_json(cls, payload: bytes) -> HubState:
        return read_message(_load(payload, "hub state"), "hub state", lambda f: cls(
            online=f.bool("online"), boot_id=f.str("boot_id", 64), ts_ms=f.ts_ms("ts_ms")))


# The message classes by AsyncAPI message name; the contract test keeps docs/asyncapi.yaml in step.
MESSAGE_TYPES: dict[str, Any] = {
    "NodeState": NodeState, "Birth": Birth, "EventBatch": EventBatch, "Ack": Ack, "Command": Command,
    "CommandReply": CommandReply, "NodeConfig": NodeConfig, "HubState": HubState,
}
