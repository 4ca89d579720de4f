"""The Index's snapshot file: its large tables (blacklist, opt-outs, send history) as arrays, beside the store as
`<store>.index`, so that start-up reads them at disk speed and replays only what came after them.

Rule: the snapshot is a cache of the store, never a source. It says what it holds: the lists as of change-log id
`change_id`, the sends of `send_history` up to row `history_row`, under the history keys of `history_keys`. Start-up
takes it only when the store still agrees (the same store, that change-log row and that send row unchanged, the
same keys); otherwise it reads the tables, as without one, and writes a new snapshot. The daemon rolls it forward
every hour (Upkeep), and sooner once the lists' overlays or the sends since `history_row` pass a bound: those
sends merged in, older ones dropped, the lists as the Index has them.
Written to a temporary file and renamed, so a crash leaves the old one or the new one.

Who writes it: the process that holds the flock on `<store>.index.lock` (`take_lock`). The daemon takes it at
start-up and holds it while it runs; a list import with no daemon running takes it and writes a snapshot of the
store as the import left it (index.write_snapshot), so the next start reads the file, not the tables. With a
daemon running the import leaves the file to it: it rolls forward once its overlays pass ROLL_OVERLAY
(store/upkeep.py). A snapshot says from when its sends are kept (`history_after`): start-up takes them only when
that reaches back as far as its own rule counts.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import sqlite3
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple

import numpy as np

from ..policy.compact import (
    MAX_KEY,
    CompactHistory,
    CompactSet,
    HistoryArrays,
    KeySlots,
    KeyTable,
    attach_sieve,
    merged_keys,
)
from ..policy.model import SCOPE_STRIDE, Index, ScopedKeys
from ..policy.sieve import Sieve
from .sendrows import LAST_SEND_ROW, SENDS_BETWEEN, Sends

log = logging.getLogger(__name__)

VERSION = 3  # 3: one file of page-aligned arrays, mapped
SUFFIX = ".index"
#: Rows read from SQLite per numpy conversion when the tables are read in full.
CHUNK = 1 << 16
#: List numbers read from SQLite at a time when the tables are read in full (a progress step each).
LIST_CHUNK = 1 << 20

#: What a load reports as it goes, from within its chunks: ("blacklist", numbers read, numbers in all).
Progress = Callable[[str, int, "int | None"], None]


def no_progress(what: str, done: int, total: int | None = None) -> None:
    pass


def path_for(store: str | os.PathLike) -> Path:
    return Path(f"{store}{SUFFIX}")


def store_path_of(path: str) -> str:
    """The store's file as the config names it ('' for an in-memory one)."""
    return "" if not path or path == ":memory:" or path.startswith("file::memory:") else path


def store_path(db: sqlite3.Connection) -> str:
    """The file of the connection's main database ('' for an in-memory one)."""
    return next(row[2] for row in db.execute("PRAGMA database_list") if row[1] == "main")


class Snapshot(NamedTuple):
    meta: dict[str, Any]
    blacklist: KeySlots
    optouts: KeySlots
    history: HistoryArrays
    history_rows: np.ndarray  # the table of history.keys (its `rows`)
    listed: np.ndarray | None = None  # the bits of both lists' Sieve (None: a file written without it)


# --- what the store says now --------------------------------------------------------------------------------

def _change_at(db: sqlite3.Connection, change_id: int) -> float | None:
    row = db.execute("SELECT at FROM changelog WHERE id = ?", (change_id,)).fetchone()
    return row[0] if row else None


def _lists_agree(db: sqlite3.Connection, meta: dict[str, Any], node: str) -> bool:
    """The snapshot's lists are of this store, as of a change-log row it still has."""
    if meta.get("version") != VERSION or meta.get("node_id") != node:
        return False
    change_id = meta["change_id"]
    last = db.execute("SELECT COALESCE(MAX(id), 0) FROM changelog").fetchone()[0]
    return change_id <= last and (change_id == 0 or _change_at(db, change_id) == meta["change_at"])


