"""Rule `quiet_hours`: no marketing while the recipient's clock is in a quiet window; hold until it ends.

The clock is built from local wall-clock times (policy_helpers.at); expectations are stated in local time of
the zone that decides, plus the UTC hour where a DST change makes the difference visible.
"""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from policy_helpers import (
    AU_MOBILE,
    CN_MOBILE,
    DAY,
    HOUR,
    MINUTE,
    NEW_YORK,
    NO_ZONE,
    PERTH,
    SHANGHAI,
    SYDNEY,
    US_NY,
    US_TOLL_FREE,
    at,
    local,
    sub,
)

from smppguard.errors import ConfigError
from smppguard.policy import load_policy, quiet_hours
from smppguard.policy.model import Action, Index, RuleContext
from smppguard.policy.numbers import candidate_zones
from smppguard.smpp.status import Status

CN = load_policy({"preset": "cn-marketing"}).settings("quiet_hours")  # quiet 07-09, 20-22, 22-07
US_WINDOWS = [{"start": "21:00", "end": "08:00"}]
IN_SHANGHAI, IN_NEW_YORK = RuleContext(fallback_zone=SHANGHAI), RuleContext(fallback_zone=NEW_YORK)
US = quiet_hours.parse_settings({"windows": US_WINDOWS}, IN_NEW_YORK)


def check(number: int, now: float, s=CN, index: Index | None = None):
    return quiet_hours.check(sub(number), index or Index(), now, s)


def utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, timezone.utc)


def test_quiet_hours_defaults():
    s = quiet_hours.parse_settings({})
    assert s.windows == ((7 * 60, 9 * 60), (20 * 60, 22 * 60), (22 * 60, 7 * 60)) == CN.windows
    assert s.action == "hold" and s.status == Status.RTHROTTLED and s.fallback_zone == "UTC"
    assert s.applies_to("marketing") and not s.applies_to("transactional")
    assert CN.fallback_zone == SHANGHAI


# --- window edges, Asia/Shanghai ---------------------------------------------------------------------------------


@pytest.mark.parametrize("hms, until", [
    ((0, 0, 0), (0, 9, 0)),
    ((6, 59, 59), (0, 9, 0)),
    ((7, 0, 0), (0, 9, 0)),
    ((8, 59, 59), (0, 9, 0)),
    ((9, 0, 0), None),
    ((12, 0, 0), None),
    ((19, 59, 0), None),
    ((19, 59, 59), None),
    ((20, 0, 0), (1, 9, 0)),  # 20-22 then 22-07 then 07-09: tomorrow 09:00, not 22:00
    ((20, 30, 0), (1, 9, 0)),
    ((21, 59, 59), (1, 9, 0)),
    ((22, 0, 0), (1, 9, 0)),
    ((23, 59, 59), (1, 9, 0)),
])
def test_quiet_hours_cn_window_edges(hms, until):
    now = at(2025, 6, 13, *hms)
    v = check(CN_MOBILE, now)
    if until is None:
        assert v is None
    else:
        days, hour, minute = until
        assert v.action is Action.HOLD and v.rule == "quiet_hours" and v.status == Status.RTHROTTLED
        assert v.until == at(2025, 6, 13 + days, hour, minute)


def test_quiet_hours_chained_windows_hold_until_morning():
    v = check(CN_MOBILE, at(2025, 6, 13, 20, 30))
    assert local(v.until, SHANGHAI) == datetime(2025, 6, 14, 9, 0, tzinfo=ZoneInfo(SHANGHAI))
    assert v.until != at(2025, 6, 13, 22)


def test_quiet_hours_end_of_month_and_year():
    assert check(CN_MOBILE, at(2025, 12, 31, 21)).until == at(2026, 1, 1, 9)


def test_quiet_hours_window_to_midnight():
    s = quiet_hours.parse_settings({"windows": [{"start": "22:00", "end": "24:00"}]}, IN_SHANGHAI)
    assert check(CN_MOBILE, at(2025, 6, 13, 23), s).until == at(2025, 6, 14)
    assert check(CN_MOBILE, at(2025, 6, 14, 0), s) is None


