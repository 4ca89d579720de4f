"""The audit log: the proxy's observer that writes it, how recipients are written into it, and the queries
`smppguard audit` and `stats` run.

Recipients are kept as configured ([audit] recipient): in full, masked (+86138****8000) or hashed with a
secret salt. A query by number applies the same transformation, so it finds rows in every mode (a masked
query can also match other numbers that share the visible digits; the output says so).
Folding ([audit] fold): a refusal or hold that repeats the account, sender, recipient, rule and status within
the fold window of the first one adds to that row's `count` and moves its `last_at`, instead of a row of its
own, so a sender that resends what was refused cannot fill the disk. Every refusal is still counted: `stats`
sums the counts.
"""

from __future__ import annotations

import itertools
import sqlite3
from typing import Iterator, Protocol

from ..hooks import Decided
from ..policy.model import Action
from .recipients import mask_recipient


class AuditWriter(Protocol):
    """What the audit log writes through: store.writer.StoreWriter."""

    def audit(self, at: float, account: str, sender: str, recipient: str, rule: str, action: str, status: int,
              reason: str) -> None: ...

    def audit_fold(self, at: float, account: str, sender: str, recipient: str, rule: str, status: int, count: int,
                   last_at: float) -> None: ...


class _Fold:
    __slots__ = ("first", "count")

    def __init__(self, first: float):
        self.first = first
        self.count = 1


#: Most folds kept open at once: a sender cycling through endless recipients opens one each; past this, the
#: oldest are closed (their rows are final) so memory stays bounded.
MAX_OPEN_FOLDS = 200_000
_SWEEP_S = 60.0


class AuditLog:
    """Observes the proxy's verdicts (hooks.Decided) and writes every one that is not an allow: refusals, holds
    and scheduled messages, with the rule and its reason, folding repeats (see the module's docstring). A later
    part of a concatenated message that shares its first part's refusal is one more refusal the sender got: it
    is counted like a repeat."""

    ignores_allows = True  # hooks.Hooks: no Decided event need be built for an allowed message on its account

    def __init__(self, writer: AuditWriter, mode: str = "masked", salt: str = "", fold: float = 3600.0,
                 max_open: int = MAX_OPEN_FOLDS):
        self.writer = writer
        self.mode = mode
        self.salt = salt
        self.fold = fold
        self.max_open = max_open
        self._open: dict[tuple, _Fold] = {}
        self._next_sweep = 0.0

    def decided(self, e: Decided) -> None:
        v = e.verdict
        if v.action is Action.ALLOW:
            return
        if e.sub is None:  # a distribution list: a name, not a person's number
            recipient = e.destination
        else:
            recipient = mask_recipient(e.sub.recipient, e.sub.address, self.mode, self.salt)
        status = int(v.status)
        at = e.at
        if self.fold > 0:
            key = (e.account, e.sender, recipient, v.rule, status)
            fold = self._open.get(key)
            if fold is not None:
                if at < fold.first + self.fold:
                    fold.count += 1
                    self.writer.audit_fold(fold.first, e.account, e.sender, recipient, v.rule, status, fold.count,
                                           at)
                    return
                del self._open[key]  # its window has passed: a new row, at the end of the insertion order
            self._open[key] = _Fold(at)
            if len(self._open) > self.max_open or at >= self._next_sweep:
                self._sweep(at)
        self.writer.audit(at, e.account, e.sender, recipient, v.rule, v.action.value, status, v.reason)

    def _sweep(self, now: float) -> None:
        """Close the folds whose window has passed, and past max_open the oldest tenth (dicts keep insertion
        order, so the first entries are the oldest; a tenth at a time keeps this off every message)."""
        self._next_sweep = now + _SWEEP_S
        cutoff = now - self.fold
        for k in [k for k, f in self._open.items() if f.first <= cutoff]:
            del self._open[k]
        excess = len(self._open) - self.max_open
        if excess > 0:
            for k in list(itertools.islice(self._open, excess + self.max_open // 10)):
                del self._open[k]


#: What an audit row's `rule` may be besides a policy rule's name (policy.RULE_NAMES, and the lists' kinds
#: changelog.KINDS, which share names): who wrote it. `audit --rule` offers them all.
OTHER_RULES = ("tz", "distribution_lists", "blacklist-removal", "import", "hold", "inbound", "reply")


def query(db: sqlite3.Connection, *, recipients: tuple[str, ...] = (), rule: str | None = None,
          since: float | None = None, limit: int = 1000) -> Iterator[dict]:
    """Audit rows, newest first: `first` and `last` time (the same for a row that stands for one occurrence),
    and `count`, the occurrences it stands for (see folding in the module's docstring)."""
    sql = ("SELECT at, COALESCE(last_at, at), count, account, sender, recipient, rule, action, status, reason, actor "
           "FROM audit WHERE 1 = 1")
    args: list = []
    if recipients:
        sql += f" AND recipient IN ({', '.join('?' * len(recipients))})"
        args.extend(recipients)
    if rule:
        sql += " AND rule = ?"
        args.append(rule)
    if since is not None:
        sql += " AND at >= ?"
        args.append(since)
    sql += " ORDER BY at DESC, id DESC LIMIT ?"
    args.append(limit)
    for at, last, count, account, sender, recipient, rl, action, status, reason, actor in db.execute(sql, args):
        yield {"first": at, "last": last, "count": count, "account": account, "sender": sender,
               "recipient": recipient, "rule": rl, "action": action, "status": status, "reason": reason,
               "actor": actor}


def stats(db: sqlite3.Connection, *, since: float | None = None, utc_offset_s: int = 0) -> list[dict]:
    """Messages per day, account and rule: refusals and holds from the audit log (every one: a folded row counts
    `count` times, on the day of its first), accepted sends from the history: this node's own (another
    sidecar's sends, kept for the frequency cap, are in that sidecar's stats)."""
    since = since if since is not None else 0.0
    rows = []
    for day, account, rule, action, count in db.execute(
            "SELECT date(at + ?, 'unixepoch') AS day, account, rule, action, SUM(count) FROM audit "
            "WHERE at >= ? AND actor = '' GROUP BY day, account, rule, action", (utc_offset_s, since)):
        rows.append({"day": day, "account": account, "rule": rule, "action": action, "count": count})
    for day, account, count in db.execute(
            "SELECT date(sent_at + ?, 'unixepoch') AS day, account, COUNT(*) FROM send_history "
            "WHERE sent_at >= ? AND node IS NULL GROUP BY day, account", (utc_offset_s, since)):
        rows.append({"day": day, "account": account, "rule": "-", "action": "sent", "count": count})
    rows.sort(key=lambda r: (r["day"], r["account"], r["rule"], r["action"]))
    return rows


#: The audit log's tables and indexes, as SQLite's dbstat names them.
AUDIT_OBJECTS = ("audit", "audit_at")


def size(db: sqlite3.Connection) -> int:
    """Bytes the audit log takes in the store file (its table and index pages)."""
    (total,) = db.execute(f"SELECT COALESCE(SUM(pgsize), 0) FROM dbstat WHERE name IN "
                          f"({', '.join('?' * len(AUDIT_OBJECTS))})", AUDIT_OBJECTS).fetchone()
    return total


def prune_oldest(db: sqlite3.Connection, rows: int) -> int:
    """Delete the `rows` oldest audit rows; returns how many were deleted."""
    return db.execute("DELETE FROM audit WHERE id IN (SELECT id FROM audit ORDER BY at LIMIT ?)", (rows,)).rowcount
