"""`smppguard optout`: add, remove, list, import, export, and the cross-sender correlation."""

from __future__ import annotations

import re

import pytest
from cli_helpers import TIME, as_json, config_text, invoke, norm, table

N1, N2, N3 = "+8613800138000", "+8613900000001", "+8613700000001"


def entries(result) -> list[tuple]:
    return [(r["number"], r["scope"], r["key"], r["keyword"], r["source"]) for r in as_json(result)]


def test_optout_add_for_a_sender_then_list(cli):
    r = cli("optout", "add", "13800138000", "--scope", "sender", "--key", "ACME", "--keyword", "TD")
    assert (r.exit_code, r.stdout, r.stderr) == (0, "opted out 1 number\n", "")
    r = cli("optout", "list")
    assert r.exit_code == 0
    assert norm(r.stdout) == table(
        "number          scope   key   keyword  source  added_at",
        "--------------  ------  ----  -------  ------  --------------------",
        f"{N1}  sender  ACME  TD       manual  {TIME}")


@pytest.mark.parametrize("args, message", [
    (("--scope", "sender"), "Error: --scope sender needs --key (the source_addr)"),
    (("--scope", "account"), "Error: --scope account needs --key (the system_id)"),
    ((), "Error: --scope sender needs --key (the source_addr)"),  # sender is the default scope
], ids=["sender", "account", "default"])
def test_optout_add_without_a_key_exits_2(cli, args, message):
    r = cli("optout", "add", "13800138000", *args)
    assert (r.exit_code, r.stdout) == (2, "")
    assert r.stderr.splitlines()[0] == "Usage: smppguard optout add [OPTIONS] NUMBERS..."
    assert r.stderr.splitlines()[-1] == message
    assert cli("optout", "list").exit_code == 1


def test_optout_global_ignores_a_key_and_bad_numbers_exit_2(cli):
    assert cli("optout", "add", "13800138000", "--scope", "global", "--key", "ACME").exit_code == 0
    assert entries(cli("optout", "list", "--json")) == [(N1, "global", "", "", "manual")]
    r = cli("optout", "add", "1380013800", "--scope", "global")
    assert r.exit_code == 2
    assert r.stderr.splitlines()[-1] == "Error: Invalid value for NUMBER: not a valid phone number: '1380013800'"


def test_optout_list_filters_by_number_scope_and_key(cli):
    cli("optout", "add", "13800138000", "--key", "ACME", "--keyword", "T")
    cli("optout", "add", "13800138000", "--key", "BETA")
    cli("optout", "add", "13900000001", "--scope", "account", "--key", "acme")
    cli("optout", "add", "13700000001", "--scope", "global", "--keyword", "STOP")
    assert entries(cli("optout", "list", "--number", "+86 138 0013 8000", "--json")) == [
        (N1, "sender", "ACME", "T", "manual"), (N1, "sender", "BETA", "", "manual")]
    assert entries(cli("optout", "list", "--scope", "global", "--json")) == [(N3, "global", "", "STOP", "manual")]
    assert entries(cli("optout", "list", "--key", "ACME", "--json")) == [(N1, "sender", "ACME", "T", "manual")]
    assert entries(cli("optout", "list", "--scope", "account", "--key", "acme", "--json")) == [
        (N2, "account", "acme", "", "manual")]
    assert len(as_json(cli("optout", "list", "--json"))) == 4
    r = cli("optout", "list", "--number", "13600000001")
    assert (r.exit_code, r.stdout, r.stderr) == (1, "", "nothing found\n")
    assert cli("optout", "list", "--number", "12345").exit_code == 2


def test_optout_remove(cli):
    cli("optout", "add", "13800138000", "--key", "ACME")
    r = cli("optout", "remove", "13800138000", "--key", "BETA")
    assert (r.exit_code, r.stdout) == (1, "")
    assert r.stderr == f"Error: {N1} has no sender opt-out for 'BETA'\nHint: see `smppguard optout list --number ...`\n"
    r = cli("optout", "remove", "13800138000", "--scope", "global")
    assert (r.exit_code, r.stderr.splitlines()[0]) == (1, f"Error: {N1} has no global opt-out")
    assert cli("optout", "remove", "13800138000").exit_code == 2  # the default scope needs --key
    r = cli("optout", "remove", "13800138000", "--key", "ACME")
    assert (r.exit_code, r.stdout) == (0, "removed\n")
    assert cli("optout", "list").exit_code == 1


