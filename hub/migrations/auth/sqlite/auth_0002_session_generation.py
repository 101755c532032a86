"""users.session_gen: a user's sessions end when it goes up (logout everywhere, new password).
Releases before versioned migrations added it at start, so it is added only where missing."""

from typing import Any

from yoyo import step

__depends__ = {"auth_0001_baseline"}


def apply(conn: Any) -> None:
    cur = conn.cursor()
    cur.execute("PRAGMA table_info(users)")
    if "session_gen" not in {row[1] for row in cur.fetchall()}:
        cur.execute("ALTER TABLE users ADD COLUMN session_gen INTEGER NOT NULL DEFAULT 0")


steps = [step(apply)]
