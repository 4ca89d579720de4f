"""Rule `dead`: numbers known to be dead (empty, suspended: 空号/停机), learned from receipts or imported.

Numbers are recycled (US: after >= 45 days), so an entry expires (`expire`, default 90 days) and its expiry
restores nothing else (consent is not revived). The expiry is stored with the entry; this rule only reads it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..smpp.status import Status
from .model import NO_CONTEXT, Action, Index, Rule, RuleContext, Submission, Verdict
from .settings import Common, common, get, seconds

NAME = "dead"


@dataclass(frozen=True)
class Settings(Common):
    expire: float = 90 * 86400.0


def parse_settings(raw: dict, ctx: RuleContext = NO_CONTEXT) -> Settings:
    c = common(NAME, raw, status=Status.RINVDSTADR, reason="number is dead (empty or suspended)",
               classes=("*",), extra=frozenset({"expire"}))
    return Settings(**vars(c), expire=get(NAME, raw, "expire", "90d", seconds))


def check(sub: Submission, index: Index, now: float, s: Settings) -> Verdict | None:
    if sub.recipient is None:
        return None
    expires = index.dead.get(sub.recipient)
    if expires is not None and expires > now:
        return Verdict(Action.REJECT, NAME, s.status, s.reason)
    return None


def tidy(index: Index, now: float, s: Settings) -> None:
    """Forget expired entries (the store keeps them until they are cleared)."""
    for number, expires in list(index.dead.items()):
        if expires <= now:
            del index.dead[number]


def _dead_for(s: Settings) -> float:
    return s.expire


RULE = Rule(NAME, parse_settings, check, tidy=tidy, dead_for=_dead_for)
