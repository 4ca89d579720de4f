"""The Index's snapshot file: start-up from it plus what came after equals start-up from the tables; a snapshot
that no longer agrees with the store is not used; the daemon rolls it forward on its own."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import io
import os
import shutil
import time
from unittest.mock import patch

import numpy as np
import pytest
from store_helpers import eventually

from smppguard.policy import Submission, compact, decide, load_policy
from smppguard.policy.compact import CompactHistory, CompactSet, HistoryArrays, KeySlots, KeyTable, sieve_of
from smppguard.policy.model import SCOPE_STRIDE, Index, scoped
from smppguard.policy.sieve import Sieve
from smppguard.store import snapshot
from smppguard.store.changelog import Change, write
from smppguard.store.db import connect
from smppguard.store.index import open_index, write_snapshot
from smppguard.store.upkeep import Upkeep
from smppguard.store.writer import StoreWriter

POLICY = load_policy()
ACCOUNT_POLICY = load_policy(rules={"frequency": {"scope": "account"}})
N = [8613800000000 + i for i in range(12)]
DAY = 86400.0


def view(index: Index) -> dict:
    names = {sid: name for name, sid in index.scope_ids.items()}

    def decode(key):
        sid, number = divmod(key, SCOPE_STRIDE)
        return number, names[sid]

    return {"blacklist": set(index.blacklist), "optouts": {decode(k) for k in index.optouts},
            "optout_at": {decode(k): at for k, at in index.optout_at.items()}, "dead": dict(index.dead),
            "consent": {decode(k): v for k, v in index.consent.items()}, "tz": dict(index.tz),
            "history": {decode(k): index.history[k] for k in index.history}}


def lists(conn, now, *numbers, op="add"):
    changes = [Change("blacklist", op, n) for n in numbers[::2]]
    changes += [Change("optout", op, n, "sender", "ACME" if n % 3 else "BETA", {"source": "mo"}) for n in numbers[1::2]]
    write(conn, changes, origin="test", now=now)


def sends(conn, rows):
    conn.executemany("INSERT INTO send_history (number, account, sent_at) VALUES (?, ?, ?)", rows)


def opened(conn, policy=POLICY, **kw) -> tuple[Index, bool]:
    return open_index(conn, policy, time.time(), **kw)


async def rolled(path, index: Index, policy=POLICY) -> dict:
    writer = StoreWriter(str(path))
    await writer.start()
    upkeep = Upkeep(str(path), index, policy, writer, snapshot_first=3600)
    await upkeep.start()
    try:
        return await upkeep.roll_forward()
    finally:
        await upkeep.close()
        await writer.close()


@pytest.fixture
def filled(path):
    """A store with lists, and sends within the last month and before it."""
    now = time.time()
    conn = connect(path)
    lists(conn, now, *N[:8])
    sends(conn, [(N[0], "acct1", now - 40 * DAY), (N[0], "acct1", now - 2 * DAY), (N[1], "acct2", now - DAY),
                 (N[1], "acct1", now - 3 * DAY), (N[2], "acct1", now - 10.5)])
    conn.close()
    return path


@contextlib.asynccontextmanager
async def upkeep_running(path, index: Index):
    """A writer and the upkeep (change-log tail every 50 ms, no hourly roll forward) over `index`, stopped after."""
    writer = StoreWriter(str(path))
    await writer.start()
    upkeep = Upkeep(str(path), index, POLICY, writer, snapshot_first=3600, snapshot_every=3600, tail_interval=0.05)
    await upkeep.start()
    try:
        yield upkeep
    finally:
        await upkeep.close()
        await writer.close()


async def test_start_up_from_the_snapshot_and_what_came_after_equals_start_up_from_the_tables(filled):
    conn = connect(filled)
    try:
        index, current = opened(conn)
        assert not current and not snapshot.path_for(filled).exists()
        assert isinstance(index.blacklist, CompactSet) and isinstance(index.history, CompactHistory)
        done = await rolled(filled, index)
        assert done["keys"] == 3 and done["sends"] == 4  # the send 40 days ago is past the longest period
        assert snapshot.path_for(filled).exists()
        assert view(opened(conn)[0]) == view(opened(conn, use_snapshot=False)[0])
        # after the snapshot: entries of its base removed, new ones added, new sends, one to a key it holds
        now = time.time()
        lists(conn, now, *N[:4], op="remove")
        lists(conn, now, *N[8:])
        sends(conn, [(N[0], "acct1", now - 5), (N[9], "acct1", now - 4), (N[10], "acct2", now - 3)])
        again, current = opened(conn)
        assert current
        expected = view(opened(conn, use_snapshot=False)[0])
        assert view(again) == expected
        assert expected["blacklist"] == {N[4], N[6], N[8], N[10]}
        assert expected["history"][(N[0], "")] == (pytest.approx(now - 2 * DAY), now - 5)
        # rolled forward once more, the file alone holds it all; and again, with nothing new: nothing twice
        assert (await rolled(filled, again))["sends_merged"] == 3
        assert (await rolled(filled, again))["sends_merged"] == 0
        third, current = opened(conn)
        assert current and view(third) == expected
        assert third.history.overlay_size == 0 and third.blacklist.overlay_size == 0
        assert snapshot.path_for(filled).stat().st_mode & 0o777 == 0o600  # it holds phone numbers
    finally:
        conn.close()


async def test_after_a_roll_forward_the_index_reads_its_bases_from_the_file_it_wrote(filled):
    """The month of sends and the lists the roll built leave the heap: the Index takes them mapped from the
    snapshot file, as start-up does, and says the same as before."""
    conn = connect(filled)
    try:
        index = opened(conn)[0]  # read from the tables: no file yet
        index.blacklist.add(N[11])  # in the overlay: a new table is built
        before = view(index)
        await rolled(filled, index)
        file = str(snapshot.path_for(filled))
        for arr in (index.history.base.keys, index.history.base.times, index.history.table.rows,
                    index.blacklist.base.slots, index.optouts.base.slots):
            while not isinstance(arr, np.memmap) and isinstance(arr.base, np.ndarray):
                arr = arr.base  # a view of the mapped array
            assert isinstance(arr, np.memmap) and str(arr.filename) == file
        assert view(index) == before
    finally:
        conn.close()


async def test_the_snapshot_holds_the_lists_sieve_and_start_up_takes_it_from_there(filled):
    """Start-up reads the sieve's bits from the file (a fraction of the tables' pages); a file without them (an
    older one) still gives a sieve, built from the tables."""
    conn = connect(filled)
    try:
        index = opened(conn)[0]
        await rolled(filled, index)
        snap = snapshot.read(snapshot.path_for(filled))
        assert snap.listed is not None
        assert bytes(snap.listed) == bytes(sieve_of(snap.blacklist.slots, snap.optouts.slots).bits)
        with patch.object(compact, "sieve_of", side_effect=AssertionError("built, not read")):
            again, current = opened(conn)
        assert current and bytes(again.listed.bits) == bytes(snap.listed)
        again.blacklist.add(N[11])  # and it is attached: what the tail adds gets its bit
        assert N[11] in again.listed and all(k in again.listed for k in (*again.blacklist, *again.optouts))
        snapshot.write(snapshot.path_for(filled), snap.meta, snap.blacklist, snap.optouts, snap.history,
                       snap.history_rows)  # as a version without the sieve wrote it
        older, current = opened(conn)
        assert current and snapshot.read(snapshot.path_for(filled)).listed is None
        assert bytes(older.listed.bits) == bytes(snap.listed)
        for number in N[:8]:
            verdict = decide(Submission(number, f"+{number}", "ACME" if number % 3 else "BETA", "acct1"), older,
                             time.time(), POLICY)
            assert verdict.rule in ("blacklist", "optout")
    finally:
        conn.close()


async def test_what_is_listed_while_a_roll_forward_builds_is_refused_after_it_and_what_left_leaves_the_sieve(
        filled, monkeypatch):
    """The roll builds the lists' sieve anew from its bases in the thread; the numbers listed meanwhile on the
    loop go into it as the bases are installed, and a number taken off the lists before the roll loses its bit."""
    conn = connect(filled)
    try:
        index = opened(conn)[0]
        gone, new, opted = N[0], 8613900000007, 8613900000008  # N[0] blacklisted by `filled`, then taken off
        index.blacklist.discard(gone)
        assert gone in index.listed and new not in index.listed and opted not in index.listed
        building = asyncio.Event()
        write_file = snapshot.write

        def slow_write(*args):
            building.set()
            time.sleep(0.3)
            write_file(*args)

        monkeypatch.setattr(snapshot, "write", slow_write)

        async def meanwhile():
            await asyncio.wait_for(building.wait(), 10)
            index.blacklist.add(new)
            index.optouts.add(scoped(opted, index.scope_id("sender", "ACME")))

        task = asyncio.ensure_future(meanwhile())
        await rolled(filled, index)
        await task
        assert decide(Submission(new, f"+{new}", "ACME", "acct1"), index, time.time(), POLICY).rule == "blacklist"
        assert decide(Submission(opted, f"+{opted}", "ACME", "acct1"), index, time.time(), POLICY).rule == "optout"
        assert gone not in index.listed and gone not in index.blacklist
    finally:
        conn.close()


async def test_a_roll_forward_whose_file_cannot_be_read_back_keeps_the_arrays_it_built(filled, monkeypatch):
    conn = connect(filled)
    try:
        index = opened(conn)[0]
        index.blacklist.add(N[11])
        at = time.time() - 1
        sends(conn, [(N[5], "acct1", at)])  # a send after the Index was read, as the daemon makes one
        index.record_send(N[5], at)
        before = view(index)
        monkeypatch.setattr(snapshot, "read", lambda path: None)
        assert (await rolled(filled, index))["keys"] == 4
        assert view(index) == before and index.blacklist.overlay_size == 0
        assert N[5] in index.history.base.keys.tolist()  # the base built, with the send merged in
    finally:
        conn.close()


@pytest.mark.parametrize("kernel_copies", [True, False])
async def test_a_list_table_the_roll_did_not_change_goes_to_the_new_file_as_it_was(filled, monkeypatch,
                                                                                   kernel_copies):
    """Unchanged, the last snapshot's mapped tables are copied file to file by the kernel; where it cannot
    (another file system, an old kernel) they are written from memory. Either way the new file holds them."""
    conn = connect(filled)
    try:
        index = opened(conn)[0]
        await rolled(filled, index)  # the first file: the Index's tables are now mapped from it
        copies = []
        real = os.copy_file_range

        def copy(*args):
            copies.append(args[2])
            if not kernel_copies:
                raise OSError(errno.EXDEV, "Invalid cross-device link")
            return real(*args)

        monkeypatch.setattr(os, "copy_file_range", copy)
        await rolled(filled, index)
        assert len(copies) == 2  # the blacklist's table and the opt-outs'
        again, current = opened(conn)
        assert current and view(again) == view(opened(conn, use_snapshot=False)[0])
        assert len(again.blacklist) == 4 and len(again.optouts) == 4
    finally:
        conn.close()


async def test_an_unchanged_table_is_not_copied_from_a_file_put_in_the_snapshots_place(filled):
    """The snapshot file replaced under the running daemon (by hand, another store's): the path no longer names
    the file the Index maps, so its tables are written from memory, not copied from the stranger."""
    conn = connect(filled)
    try:
        index = opened(conn)[0]
        await rolled(filled, index)
        path = snapshot.path_for(filled)
        mine = snapshot.read(path)
        other = KeySlots.of(np.array([N[11]], dtype=np.int64))  # the same table size, other numbers
        stranger = path.with_name("stranger.index")
        snapshot.write(stranger, mine.meta, other, other, mine.history, mine.history_rows)
        os.replace(stranger, path)
        await rolled(filled, index)
        again, current = opened(conn)
        assert current and view(again) == view(opened(conn, use_snapshot=False)[0])
    finally:
        conn.close()


async def test_history_keyed_by_account_goes_through_the_snapshot_with_its_scope_ids(filled):
    conn = connect(filled)
    try:
        await rolled(filled, opened(conn, ACCOUNT_POLICY)[0], ACCOUNT_POLICY)
        sends(conn, [(N[1], "acct3", time.time() - 1)])
        index, current = opened(conn, ACCOUNT_POLICY)
        assert current
        assert view(index) == view(opened(conn, ACCOUNT_POLICY, use_snapshot=False)[0])
        assert view(index)["history"][(N[1], "a:acct3")] and len(index.history) == 5
        # sends made after the Index was read (as the daemon makes them: logged, and in the Index), merged by a
        # roll forward under their accounts' keys: the snapshot it writes holds them so
        now = time.time()
        made = [(N[3], "acct4", now - 3), (N[3], "acct1", now - 2), (N[1], "acct3", now - 1)]
        sends(conn, made)
        for number, account, at in made:
            index.record_send(ACCOUNT_POLICY.history_key(number, account, index), at)
        assert (await rolled(filled, index, ACCOUNT_POLICY))["sends_merged"] == 4  # with the one above
        tables = view(opened(conn, ACCOUNT_POLICY, use_snapshot=False)[0])
        assert view(index) == tables
        again, current = opened(conn, ACCOUNT_POLICY)
        assert current and again.history.overlay_size == 0 and view(again) == tables
        assert tables["history"][(N[3], "a:acct4")] == (now - 3,)
        # keyed by number now: the snapshot's history is of no use, its lists still are
        index, current = opened(conn)
        assert not current and view(index) == view(opened(conn, use_snapshot=False)[0])
    finally:
        conn.close()


@pytest.mark.parametrize("change", ["another store", "change-log row", "send row", "corrupt", "sieve of 3 bytes"])
async def test_a_snapshot_that_no_longer_agrees_with_the_store_is_not_used(filled, tmp_path, change, caplog):
    conn = connect(filled)
    try:
        await rolled(filled, opened(conn)[0])
        target = filled
        if change == "another store":  # the same lists and sends, but another store's file
            target = tmp_path / "other" / "store.db"
            target.parent.mkdir()
            shutil.copy(filled, target)
            conn.close()
            conn = connect(target)
            conn.execute("UPDATE meta SET value = 'elsewhere' WHERE key = 'node_id'")
            shutil.copy(snapshot.path_for(filled), snapshot.path_for(target))
        elif change == "change-log row":  # the change log was rewritten under the same ids
            conn.execute("UPDATE changelog SET at = at + 1 WHERE id = (SELECT MAX(id) FROM changelog)")
        elif change == "send row":  # the snapshot's last send row is gone (the table was emptied and refilled)
            conn.execute("DELETE FROM send_history")
            sends(conn, [(N[5], "acct1", time.time() - 1)] * 6)
        elif change == "sieve of 3 bytes":
            snap = snapshot.read(snapshot.path_for(filled))
            bad = Sieve(16)
            bad.bits = bytearray(3)
            snapshot.write(snapshot.path_for(filled), snap.meta, snap.blacklist, snap.optouts, snap.history,
                           snap.history_rows, bad)
        else:
            snapshot.path_for(filled).write_bytes(b"PK\x03\x04 not a snapshot")
        index, current = opened(conn)
        assert not current
        assert view(index) == view(opened(conn, use_snapshot=False)[0])
        if change == "send row":
            assert set(view(index)["history"]) == {(N[5], "")}
        if change == "corrupt":
            assert "unreadable" in caplog.text
        if change == "sieve of 3 bytes":
            assert "a lists' sieve of 3 bytes, not 2^n" in caplog.text
    finally:
        conn.close()


async def test_the_daemon_writes_the_snapshot_on_its_own_and_keeps_what_was_written_meanwhile(filled):
    conn = connect(filled)
    index = opened(conn)[0]
    writer = StoreWriter(str(filled))
    await writer.start()
    upkeep = Upkeep(str(filled), index, POLICY, writer, snapshot_first=0.05, snapshot_every=3600)
    await upkeep.start()
    try:
        index.blacklist.add(N[11])  # written between the roll forward's start and its end, as far as it knows
        index.blacklist.discard(N[0])
        await eventually(lambda: upkeep.last_snapshot is not None)
        assert N[11] in index.blacklist and N[0] not in index.blacklist and N[2] in index.blacklist
        assert snapshot.path_for(filled).exists()
    finally:
        await upkeep.close()
        await writer.close()
        conn.close()


async def test_an_import_while_the_daemon_runs_is_folded_into_the_base_at_once(filled, monkeypatch):
    """Past ROLL_OVERLAY list changes in the overlays the snapshot rolls forward without waiting for the hour:
    an import's numbers stop costing a Python int each."""
    from smppguard.store import upkeep as upkeep_module

    monkeypatch.setattr(upkeep_module, "ROLL_OVERLAY", 50)
    conn = connect(filled)
    index = opened(conn)[0]
    await rolled(filled, index)  # the snapshot as of now; what follows is in no base
    try:
        async with upkeep_running(filled, index) as upkeep:
            imported = [8613900000000 + 11 * i for i in range(40)]
            write(conn, [Change("blacklist", "add", 0, numbers=imported)], origin="import", now=time.time())
            await eventually(lambda: all(n in index.blacklist for n in imported))
            assert upkeep.last_snapshot is None and index.blacklist.overlay_size == 40  # 40: not past the bound
            more = [8613900100000 + 11 * i for i in range(20)]
            write(conn, [Change("blacklist", "add", 0, numbers=more)], origin="import", now=time.time())
            await eventually(lambda: upkeep.last_snapshot is not None, timeout=10)
            assert index.blacklist.overlay_size == 0 and all(n in index.blacklist for n in imported + more)
            assert len(index.blacklist) == len(set(view(opened(conn, use_snapshot=False)[0])["blacklist"]))
    finally:
        conn.close()


async def test_a_burst_of_sends_rolls_the_snapshot_forward_at_once_so_a_restart_replays_few(filled, monkeypatch):
    """Past ROLL_SENDS send rows after the snapshot's, it rolls forward without waiting for the hour: a restart
    then replays at most about that many."""
    from smppguard.store import upkeep as upkeep_module

    monkeypatch.setattr(upkeep_module, "ROLL_SENDS", 50)
    conn = connect(filled)
    index = opened(conn)[0]
    await rolled(filled, index)
    try:
        async with upkeep_running(filled, index) as upkeep:
            now = time.time()
            sends(conn, [(8613900000000 + i, "acct1", now - 60 + i / 100) for i in range(40)])
            for i in range(40):
                index.record_send(8613900000000 + i, now - 60 + i / 100)  # as the screening records them
            await asyncio.sleep(0.3)
            assert upkeep.last_snapshot is None  # 40: not past the bound
            sends(conn, [(8613900000000 + i, "acct1", now - 50 + i / 100) for i in range(40, 60)])
            await eventually(lambda: upkeep.last_snapshot is not None, timeout=10)
            assert upkeep.last_snapshot["sends_merged"] == 60
            # the 40 recorded in the Index are in the new base as the overlay has them: the overlay lets them go
            assert upkeep.last_snapshot["overlay_settled"] == 40 and index.history.overlay_size == 0
            assert index.history.get(8613900000000 + 5) == (now - 60 + 5 / 100,)
            assert index.history_mark == conn.execute("SELECT MAX(rowid) FROM send_history").fetchone()[0]
            again, current = opened(conn)
            assert current and again.history.overlay_size == 0
            assert view(again) == view(opened(conn, use_snapshot=False)[0])
    finally:
        conn.close()


def test_a_child_process_reads_the_send_rows_after_a_mark_as_the_daemon_would(path):
    """sendrows: the rows after the mark, in row order, every time to the bit, and the last row's id; none after
    it: empty arrays and the mark; a store it cannot open: OSError with the child's reason."""
    from smppguard.store import sendrows

    conn = connect(path)
    try:
        now = time.time()
        sends(conn, [(8613900000000 + i % 37, "acct1", now - 1000 + i * 0.123456789) for i in range(3000)])
        for mark in (0, 1234, 3000):
            got = sendrows.send_arrays(str(path), mark)
            last, keys, times = got.last, got.numbers, got.times
            expected = snapshot.send_arrays_after(conn, mark, None)
            assert last == expected[0] == 3000
            assert keys.dtype == np.int64 and times.dtype == np.float64 and len(keys) == 3000 - mark
            assert np.array_equal(keys, expected[1]) and np.array_equal(times, expected[2])
            assert got.accounts is None and got.which is None
    finally:
        conn.close()
    with pytest.raises(OSError, match="unable to open"):
        sendrows.send_arrays(str(path.with_name("none.db")), 0)


def _child_reads(monkeypatch, works: bool) -> list:
    """Past 100 send rows a roll forward asks a child process for them (its calls listed), which fails unless it
    `works` (its interpreter /bin/false)."""
    from smppguard.store import sendrows
    from smppguard.store import upkeep as upkeep_module

    monkeypatch.setattr(upkeep_module, "CHILD_READ_ROWS", 100)
    calls: list = []
    real = sendrows.send_arrays
    monkeypatch.setattr(sendrows, "send_arrays", lambda *a: calls.append(a) or real(*a))
    if not works:
        monkeypatch.setattr(sendrows.sys, "executable", "/bin/false")
    return calls


@pytest.mark.parametrize("child", ["works", "fails"])
async def test_a_roll_forward_after_many_sends_reads_them_in_a_child_process_or_else_itself(filled, monkeypatch,
                                                                                            caplog, child):
    """Past CHILD_READ_ROWS send rows, a child process reads them (the loop keeps the GIL); if it fails, the
    upkeep's thread reads them, with a warning. Either way the Index ends as the tables say."""
    calls = _child_reads(monkeypatch, works=child == "works")
    conn = connect(filled)
    try:
        index = opened(conn)[0]
        await rolled(filled, index)
        assert not calls  # a handful of rows: read in the thread
        now = time.time()
        sends(conn, [(8613900000000 + i % 150, "acct1", now - 600 + i / 10) for i in range(400)])
        assert (await rolled(filled, index))["sends_merged"] == 400
        assert len(calls) == 1
        assert ("reading them in the daemon instead" in caplog.text) == (child == "fails")
        assert view(index) == view(opened(conn, use_snapshot=False)[0])
    finally:
        conn.close()


def test_a_child_process_reads_each_send_rows_account_too_as_an_index_into_their_names(path):
    """With accounts (history keyed by account): each row's account, as an index into the accounts' names in the
    order met; the same from the child and from the daemon's own thread; names of any characters."""
    from smppguard.store import sendrows

    conn = connect(path)
    accounts = ["acct1", "b\nb", "ü-ß 𝔸", "acct1x"]
    try:
        now = time.time()
        rows = [(8613900000000 + i % 37, accounts[i * 7 % 4], now - 1000 + i * 0.123456789) for i in range(3000)]
        sends(conn, rows)
        for mark in (0, 1234, 3000):
            for got in (sendrows.send_arrays(str(path), mark, accounts=True),
                        sendrows.read_here(str(path), mark, accounts=True)):
                assert got.last == 3000 and got.which.dtype == np.int32
                assert got.numbers.tolist() == [n for n, _, _ in rows[mark:]]
                assert got.times.tolist() == [t for _, _, t in rows[mark:]]  # to the bit
                assert [got.accounts[w] for w in got.which] == [a for _, a, _ in rows[mark:]]
                assert sorted(got.accounts) == sorted({a for _, a, _ in rows[mark:]})
                assert got.numbers.flags.writeable and got.times.flags.writeable  # arrays as the daemon's own
    finally:
        conn.close()
    whole = io.BytesIO()
    sendrows.read(str(path), 2990, whole, accounts=True)
    for cut in (0, 20, 100, len(whole.getvalue()) - 1):  # what a child that died midway wrote: an error
        with pytest.raises(OSError, match="end early"):
            sendrows.parse(io.BytesIO(whole.getvalue()[:cut]), accounts=True)


@pytest.mark.parametrize("child", ["works", "fails"])
async def test_a_roll_forward_of_history_keyed_by_account_reads_the_accounts_with_the_rows(filled, monkeypatch,
                                                                                          caplog, child):
    """`scope = "account"`: past CHILD_READ_ROWS the child reads the rows with their accounts, and the keys are
    made with one scope id an account (one new to the Index among them); a scope id past 8191, whose keys lie
    past int64, keeps its sends in the overlay. If the child fails, the thread reads them, with a warning. Either
    way the Index ends as the tables say."""
    calls = _child_reads(monkeypatch, works=child == "works")
    conn = connect(filled)
    try:
        index = opened(conn, ACCOUNT_POLICY)[0]
        await rolled(filled, index, ACCOUNT_POLICY)
        for i in range(8200):  # scope ids past 8191: the next account's keys lie past int64
            index.scope_id("sender", f"S{i}")
        now = time.time()
        rows = [(8613900000000 + i % 150, ("acct1", "acct2", "fresh")[i % 3], now - 600 + i / 10) for i in range(400)]
        sends(conn, rows)
        for number, account, at in rows:  # as the screening records them
            index.record_send(ACCOUNT_POLICY.history_key(number, account, index), at)
        assert (await rolled(filled, index, ACCOUNT_POLICY))["sends_merged"] == 400
        assert calls and calls[0][-1] is True  # the child was asked for the accounts
        assert ("reading them in the daemon instead" in caplog.text) == (child == "fails")
        big = ACCOUNT_POLICY.history_key(8613900000002, "fresh", index)
        assert big > snapshot.MAX_KEY and index.history.get(big) is not None
        assert view(index) == view(opened(conn, ACCOUNT_POLICY, use_snapshot=False)[0])
    finally:
        conn.close()


async def test_a_restart_takes_the_sends_after_the_snapshot_as_arrays_and_a_roll_forward_folds_them_in(filled):
    """The send rows after the snapshot's become a tail of arrays over its base, not a Python tuple a key; a key
    past int64 (an account's scope past 8191) alone goes to the overlay, as it always did. The Index says what the
    tables say, before and after the roll forward that takes the tail into the base."""
    conn = connect(filled)
    try:
        index = opened(conn, ACCOUNT_POLICY)[0]
        for i in range(8200):  # scope ids past 8191: a new account's keys then lie past int64
            index.scope_id("sender", f"S{i}")
        await rolled(filled, index, ACCOUNT_POLICY)
        now = time.time()
        sends(conn, [(N[0], "acct1", now - 5), (N[1], "acct9", now - 4), (N[9], "acct1", now - 3),
                     (N[0], "acct1", now - 6), (N[9], "acct2", now - 40 * DAY)])  # the last: past the period
        again, current = opened(conn, ACCOUNT_POLICY)
        assert current
        assert again.history.tail_size == 2 and again.history.overlay_size == 1
        tables = view(opened(conn, ACCOUNT_POLICY, use_snapshot=False)[0])
        assert view(again) == tables and len(again.history) == len(tables["history"]) == 6
        assert tables["history"][(N[0], "a:acct1")] == (pytest.approx(now - 2 * DAY), now - 6, now - 5)
        # a send made after the start, then the roll forward: the tail goes into the base
        sends(conn, [(N[9], "acct1", now - 1)])
        again.record_send(ACCOUNT_POLICY.history_key(N[9], "acct1", again), now - 1)
        assert (await rolled(filled, again, ACCOUNT_POLICY))["sends_merged"] == 6
        assert again.history.tail_size == 0
        assert view(again) == view(opened(conn, ACCOUNT_POLICY, use_snapshot=False)[0])
    finally:
        conn.close()


async def test_history_keyed_by_account_is_read_from_the_tables_when_the_lists_are(filled):
    """Account keys are made with scope ids: when the snapshot's lists (and their ids) are not used, neither is
    its history, whose keys were made with those ids."""
    conn = connect(filled)
    try:
        await rolled(filled, opened(conn, ACCOUNT_POLICY)[0], ACCOUNT_POLICY)
        write(conn, [Change("optout", "add", N[9], "sender", "AAA", {"source": "mo"})], origin="test",
              now=time.time())  # a scope the tables list first: every id after it moves
        conn.execute("UPDATE changelog SET at = at + 1 WHERE id = (SELECT MAX(id) - 1 FROM changelog)")
        index, current = opened(conn, ACCOUNT_POLICY)
        assert not current
        assert view(index) == view(opened(conn, ACCOUNT_POLICY, use_snapshot=False)[0])
    finally:
        conn.close()


def test_history_keyed_by_account_from_the_tables_keeps_a_key_past_int64_in_the_overlay(filled):
    """A start from the tables makes the keys a column at a time; accounts whose scope ids come after 8,200
    opt-out scopes have keys past int64, which go to the overlay one by one, and count as the others do."""
    conn = connect(filled)
    try:
        now = time.time()
        conn.executemany("INSERT INTO optout (number, scope, scope_key, added_at) VALUES (?, 'sender', ?, ?)",
                         [(N[11], f"S{i}", now) for i in range(8200)])
        sends(conn, [(N[0], "late", now - 5), (N[0], "late", now - 3), (N[1], "acct1", now - 4)])
        index = opened(conn, ACCOUNT_POLICY, use_snapshot=False)[0]
        late = ACCOUNT_POLICY.history_key(N[0], "late", index)
        assert late > snapshot.MAX_KEY and index.history.overlay_size == len(index.history) >= 3
        assert index.history[late] == (now - 5, now - 3)
        assert index.history[ACCOUNT_POLICY.history_key(N[1], "acct1", index)][-1] == now - 4
        assert view(index)["history"][(N[0], "a:late")] == (now - 5, now - 3)
    finally:
        conn.close()


async def test_a_snapshot_cut_short_is_not_used(filled, caplog):
    conn = connect(filled)
    try:
        await rolled(filled, opened(conn)[0])
        path = snapshot.path_for(filled)
        path.write_bytes(path.read_bytes()[:-4096])  # the last array's page lost (a full disk, say)
        index, current = opened(conn)
        assert not current and "cut short" in caplog.text
        assert view(index) == view(opened(conn, use_snapshot=False)[0])
    finally:
        conn.close()



async def test_a_roll_forward_with_no_rule_counting_sends_merges_none(filled):
    no_counting = POLICY.without("frequency")
    assert no_counting.history_span_s == 0
    conn = connect(filled)
    try:
        index = opened(conn, no_counting)[0]
        done = await rolled(filled, index, no_counting)
        (last,) = conn.execute("SELECT MAX(rowid) FROM send_history").fetchone()
        assert (done["sends_merged"], done["keys"], done["sends"]) == (0, 0, 0)
        assert index.history_mark == last and len(index.history) == 0
    finally:
        conn.close()


def test_with_no_rule_counting_sends_none_are_read_and_the_mark_is_the_last_row(filled):
    conn = connect(filled)
    try:
        (last,) = conn.execute("SELECT MAX(rowid) FROM send_history").fetchone()
        def read(row, counted=True):
            mark, keys, times, big = snapshot.send_arrays_after(conn, row, None, counted)
            return mark, keys.tolist(), len(times), big

        assert read(2, counted=False) == (last, [], 0, [])
        assert read(last) == (last, [], 0, [])
        assert read(last - 2) == (last, [N[1], N[2]], 2, [])
        conn.execute("DELETE FROM send_history")
        assert read(7, counted=False) == (7, [], 0, [])  # an empty table: where it was
    finally:
        conn.close()


async def test_a_snapshot_of_a_store_that_had_sent_nothing_yet_is_used(path):
    conn = connect(path)
    try:
        lists(conn, time.time(), *N[:4])
        index, current = opened(conn)
        assert not current
        await rolled(path, index)
        again, current = opened(conn)
        assert current and view(again) == view(opened(conn, use_snapshot=False)[0])
        assert len(again.history) == 0
    finally:
        conn.close()


async def test_a_roll_forward_with_only_removals_since_the_last_one_drops_them_from_the_file(filled):
    conn = connect(filled)
    try:
        await rolled(filled, opened(conn)[0])
        lists(conn, time.time(), *N[:4], op="remove")  # blacklist and opt-out entries removed, nothing added
        again, current = opened(conn)  # the snapshot, and the removals replayed from the change log
        assert current and again.blacklist.overlay_size > 0
        await rolled(filled, again)
        third, current = opened(conn)
        assert current and third.blacklist.overlay_size == 0
        assert view(third) == view(opened(conn, use_snapshot=False)[0])
        assert not set(third.blacklist) & set(N[:4])
    finally:
        conn.close()


def test_the_arrays_never_overlap_the_header_whatever_its_length(path):
    """Whatever the header's length against the page the arrays start on, the file reads back as written. The
    meta is padded through a whole page, 8 bytes at a time: the lengths where MAGIC and the length field (16
    bytes) push the header onto the next page are among them."""
    keys = np.array([N[0], N[1], N[2]], dtype=np.int64)
    history = HistoryArrays.from_rows(keys, np.array([1.0, 2.0, 3.0]))
    lists = KeySlots.of(keys)
    target = snapshot.path_for(path)
    for pad in range(3000, 3000 + 4096, 8):
        snapshot.write(target, {"pad": "x" * pad}, lists, lists, history, KeyTable(history.keys).rows)
        back = snapshot.read(target)
        assert back is not None and back.meta["pad"] == "x" * pad, pad
        assert back.blacklist.keys.tolist() == back.optouts.keys.tolist() == keys.tolist()
        assert (back.history.keys.tolist(), back.history.times.tolist()) == (keys.tolist(), [1.0, 2.0, 3.0])


async def test_write_snapshot_leaves_a_file_a_start_reads_as_it_would_the_tables(filled):
    """What an import leaves behind with no daemon running: the lists from the tables, the last snapshot's sends
    with the rows after it merged in; a start from it equals a start from the tables, and replays nothing."""
    conn = connect(filled)
    try:
        await rolled(filled, opened(conn)[0])  # an old snapshot, then changes and sends after it
        now = time.time()
        lists(conn, now, *N[:2], op="remove")
        lists(conn, now, *N[8:])
        sends(conn, [(N[0], "acct1", now - 5), (N[9], "acct1", now - 4)])
        wrote = write_snapshot(conn, POLICY, time.time())
        assert wrote is not None and wrote["sends"] == 6
        meta = snapshot.read(snapshot.path_for(filled)).meta
        assert meta["change_id"] == conn.execute("SELECT MAX(id) FROM changelog").fetchone()[0]
        assert meta["history_row"] == conn.execute("SELECT MAX(rowid) FROM send_history").fetchone()[0]
        index, current = opened(conn)
        assert current and view(index) == view(opened(conn, use_snapshot=False)[0])
        assert index.blacklist.overlay_size == index.optouts.overlay_size == index.history.overlay_size == 0
        # keyed by account: the sends are read from the table under the lists' new scope ids
        assert write_snapshot(conn, ACCOUNT_POLICY, time.time()) is not None
        index, current = opened(conn, ACCOUNT_POLICY)
        assert current and view(index) == view(opened(conn, ACCOUNT_POLICY, use_snapshot=False)[0])
    finally:
        conn.close()


def test_write_snapshot_leaves_the_file_to_whoever_holds_its_lock(filled):
    """A running daemon holds the lock: the import writes nothing, and the daemon rolls its own forward."""
    conn = connect(filled)
    held = snapshot.take_lock(filled)
    try:
        assert held is not None and snapshot.take_lock(filled) is None
        assert write_snapshot(conn, POLICY, time.time()) is None
        assert not snapshot.path_for(filled).exists()
    finally:
        os.close(held)
        conn.close()
    conn = connect(filled)
    try:
        assert write_snapshot(conn, POLICY, time.time()) is not None
    finally:
        conn.close()


async def test_a_snapshot_written_while_no_rule_counted_sends_gives_none_to_a_start_that_counts_them(filled):
    """Written with the frequency rule off, a snapshot holds no sends, up to the table's last row: a start with
    the rule on reads the table instead of taking that as a month without sends."""
    conn = connect(filled)
    try:
        off = POLICY.without("frequency")
        assert off.history_span_s == 0 < POLICY.history_span_s
        assert write_snapshot(conn, off, time.time()) is not None
        index, current = opened(conn)
        assert not current and len(index.history) == 3
        assert view(index) == view(opened(conn, use_snapshot=False)[0])
        assert opened(conn, off)[1]
    finally:
        conn.close()
