"""Rule `consent`: classes that need the recipient's confirmed consent (PIPL, GDPR prior consent).

Off unless enabled (a preset or [rules.consent] enabled = true), because it refuses every message of its classes
until a consent ledger is imported. Consent is per account (system_id) or global; `pending` (double opt-in
not yet confirmed) does not count.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..smpp.status import Status
from .model import GLOBAL, NO_CONTEXT, Action, Index, Rule, RuleContext, Submission, Verdict, scoped
from .settings import Common, choice, common, get

NAME = "consent"


@dataclass(frozen=True)
class Settings(Common):
    scope: str = "global"


def parse_settings(raw: dict, ctx: RuleContext = NO_CONTEXT) -> Settings:
    c = common(NAME, raw, status=Status.RSUBMITFAIL, reason="no confirmed consent", enabled=False,
               extra=frozenset({"scope"}))
    return Settings(**vars(c), scope=get(NAME, raw, "scope", "global", choice("global", "account")))


def check(sub: Submission, index: Index, now: float, s: Settings) -> Verdict | None:
    if sub.recipient is None:
        return None
    everyone = index.consent.get(scoped(sub.recipient, GLOBAL))
    if everyone == "confirmed":
        return None
    if s.scope == "account":
        sid = index.maybe_scope_id("account", sub.account)
        if sid is not None and index.consent.get(scoped(sub.recipient, sid)) == "confirmed":
            return None
    pending = everyone == "pending"
    return Verdict(Action.REJECT, NAME, s.status, s.reason + (" (pending confirmation)" if pending else ""))


RULE = Rule(NAME, parse_settings, check)
