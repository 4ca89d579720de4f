"""Rule `invalid`: a destination that did not normalise to a valid number is refused with RINVDSTADR."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from policy_helpers import CN_MOBILE, at, sub

from smppguard.errors import ConfigError
from smppguard.policy import invalid, load_policy
from smppguard.policy.model import Action, Index, RuleContext
from smppguard.smpp.status import Status

NOW = at(2025, 6, 13, 10)
S = invalid.parse_settings({})


def test_invalid_defaults_apply_to_every_class():
    assert S.enabled and S.classes == {"*"} and S.status == Status.RINVDSTADR
    for cls in ("marketing", "transactional", "confirmation", "anything"):
        assert S.applies_to(cls)


def test_invalid_refuses_a_number_that_did_not_normalise():
    v = invalid.check(sub(None, address="1380013"), Index(), NOW, S)
    assert v.action is Action.REJECT and v.rule == "invalid" and v.status == Status.RINVDSTADR
    assert v.reason.startswith("not a valid phone number (")  # the address: the audit's recipient, masked there
    assert "1380013" not in v.reason


@pytest.mark.parametrize("address, region, hint", [
    ("13800138000", None, True),  # national, and no region to place it: say what is missing
    ("13800138000", "CN", False),  # a region was given: the number is simply not valid there
    ("+1380013", None, False),
    ("001380013", None, False),
])
def test_invalid_says_when_a_national_number_needs_a_default_region(address, region, hint):
    s = invalid.parse_settings({}, RuleContext(default_region=region))
    v = invalid.check(sub(None, address=address), Index(), NOW, s)
    assert ("needs [policy] default_region" in v.reason) is hint


def test_invalid_settings_carry_the_policy_region():
    assert load_policy({"default_region": "cn"}).settings("invalid").default_region == "CN"
    assert load_policy().settings("invalid").default_region is None


def test_invalid_has_no_opinion_on_a_valid_number():
    assert invalid.check(sub(CN_MOBILE), Index(), NOW, S) is None


@pytest.mark.parametrize("raw, status", [({"status": 0x45}, 0x45), ({"status": "RSUBMITFAIL"}, 0x45),
                                         ({"status": "ESME_RINVDSTADR"}, 0x0B), ({"status": "0x58"}, 0x58),
                                         ({"status": 0xFFFFFFFF}, 0xFFFFFFFF)])  # the largest a PDU holds
def test_invalid_status_by_number_or_name(raw, status):
    assert invalid.parse_settings(raw).status == status


@pytest.mark.parametrize("raw, key", [({"enabled": "yes"}, "rules.invalid.enabled"),
                                      ({"status": 0}, "rules.invalid.status"),
                                      ({"status": 0x100000000}, "rules.invalid.status"),
                                      ({"status": True}, "rules.invalid.status"),
                                      ({"status": "NOPE"}, "rules.invalid.status"),
                                      ({"classes": "marketing"}, "rules.invalid.classes"),
                                      ({"reason": 3}, "rules.invalid.reason"),
                                      ({"expire": "1d"}, "rules.invalid.expire")])
def test_invalid_bad_settings_name_the_key(raw, key):
    with pytest.raises(ConfigError) as e:
        invalid.parse_settings(raw)
    assert e.value.key == key


@given(st.one_of(st.none(), st.integers(1, 10**15)))
def test_invalid_rejects_exactly_the_none_recipients(recipient):
    v = invalid.check(sub(recipient), Index(), NOW, S)
    assert (v is not None) == (recipient is None)


def test_invalid_warns_at_start_up_only_without_a_default_region():
    assert load_policy().warnings() == [
        "no [policy] default_region: destinations without a country code (13800138000) are refused as invalid; "
        "with one (8613800138000, +8613800138000) they pass"]
    assert load_policy({"default_region": "CN"}).warnings() == []
    assert load_policy(rules={"invalid": {"enabled": False}}).warnings() == []


def test_a_national_number_sent_as_international_says_the_ton_decided():
    from smppguard.policy import decide, load_policy, make_submission
    from smppguard.policy.model import Index

    policy = load_policy({"default_region": "CN"})
    v = decide(make_submission(policy, "13800138000", 1, "ACME", "acme"), Index(), 0.0, policy)
    assert v.rule == "invalid" and v.reason.endswith(
        "(dest_addr_ton 1 says international, so the digits need their country code; as a national number of CN "
        "they would be valid)")
    v = decide(make_submission(policy, "13800138000", 0, "ACME", "acme"), Index(), 0.0, policy)
    assert v.rule != "invalid"
    v = decide(make_submission(policy, "12", 1, "ACME", "acme"), Index(), 0.0, policy)
    assert "dest_addr_ton 1: read as an international number" in v.reason
