"""presets.py: each regime's parameters load as defaults; keys in the file win; a bad name is a ConfigError."""

from __future__ import annotations

import copy

import pytest
from policy_helpers import DAY, HOUR

from smppguard.errors import ConfigError
from smppguard.policy import RULE_NAMES, load_policy
from smppguard.policy.presets import PRESETS, merged


def window(start: str, end: str) -> tuple[int, int]:
    (sh, sm), (eh, em) = (map(int, start.split(":")), map(int, end.split(":")))
    return sh * 60 + sm, eh * 60 + em


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_presets_each_loads(preset):
    policy = load_policy({"preset": preset})
    assert [rule.name for rule, _ in policy.rules] == list(RULE_NAMES)
    assert policy.settings("quiet_hours").windows  # every regime has quiet hours
    assert policy.settings("frequency").fallback_zone == policy.fallback_zone
    assert policy.settings("quiet_hours").fallback_zone == policy.fallback_zone


@pytest.mark.parametrize("preset, region, zone", [
    ("cn-marketing", "CN", "Asia/Shanghai"),
    ("us-tcpa", "US", "America/New_York"),
    ("in-trai", "IN", "Asia/Kolkata"),
    ("eu", None, "Europe/Brussels"),
])
def test_presets_region_and_zone(preset, region, zone):
    policy = load_policy({"preset": preset})
    assert (policy.default_region, policy.fallback_zone) == (region, zone)


def test_presets_cn_marketing():
    p = load_policy({"preset": "cn-marketing"})
    assert p.settings("quiet_hours").windows == (window("07:00", "09:00"), window("20:00", "22:00"),
                                                 window("22:00", "07:00"))
    f = p.settings("frequency")
    assert (f.enabled, f.max, f.period, f.min_interval) == (True, 4, 30 * DAY, 72 * HOUR)
    o = p.settings("optout")
    assert (o.scope, o.correlation_threshold) == ("sender", 3)
    assert p.settings("consent").enabled


def test_presets_us_tcpa():
    p = load_policy({"preset": "us-tcpa"})
    assert p.settings("quiet_hours").windows == (window("21:00", "08:00"),)
    assert not p.settings("frequency").enabled
    o = p.settings("optout")
    assert (o.scope, o.grace) == ("account", 300.0)
    assert not p.settings("consent").enabled


def test_presets_in_trai():
    p = load_policy({"preset": "in-trai"})
    assert p.settings("quiet_hours").windows == (window("21:00", "09:00"),)
    f = p.settings("frequency")
    assert (f.max, f.period, f.min_interval) == (6, HOUR, 0.0)


def test_presets_eu():
    p = load_policy({"preset": "eu"})
    assert p.settings("quiet_hours").windows == (window("20:00", "08:00"),)
    assert p.settings("consent").enabled


def test_presets_file_keys_override_preset_keys():
    p = load_policy({"preset": "cn-marketing", "default_region": "HK", "fallback_zone": "Asia/Hong_Kong"},
                    {"frequency": {"max": 2}, "quiet_hours": {"action": "reject"}, "consent": {"enabled": False}})
    assert (p.default_region, p.fallback_zone) == ("HK", "Asia/Hong_Kong")
    f = p.settings("frequency")
    assert (f.max, f.period, f.min_interval) == (2, 30 * DAY, 72 * HOUR)  # the rest of the preset's table stays
    q = p.settings("quiet_hours")
    assert q.action == "reject" and len(q.windows) == 3
    assert not p.settings("consent").enabled


def test_presets_file_windows_replace_preset_windows():
    p = load_policy({"preset": "cn-marketing"}, {"quiet_hours": {"windows": [{"start": "21:00", "end": "08:00"}]}})
    assert p.settings("quiet_hours").windows == (window("21:00", "08:00"),)


def test_presets_are_not_changed_by_loading():
    before = copy.deepcopy(PRESETS)
    load_policy({"preset": "cn-marketing", "default_region": "US"}, {"frequency": {"max": 1}})
    policy, rules = merged("us-tcpa", {"fallback_zone": "UTC"}, {"optout": {"scope": "sender"}})
    policy["x"] = 1
    rules["optout"]["grace"] = "1h"
    assert PRESETS == before


def test_presets_none_is_the_plain_defaults():
    assert merged(None, {"a": 1}, {"frequency": {"max": 1}}) == ({"a": 1}, {"frequency": {"max": 1}})
    p = load_policy()
    assert (p.default_region, p.fallback_zone) == (None, "UTC")
    assert not p.settings("consent").enabled


def test_presets_unknown_preset_names_the_key():
    with pytest.raises(ConfigError) as e:
        load_policy({"preset": "cn"})
    assert e.value.key == "policy.preset"
    assert "cn-marketing" in str(e.value)


@pytest.mark.parametrize("policy, rules, key", [
    ({"region": "CN"}, None, "policy.region"),
    ({"default_region": "XX"}, None, "policy.default_region"),
    ({"default_region": 86}, None, "policy.default_region"),
    ({"fallback_zone": "Asia/Beijing"}, None, "policy.fallback_zone"),
    ({"preset": "cn-marketing"}, {"frequncy": {}}, "rules.frequncy"),
    (None, {"frequency": 4}, "rules.frequency"),
    ({"preset": "cn-marketing"}, {"frequency": {"max": "four"}}, "rules.frequency.max"),
    ({"preset": "us-tcpa"}, {"optout": {"grace": "soon"}}, "rules.optout.grace"),
])
def test_presets_bad_policy_names_the_key(policy, rules, key):
    with pytest.raises(ConfigError) as e:
        load_policy(policy, rules)
    assert e.value.key == key
