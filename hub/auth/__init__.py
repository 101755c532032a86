"""Who may use the hub's page and API: users, roles, API tokens, sessions, login throttling.

Public surface (everything else is private to this package):

- `Role`: viewer < supervisor < admin; a role includes every lower one.
- `AuthStore`: users (argon2id password hashes) and API tokens (SHA-256 at rest) in their own
  SQLite file, `auth.sqlite3` next to the ledger unless `auth.db_path` says otherwise.
- `SessionSigner` / `Session`: the signed session cookie (stdlib hmac) and its CSRF token.
- `LoginThrottle`: per username+address exponential lockout after repeated failures, and
  failure budgets per address (across names) and for the whole hub.
- `auth_paths(config)`: where the auth database and the session key live.

Errors: `AuthError` (bad name, role or password policy) is a `ValueError`, raised at once.
"""

from hub.auth.roles import ROLES, Role
from hub.auth.sessions import Session, SessionSigner, load_or_create_secret
from hub.auth.store import AuthError, AuthStore, TokenInfo, TokenRow, User, UserRow, auth_paths
from hub.auth.throttle import LoginThrottle

__all__ = ["ROLES", "AuthError", "AuthStore", "LoginThrottle", "Role", "Session", "SessionSigner", "TokenInfo", "TokenRow",
           "User", "UserRow", "auth_paths", "load_or_create_secret"]
