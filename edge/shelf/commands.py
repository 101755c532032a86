"""Bin commands (from the hub's cmd topic or the CLI): tare, zero, calibrate, set_unit_weight, identify.

Each waits for the bin to settle after the command arrived, derives a new calibration,
persists it in the edge state and puts it into effect; the reply says what happened.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Protocol

import contract
from contract.messages import ReplyValue
from edge.shelf.calibration import Calibration
from edge.shelf.pipeline import BinPipeline
from edge.shelf.protocols import LineProtocol
from edge.shelf.reader import ControllerReader

Outcome = tuple[bool, str, dict[str, ReplyValue]]


class CommandShelf(Protocol):
    """What a command needs from the shelf it runs on (edge.shelf.source.ShelfSource provides it).

    Declared here so that the source imports the commands and not the other way round.
    """

    name: str
    port: str
    protocol: LineProtocol
    command_timeout_s: float
    reader: ControllerReader | None

    async def settled_raw(self, pipe: BinPipeline) -> float | None:
        """The bin's raw reading once it has settled after the call; None after the command timeout."""

    async def store(self, pipe: BinPipeline, calibration: Calibration) -> None:
        """Persist a bin's new calibration, then put it into effect."""


async def run_command(source: CommandShelf, pipe: BinPipeline, cmd: contract.Command) -> Outcome:
    """Carry out one command on one bin."""
    if cmd.cmd == "identify":
        return True, f"bin {pipe.bin} on shelf {source.name} ({source.protocol.name}, {source.port})", _info(source, pipe)
    if cmd.cmd == "set_unit_weight" and cmd.unit_weight_g is not None:
        return await _set_unit_weight(source, pipe, cmd.unit_weight_g, None)
    if cmd.cmd not in ("tare", "zero", "calibrate", "set_unit_weight"):
        return False, f"bin {pipe.bin}: command {cmd.cmd} does not apply to a shelf bin", {}
    raw = await source.settled_raw(pipe)
    if raw is None:
        return False, (f"bin {pipe.bin}: the weight did not settle within {source.command_timeout_s:g} s; "
                       "keep hands off the shelf and retry"), {}
    cal = pipe.cal
    if cmd.cmd == "tare":
        new = replace(cal, tare_raw=raw - cal.offset_raw)
        await source.store(pipe, new)
        return True, f"bin {pipe.bin}: tared at {new.tare_g:.1f} g", {"tare_g": round(new.tare_g, 3)}
    if cmd.cmd == "zero":
        new = replace(cal, offset_raw=raw, tare_raw=0.0)
        await source.store(pipe, new)
        return True, f"bin {pipe.bin}: zeroed (the present load now reads 0 g)", {"offset_raw": round(raw, 3)}
    if cmd.cmd == "calibrate":
        assert cmd.known_weight_g is not None  # the contract requires it for calibrate
        span_raw = raw - cal.offset_raw - cal.tare_raw
        if abs(span_raw) < 1e-9:
            return False, f"bin {pipe.bin}: no load above zero; put the {cmd.known_weight_g:g} g weight on first", {}
        new = replace(cal, scale_per_g=span_raw / cmd.known_weight_g, calibrated=True)
        await source.store(pipe, new)
        return True, (f"bin {pipe.bin}: calibrated with {cmd.known_weight_g:g} g "
                      f"({new.scale_per_g:.4f} per g)"), {"scale_per_g": round(new.scale_per_g, 6)}
    # set_unit_weight by weighing a sample of K pieces
    pieces = cmd.sample_pieces or 0
    net_g = (raw - cal.offset_raw - cal.tare_raw) / cal.scale_per_g - pipe.zero_track_g
    if pieces <= 0 or net_g <= 0:
        return False, f"bin {pipe.bin}: put the {pieces} sample pieces in the tared bin first (net {net_g:.1f} g)", {}
    return await _set_unit_weight(source, pipe, net_g / pieces, pieces)


async def _set_unit_weight(source: CommandShelf, pipe: BinPipeline, unit_g: float, pieces: int | None) -> Outcome:
    await source.store(pipe, replace(pipe.cal, local_unit_weight_g=unit_g, local_sample_pieces=pieces))
    how = f" from {pieces} pieces" if pieces else ""
    message = f"bin {pipe.bin}: unit weight set to {unit_g:.3f} g{how}"
    if pipe.hub_unit_weight_g is not None:
        message += f"; the hub's {pipe.hub_unit_weight_g:g} g stays in effect until its config changes"
    return True, message, {"unit_weight_g": round(unit_g, 4), "in_effect_g": round(pipe.unit_weight_g or 0.0, 4)}


def _info(source: CommandShelf, pipe: BinPipeline) -> dict[str, ReplyValue]:
    reader = source.reader
    return {"shelf": source.name, "protocol": source.protocol.name, "port": source.port,
            "present": bool(reader and reader.present), "settled": pipe.settled, "calibrated": pipe.cal.calibrated,
            "tare_g": round(pipe.cal.tare_g, 3), "unit_weight_g": round(pipe.unit_weight_g or 0.0, 4),
            "samples": pipe.samples, "outliers": pipe.outliers,
            "garbage_lines": reader.garbage_lines if reader else 0}
