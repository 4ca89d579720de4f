"""Rule `quiet_hours`: no marketing while the recipient's local clock is inside a quiet window.

Default windows are the seed's private times 07:00-09:00 and 20:00-22:00 plus the night 22:00-07:00 (so
marketing goes out 09:00-20:00). The zone comes from a per-number override, else phonenumbers' candidates,
else `fallback_zone`. A number with several candidate zones (AU and RU mobiles, US toll-free) is allowed only
when the time is allowed in every one of them, comparing UTC offsets (COMPLIANCE-NOTES).
Action: `hold` (keep it and send at the window's end; the default), `reject`, or `schedule` (forward now with
schedule_delivery_time set to the window's end).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

from ..smpp.status import Status
from .model import NO_CONTEXT, Action, Index, Rule, RuleContext, Submission, Verdict
from .numbers import candidate_zones, check_zone, utc_offsets
from .settings import Common, choice, clock, common, get

NAME = "quiet_hours"
DEFAULT_WINDOWS = [{"start": "07:00", "end": "09:00"}, {"start": "20:00", "end": "22:00"},
                   {"start": "22:00", "end": "07:00"}]


@dataclass(frozen=True)
class Settings(Common):
    windows: tuple[tuple[int, int], ...] = ()  # (start, end) in minutes after local midnight; may wrap
    action: str = "hold"
    fallback_zone: str = "UTC"

    @functools.cached_property
    def quiet_minutes(self) -> bytes:
        """One byte per minute of the day: 1 inside a window. The common case (allowed) is a lookup per
        offset."""
        return bytes(1 if _quiet_until(m, self.windows) is not None else 0 for m in range(1440))


def _windows(value) -> tuple[tuple[int, int], ...]:
    if not isinstance(value, list):
        raise ValueError('expected a list such as [{ start = "20:00", end = "22:00" }]')
    out = []
    for w in value:
        if not isinstance(w, dict) or set(w) != {"start", "end"}:
            raise ValueError(f'each window needs exactly start and end, e.g. {{ start = "20:00", end = "22:00" }}; '
                             f"got {w!r}")
        start, end = clock(w["start"]), clock(w["end"])
        if start == end:
            raise ValueError(f"window {w['start']}-{w['end']} is empty")
        out.append((start, end))
    return tuple(out)


def parse_settings(raw: dict, ctx: RuleContext = NO_CONTEXT) -> Settings:
    c = common(NAME, raw, status=Status.RTHROTTLED, reason="quiet hours at the recipient",
               extra=frozenset({"windows", "action", "fallback_zone"}))
    action = get(NAME, raw, "action", "hold", choice("hold", "reject", "schedule"))
    zone = get(NAME, raw, "fallback_zone", ctx.fallback_zone, check_zone)
    return Settings(**vars(c), windows=get(NAME, raw, "windows", DEFAULT_WINDOWS, _windows), action=action,
                    fallback_zone=zone)


def _quiet_until(minute: int, windows) -> int | None:
    """If local `minute` of the day is inside a window, the minute (possibly > 1440) at which it ends."""
    for start, end in windows:
        if start < end:
            if start <= minute < end:
                return end
        elif minute >= start:
            return end + 1440
        elif minute < end:
            return end
    return None


#: next_allowed's answer when no instant of the coming days is allowed at every offset.
NEVER = math.inf


def next_allowed(now: float, offsets_at: Callable[[float], tuple[int, ...]], windows) -> float | None:
    """None if `now` is allowed at every UTC offset; else the first time it is, or NEVER when the windows at
    these offsets leave no instant of the coming days free (zones spread wider than the allowed hours, like
    the 42 zones of a US toll-free number in summer). Windows chain (20-22 then
    22-07), and offsets are taken again at each candidate time, so a DST change during the wait counts.
    Strategy: while the offsets stay the same, every instant before the latest window end (over the offsets)
    is quiet somewhere, so jump there; if an offset changes before that, stop at the change and look again
    (a window end computed with the old offset is an hour late after a spring-forward change)."""
    t = now
    for _ in range(8 * len(windows) + 8):
        offsets = offsets_at(t)
        latest = None
        for off in offsets:
            local = t + off
            end = _quiet_until(int(local // 60) % 1440, windows)
            if end is not None:
                ends_at = local - (local % 86400) + end * 60 - off
                latest = ends_at if latest is None else max(latest, ends_at)
        if latest is None:
            return None if t == now else t
        if offsets_at(latest) != offsets:
            latest = _offsets_change(t, latest, offsets_at, offsets)
        t = latest
    return NEVER


def _offsets_change(start: float, end: float, offsets_at: Callable[[float], tuple[int, ...]],
                    offsets: tuple[int, ...]) -> float:
    """The first whole minute in (start, end] whose offsets differ from `offsets` (offsets change only on
    the minute; one change at most between two window ends)."""
    lo, hi = int(start // 60), int(end // 60)  # offsets_at(lo) == offsets, offsets_at(hi) != offsets
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if offsets_at(mid * 60.0) == offsets:
            lo = mid
        else:
            hi = mid
    return hi * 60.0


@functools.lru_cache(maxsize=4096)
def _quiet_somewhere(zones: tuple[str, ...], minute: int, quiet: bytes) -> bool:
    """Whether this minute since the epoch is inside a window at any of the zones' UTC offsets. Memoised:
    within a minute, every recipient with the same zones gets the same answer."""
    return any(quiet[(minute + off // 60) % 1440] for off in utc_offsets(zones, minute * 60.0))


def check(sub: Submission, index: Index, now: float, s: Settings) -> Verdict | None:
    if sub.recipient is None or not s.windows:
        return None
    override = index.tz.get(sub.recipient)
    zones = sub.zones if override is None and sub.zones else candidate_zones(sub.recipient, override,
                                                                             s.fallback_zone, sub.zones)
    if not _quiet_somewhere(zones, int(now // 60), s.quiet_minutes):
        return None
    until = next_allowed(now, lambda t: utc_offsets(zones, t), s.windows)
    if until is None:
        return None
    where = zones[0] if len(zones) == 1 else f"{len(zones)} candidate zones"
    if until == NEVER:  # waiting would not help: a permanent refusal (0x58 would make the sender retry forever)
        return Verdict(Action.REJECT, NAME, Status.RSUBMITFAIL,
                       f"{s.reason} ({where}) at every hour of the coming days; if the recipient's zone is known, "
                       f"set it with `smppguard tz set`")
    local = datetime.fromtimestamp(until, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    if s.action == "reject":
        return Verdict(Action.REJECT, NAME, s.status, f"{s.reason} ({where}); allowed from {local}")
    action = Action.HOLD if s.action == "hold" else Action.SCHEDULE
    return Verdict(action, NAME, s.status, f"{s.reason} ({where}); held until {local}", until=until)


RULE = Rule(NAME, parse_settings, check)
