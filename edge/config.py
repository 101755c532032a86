"""The edge agent's configuration: every key declared once, loaded from TOML and `EDGE_*` env."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contract import check_node_name, check_site_name
from edge.scan.config import SCANNER_SETTINGS
from edge.shelf.config import SHELF_SETTINGS
from settings import REQUIRED, Setting, load_file, positive, raises_value_error
from settings.mqtt import MqttConfig, mqtt_config_from, mqtt_settings

ENV_PREFIX = "EDGE"


EDGE_SETTINGS: list[Setting] = [
    Setting("node.name", str, REQUIRED, "this node's name; equals its MQTT username",
            check=raises_value_error(check_node_name)),
    Setting("node.site", str, REQUIRED, "the site (one hub per site)", check=raises_value_error(check_site_name)),
    *mqtt_settings(ENV_PREFIX, "node", "", "MQTT username; defaults to node.name"),
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
    return EdgeConfig(
        node=raw["node.name"], site=raw["node.site"], mqtt=mqtt_config_from(raw, source, raw["node.name"]),
        outbox_path=Path(raw["outbox.path"]), batch_max=raw["outbox.batch_max"],
        ack_timeout_s=raw["outbox.ack_timeout_s"], replay_batches_per_s=raw["outbox.replay_batches_per_s"],
        state_path=Path(raw["state.path"]), log_level=raw["log.level"],
        scanners=tuple(raw["scanner"]), shelves=tuple(raw["shelf"]), source=source)