def _history_agrees(db: sqlite3.Connection, meta: dict[str, Any], history_keys: str, after: float) -> bool:
    """Its sends are this table's up to a row that is still there, unchanged (rowids are reused only once the
    rows above them are gone), under the same keys, and reach back to `after` (a snapshot written under a shorter
    period than the one counted now lacks the older sends)."""
    if meta.get("history_keys") != history_keys or meta.get("history_after", after) > after:
        return False
    if meta["history_row"] == 0:
        return meta.get("history_last") is None
    row = db.execute("SELECT number, account, sent_at FROM send_history WHERE rowid = ?",
                     (meta["history_row"],)).fetchone()
    return row is not None and list(row) == meta["history_last"]


# --- the file -----------------------------------------------------------------------------------------------

def lock_path(store: str | os.PathLike) -> Path:
    return Path(f"{store}{SUFFIX}.lock")


def take_lock(store: str | os.PathLike) -> int | None:
    """The right to write the store's snapshot: an flock on `<store>.index.lock`, taken without waiting. Its file
    descriptor (held until closed; not inherited by a child), or None when another process holds it: a running
    daemon, or a command writing a snapshot."""
    fd = os.open(lock_path(store), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        _owned_as_store(fd, store)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


def _owned_as_store(fd: int, store: str | os.PathLike) -> None:
    """A file root makes beside the store (an import run with sudo) belongs to the store's owner, as SQLite does
    with its journal: the daemon, running as that user, must read and replace it."""
    if os.geteuid() != 0:
        return
    try:
        owner = os.stat(store)
    except OSError:  # a file not beside a store (a test's)
        return
    st = os.fstat(fd)
    if (st.st_uid, st.st_gid) != (owner.st_uid, owner.st_gid):
        os.fchown(fd, owner.st_uid, owner.st_gid)


MAGIC = b"SMPPGIDX"
_ALIGN = 4096  # each array starts on a page: mapped, it is read from the page cache as lookups touch it


def _paged(size: int) -> int:
    """`size` rounded up to whole pages."""
    return -(-size // _ALIGN) * _ALIGN


def _arrays_start(header_length: int) -> int:
    """Where the arrays begin: after MAGIC, the header's length (8 bytes) and the header, on a page."""
    return _paged(len(MAGIC) + 8 + header_length)


def write(path: Path, meta: dict[str, Any], blacklist: KeySlots, optouts: KeySlots, history: HistoryArrays,
          history_rows: np.ndarray, listed: Sieve | None = None) -> None:
    """Write the snapshot to a temporary file, flush it to disk and rename it into place. The file is MAGIC, the
    length of a JSON header, the header (the meta, and each array's dtype, shape and offset), then the arrays,
    each on a page of its own. `listed`: the lists' sieve, built from these tables (start-up then reads its bits
    instead of every page of the tables)."""
    arrays = {"blacklist": blacklist.slots, "optouts": optouts.slots, "history_keys": history.keys,
              "history_offs": history.offs, "history_times": history.times, "history_rows": history_rows}
    if listed is not None:
        arrays["lists_sieve"] = np.frombuffer(listed.bits, dtype=np.uint8)
    layout, offset = {}, 0
    for name, arr in arrays.items():
        layout[name] = {"dtype": arr.dtype.str, "shape": list(arr.shape), "offset": offset}
        offset += _paged(arr.nbytes)
    meta = {**meta, "version": VERSION, "blacklist": len(blacklist), "optouts": len(optouts)}
    header = json.dumps({"meta": meta, "arrays": layout}).encode()
    start = _arrays_start(len(header))
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600)
    with os.fdopen(fd, "wb") as f:
        _owned_as_store(fd, str(path).removesuffix(SUFFIX))
        f.write(MAGIC + len(header).to_bytes(8, "little") + header)
        for name, arr in arrays.items():
            f.seek(start + layout[name]["offset"])
            if not _copy_mapped(arr, f):
                np.ascontiguousarray(arr).tofile(f)
        f.truncate(start + offset)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _copy_mapped(arr: np.ndarray, f) -> bool:
    """Copy an array mapped whole from a file (a list table a roll forward did not change: the last snapshot's)
    into `f` at its position, file to file in the kernel: its pages then never enter this process's memory.
    False when it is not such an array, or the kernel cannot (then it is written from memory)."""
    mapped = arr
    while not isinstance(mapped, np.memmap) and isinstance(mapped.base, np.ndarray):
        mapped = mapped.base
    if (not hasattr(os, "copy_file_range") or not isinstance(mapped, np.memmap) or mapped.filename is None
            or not arr.flags.c_contiguous or arr.ctypes.data != mapped.ctypes.data or arr.nbytes != mapped.nbytes):
        return False
    f.flush()
    try:
        with open(mapped.filename, "rb") as src:
            if not _maps_file(arr.ctypes.data, os.fstat(src.fileno())):
                return False  # the path names another file now (the snapshot replaced by hand): not ours to copy
            done, at, to = 0, mapped.offset, f.tell()
            while done < arr.nbytes:
                n = os.copy_file_range(src.fileno(), f.fileno(), arr.nbytes - done, at + done, to + done)
                if n == 0:
                    raise OSError("the mapped file is shorter than its array")
                done += n
    except OSError as e:
        log.debug("copying a mapped array in the kernel failed (%s): written from memory", e)
        return False
    f.seek(to + arr.nbytes)
    return True


def _maps_file(address: int, st: os.stat_result) -> bool:
    """The mapping of this process that holds `address` is of the file `st` describes (device and inode, as
    /proc/self/maps gives them)."""
    device = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}"
    with open("/proc/self/maps") as maps:
        for line in maps:
            span, _perms, _offset, dev, inode, *_path = line.split(maxsplit=5)
            low, high = (int(x, 16) for x in span.split("-"))
            if low <= address < high:
                return dev == device and int(inode) == st.st_ino
    return False


