"""The one interface hub purchasing talks to central through; a connector is only a mapping.

Everything that keeps requests safe stays in the hub: the durable outbox (hub/rules/outbox.py),
back-off (backoff.py) and idempotency keys (sync.py). A connector maps the contract's bodies
(docs/central-openapi.yaml, v2: the dicts below are its schemas) onto one central system and
back, and raises `CentralError` for anything that went wrong, saying whether trying again can
help. docs/purchasing.md describes the interface and maps it onto Tryton, Odoo, ERPNext and
InvenTree.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any


class CentralError(Exception):
    """Central could not be reached or answered with an error.

    `retryable` is False when central refused the request itself (a bad line, an unknown SKU):
    sending it again cannot help, a person has to look.
    """

    def __init__(self, message: str, retryable: bool = True, status: int | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status


class Connector(ABC):
    """Central purchasing as the hub needs it. Every write carries an idempotency key that central
    (or the connector, in the ERP's own records) must apply once: the hub resends after a lost answer."""

    #: shown on the page and in logs: which central this is
    describe: str = ""

    @abstractmethod
    async def place_order(self, key: str, order: dict[str, Any]) -> dict[str, Any]:
        """Requisition lines for one supplier, as one purchase order (contract `OrderRequest`).

        Answer (`OrderAnswer`): per line either placed (`po_id`, `line_id`) or refused with a
        reason, plus the purchase orders the placed lines are on. A line whose `requisition_id`
        was placed before is answered with that line, never ordered twice.
        """

    @abstractmethod
    async def purchase_orders(self, site: str) -> list[dict[str, Any]]:
        """The site's confirmed purchase orders with their lines (contract `PurchaseOrder`)."""

    @abstractmethod
    async def catalog(self) -> list[dict[str, Any]]:
        """SKUs and their suppliers: priority, lead time, minimum, pack size, price (`CatalogItem`)."""

    @abstractmethod
    async def cash(self, site: str) -> float | None:
        """Cash available to the site for purchasing; None when central keeps no such figure."""

    @abstractmethod
    async def post_receipt(self, key: str, receipt: dict[str, Any]) -> dict[str, Any]:
        """Goods received at the dock, booked per PO line with lot, expiry and location (`Receipt`).

        Answer (`ReceiptAnswer`): `matched` [{po_id, line_id, qty}] and `unmatched_qty`.
        """

    @abstractmethod
    async def return_to_supplier(self, key: str, ret: dict[str, Any]) -> dict[str, Any]:
        """Goods of one PO line sent back to its supplier (`Return`); answer `ReturnAnswer`."""
