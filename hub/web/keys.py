"""The keys under which the web app holds the hub's parts (aiohttp AppKeys), declared once."""

from __future__ import annotations

from aiohttp import web

from hub.service import HubService
from hub.web.overview import SharedOverview

SERVICE = web.AppKey("service", HubService)
OVERVIEW = web.AppKey("overview", SharedOverview)  # the overview's one shared build (GET /api/v1/overview)
