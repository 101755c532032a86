"""Alerts that reach people: real webhooks (checked with the reference Standard Webhooks
library) and real SMTP (STARTTLS with a test CA's certificate, AUTH), grouped into digests,
retried through the durable outbox, and bad rules refused with nothing changed."""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from edge.agent import EdgeAgent
from hub.alerts.config import AlertsConfig, SmtpConfig
from hub.alerts.model import AlertEvent, AlertsError
from hub.alerts.service import AlertsService
from hub.alerts.sources import from_decisions
from hub.mosquitto import PrivateBroker
from hub.rules.decisions import Decision
from hub.rules.leadtime import Delivery
from settings import ConfigError
from tests.support import (
    DAY_MS,
    SmtpServer,
    WebhookReceiver,
    add_node,
    api_token,
    edge_config,
    hub_config,
    login_session,
    open_discrepancy,
    scan,
    start_web_hub,
    teach_rules,
    token_session,
    wait_for,
)

WAIT_S = 20.0  # generous: these tests share two cores with others; a pass is usually well under a second


def smtp_of(server: SmtpServer, password: str | None = None) -> SmtpConfig:
    s = server.settings()
    return SmtpConfig(s["smtp_host"], s["smtp_port"], s["smtp_security"], s["smtp_username"],
                      password if password is not None else s["smtp_password"], s["smtp_from"], s["smtp_ca_file"])


@contextlib.asynccontextmanager
async def running(service: AlertsService) -> AsyncIterator[AlertsService]:
    """The alerts task running on this loop; cancelled and the database closed after."""
    task = asyncio.create_task(service.run())
    try:
        yield service
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        service.close()


def event(i: int, kind: str = "discrepancy") -> AlertEvent:
    return AlertEvent(kind, f"A-01-{i}", f"#{i} unscanned removal at A-01-{i}: 3 pieces left the shelf",
                      1_700_000_000_000 + i)


def rule_status(service: AlertsService, name: str) -> dict[str, Any]:
    return next(r.public() for r in service.db.rules() if r.name == name)


async def test_a_discrepancy_reaches_a_signed_webhook_and_an_email(
        broker: PrivateBroker, tmp_path: Path, smtp_server: SmtpServer, webhook_receiver: WebhookReceiver) -> None:
    await webhook_receiver.start()
    service, runner, base = await start_web_hub(broker, tmp_path, reconcile={"window_s": 0.5},
                                                alerts=smtp_server.settings())
    node, password = add_node(broker)
    agent = EdgeAgent(edge_config(broker, tmp_path, node, password))
    await agent.start()
    try:
        async with token_session(api_token(service.config, "admin")) as api:
            for body in ({"name": "ops hook", "kinds": ["discrepancy", "shelf_fault"],
                          "webhook_url": webhook_receiver.url, "secret": webhook_receiver.secret},
                         {"name": "stores mail", "kinds": ["discrepancy"], "email": "stores@example.com"}):
                async with api.post(f"{base}/api/v1/alerts/rules", json=body) as resp:
                    answer = await resp.json()
                    assert resp.status == 201, answer
                    assert "secret" not in answer, "a secret the admin gave is never echoed"
            found = await open_discrepancy(service, agent.sink, "A-01-7")
            await wait_for(lambda: webhook_receiver.received and smtp_server.received, timeout_s=WAIT_S,
                           what="the webhook and the e-mail")
            hook = webhook_receiver.received[0]
            assert hook.payload["type"] == "alert.discrepancy" and hook.msg_id.startswith("msg_")
            assert hook.payload["data"]["events"][0]["subject"] == "A-01-7"
            assert found.sentence[:80] in hook.payload["data"]["events"][0]["text"]
            assert webhook_receiver.bad == []  # the reference library accepted the signature
            mail = smtp_server.received[0]
            assert mail.tls and mail.login == smtp_server.username, "STARTTLS first, then AUTH"
            assert mail.rcpt_tos == ["stores@example.com"] and mail.mail_from == "stock-hub@example.com"
            parsed = email.message_from_bytes(mail.content, policy=email.policy.default)
            assert "discrepancy opened: A-01-7" in str(parsed["Subject"])
            assert "A-01-7" in parsed.get_body().get_content()  # type: ignore[union-attr]
            async with api.get(f"{base}/api/v1/alerts") as resp:
                state = await resp.json()
            sent = {r["name"]: r for r in state["rules"]}
            assert sent["ops hook"]["last_sent_ms"] and sent["stores mail"]["last_sent_ms"]
            assert state["smtp"]["password_set"] is True
            assert smtp_server.password not in str(state) and webhook_receiver.secret not in str(state)
    finally:
        await agent.stop()
        await runner.cleanup()


