"""The daemon's background work on the store, beside the writer: the change-log tail, the end of observation
periods, the rules' idle work on the Index, the retention delete, the audit log's bound on disk, and (while the
credit rule is on) the credit scores of the numbers a change touched (store/credit.py).

The tail reads change-log rows newer than the Index's and applies them, every `tail_interval` (<= 1 s), so a
change written by the CLI or another process takes effect live. Reads use a read-only connection of their own;
every write (a removal whose observation period ended, the retention delete) goes through the writer.
The reads run on one thread of the upkeep's own; closing the connection is queued on that thread too, so a read
still running when the daemon stops (its task cancelled) finishes before the connection goes. The snapshot's
roll forward builds its arrays on a second thread, so the tail goes on meanwhile. Both run below the loop's CPU
priority ([store] background_nice, tasks.background_thread).
Rule 1: a newer smppguard (an upgraded CLI) may migrate the store under a running daemon, and this daemon cannot
read what the newer one writes. Each round checks the schema version first; on a newer one it stops and
`failed` says why, so the daemon exits and its supervisor starts the upgraded code, rather than screening on
with list changes it cannot see.
Rule 2: the retention delete goes in slices of EXPIRE_SLICE rows, each in its own group commit, so no commit
waits behind the whole backlog; so does the pruning of the audit log past [audit] max_size, oldest rows first.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable

from .. import tasks
from ..policy import Policy
from ..policy.compact import CompactHistory, CompactSet, attach_sieve, sieve_of
from ..policy.model import Index
from . import audit, sendrows, snapshot
from .changelog import COLUMNS, from_row
from .credit import apply_low_scores, low_scores
from .db import StoreError, read_only
from .index import apply_change, history_keys_name
from .lists import apply_due_removals
from .migrations import NEWEST, too_new
from .writer import StoreWriter

log = logging.getLogger("smppguard.store")

EXPIRE_SLICE = 10_000  # rows deleted per group commit by expire()
#: List changes held in the Index's overlays past which the snapshot rolls forward at once, not at the hour.
ROLL_OVERLAY = 1_000_000
#: Send rows logged after the snapshot's past which it rolls forward at once, not at the hour: a restart replays
#: at most about this many sends (a burst of sends, as an import for the lists).
#: A restart reads the send rows after the snapshot as arrays, about 1 µs a row (2M in 1.9 s on the 2-core test
#: machine), so a million of them bound it. A roll forward during a burst at 5M list entries takes 4-5 s (20-32 s
#: when its sends were read in a thread of the daemon), which a roll every 250,000 sends would make the burst pay
#: for several times over.
ROLL_SENDS = 1_000_000
#: Send rows after the mark from which a roll forward has a child process read them (sendrows.py): fewer are read
#: in the upkeep's thread sooner than a process starts.
CHILD_READ_ROWS = 20_000
TAIL_PAGE = 5000
#: Overlay entries of the history a roll forward drops per turn of the loop (about 5 ms), once the new base has them.
FORGET_SLICE = 20_000
_SCORED = frozenset({"optout", "blacklist", "dead"})  # list kinds that are parts of a credit score
#: complaint numbers looked up per round of the tail (an import of a complaint list is no burst of complaints
#: against one campaign: past this many, the rest count against no account)
MAX_COMPLAINTS_ASKED = 10_000
_DUE = "SELECT 1 FROM pending_removal WHERE status = 'pending' AND effective_at <= ? LIMIT 1"


class Upkeep:
    def __init__(self, path: str, index: Index, policy: Policy, writer: StoreWriter, *, tail_interval: float = 0.5,
                 retention: float = 400 * 86400.0, tidy_every: float = 60.0, expire_first: float = 60.0,
                 expire_every: float = 3600.0, audit_max_size: int = 1_000_000_000,
                 failures_within_s: float = 30 * 86400.0, snapshot_first: float | None = None,
                 snapshot_every: float = 3600.0, nice: int = 0):
        self.path = path
        self.nice = nice  # the nice value of its threads, above the loop's (tasks.background_thread)
        self.index = index
        self.policy = policy
        self.writer = writer
        self.last_tail = time.monotonic()  # when the change-log tail last caught up (metrics)
        self.tail_interval = tail_interval
        self.retention = retention
        self.tidy_every = tidy_every
        self.expire_first = expire_first  # the first retention delete, this long after start-up
        self.expire_every = expire_every  # then this often (hourly)
        self.audit_max_size = audit_max_size
        self.failures_within_s = failures_within_s  # receipts that said suspended count for the credit score
        # the snapshot file's roll forward: this long after start-up (None: as often as after that), then hourly
        self.snapshot_every = snapshot_every
        self.snapshot_first = snapshot_every if snapshot_first is None else snapshot_first
        self.last_snapshot: dict | None = None  # what the last roll forward did (metrics, the benchmark)
        self._snapshots: asyncio.Task | None = None
        self._roll_soon = asyncio.Event()
        self._rescore: set[int] = set()  # numbers whose credit score may have changed
        #: told, after each round of the tail, which accounts sent (within `complaints_within_s`) to numbers a
        #: complaint has just blacklisted: {account: numbers} (the sending-pattern review)
        self.on_complaints: Callable[[dict[str, int]], None] | None = None
        self.complaints_within_s = 3600.0
        self.failed: asyncio.Future[str] | None = None  # set when the daemon must stop (Rule 1)
        self._db: sqlite3.Connection | None = None
        self._task: asyncio.Task | None = None
        self._thread: ThreadPoolExecutor | None = None
        self._build_thread: ThreadPoolExecutor | None = None  # a roll forward's arrays, beside the tail's reads

    async def _in_thread(self, fn, *args):
        assert self._thread is not None
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    async def _in_build_thread(self, fn, *args):
        assert self._build_thread is not None
        return await asyncio.get_running_loop().run_in_executor(self._build_thread, fn, *args)

    async def start(self) -> None:
        self.failed = asyncio.get_running_loop().create_future()
        self._thread = tasks.background_thread("store-upkeep", self.nice)
        self._build_thread = tasks.background_thread("index-snapshot", self.nice)
        self._db = await self._in_thread(read_only, self.path)
        self._task = tasks.spawn(self._loop(), name="store upkeep")
        self._snapshots = tasks.spawn(self._snapshot_loop(), name="index snapshot")

    async def close(self) -> None:
        if self._snapshots is not None:
            self._snapshots.cancel()
            await asyncio.gather(self._snapshots, return_exceptions=True)
            self._snapshots = None
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._db is not None:
            db, self._db = self._db, None
            await self._in_thread(db.close)  # after any read still running on the thread
        for thread in (self._thread, self._build_thread):
            if thread is not None:
                thread.shutdown(wait=False)
        self._thread = self._build_thread = None

    # --- the snapshot file (store/snapshot.py) ----------------------------------------------------------------

    async def _snapshot_loop(self) -> None:
        await self._until_roll(self.snapshot_first)
        while True:
            try:
                await self.roll_forward()
            except (OSError, sqlite3.Error, ValueError, MemoryError):
                log.exception("rolling the index snapshot forward failed; will retry in %.0f s", self.snapshot_every)
            await self._until_roll(self.snapshot_every)

    async def _until_roll(self, seconds: float) -> None:
        """Sleep `seconds`, or less if the lists' overlays have grown past ROLL_OVERLAY (an import while the
        daemon runs), or the sends logged since the snapshot past ROLL_SENDS (a burst): folded into the bases in a
        thread, they stop taking 60 bytes a number, and a restart replays a bounded tail."""
        self._roll_soon.clear()
        try:
            await asyncio.wait_for(self._roll_soon.wait(), seconds)
        except asyncio.TimeoutError:
            pass

    def _check_overlays(self) -> None:
        index = self.index
        size = sum(getattr(t, "overlay_size", 0) for t in (index.blacklist, index.optouts))
        if size > ROLL_OVERLAY:
            self._roll_soon.set()

    async def _check_sends(self) -> None:
        """Past ROLL_SENDS send rows after the snapshot's, roll forward now: a restart reads those rows (about 1 µs
        each), and the history's overlay holds them until a roll forward folds them into its base."""
        if self.policy.history_span_s <= 0:
            return
        ((last,),) = await self._in_thread(self._read, sendrows.LAST_SEND_ROW, ())
        if last - self.index.history_mark > ROLL_SENDS:
            self._roll_soon.set()

    async def roll_forward(self) -> dict:
        """Merge the sends logged since the history's base into it (and drop those past the longest period),
        fold the lists' overlays into their bases, and write the snapshot file: in threads, so the loop goes on
        screening; the Index then takes the new bases, keeping every write made meanwhile. Returns what it did."""
        started = time.monotonic()
        index, policy = self.index, self.policy
        blacklist, optouts, history = index.blacklist, index.optouts, index.history
        assert isinstance(blacklist, CompactSet) and isinstance(optouts, CompactSet)
        assert isinstance(history, CompactHistory)
        bases = (blacklist.base, optouts.base, history.base)
        key_of = policy.history_keys(index)
        # the send rows, read as arrays (by a child process when there are many: sendrows.py)
        sends = await self._in_thread(self._sends, index.history_mark, policy.history_span_s > 0,
                                      key_of is not None)
        mark, merged = sends.last, len(sends.numbers)
        if key_of is None:  # the key is the number
            keys, times = sends.numbers, sends.times
        else:  # keyed by account too: an account's scope id is taken on the loop (it may be new to the Index)
            # a key past int64 (a scope id past 8191) stays in the overlay, as the Index has it
            keys, times, _ = snapshot.scoped_arrays(sends, key_of)
        del sends
        after = time.time() - policy.history_span_s
        # the lists as of this change id: their overlays frozen now, and folded into new bases in the thread
        change_id, black, opt = index.change_id, blacklist.pending(), optouts.pending()
        try:
            head = await self._in_thread(snapshot.head, self._db, change_id, mark)
            meta = {**head, "history_keys": history_keys_name(policy), "scope_ids": dict(index.scope_ids),
                    "history_after": after}

            def build():
                hist, hist_rows = snapshot.rolled(bases[2], keys, times, after)
                black_table = snapshot.merged_table(bases[0], *black)
                opt_table = snapshot.merged_table(bases[1], *opt)
                path = snapshot.path_for(self.path)
                # the sieve of the new bases, sized for them, without the bits of numbers since taken off; built
                # before they are mapped from the file, whose pages then stay out of memory until a lookup
                sieve = sieve_of(black_table.slots, opt_table.slots)
                snapshot.write(path, meta, black_table, opt_table, hist, hist_rows, sieve)
                # the same arrays, mapped from the file just written: the built ones (a month of sends, the
                # lists) leave the heap, and the pages come back from the page cache as lookups touch them
                mapped = snapshot.read(path)
                if mapped is not None:
                    black_table, opt_table, hist, hist_rows = (mapped.blacklist, mapped.optouts, mapped.history,
                                                               mapped.history_rows)
                return black_table, opt_table, hist, hist_rows, sieve

            black_table, opt_table, hist, hist_rows, sieve = await self._in_build_thread(build)
        except BaseException:
            blacklist.abandon()
            optouts.abandon()
            raise
        blacklist.install(black_table)
        optouts.install(opt_table)
        index.listed = attach_sieve(blacklist, optouts, sieve)  # with the keys added since the overlays froze
        history.install(hist, hist_rows)
        index.history_mark = mark
        settled = await self._settle(history, after)
        self.last_snapshot = {"seconds": time.monotonic() - started, "sends_merged": merged,
                              "keys": len(hist.keys), "sends": len(hist.times), "change_id": change_id,
                              "overlay_settled": settled}
        log.info("index snapshot rolled forward in %.2fs: %d sends merged, %d keys with %d sends, lists as of "
                 "change %d", self.last_snapshot["seconds"], merged, len(hist.keys), len(hist.times), change_id)
        return self.last_snapshot

    def _sends(self, after: int, counted: bool, accounts: bool) -> sendrows.Sends:
        """The send rows after row `after` as arrays (with `accounts`, each row's account too): read by a child
        process when there are many (see sendrows.py), in this thread when there are few or the child fails
        (then with a warning)."""
        last = self._db.execute(sendrows.LAST_SEND_ROW).fetchone()[0]
        if counted and last - after >= CHILD_READ_ROWS:
            try:
                return sendrows.send_arrays(self.path, after, last - after, accounts)
            except OSError as e:
                log.warning("%s; reading them in the daemon instead", e)
        if accounts:
            return sendrows.read_here(self.path, after, accounts)
        mark, keys, times, _ = snapshot.send_arrays_after(self._db, after, None, counted)
        return sendrows.Sends(mark, keys, times)

    async def _settle(self, history: CompactHistory, after: float) -> int:
        """Drop the history's overlay entries the new base holds as they are (the sends recorded since the start,
        once logged and merged): found in a thread, dropped on the loop FORGET_SLICE at a time. Prune would get
        through them 5,000 a minute, while a burst leaves hundreds of thousands, 180 bytes a send. Returns how
        many went."""
        keys, values = history.overlay_items()
        if not keys:
            return 0
        which = await self._in_build_thread(history.caught_up, keys, values, after)
        gone = 0
        for start in range(0, len(which), FORGET_SLICE):
            gone += history.forget(keys, values, which[start:start + FORGET_SLICE])
            await asyncio.sleep(0)
        return gone

    # --- the change-log tail -------------------------------------------------------------------------------

    async def tail_once(self) -> int:
        """Apply change-log rows newer than the Index's; returns how many. StoreError: the store's schema is
        newer than this smppguard's (Rule 1)."""
        await self._check_schema()
        applied = 0
        now = time.time()
        while True:
            rows = await self._in_thread(self._read, f"SELECT {COLUMNS} FROM changelog WHERE id > ? ORDER BY id "
                                                       f"LIMIT {TAIL_PAGE}", (self.index.change_id,))
            scored = self.policy.credit_floor is not None
            complaints: list[int] = []
            for row in rows:
                try:
                    change = from_row(row)
                    apply_change(self.index, change, now, self.policy)
                    if scored and change.kind in _SCORED:
                        self._rescore.update(change.targets())
                    if (self.on_complaints is not None and change.kind == "blacklist" and change.op == "add"
                            and change.data.get("source") == "complaint"):
                        complaints.extend(change.targets()[:MAX_COMPLAINTS_ASKED - len(complaints)])
                except Exception:  # one bad row must not stop live updates: skip it, say so
                    log.exception("change-log row %s could not be applied; skipped", row[0])
                    self.index.change_id = max(self.index.change_id, row[0])
            applied += len(rows)
            if complaints and self.on_complaints is not None:
                self.on_complaints(await self._in_thread(self._senders_of, complaints,
                                                         now - self.complaints_within_s))
            if rows:
                self._check_overlays()
            if len(rows) < TAIL_PAGE:
                await self.rescore()
                self.last_tail = time.monotonic()
                return applied

    def touch(self, numbers: Iterable[int]) -> None:
        """These numbers' credit scores may have changed without a change-log row (a receipt counted): the next
        round rescores them."""
        if self.policy.credit_floor is not None:
            self._rescore.update(numbers)

    async def rescore(self) -> int:
        """Bring Index.low_credit up to date for the numbers touched since the last round; returns how many."""
        if not self._rescore:
            return 0
        numbers, self._rescore = list(self._rescore), set()
        scores = await self._in_thread(self._scores, numbers, time.time())
        apply_low_scores(self.index.low_credit, scores)
        return len(numbers)

    def _scores(self, numbers: list[int], now: float) -> dict[int, int | None]:
        db = self._db
        assert db is not None
        return low_scores(db, numbers, self.policy, now, self.failures_within_s)

    async def _check_schema(self) -> None:
        ((version,),) = await self._in_thread(self._read, NEWEST, ())
        problem = too_new(version)
        if problem:
            raise StoreError(f"{self.path}: the store was migrated by a newer smppguard while this one ran; "
                             f"{problem} (restart the daemon on the upgraded version)")

    def _senders_of(self, numbers: list[int], since: float) -> dict[str, int]:
        """The accounts that sent to these numbers since `since`, and to how many of them each."""
        assert self._db is not None
        return dict(self._db.execute(
            "SELECT account, COUNT(DISTINCT number) FROM send_history WHERE sent_at >= ? AND number IN "
            "(SELECT value FROM json_each(?)) GROUP BY account", (since, json.dumps(numbers))).fetchall())

    def _read(self, sql: str, args: tuple) -> list[tuple]:
        assert self._db is not None
        return self._db.execute(sql, args).fetchall()

    # --- the store's own clock: removals, retention ----------------------------------------------------------

    async def apply_due_removals(self) -> list[int]:
        """Blacklist removals whose observation period has ended, applied through the writer (looked for with a
        read first: most rounds have none, and need no commit)."""
        now = time.time()
        if not await self._in_thread(self._read, _DUE, (now,)):
            return []
        return await self.writer.submit(lambda db: apply_due_removals(db, now, in_transaction=True))

    async def expire(self, now: float | None = None) -> int:
        """Delete send history and audit rows older than `retention`; returns how many (Rule 2)."""
        cutoff = (time.time() if now is None else now) - self.retention
        deleted = 0
        for table, column in (("send_history", "sent_at"), ("audit", "at")):
            sql = (f"DELETE FROM {table} WHERE rowid IN "
                   f"(SELECT rowid FROM {table} WHERE {column} < ? LIMIT {EXPIRE_SLICE})")
            while True:
                n = await self.writer.submit(lambda db, sql=sql: db.execute(sql, (cutoff,)).rowcount)
                deleted += n
                if n < EXPIRE_SLICE:
                    break
        return deleted

    async def bound_audit(self) -> int:
        """Past [audit] max_size, delete the oldest audit rows until it takes nine tenths of it; returns how many.
        The rows to delete are estimated from the average row size (dbstat counts the table's and its index's
        pages); freed pages are reused, so the file stops growing."""
        used, rows = await self._in_thread(self._audit_size)
        if used <= self.audit_max_size or rows == 0:
            return 0
        left = min(rows, math.ceil((used - 0.9 * self.audit_max_size) / (used / rows)))
        deleted = 0
        while left > 0:
            k = min(left, EXPIRE_SLICE)
            n = await self.writer.submit(lambda db, k=k: audit.prune_oldest(db, k))
            deleted += n
            left -= n
            if n == 0:
                break
        log.warning("audit log took %.1f MB, past [audit] max_size (%.1f MB): deleted its %d oldest rows",
                    used / 1e6, self.audit_max_size / 1e6, deleted)
        return deleted

    def _audit_size(self) -> tuple[int, int]:
        db = self._db
        assert db is not None
        return audit.size(db), db.execute("SELECT COUNT(*) FROM audit").fetchone()[0]

    async def _loop(self) -> None:
        started = time.monotonic()
        next_tidy = started + self.tidy_every
        next_expiry = started + self.expire_first
        while True:
            await asyncio.sleep(self.tail_interval)
            try:
                await self.tail_once()  # first: it checks the schema, which the removals would fail on less plainly
                await self._check_sends()
                removed = await self.apply_due_removals()
                if removed:
                    log.info("observation period ended: %d numbers removed from the blacklist", len(removed))
            except StoreError as e:
                log.error("%s", e)
                assert self.failed is not None
                if not self.failed.done():
                    self.failed.set_result(str(e))
                return
            except sqlite3.Error:
                log.exception("reading the change log failed; will retry")
            if time.monotonic() >= next_tidy:
                next_tidy = time.monotonic() + self.tidy_every
                self.policy.tidy(self.index, time.time())
            if time.monotonic() >= next_expiry:
                next_expiry = time.monotonic() + self.expire_every
                try:
                    deleted = await self.expire()
                    if deleted:
                        log.info("retention %.0f days: deleted %d send-history and audit rows",
                                 self.retention / 86400, deleted)
                    await self.bound_audit()
                except sqlite3.Error:
                    log.exception("deleting rows past retention failed; will retry in %.0f s", self.expire_every)

