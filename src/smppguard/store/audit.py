"""The audit log: the proxy's observer that writes it, how recipients are written into it, and the queries
`smppguard audit` and `stats` run.

Recipients are kept as configured ([audit] recipient): in full, masked (+86138****8000) or hashed with a
secret salt. A query by number applies the same transformation, so it finds rows in every mode (a masked
query can also match other numbers that share the visible digits; the output says so).
"""

from __future__ import annotations

import hashlib
import sqlite3
from typing import Callable, Iterator

from ..hooks import Decided
from ..policy.model import Action


def mask_recipient(number: int | None, address: str, mode: str = "masked", salt: str = "") -> str:
    shown = f"+{number}" if number is not None else address
    if mode == "full":
        return shown
    if mode == "hashed":
        return "sha256:" + hashlib.sha256((salt + shown).encode()).hexdigest()[:24]
    if len(shown) <= 6:
        return "*" * len(shown)
    return shown[:-8] + "****" + shown[-4:] if len(shown) > 8 else shown[:2] + "****"


class AuditLog:
    """Observes the proxy's verdicts (hooks.Decided) and writes every one that is not an allow: refusals, holds
    and scheduled messages, with the rule and its reason. A later part of a concatenated message that shares its
    first part's verdict is not written again.

    `write(at, account, sender, recipient, rule, action, status, reason)` appends the row (StoreWriter.audit)."""

    ignores_allows = True  # hooks.Hooks: no Decided event need be built for an allowed message on its account

    def __init__(self, write: Callable[..., None], mode: str = "masked", salt: str = ""):
        self.write = write
        self.mode = mode
        self.salt = salt

    def decided(self, e: Decided) -> None:
        v = e.verdict
        if v.action is Action.ALLOW or e.repeat:
            return
        if e.sub is None:  # a distribution list: a name, not a person's number
            recipient = e.destination
        else:
            recipient = mask_recipient(e.sub.recipient, e.sub.address, self.mode, self.salt)
        self.write(e.at, e.account, e.sender, recipient, v.rule, v.action.value, int(v.status), v.reason)


def query(db: sqlite3.Connection, *, recipients: tuple[str, ...] = (), rule: str | None = None,
          since: float | None = None, limit: int = 1000) -> Iterator[dict]:
    sql = "SELECT at, account, sender, recipient, rule, action, status, reason, actor FROM audit WHERE 1 = 1"
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
    for at, account, sender, recipient, rl, action, status, reason, actor in db.execute(sql, args):
        yield {"at": at, "account": account, "sender": sender, "recipient": recipient, "rule": rl,
               "action": action, "status": status, "reason": reason, "actor": actor}


def stats(db: sqlite3.Connection, *, since: float | None = None, utc_offset_s: int = 0) -> list[dict]:
    """Messages per day and rule: refusals and holds from the audit log, accepted sends from the history."""
    since = since if since is not None else 0.0
    rows = []
    for day, rule, action, count in db.execute(
            "SELECT date(at + ?, 'unixepoch') AS day, rule, action, COUNT(*) FROM audit "
            "WHERE at >= ? AND actor = '' GROUP BY day, rule, action", (utc_offset_s, since)):
        rows.append({"day": day, "rule": rule, "action": action, "count": count})
    for day, count in db.execute(
            "SELECT date(sent_at + ?, 'unixepoch') AS day, COUNT(*) FROM send_history "
            "WHERE sent_at >= ? GROUP BY day", (utc_offset_s, since)):
        rows.append({"day": day, "rule": "-", "action": "sent", "count": count})
    rows.sort(key=lambda r: (r["day"], r["rule"], r["action"]))
    return rows
