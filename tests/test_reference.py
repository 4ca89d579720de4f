"""docs/configuration.md is what `python -m smppguard.reference` prints from the parser's own sources, and names
every option."""

from __future__ import annotations

from pathlib import Path

from smppguard.config import options
from smppguard.policy import RULES
from smppguard.reference import render

DOC = Path(__file__).parents[1] / "docs" / "configuration.md"


def test_the_reference_is_current():
    assert DOC.read_text(encoding="utf-8") == render(), \
        "docs/configuration.md is stale: python -m smppguard.reference > docs/configuration.md"


def test_it_names_every_option_and_rule():
    text = DOC.read_text(encoding="utf-8")
    for table, key, _default, _help in options():
        assert f"## [{table}]" in text and f"| `{key}` |" in text
    for rule in RULES:
        assert f"[rules.{rule.name}]" in text
