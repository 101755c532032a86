"""Where a Chromium trace's CPU went: the page's script, style, layout, paint, raster, compositing.

    .venv/bin/python bench/chromium_trace.py /tmp/s2s-10pages.json --scans 300 --pages 10

Reads a trace written by `bench/scan_to_screen.py --trace` (Chromium's JSON trace format) and
sums each thread's CPU time (`tdur`, thread time, not wall time: a starved thread's waits do not
count) by what it was doing. A renderer's main thread is split by the timeline events the
DevTools performance panel uses (script, style, layout, pre-paint, paint, ...); each event's own
time (its time minus its children's) goes to the nearest enclosing event that has a category, so
nothing is counted twice. The other threads are summed whole: the renderer's compositor and
raster workers, the GPU process (here the software display compositor: headless Chromium with
`--disable-gpu` rasterises and composites on the CPU), the browser process and the network
service. Frames are the renderers' main-thread frames (`ProxyMain::BeginMainFrame`), so
"per frame" is a renderer frame, whichever page drew it.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# A renderer main thread's events, by what the DevTools performance panel calls them.
MAIN_THREAD_CATEGORY = {
    "FunctionCall": "script", "EventDispatch": "script", "TimerFire": "script", "FireAnimationFrame": "script",
    "EvaluateScript": "script", "v8.compile": "script", "v8.run": "script", "V8.Execute": "script",
    "RunMicrotasks": "script", "v8.callFunction": "script", "FireIdleCallback": "script",
    "XHRReadyStateChange": "script", "XHRLoad": "script",
    "MinorGC": "gc", "MajorGC": "gc", "BlinkGC.AtomicPhase": "gc", "V8.GCScavenger": "gc",
    "V8.GCIncrementalMarking": "gc", "V8.GCFinalizeMC": "gc", "CppGC.IncrementalSweep": "gc",
    "UpdateLayoutTree": "style", "RecalculateStyles": "style", "ParseAuthorStyleSheet": "style",
    "Layout": "layout", "UpdateLayout": "layout",
    "PrePaint": "pre-paint",
    "Paint": "paint", "PaintImage": "paint", "UpdateLayer": "paint", "UpdateLayerTree": "paint",
    "Layerize": "layerize", "PaintArtifactCompositor::Update": "layerize",
    "Commit": "commit", "ProxyMain::BeginMainFrame::commit": "commit",
    "HitTest": "hit test",
    "ParseHTML": "parse HTML",
    "ResourceReceivedData": "loading", "ResourceReceiveResponse": "loading", "ResourceFinish": "loading",
}
FRAME_EVENTS = ("ProxyMain::BeginMainFrame", "BeginMainThreadFrame")
MAIN_ORDER = ("script", "gc", "style", "layout", "pre-paint", "paint", "layerize", "commit", "hit test",
              "parse HTML", "loading", "other (task overhead, IPC)")


@dataclass
class Span:
    """One timed event on one thread: wall start and end (µs), thread CPU time (µs)."""

    name: str
    start_us: float
    end_us: float
    cpu_us: float
    children_cpu_us: float = 0.0
    category: str = ""


@dataclass
class Summary:
    """CPU ms per (process kind, thread or main-thread category), and the renderer frames counted."""

    cpu_ms: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    frames: int = 0
    renderers: int = 0


def _spans(events: Iterable[dict[str, Any]]) -> dict[tuple[int, int], list[Span]]:
    """Complete ('X') events and begin/end ('B'/'E') pairs as spans, per (pid, tid)."""
    spans: dict[tuple[int, int], list[Span]] = defaultdict(list)
    open_: dict[tuple[int, int], list[dict[str, Any]]] = defaultdict(list)
    for ev in events:
        ph, key = ev.get("ph"), (ev.get("pid", 0), ev.get("tid", 0))
        if ph == "X":
            dur = float(ev.get("dur", 0))
            cpu = float(ev.get("tdur", dur))
            spans[key].append(Span(ev.get("name", ""), float(ev["ts"]), float(ev["ts"]) + dur, cpu))
        elif ph == "B":
            open_[key].append(ev)
        elif ph == "E" and open_[key]:
            begin = open_[key].pop()
            dur = float(ev["ts"]) - float(begin["ts"])
            cpu = float(ev["tts"]) - float(begin["tts"]) if "tts" in ev and "tts" in begin else dur
            spans[key].append(Span(begin.get("name", ""), float(begin["ts"]), float(ev["ts"]), cpu))
    return spans


def _self_cpu(spans: list[Span], categorise: bool) -> tuple[float, dict[str, float]]:
    """The thread's CPU (its top-level spans) and, if asked, its spans' own CPU by inherited category."""
    spans.sort(key=lambda s: (s.start_us, -s.end_us))
    stack: list[Span] = []
    total = 0.0
    for span in spans:
        while stack and stack[-1].end_us <= span.start_us:
            stack.pop()
        parent = stack[-1] if stack else None
        if parent is None:
            total += span.cpu_us
        else:
            parent.children_cpu_us += span.cpu_us
        span.category = MAIN_THREAD_CATEGORY.get(span.name, "") or (parent.category if parent else "")
        stack.append(span)
    by_category: dict[str, float] = defaultdict(float)
    if categorise:
        for span in spans:
            own = max(0.0, span.cpu_us - span.children_cpu_us)
            by_category[span.category or "other (task overhead, IPC)"] += own
    return total, by_category


def summarise(trace: dict[str, Any] | list[dict[str, Any]]) -> Summary:
    """CPU by process kind and thread, the renderers' main threads split by category."""
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    process: dict[int, str] = {}
    thread: dict[tuple[int, int], str] = {}
    for ev in events:
        if ev.get("ph") == "M" and ev.get("name") == "process_name":
            process[ev["pid"]] = ev.get("args", {}).get("name", "")
        elif ev.get("ph") == "M" and ev.get("name") == "thread_name":
            thread[(ev["pid"], ev["tid"])] = ev.get("args", {}).get("name", "")
    out = Summary()
    renderer_pids = set()
    for key, spans in _spans(events).items():
        kind = process.get(key[0], "?")
        name = thread.get(key, "?")
        main = kind == "Renderer" and name == "CrRendererMain"
        if main:
            renderer_pids.add(key[0])
            out.frames += sum(1 for s in spans if s.name == FRAME_EVENTS[0]) or \
                sum(1 for s in spans if s.name == FRAME_EVENTS[1])
        total, by_category = _self_cpu(spans, categorise=main)
        if main:
            for category, cpu_us in by_category.items():
                out.cpu_ms[f"renderer main: {category}"] += cpu_us / 1000
        else:
            # Pools' numbered workers are one line each kind: CompositorTileWorker1..4 are raster.
            label = name.rstrip("0123456789/ ") or "?"
            out.cpu_ms[f"{kind.lower() or '?'}: {label}"] += total / 1000
    out.renderers = len(renderer_pids)
    return out


