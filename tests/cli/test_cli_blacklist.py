"""`smppguard blacklist`: add, list, count, import, export, and removal after an observation period."""

from __future__ import annotations

import re
import time

import pytest
from cli_helpers import OPERATOR, TIME, as_json, config_text, invoke, norm, sql, table

A, B, C = "+8613700000001", "+8613800138000", "+8613900000001"


B_AUDITED = "+86138****8000"  # as the audit log keeps it: masked, the default


def numbers(result) -> list[str]:
    return [row["number"] for row in as_json(result)]



def iso_epoch(text: str) -> float:
    """The epoch of an ISO 8601 time as --json prints it (2026-11-28T13:00:00.123Z)."""
    from datetime import datetime
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def test_blacklist_add_any_number_form_then_list_shows_a_table(cli):
    r = cli("blacklist", "add", "13800138000", "+8613900000001", "008613700000001", "--source", "complaint",
            "--reason", "10086")
    assert (r.exit_code, r.stdout, r.stderr) == (0, "blacklisted 3 numbers\n", "")
    r = cli("blacklist", "add", "8613600000001")
    assert (r.exit_code, r.stdout) == (0, "blacklisted 1 number\n")
    r = cli("blacklist", "list")
    assert r.exit_code == 0
    assert norm(r.stdout) == table(
        "number          source     reason  added_at              actor",
        "--------------  ---------  ------  --------------------  -----",
        f"{A}  complaint  10086   {TIME}  {OPERATOR}",
        f"{B}  complaint  10086   {TIME}  {OPERATOR}",
        f"{C}  complaint  10086   {TIME}  {OPERATOR}",
        f"+8613600000001  manual             {TIME}  {OPERATOR}")


def test_blacklist_list_json_has_normalised_numbers_and_iso_times(cli):
    before = time.time()
    cli("blacklist", "add", "13800138000", "0086 139 0000 0001", "--source", "carrier", "--reason", "CMCC list")
    r = cli("blacklist", "list", "--json")
    assert r.exit_code == 0
    rows = as_json(r)
    assert [{k: v for k, v in row.items() if k != "added_at"} for row in rows] == [
        {"number": B, "source": "carrier", "reason": "CMCC list", "actor": OPERATOR},
        {"number": C, "source": "carrier", "reason": "CMCC list", "actor": OPERATOR}]
    assert all(before - 0.001 <= iso_epoch(row["added_at"]) <= time.time() for row in rows)


def test_blacklist_count_per_source_and_total(cli):
    cli("blacklist", "add", "13800138000", "13900000001", "--source", "complaint")
    cli("blacklist", "add", "13700000001", "--source", "carrier")
    cli("blacklist", "add", "13600000001")
    r = cli("blacklist", "count")
    assert (r.exit_code, r.stdout) == (0, table(
        "source     count",
        "---------  -----",
        "carrier    1",
        "complaint  2",
        "manual     1",
        "total      4"))
    assert as_json(cli("blacklist", "count", "--json")) == [
        {"source": "carrier", "count": 1}, {"source": "complaint", "count": 2}, {"source": "manual", "count": 1},
        {"source": "total", "count": 4}]
    r = cli("blacklist", "count", "--source", "regulator")
    assert (r.exit_code, r.stdout) == (0, table("source     count", "---------  -----", "regulator  0",
                                                "total      0"))


def test_blacklist_list_filters_by_source_and_since(cli):
    cli("blacklist", "add", "13800138000", "--source", "complaint")
    cli("blacklist", "add", "13900000001", "--source", "carrier")
    assert numbers(cli("blacklist", "list", "--source", "carrier", "--json")) == [C]
    assert numbers(cli("blacklist", "list", "--since", "1h", "--json")) == [B, C]
    assert numbers(cli("blacklist", "list", "--limit", "1", "--json")) == [B]
    r = cli("blacklist", "list", "--source", "regulator")
    assert (r.exit_code, r.stdout, r.stderr) == (1, "", "nothing found\n")
    r = cli("blacklist", "list", "--since", "2999-01-01")
    assert r.exit_code == 1
    r = cli("blacklist", "list", "--source", "bogus")
    assert r.exit_code == 2
    assert "Invalid value for '--source': 'bogus' is not one of" in r.stderr


