"""Presets: the parameters real regimes use (COMPLIANCE-NOTES), as defaults that every key can override.

`[policy] preset = "cn-marketing"` fills [policy] and [rules.*] keys the file leaves out. Windows are the quiet
(forbidden) times in the recipient's local time.
"""

from __future__ import annotations

PRESETS: dict[str, dict[str, dict]] = {
    # The seed article and MIIT practice: avoid 07-09 and 20-22 and the night; 4 a month, 72 h apart;
    # consent required (PIPL); opt-outs per signature, correlated across senders.
    "cn-marketing": {
        "policy": {"default_region": "CN", "fallback_zone": "Asia/Shanghai"},
        "rules": {
            "quiet_hours": {"windows": [{"start": "07:00", "end": "09:00"}, {"start": "20:00", "end": "22:00"},
                                        {"start": "22:00", "end": "07:00"}]},
            "frequency": {"max": 4, "period": "30d", "min_interval": "72h"},
            "optout": {"scope": "sender", "correlation_threshold": 3},
            "consent": {"enabled": True},
        },
    },
    # TCPA + FCC 2025: 08:00-21:00 local; no frequency cap by law; one confirmation within 5 minutes.
    "us-tcpa": {
        "policy": {"default_region": "US", "fallback_zone": "America/New_York"},
        "rules": {
            "quiet_hours": {"windows": [{"start": "21:00", "end": "08:00"}]},
            "frequency": {"enabled": False},
            "optout": {"scope": "account", "grace": "5m"},
        },
    },
    # TRAI: promotional 09:00-21:00 IST; at most 6 per hour per recipient.
    "in-trai": {
        "policy": {"default_region": "IN", "fallback_zone": "Asia/Kolkata"},
        "rules": {
            "quiet_hours": {"windows": [{"start": "21:00", "end": "09:00"}]},
            "frequency": {"max": 6, "period": "1h", "min_interval": "0s"},
        },
    },
    # EU / UK platform practice: 08:00-20:00; prior consent.
    "eu": {
        "policy": {"fallback_zone": "Europe/Brussels"},
        "rules": {
            "quiet_hours": {"windows": [{"start": "20:00", "end": "08:00"}]},
            "consent": {"enabled": True},
        },
    },
}


def merged(preset: str | None, policy: dict, rules: dict) -> tuple[dict, dict]:
    """(policy, rules) with the preset's values under the file's own."""
    if not preset:
        return dict(policy), {k: dict(v) for k, v in rules.items()}
    base = PRESETS[preset]
    out_policy = {**base.get("policy", {}), **policy}
    out_rules = {name: dict(values) for name, values in base.get("rules", {}).items()}
    for name, values in rules.items():
        out_rules[name] = {**out_rules.get(name, {}), **values}
    return out_policy, out_rules
