"""Every config file in firmware_config/ loads with the code that loads it in production,
and a bad key or value is refused with one line naming the file, the key and the problem."""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

import pytest

from edge.config import load_edge_config
from settings import ConfigError

FIRMWARE = Path(__file__).resolve().parent.parent / "firmware_config"
EDGE_FILES = sorted(FIRMWARE.glob("edge-*.toml")) + sorted((FIRMWARE / "nodes").glob("*.toml"))
HUB_FILES = sorted(FIRMWARE.glob("hub*.toml"))


def _hub_loader() -> object | None:
    if importlib.util.find_spec("hub.config") is None:
        return None
    return getattr(importlib.import_module("hub.config"), "load_hub_config", None)


def test_every_toml_file_has_a_loader() -> None:
    """A config file that no test loads would rot unnoticed: each must be an edge or a hub config."""
    covered = set(EDGE_FILES) | set(HUB_FILES)
    stray = [p for p in FIRMWARE.rglob("*.toml") if p not in covered]
    assert not stray, f"config files no test validates (name them edge-*.toml or hub*.toml): {stray}"
    assert EDGE_FILES and HUB_FILES


@pytest.mark.parametrize("path", EDGE_FILES, ids=lambda p: p.name)
def test_edge_config_loads(path: Path) -> None:
    config = load_edge_config(path)
    assert config.node and config.site
    for device in (*config.scanners, *config.shelves):
        # Stable names from the udev rules, never /dev/ttyUSB0 that can swap at the next boot.
        assert device["port"].startswith("/dev/shelfsignal/"), f"{path.name}: {device['name']} uses {device['port']}"


@pytest.mark.parametrize("path", HUB_FILES, ids=lambda p: p.name)
def test_hub_config_loads(path: Path) -> None:
    load_hub_config = _hub_loader()
    if load_hub_config is None:
        pytest.skip("hub.config.load_hub_config does not exist yet; this checks the hub examples once it does")
    load_hub_config(path)  # type: ignore[operator]


def _broken_copy(tmp_path: Path, old: str, new: str) -> Path:
    source = FIRMWARE / "edge-example.toml"
    text = source.read_text()
    assert old in text, f"the example no longer contains {old!r}; update this test"
    broken = tmp_path / "edge-broken.toml"
    broken.write_text(text.replace(old, new, 1))
    return broken


@pytest.mark.parametrize(("old", "new", "expected"), [
    ("keepalive_s = 15", "keepalive_sec = 15", "unknown key 'mqtt.keepalive_sec' (did you mean 'mqtt.keepalive_s'?)"),
    ("port = 1883", 'port = "1883"', "key 'mqtt.port': must be a whole number, got '1883'"),
    ('level = "INFO"', 'level = "CHATTY"', "key 'log.level': must be one of DEBUG, INFO, WARNING, ERROR"),
    ('name = "pi-bench-1"', 'name = "hub"', "key 'node.name': node name 'hub' is reserved for the hub"),
    ('type = "evdev"', 'typ = "evdev"', "[[scanner]] #1: unknown key 'typ' (did you mean 'type'?)"),
    ("baud = 115200", "baud = -1", "[[shelf]] #1: key 'baud': must be greater than 0"),
])
def test_bad_key_or_value_is_refused_in_one_line(tmp_path: Path, old: str, new: str, expected: str) -> None:
    broken = _broken_copy(tmp_path, old, new)
    with pytest.raises(ConfigError) as err:
        load_edge_config(broken)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(str(broken))  # names the file
    assert expected in message  # names the key and the problem