async def test_a_flood_of_events_sends_a_few_alerts_then_one_digest(
        tmp_path: Path, webhook_receiver: WebhookReceiver, smtp_server: SmtpServer) -> None:
    await webhook_receiver.start()
    config = AlertsConfig(digest_window_s=2.0, burst=3, retry_base_s=0.2, retry_cap_s=1.0, smtp=smtp_of(smtp_server))
    service = AlertsService(config, "site-a", tmp_path / "ledger.sqlite3")
    service.add_rule({"name": "ops", "kinds": ["discrepancy"], "webhook_url": webhook_receiver.url,
                      "secret": webhook_receiver.secret})
    service.add_rule({"name": "stores", "kinds": ["discrepancy"], "email": "stores@example.com"})
    async with running(service):
        for i in range(200):
            service.on_event(event(i))
        service.on_event(event(999, kind="stockout"))  # a kind the rule did not ask for: not sent at all
        await wait_for(lambda: len(webhook_receiver.received) >= 4, timeout_s=WAIT_S, what="3 alerts and a digest")
        # Nothing is held or pending any more, so nothing else can come for this flood.
        await wait_for(lambda: service.db.next_digest_ms(service.window_ms) is None
                       and service.db.counts()["pending"] == 0, timeout_s=WAIT_S, what="the flood fully sent")
        types = [h.payload["type"] for h in webhook_receiver.received]
        assert types == ["alert.discrepancy"] * 3 + ["alert.digest"], types
        digest = webhook_receiver.received[3].payload["data"]
        assert digest["count"] == 197 and len(digest["events"]) == 197
        assert digest["summary"] == "197 discrepancies opened in the last 2 s"
        assert "and 177 more" in digest["text"]  # the text lists 20, the payload carries all
        assert {e["subject"] for e in digest["events"]} == {f"A-01-{i}" for i in range(3, 200)}
        # The same flood by e-mail: four mails, not two hundred.
        subjects = [str(email.message_from_bytes(m.content, policy=email.policy.default)["Subject"])
                    for m in smtp_server.received]
        assert len(subjects) == 4 and sorted(subjects[:3]) == [f"[shelfsignal site-a] discrepancy opened: A-01-{i}"
                                                               for i in range(3)]  # sent side by side
        assert subjects[3] == "[shelfsignal site-a] 197 discrepancies opened in the last 2 s"
        body = email.message_from_bytes(smtp_server.received[3].content, policy=email.policy.default)
        assert "and 177 more" in body.get_body().get_content()  # type: ignore[union-attr]


