"""Commands the hub sent and the replies it took: a reply counts only if its command was ours.

A node can publish anything on its own cmd/reply topic (the broker ACL only pins the node
name), so a reply is accepted when the hub sent a command with that id to that very node;
anything else is refused with a reason (ingest quarantines it). Both what was sent and what
was answered are kept per node, with a bound each, so no node can push out another's.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from typing import Any

from contract import Command, CommandReply, ContractError

# Commands remembered per node for matching replies: an admin sends a few a day, the
# hub's resend_from at most one per gap every few seconds; a reply comes within seconds.
SENT_KEPT_PER_NODE = 256
# Replies kept per node for GET /api/v1/commands/{id} and the nodes page.
REPLIES_KEPT_PER_NODE = 50


class UnsolicitedReply(ContractError):
    """A reply to a command the hub did not send to that node; the text is the quarantine reason."""


class CommandLog:
    """Sent command ids and their replies, per node (thread-safe: web loop and ingest writer use it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sent: dict[str, OrderedDict[str, str]] = {}  # node -> command id -> cmd
        self._replies: dict[str, OrderedDict[str, dict[str, Any]]] = {}  # node -> command id -> reply
        self._order = 0  # arrival order across nodes, for the page's "latest first"

    def sent(self, node: str, command: Command) -> None:
        """Record a command about to be published to a node."""
        with self._lock:
            sent = self._sent.setdefault(node, OrderedDict())
            sent[command.id] = command.cmd
            while len(sent) > SENT_KEPT_PER_NODE:
                sent.popitem(last=False)

    def check(self, reply: CommandReply) -> None:
        """Raise UnsolicitedReply unless the hub sent command `reply.id` to `reply.node`."""
        with self._lock:
            known = reply.id in self._sent.get(reply.node, {})
        if not known:
            raise UnsolicitedReply(f"reply from node {reply.node} to command {reply.id!r}, which the hub did not send "
                                   "to that node (or sent too long ago): not stored or shown; a node answers only "
                                   "commands sent to it, so check the node's software")

    def store(self, reply: CommandReply) -> None:
        """Keep an accepted reply (a repeat of the same id replaces the earlier one)."""
        with self._lock:
            self._order += 1
            replies = self._replies.setdefault(reply.node, OrderedDict())
            replies.pop(reply.id, None)
            replies[reply.id] = {**dataclasses.asdict(reply), "_order": self._order}
            while len(replies) > REPLIES_KEPT_PER_NODE:
                replies.popitem(last=False)

    def reply(self, cmd_id: str) -> dict[str, Any] | None:
        """The reply to one command, if it came."""
        with self._lock:
            for replies in self._replies.values():
                found = replies.get(cmd_id)
                if found is not None:
                    return _public(found)
        return None

    def recent(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Replies of every node in arrival order, oldest first (the last `limit` with a limit)."""
        with self._lock:
            rows = sorted((r for replies in self._replies.values() for r in replies.values()),
                          key=lambda r: r["_order"])
        return [_public(r) for r in (rows[-limit:] if limit else rows)]


def _public(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != "_order"}
