"""Shared by the cli/ tests: running smppguard in-process, normalising times, reading the store directly."""

from __future__ import annotations

import json
import re
import sqlite3

from click.testing import CliRunner, Result

from smppguard.cli import main

OPERATOR = "alice"
TIME = "YYYY-MM-DD HH:MM:SSZ"
_TIME_RE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ")


def config_text(db_path, extra: str = "") -> str:
    return f'[store]\npath = "{db_path}"\n\n[policy]\ndefault_region = "CN"\n{extra}'


def invoke(*args, input=None) -> Result:
    # catch_exceptions=False: a traceback fails the test loudly instead of hiding in result.exception
    return CliRunner().invoke(main, [str(a) for a in args], input=input, prog_name="smppguard",
                              catch_exceptions=False)


def norm(text: str) -> str:
    """Times printed now (tables, CSV) replaced by a placeholder of the same width, so tables compare exactly."""
    return _TIME_RE.sub(TIME, text)


def table(*lines: str) -> str:
    return "".join(line + "\n" for line in lines)


def as_json(result: Result):
    return json.loads(result.stdout)


def sql(db_path, query: str, args: tuple = ()) -> list[tuple]:
    db = sqlite3.connect(db_path)
    try:
        with db:
            return db.execute(query, args).fetchall()
    finally:
        db.close()
