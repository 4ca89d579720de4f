"""The store's side of several sidecars sharing one compliance state (the daemon's sync/ package drives it).

Rule 1, origins: every change-log row has an origin that is the same on every node, (node, seq): a row made
here is stamped with this node's name and the next number of its own sequence before it is published
(`stamp_local`); a remote row keeps the origin it came with. The unique index on (node, seq) makes applying a
row idempotent: the same row twice is written once (`apply_remote` skips it), whatever the order of arrival.
Rule 2, conflicts: for one entry (kind, number, scope, scope key) the change made last wins, by its time:
 - a remote add is applied unless the entry was removed later (its tombstone) or is held with a later time;
 - a remote removal is applied unless the entry is held with a time at or after the removal's (an add made at
   the same instant as a removal wins: for a blacklist or an opt-out that is the safe side).
 The ordering is the same on every node, so every node ends with the same lists, whatever order rows came in.
 A change made on a node is stamped after the newest change that node holds (changelog Rule 4), so a node's own
 changes never lose to what it has already seen. A remote change that loses for some of its numbers is logged
 with the others only, and one that loses for all of them as a row with no number: its place in its origin's
 sequence is kept, so the sequence has no gap and the row can be replayed to other nodes.
Rule 3, the observation period: a blacklist removal that ended an observation period carries the time it was
asked for. A complaint, a carrier or regulator listing or an opt-out of that number made after it was asked for
cancels it, on whichever node it was made: a node that gets the complaint first does not apply the removal, and
a node that had applied the removal when the complaint arrives puts the number back on the list (a change of
its own, newer than both, so every node ends the same).
Rule 4, sends: sends received from other nodes are kept with the node's name; this node answers a catch-up only
with its own sends (node NULL).
"""

from __future__ import annotations

import json
import sqlite3
from typing import Iterable, NamedTuple

from . import changelog
from .changelog import COLUMNS, Change, from_row

#: per list kind: the table, the column with the time its entry was made, and how the scope narrows the key
_ENTRY = {
    "blacklist": ("blacklist", "added_at", ""),
    "optout": ("optout", "added_at", " AND t.scope = :scope AND t.scope_key = :scope_key"),
    "dead": ("dead", "marked_at", ""),
    "consent": ("consent", "granted_at", " AND t.scope_key = :scope_key"),
    "tz": ("tz_override", "set_at", ""),
}
_NEWER_TOMBSTONE = ("EXISTS (SELECT 1 FROM tombstone b WHERE b.kind = :kind AND b.number = j.value "
                    "AND b.scope = :scope AND b.scope_key = :scope_key AND b.at > :at)")
# an add that cancels a blacklist removal asked for before it (changelog._cancel_removals: the same kinds)
_CANCELS = ("op = 'add' AND (kind = 'optout' OR (kind = 'blacklist' "
            "AND COALESCE(json_extract(data, '$.source'), 'manual') != 'manual'))")
ACTOR = "sync"


def cancels_removal(c: Change) -> bool:
    return c.op == "add" and (c.kind == "optout" or (c.kind == "blacklist"
                                                      and c.data.get("source", "manual") != "manual"))


class Applied(NamedTuple):
    """What `apply_remote` did with a batch of remote rows."""

    written: int  # rows logged (each applied for the numbers it won)
    duplicates: int  # rows already held: skipped
    lost: int  # numbers for which a row lost to a newer change
    restored: int  # numbers put back on the blacklist: a removal cancelled by a complaint made meanwhile


# --- this node's rows ---------------------------------------------------------------------------------------

def stamp_local(db: sqlite3.Connection, node: str) -> int:
    """Give the rows made here that have no origin yet (the CLI's, the deliver path's, every row made before sync
    was on) this node's name and the next numbers of its sequence, in the log's order. Returns how many."""
    ids = [r[0] for r in db.execute("SELECT id FROM changelog WHERE node IS NULL ORDER BY id")]
    if not ids:
        return 0
    last = head(db, node)
    db.executemany("UPDATE changelog SET node = ?, seq = ? WHERE id = ?",
                   [(node, last + i, id_) for i, id_ in enumerate(ids, 1)])
    return len(ids)


