"""Shared by the store/ tests: reading what a store holds, and waiting for a condition with a deadline."""

from __future__ import annotations

import asyncio
import time


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