def table(summary: Summary, scans: int = 0, pages: int = 0) -> str:
    """A markdown table: CPU ms in all, per renderer frame and, given scans and pages, per (scan, page)."""
    per_scan = scans * pages
    lines = [f"{summary.renderers} renderers, {summary.frames} renderer frames"
             + (f", {scans} scans x {pages} pages" if per_scan else ""), "",
             "| where | CPU ms | per frame | per (scan, page) |", "| --- | ---: | ---: | ---: |"]

    def order(label: str) -> tuple[int, int, str]:
        if label.startswith("renderer main: "):
            category = label.removeprefix("renderer main: ")
            return 0, MAIN_ORDER.index(category) if category in MAIN_ORDER else len(MAIN_ORDER), label
        return 1, 0, label

    total = 0.0
    for label in sorted(summary.cpu_ms, key=order):
        ms = summary.cpu_ms[label]
        if ms < 0.5:
            continue
        total += ms
        lines.append(f"| {label} | {ms:,.1f} | {ms / max(1, summary.frames):.2f} | "
                     f"{ms / per_scan if per_scan else float('nan'):.2f} |")
    lines.append(f"| all shown | {total:,.1f} | {total / max(1, summary.frames):.2f} | "
                 f"{total / per_scan if per_scan else float('nan'):.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("trace", type=Path)
    parser.add_argument("--scans", type=int, default=0, help="scans typed in the traced trial")
    parser.add_argument("--pages", type=int, default=0, help="pages open in the traced trial")
    args = parser.parse_args()
    print(table(summarise(json.loads(args.trace.read_bytes())), args.scans, args.pages))


if __name__ == "__main__":
    main()
