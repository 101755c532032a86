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

import dataclasses
import json
import logging
import os
import secrets
import ssl
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import IO, Any

import paho.mqtt.client as mqtt
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
from mqtt_client import connect_in_background, make_client
from mqtt_client.rotation import BrokerRotation
from settings.mqtt import Broker

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
        # Told (from a paho or worker thread) each time `connected` changes: the page says so at once.
        self.on_online_change: Callable[[bool], None] | None = None
        self.broker_certificate_expiry_s: float | None = None  # epoch seconds, when connected with TLS
        self._publisher_up = threading.Event()
        self._subscribed = threading.Event()
        self._online_lock = threading.Lock()
        self._stopping = threading.Event()
        self._worker: subprocess.Popen[bytes] | None = None
        # Several brokers (a two-server site): the publisher moves to the next when one is gone,
        # and the receive worker follows it, so acks go out where the events come in.
        self.brokers = BrokerRotation(config.mqtt.brokers)
        self._worker_broker: Broker | None = None
        self._worker_moving = threading.Event()  # the worker is being restarted on the publisher's broker
        self._reader = threading.Thread(target=self._read_worker, name="hub-receiver-reader", daemon=True)
        self.resend_lane = ResendLane(ingest.submit_tracked, lambda: ingest.queue_depth)
        ingest.backlog_waiting = self.resend_lane.holds  # no gap requests for a backlog already here
        self.client = make_client(config.mqtt, client_id=f"stock-hub-{config.site}")
        self.client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
        self.client.max_queued_messages_set(0)
        self.client.max_inflight_messages_set(1000)  # acks are small; do not let them queue behind 20
        self._state_topic = hub_state_topic(config.site)
        self.client.will_set(self._state_topic, HubState(online=False, boot_id=self.boot_id, ts_ms=now_ms()).to_json(),
                             qos=1, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.brokers.attach(self.client)

    def start(self) -> None:
        """Start the receive worker and connect the publisher (both reconnect by themselves)."""
        self.resend_lane.start()
        self._reader.start()
        connect_in_background(self.client, self.config.mqtt, self.brokers.current)

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

    def _tell_online(self, up: bool) -> None:
        if self.on_online_change is not None:
            try:
                self.on_online_change(up)
            except Exception:  # a closed loop at shutdown: nobody is watching any more
                log.debug("could not tell the page the hub is %s", "online" if up else "offline", exc_info=True)

    def _update_online(self) -> None:
        with self._online_lock:
            up = self._publisher_up.is_set() and self._subscribed.is_set() and not self._stopping.is_set()
            if up and not self.connected.is_set():
                self.client.publish(self._state_topic, HubState(online=True, boot_id=self.boot_id,
                                                                ts_ms=now_ms()).to_json(), qos=1, retain=True)
                self.connected.set()
                log.info("hub online at broker %s", self.brokers.describe())
                self._tell_online(True)
            elif not up and self.connected.is_set():
                self.connected.clear()
                if self._publisher_up.is_set() and not self._stopping.is_set():
                    self.client.publish(self._state_topic, HubState(online=False, boot_id=self.boot_id,
                                                                    ts_ms=now_ms()).to_json(), qos=1, retain=True)
                log.warning("hub not receiving: nodes keep their events until it is back")
                self._tell_online(False)

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode,
                    props: Properties | None = None) -> None:
        if rc.is_failure:
            log.error("broker %s refused the hub (user %s): %s (%d)", self.brokers.describe(),
                      self.config.mqtt.username, rc, rc.value)
            self.brokers.gone()
            return
        self._follow_publisher()
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
        self.brokers.gone()
        self._update_online()
        if not self._stopping.is_set():
            log.warning("hub disconnected from broker: %s", rc)

    # ----------------------------------------------------------------- the receive worker

    def _follow_publisher(self) -> None:
        """The publisher connected to another broker than the worker's: restart the worker there."""
        worker = self._worker
        if worker is not None and self._worker_broker != self.brokers.current and worker.poll() is None:
            log.warning("hub: moving the receive worker to broker %s", self.brokers.describe())
            self._worker_moving.set()
            worker.kill()

    def _worker_settings(self) -> dict[str, Any]:
        cfg = self.config
        self._worker_broker = host, port = self.brokers.current
        return {**dataclasses.asdict(cfg.mqtt), "host": host, "port": port, "client_id": f"stock-hub-{cfg.site}-rx",
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
            if self._worker_moving.is_set():
                self._worker_moving.clear()
            elif not self._stopping.is_set():
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
