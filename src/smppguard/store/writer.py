"""The daemon's store writer: group commit on the hot path, change-log tailing into the Index.

Rule 1: the hot path never awaits the database. It appends rows to a batch (send history, audit) and returns;
one task commits the batch every `interval` or when it reaches `max_batch` rows, one transaction and one fsync
for many messages (DESIGN: group commit).
Rule 2: `close()` lets a commit in progress finish and flushes what is left, so nothing batched is lost at
shutdown.
The tail reads change-log rows newer than the Index's and applies them, every `tail_interval` (<= 1 s), so a
change written by the CLI or another process takes effect live.
Rule 3: a newer smppguard (an upgraded CLI) may migrate the store under a running daemon, and this daemon
cannot read what the newer one writes. The tail checks the schema version first; on a newer one it stops and
`failed` says why, so the daemon exits and its supervisor starts the upgraded code, rather than screening on
with list changes it cannot see.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time

import aiosqlite

from .. import tasks
from ..policy import Policy
from ..policy.model import Index
from .changelog import COLUMNS, from_row
from .db import BUSY_TIMEOUT_MS, StoreError, connect
from .index import apply_change
from .lists import apply_due_removals
from .migrations import NEWEST, too_new

log = logging.getLogger("smppguard.store")

EXPIRE_SLICE = 10_000  # rows deleted per transaction by expire()
_SEND = "INSERT INTO send_history (number, account, sent_at) VALUES (?, ?, ?)"
_AUDIT = ("INSERT INTO audit (at, account, sender, recipient, rule, action, status, reason) "
          "VALUES (?, ?, ?, ?, ?, ?, ?, ?)")


class StoreWriter:
    def __init__(self, path: str, index: Index, policy: Policy, *, interval: float = 0.01, max_batch: int = 2000,
                 tail_interval: float = 0.5, retention: float = 400 * 86400.0,
                 expire_first: float = 60.0, expire_every: float = 3600.0):
        self.path = path
        self.index = index
        self.interval = interval
        self.max_batch = max_batch
        self.tail_interval = tail_interval
        self.policy = policy
        self.retention = retention
        self.expire_first = expire_first  # the first retention delete, this long after start-up
        self.expire_every = expire_every  # then this often (hourly)
        self.db: aiosqlite.Connection | None = None
        self._sends: list[tuple] = []
        self._audits: list[tuple] = []
        self._wake = asyncio.Event()
        self._flush_lock = asyncio.Lock()  # one transaction at a time on the one connection
        self._tasks: list[asyncio.Task] = []
        self._closing = False
        self._sync_db: sqlite3.Connection | None = None  # for library calls run in a worker thread
        self._sync_lock = threading.Lock()
        self.commits = 0
        self.rows_written = 0
        self.failed: asyncio.Future[str] | None = None  # set when the writer must stop the daemon (Rule 3)

    async def start(self) -> None:
        self.failed = asyncio.get_running_loop().create_future()
        self.db = await aiosqlite.connect(self.path, isolation_level=None)
        await self.db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        await self.db.execute("PRAGMA synchronous = NORMAL")
        self._tasks = [tasks.spawn(self._commit_loop(), name="store group commit"),
                       tasks.spawn(self._tail_loop(), name="store change-log tail")]

    # --- hot path: append and return ----------------------------------------------------------------------

    def record_send(self, number: int, account: str, at: float) -> None:
        self._sends.append((number, account, at))
        self._kick()

    def audit(self, at: float, account: str, sender: str, recipient: str, rule: str, action: str, status: int,
              reason: str) -> None:
        self._audits.append((at, account, sender, recipient, rule, action, int(status), reason))
        self._kick()

    def _kick(self) -> None:
        if not self._wake.is_set():
            self._wake.set()

    # --- background ----------------------------------------------------------------------------------------

    async def _commit_loop(self) -> None:
        while True:
            await self._wake.wait()
            if len(self._sends) + len(self._audits) < self.max_batch and not self._closing:
                await asyncio.sleep(self.interval)  # let the batch grow: one commit for many messages
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        async with self._flush_lock:
            await self._flush()

    async def _flush(self) -> None:
        sends, self._sends = self._sends, []
        audits, self._audits = self._audits, []
        if not sends and not audits:
            return
        assert self.db is not None
        try:
            await self.db.execute("BEGIN IMMEDIATE")
            if sends:
                await self.db.executemany(_SEND, sends)
            if audits:
                await self.db.executemany(_AUDIT, audits)
            await self.db.execute("COMMIT")
        except sqlite3.Error:
            log.exception("group commit of %d rows failed; retrying", len(sends) + len(audits))
            try:
                await self.db.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            self._sends[:0] = sends  # lose nothing: put them back in front
            self._audits[:0] = audits
            await asyncio.sleep(0.5)
            self._kick()
            return
        self.commits += 1
        self.rows_written += len(sends) + len(audits)

    async def tail_once(self) -> int:
        """Apply change-log rows newer than the Index's; returns how many. StoreError: the store's schema is
        newer than this smppguard's (Rule 3)."""
        await self._check_schema()
        assert self.db is not None
        applied = 0
        now = time.time()
        while True:
            async with self.db.execute(f"SELECT {COLUMNS} FROM changelog WHERE id > ? ORDER BY id LIMIT 5000",
                                       (self.index.change_id,)) as cur:
                rows = await cur.fetchall()
            for row in rows:
                try:
                    apply_change(self.index, from_row(row), now, self.policy)
                except Exception:  # one bad row must not stop live updates: skip it, say so
                    log.exception("change-log row %s could not be applied; skipped", row[0])
                    self.index.change_id = max(self.index.change_id, row[0])
            applied += len(rows)
            if len(rows) < 5000:
                return applied

    async def _check_schema(self) -> None:
        assert self.db is not None
        async with self.db.execute(NEWEST) as cur:
            (version,) = await cur.fetchone()  # type: ignore[misc]
        problem = too_new(version)
        if problem:
            raise StoreError(f"{self.path}: the store was migrated by a newer smppguard while this one ran; "
                             f"{problem} (restart the daemon on the upgraded version)")

    def _apply_due_removals(self) -> list[int]:
        with self._sync_lock:  # close() takes it too, so the connection is never closed under this call
            if self._closing:
                return []
            if self._sync_db is None:
                self._sync_db = connect(self.path)
            return apply_due_removals(self._sync_db)

    async def expire(self, now: float | None = None) -> int:
        """Delete send history and audit rows older than `retention`; returns how many. In slices of
        EXPIRE_SLICE rows, each its own short transaction, so group commits and CLI writers wait for one slice
        at most, never for the whole backlog."""
        assert self.db is not None
        cutoff = (time.time() if now is None else now) - self.retention
        deleted = 0
        for table, column in (("send_history", "sent_at"), ("audit", "at")):
            while True:
                async with self._flush_lock:
                    cur = await self.db.execute(
                        f"DELETE FROM {table} WHERE rowid IN "
                        f"(SELECT rowid FROM {table} WHERE {column} < ? LIMIT {EXPIRE_SLICE})", (cutoff,))
                    n = cur.rowcount
                deleted += n
                if n < EXPIRE_SLICE:
                    break
        return deleted

    async def _tail_loop(self) -> None:
        last_prune = time.monotonic()
        next_expiry = time.monotonic() + self.expire_first
        while True:
            await asyncio.sleep(self.tail_interval)
            try:
                await self._check_schema()  # first: a connection the removals open would fail less plainly
                removed = await asyncio.to_thread(self._apply_due_removals)
                if removed:
                    log.info("observation period ended: %d numbers removed from the blacklist", len(removed))
                await self.tail_once()
            except sqlite3.Error:
                log.exception("reading the change log failed; will retry")
            except StoreError as e:
                log.error("%s", e)
                assert self.failed is not None
                if not self.failed.done():
                    self.failed.set_result(str(e))
                return
            if time.monotonic() - last_prune > 60:
                last_prune = time.monotonic()
                self.policy.tidy(self.index, time.time())
            if time.monotonic() >= next_expiry:
                next_expiry = time.monotonic() + self.expire_every
                try:
                    deleted = await self.expire()
                    if deleted:
                        log.info("retention %.0f days: deleted %d send-history and audit rows",
                                 self.retention / 86400, deleted)
                except sqlite3.Error:
                    log.exception("deleting rows past retention failed; will retry in an hour")

    async def close(self) -> None:
        self._closing = True
        async with self._flush_lock:  # a commit in flight finishes first: cancelled mid-transaction, its rows were lost
            for t in self._tasks:
                t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.db is not None:
            await self.flush()
            await self.db.close()
            self.db = None
        with self._sync_lock:
            if self._sync_db is not None:
                self._sync_db.close()
                self._sync_db = None
