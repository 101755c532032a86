"""Shared fixtures: the store backend of each test, a private Mosquitto with passwords and the site ACL, the demo,
a Chromium."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import settings

from hub.db import LEDGER, Connection, DbTarget
from hub.mosquitto import HUB_USER, PrivateBroker, free_port
from tests.support import (
    PG_ADMIN_URL,
    Browser,
    DemoShift,
    PgCluster,
    QuickPasswordHasher,
    SmtpServer,
    StreamingPair,
    WebhookReceiver,
    chromium,
    file_store_target,
    made_databases,
    make_store_template,
    postgres_bin,
    stop_leftover_hubs,
    take_store_touched,
    touch_store,
    use_store_template,
    use_store_url,
    wait_for_sync,
)

if TYPE_CHECKING:
    from central_reference.tryton_local import TrytonServer

# Property-based tests: the test command (and CI) tries the same examples every run, so it fails
# on a change, not on the luck of a new draw; `--hypothesis-profile=discovery` draws new ones to
# hunt for bugs. Each shrunk counterexample found becomes an @example on its test
# (docs/architecture.md, "Where to add things").
settings.register_profile("gate", derandomize=True, database=None, print_blob=True)
settings.register_profile("discovery", print_blob=True)
settings.load_profile("gate")

DEMO_ROUNDS = 4  # the demo stages its mistakes in rounds 1 to 4 of each cycle (scripts/run_demo.py, STAGED)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--store", choices=("sqlite", "postgresql"), default=os.environ.get("TEST_STORE", "sqlite"),
                     help="backend of the hub's stores in these tests: SQLite files (default) or a new PostgreSQL"
                          f" database per test (admin URL from TEST_PG_ADMIN_URL, default {PG_ADMIN_URL})")
    parser.addoption("--store-record", metavar="PATH", default="",
                     help="on SQLite: write which tests passed without opening a hub store, and each test's"
                          " seconds, to PATH (JSON); on PostgreSQL: deselect those tests (a test not in the"
                          " record runs); on both: start the longest tests first")


# Which tests open a hub store. The SQLite pass of scripts/test records, for each test, whether it
# opened one (any DbTarget.connect in the test's process) or configured one for a hub process of
# its own (the helpers in tests/support.py); the PostgreSQL pass then leaves out only the tests
# that passed without doing either. A new test is in both passes until a run shows it opens no store.
# The record also keeps each test's seconds (set-up, call and teardown): both passes start the
# longest first, so on pytest-xdist's workers a long test does not start last and make the run's tail.
_STORE_MARK = "opened_hub_store"
_opened_store: set[str] = set()
_passed: set[str] = set()
_seconds: dict[str, float] = {}


def _test_id(nodeid: str) -> str:
    """A test's id without the `@group` suffix pytest-xdist's --dist loadgroup adds to grouped tests."""
    at = nodeid.rfind("@")
    return nodeid[:at] if at > nodeid.rfind("]") else nodeid


def pytest_configure(config: pytest.Config) -> None:
    plain_connect = DbTarget.connect

    def connect(self: DbTarget, readonly: bool = False) -> Connection:
        touch_store()
        return plain_connect(self, readonly)

    DbTarget.connect = connect  # type: ignore[method-assign]


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    test = _test_id(report.nodeid)
    if (_STORE_MARK, True) in report.user_properties:
        _opened_store.add(test)
    if report.when == "call" and report.passed:
        _passed.add(test)
    _seconds[test] = _seconds.get(test, 0.0) + report.duration


def pytest_sessionfinish(session: pytest.Session) -> None:
    _wait_for_drops()
    record = session.config.getoption("--store-record")
    if not record or session.config.getoption("--store") != "sqlite" or hasattr(session.config, "workerinput"):
        return
    path = Path(record)
    path.parent.mkdir(parents=True, exist_ok=True)
    seconds = {test: round(s, 2) for test, s in sorted(_seconds.items())}
    path.write_text(json.dumps({"opened_no_store": sorted(_passed - _opened_store), "seconds": seconds},
                               indent=0) + "\n")


def _record(config: pytest.Config) -> dict[str, Any]:
    """The last SQLite pass's record ({} when there is none yet)."""
    record = config.getoption("--store-record")
    if not record or not Path(record).exists():
        return {}
    return dict(json.loads(Path(record).read_text()))


def _no_store_tests(config: pytest.Config) -> set[str]:
    """The tests the SQLite pass's record shows passing without opening a hub store ({} without a record)."""
    if config.getoption("--store") != "postgresql":
        return set()
    return set(_record(config).get("opened_no_store", ()))


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist adds the group names to the ids
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    no_store = _no_store_tests(config)
    left_out = [item for item in items if item.nodeid in no_store]
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = [item for item in items if item.nodeid not in no_store]
    _group_tests_sharing_a_fixture(items)
    _longest_first(items, _record(config).get("seconds", {}))


