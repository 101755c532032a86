"""The shipped HX711-bridge firmware in the loop: the same shelf outcomes as with the Python simulator.

Each test runs twice, against the same assertions: once with `edge/shelf/sim.py` (the
protocol simulated in Python) and once with the compiled firmware running in simavr, its
pins driven by simulated HX711 boards and its UART on a pty that the shelf source opens as it
would a USB serial adapter (`FirmwareShelf`). Only the load cells are simulated there.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pytest

from contract import BinConfig, Command, Event, NodeConfig, ShelfCount, ShelfFault
from edge.outbox import Outbox
from edge.shelf import ShelfSource, build_shelf
from edge.shelf.sim import SimBin, VirtualController
from edge.sink import OutboxSink
from edge.state import EdgeState
from tests.support import FirmwareShelf, stop_task, wait_for

UNIT_G = 25.0
COUNTS_PER_G = 100.0
OFFSET_COUNTS = 5000
TS = 1_700_000_000_000


class Board(Protocol):
    """What a test does to a shelf controller, whichever simulates it."""

    def start(self) -> str: ...
    def stop(self) -> None: ...
    def pick(self, channel: int, pieces: int) -> None: ...
    def put_away(self, channel: int, pieces: int) -> None: ...
    def unplug(self, channel: int) -> None: ...
    def plug(self, channel: int) -> None: ...
    def garbage(self, lines: int) -> None: ...
    @property
    def idle(self) -> bool: ...


class PythonBoard:
    """edge/shelf/sim.py, the protocol simulated in Python (its clock runs at wall speed here)."""

    def __init__(self, container_g: list[float], pieces: list[int], counts_per_g: float) -> None:
        bins = [SimBin(unit_weight_g=UNIT_G, unit_cv=0.0, pieces=p, container_g=c, counts_per_g=counts_per_g,
                       offset_counts=OFFSET_COUNTS) for c, p in zip(container_g, pieces, strict=True)]
        self.sim = VirtualController(bins, seed=1, spikes=False)

    def start(self) -> str:
        return self.sim.start()

    def stop(self) -> None:
        self.sim.stop()

    def pick(self, channel: int, pieces: int) -> None:
        self.sim.pick(channel, pieces)

    def put_away(self, channel: int, pieces: int) -> None:
        self.sim.restock(channel, pieces)

    def unplug(self, channel: int) -> None:
        self.sim.add(f"unplug {channel}")

    def plug(self, channel: int) -> None:
        self.sim.add(f"replug {channel}")

    def garbage(self, lines: int) -> None:
        self.sim.add(f"garbage {lines}")

    @property
    def idle(self) -> bool:
        return self.sim.idle


class FirmwareBoard:
    """The compiled firmware in simavr with simulated HX711s; pieces become grams here."""

    def __init__(self, build: Path, container_g: list[float], pieces: list[int], counts_per_g: float) -> None:
        self.container_g = container_g
        self.pieces = list(pieces)
        self.shelf = FirmwareShelf(build, len(pieces), counts_per_g=counts_per_g, offset_counts=OFFSET_COUNTS)
        for ch in range(len(pieces)):
            self.shelf.load_g[ch] = self._grams(ch)

    def _grams(self, channel: int) -> float:
        return self.container_g[channel] + self.pieces[channel] * UNIT_G

    def start(self) -> str:
        return self.shelf.start()

    def stop(self) -> None:
        self.shelf.stop()

    def pick(self, channel: int, pieces: int) -> None:
        self.pieces[channel] -= pieces
        self.shelf.handle(channel, self._grams(channel))

    def put_away(self, channel: int, pieces: int) -> None:
        self.pieces[channel] += pieces
        self.shelf.handle(channel, self._grams(channel))

    def unplug(self, channel: int) -> None:
        self.shelf.unplug(channel)

    def plug(self, channel: int) -> None:
        self.shelf.plug(channel)

    def garbage(self, lines: int) -> None:
        for i in range(lines):
            self.shelf.garbage(f"D {i} 12#4 \x01\x7f*ZZ" if i % 2 else "~~ noise on the line ~~")

    @property
    def idle(self) -> bool:
        return self.shelf.idle


@dataclass
class Rig:
    board: Board
    source: ShelfSource
    bins: list[str]
    events: list[Event] = field(default_factory=list)

    def counts(self, bin_name: str) -> list[ShelfCount]:
        return [e for e in self.events if isinstance(e, ShelfCount) and e.bin == bin_name and not e.heartbeat]

    def faults(self, bin_name: str, fault: str) -> list[ShelfFault]:
        return [e for e in self.events if isinstance(e, ShelfFault) and e.bin == bin_name and e.fault == fault]

    async def next_count(self, bin_name: str, after: int, timeout_s: float = 20.0) -> ShelfCount:
        await wait_for(lambda: len(self.counts(bin_name)) > after, timeout_s, what=f"a settled count of {bin_name}")
        return self.counts(bin_name)[after]

    async def command(self, cmd: str, bin_name: str, **kw: Any) -> Any:
        reply = await self.source.handle_command(Command(id=f"c-{cmd}", cmd=cmd, ts_ms=TS, target=bin_name, **kw),
                                                 "pi-1")
        assert reply is not None
        return reply


@pytest.fixture(params=["python-simulator", pytest.param("firmware-in-simavr", marks=pytest.mark.slow)])
def backend(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "firmware-in-simavr":
        request.getfixturevalue("hx711_build")  # skips with the packages to install when it cannot build
    yield request.param


@contextlib.asynccontextmanager
async def rig(request: pytest.FixtureRequest, backend: str, tmp_path: Path, pieces: list[int],
              container_g: list[float] | None = None, counts_per_g: float = COUNTS_PER_G,
              **shelf: Any) -> AsyncIterator[Rig]:
    containers = container_g or [0.0] * len(pieces)
    board: Board = (FirmwareBoard(request.getfixturevalue("hx711_build"), containers, pieces, counts_per_g)
                    if backend == "firmware-in-simavr" else PythonBoard(containers, pieces, counts_per_g))
    port = board.start()
    bins = [f"A-{i + 1:02d}" for i in range(len(pieces))]
    state = EdgeState(tmp_path / "state.json")
    sink = OutboxSink(Outbox(tmp_path / "outbox.sqlite3"))
    table = {"name": "shelf-1", "protocol": "hx711-bridge", "port": port, "bins": bins, "heartbeat_s": 1000.0,
             "scale_per_g": COUNTS_PER_G, "offset_raw": float(OFFSET_COUNTS), **shelf}
    source = build_shelf(table, state)
    source.apply_config(NodeConfig(node="pi-1", rev=1, ts_ms=TS, bins=tuple(
        BinConfig(bin=b, unit_weight_g=UNIT_G, unit_weight_cv=0.01) for b in bins)))
    r = Rig(board, source, bins)

    class RecordingSink:
        async def submit(self, event: Event) -> Event:
            stored = await sink.submit(event)
            r.events.append(stored)
            return stored

    task = asyncio.create_task(source.run(RecordingSink()))
    try:
        yield r
    finally:
        await stop_task(task)
        board.stop()
        sink.close()
        state.close()


async def test_a_pick_and_a_put_away_each_give_one_sure_count(request: pytest.FixtureRequest, backend: str,
                                                            tmp_path: Path) -> None:
    async with rig(request, backend, tmp_path, pieces=[20]) as r:
        first = await r.next_count("A-01", 0)
        assert (first.count, first.uncertain) == (20, False)
        r.board.pick(0, 3)
        picked = await r.next_count("A-01", 1)
        assert (picked.count, picked.uncertain) == (17, False) and picked.confidence >= 0.95
        await wait_for(lambda: r.board.idle, what="the hand gone")
        r.board.put_away(0, 5)
        put = await r.next_count("A-01", 2)
        assert (put.count, put.uncertain) == (22, False)
        assert put.weight_g == pytest.approx(550.0, abs=2.0)
        await wait_for(lambda: r.board.idle and r.source.pipelines["A-01"].settled, what="the shelf at rest")
        assert [c.count for c in r.counts("A-01")] == [20, 17, 22], "one count per movement, none while the hand was on"


async def test_tare_takes_the_container_and_later_counts_are_net(request: pytest.FixtureRequest, backend: str,
                                                                tmp_path: Path) -> None:
    async with rig(request, backend, tmp_path, pieces=[8], container_g=[400.0]) as r:
        first = await r.next_count("A-01", 0)
        assert first.count == 24  # (400 + 200) / 25: the container counts until tared
        reply = await r.command("tare", "A-01")
        assert reply.ok, reply.message
        assert reply.data["tare_g"] == pytest.approx(600.0, abs=1.0)
        tared = await r.next_count("A-01", 1)
        assert (tared.count, tared.uncertain) == (0, False)
        r.board.put_away(0, 5)
        restocked = await r.next_count("A-01", 2)
        assert (restocked.count, restocked.uncertain) == (5, False)
        assert restocked.weight_g == pytest.approx(125.0, abs=3.0)


async def test_calibration_with_a_known_weight(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> None:
    # A cell that gives 84.3 counts per gram where the config says 100: counts are off until calibrated.
    async with rig(request, backend, tmp_path, pieces=[0], counts_per_g=84.3, deadband_g=5.0) as r:
        await wait_for(lambda: r.source.pipelines["A-01"].settled, what="the empty bin at rest")
        zero = await r.command("zero", "A-01")
        assert zero.ok, zero.message
        r.board.put_away(0, 20)  # 500 g of reference weight
        await wait_for(lambda: r.board.idle, what="the weight placed")
        cal = await r.command("calibrate", "A-01", known_weight_g=500.0)
        assert cal.ok, cal.message
        assert cal.data["scale_per_g"] == pytest.approx(84.3, rel=0.003)
        n = len(r.counts("A-01"))
        after = await r.next_count("A-01", n)
        assert after.weight_g == pytest.approx(500.0, abs=1.0) and after.count == 20


async def test_a_disconnected_load_cell_is_a_fault_until_plugged_back(request: pytest.FixtureRequest, backend: str,
                                                                     tmp_path: Path) -> None:
    async with rig(request, backend, tmp_path, pieces=[20, 5, 10, 4]) as r:
        await wait_for(lambda: all(r.counts(b) for b in r.bins), what="every bin counted")
        r.board.unplug(1)
        await wait_for(lambda: len(r.faults("A-02", "disconnected")) == 1, what="the disconnected fault")
        r.board.plug(1)
        await wait_for(lambda: len(r.faults("A-02", "disconnected")) == 2, what="the fault cleared")
        assert [f.active for f in r.faults("A-02", "disconnected")] == [True, False]
        assert not [e for e in r.events if isinstance(e, ShelfFault) and e.bin != "A-02"], "only A-02 faulted"


async def test_garbage_on_the_line_is_counted_and_dropped(request: pytest.FixtureRequest, backend: str,
                                                         tmp_path: Path) -> None:
    async with rig(request, backend, tmp_path, pieces=[20]) as r:
        await r.next_count("A-01", 0)
        r.board.garbage(10)
        await wait_for(lambda: r.source.reader is not None and r.source.reader.garbage_lines >= 10,
                       what="the garbage lines counted")
        r.board.pick(0, 2)
        picked = await r.next_count("A-01", 1)
        assert (picked.count, picked.uncertain) == (18, False)
        assert [c.count for c in r.counts("A-01")] == [20, 18], "garbage never became a count"
