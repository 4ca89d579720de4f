"""`smppguard audit` and `stats` over rows written the way the daemon writes them (fixed times, so exact)."""

from __future__ import annotations

import json
import re
import time
from datetime import datetime, timezone

import pytest
from cli_helpers import as_json, config_text, invoke, table

from smppguard.store.audit import mask_recipient
from smppguard.store.db import connect

DAY1 = datetime(2026, 1, 10, 12, 0, tzinfo=timezone.utc).timestamp()
DAY2 = datetime(2026, 1, 13, 9, 30, tzinfo=timezone.utc).timestamp()
NUMBER = 8613900000001
LOOKALIKE = 8613911110001  # the same visible digits once masked: +86139****0001
OTHER = 8613800138000


def insert(db_path, audits=(), sends=(), mode="masked"):
    """audits: (at, account, rule, action, status, reason, number[, count, last_at]); sends: (number, account,
    sent_at)."""
    db = connect(db_path)
    try:
        db.executemany("INSERT INTO audit (at, account, sender, recipient, rule, action, status, reason, count, "
                       "last_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       [(at, account, account.upper(), mask_recipient(n, "", mode), rule, action, status, reason,
                         *(fold or (1, None))) for at, account, rule, action, status, reason, n, *fold in audits])
        db.executemany("INSERT INTO send_history (number, account, sent_at) VALUES (?, ?, ?)", sends)
    finally:
        db.close()


AUDITS = [
    (DAY1, "acme", "blacklist", "reject", 69, "number is blacklisted", NUMBER),
    (DAY2, "acme", "blacklist", "reject", 69, "number is blacklisted", NUMBER),
    (DAY2 + 60, "acme", "frequency", "reject", 69, "frequency cap reached", OTHER, 37, DAY2 + 1800),  # folded
    (DAY2 + 120, "beta", "quiet_hours", "hold", 88, "quiet hours", LOOKALIKE),
]
SENDS = [(OTHER, "acme", DAY1), (OTHER, "acme", DAY2), (8613700000001, "acme", DAY2 + 10)]
AUDIT_TABLE = table(
    "first                 last                  count  rule         action  status  recipient       account  sender"
    "  reason                 actor",
    "--------------------  --------------------  -----  -----------  ------  ------  --------------  -------  ------"
    "  ---------------------  -----",
    "2026-01-13 09:32:00Z                        1      quiet_hours  hold    0x58    +86139****0001  beta     BETA"
    "    quiet hours",
    "2026-01-13 09:31:00Z  2026-01-13 10:00:00Z  37     frequency    reject  0x45    +86138****8000  acme     ACME"
    "    frequency cap reached",
    "2026-01-13 09:30:00Z                        1      blacklist    reject  0x45    +86139****0001  acme     ACME"
    "    number is blacklisted",
    "2026-01-10 12:00:00Z                        1      blacklist    reject  0x45    +86139****0001  acme     ACME"
    "    number is blacklisted")
ROWS = {  # the same rows, as cells (column widths change with the rows shown; an empty `last` is no cell)
    "hold": ["2026-01-13 09:32:00Z", "1", "quiet_hours", "hold", "0x58", "+86139****0001", "beta", "BETA",
             "quiet hours"],
    "freq": ["2026-01-13 09:31:00Z", "2026-01-13 10:00:00Z", "37", "frequency", "reject", "0x45", "+86138****8000",
             "acme", "ACME", "frequency cap reached"],
    "bl2": ["2026-01-13 09:30:00Z", "1", "blacklist", "reject", "0x45", "+86139****0001", "acme", "ACME",
            "number is blacklisted"],
    "bl1": ["2026-01-10 12:00:00Z", "1", "blacklist", "reject", "0x45", "+86139****0001", "acme", "ACME",
            "number is blacklisted"],
}


def cells(text: str) -> list[list[str]]:
    """A table's rows split into cells (two or more spaces apart); checks the header and rule lines."""
    lines = text.splitlines()
    assert re.split(r" {2,}", lines[0]) == ["first", "last", "count", "rule", "action", "status", "recipient",
                                            "account", "sender", "reason", "actor"]
    assert set(lines[1]) == {"-", " "}
    return [re.split(r" {2,}", line) for line in lines[2:]]


def rows(*keys: str) -> list[list[str]]:
    return [ROWS[k] for k in keys]


@pytest.fixture
def filled(db_path):
    insert(db_path, AUDITS, SENDS)
    db = connect(db_path)  # a send another sidecar made: it counts for the cap here, and in that one's stats
    try:
        db.execute("INSERT INTO send_history (number, account, sent_at, node) VALUES (?, 'acme', ?, 'b')",
                   (NUMBER, DAY2 + 5))
    finally:
        db.close()


def test_audit_shows_every_row_newest_first(cli, filled):
    r = cli("audit")
    assert (r.exit_code, r.stdout, r.stderr) == (0, AUDIT_TABLE, "")


def test_audit_filters_by_rule(cli, filled):
    r = cli("audit", "--rule", "blacklist")
    assert (r.exit_code, cells(r.stdout)) == (0, rows("bl2", "bl1"))
    r = cli("audit", "--rule", "consent")
    assert (r.exit_code, r.stdout, r.stderr) == (1, "", "nothing found\n")
    assert cli("audit", "--rule", "spam").exit_code == 2


