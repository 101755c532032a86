"""Which supplier gets the next order for a SKU.

Suppliers are tried in the catalog's priority order. A supplier whose Nth late delivery
(default 3) for this SKU falls within the window (default 90 days) is demoted for that SKU:
future orders go to the next supplier that is not demoted. It is restored after a record of
`restore_after_on_time` consecutive on-time deliveries (orders already in flight or placed by
hand still arrive), or by a supervisor. Late deliveries counted toward a demotion are cleared
by it, so a restored supplier starts with a clean record.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from hub.rules.clock import DAY_MS


@dataclass(frozen=True, slots=True)
class SupplierParams:
    late_threshold: int = 3
    window_days: int = 90
    restore_after_on_time: int = 3


@dataclass(frozen=True, slots=True)
class SupplierOption:
    """A supplier that can deliver a SKU, from the catalog."""

    supplier: str
    name: str
    priority: int  # 1 first
    lead_time_days: float
    unit_price: float
    moq: int = 1
    pack_multiple: int = 1


@dataclass(frozen=True, slots=True)
class SupplierStanding:
    """One supplier's record for one SKU."""

    late_ms: tuple[int, ...] = ()  # received times of late deliveries since the last demotion/restore
    on_time_streak: int = 0
    demoted_ms: int | None = None
    demoted_late_count: int = 0
    demoted_since_ms: int | None = None  # the first late delivery counted in the demotion

    @property
    def demoted(self) -> bool:
        return self.demoted_ms is not None


@dataclass(frozen=True, slots=True)
class StandingChange:
    kind: str  # "demoted" or "restored"
    late_count: int
    since_ms: int | None
    on_time_streak: int


def record_delivery(standing: SupplierStanding, params: SupplierParams, received_ms: int,
                    late: bool) -> tuple[SupplierStanding, StandingChange | None]:
    """Fold one delivery into the record; say if that demoted or restored the supplier."""
    if late:
        window_start = received_ms - params.window_days * DAY_MS
        lates = tuple(t for t in standing.late_ms if t >= window_start) + (received_ms,)
        standing = replace(standing, late_ms=lates, on_time_streak=0)
        if not standing.demoted and len(lates) >= params.late_threshold:
            standing = replace(standing, demoted_ms=received_ms, demoted_late_count=len(lates),
                               demoted_since_ms=lates[0], late_ms=())
            return standing, StandingChange("demoted", len(lates), lates[0], 0)
        return standing, None
    standing = replace(standing, on_time_streak=standing.on_time_streak + 1)
    if standing.demoted and standing.on_time_streak >= params.restore_after_on_time:
        streak = standing.on_time_streak
        return (SupplierStanding(on_time_streak=streak),
                StandingChange("restored", 0, None, streak))
    return standing, None


def restore(standing: SupplierStanding) -> SupplierStanding:
    """A supervisor puts the supplier back in its place."""
    return SupplierStanding(on_time_streak=standing.on_time_streak)


@dataclass(frozen=True, slots=True)
class SupplierChoice:
    """The supplier chosen and the better-placed ones passed over (with their standing)."""

    option: SupplierOption
    passed_over: tuple[tuple[SupplierOption, SupplierStanding], ...]


def choose(options: list[SupplierOption], standings: dict[str, SupplierStanding]) -> SupplierChoice | None:
    """The first supplier by priority that is not demoted; if all are, the first by priority."""
    ranked = sorted(options, key=lambda o: (o.priority, o.supplier))
    if not ranked:
        return None
    passed: list[tuple[SupplierOption, SupplierStanding]] = []
    for option in ranked:
        standing = standings.get(option.supplier, SupplierStanding())
        if not standing.demoted:
            return SupplierChoice(option, tuple(passed))
        passed.append((option, standing))
    return SupplierChoice(ranked[0], ())
