"""Small, human-readable device state that must survive a reboot (TinyDB, one JSON file).

Holds named documents: the last config pushed by the hub, and per-bin calibration,
tare and unit weights (owned by `edge.shelf`). TinyDB rewrites the whole file on every
write (DESIGN §7), so only small, rarely changing documents belong here; events go to
the SQLite outbox. Writes are blocking file I/O: call from a worker thread in async code.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from tinydb import Query, TinyDB

from contract import ContractError, NodeConfig

log = logging.getLogger(__name__)


class EdgeState:
    """Named JSON documents in a TinyDB file; thread-safe."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = TinyDB(self.path, indent=1, sort_keys=True)
        self._lock = threading.Lock()

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
        self.put("node_config", {"json": config.to_json().decode()})

    def bin_calibration(self, bin_name: str) -> dict[str, Any] | None:
        """The shelf calibration document of a bin (offset, scale, tare, local unit weight), or None."""
        return self.get(f"shelf-bin/{bin_name}")

    def save_bin_calibration(self, bin_name: str, doc: dict[str, Any]) -> None:
        """Create or replace a bin's calibration document (owned by edge.shelf.calibration)."""
        self.put(f"shelf-bin/{bin_name}", doc)

    def close(self) -> None:
        with self._lock:
            self._db.close()
