"""Rule `optout`: opt-outs per sender, per account or global; one confirmation within the grace period."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from policy_helpers import CN_MOBILE, CN_OTHER, MINUTE, at, sub

from smppguard.errors import ConfigError
from smppguard.policy import load_policy, optout
from smppguard.policy.model import Action, Index, Verdict, scoped
from smppguard.smpp.status import Status
from smppguard.store.changelog import Change
from smppguard.store.index import apply_change

T = at(2025, 6, 13, 10)  # the moment the recipient replied T / STOP
S = optout.parse_settings({})
POLICY = load_policy()  # what apply_change asks of the rules


def opted_out(scope: str, scope_key: str, number: int = CN_MOBILE, when: float = T) -> Index:
    index = Index()
    apply_change(index, Change("optout", "add", number, scope, scope_key, at=when), when, POLICY)
    return index


# --- scopes ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scope, scope_key, sender, account, refused", [
    ("sender", "ACME", "ACME", "acme", True),
    ("sender", "ACME", "OTHER", "acme", False),  # another signature of the same account
    ("sender", "ACME", "ACME", "other", True),  # the same signature through another account
    ("account", "acme", "ACME", "acme", True),
    ("account", "acme", "OTHER", "acme", True),
    ("account", "acme", "ACME", "other", False),
    ("global", "", "ACME", "acme", True),
    ("global", "", "ANYONE", "anyone", True),
])
def test_optout_scopes(scope, scope_key, sender, account, refused):
    v = optout.check(sub(CN_MOBILE, sender=sender, account=account), opted_out(scope, scope_key), T + 3600, S)
    if refused:
        assert v.action is Action.REJECT and v.rule == "optout" and v.status == Status.RSUBMITFAIL
        assert f"({scope})" in v.reason
    else:
        assert v is None


def test_optout_other_number_and_invalid_are_not_judged():
    index = opted_out("global", "")
    assert optout.check(sub(CN_OTHER), index, T, S) is None
    assert optout.check(sub(None), index, T, S) is None


def test_optout_set_up_directly_with_scope_ids():
    index = Index()
    key = scoped(CN_MOBILE, index.scope_id("sender", "ACME"))
    index.optouts.add(key)
    assert optout.check(sub(CN_MOBILE, sender="ACME"), index, T, S) is not None
    assert optout.check(sub(CN_MOBILE, sender="OTHER"), index, T, S) is None


def test_optout_removed_allows_again():
    index = opted_out("sender", "ACME")
    apply_change(index, Change("optout", "remove", CN_MOBILE, "sender", "ACME"), T + 60, POLICY)
    assert optout.check(sub(CN_MOBILE), index, T + 60, S) is None


@pytest.mark.parametrize("cls, applies", [("marketing", True), ("confirmation", True), ("transactional", False)])
def test_optout_default_classes(cls, applies):
    assert S.applies_to(cls) is applies


# --- the grace confirmation --------------------------------------------------------------------------------------


def test_optout_grace_confirmation_passes_once():
    index = opted_out("sender", "ACME")
    confirmation = sub(CN_MOBILE, sender="ACME", traffic_class="confirmation", text="您已退订成功")
    v = optout.check(confirmation, index, T + 4 * MINUTE, S)
    assert v == Verdict(Action.ALLOW, "optout", 0, "confirmation of the opt-out, within the grace period",
                        mark=scoped(CN_MOBILE, index.maybe_scope_id("sender", "ACME")))
    index.grace_used.add(v.mark)  # what the bridge does when it forwards the message
    second = optout.check(confirmation, index, T + 4.5 * MINUTE, S)
    assert second.action is Action.REJECT and second.mark is None


@pytest.mark.parametrize("delay, cls, allowed", [
    (0, "confirmation", True),
    (5 * MINUTE, "confirmation", True),  # the edge of the grace period still counts
    (5 * MINUTE + 1, "confirmation", False),
    (6 * MINUTE, "confirmation", False),
    (1 * MINUTE, "marketing", False),  # only the confirmation class gets the grace
    (1 * MINUTE, "transactional", None),  # not this rule's class: decide() never asks (see test_decide)
])
def test_optout_grace_window(delay, cls, allowed):
    index = opted_out("sender", "ACME")
    v = optout.check(sub(CN_MOBILE, sender="ACME", traffic_class=cls), index, T + delay, S)
    if allowed:
        assert v.allowed and v.mark is not None
    elif allowed is False:
        assert v.action is Action.REJECT
    else:
        assert not S.applies_to(cls)


def test_optout_grace_from_another_sender():
    index = opted_out("sender", "ACME")
    # sender scope: another signature was never opted out of, so it is simply allowed (no grace used)
    assert optout.check(sub(CN_MOBILE, sender="OTHER", traffic_class="confirmation"), index, T + MINUTE, S) is None
    assert optout.check(sub(CN_MOBILE, sender="OTHER"), index, T + MINUTE, S) is None


@pytest.mark.parametrize("sender, account, allowed", [
    ("ACME", "acme", True),
    ("ACME-2", "acme", True),  # account scope: any signature of the account may confirm
    ("ACME", "other", False),
])
def test_optout_grace_for_an_account_scoped_opt_out(sender, account, allowed):
    # us-tcpa keeps opt-outs per account; its one confirmation must still get through.
    index = opted_out("account", "acme")
    v = optout.check(sub(CN_MOBILE, sender=sender, account=account, traffic_class="confirmation"), index,
                     T + 2 * MINUTE, S)
    if allowed:
        assert v.allowed and v.mark == scoped(CN_MOBILE, index.maybe_scope_id("account", "acme"))
        index.grace_used.add(v.mark)
        again = optout.check(sub(CN_MOBILE, sender=sender, account=account, traffic_class="confirmation"), index,
                             T + 3 * MINUTE, S)
        assert again.action is Action.REJECT
    else:
        assert v is None  # another account was never opted out of


def test_optout_no_grace_for_a_global_opt_out():
    index = opted_out("global", "")
    v = optout.check(sub(CN_MOBILE, traffic_class="confirmation"), index, T + MINUTE, S)
    assert v.action is Action.REJECT


def test_optout_grace_is_configurable():
    s = optout.parse_settings({"grace": "10m", "grace_classes": ["confirmation", "receipt"]})
    index = opted_out("sender", "ACME")
    assert optout.check(sub(CN_MOBILE, traffic_class="receipt"), index, T + 9 * MINUTE, s).allowed
    none = optout.parse_settings({"grace": 0})
    assert optout.check(sub(CN_MOBILE, traffic_class="confirmation"), index, T + 1, none).action is Action.REJECT


@pytest.mark.parametrize("raw, key", [({"scope": "signature"}, "rules.optout.scope"),
                                      ({"grace": "-5m"}, "rules.optout.grace"),
                                      ({"correlation_threshold": -1}, "rules.optout.correlation_threshold"),
                                      ({"grace_classes": "confirmation"}, "rules.optout.grace_classes")])
def test_optout_bad_settings_name_the_key(raw, key):
    with pytest.raises(ConfigError) as e:
        optout.parse_settings(raw)
    assert e.value.key == key


scopes = st.sampled_from([("sender", "A"), ("sender", "B"), ("account", "a"), ("account", "b"), ("global", "")])


@given(entries=st.lists(scopes, max_size=5), sender=st.sampled_from("ABC"), account=st.sampled_from("abc"))
def test_optout_refuses_exactly_when_a_scope_covers_the_message(entries, sender, account):
    index = Index()
    for scope, key in entries:
        apply_change(index, Change("optout", "add", CN_MOBILE, scope, key, at=T - 3600), T - 3600, POLICY)
    covered = any(scope == "global" or (scope == "sender" and key == sender) or
                  (scope == "account" and key == account) for scope, key in entries)
    v = optout.check(sub(CN_MOBILE, sender=sender, account=account), index, T, S)
    assert (v is not None and v.action is Action.REJECT) == covered
    assert v is None or v.action is Action.REJECT  # no grace an hour later


def test_optout_tidy_keeps_a_grace_to_its_last_second_and_forgets_it_after():
    index = opted_out("sender", "ACME", when=T)
    [key] = index.optout_at
    index.grace_used.add(key)
    optout.tidy(index, T + S.grace, S)
    assert index.optout_at == {key: T} and index.grace_used == {key}  # at the end of the grace: still on
    optout.tidy(index, T + S.grace + 1, S)
    assert index.optout_at == {} and index.grace_used == set()


def test_policy_asks_the_optout_rule_for_its_terms():
    policy = load_policy(rules={"optout": {"grace": "2m", "correlation_threshold": 5}})
    assert (policy.grace_s, policy.correlation_threshold) == (120.0, 5)
    assert policy.opens_grace("sender", "mo") and policy.opens_grace("account", "manual")
    assert not policy.opens_grace("global", "mo") and not policy.opens_grace("sender", "import")
    index = opted_out("sender", "ACME", when=T)
    assert policy.maybe_in_grace(index, CN_MOBILE, "ACME", "acme")
    assert not policy.maybe_in_grace(index, CN_MOBILE, "OTHER", "acme")
    assert not policy.maybe_in_grace(Index(), CN_MOBILE, "ACME", "acme")


def test_index_scope_ids_global_is_zero_and_unknown_scopes_are_none():
    index = Index()
    assert index.maybe_scope_id("global", "") == index.scope_id("global", "anything") == 0
    assert index.maybe_scope_id("sender", "ACME") is None
    sid = index.scope_id("sender", "ACME")
    assert index.maybe_scope_id("sender", "ACME") == sid != 0


def test_index_names_the_scope_and_the_key_of_the_opt_out_that_covers_a_recipient():
    index = Index()
    sender, account = index.scope_id("sender", "ACME"), index.scope_id("account", "acme")
    index.optouts = {scoped(CN_MOBILE, sender), scoped(CN_OTHER, account)}
    assert index.maybe_optout_key(CN_MOBILE, "ACME", "acme") == ("sender", scoped(CN_MOBILE, sender))
    assert index.maybe_optout_key(CN_OTHER, "ACME", "acme") == ("account", scoped(CN_OTHER, account))
    assert index.maybe_optout_key(CN_OTHER, "ACME", "other") is None


def test_index_refuses_a_scope_past_the_most_it_can_key(monkeypatch):
    import smppguard.policy.model as model
    monkeypatch.setattr(model, "MAX_SCOPES", 3)
    index = Index()  # "" is scope 0
    assert (index.scope_id("sender", "A"), index.scope_id("sender", "B")) == (1, 2)
    with pytest.raises(OverflowError, match="^too many opt-out scopes$"):
        index.scope_id("sender", "C")
    assert index.scope_id("sender", "B") == 2  # known ones still work


def test_without_an_optout_rule_no_text_is_a_confirmation():
    from smppguard.policy import RULES, make_submission
    policy = load_policy(registry=tuple(r for r in RULES if r.name != "optout"))
    sub_ = make_submission(policy, "+8613800138000", 1, "ACME", "acme", text="You are unsubscribed", index=Index())
    assert sub_.traffic_class == "marketing"  # no grace could let it through: the patterns are not even matched
