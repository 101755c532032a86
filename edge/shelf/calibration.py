"""Per-bin calibration, tare and local unit weight: the document kept in the edge state.

Raw units are HX711 counts or, for a balance, grams. Tare is kept in raw units so that a
later calibration (a new scale factor) does not make the stored tare wrong.
    gross_g = (raw - offset_raw) / scale_per_g
    net_g   = (raw - offset_raw - tare_raw) / scale_per_g
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from edge.state import EdgeState


@dataclass(frozen=True, slots=True)
class Calibration:
    """How one bin's raw readings become grams, and the unit weight set on this node."""

    offset_raw: float = 0.0
    scale_per_g: float = 1.0
    tare_raw: float = 0.0
    calibrated: bool = False  # False: offset and scale are the configured defaults
    local_unit_weight_g: float | None = None
    local_sample_pieces: int | None = None  # how many pieces the local unit weight was weighed from
    changed_ms: int = 0

    @property
    def tare_g(self) -> float:
        return self.tare_raw / self.scale_per_g

    def to_doc(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Calibration:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in doc.items() if k in known})


def load_calibration(state: EdgeState, bin_name: str, default: Calibration) -> Calibration:
    """The stored calibration of a bin, or `default` if it was never calibrated here."""
    doc = state.bin_calibration(bin_name)
    return default if doc is None else Calibration.from_doc(doc)


def save_calibration(state: EdgeState, bin_name: str, calibration: Calibration) -> None:
    """Persist (blocking file I/O: call from a worker thread in async code)."""
    state.save_bin_calibration(bin_name, calibration.to_doc())
