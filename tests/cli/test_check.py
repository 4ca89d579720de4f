"""`smppguard check`: the verdict and every rule's reasoning, from the same config, store and decision code."""

from __future__ import annotations

import time
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from cli_helpers import as_json, config_text, invoke, sql, table

from smppguard.policy import RULE_NAMES

NOON = "2026-11-27T12:00+08:00"  # outside every quiet window in Shanghai
NIGHT = "2026-11-27T23:00+08:00"
CLASSES = '\n[[classes]]\nname = "transactional"\npatterns = ["验证码"]\n'


@pytest.fixture
def config_path(tmp_path, db_path):  # overrides conftest's: the same, plus a transactional class
    path = tmp_path / "smppguard.toml"
    path.write_text(config_text(db_path, CLASSES))
    return path


VERDICT = 3  # the line of the verdict: after recipient, class and credit


def rules_of(stdout: str) -> list[str]:
    return stdout.split("\n\n", 1)[1].splitlines()


def test_check_allow_prints_the_verdict_and_a_line_per_rule(cli):
    r = cli("check", "13800138000", "--sender", "ACME", "--account", "acme", "--text", "Sale!", "--at", NOON)
    assert (r.exit_code, r.stderr) == (0, "")
    assert r.stdout == table(
        "recipient  +8613800138000  region CN  zones Asia/Shanghai",
        "class      marketing",
        "credit     100  (nothing on record)",
        "verdict    ALLOW",
        "",
        "  invalid      pass",
        "  dead         pass",
        "  blacklist    pass",
        "  optout       pass",
        "  credit       skipped (disabled)",
        "  consent      skipped (disabled)",
        "  content      pass",
        "  signature    skipped (disabled)",
        "  review       pass",
        "  frequency    pass",
        "  quiet_hours  pass")


def test_check_blacklisted_number_is_rejected_and_other_rules_still_explained(cli):
    cli("blacklist", "add", "13800138000")
    cli("optout", "add", "13800138000", "--key", "ACME")
    r = cli("check", "+8613800138000", "--sender", "ACME", "--text", "Sale!", "--at", NOON)
    assert r.exit_code == 3  # refused
    assert r.stdout.splitlines()[VERDICT] == "verdict    REJECT by blacklist: number is blacklisted (status 0x45)"
    assert rules_of(r.stdout)[2:4] == ["  blacklist    reject: number is blacklisted",
                                       "  optout       reject: recipient opted out (sender)"]
    # another sender is refused only by the blacklist
    r = cli("check", "13800138000", "--sender", "BETA", "--at", NOON)
    assert rules_of(r.stdout)[3] == "  optout       pass"


def test_check_quiet_hours_hold_at_night_and_transactional_skips_the_rules(cli):
    r = cli("check", "13800138000", "--text", "Sale!", "--at", NIGHT)
    assert r.exit_code == 4  # held
    assert r.stdout.splitlines()[VERDICT] == (
        "verdict    HOLD by quiet_hours: quiet hours at the recipient (Asia/Shanghai); "
        "held until 2026-11-28 01:00 UTC (status 0x00)")
    cli("blacklist", "add", "13800138000")
    r = cli("check", "13800138000", "--text", "您的验证码是 1234", "--at", NIGHT)
    assert r.stdout.splitlines()[1:4] == ["class      transactional", "credit     60  (listed 1: -40)",
                                          "verdict    ALLOW"]
    assert rules_of(r.stdout)[2] == "  blacklist    skipped (not for class transactional)"


def test_check_an_invalid_number(cli):
    r = cli("check", "12345", "--at", NOON)
    assert r.exit_code == 3
    assert r.stdout.splitlines()[:3] == [
        "recipient  '12345': not a valid number", "class      marketing",
        "verdict    REJECT by invalid: not a valid phone number (status 0x0B)"]
    # the rules after `invalid` had no number to judge: they did not pass it
    assert rules_of(r.stdout)[0] == "  invalid      reject: not a valid phone number"
    assert rules_of(r.stdout)[1:] == [f"  {name:<11}  skipped ({reason})" for name, reason in (
        ("dead", "no valid number to judge"), ("blacklist", "no valid number to judge"),
        ("optout", "no valid number to judge"), ("credit", "disabled"), ("consent", "disabled"),
        ("content", "no valid number to judge"), ("signature", "disabled"), ("review", "no valid number to judge"),
        ("frequency", "no valid number to judge"),
        ("quiet_hours", "no valid number to judge"))]
    rules = as_json(cli("check", "12345", "--at", NOON, "--json"))["rules"]
    assert [(r["rule"], r["result"]) for r in rules][:3] == [("invalid", "reject"), ("dead", "skipped"),
                                                             ("blacklist", "skipped")]


