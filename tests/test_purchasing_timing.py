"""When the purchasing sync looks again: timed from when a pull or a push started, and at once after a wake().

Three rules of hub/purchasing/sync.py, each with the clock moving while central answers (a
slow central, or a test moving the clock): the next pull is due a poll interval after the last
one *started*; a failed push's back-off counts from when the attempt *started*; a wake() that
arrives during a step starts the next step at once, not a tick later.

Real parts: the reference central over real HTTP on loopback, the rules engine thread and its
SQLite file, the real contract connector. Time is the rules' ManualClock. A middleware in front
of central (on the test's loop) is where the test acts while a request is in flight: it moves
the clock, calls wake(), or answers 503, so every step is deterministic and nothing sleeps.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from central_reference import CentralStore, make_app
from central_reference.store import demo_catalog
from hub.ledger import BalanceChange
from hub.mosquitto import free_port
from hub.purchasing.backoff import backoff_delay_ms
from hub.purchasing.connectors import open_connector
from hub.purchasing.sync import REPEAT_LOG_EVERY_S, FailureLog, PurchasingSync
from hub.rules import outbox
from hub.rules.clock import ManualClock
from hub.rules.config import CentralConfig, RulesConfig
from hub.rules.core import RulesCore
from hub.rules.engine import RulesEngine
from tests.support import SITE, open_rules_db, wait_for

T0 = 1_727_769_600_000
POLL_S = 600.0
RETRY_BASE_S, RETRY_CAP_S = 2.0, 300.0
SEED = 5
CATALOG = "/v2/catalog"
RECEIPTS = "/v2/receipts"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Hook = Callable[[], Any]  # returns None, an answer to send instead of central's, or an awaitable


class CentralWithHooks:
    """The reference central on a loopback port, with a hook per path run while a request is in flight."""

    def __init__(self, db: Path) -> None:
        self.store = CentralStore(db)
        self.port = free_port()
        self.seen: list[str] = []  # request paths, in arrival order
        self.hooks: dict[str, Hook] = {}  # path -> run once on the next request there; may answer instead
        self.runner: web.AppRunner | None = None

    def count(self, path: str) -> int:
        return self.seen.count(path)

    @web.middleware
    async def _hooked(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.seen.append(request.path)
        hook = self.hooks.pop(request.path, None)
        answer = hook() if hook is not None else None
        if inspect.isawaitable(answer):
            answer = await answer
        return answer if isinstance(answer, web.StreamResponse) else await handler(request)

    async def start(self) -> None:
        app = make_app(self.store)
        app.middlewares.append(self._hooked)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        assert self.runner is not None
        await self.runner.cleanup()
        self.store.close()


@pytest.fixture
async def central(tmp_path: Path) -> AsyncIterator[CentralWithHooks]:
    c = CentralWithHooks(tmp_path / "central.sqlite3")
    for item in demo_catalog()[:2]:
        c.store.put_catalog_item(item)
    c.store.set_cash(SITE, 1_000_000.0, T0)
    await c.start()
    yield c
    await c.stop()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def engine(tmp_path: Path, clock: ManualClock) -> Iterator[RulesEngine]:
    eng = RulesEngine(RulesCore(open_rules_db(tmp_path / "rules.sqlite3"), RulesConfig(), clock, SITE))
    eng.start()
    yield eng
    eng.stop()


def sync_for(central: CentralWithHooks, engine: RulesEngine, clock: ManualClock, tick_s: float = 1.0) -> PurchasingSync:
    # timeout_s is generous: a timed-out call would be retried on the manual clock, which only the test moves.
    cfg = CentralConfig(base_url=f"http://127.0.0.1:{central.port}", poll_interval_s=POLL_S, timeout_s=60.0,
                        retry_base_s=RETRY_BASE_S, retry_cap_s=RETRY_CAP_S)
    return PurchasingSync(engine, cfg, SITE, clock, random.Random(SEED), tick_s=tick_s)


def advance(clock: ManualClock, seconds: float) -> Hook:
    """A hook: central takes `seconds` of the clock to answer."""
    def hook() -> None:
        clock.advance(int(seconds * 1000))
    return hook


async def test_the_next_pull_is_due_a_poll_interval_after_the_last_one_started(
        central: CentralWithHooks, engine: RulesEngine, clock: ManualClock) -> None:
    sync = sync_for(central, engine, clock)
    async with open_connector(sync.config) as connector:
        central.hooks[CATALOG] = advance(clock, 30)  # the first pull takes 30 s of the clock
        await sync.step(connector)
        assert central.count(CATALOG) == 1 and sync.status.last_pull_ms == T0 + 30_000
        clock.set(T0 + int(POLL_S * 1000) - 1)
        await sync.step(connector)
        assert central.count(CATALOG) == 1  # not due yet
        clock.set(T0 + int(POLL_S * 1000))  # a poll interval after the first pull started (not after it ended)
        await sync.step(connector)
        assert central.count(CATALOG) == 2


async def test_a_failed_pushs_back_off_counts_from_when_the_attempt_started(
        central: CentralWithHooks, engine: RulesEngine, clock: ManualClock) -> None:
    sync = sync_for(central, engine, clock)
    async with open_connector(sync.config) as connector:
        await sync.step(connector)  # the catalog first, as a running hub has it
        sku = demo_catalog()[0]["sku"]
        await engine.call(lambda core: core.on_commit([BalanceChange(sku, "DOCK", 40, 40, "receive", T0, T0)]))
        [queued] = await engine.call(lambda core: outbox.items(core.db.conn))
        assert queued.kind == outbox.RECEIPT

        def slow_failure() -> web.Response:
            clock.advance(int(RETRY_CAP_S * 1000))  # central takes longer than any back-off, then fails
            return web.json_response({"ok": False, "error": "busy"}, status=503)

        central.hooks[RECEIPTS] = slow_failure
        await sync.push_due(connector)
        assert central.count(RECEIPTS) == 1 and sync.status.consecutive_failures == 1
        delay_ms = backoff_delay_ms(1, int(RETRY_BASE_S * 1000), int(RETRY_CAP_S * 1000), random.Random(SEED))
        [waiting] = await engine.call(lambda core: outbox.items(core.db.conn))
        assert waiting.next_attempt_ms == T0 + delay_ms == sync.status.next_attempt_ms
        # The clock is already past the retry (the attempt itself took longer): the next push sends it.
        assert clock() >= T0 + delay_ms
        await sync.push_due(connector)
        assert central.count(RECEIPTS) == 2
        assert await engine.call(lambda core: outbox.items(core.db.conn)) == []
        assert [r["sku"] for r in central.store.receipts(SITE)] == [sku]


async def test_a_wake_during_a_step_starts_the_next_step_at_once(
        central: CentralWithHooks, engine: RulesEngine, clock: ManualClock) -> None:
    # A tick of an hour: only a wake() can start another step within the test.
    sync = sync_for(central, engine, clock, tick_s=3600.0)

    sku = demo_catalog()[0]["sku"]

    async def receipt_and_wake_mid_pull() -> None:
        # While this step still waits for central's answer, a receipt is queued and wake() called
        # (what an approval or a dock receipt does): the next step must push it at once.
        await engine.call(lambda core: core.on_commit([BalanceChange(sku, "DOCK", 40, 40, "receive", T0, T0)]))
        sync.wake()

    central.hooks[CATALOG] = receipt_and_wake_mid_pull
    task = asyncio.create_task(sync.run())
    try:
        await wait_for(lambda: central.count(RECEIPTS) == 1, timeout_s=20,
                       what="the receipt pushed by the step right after the one the wake() arrived in")
        assert central.count(CATALOG) == 1 and central.seen.index(CATALOG) < central.seen.index(RECEIPTS)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_a_step_failing_the_same_way_logs_its_traceback_once_then_a_line_a_minute(
        caplog: pytest.LogCaptureFixture) -> None:
    # It logged a whole traceback every tick (a second) for as long as the failure lasted.
    now = [0.0]
    failures = FailureLog(clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="hub.purchasing.sync"):
        for _ in range(30):  # half a minute of ticks failing the same way
            failures.failed(RuntimeError("rules database is locked"), 1.0)
            now[0] += 1.0
        now[0] += REPEAT_LOG_EVERY_S
        failures.failed(RuntimeError("rules database is locked"), 1.0)
        failures.failed(KeyError("sku"), 1.0)  # a different failure: its own traceback
        failures.worked()
        failures.worked()
    said = [(r.getMessage(), r.exc_info is not None) for r in caplog.records]
    assert said == [
        ("purchasing sync step failed; trying again every 1 s", True),
        ("purchasing sync step still failing (30 more times since the last line): RuntimeError: rules database is locked",
         False),
        ("purchasing sync step failed; trying again every 1 s", True),
        ("purchasing sync steps work again (they failed with KeyError: 'sku')", False),
    ]


async def test_the_sync_task_says_when_its_steps_fail_and_when_they_work_again(
        central: CentralWithHooks, engine: RulesEngine, clock: ManualClock, caplog: pytest.LogCaptureFixture) -> None:
    sync = sync_for(central, engine, clock, tick_s=3600.0)
    steps = {"count": 0}
    real_step = sync.step

    async def failing_twice(connector: Any) -> None:
        steps["count"] += 1
        if steps["count"] <= 2:
            raise RuntimeError("boom")
        await real_step(connector)

    sync.step = failing_twice  # type: ignore[method-assign]
    with caplog.at_level(logging.WARNING, logger="hub.purchasing.sync"):
        task = asyncio.create_task(sync.run())
        try:
            for n in (1, 2):
                await wait_for(lambda n=n: steps["count"] == n, timeout_s=20, what=f"step {n}")
                sync.wake()
            await wait_for(lambda: central.count(CATALOG) == 1, timeout_s=20, what="the third step's pull")
            await wait_for(lambda: any("work again" in r.getMessage() for r in caplog.records), timeout_s=20,
                           what="the line saying the steps work again")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    tracebacks = [r for r in caplog.records if r.exc_info is not None]
    assert len(tracebacks) == 1 and "RuntimeError: boom" in caplog.text
