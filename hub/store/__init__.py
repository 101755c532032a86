"""Hub storage behind one narrow interface (`Store`); SQLite today."""

from hub.store.base import Balance, Movement, NodeRow, QuarantineRow, Store, StreamPosition, WriteTx
from hub.store.sqlite import SqliteStore

__all__ = ["Balance", "Movement", "NodeRow", "QuarantineRow", "SqliteStore", "Store", "StreamPosition", "WriteTx"]
