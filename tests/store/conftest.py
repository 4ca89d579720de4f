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


@pytest.fixture
def path(tmp_path):
    """A store created and migrated, as the daemon does before it starts the writer."""
    p = tmp_path / "store.db"
    connect(p).close()
    return p


@pytest.fixture
def other(path):
    """Another process's connection to the same store (the admin CLI, say)."""
    conn = connect(path)
    try:
        yield conn
    finally:
        conn.close()
