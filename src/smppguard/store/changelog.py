"""List changes: one source of truth for blacklist, opt-out, consent, dead-number and time-zone changes.

Rule 1: a change is applied to its list table and appended to the change log in the same transaction, whoever
makes it (the CLI, the deliver path, an MQTT peer). The daemon tails the log into its Index, so a change made
by another process takes effect live, and the MQTT bridge can publish exactly what was written.
Rule 2: applying a change is idempotent (INSERT OR REPLACE / DELETE), so replays and duplicates are harmless.
Rule 3: a change may stand for many numbers (`numbers`, a batch): the same kind, op, scope and data for each.
An import writes one log row per batch instead of one per number, and the batch's numbers, written once as a
JSON array, are both that row's `numbers` and what fills the list table (json_each), so a million-row import
makes no Python object per row here. Readers expand a batch: it means exactly its numbers' changes, in order.
The seed's cross-sender correlation lives here: the opt-out that makes `threshold` distinct senders writes a
global opt-out too, as its own change.
Rule 4: a row's origin is (node, seq), the same on every sidecar: NULL for a row made here until the daemon's
sync stamps it (store/peers.py), a remote row's as it came. A change made now is stamped later than every change
the log holds (the newest time + 1 µs, should another node's clock run ahead), so it is the newest of its number
on every node (store/peers.py: the last made wins). A removal leaves a tombstone with its time.
"""

from __future__ import annotations

import json
import sqlite3
import time
from itertools import groupby
from typing import Callable, Iterable, NamedTuple

from .db import write_transaction

KINDS = ("blacklist", "optout", "dead", "consent", "tz", "signature", "review")
#: kinds of change that are of an account (its scope_key), not of numbers: applied by _apply_account
ACCOUNT_KINDS = ("signature", "review")
REVIEW_STATES = ("alert", "held", "released")
OPS = ("add", "remove")
COLUMNS = "id, at, origin, kind, op, number, scope, scope_key, data, actor, numbers, node, seq"


class _ChangeFields(NamedTuple):
    kind: str
    op: str
    number: int
    scope: str = ""
    scope_key: str = ""
    data: dict = {}  # never mutated; each change that carries data passes its own dict
    at: float = 0.0
    origin: str = ""
    actor: str = ""
    id: int = 0
    numbers: tuple[int, ...] = ()  # a batch: these numbers (and `number` is 0)
    node: str = ""  # origin across sidecars: the node that made it ("" until stamped) and its sequence number
    seq: int = 0


class Change(_ChangeFields):
    """One list change, of one number or (a batch) of `numbers`. Immutable; a NamedTuple because a change is
    made per row of what is not a batch (a frozen dataclass costs several times more to build). Checked on
    creation."""

    __slots__ = ()

    def __new__(cls, kind: str, op: str, number: int, scope: str = "", scope_key: str = "", data: dict | None = None,
                at: float = 0.0, origin: str = "", actor: str = "", id: int = 0,  # noqa: A002 - the log's column
                numbers: Iterable[int] = (), node: str = "", seq: int = 0):
        if kind not in KINDS or op not in OPS:
            raise ValueError(f"bad change {kind}/{op}")
        numbers = tuple(numbers)
        if kind in ACCOUNT_KINDS:  # of an account, not of a number (store/signatures.py, store/review.py)
            if number or numbers or not scope_key:
                raise ValueError(f"a {kind} change names its account, and no number")
            if kind == "signature" and not isinstance((data or {}).get("signature"), str):
                raise ValueError("a signature change names its signature")
            if kind == "review" and (data or {}).get("state") not in REVIEW_STATES:
                raise ValueError(f"a review change's state is one of {', '.join(REVIEW_STATES)}")
        elif numbers and number:
            raise ValueError("a batch change has numbers, and number 0")
        if kind == "optout":
            if scope not in ("sender", "account", "global"):
                raise ValueError(f"opt-out scope must be sender, account or global, not {scope!r}")
            if scope == "global":
                scope_key = ""  # one global entry per number, whatever was passed
            elif not scope_key:
                raise ValueError(f"a {scope} opt-out needs the {scope}'s name")
        return super().__new__(cls, kind, op, number, scope, scope_key, {} if data is None else data, at, origin,
                               actor, id, numbers, node, seq)

    def targets(self) -> tuple[int, ...]:
        """The numbers this change is for: a batch's numbers, or the one number (none: a remote change that lost
        to newer ones everywhere, kept for its place in its origin's sequence)."""
        return self.numbers or ((self.number,) if self.number else ())


