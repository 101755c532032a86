"""The alerts task: takes events on the loop, groups them durably, delivers the outbox with back-off.

Events arrive on the event loop (`on_event`: a list append, never a wait) from the integration
feed and the rules' decision hook (hub/service.py wires both). The task writes them to the
alerts database off the loop, where each enabled rule that asks for their kind either queues
a message at once or holds the event for its digest (hub/alerts/store.py); then it sends what
is due, each channel's failures retried with the purchasing sync's back-off
(hub/purchasing/backoff.py) until `give_up_after_h`, when the message is marked failed and the
page says why.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from contract.clock import now_ms
from hub.alerts import mailer, webhook
from hub.alerts.config import AlertsConfig
from hub.alerts.messages import Messages, span_words
from hub.alerts.model import EMAIL, WEBHOOK, AlertEvent, AlertsError, Rule, check_rule
from hub.alerts.outcome import REFUSED, SENT, Attempt
from hub.alerts.signing import new_secret
from hub.alerts.store import AlertsDb, alerts_path
from hub.db import DbTarget
from hub.purchasing.backoff import backoff_delay_ms
from hub.redact import url_for_log
from hub.rules.outbox import OutboxItem

log = logging.getLogger(__name__)

MAX_RULES = 200
FAILED_ROUND_PAUSE_S = 5.0
IDLE_WAKE_S = 60.0  # even with nothing due the task looks again this often (a clock jump, a missed wake)
SEND_BATCH = 50  # messages attempted per round, concurrently
KEEP_DONE_DAYS = 30  # sent and failed messages are kept this long for the page, then forgotten
PRUNE_EVERY_MS = 3_600_000


def _where(item: OutboxItem) -> str:
    """Where an alert goes, as a log line may say it: a webhook without its URL's token, or the e-mail address."""
    return url_for_log(item.path) if item.kind == WEBHOOK else item.path


