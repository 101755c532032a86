"""URLs as logs, status pages and error messages may show them: without credentials or query string.

Webhook URLs, central purchasing's base URL and the database URL (store.url) often carry a
secret: a password in the user-info part (`https://user:secret@host`), a token in the query
(`?token=...`, libpq's `?password=...`) or, for some receivers, a fragment. Anything a person
or a log collector reads names only where the hub talks to: scheme, host, port and path.
The full URL stays in the config and in the stores, where it is used.
"""

from __future__ import annotations

from urllib.parse import urlsplit


def url_for_log(url: str) -> str:
    """`url` as scheme://host[:port]/path: no user, password, query or fragment."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # not readable as a URL: say so rather than echo it (it may be all secret)
        return "(an unreadable URL)"
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 address goes back in brackets
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port is not None else host
    # Written out rather than urlunsplit, which drops the "//" of an empty host (libpq's postgresql:///db).
    return f"{parts.scheme}://{netloc}{parts.path}" if parts.scheme else f"{netloc}{parts.path}"
