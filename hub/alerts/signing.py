"""Webhook signatures as the Standard Webhooks specification (v1.0.0) defines them.

https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md:
three headers, `webhook-id` (the message id, the same on every retry so a receiver can
drop duplicates), `webhook-timestamp` (integer seconds since the epoch, for the receiver's
replay window) and `webhook-signature` (`v1,` + base64 of HMAC-SHA256 over
"{id}.{timestamp}.{body}", keyed with the base64-decoded part of the `whsec_` secret).
Any Standard Webhooks library verifies it (the tests use the reference `standardwebhooks`).
Signing is these few lines of the standard library, not a dependency.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from hub.alerts.model import SECRET_PREFIX

SECRET_BYTES = 32


def new_secret() -> str:
    """A fresh signing secret ('whsec_' + base64 of 32 random bytes)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def sign(secret: str, msg_id: str, timestamp_s: int, body: bytes) -> str:
    """The `webhook-signature` value for one attempt at sending `body`."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{msg_id}.{timestamp_s}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def headers(secret: str, msg_id: str, timestamp_s: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers plus the JSON content type."""
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp_s),
            "webhook-signature": sign(secret, msg_id, timestamp_s, body), "content-type": "application/json"}
