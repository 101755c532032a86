"""Send one alert by e-mail over SMTP (aiosmtplib: STARTTLS or implicit TLS, AUTH)."""

from __future__ import annotations

import ssl
from email.message import EmailMessage
from email.utils import formatdate

import aiosmtplib

from hub.alerts.config import SmtpConfig
from hub.alerts.outcome import REFUSED, RETRY, SENT, Attempt


def tls_context(config: SmtpConfig) -> ssl.SSLContext:
    """Certificates verified against the system store, or the configured CA file."""
    return ssl.create_default_context(cafile=config.ca_file or None)


def message(config: SmtpConfig, to: str, msg_id: str, subject: str, text: str) -> EmailMessage:
    """The e-mail; its Message-ID is the outbox key, the same on every retry."""
    mail = EmailMessage()
    mail["From"] = config.sender
    mail["To"] = to
    mail["Subject"] = subject
    mail["Date"] = formatdate(usegmt=True)
    domain = config.sender.rpartition("@")[2] or "localhost"
    mail["Message-ID"] = f"<{msg_id}@{domain}>"
    mail.set_content(text)
    return mail


async def send(config: SmtpConfig, to: str, msg_id: str, subject: str, text: str, timeout_s: float) -> Attempt:
    """One attempt: a refused recipient is refused for good; anything else is retried."""
    if not config.host:
        return Attempt(REFUSED, "no SMTP server is configured (alerts.smtp_host); e-mail cannot be sent")
    security = {"starttls": {"start_tls": True}, "tls": {"use_tls": True}, "none": {"start_tls": False}}
    try:
        await aiosmtplib.send(message(config, to, msg_id, subject, text), hostname=config.host, port=config.port,
                              username=config.username or None, password=config.password or None,
                              timeout=timeout_s, tls_context=None if config.security == "none" else tls_context(config),
                              **security[config.security])  # type: ignore[arg-type]
    except aiosmtplib.SMTPRecipientsRefused as err:
        return Attempt(REFUSED, f"{config.host} refused the address {to}: {_said(err)}; correct the rule's address")
    except aiosmtplib.SMTPAuthenticationError as err:
        return Attempt(RETRY, f"{config.host} refused the login of {config.username!r}: {_said(err)}; check "
                              "alerts.smtp_username and the password")
    except aiosmtplib.SMTPException as err:
        return Attempt(RETRY, f"SMTP {config.host}:{config.port}: {_said(err)}")
    except (OSError, ssl.SSLError) as err:
        return Attempt(RETRY, f"cannot reach SMTP {config.host}:{config.port}: {err}")
    return Attempt(SENT, response={"smtp": f"{config.host}:{config.port}"})


def _said(err: Exception) -> str:
    return str(err).strip() or type(err).__name__
