"""The connector for a central that speaks the hub's own contract over HTTP (docs/central-openapi.yaml, v2).

The reference service (central_reference/) is one such central; a purchasing team can build
another. The bodies pass through unchanged: this connector is only the HTTP mapping.
"""

from __future__ import annotations

import logging
from typing import Any

import aiohttp

from hub.purchasing.connector import CentralError, Connector
from hub.redact import url_for_log

log = logging.getLogger(__name__)
API = "/v2"


class ContractConnector(Connector):
    """Typed calls over one aiohttp session (its timeouts bound every call)."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, token: str = "") -> None:
        self._session = session
        self._base = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.describe = f"contract v2 at {url_for_log(self._base)}"

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None,
                    key: str | None = None) -> dict[str, Any]:
        headers = dict(self._headers)
        if key:
            headers["Idempotency-Key"] = key
        url = self._base + API + path
        try:
            async with self._session.request(method, url, json=body, headers=headers) as resp:
                try:
                    data = await resp.json(content_type=None)
                except ValueError:
                    data = None
                if resp.status >= 400 or not isinstance(data, dict):
                    reason = data.get("error") if isinstance(data, dict) else resp.reason
                    retryable = resp.status >= 500 or resp.status in (408, 429) or not isinstance(data, dict)
                    raise CentralError(f"central {method} {API}{path}: HTTP {resp.status} {reason}", retryable,
                                       resp.status)
                return data
        except (aiohttp.ClientError, TimeoutError) as err:
            raise CentralError(f"central at {url_for_log(self._base)} unreachable for {method} {API}{path}: "
                               f"{type(err).__name__} {err}; will retry") from err

    async def place_order(self, key: str, order: dict[str, Any]) -> dict[str, Any]:
        return await self._call("POST", "/orders", order, key)

    async def purchase_orders(self, site: str) -> list[dict[str, Any]]:
        return list((await self._call("GET", f"/sites/{site}/purchase-orders"))["items"])

    async def catalog(self) -> list[dict[str, Any]]:
        return list((await self._call("GET", "/catalog"))["items"])

    async def cash(self, site: str) -> float | None:
        try:
            return float((await self._call("GET", f"/sites/{site}/cash"))["available"])
        except CentralError as err:
            if err.status == 404:  # central keeps no figure for this site: no cash limit
                return None
            raise

    async def post_receipt(self, key: str, receipt: dict[str, Any]) -> dict[str, Any]:
        return await self._call("POST", "/receipts", receipt, key)

    async def return_to_supplier(self, key: str, ret: dict[str, Any]) -> dict[str, Any]:
        return await self._call("POST", "/returns", ret, key)
