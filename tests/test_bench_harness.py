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
