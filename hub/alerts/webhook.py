"""POST one alert as signed JSON (Standard Webhooks headers, hub/alerts/signing.py)."""

from __future__ import annotations

import json
import time

import aiohttp

from hub.alerts.outcome import REFUSED, RETRY, SENT, Attempt
from hub.alerts.signing import headers
from hub.redact import url_for_log

# 4xx a later attempt can fix (timeout, too early, rate limited); any other 4xx is the request's own fault.
RETRYABLE_4XX = frozenset({408, 409, 425, 429})


async def post(session: aiohttp.ClientSession, url: str, secret: str, msg_id: str, payload: dict[str, object],
               timeout_s: float) -> Attempt:
    """One attempt: 2xx is sent, 5xx / network trouble / 408-429 retry, other 4xx is refused."""
    where = url_for_log(url)  # the attempt's words are logged and shown: never the URL's token
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    try:
        async with session.post(url, data=body, headers=headers(secret, msg_id, int(time.time()), body),
                                timeout=aiohttp.ClientTimeout(total=timeout_s), allow_redirects=False) as resp:
            text = (await resp.text(errors="replace"))[:200]
            if 200 <= resp.status < 300:
                return Attempt(SENT, response={"status": resp.status})
            said = f"{where} answered HTTP {resp.status}" + (f": {text.strip()}" if text.strip() else "")
            if 300 <= resp.status < 400:
                return Attempt(REFUSED, f"{where} answered HTTP {resp.status} (a redirect to "
                                        f"{url_for_log(resp.headers.get('Location', '?'))}); alerts do not follow redirects: "
                                        "give the rule the final URL")
            if 400 <= resp.status < 500 and resp.status not in RETRYABLE_4XX:
                return Attempt(REFUSED, f"{said}; the receiver refuses this message, check its URL and secret")
            return Attempt(RETRY, said)
    except TimeoutError:
        return Attempt(RETRY, f"{where} did not answer within {timeout_s:g} s")
    except aiohttp.ClientError as err:
        return Attempt(RETRY, f"cannot reach {where}: {err or type(err).__name__}")
