"""StoreWriter: group commit of send history and audit rows, and the change-log tail into the Index."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from smppguard.policy import load_policy
from smppguard.policy.model import GLOBAL, Index, scoped
from smppguard.store.changelog import Change, last_id, write
from smppguard.store.db import StoreError, connect
from smppguard.store.index import load_index
from smppguard.store.migrations import MIGRATIONS
from smppguard.store.writer import StoreWriter

N1, N2, N3 = 8613800000001, 8613800000002, 8613800000003
NOW = 1_700_000_000.0
POLICY = load_policy()


@pytest.fixture
def path(tmp_path):
    p = tmp_path / "store.db"
    connect(p).close()  # created and migrated, as the daemon does before it starts the writer
    return p


@pytest.fixture
def other(path):
    """Another process's connection to the same store (the admin CLI, say)."""
    conn = connect(path)
    try:
        yield conn
    finally:
        conn.close()


@pytest.fixture
async def make_writer(path):
    writers = []

    async def make(index: Index | None = None, **kw) -> StoreWriter:
        w = StoreWriter(str(path), index if index is not None else Index(), POLICY, **kw)
        writers.append(w)
        await w.start()
        return w

    try:
        yield make
    finally:
        for w in writers:
            await w.close()


def sends(conn):
    return conn.execute("SELECT number, account, sent_at FROM send_history ORDER BY rowid").fetchall()


def audits(conn):
    return conn.execute("SELECT at, account, sender, recipient, rule, action, status, reason, actor FROM audit "
                        "ORDER BY id").fetchall()