async def test_a_receiver_that_was_down_gets_everything_after_a_restart(tmp_path: Path,
                                                                       webhook_receiver: WebhookReceiver) -> None:
    config = AlertsConfig(burst=10, retry_base_s=0.2, retry_cap_s=0.5)
    service = AlertsService(config, "site-a", tmp_path / "ledger.sqlite3")
    service.add_rule({"name": "ops", "kinds": ["shelf_fault"], "webhook_url": webhook_receiver.url,
                      "secret": webhook_receiver.secret})
    async with running(service):
        for i in range(5):
            service.on_event(event(i, "shelf_fault"))
        await wait_for(lambda: rule_status(service, "ops")["failed_attempts"] >= 5, timeout_s=WAIT_S,
                       what="failed attempts")
        status = rule_status(service, "ops")
        assert "cannot reach" in status["last_failure"] and status["pending"] == 5 and status["last_sent_ms"] is None
    # The hub restarts with the messages still queued; the receiver comes back.
    await webhook_receiver.start()
    again = AlertsService(config, "site-a", tmp_path / "ledger.sqlite3")
    async with running(again):
        await wait_for(lambda: again.db.counts()["sent"] == 5, timeout_s=WAIT_S, what="all five delivered")
        subjects = sorted(h.payload["data"]["events"][0]["subject"] for h in webhook_receiver.received)
        assert subjects == [f"A-01-{i}" for i in range(5)]  # nothing lost
        assert len({h.msg_id for h in webhook_receiver.received}) == 5
        assert again.db.prune(0) == 0  # nothing is that old
        # A receiver that answers 503 is retried; one that refuses (410) is not, and the page says why.
        webhook_receiver.answer = 503
        again.on_event(event(5, "shelf_fault"))
        await wait_for(lambda: "answered HTTP 503" in (rule_status(again, "ops")["last_failure"] or ""),
                       timeout_s=WAIT_S, what="a 503")
        webhook_receiver.answer = 410
        await wait_for(lambda: again.db.counts()["failed"] == 1, timeout_s=WAIT_S, what="a refusal marked failed")
        failed = [d for d in again.db.deliveries() if d["status"] == "failed"]
        assert "HTTP 410" in failed[0]["last_error"] and "refuses this message" in failed[0]["last_error"]
        webhook_receiver.answer = 302  # a redirect is not followed: a signed body must not go elsewhere
        again.on_event(event(6, "shelf_fault"))
        await wait_for(lambda: again.db.counts()["failed"] == 2, timeout_s=WAIT_S, what="a redirect marked failed")
        assert "do not follow redirects" in (rule_status(again, "ops")["last_failure"] or "")
    # Done messages are forgotten after KEEP_DONE_DAYS; pending ones never.
    kept = AlertsService(config, "site-a", tmp_path / "ledger.sqlite3")
    try:
        counts = kept.db.counts()
        assert kept.db.prune(kept.clock() + 1) == counts["sent"] + counts["failed"]
        assert kept.db.counts() == {"pending": counts["pending"], "sent": 0, "failed": 0}
    finally:
        kept.close()


async def test_email_needs_the_right_login_and_a_real_address(tmp_path: Path, smtp_server: SmtpServer) -> None:
    config = AlertsConfig(burst=10, retry_base_s=0.2, retry_cap_s=0.5, smtp=smtp_of(smtp_server, "wrong password"))
    service = AlertsService(config, "site-a", tmp_path / "ledger.sqlite3")
    service.add_rule({"name": "stores", "kinds": ["stockout"], "email": "stores@example.com"})
    async with running(service):
        service.on_event(event(1, "stockout"))
        await wait_for(lambda: "refused the login" in (rule_status(service, "stores")["last_failure"] or ""),
                       timeout_s=WAIT_S, what="the login refused")
        assert smtp_server.received == [] and service.db.counts()["pending"] == 1  # kept, retried
    fixed = AlertsConfig(burst=10, retry_base_s=0.2, retry_cap_s=0.5, smtp=smtp_of(smtp_server))
    again = AlertsService(fixed, "site-a", tmp_path / "ledger.sqlite3")
    async with running(again):
        await wait_for(lambda: smtp_server.received, timeout_s=WAIT_S, what="the mail after the password was fixed")
        assert smtp_server.received[0].tls
        smtp_server.refuse_rcpt = True
        again.on_event(event(2, "stockout"))
        await wait_for(lambda: again.db.counts()["failed"] == 1, timeout_s=WAIT_S,
                       what="the refused address marked failed")
        assert "refused the address stores@example.com" in (rule_status(again, "stores")["last_failure"] or "")


BAD_RULES = (
    ({"name": "x", "kinds": ["stockout"], "webhook_url": "ftp://example.com/hook"}, "is not http(s)"),
    ({"name": "x", "kinds": ["stockout"], "webhook_url": "javascript:alert(1)"}, "is not http(s)"),
    ({"name": "x", "kinds": ["stockout"], "webhook_url": "https://"}, "has no valid host"),
    ({"name": "x", "kinds": ["stockout"], "email": "not an address"}, "is not one"),
    ({"name": "x", "kinds": ["stockout"], "email": "a@b"}, "is not one"),
    ({"name": "x", "kinds": ["stockout", "earthquake"], "email": "a@example.com"}, "unknown event kind 'earthquake'"),
    ({"name": "x", "kinds": [], "email": "a@example.com"}, "choose at least one"),
    ({"name": "x", "kinds": ["stockout"]}, "give webhook_url"),
    ({"name": "x", "kinds": ["stockout"], "email": "a@example.com", "webhook_url": "https://e.com/h"}, "not both"),
    ({"name": "x", "kinds": ["stockout"], "webhook_url": "https://e.com/h", "secret": "hunter2"}, "whsec_"),
    ({"name": "", "kinds": ["stockout"], "email": "a@example.com"}, "name:"),
    ({"name": "x", "kinds": ["stockout"], "email": "a@example.com", "cc": "b@example.com"}, "unknown field"),
)