class AlertsService:
    """Rules, grouping and delivery of alerts for one site."""

    def __init__(self, config: AlertsConfig, site: str, where: Path | DbTarget,
                 clock: Callable[[], int] = now_ms) -> None:
        """where: the ledger file (the alerts file goes next to it unless alerts.db_path says), or the store's
        database (hub.config.HubConfig.db_target)."""
        self.config = config
        self.db = AlertsDb(where if isinstance(where, DbTarget) else alerts_path(where, config.db_path))
        self.messages = Messages(site, config.digest_window_s)
        self.clock = clock
        self.window_ms = int(config.digest_window_s * 1000)
        self._incoming: list[AlertEvent] = []
        self._wake = asyncio.Event()
        self._rng = random.Random()
        self._pruned_ms = 0
        self.events_total = 0
        self.has_rules = False  # an enabled rule exists: sources need to judge for us

    def _rules_changed(self) -> None:
        self.has_rules = any(r.enabled for r in self.db.rules())

    def load_config_rules(self) -> None:
        """Store the config file's [[alert_rule]] tables (blocking: at start, off the loop)."""
        self.db.sync_config_rules(self.config.rules, self.clock())
        self._rules_changed()

    def close(self) -> None:
        self.db.close()

    # ----------------------------------------------------------------- in (on the loop)

    def on_event(self, event: AlertEvent) -> None:
        """Take an event; the task stores and routes it (never blocks the caller)."""
        self._incoming.append(event)
        self.events_total += 1
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    # ----------------------------------------------------------------- the task

    async def run(self) -> None:
        """Route events, queue due digests and deliver due messages, until cancelled."""
        async with aiohttp.ClientSession() as session:
            while True:
                self._wake.clear()
                try:
                    await self._round(session)
                except Exception:  # a broken round must not end alerting; the next one retries
                    log.exception("alerts round failed; retrying in %.0f s", FAILED_ROUND_PAUSE_S)
                    await asyncio.sleep(FAILED_ROUND_PAUSE_S)  # not a tight loop over a broken database
                await self._sleep()

    async def _sleep(self) -> None:
        nxt = [t for t in await asyncio.gather(asyncio.to_thread(self.db.next_attempt_ms),
                                               asyncio.to_thread(self.db.next_digest_ms, self.window_ms))
               if t is not None]
        wait_s = IDLE_WAKE_S if not nxt else max(0.0, (min(nxt) - self.clock()) / 1000)
        if wait_s <= 0:
            return
        try:
            async with asyncio.timeout(min(wait_s, IDLE_WAKE_S)):
                await self._wake.wait()
        except TimeoutError:
            pass

    async def _round(self, session: aiohttp.ClientSession) -> None:
        now = self.clock()
        await asyncio.to_thread(self.db.flush_digests, now, self.window_ms, self.messages)
        events, self._incoming = self._incoming, []
        if events:
            try:
                await asyncio.to_thread(self.db.accept, events, now, self.window_ms, self.config.burst,
                                        self.messages)
            except BaseException:
                self._incoming[:0] = events  # not stored: keep them for the next round
                raise
        due = await asyncio.to_thread(self.db.due, now, SEND_BATCH)
        await asyncio.gather(*(self._deliver(session, item) for item in due))
        if now - self._pruned_ms >= PRUNE_EVERY_MS:
            self._pruned_ms = now
            await asyncio.to_thread(self.db.prune, now - KEEP_DONE_DAYS * 86_400_000)

    async def _deliver(self, session: aiohttp.ClientSession, item: OutboxItem) -> None:
        now = self.clock()
        give_up_ms = int(self.config.give_up_after_h * 3_600_000)
        if now - item.created_ms >= give_up_ms:
            await asyncio.to_thread(self.db.mark_failed, item, now, f"gave up after {self.config.give_up_after_h:g} h"
                                    f" of retries; the last attempt said: {item.last_error or 'nothing'}")
            return
        attempt = await self._attempt(session, item)
        now = self.clock()
        if attempt.outcome == SENT:
            await asyncio.to_thread(self.db.mark_sent, item, now, attempt.response)
        elif attempt.outcome == REFUSED:
            log.warning("alert %s to %s refused: %s", item.idempotency_key, _where(item), attempt.reason)
            await asyncio.to_thread(self.db.mark_failed, item, now, attempt.reason)
        else:
            delay = backoff_delay_ms(item.attempts + 1, int(self.config.retry_base_s * 1000),
                                     int(self.config.retry_cap_s * 1000), self._rng)
            log.info("alert %s to %s not delivered (%s); retry in %.1f s", item.idempotency_key, _where(item),
                     attempt.reason, delay / 1000)
            await asyncio.to_thread(self.db.mark_retry, item, now, now + delay, attempt.reason)

    async def _attempt(self, session: aiohttp.ClientSession, item: OutboxItem) -> Attempt:
        body = item.body
        if item.kind == WEBHOOK:
            secret = await asyncio.to_thread(self.db.secret_of, body["rule_id"])
            if secret is None:
                return Attempt(REFUSED, f"rule {body['rule_id']} no longer exists")
            return await webhook.post(session, item.path, secret, item.idempotency_key, body["payload"],
                                      self.config.timeout_s)
        if item.kind == EMAIL:
            return await mailer.send(self.config.smtp, item.path, item.idempotency_key, body["subject"],
                                     body["text"], self.config.timeout_s)
        return Attempt(REFUSED, f"unknown channel {item.kind!r}")

    # ----------------------------------------------------------------- what the page and API do

    def add_rule(self, raw: dict[str, Any]) -> tuple[Rule, str | None]:
        """Check and store a rule (blocking); returns it and, when the hub made it, the new secret (shown once)."""
        rule = check_rule(raw)
        if rule.channel == EMAIL and not self.config.smtp.host:
            raise AlertsError("e-mail needs an SMTP server: set alerts.smtp_host (and smtp_from, smtp_username, "
                              "smtp_password) in the hub's config file first")
        if len(self.db.rules()) >= MAX_RULES:
            raise AlertsError(f"there are already {MAX_RULES} rules; delete one first")
        made = new_secret() if rule.channel == WEBHOOK and rule.secret is None else None
        stored = self.db.add_rule(rule, rule.secret or made, self.clock())
        self._rules_changed()
        return stored, made

    def delete_rule(self, rule_id: int) -> Rule:
        deleted = self.db.delete_rule(rule_id, self.clock())
        self._rules_changed()
        return deleted

    def set_enabled(self, rule_id: int, enabled: bool) -> Rule:
        rule = self.db.set_enabled(rule_id, enabled)
        self._rules_changed()
        return rule

    def send_test(self, rule_id: int) -> Rule:
        """Queue a test message to the rule (blocking); call wake() after."""
        return self.db.enqueue_test(rule_id, self.clock(), self.messages)

    def status(self) -> dict[str, Any]:
        """Rules with their delivery status, recent messages, the e-mail server (never its password)."""
        smtp = self.config.smtp
        return {"rules": [r.public() for r in self.db.rules()], "deliveries": self.db.deliveries(),
                "counts": self.db.counts(),
                "smtp": {"host": smtp.host, "port": smtp.port, "security": smtp.security, "username": smtp.username,
                         "sender": smtp.sender, "password_set": bool(smtp.password)},
                "grouping": {"window_s": self.config.digest_window_s, "burst": self.config.burst,
                             "window_text": span_words(self.config.digest_window_s)}}
