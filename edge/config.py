"""The edge agent's configuration: every key declared once, loaded from TOML and `EDGE_*` env."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contract import HUB_NODE, check_name
from edge.scan.config import SCANNER_SETTINGS
from edge.shelf.config import SHELF_SETTINGS
from service.brokers import Broker, broker_list_problem, parse_brokers
from settings import REQUIRED, Setting, keepalive_seconds, load_file, port_number, positive, read_secret

ENV_PREFIX = "EDGE"


def _name(value: Any) -> str | None:
    try:
        check_name("node", value)
    except ValueError as err:
        return str(err)
    return f"{HUB_NODE!r} is reserved for the hub" if value == HUB_NODE else None


EDGE_SETTINGS: list[Setting] = [
    Setting("node.name", str, REQUIRED, "this node's name; equals its MQTT username", check=_name),
    Setting("node.site", str, REQUIRED, "the site (one hub per site)", check=_name),
    Setting("mqtt.host", str, "127.0.0.1", "broker host name or address"),
    Setting("mqtt.port", int, 1883, "broker port (8883 for TLS)", check=port_number),
    Setting("mqtt.username", str, "", "MQTT username; defaults to node.name"),
    Setting("mqtt.password", str, "", "MQTT password (or set EDGE_MQTT_PASSWORD)"),
    Setting("mqtt.password_file", str, "", "file holding the MQTT password, instead of mqtt.password"),
    Setting("mqtt.tls", bool, False, "connect with TLS"),
    Setting("mqtt.ca_file", str, "", "CA certificate for TLS (empty: system store)"),
    Setting("mqtt.more_hosts", list, [],
            "other brokers, tried in turn after mqtt.host when the one in use is gone (host or host:port, port"
            " defaults to mqtt.port); for two servers with a broker each (docs/deployment.md)",
            check=broker_list_problem),
    Setting("mqtt.hub_absent_s", float, 15.0,
            "with mqtt.more_hosts: on a broker where no hub has been online for this long, try the next one (the"
            " active hub is on another broker: a cut between some Pis and its broker)", check=positive),
    Setting("mqtt.keepalive_s", int, 15, "MQTT keepalive (1-65535); the node is declared offline after 1.5x this",
            check=keepalive_seconds),
    Setting("outbox.path", str, "/var/lib/edge-agent/outbox.sqlite3", "SQLite outbox file"),
    Setting("outbox.batch_max", int, 100, "most events in one published batch", check=positive),
    Setting("outbox.ack_timeout_s", float, 5.0, "re-send unacknowledged events after this long without an ack",
            check=positive),
    Setting("outbox.replay_batches_per_s", float, 50.0, "pace of re-sends, so live events still go first",
            check=positive),
    Setting("state.path", str, "/var/lib/edge-agent/state.json", "TinyDB file for calibration and config cache"),
    Setting("log.level", str, "INFO", "least severe log lines written to stdout (journald)", choices=("DEBUG", "INFO", "WARNING", "ERROR")),
]

ARRAY_TABLES = {"scanner": SCANNER_SETTINGS, "shelf": SHELF_SETTINGS}


@dataclass(frozen=True, slots=True)
class MqttConfig:
    """How to reach the broker."""

    host: str
    port: int
    username: str
    password: str
    tls: bool
    ca_file: str
    keepalive_s: int
    more_hosts: tuple[Broker, ...] = ()  # other brokers, tried in turn after host
    hub_absent_s: float = 15.0  # with more_hosts: leave a broker where no hub is online for this long

    @property
    def brokers(self) -> tuple[Broker, ...]:
        """Every broker, in the order tried: host first."""
        return ((self.host, self.port), *self.more_hosts)


@dataclass(frozen=True, slots=True)
class EdgeConfig:
    """The whole edge configuration, validated."""

    node: str
    site: str
    mqtt: MqttConfig
    outbox_path: Path
    batch_max: int
    ack_timeout_s: float
    replay_batches_per_s: float
    state_path: Path
    log_level: str
    scanners: tuple[dict[str, Any], ...]
    shelves: tuple[dict[str, Any], ...]
    source: str = ""


def load_edge_config(path: str | Path) -> EdgeConfig:
    """Load and validate an edge config file; raises settings.ConfigError with one line."""
    raw = load_file(path, EDGE_SETTINGS, ENV_PREFIX, ARRAY_TABLES)
    return edge_config_from(raw, str(path))


def edge_config_from(raw: dict[str, Any], source: str) -> EdgeConfig:
    """Build the typed config from resolved settings."""
    password = raw["mqtt.password"]
    if raw["mqtt.password_file"]:
        password = read_secret(raw["mqtt.password_file"], "mqtt.password_file", source)
    return EdgeConfig(
        node=raw["node.name"], site=raw["node.site"],
        mqtt=MqttConfig(host=raw["mqtt.host"], port=raw["mqtt.port"],
                        username=raw["mqtt.username"] or raw["node.name"], password=password,
                        tls=raw["mqtt.tls"], ca_file=raw["mqtt.ca_file"], keepalive_s=raw["mqtt.keepalive_s"],
                        more_hosts=parse_brokers(raw["mqtt.more_hosts"], raw["mqtt.port"]),
                        hub_absent_s=raw["mqtt.hub_absent_s"]),
        outbox_path=Path(raw["outbox.path"]), batch_max=raw["outbox.batch_max"],
        ack_timeout_s=raw["outbox.ack_timeout_s"], replay_batches_per_s=raw["outbox.replay_batches_per_s"],
        state_path=Path(raw["state.path"]), log_level=raw["log.level"],
        scanners=tuple(raw["scanner"]), shelves=tuple(raw["shelf"]), source=source)
