"""`smppguard consent`, `tz` and `dead`: the smaller lists."""

from __future__ import annotations

import time

import pytest
from cli_helpers import TIME, as_json, norm, sql, table

from smppguard.store import lists
from smppguard.store.db import connect

N1, N2 = "+8613800138000", "+8613900000001"


# --- consent -------------------------------------------------------------------------------------------------

def test_consent_grant_is_pending_unless_confirmed(cli):
    r = cli("consent", "grant", "13800138000", "--source", "web signup")
    assert (r.exit_code, r.stdout) == (0, f"consent for {N1}: pending\n")
    r = cli("consent", "grant", "13800138000", "--source", "paper", "--account", "acme", "--wording", "I agree",
            "--confirmed")
    assert (r.exit_code, r.stdout) == (0, f"consent for {N1}: confirmed\n")
    r = cli("consent", "show", "13800138000")
    assert r.exit_code == 0
    assert norm(r.stdout) == table(
        "number          account  status     source      wording  granted_at            confirmed_at",
        "--------------  -------  ---------  ----------  -------  --------------------  --------------------",
        f"{N1}  *        pending    web signup           {TIME}",
        f"{N1}  acme     confirmed  paper       I agree  {TIME}  {TIME}")


def test_consent_show_json(cli):
    before = time.time()
    cli("consent", "grant", "+8613800138000", "-s", "SMS YES", "-w", "Reply YES for offers", "--confirmed")
    (row,) = as_json(cli("consent", "show", "008613800138000", "--json"))
    assert {k: v for k, v in row.items() if not k.endswith("_at")} == {
        "number": N1, "account": "*", "status": "confirmed", "source": "SMS YES", "wording": "Reply YES for offers"}
    from datetime import datetime
    granted = datetime.fromisoformat(row["granted_at"].replace("Z", "+00:00")).timestamp()
    assert row["granted_at"] == row["confirmed_at"] and before - 0.001 <= granted <= time.time()


def test_consent_revoke_and_revoke_of_nothing_exits_1(cli):
    cli("consent", "grant", "13800138000", "--source", "web")
    cli("consent", "grant", "13800138000", "--source", "web", "--account", "acme")
    r = cli("consent", "revoke", "13800138000", "--account", "acme")
    assert (r.exit_code, r.stdout) == (0, "revoked\n")
    assert [row["account"] for row in as_json(cli("consent", "show", "13800138000", "--json"))] == ["*"]
    assert cli("consent", "revoke", "13800138000").stdout == "revoked\n"
    r = cli("consent", "revoke", "13800138000")
    assert (r.exit_code, r.stdout) == (1, "")
    assert r.stderr == f"Error: {N1} has no consent record\nHint: see `smppguard consent show NUMBER`\n"
    r = cli("consent", "revoke", "13800138000", "--account", "beta")
    assert r.stderr.splitlines()[0] == f"Error: {N1} has no consent record for account 'beta'"
    r = cli("consent", "show", "13800138000")
    assert (r.exit_code, r.stdout, r.stderr) == (1, "", "nothing found\n")


def test_consent_grant_needs_a_source(cli):
    r = cli("consent", "grant", "13800138000")
    assert (r.exit_code, r.stderr.splitlines()[-1]) == (2, "Error: Missing option '--source' / '-s'.")


# --- time-zone overrides -------------------------------------------------------------------------------------

def test_tz_set_a_valid_zone_is_used_by_check(cli, db_path):
    r = cli("tz", "set", "13800138000", "Asia/Urumqi")
    assert (r.exit_code, r.stdout) == (0, f"{N1}: Asia/Urumqi\n")
    assert sql(db_path, "SELECT number, zone FROM tz_override") == [(8613800138000, "Asia/Urumqi")]
    assert cli("check", "13800138000").stdout.splitlines()[0] == f"recipient  {N1}  region CN  zones Asia/Urumqi"


def test_tz_set_an_unknown_zone_exits_2(cli, db_path):
    cli("tz", "set", "13900000001", "Asia/Urumqi")
    r = cli("tz", "set", "13800138000", "Mars/Olympus_Mons")
    assert (r.exit_code, r.stdout) == (2, "")
    assert r.stderr.splitlines()[-1] == ('Error: Invalid value for ZONE: unknown time zone \'Mars/Olympus_Mons\' '
                                         '(an IANA name such as "Asia/Shanghai")')
    assert sql(db_path, "SELECT number FROM tz_override") == [(8613900000001,)]


