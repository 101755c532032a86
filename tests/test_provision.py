"""Provisioning and revoking nodes against a real Mosquitto with a password file and the site ACL."""

from __future__ import annotations

import argparse
import stat
from pathlib import Path

import pytest

from edge.config import load_edge_config
from hub.mosquitto import HUB_USER, PrivateBroker, acl_text
from hub.provision import ProvisionError, add_subcommands, provision_node, revoke_node
from tests.support import ACCEPTED, NOT_AUTHORIZED, SITE, WAIT_S, connect_when_accepted, refused_when_revoked


def provision(broker: PrivateBroker, pid_file: Path, out_dir: Path, name: str) -> Path:
    return provision_node(name, password_file=broker.password_file, acl_file=broker.acl_file, out_dir=out_dir,
                          site=SITE, broker_host=broker.host, broker_port=broker.port, mosquitto_pid_file=pid_file)


def test_provisioned_node_publishes_its_own_topics_only(site_broker: tuple[PrivateBroker, Path],
                                                        tmp_path: Path) -> None:
    broker, pid_file = site_broker
    out_dir = tmp_path / "nodes"
    path = provision(broker, pid_file, out_dir, "pi-dock-1")

    assert path == out_dir / "pi-dock-1.toml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # it holds a password
    config = load_edge_config(path)  # the same loader the agent uses
    assert (config.node, config.site, config.mqtt.port) == ("pi-dock-1", SITE, broker.port)
    assert len(config.mqtt.password) >= 40

    hub = connect_when_accepted(broker, HUB_USER, broker.users[HUB_USER])
    node = connect_when_accepted(broker, config.mqtt.username, config.mqtt.password)
    try:
        hub.subscribe(f"wh/v1/{SITE}/+/events")
        assert node.publish(f"wh/v1/{SITE}/pi-dock-1/events", b'{"v":1}') == 0
        with hub.cond:
            assert hub.cond.wait_for(lambda: any(m.topic.endswith("pi-dock-1/events") for m in hub.messages), WAIT_S)
        assert node.publish(f"wh/v1/{SITE}/pi-dock-2/events") == NOT_AUTHORIZED  # as another node
        assert node.publish(f"wh/v1/{SITE}/hub/state") == NOT_AUTHORIZED  # as the hub
        assert node.publish(f"wh/v1/{SITE}/pi-dock-1/ack") == NOT_AUTHORIZED  # only the hub acks
    finally:
        node.close()
        hub.close()


def test_provisioning_twice_keeps_the_node_working(site_broker: tuple[PrivateBroker, Path], tmp_path: Path) -> None:
    broker, pid_file = site_broker
    out_dir = tmp_path / "nodes"
    first = provision(broker, pid_file, out_dir, "pi-twice")
    text = first.read_text()
    second = provision(broker, pid_file, out_dir, "pi-twice")
    assert second == first and second.read_text() == text  # same password: a Pi in the field keeps working
    assert broker.acl_file.read_text() == acl_text()
    password = load_edge_config(second).mqtt.password
    peer = connect_when_accepted(broker, "pi-twice", password)
    try:
        assert peer.publish(f"wh/v1/{SITE}/pi-twice/state") in ACCEPTED
    finally:
        peer.close()


def test_revoked_node_is_refused_and_disconnected(site_broker: tuple[PrivateBroker, Path], tmp_path: Path) -> None:
    broker, pid_file = site_broker
    out_dir = tmp_path / "nodes"
    path = provision(broker, pid_file, out_dir, "pi-gone")
    password = load_edge_config(path).mqtt.password
    connected = connect_when_accepted(broker, "pi-gone", password)
    try:
        assert revoke_node("pi-gone", password_file=broker.password_file, out_dir=out_dir,
                           mosquitto_pid_file=pid_file)
        assert not path.exists()
        rc = refused_when_revoked(broker, "pi-gone", password)
        assert rc.value == 135  # Mosquitto 2.0 refuses unknown users with Not authorized
        # Mosquitto re-checks connected clients on reload: the live session is cut too.
        assert connected.disconnected.wait(WAIT_S), "revoked node stayed connected"
    finally:
        connected.close()
    # Revoking again is harmless.
    assert revoke_node("pi-gone", password_file=broker.password_file, out_dir=out_dir,
                       mosquitto_pid_file=pid_file) is False


