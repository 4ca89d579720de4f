"""Policy: pure decisions. `decide(submission, index, now, policy)` -> `Verdict`.

Rules run in the order of `RULES` (mitmproxy's default_addons habit: one explicit tuple you can grep); the first
that has an opinion decides, and a rule that does not apply to the message's traffic class is skipped. Nothing
here does I/O or raises on a message: a rule that has nothing to say returns None.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable

from ..errors import ConfigError
from . import blacklist, consent, content, dead, frequency, invalid, optout, quiet_hours
from . import traffic_class as classes
from .model import ALLOW, Action, Index, Submission, Verdict
from .numbers import UNKNOWN_ZONES, check_region, check_zone, locate
from .presets import PRESETS, merged

RULES: tuple[ModuleType, ...] = (invalid, dead, blacklist, optout, consent, content, frequency, quiet_hours)
RULE_NAMES = tuple(r.NAME for r in RULES)
_ZONED = (frequency, quiet_hours)  # rules that take the policy's fallback zone

__all__ = ["ALLOW", "Action", "Index", "Policy", "RULES", "Submission", "Verdict", "decide", "explain",
           "judge_text", "load_policy", "make_submission"]


@dataclass(frozen=True)
class Policy:
    """Parsed once at config load."""

    default_region: str | None
    fallback_zone: str
    classes: tuple[classes.ClassRule, ...]
    rules: tuple[tuple[ModuleType, Any], ...]  # (rule module, its Settings), in RULES order
    # submit_multi to a distribution list: its members are known only to the SMSC, so no rule can screen them.
    # "refuse" (the default) answers that destination RCNTSUBDL; "pass" forwards it unscreened.
    distribution_lists: str = "refuse"

    @functools.cached_property
    def confirmation_like_marketing(self) -> bool:
        """True when every rule treats the confirmation class as it treats marketing."""
        return all(s.applies_to(classes.CONFIRMATION) == s.applies_to(classes.DEFAULT_CLASS)
                   for _r, s in self.rules)

    @functools.cached_property
    def classes_without_confirmation(self) -> tuple:
        return tuple(c for c in self.classes if c.name != classes.CONFIRMATION)

    @functools.cached_property
    def _content_reads_text(self) -> bool:
        s = self.settings(content.NAME)
        return s.enabled and not content.idle(s)

    @functools.cached_property
    def needs_text(self) -> bool:
        """Whether any class rule or the content rule reads the decoded text."""
        return classes.needs_text(self.classes) or self._content_reads_text

    @functools.cached_property
    def needs_text_without_confirmation(self) -> bool:
        """Whether the text matters when the confirmation patterns do not (see make_submission)."""
        return classes.needs_text(self.classes_without_confirmation) or self._content_reads_text

    @functools.cached_property
    def _checks(self) -> dict[str, tuple[tuple[Any, Any], ...]]:
        return {}

    @functools.cached_property
    def _text_checks(self) -> dict[str, tuple[tuple[Any, Any], ...]]:
        return {}

    def text_checks_for(self, traffic_class: str) -> tuple[tuple[Any, Any], ...]:
        """checks_for, of the rules that judge the text (READS_TEXT): what a later part of a concatenated
        message is judged by, once its text has joined the rest."""
        checks = self._text_checks.get(traffic_class)
        if checks is None:
            rules = {rule.check for rule, _s in self.rules if getattr(rule, "READS_TEXT", False)}
            checks = self._text_checks[traffic_class] = tuple(
                (check, s) for check, s in self.checks_for(traffic_class) if check in rules)
        return checks

    def checks_for(self, traffic_class: str) -> tuple[tuple[Any, Any], ...]:
        """(check, settings) of the enabled rules that apply to a class, in order; worked out once per class."""
        checks = self._checks.get(traffic_class)
        if checks is None:
            checks = self._checks[traffic_class] = tuple(
                (rule.check, s) for rule, s in self.rules
                if s.applies_to(traffic_class) and not getattr(rule, "idle", _never_idle)(s))
        return checks

    @functools.cached_property
    def _counting(self) -> dict[str, Any]:
        return {}

    def counting_for(self, traffic_class: str) -> Any:
        """The frequency rule's settings when it counts messages of this class, else None; once per class."""
        try:
            return self._counting[traffic_class]
        except KeyError:
            s = self.settings(frequency.NAME)
            found = self._counting[traffic_class] = s if s.applies_to(traffic_class) else None
            return found

    @functools.cached_property
    def _by_name(self) -> dict[str, Any]:
        return {rule.NAME: s for rule, s in self.rules}

    def settings(self, name: str) -> Any:
        return self._by_name[name]


def _never_idle(_settings: Any) -> bool:
    return False


_POLICY_KEYS = {"preset", "default_region", "fallback_zone", "confirmation_patterns", "distribution_lists"}
DISTRIBUTION_LISTS = ("refuse", "pass")


