"""The notify protocol and the health-gated watchdog, over a real Unix datagram socket."""

from __future__ import annotations

import asyncio
import os
import select
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from service import TEST_HANG_ENV, Notifier, Watchdog, watchdog_interval_s
from service.testing import NotifyListener

PING_S = 0.05
STALE_S = 0.3
WAIT_S = 5.0


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[NotifyListener]:
    lst = NotifyListener(tmp_path / "notify.sock")
    yield lst
    lst.close()


class PipeReader:
    """A read loop on a real pipe: select() with a timeout, beat, repeat; `hang()` makes it block in read()."""

    def __init__(self, watchdog: Watchdog, name: str) -> None:
        self.watchdog, self.name = watchdog, name
        self.rfd, self.wfd = os.pipe()
        self.hang_requested = threading.Event()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            if self.hang_requested.is_set():
                self.hang_requested.clear()
                os.read(self.rfd, 1)  # nothing was written: blocks like a device that stopped answering
            else:
                select.select([self.rfd], [], [], 0.01)
            self.watchdog.beat(self.name)

    def start(self) -> None:
        self.watchdog.register(self.name, max_stale_s=STALE_S)
        self.thread.start()

    def unhang(self) -> None:
        os.write(self.wfd, b"x")

    def close(self) -> None:
        self.stop.set()
        os.write(self.wfd, b"x")  # wake a blocked read so the thread can end
        self.thread.join(2)
        os.close(self.rfd)
        os.close(self.wfd)


def test_notifier_without_socket_is_a_no_op() -> None:
    notifier = Notifier(environ={})
    assert not notifier.enabled
    assert notifier.ready() is False
    assert notifier.watchdog() is False


def test_notifier_speaks_the_protocol(listener: NotifyListener) -> None:
    notifier = Notifier(environ={"NOTIFY_SOCKET": listener.env_value})
    assert notifier.ready("listening\non 2 ports")
    assert notifier.status("3 scanners")
    assert notifier.watchdog()
    assert notifier.stopping()
    listener.wait_for(lambda m: len(m) == 4, WAIT_S, "four messages")
    ready, status, ping, stopping = listener.messages
    assert ready["READY"] == "1" and ready["MAINPID"] == str(os.getpid())
    assert ready["STATUS"] == "listening on 2 ports"  # a newline would have started a new assignment
    assert status["STATUS"] == "3 scanners"
    assert ping["WATCHDOG"] == "1"
    assert stopping["STOPPING"] == "1"
    notifier.close()


def test_notifier_abstract_namespace() -> None:
    lst = NotifyListener(abstract=True)
    try:
        assert lst.env_value.startswith("@")
        assert Notifier(environ={"NOTIFY_SOCKET": lst.env_value}).ready()
        lst.wait_for(lst.has("READY"), WAIT_S, "READY on the abstract socket")
    finally:
        lst.close()


def test_notifier_survives_a_vanished_socket(tmp_path: Path) -> None:
    notifier = Notifier(environ={"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    assert notifier.watchdog() is False  # logged, not raised


def test_watchdog_interval_from_systemd_environment() -> None:
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}) == 15.0
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None  # meant for another
    assert watchdog_interval_s({}) is None
    watchdog = Watchdog(Notifier({}), environ={"WATCHDOG_USEC": "4000000"})
    assert watchdog.interval_s == 2.0
    assert watchdog.default_max_stale_s == 4.0  # a loop may miss beats for WatchdogSec by default
    assert Watchdog(Notifier({}), interval_s=0.1).default_max_stale_s == 1.5  # but never less than 1.5 s


def test_watchdog_refuses_caller_mistakes() -> None:
    watchdog = Watchdog(Notifier({}), interval_s=1)
    with pytest.raises(ValueError, match="max_stale_s"):
        watchdog.register("scanner:a", max_stale_s=0)
    with pytest.raises(KeyError, match="never registered"):
        watchdog.beat("scanner:typo")


async def _hung_statuses_without_pings(listener: NotifyListener, rounds: int, loop_name: str) -> None:
    """Wait for `rounds` 'hung' status lines naming the loop after the first one, then check no ping came."""
    def hung(m: dict[str, str]) -> bool:
        return m.get("STATUS", "").startswith("hung: ") and loop_name in m["STATUS"]

    await asyncio.to_thread(listener.wait_for, lambda msgs: any(hung(m) for m in msgs), WAIT_S, "a 'hung' status")
    first = next(i for i, m in enumerate(listener.messages) if hung(m))
    # Each round re-sends the status (the age changes), so counting statuses counts rounds.
    await asyncio.to_thread(listener.wait_for, lambda msgs: sum(hung(m) for m in msgs[first:]) > rounds,
                            WAIT_S, f"{rounds} more watchdog rounds")
    assert not [m for m in listener.messages[first:] if m.get("WATCHDOG")], "pinged while a loop was hung"


async def test_watchdog_pings_only_while_loops_beat(listener: NotifyListener) -> None:
    watchdog = Watchdog(Notifier({"NOTIFY_SOCKET": listener.env_value}), interval_s=PING_S)
    reader = PipeReader(watchdog, "scanner:front")
    reader.start()
    task = asyncio.create_task(watchdog.run())
    try:
        await asyncio.to_thread(listener.wait_for, listener.has("WATCHDOG", after=2), WAIT_S, "three pings")

        reader.hang_requested.set()
        await _hung_statuses_without_pings(listener, 3, "scanner:front")
        assert not watchdog.healthy()

        pings_before = listener.count("WATCHDOG")
        reader.unhang()  # the device answers again: pings resume
        await asyncio.to_thread(listener.wait_for, listener.has("WATCHDOG", after=pings_before), WAIT_S,
                                "a ping after recovery")
        assert watchdog.healthy()
    finally:
        task.cancel()
        reader.close()


async def test_test_hook_stalls_the_named_loop_on_sigusr2(listener: NotifyListener) -> None:
    environ = {"NOTIFY_SOCKET": listener.env_value, TEST_HANG_ENV: "shelf:a"}
    watchdog = Watchdog(Notifier(environ), interval_s=PING_S, environ=environ)
    stalled, healthy = PipeReader(watchdog, "shelf:a"), PipeReader(watchdog, "shelf:b")
    stalled.start()
    healthy.start()
    task = asyncio.create_task(watchdog.run())
    try:
        await asyncio.to_thread(listener.wait_for, listener.has("WATCHDOG", after=1), WAIT_S, "pings")
        os.kill(os.getpid(), signal.SIGUSR2)
        await _hung_statuses_without_pings(listener, 3, "shelf:a")
        assert [name for name, _ in watchdog.stale_loops()] == ["shelf:a"]  # only the named one
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        asyncio.get_running_loop().remove_signal_handler(signal.SIGUSR2)
        healthy.close()
        stalled.stop.set()  # that thread waits forever by design; it is a daemon