def test_blacklist_list_finds_one_number_in_any_form_as_optout_list_does(cli):
    cli("blacklist", "add", "13800138000", "--source", "complaint")
    cli("blacklist", "add", "13900000001", "--source", "carrier")
    for form in ("13800138000", "+8613800138000", "008613800138000"):
        assert numbers(cli("blacklist", "list", "--number", form, "--json")) == [B]
    assert cli("blacklist", "list", "--number", "13700000000").exit_code == 1
    assert cli("blacklist", "list", "--number", "12345").exit_code == 2


def test_blacklist_list_on_an_empty_store_exits_1(cli):
    r = cli("blacklist", "list")
    assert (r.exit_code, r.stdout, r.stderr) == (1, "", "nothing found\n")
    r = cli("blacklist", "list", "--json")
    assert (r.exit_code, as_json(r)) == (1, [])


def test_blacklist_add_a_bad_number_exits_2_and_adds_nothing(cli):
    r = cli("blacklist", "add", "13800138000", "12345")
    assert (r.exit_code, r.stdout) == (2, "")
    assert r.stderr == table(
        "Usage: smppguard blacklist add [OPTIONS] NUMBERS...",
        "Try 'smppguard blacklist add --help' for help.",
        "",
        "Error: Invalid value for NUMBER: not a valid phone number: '12345'")
    assert cli("blacklist", "list").exit_code == 1


def test_blacklist_db_option_finds_the_store_without_a_config(cli, db_path):
    r = invoke("blacklist", "add", "+8613800138000", "--db", db_path)
    assert (r.exit_code, r.stdout) == (0, "blacklisted 1 number\n")
    assert numbers(cli("blacklist", "list", "--json")) == [B]  # the same store, found through the config
    # with no config there is no default region: only international forms are numbers
    r = invoke("blacklist", "add", "13900000001", "--db", db_path)
    assert r.exit_code == 2
    assert r.stderr.endswith("Error: Invalid value for NUMBER: not a valid phone number: '13900000001' "
                             "(a number without a country code needs [policy] default_region)\n")


def test_blacklist_import_csv_with_header_reports_bad_rows_by_line_and_imports_the_rest(cli, tmp_path):
    path = tmp_path / "complaints.csv"
    path.write_text("number,source,reason\n"
                    "13500000001,carrier,cmcc\n"
                    "12345,complaint,x\n"
                    "+8613500000002,,\n"
                    "13500000003,bogus,y\n"
                    "008613500000004,regulator,miit\n", encoding="utf-8")
    r = cli("blacklist", "import", path, "--source", "complaint", "--reason", "batch 7")
    assert r.exit_code == 2
    assert re.fullmatch(r"imported 3 rows in \d+\.\ds; 2 bad rows skipped\n", r.stdout)
    assert r.stderr == "line 3: not a valid phone number: '12345'\nline 5: unknown source 'bogus'\n"
    rows = as_json(cli("blacklist", "list", "--json"))
    assert [(row["number"], row["source"], row["reason"]) for row in rows] == [
        ("+8613500000001", "carrier", "cmcc"), ("+8613500000002", "complaint", "batch 7"),
        ("+8613500000004", "regulator", "miit")]


def test_blacklist_import_reads_stdin(cli):
    r = cli("blacklist", "import", "-", "--source", "complaint",
            input="# exported from the complaint desk\n13600000001\n+8613600000002,regulator,MIIT 2026-11\n\n")
    assert r.exit_code == 0
    assert re.fullmatch(r"imported 2 rows in \d+\.\ds\n", r.stdout)
    assert as_json(cli("blacklist", "count", "--json")) == [
        {"source": "complaint", "count": 1}, {"source": "regulator", "count": 1}, {"source": "total", "count": 2}]


def test_blacklist_export_then_import_into_another_store_round_trips(cli, tmp_path):
    cli("blacklist", "add", "13800138000", "--source", "complaint", "--reason", "投诉, 10086")
    cli("blacklist", "add", "13900000001", "--source", "carrier")
    out = tmp_path / "blacklist.csv"
    r = cli("blacklist", "export", out)
    assert (r.exit_code, r.stdout) == (0, "exported 2 rows\n")
    assert norm(out.read_text(encoding="utf-8")).splitlines() == [
        "number,source,reason,added_at,actor",
        f'{B},complaint,"投诉, 10086",{TIME},{OPERATOR}',
        f"{C},carrier,,{TIME},{OPERATOR}"]
    r = cli("blacklist", "export", "-")
    assert (r.exit_code, r.stdout) == (0, out.read_text(encoding="utf-8"))  # CSV only, no "exported" line
    other = tmp_path / "other.toml"
    other.write_text(config_text(tmp_path / "other.db"))
    r = invoke("blacklist", "import", out, "--config", other)
    assert r.exit_code == 0 and r.stdout.startswith("imported 2 rows")
    back = as_json(invoke("blacklist", "list", "--json", "--config", other))
    assert [(row["number"], row["source"], row["reason"]) for row in back] == [
        (B, "complaint", "投诉, 10086"), (C, "carrier", "")]


