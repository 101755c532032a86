"""A virtual shelf controller on a pty, speaking HX711-bridge or MT-SICS, with load-cell physics.

The only fake in the shelf path: everything downstream (pyserial, the reader thread, the
decoders, the pipelines) is the real code reading a real tty. Physics per bin: pieces of
slightly varying weight (seeded), a container, a hand that presses and wobbles while it
picks, a damped oscillation after the hand leaves, slow drift, the HX711's noise at 10 or
80 samples/s with rare spikes, ADC clipping, and a load-cell cable that can be pulled.

Scenarios are `;`-separated steps run in simulated time, e.g.
    "wait 2; pick 0 3; wait 3; restock 0 20; lean 0 4000 2; unplug 0; wait 2; replug 0; loop"
Verbs: wait S | pick BIN N [HAND_S] | restock BIN N [HAND_S] | lean BIN FORCE_G S | unplug BIN |
replug BIN | silence S | garbage N | drift BIN G_PER_MIN | loop.
`time_scale` runs the clock faster than real time (tests use 20-50x); samples are paced
by simulated time, so the receiver sees the same stream at any speed.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import select
import threading
import time
import tty
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from edge.shelf.protocols.hx711_bridge import ADC_MAX, ADC_MIN, encode_line

log = logging.getLogger(__name__)

NOISE_G_AT_80_HZ = 0.15  # HX711 input noise is about 1.8x higher at 80 SPS than at 10 SPS (datasheet)
NOISE_G_AT_10_HZ = 0.08
SPIKE_PROBABILITY = 0.002  # EMI: one sample in 500 is a spike
SPIKE_G = 60.0
SETTLE_TAU_S = 0.12  # shelf oscillation after a hand leaves: decays with this time constant
SETTLE_FREQ_HZ = 6.0
MAX_PENDING_BYTES = 64 * 1024  # nobody reading: a real UART's bytes are simply lost
MTSICS_READABILITY_G = 0.01
MTSICS_NOISE_G = 0.02


@dataclass
class SimBin:
    """One simulated load cell and what lies on it."""

    unit_weight_g: float = 25.0
    unit_cv: float = 0.01  # piece-to-piece variation (standard deviation / mean)
    pieces: int = 20
    container_g: float = 250.0
    counts_per_g: float = 100.0  # HX711 counts per gram of this cell
    offset_counts: int = 0  # HX711 reading of the empty platform
    drift_g_per_min: float = 0.0
    capacity_g: float = 20000.0  # MT-SICS: above this the balance says `S +`
    weights_g: list[float] = field(default_factory=list)
    drift_g: float = 0.0
    unplugged: bool = False
    hand_g: float = 0.0
    release_g: float = 0.0  # amplitude of the oscillation after the last release
    release_t: float = -1e9

    def load_g(self) -> float:
        return self.container_g + sum(self.weights_g) + self.drift_g


@dataclass
class _Step:
    verb: str
    args: list[float]
    start_t: float = -1.0
    done_pieces: int = 0


def parse_scenario(text: str) -> list[_Step]:
    """Steps from the scenario language (module docstring); raises ValueError naming the bad step."""
    arity = {"wait": (1, 1), "pick": (2, 3), "restock": (2, 3), "lean": (3, 3), "unplug": (1, 1),
             "replug": (1, 1), "silence": (1, 1), "garbage": (1, 1), "drift": (2, 2), "loop": (0, 0)}
    steps = []
    for raw in text.split(";"):
        words = raw.split()
        if not words:
            continue
        verb, args = words[0].lower(), words[1:]
        if verb not in arity or not arity[verb][0] <= len(args) <= arity[verb][1]:
            raise ValueError(f"scenario step {raw.strip()!r}: expected one of {', '.join(arity)} with its arguments")
        try:
            steps.append(_Step(verb, [float(a) for a in args]))
        except ValueError:
            raise ValueError(f"scenario step {raw.strip()!r}: arguments must be numbers") from None
    return steps


class VirtualController:
    """A controller with N load cells on a pty; start() returns the path to open."""

    def __init__(self, bins: list[SimBin], protocol: str = "hx711-bridge", rate_hz: float = 80.0,
                 time_scale: float = 1.0, seed: int = 0, scenario: str = "", link_path: str | None = None,
                 spikes: bool = True) -> None:
        if protocol not in ("hx711-bridge", "mt-sics"):
            raise ValueError(f"unknown protocol {protocol!r}")
        if protocol == "mt-sics" and len(bins) != 1:
            raise ValueError("an MT-SICS balance has exactly one bin")
        self.bins = bins
        self.protocol = protocol
        self.rate_hz = rate_hz
        self.time_scale = time_scale
        self.link_path = link_path
        self.spikes = spikes
        self._rng = random.Random(seed)
        for b in bins:
            if not b.weights_g:
                b.weights_g = [self._piece(b) for _ in range(b.pieces)]
        self._script = parse_scenario(scenario)
        self._steps: deque[_Step] = deque(_Step(s.verb, list(s.args)) for s in self._script)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._master = -1
        self._slave = -1
        self.path = ""
        self.t = 0.0  # simulated seconds
        self._seq = 0
        self._silent_until = -1.0
        self._streaming = protocol == "hx711-bridge"  # a balance streams only after SIR
        self._stable_window: deque[float] = deque(maxlen=max(2, int(rate_hz / 2)))
        self._balance_zero_g = 0.0
        self._pending = bytearray()
        self._cmd_buf = b""
        self.lines_written = 0
        self.lines_dropped = 0

    # ------------------------------------------------------------------ control

    def start(self) -> str:
        """Open the pty, start the thread; returns the path (the stable link if one was asked for)."""
        self._open_pty()
        self._thread = threading.Thread(target=self._run, name="shelf-sim", daemon=True)
        self._thread.start()
        return self.link_path or self.path

    def stop(self) -> None:
        """Stop the thread and close the pty."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._close_pty()
        if self.link_path:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.link_path)

    def __enter__(self) -> VirtualController:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def add(self, scenario: str) -> None:
        """Queue more scenario steps (thread-safe); they run after the ones already queued."""
        steps = parse_scenario(scenario)
        with self._lock:
            self._steps.extend(steps)

    def pick(self, bin_index: int, pieces: int, hand_s: float = 1.0) -> None:
        self.add(f"pick {bin_index} {pieces} {hand_s}")

    def restock(self, bin_index: int, pieces: int, hand_s: float = 1.0) -> None:
        self.add(f"restock {bin_index} {pieces} {hand_s}")

    @property
    def idle(self) -> bool:
        """No step running or queued and no hand on any bin."""
        with self._lock:
            return not self._steps and all(b.hand_g == 0 for b in self.bins)

    def still(self, within_g: float) -> bool:
        """Idle, and every bin's ring-down after the last hand has decayed below within_g."""
        with self._lock:
            return (not self._steps and all(b.hand_g == 0 for b in self.bins)
                    and all(b.release_g * math.exp(-(self.t - b.release_t) / SETTLE_TAU_S) < within_g
                            for b in self.bins))

    def count(self, bin_index: int) -> int:
        """How many pieces really lie in a bin."""
        return len(self.bins[bin_index].weights_g)

    def unplug_port(self) -> None:
        """Pull the controller's USB cable: the tty and its stable link disappear (the reader sees an
        I/O error). A link left behind would name a /dev/pts number the kernel gives the next pty
        opened on the machine, and a reopen would find that one."""
        with self._lock:
            if self.link_path:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.link_path)
            self._close_pty()

    def replug_port(self) -> str:
        """Plug it back: a new pty; the stable link (if any) points at it."""
        with self._lock:
            self._open_pty()
        return self.link_path or self.path

    # ------------------------------------------------------------------ pty

    def _open_pty(self) -> None:
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)  # no echo: our output must not come back to us as commands
        os.set_blocking(self._master, False)
        self.path = os.ttyname(self._slave)
        self._pending.clear()
        if self.link_path:
            tmp = f"{self.link_path}.tmp"
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            os.symlink(self.path, tmp)
            os.replace(tmp, self.link_path)
        if self.protocol == "hx711-bridge":
            self._emit_line(f"H HXB/1 ch={len(self.bins)} rate={int(self.rate_hz)} fw=sim")

    def _close_pty(self) -> None:
        for fd in (self._master, self._slave):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._master = self._slave = -1

    # ------------------------------------------------------------------ thread

    def _run(self) -> None:
        started = time.monotonic()
        sim_start = self.t
        dt = 1.0 / self.rate_hz
        while not self._stop.is_set():
            target = sim_start + (time.monotonic() - started) * self.time_scale
            with self._lock:
                budget = int(0.2 * self.rate_hz)  # at most 0.2 s of samples per turn
                while self.t + dt <= target and budget > 0:
                    budget -= 1
                    self.t += dt
                    self._tick(dt)
                self._flush()
                self._read_commands()
                master = self._master
            wait_s = min(0.005, dt / self.time_scale)
            if master >= 0 and self._pending:
                with contextlib.suppress(OSError, ValueError):
                    select.select([], [master], [], wait_s)
            else:
                self._stop.wait(wait_s)

    def _flush(self) -> None:
        if self._master < 0:
            self._pending.clear()
            return
        if len(self._pending) > MAX_PENDING_BYTES:
            self.lines_dropped += self._pending.count(b"\n")
            self._pending.clear()
        while self._pending:
            try:
                n = os.write(self._master, self._pending)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self._pending.clear()
                return
            del self._pending[:n]

    def _read_commands(self) -> None:
        if self._master < 0:
            return
        try:
            data = os.read(self._master, 4096)
        except (BlockingIOError, OSError):
            return
        self._cmd_buf += data
        *lines, self._cmd_buf = self._cmd_buf.replace(b"\r", b"").split(b"\n")
        for line in lines:
            self._command(line.decode("ascii", "replace").strip())

    def _command(self, line: str) -> None:
        if not line:
            return
        if self.protocol == "hx711-bridge":
            if line == "?":
                self._emit_line(f"H HXB/1 ch={len(self.bins)} rate={int(self.rate_hz)} fw=sim")
            elif line.startswith("RATE ") and line[5:] in ("10", "80"):
                self.rate_hz = float(line[5:])
                self._emit_line(f"A {line}")
            else:
                self._emit_line("E 1 unknown-command")
            return
        gross = self._balance_gross_g()
        replies = {"@": 'I4 A "SIM0001"', "SIR": None, "SI": self._sics_weight(gross, force_dynamic=False),
                   "Z": "Z A", "T": f"T S {gross:>10.2f} g"}
        if line == "SIR":
            self._streaming = True
        elif line == "Z":
            self._balance_zero_g += gross
        if line in replies:
            reply = replies[line]
            if reply:
                self._emit_raw(reply + "\r\n")
        else:
            self._emit_raw("ES\r\n")

    # ------------------------------------------------------------------ physics

    def _piece(self, b: SimBin) -> float:
        return max(0.001, self._rng.gauss(b.unit_weight_g, b.unit_weight_g * b.unit_cv))

    def _tick(self, dt: float) -> None:
        for b in self.bins:
            b.drift_g += b.drift_g_per_min * dt / 60
        self._advance_steps()
        if self.t < self._silent_until or self._master < 0:
            return
        if self.protocol == "hx711-bridge":
            values = []
            for b in self.bins:
                if b.unplugged:
                    values.append("X")
                    continue
                counts = b.offset_counts + round(self._observed_g(b) * b.counts_per_g)
                values.append(str(max(ADC_MIN, min(ADC_MAX, counts))))
            self._emit_line(f"D {self._seq} {' '.join(values)}")
            self._seq = (self._seq + 1) & 0xFFFF
        elif self._streaming:
            self._emit_raw(self._sics_weight(self._balance_gross_g(), force_dynamic=False) + "\r\n")

    def _observed_g(self, b: SimBin) -> float:
        noise = NOISE_G_AT_10_HZ if self.rate_hz <= 10 else NOISE_G_AT_80_HZ
        g = b.load_g() + self._hand_g(b) + self._rng.gauss(0.0, noise)
        if self.spikes and self._rng.random() < SPIKE_PROBABILITY:
            g += self._rng.choice((-SPIKE_G, SPIKE_G))
        return g

    def _hand_g(self, b: SimBin) -> float:
        since = self.t - b.release_t
        ring = b.release_g * math.exp(-since / SETTLE_TAU_S) * math.cos(2 * math.pi * SETTLE_FREQ_HZ * since)
        if b.hand_g == 0:
            return ring
        # a hand presses unevenly: a slow sway and a faster tremor
        sway = 0.5 + 0.5 * math.sin(2 * math.pi * 1.3 * self.t)
        return ring + b.hand_g * (0.4 + 0.6 * sway) + 0.05 * b.hand_g * math.sin(2 * math.pi * 7.0 * self.t)

    def _balance_gross_g(self) -> float:
        b = self.bins[0]
        return b.load_g() + self._hand_g(b) + self._rng.gauss(0.0, MTSICS_NOISE_G) - self._balance_zero_g

    def _sics_weight(self, gross_g: float, force_dynamic: bool) -> str:
        b = self.bins[0]
        if gross_g > b.capacity_g:
            return "S +"
        if gross_g < -50.0:
            return "S -"
        value = round(gross_g / MTSICS_READABILITY_G) * MTSICS_READABILITY_G
        self._stable_window.append(value)
        spread = max(self._stable_window) - min(self._stable_window)
        stable = not force_dynamic and len(self._stable_window) == self._stable_window.maxlen and spread <= 0.1
        return f"S {'S' if stable else 'D'} {value:>10.2f} g"

    def _advance_steps(self) -> None:
        while self._steps:
            step = self._steps[0]
            if step.start_t < 0:
                step.start_t = self.t
            if not self._step(step):
                return
            self._steps.popleft()

    def _step(self, step: _Step) -> bool:
        """Advance one step; True when it is finished."""
        a, elapsed = step.args, self.t - step.start_t
        verb = step.verb
        if verb == "wait":
            return elapsed >= a[0]
        if verb in ("pick", "restock"):
            b, n = self.bins[int(a[0])], int(a[1])
            hand_s = a[2] if len(a) > 2 else 1.0
            b.hand_g = 400.0
            due = min(n, int(elapsed / hand_s * (n + 1)))
            while step.done_pieces < due:
                step.done_pieces += 1
                if verb == "pick" and b.weights_g:
                    b.weights_g.pop(self._rng.randrange(len(b.weights_g)))
                elif verb == "restock":
                    b.weights_g.append(self._piece(b))
            if elapsed < hand_s:
                return False
            self._release(b)
            return True
        if verb == "lean":
            b = self.bins[int(a[0])]
            b.hand_g = a[1]
            if elapsed < a[2]:
                return False
            self._release(b)
            return True
        if verb in ("unplug", "replug"):
            self.bins[int(a[0])].unplugged = verb == "unplug"
        elif verb == "silence":
            self._silent_until = self.t + a[0]
        elif verb == "garbage":
            for i in range(int(a[0])):
                junk = bytes(self._rng.randrange(32, 127) for _ in range(self._rng.randrange(3, 40)))
                self._pending += junk if i % 3 else junk[: len(junk) // 2]
                self._pending += b"\n"
        elif verb == "drift":
            self.bins[int(a[0])].drift_g_per_min = a[1]
        elif verb == "loop":
            self._steps.extend(_Step(s.verb, list(s.args)) for s in self._script)
        return True

    def _release(self, b: SimBin) -> None:
        b.release_g = 0.3 * b.hand_g
        b.release_t = self.t
        b.hand_g = 0.0

    def _emit_line(self, body: str) -> None:
        self._pending += encode_line(body)
        self.lines_written += 1

    def _emit_raw(self, line: str) -> None:
        self._pending += line.encode()
        self.lines_written += 1


def start_simulator(bins: int | list[SimBin], protocol: str = "hx711-bridge", scenario: str = "",
                    time_scale: float = 1.0, seed: int = 0, rate_hz: float = 80.0,
                    link_path: str | Path | None = None) -> VirtualController:
    """Start a virtual controller (for the demo and tests); `.path` or `.link_path` is the port to open."""
    sim_bins = [SimBin() for _ in range(bins)] if isinstance(bins, int) else bins
    ctl = VirtualController(sim_bins, protocol, rate_hz, time_scale, seed, scenario,
                            str(link_path) if link_path else None)
    ctl.start()
    return ctl
