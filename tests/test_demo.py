"""The README's first command, minus the set-up: the demo starts everything, the worker's
shift lands on the page's API through the real broker, and Ctrl+C stops it all, cleanly."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp

from hub.mosquitto import free_port
from tests.support import form_login, wait_for

ROOT = Path(__file__).resolve().parent.parent


def children_of(pid: int) -> set[int]:
    """Every live descendant of pid (the demo starts its programs in their own sessions)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


async def test_the_demo_runs_a_shift_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    port = free_port()
    out = open(tmp_path / "demo.out", "w+b")
    demo = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "run_demo.py"), "--workdir",
                             str(tmp_path / "demo-run"), "--http-port", str(port), "--pace-s", "0.2"],
                            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        def printed() -> str:
            out.seek(0)
            return out.read().decode(errors="replace")

        banner = await wait_for(lambda: re.search(r"Hub page:\s+(\S+)\s+\(login: admin / (\S+)\)", printed()),
                                timeout_s=60, what="the demo's banner")
        url, password = banner.group(1).rstrip("/"), banner.group(2)
        programs = children_of(demo.pid)
        assert len(programs) >= 4, "broker, central, hub and edge run under the demo"
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as page:
            assert await form_login(page, url, "admin", password) == 303, "the printed admin login works"

            async def stocked() -> list[object]:
                async with page.get(f"{url}/api/v1/stock") as resp:
                    return [] if resp.status != 200 else list((await resp.json())["items"])

            # The shift's scans go from a pty scanner through the edge and the broker to the ledger.
            await wait_for(stocked, timeout_s=60, what="stock from the shift's scans")
            async with page.get(f"{url}/api/v1/nodes") as resp:
                nodes = (await resp.json())["items"]
            assert [n["node"] for n in nodes if n["online"]] == ["pi-demo-1"]

        # Ctrl+C: the terminal sends SIGINT to its whole foreground process group.
        os.killpg(demo.pid, signal.SIGINT)
        assert demo.wait(30) == 0
        assert "stopped; files are in" in printed()
        await wait_for(lambda: not any(alive(p) for p in programs), timeout_s=10,
                       what="every program the demo started to end")
        for log_name in ("hub.log", "edge.log", "central.log"):
            text = (tmp_path / "demo-run" / log_name).read_text()
            assert "Traceback" not in text, f"{log_name}: {text[-2000:]}"
        # In order: the edge stopped while its broker was still up (it did not lose it first).
        assert "disconnected from broker:" not in (tmp_path / "demo-run" / "edge.log").read_text()
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
        out.close()
