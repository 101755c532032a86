"""The single writer (hub/writer.py) on a real SQLite file: group commit, a failing message set aside,
jobs in queue order, stop after what is queued, a failing tick or commit does not end the thread."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from hub.writer import MessageFailed, SingleWriter
from tests.support import wait_for_sync


class Table:
    """What a writer owns in these tests: one SQLite connection, used only on the writer thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.db: sqlite3.Connection | None = None
        self.commits: list[list[str]] = []  # each commit's messages, as committed
        self.set_aside: list[tuple[str, str]] = []

    def connect(self) -> None:
        self.db = sqlite3.connect(self.path, isolation_level=None)
        self.db.execute("CREATE TABLE IF NOT EXISTS rows (text TEXT NOT NULL)")

    def commit(self, batch: list[str]) -> None:
        if self.db is None:
            self.connect()  # on the writer thread: SQLite connections are thread-confined
        assert self.db is not None
        self.db.execute("BEGIN")
        try:
            for text in batch:
                if text.startswith("bug"):
                    raise MessageFailed(text, KeyError(text))
                if text == "disk":
                    raise sqlite3.OperationalError("disk I/O error")
                self.db.execute("INSERT INTO rows VALUES (?)", (text,))
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")
        self.commits.append(list(batch))

    def run(self, fn: Any) -> Any:
        if self.db is None:
            self.connect()
        return fn(self.db)

    def rows(self) -> list[str]:
        db = sqlite3.connect(self.path)
        try:
            return [r[0] for r in db.execute("SELECT text FROM rows ORDER BY rowid")]
        finally:
            db.close()


def writer_for(table: Table, **kwargs: Any) -> SingleWriter[str, sqlite3.Connection]:
    return SingleWriter("test-writer", commit=table.commit, run_job=table.run,
                        set_aside=lambda m, err: table.set_aside.append((m, repr(err))), **kwargs)


def test_what_is_queued_commits_together_and_a_job_runs_after_it(tmp_path: Path) -> None:
    table = Table(tmp_path / "w.sqlite3")
    writer = writer_for(table)
    for i in range(50):
        writer.put(f"m{i}")
    counted = writer.run_in_writer(lambda db: db.execute("SELECT count(*) FROM rows").fetchone()[0])
    writer.put("after")
    writer.start()
    try:
        assert counted.result(timeout=10) == 50  # the job saw every message queued before it
        wait_for_sync(lambda: "after" in table.rows(), what="the message queued after the job")
        assert [len(c) for c in table.commits] == [50, 1]  # one transaction for the fifty
    finally:
        writer.stop()
    assert not writer.is_alive()


def test_a_batch_is_bounded(tmp_path: Path) -> None:
    table = Table(tmp_path / "w.sqlite3")
    writer = writer_for(table, max_batch=7)
    for i in range(20):
        writer.put(f"m{i}")
    writer.start()
    writer.stop()
    assert [len(c) for c in table.commits] == [7, 7, 6]
    assert table.rows() == [f"m{i}" for i in range(20)]


def test_a_message_that_breaks_the_code_is_set_aside_and_the_rest_commits(tmp_path: Path) -> None:
    table = Table(tmp_path / "w.sqlite3")
    recovered = threading.Event()
    writer = writer_for(table, recover=recovered.set)
    for text in ("a", "bug-1", "b", "bug-2", "c"):
        writer.put(text)
    writer.start()
    writer.stop()
    assert table.rows() == ["a", "b", "c"]
    assert [m for m, _ in table.set_aside] == ["bug-1", "bug-2"]
    assert "KeyError('bug-1')" in table.set_aside[0][1]
    assert recovered.is_set()  # the owner was told to match its memory to the disk again


def test_a_storage_failure_drops_the_batch_and_the_writer_goes_on(tmp_path: Path) -> None:
    table = Table(tmp_path / "w.sqlite3")
    recovered = threading.Event()
    writer = writer_for(table, recover=recovered.set)
    writer.put("x")
    writer.put("disk")
    writer.start()
    try:
        wait_for_sync(recovered.is_set, what="recover after the failed commit")
        assert table.rows() == []  # nothing of the failed transaction was written
        writer.put("y")
        assert writer.run_in_writer(lambda db: db.execute("SELECT count(*) FROM rows").fetchone()[0]).result(10) == 1
    finally:
        writer.stop()
    assert table.rows() == ["y"]


def test_a_job_error_reaches_its_caller_and_a_failing_tick_does_not_stop_the_thread(tmp_path: Path) -> None:
    table = Table(tmp_path / "w.sqlite3")
    ticks: list[int] = []

    def tick() -> None:
        ticks.append(1)
        raise RuntimeError("tick bug")

    writer = writer_for(table, on_tick=tick, tick_s=0.05)
    writer.start()
    try:
        wait_for_sync(lambda: len(ticks) >= 3, what="three ticks, each raising")
        failed = writer.run_in_writer(lambda db: db.execute("SELECT nope FROM rows"))
        with pytest.raises(sqlite3.OperationalError, match="no such column"):
            failed.result(timeout=10)
        writer.put("still here")
        wait_for_sync(lambda: table.rows() == ["still here"], what="a commit after the failures")
        assert writer.queue_depth == 0
    finally:
        writer.stop()


def test_then_runs_on_the_writer_thread(tmp_path: Path) -> None:
    table = Table(tmp_path / "w.sqlite3")
    writer = writer_for(table)
    seen: list[str] = []
    writer.start()
    try:
        writer.run_in_writer(lambda db: 1, then=lambda f: seen.append(threading.current_thread().name)).result(10)
        wait_for_sync(lambda: seen, what="the callback")
        assert seen == ["test-writer"]
    finally:
        writer.stop()
