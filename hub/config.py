"""The hub's configuration: every key declared once, loaded from TOML and `HUB_*` env."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contract import HUB_NODE, check_site_name
from contract.messages import LOCATION_RE
from hub.alerts.config import ALERT_SETTINGS, AlertsConfig, alerts_config_from
from hub.alerts.config import ARRAY_TABLES as ALERT_ARRAY_TABLES
from hub.db import ALERTS, AUTH, LEDGER, RULES, DbTarget
from hub.rules.config import (
    CONTRACT,
    TRYTON,
    CentralConfig,
    RulesConfig,
    central_config_from,
    central_url_credentials_problem,
    fraction_check,
    rules_config_from,
    service_level_check,
)
from settings import REQUIRED, ConfigError, Setting, load_file, port_number, positive, raises_value_error
from settings.mqtt import MqttConfig, mqtt_config_from, mqtt_settings

ENV_PREFIX = "HUB"
SITE_ROLE, COMPANY_ROLE = "site", "company"  # key site.role


def _store_url(value: Any) -> str | None:
    if value and not str(value).startswith(("postgresql://", "postgres://")):
        return "use a PostgreSQL URL (postgresql://user@host:5432/database) or leave it empty for SQLite files"
    return None


def _locations(value: Any) -> str | None:
    bad = [v for v in value if not isinstance(v, str) or not LOCATION_RE.fullmatch(v)]
    return f"not location names: {bad!r}" if bad else None


HUB_SETTINGS: list[Setting] = [
    Setting("site.name", str, REQUIRED, "the site this hub serves (topic wh/v1/{site}/...)",
            check=raises_value_error(check_site_name)),
    Setting("site.role", str, "site",
            "site: this hub ingests its site's events; company: a read-only view of every site's stock from a"
            " central PostgreSQL database (store.url) that subscribes to the sites (docs/deployment.md, many sites)",
            choices=(SITE_ROLE, COMPANY_ROLE)),
    *mqtt_settings(ENV_PREFIX, "hub", HUB_NODE, "the hub's MQTT username"),
    Setting("http.host", str, "127.0.0.1", "address the web page and API listen on (0.0.0.0 for the LAN)"),
    Setting("http.port", int, 8080, "port of the web page and API", check=port_number),
    Setting("db.path", str, "/var/lib/stock-hub/ledger.sqlite3", "SQLite ledger file (when store.url is empty)"),
    Setting("store.url", str, "",
            "PostgreSQL database for the ledger, rules and users (postgresql://user@host:5432/db; a password is"
            " better in ~/.pgpass or PGPASSWORD); empty: SQLite files (db.path, rules.db_path, auth.db_path)",
            check=_store_url),
    Setting("store.writer_lease", bool, False,
            "with store.url: this hub shares the database with another (active/standby); only the holder of the"
            " writer lease ingests, the other serves pages and takes over when the lease is free"
            " (docs/deployment.md, section 8)"),
    Setting("store.lease_poll_s", float, 1.0,
            "with store.writer_lease: how often a standby asks for the lease and the active hub checks it still"
            " holds it (the takeover time after the active hub's server dies)", check=positive),
    Setting("db.synchronous", str, "FULL", "SQLite synchronous mode: FULL survives power loss after an ack",
            choices=("FULL", "NORMAL")),
    Setting("live.flush_ms", int, 25, "live page updates: a change is sent at once when the feed is idle; while changes keep coming, at most one message per this window", check=positive),
    Setting("scan.require_location", bool, True,
            "item scans need a location scanned first; false: an item goes to the one bin the catalog gives it"),
    Setting("log.level", str, "INFO", "least severe log lines written to stdout (journald)", choices=("DEBUG", "INFO", "WARNING", "ERROR")),
    Setting("reconcile.window_s", float, 30.0,
            "reconciliation time tolerance: a scan and a shelf weight step at a bin this close in (skew-corrected)"
            " time may explain each other; covers clock skew left after correction and the shelf's settling delay",
            check=positive),
    Setting("stock.dock_locations", list, ["DOCK"],
            "receiving locations (list every scanner's dock_location): stock received here should be put away; a"
            " put-away whose scanned source runs short is offered a correction from here first (empty: no dock"
            " checks)", check=_locations),
    Setting("stock.unavailable_locations", list, ["QUARANTINE"],
            "locations whose stock cannot be picked or sold (returns waiting for inspection): shown on the stock"
            " page and in the API (each stock row's `available` is false) but not counted as available for reorder,"
            " low-stock and stockout signals (empty: all stock counts)", check=_locations),
    Setting("stock.dock_max_age_h", float, 24.0,
            "stock received at a dock location and not put away after this many hours opens a"
            " 'put away or check' discrepancy (it closes itself once put away)", check=positive),
    Setting("health.stale_after_s", float, 60.0, "a node online but silent this long is shown as stale",
            check=positive),
    Setting("health.skew_flag_ms", int, 2000, "flag a node whose clock differs from the hub's by more than this",
            check=positive),
    Setting("auth.db_path", str, "", "users and API tokens (SQLite); empty: auth.sqlite3 next to the ledger"),
    Setting("auth.session_secret_file", str, "",
            "key that signs session cookies; empty: session.key next to the ledger, generated on first start"),
    Setting("auth.session_max_age_s", int, 12 * 3600, "how long a login lasts (one shift)", check=positive),
    Setting("auth.cookie_secure", bool, False, "send the session cookie over HTTPS only (set when behind TLS)"),
    Setting("auth.lockout_after", int, 5, "failed logins per user and address before lockouts start",
            check=positive),
    Setting("auth.lockout_base_s", float, 2.0, "first lockout; doubles with each further failure", check=positive),
    Setting("auth.lockout_max_s", float, 900.0, "longest lockout", check=positive),
    Setting("auth.failures_per_address", int, 20,
            "failed logins per address per 10 minutes, across all names, before its logins wait", check=positive),
    Setting("auth.failures_total", int, 200,
            "failed logins per 10 minutes from all addresses together before every login waits", check=positive),
    Setting("rules.enabled", bool, True, "run the reorder, supplier and cash rules"),
    Setting("rules.db_path", str, "", "the rules' own SQLite file; empty: rules.sqlite3 next to the ledger"),
    Setting("rules.service_level", float, 0.95, "cycle service level for safety stock (0.5 to below 1)",
            check=service_level_check),
    Setting("rules.order_cycle_days", float, 14.0, "days of demand an order covers beyond the reorder point",
            check=positive),
    Setting("rules.demand_alpha", float, 0.1, "smoothing constant of demand learning (TSB)", check=fraction_check),
    Setting("rules.min_demand_days", int, 7, "days of history before demand counts as known", check=positive),
    Setting("rules.late_threshold", int, 3, "late deliveries within the window that move orders to the next supplier",
            check=positive),
    Setting("rules.late_window_days", int, 90, "window for counting late deliveries", check=positive),
    Setting("rules.restore_after_on_time", int, 3, "on-time deliveries in a row that restore a demoted supplier",
            check=positive),
    Setting("rules.cash_floor", float, 0.0, "below this available cash, order quantities are scaled down"),
    Setting("rules.feedback_step", float, 0.15, "how much one stockout raises (or excess lowers) the reorder point",
            check=fraction_check),
    Setting("rules.feedback_min_factor", float, 0.7, "lowest reorder-point factor excess can reach", check=positive),
    Setting("rules.feedback_max_factor", float, 2.0, "highest reorder-point factor stockouts can reach",
            check=positive),
    Setting("rules.excess_days", int, 14, "days above the order-up-to level before the reorder point is lowered",
            check=positive),
    Setting("rules.stale_node_s", int, 900, "a node silent this long makes its SKUs' information constraint",
            check=positive),
    Setting("central.base_url", str, "", "central purchasing, e.g. http://central:8090 for the contract, "
            "http://tryton:8000 for Tryton (empty: no sync; requisitions and receipts wait in the outbox); a "
            "user:password@ in it is sent as HTTP Basic authentication, so it is refused with central.token or "
            "the Tryton connector"),
    Setting("central.connector", str, CONTRACT, "how the hub talks to central: 'contract' (docs/central-openapi.yaml, "
            "e.g. the reference service) or 'tryton' (Tryton's JSON-RPC; docs/purchasing.md)",
            choices=(CONTRACT, TRYTON)),
    Setting("central.token", str, "", "bearer token for central purchasing; with the Tryton connector, the password "
            "of central.tryton_user (or set HUB_CENTRAL_TOKEN)"),
    Setting("central.tryton_database", str, "", "Tryton connector: the Tryton database name"),
    Setting("central.tryton_user", str, "", "Tryton connector: the login of the hub's Tryton user (groups Purchase "
            "and Stock)"),
    Setting("central.tryton_warehouse", str, "WH", "Tryton connector: the code of this site's warehouse location"),
    Setting("central.poll_interval_s", float, 60.0, "how often catalog, cash and PO status are pulled",
            check=positive),
    Setting("central.timeout_s", float, 10.0, "timeout of one call to central", check=positive),
    Setting("central.retry_base_s", float, 2.0, "first retry delay when central is unreachable", check=positive),
    Setting("central.retry_cap_s", float, 300.0, "longest retry delay", check=positive),
    Setting("integrations.publish_state", bool, True,
            "publish stock per bin and SKU, discrepancy counts and alerts on MQTT for other consumers (retained, "
            "under wh/v1/{site}/hub/; read them with an account from 'stock-hub add-integration')"),
    Setting("integrations.min_interval_ms", int, 250,
            "least time between two rounds of integration messages; changes in between are coalesced",
            check=positive),
    Setting("integrations.home_assistant", bool, False,
            "announce a Home Assistant MQTT discovery sensor per bin and SKU (retained config topics)"),
    Setting("integrations.home_assistant_prefix", str, "homeassistant", "Home Assistant's discovery prefix"),
    *ALERT_SETTINGS,  # alerts.* (hub/alerts/config.py)
]
HUB_ARRAY_TABLES = {**ALERT_ARRAY_TABLES}  # [[alert_rule]]


@dataclass(frozen=True, slots=True)
class IntegrationsConfig:
    """Settings `integrations.*`: MQTT state for other consumers (hub/consumer_feed.py)."""

    publish_state: bool = True
    min_interval_ms: int = 250
    home_assistant: bool = False
    home_assistant_prefix: str = "homeassistant"


@dataclass(frozen=True, slots=True)
class HubConfig:
    """The whole hub configuration, validated."""

    site: str
    mqtt: MqttConfig
    http_host: str
    http_port: int
    db_path: Path
    db_synchronous: str
    live_flush_ms: int
    log_level: str
    source: str = ""
    reconcile_window_s: float = 30.0
    stock_dock_locations: tuple[str, ...] = ("DOCK",)
    stock_dock_max_age_h: float = 24.0
    scan_require_location: bool = True
    health_stale_after_s: float = 60.0
    health_skew_flag_ms: int = 2000
    auth_db_path: Path | None = None  # None: auth.sqlite3 next to the ledger
    auth_session_secret_file: Path | None = None  # None: session.key next to the ledger
    auth_session_max_age_s: int = 12 * 3600
    auth_cookie_secure: bool = False
    auth_lockout_after: int = 5
    auth_lockout_base_s: float = 2.0
    auth_lockout_max_s: float = 900.0
    auth_failures_per_address: int = 20
    auth_failures_total: int = 200
    rules: RulesConfig = RulesConfig()
    central: CentralConfig = CentralConfig()
    integrations: IntegrationsConfig = IntegrationsConfig()
    store_url: str = ""  # "": SQLite files; else the PostgreSQL database of every store
    store_writer_lease: bool = False  # active/standby hubs on one database (hub/lease.py)
    store_lease_poll_s: float = 1.0
    role: str = SITE_ROLE  # SITE_ROLE or COMPANY_ROLE (hub/web/company.py)

    def db_target(self, store: str) -> DbTarget:
        """Where one store (hub.db.LEDGER, RULES, AUTH) lives under this configuration."""
        if self.store_url:
            return DbTarget.postgresql(store, self.store_url)
        if store == LEDGER:
            return DbTarget.sqlite(LEDGER, self.db_path, self.db_synchronous)
        if store == RULES:
            # NORMAL: what a power cut may lose is rebuilt from the ledger (hub/rules/store.py)
            return DbTarget.sqlite(RULES, self.rules.db_path or self.db_path.with_name("rules.sqlite3"), "NORMAL")
        if store == AUTH:
            return DbTarget.sqlite(AUTH, self.auth_db_path or self.db_path.parent / "auth.sqlite3")
        if store == ALERTS:
            from hub.alerts.store import alerts_path
            return DbTarget.sqlite(ALERTS, alerts_path(self.db_path, self.alerts.db_path))
        raise ValueError(f"no store {store!r}")
    alerts: AlertsConfig = AlertsConfig()


def load_hub_config(path: str | Path) -> HubConfig:
    """Load and validate a hub config file; raises settings.ConfigError with one line."""
    return hub_config_from(load_file(path, HUB_SETTINGS, ENV_PREFIX, HUB_ARRAY_TABLES), str(path))


def hub_config_from(raw: dict[str, Any], source: str = "") -> HubConfig:
    """Build the typed config from resolved settings."""
    if raw["site.role"] == COMPANY_ROLE and not raw["store.url"]:
        raise ConfigError(f"{source or 'hub config'}: key 'site.role': the company role reads the central PostgreSQL"
                          " database: set store.url to it (docs/deployment.md, many sites)")
    credentials = central_url_credentials_problem(raw["central.base_url"], raw["central.token"],
                                                  raw["central.connector"])
    if credentials:  # else every sync tick would fail on it (aiohttp refuses the request)
        raise ConfigError(f"{source or 'hub config'}: key 'central.base_url': {credentials}")
    return HubConfig(site=raw["site.name"], mqtt=mqtt_config_from(raw, source),
                     http_host=raw["http.host"], http_port=raw["http.port"], db_path=Path(raw["db.path"]),
                     db_synchronous=raw["db.synchronous"], live_flush_ms=raw["live.flush_ms"],
                     log_level=raw["log.level"], source=source,
                     reconcile_window_s=raw["reconcile.window_s"],
                     stock_dock_locations=tuple(raw["stock.dock_locations"]),
                     stock_dock_max_age_h=raw["stock.dock_max_age_h"], scan_require_location=raw["scan.require_location"], health_stale_after_s=raw["health.stale_after_s"],
                     health_skew_flag_ms=raw["health.skew_flag_ms"],
                     auth_db_path=Path(raw["auth.db_path"]) if raw["auth.db_path"] else None,
                     auth_session_secret_file=(Path(raw["auth.session_secret_file"])
                                               if raw["auth.session_secret_file"] else None),
                     auth_session_max_age_s=raw["auth.session_max_age_s"], auth_cookie_secure=raw["auth.cookie_secure"],
                     auth_lockout_after=raw["auth.lockout_after"], auth_lockout_base_s=raw["auth.lockout_base_s"],
                     auth_lockout_max_s=raw["auth.lockout_max_s"],
                     auth_failures_per_address=raw["auth.failures_per_address"],
                     auth_failures_total=raw["auth.failures_total"],
                     rules=rules_config_from(raw), central=central_config_from(raw), store_url=raw["store.url"],
                     role=raw["site.role"], store_writer_lease=raw["store.writer_lease"], store_lease_poll_s=raw["store.lease_poll_s"],
                     integrations=IntegrationsConfig(
                         publish_state=raw["integrations.publish_state"],
                         min_interval_ms=raw["integrations.min_interval_ms"],
                         home_assistant=raw["integrations.home_assistant"],
                         home_assistant_prefix=raw["integrations.home_assistant_prefix"]),
                     alerts=alerts_config_from(raw, source or "hub config"))
