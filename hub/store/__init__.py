"""Hub storage behind one narrow interface (`Store`); SQLite today."""

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
from hub.store.sqlite import SqliteStore

__all__ = ["Balance", "Catalog", "CatalogBin", "CatalogSku", "DiscrepancyRow", "HeldEvent", "Movement",
           "NewDiscrepancy", "NodeRow", "QuarantineRow", "SqliteStore", "Store", "StreamPosition", "WriteTx"]
