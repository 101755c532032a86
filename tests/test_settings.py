"""Every configuration key is declared once, with help, a valid default, and is documented."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.config import ARRAY_TABLES, EDGE_SETTINGS
from edge.config import ENV_PREFIX as EDGE_ENV
from hub.config import ENV_PREFIX as HUB_ENV
from hub.config import HUB_SETTINGS
from settings import REQUIRED, ConfigError, Setting, resolve
from tests.config_docs import render

ALL = {"edge": EDGE_SETTINGS, "scanner": ARRAY_TABLES["scanner"], "shelf": ARRAY_TABLES["shelf"], "hub": HUB_SETTINGS}


@pytest.mark.parametrize("group", sorted(ALL))
def test_keys_are_unique_with_help_and_valid_defaults(group: str) -> None:
    settings: list[Setting] = ALL[group]
    keys = [s.key for s in settings]
    assert len(keys) == len(set(keys)), f"{group}: a key is declared twice"
    for s in settings:
        assert len(s.help) >= 15, f"{group}: {s.key} needs a help sentence"
        if s.default is not REQUIRED:
            s.coerce(s.default, f"default of {s.key}")  # raises if the default breaks its own check


def test_docs_configuration_is_generated_from_the_declarations() -> None:
    doc = Path(__file__).parent.parent / "docs" / "configuration.md"
    assert doc.read_text() == render(), "docs/configuration.md is stale: run python -m tests.config_docs"


def test_environment_overrides_and_typos() -> None:
    doc = {"site": {"name": "s1"}}
    assert resolve(doc, HUB_SETTINGS, "hub.toml", HUB_ENV, {"HUB_HTTP_PORT": "9000"})["http.port"] == 9000
    with pytest.raises(ConfigError, match=r"hub.toml: unknown key 'http.prot' \(did you mean 'http.port'\?\)"):
        resolve({**doc, "http": {"prot": 1}}, HUB_SETTINGS, "hub.toml", HUB_ENV, {})
    with pytest.raises(ConfigError, match=r"\$EDGE_MQTT_PORT: cannot read 'x' as a whole number"):
        resolve({"node": {"name": "pi-1", "site": "s1"}}, EDGE_SETTINGS, "edge.toml", EDGE_ENV, {"EDGE_MQTT_PORT": "x"},
                ARRAY_TABLES)


def test_more_brokers_are_read_and_a_bad_address_is_refused_with_its_key() -> None:
    from edge.config import edge_config_from
    from hub.config import hub_config_from
    edge_doc = {"node": {"name": "pi-1", "site": "s1"},
                "mqtt": {"host": "hub-a", "port": 1884, "more_hosts": ["hub-b", "10.0.0.3:8883"]}}
    edge = edge_config_from(resolve(edge_doc, EDGE_SETTINGS, "edge.toml", EDGE_ENV, {}, ARRAY_TABLES), "edge.toml")
    assert edge.mqtt.brokers == (("hub-a", 1884), ("hub-b", 1884), ("10.0.0.3", 8883))
    hub = hub_config_from(resolve({"site": {"name": "s1"}}, HUB_SETTINGS, "hub.toml", HUB_ENV, {}))
    assert hub.mqtt_brokers == (("127.0.0.1", 1883),)  # one broker, as before
    with pytest.raises(ConfigError, match=r"hub.toml: key 'mqtt.more_hosts': 'hub-b:port' is not a broker address: write host or host:port"):
        resolve({"site": {"name": "s1"}, "mqtt": {"more_hosts": ["hub-b:port"]}}, HUB_SETTINGS, "hub.toml",
                HUB_ENV, {})