def read(path: Path) -> Snapshot | None:
    """The snapshot in `path`, mapped read-only (start-up reads no more of it than the header: the pages come in
    as lookups touch them), or None when there is none or it cannot be read (then the tables are)."""
    try:
        with open(path, "rb") as f:
            if f.read(len(MAGIC)) != MAGIC:
                raise ValueError("not a snapshot file")
            length = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(length))
            size = os.fstat(f.fileno()).st_size
        start = _arrays_start(length)
        arrays = {}
        for name, spec in header["arrays"].items():
            dtype, shape = np.dtype(spec["dtype"]), tuple(spec["shape"])
            at = start + spec["offset"]
            if at + dtype.itemsize * int(np.prod(shape)) > size:
                raise ValueError(f"cut short: {name} ends past the end of the file")
            arrays[name] = (np.memmap(path, dtype=dtype, mode="r", offset=at, shape=shape) if np.prod(shape)
                            else np.zeros(shape, dtype=dtype))
        meta = header["meta"]
        listed = arrays.get("lists_sieve")
        if listed is not None and (listed.dtype != np.uint8 or len(listed) & (len(listed) - 1) or not len(listed)):
            raise ValueError(f"a lists' sieve of {len(listed)} bytes, not 2^n")
        history = HistoryArrays(arrays["history_keys"], arrays["history_offs"], arrays["history_times"])
        return Snapshot(meta, KeySlots(arrays["blacklist"], meta["blacklist"]),
                        KeySlots(arrays["optouts"], meta["optouts"]), history, arrays["history_rows"], listed)
    except FileNotFoundError:
        return None
    except (OSError, EOFError, ValueError, KeyError, TypeError) as e:
        log.warning("index snapshot %s unreadable (%s): reading the tables instead", path, e)
        return None


# --- loading ------------------------------------------------------------------------------------------------