def unstamped(db: sqlite3.Connection) -> int:
    """How many rows made here wait for their origin (`stamp_local`)."""
    return db.execute("SELECT COUNT(*) FROM changelog WHERE node IS NULL").fetchone()[0]


def published(db: sqlite3.Connection, node: str) -> int:
    """The last of `node`'s rows the broker acknowledged (`set_published`), 0 for none."""
    row = db.execute("SELECT value FROM meta WHERE key = ?", (f"sync.published.{node}",)).fetchone()
    return int(row[0]) if row else 0


def set_published(db: sqlite3.Connection, node: str, seq: int) -> None:
    db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (f"sync.published.{node}", str(seq)))


def head(db: sqlite3.Connection, node: str) -> int:
    """The highest sequence number held of `node`'s rows (0: none)."""
    return db.execute("SELECT COALESCE(MAX(seq), 0) FROM changelog WHERE node = ?", (node,)).fetchone()[0]


def rows_of(db: sqlite3.Connection, node: str, after: int, upto: int | None = None, limit: int = 500) -> list[Change]:
    """`node`'s rows held with seq in (after, upto], in order, at most `limit`."""
    top = upto if upto is not None else 2 ** 62
    return [from_row(r) for r in db.execute(
        f"SELECT {COLUMNS} FROM changelog WHERE node = ? AND seq > ? AND seq <= ? ORDER BY seq LIMIT ?",
        (node, after, top, limit))]


class Holding(NamedTuple):
    """Of one origin's rows: the highest seq held, and the ranges below it that are missing."""

    top: int
    missing: tuple[tuple[int, int], ...]  # (first, last) of each gap

    @property
    def contiguous(self) -> int:
        """The highest seq up to which every row is held."""
        return self.missing[0][0] - 1 if self.missing else self.top


def holdings(db: sqlite3.Connection) -> dict[str, Holding]:
    """Per origin: what is held of its sequence. The gaps are looked for only where the count says there are."""
    out = {}
    for node, top, count in db.execute("SELECT node, MAX(seq), COUNT(*) FROM changelog WHERE node IS NOT NULL "
                                       "GROUP BY node").fetchall():
        missing: list[tuple[int, int]] = []
        if count < top:
            first = db.execute("SELECT MIN(seq) FROM changelog WHERE node = ?", (node,)).fetchone()[0]
            if first > 1:
                missing.append((1, first - 1))
            missing += db.execute(
                "SELECT seq + 1, nxt - 1 FROM (SELECT seq, LEAD(seq) OVER (ORDER BY seq) AS nxt FROM changelog "
                "WHERE node = ?) WHERE nxt > seq + 1 ORDER BY seq", (node,)).fetchall()
        out[node] = Holding(top, tuple(tuple(m) for m in missing))
    return out


# --- remote rows --------------------------------------------------------------------------------------------

def apply_remote(db: sqlite3.Connection, changes: Iterable[Change], *, correlation_threshold: int = 0,
                 now: float | None = None) -> Applied:
    """Apply rows made on other nodes, inside the caller's transaction (the writer's group commit), as the
    CLI's changes are applied (changelog.write: the list tables, the log, cancelled removals, the cross-sender
    correlation), under Rules 1-3. The daemon's change-log tail then brings them into the Index."""
    written = duplicates = lost = restored = 0
    for c in changes:
        if not c.node or c.seq <= 0:
            raise ValueError("a remote change needs its origin (node, seq)")
        if db.execute("SELECT 1 FROM changelog WHERE node = ? AND seq = ?", (c.node, c.seq)).fetchone():
            duplicates += 1
            continue
        if c.kind in changelog.ACCOUNT_KINDS:  # of an account: its table keeps the later change (changelog)
            changelog.write(db, [c], origin=c.origin, actor=c.actor, in_transaction=True, now=now)
            written += 1
            continue
        targets = c.targets()
        if cancels_removal(c) and targets:  # before the conflict rule: the removal it cancels is newer than it
            restored += _restore_cancelled(db, c, targets, now)
        losers = _losers(db, c, targets) if targets else set()
        winners = tuple(n for n in targets if n not in losers) if losers else targets
        lost += len(targets) - len(winners)
        if not winners:
            _log_nothing(db, c)
        else:
            if losers:
                c = c._replace(numbers=winners, number=0) if c.numbers else c
            changelog.write(db, [c], origin=c.origin, actor=c.actor, in_transaction=True,
                            correlation_threshold=correlation_threshold, now=now)
        written += 1
    return Applied(written, duplicates, lost, restored)


