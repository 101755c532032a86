"""The words of an alert, a digest and a test message: subject, text and the webhook payload."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

from hub.alerts.model import EVENT_WORDS, AlertEvent, Rule

DIGEST_LINES_PER_KIND = 20  # a digest lists this many of each kind, then says how many more
# A digest's webhook payload carries its events up to this many (and `count`, the true number):
# a storm of 50,000 must not become a body no receiver accepts.
PAYLOAD_EVENTS_MAX = 1000


def _when(ts_ms: int) -> str:
    return dt.datetime.fromtimestamp(ts_ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _count(kind: str, n: int) -> str:
    one, many = EVENT_WORDS.get(kind, (kind, kind))
    return f"{n} {one if n == 1 else many}"


def span_words(window_s: float) -> str:
    """'15 min' or '40 s': a window as a digest names it."""
    return f"{window_s / 60:.0f} min" if window_s >= 60 else f"{window_s:.0f} s"


class Messages:
    """Renders outbox bodies for one site: {type, subject, text, payload}."""

    def __init__(self, site: str, window_s: float) -> None:
        self.site = site
        self.window_s = window_s

    def __call__(self, message_type: str, rule: Rule, events: list[AlertEvent]) -> dict[str, Any]:
        if message_type == "alert":
            (event,) = events
            subject = f"{EVENT_WORDS[event.kind][0]}: {event.subject}"
            text = f"{event.text}\n\nAt {_when(event.ts_ms)} on site {self.site}."
        elif message_type == "digest":
            subject, text = self._digest(events)
        else:
            subject = "test message"
            text = (f"A test of alert rule {rule.name!r} on site {self.site}: if you read this, "
                    f"{'the webhook' if rule.channel == 'webhook' else 'e-mail'} reaches you.")
        payload = {"type": f"alert.{events[0].kind}" if message_type == "alert" else f"alert.{message_type}",
                   "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                   "data": {"site": self.site, "rule": rule.name, "summary": subject, "text": text,
                            "count": len(events), "events": [e.as_json() for e in events[:PAYLOAD_EVENTS_MAX]],
                            "events_truncated": len(events) > PAYLOAD_EVENTS_MAX}}
        return {"type": message_type, "subject": f"[shelfsignal {self.site}] {subject}", "summary": subject,
                "text": text, "payload": payload}

    def _digest(self, events: list[AlertEvent]) -> tuple[str, str]:
        by_kind = Counter(e.kind for e in events)
        span = span_words(self.window_s)
        heads = [_count(kind, n) for kind, n in by_kind.most_common()]
        subject = f"{', '.join(heads)} in the last {span}"
        sections = []
        for kind, n in by_kind.most_common():
            mine = [e for e in events if e.kind == kind]
            lines = [f"- {_when(e.ts_ms)} {e.subject}: {e.text}" for e in mine[:DIGEST_LINES_PER_KIND]]
            if n > DIGEST_LINES_PER_KIND:
                lines.append(f"- and {n - DIGEST_LINES_PER_KIND} more")
            sections.append(f"{_count(kind, n)} in the last {span}:\n" + "\n".join(lines))
        text = ("\n\n".join(sections) + f"\n\nSent as one digest because more alerts came than the rule sends one "
                f"by one in {span} (site {self.site}).")
        return subject, text
