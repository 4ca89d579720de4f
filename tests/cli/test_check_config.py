"""`smppguard check-config`: every setting in force printed as TOML that reads back to the same config, every
error in a bad file with its line (exit 2), and a store that cannot be written (exit 1)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from cli_helpers import invoke

from smppguard.config import TABLES, load_config, parse_config

SHIPPED = Path(__file__).parents[2] / "config" / "smppguard.toml"
PRESET = """[store]
path = "guard.db"
[policy]
preset = "us-tcpa"
confirmation_patterns = ["you are unsubscribed"]
[rules.content]
forbidden = ["casino", "lottery"]
[rules.credit]
enabled = true
weights = { complaint = -70 }
[[classes]]
name = "transactional"
system_id = ["bank*"]
patterns = ["code \\\\d{6}"]
[simulator]
accounts = { acme = "pw" }
[metrics]
address = ""
"""


def same(a, b) -> None:
    for table in TABLES:
        assert getattr(a, table) == getattr(b, table), table
    assert [s for _r, s in a.policy.rules] == [s for _r, s in b.policy.rules]
    assert a.policy.classes == b.policy.classes
    assert (a.policy.default_region, a.policy.fallback_zone, a.policy.distribution_lists) == (
        b.policy.default_region, b.policy.fallback_zone, b.policy.distribution_lists)


@pytest.mark.parametrize("text", [SHIPPED.read_text(), PRESET, ""], ids=["shipped", "preset", "empty"])
def test_what_it_prints_reads_back_to_the_same_settings(tmp_path, text):
    config = tmp_path / "smppguard.toml"
    config.write_text(text)
    r = invoke("check-config", "--config", config)
    assert r.exit_code == 0, r.output
    assert r.stderr == f"{config}: ok\n"
    printed = tmp_path / "printed.toml"
    printed.write_text(r.stdout)
    same(load_config(config), parse_config(r.stdout, str(printed)) if text else load_config(printed))


def test_every_error_in_the_file_is_reported_with_its_line_and_exit_2(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text('[listen]\nwindw = 1\naddress = 5\n[rules.frequency]\nmax = "x"\n[hold]\nmax_hold = "soon"\n')
    r = invoke("check-config", "--config", config)
    assert r.exit_code == 2
    assert r.stdout == ""
    assert r.stderr.splitlines()[1:] == [
        f"{config}:2: listen.windw: unknown key",
        f"{config}:3: listen.address: expected \"host:port\", got 5",
        f"{config}:5: rules.frequency.max: expected a whole number, got 'x'",
        f"{config}:7: hold.max_hold: " + r.stderr.splitlines()[4].split("hold.max_hold: ", 1)[1]]


def test_a_store_that_cannot_be_written_fails_with_exit_1(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('[store]\npath = "missing/guard.db"\n')
    r = invoke("check-config", "--config", config)
    assert r.exit_code == 1
    assert f"the store's folder {tmp_path / 'missing'} does not exist ([store] path)" in r.stderr


def test_relative_store_paths_print_as_the_absolute_path_they_mean(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('[store]\npath = "guard.db"\n')
    r = invoke("check-config", "--config", config)
    assert f'path = "{tmp_path / "guard.db"}"' in r.stdout.splitlines()
    assert dataclasses.replace(load_config(config).store).path == str(tmp_path / "guard.db")


@pytest.mark.parametrize("command", [["run"], ["blacklist", "list"], ["optout", "list"], ["queue", "list"],
                                     ["audit"], ["check", "13800138000"]])
def test_every_command_refuses_a_bad_config_file_with_exit_2(tmp_path, command):
    """check-config exited 2 on a bad file, `run` and the list commands 1 (the README says 2)."""
    config = tmp_path / "bad.toml"
    config.write_text("[upstream]\nwindw = 10\n")
    r = invoke(*command, "--config", config)
    assert r.exit_code == 2, r.output
    assert r.stderr.startswith("Error: bad config: ") and "upstream.windw: unknown key" in r.stderr