async def eventually(predicate, timeout=3.0):
    """Poll until predicate() is true; returns the seconds it took."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not true within {timeout} s")
        await asyncio.sleep(0.01)
    return time.monotonic() - started


# --- group commit -----------------------------------------------------------------------------------------------


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
    w = StoreWriter(str(path), Index(), POLICY, interval=10.0)  # the loop would wait 10 s: only close() can write them
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
    assert w.db is None
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
    w = await make_writer(interval=0.01)
    await w.db.execute("PRAGMA busy_timeout = 50")
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
    assert w.rows_written == 1000 and w.commits == 2
    assert "failed" not in caplog.text


async def test_close_during_an_in_flight_commit_loses_nothing(path, other):
    w = StoreWriter(str(path), Index(), POLICY, max_batch=100)
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


async def test_tail_once_applies_changes_written_by_another_connection(path, make_writer):
    policy = load_policy()
    db = connect(path)
    try:
        write(db, [Change("blacklist", "add", N3)], origin="cli", now=NOW)
        index = load_index(db, policy, NOW)
    finally:
        db.close()
    w = await make_writer(index, tail_interval=60.0)  # only explicit tail_once() here
    assert await w.tail_once() == 0
    cli = connect(path)
    try:
        write(cli, [Change("blacklist", "add", N1),
                    Change("optout", "add", N2, "sender", "ACME"),
                    Change("optout", "add", N2, "global", ""),
                    Change("dead", "add", N1, data={"expires_at": NOW + 60}),
                    Change("consent", "add", N2, scope_key="acct1", data={"status": "pending"}),
                    Change("tz", "add", N2, data={"zone": "Asia/Shanghai"}),
                    Change("blacklist", "remove", N3)], origin="cli", actor="admin", now=NOW)
        expected_id = last_id(cli)
    finally:
        cli.close()
    assert await w.tail_once() == 7
    assert index.blacklist == {N1}
    assert index.optouts == {scoped(N2, index.scope_id("sender", "ACME")), scoped(N2, GLOBAL)}
    assert index.dead == {N1: NOW + 60}
    assert index.consent == {scoped(N2, index.scope_id("account", "acct1")): "pending"}
    assert index.tz == {N2: "Asia/Shanghai"}
    assert index.change_id == expected_id == 8
    assert await w.tail_once() == 0


async def test_tail_once_reads_more_than_one_page_in_one_call(make_writer, other):
    w = await make_writer(tail_interval=60.0)
    write(other, [Change("blacklist", "add", N1 + i) for i in range(12_345)], origin="cli", now=NOW)
    assert await w.tail_once() == 12_345
    assert len(w.index.blacklist) == 12_345 and w.index.change_id == 12_345


async def test_tail_sees_correlated_global_opt_outs(make_writer, other):
    w = await make_writer(tail_interval=60.0)
    for sender in ("A", "B", "C"):
        write(other, [Change("optout", "add", N1, "sender", sender)], origin="deliver", correlation_threshold=3,
              now=NOW)
    assert await w.tail_once() == 4
    assert scoped(N1, GLOBAL) in w.index.optouts


async def test_background_tail_applies_a_change_within_a_second(make_writer, other):
    w = await make_writer()  # default tail_interval
    assert w.tail_interval <= 1.0
    await asyncio.sleep(0.05)
    write(other, [Change("blacklist", "add", N1)], origin="cli", now=NOW)
    took = await eventually(lambda: N1 in w.index.blacklist, timeout=5.0)
    assert took < 1.0, took
    write(other, [Change("blacklist", "remove", N1)], origin="cli", now=NOW)
    took = await eventually(lambda: N1 not in w.index.blacklist, timeout=5.0)
    assert took < 1.0, took
    assert w.index.change_id == 2


async def test_expire_deletes_rows_past_retention_in_slices(make_writer, other, monkeypatch):
    monkeypatch.setattr("smppguard.store.writer.EXPIRE_SLICE", 7)
    day = 86400.0
    w = await make_writer(retention=40 * day)
    for i in range(20):
        w.record_send(N1 + i, "acct", NOW - 41 * day + i)  # past retention
    w.record_send(N2, "acct", NOW - 39 * day)
    w.audit(NOW - 50 * day, "acct", "ACME", "+86***", "blacklist", "reject", 0x45, "old")
    w.audit(NOW - day, "acct", "ACME", "+86***", "blacklist", "reject", 0x45, "recent")
    await w.flush()
    assert await w.expire(NOW) == 20 + 1
    assert sends(other) == [(N2, "acct", NOW - 39 * day)]
    assert [r[-1] for r in other.execute("SELECT reason FROM audit")] == ["recent"]
    assert await w.expire(NOW) == 0


async def test_the_daemon_deletes_rows_past_retention_on_its_own_and_again_every_period(make_writer, other):
    day = 86400.0
    now = time.time()
    w = await make_writer(retention=40 * day, tail_interval=0.02, expire_first=0.1, expire_every=0.3)
    w.record_send(N1, "acct", now - 41 * day)
    w.record_send(N2, "acct", now - 39 * day)
    await w.flush()
    await eventually(lambda: sends(other) == [(N2, "acct", now - 39 * day)], timeout=3.0)  # nobody called expire()
    w.audit(now - 50 * day, "acct", "ACME", "+86***", "blacklist", "reject", 0x45, "old")
    await w.flush()
    await eventually(lambda: not audits(other), timeout=3.0)  # the next period's run


async def test_tail_applies_a_batch_row_to_every_number_it_names(make_writer, other):
    """An import logs one row per batch: the daemon's tail applies it to each of its numbers, in order with the
    rows around it, and ends equal to a fresh load."""
    index = load_index(other, load_policy(), NOW)
    w = await make_writer(index, tail_interval=60.0)
    imported = [N1 + i for i in range(50_000)]
    write(other, [Change("blacklist", "add", N3 - 10),
                  Change("blacklist", "add", 0, data={"source": "complaint"}, numbers=imported[:30_000]),
                  Change("blacklist", "add", 0, data={"source": "complaint"}, numbers=imported[30_000:]),
                  Change("optout", "add", 0, "sender", "ACME", numbers=imported[:3]),
                  Change("blacklist", "remove", 0, numbers=[N3 - 10, imported[0]])], origin="cli", now=NOW)
    assert await w.tail_once() == 5
    assert index.blacklist == set(imported[1:])
    assert index.optouts == {scoped(n, index.scope_id("sender", "ACME")) for n in imported[:3]}
    assert index.change_id == last_id(other) == 5
    fresh = load_index(other, load_policy(), NOW)
    assert (fresh.blacklist, fresh.change_id) == (index.blacklist, index.change_id)


async def test_background_tail_applies_an_import_batch_within_a_second(make_writer, other):
    w = await make_writer()
    await asyncio.sleep(0.05)
    numbers = [N1 + i for i in range(20_000)]
    write(other, [Change("blacklist", "add", 0, data={"source": "complaint"}, numbers=numbers)], origin="cli",
          now=NOW)
    took = await eventually(lambda: len(w.index.blacklist) == 20_000, timeout=5.0)
    assert took < 1.0, took
    assert w.index.blacklist == set(numbers)


# --- a store migrated under the running daemon ------------------------------------------------------------------

def migrate_to_a_newer_schema(conn) -> int:
    """What a newer smppguard's CLI does to the store: one migration this version does not know."""
    version = len(MIGRATIONS) + 1
    conn.execute("INSERT INTO schema_migrations VALUES (?, 'm_from_a_newer_version', ?)", (version, NOW))
    conn.commit()
    return version


async def test_tail_refuses_a_store_migrated_by_a_newer_smppguard(make_writer, other):
    w = await make_writer(tail_interval=0.05)
    version = migrate_to_a_newer_schema(other)
    write(other, [Change("blacklist", "add", N1)], origin="cli", now=NOW)
    with pytest.raises(StoreError, match=f"schema version {version} is newer"):
        await w.tail_once()
    reason = await asyncio.wait_for(w.failed, 5.0)  # the background tail stops and says why
    assert "migrated by a newer smppguard while this one ran" in reason and "restart" in reason
    assert N1 not in w.index.blacklist  # nothing it cannot read is applied
