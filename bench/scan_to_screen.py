"""Scan to screen: from a barcode typed into the edge agent to its row on every open overview page.

    .venv/bin/python bench/scan_to_screen.py                          # 1 and 10 pages; ~5 min
    .venv/bin/python bench/scan_to_screen.py --pages 1,10,50          # and 50 pages; ~15 min on 2 cores
    .venv/bin/python bench/scan_to_screen.py --pages 10               # the target case only
    .venv/bin/python bench/scan_to_screen.py --pages 10 --trace /tmp/s2s.json   # and a Chromium trace of one more trial
    git worktree add --detach /tmp/base main
    .venv/bin/python bench/scan_to_screen.py --pages 10 --against /tmp/base      # main's hub and page vs this checkout's
    .venv/bin/python bench/scan_to_screen.py --pages 1,10 --floor                # and Chromium's floor for the same feed

The parts are the real ones: a private Mosquitto with passwords and ACL, `stock-hub serve`
and `edge-agent run` as their own processes, and N Chromium pages (Playwright driving Debian's
/usr/bin/chromium, headless) logged in to the overview. The only fake is the scanner: a pty
that the benchmark types barcodes into, as a serial scanner would (one barcode + CR LF per scan).

Each page runs a MutationObserver on the recent-scans table and stamps every row it sees added
with `performance.timeOrigin + performance.now()`: wall-clock milliseconds, the same clock as
`time.time()` on this host. Each scan has its own GTIN, so a row is matched to the instant it
was typed and to the ledger's times for its event:

- scan -> DOM: typed (host) to the row in a page (every page counts);
- commit -> DOM: the hub's `committed_ms` to the row (the live feed, SSE and the page's script);
- commit -> SSE: the same, to the message's arrival at an SSE client in this process: the hub's share;
- commit -> page message: to the page's EventSource delivering the message (stamped by a script
  that runs before the page's own): the hub, the browser's network process and IPC; the rest of
  commit -> DOM is the page's own script and its wait for a frame;
- scan -> accepted: typed to the edge's outbox `accepted_ms` (the pty, the decoder, the fsync'd
  outbox append): the edge's share before anything is published;
- MQTT hop: edge outbox `accepted_ms` to hub `received_ms` (the edge's publish and the broker),
  the in-run baseline: the part of the path that is not ours to shorten;
- browser CPU per (scan, page): CPU time of every Chromium process over the trial (until every
  row is shown) divided by scans x pages: what one page costs per scan. It depends on the load
  less than a latency does, though a starved page paints fewer frames and so costs less per scan;
- CPU pressure: Linux PSI `some avg10` as typing ends: the share of time some runnable task
  waited for a core (near 100 % means every latency here includes queueing for the CPU);
- rows never shown: (scan, page) pairs whose row never appeared. The overview shows the newest
  30 scans, so a page more than 30 scans behind paints only the newest and skips the rest by
  design; the latencies above are of the rows that were shown.

Rounds (bench/harness.py): for each page count, every round types at 10 and at 100 scans/s,
the order alternating per round. Target: scan -> DOM p99 under 50 ms at 100 scans/s with 10 pages.

With --against DIR there are two whole sites (broker, hub, edge, N pages in a Chromium of
their own): the base runs the hub, and so the page it serves, from the checkout in DIR, the
other from this one; every round runs both at every rate, order alternating, and the report
adds this / base per round for the latencies, the browser CPU per (scan, page) and the hub CPU.
The idle site's pages wait meanwhile; each site's browser CPU is its own Chromium's.

With --floor there is one more whole site whose pages are the floor: the same hub and live
feed, and a page that does the least a page can (FLOOR_PAGE below: an EventSource on the same
feed and, in the next animation frame, one bare one-cell row per scan, no styles). Its
browser CPU per (scan, page) is what Chromium itself costs for that feed on this machine,
whatever a page draws; the report adds overview / floor per round.

All N browsers run on the hub's own machine here, sharing its cores with the hub, the broker
and the edge; on a floor each page runs on its own tablet. commit -> SSE is the hub's share
whatever the pages run on; commit -> DOM adds what the browser on this machine took.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
import tty
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import chromium_trace  # noqa: E402
from bench.harness import Comparison, Metrics, pct, report, run_rounds_async  # noqa: E402
from bench.rig import CpuMeter, HubProcess, add_node_user, cpu_s, private_broker, start_hub  # noqa: E402
from tests.support import add_web_user, api_token, toml_text  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
# Headless, and a supervisor's page is in the foreground: no background throttling of timers or frames.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
                 "--disable-backgrounding-occluded-windows"]
NODE = "pi-dock"
TARGET_P99_MS = 50.0
ROW_WAIT_S = 30.0  # every page must show every scan within this, or the trial counts the rows never shown
PAGE_TIMEOUT_MS = 120_000  # opening 50 pages on a busy 2-core machine is slow; this is set-up, not measured
POLL_S = 0.5
# --trace: every renderer's main thread, compositor and raster work, with each task's CPU time (tdur).
TRACE_CATEGORIES = ["toplevel", "devtools.timeline", "disabled-by-default-devtools.timeline", "blink", "cc", "v8"]

# What --against compares, this / base within each round: latency and what the pages and hub cost.
COMPARED = ("scan_dom_p99_ms", "commit_dom_p99_ms", "commit_sse_p99_ms", "browser_cpu_ms_per_scan_page", "hub_cpu_pct")

OBSERVER_JS = """() => {
  window.__seen = {};
  const body = document.querySelector('#scans tbody');
  // Only the rows each mutation added: the page's own work, not a scan of the table per frame.
  new MutationObserver((records) => {
    const t = performance.timeOrigin + performance.now();
    for (const record of records) {
      for (const tr of record.addedNodes) {
        const id = tr.dataset && tr.dataset.scanId;
        if (id !== undefined && !(id in window.__seen)) window.__seen[id] = t;
      }
    }
  }).observe(body, {childList: true});
  for (const tr of body.querySelectorAll('tr[data-scan-id]')) window.__seen[tr.dataset.scanId] = 0;
}"""
TAKE_SEEN_JS = "() => { const s = window.__seen; window.__seen = {}; return s; }"
# Before the page's own script: stamp each live message when the page's EventSource delivers it,
# so commit -> DOM splits into delivery (hub, browser process, IPC) and the page's work. The
# message is kept as it came and parsed when the benchmark takes it, so the page does not parse
# every message twice while it is being measured.
MESSAGE_STAMP_JS = """(() => {
  window.__msg = [];
  const Original = window.EventSource;
  window.EventSource = class extends Original {
    constructor(...args) {
      super(...args);
      this.addEventListener('message', (ev) => { window.__msg.push([performance.timeOrigin + performance.now(), ev.data]); });
    }
  };
})();"""
# The floor page (--floor): written into a page already on the hub's origin (its cookies, its
# feed), it shows each scan of the live feed as a bare row in the next animation frame, and stamps
# messages as MESSAGE_STAMP_JS does: what Chromium costs to show this feed with no page work.
FLOOR_PAGE = """<!doctype html><title>floor</title><div id="live" data-state="wait"></div>
<table id="scans"><tbody></tbody></table>
<script>
window.__msg = [];
const body = document.querySelector('#scans tbody'), pending = [];
let queued = false;
function paint() {
  queued = false;
  for (const id of pending.splice(0)) {
    const tr = document.createElement('tr'), td = document.createElement('td');
    tr.dataset.scanId = id; td.textContent = id; tr.append(td); body.prepend(tr);
  }
  while (body.rows.length > 30) body.deleteRow(-1);
}
const source = new EventSource('/api/v1/live?stock=0');
source.onopen = () => { document.getElementById('live').dataset.state = 'ok'; };
source.onmessage = (ev) => {
  window.__msg.push([performance.timeOrigin + performance.now(), ev.data]);
  for (const s of JSON.parse(ev.data).scans || []) pending.push(String(s.id));
  if (!queued) { queued = true; requestAnimationFrame(paint); }
};
</script>"""
TAKE_MSG_JS = """() => {
  const seen = {};
  for (const [t, data] of window.__msg) for (const s of JSON.parse(data).scans || []) if (!(s.id in seen)) seen[s.id] = t;
  window.__msg = [];
  return seen;
}"""


def chromium_roots() -> set[int]:
    """This process's Chromium browser processes (a Chromium whose parent is not one), via /proc's parent links."""
    parent, name = _process_table()
    mine = _descendants(parent, {os.getpid()})
    return {pid for pid in mine if name.get(pid, "").startswith("chrom")
            and not name.get(parent.get(pid, 0), "").startswith("chrom")}


def browser_pids(root: int) -> list[int]:
    """A Chromium's processes (browser, renderers, GPU, network): the root and its descendants."""
    parent, name = _process_table()
    return [pid for pid in _descendants(parent, {root}) if name.get(pid, "").startswith("chrom")]


