"""Upkeep: the change-log tail into the Index, the end of observation periods, the retention delete, and the
stop when a newer smppguard migrates the store."""

from __future__ import annotations

import asyncio
import time

import pytest
from store_helpers import audits, eventually, sends

from smppguard.policy import load_policy
from smppguard.policy.model import GLOBAL, Index, scoped
from smppguard.store.changelog import Change, last_id, write
from smppguard.store.db import StoreError, connect
from smppguard.store.index import load_index
from smppguard.store.migrations import MIGRATIONS
from smppguard.store.upkeep import Upkeep
from smppguard.store.writer import StoreWriter

N1, N2, N3 = 8613800000001, 8613800000002, 8613800000003
NOW = 1_700_000_000.0
POLICY = load_policy()


@pytest.fixture
async def make_upkeep(path):
    made = []

    async def make(index: Index | None = None, **kw) -> Upkeep:
        writer = StoreWriter(str(path))
        await writer.start()
        u = Upkeep(str(path), index if index is not None else Index(), POLICY, writer, **kw)
        made.append(u)
        await u.start()
        return u

    try:
        yield make
    finally:
        for u in made:
            await u.close()
            await u.writer.close()



async def test_tail_once_applies_changes_written_by_another_connection(path, make_upkeep):
    policy = load_policy()
    db = connect(path)
    try:
        write(db, [Change("blacklist", "add", N3)], origin="cli", now=NOW)
        index = load_index(db, policy, NOW)
    finally:
        db.close()
    u = await make_upkeep(index, tail_interval=60.0)  # only explicit tail_once() here
    assert await u.tail_once() == 0
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
    assert await u.tail_once() == 7
    assert index.blacklist == {N1}
    assert index.optouts == {scoped(N2, index.scope_id("sender", "ACME")), scoped(N2, GLOBAL)}
    assert index.dead == {N1: NOW + 60}
    assert index.consent == {scoped(N2, index.scope_id("account", "acct1")): "pending"}
    assert index.tz == {N2: "Asia/Shanghai"}
    assert index.change_id == expected_id == 8
    assert await u.tail_once() == 0


async def test_tail_once_reads_more_than_one_page_in_one_call(make_upkeep, other):
    u = await make_upkeep(tail_interval=60.0)
    write(other, [Change("blacklist", "add", N1 + i) for i in range(12_345)], origin="cli", now=NOW)
    assert await u.tail_once() == 12_345
    assert len(u.index.blacklist) == 12_345 and u.index.change_id == 12_345


async def test_tail_sees_correlated_global_opt_outs(make_upkeep, other):
    u = await make_upkeep(tail_interval=60.0)
    for sender in ("A", "B", "C"):
        write(other, [Change("optout", "add", N1, "sender", sender)], origin="deliver", correlation_threshold=3,
              now=NOW)
    assert await u.tail_once() == 4
    assert scoped(N1, GLOBAL) in u.index.optouts


async def test_background_tail_applies_a_change_within_a_second(make_upkeep, other):
    u = await make_upkeep()  # default tail_interval
    assert u.tail_interval <= 1.0
    await asyncio.sleep(0.05)
    write(other, [Change("blacklist", "add", N1)], origin="cli", now=NOW)
    took = await eventually(lambda: N1 in u.index.blacklist, timeout=5.0)
    assert took < 1.0, took
    write(other, [Change("blacklist", "remove", N1)], origin="cli", now=NOW)
    took = await eventually(lambda: N1 not in u.index.blacklist, timeout=5.0)
    assert took < 1.0, took
    assert u.index.change_id == 2


