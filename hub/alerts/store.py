"""The alerts' own store (hub.db: a SQLite file, or tables of the site's PostgreSQL database): the
rules, the events held for a digest, and the outbox. The schema is hub/migrations/alerts/.

Why a store of its own: alerts are written from the web layer (rules) and the delivery task,
never from the ingest writer or the rules engine; their rows must not wait behind either,
and the ledger stays a ledger. The outbox table and its SQL are the purchasing outbox's
(hub/rules/outbox.py: same columns, same status words, same functions), used here on this
file's connection, so both outboxes are read and judged the same way.

Grouping (docs/alerts.md): per rule, the first `burst` events in a window go out one by one;
later ones in that window are held here and leave as one digest when the window ends. Both
steps are one transaction each, so a restart neither loses a held event nor sends it twice.

Every method is blocking and takes the connection's lock: call it through asyncio.to_thread.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hub.alerts.model import WEBHOOK, AlertEvent, AlertsError, NoSuchRule, Rule, RuleInput
from hub.db import ALERTS, DbTarget
from hub.db.base import Connection
from hub.db.migrate import migrate
from hub.rules import outbox
from hub.rules.outbox import OutboxItem

# message type, rule, events -> the outbox body (subject, text, payload); see hub/alerts/messages.py
Render = Callable[[str, Rule, list[AlertEvent]], dict[str, Any]]


def alerts_path(db_path: Path, configured: str) -> Path:
    """The alerts database: the configured path, else alerts.sqlite3 next to the ledger."""
    return Path(configured) if configured else Path(db_path).with_name("alerts.sqlite3")


class AlertsDb:
    """Rules, held events and the alerts outbox in one store."""

    def __init__(self, where: str | Path | DbTarget) -> None:
        # A path: a SQLite file, synchronous=FULL: an accepted alert survives a power cut.
        self.target = where if isinstance(where, DbTarget) else DbTarget.sqlite(ALERTS, where)
        migrate(self.target)
        self.conn: Connection = self.target.connect()
        self._lock = threading.RLock()

    @property
    def _rule_id_of_body(self) -> str:
        """SQL for the rule id inside an outbox row's JSON body, as an integer on both backends."""
        return f"CAST({self.conn.json_text('body', 'rule_id')} AS INTEGER)"

    def close(self) -> None:
        with self._lock:
            self.conn.close()

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        with self._lock, self.conn.transaction():
            yield self.conn

    # ----------------------------------------------------------------- rules

    def _rule(self, row: Any) -> Rule:
        status = {"last_sent_ms": row["last_sent_ms"], "last_failure_ms": row["last_failure_ms"],
                  "last_failure": row["last_failure"], "sent_total": row["sent_total"],
                  "failed_attempts": row["failed_attempts"]}
        return Rule(row["id"], row["name"], tuple(json.loads(row["kinds"])), row["channel"], row["target"],
                    row["source"], bool(row["enabled"]), row["secret"] is not None, status)

    def rules(self) -> list[Rule]:
        """Every rule, by name, with its delivery status (pending and held counts included)."""
        with self._lock:
            rows = self.conn.execute("SELECT * FROM alert_rules ORDER BY name").fetchall()
            pending = dict(self.conn.execute(
                f"SELECT {self._rule_id_of_body}, COUNT(*) FROM outbox WHERE status = ? GROUP BY 1",
                (outbox.PENDING,)).fetchall())
            held = dict(self.conn.execute("SELECT rule_id, COUNT(*) FROM alert_held GROUP BY rule_id").fetchall())
        out = []
        for row in rows:
            rule = self._rule(row)
            rule.status.update(pending=pending.get(rule.id, 0), held=held.get(rule.id, 0))
            out.append(rule)
        return out

    def rule(self, rule_id: int) -> Rule | None:
        with self._lock:
            row = self.conn.execute("SELECT * FROM alert_rules WHERE id = ?", (rule_id,)).fetchone()
        return None if row is None else self._rule(row)

    def secret_of(self, rule_id: int) -> str | None:
        """The rule's webhook signing secret (for signing only; never shown)."""
        with self._lock:
            row = self.conn.execute("SELECT secret FROM alert_rules WHERE id = ?", (rule_id,)).fetchone()
        return None if row is None else row["secret"]

    def add_rule(self, rule: RuleInput, secret: str | None, now_ms: int, source: str = "page") -> Rule:
        """Store a new rule; a name already in use is refused (nothing changes)."""
        with self._tx() as conn:
            if conn.execute("SELECT 1 FROM alert_rules WHERE name = ?", (rule.name,)).fetchone():
                raise AlertsError(f"a rule named {rule.name!r} already exists: choose another name or delete it first")
            row = conn.execute("INSERT INTO alert_rules (name, kinds, channel, target, secret, source, created_ms)"
                               " VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
                               (rule.name, json.dumps(list(rule.kinds)), rule.channel, rule.target,
                                secret if rule.channel == WEBHOOK else None, source, now_ms)).fetchone()
            rule_id = int(row[0])
        found = self.rule(rule_id)
        assert found is not None
        return found

    def delete_rule(self, rule_id: int, now_ms: int) -> Rule:
        """Remove a page rule; what it still had to send is marked failed with the reason."""
        with self._tx() as conn:
            row = conn.execute("SELECT * FROM alert_rules WHERE id = ?", (rule_id,)).fetchone()
            if row is None:
                raise NoSuchRule(f"there is no alert rule {rule_id}")
            if row["source"] == "config":
                raise AlertsError(f"rule {row['name']!r} comes from the config file ([[alert_rule]]): "
                                  "change it there and restart the hub")
            self._drop(conn, rule_id, now_ms, f"rule {row['name']!r} was deleted before this was sent")
        return self._rule(row)

    def set_enabled(self, rule_id: int, enabled: bool) -> Rule:
        """Pause a rule (events for it are no longer taken) or resume it."""
        with self._tx() as conn:
            row = conn.execute("SELECT name, source FROM alert_rules WHERE id = ?", (rule_id,)).fetchone()
            if row is None:
                raise NoSuchRule(f"there is no alert rule {rule_id}")
            if row["source"] == "config":
                raise AlertsError(f"rule {row['name']!r} comes from the config file ([[alert_rule]]): "
                                  "change it there and restart the hub")
            conn.execute("UPDATE alert_rules SET enabled = ? WHERE id = ?", (int(enabled), rule_id))
        found = self.rule(rule_id)
        assert found is not None
        return found

    def sync_config_rules(self, rules: Iterable[tuple[RuleInput, str | None]], now_ms: int) -> None:
        """Make the config file's rules ([[alert_rule]]) the stored ones of source 'config'.

        A rule keeps its id (and so its delivery status) while its name stays; one removed from
        the file is removed here. A page rule of the same name becomes the config file's.
        """
        wanted = {r.name: (r, secret) for r, secret in rules}
        with self._tx() as conn:
            for row in conn.execute("SELECT id, name FROM alert_rules WHERE source = 'config'").fetchall():
                if row["name"] not in wanted:
                    self._drop(conn, row["id"], now_ms, f"rule {row['name']!r} left the config file")
            for name, (r, secret) in wanted.items():
                kinds = json.dumps(list(r.kinds))
                secret = secret if r.channel == WEBHOOK else None
                if conn.execute("UPDATE alert_rules SET kinds = ?, channel = ?, target = ?, secret = ?,"
                                " source = 'config', enabled = 1 WHERE name = ?",
                                (kinds, r.channel, r.target, secret, name)).rowcount == 0:
                    conn.execute("INSERT INTO alert_rules (name, kinds, channel, target, secret, source,"
                                 " created_ms) VALUES (?, ?, ?, ?, ?, 'config', ?)",
                                 (name, kinds, r.channel, r.target, secret, now_ms))

    def _drop(self, conn: Connection, rule_id: int, now_ms: int, why: str) -> None:
        for item_id, in conn.execute(f"SELECT id FROM outbox WHERE status = ? AND {self._rule_id_of_body} = ?",
                                     (outbox.PENDING, rule_id)).fetchall():
            outbox.mark_failed(conn, item_id, now_ms, why)
        conn.execute("DELETE FROM alert_held WHERE rule_id = ?", (rule_id,))
        conn.execute("DELETE FROM alert_rules WHERE id = ?", (rule_id,))

    # ----------------------------------------------------------------- events in, grouped

    def accept(self, events: list[AlertEvent], now_ms: int, window_ms: int, burst: int, render: Render) -> int:
        """Take events for every enabled rule that asks for their kind; returns messages queued.

        Within a rule's window the first `burst` go out alone; the rest are held for the digest.
        """
        queued = 0
        with self._tx() as conn:
            rows = conn.execute("SELECT * FROM alert_rules WHERE enabled = 1 ORDER BY id").fetchall()
            held = {r for r, in conn.execute("SELECT DISTINCT rule_id FROM alert_held")}
            for row in rows:
                rule = self._rule(row)
                mine = [e for e in events if e.kind in rule.kinds]
                if not mine:
                    continue
                start, sent = row["window_start_ms"], row["window_sent"]
                if now_ms - start >= window_ms and rule.id not in held:
                    start, sent = now_ms, 0  # a quiet spell ended the window: start a new one
                for event in mine:
                    if sent < burst and rule.id not in held:
                        self._enqueue(conn, rule, render("alert", rule, [event]), now_ms)
                        sent += 1
                        queued += 1
                    else:
                        conn.execute("INSERT INTO alert_held (rule_id, kind, subject, text, ts_ms)"
                                     " VALUES (?, ?, ?, ?, ?)", (rule.id, event.kind, event.subject, event.text,
                                                                 event.ts_ms))
                        held.add(rule.id)
                conn.execute("UPDATE alert_rules SET window_start_ms = ?, window_sent = ? WHERE id = ?",
                             (start, sent, rule.id))
        return queued

    def flush_digests(self, now_ms: int, window_ms: int, render: Render) -> int:
        """Queue one digest per rule whose window has ended with events held; returns how many."""
        queued = 0
        with self._tx() as conn:
            due = conn.execute("SELECT * FROM alert_rules WHERE ? - window_start_ms >= ? AND id IN"
                               " (SELECT rule_id FROM alert_held)", (now_ms, window_ms)).fetchall()
            for row in due:
                rule = self._rule(row)
                events = [AlertEvent(h["kind"], h["subject"], h["text"], h["ts_ms"]) for h in conn.execute(
                    "SELECT * FROM alert_held WHERE rule_id = ? ORDER BY id", (rule.id,))]
                self._enqueue(conn, rule, render("digest", rule, events), now_ms)
                conn.execute("DELETE FROM alert_held WHERE rule_id = ?", (rule.id,))
                # The digest opens the next window: a bad hour keeps sending one digest per window.
                conn.execute("UPDATE alert_rules SET window_start_ms = ?, window_sent = ? WHERE id = ?",
                             (now_ms, 1, rule.id))
                queued += 1
        return queued

    def next_digest_ms(self, window_ms: int) -> int | None:
        """When the earliest window with held events ends (None: nothing held)."""
        with self._lock:
            row = self.conn.execute("SELECT MIN(window_start_ms) FROM alert_rules WHERE id IN"
                                    " (SELECT rule_id FROM alert_held)").fetchone()
        return None if row[0] is None else int(row[0]) + window_ms

    def enqueue_test(self, rule_id: int, now_ms: int, render: Render) -> Rule:
        """Queue a test message to one rule (whatever its kinds), outside the grouping."""
        rule = self.rule(rule_id)
        if rule is None:
            raise NoSuchRule(f"there is no alert rule {rule_id}")
        with self._tx() as conn:
            self._enqueue(conn, rule, render("test", rule, []), now_ms)
        return rule

    def _enqueue(self, conn: Connection, rule: Rule, message: dict[str, Any], now_ms: int) -> None:
        # The key is the Standard Webhooks message id (and the e-mail's Message-ID): the same on
        # every retry, so a receiver that got it once can drop the repeat.
        key = f"msg_{uuid.uuid4().hex}"
        outbox.enqueue(conn, rule.channel, key, rule.target, {"rule_id": rule.id, **message}, now_ms)

    # ----------------------------------------------------------------- the outbox

    def due(self, now_ms: int, limit: int = 50) -> list[OutboxItem]:
        """Pending messages whose next attempt is due, oldest first."""
        with self._lock:
            return outbox.due(self.conn, now_ms, limit)

    def next_attempt_ms(self) -> int | None:
        """When the next pending message is due (None: nothing pending)."""
        with self._lock:
            row = self.conn.execute("SELECT MIN(next_attempt_ms) FROM outbox WHERE status = ?",
                                    (outbox.PENDING,)).fetchone()
        return None if row[0] is None else int(row[0])

    def mark_sent(self, item: OutboxItem, now_ms: int, response: dict[str, Any]) -> None:
        with self._tx() as conn:
            outbox.mark_sent(conn, item.id, now_ms, response)
            conn.execute("UPDATE alert_rules SET last_sent_ms = ?, sent_total = sent_total + 1 WHERE id = ?",
                         (now_ms, item.body["rule_id"]))

    def mark_retry(self, item: OutboxItem, now_ms: int, next_attempt_ms: int, error: str) -> None:
        with self._tx() as conn:
            outbox.mark_retry(conn, item.id, next_attempt_ms, error)
            self._failure(conn, item, now_ms, error)

    def mark_failed(self, item: OutboxItem, now_ms: int, error: str) -> None:
        with self._tx() as conn:
            outbox.mark_failed(conn, item.id, now_ms, error)
            self._failure(conn, item, now_ms, error)

    def _failure(self, conn: Connection, item: OutboxItem, now_ms: int, error: str) -> None:
        conn.execute("UPDATE alert_rules SET last_failure_ms = ?, last_failure = ?,"
                     " failed_attempts = failed_attempts + 1 WHERE id = ?", (now_ms, error[:500], item.body["rule_id"]))

    def deliveries(self, limit: int = 30) -> list[dict[str, Any]]:
        """The latest messages, newest first, as the page lists them."""
        with self._lock:
            rows = self.conn.execute(
                "SELECT o.*, r.name AS rule_name FROM outbox o LEFT JOIN alert_rules r"
                f" ON r.id = CAST({self.conn.json_text('o.body', 'rule_id')} AS INTEGER) ORDER BY o.id DESC LIMIT ?",
                (limit,)).fetchall()
        out = []
        for row in rows:
            body = json.loads(row["body"])
            out.append({"id": row["id"], "message_id": row["idempotency_key"], "channel": row["kind"],
                        "target": row["path"], "rule": row["rule_name"], "type": body.get("type"),
                        "subject": body.get("subject"), "summary": body.get("summary"), "status": row["status"],
                        "attempts": row["attempts"],
                        "created_ms": row["created_ms"], "done_ms": row["done_ms"],
                        "next_attempt_ms": row["next_attempt_ms"], "last_error": row["last_error"]})
        return out

    def oldest_pending_ms(self) -> int | None:
        """When the oldest message still waiting was queued (None: nothing waits)."""
        with self._lock:
            row = self.conn.execute("SELECT MIN(created_ms) FROM outbox WHERE status = ?",
                                    (outbox.PENDING,)).fetchone()
        return None if row[0] is None else int(row[0])

    def prune(self, before_ms: int) -> int:
        """Forget messages sent or failed before `before_ms` (the page shows recent ones); returns how many."""
        with self._tx() as conn:
            return conn.execute("DELETE FROM outbox WHERE status != ? AND done_ms < ?",
                                (outbox.PENDING, before_ms)).rowcount

    def counts(self) -> dict[str, int]:
        """How many messages are pending, sent and failed."""
        with self._lock:
            return outbox.counts(self.conn)

