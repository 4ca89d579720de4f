"""Policy: pure decisions. `decide(submission, index, now, policy)` -> `Verdict`.

Rules run in the order of `RULES` (mitmproxy's default_addons habit: one explicit tuple you can grep); the first
that has an opinion decides, and a rule that does not apply to the message's traffic class is skipped. Nothing
here does I/O or raises on a message: a rule that has nothing to say returns None.
Each rule is one `Rule` record (model.py), listed once in `RULES`: what the store and the proxy need of a rule
(its Index keys, its idle work, its start-up warnings) they ask the `Policy`, which asks the records, so no code
outside a rule's own module names it.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Any, Callable

from ..errors import ConfigError
from . import blacklist, consent, content, credit, dead, frequency, invalid, optout, quiet_hours, review, signature
from . import traffic_class as classes
from .model import ALLOW, Action, History, Index, OptoutTerms, Rule, RuleContext, ScopedKeys, Submission, Verdict
from .numbers import UNKNOWN_ZONES, check_region, check_zone, locate
from .presets import PRESETS, merged

#: The rules, in the order they are asked. A new rule is a module with a `RULE`, and one entry here.
RULES: tuple[Rule, ...] = (invalid.RULE, dead.RULE, blacklist.RULE, optout.RULE, credit.RULE, consent.RULE,
                           content.RULE, signature.RULE, review.RULE, frequency.RULE, quiet_hours.RULE)
RULE_NAMES = tuple(r.name for r in RULES)

__all__ = ["ALLOW", "Action", "Index", "Policy", "RULES", "Rule", "Submission", "Verdict", "decide", "explain",
           "judge_text", "load_policy", "make_submission"]

Check = Callable[[Submission, Index, float, Any], "Verdict | None"]


@dataclass(frozen=True)
class Policy:
    """Parsed once at config load."""

    default_region: str | None
    fallback_zone: str
    classes: tuple[classes.ClassRule, ...]
    rules: tuple[tuple[Rule, Any], ...]  # (rule, its Settings), in the registry's order
    # submit_multi to a distribution list: its members are known only to the SMSC, so no rule can screen them.
    # "refuse" (the default) answers that destination RCNTSUBDL; "pass" forwards it unscreened.
    distribution_lists: str = "refuse"

    @functools.cached_property
    def rule_names(self) -> tuple[str, ...]:
        return tuple(rule.name for rule, _s in self.rules)

    @functools.cached_property
    def confirmation_like_marketing(self) -> bool:
        """True when every rule treats the confirmation class as it treats marketing."""
        return all(s.applies_to(classes.CONFIRMATION) == s.applies_to(classes.DEFAULT_CLASS)
                   for _r, s in self.rules)

    @functools.cached_property
    def classes_without_confirmation(self) -> tuple:
        return tuple(c for c in self.classes if c.name != classes.CONFIRMATION)

    @functools.cached_property
    def _rules_read_text(self) -> bool:
        return any(rule.reads_text and s.enabled and not rule.inactive(s) for rule, s in self.rules)

    @functools.cached_property
    def needs_text(self) -> bool:
        """Whether any class rule or any rule that reads text will read the decoded text."""
        return classes.needs_text(self.classes) or self._rules_read_text

    @functools.cached_property
    def needs_text_without_confirmation(self) -> bool:
        """Whether the text matters when the confirmation patterns do not (see make_submission)."""
        return classes.needs_text(self.classes_without_confirmation) or self._rules_read_text

    @functools.cached_property
    def _checks(self) -> dict[str, tuple[tuple[Check, Any], ...]]:
        return {}

    @functools.cached_property
    def _text_checks(self) -> dict[str, tuple[tuple[Check, Any], ...]]:
        return {}

    def text_checks_for(self, traffic_class: str) -> tuple[tuple[Check, Any], ...]:
        """checks_for, of the rules that read the text: what a later part of a concatenated message is judged
        by, once its text has joined the rest."""
        return self._checks_of(self._text_checks, traffic_class, lambda rule: rule.reads_text)

    def _checks_of(self, table: dict[str, tuple[tuple[Check, Any], ...]], traffic_class: str,
                   keep: Callable[[Rule], bool]) -> tuple[tuple[Check, Any], ...]:
        """checks_for, of the rules `keep` takes; worked out once per class into `table`."""
        checks = table.get(traffic_class)
        if checks is None:
            kept = {rule.check for rule, _s in self.rules if keep(rule)}
            checks = table[traffic_class] = tuple(
                (check, s) for check, s in self.checks_for(traffic_class) if check in kept)
        return checks

    def checks_for(self, traffic_class: str) -> tuple[tuple[Check, Any], ...]:
        """(check, settings) of the enabled rules that apply to a class, in order; worked out once per class."""
        checks = self._checks.get(traffic_class)
        if checks is None:
            checks = self._checks[traffic_class] = tuple(
                (rule.check, s) for rule, s in self.rules if s.applies_to(traffic_class) and not rule.inactive(s))
        return checks

    @functools.cached_property
    def _unlisted_checks(self) -> dict[str, tuple[tuple[Check, Any], ...]]:
        return {}

    def unlisted_checks_for(self, traffic_class: str) -> tuple[tuple[Check, Any], ...]:
        """checks_for, less the rules that read only the lists (Rule.lists_only): what a number in no list is
        judged by."""
        return self._checks_of(self._unlisted_checks, traffic_class, lambda rule: not rule.lists_only)

    # --- what the store and the proxy ask of the rules -----------------------------------------------------

    @functools.cached_property
    def _history(self) -> tuple[History, Any] | None:
        """The send history's terms and the settings of the rule that owns it."""
        return next(((rule.history, s) for rule, s in self.rules if rule.history is not None), None)

    @property
    def history_span_s(self) -> float:
        """How far back send history is read (0: no rule counts sends)."""
        return self._history[0].span_s if self._history else 0.0

    def history_key(self, number: int, account: str, index: Index) -> int | None:
        """The Index.history key a send to `number` by `account` counts under (None: no rule counts sends)."""
        if self._history is None:
            return None
        history, s = self._history
        keys = history.keys(index, s)
        return number if keys is None else keys(number, account)

    def history_keys(self, index: Index) -> ScopedKeys | None:
        """history_key as a function of (number, account); None where the key is the number itself."""
        return self._history[0].keys(index, self._history[1]) if self._history else None

    @functools.cached_property
    def _counted(self) -> dict[str, bool]:
        return {}

    @functools.cached_property
    def _key_is_number(self) -> bool:
        """Whether the history key of a send is the recipient's number whatever the account (the common case):
        then forward() reserves without asking the rule, which matters at a send per message."""
        return self._history is not None and self._history[0].keys(Index(), self._history[1]) is None

    def forward(self, sub: Submission, verdict: Verdict, index: Index, now: float) -> int | None:
        """A message with this verdict goes out now: spend the one-time allowance it used (the opt-out grace),
        and reserve its send in the history, so that concurrent messages count it. Returns the history key
        reserved, to be released if the SMSC refuses the message (Index.release), or None."""
        if verdict.mark is not None:
            index.grace_used.add(verdict.mark)  # the one confirmation is spent as it goes out
        recipient = sub.recipient
        if recipient is None:
            return None
        counted = self._counted.get(sub.traffic_class)
        if counted is None:  # whether the counting rule counts this class: worked out once per class
            counted = self._counted[sub.traffic_class] = (
                self._history is not None and self._history[1].applies_to(sub.traffic_class))
        if not counted:
            return None
        key = recipient if self._key_is_number else self.history_key(recipient, sub.account, index)
        index.reserve(key, now)  # type: ignore[arg-type]
        return key

    def held_key(self, sub: Submission, index: Index) -> int | None:
        """The history key a held message counts under from the moment it is held (Index.hold_send), or None
        when no rule counts sends of its class."""
        if sub.recipient is None or self._history is None or not self._history[1].applies_to(sub.traffic_class):
            return None
        return self.history_key(sub.recipient, sub.account, index)

    @functools.cached_property
    def _optouts(self) -> tuple[OptoutTerms, Any] | None:
        """How opt-outs are kept, and the settings of the rule that owns them."""
        return next(((rule.optouts, s) for rule, s in self.rules if rule.optouts is not None), None)

    @property
    def grace_s(self) -> float:
        """How long a recent opt-out is remembered for its confirmation (0: never)."""
        return self._optouts[0].grace_s(self._optouts[1]) if self._optouts else 0.0

    def opens_grace(self, scope: str, source: str) -> bool:
        """Whether an opt-out of this scope and source is remembered (Index.optout_at) for its confirmation."""
        return self._optouts is not None and self._optouts[0].opens_grace(scope, source)

    @functools.cached_property
    def maybe_in_grace(self) -> Callable[[Index, int, str, str], bool]:
        """(index, number, sender, account) -> whether a confirmation to this recipient from this sender could
        pass the opt-out grace now: the optout rule's own function, called directly on the hot path."""
        return self._optouts[0].maybe_in_grace if self._optouts else _never_in_grace

    @property
    def correlation_threshold(self) -> int:
        """Opt-outs from this many senders make a number opted out globally (0: never)."""
        return self._optouts[0].correlation_threshold(self._optouts[1]) if self._optouts else 0

    @property
    def optout_scope(self) -> str:
        """The scope of an opt-out learned from a recipient's reply ("sender" when no rule keeps opt-outs)."""
        return self._optouts[0].scope(self._optouts[1]) if self._optouts else "sender"

    @property
    def dead_for_s(self) -> float:
        """How long a number learned dead stays dead (90 days when no rule reads dead numbers)."""
        for rule, s in self.rules:
            if rule.dead_for is not None:
                return rule.dead_for(s)
        return 90 * 86400.0

    @functools.cached_property
    def credit_floor(self) -> int | None:
        """The credit score below which the Index keeps a number's score, or None: no enabled rule reads it."""
        return next((rule.credit_floor(s) for rule, s in self.rules if rule.credit_floor is not None and s.enabled),
                    None)

    @functools.cached_property
    def credit_weights(self) -> tuple[tuple[str, int], ...]:
        """The points of each part of a credit score, as the rule that reads it weighs them (() : its defaults)."""
        return next((rule.credit_weights(s) for rule, s in self.rules if rule.credit_weights is not None), ())

    def tidy(self, index: Index, now: float) -> None:
        """Each rule's idle work: forget Index entries no rule needs any more (every minute or so)."""
        for rule, s in self.rules:
            if rule.tidy is not None:
                rule.tidy(index, now, s)

    def warnings(self) -> list[str]:
        """What the rules have to say about their settings at start-up."""
        return [w for rule, s in self.rules for w in rule.warnings(s)]

    # --- by name, for people (check-config, check) and tests -----------------------------------------------

    @functools.cached_property
    def _by_name(self) -> dict[str, Any]:
        return {rule.name: s for rule, s in self.rules}

    def settings(self, name: str) -> Any:
        return self._by_name[name]

    def without(self, name: str) -> "Policy":
        """This policy with the rule `name` left out (a held message released by hand: no quiet hours)."""
        return dataclasses.replace(self, rules=tuple((r, s) for r, s in self.rules if r.name != name))


