"""For tests: a NOTIFY_SOCKET of our own, a real Unix datagram socket that records sd_notify messages.

Like aiohttp.test_utils, it ships with the package so the edge and hub tests can use it too.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path


class NotifyListener:
    """Binds a datagram socket (a path, or an abstract '@' name) and records every message."""

    def __init__(self, path: Path | None = None, abstract: bool = False) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            name = f"shelfsignal-test-{os.getpid()}-{id(self)}"
            self.sock.bind("\0" + name)
            self.env_value = "@" + name
        else:
            assert path is not None
            self.sock.bind(str(path))
            self.env_value = str(path)
        self.sock.settimeout(0.1)
        self.messages: list[dict[str, str]] = []
        self._cond = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._stop:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            fields["_t"] = str(time.monotonic())
            with self._cond:
                self.messages.append(fields)
                self._cond.notify_all()

    def wait_for(self, predicate: Callable[[list[dict[str, str]]], bool], timeout_s: float, what: str) -> None:
        """Wait until predicate(messages) holds, or fail naming what was awaited and what came."""
        with self._cond:
            if not self._cond.wait_for(lambda: predicate(self.messages), timeout_s):
                raise AssertionError(f"no {what} within {timeout_s} s; got {self.messages!r}")

    def count(self, key: str, value: str = "1") -> int:
        """How many messages so far carried key=value."""
        with self._cond:
            return sum(1 for m in self.messages if m.get(key) == value)

    def has(self, key: str, value: str = "1", after: int = 0) -> Callable[[list[dict[str, str]]], bool]:
        """Predicate: more than `after` messages carry key=value."""
        return lambda msgs: sum(1 for m in msgs if m.get(key) == value) > after

    def close(self) -> None:
        self._stop = True
        self._thread.join(2)
        self.sock.close()