# --- DST: America/New_York, quiet 21:00-08:00 --------------------------------------------------------------------


@pytest.mark.parametrize("now, until, utc_hour", [
    # A week before the spring change: EST (UTC-5), 08:00 local is 13:00 UTC.
    (at(2025, 3, 1, 22, zone=NEW_YORK), at(2025, 3, 2, 8, zone=NEW_YORK), 13),
    # The night of 9 March 2025 (02:00 EST -> 03:00 EDT): 08:00 EDT is 12:00 UTC.
    (at(2025, 3, 8, 22, zone=NEW_YORK), at(2025, 3, 9, 8, zone=NEW_YORK), 12),
    (at(2025, 3, 9, 1, 30, zone=NEW_YORK), at(2025, 3, 9, 8, zone=NEW_YORK), 12),
    (at(2025, 3, 9, 3, 30, zone=NEW_YORK), at(2025, 3, 9, 8, zone=NEW_YORK), 12),
    # The night of 2 November 2025 (02:00 EDT -> 01:00 EST): 08:00 EST is 13:00 UTC.
    (at(2025, 10, 25, 22, zone=NEW_YORK), at(2025, 10, 26, 8, zone=NEW_YORK), 12),
    (at(2025, 11, 1, 22, zone=NEW_YORK), at(2025, 11, 2, 8, zone=NEW_YORK), 13),
    (at(2025, 11, 2, 1, 30, zone=NEW_YORK), at(2025, 11, 2, 8, zone=NEW_YORK), 13),
])
def test_quiet_hours_dst_change_holds_until_local_morning(now, until, utc_hour):
    v = check(US_NY, now, US)
    assert v.action is Action.HOLD
    assert (local(v.until, NEW_YORK).hour, local(v.until, NEW_YORK).minute) == (8, 0)
    assert v.until == until and utc(v.until).hour == utc_hour


def test_quiet_hours_dst_evening_edge():
    # 20:59 local is allowed on both sides of the change, although its UTC hour differs.
    assert check(US_NY, at(2025, 3, 8, 20, 59, zone=NEW_YORK), US) is None
    assert check(US_NY, at(2025, 3, 9, 20, 59, zone=NEW_YORK), US) is None
    assert check(US_NY, at(2025, 3, 9, 21, 0, zone=NEW_YORK), US) is not None


def test_quiet_hours_window_ending_inside_the_spring_gap():
    # Quiet until 02:30, which does not exist on 9 March 2025: allowed from 03:00 EDT, the change itself.
    s = quiet_hours.parse_settings({"windows": [{"start": "23:00", "end": "02:30"}]}, IN_NEW_YORK)
    v = check(US_NY, at(2025, 3, 8, 23, 30, zone=NEW_YORK), s)
    assert v.until == at(2025, 3, 9, 3, 0, zone=NEW_YORK) == at(2025, 3, 9, 7, zone="UTC")


# --- several candidate zones -------------------------------------------------------------------------------------


def test_quiet_hours_au_mobile_quiet_in_perth_is_quiet():
    now = at(2025, 1, 15, 10, zone=SYDNEY)  # 10:00 in Sydney (AEDT) ...
    assert local(now, PERTH).hour == 7  # ... but 07:00 in Perth
    v = check(AU_MOBILE, now)
    assert v.action is Action.HOLD
    # Allowed once the westernmost candidate (Indian/Cocos, UTC+6:30) reaches 09:00: 02:30 UTC.
    assert v.until == at(2025, 1, 15, 2, 30, zone="UTC")
    assert local(v.until, PERTH).hour == 10 and local(v.until, SYDNEY).hour == 13


@pytest.mark.parametrize("now", [at(2025, 1, 15, 4, zone="UTC"), at(2025, 1, 15, 2, 30, zone="UTC"),
                                 at(2025, 1, 15, 8, 59, zone="UTC"), at(2025, 7, 15, 4, zone="UTC")])