def _process_table() -> tuple[dict[int, int], dict[int, str]]:
    parent: dict[int, int] = {}
    name: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                head, tail = fh.read().rsplit(")", 1)
        except OSError:
            continue  # ended meanwhile
        parent[int(entry)] = int(tail.split()[1])
        name[int(entry)] = head.split("(", 1)[1]
    return parent, name


def _descendants(parent: dict[int, int], roots: set[int]) -> set[int]:
    mine, grew = set(roots), True
    while grew:
        grown = {pid for pid, ppid in parent.items() if ppid in mine} - mine
        mine |= grown
        grew = bool(grown)
    return mine


def browser_cpu_s(root: int) -> float:
    """CPU seconds every process of one Chromium has used so far (0 before it is launched)."""
    total = 0.0
    if not root:
        return total
    for pid in browser_pids(root):
        with contextlib.suppress(OSError):  # ended meanwhile
            total += cpu_s(pid)
    return total


def cpu_pressure_pct() -> float:
    """Share of the last 10 s in which some runnable task waited for a CPU (Linux PSI), or NaN."""
    try:
        with open("/proc/pressure/cpu") as fh:
            return float(fh.readline().split()[1].split("=")[1])
    except (OSError, IndexError, ValueError):
        return float("nan")


def gtin13(n: int) -> str:
    """A valid GTIN-13 (GS1 check digit) unique to scan number n."""
    body = f"20{n:010d}"  # prefix 20: in-store numbers, never a real product
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(body))
    return body + str((10 - total % 10) % 10)