# --- removal after an observation period ----------------------------------------------------------------

def test_blacklist_remove_a_number_not_blacklisted_exits_1_with_a_hint(cli):
    r = cli("blacklist", "remove", "13800138000", "--reason", "verified")
    assert (r.exit_code, r.stdout) == (1, "")
    assert r.stderr == f"Error: {B} is not blacklisted\nHint: see `smppguard blacklist list`\n"


@pytest.mark.parametrize("observe", ["1d", "8d", "71h", "7.5d"])
def test_blacklist_remove_observation_outside_3_to_7_days_exits_2(cli, observe):
    cli("blacklist", "add", "13800138000")
    r = cli("blacklist", "remove", "13800138000", "--reason", "verified", "--observe", observe)
    assert r.exit_code == 2
    assert r.stderr.endswith("Error: Invalid value for --observe: the observation period must be 3d to 7d\n")
    assert cli("blacklist", "pending").exit_code == 1


@pytest.mark.parametrize("args, message", [
    (("--reason", "verified", "--observe", "soon"),
     "Error: Invalid value for --observe: expected a duration such as 30 or \"30s\", \"5m\", \"3d\"; got 'soon'"),
    (("--reason", "  "), "Error: Invalid value for --reason: a removal needs a reason"),
    ((), "Error: Missing option '--reason' / '-r'."),
], ids=["bad-duration", "blank-reason", "no-reason"])
def test_blacklist_remove_usage_errors_exit_2(cli, args, message):
    cli("blacklist", "add", "13800138000")
    r = cli("blacklist", "remove", "13800138000", *args)
    assert (r.exit_code, r.stderr.splitlines()[-1]) == (2, message)
    assert cli("blacklist", "pending").exit_code == 1


def test_blacklist_remove_opens_a_pending_removal_and_a_second_request_exits_1(cli):
    cli("blacklist", "add", "13800138000", "--source", "complaint")
    r = cli("blacklist", "remove", "13800138000", "--reason", "customer verified", "--observe", "5d")
    assert r.exit_code == 0
    assert norm(r.stdout) == f"{B} will be removed at {TIME} unless a new complaint or opt-out comes first\n"
    r = cli("blacklist", "pending")
    assert r.exit_code == 0
    assert norm(r.stdout) == table(
        "number          status   effective_at          requested_at          actor  reason             note",
        "--------------  -------  --------------------  --------------------  -----  -----------------  ----",
        f"{B}  pending  {TIME}  {TIME}  {OPERATOR}  customer verified")
    (pending,) = as_json(cli("blacklist", "pending", "--json"))
    assert iso_epoch(pending["effective_at"]) - iso_epoch(pending["requested_at"]) == pytest.approx(5 * 86400,
                                                                                                    abs=0.002)
    assert numbers(cli("blacklist", "list", "--json")) == [B]  # still blacklisted while observed
    r = cli("blacklist", "remove", "+8613800138000", "--reason", "again")
    assert (r.exit_code, r.stderr) == (
        1, f"Error: {B} already has a pending removal\nHint: see `smppguard blacklist pending`\n")
    rows = as_json(cli("audit", "--rule", "blacklist-removal", "--json"))
    assert [(x["action"], x["recipient"], x["reason"], x["actor"]) for x in rows] == [
        ("requested", B_AUDITED, "customer verified (observe 5 days)", OPERATOR)]