def _never_in_grace(_index: Index, _number: int, _sender: str, _account: str) -> bool:
    return False


_POLICY_KEYS = {"preset", "default_region", "fallback_zone", "confirmation_patterns", "distribution_lists"}
DISTRIBUTION_LISTS = ("refuse", "pass")


def load_policy(policy: dict | None = None, rules: dict | None = None, class_rules: list | None = None,
                registry: tuple[Rule, ...] = RULES) -> Policy:
    """Build the Policy from the [policy], [rules.*] and [[classes]] tables; ConfigError names a bad key.
    `registry` is the rule list, in order (RULES; a test may add its own)."""
    policy = dict(policy or {})
    rules = dict(rules or {})
    names = tuple(rule.name for rule in registry)
    for key in policy:
        if key not in _POLICY_KEYS:
            raise ConfigError(f"unknown key (known: {', '.join(sorted(_POLICY_KEYS))})", key=f"policy.{key}")
    preset = policy.pop("preset", None)
    if preset is not None and preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}", key="policy.preset")
    for name, values in rules.items():
        if name not in names:
            raise ConfigError(f"unknown rule (rules are {', '.join(names)})", key=f"rules.{name}")
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
    context = RuleContext(region, zone)
    parsed = tuple((rule, rule.parse(rules.get(rule.name, {}), context)) for rule in registry)
    class_rules_parsed = classes.parse_classes(class_rules or [], policy.get("confirmation_patterns"))
    lists = policy.get("distribution_lists", "refuse")
    if lists not in DISTRIBUTION_LISTS:
        raise ConfigError(f"expected one of {', '.join(map(repr, DISTRIBUTION_LISTS))}, got {lists!r}",
                          key="policy.distribution_lists")
    return Policy(region, zone, class_rules_parsed, parsed, lists)


