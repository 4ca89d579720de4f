"""Rule `consent`: off by default; when on, only confirmed consent (global, or the account's) lets marketing go."""

from __future__ import annotations

import pytest
from policy_helpers import CN_MOBILE, at, sub

from smppguard.errors import ConfigError
from smppguard.policy import consent, decide, load_policy
from smppguard.policy.model import GLOBAL, Action, Index, scoped
from smppguard.smpp.status import Status
from smppguard.store.changelog import Change
from smppguard.store.index import apply_change

POLICY = load_policy()  # what apply_change asks of the rules

NOW = at(2025, 6, 13, 10)
ON = consent.parse_settings({"enabled": True})
PER_ACCOUNT = consent.parse_settings({"enabled": True, "scope": "account"})


def with_consent(status: str | None, account: str = "") -> Index:
    index = Index()
    if status is not None:
        apply_change(index, Change("consent", "add", CN_MOBILE, scope_key=account, data={"status": status}), NOW,
                     POLICY)
    return index


def test_consent_disabled_by_default():
    s = consent.parse_settings({})
    assert not s.enabled and not s.applies_to("marketing")
    assert decide(sub(CN_MOBILE), Index(), NOW, load_policy()).allowed


@pytest.mark.parametrize("status, allowed, pending", [
    (None, False, False),
    ("pending", False, True),
    ("confirmed", True, False),
])
def test_consent_global(status, allowed, pending):
    v = consent.check(sub(CN_MOBILE), with_consent(status), NOW, ON)
    if allowed:
        assert v is None
    else:
        assert v.action is Action.REJECT and v.rule == "consent" and v.status == Status.RSUBMITFAIL
        assert ("pending" in v.reason) is pending


@pytest.mark.parametrize("consent_account, sending_account, settings, allowed", [
    ("acme", "acme", PER_ACCOUNT, True),
    ("acme", "other", PER_ACCOUNT, False),  # consent to one account is not consent to another
    ("acme", "acme", ON, False),  # scope global: an account's consent does not count
    ("", "other", PER_ACCOUNT, True),  # global consent counts for every account
])
def test_consent_account_scope(consent_account, sending_account, settings, allowed):
    index = with_consent("confirmed", consent_account)
    v = consent.check(sub(CN_MOBILE, account=sending_account), index, NOW, settings)
    assert (v is None) is allowed


def test_consent_account_pending_does_not_count():
    index = with_consent("pending", "acme")
    assert consent.check(sub(CN_MOBILE, account="acme"), index, NOW, PER_ACCOUNT) is not None


def test_consent_keys_pack_number_and_scope():
    index = Index(consent={scoped(CN_MOBILE, GLOBAL): "confirmed"})
    assert consent.check(sub(CN_MOBILE), index, NOW, ON) is None


def test_consent_enabled_in_policy_refuses_marketing_only():
    policy = load_policy(rules={"consent": {"enabled": True}})
    v = decide(sub(CN_MOBILE), Index(), NOW, policy)
    assert v.rule == "consent"
    assert decide(sub(CN_MOBILE, traffic_class="transactional"), Index(), NOW, policy).allowed


def test_consent_bad_scope_names_the_key():
    with pytest.raises(ConfigError) as e:
        consent.parse_settings({"scope": "sender"})
    assert e.value.key == "rules.consent.scope"


def test_consent_reason_says_when_consent_waits_for_its_confirmation():
    assert consent.check(sub(CN_MOBILE), with_consent("pending"), NOW, ON).reason == (
        "no confirmed consent (pending confirmation)")
    assert consent.check(sub(CN_MOBILE), with_consent(None), NOW, ON).reason == "no confirmed consent"
