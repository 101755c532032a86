"""HTTP client for central purchasing's contract (docs/central-openapi.yaml)."""

from __future__ import annotations

import logging
from typing import Any

import aiohttp

log = logging.getLogger(__name__)


class CentralError(Exception):
    """Central could not be reached or answered with an error.

    `retryable` is False when central refused the request itself (4xx other than 408/429):
    sending it again cannot help, a person has to look.
    """

    def __init__(self, message: str, retryable: bool = True, status: int | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status


class CentralClient:
    """Thin typed calls over one aiohttp session with timeouts."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, token: str = "") -> None:
        self._session = session
        self._base = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None,
                    key: str | None = None) -> dict[str, Any]:
        headers = dict(self._headers)
        if key:
            headers["Idempotency-Key"] = key
        url = self._base + path
        try:
            async with self._session.request(method, url, json=body, headers=headers) as resp:
                try:
                    data = await resp.json(content_type=None)
                except ValueError:
                    data = None
                if resp.status >= 400 or not isinstance(data, dict):
                    reason = data.get("error") if isinstance(data, dict) else resp.reason
                    retryable = resp.status >= 500 or resp.status in (408, 429) or not isinstance(data, dict)
                    raise CentralError(f"central {method} {path}: HTTP {resp.status} {reason}", retryable, resp.status)
                return data
        except (aiohttp.ClientError, TimeoutError) as err:
            raise CentralError(f"central at {self._base} unreachable for {method} {path}: "
                               f"{type(err).__name__} {err}; will retry") from err

    async def post(self, path: str, body: dict[str, Any], key: str) -> dict[str, Any]:
        return await self._call("POST", path, body, key)

    async def catalog(self) -> list[dict[str, Any]]:
        return list((await self._call("GET", "/v1/catalog"))["items"])

    async def cash(self, site: str) -> dict[str, Any]:
        return await self._call("GET", f"/v1/sites/{site}/cash")

    async def purchase_orders(self, site: str) -> list[dict[str, Any]]:
        return list((await self._call("GET", f"/v1/sites/{site}/purchase-orders"))["items"])
