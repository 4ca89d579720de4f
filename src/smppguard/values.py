"""Value parsers shared by the config tables and the rules' settings: each takes a TOML value and returns it
checked, or raises ValueError with a message for the user (the caller adds the key and the line).

A bottom-level module: it imports nothing of smppguard's, so config.py and policy/ can both use it without
depending on each other.
"""

from __future__ import annotations

import re
from typing import Any, Callable

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def duration(value: Any) -> float:
    """Seconds from a number or a string such as "500ms", "30s", "5m", "2h", "3d"."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30 or \"30s\"")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * _UNIT_S[m.group(2)]
    else:
        raise ValueError(f"expected a duration such as 30 or \"30s\", \"5m\", \"3d\"; got {value!r}")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


def address(value: Any) -> tuple[str, int]:
    if not isinstance(value, str):
        raise ValueError(f"expected \"host:port\", got {value!r}")
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected \"host:port\" with a port 0-65535, got {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def upstream_address(value: Any) -> tuple[str, int] | None:
    """None means the built-in simulator."""
    if value == "simulator":
        return None
    return address(value)


def integer(lo: int, hi: int | None = None) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected a whole number, got {value!r}")
        if value < lo or (hi is not None and value > hi):
            raise ValueError(f"expected a number from {lo}" + (f" to {hi}" if hi is not None else " up")
                             + f", got {value}")
        return value
    return parse


def number(lo: float) -> Callable[[Any], float]:
    def parse(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"expected a number, got {value!r}")
        if value < lo:
            raise ValueError(f"expected a number of at least {lo}, got {value}")
        return float(value)
    return parse


def string(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {value!r}")
    return value


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {value!r}")
    return value


def strings(value: Any) -> tuple[str, ...]:
    """A list of non-empty strings."""
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ValueError(f"expected a list of non-empty strings, got {value!r}")
    return tuple(value)


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|TB)?\s*$", re.IGNORECASE)
_UNIT_BYTES = {None: 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}


def size(value: Any) -> int:
    """Bytes from a number or a string such as "500MB", "2GB" (decimal units, as disks are sold)."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as \"500MB\" or \"2GB\"")
    if isinstance(value, int) and value >= 0:
        return value
    m = _SIZE.match(value) if isinstance(value, str) else None
    if m is None:
        raise ValueError(f"expected a size such as \"500MB\" or \"2GB\"; got {value!r}")
    return int(float(m.group(1)) * _UNIT_BYTES[m.group(2).upper() if m.group(2) else None])


def choice(*options: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        if value not in options:
            raise ValueError(f"expected one of {', '.join(options)}; got {value!r}")
        return value
    return parse