def load_lists(db: sqlite3.Connection, index: Index, snap: Snapshot | None, node: str,
               progress: Progress = no_progress) -> bool:
    """The blacklist and the opt-outs into `index`: from the snapshot when it agrees with the store (then returns
    True, and `index.change_id` is the snapshot's: the caller replays the change log after it), else from the
    tables as of this transaction's change id, LIST_CHUNK numbers at a time, each a `progress` step."""
    if snap is not None and _lists_agree(db, snap.meta, node):
        index.scope_ids = dict(snap.meta["scope_ids"])
        index.blacklist = CompactSet(table=snap.blacklist)
        index.optouts = CompactSet(table=snap.optouts)
        # the file's sieve: 32 MiB read, where building it would read every page of both tables (hundreds of MB)
        index.listed = attach_sieve(index.blacklist, index.optouts,
                                    None if snap.listed is None else Sieve.of_bits(snap.listed))
        index.change_id = snap.meta["change_id"]
        return True
    index.change_id = db.execute("SELECT COALESCE(MAX(id), 0) FROM changelog").fetchone()[0]
    total = db.execute("SELECT COUNT(*) FROM blacklist").fetchone()[0]
    index.blacklist = CompactSet(_numbers(db, "blacklist", "", (), lambda n: progress("blacklist", n, total)))
    progress("blacklist", total, total)
    parts, big = [], []
    total, done = db.execute("SELECT COUNT(*) FROM optout").fetchone()[0], 0
    for scope, key in db.execute("SELECT DISTINCT scope, scope_key FROM optout").fetchall():
        numbers = _numbers(db, "optout", "scope = ? AND scope_key = ? AND", (scope, key),
                           lambda n, before=done: progress("opt-outs", before + n, total))
        done += len(numbers)
        sid = index.scope_id(scope, key)
        if sid * SCOPE_STRIDE + int(numbers.max(initial=0)) <= MAX_KEY:
            parts.append(numbers + np.int64(sid * SCOPE_STRIDE))
        else:  # past 8191 scopes: keys beyond int64, kept one by one
            big.extend(int(n) + sid * SCOPE_STRIDE for n in numbers.tolist())
    index.optouts = CompactSet(np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64))
    index.optouts.update(big)
    progress("opt-outs", done, total)
    index.listed = attach_sieve(index.blacklist, index.optouts)
    return False


def _numbers(db: sqlite3.Connection, table: str, where: str, args: tuple,
             read: Callable[[int], None] = lambda n: None) -> np.ndarray:
    """The column `number` of a list table's rows (`where`: conditions ending in AND), in number order, as SQLite
    joins them into one string: a million in a tenth of a second, where a row per number takes seconds. Read
    LIST_CHUNK at a time along the table's key (`read`: how many so far, after each)."""
    chunks, last, n = [], -1, 0
    while True:
        (text,) = db.execute(f"SELECT group_concat(number) FROM (SELECT number FROM {table} WHERE {where} "
                             f"number > ? ORDER BY number LIMIT {LIST_CHUNK})", (*args, last)).fetchone()
        if not text:
            break
        chunk = np.fromstring(text, dtype=np.int64, sep=",")
        chunks.append(chunk)
        n += len(chunk)
        read(n)
        if len(chunk) < LIST_CHUNK:
            break
        last = int(chunk.max())
    if len(chunks) == 1:
        return chunks[0]
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int64)


