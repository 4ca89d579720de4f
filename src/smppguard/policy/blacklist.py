"""Rule `blacklist`: the global list (complaints to 10086/10010/12321, carrier and regulator lists, DND).

A complaint is the costliest outcome the seed describes, so the entry is global: no sender or account may reach
it with marketing. Where an entry came from (its source) is kept in the store, not in the hot-path set.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..smpp.status import Status
from .model import NO_CONTEXT, Action, Index, Rule, RuleContext, Submission, Verdict
from .settings import Common, common

NAME = "blacklist"


@dataclass(frozen=True)
class Settings(Common):
    pass


def parse_settings(raw: dict, ctx: RuleContext = NO_CONTEXT) -> Settings:
    c = common(NAME, raw, status=Status.RSUBMITFAIL, reason="number is blacklisted",
               classes=("marketing", "confirmation"))
    return Settings(**vars(c))


def check(sub: Submission, index: Index, now: float, s: Settings) -> Verdict | None:
    if sub.recipient is not None and sub.recipient in index.blacklist:
        return Verdict(Action.REJECT, NAME, s.status, s.reason)
    return None


RULE = Rule(NAME, parse_settings, check, lists_only=True)
