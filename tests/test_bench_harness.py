"""The benchmark harness: rounds alternate their order, ratios are per round, the table shows spread and machine."""

from __future__ import annotations

import pytest

from bench.harness import Comparison, round_order, run_rounds
from bench.harness import report as harness_report


def test_trivial_pair_produces_a_table_of_per_round_ratios() -> None:
    calls: list[str] = []
    # The subject is exactly twice the baseline in every round, while both drift from round to round:
    # the per-round ratio must be 200 % every time even though the raw values spread widely.
    def machine_speed() -> float:  # changes every round, the same for both arms within a round
        return 10.0 * (1 + len(calls) // 2) ** 2

    def baseline() -> dict[str, float]:
        speed = machine_speed()
        calls.append("A")
        return {"rate": speed}

    def subject() -> dict[str, float]:
        speed = machine_speed()
        calls.append("B")
        return {"rate": 2 * speed}

    rounds = run_rounds({"A": baseline, "B": subject}, rounds=5, warmup=False, progress=lambda line: None)
    assert calls == ["A", "B", "B", "A", "A", "B", "B", "A", "A", "B"]
    assert [round_order(("A", "B"), i) for i in range(2)] == [("A", "B"), ("B", "A")]
    comparison = Comparison("B / A", ("B", "rate"), ("A", "rate"))
    table = harness_report(rounds, [comparison], units={"rate": "msg/s"}, title="trivial")
    assert "| B / A | 200% (200%-200%) |" in table
    assert "| A | rate |" in table and "msg/s" in table
    assert "cores" in table and "Python" in table and "loadavg before" in table
    assert "5 rounds" in table


def test_ratio_of_two_metrics_of_one_arm() -> None:
    rounds = run_rounds({"run": lambda: {"hop_ms": 2.0, "screen_ms": 6.0}}, rounds=5, warmup=False,
                        progress=lambda line: None)
    assert rounds.ratios(Comparison("screen / hop", ("run", "screen_ms"), ("run", "hop_ms"))) == [3.0] * 5


def test_no_arms_is_a_caller_mistake() -> None:
    with pytest.raises(ValueError):
        run_rounds({}, rounds=5)


def test_chromium_trace_splits_a_renderer_main_thread_by_what_it_did() -> None:
    from bench.chromium_trace import summarise, table

    def meta(pid: int, tid: int, process: str, thread: str) -> list[dict[str, object]]:
        return [{"ph": "M", "name": "process_name", "pid": pid, "tid": 0, "args": {"name": process}},
                {"ph": "M", "name": "thread_name", "pid": pid, "tid": tid, "args": {"name": thread}}]

    def span(pid: int, tid: int, name: str, ts: int, dur: int, cpu: int) -> dict[str, object]:
        return {"ph": "X", "pid": pid, "tid": tid, "name": name, "ts": ts, "dur": dur, "tdur": cpu}

    # One frame: a task (10 ms of CPU) holding the frame, which holds a script call (3 ms, 1 ms of
    # it a nested unnamed V8 event, so still script), a layout (2 ms) and a paint (1 ms); the rest
    # of the task is overhead. A raster worker spends 4 ms, the GPU process 5 ms in two tasks.
    events = [*meta(1, 11, "Renderer", "CrRendererMain"), *meta(1, 12, "Renderer", "CompositorTileWorker1"),
              *meta(2, 21, "GPU Process", "VizCompositorThread"),
              span(1, 11, "ThreadControllerImpl::RunTask", 0, 20_000, 10_000),
              span(1, 11, "ProxyMain::BeginMainFrame", 100, 19_000, 8_000),
              span(1, 11, "FireAnimationFrame", 200, 4_000, 3_000),
              span(1, 11, "V8.SomethingInside", 300, 1_500, 1_000),
              span(1, 11, "Layout", 5_000, 2_500, 2_000),
              {"ph": "B", "pid": 1, "tid": 11, "name": "Paint", "ts": 9_000, "tts": 50_000},
              {"ph": "E", "pid": 1, "tid": 11, "name": "Paint", "ts": 10_000, "tts": 51_000},
              span(1, 12, "RasterTask", 0, 5_000, 4_000),
              span(2, 21, "DrawFrame", 0, 3_000, 2_000), span(2, 21, "DrawFrame", 5_000, 3_000, 3_000)]
    summary = summarise({"traceEvents": events})
    assert summary.frames == 1 and summary.renderers == 1
    assert dict(summary.cpu_ms) == {"renderer main: script": 3.0, "renderer main: layout": 2.0,
                                    "renderer main: paint": 1.0, "renderer main: other (task overhead, IPC)": 4.0,
                                    "renderer: CompositorTileWorker": 4.0, "gpu process: VizCompositorThread": 5.0}
    shown = table(summary, scans=2, pages=1)
    assert "| renderer main: script | 3.0 | 3.00 | 1.50 |" in shown
    assert "| all shown | 19.0 | 19.00 | 9.50 |" in shown
