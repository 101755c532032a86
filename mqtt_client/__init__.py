"""The paho MQTT v5 client the edge agent and the hub connect with, set up one way.

Credentials and TLS come from the shared `[mqtt]` block (settings.mqtt); every socket gets
TCP_NODELAY. paho-mqtt is the one dependency both programs install (pyproject's base
dependencies), so this package sits at the bottom with settings and may import only it.
"""

from __future__ import annotations

import socket
import ssl
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from settings.mqtt import Broker, MqttConfig


def make_client(config: MqttConfig, client_id: str) -> mqtt.Client:
    """A paho MQTT v5 client logged in and (with `mqtt.tls`) verifying the broker; not connected yet."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.username_pw_set(config.username, config.password or None)
    if config.tls:
        client.tls_set(ca_certs=config.ca_file or None, cert_reqs=ssl.CERT_REQUIRED)
    client.on_socket_open = disable_nagle
    return client


def connect_in_background(client: mqtt.Client, config: MqttConfig, broker: Broker | None = None) -> None:
    """Start connecting (to `broker`, default the first one configured) on paho's own thread; paho
    reconnects by itself after a drop (to the next broker when a rotation.BrokerRotation is attached)."""
    host, port = broker or (config.host, config.port)
    client.connect_async(host, port, keepalive=config.keepalive_s)
    client.loop_start()


def disable_nagle(client: mqtt.Client, userdata: Any, sock: Any) -> None:
    """TCP_NODELAY: a PUBACK followed by a small PUBLISH would otherwise wait for the peer's
    delayed TCP ACK (Nagle's algorithm), adding 20-40 ms to every event (bench/ingest.py)."""
    if hasattr(sock, "setsockopt"):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
