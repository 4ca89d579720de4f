"""StoreWriter: the daemon's one write path. Group commit, durability futures, the bound on what is
acknowledged but not saved, and retries that lose nothing."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys

import pytest
from store_helpers import audits, eventually, sends

from helpers import proc_stat
from smppguard.store.writer import LAG_S, StoreWriter

N1, N2, N3 = 8613800000001, 8613800000002, 8613800000003
NOW = 1_700_000_000.0


@pytest.fixture
async def make_writer(path):
    writers = []

    async def make(**kw) -> StoreWriter:
        w = StoreWriter(str(path), **kw)
        writers.append(w)
        await w.start()
        return w

    try:
        yield make
    finally:
        for w in writers:
            await w.close()




async def test_record_send_and_audit_reach_the_database_after_flush(make_writer, other):
    w = await make_writer()
    w.record_send(N1, "acct1", NOW)
    w.record_send(N2, "acct2", NOW + 1)
    w.audit(NOW, "acct1", "ACME", "86138****0001", "blacklist", "reject", 0x45, "number is blacklisted")
    await w.flush()
    assert sends(other) == [(N1, "acct1", NOW), (N2, "acct2", NOW + 1)]
    assert audits(other) == [(NOW, "acct1", "ACME", "86138****0001", "blacklist", "reject", 0x45,
                              "number is blacklisted", "")]
    assert w.rows_written == 3 and w.commits == 1
    await w.flush()  # nothing pending: no empty transaction
    assert w.commits == 1


async def test_rows_reach_the_database_without_an_explicit_flush(make_writer, other):
    w = await make_writer(interval=0.01)
    w.record_send(N1, "acct1", NOW)
    w.audit(NOW, "acct1", "ACME", "x", "frequency", "reject", 0x58, "cap")
    await eventually(lambda: len(sends(other)) == 1 and len(audits(other)) == 1)


async def test_close_flushes_pending_rows(path, other):
    w = StoreWriter(str(path), interval=10.0)  # the loop would wait 10 s: only close() can write them
    await w.start()
    try:
        for i in range(100):
            w.record_send(N1 + i, "acct1", NOW + i)
        w.audit(NOW, "acct1", "ACME", "x", "dead", "reject", 0x0B, "dead")
        await asyncio.sleep(0.05)
        assert sends(other) == []
    finally:
        await w.close()
    assert len(sends(other)) == 100 and len(audits(other)) == 1
    assert w.unsaved == 0
    await w.close()  # closing twice is harmless


async def test_many_rows_in_one_batch_take_few_transactions(make_writer, other):
    w = await make_writer()
    n = 10_000
    for i in range(n):
        w.record_send(N1 + i % 50, f"acct{i % 3}", NOW + i)
        w.audit(NOW + i, "acct1", "ACME", "x", "", "allow", 0, "")
    await w.flush()
    assert w.rows_written == 2 * n
    assert w.commits <= 2, w.commits
    assert len(sends(other)) == n and len(audits(other)) == n


async def test_a_steady_stream_is_grouped_into_few_commits(make_writer, other):
    w = await make_writer(interval=0.01)
    total = 0
    for burst in range(50):
        for i in range(100):
            w.record_send(N1 + i, "acct1", NOW + burst)
            total += 1
        await asyncio.sleep(0)  # the hot path yields between messages, the commit loop may run
    await eventually(lambda: w.rows_written == total)
    assert w.commits <= total // 50, (w.commits, total)
    assert len(sends(other)) == total


async def test_max_batch_commits_without_waiting_for_the_interval(make_writer, other):
    w = await make_writer(interval=30.0, max_batch=100)
    for i in range(100):
        w.record_send(N1, "acct1", NOW + i)
    await eventually(lambda: w.rows_written == 100, timeout=2.0)
    assert w.commits == 1


async def test_a_failed_commit_loses_nothing_and_is_retried(make_writer, other, caplog):
    w = await make_writer(interval=0.01, busy_timeout=0.05)
    other.execute("BEGIN IMMEDIATE")  # another writer holds the lock: the group commit fails
    try:
        for i in range(10):
            w.record_send(N1, "acct1", NOW + i)
        with caplog.at_level(logging.ERROR, logger="smppguard.store"):
            await eventually(lambda: "group commit of 10 rows failed" in caplog.text)
    finally:
        other.execute("COMMIT")
    await eventually(lambda: w.rows_written == 10, timeout=5.0)
    assert sends(other) == [(N1, "acct1", NOW + i) for i in range(10)]


async def test_concurrent_flushes_write_every_row_once(make_writer, other, caplog):
    """Two flushes at once share one connection: the second must not BEGIN inside (or ROLLBACK) the first's
    transaction."""
    w = await make_writer(interval=10.0)
    for i in range(500):
        w.record_send(N1, "acct1", NOW + i)

    async def more():
        for i in range(500, 1000):
            w.record_send(N1, "acct1", NOW + i)
        await w.flush()

    with caplog.at_level(logging.ERROR, logger="smppguard.store"):
        await asyncio.gather(w.flush(), more())
    assert sorted(t for (_, _, t) in sends(other)) == [NOW + i for i in range(1000)]
    assert w.rows_written == 1000 and w.commits <= 2  # one commit loop: the flushes share its commits
    assert "failed" not in caplog.text


async def test_close_during_an_in_flight_commit_loses_nothing(path, other):
    w = StoreWriter(str(path), max_batch=100)
    await w.start()
    try:
        for i in range(5000):
            w.record_send(N1, "acct1", NOW + i)
        for _ in range(3):
            await asyncio.sleep(0)  # the commit loop starts its transaction (max_batch reached: no waiting)
    finally:
        await w.close()
    assert len(sends(other)) == 5000
    assert not other.in_transaction


# --- change-log tail ------------------------------------------------------------------------------------------



# --- durability futures ---------------------------------------------------------------------------------------

async def test_submit_runs_in_the_group_commit_and_its_future_is_done_when_durable(make_writer, other):
    w = await make_writer(interval=0.05)
    w.record_send(N1, "acct1", NOW)
    seen_uncommitted = []

    def hold(db):
        db.execute("INSERT INTO meta VALUES ('held', 'x')")
        seen_uncommitted.append(other.execute("SELECT COUNT(*) FROM meta WHERE key = 'held'").fetchone()[0])
        return "id-1"

    future = w.submit(hold)
    assert not future.done()
    assert await asyncio.wait_for(future, 2) == "id-1"
    assert seen_uncommitted == [0]  # not visible to others before the commit ...
    assert other.execute("SELECT value FROM meta WHERE key = 'held'").fetchall() == [("x",)]  # ... durable after
    assert sends(other) == [(N1, "acct1", NOW)]  # in the same commit as the rows


async def test_a_failing_job_is_undone_alone_and_its_caller_told(make_writer, other):
    w = await make_writer()

    def bad(db):
        db.execute("INSERT INTO meta VALUES ('bad', 'x')")
        raise ValueError("no such queue")

    good = w.submit(lambda db: db.execute("INSERT INTO meta VALUES ('good', 'y')").rowcount)
    failing = w.submit(bad)
    w.record_send(N2, "acct1", NOW)
    assert await good == 1
    with pytest.raises(ValueError, match="no such queue"):
        await failing
    assert other.execute("SELECT key FROM meta WHERE key IN ('good', 'bad')").fetchall() == [("good",)]
    assert sends(other) == [(N2, "acct1", NOW)]


# --- the bound on what is acknowledged but not saved ------------------------------------------------------------

async def test_past_max_unsaved_rows_the_writer_says_it_is_behind_until_it_catches_up(make_writer, other):
    calls = []
    w = await make_writer(max_unsaved=100, busy_timeout=10.0, on_behind=calls.append)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock: nothing can be saved
    try:
        for i in range(100):
            w.record_send(N1, "acct1", NOW + i)
        assert calls == [] and not w.behind  # at the bound, not past it
        w.record_send(N1, "acct1", NOW + 100)
        assert calls == [True] and w.behind and w.unsaved == 101
    finally:
        other.execute("COMMIT")
    await eventually(lambda: calls == [True, False], timeout=5.0)
    assert w.unsaved == 0 and len(sends(other)) == 101


async def test_jobs_count_towards_the_bound_as_rows_do(make_writer, other):
    """A held message's insert (a job) is acknowledged before it is saved, as a send row is: each one counts."""
    calls = []
    w = await make_writer(max_unsaved=3, busy_timeout=10.0, on_behind=calls.append)
    other.execute("BEGIN IMMEDIATE")
    try:
        jobs = [w.submit(lambda db: None) for _ in range(3)]
        assert w.unsaved == 3 and calls == []
        jobs.append(w.submit(lambda db: None))
        assert w.unsaved == 4 and calls == [True]
    finally:
        other.execute("COMMIT")
    await asyncio.wait_for(asyncio.gather(*jobs), 5)
    await eventually(lambda: calls == [True, False], timeout=5.0)


