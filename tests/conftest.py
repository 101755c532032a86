"""Shared fixtures: a private Mosquitto with passwords and the site ACL, and a site name."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.mosquitto import HUB_USER, PrivateBroker
from tests.support import DemoShift

SITE = "test-site"
DEMO_ROUNDS = 4  # the demo stages its mistakes in rounds 1 to 4 of each cycle (scripts/run_demo.py, STAGED)


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateBroker]:
    """One broker for the whole run: tests that stop or restart a broker use `own_broker`."""
    brk = PrivateBroker(tmp_path_factory.mktemp("mosquitto"), max_queued_messages=20000)
    brk.add_user(HUB_USER, secrets.token_hex(8))
    brk.start()
    yield brk
    brk.stop()


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[PrivateBroker]:
    """A broker for this test alone, free to be stopped and restarted."""
    brk = PrivateBroker(tmp_path / "mosquitto", max_queued_messages=20000)
    brk.add_user(HUB_USER, secrets.token_hex(8))
    brk.start()
    yield brk
    brk.stop()


def add_node(broker: PrivateBroker, prefix: str = "pi") -> tuple[str, str]:
    """Create a node user with a unique name on the broker; returns (name, password)."""
    name = f"{prefix}-{secrets.token_hex(3)}"
    password = secrets.token_hex(8)
    broker.add_user(name, password)
    return name, password


@pytest.fixture(scope="module")
def demo_shift(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoShift]:
    """The demo running a short shift (every staged mistake once); tests wait for its end as they need."""
    demo = DemoShift(tmp_path_factory.mktemp("demo"), rounds=DEMO_ROUNDS)
    try:
        demo.wait_for_banner(timeout_s=60)
        yield demo
    finally:
        demo.stop()


@pytest.fixture
def site_broker(own_broker: PrivateBroker, tmp_path: Path) -> Iterator[tuple[PrivateBroker, Path]]:
    """The test's own broker and a pid file for it, as a packaged mosquitto writes one."""
    assert own_broker.proc is not None
    pid_file = tmp_path / "mosquitto.pid"
    pid_file.write_text(f"{own_broker.proc.pid}\n")
    yield own_broker, pid_file
