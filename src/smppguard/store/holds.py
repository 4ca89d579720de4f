"""The hold queue's tables: held messages, the message-id map of released ones, and deliveries owed to senders.

Each function takes a connection and runs inside the caller's transaction: the daemon's calls go through the
writer (one group commit; the durability future tells the hold queue when an OK may be given), the CLI's
through `lists.transaction`. SQL only: what to hold and when to release is proxy/holds.py's.

States of a held row: "held" (waiting for `release_at`), "sending" (marked durably before its submit left: a
crash then can never send it twice) and "unknown" (it was "sending" when the daemon stopped, or the SMSC never
answered: it may or may not have reached the SMSC, so it is not sent again by itself; `queue release` does).
A released message leaves the table; its SMSC id is kept in `message_map` for `[hold] map_ttl`.
"""

from __future__ import annotations

import sqlite3
from typing import Callable, Iterable, NamedTuple

from .db import write_transaction

HELD, SENDING, UNKNOWN = "held", "sending", "unknown"

_COLUMNS = ("seq, id, account, sender, recipient, number, command_id, pdu, grp, part, parts, held_at, release_at, "
            "expires_at, receipt, state, forced")


class HeldRow(NamedTuple):
    seq: int  # 0 until inserted
    id: str  # the proxy message id the sender got (the destinations of one submit_multi share it)
    account: str
    sender: str
    recipient: str  # destination_addr as sent
    number: int | None  # E.164, when it could be read
    command_id: int
    pdu: bytes  # the request as the sender sent it (a submit_multi: with only this destination)
    grp: str  # the parts of one concatenated message share it; "" for a message in one part
    part: int
    parts: int
    held_at: float
    release_at: float
    expires_at: float
    receipt: bool  # the sender asked for a delivery receipt
    state: str = HELD
    forced: bool = False  # `queue release`: goes now, whatever the quiet hours say

    @classmethod
    def of(cls, row: tuple) -> "HeldRow":
        r = list(row)
        r[7] = bytes(r[7])
        r[14], r[16] = bool(r[14]), bool(r[16])
        return cls(*r)


def add(db: sqlite3.Connection, rows: Iterable[HeldRow]) -> list[int]:
    """Insert held messages; their seq numbers, in order."""
    out = []
    for r in rows:
        cur = db.execute(f"INSERT INTO held ({_COLUMNS}) VALUES (NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         (r.id, r.account, r.sender, r.recipient, r.number, r.command_id, r.pdu, r.grp, r.part,
                          r.parts, r.held_at, r.release_at, r.expires_at, int(r.receipt), r.state, int(r.forced)))
        out.append(cur.lastrowid)
    return out


def due(db: sqlite3.Connection, now: float, accounts: Iterable[str] | None, limit: int) -> list[HeldRow]:
    """Held messages due now, whole concatenated messages at a time, oldest first, parts in order.
    `accounts`: only those (the ones with a bind to send through); None: every account."""
    where = "state = 'held' AND release_at <= ?"
    args: list = [now]
    if accounts is not None:
        accounts = list(accounts)
        if not accounts:
            return []
        where += f" AND account IN ({','.join('?' * len(accounts))})"
        args += accounts
    rows = [HeldRow.of(r) for r in db.execute(
        f"SELECT {_COLUMNS} FROM held WHERE {where} ORDER BY release_at, seq LIMIT ?", (*args, limit))]
    groups = {r.grp for r in rows if r.grp}
    if groups:  # a group cut by the limit comes whole: its parts go together or not at all
        seen = {r.seq for r in rows}
        for g in groups:
            rows += [HeldRow.of(r) for r in db.execute(f"SELECT {_COLUMNS} FROM held WHERE grp = ? AND state = 'held'",
                                                        (g,)) if r[0] not in seen]
    first: dict[str, float] = {}
    for r in rows:
        if r.grp:
            first[r.grp] = min(first.get(r.grp, r.release_at), r.release_at)
    rows.sort(key=lambda r: (first.get(r.grp, r.release_at), r.grp, r.part, r.seq))
    return rows


