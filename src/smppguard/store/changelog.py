"""List changes: one source of truth for blacklist, opt-out, consent, dead-number and time-zone changes.

Rule 1: a change is applied to its list table and appended to the change log in the same transaction, whoever
makes it (the CLI, the deliver path, an MQTT peer). The daemon tails the log into its Index, so a change made
by another process takes effect live, and the MQTT bridge can publish exactly what was written.
Rule 2: applying a change is idempotent (INSERT OR REPLACE / DELETE), so replays and duplicates are harmless.
The seed's cross-sender correlation lives here: the opt-out that makes `threshold` distinct senders writes a
global opt-out too, as its own change.
"""

from __future__ import annotations

import json
import sqlite3
import time
from itertools import groupby
from typing import Iterable, NamedTuple

KINDS = ("blacklist", "optout", "dead", "consent", "tz")
OPS = ("add", "remove")
COLUMNS = "id, at, origin, kind, op, number, scope, scope_key, data, actor"


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


class Change(_ChangeFields):
    """One list change. Immutable; a NamedTuple because imports make a million of them (a frozen dataclass
    costs several times more to build). Checked on creation."""

    __slots__ = ()

    def __new__(cls, kind: str, op: str, number: int, scope: str = "", scope_key: str = "", data: dict | None = None,
                at: float = 0.0, origin: str = "", actor: str = "", id: int = 0):  # noqa: A002 - the log's column
        if kind not in KINDS or op not in OPS:
            raise ValueError(f"bad change {kind}/{op}")
        if kind == "optout":
            if scope not in ("sender", "account", "global"):
                raise ValueError(f"opt-out scope must be sender, account or global, not {scope!r}")
            if scope == "global":
                scope_key = ""  # one global entry per number, whatever was passed
            elif not scope_key:
                raise ValueError(f"a {scope} opt-out needs the {scope}'s name")
        return super().__new__(cls, kind, op, number, scope, scope_key, {} if data is None else data, at, origin,
                               actor, id)


def from_row(row) -> Change:
    id_, at, origin, kind, op, number, scope, scope_key, data, actor = row
    return Change(kind, op, number, scope, scope_key, json.loads(data), at, origin, actor, id_)


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
_LOG = ("INSERT INTO changelog (at, origin, kind, op, number, scope, scope_key, data, actor) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")


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
                    c.actor or d.actor))
    return out


def write(db: sqlite3.Connection, changes: Iterable[Change], *, origin: str, actor: str = "",
          correlation_threshold: int = 0, now: float | None = None, in_transaction: bool = False) -> int:
    """Apply `changes` and log them in one transaction. Returns how many rows were logged (correlation may add
    global opt-outs). Changes without a time get `now`; without an origin or actor, the ones given here."""
    batch = changes if isinstance(changes, list) else list(changes)
    if not batch:
        return 0
    stamp = _Stamp(time.time() if now is None else now, origin, actor)
    if in_transaction:  # the caller's transaction: its other writes and these commit together
        return _write_batch(db, batch, correlation_threshold, stamp)
    db.execute("BEGIN IMMEDIATE")
    try:
        written = _write_batch(db, batch, correlation_threshold, stamp)
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return written


def _write_batch(db: sqlite3.Connection, batch: list[Change], correlation_threshold: int, d: _Stamp) -> int:
    written = _apply(db, batch, d)
    if correlation_threshold:
        written += _apply(db, _correlate(db, batch, correlation_threshold, d), d)
    return written


def _apply(db: sqlite3.Connection, batch: list[Change], d: _Stamp) -> int:
    for (kind, op), group in groupby(batch, key=lambda c: (c.kind, c.op)):
        rows = list(group)
        sql, params = _SQL[(kind, op)]
        db.executemany(sql, [params(c, c.at or d.at, c.actor or d.actor) for c in rows])
        db.executemany(_LOG, _log_rows(rows, d))
        if op == "add" and kind == "optout":
            _cancel_removals(db, rows, d)
        elif op == "add" and kind == "blacklist":
            # a new complaint, carrier or regulator listing; re-adding by hand (or restoring a backup) is not
            _cancel_removals(db, [c for c in rows if c.data.get("source", "manual") != "manual"], d)
    return len(batch)


def _cancel_removals(db: sqlite3.Connection, rows: list[Change], d: _Stamp) -> None:
    """A new complaint, carrier listing or opt-out cancels a pending blacklist removal (seed section 4), and
    the cancellation is audited like the request was."""
    if not db.execute("SELECT EXISTS (SELECT 1 FROM pending_removal WHERE status = 'pending')").fetchone()[0]:
        return
    for c in rows:
        row = db.execute("SELECT id FROM pending_removal WHERE number = ? AND status = 'pending'",
                         (c.number,)).fetchone()
        if row is None:
            continue
        at, who = c.at or d.at, c.actor or d.actor or c.origin or d.origin
        why = f"new {c.kind} entry ({c.data.get('source') or c.scope or 'manual'})"
        db.execute("UPDATE pending_removal SET status = 'cancelled', closed_at = ?, close_reason = ? WHERE id = ?",
                   (at, f"{why} by {who}", row[0]))
        db.execute("INSERT INTO audit (at, account, sender, recipient, rule, action, status, reason, actor) "
                   "VALUES (?, '', '', ?, 'blacklist-removal', 'cancelled', 0, ?, ?)",
                   (at, f"+{c.number}", why, who))


def _correlate(db: sqlite3.Connection, batch: list[Change], threshold: int, d: _Stamp) -> list[Change]:
    numbers = {c.number: c for c in batch if c.kind == "optout" and c.op == "add" and c.scope == "sender"}
    extra = []
    for number, cause in numbers.items():
        (senders,) = db.execute("SELECT COUNT(*) FROM optout WHERE number = ? AND scope = 'sender'",
                                (number,)).fetchone()
        if senders < threshold:
            continue
        if db.execute("SELECT 1 FROM optout WHERE number = ? AND scope = 'global'", (number,)).fetchone():
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