def test_node_names_are_checked(tmp_path: Path) -> None:
    common = dict(password_file=tmp_path / "passwd", acl_file=tmp_path / "acl", out_dir=tmp_path,
                  site=SITE, broker_host="hub.local", broker_port=1883, reload=False)
    with pytest.raises(ValueError, match="reserved"):
        provision_node("hub", **common)  # type: ignore[arg-type]
    for bad in ("Pi-1", "pi_1", "x" * 33, ""):
        with pytest.raises(ValueError, match="lowercase"):
            provision_node(bad, **common)  # type: ignore[arg-type]
    assert not (tmp_path / "passwd").exists() or (tmp_path / "passwd").read_text() == ""


def test_foreign_config_file_is_not_overwritten(tmp_path: Path) -> None:
    (tmp_path / "pi-1.toml").write_text('[node]\nname = "pi-9"\n')
    with pytest.raises(ProvisionError, match="not node 'pi-1'"):
        provision_node("pi-1", password_file=tmp_path / "passwd", acl_file=tmp_path / "acl", out_dir=tmp_path,
                       site=SITE, broker_host="hub.local", broker_port=1883, reload=False)


def test_cli_subcommands(site_broker: tuple[PrivateBroker, Path], tmp_path: Path,
                         capsys: pytest.CaptureFixture[str]) -> None:
    broker, pid_file = site_broker
    parser = argparse.ArgumentParser(prog="stock-hub")
    add_subcommands(parser.add_subparsers(dest="command", required=True))
    common = ["--password-file", str(broker.password_file), "--acl-file", str(broker.acl_file),
              "--out-dir", str(tmp_path / "nodes"), "--mosquitto-pid-file", str(pid_file)]

    args = parser.parse_args(["provision-node", "pi-cli", "--site", SITE, "--broker-host", "hub.example",
                              "--broker-port", "8883", "--tls", "--ca-file", "/etc/edge-agent/ca.crt", *common])
    assert args.func(args) == 0
    config = load_edge_config(tmp_path / "nodes" / "pi-cli.toml")
    assert (config.mqtt.host, config.mqtt.port, config.mqtt.tls, config.mqtt.ca_file) == \
        ("hub.example", 8883, True, "/etc/edge-agent/ca.crt")

    args = parser.parse_args(["provision-node", "hub", "--site", SITE, *common])
    assert args.func(args) == 1
    assert "reserved" in capsys.readouterr().out

    args = parser.parse_args(["revoke-node", "pi-cli", *common])
    assert args.func(args) == 0
    assert "pi-cli revoked" in capsys.readouterr().out

    bad_pid = tmp_path / "stale.pid"
    bad_pid.write_text("not-a-pid\n")
    args = parser.parse_args(["revoke-node", "pi-cli", *common[:-1], str(bad_pid)])
    assert args.func(args) == 1
    assert "cannot signal mosquitto" in capsys.readouterr().out


def test_no_reload_command_still_says_the_files_are_written(tmp_path: Path) -> None:
    # A container or chroot has no systemctl: the node's files exist; the error says what to do.
    with pytest.raises(ProvisionError, match="the files are written; reload mosquitto by hand"):
        provision_node("pi-1", password_file=tmp_path / "passwd", acl_file=tmp_path / "acl", out_dir=tmp_path,
                       site=SITE, broker_host="hub.local", broker_port=1883,
                       reload_command=("/nonexistent/systemctl", "reload", "mosquitto"))
    assert (tmp_path / "pi-1.toml").exists()