def make_submission(policy: Policy, address: str, ton: int, sender: str, account: str, service_type: str = "",
                    text: str | None = None, concat: tuple[int, int, int] | None = None,
                    index: Index | None = None, text_of: Callable[[], str | None] | None = None) -> Submission:
    """The Submission for one destination. With the Index, the confirmation patterns are matched only when
    they could change the verdict: when the rules treat confirmation like marketing, being a confirmation
    matters only for the opt-out grace, which needs a recent opt-out of this recipient (the verdict is the same
    either way; the case-insensitive patterns cost more than the rest of the policy). `text_of` decodes the
    text when `text` is not given, only if a class rule or a rule that reads text will read it."""
    located = locate(address, ton, policy.default_region)
    recipient, zones = (None, UNKNOWN_ZONES) if located is None else located
    rules = policy.classes
    wants_text = policy.needs_text
    if (index is not None and recipient is not None and policy.confirmation_like_marketing
            and not policy.maybe_in_grace(index, recipient, sender, account)):
        rules = policy.classes_without_confirmation
        wants_text = policy.needs_text_without_confirmation
    if text is None and text_of is not None and wants_text:
        text = text_of()
    cls = classes.classify(rules, account, sender, service_type, text)
    partial = concat is not None and concat[1] > 1  # the first part of several to arrive
    # its slots set one by one, without the keyword handling of Submission(...): one is built per message
    sub = _new(Submission)
    sub.recipient, sub.address, sub.sender, sub.account, sub.traffic_class, sub.service_type = (
        recipient, address, sender, account, cls, service_type)
    sub.text, sub.concat, sub.zones, sub.partial, sub.ton = text, concat, zones, partial, ton
    return sub


