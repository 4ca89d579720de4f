"""The signature rule on its own: what it finds, where, and what its refusals say."""

from __future__ import annotations

from smppguard.policy import decide, load_policy, make_submission
from smppguard.policy.model import Index
from smppguard.policy.signature import found


def policy(**rule):
    return load_policy({"default_region": "CN"}, {"quiet_hours": {"enabled": False},
                                                  "signature": {"enabled": True, **rule}})


def verdict(p, text, account="acme", signatures=("ACME",)):
    index = Index()
    for sig in signatures:
        index.set_signature(account, "", sig, 1.0, True)
    sub = make_submission(p, "8613800138000", 1, "10690000", account, text=text, index=index)
    return decide(sub, index, 1.8e9, p)


def test_found_reads_both_ends_and_every_configured_pair():
    pairs = ("【】", "[]")
    assert found(" 【ACME】 sale [Other]", "either", pairs) == ["ACME", "Other"]
    assert found("sale【ACME】", "start", pairs) == []
    assert found("［ＡＣＭＥ］ sale", "start", pairs) == ["ACME"]  # full-width square brackets and letters
    assert found("【】sale", "start", pairs) == []


def test_a_refusal_shows_what_was_found_cut_short():
    v = verdict(policy(), "【" + "x" * 500 + "】 sale")
    assert v.rule == "signature" and v.status == 0x45
    assert len(v.reason) < 120 and "…】 is not registered for account acme" in v.reason


def test_an_account_with_none_registered_is_refused_or_passed_as_configured():
    assert "has no signature registered" in verdict(policy(), "【ACME】 sale", signatures=()).reason
    assert verdict(policy(unregistered="pass"), "sale", signatures=()).allowed
    assert verdict(policy(), "【ACME】 sale").allowed
