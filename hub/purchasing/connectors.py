"""Which connector the hub's config chooses (`central.connector`), opened with its HTTP session."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp

from hub.purchasing.connector import Connector
from hub.purchasing.contract_http import ContractConnector
from hub.purchasing.tryton import TrytonConnector
from hub.rules.config import CONTRACT, TRYTON, CentralConfig


@asynccontextmanager
async def open_connector(config: CentralConfig) -> AsyncIterator[Connector]:
    """The configured connector over one HTTP session whose timeouts bound every call."""
    timeout = aiohttp.ClientTimeout(total=config.timeout_s, connect=min(5.0, config.timeout_s))
    async with aiohttp.ClientSession(timeout=timeout) as session:
        if config.connector == TRYTON:
            yield TrytonConnector(session, config.base_url, config.tryton_database, config.tryton_user,
                                  config.token, config.tryton_warehouse)
        elif config.connector == CONTRACT:
            yield ContractConnector(session, config.base_url, config.token)
        else:  # the setting's choices keep this out; say so if it ever is not
            raise ValueError(f"central.connector {config.connector!r} is not one of {CONTRACT}, {TRYTON}")