async def test_bad_rules_are_refused_with_a_reason_and_change_nothing(broker: PrivateBroker, tmp_path: Path,
                                                                      smtp_server: SmtpServer) -> None:
    service, runner, base = await start_web_hub(broker, tmp_path, alerts=smtp_server.settings())
    try:
        async with token_session(api_token(service.config, "admin")) as api:
            async with api.post(f"{base}/api/v1/alerts/rules",
                                json={"name": "ok", "kinds": ["stockout"], "webhook_url": "https://e.com/h"}) as resp:
                made = await resp.json()
                assert resp.status == 201 and made["secret"].startswith("whsec_")  # made by the hub, shown once
            async with api.get(f"{base}/api/v1/alerts") as resp:
                before = (await resp.json())["rules"]
            assert made["secret"] not in str(before) and before[0]["secret_set"] is True
            for body, words in BAD_RULES + (({"name": "ok", "kinds": ["stockout"], "email": "a@example.com"},
                                             "already exists"),):
                async with api.post(f"{base}/api/v1/alerts/rules", json=body) as resp:
                    answer = await resp.json()
                    assert resp.status == 400 and words in answer["error"], (body, answer)
            async with api.post(f"{base}/api/v1/alerts/rules/999/delete") as resp:
                assert resp.status == 404 and "no alert rule 999" in (await resp.json())["error"]
            for odd in ("99999999999999999999999", "%C2%B2", "-1"):
                async with api.post(f"{base}/api/v1/alerts/rules/{odd}/test") as resp:
                    assert resp.status == 404, odd
            async with api.post(f"{base}/api/v1/alerts/rules/{made['rule']['id']}/enabled", json={"on": 1}) as resp:
                assert resp.status == 400
            async with api.get(f"{base}/api/v1/alerts") as resp:
                assert (await resp.json())["rules"] == before
        async with token_session(api_token(service.config, "supervisor", "sup")) as sup:
            async with sup.get(f"{base}/api/v1/alerts") as resp:
                assert resp.status == 403
            async with sup.post(f"{base}/api/v1/alerts/rules",
                                json={"name": "y", "kinds": ["stockout"], "email": "a@example.com"}) as resp:
                assert resp.status == 403
    finally:
        await runner.cleanup()


def test_email_rules_need_an_smtp_server_first(tmp_path: Path) -> None:
    service = AlertsService(AlertsConfig(), "site-a", tmp_path / "ledger.sqlite3")
    try:
        with pytest.raises(AlertsError, match="set alerts.smtp_host"):
            service.add_rule({"name": "stores", "kinds": ["stockout"], "email": "stores@example.com"})
        assert service.db.rules() == []
    finally:
        service.close()


def test_rules_from_the_config_file(broker: PrivateBroker, tmp_path: Path) -> None:
    good = {"name": "ops", "kinds": ["node_offline"], "webhook_url": "https://ops.example.com/h",
            "secret": WebhookReceiver().secret}
    config = hub_config(broker, tmp_path, alert_rule=[good])
    assert config.alerts.rules[0][0].target == "https://ops.example.com/h"
    service = AlertsService(config.alerts, "site-a", tmp_path / "ledger.sqlite3")
    try:
        service.load_config_rules()
        (rule,) = service.db.rules()
        assert rule.source == "config" and rule.secret_set
        with pytest.raises(AlertsError, match="comes from the config file"):
            service.delete_rule(rule.id)
        with pytest.raises(AlertsError, match="comes from the config file"):
            service.set_enabled(rule.id, False)
    finally:
        service.close()
    problems = (({**good, "webhook_url": "mailto:ops@example.com"}, "#1: webhook URL 'mailto:ops@example.com' is not"),
                ({**good, "kinds": ["quake"]}, "unknown event kind 'quake'"),
                ({k: v for k, v in good.items() if k != "secret"}, "needs secret or secret_file"),
                ({"name": "m", "kinds": ["stockout"], "email": "m@example.com"}, "needs alerts.smtp_host"))
    for table, words in problems:
        with pytest.raises(ConfigError, match="alert_rule") as err:
            hub_config(broker, tmp_path, alert_rule=[table])
        assert words in str(err.value)
    with pytest.raises(ConfigError, match="password in plain text"):
        hub_config(broker, tmp_path, alerts={"smtp_host": "mail.example.com", "smtp_security": "none",
                                             "smtp_username": "hub", "smtp_from": "hub@example.com"})
    with pytest.raises(ConfigError, match="alerts.smtp_from"):
        hub_config(broker, tmp_path, alerts={"smtp_host": "mail.example.com", "smtp_from": "hub"})


