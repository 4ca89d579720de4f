"""Rule `content`: forbidden patterns refuse, a required opt-out phrase must be there; binary is not judged."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st
from policy_helpers import CN_MOBILE, at, sub

from smppguard.errors import ConfigError
from smppguard.policy import content
from smppguard.policy.model import Action, Index

NOW = at(2025, 6, 13, 10)
S = content.parse_settings({"forbidden": ["赌博", r"\bcasino\b"], "required": ["回T退订", "reply STOP"]})


@pytest.mark.parametrize("text, refused, why", [
    ("周末大促，回T退订", False, ""),
    ("Weekend sale! Reply STOP to opt out", False, ""),
    ("weekend sale! reply stop to opt out", False, ""),  # case-insensitive
    ("在线赌博，回T退订", True, "'赌博'"),
    ("Visit our CASINO. Reply STOP", True, "'CASINO'"),
    ("casinos are fine here. Reply STOP", False, ""),  # \b: the word, not a prefix
    ("周末大促", True, "no opt-out instruction"),
    ("Weekend sale!", True, "no opt-out instruction"),
    ("", True, "no opt-out instruction"),
    (None, False, ""),  # binary content: no text, not judged
])
def test_content_check(text, refused, why):
    v = content.check(sub(CN_MOBILE, text=text), Index(), NOW, S)
    if refused:
        assert v.action is Action.REJECT and v.rule == "content" and why in v.reason
    else:
        assert v is None


def test_content_forbidden_wins_over_missing_phrase():
    v = content.check(sub(CN_MOBILE, text="赌博"), Index(), NOW, S)
    assert "'赌博'" in v.reason


def test_content_looks_for_the_required_text_only_once_a_concatenated_message_is_whole():
    first_part = replace(sub(CN_MOBILE, text="周末大促，全场五折，"), partial=True)
    assert content.check(first_part, Index(), NOW, S) is None  # "回T退订" may come in a later part
    assert content.check(replace(first_part, partial=False), Index(), NOW, S) is not None
    assert "'赌博'" in content.check(replace(first_part, text="在线赌博"), Index(), NOW, S).reason  # at once


def test_content_no_patterns_no_opinion():
    s = content.parse_settings({})
    assert s.enabled and s.forbidden == () and s.required == ()
    assert content.check(sub(CN_MOBILE, text="anything at all"), Index(), NOW, s) is None


def test_content_only_required():
    s = content.parse_settings({"required": ["STOP"]})
    assert content.check(sub(CN_MOBILE, text="hi, STOP to end"), Index(), NOW, s) is None
    assert content.check(sub(CN_MOBILE, text="hi"), Index(), NOW, s) is not None
    assert content.check(sub(CN_MOBILE, text=None), Index(), NOW, s) is None


@pytest.mark.parametrize("raw, key", [({"forbidden": ["("]}, "rules.content.forbidden"),
                                      ({"required": "STOP"}, "rules.content.required"),
                                      ({"forbid": ["x"]}, "rules.content.forbid")])
def test_content_bad_settings_name_the_key(raw, key):
    with pytest.raises(ConfigError) as e:
        content.parse_settings(raw)
    assert e.value.key == key


@given(st.text())
def test_content_any_text_without_phrase_is_refused_and_with_it_is_not(text):
    s = content.parse_settings({"required": ["回T退订"]})
    v = content.check(sub(CN_MOBILE, text=text), Index(), NOW, s)
    assert (v is None) == ("回T退订" in text)
    assert content.check(sub(CN_MOBILE, text=text + " 回T退订"), Index(), NOW, s) is None
