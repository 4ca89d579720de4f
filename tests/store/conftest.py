"""Shared by the store/ tests."""

from __future__ import annotations

import asyncio
import time

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


def sends(conn):
    return conn.execute("SELECT number, account, sent_at FROM send_history ORDER BY rowid").fetchall()


def audits(conn):
    return conn.execute("SELECT at, account, sender, recipient, rule, action, status, reason, actor FROM audit "
                        "ORDER BY id").fetchall()


async def eventually(predicate, timeout=3.0):
    """Poll until predicate() is true; returns the seconds it took. A timeout fails the test."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not true within {timeout} s")
        await asyncio.sleep(0.01)
    return time.monotonic() - started
