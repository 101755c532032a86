"""The rules' and central sync's settings, built from the hub's declared `rules.*` / `central.*` keys."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from hub.rules.constraint import ConstraintParams
from hub.rules.demand import DemandParams
from hub.rules.feedback import FeedbackParams
from hub.rules.leadtime import LeadTimeParams
from hub.rules.supplier import SupplierParams


@dataclass(frozen=True, slots=True)
class RulesConfig:
    """What the rules engine needs to know."""

    db_path: Path | None = None  # None: rules.sqlite3 next to the ledger
    enabled: bool = True
    service_level: float = 0.95
    order_cycle_days: float = 14.0
    cash_floor: float = 0.0
    stale_node_s: int = 900
    # Locations whose stock cannot be picked (stock.unavailable_locations): not available stock.
    unavailable_locations: tuple[str, ...] = ("QUARANTINE",)
    demand: DemandParams = field(default_factory=DemandParams)
    lead_time: LeadTimeParams = field(default_factory=LeadTimeParams)
    feedback: FeedbackParams = field(default_factory=FeedbackParams)
    supplier: SupplierParams = field(default_factory=SupplierParams)
    constraint: ConstraintParams = field(default_factory=ConstraintParams)


CONTRACT, TRYTON = "contract", "tryton"  # the connectors central.connector chooses from (hub/purchasing/)


@dataclass(frozen=True, slots=True)
class CentralConfig:
    """Where central purchasing is, which connector speaks to it, and how patiently."""

    base_url: str = ""  # empty: no sync (requisitions wait in the outbox)
    poll_interval_s: float = 60.0
    timeout_s: float = 10.0
    retry_base_s: float = 2.0
    retry_cap_s: float = 300.0
    token: str = ""  # the contract's bearer token; Tryton: the password of tryton_user
    connector: str = CONTRACT
    tryton_database: str = ""
    tryton_user: str = ""
    tryton_warehouse: str = "WH"


def rules_config_from(raw: dict[str, Any]) -> RulesConfig:
    """Build from resolved hub settings (keys `rules.*`, and `stock.unavailable_locations`)."""
    return RulesConfig(
        db_path=Path(raw["rules.db_path"]) if raw["rules.db_path"] else None,
        enabled=raw["rules.enabled"], service_level=raw["rules.service_level"],
        order_cycle_days=raw["rules.order_cycle_days"], cash_floor=raw["rules.cash_floor"],
        stale_node_s=raw["rules.stale_node_s"], unavailable_locations=tuple(raw["stock.unavailable_locations"]),
        demand=DemandParams(alpha_size=raw["rules.demand_alpha"], alpha_prob=raw["rules.demand_alpha"],
                            alpha_error=raw["rules.demand_alpha"]),
        feedback=FeedbackParams(step=raw["rules.feedback_step"], min_factor=raw["rules.feedback_min_factor"],
                                max_factor=raw["rules.feedback_max_factor"], excess_days=raw["rules.excess_days"]),
        supplier=SupplierParams(late_threshold=raw["rules.late_threshold"], window_days=raw["rules.late_window_days"],
                                restore_after_on_time=raw["rules.restore_after_on_time"]),
        constraint=ConstraintParams(min_demand_days=raw["rules.min_demand_days"]),
    )


def central_url_credentials_problem(base_url: str, token: str, connector: str) -> str | None:
    """Why a user name or password in central's URL cannot be used with these settings, or None.

    A `user:password@` in the URL is sent as HTTP Basic authentication (aiohttp does it), in the
    one Authorization header a request has; the contract's bearer token and Tryton's session
    need that header too, and aiohttp refuses the request when both want it.
    """
    if not base_url:
        return None
    try:
        parts = urlsplit(base_url)
    except ValueError:
        return None  # not a URL at all: the connector's first call says so, like an unreachable central
    if parts.username is None and parts.password is None:
        return None
    if connector == TRYTON:
        return ("the URL carries a user name or password, but the Tryton connector logs in as central.tryton_user "
                "with central.token and sends its own session: take them out of the URL")
    if token:
        return ("the URL carries a user name or password (HTTP Basic authentication) and central.token is set "
                "too; a request has one Authorization header: keep the token (central.token or HUB_CENTRAL_TOKEN) "
                "and take them out of the URL, or leave central.token empty")
    return None


def central_config_from(raw: dict[str, Any]) -> CentralConfig:
    """Build from resolved hub settings (keys `central.*`)."""
    return CentralConfig(base_url=raw["central.base_url"].rstrip("/"), poll_interval_s=raw["central.poll_interval_s"],
                         timeout_s=raw["central.timeout_s"], retry_base_s=raw["central.retry_base_s"],
                         retry_cap_s=raw["central.retry_cap_s"], token=raw["central.token"],
                         connector=raw["central.connector"], tryton_database=raw["central.tryton_database"],
                         tryton_user=raw["central.tryton_user"], tryton_warehouse=raw["central.tryton_warehouse"])


def service_level_check(value: Any) -> str | None:
    """Setting check: a cycle service level in [0.5, 1)."""
    return None if 0.5 <= value < 1.0 else f"must be at least 0.5 and below 1, got {value!r}"


def fraction_check(value: Any) -> str | None:
    return None if 0.0 < value <= 1.0 else f"must be above 0 and at most 1, got {value!r}"
