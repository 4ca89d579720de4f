"""Rule `credit`: a number's credit score (the seed's "communication credit file", section 5.3), and marketing
refused below `min_score`.

The score starts at 100 and each event on record moves it: a complaint or a carrier or regulator listing, a past
blacklisting (removed, still watched), each sender's or account's opt-out and a global one, a dead number, each
receipt that said it is suspended, and, back up, recent successful deliveries. `score` is pure: the store reads
the parts (store/credit.py), `smppguard check` shows them with their points, and the Index keeps the score of
only the numbers below `min_score` (`Index.low_credit`), which is what this rule reads. With the defaults, one
opt-out (80) or two (60) refuse nothing more than the optout rule does; two and a receipt that said the number
is suspended (50) do, from every sender, before the third sender's opt-out makes it global.

Off by default: it refuses messages no other rule would, on evidence that adds up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from ..smpp.status import Status
from .model import NO_CONTEXT, Action, Index, Rule, RuleContext, Submission, Verdict
from .settings import Common, common, get, integer

NAME = "credit"

#: The points of each part, per event; the config may change any of them ([rules.credit] weights).
DEFAULT_WEIGHTS = {"complaint": -60, "listed": -40, "watched": -20, "optout": -20, "global_optout": -40,
                   "dead": -50, "suspended": -10, "delivered": 5}
#: Recent successful deliveries add at most this much.
DELIVERED_CAP = 20


class CreditParts(NamedTuple):
    """What is on record about one number."""

    complaint: int = 0  # blacklisted after a complaint (1 or 0)
    listed: int = 0  # blacklisted by a carrier, a regulator or by hand
    watched: int = 0  # once blacklisted, removed, still watched
    optout: int = 0  # opt-outs from senders or accounts
    global_optout: int = 0
    dead: int = 0
    suspended: int = 0  # receipts that said suspended, within [inbound] suspended_within
    delivered: int = 0  # successful deliveries in the last 30 days


@dataclass(frozen=True)
class Settings(Common):
    min_score: int = 60
    weights: tuple[tuple[str, int], ...] = tuple(DEFAULT_WEIGHTS.items())


def _weights(value) -> tuple[tuple[str, int], ...]:
    if not isinstance(value, dict):
        raise ValueError("expected a table of part = points")
    out = dict(DEFAULT_WEIGHTS)
    for part, points in value.items():
        if part not in DEFAULT_WEIGHTS:
            raise ValueError(f"unknown part {part!r} (parts are {', '.join(DEFAULT_WEIGHTS)})")
        if isinstance(points, bool) or not isinstance(points, int) or not -100 <= points <= 100:
            raise ValueError(f"{part}: expected points from -100 to 100, got {points!r}")
        out[part] = points
    return tuple(out.items())


def parse_settings(raw: dict, ctx: RuleContext = NO_CONTEXT) -> Settings:
    c = common(NAME, raw, status=Status.RSUBMITFAIL, reason="number's credit score is too low", enabled=False,
               classes=("marketing",), extra=frozenset({"min_score", "weights"}))
    return Settings(**vars(c), min_score=get(NAME, raw, "min_score", 60, integer(0, 101)),
                    weights=get(NAME, raw, "weights", {}, _weights))


def score(parts: CreditParts, weights: tuple[tuple[str, int], ...] = tuple(DEFAULT_WEIGHTS.items())
          ) -> tuple[int, list[tuple[str, int, int]]]:
    """(score 0-100, [(part, count, points)] of the parts on record)."""
    w = {**DEFAULT_WEIGHTS, **dict(weights)}
    total = 100
    shown = []
    for part, count in zip(CreditParts._fields, parts, strict=True):
        if not count:
            continue
        points = w[part] * count
        if part == "delivered":
            points = min(points, DELIVERED_CAP)
        total += points
        shown.append((part, count, points))
    return max(0, min(100, total)), shown


def check(sub: Submission, index: Index, now: float, s: Settings) -> Verdict | None:
    if sub.recipient is None:
        return None
    low = index.low_credit.get(sub.recipient)
    if low is None or low >= s.min_score:
        return None
    return Verdict(Action.REJECT, NAME, s.status, f"{s.reason} ({low} < {s.min_score})")


def _floor(s: Settings) -> int:
    return s.min_score


RULE = Rule(NAME, parse_settings, check, credit_floor=_floor, credit_weights=lambda s: s.weights)
