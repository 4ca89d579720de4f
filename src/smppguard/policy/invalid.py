"""Rule `invalid`: a destination that is not a valid phone number (seed: drop 空号 and malformed numbers first).

Validity is phonenumbers' (numbers.py), after normalising with TON/NPI and the default region.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..smpp.status import Status
from .model import Action, Index, Submission, Verdict
from .settings import Common, common

NAME = "invalid"


@dataclass(frozen=True)
class Settings(Common):
    pass


def parse_settings(raw: dict) -> Settings:
    c = common(NAME, raw, status=Status.RINVDSTADR, reason="not a valid phone number", classes=("*",))
    return Settings(**vars(c))


def check(sub: Submission, index: Index, now: float, s: Settings) -> Verdict | None:
    if sub.recipient is None:
        return Verdict(Action.REJECT, NAME, s.status, f"{s.reason}: {sub.address!r}")
    return None
