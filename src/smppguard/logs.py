"""Logging that a hostile peer cannot abuse: no forged lines, no floods.

Rule 1: whatever a peer chose (a system_id, an address, a message's text) may hold a newline or an escape
sequence. `SafeFormatter` writes every control character of a record's message as an escape (\\n, \\x1b), so one
record is always one line; a traceback, which smppguard itself adds, keeps its lines.
Rule 2: what a peer can make happen again and again (a refused connection, a malformed PDU) is logged through a
`Throttle`: the first time in each interval per key, and then once more saying how many were left out.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Callable

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape(text: str) -> str:
    """Control characters as escapes: one line, nothing a terminal interprets."""
    return _CONTROL.sub(lambda m: _NAMED.get(m.group(), f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                                             else f"\\u{ord(m.group()):04x}"), text)


class SafeFormatter(logging.Formatter):
    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        record.message = escape(record.message)
        return super().formatMessage(record)


class Throttle:
    """Log at most once per `interval` per key; the next line says how many were left out meanwhile. Keys are
    forgotten after an interval of silence, so a flood of distinct keys costs memory for one interval only (at
    most `max_keys`; past it, everything is counted under one key)."""

    def __init__(self, logger: logging.Logger, interval: float = 60.0, max_keys: int = 10_000,
                 clock: Callable[[], float] = time.monotonic):
        self.logger = logger
        self.interval = interval
        self.max_keys = max_keys
        self.clock = clock
        self._seen: dict[object, list] = {}  # key -> [last logged at, left out since]

    def log(self, level: int, key: object, msg: str, *args: object) -> bool:
        """Log `msg % args` unless this key was logged less than an interval ago; True if it was logged."""
        now = self.clock()
        seen = self._seen
        if len(seen) >= self.max_keys and key not in seen:
            self._forget(now)
            if len(seen) >= self.max_keys:
                key = "(others)"
        entry = seen.get(key)
        if entry is not None and now - entry[0] < self.interval:
            entry[1] += 1
            return False
        left_out = entry[1] if entry is not None else 0
        seen[key] = [now, 0]
        if left_out:
            msg += f" ({left_out} more like it in the last {self.interval:.0f} s not logged)"
        self.logger.log(level, msg, *args)
        return True

    def _forget(self, now: float) -> None:
        for key in [k for k, (at, left_out) in self._seen.items() if now - at >= self.interval and not left_out]:
            del self._seen[key]
