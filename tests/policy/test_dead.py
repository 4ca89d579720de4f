"""Rule `dead`: numbers known dead are refused until their entry expires (numbers are recycled)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from policy_helpers import CN_MOBILE, CN_OTHER, DAY, at, sub

from smppguard.errors import ConfigError
from smppguard.policy import dead, load_policy
from smppguard.policy.model import Action, Index
from smppguard.smpp.status import Status
from smppguard.store.changelog import Change
from smppguard.store.index import apply_change

POLICY = load_policy()  # what apply_change asks of the rules

NOW = at(2025, 6, 13, 10)
S = dead.parse_settings({})


@pytest.mark.parametrize("expires, refused", [
    (NOW + DAY, True),
    (NOW + 1, True),
    (NOW, False),  # expired at this very instant
    (NOW - 1, False),
    (NOW - 30 * DAY, False),
])
def test_dead_refused_until_expiry(expires, refused):
    v = dead.check(sub(CN_MOBILE), Index(dead={CN_MOBILE: expires}), NOW, S)
    if refused:
        assert v.action is Action.REJECT and v.rule == "dead" and v.status == Status.RINVDSTADR
    else:
        assert v is None


def test_dead_other_numbers_and_invalid_are_not_judged():
    index = Index(dead={CN_MOBILE: NOW + DAY})
    assert dead.check(sub(CN_OTHER), index, NOW, S) is None
    assert dead.check(sub(None), index, NOW, S) is None


def test_dead_entry_from_the_change_log_expires_after_90_days_by_default():
    index = Index()
    apply_change(index, Change("dead", "add", CN_MOBILE, at=NOW), NOW, POLICY)
    assert dead.check(sub(CN_MOBILE), index, NOW + 89 * DAY, S) is not None
    assert dead.check(sub(CN_MOBILE), index, NOW + 90 * DAY, S) is None


def test_dead_settings():
    assert S.expire == 90 * DAY and S.classes == {"*"}
    assert dead.parse_settings({"expire": "45d"}).expire == 45 * DAY
    with pytest.raises(ConfigError) as e:
        dead.parse_settings({"expire": "soon"})
    assert e.value.key == "rules.dead.expire"


@given(expires=st.floats(NOW - 100 * DAY, NOW + 100 * DAY), now=st.floats(NOW - 100 * DAY, NOW + 100 * DAY))
def test_dead_refuses_exactly_before_expiry(expires, now):
    v = dead.check(sub(CN_MOBILE), Index(dead={CN_MOBILE: expires}), now, S)
    assert (v is not None) == (now < expires)
