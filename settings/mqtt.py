"""The `[mqtt]` block both programs read: its keys declared once, and the typed value they make.

The edge agent and the hub connect to the same broker the same way; only the username's
default and who the keepalive speaks of differ. mqtt_client/ makes the paho client from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from settings import Setting, keepalive_seconds, port_number, read_secret


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


def mqtt_settings(env_prefix: str, who: str, username_default: str, username_help: str) -> list[Setting]:
    """The `mqtt.*` keys of a program whose variables start `env_prefix`; `who` ("node", "hub") is it in the help."""
    return [
        Setting("mqtt.host", str, "127.0.0.1", "broker host name or address"),
        Setting("mqtt.port", int, 1883, "broker port (8883 for TLS)", check=port_number),
        Setting("mqtt.username", str, username_default, username_help),
        Setting("mqtt.password", str, "", f"MQTT password (or set {env_prefix}_MQTT_PASSWORD)"),
        Setting("mqtt.password_file", str, "", "file holding the MQTT password, instead of mqtt.password"),
        Setting("mqtt.tls", bool, False, "connect with TLS"),
        Setting("mqtt.ca_file", str, "", "CA certificate for TLS (empty: system store)"),
        Setting("mqtt.keepalive_s", int, 15,
                f"MQTT keepalive (1-65535; the broker may lower it); the broker declares a silent {who} offline "
                "after 1.5x this", check=keepalive_seconds),
    ]


def mqtt_config_from(raw: Mapping[str, Any], source: str, username_if_empty: str = "") -> MqttConfig:
    """The block from resolved settings, reading `mqtt.password_file` when one is named (ConfigError if unreadable)."""
    password = raw["mqtt.password"]
    if raw["mqtt.password_file"]:
        password = read_secret(raw["mqtt.password_file"], "mqtt.password_file", source)
    return MqttConfig(host=raw["mqtt.host"], port=raw["mqtt.port"], username=raw["mqtt.username"] or username_if_empty,
                      password=password, tls=raw["mqtt.tls"], ca_file=raw["mqtt.ca_file"],
                      keepalive_s=raw["mqtt.keepalive_s"])
