"""Running as a systemd service: the notify protocol and a watchdog gated on loop health.

Standard library only, so both the edge agent and the hub can use it.
"""

from service.notify import (
    TEST_HANG_ENV,
    Notifier,
    Watchdog,
    watchdog_interval_s,
)

__all__ = ["TEST_HANG_ENV", "Notifier", "Watchdog", "watchdog_interval_s"]
