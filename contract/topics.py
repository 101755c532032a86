"""The MQTT topic tree (docs/asyncapi.yaml): `wh/v1/{site}/{node}/{channel}`."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from contract._fields import NAME_RE
from contract.errors import ContractError

ROOT = "wh/v1"
HUB_NODE = "hub"  # reserved: no edge node may be called this


class Channel(enum.StrEnum):
    """Each channel under a node, with its direction in the docstring of the topic table."""

    STATE = "state"  # edge->hub, retained, also the Last Will
    BIRTH = "birth"  # edge->hub, on every connect
    EVENTS = "events"  # edge->hub, batches of events
    ACK = "ack"  # hub->edge, cumulative watermark per stream
    CMD = "cmd"  # hub->edge
    CMD_REPLY = "cmd/reply"  # edge->hub
    CONFIG = "config"  # hub->edge, retained


EDGE_PUBLISHES = frozenset({Channel.STATE, Channel.BIRTH, Channel.EVENTS, Channel.CMD_REPLY})

# MQTT v5 user property (name, value) on an `events` PUBLISH that re-sends outbox events (after a
# reconnect, an ack timeout or a resend_from) rather than publishing new ones: the hub commits
# live batches before re-sent ones, so a node's backlog does not delay the rest of the site.
RESEND_PROPERTY = ("resend", "1")


@dataclass(frozen=True, slots=True)
class TopicAddress:
    """A parsed topic: which site, which node, which channel."""

    site: str
    node: str
    channel: Channel


def check_name(kind: str, value: str) -> str:
    """Validate a site or node name; raise ValueError (caller mistake) with the rule."""
    if not NAME_RE.fullmatch(value):
        raise ValueError(f"{kind} name {value!r} must be 1-32 lowercase letters, digits or '-'")
    return value


def node_topic(site: str, node: str, channel: Channel) -> str:
    """The topic for one node's channel."""
    check_name("site", site)
    check_name("node", node)
    if node == HUB_NODE:
        raise ValueError("node name 'hub' is reserved for the hub")
    return f"{ROOT}/{site}/{node}/{channel.value}"


def hub_state_topic(site: str) -> str:
    """The hub's retained state topic, which is also its Last Will."""
    check_name("site", site)
    return f"{ROOT}/{site}/{HUB_NODE}/state"


def subscription(site: str, channel: Channel) -> str:
    """A wildcard subscription for one channel of every node of a site."""
    check_name("site", site)
    return f"{ROOT}/{site}/+/{channel.value}"


def parse_topic(topic: str) -> TopicAddress:
    """Parse a node topic, raising ContractError with the reason when it is not one."""
    parts = topic.split("/")
    if len(parts) < 5 or "/".join(parts[:2]) != ROOT:
        raise ContractError(f"topic {topic!r} is not under {ROOT}/{{site}}/{{node}}/")
    site, node, rest = parts[2], parts[3], "/".join(parts[4:])
    if not NAME_RE.fullmatch(site) or not NAME_RE.fullmatch(node):
        raise ContractError(f"topic {topic!r} has an invalid site or node name")
    try:
        channel = Channel(rest)
    except ValueError:
        raise ContractError(f"topic {topic!r}: unknown channel {rest!r}") from None
    return TopicAddress(site, node, channel)
