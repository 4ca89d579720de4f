"""traffic_class.py: ordered [[classes]] rules name a message's class; the confirmation rule comes last."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smppguard.errors import ConfigError
from smppguard.policy import load_policy, make_submission
from smppguard.policy.traffic_class import (
    CONFIRMATION,
    DEFAULT_CLASS,
    DEFAULT_CONFIRMATION_PATTERNS,
    classify,
    needs_text,
    parse_classes,
)

RULES = parse_classes([
    {"name": "otp", "patterns": ["验证码", r"verification code", r"\bOTP\b"]},
    {"name": "transactional", "system_id": ["bank-*", "billing"]},
    {"name": "alerts", "source_addr": ["ALERT?", "95*"], "service_type": ["ALR"]},
    {"name": "transactional", "system_id": ["shop"], "source_addr": ["SHOP-TX"]},
])


def cls(system_id="acme", source_addr="ACME", service_type="", text: str | None = "Big sale!", rules=RULES):
    return classify(rules, system_id, source_addr, service_type, text)


@pytest.mark.parametrize("kwargs, expected", [
    ({}, DEFAULT_CLASS),
    ({"text": None}, DEFAULT_CLASS),
    ({"text": "您的验证码是 123456"}, "otp"),
    ({"text": "Your Verification Code is 1234"}, "otp"),  # patterns are case-insensitive
    ({"text": "use otp 1234"}, "otp"),
    ({"text": "HOTPOT sale"}, DEFAULT_CLASS),  # \b: a word, not inside one
    ({"system_id": "bank-otp"}, "transactional"),  # a shell-style glob
    ({"system_id": "bank-"}, "transactional"),
    ({"system_id": "BANK-otp"}, DEFAULT_CLASS),  # globs are case-sensitive, as system_id is
    ({"system_id": "xbank-otp"}, DEFAULT_CLASS),  # the whole value must match
    ({"system_id": "billing"}, "transactional"),
    ({"system_id": "billing2"}, DEFAULT_CLASS),
    ({"source_addr": "ALERT1", "service_type": "ALR"}, "alerts"),
    ({"source_addr": "ALERT1"}, DEFAULT_CLASS),  # every key given must match
    ({"source_addr": "ALERT12", "service_type": "ALR"}, DEFAULT_CLASS),  # ? is one character
    ({"source_addr": "95588", "service_type": "ALR"}, "alerts"),
    ({"system_id": "shop", "source_addr": "SHOP-TX"}, "transactional"),
    ({"system_id": "shop", "source_addr": "SHOP"}, DEFAULT_CLASS),
    # Ordered: the first rule that matches names the class.
    ({"system_id": "bank-otp", "text": "验证码 1234"}, "otp"),
    ({"system_id": "bank-otp", "text": "您已退订成功"}, "transactional"),  # operators' rules before confirmation
    # The confirmation rule, last.
    ({"text": "您已退订成功"}, CONFIRMATION),
    ({"text": "退订成功，回复Y恢复"}, CONFIRMATION),
    ({"text": "取消订阅成功"}, CONFIRMATION),
    ({"text": "You have been unsubscribed."}, CONFIRMATION),
    ({"text": "You are OPTED OUT and will receive no more messages."}, CONFIRMATION),
    ({"text": "You will no longer receive messages from ACME"}, CONFIRMATION),
    ({"text": "回T退订"}, DEFAULT_CLASS),  # the opt-out instruction is not a confirmation
])
def test_traffic_class_classify(kwargs, expected):
    assert cls(**kwargs) == expected


def test_traffic_class_no_rules_is_marketing_or_confirmation():
    rules = parse_classes([])
    assert [r.name for r in rules] == [CONFIRMATION]
    assert cls(rules=rules) == DEFAULT_CLASS
    assert cls(text="您已退订成功", rules=rules) == CONFIRMATION


def test_traffic_class_confirmation_is_always_last():
    assert RULES[-1].name == CONFIRMATION
    assert [r.name for r in RULES[:-1]] == ["otp", "transactional", "alerts", "transactional"]


@pytest.mark.parametrize("patterns, text, expected", [
    ([], "您已退订成功", DEFAULT_CLASS),  # an empty list turns the confirmation class off
    (["^STOPPED$"], "stopped", CONFIRMATION),
    (["^STOPPED$"], "您已退订成功", DEFAULT_CLASS),  # the list replaces the defaults
    (None, "您已退订成功", CONFIRMATION),
])
def test_traffic_class_confirmation_patterns(patterns, text, expected):
    assert cls(text=text, rules=parse_classes([], patterns)) == expected


def test_traffic_class_needs_text():
    assert needs_text(parse_classes([]))  # the default confirmation patterns read the text
    assert not needs_text(parse_classes([], []))
    assert not needs_text(parse_classes([{"name": "tx", "system_id": ["bank"]}], []))
    assert needs_text(parse_classes([{"name": "otp", "patterns": ["code"]}], []))


@pytest.mark.parametrize("raw, key", [
    ({"name": "x"}, "classes"),  # not a list of tables
    ([["x"]], "classes[0]"),
    ([{"name": "tx", "system_id": ["a"]}, {"name": "tx", "sytem_id": ["a"]}], "classes[1].sytem_id"),
    ([{"system_id": ["a"]}], "classes[0].name"),
    ([{"name": "", "system_id": ["a"]}], "classes[0].name"),
    ([{"name": 3, "system_id": ["a"]}], "classes[0].name"),
    ([{"name": "tx"}], "classes[0]"),  # a rule with nothing to match on
    ([{"name": "tx", "system_id": []}], "classes[0]"),  # ... an empty list would match every message
    ([{"name": "tx", "system_id": [], "patterns": []}], "classes[0]"),
    ([{"name": "tx", "system_id": "bank"}], "classes[0]"),  # a list, not a string
    ([{"name": "tx", "patterns": ["(unclosed"]}], "classes[0]"),
])
def test_traffic_class_bad_config_names_the_key(raw, key):
    with pytest.raises(ConfigError) as e:
        parse_classes(raw)
    assert e.value.key == key


def test_traffic_class_bad_confirmation_pattern_names_the_key():
    with pytest.raises(ConfigError) as e:
        parse_classes([], ["(unclosed"])
    assert e.value.key == "policy.confirmation_patterns"
    with pytest.raises(ConfigError) as e:
        load_policy({"confirmation_patterns": ["[bad"]})
    assert e.value.key == "policy.confirmation_patterns"


def test_traffic_class_through_make_submission():
    policy = load_policy(class_rules=[{"name": "transactional", "system_id": ["bank-*"]}])
    assert make_submission(policy, "+8613800138000", 1, "BANK", "bank-otp").traffic_class == "transactional"
    assert make_submission(policy, "+8613800138000", 1, "ACME", "acme", text="sale").traffic_class == "marketing"
    assert make_submission(policy, "+8613800138000", 1, "ACME", "acme",
                           text="您已退订成功").traffic_class == CONFIRMATION


def test_traffic_class_default_patterns_compile():
    assert len(parse_classes([])[-1].patterns) == len(DEFAULT_CONFIRMATION_PATTERNS)


@given(system_id=st.text(max_size=12), source_addr=st.text(max_size=12), service_type=st.text(max_size=6),
       text=st.one_of(st.none(), st.text(max_size=40)))
def test_traffic_class_is_always_a_known_name_and_first_match(system_id, source_addr, service_type, text):
    name = classify(RULES, system_id, source_addr, service_type, text)
    matching = [r.name for r in RULES if r.matches(system_id, source_addr, service_type, text)]
    assert name == (matching[0] if matching else DEFAULT_CLASS)
    catch_all = parse_classes([{"name": "all", "system_id": ["*"]}])
    assert classify(catch_all, system_id, source_addr, service_type, text) == "all"
