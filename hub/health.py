"""Node health from what the ledger and the stream book know: online, stale, skew, progress.

- online/offline: the node's retained state and its Last Will (`nodes.online`);
- stale: online, but nothing heard for `stale_after_s` (a hung agent still has a live session);
- clock skew: measured at each birth (node clock minus hub receive time), flagged above
  `skew_flag_ms`: reconciliation corrects by it, but a person should fix the clock;
- behind: seqs the node has written that the ledger does not hold (last_seq - acked), and
  `missing`: seqs in gaps the hub is asking for again;
- outbox depth and attached devices as of the last birth;
- shelf faults active now on the node's bins (hub.faults): each is a problem until it clears;
- the last birth's notices (device state restored from its previous copy, the last
  `edge-agent doctor` result): each is a problem unless it reports all clear, until a birth
  without it.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from contract import notice_is_all_clear
from hub.faults import fault_words
from hub.store.base import NodeRow, ShelfFaultRow


@dataclass(frozen=True, slots=True)
class HealthSettings:
    """Thresholds for judging a node."""

    stale_after_s: float = 60.0
    skew_flag_ms: int = 2000


@dataclass(frozen=True, slots=True)
class NodeHealth:
    """One node as the devices page and the API show it."""

    node: str
    status: str  # "online", "stale" or "offline"
    online: bool
    stale: bool
    last_seen_ms: int | None
    silent_for_s: float | None
    clock_skew_ms: int | None
    skew_flagged: bool
    stream: str | None
    last_seq: int | None
    acked: int
    behind: int  # seqs written by the node that the ledger does not hold yet
    missing: int  # seqs in open gaps, asked for with resend_from
    outbox_depth: int | None
    boot_id: str | None
    sw_version: str | None
    birth_ms: int | None
    devices: list[dict[str, Any]]
    problems: list[str]  # sentences, empty when healthy
    shelf_faults: list[dict[str, Any]] = field(default_factory=list)  # active now on this node's bins
    notices: list[str] = field(default_factory=list)  # as the node's last birth said them


def node_health(row: NodeRow, now_ms: int, settings: HealthSettings, missing: int = 0,
                faults: Sequence[ShelfFaultRow] = ()) -> NodeHealth:
    """Judge one node at now_ms (faults: the shelf faults active on its bins)."""
    silent_s = None if row.last_seen_ms is None else max(0.0, (now_ms - row.last_seen_ms) / 1000)
    stale = row.online and (silent_s is None or silent_s > settings.stale_after_s)
    skew_flagged = row.clock_skew_ms is not None and abs(row.clock_skew_ms) > settings.skew_flag_ms
    behind = max(0, (row.last_seq or 0) - row.acked)
    problems = []
    if not row.online:
        problems.append(f"node {row.node} is offline")
    elif stale:
        problems.append(f"node {row.node} is online but silent for {silent_s or 0:.0f} s; "
                        f"check the edge agent (systemctl status edge-agent)")
    if skew_flagged and row.clock_skew_ms is not None:
        problems.append(f"node {row.node}'s clock is off by {row.clock_skew_ms / 1000:+.1f} s; "
                        f"times are corrected, but check its NTP (timedatectl)")
    if missing:
        problems.append(f"node {row.node} has {missing} event(s) missing in gaps; the hub is asking for them")
    elif behind:
        problems.append(f"node {row.node} is {behind} event(s) behind")
    absent = [d["device"] for d in row.devices if not d.get("present", True)]
    if absent:
        problems.append(f"node {row.node}: device(s) not attached: {', '.join(absent)}")
    for f in faults:
        since = time.strftime("%H:%M:%S", time.gmtime(f.since_ms / 1000))
        detail = f" ({f.detail})" if f.detail else ""
        problems.append(f"bin {f.bin}: {fault_words(f.fault)} since {since} UTC; its weight cannot be trusted until it "
                        f"clears{detail}")
    problems.extend(f"node {row.node} said when it connected: {n}" for n in row.notices if not notice_is_all_clear(n))
    return NodeHealth(node=row.node, status="offline" if not row.online else "stale" if stale else "online",
                      online=row.online, stale=stale, last_seen_ms=row.last_seen_ms, silent_for_s=silent_s,
                      clock_skew_ms=row.clock_skew_ms, skew_flagged=skew_flagged, stream=row.stream,
                      last_seq=row.last_seq, acked=row.acked, behind=behind, missing=missing,
                      outbox_depth=row.outbox_depth, boot_id=row.boot_id, sw_version=row.sw_version,
                      birth_ms=row.birth_ms, devices=row.devices, problems=problems,
                      shelf_faults=[{**dataclasses.asdict(f), "meaning": fault_words(f.fault)} for f in faults],
                      notices=row.notices)
