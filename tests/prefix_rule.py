"""A rule that exists only in the tests, written as a rule module is: settings, a check, and its `RULE`.

It shows that adding a rule is one module and one line in the rule list (`WITH_PREFIX`): the tests register it
and drive it through the policy, the screening and the bridge without any other code naming it.
"""

from __future__ import annotations

from dataclasses import dataclass

from smppguard.policy import RULES
from smppguard.policy.model import NO_CONTEXT, Action, Index, Rule, RuleContext, Submission, Verdict
from smppguard.policy.settings import Common, common, get, strings

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