def test_optout_three_senders_make_a_global_optout(cli):
    assert cli("optout", "add", "13800138000", "13900000001", "--key", "A").stdout == "opted out 2 numbers\n"
    assert cli("optout", "add", "13800138000", "13900000001", "--key", "B").stdout == "opted out 2 numbers\n"
    r = cli("optout", "add", "13800138000", "13900000001", "--key", "C", "--keyword", "退订")
    assert (r.exit_code, r.stdout) == (0, "opted out 2 numbers (2 now opted out globally: 3 senders)\n")
    assert entries(cli("optout", "list", "--scope", "global", "--json")) == [
        (N1, "global", "", "退订", "correlation"), (N2, "global", "", "退订", "correlation")]
    # a fourth sender adds no second global entry
    assert cli("optout", "add", "13800138000", "--key", "D").stdout == "opted out 1 number\n"


def test_optout_correlation_threshold_comes_from_the_config(tmp_path):
    cfg = tmp_path / "two.toml"
    cfg.write_text(config_text(tmp_path / "g.db", "\n[rules.optout]\ncorrelation_threshold = 2\n"))
    invoke("optout", "add", "13800138000", "--key", "A", "--config", cfg)
    r = invoke("optout", "add", "13800138000", "--key", "B", "--config", cfg)
    assert r.stdout == "opted out 1 number (1 now opted out globally: 2 senders)\n"


def test_optout_import_reports_bad_rows_and_export_round_trips(cli, tmp_path):
    path = tmp_path / "unsubscribed.csv"
    path.write_text("number,scope,key,keyword\n"
                    "13200000001,,,T\n"
                    "13200000002,global,,STOP\n"
                    "13200000003,account,,\n"
                    "abc,sender,X,\n"
                    "13200000004,planet,X,\n"
                    "13200000005,account,acme,TD\n", encoding="utf-8")
    r = cli("optout", "import", path, "--key", "ZED")
    assert r.exit_code == 2
    assert re.fullmatch(r"imported 4 rows in \d+\.\ds; 2 bad rows skipped\n", r.stdout)
    assert r.stderr == "line 5: not a valid phone number: 'abc'\nline 6: unknown scope 'planet'\n"
    got = entries(cli("optout", "list", "--json"))
    assert got == [("+8613200000001", "sender", "ZED", "T", "import"),
                   ("+8613200000002", "global", "", "STOP", "import"),
                   ("+8613200000003", "account", "ZED", "", "import"),
                   ("+8613200000005", "account", "acme", "TD", "import")]
    r = cli("optout", "import", "-", input="13200000006\n")  # no --key: a sender opt-out needs one
    assert (r.exit_code, r.stderr) == (2, "line 1: scope sender needs a key column or --key\n")

    out = tmp_path / "optouts.csv"
    r = cli("optout", "export", out)
    assert (r.exit_code, r.stdout) == (0, "exported 4 rows\n")
    assert norm(out.read_text(encoding="utf-8")).splitlines()[:2] == [
        "number,scope,key,keyword,source,added_at", f"+8613200000001,sender,ZED,T,import,{TIME}"]
    other = tmp_path / "other.toml"
    other.write_text(config_text(tmp_path / "other.db"))
    r = invoke("optout", "import", out, "--config", other)
    assert (r.exit_code, r.stdout.split(" in ")[0]) == (0, "imported 4 rows")
    assert entries(invoke("optout", "list", "--json", "--config", other)) == got


def test_optout_import_counts_the_files_rows_not_the_correlated_ones(cli):
    r = cli("optout", "import", "-", input="number,scope,key\n13100000001,sender,A\n13100000001,sender,B\n"
                                           "13100000001,sender,C\n")
    assert (r.exit_code, r.stdout.split(" in ")[0]) == (0, "imported 3 rows")
    assert ("+8613100000001", "global", "", "", "correlation") in entries(cli("optout", "list", "--json"))