def test_quiet_hours_au_mobile_allowed_when_allowed_everywhere(now):
    for zone in candidate_zones(AU_MOBILE, None, "UTC"):
        assert 9 <= local(now, zone).hour < 20, zone
    assert check(AU_MOBILE, now) is None


def test_quiet_hours_au_mobile_evening_in_the_east():
    now = at(2025, 1, 15, 20, zone="Australia/Lord_Howe")  # 09:00 UTC: 17:00 in Perth, 20:00 on Lord Howe
    v = check(AU_MOBILE, now)
    assert v.action is Action.HOLD and v.until == at(2025, 1, 16, 2, 30, zone="UTC")


def test_quiet_hours_au_mobile_override_one_zone():
    index = Index(tz={AU_MOBILE: PERTH})
    now = at(2025, 1, 15, 10, zone=SYDNEY)  # 07:00 in Perth
    assert check(AU_MOBILE, now, index=index).until == at(2025, 1, 15, 9, zone=PERTH)
    index.tz[AU_MOBILE] = SYDNEY
    assert check(AU_MOBILE, now, index=index) is None


def test_an_override_wins_over_the_zones_the_submission_carries():
    """The proxy's submissions carry phonenumbers' zones (make_submission); a per-number zone still decides."""
    s = replace(sub(AU_MOBILE), zones=candidate_zones(AU_MOBILE, None, SHANGHAI))
    assert PERTH in s.zones and SYDNEY in s.zones
    now = at(2025, 1, 15, 10, zone=SYDNEY)  # 07:00 in Perth, 10:00 in Sydney
    assert quiet_hours.check(s, Index(), now, CN).until >= at(2025, 1, 15, 9, zone=PERTH)  # quiet in Perth
    assert quiet_hours.check(s, Index(tz={AU_MOBILE: SYDNEY}), now, CN) is None
    assert quiet_hours.check(s, Index(tz={AU_MOBILE: PERTH}), now, CN).until == at(2025, 1, 15, 9, zone=PERTH)


@pytest.mark.parametrize("now, until", [
    (at(2025, 1, 15, 21, zone="UTC"), at(2025, 1, 15, 22, zone="UTC")),  # 07:00 on Guam
    (at(2025, 1, 15, 22, zone="UTC"), None),  # 08:00 Guam ... 18:30 St John's: allowed everywhere
    (at(2025, 1, 16, 0, 29, zone="UTC"), None),
    (at(2025, 1, 16, 0, 30, zone="UTC"), at(2025, 1, 16, 22, zone="UTC")),  # 21:00 in St John's
    (at(2025, 1, 15, 12, zone="UTC"), at(2025, 1, 15, 22, zone="UTC")),
])
def test_quiet_hours_us_toll_free_needs_every_zone(now, until):
    v = check(US_TOLL_FREE, now, US)
    assert (v is None) if until is None else (v.action is Action.HOLD and v.until == until)


def test_quiet_hours_us_toll_free_with_cn_windows_half_an_hour_a_day():
    # Its 42 candidate zones span Pago Pago (UTC-11) to Guam (UTC+10, i.e. UTC-14 a day later): in January
    # only 23:00-23:30 UTC is 09:00-20:00 everywhere (Guam 09:00, St John's 19:30).
    day = at(2025, 1, 13, zone="UTC")
    allowed = [m for m in range(0, 1440, 5) if check(US_TOLL_FREE, day + m * MINUTE) is None]
    assert allowed == list(range(23 * 60, 23 * 60 + 30, 5))
    assert check(US_TOLL_FREE, day + 12 * HOUR).until == day + 23 * HOUR