_new = object.__new__


def decide(sub: Submission, index: Index, now: float, policy: Policy) -> Verdict:
    # This runs for every message: checks_for's tables are read here, the methods called once for a class (`is
    # None`, not `or`: a class no rule applies to has an empty tuple). A number in no list (most new recipients)
    # is judged without the rules that read only the lists: they have nothing to say of it.
    cls, number, listed = sub.traffic_class, sub.recipient, index.listed
    if number is None or listed.bits[(k := number & listed.mask) >> 3] >> (k & 7) & 1:  # `number in listed`
        if (checks := policy._checks.get(cls)) is None:
            checks = policy.checks_for(cls)
    elif (checks := policy._unlisted_checks.get(cls)) is None:
        checks = policy.unlisted_checks_for(cls)
    for check, settings in checks:
        verdict = check(sub, index, now, settings)
        if verdict is not None:
            return verdict
    return ALLOW


def judge_text(sub: Submission, index: Index, now: float, policy: Policy) -> Verdict | None:
    """The verdict of the rules that read the text, for a concatenated message whose `sub.text` has grown by
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
            out.append((rule.name, "disabled", None))
        elif not settings.applies_to(sub.traffic_class):
            out.append((rule.name, f"not for class {sub.traffic_class}", None))
        else:
            out.append((rule.name, "applies", rule.check(sub, index, now, settings)))
    return out