def test_decisions_that_wait_for_people_become_events() -> None:
    reorder = Decision(1, "reorder", "BOLT", "Proposed 40 of BOLT from Acme.", proposal_id="p1")
    auto = Decision(2, "reorder", "NUT", "Proposed 10 of NUT from Acme.", proposal_id="p2")
    ordered = Decision(2, "ordered", "NUT", "Ordered 10 of NUT.", proposal_id="p2")
    demoted = Decision(3, "supplier_demoted", "BOLT", "Future orders go to Nord.", supplier="acme")
    events = from_decisions([reorder, auto, ordered, demoted, Decision(4, "feedback_raise", "BOLT", "raised")])
    assert [(e.kind, e.subject) for e in events] == [("proposal_waiting", "BOLT"), ("supplier_demoted", "acme")]


async def test_proposals_and_demotions_from_the_real_rules_engine(broker: PrivateBroker, tmp_path: Path,
                                                                 webhook_receiver: WebhookReceiver) -> None:
    await webhook_receiver.start()
    service, runner, _ = await start_web_hub(broker, tmp_path)
    try:
        await asyncio.to_thread(service.alerts.add_rule, {
            "name": "buyer", "kinds": ["proposal_waiting", "supplier_demoted"], "webhook_url": webhook_receiver.url,
            "secret": webhook_receiver.secret})
        await teach_rules(service, "BOLT-M8", "A-01-1")  # ten days of demand and no stock: a proposal

        def late(core: Any) -> None:
            now = core.clock()
            for n in range(3):
                core.record_delivery(Delivery("acme", "BOLT-M8", f"PO-{n}", now - 20 * DAY_MS,
                                              now - 15 * DAY_MS, now - (10 - n) * DAY_MS, 10, 10))

        assert service.rules is not None
        await service.rules.call(late)
        await wait_for(lambda: {h.payload["type"] for h in webhook_receiver.received}
                       >= {"alert.proposal_waiting", "alert.supplier_demoted"}, timeout_s=WAIT_S,
                       what="both rules events")
        waiting = next(h for h in webhook_receiver.received if h.payload["type"] == "alert.proposal_waiting")
        assert "Approve or reject it" in waiting.payload["data"]["text"]
    finally:
        await runner.cleanup()


async def test_stockouts_faults_and_offline_nodes_reach_people_without_mqtt_state(
        broker: PrivateBroker, tmp_path: Path, webhook_receiver: WebhookReceiver) -> None:
    """The integration feed judges for the alerts even when it publishes nothing on MQTT."""
    import time

    from contract import ShelfFault

    await webhook_receiver.start()
    service, runner, _ = await start_web_hub(broker, tmp_path, integrations={"publish_state": False,
                                                                             "min_interval_ms": 50})
    node, password = add_node(broker)
    agent = EdgeAgent(edge_config(broker, tmp_path, node, password))
    try:
        await asyncio.to_thread(service.alerts.add_rule, {
            "name": "floor", "kinds": ["stockout", "shelf_fault", "node_offline"],
            "webhook_url": webhook_receiver.url, "secret": webhook_receiver.secret})
        await agent.start()
        await wait_for(lambda: any(r.node == node and r.online for r in service.store.nodes()), timeout_s=WAIT_S,
                       what="node online")
        await agent.sink.submit(scan(qty=5, location="E-01-1"))
        await wait_for(lambda: service.store.stock("", 10, 0, None, "E-01-1"), timeout_s=WAIT_S, what="the receipt")
        await agent.sink.submit(scan(qty=5, location="E-01-1", mode="pick"))
        now = int(time.time() * 1000)
        await agent.sink.submit(ShelfFault(seq=0, ts_ms=now, accepted_ms=now, bin="E-01-1", fault="overload",
                                           detail="load above the cell's range"))

        def kinds() -> set[str]:
            return {h.payload["type"] for h in webhook_receiver.received}

        await wait_for(lambda: kinds() >= {"alert.stockout", "alert.shelf_fault"}, timeout_s=WAIT_S,
                       what="the stockout and the fault")
        await agent.stop()
        await wait_for(lambda: "alert.node_offline" in kinds(), timeout_s=WAIT_S, what="the node offline")
        offline = next(h for h in webhook_receiver.received if h.payload["type"] == "alert.node_offline")
        assert offline.payload["data"]["events"][0]["subject"] == node
        assert service.consumer_feed.published_total == 0  # publish_state off: nothing on MQTT
    finally:
        await agent.stop()
        await runner.cleanup()


