"""Hub storage behind one narrow interface (`Store`), on SQLite or PostgreSQL (hub.db)."""

from hub.store.base import (
    Balance,
    Catalog,
    CatalogBin,
    CatalogSku,
    DiscrepancyRow,
    HeldEvent,
    Movement,
    NewDiscrepancy,
    NodeRow,
    QuarantineRow,
    Store,
    StreamPosition,
    WriteTx,
)
from hub.store.sqlite import BackupUnsupported, SqliteStore, SqlStore

__all__ = ["BackupUnsupported", "Balance", "Catalog", "CatalogBin", "CatalogSku", "DiscrepancyRow", "HeldEvent", "Movement",
           "NewDiscrepancy", "NodeRow", "QuarantineRow", "SqliteStore", "SqlStore", "Store", "StreamPosition", "WriteTx"]
