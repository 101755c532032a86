"""URLs with secrets never reach a log line, a status page or an error message in full (hub/redact.py).

Webhook receivers and central purchasing often take a token in the URL (`?token=...`) or a
password in its user-info part; store.url may hold the database password. The alerts test runs
a real webhook receiver over HTTP that answers 503 and then 410; the purchasing test calls a
central that is not there through the real connector.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from hub.alerts.config import AlertsConfig
from hub.alerts.model import AlertEvent
from hub.alerts.service import AlertsService
from hub.db import DbTarget
from hub.mosquitto import free_port
from hub.purchasing.connector import CentralError
from hub.purchasing.contract_http import ContractConnector
from hub.purchasing.sync import PurchasingSync
from hub.redact import url_for_log
from hub.rules.config import CentralConfig
from tests.support import WebhookReceiver, wait_for

SECRETS = ("s3cret", "TOKEN123")


@pytest.mark.parametrize(("url", "shown"), [
    ("https://hooks.example.com/T0/B1?token=TOKEN123", "https://hooks.example.com/T0/B1"),
    ("https://bot:s3cret@hooks.example.com:8443/hook#TOKEN123", "https://hooks.example.com:8443/hook"),
    ("postgresql://hub:s3cret@db.lan:5432/stock?sslmode=require&password=s3cret", "postgresql://db.lan:5432/stock"),
    ("postgresql://hub@/site?host=10.0.0.1,10.0.0.2", "postgresql:///site"),
    ("http://[::1]:8080/v2", "http://[::1]:8080/v2"),
    ("http://host:99999999/x?token=TOKEN123", "(an unreadable URL)"),
])
def test_a_url_is_shown_as_scheme_host_port_and_path(url: str, shown: str) -> None:
    assert url_for_log(url) == shown


def test_the_database_is_described_without_its_password() -> None:
    target = DbTarget.postgresql("ledger", "postgresql://hub:s3cret@db.lan:5432/stock?password=s3cret")
    assert target.describe() == "postgresql://db.lan:5432/stock"


async def test_webhook_failures_are_logged_without_the_urls_secrets(
        tmp_path: Path, webhook_receiver: WebhookReceiver, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    await webhook_receiver.start()
    webhook_receiver.answer = 503
    url = webhook_receiver.url.replace("http://", "http://bot:s3cret@") + "?token=TOKEN123"
    service = AlertsService(AlertsConfig(burst=10, retry_base_s=0.2, retry_cap_s=0.5), "site-a",
                            tmp_path / "ledger.sqlite3")
    service.add_rule({"name": "ops", "kinds": ["shelf_fault"], "webhook_url": url, "secret": webhook_receiver.secret})

    def status() -> dict[str, Any]:
        return next(r.public() for r in service.db.rules() if r.name == "ops")

    task = asyncio.create_task(service.run())
    try:
        service.on_event(AlertEvent("shelf_fault", "A-01-1", "shelf A-01-1 overloaded", 1_700_000_000_000))
        await wait_for(lambda: "answered HTTP 503" in str(status()["last_failure"] or ""), timeout_s=20,
                       what="a 503 from the receiver")
        webhook_receiver.answer = 410
        await wait_for(lambda: service.db.counts()["failed"] == 1, timeout_s=20, what="a refusal marked failed")
        failed = [d for d in service.db.deliveries() if d["status"] == "failed"]
        # What the hub says (the receiver's own access log is the receiver's business); the rule's
        # `target` on the admin page is the configuration itself and stays whole.
        hub_lines = [r.getMessage() for r in caplog.records if r.name.startswith("hub.")]
        shown = str(hub_lines) + str(status()["last_failure"]) + str([d["last_error"] for d in failed])
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        service.close()
    where = f"http://127.0.0.1:{webhook_receiver.port}/hook"
    assert any(f"to {where} not delivered" in line and "HTTP 503" in line for line in hub_lines), hub_lines
    assert any(f"to {where} refused" in line and "HTTP 410" in line for line in hub_lines), hub_lines
    assert failed[0]["last_error"].startswith(f"{where} answered HTTP 410")
    assert not [s for s in SECRETS if s in shown], shown


async def test_central_purchasing_is_named_without_the_urls_secrets() -> None:
    port = free_port()  # nothing listens there
    base = f"http://hub:s3cret@127.0.0.1:{port}/erp?token=TOKEN123"
    async with aiohttp.ClientSession() as session:
        connector = ContractConnector(session, base)
        with pytest.raises(CentralError) as refused:
            await connector.catalog()
    status = PurchasingSync(None, CentralConfig(base_url=base), "site-a", lambda: 0).snapshot()  # type: ignore[arg-type]
    where = f"http://127.0.0.1:{port}/erp"
    assert f"central at {where} unreachable" in str(refused.value)
    assert (connector.describe, status["central_url"]) == (f"contract v2 at {where}", where)
    said = str(refused.value) + connector.describe + str(status)
    assert not [s for s in SECRETS if s in said], said
