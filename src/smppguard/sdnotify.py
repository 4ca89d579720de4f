"""systemd's notify protocol (sd_notify(3)), written directly: a datagram to $NOTIFY_SOCKET.

READY=1 once the daemon accepts binds, RELOADING=1 (with MONOTONIC_USEC) while SIGHUP re-reads the config,
STOPPING=1 as it shuts down, STATUS= a line for `systemctl status`, and WATCHDOG=1 every half of
$WATCHDOG_USEC when the unit sets WatchdogSec. Without $NOTIFY_SOCKET every call does nothing.

While it loads (Loading), before READY=1: EXTEND_TIMEOUT_USEC= every EXTEND_EVERY seconds (the first after
EXTEND_EVERY), each asking for EXTEND_BY more, with a STATUS= line saying how far the load is, from a thread of
its own, so a load that takes longer than the unit's TimeoutStartSec (90 s) is not killed while it moves.
Rule: the extension is tied to progress: once the loader has reported no step for STALL seconds, the thread
stops asking, and systemd's own timeout ends a load that hangs.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Callable

log = logging.getLogger("smppguard")

#: Seconds between two EXTEND_TIMEOUT_USEC= messages while the daemon loads; each asks for EXTEND_BY seconds
#: more. The shipped unit's TimeoutStartSec (90 s) is longer than both: systemd waits that long for the first.
EXTEND_EVERY = 10.0
EXTEND_BY = 30.0
#: A load that reported no step for this long has stopped moving: no more extensions.
STALL = 60.0
#: Seconds between two progress lines in the log while the daemon loads.
LOG_EVERY = 5.0


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


def _count(n: int) -> str:
    """3200000 -> '3.2M', 45000 -> '45k'."""
    if n >= 1_000_000:
        return f"{n / 1e6:.1f}M"
    if n >= 10_000:
        return f"{n / 1e3:.0f}k"
    return str(n)


class Loading:
    """A context for the daemon's load before it serves: `step(what, done, total)` from the loader (from within
    its chunks: "blacklist", 3_200_000, 20_000_000); a thread meanwhile sends EXTEND_TIMEOUT_USEC= and
    STATUS=loading blacklist 3.2M/20M every EXTEND_EVERY seconds and logs the same every LOG_EVERY seconds, as
    long as a step came within STALL seconds (the Rule above). The thread runs whatever the loader does: a step
    that holds the GIL in one long C call delays it, but numpy and SQLite give the GIL up for their bulk work."""

    def __init__(self, send: Callable[..., bool] = notify, clock: Callable[[], float] = time.monotonic):
        self._send = send
        self._clock = clock
        self._step: tuple[str, int, int | None] | None = None
        self.started = self.last_step = clock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.extensions = 0  # how many EXTEND_TIMEOUT_USEC= messages went out (the tests)

    def step(self, what: str, done: int, total: int | None = None) -> None:
        self._step = (what, done, total)  # said in words by the thread: a step costs the loader next to nothing
        self.last_step = self._clock()

    @property
    def status(self) -> str:
        if self._step is None:
            return "loading the store"
        what, done, total = self._step
        return f"loading {what} {_count(done)}" + (f"/{_count(total)}" if total else "")

    def __enter__(self) -> Loading:
        self._thread = threading.Thread(target=self._run, name="startup-progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        # a start that is over within EXTEND_EVERY says nothing: the unit's own timeout is longer
        next_extend, next_log = self.started + EXTEND_EVERY, self.started + LOG_EVERY
        while True:
            now = self._clock()
            if now >= next_extend:
                next_extend = now + EXTEND_EVERY
                if now - self.last_step <= STALL and self._send(f"EXTEND_TIMEOUT_USEC={int(EXTEND_BY * 1e6)}",
                                                                f"STATUS={self.status}"):
                    self.extensions += 1
            if now >= next_log:
                next_log = now + LOG_EVERY
                log.info("%s (%.0f s since start-up began)", self.status, now - self.started)
            if self._stop.wait(max(0.0, min(next_extend, next_log) - self._clock())):
                return