def load_history(db: sqlite3.Connection, index: Index, snap: Snapshot | None, after: float, keys_name: str,
                 key_of: ScopedKeys | None, lists_current: bool = True, progress: Progress = no_progress) -> bool:
    """Sends later than `after` into `index.history`, and `index.history_mark` (the last send row its base
    holds): the snapshot's base and the rows after it (returns True), or every row of the table (in time order, a
    chunk of rows at a time, each a `progress` step) when the snapshot does not agree. Keys by account are made
    with the scope ids the snapshot's lists brought: with the lists read from the tables instead
    (`lists_current` false), they are not."""
    usable = snap is not None and (lists_current or keys_name == "number")
    if usable and _history_agrees(db, snap.meta, keys_name, after):
        index.history = CompactHistory(snap.history, snap.history_rows)
        index.history_mark = snap.meta["history_row"]
        # in arrays, a chunk of rows at a time, as a tail over the base: a row a Python tuple took 2.5 µs and 180
        # bytes a send (a restart after a burst replays up to a few hundred thousand)
        total = db.execute(LAST_SEND_ROW).fetchone()[0] - index.history_mark
        progress("the sends since the snapshot", 0, total)
        _, keys, times, big = send_arrays_after(
            db, index.history_mark, key_of,
            read=lambda n: progress("the sends since the snapshot", n, total))
        recent = times > after
        index.history.add_tail(keys[recent], times[recent])
        for key, sent_at in big:  # keys past int64 (an account's scope past 8191): the overlay's, one by one
            if sent_at > after:
                index.record_send(key, sent_at)
        return True
    index.history_mark = db.execute(LAST_SEND_ROW).fetchone()[0]
    # about how many rows: those from the first one after `after` (rows come in time order) to the mark
    first = db.execute("SELECT rowid FROM send_history WHERE sent_at > ? ORDER BY sent_at LIMIT 1",
                       (after,)).fetchone()
    total = max(0, index.history_mark - first[0] + 1) if first else 0
    keys, times, big, done = [], [], [], 0
    if key_of is None:
        cursor = db.execute("SELECT number, sent_at FROM send_history WHERE rowid <= ? AND sent_at > ? "
                            "ORDER BY sent_at", (index.history_mark, after))
        while rows := cursor.fetchmany(CHUNK):
            pairs = np.array(rows, dtype=[("k", np.int64), ("t", np.float64)])
            keys.append(pairs["k"])
            times.append(pairs["t"])
            done += len(rows)
            progress("send history", done, total)
    else:  # keyed by account too (`[rules.frequency] scope = "account"`)
        cursor = db.execute("SELECT number, account, sent_at FROM send_history WHERE rowid <= ? AND sent_at > ? "
                            "ORDER BY sent_at", (index.history_mark, after))
        while rows := cursor.fetchmany(CHUNK):
            chunk_keys, chunk_times, chunk_big = _keyed(rows, key_of)
            keys.append(chunk_keys)
            times.append(chunk_times)
            big.extend(chunk_big)
            done += len(rows)
            progress("send history", done, total)
    index.history = CompactHistory(HistoryArrays.from_chunks(keys, times) if keys else None)
    for key, sent_at in big:  # keys past int64 (an account's scope past 8191): the overlay's, one by one
        index.record_send(key, sent_at)
    return False


def _keyed(rows: list[tuple[int, str, float]], key_of: ScopedKeys) -> tuple[np.ndarray, np.ndarray, list]:
    """The history keys and times of send rows (number, account, sent_at) keyed by account, and apart the sends
    whose key lies past int64."""
    return scoped_arrays(account_sends(rows), key_of)


# --- rolling forward ----------------------------------------------------------------------------------------

def send_arrays_after(db: sqlite3.Connection, row: int, key_of: ScopedKeys | None,
                      counted: bool = True, read: Callable[[int], None] = lambda n: None
                      ) -> tuple[int, np.ndarray, np.ndarray, list[tuple[int, float]]]:
    """The send rows after `row` as the history's keys and times (arrays, in row order), read CHUNK rows at a
    time (`read`: how many so far, after each); the last row's id (`row` when there are none); and the sends
    whose key is past int64, which no array holds. Not `counted` (no rule counts sends): none, and the table's
    last row. A row costs a tuple only while its chunk is converted: 16 bytes a send are kept."""
    # the last row first, then the rows up to it: the same rows as in one read transaction, and no rowid a row
    # (a quarter of what converting a row costs)
    last = max(row, db.execute(LAST_SEND_ROW).fetchone()[0])
    if not counted:
        return last, _NO_INTS, _NO_FLOATS, []
    keys, times, big, done = [], [], [], 0
    if key_of is None:
        cursor = db.execute(SENDS_BETWEEN, (row, last))
        while rows := cursor.fetchmany(CHUNK):
            sends = np.array(rows, dtype=[("k", np.int64), ("t", np.float64)])
            keys.append(sends["k"])
            times.append(sends["t"])
            done += len(rows)
            read(done)
    else:  # keyed by account too
        cursor = db.execute("SELECT number, account, sent_at FROM send_history WHERE rowid > ? AND rowid <= ? "
                            "ORDER BY rowid", (row, last))
        while rows := cursor.fetchmany(CHUNK):
            chunk_keys, chunk_times, chunk_big = _keyed(rows, key_of)
            keys.append(chunk_keys)
            times.append(chunk_times)
            big.extend(chunk_big)
            done += len(rows)
            read(done)
    if not keys:
        return last, _NO_INTS, _NO_FLOATS, big
    return last, np.concatenate(keys), np.concatenate(times), big


