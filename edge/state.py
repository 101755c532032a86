"""Small, human-readable device state that must survive a reboot (TinyDB, one JSON file).

Holds named documents: the last config pushed by the hub, and per-bin calibration,
tare and unit weights (owned by `edge.shelf`). TinyDB rewrites the whole file on every
write, so only small, rarely changing documents belong here; events go to the SQLite
outbox. Writes are blocking file I/O: call from a worker thread in async code.

Power cuts: `AtomicJSONStorage` never rewrites the file in place. It writes a temporary
file, fsyncs it, keeps the current file as the previous good copy (`<name>.prev`),
renames the new one over it and fsyncs the directory. A file found corrupt at start
(a power cut on a card that lied about fsync, a bad block) is moved aside and the agent
starts from the previous good copy, or empty if there is none; it never fails to start.
What happened is kept in `EdgeState.notices`, logged, and sent on the node's birth.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from tinydb import Query, TinyDB
from tinydb.storages import Storage

from contract import ContractError, NodeConfig

log = logging.getLogger(__name__)

PREVIOUS_SUFFIX = ".prev"  # the last good copy before the current file
TEMP_SUFFIX = ".tmp"  # a write in progress; a leftover one is an unfinished write and is ignored
CORRUPT_SUFFIX = ".corrupt"  # a corrupt file moved aside for a person to look at (the latest one only)


class StateUnreadable(ValueError):
    """A state file exists but does not hold a TinyDB document."""


def fsync_directory(directory: Path) -> None:
    """Make a rename in `directory` durable (the rename is in the directory's data, not the file's)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file_durably(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that after a power cut `path` holds either the old or the new bytes."""
    temp = path.with_name(path.name + TEMP_SUFFIX)
    with open(temp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, path)
    fsync_directory(path.parent)


def _parse(raw: bytes, path: Path) -> dict[str, dict[str, Any]]:
    """TinyDB's layout: {table: {doc_id: document}}; anything else is corrupt."""
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise StateUnreadable(f"{path}: not JSON ({err})") from None
    if not isinstance(data, dict) or not all(
            isinstance(table, dict) and all(isinstance(doc, dict) for doc in table.values())
            for table in data.values()):
        raise StateUnreadable(f"{path}: JSON, but not a TinyDB document")
    return data


class AtomicJSONStorage(Storage):
    """TinyDB storage that survives a power cut at any instant (see the module docstring)."""

    def __init__(self, path: str | Path, read_only: bool = False, **dump_kwargs: Any) -> None:
        super().__init__()
        self.path = Path(path)
        self.previous = self.path.with_name(self.path.name + PREVIOUS_SUFFIX)
        self.read_only = read_only
        self.notices: list[str] = []  # what a person should know about how the state was loaded
        self._dump_kwargs = dump_kwargs
        self._cache: dict[str, dict[str, Any]] | None = None
        self._loaded = False

    def read(self) -> dict[str, dict[str, Any]] | None:
        if not self._loaded:
            self._cache = self._load()
            self._loaded = True
        # TinyDB mutates what it reads before writing it back: hand out a copy.
        return None if self._cache is None else json.loads(json.dumps(self._cache))

    def write(self, data: dict[str, dict[str, Any]]) -> None:
        if self.read_only:
            raise OSError(f"{self.path}: opened read-only")
        raw = json.dumps(data, **self._dump_kwargs).encode()
        if self.path.exists():
            # Keep the current good file as the previous copy: a hard link, so that `path`
            # itself is never missing, then an atomic rename of the link over the old copy.
            link = self.previous.with_name(self.previous.name + TEMP_SUFFIX)
            link.unlink(missing_ok=True)
            try:
                os.link(self.path, link)
                os.replace(link, self.previous)
            except OSError:  # a filesystem without hard links (vfat): a copy does the same, slower
                write_file_durably(self.previous, self.path.read_bytes())
        write_file_durably(self.path, raw)
        self._cache = json.loads(raw)
        self._loaded = True

    def close(self) -> None:
        pass

    def _load(self) -> dict[str, dict[str, Any]] | None:
        """The current file; if it is corrupt, the previous good copy; if that fails too, nothing."""
        try:
            return _parse(self.path.read_bytes(), self.path)
        except FileNotFoundError:
            current_problem = None if not self.previous.exists() else f"{self.path}: missing"
        except StateUnreadable as err:
            current_problem = str(err)
        if current_problem is None:
            return None  # a new node: no state yet
        try:
            data: dict[str, dict[str, Any]] | None = _parse(self.previous.read_bytes(), self.previous)
            saved = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.previous.stat().st_mtime))
            outcome = f"started from the previous good copy saved {saved}; changes after that are lost"
        except (FileNotFoundError, StateUnreadable) as err:
            data = None
            outcome = (f"no usable previous copy ({err}); started with empty state: calibrations, tares and "
                       "the cached hub config are gone, recalibrate the bins")
        self._report(f"device state {current_problem}; {outcome}")
        if not self.read_only:
            try:
                self._set_corrupt_file_aside()
                if data is not None:
                    write_file_durably(self.path, json.dumps(data, **self._dump_kwargs).encode())
            except OSError as err:  # a card gone read-only: run from memory rather than not at all
                self._report(f"device state {self.path}: cannot rewrite it ({err}); running from the copy in "
                             "memory, check the SD card (edge-agent doctor)")
        return data

    def _report(self, notice: str) -> None:
        log.error("%s", notice)
        self.notices.append(notice)

    def _set_corrupt_file_aside(self) -> None:
        if self.path.exists():
            os.replace(self.path, self.path.with_name(self.path.name + CORRUPT_SUFFIX))
            fsync_directory(self.path.parent)


