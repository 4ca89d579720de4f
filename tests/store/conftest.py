"""Shared by the store/ tests."""

from __future__ import annotations

import pytest

from smppguard.store.db import connect


@pytest.fixture
def db(tmp_path):
    """A migrated store in a fresh file."""
    conn = connect(tmp_path / "store.db")
    try:
        yield conn
    finally:
        conn.close()
