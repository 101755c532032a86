"""Shared fixtures: a private Mosquitto with passwords and the site ACL, the demo, a Chromium."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from hub.mosquitto import HUB_USER, PrivateBroker, free_port
from tests.support import Browser, DemoShift, SmtpServer, WebhookReceiver, chromium

if TYPE_CHECKING:
    from central_reference.tryton_local import TrytonServer

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


@pytest.fixture(scope="session")
def hx711_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The HX711-bridge firmware ELFs and the simavr harness: ./scripts/test's build, else built here once."""
    build = Path(os.environ.get("HX711_BRIDGE_BUILD") or tmp_path_factory.mktemp("hx711-bridge"))
    if not (build / "hx711_part").exists():
        if shutil.which("avr-gcc") is None or not Path("/usr/include/simavr/sim_avr.h").exists():
            pytest.skip("needs gcc-avr, avr-libc, simavr and libsimavr-dev (scripts/setup.sh test installs them)")
        script = Path(__file__).resolve().parent.parent / "firmware_config" / "hx711-bridge" / "build.sh"
        subprocess.run(["sh", str(script)], env={**os.environ, "BUILD_DIR": str(build)}, check=True,
                       capture_output=True, timeout=300)
    return build


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """A headless Chromium for one test (the browser tests carry support.BROWSER_MARKS)."""
    async with chromium() as launched:
        yield launched


@pytest.fixture(scope="session")
def tryton_template() -> Path:
    """The seeded Tryton database, built once and cached under build/ (keyed by the trytond version)."""
    pytest.importorskip("trytond", reason="the 'tryton' extra is not installed (scripts/setup.sh test installs it)")
    from central_reference.tryton_local import CACHE_DIR, build_template

    # A first build takes minutes and counts against the first Tryton test's timeout:
    # scripts/test builds it before pytest (python -m central_reference.tryton_local).
    return build_template(CACHE_DIR, free_port())


@pytest.fixture
def tryton(tryton_template: Path, tmp_path: Path) -> Iterator[TrytonServer]:
    """A real trytond on a free port over this test's own copy of the seeded database."""
    from central_reference.tryton_local import TrytonServer

    data = tmp_path / "tryton"
    data.mkdir()
    shutil.copy(tryton_template, data / tryton_template.name)
    server = TrytonServer(data, free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def smtp_server(tmp_path: Path) -> Iterator[SmtpServer]:
    """A real SMTP server requiring STARTTLS (a test CA's certificate) and AUTH."""
    server = SmtpServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def webhook_receiver() -> AsyncIterator[WebhookReceiver]:
    """A real HTTP webhook receiver, not yet started (a test may start it late to show retries)."""
    receiver = WebhookReceiver()
    yield receiver
    await receiver.stop()