def mark_sending(db: sqlite3.Connection, seqs: Iterable[int]) -> set[int]:
    """Mark these "sending" (before they are submitted); the ones still held, which are the ones to send (a row
    the CLI dropped meanwhile is not)."""
    marked = set()
    for seq in seqs:
        if db.execute("UPDATE held SET state = 'sending' WHERE seq = ? AND state = 'held'", (seq,)).rowcount:
            marked.add(seq)
    return marked


def remove(db: sqlite3.Connection, seqs: Iterable[int]) -> int:
    return sum(db.execute("DELETE FROM held WHERE seq = ?", (s,)).rowcount for s in seqs)


def release_later(db: sqlite3.Connection, changes: Iterable[tuple[int, float]]) -> None:
    """Back to "held" with a new release time: (seq, release_at)."""
    db.executemany("UPDATE held SET state = 'held', release_at = ? WHERE seq = ?", [(t, s) for s, t in changes])


def set_state(db: sqlite3.Connection, seqs: Iterable[int], state: str) -> None:
    db.executemany("UPDATE held SET state = ? WHERE seq = ?", [(state, s) for s in seqs])


def sent(db: sqlite3.Connection, seq: int, account: str, proxy_id: str, smsc_id: str, map_until: float) -> None:
    """The SMSC accepted a released message: it leaves the queue, and its SMSC id maps to the proxy id."""
    db.execute("DELETE FROM held WHERE seq = ?", (seq,))
    if smsc_id:
        map_id(db, account, smsc_id, proxy_id, map_until)


def map_id(db: sqlite3.Connection, account: str, smsc_id: str, proxy_id: str, map_until: float) -> None:
    db.execute("INSERT OR REPLACE INTO message_map (account, smsc_id, proxy_id, expires_at) VALUES (?, ?, ?, ?)",
               (account, smsc_id, proxy_id, map_until))


def reconcile(db: sqlite3.Connection) -> int:
    """At start: what was "sending" when the daemon stopped may have reached the SMSC. It becomes "unknown",
    never sent again by itself. Returns how many."""
    return db.execute("UPDATE held SET state = 'unknown' WHERE state = 'sending'").rowcount


def held_ids(db: sqlite3.Connection) -> list[tuple[str, str, str, int | None, float, int]]:
    """(proxy id, account, state, number, release time, part) of every row: what the daemon keeps in memory to
    answer query_sm and cancel_sm, to bound the queue, and to count held messages for the frequency cap."""
    return db.execute("SELECT id, account, state, number, release_at, part FROM held").fetchall()


def mappings(db: sqlite3.Connection, now: float) -> list[tuple[str, str, str, float]]:
    return db.execute("SELECT account, smsc_id, proxy_id, expires_at FROM message_map WHERE expires_at > ?",
                      (now,)).fetchall()


def prune_mappings(db: sqlite3.Connection, now: float) -> int:
    return db.execute("DELETE FROM message_map WHERE expires_at <= ?", (now,)).rowcount


def by_id(db: sqlite3.Connection, proxy_id: str) -> list[HeldRow]:
    return [HeldRow.of(r) for r in db.execute(f"SELECT {_COLUMNS} FROM held WHERE id = ? ORDER BY part, seq",
                                              (proxy_id,))]


def replace_pdu(db: sqlite3.Connection, seq: int, pdu: bytes, expires_at: float | None, receipt: bool) -> bool:
    """replace_sm of a held message: the new request, while it is still held."""
    sets, args = "pdu = ?, receipt = ?", [pdu, int(receipt)]
    if expires_at is not None:
        sets += ", expires_at = ?"
        args.append(expires_at)
    return bool(db.execute(f"UPDATE held SET {sets} WHERE seq = ? AND state = 'held'", (*args, seq)).rowcount)


