"""The `[mqtt]` block both programs read: its keys declared once, and the typed value they make.

The edge agent and the hub connect to the same broker the same way; only the username's
default and who the keepalive speaks of differ. mqtt_client/ makes the paho client from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from settings import Setting, keepalive_seconds, port_number, positive, read_secret

Broker = tuple[str, int]  # host, port


def parse_brokers(values: list[str] | tuple[str, ...], default_port: int) -> tuple[Broker, ...]:
    """["host", "host:port", ...] -> ((host, port), ...); raises ValueError naming the bad entry."""
    out: list[Broker] = []
    for value in values:
        host, sep, port_text = str(value).rpartition(":")
        if not sep:
            host, port_text = str(value), str(default_port)
        if not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"{value!r} is not a broker address: write host or host:port")
        out.append((host, int(port_text)))
    return tuple(out)


def broker_list_problem(values: Any) -> str | None:
    """A settings check for a list of broker addresses: None when fine, else what is wrong."""
    if not isinstance(values, list):
        return "a list of broker addresses, e.g. [\"10.0.0.2:1883\"]"
    try:
        parse_brokers(values, 1883)
    except ValueError as err:
        return str(err)
    return None


@dataclass(frozen=True, slots=True)
class MqttConfig:
    """How to reach the broker (or, on a two-server site, the brokers, tried in turn)."""

    host: str
    port: int
    username: str
    password: str
    tls: bool
    ca_file: str
    keepalive_s: int
    more_hosts: tuple[Broker, ...] = ()  # other brokers, tried in turn after host
    hub_absent_s: float = 15.0  # an edge with more_hosts leaves a broker where no hub is online for this long

    @property
    def brokers(self) -> tuple[Broker, ...]:
        """Every broker, in the order tried: host first."""
        return ((self.host, self.port), *self.more_hosts)


def mqtt_settings(env_prefix: str, who: str, username_default: str, username_help: str) -> list[Setting]:
    """The `mqtt.*` keys of a program whose variables start `env_prefix`; `who` ("node", "hub") is it in the help.
    A node also follows the hub between brokers (`mqtt.hub_absent_s`)."""
    follows_hub = [Setting("mqtt.hub_absent_s", float, 15.0,
                           "with mqtt.more_hosts: on a broker where no hub has been online for this long, try the next"
                           " one (the active hub is on another broker: a cut between some Pis and its broker)",
                           check=positive)] if who == "node" else []
    return [
        Setting("mqtt.host", str, "127.0.0.1", "broker host name or address"),
        Setting("mqtt.port", int, 1883, "broker port (8883 for TLS)", check=port_number),
        Setting("mqtt.username", str, username_default, username_help),
        Setting("mqtt.password", str, "", f"MQTT password (or set {env_prefix}_MQTT_PASSWORD)"),
        Setting("mqtt.password_file", str, "", "file holding the MQTT password, instead of mqtt.password"),
        Setting("mqtt.tls", bool, False, "connect with TLS"),
        Setting("mqtt.ca_file", str, "", "CA certificate for TLS (empty: system store)"),
        Setting("mqtt.more_hosts", list, [],
                "other brokers, tried in turn after mqtt.host when the one in use is gone (host or host:port, port"
                " defaults to mqtt.port); for two servers with a broker each (docs/deployment.md)",
                check=broker_list_problem),
        *follows_hub,
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
                      keepalive_s=raw["mqtt.keepalive_s"],
                      more_hosts=parse_brokers(raw["mqtt.more_hosts"], raw["mqtt.port"]),
                      hub_absent_s=raw.get("mqtt.hub_absent_s", 15.0))