def from_row(row) -> Change:
    id_, at, origin, kind, op, number, scope, scope_key, data, actor, numbers, node, seq = row
    return Change(kind, op, number, scope, scope_key, json.loads(data), at, origin, actor, id_,
                  json.loads(numbers) if numbers else (), node or "", seq or 0)


_SQL = {
    ("blacklist", "add"): ("INSERT OR REPLACE INTO blacklist (number, source, reason, added_at, actor) "
                           "VALUES (?, ?, ?, ?, ?)",
                           lambda c, at, actor: (c.number, c.data.get("source", "manual"), c.data.get("reason", ""),
                                                 at, actor)),
    ("blacklist", "remove"): ("DELETE FROM blacklist WHERE number = ?", lambda c, at, actor: (c.number,)),
    ("optout", "add"): ("INSERT OR REPLACE INTO optout (number, scope, scope_key, source, keyword, added_at) "
                        "VALUES (?, ?, ?, ?, ?, ?)",
                        lambda c, at, actor: (c.number, c.scope, c.scope_key, c.data.get("source", ""),
                                              c.data.get("keyword", ""), at)),
    ("optout", "remove"): ("DELETE FROM optout WHERE number = ? AND scope = ? AND scope_key = ?",
                           lambda c, at, actor: (c.number, c.scope, c.scope_key)),
    ("dead", "add"): ("INSERT OR REPLACE INTO dead (number, reason, marked_at, expires_at) VALUES (?, ?, ?, ?)",
                      lambda c, at, actor: (c.number, c.data.get("reason", ""), at,
                                            c.data.get("expires_at", at + 90 * 86400))),
    ("dead", "remove"): ("DELETE FROM dead WHERE number = ?", lambda c, at, actor: (c.number,)),
    ("consent", "add"): ("INSERT OR REPLACE INTO consent (number, scope_key, status, source, wording, granted_at, "
                         "confirmed_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                         lambda c, at, actor: (c.number, c.scope_key, c.data.get("status", "confirmed"),
                                               c.data.get("source", ""), c.data.get("wording", ""),
                                               c.data.get("granted_at", at),
                                               at if c.data.get("status", "confirmed") == "confirmed" else None)),
    ("consent", "remove"): ("DELETE FROM consent WHERE number = ? AND scope_key = ?",
                            lambda c, at, actor: (c.number, c.scope_key)),
    ("tz", "add"): ("INSERT OR REPLACE INTO tz_override (number, zone, set_at) VALUES (?, ?, ?)",
                    lambda c, at, actor: (c.number, c.data["zone"], at)),
    ("tz", "remove"): ("DELETE FROM tz_override WHERE number = ?", lambda c, at, actor: (c.number,)),
}
_LOG = ("INSERT INTO changelog (at, origin, kind, op, number, scope, scope_key, data, actor, node, seq) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
_LOG_BATCH = ("INSERT INTO changelog (at, origin, kind, op, number, scope, scope_key, data, actor, node, seq, "
              "numbers) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
_TOMBSTONE = ("INSERT INTO tombstone (kind, number, scope, scope_key, at, requested_at) VALUES (?, ?, ?, ?, ?, ?) "
              "ON CONFLICT DO UPDATE SET at = excluded.at, requested_at = excluded.requested_at "
              "WHERE excluded.at >= tombstone.at")
_TOMBSTONES = ("INSERT INTO tombstone (kind, number, scope, scope_key, at, requested_at) "
               "SELECT ?, value, ?, ?, ?, ? FROM json_each(?) WHERE true "
               "ON CONFLICT DO UPDATE SET at = excluded.at, requested_at = excluded.requested_at "
               "WHERE excluded.at >= tombstone.at")
#: a change made now is later than every change the log holds (Rule 4)
_NEWEST = "SELECT MAX(at) FROM changelog"
TICK = 1e-6
_EACH = "SELECT value FROM json_each(?)"


# Run once, at import, to fill _BATCH_SQL: mutation testing cannot change code that has already run, so it leaves
# it alone; test_batches_of_every_kind_equal_their_numbers_one_by_one checks what it made.
def _for_batch(sql: str) -> tuple[str, Callable[[tuple, str], tuple]]:  # pragma: no mutate block
    """The statement of a one-number change made to apply to every number of a JSON array, and how to bind its
    parameters: the number is always the first parameter, and nothing else depends on it."""
    if sql.startswith("INSERT"):
        head, sep, values = sql.partition(" VALUES (?, ")
        assert sep and values.endswith(")"), sql
        return f"{head} SELECT value, {values[:-1]} FROM json_each(?)", lambda p, numbers: (*p[1:], numbers)
    assert sql.startswith("DELETE") and " WHERE number = ?" in sql, sql
    return sql.replace("number = ?", f"number IN ({_EACH})", 1), lambda p, numbers: (numbers, *p[1:])


_BATCH_SQL = {key: _for_batch(sql) for key, (sql, _) in _SQL.items()}


class _Stamp(NamedTuple):
    """What a change that does not say otherwise was made at, by whom, where."""

    at: float
    origin: str
    actor: str


def _log_rows(rows: list[Change], d: _Stamp) -> list[tuple]:
    # Imports repeat the same few data dicts a million times: encode each distinct one once.
    encoded: dict[tuple, str] = {}
    out = []
    for c in rows:
        try:
            key = tuple(c.data.items())
            text = encoded.get(key)
        except TypeError:  # unhashable values
            key, text = None, None
        if text is None:
            text = json.dumps(c.data, ensure_ascii=False, separators=(",", ":"))
            if key is not None and len(encoded) < 1024:
                encoded[key] = text
        out.append((c.at or d.at, c.origin or d.origin, c.kind, c.op, c.number, c.scope, c.scope_key, text,
                    c.actor or d.actor, c.node or None, c.seq or None))
    return out


def write(db: sqlite3.Connection, changes: Iterable[Change], *, origin: str, actor: str = "",
          correlation_threshold: int = 0, now: float | None = None, in_transaction: bool = False,
          audited: bool = False) -> int:
    """Apply `changes` and log them in one transaction. Returns how many rows were logged (correlation may add
    global opt-outs). Changes without a time get `now`; without an origin or actor, the ones given here.
    `audited`: also an audit row per kind of change in the batch (a person's list operation: `audit` shows it
    with the OS user; an import's batch as one row with its count)."""
    batch = changes if isinstance(changes, list) else list(changes)
    if not batch:
        return 0
    stamp = _Stamp(_now(db) if now is None else now, origin, actor)
    if in_transaction:  # the caller's transaction: its other writes and these commit together
        written = _write_batch(db, batch, correlation_threshold, stamp)
        if audited:
            _audit_operation(db, batch, stamp)
        return written
    with write_transaction(db):
        written = _write_batch(db, batch, correlation_threshold, stamp)
        if audited:
            _audit_operation(db, batch, stamp)
    return written


def _now(db: sqlite3.Connection) -> float:
    """The time of a change made now: the clock, or just after the newest change logged if that is later (Rule 4)."""
    now = time.time()
    newest = db.execute(_NEWEST).fetchone()[0]
    return now if newest is None or newest < now else newest + TICK


def _write_batch(db: sqlite3.Connection, batch: list[Change], correlation_threshold: int, d: _Stamp) -> int:
    written = _apply(db, batch, d)
    if correlation_threshold:
        written += _apply(db, _correlate(db, batch, correlation_threshold, d), d)
    return written


def _shape(c: Change) -> tuple[str, str, bool]:
    return c.kind, c.op, bool(c.numbers)


def _apply(db: sqlite3.Connection, batch: list[Change], d: _Stamp) -> int:
    for (kind, op, many), group in groupby(batch, key=_shape):
        rows = list(group)
        if kind in ACCOUNT_KINDS:
            _apply_account(db, rows, d)
            continue
        if many:
            sql, bind = _BATCH_SQL[(kind, op)]
            params = _SQL[(kind, op)][1]
            for c, log_row in zip(rows, _log_rows(rows, d), strict=True):
                numbers = _json_array(c.numbers)
                db.execute(sql, bind(params(c, c.at or d.at, c.actor or d.actor), numbers))
                db.execute(_LOG_BATCH, (*log_row, numbers))
        else:
            sql, params = _SQL[(kind, op)]
            db.executemany(sql, [params(c, c.at or d.at, c.actor or d.actor) for c in rows])
            db.executemany(_LOG, _log_rows(rows, d))
        if op == "remove":
            _tombstones(db, rows, d)
        if op == "add" and kind == "optout":
            _cancel_removals(db, rows, d)
        elif op == "add" and kind == "blacklist":
            # a new complaint, carrier or regulator listing; re-adding by hand (or restoring a backup) is not
            _cancel_removals(db, [c for c in rows if c.data.get("source", "manual") != "manual"], d)
    return len(batch)


# The later change of a signature wins, an addition on a tie; a removal is kept as a row (peers.py, Rule 2).
# An account's review state: the later change wins.
_ACCOUNT_SQL = {
    ("signature", "add"): ("INSERT INTO signature (account, source_addr, signature, cert_id, at, actor, removed) "
            "VALUES (?, ?, ?, ?, ?, ?, 0) ON CONFLICT DO UPDATE SET cert_id = excluded.cert_id, at = excluded.at, "
            "actor = excluded.actor, removed = 0 WHERE excluded.at >= signature.at"),
    ("signature", "remove"): (
        "INSERT INTO signature (account, source_addr, signature, cert_id, at, actor, removed) "
        "VALUES (?, ?, ?, ?, ?, ?, 1) ON CONFLICT DO UPDATE SET at = excluded.at, actor = excluded.actor, "
        "removed = 1 WHERE excluded.at > signature.at"),
    ("review", "add"): (
        "INSERT INTO account_review (account, state, since, reason, figures, released_at, released_by) "
        "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET state = excluded.state, since = excluded.since, "
        "reason = excluded.reason, figures = excluded.figures, released_at = excluded.released_at, "
        "released_by = excluded.released_by WHERE excluded.since >= account_review.since"),
}


def _account_params(c: Change, at: float, actor: str) -> tuple:
    if c.kind == "signature":
        return (c.scope_key, c.data.get("source_addr", ""), c.data["signature"], c.data.get("cert_id", ""), at,
                actor)
    released = c.data["state"] == "released"
    return (c.scope_key, c.data["state"], at, c.data.get("reason", ""),
            json.dumps(c.data.get("figures", {}), separators=(",", ":")), at if released else None,
            actor if released else None)


def _apply_account(db: sqlite3.Connection, rows: list[Change], d: _Stamp) -> None:
    for c in rows:
        db.execute(_ACCOUNT_SQL[(c.kind, c.op)], _account_params(c, c.at or d.at, c.actor or d.actor))
    db.executemany(_LOG, _log_rows(rows, d))


def _tombstones(db: sqlite3.Connection, rows: list[Change], d: _Stamp) -> None:
    """A removal's time (and, for one that ended an observation period, when it was asked for), per number."""
    for c in rows:
        at = c.at or d.at
        requested = c.data.get("requested_at")
        if c.numbers:
            db.execute(_TOMBSTONES, (c.kind, c.scope, c.scope_key, at, requested, _json_array(c.numbers)))
        elif c.number:
            db.execute(_TOMBSTONE, (c.kind, c.number, c.scope, c.scope_key, at, requested))


def _audit_operation(db: sqlite3.Connection, batch: list[Change], d: _Stamp) -> None:
    """One audit row per (kind, op, scope, scope_key, source) of a list operation: the number as the audit log
    keeps it when there is one, else how many."""
    groups: dict[tuple, list[int]] = {}
    for c in batch:
        if c.kind in ACCOUNT_KINDS:
            _audit_account(db, c, d)
            continue
        key = (c.kind, c.op, c.scope, c.scope_key, c.data.get("source", ""), c.data.get("reason", ""),
               c.data.get("zone", ""))
        groups.setdefault(key, []).extend(c.targets())
    for (kind, op, scope, scope_key, source, reason, zone), numbers in groups.items():
        detail = ", ".join(x for x in (f"{scope} {scope_key}".strip() if scope else "", f"source {source}"
                                       if source else "", zone, reason) if x)
        what = f"{kind} {op}" + (f" ({detail})" if detail else "")
        if len(numbers) == 1:
            db.execute("INSERT INTO audit (at, account, sender, recipient, rule, action, status, reason, actor) "
                       "VALUES (?, '', '', audit_recipient(?), ?, ?, 0, ?, ?)",
                       (d.at, numbers[0], kind, op, what, d.actor))
        else:
            db.execute("INSERT INTO audit (at, account, sender, recipient, rule, action, status, reason, actor) "
                       "VALUES (?, '', '', ?, ?, ?, 0, ?, ?)",
                       (d.at, f"{len(numbers)} numbers", kind, op, what, d.actor))


_AUDIT_ACCOUNT = ("INSERT INTO audit (at, account, sender, recipient, rule, action, status, reason, actor) "
                  "VALUES (?, ?, ?, '', ?, ?, 0, ?, ?)")


def _audit_account(db: sqlite3.Connection, c: Change, d: _Stamp) -> None:
    """The audit row of a change of an account (ACCOUNT_KINDS): its account and, for a signature, the source
    address it is for."""
    if c.kind == "review":
        source, action, what = "", c.data["state"], c.data.get("reason", "")
    else:
        source, action = c.data.get("source_addr", ""), c.op
        what = (f"signature {c.op} 【{c.data['signature']}】 for account {c.scope_key}"
                + (f" from {source}" if source else "")
                + (f" (id {c.data['cert_id']})" if c.data.get("cert_id") else ""))
    db.execute(_AUDIT_ACCOUNT, (d.at, c.scope_key, source, c.kind, action, what, c.actor or d.actor))


def _json_array(numbers: tuple[int, ...]) -> str:
    return json.dumps(numbers, separators=(",", ":"))


def _cancel_removals(db: sqlite3.Connection, rows: list[Change], d: _Stamp) -> None:
    """A new complaint, carrier listing or opt-out cancels a pending blacklist removal (seed section 4), and
    the cancellation is audited like the request was."""
    if not rows:
        return
    # pending removals are few (each one a person's request): read them once, not once per number
    pending = dict(db.execute("SELECT number, id FROM pending_removal WHERE status = 'pending'"))
    if not pending:
        return
    for c in rows:
        for number in c.targets():
            rid = pending.pop(number, None)
            if rid is None:
                continue
            at, who = c.at or d.at, c.actor or d.actor or c.origin or d.origin
            why = f"new {c.kind} entry ({c.data.get('source') or c.scope or 'manual'})"
            db.execute("UPDATE pending_removal SET status = 'cancelled', closed_at = ?, close_reason = ? "
                       "WHERE id = ?", (at, f"{why} by {who}", rid))
            db.execute("INSERT INTO audit (at, account, sender, recipient, rule, action, status, reason, actor) "
                       "VALUES (?, '', '', audit_recipient(?), 'blacklist-removal', 'cancelled', 0, ?, ?)",
                       (at, number, why, who))


def _correlate(db: sqlite3.Connection, batch: list[Change], threshold: int, d: _Stamp) -> list[Change]:
    numbers = {number: c for c in batch if c.kind == "optout" and c.op == "add" and c.scope == "sender"
               for number in c.targets()}
    if not numbers:
        return []
    # one query for the whole batch: the numbers that now have `threshold` senders and no global opt-out yet
    reached = dict(db.execute(
        f"SELECT o.number, COUNT(*) FROM optout o WHERE o.number IN ({_EACH}) AND o.scope = 'sender' "
        "AND NOT EXISTS (SELECT 1 FROM optout g WHERE g.number = o.number AND g.scope = 'global') "
        "GROUP BY o.number HAVING COUNT(*) >= ?", (_json_array(tuple(numbers)), threshold)))
    extra = []
    for number, cause in numbers.items():
        senders = reached.get(number)
        if senders is None:
            continue
        extra.append(Change("optout", "add", number, "global", "",
                            {"source": "correlation", "keyword": cause.data.get("keyword", ""),
                             "reason": f"opted out from {senders} senders"},
                            cause.at or d.at, cause.origin or d.origin, cause.actor or d.actor))
    return extra


def since(db: sqlite3.Connection, after_id: int, limit: int = 10_000) -> list[Change]:
    rows = db.execute(f"SELECT {COLUMNS} FROM changelog WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit))
    return [from_row(r) for r in rows]


def last_id(db: sqlite3.Connection) -> int:
    return db.execute("SELECT COALESCE(MAX(id), 0) FROM changelog").fetchone()[0]
