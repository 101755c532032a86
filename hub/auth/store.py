"""Users and API tokens in their own store (hub.db: a SQLite file, or tables of the site's PostgreSQL).

Why not the ledger file: the ledger is append-only with a single writer thread and is
shipped around for backups and audits; logins write (rehash, token last-use) from web
requests, and password hashes have no business in a stock ledger's backup. On SQLite a
separate small file keeps both simple; on PostgreSQL the tables share the site's database
(one thing to replicate to the standby) and keep their own migrations (hub/migrations/auth/).

Passwords: argon2id (argon2-cffi's defaults: 64 MiB, t=3), verified off the event loop by
the caller. API tokens are 256-bit random strings, so a fast SHA-256 at rest is enough: no
one can guess their way through that space, and scripts may call the API often.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from contract.clock import now_ms
from hub.auth.roles import Role
from hub.db import AUTH, DbTarget
from hub.db.migrate import migrate

log = logging.getLogger(__name__)

TOKEN_PREFIX = "sst_"  # recognisable in logs and secret scanners
USERNAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")  # use with fullmatch
MIN_PASSWORD_CHARS = 10
TOKEN_TOUCH_S = 60  # write last_used_ms at most once a minute per token: no write per request


class AuthError(ValueError):
    """A caller mistake: bad user name, unknown role, weak password."""


@dataclass(frozen=True, slots=True)
class User:
    """A person who may log in. `session_gen` goes up whenever their sessions must end
    (disabled, new password, logged out): a cookie carries the value it was issued with."""

    username: str
    role: Role
    session_gen: int = 0


@dataclass(frozen=True, slots=True)
class UserRow:
    """A user as the admin page lists them (never the hash)."""

    username: str
    role: Role
    created_ms: int
    disabled: bool


@dataclass(frozen=True, slots=True)
class TokenRow:
    """An API token as the admin page lists it (never the secret or its hash)."""

    id: int
    name: str
    role: Role
    created_ms: int
    last_used_ms: int | None
    revoked: bool


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """An API token as the hub knows it (never the secret itself)."""

    id: int
    name: str
    role: Role


def auth_paths(db_path: Path, auth_db_path: Path | None, secret_file: Path | None) -> tuple[Path, Path]:
    """(auth database file when on SQLite, session key file): explicit settings, else next to the ledger."""
    state_dir = Path(db_path).parent
    return (auth_db_path or state_dir / "auth.sqlite3", secret_file or state_dir / "session.key")


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class AuthStore:
    """The users and tokens tables; every method is blocking (call through asyncio.to_thread)."""

    def __init__(self, where: str | Path | DbTarget, hasher: PasswordHasher | None = None) -> None:
        self.target = where if isinstance(where, DbTarget) else DbTarget.sqlite(AUTH, where)
        migrate(self.target)
        self._db = self.target.connect()
        self._lock = threading.Lock()
        self._hasher = hasher or PasswordHasher()  # argon2id by default
        # Verifying a name that does not exist still costs one hash: no timing oracle for names.
        self._dummy_hash = self._hasher.hash(secrets.token_hex(8))
        self._token_touched: dict[int, float] = {}

    def _execute(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            cur = self._db.execute(sql, args)
            return cur.fetchall() if cur.description is not None else []  # rows only where the statement has them

    # ----------------------------------------------------------------- users

    def _check(self, username: str, password: str) -> None:
        if not USERNAME_RE.fullmatch(username):
            raise AuthError(f"user name {username!r}: use 1-64 letters, digits, '.', '_', '@' or '-'")
        if len(password) < MIN_PASSWORD_CHARS:
            raise AuthError(f"password for {username!r} is too short: use at least {MIN_PASSWORD_CHARS} characters")

    def set_user(self, username: str, role: Role, password: str) -> User:
        """Create a user, or reset one's role and password and enable them (the CLI's way back
        in); a reset ends their open sessions."""
        self._check(username, password)
        digest = self._hasher.hash(password)
        self._execute("INSERT INTO users (username, role, password_hash, created_ms) VALUES (?,?,?,?)"
                      " ON CONFLICT (username) DO UPDATE SET role=excluded.role, password_hash=excluded.password_hash,"
                      " disabled=0, session_gen=users.session_gen+1", (username, role.label, digest, now_ms()))
        log.info("user %s set with role %s", username, role.label)
        return User(username, role)

    def create_user(self, username: str, role: Role, password: str) -> User:
        """Create a new user; an existing name is refused (a reset is `reset_password`)."""
        self._check(username, password)
        digest = self._hasher.hash(password)
        try:
            self._execute("INSERT INTO users (username, role, password_hash, created_ms) VALUES (?,?,?,?)",
                          (username, role.label, digest, now_ms()))
        except self._db.integrity_errors:
            raise AuthError(f"{username!r} already exists: set a new password on their row instead") from None
        log.info("user %s created with role %s", username, role.label)
        return User(username, role)

    def reset_password(self, username: str, password: str) -> None:
        """A new password; their open sessions end. A disabled user stays disabled."""
        self._check(username, password)
        digest = self._hasher.hash(password)
        with self._lock:
            if self._db.execute("UPDATE users SET password_hash=?, session_gen=session_gen+1 WHERE username=?",
                                (digest, username)).rowcount == 0:
                raise AuthError(f"no user {username!r}")
        log.info("user %s has a new password; their sessions ended", username)

    def end_sessions(self, username: str) -> None:
        """Every cookie issued to this user so far stops working (log out everywhere)."""
        self._execute("UPDATE users SET session_gen=session_gen+1 WHERE username=?", (username,))

    def user(self, username: str) -> User | None:
        """The enabled user of that name, or None."""
        rows = self._execute("SELECT username, role, session_gen FROM users WHERE username=? AND disabled=0",
                             (username,))
        return User(rows[0][0], Role.parse(rows[0][1]), rows[0][2]) if rows else None

    def users(self) -> list[User]:
        return [User(u, Role.parse(r), g) for u, r, g in
                self._execute("SELECT username, role, session_gen FROM users WHERE disabled=0 ORDER BY username")]

    def user_rows(self) -> list[UserRow]:
        """Every user, disabled ones included, by name."""
        return [UserRow(u, Role.parse(r), c, bool(d)) for u, r, c, d in
                self._execute("SELECT username, role, created_ms, disabled FROM users ORDER BY username")]

    def set_role(self, username: str, role: Role) -> None:
        with self._lock:
            if self._db.execute("UPDATE users SET role=? WHERE username=?", (role.label, username)).rowcount == 0:
                raise AuthError(f"no user {username!r}")
        log.info("user %s now has role %s", username, role.label)

    def set_disabled(self, username: str, disabled: bool) -> None:
        """Disable (no login, sessions refused) or enable a user; the password is kept."""
        with self._lock:
            if self._db.execute("UPDATE users SET disabled=?, session_gen=session_gen+? WHERE username=?",
                                (int(disabled), int(disabled), username)).rowcount == 0:
                raise AuthError(f"no user {username!r}")
        log.info("user %s %s", username, "disabled" if disabled else "enabled")

    def active_admins(self) -> int:
        return int(self._execute("SELECT COUNT(*) FROM users WHERE role=? AND disabled=0", (Role.ADMIN.label,))[0][0])

    def verify_password(self, username: str, password: str) -> User | None:
        """The user if the password matches (rehashing when parameters changed), else None."""
        rows = self._execute("SELECT role, password_hash, session_gen FROM users WHERE username=? AND disabled=0",
                             (username,))
        digest = rows[0][1] if rows else self._dummy_hash
        try:
            self._hasher.verify(digest, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return None
        if not rows:
            return None
        if self._hasher.check_needs_rehash(digest):
            self._execute("UPDATE users SET password_hash=? WHERE username=?", (self._hasher.hash(password), username))
        return User(username, Role.parse(rows[0][0]), rows[0][2])

    # ----------------------------------------------------------------- API tokens

    def add_token(self, name: str, role: Role) -> str:
        """Create an API token; returns the secret, shown once and stored only as a hash."""
        if not name.strip() or len(name) > 64:
            raise AuthError("token name must be 1-64 characters (say what script uses it)")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        self._execute("INSERT INTO api_tokens (name, role, token_sha256, created_ms) VALUES (?,?,?,?)",
                      (name, role.label, _token_hash(token), now_ms()))
        log.info("API token %r created with role %s", name, role.label)
        return token

    def verify_token(self, token: str) -> TokenInfo | None:
        """The token's name and role, or None when unknown or revoked."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        rows = self._execute("SELECT id, name, role FROM api_tokens WHERE token_sha256=? AND revoked=0",
                             (_token_hash(token),))
        if not rows:
            return None
        info = TokenInfo(rows[0][0], rows[0][1], Role.parse(rows[0][2]))
        now = time.monotonic()
        if now - self._token_touched.get(info.id, -TOKEN_TOUCH_S) >= TOKEN_TOUCH_S:
            self._token_touched[info.id] = now
            self._execute("UPDATE api_tokens SET last_used_ms=? WHERE id=?", (now_ms(), info.id))
        return info

    def token_rows(self) -> list[TokenRow]:
        """Every API token, newest first (revoked ones too: the page shows what was revoked)."""
        return [TokenRow(i, n, Role.parse(r), c, u, bool(rv)) for i, n, r, c, u, rv in
                self._execute("SELECT id, name, role, created_ms, last_used_ms, revoked FROM api_tokens"
                              " ORDER BY id DESC")]

    def revoke_token_id(self, token_id: int) -> bool:
        with self._lock:
            done = self._db.execute("UPDATE api_tokens SET revoked=1 WHERE id=? AND revoked=0",
                                    (token_id,)).rowcount > 0
        if done:
            log.info("API token %d revoked", token_id)
        return done

    def revoke_token(self, name: str) -> int:
        """Revoke every token of that name; returns how many."""
        with self._lock:
            return self._db.execute("UPDATE api_tokens SET revoked=1 WHERE name=? AND revoked=0", (name,)).rowcount

    def close(self) -> None:
        with self._lock:
            self._db.close()