def _losers(db: sqlite3.Connection, c: Change, numbers: tuple[int, ...]) -> set[int]:
    """The numbers for which `c` loses to a newer change held here (Rule 2, and Rule 3 for a removal)."""
    table, column, narrow = _ENTRY[c.kind]
    args = {"numbers": json.dumps(numbers), "kind": c.kind, "scope": c.scope, "scope_key": c.scope_key, "at": c.at}
    if c.op == "add":
        newer = (f"{_NEWER_TOMBSTONE} OR EXISTS (SELECT 1 FROM {table} t WHERE t.number = j.value{narrow} "
                 f"AND t.{column} > :at)")
    else:
        newer = f"EXISTS (SELECT 1 FROM {table} t WHERE t.number = j.value{narrow} AND t.{column} >= :at)"
    losers = {r[0] for r in db.execute(f"SELECT value FROM json_each(:numbers) j WHERE {newer}", args)}
    requested = c.data.get("requested_at")
    if c.kind == "blacklist" and c.op == "remove" and requested is not None:
        for number in numbers:
            if number not in losers and _cancelled_meanwhile(db, number, requested, c.at):
                losers.add(number)
    return losers


def _cancelled_meanwhile(db: sqlite3.Connection, number: int, since: float, until: float) -> bool:
    """Whether an add of `number` that cancels a removal was made between the removal's request and its end."""
    return db.execute(
        f"SELECT 1 FROM changelog WHERE at > ? AND at < ? AND {_CANCELS} AND (number = ? OR (numbers IS NOT NULL "
        "AND EXISTS (SELECT 1 FROM json_each(changelog.numbers) WHERE value = ?))) LIMIT 1",
        (since, until, number, number)).fetchone() is not None


def _restore_cancelled(db: sqlite3.Connection, c: Change, numbers: tuple[int, ...], now: float | None) -> int:
    """Rule 3: the numbers whose blacklist removal ended here after `c` (a complaint, listing or opt-out made
    during its observation period) go back on the list, as a change of this node's."""
    found = db.execute(
        "SELECT b.number FROM json_each(?) j JOIN tombstone b ON b.kind = 'blacklist' AND b.number = j.value "
        "AND b.scope = '' AND b.scope_key = '' WHERE b.requested_at IS NOT NULL AND b.requested_at < ? "
        "AND b.at > ? AND NOT EXISTS (SELECT 1 FROM blacklist WHERE number = j.value)",
        (json.dumps(numbers), c.at, c.at)).fetchall()
    if not found:
        return 0
    back = [n for (n,) in found]
    db.execute("UPDATE tombstone SET requested_at = NULL WHERE kind = 'blacklist' AND number IN "
               "(SELECT value FROM json_each(?))", (json.dumps(back),))
    why = (f"blacklist removal cancelled: a {c.kind} entry ({c.data.get('source') or c.scope or 'manual'}) made on "
           f"{c.node} during its observation period")
    source = c.data.get("source", "manual") if c.kind == "blacklist" else "manual"
    changelog.write(db, [Change("blacklist", "add", 0, data={"source": source, "reason": why}, numbers=back)],
                    origin=c.origin, actor=ACTOR, in_transaction=True, now=now, audited=True)
    return len(back)