async def test_rows_that_wait_too_long_put_the_writer_behind_however_few(make_writer, other, caplog):
    calls = []
    w = await make_writer(max_unsaved=10_000, max_unsaved_age=0.2, busy_timeout=10.0, on_behind=calls.append)
    other.execute("BEGIN IMMEDIATE")
    try:
        with caplog.at_level(logging.WARNING, logger="smppguard.store"):
            w.record_send(N1, "acct1", NOW)
            await eventually(lambda: calls == [True], timeout=2.0)
        assert w.unsaved_age() >= 0.2
        [behind] = [r.getMessage() for r in caplog.records if r.name == "smppguard.store"]
        assert behind.startswith("store writer behind: 1 rows not yet saved, the oldest for ")
        assert behind.endswith(" s; not reading from senders until they are ([store] max_unsaved, max_unsaved_age)")
    finally:
        other.execute("COMMIT")
    with caplog.at_level(logging.WARNING, logger="smppguard.store"):
        await eventually(lambda: calls == [True, False], timeout=5.0)
    assert [r.getMessage() for r in caplog.records if r.name == "smppguard.store"][-1] == (
        "store writer caught up: reading from senders again")


async def test_a_commit_that_keeps_failing_is_counted_and_said(make_writer, other, caplog):
    w = await make_writer(busy_timeout=0.02)
    other.execute("BEGIN IMMEDIATE")
    try:
        with caplog.at_level(logging.ERROR, logger="smppguard.store"):
            w.audit(NOW, "acct1", "ACME", "x", "dead", "reject", 0x0B, "dead")
            await eventually(lambda: w.failures >= 2, timeout=3.0)
        assert "database is locked" in (w.last_error or "")
        assert w.unsaved == 1  # kept, not dropped
    finally:
        other.execute("COMMIT")
    await w.flush()
    assert len(audits(other)) == 1


