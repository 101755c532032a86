"""Refused events: reading a batch the strict reader refused event by event, and the record of each bad one.

A node re-sends an event until the hub acknowledges it, so one event no version could read
(a value out of range, a broken string) would hold back every later event of its stream.
The hub settles such an event as refused: stored with the reason, quarantined for a person,
acknowledged, never applied to stock. What is merely unknown to this version is not settled.
Hub-only: the edge never builds these, so they stay out of the wire contract.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from contract import SEQ_MAX, ContractError, Event, UnknownToThisVersion, event_from_dict, read_batch_envelope


@dataclass(frozen=True, slots=True)
class RefusedEvent:
    """A malformed event inside a batch whose envelope is valid: not a wire message, the hub's record of it."""

    seq: int
    reason: str
    raw: Any
    KIND: ClassVar[str] = "refused"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.KIND, "seq": self.seq, "reason": self.reason, "event": self.raw}


@dataclass(frozen=True, slots=True)
class SalvagedBatch:
    """An events batch with a valid envelope in which some events were refused."""

    node: str
    stream: str
    events: tuple[Event | RefusedEvent, ...]
    sent_ms: int


def salvage_batch(obj: Any) -> SalvagedBatch | None:
    """Read a batch that the strict reader refused, event by event.

    None unless the envelope (version, node, stream, sent_ms, events list) is valid and every
    event carries a usable `seq`. Raises UnknownToThisVersion when an event is merely unknown
    to this version (a kind, a field or a choice a newer edge may send): it must wait on the
    node until the hub is upgraded, not be settled for good. Either way the batch is then
    quarantined whole.
    """
    try:
        node, stream, sent_ms, raw_events = read_batch_envelope(obj)
    except UnknownToThisVersion:
        raise
    except ContractError:
        return None
    events: list[Event | RefusedEvent] = []
    for i, raw in enumerate(raw_events):
        try:
            events.append(event_from_dict(raw, f"events[{i}]"))
        except UnknownToThisVersion:
            raise  # not ours to settle: the caller quarantines the batch and the node keeps it
        except ContractError as err:
            seq = raw.get("seq") if type(raw) is dict else None
            if type(seq) is not int or not 1 <= seq <= SEQ_MAX:
                return None
            events.append(RefusedEvent(seq=seq, reason=str(err), raw=raw))
    return SalvagedBatch(node=node, stream=stream, events=tuple(events), sent_ms=sent_ms)


def stored_event(obj: Any) -> Event | RefusedEvent:
    """An event as the hub stored it: a contract event, or the record of a refused one.

    One that an earlier hub stored and a rule added since refuses (a receipt of expired
    goods, held above a gap while the hub was upgraded) comes back refused, with the reason:
    it must not stop the hub from starting, and it moves no stock, as if it came now.
    """
    if type(obj) is dict and obj.get("kind") == RefusedEvent.KIND:
        return RefusedEvent(seq=obj["seq"], reason=obj["reason"], raw=obj["event"])
    try:
        return event_from_dict(obj)
    except UnknownToThisVersion:
        raise
    except ContractError as err:
        if type(obj) is not dict or type(obj.get("seq")) is not int:
            raise
        return RefusedEvent(seq=obj["seq"], reason=f"stored by an earlier hub, refused by this one: {err}", raw=obj)