@pytest.mark.parametrize("action", ["hold", "schedule", "reject"])
def test_quiet_hours_us_toll_free_with_cn_windows_never_allowed_in_summer(action):
    # In July St John's is UTC-2:30 and the span is 11.5 h > the 11 allowed hours: never allowed. check()
    # must still end, never answer None, and neither hold nor schedule to a time that is quiet too: a
    # permanent refusal that says what to do.
    s = quiet_hours.parse_settings({"action": action}, IN_SHANGHAI)
    day = at(2025, 7, 13, zone="UTC")
    for m in range(0, 1440, 10):
        v = check(US_TOLL_FREE, day + m * MINUTE, s)
        assert v is not None and v.action is Action.REJECT and v.status == Status.RSUBMITFAIL
        assert v.until is None and "tz set" in v.reason
    # with the recipient's zone known, the usual hold
    v = check(US_TOLL_FREE, day + 12 * HOUR, s, index=Index(tz={US_TOLL_FREE: NEW_YORK}))
    assert v.action is {"hold": Action.HOLD, "schedule": Action.SCHEDULE, "reject": Action.REJECT}[action]
    assert v.status == Status.RTHROTTLED


# --- zone overrides and the fallback -----------------------------------------------------------------------------


def test_quiet_hours_per_number_override_wins():
    now = at(2025, 6, 13, 10)  # 10:00 in Shanghai is 22:00 the day before in New York
    assert check(CN_MOBILE, now) is None
    v = check(CN_MOBILE, now, index=Index(tz={CN_MOBILE: NEW_YORK}))
    assert v.action is Action.HOLD and v.until == at(2025, 6, 13, 9, zone=NEW_YORK)


@pytest.mark.parametrize("fallback, hour, allowed", [
    (SHANGHAI, 10, True),
    (SHANGHAI, 21, False),
    ("UTC", 10, False),  # 02:00 UTC
    ("UTC", 21, True),  # 13:00 UTC
])
def test_quiet_hours_unknown_zone_uses_fallback(fallback, hour, allowed):
    s = quiet_hours.parse_settings({}, RuleContext(fallback_zone=fallback))
    assert (check(NO_ZONE, at(2025, 6, 13, hour), s) is None) is allowed


def test_quiet_hours_rule_fallback_zone_overrides_the_policy():
    policy = load_policy({"fallback_zone": SHANGHAI}, {"quiet_hours": {"fallback_zone": "UTC"}})
    assert policy.settings("quiet_hours").fallback_zone == "UTC"
    assert load_policy({"fallback_zone": SHANGHAI}).settings("quiet_hours").fallback_zone == SHANGHAI


# --- actions -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("action, expected, has_until", [("hold", Action.HOLD, True),
                                                         ("schedule", Action.SCHEDULE, True),
                                                         ("reject", Action.REJECT, False)])
def test_quiet_hours_actions(action, expected, has_until):
    s = quiet_hours.parse_settings({"action": action}, IN_SHANGHAI)
    v = check(CN_MOBILE, at(2025, 6, 13, 21), s)
    assert v.action is expected and v.status == Status.RTHROTTLED
    assert v.until == (at(2025, 6, 14, 9) if has_until else None)
    assert "2025-06-14 01:00 UTC" in v.reason


def test_quiet_hours_no_windows_or_invalid_number_no_opinion():
    s = quiet_hours.parse_settings({"windows": []}, IN_SHANGHAI)
    assert check(CN_MOBILE, at(2025, 6, 13, 3), s) is None
    assert quiet_hours.check(sub(None), Index(), at(2025, 6, 13, 3), CN) is None


@pytest.mark.parametrize("raw, key", [
    ({"windows": [{"start": "20:00", "end": "20:00"}]}, "rules.quiet_hours.windows"),
    ({"windows": [{"start": "8pm", "end": "22:00"}]}, "rules.quiet_hours.windows"),
    ({"windows": [{"start": "20:00"}]}, "rules.quiet_hours.windows"),
    ({"windows": {"start": "20:00", "end": "22:00"}}, "rules.quiet_hours.windows"),
    ({"action": "drop"}, "rules.quiet_hours.action"),
    ({"fallback_zone": "Mars/Base"}, "rules.quiet_hours.fallback_zone"),
    ({"window": []}, "rules.quiet_hours.window"),
])
def test_quiet_hours_bad_settings_name_the_key(raw, key):
    with pytest.raises(ConfigError) as e:
        quiet_hours.parse_settings(raw)
    assert e.value.key == key


