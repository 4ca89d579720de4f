"""Opening the store: one SQLite file in WAL mode, shared by the daemon and the admin CLI.

Rule: every connection is opened here, so pragmas and migrations are never skipped. WAL lets the CLI write while
the daemon reads and writes; busy_timeout makes the two wait for each other instead of failing.
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from pathlib import Path

from .migrations import migrate

BUSY_TIMEOUT_MS = 10_000


class StoreError(Exception):
    """The store cannot be used (unreadable file, newer schema, ...)."""


class NotFound(StoreError):
    pass


class AlreadyExists(StoreError):
    pass


def connect(path: str | os.PathLike, *, create: bool = True) -> sqlite3.Connection:
    """A migrated connection in autocommit mode (transactions are explicit: BEGIN ... COMMIT)."""
    p = Path(path)
    if not create and not p.exists():
        raise NotFound(f"no store at {p}")
    if p.parent and not p.parent.exists():
        p.parent.mkdir(parents=True, exist_ok=True)
    try:
        db = sqlite3.connect(p, isolation_level=None, check_same_thread=False)
        db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")  # WAL + NORMAL: durable at checkpoints, safe against corruption
        db.execute("PRAGMA cache_size = -65536")  # up to 64 MiB of pages: bulk imports into big lists stay in memory
        migrate(db)
    except sqlite3.DatabaseError as e:
        raise StoreError(f"cannot open store {p}: {e}") from None
    return db


def node_id(db: sqlite3.Connection) -> str:
    """This store's identity in the change log (who made a change)."""
    row = db.execute("SELECT value FROM meta WHERE key = 'node_id'").fetchone()
    if row:
        return row[0]
    value = uuid.uuid4().hex[:12]
    db.execute("INSERT OR IGNORE INTO meta VALUES ('node_id', ?)", (value,))
    return db.execute("SELECT value FROM meta WHERE key = 'node_id'").fetchone()[0]