def test_audit_takes_every_rule_an_audit_row_can_have(cli, db_path, tmp_path):
    """`audit --rule import` was in the README but refused: every writer's rule is offered."""
    from smppguard.policy import RULE_NAMES
    from smppguard.store.changelog import KINDS

    path = tmp_path / "list.csv"
    path.write_text("+8613900000001\n")
    assert cli("blacklist", "import", path).exit_code == 0
    r = cli("audit", "--rule", "import", "--json")
    assert r.exit_code == 0 and [row["action"] for row in json.loads(r.stdout)] == ["finished", "started"]
    for rule in (*RULE_NAMES, *KINDS, "distribution_lists", "blacklist-removal", "import", "hold", "inbound"):
        assert cli("audit", "--rule", rule).exit_code in (0, 1), rule  # found, or nothing found: never refused


def test_audit_by_number_matches_the_masked_form_and_says_it_may_match_others(cli, filled):
    r = cli("audit", "--number", "13900000001")
    assert (r.exit_code, cells(r.stdout)) == (0, rows("hold", "bl2", "bl1"))
    assert r.stderr == ("note: recipients are masked (+86139****0001); rows of other numbers with the same visible "
                        "digits match too\n")
    r = cli("audit", "--number", "+8613900000001", "--rule", "blacklist", "--json")
    assert [(x["first"], x["last"], x["count"], x["recipient"], x["account"]) for x in as_json(r)] == [
        ("2026-01-13T09:30:00.000Z", "2026-01-13T09:30:00.000Z", 1, "+86139****0001", "acme"),
        ("2026-01-10T12:00:00.000Z", "2026-01-10T12:00:00.000Z", 1, "+86139****0001", "acme")]
    assert cli("audit", "--number", "13600000001").exit_code == 1
    assert cli("audit", "--number", "12345").exit_code == 2


def test_audit_by_number_is_exact_when_recipients_are_kept_in_full(tmp_path):
    cfg = tmp_path / "full.toml"
    cfg.write_text(config_text(tmp_path / "full.db", '\n[audit]\nrecipient = "full"\n'))
    insert(tmp_path / "full.db", AUDITS, mode="full")
    r = invoke("audit", "--number", "13900000001", "--json", "--config", cfg)
    assert (r.exit_code, r.stderr) == (0, "")
    assert [(x["recipient"], x["rule"]) for x in as_json(r)] == [("+8613900000001", "blacklist")] * 2


def test_audit_since_an_iso_time_or_an_age(cli, db_path, filled):
    r = cli("audit", "--since", "2026-01-12")
    assert cells(r.stdout) == rows("hold", "freq", "bl2")
    r = cli("audit", "--since", "2026-01-13T17:31+08:00")  # 09:31 UTC, inclusive
    assert cells(r.stdout) == rows("hold", "freq")
    r = cli("audit", "--since", "2026-01-13T10:00")  # no offset: UTC
    assert (r.exit_code, r.stderr) == (1, "nothing found\n")
    insert(db_path, [(time.time() - 3600, "acme", "dead", "reject", 69, "dead number", NUMBER)])
    r = cli("audit", "--since", "1d", "--json")
    assert [(x["rule"], x["reason"]) for x in as_json(r)] == [("dead", "dead number")]
    r = cli("audit", "--since", "last week")
    assert r.exit_code == 2
    assert r.stderr.splitlines()[-1] == ("Error: Invalid value for '--since': expected an ISO date/time or an age "
                                         "such as 7d, got 'last week'")


def test_audit_limit_keeps_the_newest(cli, filled):
    assert cells(cli("audit", "--limit", "2").stdout) == rows("hold", "freq")


def test_audit_on_an_empty_store_exits_1(cli):
    r = cli("audit")
    assert (r.exit_code, r.stdout, r.stderr) == (1, "", "nothing found\n")


def test_stats_counts_every_refusal_by_day_account_rule_and_action(cli, filled):
    r = cli("stats")
    assert (r.exit_code, r.stdout) == (0, table(
        "day         account  rule         action  count",
        "----------  -------  -----------  ------  -----",
        "2026-01-10  acme     -            sent    1",
        "2026-01-10  acme     blacklist    reject  1",
        "2026-01-13  acme     -            sent    2",
        "2026-01-13  acme     blacklist    reject  1",
        "2026-01-13  acme     frequency    reject  37",
        "2026-01-13  beta     quiet_hours  hold    1"))
    assert re.fullmatch(r"audit log: \d+\.\d MB of 1,000 MB \(\[audit\] max_size, \d+%\)\n", r.stderr)
    r = cli("stats", "--since", "2026-01-11", "--json")
    assert as_json(r) == [
        {"day": "2026-01-13", "account": "acme", "rule": "-", "action": "sent", "count": 2},
        {"day": "2026-01-13", "account": "acme", "rule": "blacklist", "action": "reject", "count": 1},
        {"day": "2026-01-13", "account": "acme", "rule": "frequency", "action": "reject", "count": 37},
        {"day": "2026-01-13", "account": "beta", "rule": "quiet_hours", "action": "hold", "count": 1}]


def test_stats_leaves_out_operator_actions(cli):
    cli("blacklist", "add", "13800138000")
    cli("blacklist", "remove", "13800138000", "--reason", "verified")  # audited, with the operator as actor
    assert [(a["rule"], a["action"], a["actor"]) for a in as_json(cli("audit", "--json"))] == [
        ("blacklist-removal", "requested", "alice"), ("blacklist", "add", "alice")]
    r = cli("stats")
    assert (r.exit_code, r.stdout) == (1, "")
    assert r.stderr.startswith("nothing found\naudit log: ")