# --- invariant ---------------------------------------------------------------------------------------------------

WINDOW_SETS = {
    "cn": [{"start": "07:00", "end": "09:00"}, {"start": "20:00", "end": "22:00"}, {"start": "22:00", "end": "07:00"}],
    "us": US_WINDOWS,
    "in": [{"start": "21:00", "end": "09:00"}],
    "split": [{"start": "12:00", "end": "13:30"}, {"start": "01:30", "end": "03:00"}],
}
# (number, override, window sets it can be allowed under)
RECIPIENTS = [(CN_MOBILE, None, "cn us in split"), (US_NY, None, "cn us in split"), (AU_MOBILE, None, "cn us in"),
              (US_TOLL_FREE, None, "us"), (NO_ZONE, None, "cn us in split"),
              (CN_MOBILE, "Australia/Lord_Howe", "cn us in split"), (CN_MOBILE, "Asia/Kathmandu", "cn us split")]
# DST changes 2025: US 9 Mar / 2 Nov, AU 6 Apr / 5 Oct (Lord Howe by 30 minutes)
CHANGES = [at(2025, 3, 9, zone="UTC"), at(2025, 11, 2, zone="UTC"), at(2025, 4, 6, zone="UTC"),
           at(2025, 10, 5, zone="UTC")]
instants = st.one_of(st.floats(at(2024, 1, 1, zone="UTC"), at(2027, 1, 1, zone="UTC")),
                     st.builds(lambda base, d: base + d, st.sampled_from(CHANGES), st.floats(-3 * DAY, 3 * DAY)))


def quiet_somewhere(zones, t, windows) -> bool:
    """The oracle, from zoneinfo directly: is local time inside a window in any zone?"""
    for zone in zones:
        lt = datetime.fromtimestamp(math.floor(t), ZoneInfo(zone))  # floor: fromtimestamp rounds to the µs
        m = lt.hour * 60 + lt.minute
        for start, end in windows:
            if (start <= m < end) if start < end else (m >= start or m < end):
                return True
    return False


@settings(max_examples=400, deadline=None)
@given(recipient=st.sampled_from(RECIPIENTS), data=st.data(), now=instants)
def test_quiet_hours_hold_until_is_the_first_allowed_instant(recipient, data, now):
    number, override, usable = recipient
    windows = WINDOW_SETS[data.draw(st.sampled_from(usable.split()))]
    s = quiet_hours.parse_settings({"windows": windows}, IN_SHANGHAI)
    index = Index(tz={number: override} if override else {})
    zones = candidate_zones(number, override, SHANGHAI)
    v = check(number, now, s, index)
    assert (v is not None) == quiet_somewhere(zones, now, s.windows)
    if v is not None:
        assert v.action is Action.HOLD and v.until > now
        assert check(number, v.until, s, index) is None  # allowed at `until` ...
        assert not quiet_somewhere(zones, v.until, s.windows)
        before = max(now, v.until - 1)
        assert quiet_somewhere(zones, before, s.windows)  # ... and not a moment before
        assert v.until - now < 2 * DAY


def test_next_allowed_is_none_when_now_is_allowed_everywhere():
    ny = quiet_hours.parse_settings({"windows": US_WINDOWS}, IN_NEW_YORK).windows
    noon = at(2025, 3, 5, 12, zone=NEW_YORK)
    assert quiet_hours.next_allowed(noon, lambda t: (-5 * 3600,), ny) is None
    night = at(2025, 3, 5, 23, zone=NEW_YORK)
    assert quiet_hours.next_allowed(night, lambda t: (-5 * 3600,), ny) == at(2025, 3, 6, 8, zone=NEW_YORK)