async def test_close_with_the_store_locked_gives_up_after_its_timeout_and_says_what_is_lost(path, other, caplog,
                                                                                         monkeypatch):
    monkeypatch.setattr("smppguard.store.writer.CLOSE_TIMEOUT_S", 0.3)
    w = StoreWriter(str(path), busy_timeout=0.05)
    await w.start()
    other.execute("BEGIN IMMEDIATE")
    try:
        w.record_send(N1, "acct1", NOW)
        with caplog.at_level(logging.ERROR, logger="smppguard.store"):
            await asyncio.wait_for(w.close(), 5)
        assert "1 rows could not be saved" in caplog.text
    finally:
        other.execute("ROLLBACK")


# --- folded audit rows ------------------------------------------------------------------------------------------

async def test_a_folded_rows_count_and_last_time_land_with_one_update_per_commit(make_writer, other):
    w = await make_writer(interval=0.05)
    w.audit(NOW, "acct1", "ACME", "+86x", "frequency", "reject", 0x45, "cap")
    for count in range(2, 101):
        w.audit_fold(NOW, "acct1", "ACME", "+86x", "frequency", 0x45, count, NOW + count)
    assert w.unsaved == 2  # the row, and one pending update however often it changed
    await w.flush()
    assert other.execute("SELECT at, count, last_at FROM audit").fetchall() == [(NOW, 100, NOW + 100)]
    w.audit_fold(NOW, "acct1", "ACME", "+86x", "frequency", 0x45, 101, NOW + 101)  # a later commit
    await w.flush()
    assert other.execute("SELECT count, last_at FROM audit").fetchall() == [(101, NOW + 101)]


async def test_a_failed_commit_keeps_the_newest_fold_update(make_writer, other):
    w = await make_writer(interval=0.01, busy_timeout=0.02)
    w.audit(NOW, "acct1", "ACME", "+86x", "frequency", "reject", 0x45, "cap")
    await w.flush()
    other.execute("BEGIN IMMEDIATE")
    try:
        w.audit_fold(NOW, "acct1", "ACME", "+86x", "frequency", 0x45, 2, NOW + 2)
        await eventually(lambda: w.failures >= 1, timeout=3.0)  # that update is back in the queue ...
        w.audit_fold(NOW, "acct1", "ACME", "+86x", "frequency", 0x45, 3, NOW + 3)  # ... and now a newer one
    finally:
        other.execute("COMMIT")
    await w.flush()
    assert other.execute("SELECT count, last_at FROM audit").fetchall() == [(3, NOW + 3)]
    assert w.unsaved == 0


async def test_a_list_change_made_by_the_daemon_is_logged_with_its_origin_and_actor_once_durable(make_writer,
                                                                                                 other):
    from smppguard.store.changelog import Change

    w = await make_writer()
    n = await w.change([Change("optout", "add", N1, "sender", "1069", {"source": "mqtt"}, at=NOW)], origin="peer-7",
                       actor="mqtt")
    assert n == 1
    assert other.execute("SELECT at, origin, kind, number, scope_key, actor FROM changelog").fetchall() == [
        (NOW, "peer-7", "optout", N1, "1069", "mqtt")]


# --- the commit process ---------------------------------------------------------------------------------------


