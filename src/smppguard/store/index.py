"""Loading the in-memory Index from the store, and applying change-log rows to it.

Rule: the Index equals the list tables as of `index.change_id`. Loading reads the last change id and the
tables in one read transaction (a WAL snapshot), so tailing from that id misses nothing and repeats nothing
that matters (changes are idempotent). With a current snapshot file (store/snapshot.py) the large tables come
from it instead, and the change-log rows after its id are applied in that same transaction.
"""

from __future__ import annotations

import os
import sqlite3
import time
from typing import Any

from ..policy import Policy
from ..policy.compact import CompactHistory, CompactSet, HistoryArrays, sieve_of
from ..policy.model import GLOBAL, Index, scoped
from ..policy.signature import normal
from . import changelog, snapshot
from .changelog import Change
from .credit import load_low_credit
from .db import node_id


def load_index(db: sqlite3.Connection, policy: Policy, now: float, *,
               failures_within_s: float = 30 * 86400.0, use_snapshot: bool = True) -> Index:
    """The Index as of the store's last change (see `open_index`)."""
    return open_index(db, policy, now, failures_within_s=failures_within_s, use_snapshot=use_snapshot)[0]


def open_index(db: sqlite3.Connection, policy: Policy, now: float, *, failures_within_s: float = 30 * 86400.0,
               use_snapshot: bool = True, progress: snapshot.Progress = snapshot.no_progress) -> tuple[Index, bool]:
    """The Index as of the store's last change, and whether the snapshot file (store/snapshot.py) was current.
    The lists and the send history come from that file when it agrees with the store, and the change log and
    the sends after it are replayed; from the tables when it does not. What a rule owns it asks the policy: how
    far back sends are read and under which key (the rule that counts sends), which recent opt-outs are
    remembered for a confirmation, and for how long (the rule that reads opt-outs). `progress` hears how far
    the load is, from within its chunks (sdnotify.Loading tells systemd)."""
    index = Index(blacklist=CompactSet(), optouts=CompactSet(), history=CompactHistory())
    path = snapshot.store_path(db)
    node = node_id(db) if path else ""
    snap = snapshot.read(snapshot.path_for(path)) if use_snapshot and path else None
    db.execute("BEGIN")
    try:
        current = snapshot.load_lists(db, index, snap, node, progress)
        if current:  # the change log after the snapshot, as the tail would apply it
            rows = changelog.last_id(db) - index.change_id
            done = 0
            while batch := changelog.since(db, index.change_id):
                for change in batch:  # a step a row: an import's row is a batch of 100,000 numbers
                    apply_change(index, change, now, policy)
                    done += 1
                    progress("the list changes since the snapshot", done, rows)
        grace = policy.grace_s
        if grace > 0:
            scope_id = index.scope_id
            for number, scope, key, source, added_at in db.execute(
                    "SELECT number, scope, scope_key, source, added_at FROM optout WHERE added_at >= ?",
                    (now - grace,)):
                if policy.opens_grace(scope, source):
                    index.optout_at[scoped(number, scope_id(scope, key))] = added_at
        index.dead = dict(db.execute("SELECT number, expires_at FROM dead WHERE expires_at > ?", (now,)))
        index.low_credit = load_low_credit(db, policy, now, failures_within_s)
        for number, key, status in db.execute("SELECT number, scope_key, status FROM consent"):
            sid = index.scope_id("account", key) if key else GLOBAL
            index.consent[scoped(number, sid)] = status
        index.tz = dict(db.execute("SELECT number, zone FROM tz_override"))
        index.signatures = {}
        for account, source, signature, at, removed in db.execute(
                "SELECT account, source_addr, signature, at, removed FROM signature"):
            index.set_signature(account, source, normal(signature), at, not removed)
        index.reviews = {account: (since, state) for account, since, state in db.execute(
            "SELECT account, since, state FROM account_review")}
        if policy.history_span_s > 0:
            current = snapshot.load_history(db, index, snap, now - policy.history_span_s,
                                            history_keys_name(policy), policy.history_keys(index),
                                            lists_current=current, progress=progress) and current
    finally:
        db.execute("COMMIT")
    return index, current