_SHARED_SCOPES = ("package", "module", "class")


def _group_tests_sharing_a_fixture(items: list[pytest.Item]) -> None:
    """Tests that share a module- or class-scoped fixture (the demo's shift, the accuracy model's day)
    run on one pytest-xdist worker (--dist loadgroup), which sets it up once, as a single process does."""
    for item in items:
        fixtures = getattr(item, "_fixtureinfo", None)
        if fixtures is None:
            continue
        for name, defs in fixtures.name2fixturedefs.items():
            if defs and defs[-1].scope in _SHARED_SCOPES:
                item.add_marker(pytest.mark.xdist_group(f"{item.module.__name__ if item.module else ''}.{name}"))


def _longest_first(items: list[pytest.Item], seconds: dict[str, float]) -> None:
    """Order the tests longest first by the last SQLite pass's seconds (a group's tests together, by their
    sum; a test the record lacks counts as 0). Without a record the `slow` tests (chaos, browser, soak)
    go first. Stable: ties keep the collection order."""
    units: dict[str, list[pytest.Item]] = {}
    for item in items:
        groups = sorted(str(mark.args[0]) for mark in item.iter_markers("xdist_group"))
        units.setdefault("@".join(groups) or item.nodeid, []).append(item)

    def cost(tests: list[pytest.Item]) -> float:
        if seconds:
            return sum(seconds.get(test.nodeid, 0.0) for test in tests)
        return float(sum(test.get_closest_marker("slow") is not None for test in tests))

    items[:] = [item for tests in sorted(units.values(), key=cost, reverse=True) for item in tests]


def pytest_report_header(config: pytest.Config) -> str | None:
    if config.getoption("--store") != "postgresql" or not config.getoption("--store-record"):
        return None
    no_store = _no_store_tests(config)
    if not no_store:
        return f"PostgreSQL pass: no record at {config.getoption('--store-record')}: every selected test runs"
    return (f"PostgreSQL pass: {len(no_store)} tests that passed without opening a hub store in the SQLite pass"
            f" ({config.getoption('--store-record')}) are deselected")


def _postgres_unreachable(admin_url: str) -> str | None:
    import psycopg
    try:
        psycopg.connect(admin_url, connect_timeout=3).close()
    except psycopg.Error as err:
        return f"no PostgreSQL reachable at {admin_url} ({str(err).strip().splitlines()[0]})"
    return None


@pytest.fixture(scope="session")
def postgres_admin(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str | None]:
    """The admin URL when the suite runs with --store=postgresql (None on SQLite); skips when none answers.
    Makes the session's migrated template of the stores' databases (one per pytest-xdist worker), dropped
    at the end."""
    if request.config.getoption("--store") != "postgresql":
        yield None
        return
    admin_url = os.environ.get("TEST_PG_ADMIN_URL", PG_ADMIN_URL)
    reason = _postgres_unreachable(admin_url)
    if reason:
        print(f"\nskipping the PostgreSQL run: {reason}")
        pytest.skip(reason)
    template = make_store_template(admin_url, tmp_path_factory.mktemp("store-template"))
    use_store_template(template)
    try:
        yield admin_url
    finally:
        use_store_template("")
        _drops.append(_dropper.submit(_drop_databases, admin_url, [template]))


@pytest.fixture(autouse=True)
def store_backend(request: pytest.FixtureRequest) -> Iterator[str]:
    """Each test's stores: SQLite files in its tmp_path, or (--store=postgresql) a database of its own,
    created before and dropped after the test; there every store the test opens at a SQLite path
    (DbTarget.sqlite) lives in that database instead (one per directory, as hub_config's do). Tests
    marked sqlite_only (SQLite's files, backup API or the previous release's files) are skipped on
    PostgreSQL. Records whether the test touched a hub store (see _STORE_MARK)."""
    take_store_touched()
    try:
        if request.config.getoption("--store") != "postgresql":
            yield "sqlite"
        else:
            yield from _postgresql_stores(request)
    finally:
        if take_store_touched():
            request.node.user_properties.append((_STORE_MARK, True))


