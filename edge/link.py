"""The node's MQTT v5 session: state and Will, birth, event batches, acks, commands, config.

Delivery (docs/architecture.md, "Nothing lost"): events leave the outbox only when the hub's `ack` watermark covers
them. Until then they are re-sent: on every (re)connect, when the hub's retained state
turns online, when no ack has advanced for `ack_timeout_s`, and on a `resend_from`
command. Re-sends go through a paced replay so that live events are still published at
once; duplicates this creates are harmless because the hub deduplicates on
(node, stream, seq).

paho runs its network loop on its own thread; every callback hops onto the asyncio loop
with `call_soon_threadsafe`, so all state here is touched by the loop only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from contract import (
    BIRTH_NOTICE_MAX_CHARS,
    BIRTH_NOTICES_MAX,
    RESEND_PROPERTY,
    Ack,
    Birth,
    Channel,
    Command,
    CommandReply,
    ContractError,
    DeviceInfo,
    Event,
    EventBatch,
    HubState,
    NodeConfig,
    NodeState,
    hub_state_topic,
    node_topic,
)
from contract.clock import now_ms
from edge.config import EdgeConfig
from edge.sink import OutboxSink
from mqtt_client import connect_in_background, make_client
from mqtt_client.rotation import BrokerRotation

log = logging.getLogger(__name__)

# Reconnect back-off: 1 s first so a broker restart costs little, capped so that a node
# whose credentials are wrong does not hammer the broker while someone fixes them.
RECONNECT_MIN_S = 1
RECONNECT_MAX_S = 30
# A broker that cannot be reached is logged at the first failed attempt, then at most this
# often while it lasts: the installer sees it at once, and the journal is not flooded.
UNREACHABLE_LOG_EVERY_S = 60.0
# How often the sender re-checks timeouts when nothing else wakes it.
TICK_S = 0.5
# A re-send's PUBLISH carries contract.RESEND_PROPERTY, so the hub can serve live batches first.
RESENT_PROPERTIES = Properties(PacketTypes.PUBLISH)
RESENT_PROPERTIES.UserProperty = [RESEND_PROPERTY]


@dataclass
class LinkStatus:
    """What the link knows, for logs, the birth message and health checks."""

    connected: bool = False
    hub_online: bool | None = None
    acked: int = 0
    last_sent: int = 0
    refused: int = 0  # publishes the broker refused (reason code logged)
    last_ack_progress: float = field(default_factory=time.monotonic)


class EdgeLink:
    """One node's MQTT session and the sender that drains the outbox."""

    def __init__(self, config: EdgeConfig, sink: OutboxSink, boot_id: str, sw_version: str,
                 devices: Callable[[], list[DeviceInfo]],
                 on_command: Callable[[Command], Awaitable[CommandReply | None]],
                 on_config: Callable[[NodeConfig], None],
                 notices: Callable[[], list[str]] = list) -> None:
        self.config = config
        self.sink = sink
        self.boot_id = boot_id
        self.sw_version = sw_version
        self._devices = devices
        self._on_command = on_command
        self._on_config = on_config
        self._notices = notices
        self.status = LinkStatus()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()
        self._replay_from = 0  # replay cursor: highest seq replayed so far
        self._replay_to = 0  # replay ends here; later seqs go out live
        self._appended_seq = 0  # the highest seq this link was told is durable (or found in the outbox at start)
        self._inflight: dict[int, tuple[int, int]] = {}  # paho mid -> (first seq, last seq)
        self._last_hub_state: tuple[str, int] | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._stopping = False
        self.stream = sink.outbox.stream
        node, site = config.node, config.site
        self._t_state = node_topic(site, node, Channel.STATE)
        self._t_birth = node_topic(site, node, Channel.BIRTH)
        self._t_events = node_topic(site, node, Channel.EVENTS)
        self._t_reply = node_topic(site, node, Channel.CMD_REPLY)
        self._subscriptions = [node_topic(site, node, Channel.ACK), node_topic(site, node, Channel.CMD),
                               node_topic(site, node, Channel.CONFIG), hub_state_topic(site)]
        self.brokers = BrokerRotation(config.mqtt.brokers)  # several on a two-server site
        self._no_hub_since: float | None = None  # monotonic time since when no hub is online at our broker
        self._unreachable_attempts = 0  # failed connection attempts since the last connect
        self._unreachable_logged = 0.0  # monotonic time of the last "cannot reach" line
        self.client = self._make_client()

    # ------------------------------------------------------------------ setup

    def _make_client(self) -> mqtt.Client:
        client = make_client(self.config.mqtt, client_id=self.config.node)
        client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
        client.max_queued_messages_set(0)
        offline = NodeState(node=self.config.node, online=False, boot_id=self.boot_id, ts_ms=now_ms())
        client.will_set(self._t_state, offline.to_json(), qos=1, retain=True)
        client.on_connect = self._paho_connect
        client.on_disconnect = self._paho_disconnect
        client.on_message = self._paho_message
        self.brokers.attach(client)
        rotate = client.on_connect_fail
        assert rotate is not None, "BrokerRotation.attach sets on_connect_fail"

        def connect_failed(client: mqtt.Client, userdata: Any) -> None:
            broker = self.brokers.describe()  # before the rotation moves on
            rotate(client, userdata)
            self._hop(self._unreachable, broker)
        client.on_connect_fail = connect_failed
        client.on_publish = self._paho_publish
        return client

    async def start(self) -> None:
        """Start connecting (in the background) and the sender; returns at once."""
        self._loop = asyncio.get_running_loop()
        self.status.acked, self._appended_seq = await self.sink.call(
            lambda: (self.sink.outbox.acked, self.sink.outbox.last_seq()))
        self._replay_from = self.status.acked
        self.sink.set_listener(self._on_appended)
        connect_in_background(self.client, self.config.mqtt, self.brokers.current)
        self._tasks.append(asyncio.create_task(self._sender(), name="edge-sender"))

    async def stop(self) -> None:
        """Say offline (retained), disconnect cleanly, stop the sender."""
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.status.connected:
            info = self.client.publish(self._t_state, NodeState(
                node=self.config.node, online=False, boot_id=self.boot_id, ts_ms=now_ms()).to_json(), qos=1, retain=True)
            try:
                await asyncio.get_running_loop().run_in_executor(None, info.wait_for_publish, 2.0)
            except (RuntimeError, ValueError) as err:  # paho: the connection went while stopping
                log.info("could not say offline (%s); the broker publishes this node's Will instead", err)
        self.client.disconnect()
        self.client.loop_stop()

    # ------------------------------------------------------------------ paho thread -> loop

    def _hop(self, fn: Callable[..., Any], *args: Any) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(fn, *args)

    def _paho_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode,
                      props: Properties | None = None) -> None:
        if rc.is_failure:
            self.brokers.gone()
        self._hop(self._connected, rc)

    def _paho_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode,
                         props: Properties | None = None) -> None:
        self.brokers.gone()  # the next attempt goes to the next broker (when there are several)
        self._hop(self._disconnected, rc)

    def _paho_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self._hop(self._message, msg.topic, bytes(msg.payload))

    def _paho_publish(self, client: mqtt.Client, userdata: Any, mid: int, rc: ReasonCode,
                      props: Properties | None = None) -> None:
        self._hop(self._published, mid, rc)

    # ------------------------------------------------------------------ on the loop

    def _unreachable(self, broker: str) -> None:
        """A connection attempt failed before MQTT began (nothing listens there, no route, DNS)."""
        self._unreachable_attempts += 1
        if self._unreachable_attempts > 1 and time.monotonic() - self._unreachable_logged < UNREACHABLE_LOG_EVERY_S:
            return
        self._unreachable_logged = time.monotonic()
        log.warning("cannot reach the MQTT broker at %s (%d failed attempt(s) so far): check mqtt.host and "
                    "mqtt.port, the network, and that Mosquitto runs there; retrying every %d-%d s, events stay "
                    "in the outbox", broker, self._unreachable_attempts, RECONNECT_MIN_S, RECONNECT_MAX_S)

    def _connected(self, rc: ReasonCode) -> None:
        self._unreachable_attempts = 0
        if rc.is_failure:
            hint = " (check mqtt.username and the password)" if rc.value in (134, 135) else ""
            log.error("broker %s refused node %s: %s (%d)%s; retrying", self.brokers.describe(),
                      self.config.node, rc, rc.value, hint)
            return
        log.info("connected to broker %s as %s", self.brokers.describe(), self.config.node)
        self.status.connected = True
        self._inflight.clear()
        for topic in self._subscriptions:
            self.client.subscribe(topic, qos=1)
        self.client.publish(self._t_state, NodeState(node=self.config.node, online=True, boot_id=self.boot_id,
                                                     ts_ms=now_ms()).to_json(), qos=1, retain=True)
        # The replay covers what was durable before this connection; what becomes durable from now on
        # goes out live on it (_on_appended), so it must not be replayed too (it would be sent twice).
        asyncio.ensure_future(self._send_birth_and_replay("connected", replay_up_to=self._appended_seq))

    def _disconnected(self, rc: ReasonCode) -> None:
        if self._stopping:
            log.info("disconnected from broker (stopping)")
        elif self.status.connected:
            log.warning("disconnected from broker: %s; events stay in the outbox until acknowledged", rc)
        self.status.connected = False

    async def _send_birth_and_replay(self, why: str, replay_up_to: int | None = None) -> None:
        """Tell the hub where the outbox stands, then re-send what it has not acknowledged
        (up to `replay_up_to` when given, else all of it).

        On every connect, and whenever the hub announces itself anew: a hub that restarted
        (perhaps from a restored backup) learns from the birth which seqs this node no longer
        holds, so it does not wait for them for ever."""
        outbox = self.sink.outbox
        depth, last_seq = await self.sink.call(lambda: (outbox.depth(), outbox.last_seq()))
        birth = Birth(node=self.config.node, boot_id=self.boot_id, sw_version=self.sw_version, clock_ms=now_ms(),
                      stream=self.stream, last_seq=last_seq, outbox_depth=depth, devices=tuple(self._devices()),
                      notices=fit_notices(self._notices()))
        self.client.publish(self._t_birth, birth.to_json(), qos=1)
        self._restart_replay(self.status.acked, last_seq if replay_up_to is None else min(last_seq, replay_up_to), why)

    def _restart_replay(self, after_seq: int, up_to: int, why: str) -> None:
        after_seq = max(after_seq, self.status.acked)
        if up_to > after_seq:
            log.info("re-sending seq %d..%d (%s)", after_seq + 1, up_to, why)
        self._replay_from = after_seq
        self._replay_to = max(up_to, self._replay_to)
        self.status.last_ack_progress = time.monotonic()
        self._wake.set()

    def _on_appended(self, events: list[Event]) -> None:
        """New durable events: publish them now if we can (live path)."""
        if not events:
            return
        self._appended_seq = max(self._appended_seq, events[-1].seq)
        if self.status.connected:
            self._publish_batches(events)
        else:
            self._replay_to = max(self._replay_to, events[-1].seq)

    def _publish_batches(self, events: list[Event], resent: bool = False) -> None:
        size = self.config.batch_max
        for i in range(0, len(events), size):
            chunk = events[i:i + size]
            batch = EventBatch(node=self.config.node, stream=self.stream, events=tuple(chunk), sent_ms=now_ms())
            info = self.client.publish(self._t_events, batch.to_json(), qos=1,
                                       properties=RESENT_PROPERTIES if resent else None)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                log.warning("publish of seq %d..%d not queued (%s); will re-send", chunk[0].seq, chunk[-1].seq,
                            mqtt.error_string(info.rc))
                continue
            self._inflight[info.mid] = (chunk[0].seq, chunk[-1].seq)
            self.status.last_sent = max(self.status.last_sent, chunk[-1].seq)

    def _published(self, mid: int, rc: ReasonCode) -> None:
        seqs = self._inflight.pop(mid, None)
        if seqs is not None and rc.is_failure:
            # The broker refused it (e.g. ACL: Not authorized, 135). The events stay in the
            # outbox; only the hub's ack deletes them. Say exactly what happened.
            self.status.refused += 1
            log.error("broker refused events seq %d..%d on %s: %s (reason code %d); they stay in the outbox",
                      seqs[0], seqs[1], self._t_events, rc, rc.value)

    def _message(self, topic: str, payload: bytes) -> None:
        try:
            if topic.endswith("/ack"):
                self._handle_ack(Ack.from_json(payload))
            elif topic.endswith("/cmd"):
                asyncio.ensure_future(self._handle_command(Command.from_json(payload)))
            elif topic.endswith("/config"):
                if payload:
                    self._on_config(NodeConfig.from_json(payload))
            elif topic == hub_state_topic(self.config.site):
                self._handle_hub_state(HubState.from_json(payload) if payload else None)
        except ContractError as err:
            log.error("ignored a message on %s that breaks the contract: %s", topic, err)

    def _handle_ack(self, ack: Ack) -> None:
        if ack.node != self.config.node or ack.stream != self.stream:
            log.debug("ack for another stream (%s) ignored", ack.stream)
            return
        if ack.watermark > self.status.acked:
            self.status.acked = ack.watermark
            self.status.last_ack_progress = time.monotonic()
            asyncio.ensure_future(self.sink.call(self.sink.outbox.acknowledge, ack.watermark))

    def _handle_hub_state(self, state: HubState | None) -> None:
        online = bool(state and state.online)
        was = self.status.hub_online
        # A new announcement (another boot, or the same hub re-subscribing after a broker
        # restart) may follow events the hub never received: replay then too.
        fresh = state is not None and (state.boot_id, state.ts_ms) != self._last_hub_state
        self._last_hub_state = (state.boot_id, state.ts_ms) if state is not None else None
        self.status.hub_online = online
        if online and (was is False or (was and fresh)):
            log.info("hub is (back) online; re-sending unacknowledged events")
            asyncio.ensure_future(self._send_birth_and_replay("hub online"))
        elif not online and was:
            log.warning("hub went offline; events wait in the outbox")

    async def _replay_all(self, why: str, after_seq: int | None = None) -> None:
        last_seq = await self.sink.call(self.sink.outbox.last_seq)
        self._restart_replay(self.status.acked if after_seq is None else after_seq, last_seq, why)

    async def _handle_command(self, cmd: Command) -> None:
        reply: CommandReply | None
        if cmd.cmd == "resend_from":
            if cmd.stream not in (None, self.stream):
                reply = self._reply(cmd, False, f"stream {cmd.stream} is not this node's current stream {self.stream}")
            else:
                from_seq = cmd.from_seq or 1
                if from_seq <= self.status.acked:  # acknowledged and deleted here: the birth says so
                    await self._send_birth_and_replay(f"hub asked from seq {from_seq}")
                    reply = self._reply(cmd, True, f"seq {from_seq}..{self.status.acked} were acknowledged and "
                                                   f"deleted here; re-sending from seq {self.status.acked + 1}")
                else:
                    await self._replay_all(f"hub asked from seq {from_seq}", from_seq - 1)
                    reply = self._reply(cmd, True, f"re-sending from seq {from_seq}")
        elif cmd.cmd == "identify":
            log.warning("IDENTIFY requested by the hub: this is node %s (boot %s)", self.config.node, self.boot_id)
            reply = self._reply(cmd, True, f"node {self.config.node} identified in its log")
        else:
            try:
                reply = await self._on_command(cmd)
            except Exception as err:  # a device handler failing must not kill the link
                log.exception("command %s %s failed", cmd.cmd, cmd.target)
                reply = self._reply(cmd, False, f"{cmd.cmd} failed: {err}")
            if reply is None:
                reply = self._reply(cmd, False, f"no device on node {self.config.node} handles "
                                                f"{cmd.cmd} for {cmd.target!r}")
        self.client.publish(self._t_reply, reply.to_json(), qos=1)

    def _reply(self, cmd: Command, ok: bool, message: str) -> CommandReply:
        return CommandReply(node=self.config.node, id=cmd.id, ok=ok, message=message, ts_ms=now_ms())

    async def _sender(self) -> None:
        """Drain the replay range, paced; re-arm it when acks stop advancing.

        It must outlive any error (an SD card read failing, say): without it nothing
        unacknowledged would ever be re-sent. The range stays open, so it is tried again.
        """
        while True:
            # asyncio.timeout, not wait_for: on Python 3.11, wait_for can swallow a cancellation
            # that races the wake-up (CPython #86296), and stop() would wait for ever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(TICK_S):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self._send_due()
            except Exception:
                log.exception("re-sending failed; trying again in %.1f s", self.config.ack_timeout_s)
                await asyncio.sleep(self.config.ack_timeout_s)

    async def _leave_if_no_hub(self) -> None:
        """On a broker where no hub has been online for mqtt.hub_absent_s, try the next one: the
        active hub may be on another broker (several listed; docs/deployment.md)."""
        if len(self.brokers.brokers) < 2 or not self.status.connected or self.status.hub_online:
            self._no_hub_since = None
            return
        now = time.monotonic()
        if self._no_hub_since is None:
            self._no_hub_since = now
        if now - self._no_hub_since < self.config.mqtt.hub_absent_s:
            return
        self._no_hub_since = None
        log.warning("no hub online at broker %s for %.0f s; trying the next broker; events stay in the outbox",
                    self.brokers.describe(), self.config.mqtt.hub_absent_s)
        self.brokers.gone()
        await asyncio.get_running_loop().run_in_executor(None, self._connect_elsewhere)

    def _connect_elsewhere(self) -> None:
        """Leave this broker and connect to the next (paho reconnects to one address only)."""
        self.client.disconnect()
        self.client.loop_stop()
        host, port = self.brokers.next_attempt()
        self.client.connect_async(host, port, keepalive=self.config.mqtt.keepalive_s)
        self.client.loop_start()

    async def _send_due(self) -> None:
        """One pass: re-arm on ack timeout, then drain the replay range, paced."""
        pace_s = 1.0 / self.config.replay_batches_per_s
        await self._leave_if_no_hub()
        if not self.status.connected:
            return
        if (self.status.last_sent > self.status.acked
                and time.monotonic() - self.status.last_ack_progress > self.config.ack_timeout_s):
            log.warning("no ack for seq %d..%d after %.1f s; re-sending", self.status.acked + 1,
                        self.status.last_sent, self.config.ack_timeout_s)
            await self._replay_all("ack timeout")
        while self.status.connected and self._replay_from < self._replay_to:
            start = max(self._replay_from, self.status.acked)
            events = await self.sink.call(self.sink.outbox.pending, start, self.config.batch_max)
            events = [e for e in events if e.seq <= self._replay_to]
            if not events:
                self._replay_from = self._replay_to
                break
            self._publish_batches(events, resent=True)  # marked: the hub commits live batches first
            self._replay_from = events[-1].seq
            await asyncio.sleep(pace_s)  # pacing: leaves room for live batches


def fit_notices(notices: list[str]) -> tuple[str, ...]:
    """Notices cut to what the birth carries: the first BIRTH_NOTICES_MAX, each shortened to fit."""
    cut = BIRTH_NOTICE_MAX_CHARS - 1
    return tuple(n if len(n) <= BIRTH_NOTICE_MAX_CHARS else n[:cut] + "…" for n in notices if n)[:BIRTH_NOTICES_MAX]