def write_snapshot(db: sqlite3.Connection, policy: Policy, now: float, *,
                   progress: snapshot.Progress = snapshot.no_progress) -> dict[str, Any] | None:
    """Write the store's snapshot file (store/snapshot.py) as the store is now, for a start to read instead of the
    tables: what a list import leaves behind when no daemon runs. The lists are read from the tables; the sends
    are the last snapshot's (when they still agree and are keyed by number) with the rows after it merged in, or
    the table's. All of it in one read transaction, so the file is the store as of one change id and one send
    row, as the snapshot's rule asks. Returns what it wrote, or None when another process holds the snapshot's
    lock (a running daemon rolls its own forward) or the store is in memory."""
    path = snapshot.store_path(db)
    if not path:
        return None
    lock = snapshot.take_lock(path)
    if lock is None:
        return None
    try:
        started = time.monotonic()
        old = snapshot.read(snapshot.path_for(path))
        index = Index(blacklist=CompactSet(), optouts=CompactSet(), history=CompactHistory())
        keys_name, span = history_keys_name(policy), policy.history_span_s
        after = now - span
        node = node_id(db)
        db.execute("BEGIN")
        try:
            snapshot.load_lists(db, index, None, node, progress)
            # account keys name scopes by the ids just given to the lists: the old file's sends are not under them
            if (span > 0 and keys_name == "number" and old is not None
                    and snapshot._history_agrees(db, old.meta, keys_name, after)):
                base, mark = old.history, old.meta["history_row"]
            elif span > 0:
                snapshot.load_history(db, index, None, after, keys_name, policy.history_keys(index),
                                      lists_current=False, progress=progress)
                assert isinstance(index.history, CompactHistory)
                base, mark = index.history.base, index.history_mark
            else:
                base, mark = HistoryArrays.empty(), 0
            mark, keys, times, _ = snapshot.send_arrays_after(db, mark, policy.history_keys(index), span > 0)
            hist, hist_rows = snapshot.rolled(base, keys, times, after)
            meta = {**snapshot.head(db, index.change_id, mark), "history_keys": keys_name,
                    "scope_ids": dict(index.scope_ids), "history_after": after}
        finally:
            db.execute("COMMIT")
        black, opt = index.blacklist.base, index.optouts.base
        progress("the snapshot file", 0, None)
        snapshot.write(snapshot.path_for(path), meta, black, opt, hist, hist_rows, sieve_of(black.slots, opt.slots))
        return {"seconds": time.monotonic() - started, "blacklist": len(black), "optouts": len(opt),
                "sends": len(hist.times), "change_id": index.change_id}
    finally:
        os.close(lock)


def history_keys_name(policy: Policy) -> str:
    """How send history is keyed, as a snapshot records it: by number, or by number and account."""
    return "number" if policy.history_keys(Index()) is None else "account"


def apply_change(index: Index, c: Change, now: float, policy: Policy) -> None:
    """Bring one change-log row into the Index (idempotent). A batch row applies to each of its numbers, in
    bulk: a set or dict update per row, whatever the size of the batch."""
    numbers = c.targets()
    add = c.op == "add"
    if c.kind == "blacklist":
        (index.blacklist.update if add else index.blacklist.difference_update)(numbers)
    elif c.kind == "optout":
        sid = index.scope_id(c.scope, c.scope_key)
        keys = [scoped(number, sid) for number in numbers]
        if add:
            index.optouts.update(keys)
            if policy.opens_grace(c.scope, c.data.get("source", "")):
                index.optout_at.update(dict.fromkeys(keys, c.at))
        else:
            index.optouts.difference_update(keys)
            _forget(index.optout_at, keys)
    elif c.kind == "dead":
        if add:
            index.dead.update(dict.fromkeys(numbers, float(c.data.get("expires_at", c.at + 90 * 86400))))
        else:
            _forget(index.dead, numbers)
    elif c.kind == "consent":
        sid = index.scope_id("account", c.scope_key) if c.scope_key else GLOBAL
        keys = [scoped(number, sid) for number in numbers]
        if add:
            index.consent.update(dict.fromkeys(keys, c.data.get("status", "confirmed")))
        else:
            _forget(index.consent, keys)
    elif c.kind == "signature":
        index.set_signature(c.scope_key, c.data.get("source_addr", ""), normal(c.data["signature"]), c.at,
                            add)
    elif c.kind == "review":
        index.set_review(c.scope_key, c.at, c.data["state"])
    elif c.kind == "tz":
        if add:
            index.tz.update(dict.fromkeys(numbers, c.data["zone"]))
        else:
            _forget(index.tz, numbers)
    if c.id > index.change_id:
        index.change_id = c.id


def _forget(table: dict, keys) -> None:
    pop = table.pop
    for key in keys:
        pop(key, None)