def test_tz_set_dash_removes_the_override(cli, db_path):
    cli("tz", "set", "13800138000", "Asia/Urumqi")
    r = cli("tz", "set", "13800138000", "-")
    assert (r.exit_code, r.stdout) == (0, f"{N1}: override removed\n")
    assert sql(db_path, "SELECT * FROM tz_override") == []
    assert cli("check", "13800138000").stdout.splitlines()[0] == f"recipient  {N1}  region CN  zones Asia/Shanghai"


def test_tz_list_shows_the_overrides_and_tz_remove_removes_one(cli, db_path):
    """`tz` had no list, and removal was only `tz set N -`."""
    assert cli("tz", "list").exit_code == 1
    cli("tz", "set", "13800138000", "Asia/Urumqi")
    cli("tz", "set", "+61412345678", "Australia/Perth")
    rows = as_json(cli("tz", "list", "--json"))
    assert [(r["number"], r["zone"]) for r in rows] == [(N1, "Asia/Urumqi"), ("+61412345678", "Australia/Perth")]
    assert [r["zone"] for r in as_json(cli("tz", "list", "--number", "+8613800138000", "--json"))] == ["Asia/Urumqi"]
    r = cli("tz", "remove", "13800138000")
    assert (r.exit_code, r.stdout) == (0, f"{N1}: override removed\n")
    assert sql(db_path, "SELECT number FROM tz_override") == [(61412345678,)]
    r = cli("tz", "remove", "13800138000")
    assert (r.exit_code, r.stderr) == (1, f"{N1}: no override\n")


# --- dead numbers ----------------------------------------------------------------------------------------

def mark_dead(db_path, *numbers, expire_s=90 * 86400.0, now=None):
    db = connect(db_path)
    try:
        lists.mark_dead(db, numbers, reason="DELIVRD:UNDELIV 001", expire_s=expire_s, now=now)
    finally:
        db.close()


def test_dead_list_on_an_empty_store_exits_1(cli):
    r = cli("dead", "list")
    assert (r.exit_code, r.stdout, r.stderr) == (1, "", "nothing found\n")
    assert (r := cli("dead", "list", "--json")).exit_code == 1 and as_json(r) == []


def test_dead_list_shows_live_entries_and_all_includes_expired(cli, db_path):
    mark_dead(db_path, 8613800138000)
    mark_dead(db_path, 8613900000001, expire_s=10, now=time.time() - 100)
    r = cli("dead", "list")
    assert r.exit_code == 0
    assert norm(r.stdout) == table(
        "number          reason               marked_at             expires_at",
        "--------------  -------------------  --------------------  --------------------",
        f"{N1}  DELIVRD:UNDELIV 001  {TIME}  {TIME}")
    assert [row["number"] for row in as_json(cli("dead", "list", "--all", "--json"))] == [N2, N1]


@pytest.mark.parametrize("args", [(), ("13800138000", "--all")], ids=["nothing", "both"])
def test_dead_clear_needs_numbers_or_all(cli, db_path, args):
    mark_dead(db_path, 8613800138000)
    r = cli("dead", "clear", *args)
    assert (r.exit_code, r.stdout) == (2, "")
    assert r.stderr == table("Usage: smppguard dead clear [OPTIONS] [NUMBERS]...",
                             "Try 'smppguard dead clear --help' for help.", "", "Error: give NUMBERS or --all")
    assert cli("dead", "list").exit_code == 0


def test_dead_clear_numbers_or_all(cli, db_path):
    mark_dead(db_path, 8613800138000, 8613900000001, 8613700000001)
    r = cli("dead", "clear", "13800138000", "13600000001")  # the second was never dead
    assert (r.exit_code, r.stdout) == (0, "cleared 1 entry\n")
    r = cli("dead", "clear", "13800138000")
    assert (r.exit_code, r.stdout) == (1, "cleared 0 entries\n")
    r = cli("dead", "clear", "--all")
    assert (r.exit_code, r.stdout) == (0, "cleared 2 entries\n")
    assert cli("dead", "list", "--all").exit_code == 1
    assert sql(db_path, "SELECT op, number FROM changelog WHERE kind = 'dead' AND op = 'remove' ORDER BY number") == [
        ("remove", 8613700000001), ("remove", 8613800138000), ("remove", 8613900000001)]
