"""The answers sent to keyword replies (replies.py): when each number last got each kind, so that a restart does
not answer again within `[replies] once_per`."""

from __future__ import annotations

import sqlite3


def answered_since(db: sqlite3.Connection, since: float) -> dict[tuple[int, str], float]:
    """(number, kind) -> when last answered, of the answers sent after `since`."""
    return {(number, kind): at for number, kind, at in db.execute(
        "SELECT number, kind, sent_at FROM keyword_reply WHERE sent_at > ?", (since,))}


def record(db: sqlite3.Connection, number: int, kind: str, account: str, at: float) -> None:
    db.execute("INSERT OR REPLACE INTO keyword_reply (number, kind, account, sent_at) VALUES (?, ?, ?, ?)",
               (number, kind, account, at))
