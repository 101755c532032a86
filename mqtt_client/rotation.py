"""Several MQTT brokers for one client: which to try now, and the next one once it is gone.

A site with two servers (active/standby hubs, docs/deployment.md) runs a broker on each;
edges and hubs list both (`mqtt.host` first, then `mqtt.more_hosts`). A paho client keeps
the broker it is on while it works; when a connection attempt fails or a connection is
lost, the next attempt goes to the next broker in the list, round and round. paho itself
reconnects to one host only, so the rotation sets the address in paho's pre-connect hook
(`on_pre_connect`), the one moment between attempts where paho reads it.
"""

from __future__ import annotations

import threading
from typing import Any

from settings.mqtt import Broker


class BrokerRotation:
    """The broker a client is on, moving to the next when an attempt failed or a connection was lost."""

    def __init__(self, brokers: tuple[Broker, ...]) -> None:
        assert brokers, "at least one broker"
        self.brokers = brokers
        self._index = 0
        self._move = False
        self._lock = threading.Lock()

    @property
    def current(self) -> Broker:
        with self._lock:
            return self.brokers[self._index]

    def describe(self) -> str:
        host, port = self.current
        return f"{host}:{port}"

    def gone(self) -> None:
        """The current broker failed (refused, unreachable, connection lost): the next attempt moves on."""
        with self._lock:
            self._move = len(self.brokers) > 1

    def next_attempt(self) -> Broker:
        """The broker for the attempt about to start."""
        with self._lock:
            if self._move:
                self._index = (self._index + 1) % len(self.brokers)
                self._move = False
            return self.brokers[self._index]

    def attach(self, client: Any) -> None:
        """Make a paho client follow the rotation (set its callbacks for connect failures and pre-connect;
        the owner calls gone() from its own on_disconnect and on a refused CONNACK)."""
        def pre_connect(client: Any, userdata: Any) -> None:
            # paho allows no public change of address while it reconnects; these are the
            # attributes reconnect() reads right after this hook (paho 2.x).
            client._host, client._port = self.next_attempt()

        def connect_failed(client: Any, userdata: Any) -> None:
            self.gone()

        client.on_pre_connect = pre_connect
        client.on_connect_fail = connect_failed
