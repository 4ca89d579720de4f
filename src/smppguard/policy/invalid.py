"""Rule `invalid`: a destination that is not a valid phone number (seed: drop 空号 and malformed numbers first).

Validity is phonenumbers' (numbers.py), after normalising with TON/NPI and the default region.
The reason never quotes the address: it goes into the audit log and the log, where the recipient is kept as
[audit] recipient says (masked by default), and a reason is kept as it is.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..smpp.status import Status
from .model import NO_CONTEXT, Action, Index, Rule, RuleContext, Submission, Verdict
from .numbers import locate, region_hint
from .settings import Common, common

NAME = "invalid"


@dataclass(frozen=True)
class Settings(Common):
    default_region: str | None = None  # the policy's; without it a national number cannot be placed


def parse_settings(raw: dict, ctx: RuleContext = NO_CONTEXT) -> Settings:
    c = common(NAME, raw, status=Status.RINVDSTADR, reason="not a valid phone number", classes=("*",))
    return Settings(**vars(c), default_region=ctx.default_region)


def check(sub: Submission, index: Index, now: float, s: Settings) -> Verdict | None:
    if sub.recipient is not None:
        return None
    return Verdict(Action.REJECT, NAME, s.status,
                   f"{s.reason}{region_hint(sub.address, s.default_region)}{_ton_hint(sub, s)}")


def _ton_hint(sub: Submission, s: Settings) -> str:
    """When the TON decided: digits sent as international (TON 1) that are a valid national number."""
    if sub.ton != 1 or not s.default_region:
        return ""
    if locate(sub.address, 0, s.default_region) is None:
        return " (dest_addr_ton 1: read as an international number, with its country code first)"
    return (f" (dest_addr_ton 1 says international, so the digits need their country code; as a national number "
            f"of {s.default_region} they would be valid)")


def warnings(s: Settings) -> tuple[str, ...]:
    if s.enabled and s.default_region is None:
        return ("no [policy] default_region: destinations without a country code (13800138000) are refused as "
                "invalid; with one (8613800138000, +8613800138000) they pass",)
    return ()


RULE = Rule(NAME, parse_settings, check, warnings=warnings)
