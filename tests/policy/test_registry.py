"""Adding a rule is one module and one line in the rule list: a rule defined only here, registered that way, is
parsed, checked in its place, explained, tidied and warned about without any other code naming it."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from policy_helpers import CN_MOBILE, at, sub

from smppguard.errors import ConfigError
from smppguard.policy import RULES, Action, Index, decide, explain, load_policy
from smppguard.policy.model import NO_CONTEXT, Rule, RuleContext, Submission, Verdict
from smppguard.policy.settings import Common, common, get, strings

NOON = at(2025, 6, 13, 12)


# --- the whole of a new rule: one module's worth ------------------------------------------------------------

NAME = "prefix"
REFUSED = 0x4A0


@dataclass(frozen=True)
class Settings(Common):
    prefixes: tuple[str, ...] = ()


def parse_settings(raw: dict, ctx: RuleContext = NO_CONTEXT) -> Settings:
    c = common(NAME, raw, status=REFUSED, reason="number range refused", extra=frozenset({"prefixes"}))
    return Settings(**vars(c), prefixes=get(NAME, raw, "prefixes", [], strings))


def check(sub: Submission, index: Index, now: float, s: Settings) -> Verdict | None:
    if sub.recipient is not None and str(sub.recipient).startswith(s.prefixes):
        return Verdict(Action.REJECT, NAME, s.status, s.reason)
    return None


tidied: list[float] = []


def tidy(index: Index, now: float, s: Settings) -> None:
    tidied.append(now)


def warnings(s: Settings) -> tuple[str, ...]:
    return () if s.prefixes else ("[rules.prefix] prefixes is empty: the rule refuses nothing",)


RULE = Rule(NAME, parse_settings, check, tidy=tidy, warnings=warnings, inactive=lambda s: not s.prefixes)

# --- the one line ----------------------------------------------------------------------------------------------

WITH_PREFIX = (*RULES[:3], RULE, *RULES[3:])  # after blacklist, before optout


def test_a_registered_rule_is_parsed_checked_in_its_place_and_explained():
    policy = load_policy({}, {"prefix": {"prefixes": ["86138"]}}, registry=WITH_PREFIX)
    assert policy.rule_names == ("invalid", "dead", "blacklist", "prefix", "optout", "consent", "content",
                                 "frequency", "quiet_hours")
    v = decide(sub(CN_MOBILE), Index(), NOON, policy)
    assert (v.action, v.rule, v.status) == (Action.REJECT, "prefix", REFUSED)
    # blacklist comes first, optout after it
    assert decide(sub(CN_MOBILE), Index(blacklist={CN_MOBILE}), NOON, policy).rule == "blacklist"
    assert decide(sub(8613900000001), Index(), NOON, policy).allowed
    assert dict((n, why) for n, why, _v in explain(sub(CN_MOBILE), Index(), NOON, policy))["prefix"] == "applies"
    tidied.clear()
    policy.tidy(Index(), NOON)
    assert tidied == [NOON]


def test_a_registered_rule_checks_its_own_keys_and_speaks_at_start_up():
    with pytest.raises(ConfigError) as e:
        load_policy({}, {"prefix": {"prefix": ["86"]}}, registry=WITH_PREFIX)
    assert e.value.key == "rules.prefix.prefix"
    idle = load_policy(registry=WITH_PREFIX)
    assert "[rules.prefix] prefixes is empty: the rule refuses nothing" in idle.warnings()
    assert decide(sub(CN_MOBILE), Index(), NOON, idle).allowed  # inactive: left out of decide()
    with pytest.raises(ConfigError, match="unknown rule"):
        load_policy({}, {"prefix": {}})  # not in RULES: unknown
