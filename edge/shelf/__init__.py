"""Load-cell shelves: controller protocols, the per-bin signal pipeline, counting and faults.

Data flow: serial port -> `reader` (thread: lines) -> `protocols` (Frame) -> `pipeline`
(one per bin: settle, count, zero tracking, faults) -> `source` (events to the sink,
commands from the hub or the CLI). `sim` is a virtual controller on a pty.
"""

from __future__ import annotations

from typing import Any

from edge.shelf.calibration import Calibration
from edge.shelf.config import SHELF_SETTINGS
from edge.shelf.pipeline import PipelineParams
from edge.shelf.protocols import PROTOCOLS
from edge.shelf.source import ShelfSource
from edge.state import EdgeState

__all__ = ["SHELF_SETTINGS", "ShelfSource", "build_shelf", "params_from"]


def params_from(table: dict[str, Any]) -> PipelineParams:
    """The pipeline settings of one `[[shelf]]` table (defaults for missing keys)."""
    values = {s.key: table.get(s.key, s.default) for s in SHELF_SETTINGS}
    names = PipelineParams.__dataclass_fields__
    return PipelineParams(**{k: v for k, v in values.items() if k in names})


def build_shelf(table: dict[str, Any], state: EdgeState) -> ShelfSource:
    """Build the source for one validated `[[shelf]]` table; the hub's cached config is applied."""
    values = {s.key: table.get(s.key, s.default) for s in SHELF_SETTINGS}
    bins = [str(b) for b in values["bins"]]
    if not bins:
        raise ValueError(f"shelf {values['name']}: 'bins' is empty; list the bin names in channel order")
    protocol = PROTOCOLS[values["protocol"]](len(bins))
    default = Calibration(offset_raw=float(values["offset_raw"]), scale_per_g=float(values["scale_per_g"]))
    source = ShelfSource(values["name"], values["port"], int(values["baud"]), protocol, bins, params_from(table),
                         state, default, silent_after_s=values["silent_after_s"], reopen_max_s=values["reopen_max_s"],
                         command_timeout_s=values["command_timeout_s"])
    cached = state.node_config()
    if cached is not None:
        source.apply_config(cached)
    return source
