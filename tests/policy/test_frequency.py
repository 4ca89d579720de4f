"""Rule `frequency`: at most `max` per `period` per recipient, `min_interval` apart; reservations count."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from policy_helpers import CN_MOBILE, CN_OTHER, DAY, HOUR, MINUTE, NEW_YORK, NO_ZONE, SHANGHAI, US_NY, at, sub

from smppguard.errors import ConfigError
from smppguard.policy import frequency, load_policy
from smppguard.policy.model import ALLOW, SCOPE_STRIDE, Action, Index, RuleContext, Verdict, scoped
from smppguard.smpp.status import Status

T0 = at(2025, 6, 1, 10)
S = frequency.parse_settings({})  # 4 per 30 days, 72 h apart, scope global
NO_INTERVAL = frequency.parse_settings({"min_interval": 0})
MONTHLY = frequency.parse_settings({"max": 1, "period": "calendar-month", "min_interval": 0})


def history(*times: float, number: int = CN_MOBILE) -> Index:
    index = Index()
    for t in times:
        index.record_send(number, t)
    return index


def test_frequency_defaults():
    assert (S.max, S.period, S.min_interval, S.scope) == (4, 30 * DAY, 72 * HOUR, "global")
    assert S.applies_to("marketing") and not S.applies_to("transactional")


# --- count per period --------------------------------------------------------------------------------------------


def test_frequency_fifth_in_30_days_refused():
    index = Index()
    for n in range(4):
        now = T0 + n * 3 * DAY
        assert frequency.check(sub(), index, now, S) is None
        index.record_send(CN_MOBILE, now)
    v = frequency.check(sub(), index, T0 + 12 * DAY, S)
    assert v.action is Action.REJECT and v.rule == "frequency" and v.status == Status.RSUBMITFAIL
    assert "4 of 4 in 30 days" in v.reason


@pytest.mark.parametrize("now, refused", [
    (T0 + 30 * DAY, True),  # the first send is exactly 30 days old: still inside [now - 30d, now]
    (T0 + 30 * DAY + 1, False),  # ... and a second later it has left the window
])
def test_frequency_rolling_window_edge(now, refused):
    index = history(T0, T0 + 3 * DAY, T0 + 6 * DAY, T0 + 9 * DAY)
    assert (frequency.check(sub(), index, now, S) is not None) is refused


def test_frequency_max_zero_refuses_a_recipient_never_sent_to():
    v = frequency.check(sub(), Index(), T0, frequency.parse_settings({"max": 0}))
    assert v is not None and "0 of 0 in 30 days" in v.reason


def test_frequency_other_recipient_not_counted():
    index = history(T0, T0 + 3 * DAY, T0 + 6 * DAY, T0 + 9 * DAY)
    assert frequency.check(sub(CN_OTHER), index, T0 + 12 * DAY, S) is None


def test_frequency_invalid_recipient_not_judged():
    assert frequency.check(sub(None), history(T0), T0, S) is None


# --- min_interval ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("elapsed, refused", [
    (0, True),
    (HOUR, True),
    (71 * HOUR + 59 * MINUTE, True),
    (72 * HOUR - 1, True),
    (72 * HOUR, False),
    (80 * HOUR, False),
])
def test_frequency_min_interval(elapsed, refused):
    v = frequency.check(sub(), history(T0), T0 + elapsed, S)
    if refused:
        assert v.action is Action.REJECT and "minimum interval 72 h" in v.reason
    else:
        assert v is None


def test_frequency_zero_interval_disables_the_gap():
    assert frequency.check(sub(), history(T0), T0, NO_INTERVAL) is None


# --- reservations ------------------------------------------------------------------------------------------------


def test_frequency_reservations_count_before_the_smsc_answers():
    index = Index()
    for _ in range(4):
        assert frequency.check(sub(), index, T0, NO_INTERVAL) is None
        index.reserve(CN_MOBILE, T0)
    assert frequency.check(sub(), index, T0, NO_INTERVAL).action is Action.REJECT
    index.release(CN_MOBILE, T0)  # one was refused by the SMSC: it frees its slot
    assert frequency.check(sub(), index, T0, NO_INTERVAL) is None


def test_frequency_reservation_counts_for_the_interval():
    index = Index()
    index.reserve(CN_MOBILE, T0)
    assert frequency.check(sub(), index, T0 + HOUR, S) is not None
    index.release(CN_MOBILE, T0)
    assert index.history == {}
    assert frequency.check(sub(), index, T0 + HOUR, S) is None


def test_frequency_release_takes_back_one_send_and_keeps_the_others():
    index = history(T0, T0 + DAY)
    index.reserve(CN_MOBILE, T0 + 2 * DAY)
    index.release(CN_MOBILE, T0 + 2 * DAY)
    assert index.history == {CN_MOBILE: (T0, T0 + DAY)}
    index.reserve(CN_MOBILE, T0 + DAY)  # two sends at one instant: releasing one leaves the other
    index.release(CN_MOBILE, T0 + DAY)
    assert index.sends_between(CN_MOBILE, T0, T0 + DAY) == 2


def test_prune_history_works_through_the_keys_a_budget_at_a_time():
    index = Index()
    numbers = [CN_MOBILE + i for i in range(10)]
    for n in numbers:
        index.record_send(n, T0 - 40 * DAY)  # past every period
        if n % 2:
            index.record_send(n, T0 - DAY)
    index.prune_history(T0 - 32 * DAY, budget=4)
    assert len(index.history) == 10 - 2  # 4 looked at: the 2 with only old sends are gone
    index.prune_history(T0 - 32 * DAY, budget=4)
    index.prune_history(T0 - 32 * DAY, budget=4)  # the pass ends with the last 2 keys
    assert index.history == {n: (T0 - DAY,) for n in numbers if n % 2}
    index.record_send(CN_OTHER, T0 - 40 * DAY)
    index.prune_history(T0 - 32 * DAY, budget=4)  # a new pass sees keys added since
    index.prune_history(T0 - 32 * DAY, budget=4)
    assert CN_OTHER not in index.history


def test_frequency_release_of_an_unknown_time_is_harmless():
    index = Index()
    index.reserve(CN_MOBILE, T0)
    index.release(CN_MOBILE, T0 + 1)
    index.release(CN_OTHER, T0)
    assert index.history == {CN_MOBILE: (T0,)}


# --- calendar month, in the recipient's local time ---------------------------------------------------------------


@pytest.mark.parametrize("sent, now, zone, refused", [
    # Shanghai is UTC+8. 1 Feb 00:30 local is still 31 Jan in UTC, yet it is this (local) month on 1 Feb.
    (at(2025, 2, 1, 0, 30), at(2025, 2, 1, 9), SHANGHAI, True),
    # 31 Jan 23:00 local is last month, although it is 15:00 UTC on 31 Jan, only ten hours before now in UTC.
    (at(2025, 1, 31, 23), at(2025, 2, 1, 9), SHANGHAI, False),
    (at(2025, 2, 1, 0, 0), at(2025, 2, 28, 23, 59), SHANGHAI, True),
    # New York is behind UTC: 31 Jan 20:00 local is 1 Feb 01:00 UTC, but last month for the recipient.
    (at(2025, 1, 31, 20, zone=NEW_YORK), at(2025, 2, 1, 9, zone=NEW_YORK), NEW_YORK, False),
    # ... and 31 Jan 22:00 local (1 Feb UTC) is still January: a send on 2 Jan counts.
    (at(2025, 1, 2, 9, zone=NEW_YORK), at(2025, 1, 31, 22, zone=NEW_YORK), NEW_YORK, True),
])
def test_frequency_calendar_month_in_local_time(sent, now, zone, refused):
    number = CN_MOBILE if zone == SHANGHAI else US_NY
    v = frequency.check(sub(number), history(sent, number=number), now, MONTHLY)
    if refused:
        assert v.action is Action.REJECT and "this calendar month" in v.reason
    else:
        assert v is None


def test_frequency_calendar_month_uses_the_per_number_zone():
    sent, now = at(2025, 2, 1, 0, 30), at(2025, 2, 1, 9)  # both 1 Feb in Shanghai
    index = history(sent)
    assert frequency.check(sub(), index, now, MONTHLY) is not None
    index.tz[CN_MOBILE] = "Europe/London"  # 31 Jan 16:30 and 1 Feb 01:00 in London: different months
    assert frequency.check(sub(), index, now, MONTHLY) is None


def test_frequency_period_start_calendar_month():
    start = frequency.period_start(sub(), Index(), at(2025, 3, 15, 12), MONTHLY)
    assert start == at(2025, 3, 1)
    ny = frequency.period_start(sub(US_NY), Index(), at(2025, 3, 15, 12, zone=NEW_YORK), MONTHLY)
    assert ny == at(2025, 3, 1, zone=NEW_YORK)  # EST on the 1st although EDT on the 15th


# --- scope -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scope, refused", [("global", True), ("account", False)])
def test_frequency_scope_other_accounts_sends(scope, refused):
    s = frequency.parse_settings({"scope": scope})
    index = Index()
    other = sub(account="other")
    index.record_send(frequency.history_key(other.recipient, other.account, index, s), T0)
    assert (frequency.check(sub(account="acme"), index, T0 + HOUR, s) is not None) is refused
    assert frequency.check(other, index, T0 + HOUR, s) is not None  # its own send always counts


def test_frequency_key_packs_the_account():
    s = frequency.parse_settings({"scope": "account"})
    index = Index()
    k = frequency.history_key(CN_MOBILE, "acme", index, s)
    assert divmod(k, SCOPE_STRIDE) == (index.maybe_scope_id("account", "acme"), CN_MOBILE)
    assert frequency.history_key(CN_MOBILE, "acme", index, S) == CN_MOBILE


def test_policy_forward_reserves_the_send_of_a_counted_message_only():
    policy = load_policy()
    index = Index()
    assert policy.forward(sub(), ALLOW, index, T0) == CN_MOBILE
    assert index.history == {CN_MOBILE: (T0,)}  # counted while in flight
    assert policy.forward(sub(None), ALLOW, index, T0 + 1) is None
    assert policy.forward(sub(traffic_class="transactional"), ALLOW, index, T0 + 2) is None
    off = load_policy(rules={"frequency": {"enabled": False}})
    assert off.forward(sub(), ALLOW, index, T0 + 3) is None
    assert index.history == {CN_MOBILE: (T0,)}


def test_policy_forward_spends_the_one_time_allowance_a_verdict_used():
    index = Index()
    grace = Verdict(Action.ALLOW, "optout", mark=12345)
    load_policy().forward(sub(traffic_class="confirmation"), grace, index, T0)
    assert index.grace_used == {12345}


@pytest.mark.parametrize("raw, key", [({"max": -1}, "rules.frequency.max"),
                                      ({"max": 2.5}, "rules.frequency.max"),
                                      ({"period": "monthly"}, "rules.frequency.period"),
                                      ({"min_interval": "3 days"}, "rules.frequency.min_interval"),
                                      ({"scope": "sender"}, "rules.frequency.scope")])
def test_frequency_bad_settings_name_the_key(raw, key):
    with pytest.raises(ConfigError) as e:
        frequency.parse_settings(raw)
    assert e.value.key == key


# --- invariant ---------------------------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(gaps=st.lists(st.floats(0, 20 * DAY), min_size=1, max_size=40),
       cap=st.integers(0, 5), period_d=st.integers(1, 30), interval_h=st.sampled_from([0, 1, 24, 72]))
def test_frequency_allowed_sends_never_break_the_cap(gaps, cap, period_d, interval_h):
    s = frequency.parse_settings({"max": cap, "period": f"{period_d}d", "min_interval": f"{interval_h}h"})
    index, now, sent = Index(), T0, []
    for gap in gaps:
        now += gap
        if frequency.check(sub(), index, now, s) is None:
            index.record_send(CN_MOBILE, now)
            sent.append(now)
    period = period_d * DAY
    for i in range(len(sent) - cap):
        assert sent[i + cap] - sent[i] > period  # no closed window of `period` holds cap + 1 sends
    for a, b in zip(sent, sent[1:], strict=False):
        assert b - a >= interval_h * HOUR


def test_frequency_month_starts_at_midnight_on_the_first_whatever_the_time_now():
    now = at(2025, 3, 15, 12, 34) + 56.789  # seconds and a fraction past the minute
    assert frequency.period_start(sub(), Index(), now, MONTHLY) == at(2025, 3, 1)


def test_frequency_month_of_a_number_without_zones_is_the_fallback_zones():
    s = frequency.parse_settings({"max": 1, "period": "calendar-month"}, RuleContext(fallback_zone=SHANGHAI))
    start = frequency.period_start(replace(sub(NO_ZONE), zones=()), Index(), at(2025, 3, 15, 12), s)
    assert start == at(2025, 3, 1)  # midnight in Shanghai, not in UTC


def test_frequency_month_does_not_depend_on_the_machines_zone(monkeypatch):
    import time
    monkeypatch.setenv("TZ", "America/Los_Angeles")
    time.tzset()
    try:
        assert frequency.period_start(sub(), Index(), at(2025, 3, 1, 3), MONTHLY) == at(2025, 3, 1)
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_policy_history_terms_come_from_the_rule_that_owns_them():
    policy = load_policy(rules={"frequency": {"scope": "account"}})
    index = Index()
    key = policy.history_key(CN_MOBILE, "acme", index)
    assert key == frequency.history_key(CN_MOBILE, "acme", index, policy.settings("frequency")) != CN_MOBILE
    assert load_policy().history_key(CN_MOBILE, "acme", index) == CN_MOBILE
    assert load_policy().history_span_s == frequency.HISTORY_S == 32 * DAY


def test_prune_history_skips_keys_released_since_its_pass_began():
    index = Index()
    for n in range(4):
        index.record_send(CN_MOBILE + n, T0 - 40 * DAY)
    index.prune_history(T0 - 32 * DAY, budget=1)  # a pass over a snapshot of 4 keys begins
    index.release(CN_MOBILE, T0 - 40 * DAY)  # gone meanwhile (the SMSC refused it)
    index.release(CN_MOBILE + 1, T0 - 40 * DAY)
    for _ in range(4):
        index.prune_history(T0 - 32 * DAY, budget=1)
    assert index.history == {}


def test_prune_history_keeps_a_send_exactly_at_the_cut():
    index = Index()
    index.record_send(CN_MOBILE, T0 - 32 * DAY)
    index.prune_history(T0 - 32 * DAY)
    assert index.history == {CN_MOBILE: (T0 - 32 * DAY,)}


def test_frequency_reasons_say_how_long_ago_and_how_long_to_go():
    v = frequency.check(sub(), history(T0), T0 + 2 * HOUR, S)
    assert v.reason == "frequency cap reached: previous message 2.0 h ago, minimum interval 72 h (70.0 h to go)"
    full = history(T0 - 20 * DAY, T0 - 10 * DAY, T0 - 5 * DAY, T0 - 4 * DAY)
    assert frequency.check(sub(), full, T0, S).reason == "frequency cap reached: 4 of 4 in 30 days"
    assert frequency.check(sub(), history(T0), T0 + HOUR, MONTHLY).reason == (
        "frequency cap reached: 1 of 1 in this calendar month")


def test_index_keeps_sends_in_time_order_whatever_order_they_come_in():
    index = Index()
    for t in (T0 + 5, T0 + 1, T0 + 9, T0 + 1, T0 + 3):
        index.record_send(CN_MOBILE, t)
    assert index.history[CN_MOBILE] == (T0 + 1, T0 + 1, T0 + 3, T0 + 5, T0 + 9)
    assert index.sends_between(CN_MOBILE, T0 + 2, T0 + 5) == 2


def test_policy_forward_reserves_under_the_accounts_key_when_frequency_counts_per_account():
    policy = load_policy(rules={"frequency": {"scope": "account"}})
    index = Index()
    key = policy.forward(sub(account="acme"), ALLOW, index, T0)
    assert key == scoped(CN_MOBILE, index.maybe_scope_id("account", "acme")) and key != CN_MOBILE
    assert index.history == {key: (T0,)}


def test_frequency_held_messages_count_as_sends_at_their_release_until_they_leave_the_queue():
    now = at(2025, 6, 13, 23)
    morning = now + 9 * HOUR
    index = Index()
    index.hold_send(CN_MOBILE, morning)
    v = frequency.check(sub(), index, now, S)  # would go at about the same time: 72 h apart is not kept
    assert v is not None and v.action is Action.REJECT and v.status == Status.RSUBMITFAIL
    assert v.reason == ("frequency cap reached: a held message to this number is released 9.0 h from now, "
                        "minimum interval 72 h")
    no_gap = replace(S, min_interval=0.0, max=2)
    assert frequency.check(sub(), index, now, no_gap) is None  # 1 of 2
    index.hold_send(CN_MOBILE, morning)
    assert frequency.check(sub(), index, now, no_gap).reason == "frequency cap reached: 2 of 2 in 30 days"
    index.unhold_send(CN_MOBILE, morning)  # cancelled, dropped or released: its place is given back
    assert frequency.check(sub(), index, now, no_gap) is None
    index.unhold_send(CN_MOBILE, morning)
    index.unhold_send(CN_MOBILE, morning)  # twice: harmless
    assert index.held == {} and frequency.check(sub(), index, now, S) is None
    assert frequency.check(sub(), index, morning + 73 * HOUR, S) is None
