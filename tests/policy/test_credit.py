"""Rule `credit`: the score from its parts, and marketing refused below min_score."""

from __future__ import annotations

import pytest
from policy_helpers import sub

from smppguard.errors import ConfigError
from smppguard.policy import decide, load_policy
from smppguard.policy.credit import CreditParts, parse_settings, score
from smppguard.policy.model import Action, Index

A = 8613800000001
NOON = 1_795_000_000.0


@pytest.mark.parametrize("parts, expected", [
    (CreditParts(), (100, [])),
    (CreditParts(optout=2), (60, [("optout", 2, -40)])),
    (CreditParts(optout=2, suspended=1), (50, [("optout", 2, -40), ("suspended", 1, -10)])),
    (CreditParts(complaint=1, global_optout=1, dead=1), (0, [("complaint", 1, -60), ("global_optout", 1, -40),
                                                           ("dead", 1, -50)])),  # never below 0
    (CreditParts(optout=1, delivered=9), (100, [("optout", 1, -20), ("delivered", 9, 20)])),  # at most +20
    (CreditParts(delivered=3), (100, [("delivered", 3, 15)])),  # never above 100
    (CreditParts(listed=1, watched=1), (40, [("listed", 1, -40), ("watched", 1, -20)])),
])
def test_score(parts, expected):
    assert score(parts) == expected


def test_weights_are_configurable_part_by_part():
    s = parse_settings({"weights": {"optout": -30}})
    assert score(CreditParts(optout=2, suspended=1), s.weights) == (30, [("optout", 2, -60), ("suspended", 1, -10)])


@pytest.mark.parametrize("weights, message", [
    ({"opt_out": -30}, "unknown part 'opt_out'"),
    ({"optout": -300}, "from -100 to 100"),
    ({"optout": True}, "from -100 to 100"),
    ([1], "expected a table"),
])
def test_bad_weights_name_the_key(weights, message):
    with pytest.raises(ConfigError, match=message) as e:
        parse_settings({"weights": weights})
    assert e.value.key == "rules.credit.weights"


def test_marketing_below_min_score_is_refused_and_other_classes_are_not():
    policy = load_policy({"default_region": "CN"}, {"credit": {"enabled": True}, "quiet_hours": {"enabled": False}})
    index = Index()
    index.low_credit[A] = 50
    v = decide(sub(A), index, NOON, policy)
    assert (v.action, v.rule, v.status, v.reason) == (Action.REJECT, "credit", 0x45,
                                                      "number's credit score is too low (50 < 60)")
    index.low_credit[A] = 60  # at min_score: may still receive
    assert decide(sub(A), index, NOON, policy).action is Action.ALLOW
    assert decide(sub(8613800000002), index, NOON, policy).action is Action.ALLOW  # nothing on record


def test_the_floor_the_store_keeps_is_the_enabled_rules_min_score():
    assert load_policy().credit_floor is None  # off by default: the store scores nothing
    assert load_policy(rules={"credit": {"enabled": True, "min_score": 70}}).credit_floor == 70


def test_a_transactional_message_is_not_judged_by_credit():
    policy = load_policy({"default_region": "CN"}, {"credit": {"enabled": True}, "quiet_hours": {"enabled": False}})
    index = Index()
    index.low_credit[A] = 0
    assert decide(sub(A, traffic_class="transactional"), index, NOON, policy).action is Action.ALLOW


@pytest.mark.parametrize("points, ok", [(-100, True), (100, True), (-101, False), (101, False)])
def test_points_run_from_minus_100_to_100(points, ok):
    if ok:
        assert dict(parse_settings({"weights": {"dead": points}}).weights)["dead"] == points
    else:
        with pytest.raises(ConfigError, match="from -100 to 100"):
            parse_settings({"weights": {"dead": points}})


def test_the_messages_name_the_parts_and_the_keys():
    with pytest.raises(ConfigError) as e:
        parse_settings({"weights": {"opt_out": 1}})
    assert "parts are complaint, listed, watched, optout, global_optout, dead, suspended, delivered" in str(e.value)
    with pytest.raises(ConfigError) as e:
        parse_settings({"weights": 3})
    assert "expected a table of part = points" in str(e.value)
    for min_score, ok in ((0, True), (101, True), (-1, False), (102, False)):
        if ok:
            assert parse_settings({"min_score": min_score}).min_score == min_score
        else:
            with pytest.raises(ConfigError) as e:
                parse_settings({"min_score": min_score})
            assert e.value.key == "rules.credit.min_score"
    with pytest.raises(ConfigError) as e:
        parse_settings({"min_scor": 1})
    assert e.value.key == "rules.credit.min_scor"


def test_the_defaults_off_for_marketing_only():
    s = parse_settings({})
    assert (s.enabled, s.classes, s.min_score, s.status) == (False, frozenset({"marketing"}), 60, 0x45)