async def test_expire_deletes_rows_past_retention_in_slices(make_upkeep, other, monkeypatch):
    monkeypatch.setattr("smppguard.store.upkeep.EXPIRE_SLICE", 7)
    day = 86400.0
    u = await make_upkeep(retention=40 * day)
    for i in range(20):
        u.writer.record_send(N1 + i, "acct", NOW - 41 * day + i)  # past retention
    u.writer.record_send(N2, "acct", NOW - 39 * day)
    u.writer.audit(NOW - 50 * day, "acct", "ACME", "+86***", "blacklist", "reject", 0x45, "old")
    u.writer.audit(NOW - day, "acct", "ACME", "+86***", "blacklist", "reject", 0x45, "recent")
    await u.writer.flush()
    assert await u.expire(NOW) == 20 + 1
    assert sends(other) == [(N2, "acct", NOW - 39 * day)]
    assert [r[-1] for r in other.execute("SELECT reason FROM audit")] == ["recent"]
    assert await u.expire(NOW) == 0


async def test_the_daemon_deletes_rows_past_retention_on_its_own_and_again_every_period(make_upkeep, other):
    day = 86400.0
    now = time.time()
    u = await make_upkeep(retention=40 * day, tail_interval=0.02, expire_first=0.1, expire_every=0.3)
    u.writer.record_send(N1, "acct", now - 41 * day)
    u.writer.record_send(N2, "acct", now - 39 * day)
    await u.writer.flush()
    await eventually(lambda: sends(other) == [(N2, "acct", now - 39 * day)], timeout=3.0)  # nobody called expire()
    u.writer.audit(now - 50 * day, "acct", "ACME", "+86***", "blacklist", "reject", 0x45, "old")
    await u.writer.flush()
    await eventually(lambda: not audits(other), timeout=3.0)  # the next period's run


async def test_tail_applies_a_batch_row_to_every_number_it_names(make_upkeep, other):
    """An import logs one row per batch: the daemon's tail applies it to each of its numbers, in order with the
    rows around it, and ends equal to a fresh load."""
    index = load_index(other, load_policy(), NOW)
    u = await make_upkeep(index, tail_interval=60.0)
    imported = [N1 + i for i in range(50_000)]
    write(other, [Change("blacklist", "add", N3 - 10),
                  Change("blacklist", "add", 0, data={"source": "complaint"}, numbers=imported[:30_000]),
                  Change("blacklist", "add", 0, data={"source": "complaint"}, numbers=imported[30_000:]),
                  Change("optout", "add", 0, "sender", "ACME", numbers=imported[:3]),
                  Change("blacklist", "remove", 0, numbers=[N3 - 10, imported[0]])], origin="cli", now=NOW)
    assert await u.tail_once() == 5
    assert index.blacklist == set(imported[1:])
    assert index.optouts == {scoped(n, index.scope_id("sender", "ACME")) for n in imported[:3]}
    assert index.change_id == last_id(other) == 5
    fresh = load_index(other, load_policy(), NOW)
    assert (fresh.blacklist, fresh.change_id) == (index.blacklist, index.change_id)


async def test_background_tail_applies_an_import_batch_within_a_second(make_upkeep, other):
    u = await make_upkeep()
    await asyncio.sleep(0.05)
    numbers = [N1 + i for i in range(20_000)]
    write(other, [Change("blacklist", "add", 0, data={"source": "complaint"}, numbers=numbers)], origin="cli",
          now=NOW)
    took = await eventually(lambda: len(u.index.blacklist) == 20_000, timeout=5.0)
    assert took < 1.0, took
    assert u.index.blacklist == set(numbers)


# --- a store migrated under the running daemon ------------------------------------------------------------------

def migrate_to_a_newer_schema(conn) -> int:
    """What a newer smppguard's CLI does to the store: one migration this version does not know."""
    version = len(MIGRATIONS) + 1
    conn.execute("INSERT INTO schema_migrations VALUES (?, 'm_from_a_newer_version', ?)", (version, NOW))
    conn.commit()
    return version


