"""A small client for Tryton's JSON-RPC over HTTP: session login, calls, its JSON types.

Tryton answers every call with HTTP 200 and either `result` or `error` ([exception, args]);
a `UserError`/`UserWarning` is Tryton refusing the request itself (a person must look), any
other error or a transport failure may pass. Decimals, dates and time deltas travel as
objects tagged with `__class__` (trytond/protocols/jsonrpc.py); they are mapped to float,
date and seconds here so the connector deals in plain values.
"""

from __future__ import annotations

import base64
import datetime as dt
import itertools
from decimal import Decimal
from typing import Any

import aiohttp

from hub.purchasing.connector import CentralError
from hub.redact import url_for_log

REFUSALS = ("UserError", "UserWarning", "AccessError", "AccessButtonError", "RequiredValidationError",
            "DomainValidationError", "SelectionValidationError", "SizeValidationError")


def encode(value: Any) -> Any:
    """Plain values as Tryton's JSON: Decimal and date objects tagged with __class__."""
    if isinstance(value, Decimal):
        return {"__class__": "Decimal", "decimal": str(value)}
    if isinstance(value, dt.datetime):
        raise TypeError("send dates, not datetimes, to Tryton here")
    if isinstance(value, dt.date):
        return {"__class__": "date", "year": value.year, "month": value.month, "day": value.day}
    if isinstance(value, dict):
        return {k: encode(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [encode(v) for v in value]
    return value


def decode(value: Any) -> Any:
    """Tryton's tagged JSON as plain values: Decimal as float, date as date, timedelta as seconds."""
    if isinstance(value, dict):
        cls = value.get("__class__")
        if cls == "Decimal":
            return float(value["decimal"])
        if cls == "date":
            return dt.date(value["year"], value["month"], value["day"])
        if cls == "timedelta":
            return float(value["seconds"])
        if cls == "datetime":
            return dt.datetime(value["year"], value["month"], value["day"], value.get("hour", 0),
                               value.get("minute", 0), value.get("second", 0), tzinfo=dt.UTC)
        return {k: decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode(v) for v in value]
    return value


class TrytonRpc:
    """One logged-in session on one Tryton database (logs in again when the session expires)."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, database: str, user: str,
                 password: str) -> None:
        self._http = session
        self._base = base_url.rstrip("/")
        self.database = database
        self._user = user
        self._password = password
        self._auth: str | None = None
        self._ids = itertools.count(1)
        self.context: dict[str, Any] = {}

    @property
    def where(self) -> str:
        return f"Tryton at {url_for_log(self._base)} (database {self.database})"

    async def _post(self, method: str, params: list[Any], auth: bool = True) -> Any:
        body = {"id": next(self._ids), "method": method, "params": encode(params)}
        headers = {"Authorization": self._auth} if auth and self._auth else {}
        url = f"{self._base}/{self.database}/rpc/"
        try:
            async with self._http.post(url, json=body, headers=headers) as resp:
                if resp.status in (401, 403) and auth:
                    raise _SessionExpired()
                if resp.status >= 400:
                    retryable = resp.status >= 500 or resp.status in (404, 408, 429)
                    raise CentralError(f"{self.where}: {method} answered HTTP {resp.status} {resp.reason}",
                                       retryable, resp.status)
                data = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError) as err:
            raise CentralError(f"{self.where} unreachable for {method}: {type(err).__name__} {err}; will retry") \
                from err
        except ValueError as err:
            raise CentralError(f"{self.where}: {method} answered something that is not JSON") from err
        if not isinstance(data, dict):
            raise CentralError(f"{self.where}: {method} answered {type(data).__name__}, not a JSON-RPC object")
        error = data.get("error")
        if error:
            kind = error[0] if isinstance(error, list) and error else str(error)
            args = error[1] if isinstance(error, list) and len(error) > 1 else ""
            message = args[0] if isinstance(args, list) and args else args
            raise CentralError(f"{self.where} refused {method}: {kind}: {message}" if kind in REFUSALS
                               else f"{self.where}: {method} failed: {kind}: {message}; will retry",
                               retryable=kind not in REFUSALS)
        return decode(data.get("result"))

    async def login(self) -> None:
        """A new session for the hub's user (common.db.login)."""
        try:
            result = await self._post("common.db.login", [self._user, {"password": self._password}, "en"],
                                      auth=False)
        except CentralError as err:
            if err.status in (401, 403):
                raise CentralError(f"{self.where} refused the login of {self._user!r}: check central.tryton_user "
                                   "and central.token (its password)", retryable=False, status=err.status) from err
            raise
        user_id, token = result[0], result[1]
        self._auth = "Session " + base64.b64encode(f"{self._user}:{user_id}:{token}".encode()).decode()
        prefs = await self._post("model.res.user.get_preferences", [True, {}])
        self.context = {k: prefs[k] for k in ("company", "company_filter", "language") if k in prefs}

    async def call(self, method: str, *params: Any) -> Any:
        """A JSON-RPC call under the hub's session (logs in first, and again once if it expired)."""
        if self._auth is None:
            await self.login()
        try:
            return await self._post(method, list(params))
        except _SessionExpired:
            await self.login()
            try:
                return await self._post(method, list(params))
            except _SessionExpired:
                raise CentralError(f"{self.where} refused {method} to user {self._user!r} (HTTP 401/403): "
                                   "give that user the groups Purchase and Stock", retryable=False) from None

    async def model(self, model: str, method: str, *args: Any) -> Any:
        """`model.<model>.<method>(*args, context)` with the user's company and language."""
        if self._auth is None:
            await self.login()
        return await self.call(f"model.{model}.{method}", *args, self.context)


class _SessionExpired(Exception):
    """Tryton answered 401/403: the session is gone (expired or the server restarted)."""
