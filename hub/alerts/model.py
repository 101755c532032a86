"""What an alert is, who a rule tells, and the checks that refuse a bad rule with a reason."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

# Every kind of event a rule can ask for, with the words a digest counts them in.
EVENT_WORDS: dict[str, tuple[str, str]] = {  # kind -> (one, many)
    "stockout": ("SKU ran out", "SKUs ran out"),
    "low_stock": ("SKU fell to its reorder point", "SKUs fell to their reorder point"),
    "discrepancy": ("discrepancy opened", "discrepancies opened"),
    "shelf_fault": ("shelf fault", "shelf faults"),
    "node_offline": ("node went offline", "nodes went offline"),
    "supplier_demoted": ("supplier demoted", "suppliers demoted"),
    "proposal_waiting": ("proposal waiting for approval", "proposals waiting for approval"),
}
EVENT_KINDS = tuple(EVENT_WORDS)
WEBHOOK, EMAIL = "webhook", "email"  # the channels (and the outbox row kinds)
CHANNELS = (WEBHOOK, EMAIL)
SECRET_PREFIX = "whsec_"  # Standard Webhooks: a secret is "whsec_" + base64 of 24 to 64 random bytes
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._@-]{0,63}")
# Deliberately plain: one @, no spaces, a dot in the domain. The SMTP server has the last word.
EMAIL_RE = re.compile(r"[^@\s<>,;\"]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")
MAX_URL_CHARS = 2000


class AlertsError(ValueError):
    """A rule or request that cannot be accepted; the text says what is wrong and what to do."""


class NoSuchRule(AlertsError):
    """The rule asked for does not exist (any more)."""


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """Something a person should hear of: its kind, what it is about, a sentence, when."""

    kind: str
    subject: str  # the bin, SKU, node or supplier it is about
    text: str
    ts_ms: int

    def as_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "subject": self.subject, "text": self.text, "ts_ms": self.ts_ms}


@dataclass(frozen=True, slots=True)
class Rule:
    """Who is told which kinds of event, over which channel."""

    id: int
    name: str
    kinds: tuple[str, ...]
    channel: str  # WEBHOOK or EMAIL
    target: str  # the webhook URL or the e-mail address
    source: str = "page"  # "page" (made on the admin page or API) or "config" (from [[alert_rule]])
    enabled: bool = True
    secret_set: bool = False  # a webhook secret is stored (its value is never shown)
    status: dict[str, Any] = field(default_factory=dict)  # last sent, last failure, counts

    def public(self) -> dict[str, Any]:
        """The rule as the page and the API show it: never the secret."""
        return {"id": self.id, "name": self.name, "kinds": list(self.kinds), "channel": self.channel,
                "target": self.target, "source": self.source, "enabled": self.enabled,
                "secret_set": self.secret_set, **self.status}


@dataclass(frozen=True, slots=True)
class RuleInput:
    """A rule as submitted (page form, API body or [[alert_rule]]), checked by `check_rule`."""

    name: str
    kinds: tuple[str, ...]
    channel: str
    target: str
    secret: str | None = None  # webhooks: None keeps or generates one


def check_kinds(kinds: Any) -> tuple[str, ...]:
    """The event kinds, checked: a non-empty list of known kinds."""
    if isinstance(kinds, str):
        kinds = [kinds]
    if not isinstance(kinds, list | tuple) or not kinds or not all(isinstance(k, str) for k in kinds):
        raise AlertsError(f"kinds: choose at least one of {', '.join(EVENT_KINDS)}")
    unknown = sorted({k for k in kinds if k not in EVENT_WORDS})
    if unknown:
        raise AlertsError(f"unknown event kind {', '.join(map(repr, unknown))}: use {', '.join(EVENT_KINDS)}")
    return tuple(k for k in EVENT_KINDS if k in kinds)  # one order everywhere


def check_webhook_url(url: Any) -> str:
    """An absolute http(s) URL with a host, else an error saying so."""
    if not isinstance(url, str) or not url.strip():
        raise AlertsError("webhook URL is empty: give an http:// or https:// address")
    url = url.strip()
    if len(url) > MAX_URL_CHARS:
        raise AlertsError(f"webhook URL is longer than {MAX_URL_CHARS} characters")
    try:
        parts = urlsplit(url)
        port_ok = parts.port is None or parts.port > 0
    except ValueError as err:
        raise AlertsError(f"webhook URL {url[:80]!r} cannot be read ({err})") from None
    if parts.scheme not in ("http", "https"):
        raise AlertsError(f"webhook URL {url[:80]!r} is not http(s): the hub only POSTs to http:// or https:// "
                          "addresses")
    if not parts.hostname or not port_ok or any(c.isspace() for c in url):
        raise AlertsError(f"webhook URL {url[:80]!r} has no valid host: write it like https://example.com/hook")
    return url


def check_email(address: Any) -> str:
    """One plain e-mail address (name@domain.tld), else an error saying so."""
    if not isinstance(address, str) or not EMAIL_RE.fullmatch(address.strip()):
        shown = address[:80] if isinstance(address, str) else address
        raise AlertsError(f"e-mail address {shown!r} is not one: write it like stores@example.com")
    return address.strip()


def check_secret(secret: str) -> str:
    """A Standard Webhooks secret: 'whsec_' and base64 of 24 to 64 bytes."""
    body = secret.strip().removeprefix(SECRET_PREFIX)
    try:
        raw = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if not secret.strip().startswith(SECRET_PREFIX) or not 24 <= len(raw) <= 64:
        raise AlertsError("webhook secret must be 'whsec_' followed by base64 of 24 to 64 random bytes "
                          "(leave it empty and the hub makes one)")
    return secret.strip()


def check_rule(raw: dict[str, Any]) -> RuleInput:
    """A rule from a form, an API body or the config file, checked; AlertsError names the problem."""
    unknown = sorted(set(raw) - {"name", "kinds", "channel", "webhook_url", "email", "secret", "target"})
    if unknown:
        raise AlertsError(f"unknown field(s) {', '.join(unknown)}: a rule has name, kinds, webhook_url or email, "
                          "and secret")
    name = raw.get("name")
    if not isinstance(name, str) or not NAME_RE.fullmatch(name.strip()):
        raise AlertsError("name: 1-64 letters, digits, spaces, '.', '_', '@' or '-', starting with a letter or digit")
    kinds = check_kinds(raw.get("kinds"))
    url, email = raw.get("webhook_url") or None, raw.get("email") or None
    if url is not None and email is not None:
        raise AlertsError("give either webhook_url or email, not both (make two rules to use both)")
    secret = raw.get("secret") or None
    if url is not None:
        if secret is not None and not isinstance(secret, str):
            raise AlertsError("secret must be a string")
        return RuleInput(name.strip(), kinds, WEBHOOK, check_webhook_url(url),
                         None if secret is None else check_secret(secret))
    if email is not None:
        if secret is not None:
            raise AlertsError("a secret is only for webhooks; an e-mail rule has none")
        return RuleInput(name.strip(), kinds, EMAIL, check_email(email))
    raise AlertsError("give webhook_url (an http(s) address) or email (an address) for the rule to send to")
