"""The hub's MQTT v5 sessions: a receive worker that subscribes, and a publisher for acks and commands.

Receiving runs in a child process (`hub.receiver`): it subscribes to every node of the
site and streams messages to us over a pipe, and a reader thread here hands them to the
ingest queue; re-sent batches (an edge's backlog) go through hub/resend_lane.py, which
hands them over only while the writer has nothing live to do. The publisher connection
here carries the hub's retained state and Will, acks, commands and configs. The hub says
"online" only when the publisher is connected and the worker's subscriptions are granted,
because nodes re-send on seeing it online.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import ssl
import subprocess
import sys
import threading
from typing import IO, Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from contract import Ack, Channel, Command, HubState, NodeConfig, hub_state_topic, node_topic, subscription
from contract.clock import now_ms
from hub.config import HubConfig
from hub.ingest import Ingest
from hub.receiver import SUBSCRIBED as SUBSCRIBED_FRAME
from hub.receiver import UNSUBSCRIBED as UNSUBSCRIBED_FRAME
from hub.receiver import FrameReader
from hub.resend_lane import ResendLane

log = logging.getLogger(__name__)

SUBSCRIBED = (Channel.STATE, Channel.BIRTH, Channel.EVENTS, Channel.CMD_REPLY)
RECONNECT_MIN_S = 1
RECONNECT_MAX_S = 15
WORKER_RESTART_S = 1.0  # a crashed receive worker is restarted after this pause
READ_CHUNK = 1 << 20


class HubLink:
    """The hub's broker connections: receive worker + publisher."""

    def __init__(self, config: HubConfig, ingest: Ingest) -> None:
        self.config = config
        self.ingest = ingest
        self.boot_id = secrets.token_hex(8)
        self.connected = threading.Event()  # online: publisher up and subscriptions granted
        self.broker_certificate_expiry_s: float | None = None  # epoch seconds, when connected with TLS
        self._publisher_up = threading.Event()
        self._subscribed = threading.Event()
        self._online_lock = threading.Lock()
        self._stopping = threading.Event()
        self._worker: subprocess.Popen[bytes] | None = None
        self._reader = threading.Thread(target=self._read_worker, name="hub-receiver-reader", daemon=True)
        self.resend_lane = ResendLane(ingest.submit, lambda: ingest.queue_depth, lambda: ingest.last_tick)
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
        self.client.on_socket_open = disable_nagle
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect

    def start(self) -> None:
        """Start the receive worker and connect the publisher (both reconnect by themselves)."""
        self.resend_lane.start()
        self._reader.start()
        self.client.connect_async(self.config.mqtt_host, self.config.mqtt_port, keepalive=self.config.mqtt_keepalive_s)
        self.client.loop_start()

    def stop(self) -> None:
        """Publish offline (retained), stop the worker, disconnect."""
        self._stopping.set()
        if self._publisher_up.is_set():
            info = self.client.publish(self._state_topic, HubState(online=False, boot_id=self.boot_id,
                                                                   ts_ms=now_ms()).to_json(), qos=1, retain=True)
            info.wait_for_publish(2.0)
        self.connected.clear()
        worker = self._worker
        if worker is not None and worker.stdin is not None:
            worker.stdin.close()  # the worker exits when its stdin closes
        self.resend_lane.stop()  # before joining the reader: a pump waiting for room in the lane returns
        if self._reader.is_alive():
            self._reader.join(10)
        self.client.disconnect()
        self.client.loop_stop()

    # ----------------------------------------------------------------- online state

    def _update_online(self) -> None:
        with self._online_lock:
            up = self._publisher_up.is_set() and self._subscribed.is_set() and not self._stopping.is_set()
            if up and not self.connected.is_set():
                self.client.publish(self._state_topic, HubState(online=True, boot_id=self.boot_id,
                                                                ts_ms=now_ms()).to_json(), qos=1, retain=True)
                self.connected.set()
                log.info("hub online at broker %s:%s", self.config.mqtt_host, self.config.mqtt_port)
            elif not up and self.connected.is_set():
                self.connected.clear()
                if self._publisher_up.is_set() and not self._stopping.is_set():
                    self.client.publish(self._state_topic, HubState(online=False, boot_id=self.boot_id,
                                                                    ts_ms=now_ms()).to_json(), qos=1, retain=True)
                log.warning("hub not receiving: nodes keep their events until it is back")

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode,
                    props: Properties | None = None) -> None:
        if rc.is_failure:
            log.error("broker %s:%s refused the hub (user %s): %s (%d)", self.config.mqtt_host, self.config.mqtt_port,
                      self.config.mqtt_username, rc, rc.value)
            return
        self._note_broker_certificate(client)
        self._publisher_up.set()
        self._update_online()

    def _note_broker_certificate(self, client: mqtt.Client) -> None:
        """Remember when the broker's TLS certificate expires, for /metrics and its alert."""
        sock = client.socket()
        if not isinstance(sock, ssl.SSLSocket):
            return
        cert = sock.getpeercert()
        not_after = cert.get("notAfter") if cert else None
        if isinstance(not_after, str):
            self.broker_certificate_expiry_s = float(ssl.cert_time_to_seconds(not_after))

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode,
                       props: Properties | None = None) -> None:
        self._publisher_up.clear()
        self._update_online()
        if not self._stopping.is_set():
            log.warning("hub disconnected from broker: %s", rc)

    # ----------------------------------------------------------------- the receive worker

    def _worker_settings(self) -> dict[str, Any]:
        cfg = self.config
        return {"host": cfg.mqtt_host, "port": cfg.mqtt_port, "username": cfg.mqtt_username,
                "password": cfg.mqtt_password, "tls": cfg.mqtt_tls, "ca_file": cfg.mqtt_ca_file,
                "keepalive_s": cfg.mqtt_keepalive_s, "client_id": f"stock-hub-{cfg.site}-rx",
                "topics": [subscription(cfg.site, channel) for channel in SUBSCRIBED]}

    def _read_worker(self) -> None:
        """Run the worker, feed its messages to ingest, restart it if it dies."""
        while not self._stopping.is_set():
            worker = subprocess.Popen([sys.executable, "-m", "hub.receiver"], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE)
            self._worker = worker
            assert worker.stdin is not None and worker.stdout is not None
            try:
                worker.stdin.write(json.dumps(self._worker_settings()).encode() + b"\n")
                worker.stdin.flush()  # stdin stays open: closing it stops the worker
                self._pump(worker.stdout)
            except Exception:  # the reader must outlive any one worker, whatever broke
                log.exception("hub receive worker: reading its messages failed")
            finally:
                self._subscribed.clear()
                self._update_online()
                if worker.poll() is None:
                    worker.kill()
                worker.wait()
                worker.stdout.close()
            if not self._stopping.is_set():
                log.error("hub receive worker exited with code %s; restarting it", worker.returncode)
                self._stopping.wait(WORKER_RESTART_S)

    def _pump(self, stream: IO[bytes]) -> None:
        frames = FrameReader()
        submit, resend = self.ingest.submit, self.resend_lane.put
        fd = stream.fileno()
        while True:
            data = os.read(fd, READ_CHUNK)
            if not data:
                return
            for received_ms, topic, payload, resent in frames.feed(data):
                if topic:
                    (resend if resent else submit)(topic, payload, received_ms)
                elif payload == SUBSCRIBED_FRAME:
                    self._subscribed.set()
                    self._update_online()
                elif payload == UNSUBSCRIBED_FRAME:
                    self._subscribed.clear()
                    self._update_online()

    # ----------------------------------------------------------------- publishing (any thread)

    def publish_ack(self, ack: Ack) -> None:
        self.client.publish(node_topic(self.config.site, ack.node, Channel.ACK), ack.to_json(), qos=1)

    def send_command(self, node: str, cmd: Command) -> None:
        """Publish a command to a node, recorded first so its reply is recognised."""
        self.ingest.commands.sent(node, cmd)
        self.client.publish(node_topic(self.config.site, node, Channel.CMD), cmd.to_json(), qos=1)

    def publish(self, topic: str, payload: bytes, retain: bool) -> None:
        """Publish the hub's own state for other consumers (QoS 1; paho queues it while disconnected)."""
        self.client.publish(topic, payload, qos=1, retain=retain)

    def publish_config(self, config: NodeConfig) -> None:
        self.client.publish(node_topic(self.config.site, config.node, Channel.CONFIG), config.to_json(), qos=1,
                            retain=True)


def disable_nagle(client: mqtt.Client, userdata: Any, sock: Any) -> None:
    """TCP_NODELAY: a PUBACK followed by a small PUBLISH would otherwise wait for the peer's
    delayed TCP ACK (Nagle's algorithm), adding 20-40 ms to every event (bench/ingest.py)."""
    if hasattr(sock, "setsockopt"):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