class Site:
    """Hub, edge agent with a pty scanner, and the open pages."""

    def __init__(self, hub: HubProcess, master_fd: int, floor: bool = False) -> None:
        self.hub = hub
        self.floor = floor  # its pages are FLOOR_PAGE, not the overview
        self.master_fd = master_fd
        self.pages: list[Any] = []
        self.browser: Any = None
        self.browser_root = 0  # its Chromium's browser process: the CPU counted is this site's pages' only
        self.next_scan = 1
        self.sse_seen_ms: dict[int, float] = {}  # scan id -> when this process's own SSE stream carried it

    async def listen(self) -> None:
        """One SSE client in this process: splits commit -> DOM into the hub's part and the browser's."""
        import aiohttp
        token = api_token(self.hub.config, role="viewer", name="bench-sse")
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as session, \
                session.get(f"{self.hub.base_url}/api/v1/live?stock=0", timeout=aiohttp.ClientTimeout()) as resp:
            async for line in resp.content:
                if line.startswith(b"data: "):
                    now = time.time() * 1000
                    for scan in json.loads(line[6:]).get("scans", ()):
                        self.sse_seen_ms.setdefault(scan["id"], now)

    async def trial(self, rate: int, seconds: float) -> Metrics:
        """Type `rate` scans/s for `seconds`; wait for every row on every page; the latencies."""
        count = max(1, int(rate * seconds))
        typed_ms: dict[str, float] = {}
        for page in self.pages:
            await page.evaluate(TAKE_SEEN_JS)  # rows of earlier trials are not this one's
            await page.evaluate(TAKE_MSG_JS)
        hub_cpu = CpuMeter(self.hub.proc.pid)
        browser_cpu0_s = browser_cpu_s(self.browser_root)
        start = time.perf_counter()
        for i in range(count):
            pause = start + i / rate - time.perf_counter()
            if pause > 0:
                await asyncio.sleep(pause)
            gtin = gtin13(self.next_scan)
            self.next_scan += 1
            typed_ms[gtin] = time.time() * 1000
            os.write(self.master_fd, gtin.encode() + b"\r\n")
        hub_cpu_pct = hub_cpu.percent()
        cpu_pressure = cpu_pressure_pct()
        events = await self._events(typed_ms)
        ids = {str(e["id"]) for e in events.values()}
        seen: list[dict[str, float]] = [{} for _ in self.pages]
        deadline = time.monotonic() + ROW_WAIT_S
        while time.monotonic() < deadline:
            for n, page in enumerate(self.pages):
                if ids <= seen[n].keys():
                    continue
                for scan_id, t in (await page.evaluate(TAKE_SEEN_JS)).items():
                    seen[n].setdefault(scan_id, t)  # the first sighting: a later mutation re-stamps old rows
            if all(ids <= s.keys() for s in seen):
                break
            await asyncio.sleep(POLL_S)
        # Every row is on every page (or given up on): what the browsers spent on this trial's scans.
        browser_cpu_ms = 1000 * (browser_cpu_s(self.browser_root) - browser_cpu0_s)
        delivered = [await page.evaluate(TAKE_MSG_JS) for page in self.pages]
        scan_dom, commit_dom, hop, commit_sse, commit_msg, scan_accept = [], [], [], [], [], []
        missing = 0
        for gtin, event in events.items():
            hop.append(event["received_ms"] - event["accepted_ms"])
            scan_accept.append(event["accepted_ms"] - typed_ms[gtin])
            if event["id"] in self.sse_seen_ms:
                commit_sse.append(self.sse_seen_ms[event["id"]] - event["committed_ms"])
            for got in delivered:
                if str(event["id"]) in got:
                    commit_msg.append(got[str(event["id"])] - event["committed_ms"])
            for s in seen:
                t = s.get(str(event["id"]))
                if t is None:
                    missing += 1
                    continue
                scan_dom.append(t - typed_ms[gtin])
                commit_dom.append(t - event["committed_ms"])
        missing += (len(typed_ms) - len(events)) * len(self.pages)
        return {"scan_dom_p50_ms": pct(scan_dom, 50), "scan_dom_p99_ms": pct(scan_dom, 99),
                "scan_dom_max_ms": max(scan_dom, default=float("nan")),
                "commit_dom_p50_ms": pct(commit_dom, 50), "commit_dom_p99_ms": pct(commit_dom, 99),
                "commit_sse_p50_ms": pct(commit_sse, 50), "commit_sse_p99_ms": pct(commit_sse, 99),
                "commit_msg_p50_ms": pct(commit_msg, 50), "commit_msg_p99_ms": pct(commit_msg, 99),
                "scan_accept_p99_ms": pct(scan_accept, 99), "mqtt_hop_p99_ms": pct(hop, 99), "hub_cpu_pct": hub_cpu_pct,
                "browser_cpu_ms_per_scan_page": browser_cpu_ms / (count * max(1, len(self.pages))),
                "cpu_pressure_pct": cpu_pressure, "rows_never_shown": float(missing)}

    async def _events(self, typed_ms: dict[str, float]) -> dict[str, dict[str, Any]]:
        """The ledger's scan events for these GTINs, waiting until all are committed."""
        deadline = time.monotonic() + ROW_WAIT_S
        found: dict[str, dict[str, Any]] = {}
        first = min(typed_ms.values()) - 1000
        while time.monotonic() < deadline:
            found = await asyncio.to_thread(self._read_events, first)
            found = {g: e for g, e in found.items() if g in typed_ms}
            if len(found) == len(typed_ms):
                break
            await asyncio.sleep(0.1)
        return found

    def _read_events(self, since_ms: float) -> dict[str, dict[str, Any]]:
        db = self.hub.ledger()
        try:
            rows = db.execute("SELECT id, accepted_ms, received_ms, committed_ms, body FROM events "
                              "WHERE kind='scan' AND committed_ms >= ?", (since_ms,)).fetchall()
        finally:
            db.close()
        out = {}
        for event_id, accepted, received, committed, body in rows:
            gtin = json.loads(body).get("gtin", "")
            out[gtin[-13:]] = {"id": event_id, "accepted_ms": accepted, "received_ms": received,
                               "committed_ms": committed}
        return out


