"""Every configuration key is declared once, with help, a valid default, and is documented."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.config import ARRAY_TABLES, EDGE_SETTINGS, load_edge_config
from edge.config import ENV_PREFIX as EDGE_ENV
from hub.config import ENV_PREFIX as HUB_ENV
from hub.config import HUB_SETTINGS, load_hub_config
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


@pytest.mark.parametrize("program", ["edge", "hub"])
def test_the_mqtt_password_file_is_read_or_named_in_one_line(program: str, tmp_path: Path) -> None:
    head = '[node]\nname = "pi-1"\nsite = "s1"\n' if program == "edge" else '[site]\nname = "s1"\n'
    load = load_edge_config if program == "edge" else load_hub_config
    secret = tmp_path / "mqtt-password"
    secret.write_text("s3cret\n")
    config = tmp_path / f"{program}.toml"
    config.write_text(f'{head}[mqtt]\npassword_file = "{secret}"\n')
    loaded = load(config)
    assert loaded.mqtt.password == "s3cret"
    secret.unlink()
    with pytest.raises(ConfigError, match=rf"{program}.toml: key 'mqtt.password_file': cannot read {secret} "
                                          r"\(No such file or directory\)"):
        load(config)


def test_a_dock_location_is_matched_whole() -> None:
    """`$` alone would let "DOCK\n" through: a location the contract refuses in every event."""
    doc = {"site": {"name": "s1"}, "stock": {"dock_locations": ["DOCK\n"]}}
    with pytest.raises(ConfigError, match=r"hub.toml: key 'stock.dock_locations': not location names"):
        resolve(doc, HUB_SETTINGS, "hub.toml", HUB_ENV, {})
    assert resolve({**doc, "stock": {"dock_locations": ["DOCK"]}}, HUB_SETTINGS, "hub.toml", HUB_ENV, {})[
        "stock.dock_locations"] == ["DOCK"]


def test_the_edge_checks_its_site_as_the_hub_does() -> None:
    """A site name is a site name on both sides: the hub's rule, and the error says which name is wrong."""
    edge = {"node": {"name": "pi-1", "site": "Site_A"}}
    with pytest.raises(ConfigError, match=r"key 'node.site': site name 'Site_A' must be 1-32 lowercase"):
        resolve(edge, EDGE_SETTINGS, "edge.toml", EDGE_ENV, {}, ARRAY_TABLES)
    with pytest.raises(ConfigError, match=r"key 'site.name': site name 'Site_A' must be 1-32 lowercase"):
        resolve({"site": {"name": "Site_A"}}, HUB_SETTINGS, "hub.toml", HUB_ENV, {})
    # Only node names reserve the hub's name: a hub serving site "hub" can have nodes.
    assert resolve({"site": {"name": "hub"}}, HUB_SETTINGS, "hub.toml", HUB_ENV, {})["site.name"] == "hub"
    assert resolve({"node": {"name": "pi-1", "site": "hub"}}, EDGE_SETTINGS, "edge.toml", EDGE_ENV, {},
                   ARRAY_TABLES)["node.site"] == "hub"
    with pytest.raises(ConfigError, match=r"key 'node.name': node name 'hub' is reserved for the hub"):
        resolve({"node": {"name": "hub", "site": "s1"}}, EDGE_SETTINGS, "edge.toml", EDGE_ENV, {}, ARRAY_TABLES)


def test_more_brokers_are_read_and_a_bad_address_is_refused_with_its_key() -> None:
    from edge.config import edge_config_from
    from hub.config import hub_config_from
    edge_doc = {"node": {"name": "pi-1", "site": "s1"},
                "mqtt": {"host": "hub-a", "port": 1884, "more_hosts": ["hub-b", "10.0.0.3:8883"]}}
    edge = edge_config_from(resolve(edge_doc, EDGE_SETTINGS, "edge.toml", EDGE_ENV, {}, ARRAY_TABLES), "edge.toml")
    assert edge.mqtt.brokers == (("hub-a", 1884), ("hub-b", 1884), ("10.0.0.3", 8883))
    hub = hub_config_from(resolve({"site": {"name": "s1"}}, HUB_SETTINGS, "hub.toml", HUB_ENV, {}))
    assert hub.mqtt.brokers == (("127.0.0.1", 1883),)  # one broker, as before
    with pytest.raises(ConfigError, match=r"hub.toml: key 'mqtt.more_hosts': 'hub-b:port' is not a broker address: write host or host:port"):
        resolve({"site": {"name": "s1"}, "mqtt": {"more_hosts": ["hub-b:port"]}}, HUB_SETTINGS, "hub.toml",
                HUB_ENV, {})
