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
from dataclasses import dataclass, field
from itertools import groupby
from typing import Iterable

KINDS = ("blacklist", "optout", "dead", "consent", "tz")
OPS = ("add", "remove")
COLUMNS = "id, at, origin, kind, op, number, scope, scope_key, data, actor"


@dataclass(frozen=True, slots=True)
class Change:
    kind: str
    op: str
    number: int
    scope: str = ""
    scope_key: str = ""
    data: dict = field(default_factory=dict, compare=False)
    at: float = 0.0
    origin: str = ""
    actor: str = ""
    id: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS or self.op not in OPS:
            raise ValueError(f"bad change {self.kind}/{self.op}")
        if self.kind == "optout":
            if self.scope not in ("sender", "account", "global"):
                raise ValueError(f"opt-out scope must be sender, account or global, not {self.scope!r}")
            if self.scope == "global" and self.scope_key:
                object.__setattr__(self, "scope_key", "")  # one global entry per number, whatever was passed
            elif self.scope != "global" and not self.scope_key:
                raise ValueError(f"a {self.scope} opt-out needs the {self.scope}'s name")


def from_row(row) -> Change:
    id_, at, origin, kind, op, number, scope, scope_key, data, actor = row
    return Change(kind, op, number, scope, scope_key, json.loads(data), at, origin, actor, id_)


_SQL = {
    ("blacklist", "add"): ("INSERT OR REPLACE INTO blacklist (number, source, reason, added_at, actor) "
                           "VALUES (?, ?, ?, ?, ?)",
                           lambda c: (c.number, c.data.get("source", "manual"), c.data.get("reason", ""), c.at,
                                      c.actor)),
    ("blacklist", "remove"): ("DELETE FROM blacklist WHERE number = ?", lambda c: (c.number,)),
    ("optout", "add"): ("INSERT OR REPLACE INTO optout (number, scope, scope_key, source, keyword, added_at) "
                        "VALUES (?, ?, ?, ?, ?, ?)",
                        lambda c: (c.number, c.scope, c.scope_key, c.data.get("source", ""),
                                   c.data.get("keyword", ""), c.at)),
    ("optout", "remove"): ("DELETE FROM optout WHERE number = ? AND scope = ? AND scope_key = ?",
                           lambda c: (c.number, c.scope, c.scope_key)),
    ("dead", "add"): ("INSERT OR REPLACE INTO dead (number, reason, marked_at, expires_at) VALUES (?, ?, ?, ?)",
                      lambda c: (c.number, c.data.get("reason", ""), c.at,
                                 c.data.get("expires_at", c.at + 90 * 86400))),
    ("dead", "remove"): ("DELETE FROM dead WHERE number = ?", lambda c: (c.number,)),
    ("consent", "add"): ("INSERT OR REPLACE INTO consent (number, scope_key, status, source, wording, granted_at, "
                         "confirmed_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                         lambda c: (c.number, c.scope_key, c.data.get("status", "confirmed"), c.data.get("source", ""),
                                    c.data.get("wording", ""), c.data.get("granted_at", c.at),
                                    c.at if c.data.get("status", "confirmed") == "confirmed" else None)),
    ("consent", "remove"): ("DELETE FROM consent WHERE number = ? AND scope_key = ?",
                            lambda c: (c.number, c.scope_key)),
    ("tz", "add"): ("INSERT OR REPLACE INTO tz_override (number, zone, set_at) VALUES (?, ?, ?)",
                    lambda c: (c.number, c.data["zone"], c.at)),
    ("tz", "remove"): ("DELETE FROM tz_override WHERE number = ?", lambda c: (c.number,)),
}
_LOG = ("INSERT INTO changelog (at, origin, kind, op, number, scope, scope_key, data, actor) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")


def _log_rows(rows: list[Change]) -> list[tuple]:
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
        out.append((c.at, c.origin, c.kind, c.op, c.number, c.scope, c.scope_key, text, c.actor))
    return out


def write(db: sqlite3.Connection, changes: Iterable[Change], *, origin: str, actor: str = "",
          correlation_threshold: int = 0, now: float | None = None, in_transaction: bool = False) -> int:
    """Apply `changes` and log them in one transaction. Returns how many rows were logged (correlation may add
    global opt-outs). Changes without a time get `now`; without an origin, this store's."""
    stamp = time.time() if now is None else now
    batch = [c if c.at and c.origin and c.actor else
             Change(c.kind, c.op, c.number, c.scope, c.scope_key, c.data, c.at or stamp, c.origin or origin,
                    c.actor or actor, c.id)
             for c in changes]
    if not batch:
        return 0
    if in_transaction:  # the caller's transaction: its other writes and these commit together
        return _write_batch(db, batch, correlation_threshold)
    db.execute("BEGIN IMMEDIATE")
    try:
        written = _write_batch(db, batch, correlation_threshold)
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return written


def _write_batch(db: sqlite3.Connection, batch: list[Change], correlation_threshold: int) -> int:
    written = _apply(db, batch)
    if correlation_threshold:
        written += _apply(db, _correlate(db, batch, correlation_threshold))
    return written


def _apply(db: sqlite3.Connection, batch: list[Change]) -> int:
    for (kind, op), group in groupby(batch, key=lambda c: (c.kind, c.op)):
        rows = list(group)
        sql, params = _SQL[(kind, op)]
        db.executemany(sql, [params(c) for c in rows])
        db.executemany(_LOG, _log_rows(rows))
        if op == "add" and kind == "optout":
            _cancel_removals(db, rows)
        elif op == "add" and kind == "blacklist":
            # a new complaint, carrier or regulator listing; re-adding by hand (or restoring a backup) is not
            _cancel_removals(db, [c for c in rows if c.data.get("source", "manual") != "manual"])
    return len(batch)


def _cancel_removals(db: sqlite3.Connection, rows: list[Change]) -> None:
    """A new complaint, carrier listing or opt-out cancels a pending blacklist removal (seed section 4), and
    the cancellation is audited like the request was."""
    if not db.execute("SELECT EXISTS (SELECT 1 FROM pending_removal WHERE status = 'pending')").fetchone()[0]:
        return
    for c in rows:
        row = db.execute("SELECT id FROM pending_removal WHERE number = ? AND status = 'pending'",
                         (c.number,)).fetchone()
        if row is None:
            continue
        why = f"new {c.kind} entry ({c.data.get('source') or c.scope or 'manual'})"
        db.execute("UPDATE pending_removal SET status = 'cancelled', closed_at = ?, close_reason = ? WHERE id = ?",
                   (c.at, f"{why} by {c.actor or c.origin}", row[0]))
        db.execute("INSERT INTO audit (at, account, sender, recipient, rule, action, status, reason, actor) "
                   "VALUES (?, '', '', ?, 'blacklist-removal', 'cancelled', 0, ?, ?)",
                   (c.at, f"+{c.number}", why, c.actor or c.origin))


def _correlate(db: sqlite3.Connection, batch: list[Change], threshold: int) -> list[Change]:
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
                            cause.at, cause.origin, cause.actor))
    return extra


def since(db: sqlite3.Connection, after_id: int, limit: int = 10_000) -> list[Change]:
    rows = db.execute(f"SELECT {COLUMNS} FROM changelog WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit))
    return [from_row(r) for r in rows]


def last_id(db: sqlite3.Connection) -> int:
    return db.execute("SELECT COALESCE(MAX(id), 0) FROM changelog").fetchone()[0]
