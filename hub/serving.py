"""Whether a hub is ingesting into a ledger right now, for commands that write it from outside.

The running hub's ingest writer is not the only holder of the stock: its rules engine, live
page and reconciliation keep the balances they were told about in memory. A correction written
straight into the ledger while it runs would be on the ledger but not in those (the reorder
signals would be computed on the old quantity until a restart), so `stock-hub correct` refuses
while a hub ingests and points to the page or POST /api/v1/adjustments, which go through it.

SQLite: the ingesting hub holds an exclusive flock on `<ledger file>.serving` (released by the
kernel when the process ends, however it ends). PostgreSQL with the writer lease: the lease
itself says a hub ingests (hub/lease.py). PostgreSQL without the lease is not detected.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from hub.db import DbTarget
from hub.lease import LEASE_KEY, lease_target

TAKE_POLL_S = 0.05  # a command holds the mark only for an instant; a starting hub retries this often


def mark_path(ledger: Path) -> Path:
    """The file whose lock says a hub ingests into `ledger`."""
    return ledger.with_name(ledger.name + ".serving")


class ServingMark:
    """The exclusive lock an ingesting hub holds on its SQLite ledger's mark file."""

    def __init__(self, ledger: Path) -> None:
        self.path = mark_path(ledger)
        self._fd: int | None = None

    def take(self, wait_s: float = 0.0) -> bool:
        """Hold the mark (blocking call: run it off the event loop); False if another process keeps it past wait_s."""
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    return False
                time.sleep(TAKE_POLL_S)
                continue
            self._fd = fd
            return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the lock
            self._fd = None


def hub_ingesting(target: DbTarget, writer_lease: bool) -> bool:
    """True when a hub ingests into this ledger now (as far as it can be told: see the module docstring)."""
    if target.path is not None:
        if not target.path.exists():
            return False
        probe = ServingMark(target.path)
        if probe.take():
            probe.release()
            return False
        return True
    if writer_lease:
        conn = lease_target(target).connect(readonly=True)
        try:
            row = conn.execute("SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted"
                               " AND ((classid::bigint << 32) | objid::bigint) = ?)", (LEASE_KEY,)).fetchone()
            return row is not None and bool(row[0])
        finally:
            conn.close()
    return False
