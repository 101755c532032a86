"""Where alert events come from: what the hub has already judged, turned into `AlertEvent`s.

- stockout, low stock, discrepancy opened, shelf fault, node offline: the alerts the
  integration feed derives from each group commit (hub/consumer_feed.py), so "a SKU ran out"
  or "a node went offline" is decided in one place for MQTT consumers and people alike;
- supplier demoted, proposal waiting for approval: the rules' decision log (hub/rules/core.py),
  handed over after each rules transaction commits.
"""

from __future__ import annotations

from collections.abc import Iterable

from contract.outbound import HubAlert
from hub.alerts.model import EVENT_WORDS, AlertEvent
from hub.rules.decisions import Decision

REORDER, ORDERED, SUPPLIER_DEMOTED = "reorder", "ordered", "supplier_demoted"  # the decision log's rule names


def from_hub_alert(alert: HubAlert) -> AlertEvent | None:
    """The integration feed's alert as an alert event (None for a kind no rule can ask for)."""
    if alert.kind not in EVENT_WORDS:
        return None
    return AlertEvent(alert.kind, alert.subject, alert.text, alert.ts_ms)


def from_decisions(decisions: Iterable[Decision]) -> list[AlertEvent]:
    """Demotions, and proposals that wait for a person (not those auto-send approved at once)."""
    batch = list(decisions)
    approved = {d.proposal_id for d in batch if d.rule == ORDERED and d.proposal_id}
    out = []
    for d in batch:
        if d.rule == SUPPLIER_DEMOTED:
            out.append(AlertEvent("supplier_demoted", d.supplier or d.sku, d.sentence, d.ts_ms))
        elif d.rule == REORDER and d.proposal_id and d.proposal_id not in approved:
            out.append(AlertEvent("proposal_waiting", d.sku, d.sentence + " Approve or reject it on the proposals "
                                  "page.", d.ts_ms))
    return out
