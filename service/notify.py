"""systemd's notify protocol (READY, STATUS, STOPPING, WATCHDOG) and a health-gated watchdog.

`Notifier` writes datagrams to `$NOTIFY_SOCKET` (a path, or `@name` for the abstract
namespace) and does nothing when systemd did not give us one, so the same code runs under
systemd, in a terminal and in tests.

`Watchdog` is a registry of named loops. Each loop calls `beat(name)` every time it comes
round (a read that returned, even with no data); `run()` sends `WATCHDOG=1` every half
watchdog period only while every loop has beaten recently. A hung device read therefore
stops the pings and systemd restarts the service (`WatchdogSec=` + `Restart=on-failure`),
and the unit's status line names the loop that hung.

Test hook: with `SHELFSIGNAL_TEST_HANG_LOOP=<loop name>` in the environment, `run()` installs
a SIGUSR2 handler; after SIGUSR2 that loop stalls inside its next `beat()` (a thread blocks
there for good, as a hung read would; a coroutine's beats are dropped, because blocking the
event loop would hang every loop at once and hide which one). Units never set it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

log = logging.getLogger(__name__)

TEST_HANG_ENV = "SHELFSIGNAL_TEST_HANG_LOOP"
# Used when systemd gives no WATCHDOG_USEC (terminal, tests): the status line still tracks health.
DEFAULT_INTERVAL_S = 5.0
# A loop that does not say how stale it may get may miss beats for two ping periods (that is,
# for WatchdogSec), but never less than this: a serial read timeout of about a second plus
# scheduling jitter on a busy Pi must not count as a hang.
MIN_DEFAULT_MAX_STALE_S = 1.5


def _socket_address(raw: str) -> str:
    """The address to sendto(): '@name' is the abstract namespace, spelt with a NUL byte."""
    return "\0" + raw[1:] if raw.startswith("@") else raw


class Notifier:
    """Sends sd_notify messages to $NOTIFY_SOCKET; a no-op when the variable is unset.

    Send errors are logged, never raised: a service must not die because its supervisor's
    socket went away (systemd's own sd_notify() behaves the same way).
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        raw = env.get("NOTIFY_SOCKET", "")
        self.address: str | None = _socket_address(raw) if raw else None
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()  # beats come from threads; the socket is shared

    @property
    def enabled(self) -> bool:
        """True when there is a socket to notify."""
        return self.address is not None

    def notify(self, message: str) -> bool:
        """Send one raw message (newline-separated KEY=VALUE lines); True if it was sent."""
        if self.address is None:
            return False
        with self._lock:
            try:
                if self._sock is None:
                    self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.sendto(message.encode(), self.address)
                return True
            except OSError as err:
                log.warning("cannot notify systemd at %r: %s", self.address.replace("\0", "@"), err)
                return False

    def ready(self, status: str | None = None) -> bool:
        """Tell systemd start-up is finished (Type=notify units leave 'activating')."""
        lines = ["READY=1", f"MAINPID={os.getpid()}"]
        if status:
            lines.append(f"STATUS={_one_line(status)}")
        return self.notify("\n".join(lines))

    def status(self, text: str) -> bool:
        """Set the free-text status shown by `systemctl status`."""
        return self.notify(f"STATUS={_one_line(text)}")

    def stopping(self, status: str | None = None) -> bool:
        """Tell systemd a clean shutdown has begun."""
        return self.notify("STOPPING=1" + (f"\nSTATUS={_one_line(status)}" if status else ""))

    def watchdog(self) -> bool:
        """One keep-alive ping."""
        return self.notify("WATCHDOG=1")

    def close(self) -> None:
        """Close the socket (a later message reopens it)."""
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None


def _one_line(text: str) -> str:
    # A newline inside STATUS= would start a new KEY=VALUE assignment in the datagram.
    return " ".join(text.split())


def watchdog_interval_s(environ: Mapping[str, str] | None = None) -> float | None:
    """Half of systemd's WATCHDOG_USEC (its advice for the ping period), or None if not ours.

    WATCHDOG_PID, when set, names the process the watchdog is meant for; a child that
    inherited the variables must not ping on its parent's behalf.
    """
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid != str(os.getpid()):
        return None
    return int(usec) / 2 / 1_000_000


@dataclass(slots=True)
class _Loop:
    max_stale_s: float
    last_beat: float


class Watchdog:
    """Health registry of named loops that pings systemd only while all of them are alive."""

    def __init__(self, notifier: Notifier | None = None, interval_s: float | None = None,
                 environ: Mapping[str, str] | None = None) -> None:
        """`interval_s` overrides the ping period taken from WATCHDOG_USEC."""
        self.notifier = notifier if notifier is not None else Notifier(environ)
        self._environ = os.environ if environ is None else environ
        from_env = watchdog_interval_s(self._environ)
        self.interval_s = interval_s or from_env or DEFAULT_INTERVAL_S
        self.default_max_stale_s = max(2 * self.interval_s, MIN_DEFAULT_MAX_STALE_S)
        self._loops: dict[str, _Loop] = {}
        self._lock = threading.Lock()
        self._last_status = ""
        self._hang_name = self._environ.get(TEST_HANG_ENV, "")
        self._hang_now = threading.Event()
        self._never = threading.Event()  # what a 'hung' thread waits on; never set

    def register(self, name: str, max_stale_s: float | None = None) -> None:
        """Start tracking a loop; registering counts as its first beat.

        `max_stale_s` defaults to `default_max_stale_s` (WatchdogSec, at least 1.5 s); a loop
        whose blocking call may legitimately take longer must pass more.
        """
        max_stale_s = self.default_max_stale_s if max_stale_s is None else max_stale_s
        if max_stale_s <= 0:
            raise ValueError(f"loop {name!r}: max_stale_s must be greater than 0, got {max_stale_s!r}")
        with self._lock:
            self._loops[name] = _Loop(max_stale_s, time.monotonic())
        log.debug("watchdog tracks loop %s (stale after %.1f s)", name, max_stale_s)

    def unregister(self, name: str) -> None:
        """Stop tracking a loop (it ended on purpose, e.g. a device was removed from the config)."""
        with self._lock:
            self._loops.pop(name, None)

    def beat(self, name: str) -> None:
        """Record that a loop came round; call it from the loop's thread or coroutine."""
        if self._hang_name == name and self._hang_now.is_set():
            self._stall(name)
            return
        now = time.monotonic()
        with self._lock:
            loop = self._loops.get(name)
            if loop is None:
                raise KeyError(f"watchdog: loop {name!r} beats but was never registered")
            loop.last_beat = now

    def stale_loops(self, now: float | None = None) -> list[tuple[str, float]]:
        """Loops past their allowed staleness, with how long since each last beat (seconds)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            return sorted((name, now - loop.last_beat) for name, loop in self._loops.items()
                          if now - loop.last_beat > loop.max_stale_s)

    def healthy(self) -> bool:
        """True when every registered loop has beaten within its allowed staleness."""
        return not self.stale_loops()

    def check(self) -> bool:
        """One round: ping if healthy, and keep the status line saying which loop hung."""
        stale = self.stale_loops()
        if stale:
            text = "hung: " + ", ".join(f"{name} (no beat for {age:.1f} s)" for name, age in stale)
            # Log on the change only; the status line carries the running ages.
            if not self._last_status.startswith("hung: ") or self._names(self._last_status) != self._names(text):
                log.error("watchdog: %s; not pinging systemd, which will restart the service", text)
        else:
            text = f"running; {len(self._loops)} loops healthy"
            if self._last_status.startswith("hung: "):
                log.warning("watchdog: all loops are beating again")
            self.notifier.watchdog()
        if text != self._last_status:
            self.notifier.status(text)
            self._last_status = text
        return not stale

    async def run(self) -> None:
        """Check and ping every `interval_s` until cancelled (keep a reference to the task)."""
        self._arm_test_hang()
        log.info("watchdog pings every %.2f s while %d loops are healthy", self.interval_s, len(self._loops))
        while True:
            self.check()
            await asyncio.sleep(self.interval_s)

    @staticmethod
    def _names(status: str) -> list[str]:
        return [part.split(" (")[0] for part in status.removeprefix("hung: ").split(", ")]

    def _arm_test_hang(self) -> None:
        if not self._hang_name:
            return
        log.warning("test hook: SIGUSR2 will stall loop %r (%s is set)", self._hang_name, TEST_HANG_ENV)
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR2, self._hang_now.set)

    def _stall(self, name: str) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            # A thread: block here for good, exactly as a read that never returns.
            log.warning("test hook: loop %s now stalls", name)
            self._never.wait()
        # On the event loop: drop the beat (see the module docstring).
