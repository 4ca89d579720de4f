"""Rule `review`: the marketing of an account whose sending pattern tripped the review is held, not refused.

The review itself (review.py, beside the proxy) watches each account's figures over a rolling window and, past a
threshold of [review] with `action = "hold"`, marks the account held (a change-log row, so every sidecar holds
it). This rule reads that mark from the Index: a held account's messages of its classes go to the hold queue and
are looked at again every `recheck`; `smppguard account release` lifts the mark and makes them due at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..smpp.status import Status
from .model import NO_CONTEXT, Action, Index, Rule, RuleContext, Submission, Verdict
from .settings import Common, common, get, seconds

NAME = "review"
HELD = "held"


@dataclass(frozen=True)
class Settings(Common):
    recheck: float = 600.0  # seconds


def parse_settings(raw: dict, ctx: RuleContext = NO_CONTEXT) -> Settings:
    # the status is what the sender gets where no hold queue keeps the message: 0x58, try later
    c = common(NAME, raw, status=Status.RTHROTTLED, reason="account held for review",
               extra=frozenset({"recheck"}))
    return Settings(**vars(c), recheck=get(NAME, raw, "recheck", "10m", seconds))


def check(sub: Submission, index: Index, now: float, s: Settings) -> Verdict | None:
    state = index.reviews.get(sub.account)
    if state is not None and state[1] == HELD:
        return Verdict(Action.HOLD, NAME, s.status, f"{s.reason} until an operator releases it",
                       until=now + s.recheck)
    return None


RULE = Rule(NAME, parse_settings, check)