async def test_tail_refuses_a_store_migrated_by_a_newer_smppguard(make_upkeep, other):
    u = await make_upkeep(tail_interval=0.05)
    version = migrate_to_a_newer_schema(other)
    write(other, [Change("blacklist", "add", N1)], origin="cli", now=NOW)
    with pytest.raises(StoreError, match=f"schema version {version} is newer"):
        await u.tail_once()
    reason = await asyncio.wait_for(u.failed, 5.0)  # the background tail stops and says why
    assert "migrated by a newer smppguard while this one ran" in reason and "restart" in reason
    assert N1 not in u.index.blacklist  # nothing it cannot read is applied



async def test_a_list_change_made_by_the_daemon_goes_through_the_writer_and_the_tail_brings_it_in(make_upkeep, other):
    u = await make_upkeep(tail_interval=0.05)
    logged = await u.writer.change([Change("optout", "add", N1, "sender", "A", data={"source": "mo"}),
                                    Change("optout", "add", N1, "sender", "B", data={"source": "mo"})],
                                   origin="deliver", correlation_threshold=2)
    assert logged == 3  # and the global opt-out the second sender's made
    assert other.execute("SELECT scope FROM optout WHERE number = ? ORDER BY scope", (N1,)).fetchall() == [
        ("global",), ("sender",), ("sender",)]
    await eventually(lambda: scoped(N1, GLOBAL) in u.index.optouts, timeout=2.0)


async def test_past_its_max_size_the_audit_log_loses_its_oldest_rows_with_a_warning(make_upkeep, other, caplog,
                                                                                     monkeypatch):
    import logging

    from smppguard.store import upkeep
    monkeypatch.setattr(upkeep, "EXPIRE_SLICE", 300)  # deleted a slice at a time, as a big log is
    u = await make_upkeep(tail_interval=60.0, audit_max_size=200_000)
    for i in range(5000):
        u.writer.audit(NOW + i, "acct", "ACME", f"+86{i:011d}", "frequency", "reject", 0x45, "frequency cap reached")
    await u.writer.flush()
    from smppguard.store import audit
    used = audit.size(other)
    assert used > 200_000
    with caplog.at_level(logging.WARNING, logger="smppguard.store"):
        deleted = await u.bound_audit()
    assert 300 < deleted < 5000
    assert other.execute("SELECT COUNT(*) FROM audit").fetchone() == (5000 - deleted,)
    # (a busy host may add the commit process's "lagging" line: not this test's)
    [warning] = [r.getMessage() for r in caplog.records if r.name == "smppguard.store"
                 and r.getMessage().startswith("audit log took")]
    assert warning == (f"audit log took {used / 1e6:.1f} MB, past [audit] max_size (0.2 MB): deleted its {deleted} "
                       "oldest rows")
    assert audit.size(other) <= 200_000
    left = [at for (at,) in other.execute("SELECT at FROM audit ORDER BY at")]
    assert left == [NOW + i for i in range(deleted, 5000)]  # the oldest went
    assert await u.bound_audit() == 0


async def test_close_waits_for_a_read_still_running_on_the_upkeep_thread(make_upkeep, other):
    """The daemon stops (the upkeep's task cancelled) while its hourly size read of the audit log still runs on
    a thread: the connection is closed after that read ends, not under it (a close under a running statement
    crashes the process)."""
    u = await make_upkeep(tail_interval=60.0)
    other.execute("BEGIN")
    other.executemany("INSERT INTO audit (at, last_at, account, sender, recipient, rule, action, status, reason, "
                      "actor) VALUES (?, ?, 'acct', 'ACME', ?, 'frequency', 'reject', 69, 'frequency cap', '')",
                      [(NOW + i, NOW + i, f"+86{i:011d}") for i in range(200_000)])
    other.execute("COMMIT")
    for i in range(20):
        reading = asyncio.ensure_future(u.bound_audit())
        await asyncio.sleep(0.001 * (i % 10))  # the read has started on the thread (or not yet: both)
        reading.cancel()
        await u.close()
        assert u._db is None
        await u.start()
    assert await u.bound_audit() == 0  # and the upkeep reads again after a restart
