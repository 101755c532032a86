"""The hub's MQTT v5 session: subscribe to every node of the site, publish acks and commands.

Incoming messages go straight from paho's network thread into the ingest queue; nothing
else happens on that thread, so the broker is drained as fast as it delivers.
"""

from __future__ import annotations

import logging
import secrets
import socket
import ssl
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from contract import Ack, Channel, Command, HubState, NodeConfig, hub_state_topic, node_topic, subscription
from hub.config import HubConfig
from hub.ingest import Ingest

log = logging.getLogger(__name__)

SUBSCRIBED = (Channel.STATE, Channel.BIRTH, Channel.EVENTS, Channel.CMD_REPLY)
RECONNECT_MIN_S = 1
RECONNECT_MAX_S = 15


def now_ms() -> int:
    return int(time.time() * 1000)


class HubLink:
    """The hub's broker connection."""

    def __init__(self, config: HubConfig, ingest: Ingest) -> None:
        self.config = config
        self.ingest = ingest
        self.boot_id = secrets.token_hex(8)
        self.connected = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"stock-hub-{config.site}",
                                  protocol=mqtt.MQTTv5)
        self.client.username_pw_set(config.mqtt_username, config.mqtt_password or None)
        if config.mqtt_tls:
            self.client.tls_set(ca_certs=config.mqtt_ca_file or None, cert_reqs=ssl.CERT_REQUIRED)
        self.client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
        self.client.max_queued_messages_set(0)
        self.client.max_inflight_messages_set(1000)  # acks are small; do not let them queue behind 20
        self._state_topic = hub_state_topic(config.site)
        self.client.will_set(self._state_topic, HubState(online=False, boot_id=self.boot_id, ts_ms=now_ms()).to_json(),
                             qos=1, retain=True)
        self.client.on_socket_open = _disable_nagle
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message

    def start(self) -> None:
        """Connect in the background (paho reconnects by itself)."""
        self.client.connect_async(self.config.mqtt_host, self.config.mqtt_port, keepalive=self.config.mqtt_keepalive_s)
        self.client.loop_start()

    def stop(self) -> None:
        """Publish offline (retained) and disconnect."""
        if self.connected.is_set():
            info = self.client.publish(self._state_topic, HubState(online=False, boot_id=self.boot_id,
                                                                   ts_ms=now_ms()).to_json(), qos=1, retain=True)
            info.wait_for_publish(2.0)
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode,
                    props: Properties | None = None) -> None:
        if rc.is_failure:
            log.error("broker %s:%s refused the hub (user %s): %s (%d)", self.config.mqtt_host, self.config.mqtt_port,
                      self.config.mqtt_username, rc, rc.value)
            return
        # Subscribe before announcing online: nodes replay when they see us online.
        for channel in SUBSCRIBED:
            client.subscribe(subscription(self.config.site, channel), qos=1)
        client.publish(self._state_topic, HubState(online=True, boot_id=self.boot_id, ts_ms=now_ms()).to_json(),
                       qos=1, retain=True)
        self.connected.set()
        log.info("hub connected to broker %s:%s", self.config.mqtt_host, self.config.mqtt_port)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode,
                       props: Properties | None = None) -> None:
        self.connected.clear()
        log.warning("hub disconnected from broker: %s", rc)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self.ingest.submit(msg.topic, bytes(msg.payload))

    # ----------------------------------------------------------------- publishing (any thread)

    def publish_ack(self, ack: Ack) -> None:
        self.client.publish(node_topic(self.config.site, ack.node, Channel.ACK), ack.to_json(), qos=1)

    def send_command(self, node: str, cmd: Command) -> None:
        self.client.publish(node_topic(self.config.site, node, Channel.CMD), cmd.to_json(), qos=1)

    def publish_config(self, config: NodeConfig) -> None:
        self.client.publish(node_topic(self.config.site, config.node, Channel.CONFIG), config.to_json(), qos=1,
                            retain=True)


def _disable_nagle(client: mqtt.Client, userdata: Any, sock: Any) -> None:
    """TCP_NODELAY: a PUBACK followed by a small PUBLISH would otherwise wait for the peer's
    delayed TCP ACK (Nagle's algorithm), adding 20-40 ms to every event (measured in bench/ingest.py)."""
    if hasattr(sock, "setsockopt"):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