class EdgeState:
    """Named JSON documents in a TinyDB file; thread-safe."""

    def __init__(self, path: str | Path, read_only: bool = False) -> None:
        self.path = Path(path)
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = TinyDB(self.path, storage=AtomicJSONStorage, read_only=read_only, indent=1, sort_keys=True)
        storage = self._db.storage
        assert isinstance(storage, AtomicJSONStorage)
        self._storage = storage
        self._lock = threading.Lock()
        with self._lock:
            self._db.tables()  # load now, so a corrupt file is found and reported at start

    @property
    def notices(self) -> list[str]:
        """What went wrong loading the state (corrupt file, fallback used), for the log and the birth."""
        return list(self._storage.notices)

    def get(self, name: str) -> dict[str, Any] | None:
        """The document called `name`, or None."""
        with self._lock:
            doc = self._db.get(Query().name == name)
        if doc is None or isinstance(doc, list):
            return None
        return dict(doc.get("data", {}))

    def put(self, name: str, data: dict[str, Any]) -> None:
        """Create or replace the document called `name`."""
        with self._lock:
            self._db.upsert({"name": name, "data": data}, Query().name == name)

    def names(self) -> list[str]:
        """The names of every stored document."""
        with self._lock:
            return sorted(str(doc["name"]) for doc in self._db.all() if "name" in doc)

    def node_config(self) -> NodeConfig | None:
        """The last config the hub pushed, so the node works before the broker is reachable."""
        doc = self.get("node_config")
        if doc is None:
            return None
        try:
            return NodeConfig.from_json(doc["json"].encode())
        except (KeyError, ContractError) as err:
            log.warning("%s: cached node config unreadable (%s); waiting for the hub's", self.path, err)
            return None

    def save_node_config(self, config: NodeConfig) -> None:
        """Cache the hub's config (blocking file I/O)."""
        self.put("node_config", {"json": config.to_json().decode()})

    def bin_calibration(self, bin_name: str) -> dict[str, Any] | None:
        """The shelf calibration document of a bin (offset, scale, tare, local unit weight), or None."""
        return self.get(f"shelf-bin/{bin_name}")

    def save_bin_calibration(self, bin_name: str, doc: dict[str, Any]) -> None:
        """Create or replace a bin's calibration document (owned by edge.shelf.calibration)."""
        self.put(f"shelf-bin/{bin_name}", doc)

    def close(self) -> None:
        """Release the file (every write is already durable)."""
        with self._lock:
            self._db.close()
