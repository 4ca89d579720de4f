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


class JsonFormatter(logging.Formatter):
    """One JSON object per line (journald, log shippers): time (ISO 8601, UTC), level, logger, message, and the
    traceback when there is one. JSON escapes every control character, so Rule 1 holds by construction."""

    def format(self, record: logging.LogRecord) -> str:
        import json

        out = {"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
               "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            out["traceback"] = self.formatException(record.exc_info)
        for key in ("account", "rule", "status", "recipient", "action"):
            value = record.__dict__.get(key)
            if value is not None:
                out[key] = value
        return json.dumps(out, ensure_ascii=False)


def configure(level: str, fmt: str = "text") -> None:
    """The daemon's logging: smppguard's own loggers at `level`, everything else (third-party libraries) at warning
    unless `level` is quieter, one line per record in `fmt` ("text" or "json")."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else
                         SafeFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    numeric = logging.getLevelName(level.upper())
    root.setLevel(max(numeric, logging.WARNING))
    logging.getLogger("smppguard").setLevel(numeric)


_NOT_REFUSED = ("hold", "schedule")  # Action values whose sender is not answered the rule's status


class VerdictLog:
    """An observer of `decided` (hooks): one log line per refusal or hold, with the account, sender, rule, status
    and the recipient as the audit log keeps it ([audit] recipient), at `level`; at most `per_second` lines a
    second, the rest counted and said in the next line that is logged. `ignores_allows`: allowed messages build
    no event for it."""

    ignores_allows = True

    def __init__(self, level: int, mask: Callable[[int | None, str], str], per_second: float = 20.0,
                 clock: Callable[[], float] = time.monotonic):
        self.logger = logging.getLogger("smppguard.verdicts")
        self.level = level
        self.mask = mask
        self.per_second = per_second
        self.clock = clock
        self._tokens = per_second
        self._last = clock()
        self.left_out = 0

    def decided(self, e) -> None:
        v = e.verdict
        if v.allowed or not self.logger.isEnabledFor(self.level):  # Hooks passes it no allow; a caller might
            return
        now = self.clock()
        self._tokens = min(self.per_second, self._tokens + (now - self._last) * self.per_second)
        self._last = now
        if self._tokens < 1.0:
            self.left_out += 1
            return
        self._tokens -= 1.0
        recipient = e.destination if e.sub is None else self.mask(e.sub.recipient, e.sub.address)
        more = f" ({self.left_out} more refusals and holds not logged)" if self.left_out else ""
        self.left_out = 0
        # what the sender is answered: a hold is OK (with a proxy id) once saved, a message scheduled for the
        # window's end goes to the SMSC now; the rule's status is for a proxy with no hold queue
        status = 0 if v.action._value_ in _NOT_REFUSED else int(v.status or 0)
        self.logger.log(self.level, "%s %s from %s to %s: %s, status 0x%02X: %s%s", e.account, v.action.value,
                        e.sender, recipient, v.rule, status, v.reason, more,
                        extra={"account": e.account, "rule": v.rule, "status": f"0x{status:02X}",
                               "recipient": recipient, "action": v.action.value})
