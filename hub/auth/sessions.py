"""Signed session cookies: the state lives in the cookie, the hub keeps only the key.

A cookie is `base64url(json).base64url(hmac_sha256(key, json))`. The payload names the user,
their role at login, when it expires and the session's CSRF token. Nothing server-side to
clean up, and a restart does not log anyone out; rotating the key file logs everyone out.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from hub.auth.roles import Role

log = logging.getLogger(__name__)

SECRET_BYTES = 32  # 256-bit HMAC key
CSRF_BYTES = 18


@dataclass(frozen=True, slots=True)
class Session:
    """A verified session: who, with which role, until when, and the CSRF token forms must echo."""

    username: str
    role: Role
    expires_s: int
    csrf: str
    gen: int = 0  # the user's session generation at login (hub.auth.store.User.session_gen)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SessionSigner:
    """Issues and verifies session cookies with one HMAC key."""

    def __init__(self, secret: bytes, max_age_s: int) -> None:
        if len(secret) < 16:
            raise ValueError("session secret must be at least 16 bytes")
        self._secret = secret
        self.max_age_s = max_age_s

    def _mac(self, body: bytes) -> bytes:
        return hmac.new(self._secret, body, hashlib.sha256).digest()

    def issue(self, username: str, role: Role, now_s: float | None = None, gen: int = 0) -> tuple[str, Session]:
        """A new cookie value and the session it carries (with a fresh CSRF token)."""
        now = int(time.time() if now_s is None else now_s)
        session = Session(username, role, now + self.max_age_s, secrets.token_urlsafe(CSRF_BYTES), gen)
        body = json.dumps({"u": username, "r": role.label, "exp": session.expires_s, "csrf": session.csrf,
                           "g": gen}, separators=(",", ":")).encode()
        return f"{_b64(body)}.{_b64(self._mac(body))}", session

    def verify(self, cookie: str, now_s: float | None = None) -> Session | None:
        """The session in a cookie, or None if it is forged, damaged or expired."""
        try:
            body_b64, mac_b64 = cookie.split(".", 1)
            body = _unb64(body_b64)
            if not hmac.compare_digest(self._mac(body), _unb64(mac_b64)):
                return None
            data = json.loads(body)
            session = Session(str(data["u"]), Role.parse(str(data["r"])), int(data["exp"]), str(data["csrf"]),
                              int(data.get("g", 0)))
        except (ValueError, KeyError, TypeError):
            return None
        if session.expires_s <= (time.time() if now_s is None else now_s):
            return None
        return session

    def sign(self, text: str) -> str:
        """A short MAC of `text` (used for the login form's CSRF token, before any session exists)."""
        return _b64(self._mac(text.encode()))[:32]


def load_or_create_secret(path: Path) -> bytes:
    """Read the session key, creating it (mode 0600) on first start."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = secrets.token_bytes(SECRET_BYTES)
        # O_EXCL: two processes starting at once must not each write a different key.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return path.read_bytes()
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        log.info("generated a new session key at %s", path)
    if len(data) < 16:
        raise ValueError(f"session key {path} is shorter than 16 bytes; delete it to generate a new one")
    return data
