"""CPU cost of the shelf path: can one core serve 32 bins at 80 samples/s in under 5 %?

Feeds pre-generated HX711-bridge lines (4 channels per controller, noise, spikes, and a
pick with hand motion every few seconds) through the real reader's line handling, the
decoder and the per-bin pipelines, and compares with a baseline measured in the same run:
bare line parsing (split + int), in rounds that alternate their order (bench/harness.py).
Prints CPU seconds per million samples and the share of one core that 32 bins x 80
samples/s would take. Not a test: timings never pass or fail.

    .venv/bin/python bench/shelf_cpu.py [--seconds 20] [--rounds 5]
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import Comparison, Metrics, report, run_rounds  # noqa: E402
from edge.shelf.calibration import Calibration  # noqa: E402
from edge.shelf.pipeline import BinPipeline, PipelineParams  # noqa: E402
from edge.shelf.protocols import Hx711Bridge  # noqa: E402
from edge.shelf.protocols.hx711_bridge import encode_line  # noqa: E402
from edge.shelf.reader import ControllerReader  # noqa: E402

CHANNELS = 4
BINS = 32
RATE_HZ = 80.0
COUNTS_PER_G = 100.0


def make_lines(seconds: float, seed: int = 1) -> bytes:
    """One controller's stream: 4 bins at rest with noise, a hand picking every 7 s on one of them."""
    rng = random.Random(seed)
    lines = []
    n = int(seconds * RATE_HZ)
    for i in range(n):
        t = i / RATE_HZ
        hand = 400 * (0.5 + 0.5 * math.sin(2 * math.pi * 1.3 * t)) if (t % 7.0) < 1.0 else 0.0
        values = []
        for ch in range(CHANNELS):
            grams = 500.0 + ch * 100 + (hand if ch == int(t / 7) % CHANNELS else 0.0) + rng.gauss(0, 0.15)
            if rng.random() < 0.002:
                grams += 60
            values.append(str(round(grams * COUNTS_PER_G)))
        lines.append(encode_line(f"D {i & 0xFFFF} {' '.join(values)}"))
    return b"".join(lines)


def cpu_seconds(fn: Callable[[], None]) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=20.0, help="simulated seconds per controller, per trial")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    stream = make_lines(args.seconds)
    chunks = [stream[i:i + 4096] for i in range(0, len(stream), 4096)]  # like serial reads
    lines = stream.split(b"\n")[:-1]
    samples = len(lines) * CHANNELS
    controllers = BINS // CHANNELS

    def baseline() -> None:
        for _ in range(controllers):
            for line in lines:
                body = line.rpartition(b"*")[0].split()
                [int(v) for v in body[2:]]

    def decode_only() -> None:
        for _ in range(controllers):
            proto = Hx711Bridge(CHANNELS)
            for line in lines:
                proto.decode(line)

    def full_path() -> None:
        params = PipelineParams(rate_hz=RATE_HZ, heartbeat_s=60.0)
        for c in range(controllers):
            pipes = [BinPipeline(f"B-{c}-{ch}", params, Calibration(scale_per_g=COUNTS_PER_G,
                                                                   local_unit_weight_g=25.0), lambda _o: None)
                     for ch in range(CHANNELS)]
            reader = ControllerReader(f"c{c}", "/dev/null", 115200, Hx711Bridge(CHANNELS), pipes, RATE_HZ, 5.0, 10.0,
                                      lambda _o: None)
            buf = b""
            for chunk in chunks:
                buf = reader._lines(buf + chunk)

    total = samples * controllers
    need_per_s = BINS * RATE_HZ

    def arm(fn: Callable[[], None]) -> Callable[[], Metrics]:
        def trial() -> Metrics:
            per_million = cpu_seconds(fn) / total * 1e6
            return {"cpu_s_per_m_samples": per_million, "core_pct_32_bins": per_million * need_per_s / 1e6 * 100}
        return trial

    rounds = run_rounds({"baseline: split + int": arm(baseline), "decode (checksum, frame)": arm(decode_only),
                         "full: reader + decode + pipelines": arm(full_path)}, args.rounds)
    print(report(rounds, [Comparison(f"{name} / baseline", (name, "cpu_s_per_m_samples"),
                                     ("baseline: split + int", "cpu_s_per_m_samples"))
                          for name in ("decode (checksum, frame)", "full: reader + decode + pipelines")],
                 units={"cpu_s_per_m_samples": "CPU s", "core_pct_32_bins": "%"},
                 title=f"{BINS} bins ({controllers} controllers x {CHANNELS}), {args.seconds:g} s at {RATE_HZ:g} "
                       f"samples/s per trial: {total:,} samples"))
    print("\n% of a core = CPU s per sample x 32 bins x 80 samples/s; the target is under 5 %.")


if __name__ == "__main__":
    main()
