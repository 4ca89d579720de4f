"""Rule `optout`: the recipient said T / TD / 退订 / STOP to this sender, this account, or (correlated) everyone.

Scopes: `sender` (source_addr, the default, as Aliyun/Huawei scope by signature), `account` (system_id) or
`global`. Opt-outs from `correlation_threshold` distinct senders make the number globally opted out (the seed's
cross-platform correlation); the store writes that global entry when the threshold is crossed, so this rule
only looks keys up.
Grace: US rules allow one confirmation text within 5 minutes of the opt-out. One message from the same sender
(or account, for an account-scoped opt-out) within `grace` passes only if it is classed `confirmation`; the
verdict carries the grace as its `mark`, spent when the message goes out (Policy.forward). The rule owns
Index.optout_at (recent opt-outs that opened a grace, see `opens_grace`) and Index.grace_used; `tidy` forgets
both once the grace is over.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..smpp.status import Status
from .model import IMPORTED, NO_CONTEXT, Action, Index, OptoutTerms, Rule, RuleContext, Submission, Verdict
from .settings import Common, choice, common, get, integer, seconds, strings

NAME = "optout"


@dataclass(frozen=True)
class Settings(Common):
    scope: str = "sender"
    correlation_threshold: int = 3
    grace: float = 300.0
    grace_classes: tuple[str, ...] = ("confirmation",)


def parse_settings(raw: dict, ctx: RuleContext = NO_CONTEXT) -> Settings:
    c = common(NAME, raw, status=Status.RSUBMITFAIL, reason="recipient opted out",
               classes=("marketing", "confirmation"),
               extra=frozenset({"scope", "correlation_threshold", "grace", "grace_classes"}))
    return Settings(**vars(c), scope=get(NAME, raw, "scope", "sender", choice("sender", "account", "global")),
                    correlation_threshold=get(NAME, raw, "correlation_threshold", 3, integer(0)),
                    grace=get(NAME, raw, "grace", "5m", seconds),
                    grace_classes=get(NAME, raw, "grace_classes", ["confirmation"], strings))


def check(sub: Submission, index: Index, now: float, s: Settings) -> Verdict | None:
    if sub.recipient is None:
        return None
    if sub.traffic_class in s.grace_classes:
        # The opt-out being confirmed is this sender's, or this account's under `scope = "account"` (us-tcpa).
        for key in index.own_keys(sub.recipient, sub.sender, sub.account):
            at = index.optout_at.get(key)
            if at is not None and now - at <= s.grace and key not in index.grace_used:
                return Verdict(Action.ALLOW, NAME, 0, "confirmation of the opt-out, within the grace period",
                               mark=key)
    found = index.maybe_optout_key(sub.recipient, sub.sender, sub.account)
    if found is None:
        return None
    scope, _key = found
    return Verdict(Action.REJECT, NAME, s.status, f"{s.reason} ({scope})")


def opens_grace(scope: str, source: str) -> bool:
    """Whether an opt-out is remembered (Index.optout_at) for the confirmation grace: a person's own reply to a
    sender or an account. An imported list is history, not a reply just now (and a million of them would fill
    memory for nothing); the grace never looks at global opt-outs."""
    return scope != "global" and source != IMPORTED


def maybe_in_grace(index: Index, number: int, sender: str, account: str) -> bool:
    """Whether this recipient opted out of this sender or account recently enough that a confirmation to it
    could pass (whether it is spent or over is for `check`)."""
    recent = index.optout_at
    return bool(recent) and any(key in recent for key in index.own_keys(number, sender, account))


def tidy(index: Index, now: float, s: Settings) -> None:
    """Forget opt-outs whose grace is over, and that their confirmation was sent."""
    for key, at in list(index.optout_at.items()):
        if now - at > s.grace:
            del index.optout_at[key]
            index.grace_used.discard(key)


def _grace_s(s: Settings) -> float:
    return s.grace


def _correlation_threshold(s: Settings) -> int:
    return s.correlation_threshold


def _scope(s: Settings) -> str:
    return s.scope


RULE = Rule(NAME, parse_settings, check, tidy=tidy, lists_only=True,
            optouts=OptoutTerms(_grace_s, opens_grace, maybe_in_grace, _correlation_threshold, _scope))
