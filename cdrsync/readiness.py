"""systemd's readiness / watchdog protocol (sd_notify), without a dependency.

contrib/cdrsync.service runs `cdrsync run` as `Type=notify` with `WatchdogSec=`: systemd counts the
service as started only after "READY=1", and restarts it when "WATCHDOG=1" stops coming (a pass
hung on a dead database connection, a deadlock); "STOPPING=1" tells it a clean shutdown began.
Outside systemd ($NOTIFY_SOCKET unset) every call is a no-op, so the same code runs under cron,
in a terminal and in tests.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Optional

log = logging.getLogger("cdrsync.readiness")


def notify(state: str, env: Optional[dict[str, str]] = None) -> bool:
    """Send one notification ("READY=1", "WATCHDOG=1", "STOPPING=1", "STATUS=..."); True if a
    systemd socket received it."""
    address = (os.environ if env is None else env).get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):  # abstract namespace socket
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(state.encode("utf-8"))
    except OSError as exc:
        # Never fatal: a lost notification at worst makes systemd restart us, which is logged.
        log.warning("cannot notify systemd (%s): %s", state.split("=")[0], exc.strerror or exc)
        return False
    return True