@pytest.mark.parametrize("command, why", [
    (("optout", "add", "13800138000", "--scope", "sender", "--key", "ACME"), "new optout entry (manual)"),
    (("blacklist", "add", "13800138000", "--source", "complaint"), "new blacklist entry (complaint)"),
    (("blacklist", "add", "13800138000", "--source", "carrier"), "new blacklist entry (carrier)"),
], ids=["optout", "complaint", "carrier"])
def test_blacklist_removal_cancelled_by_a_new_optout_or_listing(cli, db_path, command, why):
    cli("blacklist", "add", "13800138000", "--source", "complaint")
    cli("blacklist", "remove", "13800138000", "--reason", "customer verified")
    assert cli(*command).exit_code == 0
    r = cli("blacklist", "pending")
    assert (r.exit_code, r.stderr) == (1, "nothing found\n")
    (row,) = as_json(cli("blacklist", "pending", "--all", "--json"))
    assert (row["status"], row["note"]) == ("cancelled", f"{why} by {OPERATOR}")
    r = cli("audit", "--rule", "blacklist-removal")
    assert norm(r.stdout).splitlines()[2:] == [
        f"{TIME}        1      blacklist-removal  cancelled  0x00    {B_AUDITED}                   "
        f"{why:<34}  {OPERATOR}",
        f"{TIME}        1      blacklist-removal  requested  0x00    {B_AUDITED}                   "
        f"{'customer verified (observe 3 days)':<34}  {OPERATOR}"]
    # a cancelled removal never takes effect, even once its period is over
    sql(db_path, "UPDATE pending_removal SET effective_at = ?", (time.time() - 1,))
    assert numbers(cli("blacklist", "list", "--json")) == [B]


def test_blacklist_due_removal_is_applied_by_the_next_cli_command(cli, db_path):
    cli("blacklist", "add", "13800138000", "13900000001", "--source", "complaint")
    cli("blacklist", "remove", "13800138000", "--reason", "customer verified")
    sql(db_path, "UPDATE pending_removal SET effective_at = ? WHERE number = 8613800138000", (time.time() - 1,))
    r = cli("blacklist", "count")  # any command that opens the store moves due removals on
    assert r.stdout.splitlines()[-1] == "total      1"
    assert numbers(cli("blacklist", "list", "--json")) == [C]
    (row,) = as_json(cli("blacklist", "pending", "--all", "--json"))
    assert (row["status"], row["note"]) == ("done", "observation period ended")
    rows = as_json(cli("audit", "--rule", "blacklist-removal", "--json"))
    assert [(x["action"], x["recipient"], x["reason"], x["actor"]) for x in rows] == [
        ("done", B_AUDITED, "customer verified", OPERATOR),
        ("requested", B_AUDITED, "customer verified (observe 3 days)", OPERATOR)]
    assert sql(db_path, "SELECT number, reason FROM watched") == [(8613800138000, "customer verified")]
    assert sql(db_path, "SELECT kind, op, number FROM changelog ORDER BY id DESC LIMIT 1") == [
        ("blacklist", "remove", 8613800138000)]
    assert cli("blacklist", "pending").exit_code == 1


def test_import_progress_moves_by_the_bytes_read():
    import io

    from smppguard.cli.lists import _Counting

    steps = []

    class Bar:
        update = staticmethod(steps.append)

    stream = _Counting(io.StringIO("退订,x\n13800138000\n"), Bar())
    assert stream.read(5) == "退订,x\n"
    assert stream.read(100) == "13800138000\n"
    assert stream.read(100) == ""
    assert steps == [len("退订,x\n".encode()), 12, 0]


def test_blacklist_import_counts_one_row_and_one_bad_row_in_the_singular(cli):
    r = cli("blacklist", "import", "-", input="13600000001\nnot-a-number\n")
    assert r.exit_code == 2
    assert re.fullmatch(r"imported 1 row in \d+\.\ds; 1 bad row skipped\n", r.stdout)


@pytest.mark.parametrize("mode, kept", [("full", "+8613800138000"), ("hashed", "sha256:")])
def test_the_audit_rows_of_list_operations_keep_the_recipient_as_configured(tmp_path, db_path, mode, kept):
    path = tmp_path / "audit.toml"
    path.write_text(config_text(db_path, f'\n[audit]\nrecipient = "{mode}"\nsalt = "s3cret"\n'))
    invoke("blacklist", "add", "13800138000", "--config", path)
    invoke("blacklist", "remove", "13800138000", "--reason", "verified", "--config", path)
    invoke("optout", "add", "13800138000", "--key", "ACME", "--config", path)  # cancels the removal
    rows = sql(db_path, "SELECT action, recipient FROM audit WHERE rule = 'blacklist-removal' ORDER BY id")
    assert [action for action, _ in rows] == ["requested", "cancelled"]
    assert all(recipient.startswith(kept) for _, recipient in rows)
    assert mode == "full" or all("13800138000" not in recipient for _, recipient in rows)


def test_adding_a_listed_number_says_it_was_listed_already(cli):
    assert cli("blacklist", "add", "13800138000").stdout == "blacklisted 1 number\n"
    r = cli("blacklist", "add", "13800138000", "13900000001", "--source", "complaint")
    assert r.stdout == f"blacklisted 1 number; already listed (source and reason updated): {B}\n"