async def log_in(browser: Any, hub: HubProcess) -> Any:
    """Log in once through the real form; the cookies every page's context starts with."""
    password = add_web_user(hub.config, "bench", "viewer")
    login = await browser.new_context()
    page = await login.new_page()
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    await page.goto(f"{hub.base_url}/login")
    await page.get_by_label("User name").fill("bench")
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Log in").click()
    await page.wait_for_selector('#live[data-state="ok"]')
    state = await login.storage_state()
    await login.close()
    return state


async def open_pages(browser: Any, hub: HubProcess, state: Any, count: int, floor: bool = False) -> list[Any]:
    """`count` overview (or floor) pages, each in its own browser context (its own connections, as separate tablets)."""
    pages = []
    for _ in range(count):
        # The floor's inline script is the bench's, not the hub's: the hub's CSP (script-src 'self') is bypassed for it.
        context = await browser.new_context(storage_state=state, viewport={"width": 1280, "height": 800}, bypass_csp=floor)
        page = await context.new_page()
        page.set_default_timeout(PAGE_TIMEOUT_MS)
        if floor:
            await page.goto(f"{hub.base_url}/api/v1/me")  # the hub's origin, with its cookies
            await page.set_content(FLOOR_PAGE)
        else:
            await page.add_init_script(MESSAGE_STAMP_JS)
            await page.goto(f"{hub.base_url}/")
        await page.wait_for_selector('#live[data-state="ok"]', state="attached")
        await page.evaluate(OBSERVER_JS)
        pages.append(page)
    return pages


