"""The site's Mosquitto config as installed (Debian's main file + our conf.d drop-in), on a real
broker: anonymous clients are refused, a provisioned node works, and TLS works with the
certificates from make-certs.sh. Also a syntax check of the udev rules (udevadm verify
arrived only in systemd 254)."""

from __future__ import annotations

import getpass
import re
import secrets
import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from contract import Channel, node_topic, subscription
from edge.config import load_edge_config
from hub.mosquitto import HUB_USER, free_port, mosquitto_binary, set_password, wait_for_port
from hub.provision import ensure_acl, provision_node
from hub.rx_session import SessionSettings, run_session
from tests.support import SITE, wait_for_sync

FIRMWARE = Path(__file__).resolve().parent.parent / "firmware_config"
WAIT_S = 5.0


@dataclass
class SiteBroker:
    host: str
    port: int
    tls_port: int
    password_file: Path
    acl_file: Path
    pid_file: Path
    ca_file: Path


def _installed_conf(source: Path, etc: Path, port: int | None = None) -> str:
    """A firmware_config file with /etc/mosquitto/shelfsignal moved to a temp dir, as install-hub.sh places it."""
    text = source.read_text().replace("/etc/mosquitto/shelfsignal/", f"{etc}/")
    if port is not None:
        text = re.sub(r"^listener (\d+)", f"listener {port} 127.0.0.1", text, flags=re.M)
    return text


