"""Traffic classes: which kind of message this is, by ordered rules on system_id, source_addr, service_type or
text. The first rule that matches names the class; the rest is `marketing`.

Each rule matches when every key it gives matches (values in a key are alternatives; shell-style wildcards
allowed for the identifiers, regular expressions for `patterns`). `confirmation` (the opt-out confirmation
text, e.g. "已退订", "unsubscribed") is always the last rule, so operators' own rules come first.
"""

from __future__ import annotations

import fnmatch
import functools
import re
from dataclasses import dataclass, field

from ..errors import ConfigError
from .settings import patterns, strings

DEFAULT_CLASS = "marketing"
CONFIRMATION = "confirmation"
DEFAULT_CONFIRMATION_PATTERNS = ["unsubscribed", "opted out", "you will (no longer|not) receive", "已退订",
                                 "退订成功", "取消订阅成功"]
_KEYS = {"name", "system_id", "source_addr", "service_type", "patterns"}


@dataclass(frozen=True)
class ClassRule:
    name: str
    system_id: tuple[re.Pattern, ...] = ()
    source_addr: tuple[re.Pattern, ...] = ()
    service_type: tuple[re.Pattern, ...] = ()
    patterns: tuple[re.Pattern, ...] = ()
    globs: dict = field(default_factory=dict, compare=False)  # the globs as written, by key (check-config)

    def matches(self, system_id: str, source_addr: str, service_type: str, text: str | None) -> bool:
        for wanted, value in ((self.system_id, system_id), (self.source_addr, source_addr),
                              (self.service_type, service_type)):
            if wanted and not any(p.fullmatch(value) for p in wanted):
                return False
        if self.patterns:
            return text is not None and self.any_pattern.search(text) is not None
        return True

    @functools.cached_property
    def any_pattern(self) -> re.Pattern:
        """The patterns as one alternation: one scan of the text instead of one per pattern."""
        return re.compile("|".join(f"(?:{p.pattern})" for p in self.patterns), re.IGNORECASE)


def _globs(value) -> tuple[re.Pattern, ...]:
    return tuple(re.compile(fnmatch.translate(v)) for v in strings(value))


def parse_classes(raw: list, confirmation_patterns: list[str] | None = None) -> tuple[ClassRule, ...]:
    if not isinstance(raw, list):
        raise ConfigError("expected [[classes]] tables", key="classes")
    rules = []
    for i, entry in enumerate(raw):
        where = f"classes[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError("expected a table", key=where)
        unknown = set(entry) - _KEYS
        if unknown:
            raise ConfigError(f"unknown key (known: {', '.join(sorted(_KEYS))})", key=f"{where}.{sorted(unknown)[0]}")
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            raise ConfigError("every class rule needs a name", key=f"{where}.name")
        if not any(entry.get(k) for k in _KEYS - {"name"}):  # an empty list would match every message
            raise ConfigError("a class rule needs at least one of system_id, source_addr, service_type, "
                              "patterns", key=where)
        try:
            rules.append(ClassRule(name, _globs(entry.get("system_id", [])), _globs(entry.get("source_addr", [])),
                                   _globs(entry.get("service_type", [])), patterns(entry.get("patterns", [])),
                                   {k: strings(entry[k]) for k in ("system_id", "source_addr", "service_type")
                                    if entry.get(k)}))
        except ValueError as e:
            raise ConfigError(str(e), key=where) from None
    confirmation = DEFAULT_CONFIRMATION_PATTERNS if confirmation_patterns is None else confirmation_patterns
    if confirmation:
        try:
            rules.append(ClassRule(CONFIRMATION, patterns=patterns(list(confirmation))))
        except ValueError as e:
            raise ConfigError(str(e), key="policy.confirmation_patterns") from None
    return tuple(rules)


def classify(rules: tuple[ClassRule, ...], system_id: str, source_addr: str, service_type: str,
             text: str | None) -> str:
    for rule in rules:
        if rule.matches(system_id, source_addr, service_type, text):
            return rule.name
    return DEFAULT_CLASS


def needs_text(rules: tuple[ClassRule, ...]) -> bool:
    return any(r.patterns for r in rules)
