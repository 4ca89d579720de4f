"""Adding a rule is one module and one line in the rule list: a rule defined only in the tests (prefix_rule.py),
registered that way, is parsed, checked in its place, explained, tidied and warned about, naming it nowhere else."""

from __future__ import annotations

import pytest
from policy_helpers import CN_MOBILE, at, sub

from prefix_rule import REFUSED, WITH_PREFIX, tidied
from smppguard.errors import ConfigError
from smppguard.policy import Action, Index, decide, explain, load_policy

NOON = at(2025, 6, 13, 12)


def test_a_registered_rule_is_parsed_checked_in_its_place_and_explained():
    policy = load_policy({}, {"prefix": {"prefixes": ["86138"]}}, registry=WITH_PREFIX)
    assert policy.rule_names == ("invalid", "dead", "blacklist", "prefix", "optout", "credit", "consent",
                                 "content", "signature", "review", "frequency", "quiet_hours")
    v = decide(sub(CN_MOBILE), Index(), NOON, policy)
    assert (v.action, v.rule, v.status) == (Action.REJECT, "prefix", REFUSED)
    # blacklist comes first, optout after it
    assert decide(sub(CN_MOBILE), Index(blacklist={CN_MOBILE}), NOON, policy).rule == "blacklist"
    assert decide(sub(8613900000001), Index(), NOON, policy).allowed
    assert dict((n, why) for n, why, _v in explain(sub(CN_MOBILE), Index(), NOON, policy))["prefix"] == "applies"
    tidied.clear()
    policy.tidy(Index(), NOON)
    assert tidied == [NOON]


def test_a_registered_rule_checks_its_own_keys_and_speaks_at_start_up():
    with pytest.raises(ConfigError) as e:
        load_policy({}, {"prefix": {"prefix": ["86"]}}, registry=WITH_PREFIX)
    assert e.value.key == "rules.prefix.prefix"
    idle = load_policy(registry=WITH_PREFIX)
    assert "[rules.prefix] prefixes is empty: the rule refuses nothing" in idle.warnings()
    assert decide(sub(CN_MOBILE), Index(), NOON, idle).allowed  # inactive: left out of decide()
    with pytest.raises(ConfigError, match="unknown rule"):
        load_policy({}, {"prefix": {}})  # not in RULES: unknown


@pytest.mark.parametrize("rules, key, message", [
    ({"prefix": {}}, "rules.prefix", "unknown rule (rules are "),
    ({"frequency": 3}, "rules.frequency", "expected a table"),
])
def test_a_rules_section_that_is_not_a_known_table_is_named_with_what_is_wrong(rules, key, message):
    with pytest.raises(ConfigError) as e:
        load_policy({}, rules)
    assert e.value.key == key and e.value.message.startswith(message), e.value