@pytest.fixture
def site_broker(tmp_path: Path) -> Iterator[SiteBroker]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    etc = tmp_path / "shelfsignal"
    (tmp_path / "conf.d").mkdir()
    etc.mkdir()
    subprocess.run(["sh", str(FIRMWARE / "mosquitto" / "make-certs.sh"), str(etc / "tls"), "localhost", "127.0.0.1"],
                   check=True, capture_output=True)
    port, tls_port = free_port(), free_port()
    # What Debian's /etc/mosquitto/mosquitto.conf holds, with paths of our own; `user` because
    # mosquitto started as root would switch to a user who cannot read the temp dir.
    main = tmp_path / "mosquitto.conf"
    main.write_text(f"""user {getpass.getuser()}
pid_file {tmp_path}/mosquitto.pid
persistence true
persistence_location {tmp_path}/
log_dest file {tmp_path}/mosquitto.log
include_dir {tmp_path}/conf.d
""")
    (tmp_path / "conf.d" / "shelfsignal.conf").write_text(
        _installed_conf(FIRMWARE / "mosquitto" / "shelfsignal.conf", etc, port))
    (tmp_path / "conf.d" / "shelfsignal-tls.conf").write_text(
        _installed_conf(FIRMWARE / "mosquitto" / "tls.conf.example", etc, tls_port))
    # install-hub.sh creates both before (re)starting mosquitto, which refuses to start without them.
    (etc / "passwd").touch(mode=0o600)
    ensure_acl(etc / "acl")
    proc = subprocess.Popen([mosquitto_binary(), "-c", str(main)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        wait_for_port("127.0.0.1", port, WAIT_S)
        wait_for_port("127.0.0.1", tls_port, WAIT_S)
    except TimeoutError:
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"mosquitto refused the site config: {err.decode()} {(tmp_path / 'mosquitto.log').read_text()}")
    yield SiteBroker("127.0.0.1", port, tls_port, etc / "passwd", etc / "acl", tmp_path / "mosquitto.pid",
                     etc / "tls" / "ca.crt")
    proc.terminate()
    proc.wait(5)
    assert proc.stderr is not None
    proc.stderr.close()


def connack(host: str, port: int, user: str | None, password: str | None, ca_file: Path | None = None) -> int:
    """Connect with MQTT v5 and return the CONNACK reason code value."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    if user is not None:
        client.username_pw_set(user, password)
    if ca_file is not None:
        client.tls_set(ca_certs=str(ca_file), tls_version=ssl.PROTOCOL_TLS_CLIENT)
    result: list[int] = []
    got = threading.Event()

    def on_connect(_c: mqtt.Client, _u: object, _f: object, rc: ReasonCode, _p: object) -> None:
        result.append(rc.value)
        got.set()

    client.on_connect = on_connect
    client.connect(host, port, keepalive=10)
    client.loop_start()
    try:
        assert got.wait(WAIT_S), "no CONNACK"
        return result[0]
    finally:
        client.disconnect()
        client.loop_stop()


def connack_when_applied(broker: SiteBroker, port: int, user: str, password: str, want: int,
                         ca_file: Path | None = None) -> None:
    """The broker applies a reload asynchronously: retry until the CONNACK is `want`, or fail."""
    deadline = time.monotonic() + WAIT_S
    while True:
        got = connack(broker.host, port, user, password, ca_file)
        if got == want:
            return
        assert time.monotonic() < deadline, f"CONNACK {got}, expected {want}"


def test_site_config_refuses_anonymous_and_serves_provisioned_nodes(site_broker: SiteBroker, tmp_path: Path) -> None:
    assert connack(site_broker.host, site_broker.port, None, None) == 135  # allow_anonymous false
    path = provision_node("pi-site-1", password_file=site_broker.password_file, acl_file=site_broker.acl_file,
                          out_dir=tmp_path / "nodes", site=SITE, broker_host=site_broker.host,
                          broker_port=site_broker.tls_port, tls=True, ca_file=str(site_broker.ca_file),
                          mosquitto_pid_file=site_broker.pid_file)
    config = load_edge_config(path)
    assert config.mqtt.tls and config.mqtt.port == site_broker.tls_port
    connack_when_applied(site_broker, site_broker.port, "pi-site-1", config.mqtt.password, 0)
    connack_when_applied(site_broker, site_broker.tls_port, "pi-site-1", config.mqtt.password, 0,
                         ca_file=Path(config.mqtt.ca_file))
    # Mosquitto 2.0 answers a wrong password with 135 Not authorized (not 134), as it does for anonymous.
    assert connack(site_broker.host, site_broker.port, "pi-site-1", "wrong") == 135


def test_hub_receives_over_tls_with_the_site_certificates(site_broker: SiteBroker, tmp_path: Path) -> None:
    """The hub's receive session (hub/rx_session.py, gmqtt) speaks TLS itself: checked against the site's CA."""
    hub_password = secrets.token_hex(8)
    set_password(site_broker.password_file, HUB_USER, hub_password)
    node = provision_node("pi-site-2", password_file=site_broker.password_file, acl_file=site_broker.acl_file,
                          out_dir=tmp_path / "nodes", site=SITE, broker_host=site_broker.host,
                          broker_port=site_broker.port, mosquitto_pid_file=site_broker.pid_file)
    node_password = load_edge_config(node).mqtt.password
    connack_when_applied(site_broker, site_broker.tls_port, HUB_USER, hub_password, 0, ca_file=site_broker.ca_file)
    settings = SessionSettings(host=site_broker.host, port=site_broker.tls_port, client_id="stock-hub-tls-test",
                               username=HUB_USER, password=hub_password, keepalive_s=15,
                               topics=(subscription(SITE, Channel.EVENTS),), tls=True, ca_file=str(site_broker.ca_file))
    got: list[bytes] = []
    subscribed, stop = threading.Event(), threading.Event()
    session = threading.Thread(target=run_session, daemon=True,
                               args=(settings, lambda _ms, msgs: got.extend(p for _t, p in msgs), subscribed.set, stop))
    session.start()
    try:
        assert subscribed.wait(WAIT_S), "no SUBACK over TLS"
        client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        client.username_pw_set("pi-site-2", node_password)
        client.connect(site_broker.host, site_broker.port)
        client.loop_start()
        client.publish(node_topic(SITE, "pi-site-2", Channel.EVENTS), b"over tls", qos=1)
        wait_for_sync(lambda: got, WAIT_S, "the message over TLS")
        client.loop_stop()
        client.disconnect()
        assert got == [b"over tls"]
    finally:
        stop.set()
        session.join(WAIT_S)
    # A CA that did not sign the broker's certificate is refused before any MQTT is spoken.
    other_ca = tmp_path / "other"
    subprocess.run(["sh", str(FIRMWARE / "mosquitto" / "make-certs.sh"), str(other_ca), "localhost", "127.0.0.1"],
                   check=True, capture_output=True)
    with pytest.raises(ssl.SSLCertVerificationError):
        run_session(replace(settings, ca_file=str(other_ca / "ca.crt")), lambda _ms, _m: None, lambda: None)


# --- udev rules --------------------------------------------------------------------------------

UDEV_RULES = FIRMWARE / "udev" / "99-shelfsignal.rules"
UDEV_KEYS = r"(SUBSYSTEM|KERNEL|KERNELS|ATTRS\{\w+\}|ATTR\{\w+\}|ENV\{\w+\}|GROUP|MODE|SYMLINK|TAG|ACTION)"
UDEV_ITEM = re.compile(UDEV_KEYS + r'(==|!=|\+=|-=|:=|=)"[^"]*"')
UDEV_MATCH_KEYS = ("SUBSYSTEM", "KERNEL", "KERNELS", "ATTRS", "ACTION")


def _udev_rule_lines() -> list[str]:
    """Active rules and the commented templates an installer uncomments: both must be valid."""
    rules = []
    for line in UDEV_RULES.read_text().splitlines():
        body = line.removeprefix("#").strip()
        if body.startswith(("SUBSYSTEM", "KERNEL", "ACTION")):
            rules.append(body)
    return rules


@pytest.mark.parametrize("rule", _udev_rule_lines())
def test_udev_rule_syntax(rule: str) -> None:
    items = [item.strip() for item in rule.split(", ")]
    for item in items:
        assert UDEV_ITEM.fullmatch(item), f"not a udev key/operator/value: {item!r} in {rule!r}"
    for item in items:
        key = re.split(r"[{=!+:-]", item)[0]
        op = UDEV_ITEM.fullmatch(item).group(2)  # type: ignore[union-attr]
        if key in UDEV_MATCH_KEYS:
            assert op in ("==", "!="), f"{item!r}: {key} is matched with == or !="
    symlinks = [i for i in items if i.startswith("SYMLINK")]
    for link in symlinks:
        assert link.startswith('SYMLINK+="shelfsignal/'), f"{link}: stable names live under /dev/shelfsignal/"


def test_udev_rules_document_adapters_without_serial() -> None:
    text = UDEV_RULES.read_text()
    assert "WITHOUT a serial number" in text and "ENV{ID_PATH}==" in text and "/dev/serial/by-path" in text