@contextlib.asynccontextmanager
async def open_site(work: Path, flush_ms: int | None, code_dir: Path | None, floor: bool = False) -> AsyncIterator[Site]:
    """Broker, hub (from code_dir, else this checkout), an edge with a pty scanner, and the bench's SSE listener."""
    work.mkdir(parents=True)
    with private_broker(work) as broker:
        hub = start_hub(broker, work / "hub", code_dir, **({"live": {"flush_ms": flush_ms}} if flush_ms else {}))
        master, slave = os.openpty()
        tty.setraw(slave)
        node_password = add_node_user(broker, NODE)
        edge_cfg = work / "edge.toml"
        edge_cfg.write_text(toml_text({
            "node": {"name": NODE, "site": "bench"},
            "mqtt": {"host": broker.host, "port": broker.port, "password": node_password},
            "outbox": {"path": str(work / "edge" / "outbox.sqlite3")},
            "state": {"path": str(work / "edge" / "state.json")},
            "log": {"level": "WARNING"},
            "scanner": [{"name": "dock", "type": "serial", "port": os.ttyname(slave), "terminator": "crlf",
                         "mode": "receive"}]}))
        edge = await asyncio.create_subprocess_exec(sys.executable, "-m", "edge.cli", "--log-level", "WARNING", "run",
                                                    "--config", str(edge_cfg), cwd=Path(__file__).resolve().parent.parent,
                                                    stdout=open(work / "edge.log", "ab"), stderr=-2)
        site = Site(hub, master, floor)
        listener = asyncio.create_task(site.listen())
        try:
            # One scan through the whole path before any page opens: the table exists, the link is up.
            await site.trial(1, 1)
            yield site
        finally:
            listener.cancel()
            edge.terminate()
            await edge.wait()
            hub.stop()
            os.close(master)
            os.close(slave)


async def launch_browser(pw: Any, site: Site, hub: HubProcess) -> Any:
    """A Chromium of the site's own (its CPU counted apart from the other site's), logged in once."""
    before = chromium_roots()
    site.browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    new = chromium_roots() - before
    if len(new) != 1:
        raise SystemExit(f"could not tell which Chromium was just launched: new browser processes {sorted(new)}")
    site.browser_root = new.pop()
    return await log_in(site.browser, hub)


