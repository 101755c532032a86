"""Paired, interleaved benchmark rounds: every figure is a median of same-round ratios, with its spread.

On a shared two-core machine the speed available to one process drifts by tens of percent
within a minute (other jobs, CPU frequency, page cache), so a baseline measured once and a
subject measured once a minute later say little. Here each round runs every arm once, in an
order that reverses from one round to the next (A B, B A, A B, ...), and each comparison is
the ratio of two values measured in the same round, seconds apart. The figure reported is
the median of those per-round ratios, with their min and max, next to the machine and its
load (loadavg before and after) so a reader can judge how quiet it was.

An arm returns a dict of named metrics, so one trial can also carry its own in-run baseline
(e.g. the MQTT hop's p99 measured in the same run as scan-to-screen): compare two metrics of
the same arm with `Comparison(subject=("arm", "a"), baseline=("arm", "b"))`.

    rounds = run_rounds({"bare": bare, "hub": hub}, rounds=5)
    print(report(rounds, [Comparison("hub / bare", ("hub", "events_per_s"), ("bare", "events_per_s"))]))
"""

from __future__ import annotations

import asyncio
import os
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

Metrics = dict[str, float]
Trial = Callable[[], Metrics]
MIN_ROUNDS = 5  # fewer pairs than this and a median of ratios is still at the mercy of one noisy minute


@dataclass(frozen=True)
class Comparison:
    """subject / baseline, each named (arm, metric), computed within every round."""

    label: str
    subject: tuple[str, str]
    baseline: tuple[str, str]


@dataclass
class Rounds:
    """What every arm measured in every round, in round order, and the load around the runs."""

    arms: tuple[str, ...]
    values: dict[str, list[Metrics]] = field(default_factory=dict)
    orders: list[tuple[str, ...]] = field(default_factory=list)
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    elapsed_s: float = 0.0

    def series(self, arm: str, metric: str) -> list[float]:
        """One metric of one arm, per round."""
        return [m[metric] for m in self.values[arm]]

    def ratios(self, comparison: Comparison) -> list[float]:
        """subject / baseline for each round (only rounds where the baseline is non-zero)."""
        subject = self.series(*comparison.subject)
        baseline = self.series(*comparison.baseline)
        return [s / b for s, b in zip(subject, baseline, strict=True) if b]


def round_order(arms: Sequence[str], index: int) -> tuple[str, ...]:
    """Arms in the order round `index` runs them: as given on even rounds, reversed on odd ones."""
    return tuple(arms) if index % 2 == 0 else tuple(reversed(arms))


def run_rounds(arms: Mapping[str, Trial], rounds: int = MIN_ROUNDS, warmup: bool = True,
               progress: Callable[[str], None] | None = None) -> Rounds:
    """Run every arm once per round, order alternating per round; a first unreported round warms caches."""
    if not arms:
        raise ValueError("run_rounds needs at least one arm")
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    say = progress or (lambda line: print(line, file=sys.stderr, flush=True))
    names = tuple(arms)
    result = Rounds(arms=names, values={name: [] for name in names}, load_before=os.getloadavg())
    started = time.monotonic()
    if warmup:
        for name in names:
            say(f"warm-up: {name}")
            arms[name]()
    for index in range(rounds):
        order = round_order(names, index)
        result.orders.append(order)
        for name in order:
            metrics = arms[name]()
            result.values[name].append(metrics)
            shown = ", ".join(f"{k}={v:,.4g}" for k, v in metrics.items())
            say(f"round {index + 1}/{rounds}: {name}: {shown}")
    result.elapsed_s = time.monotonic() - started
    result.load_after = os.getloadavg()
    return result


async def run_rounds_async(arms: Mapping[str, Callable[[], Awaitable[Metrics]]], rounds: int = MIN_ROUNDS,
                           warmup: bool = True) -> Rounds:
    """run_rounds for trials that need the running event loop: the rounds run in a thread, each trial back here."""
    loop = asyncio.get_running_loop()

    def on_loop(arm: Callable[[], Awaitable[Metrics]]) -> Trial:
        async def trial() -> Metrics:
            return await arm()
        return lambda: asyncio.run_coroutine_threadsafe(trial(), loop).result()

    return await asyncio.to_thread(run_rounds, {name: on_loop(arm) for name, arm in arms.items()}, rounds, warmup)


def spread(values: Sequence[float]) -> tuple[float, float, float]:
    """(median, min, max)."""
    return statistics.median(values), min(values), max(values)


def fmt_spread(values: Sequence[float], unit: str = "", percent: bool = False) -> str:
    """'median (min-max)' with thousands separators, or as percentages."""
    if not values:
        return "-"
    mid, low, high = spread(values)
    if percent:
        return f"{mid:.0%} ({low:.0%}-{high:.0%})"
    digits = 0 if abs(mid) >= 100 else 1 if abs(mid) >= 10 else 2
    return f"{mid:,.{digits}f} ({low:,.{digits}f}-{high:,.{digits}f}){' ' + unit if unit else ''}"


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (or the platform's processor string)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_line() -> str:
    """CPU model, cores, kernel and Python: the machine a figure belongs to."""
    return (f"{cpu_model()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}")


def load_line(rounds: Rounds) -> str:
    """The 1/5/15-minute load averages before and after the rounds."""
    def three(load: tuple[float, float, float]) -> str:
        return " / ".join(f"{x:.2f}" for x in load)
    return f"loadavg before {three(rounds.load_before)}, after {three(rounds.load_after)} (1/5/15 min)"


def report(rounds: Rounds, comparisons: Sequence[Comparison] = (), units: Mapping[str, str] | None = None,
           title: str = "") -> str:
    """A markdown table: each arm's metrics as median (min-max) over rounds, then each comparison's ratios."""
    units = units or {}
    n = len(rounds.orders)
    if len(rounds.arms) > 1:
        how = f"order alternated per round ({', '.join(rounds.arms)} / {', '.join(reversed(rounds.arms))})"
    else:
        how = "one arm; its in-run baseline is a metric of the same trial"
    smoke = f"; fewer than {MIN_ROUNDS} rounds: a smoke run, not a figure" if n < MIN_ROUNDS else ""
    lines = [f"## {title}" if title else "", f"machine: {machine_line()}", load_line(rounds),
             f"{n} rounds, {how}, {rounds.elapsed_s:.0f} s{smoke}", "",
             "| arm | metric | median (min-max) over rounds |", "| --- | --- | ---: |"]
    for arm in rounds.arms:
        metric_names = list(rounds.values[arm][0]) if rounds.values[arm] else []
        for metric in metric_names:
            lines.append(f"| {arm} | {metric} | {fmt_spread(rounds.series(arm, metric), units.get(metric, ''))} |")
    if comparisons:
        lines += ["", "| comparison | per-round ratio: median (min-max) | per round |", "| --- | ---: | --- |"]
        for c in comparisons:
            ratios = rounds.ratios(c)
            each = " ".join(f"{r:.0%}" for r in ratios)
            lines.append(f"| {c.label} | {fmt_spread(ratios, percent=True)} | {each} |")
    return "\n".join(line for line in lines if line is not None).lstrip("\n")


def pct(values: Sequence[float], p: float) -> float:
    """The p-th percentile (nearest rank) of values; NaN when there are none."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]