def _scheduling(pid: int) -> tuple[int, int]:
    """(policy, nice) of a process."""
    fields = proc_stat(pid)
    return int(fields[38]), int(fields[16])


@pytest.mark.skipif(sys.platform != "linux", reason="scheduling classes are Linux's")
@pytest.mark.parametrize("commit_idle, policy", [(True, 5), (False, 0)])
async def test_rows_are_saved_by_the_commit_process_in_the_idle_class_or_at_the_threads_nice(
        make_writer, other, commit_idle, policy):
    w = await make_writer(commit_idle=commit_idle, nice=6)
    w.record_send(N1, "acct1", NOW)
    await w.flush()
    assert sends(other) == [(N1, "acct1", NOW)]
    child = w.committer.pid
    assert child is not None and child != os.getpid()
    assert _scheduling(child)[0] == policy
    if not commit_idle:  # 6 below the loop, as the writer's thread (from which it was started, at 6 already)
        assert _scheduling(child)[1] == min(19, _scheduling(os.getpid())[1] + 6)


async def test_rows_wait_for_a_stopped_commit_process_and_a_function_does_not(make_writer, other):
    """A commit of rows only goes to the commit process; one with a submitted function is made on the writer's
    own connection, its rows with it in one transaction (here the commit process is stopped: only the second
    can be saved)."""
    w = await make_writer(interval=0.01)
    w.record_send(N1, "acct1", NOW)
    await w.flush()
    child = w.committer.pid
    os.kill(child, signal.SIGSTOP)
    try:
        w.record_send(N2, "acct1", NOW + 1)
        await asyncio.sleep(0.3)
        assert sends(other) == [(N1, "acct1", NOW)] and w.unsaved == 1  # the child has them, stopped
    finally:
        os.kill(child, signal.SIGCONT)
    await eventually(lambda: len(sends(other)) == 2)
    os.kill(child, signal.SIGSTOP)
    try:
        w.record_send(N3, "acct2", NOW + 2)
        seen = await asyncio.wait_for(w.submit(lambda db: db.execute(
            "SELECT number FROM send_history ORDER BY rowid").fetchall()), 5)
        assert seen == [(N1,), (N2,), (N3,)]  # the function sees the row queued before it, in its transaction
        assert sends(other)[-1] == (N3, "acct2", NOW + 2)
    finally:
        os.kill(child, signal.SIGCONT)


async def test_rows_that_waited_for_a_lagging_commit_process_are_saved_by_the_writer_itself(make_writer, other,
                                                                                           caplog):
    """The commit process in the idle class may be starved by a host that never idles: rows that waited past
    LAG_S are saved on the writer's own connection, and the next young ones go to the process again."""
    w = await make_writer(interval=0.01)
    w.record_send(N1, "acct1", NOW)
    await w.flush()
    child = w.committer.pid
    os.kill(child, signal.SIGSTOP)  # starved: its commit of N2 takes 0.5 s
    try:
        w.record_send(N2, "acct1", NOW + 1)
        await eventually(lambda: w._inflight is not None)
        w.record_send(N3, "acct1", NOW + 2)  # waits behind it
        await asyncio.sleep(LAG_S + 0.25)
    finally:
        os.kill(child, signal.SIGCONT)
    with caplog.at_level(logging.INFO, logger="smppguard.store"):
        await w.flush()
        assert (w.commits_here, w.lagging) == (1, True)
        w.record_send(N1, "acct2", NOW + 3)
        await w.flush()
    assert (w.commits_here, w.lagging, w.committer.pid) == (1, False, child)
    assert sends(other) == [(N1, "acct1", NOW), (N2, "acct1", NOW + 1), (N3, "acct1", NOW + 2),
                            (N1, "acct2", NOW + 3)]
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 2 and said[0].startswith("store commit process lagging (rows waited 0.")
    assert said[0].endswith(" s): the writer saves them itself until it keeps up")
    assert said[1] == "store commit process keeping up again"


async def test_close_saves_what_is_left_without_the_commit_process(path, other):
    """Stopping does not wait on a process in the idle class: the last rows are saved by the writer's thread."""
    w = StoreWriter(str(path), interval=10.0)
    await w.start()
    w.record_send(N1, "acct1", NOW)
    await w.flush()
    child = w.committer.pid
    os.kill(child, signal.SIGSTOP)
    try:
        w.record_send(N2, "acct1", NOW + 1)  # no commit before close(): the interval is 10 s
        closing = asyncio.ensure_future(w.close())
        await eventually(lambda: len(sends(other)) == 2)
        assert w.commits_here == 1
    finally:
        os.kill(child, signal.SIGCONT)
    await closing
    assert w.committer.pid is None
