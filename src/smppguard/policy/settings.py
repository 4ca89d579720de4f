"""Parsing each rule's settings once, at config load (mitmproxy's configure habit): shared helpers.

Every rule has `enabled`, `classes`, `status` and `reason`; a rule adds its own keys. A bad value raises
ConfigError naming the key as "rules.<name>.<key>", so config.py can add the line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import time as dtime
from typing import Any, Callable

from ..errors import ConfigError
from ..smpp.status import Status
from ..values import choice as choice  # re-exported: rules import their parsers from here
from ..values import duration
from ..values import integer as integer
from ..values import string as _str

ALL_CLASSES = "*"
COMMON_KEYS = frozenset({"enabled", "classes", "status", "reason"})


@dataclass(frozen=True)
class Common:
    enabled: bool
    classes: frozenset[str]  # {"*"} = every class
    status: int
    reason: str

    def applies_to(self, traffic_class: str) -> bool:
        return self.enabled and (traffic_class in self.classes or ALL_CLASSES in self.classes)


def status_value(value: Any) -> int:
    """A command_status: a number (0x45) or a name ("RSUBMITFAIL" / "ESME_RSUBMITFAIL")."""
    if isinstance(value, str):
        name = value.upper().removeprefix("ESME_")
        try:
            return int(Status[name])
        except KeyError:
            try:
                return int(value, 0)
            except ValueError:
                raise ValueError(f"unknown command_status {value!r} (e.g. 0x45 or \"RSUBMITFAIL\")") from None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= 0xFFFFFFFF:
        raise ValueError(f"expected a non-zero command_status such as 0x45, got {value!r}")
    return value


#: Rules apply to marketing by default, and to "confirmation" too: a text that merely looks like an opt-out
#: confirmation gets no pass, since the one real confirmation is let through earlier by the optout rule's grace.
DEFAULT_CLASSES = ("marketing", "confirmation")


def common(rule: str, raw: dict[str, Any], *, status: int, reason: str, classes=DEFAULT_CLASSES,
           enabled: bool = True, extra: frozenset[str] = frozenset()) -> Common:
    """Check the keys of one [rules.<rule>] table and parse the common ones."""
    for key in raw:
        if key not in COMMON_KEYS and key not in extra:
            known = ", ".join(sorted(COMMON_KEYS | extra))
            raise ConfigError(f"unknown key (known: {known})", key=f"rules.{rule}.{key}")
    en = get(rule, raw, "enabled", enabled, _bool)
    cls = get(rule, raw, "classes", list(classes), _classes)
    st = get(rule, raw, "status", status, status_value)
    rs = get(rule, raw, "reason", reason, _str)
    return Common(en, frozenset(cls), st, rs)


def get(rule: str, raw: dict[str, Any], key: str, default: Any, parse: Callable[[Any], Any]) -> Any:
    if key not in raw:
        return parse(default) if default is not None else None
    try:
        return parse(raw[key])
    except ValueError as e:
        raise ConfigError(str(e), key=f"rules.{rule}.{key}") from None


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {value!r}")
    return value


def _classes(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"expected a list of class names such as [\"marketing\"], got {value!r}")
    return value


def strings(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"expected a list of strings, got {value!r}")
    return tuple(value)


def patterns(value: Any) -> tuple[re.Pattern, ...]:
    out = []
    for p in strings(value):
        try:
            out.append(re.compile(p, re.IGNORECASE))
        except re.error as e:
            raise ValueError(f"bad regular expression {p!r}: {e}") from None
    return tuple(out)


def seconds(value: Any) -> float:
    return duration(value)


def clock(value: Any) -> int:
    """Minutes after midnight from "HH:MM"."""
    if not isinstance(value, str):
        raise ValueError(f"expected a time \"HH:MM\", got {value!r}")
    try:
        t = dtime.fromisoformat(value) if value != "24:00" else None
    except ValueError:
        raise ValueError(f"expected a time \"HH:MM\", got {value!r}") from None
    return 1440 if t is None else t.hour * 60 + t.minute