def release_now(db: sqlite3.Connection, proxy_id: str, now: float) -> int:
    """`queue release`: due now, whatever the quiet hours say (the other rules still decide). An "unknown" row
    goes again too: the operator has judged that it did not reach the SMSC."""
    return db.execute("UPDATE held SET state = 'held', forced = 1, release_at = ? WHERE id = ? AND state != "
                      "'sending'", (now, proxy_id)).rowcount


def listing(db: sqlite3.Connection, *, account: str | None = None, due_before: float | None = None,
            limit: int = 1000) -> list[HeldRow]:
    where, args = [], []
    if account is not None:
        where.append("account = ?")
        args.append(account)
    if due_before is not None:
        where.append("release_at < ?")
        args.append(due_before)
    sql = f"SELECT {_COLUMNS} FROM held" + (f" WHERE {' AND '.join(where)}" if where else "")
    return [HeldRow.of(r) for r in db.execute(sql + " ORDER BY release_at, seq LIMIT ?", (*args, limit))]


def due_by_account(db: sqlite3.Connection, now: float) -> dict[str, int]:
    """How many held messages of each account are due now."""
    return dict(db.execute("SELECT account, COUNT(*) FROM held WHERE state = 'held' AND release_at <= ? "
                           "GROUP BY account", (now,)).fetchall())


def counts(db: sqlite3.Connection) -> dict[str, int]:
    return dict(db.execute("SELECT state, COUNT(*) FROM held GROUP BY state").fetchall())


# --- deliveries owed to a sender (receipts the proxy makes, replies kept while no receiver is bound) -----------

def owe(db: sqlite3.Connection, account: str, body: bytes, kind: str, at: float) -> int:
    return db.execute("INSERT INTO owed (account, body, kind, made_at) VALUES (?, ?, ?, ?)",
                      (account, body, kind, at)).lastrowid


def owed_for(db: sqlite3.Connection, accounts: Iterable[str], limit: int, skip: Iterable[int] = ()
             ) -> list[tuple[int, str, bytes]]:
    accounts, skip = list(accounts), list(skip)
    if not accounts:
        return []
    sql = (f"SELECT seq, account, body FROM owed WHERE account IN ({','.join('?' * len(accounts))})"
           + (f" AND seq NOT IN ({','.join('?' * len(skip))})" if skip else "") + " ORDER BY seq LIMIT ?")
    return [(s, a, bytes(b)) for s, a, b in db.execute(sql, (*accounts, *skip, limit))]


def owed_done(db: sqlite3.Connection, seqs: Iterable[int]) -> None:
    db.executemany("DELETE FROM owed WHERE seq = ?", [(s,) for s in seqs])


def owed_count(db: sqlite3.Connection) -> int:
    return db.execute("SELECT COUNT(*) FROM owed").fetchone()[0]