def load_policy(policy: dict | None = None, rules: dict | None = None, class_rules: list | None = None) -> Policy:
    """Build the Policy from the [policy], [rules.*] and [[classes]] tables; ConfigError names a bad key."""
    policy = dict(policy or {})
    rules = dict(rules or {})
    for key in policy:
        if key not in _POLICY_KEYS:
            raise ConfigError(f"unknown key (known: {', '.join(sorted(_POLICY_KEYS))})", key=f"policy.{key}")
    preset = policy.pop("preset", None)
    if preset is not None and preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}", key="policy.preset")
    for name, values in rules.items():
        if name not in RULE_NAMES:
            raise ConfigError(f"unknown rule (rules are {', '.join(RULE_NAMES)})", key=f"rules.{name}")
        if not isinstance(values, dict):
            raise ConfigError("expected a table", key=f"rules.{name}")
    policy, rules = merged(preset, policy, rules)
    region = policy.get("default_region")
    try:
        region = check_region(region) if region else None
    except (ValueError, AttributeError):
        raise ConfigError(f"unknown region {region!r} (an ISO 3166 code such as \"CN\")",
                          key="policy.default_region") from None
    try:
        zone = check_zone(policy.get("fallback_zone", "UTC"))
    except ValueError as e:
        raise ConfigError(str(e), key="policy.fallback_zone") from None
    parsed = []
    for rule in RULES:
        raw = rules.get(rule.NAME, {})
        if rule in _ZONED:
            parsed.append((rule, rule.parse_settings(raw, zone)))
        elif rule is invalid:
            parsed.append((rule, rule.parse_settings(raw, region)))
        else:
            parsed.append((rule, rule.parse_settings(raw)))
    class_rules_parsed = classes.parse_classes(class_rules or [], policy.get("confirmation_patterns"))
    lists = policy.get("distribution_lists", "refuse")
    if lists not in DISTRIBUTION_LISTS:
        raise ConfigError(f"expected one of {', '.join(map(repr, DISTRIBUTION_LISTS))}, got {lists!r}",
                          key="policy.distribution_lists")
    return Policy(region, zone, class_rules_parsed, tuple(parsed), lists)


def make_submission(policy: Policy, address: str, ton: int, sender: str, account: str, service_type: str = "",
                    text: str | None = None, concat: tuple[int, int, int] | None = None,
                    index: Index | None = None, text_of: Callable[[], str | None] | None = None) -> Submission:
    """The Submission for one destination. With the Index, the confirmation patterns are matched only when
    they could change the verdict: when the rules treat confirmation like marketing, being a confirmation
    matters only for the optout grace, which needs a recent opt-out of this recipient (the verdict is the same
    either way; the case-insensitive patterns cost more than the rest of the policy). `text_of` decodes the
    text when `text` is not given, only if a class rule or the content rule will read it."""
    located = locate(address, ton, policy.default_region)
    recipient, zones = (None, UNKNOWN_ZONES) if located is None else located
    rules = policy.classes
    wants_text = policy.needs_text
    if (index is not None and recipient is not None and policy.confirmation_like_marketing
            and not _recent_optout(index, recipient, sender, account)):
        rules = policy.classes_without_confirmation
        wants_text = policy.needs_text_without_confirmation
    if text is None and text_of is not None and wants_text:
        text = text_of()
    cls = classes.classify(rules, account, sender, service_type, text)
    partial = concat is not None and concat[1] > 1  # the first part of several to arrive
    # _make: the tuple as it is, without the keyword handling of Submission(...); one per message
    return Submission._make((recipient, address, sender, account, cls, service_type, text, concat, zones,
                             partial))


def _recent_optout(index: Index, recipient: int, sender: str, account: str) -> bool:
    recent = index.optout_at
    return bool(recent) and any(key in recent for key in index.own_keys(recipient, sender, account))


def decide(sub: Submission, index: Index, now: float, policy: Policy) -> Verdict:
    for check, settings in policy.checks_for(sub.traffic_class):
        verdict = check(sub, index, now, settings)
        if verdict is not None:
            return verdict
    return ALLOW


def judge_text(sub: Submission, index: Index, now: float, policy: Policy) -> Verdict | None:
    """The verdict of the rules that judge the text, for a concatenated message whose `sub.text` has grown by
    a part (None: none of them objects). The other rules judged the recipient with the first part."""
    for check, settings in policy.text_checks_for(sub.traffic_class):
        verdict = check(sub, index, now, settings)
        if verdict is not None:
            return verdict
    return None


def explain(sub: Submission, index: Index, now: float, policy: Policy) -> list[tuple[str, str, Verdict | None]]:
    """Every rule's view of the message: (rule, "applies" | why not, its verdict or None). For `check`."""
    out = []
    for rule, settings in policy.rules:
        if not settings.enabled:
            out.append((rule.NAME, "disabled", None))
        elif not settings.applies_to(sub.traffic_class):
            out.append((rule.NAME, f"not for class {sub.traffic_class}", None))
        else:
            out.append((rule.NAME, "applies", rule.check(sub, index, now, settings)))
    return out


def frequency_key(sub: Submission, index: Index, policy: Policy) -> int | None:
    """The history key to reserve for an allowed message, or None when no frequency cap counts it."""
    s = policy.counting_for(sub.traffic_class)
    if s is None or sub.recipient is None:
        return None
    return frequency.key(sub, index, s)