async def test_the_admin_page_adds_rules_shows_secrets_once_and_keeps_bad_input_out(
        broker: PrivateBroker, tmp_path: Path, webhook_receiver: WebhookReceiver, smtp_server: SmtpServer) -> None:
    import re

    await webhook_receiver.start()
    service, runner, base = await start_web_hub(broker, tmp_path, alerts=smtp_server.settings())
    admin, csrf = await login_session(base, service.config, "admin")
    sup, sup_csrf = await login_session(base, service.config, "supervisor")
    try:
        form = {"csrf_token": csrf, "name": "night shift", "kinds": "discrepancy", "channel": "webhook",
                "target": webhook_receiver.url}
        async with admin.post(f"{base}/alerts/rules", data=form) as resp:
            page = await resp.text()
            assert resp.status == 201 and "Rule night shift sends discrepancy by webhook" in page
        secret = re.search(r'<code class="secret">([^<]+)</code>', page)
        assert secret and secret.group(1).startswith("whsec_")
        async with admin.get(f"{base}/alerts") as resp:
            listing = await resp.text()
        assert "night shift" in listing and secret.group(1) not in listing and "secret set" in listing
        assert smtp_server.password not in listing and "password set" in listing
        # A bad address: 400, the form comes back filled in (never with a secret), no rule added.
        bad = {"csrf_token": csrf, "name": "mail", "kinds": ["stockout", "discrepancy"], "channel": "email",
               "target": "stores at example", "secret": "whsec_not-shown-back"}
        async with admin.post(f"{base}/alerts/rules", data=bad) as resp:
            page = await resp.text()
            assert resp.status == 400 and "e-mail address &#39;stores at example&#39; is not one" in page
        assert 'value="stores at example"' in page and "whsec_not-shown-back" not in page
        assert [r.name for r in service.alerts.db.rules()] == ["night shift"]
        # The test message, signed with the secret shown once, reaches the receiver.
        webhook_receiver.secret = secret.group(1)
        rule_id = service.alerts.db.rules()[0].id
        async with admin.post(f"{base}/alerts/rules/{rule_id}/test", data={"csrf_token": csrf}) as resp:
            assert resp.status == 200 and "A test message is queued" in await resp.text()
        await wait_for(lambda: webhook_receiver.received, timeout_s=WAIT_S, what="the test message")
        assert webhook_receiver.received[0].payload["type"] == "alert.test"
        # No CSRF token, or not an admin: refused, nothing changes.
        async with admin.post(f"{base}/alerts/rules/{rule_id}/delete") as resp:
            assert resp.status == 403
        async with sup.get(f"{base}/alerts") as resp:
            assert resp.status == 403
        async with sup.post(f"{base}/alerts/rules/{rule_id}/delete", data={"csrf_token": sup_csrf}) as resp:
            assert resp.status == 403
        assert len(service.alerts.db.rules()) == 1
        async with admin.post(f"{base}/alerts/rules/{rule_id}/delete", data={"csrf_token": csrf}) as resp:
            assert resp.status == 200 and "The rule is deleted" in await resp.text()
        assert service.alerts.db.rules() == []
    finally:
        await admin.close()
        await sup.close()
        await runner.cleanup()


