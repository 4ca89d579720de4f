"""Fixtures for the console and API tests: `served`, a stack with the HTTP listener and a store on disk."""

from __future__ import annotations

import pytest
from console_helpers import console_config, serve, stop

from helpers import Stack


@pytest.fixture
def served(tmp_path):
    with Stack(console_config(tmp_path), store=True) as stack:
        s = serve(stack, tmp_path / "guard.db")
        try:
            yield s
        finally:
            stop(s)