def _log_nothing(db: sqlite3.Connection, c: Change) -> None:
    """A remote row that lost for every number: logged with no number, so its origin's sequence has no gap."""
    db.execute("INSERT INTO changelog (at, origin, kind, op, number, scope, scope_key, data, actor, node, seq, "
               "numbers) VALUES (?, ?, ?, ?, 0, ?, ?, ?, ?, ?, ?, '[]')",
               (c.at, c.origin, c.kind, c.op, c.scope, c.scope_key,
                json.dumps(c.data, ensure_ascii=False, separators=(",", ":")), c.actor, c.node, c.seq))


# --- sends --------------------------------------------------------------------------------------------------

def record_remote_sends(db: sqlite3.Connection, node: str, sends: Iterable[tuple[int, str, float]],
                        newest: float) -> int:
    """Keep sends accepted by another node (Rule 4), so that they still count after a restart, and the time of the
    newest of its sends counted here (`sends_marks`)."""
    cur = db.executemany("INSERT INTO send_history (number, account, sent_at, node) VALUES (?, ?, ?, ?)",
                         [(n, a, t, node) for n, a, t in sends])
    _set_sends_mark(db, node, newest)
    return cur.rowcount


def sends_marks(db: sqlite3.Connection) -> dict[str, float]:
    """Per node, the time of the newest of its sends counted here: it is asked only for sends after it."""
    return {k[len("sync.sends."):]: float(v) for k, v in
            db.execute("SELECT key, value FROM meta WHERE key LIKE 'sync.sends.%'")}


def _set_sends_mark(db: sqlite3.Connection, node: str, at: float) -> None:
    db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (f"sync.sends.{node}", repr(at)))


def own_sends_since(db: sqlite3.Connection, since: float, limit: int = 5000) -> list[tuple[int, str, float]]:
    """This node's own sends after `since`, oldest first, at most `limit` (a catch-up asked by another node)."""
    return db.execute("SELECT number, account, sent_at FROM send_history WHERE sent_at > ? AND node IS NULL "
                      "ORDER BY sent_at LIMIT ?", (since, limit)).fetchall()


# --- a new node's start ---------------------------------------------------------------------------------------

#: What a copy for another node leaves out: this node's own queue, deliveries, audit and requests are its own.
_NOT_COPIED = ("held", "message_map", "owed", "audit", "pending_removal")


def export_for_new_node(db: sqlite3.Connection, node: str, path: str) -> dict[str, int]:
    """Write a copy of this store from which a new node starts (Rule 1 holds: it then asks only for the rows made
    after it). Its rows made here are stamped first, as this node (`node`); its sends are marked as this node's,
    so the new node counts them without answering them as its own, nor asking for them again; what is this node's
    alone (its hold queue, audit log, pending removals, sync marks and its store identity) is left out. Returns
    counts of what it has."""
    db.execute("BEGIN IMMEDIATE")
    try:
        stamp_local(db, node)
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("VACUUM INTO ?", (path,))
    copy = sqlite3.connect(path, isolation_level=None)
    try:
        copy.execute("BEGIN")
        copy.execute("UPDATE send_history SET node = ? WHERE node IS NULL", (node,))
        for table in _NOT_COPIED:
            copy.execute(f"DELETE FROM {table}")
        copy.execute("DELETE FROM meta WHERE key = 'node_id' OR key LIKE 'sync.%'")
        # the sends it holds of each node: the new node asks each only for those after its newest
        for n, at in copy.execute("SELECT node, MAX(sent_at) FROM send_history WHERE node IS NOT NULL "
                                  "GROUP BY node").fetchall():
            _set_sends_mark(copy, n, at)
        copy.execute("COMMIT")
        copy.execute("VACUUM")
        return {"changes": copy.execute("SELECT COUNT(*) FROM changelog").fetchone()[0],
                "blacklist": copy.execute("SELECT COUNT(*) FROM blacklist").fetchone()[0],
                "optouts": copy.execute("SELECT COUNT(*) FROM optout").fetchone()[0],
                "sends": copy.execute("SELECT COUNT(*) FROM send_history").fetchone()[0]}
    finally:
        copy.close()
