"""The README walked through as a new operator would: `scripts/walkthrough` runs every command of its "Commands"
table with the README's and the help's own examples, against the shipped config with a temporary store and a
running daemon, and fails on a traceback, an exit status the README does not give, or an unmasked number.
What it runs and how it decides is in the script's docstring."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[1] / "scripts" / "walkthrough"

pytestmark = pytest.mark.subprocess


def test_walkthrough_every_readme_command_runs_as_documented():
    proc = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=110)
    assert proc.returncode == 0, proc.stdout[-12000:] + proc.stderr[-4000:]
    assert "every command of the README ran as documented" in proc.stdout
