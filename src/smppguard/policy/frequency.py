"""Rule `frequency`: at most `max` messages per recipient per `period`, and at least `min_interval` apart.

Seed: at most 4 marketing SMS per user per month, at least 72 hours apart. `period` is a duration (default 30
days, a rolling window) or "calendar-month" (since the 1st, in the recipient's local time). A concatenated
message counts once; a send counts only when the SMSC accepts it, and messages in flight count as reservations
so concurrent submits cannot overrun the cap (screening reserves `history_key()` through `Policy.forward`, and
releases it if the SMSC refuses the message). Scope `global` counts every account's messages to the number;
`account` counts per system_id. The rule owns Index.history: the store loads `HISTORY_S` of it under
`history_key`, and `tidy` forgets what is older.
A message the hold queue keeps (quiet hours) counts from the moment it is held, as a send at its release time
(Index.held, kept by the queue): a second message to the number in the night is refused at once, as it would be
by day, instead of being held and dropped at release.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from ..smpp.status import Status
from .model import NO_CONTEXT, Action, History, Index, Rule, RuleContext, ScopedKeys, Submission, Verdict, scoped
from .numbers import _zoneinfo, candidate_zones
from .settings import Common, choice, common, get, integer, seconds

NAME = "frequency"
CALENDAR_MONTH = "calendar-month"
#: How far back sends are read: the longest period offered (a calendar month) plus margin.
HISTORY_S = 32 * 86400.0


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


def parse_settings(raw: dict, ctx: RuleContext = NO_CONTEXT) -> Settings:
    c = common(NAME, raw, status=Status.RSUBMITFAIL, reason="frequency cap reached",
               extra=frozenset({"max", "period", "min_interval", "scope"}))
    return Settings(**vars(c), max=get(NAME, raw, "max", 4, integer(0)),
                    period=get(NAME, raw, "period", "30d", _period),
                    min_interval=get(NAME, raw, "min_interval", "72h", seconds),
                    scope=get(NAME, raw, "scope", "global", choice("global", "account")),
                    fallback_zone=ctx.fallback_zone)


def history_key(number: int, account: str, index: Index, s: Settings) -> int:
    """The history key a send to `number` by `account` is counted under."""
    if s.scope == "account":
        return scoped(number, index.scope_id("account", account))
    return number


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
    k = sub.recipient if s.scope != "account" else history_key(sub.recipient, sub.account, index, s)
    held = index.held.get(k)
    if s.max and held is None and k not in index.history:
        return None  # most messages: a recipient with no send on record
    last = index.last_send(k)
    if last is not None and s.min_interval and now - last < s.min_interval:
        wait_h = (s.min_interval - (now - last)) / 3600
        return Verdict(Action.REJECT, NAME, s.status,
                       f"{s.reason}: previous message {(now - last) / 3600:.1f} h ago, "
                       f"minimum interval {s.min_interval / 3600:g} h ({wait_h:.1f} h to go)")
    if held is not None and s.min_interval:
        nearest = min(held, key=lambda at: abs(at - now))  # this one would go now, or at about the same time
        if abs(nearest - now) < s.min_interval:
            return Verdict(Action.REJECT, NAME, s.status,
                           f"{s.reason}: a held message to this number is released "
                           f"{max(0.0, nearest - now) / 3600:.1f} h from now, minimum interval "
                           f"{s.min_interval / 3600:g} h")
    count = index.sends_between(k, period_start(sub, index, now, s), now) + (len(held) if held else 0)
    if count >= s.max:
        period = "this calendar month" if s.period == CALENDAR_MONTH else f"{float(s.period) / 86400:g} days"
        return Verdict(Action.REJECT, NAME, s.status, f"{s.reason}: {count} of {s.max} in {period}")
    return None


def history_keys(index: Index, s: Settings) -> ScopedKeys | None:
    """history_key as a function of (number, account) for these settings; None where the key is the number."""
    if s.scope == "account":
        return ScopedKeys(index, "account")
    return None


def tidy(index: Index, now: float, s: Settings) -> None:
    index.prune_history(now - HISTORY_S)


RULE = Rule(NAME, parse_settings, check, tidy=tidy, history=History(history_keys, HISTORY_S))
