"""Every command says what it does with an example, answers -h as well as --help, and is in the README."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from cli_helpers import invoke

from smppguard.cli import main

README = Path(__file__).parents[2] / "README.md"


def walk(command: click.Command, path: tuple[str, ...] = ()):
    yield path, command
    if isinstance(command, click.Group):
        for name in sorted(command.commands):
            yield from walk(command.commands[name], (*path, name))


COMMANDS = [path for path, _ in walk(main)]


def test_help_walk_finds_every_list_command():
    assert {" ".join(p) for p in COMMANDS} >= {
        "", "check", "audit", "stats", "blacklist add", "blacklist list", "blacklist count", "blacklist import",
        "blacklist export", "blacklist remove", "blacklist pending", "optout add", "optout remove", "optout list",
        "optout import", "optout export", "consent grant", "consent revoke", "consent show", "tz set", "tz list",
        "tz remove", "dead list", "dead clear"}


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "smppguard")
def test_help_every_command_says_what_it_does_with_an_example(path):
    long = invoke(*path, "--help")
    short = invoke(*path, "-h")
    assert (long.exit_code, short.exit_code) == (0, 0)
    assert short.stdout == long.stdout
    name = " ".join(("smppguard", *path))
    lines = [line.strip() for line in long.stdout.splitlines()]
    assert lines[0].startswith(f"Usage: {name} [OPTIONS]")
    assert lines[1] == "" and lines[2], "a summary follows the usage line"
    assert "Example:" in lines
    example = lines[lines.index("Example:") + 1]
    assert example.startswith(name), "the example shows the command itself"
    assert "-h, --help" in long.stdout


def test_help_every_top_level_command_is_in_the_readme_commands_table():
    text = README.read_text(encoding="utf-8")
    section = text.split("## Commands", 1)[1].split("\n## ", 1)[0]
    missing = [name for name in main.commands if f"| `smppguard {name}` |" not in section]
    assert missing == []
