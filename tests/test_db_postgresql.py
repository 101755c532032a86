"""The PostgreSQL backend (hub/db/postgresql.py) on a real server: its translation of the hub's SQL dialect, and a reader that reads again on a new session after its server went away."""

from __future__ import annotations

import psycopg
import pytest

from hub.db import LEDGER, DbTarget
from hub.db.postgresql import translate


@pytest.mark.parametrize(("sql", "expected"), [
    ("SELECT a FROM t WHERE b = ? AND c = ?", "SELECT a FROM t WHERE b = %s AND c = %s"),
    ("SELECT '?' || ?", "SELECT '?' || %s"),
    ("SELECT 'it''s ?' || ?", "SELECT 'it''s ?' || %s"),
    ("SELECT E'\\'?' || ?", "SELECT E'\\'?' || %s"),
    ('SELECT "odd?name" FROM t WHERE x = ?', 'SELECT "odd?name" FROM t WHERE x = %s'),
    ("SELECT ? -- what? \nFROM t", "SELECT %s -- what? \nFROM t"),
    ("SELECT /* why? */ ?", "SELECT /* why? */ %s"),
    ("SELECT $$a?b$$, $q$c?'d$q$, ?", "SELECT $$a?b$$, $q$c?'d$q$, %s"),
    ("SELECT a$b FROM t WHERE x = ?", "SELECT a$b FROM t WHERE x = %s"),
    ("SELECT '100%' || ? WHERE x LIKE 'a%'", "SELECT '100%%' || %s WHERE x LIKE 'a%%'"),
])
def test_placeholders_are_only_those_outside_quotes_and_comments(sql: str, expected: str) -> None:
    assert translate(sql) == expected


def test_a_question_mark_in_a_string_reaches_the_database_as_text(postgres_url: str) -> None:
    conn = DbTarget.postgresql(LEDGER, postgres_url).connect()
    try:
        row = conn.execute("SELECT 'is it?' || ? AS said, 'it''s 100%' AS pct /* or? */, ? -- last?\n AS n",
                           ("yes", 7)).fetchone()
        assert (row["said"], row["pct"], row["n"]) == ("is it?yes", "it's 100%", 7)
        assert conn.execute("SELECT 'no args?' AS q").fetchone()["q"] == "no args?"
    finally:
        conn.close()


def test_a_reader_whose_server_session_ended_reads_again_on_a_new_one(postgres_url: str) -> None:
    # After a failover the hub's page and live-feed reads failed once with a traceback
    # ("server closed the connection unexpectedly") before a new connection was made.
    reader = DbTarget.postgresql(LEDGER, postgres_url).connect(readonly=True)
    writer = DbTarget.postgresql(LEDGER, postgres_url).connect()
    try:
        first_pid = reader.execute("SELECT pg_backend_pid() AS pid").fetchone()["pid"]
        writer.execute("SELECT pg_terminate_backend(?)", (first_pid,))
        assert reader.execute("SELECT pg_backend_pid() AS pid").fetchone()["pid"] != first_pid
        # A writer's statement is not repeated: it may have been applied before the session ended.
        writer_pid = writer.execute("SELECT pg_backend_pid() AS pid").fetchone()["pid"]
        reader.execute("SELECT pg_terminate_backend(?)", (writer_pid,))
        with pytest.raises(psycopg.OperationalError):
            writer.execute("SELECT 1 AS one")
    finally:
        reader.close()
        writer.close()