def test_check_json(cli):
    cli("blacklist", "add", "13800138000")
    r = cli("check", "13800138000", "--text", "Sale!", "--at", NOON, "--json")
    assert r.exit_code == 3
    got = as_json(r)
    assert {k: got[k] for k in ("recipient", "class", "zones", "verdict")} == {
        "recipient": "+8613800138000", "class": "marketing", "zones": ["Asia/Shanghai"],
        "verdict": {"action": "reject", "rule": "blacklist", "status": 0x45, "status_hex": "0x45",
                    "reason": "number is blacklisted", "until": None}}
    assert [x["rule"] for x in got["rules"]] == list(RULE_NAMES)
    by_rule = {x["rule"]: x for x in got["rules"]}
    assert by_rule["blacklist"] == {"rule": "blacklist", "applies": True, "note": "applies", "result": "reject",
                                    "reason": "number is blacklisted"}
    assert by_rule["consent"] == {"rule": "consent", "applies": False, "note": "disabled", "result": "skipped",
                                  "reason": ""}
    hold = as_json(cli("check", "13800138000", "--at", NIGHT, "--json"))["verdict"]
    assert hold["action"] == "reject"  # the blacklist comes before quiet hours
    free = as_json(cli("check", "13900000001", "--at", NIGHT, "--json"))["verdict"]
    assert (free["action"], free["rule"], free["until"]) == (
        "hold", "quiet_hours", datetime(2026, 11, 28, 9, 0, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp())


@pytest.mark.parametrize("at, message", [
    ("2026-11-27T23:00", "Error: Invalid value for --at: give the UTC offset, e.g. 2026-11-28T23:00+08:00 or ...Z"),
    ("tonight", "Error: Invalid value for --at: expected an ISO time such as 2026-11-28T23:00+08:00, got 'tonight'"),
], ids=["no-offset", "not-a-time"])
def test_check_at_needs_an_iso_time_with_an_offset(cli, at, message):
    r = cli("check", "13800138000", "--at", at)
    assert (r.exit_code, r.stdout, r.stderr.splitlines()[-1]) == (2, "", message)


def test_check_at_accepts_z_and_now(cli):
    assert cli("check", "13800138000", "--at", "2026-11-27T15:00Z").stdout.splitlines()[VERDICT].startswith(
        "verdict    HOLD by quiet_hours")  # 23:00 in Shanghai
    assert cli("check", "13800138000", "--at", "now").exit_code in (0, 4)  # allowed or held, by the hour


def test_check_db_option_without_a_config(db_path):
    invoke("blacklist", "add", "+8613800138000", "--db", db_path)
    r = invoke("check", "+8613800138000", "--db", db_path, "--at", NOON)
    assert r.stdout.splitlines()[VERDICT] == "verdict    REJECT by blacklist: number is blacklisted (status 0x45)"


def test_check_applies_a_due_removal_like_every_list_command(cli, db_path):
    cli("blacklist", "add", "13800138000")
    cli("blacklist", "remove", "13800138000", "--reason", "verified")
    verdict = cli("check", "13800138000", "--at", NOON).stdout.splitlines()[VERDICT]
    assert verdict.startswith("verdict    REJECT by blacklist")
    sql(db_path, "UPDATE pending_removal SET effective_at = ?", (time.time() - 1,))
    assert cli("check", "13800138000", "--at", NOON).stdout.splitlines()[VERDICT] == "verdict    ALLOW"
    assert sql(db_path, "SELECT status FROM pending_removal") == [("done",)]
