"""Rule `blacklist`: the global list; marketing and confirmations never reach it, other classes may."""

from __future__ import annotations

import pytest
from policy_helpers import CN_MOBILE, CN_OTHER, at, sub

from smppguard.policy import blacklist, load_policy
from smppguard.policy.model import Action, Index
from smppguard.smpp.status import Status
from smppguard.store.changelog import Change
from smppguard.store.index import apply_change

POLICY = load_policy()  # what apply_change asks of the rules

NOW = at(2025, 6, 13, 10)
S = blacklist.parse_settings({})


@pytest.mark.parametrize("recipient, listed, refused", [
    (CN_MOBILE, {CN_MOBILE}, True),
    (CN_OTHER, {CN_MOBILE}, False),
    (CN_MOBILE, set(), False),
    (None, {CN_MOBILE}, False),  # invalid numbers are the `invalid` rule's business
])
def test_blacklist_check(recipient, listed, refused):
    v = blacklist.check(sub(recipient), Index(blacklist=set(listed)), NOW, S)
    if refused:
        assert v.action is Action.REJECT and v.rule == "blacklist" and v.status == Status.RSUBMITFAIL
    else:
        assert v is None


@pytest.mark.parametrize("cls, applies", [("marketing", True), ("confirmation", True),
                                          ("transactional", False), ("otp", False)])
def test_blacklist_default_classes(cls, applies):
    assert S.applies_to(cls) is applies


def test_blacklist_follows_the_change_log():
    index = Index()
    apply_change(index, Change("blacklist", "add", CN_MOBILE, data={"source": "12321"}), NOW, POLICY)
    assert blacklist.check(sub(CN_MOBILE), index, NOW, S) is not None
    apply_change(index, Change("blacklist", "remove", CN_MOBILE), NOW, POLICY)
    assert blacklist.check(sub(CN_MOBILE), index, NOW, S) is None


def test_blacklist_custom_status_and_reason():
    s = blacklist.parse_settings({"status": "RX_P_APPN", "reason": "complaint"})
    v = blacklist.check(sub(CN_MOBILE), Index(blacklist={CN_MOBILE}), NOW, s)
    assert v.status == Status.RX_P_APPN and v.reason == "complaint"
