"""Opening the store: one SQLite file in WAL mode, shared by the daemon and the admin CLI.

Rule: every connection is opened here, so pragmas and migrations are never skipped. WAL lets the CLI write while
the daemon reads and writes; busy_timeout makes the two wait for each other instead of failing. A new store (and
the folders made for it) is private to its owner: 0600 and 0700, whatever the umask.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator

from . import recipients
from .migrations import migrate

BUSY_TIMEOUT_MS = 10_000


class StoreError(Exception):
    """The store cannot be used (unreadable file, newer schema, ...)."""


class NotFound(StoreError):
    pass


class AlreadyExists(StoreError):
    pass


@contextlib.contextmanager
def write_transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE before the block, COMMIT after it; ROLLBACK if it raises, when a transaction is still open
    (a COMMIT that failed may have ended it, and a second error would hide the first)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


#: The service's own state directory (systemd's StateDirectory=smppguard): made when missing, unlike any other.
#: A string, and pathlib imported where a folder is looked at: the store's commit process opens an existing store
#: only, and need not load it.
STATE_DIRECTORY = "/var/lib/smppguard"


def connect(path: str | os.PathLike, *, create: bool = True, make_folders: bool = False,
            audit: tuple[str, str] = ("masked", "")) -> sqlite3.Connection:
    """A migrated connection in autocommit mode (transactions are explicit: BEGIN ... COMMIT). `audit`: how its
    audit rows keep recipients, ([audit] recipient, salt) (recipients.install). A store whose folder does not
    exist is an error naming it (a typo in [store] path must not start an empty store somewhere), unless
    `make_folders`, or the folder is the service's state directory."""
    if not create:
        if not os.path.exists(path):
            raise NotFound(f"no store at {os.path.normpath(path)}")
        return _open(path, audit)
    from pathlib import Path

    p = Path(path)
    missing = [d for d in (p.parent, *p.parent.parents) if not d.exists()]
    state = {Path(STATE_DIRECTORY), Path(os.environ.get("STATE_DIRECTORY", STATE_DIRECTORY))}
    if missing and not make_folders and p.parent.absolute() not in state:
        raise StoreError(f"cannot open store {p}: its folder {missing[-1] if len(missing) == 1 else p.parent} "
                         f"does not exist (create it, or give [store] path an existing folder)")
    for d in reversed(missing):  # mkdir(parents=True) would give the parents the umask's mode
        try:
            d.mkdir(mode=0o700, exist_ok=True)
        except OSError as e:
            raise StoreError(f"cannot create the store's folder {d}: {e.strerror or e}") from None
    if not p.exists():
        _create_private(p)
    return _open(p, audit)


def _open(p: str | os.PathLike, audit: tuple[str, str]) -> sqlite3.Connection:
    try:
        db = sqlite3.connect(p, isolation_level=None, check_same_thread=False)
        db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")  # WAL + NORMAL: durable at checkpoints, safe against corruption
        db.execute("PRAGMA cache_size = -65536")  # up to 64 MiB of pages: bulk imports into big lists stay in memory
        migrate(db)
        recipients.install(db, *audit)
    except sqlite3.DatabaseError as e:
        raise StoreError(f"cannot open store {p}: {e}") from None
    return db


def _create_private(p: os.PathLike) -> None:
    """The store holds phone numbers: a new one is readable by its owner only, whatever the umask. SQLite gives
    the -wal and -shm files it creates the database file's permissions."""
    try:
        os.close(os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:  # another process made it first
        pass
    except OSError as e:
        raise StoreError(f"cannot create store {p}: {e.strerror or e}") from None


def node_id(db: sqlite3.Connection) -> str:
    """This store's identity in the change log (who made a change)."""
    row = db.execute("SELECT value FROM meta WHERE key = 'node_id'").fetchone()
    if row:
        return row[0]
    value = os.urandom(6).hex()
    db.execute("INSERT OR IGNORE INTO meta VALUES ('node_id', ?)", (value,))
    return db.execute("SELECT value FROM meta WHERE key = 'node_id'").fetchone()[0]


def read_only(path: str) -> sqlite3.Connection:
    """A read-only connection to the store at `path`, for a thread of its own (the upkeep's tail, the sync's reads):
    it never takes the write lock, and waits for a writer as long as a writer waits."""
    from pathlib import Path

    db = sqlite3.connect(Path(path).resolve().as_uri() + "?mode=ro", uri=True, isolation_level=None,
                         check_same_thread=False)
    db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    return db
