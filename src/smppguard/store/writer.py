"""The daemon's one write path: everything it writes to the store goes through here, group-committed.

Rule 1: the hot path never waits for the database. `record_send` and `audit` append a row and return; one
commit writes many rows in one transaction and one fsync (DESIGN: group commit), every `interval` or as soon
as `max_batch` rows wait. `submit(fn)` runs `fn(connection)` inside the next group commit (a list change learned
from the traffic, a held message) and returns a future that is done only when that commit is durable: a caller
that must not acknowledge before (the hold queue) awaits it.
Rule 2: what is acknowledged but not yet saved is bounded. When more than `max_unsaved` rows wait, or the oldest
has waited `max_unsaved_age` (the store locked by another process, a slow disk), the writer says it is behind
(`on_behind(True)`), and the proxy stops reading from senders until it has caught up (`on_behind(False)`). A
kill -9 can then lose at most `max_unsaved` rows, plus what the senders had in flight (one window per bind).
Rule 3: a failed commit is retried and logged, never dropped: its rows go back in front of the queue, in order.
Rule 4: `close()` commits what is left.
Strategy: one thread, and one job on it per group commit: one thread hop for many messages. A commit of rows
only (sends, audit rows, folds: nearly all of them) goes to the commit process (committer.py), which saves it in
one transaction in the idle scheduling class, off the loop's core and GIL. A commit with submitted functions runs
on the thread's own sqlite3 connection, rows and functions in one transaction (BEGIN IMMEDIATE, the rows, each
function in a savepoint, COMMIT), so a function's change and the rows beside it are saved together or not at
all. So does a commit of rows that waited more than LAG_S (the idle-class process starved by a host that never
idles, or replaced after it failed) and those made while closing: the commit process speeds up the common case,
and the worst case is the thread alone. Commits stay in order: the thread waits for each. aiosqlite would make
each statement a hop of its own, and could not run the store's own functions (changelog.write, lists) inside the
same transaction.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, NamedTuple

from .. import tasks
from . import changelog
from .changelog import Change
from .committer import IDLE, Committer, encode, write_rows
from .db import BUSY_TIMEOUT_MS, connect, write_transaction

log = logging.getLogger("smppguard.store")

RETRY_S = (0.1, 0.5, 1.0, 2.0, 5.0)  # waits between attempts at a commit that failed
CLOSE_TIMEOUT_S = 30.0  # at close, how long to keep trying to save what is left
WATCH_S = 0.1  # how often the age of unsaved rows is looked at while any wait
#: A batch whose oldest row waited longer than this when its commit starts is saved by the writer's thread itself:
#: the commit process lags (a commit takes milliseconds; the batch grows for `interval`, 10 ms, or one commit).
LAG_S = 0.25


class _Batch(NamedTuple):
    sends: list[tuple]
    audits: list[tuple]
    folds: dict[tuple, tuple[int, float]]  # a folded audit row -> its count and last time, the newest only
    jobs: list[tuple[Callable[[sqlite3.Connection], Any], asyncio.Future]]
    since: float  # loop time when its oldest row was appended

    def __len__(self) -> int:
        return len(self.sends) + len(self.audits) + len(self.folds) + len(self.jobs)


def _fold_rows(folds: dict[tuple, tuple[int, float]]) -> list[tuple]:
    """The UPDATE parameters of the folds (committer.FOLD)."""
    return [(count, last, *key) for key, (count, last) in folds.items()]


class StoreWriter:
    def __init__(self, path: str, *, interval: float = 0.01, max_batch: int = 2000, max_unsaved: int = 10_000,
                 max_unsaved_age: float = 2.0, on_behind: Callable[[bool], None] | None = None,
                 busy_timeout: float = BUSY_TIMEOUT_MS / 1000, audit: tuple[str, str] = ("masked", ""),
                 nice: int = 0, commit_idle: bool = True):
        self.path = path
        self.nice = nice  # the writer thread's nice value, above the loop's (tasks.background_thread)
        # the commit process: in the idle scheduling class, or at the thread's nice value
        self.committer = Committer(path, busy_timeout=busy_timeout, audit=audit, priority=IDLE if commit_idle else nice)
        self.audit_recipient = audit  # ([audit] recipient, salt): for audit rows written in SQL
        self.interval = interval
        self.max_batch = max_batch
        self.max_unsaved = max_unsaved
        self.max_unsaved_age = max_unsaved_age
        self.on_behind = on_behind
        self.busy_timeout = busy_timeout  # how long a commit waits for another process's write lock, then fails
        self.behind = False
        self.commits = 0
        self.rows_written = 0
        self.failures = 0  # commits that failed and were retried
        self.commits_here = 0  # commits of rows only made by the writer's thread (lagging, or closing)
        self.lagging = False  # the last commit of rows only was one of those
        self._closing = False  # commit on the thread's connection: do not depend on the commit process to stop
        self.last_error: str | None = None
        self.failing = False  # the last commit failed (the store cannot be written now)
        self._sends: list[tuple] = []
        self._audits: list[tuple] = []
        self._folds: dict[tuple, tuple[int, float]] = {}
        self._jobs: list[tuple[Callable[[sqlite3.Connection], Any], asyncio.Future]] = []
        self._queued_rows = 0  # rows (and jobs) queued for the next commit
        self._since = 0.0  # loop time of the oldest queued row
        self._inflight: _Batch | None = None
        self._check_at = min(max_batch, max_unsaved + 1)  # queued rows from which _queued() looks at each
        self._saved = 0  # rows ever committed: flush() waits for it to reach what was appended before it
        self._flush_waiters: list[tuple[int, asyncio.Future]] = []
        self._wake: asyncio.Event | None = None  # rows wait
        self._urgent: asyncio.Event | None = None  # commit without waiting for the batch to grow
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: ThreadPoolExecutor | None = None
        self._db: sqlite3.Connection | None = None
        self._tasks: list[asyncio.Task] = []

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._urgent = asyncio.Event()
        self._thread = tasks.background_thread("store-writer", self.nice)
        self._db = await self._loop.run_in_executor(self._thread, self._connect)
        await self._loop.run_in_executor(self._thread, self.committer.start)
        self._tasks = [tasks.spawn(self._commit_loop(), name="store group commit"),
                       tasks.spawn(self._watch_age(), name="store unsaved-age watch")]

    def _connect(self) -> sqlite3.Connection:
        db = connect(self.path, audit=self.audit_recipient)
        db.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
        return db

    # --- the hot path: append and return ------------------------------------------------------------------

    def record_send(self, number: int, account: str, at: float) -> None:
        self._sends.append((number, account, at))
        n = self._queued_rows = self._queued_rows + 1  # most rows need no more: this runs for every message
        if n == 1 or n >= self._check_at:
            self._queued(n)

    def audit(self, at: float, account: str, sender: str, recipient: str, rule: str, action: str, status: int,
              reason: str) -> None:
        self._audits.append((at, account, sender, recipient, rule, action, int(status), reason))
        n = self._queued_rows = self._queued_rows + 1
        if n == 1 or n >= self._check_at:
            self._queued(n)

    def audit_fold(self, at: float, account: str, sender: str, recipient: str, rule: str, status: int, count: int,
                   last_at: float) -> None:
        """The audit row first written (`audit`) at `at` for this account, sender, recipient, rule and status now
        stands for `count` occurrences up to `last_at`. Updates of one row within a commit are one UPDATE."""
        key = (at, account, sender, recipient, rule, int(status))
        folds = self._folds
        new = key not in folds
        folds[key] = (count, last_at)
        if new:
            n = self._queued_rows = self._queued_rows + 1
            if n == 1 or n >= self._check_at:
                self._queued(n)

    def submit(self, fn: Callable[[sqlite3.Connection], Any], *, urgent: bool = False) -> asyncio.Future:
        """Run `fn(connection)` on the writer's thread inside the next group commit, in a savepoint of its own
        (if it raises, its writes are undone and the future gets the exception; the rest commits). The future
        gets fn's result once the commit is durable. `urgent`: commit now rather than let the batch grow for
        `interval` (a caller that waits on it before it can go on, such as a release of held messages)."""
        assert self._loop is not None, "start() first"
        future = self._loop.create_future()
        self._jobs.append((fn, future))
        self._queued_rows += 1
        self._queued(self._queued_rows)
        if urgent and self._urgent is not None:
            self._urgent.set()
        return future

    def change(self, changes: list[Change], *, origin: str, actor: str = "",
               correlation_threshold: int = 0) -> asyncio.Future:
        """List changes made by the daemon (learned from deliver_sm, received from a peer), applied and logged
        in the next group commit (changelog.write); the future gets how many log rows were written, once durable.
        The change-log tail brings them into the Index, as it does the CLI's."""
        return self.submit(lambda db: changelog.write(db, changes, origin=origin, actor=actor, in_transaction=True,
                                                      correlation_threshold=correlation_threshold))

    def _queued(self, queued: int) -> None:
        """`queued` rows wait now: the first of them wakes the commit loop; a full batch makes it commit at once;
        past the bound, the writer is behind (Rule 2)."""
        if queued == 1:
            self._since = self._loop.time() if self._loop is not None else 0.0
            if self._wake is not None:
                self._wake.set()
        if queued >= self.max_batch and self._urgent is not None:
            self._urgent.set()
        if not self.behind:
            unsaved = queued + (len(self._inflight) if self._inflight else 0)
            if unsaved > self.max_unsaved:
                self._set_behind(True, unsaved)

    @property
    def unsaved(self) -> int:
        """Rows appended and not yet committed (acknowledged, for sends and audit rows, but not durable)."""
        inflight = self._inflight
        return self._queued_rows + (len(inflight) if inflight else 0)

    def unsaved_age(self) -> float:
        """Seconds the oldest unsaved row has waited (0 when none wait)."""
        if self._loop is None:
            return 0.0
        oldest = [b for b in ((self._inflight.since if self._inflight else None),
                              (self._since if self._queued_rows else None))
                  if b is not None]
        return self._loop.time() - min(oldest) if oldest else 0.0

    async def flush(self) -> None:
        """Wait until every row appended so far is committed (durable)."""
        target = self._saved + self.unsaved  # everything appended so far
        if self._saved >= target:
            return
        assert self._loop is not None and self._wake is not None
        future = self._loop.create_future()
        self._flush_waiters.append((target, future))
        self._wake.set()
        assert self._urgent is not None
        self._urgent.set()
        await future

    # --- the commit loop ---------------------------------------------------------------------------------------

    async def _commit_loop(self) -> None:
        assert self._wake is not None and self._urgent is not None
        failures = 0
        while True:
            await self._wake.wait()
            if not self._urgent.is_set():  # let the batch grow: one commit for many messages
                try:
                    await asyncio.wait_for(self._urgent.wait(), self.interval)
                except asyncio.TimeoutError:
                    pass
            self._wake.clear()
            self._urgent.clear()
            if not self._queued_rows:
                continue
            if await self._commit_once():
                failures = 0
            else:
                await asyncio.sleep(RETRY_S[min(failures, len(RETRY_S) - 1)])
                failures += 1
                self._wake.set()

    async def _commit_once(self) -> bool:
        """Commit what is queued in one transaction; False (rows back in front of the queue) if it failed."""
        assert self._loop is not None
        batch = _Batch(self._sends, self._audits, self._folds, self._jobs, self._since)
        self._sends, self._audits, self._folds, self._jobs = [], [], {}, []
        self._queued_rows = 0
        self._inflight = batch
        self._check_at = min(self.max_batch, self.max_unsaved + 1 - len(batch))
        waited = self._loop.time() - batch.since
        here = self._closing or waited > LAG_S
        if not batch.jobs and not self._closing and here != self.lagging:
            self.lagging = here
            if here:
                log.warning("store commit process lagging (rows waited %.2f s): the writer saves them itself until "
                            "it keeps up", waited)
            else:
                log.info("store commit process keeping up again")
        # rows for the commit process are encoded here, while they are still in this core's cache: the thread
        # then only passes them on (it runs on a cold core, and at a lower priority)
        rows = None if batch.jobs or here else encode((batch.sends, batch.audits, _fold_rows(batch.folds)))
        try:
            results = await self._loop.run_in_executor(self._thread, self._commit_in_thread, batch, rows)
        except Exception as e:  # sqlite3.Error (locked, disk full, I/O); anything else is a bug, also kept
            self._inflight = None
            self.failures += 1
            self.failing = True
            self.last_error = str(e)
            log.error("group commit of %d rows failed (%s); kept, and tried again", len(batch), e)
            self._sends[:0], self._audits[:0], self._jobs[:0] = batch.sends, batch.audits, batch.jobs
            newer = self._folds  # updates made since the batch was taken are the newer ones: they stay
            self._folds = {**batch.folds, **newer}
            self._queued_rows += len(batch) - len(batch.folds) + len(self._folds) - len(newer)
            self._since = batch.since
            self._check_at = min(self.max_batch, self.max_unsaved + 1)
            return False
        self._inflight = None
        self._check_at = min(self.max_batch, self.max_unsaved + 1)
        self.failing = False
        self.commits += 1
        if here and not batch.jobs:
            self.commits_here += 1
        self.rows_written += len(batch)
        self._saved += len(batch)
        for (_fn, future), (ok, value) in zip(batch.jobs, results, strict=True):
            if not future.done():
                (future.set_result if ok else future.set_exception)(value)
        if self._flush_waiters:
            done = [(t, f) for t, f in self._flush_waiters if t <= self._saved]
            self._flush_waiters = [(t, f) for t, f in self._flush_waiters if t > self._saved]
            for _t, f in done:
                if not f.done():
                    f.set_result(None)
        self._check_caught_up()
        return True

    def _commit_in_thread(self, batch: _Batch, rows: bytes | None = None) -> list[tuple[bool, Any]]:
        if rows is not None:  # most commits: rows only (encoded), saved by the commit process
            self.committer.commit(rows)
            return []
        # Functions to run: here, in one transaction with the rows (a held message's row and its audit row, a
        # release's mark and its "released" row, are saved together or not at all). Rows only: the commit
        # process lags, or the writer is closing.
        folds = _fold_rows(batch.folds)
        db = self._db
        assert db is not None
        results: list[tuple[bool, Any]] = []
        with write_transaction(db):
            write_rows(db, batch.sends, batch.audits, folds)
            for fn, _future in batch.jobs:
                db.execute("SAVEPOINT job")
                try:
                    results.append((True, fn(db)))
                except Exception as e:  # the job's own failure: undo its writes, keep the others
                    db.execute("ROLLBACK TO job")
                    results.append((False, e))
                db.execute("RELEASE job")
        return results

    async def execute(self, sql: str) -> tuple[Any, Any]:
        """Run one statement on each of the writer's connections, its own and the commit process's, between two
        commits (a pragma for both, such as max_page_count); the first row of each."""
        assert self._loop is not None and self._thread is not None and self._db is not None
        db = self._db
        return (await self._loop.run_in_executor(self._thread, lambda: db.execute(sql).fetchone()),
                await self._loop.run_in_executor(self._thread, self.committer.execute, sql))

    # --- back-pressure -----------------------------------------------------------------------------------------

    async def _watch_age(self) -> None:
        """Rows may wait too long without more arriving (a locked store): look at their age now and then."""
        while True:
            await asyncio.sleep(WATCH_S)
            if not self.behind and self.unsaved and self.unsaved_age() > self.max_unsaved_age:
                self._set_behind(True, self.unsaved)
            elif self.behind:
                self._check_caught_up()

    def _check_caught_up(self) -> None:
        if self.behind and self.unsaved <= self.max_unsaved // 2 and self.unsaved_age() <= self.max_unsaved_age / 2:
            self._set_behind(False, self.unsaved)

    def _set_behind(self, behind: bool, unsaved: int) -> None:
        self.behind = behind
        if behind:
            log.warning("store writer behind: %d rows not yet saved, the oldest for %.1f s; not reading from "
                        "senders until they are ([store] max_unsaved, max_unsaved_age)", unsaved, self.unsaved_age())
        else:
            log.warning("store writer caught up: reading from senders again")
        if self.on_behind is not None:
            self.on_behind(behind)

    # --- closing -----------------------------------------------------------------------------------------------

    async def close(self) -> None:
        """Commit what is left (trying for up to CLOSE_TIMEOUT_S), then close the connection."""
        if self._db is None:
            return
        self._closing = True  # what is left is saved at the thread's priority, not the idle class's
        try:
            await asyncio.wait_for(self.flush(), CLOSE_TIMEOUT_S)
        except asyncio.TimeoutError:
            log.error("store writer: %d rows could not be saved within %g s (%s); they are lost",
                      self.unsaved, CLOSE_TIMEOUT_S, self.last_error)
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        db, self._db = self._db, None
        assert self._loop is not None and self._thread is not None
        await self._loop.run_in_executor(self._thread, db.close)
        await self._loop.run_in_executor(self._thread, self.committer.close)
        self._thread.shutdown(wait=True)