async def measure(page_counts: list[int], rates: list[int], seconds: float, rounds: int, work: Path,
                  flush_ms: int | None, trace: Path | None = None, against: Path | None = None,
                  floor: bool = False) -> list[str]:
    from playwright.async_api import async_playwright

    tables = []
    async with contextlib.AsyncExitStack() as stack:
        # With --against, two whole sites: the base (hub and page from that checkout) and this one.
        sites = {"this": await stack.enter_async_context(open_site(work / "this", flush_ms, None))}
        if against is not None:
            sites = {"base": await stack.enter_async_context(open_site(work / "base", flush_ms, against)), **sites}
        if floor:
            sites = {"floor": await stack.enter_async_context(open_site(work / "floor", flush_ms, None, floor=True)),
                     **sites}
        several = len(sites) > 1
        pw = await stack.enter_async_context(async_playwright())
        states = {label: await launch_browser(pw, site, site.hub) for label, site in sites.items()}
        try:
            for count in page_counts:
                started = time.monotonic()
                for label, site in sites.items():
                    site.pages = await open_pages(site.browser, site.hub, states[label], count, site.floor)
                print(f"{count} pages a site open in {time.monotonic() - started:.1f} s", file=sys.stderr)
                arms = {f"{label + ' ' if several else ''}{rate} scans/s": (lambda s=site, r=rate: s.trial(r, seconds))
                        for rate in rates for label, site in sites.items()}
                comparisons = [Comparison(f"{name}: scan->DOM p99 / MQTT hop p99", (name, "scan_dom_p99_ms"),
                                          (name, "mqtt_hop_p99_ms")) for name in arms]
                comparisons += [Comparison(f"{rate} scans/s: this / {label}, {metric}", (f"this {rate} scans/s", metric),
                                           (f"{label} {rate} scans/s", metric))
                                for label in sites if label != "this" for rate in rates for metric in COMPARED]
                result = await run_rounds_async(arms, rounds)
                code = (f", base {against}" if against else "") + (", floor page beside the overview" if floor else "")
                tables.append(report(result, comparisons, units={k: "ms" for k in (
                    "scan_dom_p50_ms", "scan_dom_p99_ms", "scan_dom_max_ms", "commit_dom_p50_ms",
                    "commit_dom_p99_ms", "commit_sse_p50_ms", "commit_sse_p99_ms", "commit_msg_p50_ms", "commit_msg_p99_ms",
                    "scan_accept_p99_ms", "mqtt_hop_p99_ms", "browser_cpu_ms_per_scan_page")} | {"hub_cpu_pct": "%", "cpu_pressure_pct": "%"},
                    title=f"scan to screen, {count} page{'s' if count > 1 else ''}{' a site' if several else ''}, "
                          f"{seconds:g} s per trial, live.flush_ms {sites['this'].hub.config.live_flush_ms}{code}"))
                print(tables[-1] + "\n", flush=True)
                if trace is not None:  # one more trial at the highest rate per site, traced: where a frame's CPU goes
                    for label, site in sites.items():
                        await site.browser.start_tracing(page=site.pages[0], categories=TRACE_CATEGORIES)
                        await site.trial(max(rates), seconds)
                        path = trace.with_name(f"{trace.stem}-{count}pages{'-' + label if several else ''}{trace.suffix}")
                        path.write_bytes(await site.browser.stop_tracing())
                        print(f"Chromium trace of one {max(rates)} scans/s trial ({label}): {path}", file=sys.stderr)
                        print(f"### where Chromium's CPU went ({label}, one traced trial; tracing adds its own cost)\n"
                              + chromium_trace.table(chromium_trace.summarise(json.loads(path.read_bytes())),
                                                     int(max(rates) * seconds), count) + "\n", flush=True)
                for site in sites.values():
                    for page in site.pages:
                        await page.context.close()
        finally:
            for site in sites.values():
                await site.browser.close()
    return tables


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", default="1,10", help="page counts, comma-separated (1,10,50 for the full table)")
    parser.add_argument("--rates", default="10,100", help="scans per second, comma-separated")
    parser.add_argument("--seconds", type=float, default=3.0, help="typing time per trial")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--flush-ms", type=int, default=None, help="the hub's live.flush_ms (default: its default)")
    parser.add_argument("--against", type=Path, default=None,
                        help="a checkout of another revision (git worktree add --detach DIR main): its hub and "
                             "page run as a second site, and every round runs both, for this / base ratios")
    parser.add_argument("--floor", action="store_true",
                        help="one more site whose pages are the floor (FLOOR_PAGE: a bare row per scan of the same "
                             "feed), every round, for overview / floor ratios: what Chromium itself costs")
    parser.add_argument("--trace", type=Path, default=None,
                        help="after each page count's rounds, trace one more trial into PATH-<n>pages.json "
                             "(open in ui.perfetto.dev; not part of the figures)")
    args = parser.parse_args()
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"{CHROMIUM} is missing (apt-get install -y chromium)")
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(measure([int(p) for p in args.pages.split(",")], [int(r) for r in args.rates.split(",")],
                            args.seconds, args.rounds, Path(tmp), args.flush_ms,
                            args.trace, args.against, args.floor))
    print(f"target: scan->DOM p99 < {TARGET_P99_MS:g} ms at 100 scans/s with 10 pages")


if __name__ == "__main__":
    main()