def test_check_config_reads_alert_rules_from_the_toml_file(broker: PrivateBroker, tmp_path: Path) -> None:
    from hub.config import load_hub_config
    from hub.mosquitto import free_port
    from tests.support import hub_toml

    path = hub_toml(broker, tmp_path, free_port())
    base = path.read_text()
    path.write_text(base + '[alerts]\nburst = 5\n\n[[alert_rule]]\nname = "ops"\nkinds = ["node_offline"]\n'
                    'webhook_url = "https://ops.example.com/h"\nsecret = "' + WebhookReceiver().secret + '"\n')
    config = load_hub_config(path)
    assert config.alerts.burst == 5 and [r.name for r, _ in config.alerts.rules] == ["ops"]
    path.write_text(base + '[[alert_rule]]\nname = "ops"\nkinds = ["node_offline"]\nwebhook_url = "ftp://x"\n')
    with pytest.raises(ConfigError) as err:
        load_hub_config(path)
    assert str(err.value).startswith(f"{path}: [[alert_rule]] #1: webhook URL 'ftp://x' is not http(s)")


def test_a_huge_digest_keeps_its_count_but_not_every_event_in_the_body() -> None:
    from hub.alerts.messages import PAYLOAD_EVENTS_MAX, Messages
    from hub.alerts.model import Rule

    rule = Rule(1, "ops", ("discrepancy",), "webhook", "https://e.com/h")
    body = Messages("site-a", 900)("digest", rule, [event(i) for i in range(PAYLOAD_EVENTS_MAX + 500)])
    data = body["payload"]["data"]
    assert data["count"] == PAYLOAD_EVENTS_MAX + 500 and len(data["events"]) == PAYLOAD_EVENTS_MAX
    assert data["events_truncated"] is True
    assert body["summary"] == f"{PAYLOAD_EVENTS_MAX + 500} discrepancies opened in the last 15 min"


async def test_implicit_tls_sends_and_a_server_without_starttls_is_refused(tmp_path: Path) -> None:
    tls_server = SmtpServer(tmp_path / "tls", security="tls")
    plain_server = SmtpServer(tmp_path / "plain", security="plain")
    tls_server.start()
    plain_server.start()
    try:
        config = AlertsConfig(burst=10, retry_base_s=0.2, retry_cap_s=0.5, smtp=smtp_of(tls_server))
        service = AlertsService(config, "site-a", tmp_path / "a" / "ledger.sqlite3")
        service.add_rule({"name": "stores", "kinds": ["stockout"], "email": "stores@example.com"})
        async with running(service):
            service.on_event(event(1, "stockout"))
            await wait_for(lambda: tls_server.received, timeout_s=WAIT_S, what="the mail over implicit TLS")
            assert tls_server.received[0].tls and tls_server.received[0].login == tls_server.username
        # smtp_security = "starttls" must not fall back to plain text, where the password would travel.
        config = AlertsConfig(burst=10, retry_base_s=0.2, retry_cap_s=0.5, smtp=smtp_of(plain_server))
        assert config.smtp.security == "starttls"
        service = AlertsService(config, "site-a", tmp_path / "b" / "ledger.sqlite3")
        service.add_rule({"name": "stores", "kinds": ["stockout"], "email": "stores@example.com"})
        async with running(service):
            service.on_event(event(1, "stockout"))
            await wait_for(lambda: "STARTTLS" in (rule_status(service, "stores")["last_failure"] or ""),
                           timeout_s=WAIT_S, what="the plain server refused")
        assert plain_server.received == []
    finally:
        tls_server.stop()
        plain_server.stop()


def test_the_rules_tell_decisions_only_after_their_transaction_commits(tmp_path: Path) -> None:
    from hub.rules.config import RulesConfig
    from hub.rules.core import RulesCore
    from hub.rules.store import RulesDb

    core = RulesCore(RulesDb(tmp_path / "rules.sqlite3"), RulesConfig(), lambda: 1_727_769_600_000, "site-a")
    told: list[list[Decision]] = []
    core.decision_listeners.append(told.append)
    try:
        core.set_auto_send("BOLT", True, "sue")  # one transaction, one decision
        assert [[d.rule for d in batch] for batch in told] == [["auto_send"]]
        with pytest.raises(RuntimeError), core._tx():
            core._log(Decision(1, "supplier_demoted", "BOLT", "never happened", supplier="acme"))
            raise RuntimeError("the transaction fails after the decision was logged")
        core.set_auto_send("BOLT", False, "sue")
        assert [[d.rule for d in batch] for batch in told] == [["auto_send"], ["auto_send"]]  # the rollback's: never
        assert [d["rule"] for d in core.db.decisions()] == ["auto_send", "auto_send"]
    finally:
        core.db.close()