class QueueStore:
    """The daemon's side: each call is a job in the writer's next group commit, and its future is done when that
    commit is durable (an OK for a held message waits for it)."""

    def __init__(self, writer):
        self.writer = writer

    def add(self, rows: list[HeldRow]):
        return self.writer.submit(lambda db: add(db, rows), urgent=True)  # the sender waits for its OK

    def load(self, now: float):
        """At start: reconcile, then what the daemon keeps in memory."""
        return self.writer.submit(lambda db: (reconcile(db), held_ids(db), mappings(db, now), owed_count(db)))

    def due(self, now: float, accounts: list[str], limit: int, expired: bool):
        """Due rows of these accounts, and (`expired`) expired rows of any account."""
        def job(db):
            rows = due(db, now, accounts, limit) if accounts else []
            if expired:
                seen = {r.seq for r in rows}
                rows += [HeldRow.of(r) for r in db.execute(
                    f"SELECT {_COLUMNS} FROM held WHERE state = 'held' AND expires_at <= ? ORDER BY expires_at "
                    "LIMIT 1000", (now,)) if r[0] not in seen]
            return rows
        return self.writer.submit(job, urgent=True)

    def round(self, mark: list[int], drop: list[int], later: list[tuple[int, float]],
              owed: list[tuple[str, bytes, str, float]]):
        """One release round's decisions in one commit; the seqs marked "sending" (the ones to send)."""
        def job(db):
            remove(db, drop)
            release_later(db, later)
            for o in owed:
                owe(db, *o)
            return mark_sending(db, mark)
        return self.writer.submit(job, urgent=True)

    def sent(self, seq: int, account: str, proxy_id: str, smsc_id: str, map_until: float):
        return self.writer.submit(lambda db: sent(db, seq, account, proxy_id, smsc_id, map_until))

    def map_id(self, account: str, smsc_id: str, proxy_id: str, map_until: float):
        return self.writer.submit(lambda db: map_id(db, account, smsc_id, proxy_id, map_until))

    def finish(self, drop: list[int], later: list[tuple[int, float]], unknown: list[int],
               owed: list[tuple[str, bytes, str, float]]):
        def job(db):
            remove(db, drop)
            release_later(db, later)
            set_state(db, unknown, UNKNOWN)
            for o in owed:
                owe(db, *o)
        return self.writer.submit(job)

    def by_id(self, proxy_id: str):
        return self.writer.submit(lambda db: by_id(db, proxy_id))

    def cancel(self, proxy_id: str, account: str):
        return self.writer.submit(lambda db: db.execute(
            "DELETE FROM held WHERE id = ? AND account = ? AND state = 'held'", (proxy_id, account)).rowcount)

    def replace(self, seq: int, pdu: bytes, expires_at: float | None, receipt: bool):
        return self.writer.submit(lambda db: replace_pdu(db, seq, pdu, expires_at, receipt))

    def owe(self, account: str, body: bytes, kind: str, at: float):
        return self.writer.submit(lambda db: owe(db, account, body, kind, at))

    def owed_for(self, accounts: list[str], limit: int, skip: list[int]):
        return self.writer.submit(lambda db: owed_for(db, accounts, limit, skip))

    def due_accounts(self, now: float):
        """How many messages of each account are due now."""
        return self.writer.submit(lambda db: due_by_account(db, now))

    def owed_done(self, seqs: list[int]):
        return self.writer.submit(lambda db: owed_done(db, seqs))

    def prune(self, now: float):
        return self.writer.submit(lambda db: prune_mappings(db, now))

    def states(self, now: float):
        """What the daemon keeps in memory, again (the CLI may have changed the queue), and how many messages
        of each account are due."""
        return self.writer.submit(lambda db: (held_ids(db), owed_count(db), due_by_account(db, now),
                                              db.execute("SELECT COALESCE(MIN(held_at), 0) FROM held").fetchone()[0]))


# --- the admin's side (smppguard queue) --------------------------------------------------------------------

def drop(db: sqlite3.Connection, proxy_id: str, actor: str, now: float,
         mask: Callable[[int | None, str], str], receipt: Callable[[HeldRow], bytes] | None = None) -> int:
    """`queue drop`: remove a held message (every row of its id) with an audit row each, its recipient as
    `mask` writes it ([audit] recipient), and the receipt `receipt` makes owed to the sender if it asked for one.
    A row being sent now is left alone (its fate is the SMSC's answer). Returns how many were dropped."""
    with write_transaction(db):
        rows = by_id(db, proxy_id)
        gone = [r for r in rows if r.state != SENDING]
        for r in gone:
            db.execute("DELETE FROM held WHERE seq = ?", (r.seq,))
            db.execute("INSERT INTO audit (at, account, sender, recipient, rule, action, status, reason, actor) "
                       "VALUES (?, ?, ?, ?, 'hold', 'dropped', 0, ?, ?)",
                       (now, r.account, r.sender, mask(r.number, r.recipient),
                        f"held message dropped by hand; proxy id {r.id}", actor))
            if r.receipt and receipt is not None:
                owe(db, r.account, receipt(r), "receipt", now)
    return len(gone)
