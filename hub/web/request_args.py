"""Query-string and path arguments of a request, checked: the value, else 400 with the rule it breaks.

One definition each, shared by every JSON handler (hub.web.api, api_lots, company, ...), so
the same argument is refused with the same words wherever it appears.
"""

from __future__ import annotations

import re

from aiohttp import web

# SQLite integers are 64-bit; ids are never negative.
MAX_ID = 2**62


def int_query(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    """Query parameter `name` as a whole number in [lo, hi]; `default` when absent; else 400."""
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise web.HTTPBadRequest(reason=f"query parameter '{name}' must be a whole number") from None
    if not lo <= value <= hi:
        raise web.HTTPBadRequest(reason=f"query parameter '{name}' must be between {lo} and {hi}")
    return value


def checked_name(value: str | None, what: str, pattern: re.Pattern[str]) -> str | None:
    """`value` when it matches `pattern` (None stays None), else 400 naming `what`."""
    if value is None:
        return None
    if not pattern.fullmatch(value):
        raise web.HTTPBadRequest(reason=f"{what} {value[:64]!r} is not valid")
    return value


def path_name(request: web.Request, name: str, pattern: re.Pattern[str]) -> str:
    """Path segment `name` when it matches `pattern`, else 400."""
    value = request.match_info[name]
    checked_name(value, name, pattern)
    return value


def path_id(request: web.Request, name: str) -> int:
    """Path segment `name` as a row id: 400 when not a whole number, 404 when out of range."""
    try:
        value = int(request.match_info[name])
    except ValueError:
        raise web.HTTPBadRequest(reason=f"'{name}' must be a whole number") from None
    if not 0 <= value < MAX_ID:
        raise web.HTTPNotFound(reason=f"no such {name} {value}")
    return value