_NO_INTS = np.zeros(0, dtype=np.int64)
_NO_FLOATS = np.zeros(0, dtype=np.float64)


class _Codes(dict):
    """Each account met, and its index in the order met (a new one takes the next)."""

    def __missing__(self, account: str) -> int:
        self[account] = code = len(self)
        return code


def account_sends(rows: list[tuple[int, str, float]]) -> Sends:
    """Send rows (number, account, sent_at) as Sends with accounts, a column at a time (no Python call a row)."""
    numbers, accounts, times = zip(*rows, strict=True) if rows else ((), (), ())
    codes = _Codes()
    which = np.fromiter(map(codes.__getitem__, accounts), dtype=np.int32, count=len(rows))
    return Sends(0, np.array(numbers, dtype=np.int64), np.array(times, dtype=np.float64), list(codes), which)


def scoped_arrays(sends: Sends, key_of: ScopedKeys) -> tuple[np.ndarray, np.ndarray, list[tuple[int, float]]]:
    """The history keys and times of send rows read with their accounts: scoped(number, its account's scope id),
    a column at a time, with one scope id an account (taken here, on the loop's thread when the daemon runs: it
    may be new to the Index); and apart, as Python ints, the sends whose key lies past int64 (a scope id past
    8191), which no array holds."""
    assert sends.accounts is not None and sends.which is not None
    scope_ids = [key_of.scope_id(account) for account in sends.accounts]
    numbers, times, which = sends.numbers, sends.times, sends.which
    top = int(numbers.max(initial=0))
    fits = np.array([sid * SCOPE_STRIDE + top <= MAX_KEY for sid in scope_ids], dtype=bool)
    offsets = np.array([sid * SCOPE_STRIDE if ok else 0 for sid, ok in zip(scope_ids, fits, strict=True)],
                       dtype=np.int64)
    if fits.all():
        return numbers + offsets[which], times, []
    kept = fits[which]
    gone = np.flatnonzero(~kept)
    big = [(number + scope_ids[code] * SCOPE_STRIDE, at) for number, code, at in
           zip(numbers[gone].tolist(), which[gone].tolist(), times[gone].tolist(), strict=True)]
    return numbers[kept] + offsets[which[kept]], times[kept], big


def head(db: sqlite3.Connection, change_id: int, history_row: int) -> dict[str, Any]:
    """What a snapshot of the lists as of `change_id` and the sends up to `history_row` says of the store, for
    start-up to check that it still agrees (`_lists_agree`, `_history_agrees`)."""
    node = db.execute("SELECT value FROM meta WHERE key = 'node_id'").fetchone()
    last = db.execute("SELECT number, account, sent_at FROM send_history WHERE rowid = ?", (history_row,)).fetchone()
    return {"node_id": node[0] if node else "", "change_id": change_id, "change_at": _change_at(db, change_id),
            "history_row": history_row, "history_last": list(last) if last else None}


def rolled(history: HistoryArrays, keys: np.ndarray, times: np.ndarray, after: float
           ) -> tuple[HistoryArrays, np.ndarray]:
    """The history base with these sends merged in and those at or before `after` dropped, and its table (work
    for a thread: numpy gives up the GIL for the bulk of it)."""
    started = time.monotonic()
    arrays = history.merged(keys, times, after)
    table = KeyTable(arrays.keys)
    log.debug("history rolled forward: %d keys, %d sends in %.2fs", len(arrays.keys), len(arrays.times),
              time.monotonic() - started)
    return arrays, table.rows


def merged_table(table: KeySlots, added: np.ndarray, removed: np.ndarray) -> KeySlots:
    """The set table with an overlay folded in (the same table when it is empty)."""
    if not added.size and not removed.size:
        return table
    return KeySlots.of(merged_keys(table.keys, added, removed))
