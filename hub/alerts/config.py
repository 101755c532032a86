"""Settings `alerts.*` and the `[[alert_rule]]` tables, declared once here (hub/config.py lists them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hub.alerts.model import EVENT_KINDS, AlertsError, RuleInput, check_email, check_rule
from settings import REQUIRED, ConfigError, Setting, port_number, positive, read_secret

ALERT_SETTINGS: list[Setting] = [
    Setting("alerts.db_path", str, "", "rules, held events and the alerts outbox (SQLite); empty: alerts.sqlite3 "
            "next to the ledger"),
    Setting("alerts.digest_window_s", float, 900.0,
            "grouping window per rule: the first alerts.burst alerts in it go out one by one, the rest as one "
            "digest when it ends", check=positive),
    Setting("alerts.burst", int, 3, "alerts a rule sends one by one per window before it switches to a digest",
            check=positive),
    Setting("alerts.retry_base_s", float, 5.0, "first retry delay after a failed delivery (doubles, with jitter)",
            check=positive),
    Setting("alerts.retry_cap_s", float, 600.0, "longest retry delay", check=positive),
    Setting("alerts.give_up_after_h", float, 24.0,
            "a message still not delivered this long after it was queued is marked failed (shown on the page)",
            check=positive),
    Setting("alerts.timeout_s", float, 10.0, "timeout of one webhook POST or SMTP session", check=positive),
    Setting("alerts.smtp_host", str, "", "SMTP server for e-mail alerts (empty: no e-mail)"),
    Setting("alerts.smtp_port", int, 587, "SMTP port (587 submission with STARTTLS, 465 implicit TLS)",
            check=port_number),
    Setting("alerts.smtp_security", str, "starttls",
            "starttls: upgrade with STARTTLS and refuse a server without it; tls: implicit TLS (port 465); none: "
            "plain (a relay on localhost only; no login allowed)", choices=("starttls", "tls", "none")),
    Setting("alerts.smtp_username", str, "", "SMTP AUTH user name (empty: no AUTH)"),
    Setting("alerts.smtp_password", str, "", "SMTP AUTH password (or set HUB_ALERTS_SMTP_PASSWORD); never shown"),
    Setting("alerts.smtp_password_file", str, "", "file holding the SMTP password, instead of alerts.smtp_password"),
    Setting("alerts.smtp_from", str, "", "sender address of alert e-mails, e.g. stock-hub@example.com"),
    Setting("alerts.smtp_ca_file", str, "", "CA certificate to trust for the SMTP server (empty: system store)"),
]

ALERT_RULE_SETTINGS: list[Setting] = [
    Setting("name", str, REQUIRED, "the rule's name (unique; shown on the alerts page)"),
    Setting("kinds", list, REQUIRED, "event kinds it sends: " + ", ".join(EVENT_KINDS)),
    Setting("webhook_url", str, "", "http(s) URL to POST signed JSON to (Standard Webhooks headers)"),
    Setting("email", str, "", "address to e-mail (needs alerts.smtp_host)"),
    Setting("secret", str, "", "webhook signing secret, 'whsec_' + base64 (or secret_file)"),
    Setting("secret_file", str, "", "file holding the webhook signing secret"),
]
ARRAY_TABLES = {"alert_rule": ALERT_RULE_SETTINGS}


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    """Where and how e-mail alerts are sent."""

    host: str = ""
    port: int = 587
    security: str = "starttls"
    username: str = ""
    password: str = ""
    sender: str = ""
    ca_file: str = ""


@dataclass(frozen=True, slots=True)
class AlertsConfig:
    """Settings `alerts.*` and the config file's rules (each with its webhook secret)."""

    db_path: str = ""
    digest_window_s: float = 900.0
    burst: int = 3
    retry_base_s: float = 5.0
    retry_cap_s: float = 600.0
    give_up_after_h: float = 24.0
    timeout_s: float = 10.0
    smtp: SmtpConfig = SmtpConfig()
    rules: tuple[tuple[RuleInput, str | None], ...] = ()


def alerts_config_from(raw: dict[str, Any], where: str) -> AlertsConfig:
    """The alerts' settings from resolved config; ConfigError names a bad rule and why."""
    password = raw["alerts.smtp_password"]
    if raw["alerts.smtp_password_file"]:
        password = read_secret(raw["alerts.smtp_password_file"], "alerts.smtp_password_file", where)
    smtp = SmtpConfig(raw["alerts.smtp_host"], raw["alerts.smtp_port"], raw["alerts.smtp_security"],
                      raw["alerts.smtp_username"], password, raw["alerts.smtp_from"], raw["alerts.smtp_ca_file"])
    if smtp.host:
        try:
            check_email(smtp.sender)
        except AlertsError:
            raise ConfigError(f"{where}: key 'alerts.smtp_from': e-mail needs a sender address like "
                              f"stock-hub@example.com, got {smtp.sender!r}") from None
    if smtp.security == "none" and smtp.username:
        raise ConfigError(f"{where}: key 'alerts.smtp_security': 'none' with alerts.smtp_username would send the "
                          "SMTP password in plain text; use starttls or tls (or a local relay without a login)")
    rules: list[tuple[RuleInput, str | None]] = []
    for i, table in enumerate(raw.get("alert_rule", [])):
        origin = f"{where}: [[alert_rule]] #{i + 1}"
        secret = table["secret"] or None
        if table["secret_file"]:
            secret = read_secret(table["secret_file"], "secret_file", origin)
        fields = {"name": table["name"], "kinds": table["kinds"], "webhook_url": table["webhook_url"],
                  "email": table["email"], "secret": secret}
        try:
            rule = check_rule({k: v for k, v in fields.items() if v})
        except AlertsError as err:
            raise ConfigError(f"{origin}: {err}") from None
        if rule.channel == "webhook" and rule.secret is None:
            raise ConfigError(f"{origin}: a webhook rule in the config file needs secret or secret_file (the "
                              "receiver must know it to check signatures)")
        if rule.channel == "email" and not smtp.host:
            raise ConfigError(f"{origin}: an e-mail rule needs alerts.smtp_host")
        if any(r.name == rule.name for r, _ in rules):
            raise ConfigError(f"{origin}: another [[alert_rule]] is already named {rule.name!r}")
        rules.append((rule, rule.secret))
    return AlertsConfig(raw["alerts.db_path"], raw["alerts.digest_window_s"], raw["alerts.burst"],
                        raw["alerts.retry_base_s"], raw["alerts.retry_cap_s"], raw["alerts.give_up_after_h"],
                        raw["alerts.timeout_s"], smtp, tuple(rules))
