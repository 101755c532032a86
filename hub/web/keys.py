"""The keys under which the web app holds the hub's parts (aiohttp AppKeys), declared once."""

from __future__ import annotations

from aiohttp import web

from hub.service import HubService

SERVICE = web.AppKey("service", HubService)
