"""What one delivery attempt came to: sent, worth retrying, or refused for good."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SENT, RETRY, REFUSED = "sent", "retry", "refused"


@dataclass(frozen=True, slots=True)
class Attempt:
    """The result of one attempt; `reason` says what happened in words a person can act on."""

    outcome: str  # SENT, RETRY or REFUSED
    reason: str = ""
    response: dict[str, Any] = field(default_factory=dict)
