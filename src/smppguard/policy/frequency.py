"""Rule `frequency`: at most `max` messages per recipient per `period`, and at least `min_interval` apart.

Seed: at most 4 marketing SMS per user per month, at least 72 hours apart. `period` is a duration (default 30
days, a rolling window) or "calendar-month" (since the 1st, in the recipient's local time). A concatenated
message counts once; a send counts only when the SMSC accepts it, and messages in flight count as reservations
so concurrent submits cannot overrun the cap (the bridge reserves `key()`, and releases it if the SMSC refuses
the message). Scope `global` counts
every account's messages to the number; `account` counts per system_id.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from ..smpp.status import Status
from .model import Action, Index, Submission, Verdict, scoped
from .numbers import _zoneinfo, candidate_zones
from .settings import Common, choice, common, get, integer, seconds

NAME = "frequency"
CALENDAR_MONTH = "calendar-month"


@dataclass(frozen=True)
class Settings(Common):
    max: int = 4
    period: float | str = 30 * 86400.0
    min_interval: float = 72 * 3600.0
    scope: str = "global"
    fallback_zone: str = "UTC"


def _period(value) -> float | str:
    if value == CALENDAR_MONTH:
        return value
    return seconds(value)


def parse_settings(raw: dict, fallback_zone: str = "UTC") -> Settings:
    c = common(NAME, raw, status=Status.RSUBMITFAIL, reason="frequency cap reached",
               extra=frozenset({"max", "period", "min_interval", "scope"}))
    return Settings(**vars(c), max=get(NAME, raw, "max", 4, integer(0)),
                    period=get(NAME, raw, "period", "30d", _period),
                    min_interval=get(NAME, raw, "min_interval", "72h", seconds),
                    scope=get(NAME, raw, "scope", "global", choice("global", "account")),
                    fallback_zone=fallback_zone)


def key(sub: Submission, index: Index, s: Settings) -> int:
    """The history key a send to this recipient is counted under."""
    assert sub.recipient is not None
    if s.scope == "account":
        return scoped(sub.recipient, index.scope_id("account", sub.account))
    return sub.recipient


def period_start(sub: Submission, index: Index, now: float, s: Settings) -> float:
    if s.period != CALENDAR_MONTH:
        return now - float(s.period)
    assert sub.recipient is not None
    zone = candidate_zones(sub.recipient, index.tz.get(sub.recipient), s.fallback_zone, sub.zones)[0]
    local = datetime.fromtimestamp(now, timezone.utc).astimezone(_zoneinfo(zone))
    return local.replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp()


def check(sub: Submission, index: Index, now: float, s: Settings) -> Verdict | None:
    if sub.recipient is None:
        return None
    k = key(sub, index, s)
    if s.max and k not in index.history:
        return None  # most messages: a recipient with no send on record
    last = index.last_send(k)
    if last is not None and s.min_interval and now - last < s.min_interval:
        wait_h = (s.min_interval - (now - last)) / 3600
        return Verdict(Action.REJECT, NAME, s.status,
                       f"{s.reason}: previous message {(now - last) / 3600:.1f} h ago, "
                       f"minimum interval {s.min_interval / 3600:g} h ({wait_h:.1f} h to go)")
    count = index.sends_between(k, period_start(sub, index, now, s), now)
    if count >= s.max:
        period = "this calendar month" if s.period == CALENDAR_MONTH else f"{float(s.period) / 86400:g} days"
        return Verdict(Action.REJECT, NAME, s.status, f"{s.reason}: {count} of {s.max} in {period}")
    return None
