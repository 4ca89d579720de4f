"""systemd's notify protocol (sd_notify(3)), written directly: a datagram to $NOTIFY_SOCKET.

READY=1 once the daemon accepts binds, RELOADING=1 (with MONOTONIC_USEC) while SIGHUP re-reads the config,
STOPPING=1 as it shuts down, STATUS= a line for `systemctl status`, and WATCHDOG=1 every half of
$WATCHDOG_USEC when the unit sets WatchdogSec. Without $NOTIFY_SOCKET every call does nothing.
"""

from __future__ import annotations

import os
import socket
import time


def notify(*lines: str) -> bool:
    """Send `lines` ("READY=1", "STATUS=...") as one message; True if there is a socket to send to."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return False
    if path.startswith("@"):  # an abstract socket
        path = "\0" + path[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        try:
            sock.sendto("\n".join(lines).encode(), path)
        except OSError:
            return False
    return True


def reloading() -> bool:
    return notify("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")


def watchdog_interval() -> float | None:
    """Seconds between WATCHDOG=1 pings (half of what the unit allows), or None when no watchdog is set."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or not usec.isdigit() or (pid and pid.isdigit() and int(pid) != os.getpid()):
        return None
    return int(usec) / 2e6
