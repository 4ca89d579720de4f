"""A Config written back as TOML: every setting in force (the rules' and classes' too, with what presets and
defaults filled in), in a form `parse_config` reads back to the same settings. `smppguard check-config` prints it.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

from .config import TABLES, Config
from .policy.traffic_class import CONFIRMATION

#: Rule settings that are not keys of their [rules.*] table (they come from [policy]).
_FROM_POLICY = {("invalid", "default_region"), ("frequency", "fallback_zone")}


def value(v: Any) -> str:
    """One TOML value."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() else repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)  # a TOML basic string is a JSON string
    if isinstance(v, re.Pattern):
        return json.dumps(v.pattern, ensure_ascii=False)
    if isinstance(v, (tuple, list, frozenset, set)):
        items = sorted(v) if isinstance(v, (frozenset, set)) else list(v)
        return "[" + ", ".join(value(x) for x in items) + "]"
    raise TypeError(f"no TOML form for {v!r}")


def _option(table: str, key: str, v: Any) -> str:
    if v is None:  # an optional address that is off, or the simulator as the upstream
        return '"simulator"' if (table, key) == ("upstream", "address") else '""'
    if isinstance(v, tuple) and len(v) == 2 and isinstance(v[0], str) and isinstance(v[1], int):  # host, port
        return value(f"{v[0]}:{v[1]}")
    if (table, key) == ("http", "tokens"):
        return "[" + ", ".join(f"{{ name = {value(t.name)}, token = {value(t.token)}, access = {value(t.access)} }}"
                               for t in v) + "]"
    if key == "accounts":  # system_id = "password" pairs
        return "{" + ", ".join(f"{json.dumps(k)} = {value(p)}" for k, p in v) + "}"
    return value(v)


def _minutes(m: int) -> str:
    return f"{m // 60 % 24:02d}:{m % 60:02d}"


def _rule_value(name: str, key: str, v: Any) -> str:
    if key == "windows":
        return "[" + ", ".join(f'{{ start = "{_minutes(a)}", end = "{_minutes(b)}" }}' for a, b in v) + "]"
    if key == "weights":
        return "{ " + ", ".join(f"{k} = {w}" for k, w in v) + " }"
    if key == "status":
        return f"0x{v:02X}"
    return value(v)


def to_toml(cfg: Config) -> str:
    lines = [f"# the settings in force from {cfg.source}"]
    for table in TABLES:
        section = getattr(cfg, table)
        lines.append(f"\n[{table}]")
        for f in dataclasses.fields(section):
            lines.append(f"{f.name} = {_option(table, f.name, getattr(section, f.name))}")
    p = cfg.policy
    confirmation = next((c for c in p.classes if c.name == CONFIRMATION), None)
    lines += ["\n[policy]", f"default_region = {value(p.default_region or '')}",
              f"fallback_zone = {value(p.fallback_zone)}", f"distribution_lists = {value(p.distribution_lists)}",
              f"confirmation_patterns = {value(confirmation.patterns if confirmation else ())}"]
    for rule, s in p.rules:
        lines.append(f"\n[rules.{rule.name}]")
        for f in dataclasses.fields(s):
            if (rule.name, f.name) not in _FROM_POLICY:
                lines.append(f"{f.name} = {_rule_value(rule.name, f.name, getattr(s, f.name))}")
    for c in p.classes:
        if c.name == CONFIRMATION:
            continue
        lines.append("\n[[classes]]")
        lines.append(f"name = {value(c.name)}")
        for key in ("system_id", "source_addr", "service_type"):
            if key in c.globs:
                lines.append(f"{key} = {value(c.globs[key])}")
        if c.patterns:
            lines.append(f"patterns = {value(c.patterns)}")
    return "\n".join(lines) + "\n"