def _postgresql_stores(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.node.get_closest_marker("sqlite_only"):
        pytest.skip("about SQLite files: runs in the SQLite pass")
    admin_url = request.getfixturevalue("postgres_admin")
    use_store_url(admin_url.rsplit("/", 1)[0] + f"/shelfsignal_test_{secrets.token_hex(6)}", admin_url)
    plain_sqlite = DbTarget.__dict__["sqlite"]
    DbTarget.sqlite = classmethod(lambda cls, *args, **kw: file_store_target(*args, **kw))  # type: ignore[assignment]
    try:
        yield "postgresql"
    finally:
        DbTarget.sqlite = plain_sqlite  # type: ignore[method-assign]
        made = made_databases()
        use_store_url("")
        if made:  # dropped while the next test runs: a DROP DATABASE took 1.2 s at load 40 here
            _drops.append(_dropper.submit(_drop_databases, admin_url, made))


_dropper = ThreadPoolExecutor(max_workers=1, thread_name_prefix="drop-test-databases")
_drops: list[Future[None]] = []


def _drop_databases(admin_url: str, names: list[str]) -> None:
    import psycopg
    with psycopg.connect(admin_url, autocommit=True) as admin:
        for name in names:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _wait_for_drops() -> None:
    """Every test database dropped before the run ends; one that could not be is named."""
    for done in _drops:
        try:
            done.result(timeout=120)
        except Exception as err:  # a database left behind costs disk, not a wrong result: say so
            print(f"\na test database could not be dropped: {err}")
    _drops.clear()


@pytest.fixture
def postgres_url(request: pytest.FixtureRequest, store_backend: str) -> Iterator[str]:
    """A PostgreSQL database for a test that needs one on either pass: the test's own on the
    PostgreSQL pass, else one made for it here (skipped with the reason when none answers)."""
    from tests.support import store_url
    if store_backend == "postgresql":
        yield store_url()
        return
    import psycopg
    admin_url = os.environ.get("TEST_PG_ADMIN_URL", PG_ADMIN_URL)
    reason = _postgres_unreachable(admin_url)
    if reason:
        print(f"\nskipping: {reason}")
        pytest.skip(reason)
    name = f"shelfsignal_test_{secrets.token_hex(6)}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    try:
        yield admin_url.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def logical_postgres() -> Iterator[PgCluster]:
    """A PostgreSQL server of the test's own with wal_level = logical (the machine's runs with replica):
    databases on it can publish and subscribe (logical replication)."""
    if postgres_bin() is None:
        print("\nskipping: no PostgreSQL server binaries (Debian package postgresql) are installed")
        pytest.skip("PostgreSQL server binaries (Debian package postgresql) are not installed")
    root = Path(tempfile.mkdtemp(prefix="pg-logical-"))
    server = PgCluster(root, "logical", free_port())
    try:
        server.init_logical()
        server.start()
        yield server
    finally:
        if server.running():
            server.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(autouse=True)
def quick_password_hashes(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """The users stores made in this process hash at argon2id's lowest cost (see QuickPasswordHasher);
    tests marked full_password_hash keep the product's default."""
    if request.node.get_closest_marker("full_password_hash") is None:
        monkeypatch.setattr("hub.auth.store.PasswordHasher", QuickPasswordHasher)


@pytest.fixture(autouse=True)
async def stop_hubs_a_test_left_running() -> AsyncIterator[None]:
    """A hub a failing test did not stop is stopped here, so it cannot disturb the next tests
    (tests/support.py, OPEN_HUBS)."""
    yield
    await stop_leftover_hubs()


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


@pytest.fixture
def pg_pair() -> Iterator[StreamingPair]:
    """A primary and a synchronous streaming standby PostgreSQL (Debian's initdb, pg_basebackup -R,
    pg_ctl) in a temporary directory on free ports, with one database `site`."""
    if postgres_bin() is None:
        pytest.skip("PostgreSQL server binaries (Debian package postgresql) are not installed")
    root = Path(tempfile.mkdtemp(prefix="pg-pair-"))  # not under tmp_path: the postgres user must reach it
    primary, standby = PgCluster(root, "primary", free_port()), PgCluster(root, "standby", free_port())
    try:
        primary.init_primary(sync_standby="standby1")
        primary.start()
        standby.init_standby(primary, "standby1")
        standby.start()
        conn = DbTarget.postgresql(LEDGER, primary.url).connect()
        try:
            wait_for_sync(lambda: [tuple(r) for r in conn.execute("SELECT sync_state FROM pg_stat_replication")]
                          == [("sync",)], timeout_s=30, what="the standby streaming synchronously")
            conn.execute("CREATE DATABASE site")
        finally:
            conn.close()
        yield StreamingPair(primary, standby,
                            f"postgresql://postgres@/site?host=127.0.0.1,127.0.0.1&port={primary.port},{standby.port}"
                            "&target_session_attrs=read-write&connect_timeout=2")
    finally:
        for cluster in (standby, primary):
            if (cluster.datadir / "postmaster.pid").exists() and cluster.running():
                cluster.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def two_brokers(tmp_path: Path) -> Iterator[tuple[PrivateBroker, PrivateBroker]]:
    """Two brokers (one per hub server) with the same hub user, for tests free to kill either."""
    password = secrets.token_hex(8)
    pair = (PrivateBroker(tmp_path / "broker-a", max_queued_messages=20000),
            PrivateBroker(tmp_path / "broker-b", max_queued_messages=20000))
    for brk in pair:
        brk.add_user(HUB_USER, password)
        brk.start()
    yield pair
    for brk in pair:
        brk.stop()
