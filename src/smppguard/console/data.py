"""What the console, the API and `smppguard report` read from the store: a number's record and an account's report.

Rule 1: plain functions of a connection, run on a thread of their own by the daemon (never on its loop) and by the
CLI without a daemon; they read, never write.
Rule 2: recipients of audit rows are as [audit] recipient keeps them; a number's rows are found by that form.
Rule 3: times are epoch seconds here; the API and the pages write them as ISO 8601.
"""

from __future__ import annotations

import sqlite3
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from ..store.audit import query as audit_query
from ..store.credit import parts_of
from ..store.lists import list_optouts, show_consent

#: A number's refusals and list operations are looked for this far back.
RECORD_DAYS = 90
#: An account's report covers at most this long (the audit log and send history are read day by day).
MAX_REPORT_S = 400 * 86400.0


def iso(epoch: float | None) -> str | None:
    """ISO 8601 in UTC: 2026-11-28T13:00:00Z (the millisecond only when there is one)."""
    if epoch is None:
        return None
    dt = datetime.fromtimestamp(epoch, timezone.utc)
    text = dt.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
    return (text[:-4] if text.endswith(".000") else text) + "Z"


def number_record(db: sqlite3.Connection, number: int, *, mask: Callable[[int | None, str], str], now: float,
                  failures_within_s: float, limit: int = 50) -> dict[str, Any]:
    """Every list the number is on, its consent, the parts of its credit score, and its recent audit rows."""
    row = db.execute("SELECT source, reason, added_at, actor FROM blacklist WHERE number = ?", (number,)).fetchone()
    blacklist = None
    if row:
        blacklist = {"source": row[0], "reason": row[1], "added_at": row[2], "actor": row[3]}
        pending = db.execute("SELECT reason, actor, requested_at, effective_at FROM pending_removal "
                             "WHERE number = ? AND status = 'pending'", (number,)).fetchone()
        blacklist["removal"] = ({"reason": pending[0], "actor": pending[1], "requested_at": pending[2],
                                 "effective_at": pending[3]} if pending else None)
    dead = db.execute("SELECT reason, marked_at, expires_at FROM dead WHERE number = ? AND expires_at > ?",
                      (number, now)).fetchone()
    tz = db.execute("SELECT zone, set_at FROM tz_override WHERE number = ?", (number,)).fetchone()
    watched = db.execute("SELECT removed_at, reason FROM watched WHERE number = ?", (number,)).fetchone()
    parts = parts_of(db, [number], now, failures_within_s)[number]
    shown = mask(number, "")
    audit = list(audit_query(db, recipients=tuple(dict.fromkeys((shown, f"+{number}"))),
                             since=now - RECORD_DAYS * 86400, limit=limit))
    return {
        "blacklist": blacklist,
        "optouts": [{k: v for k, v in o.items() if k != "number"} for o in list_optouts(db, number=number)],
        "consent": [{k: v for k, v in c.items() if k != "number"} for c in show_consent(db, number)],
        "dead": {"reason": dead[0], "marked_at": dead[1], "expires_at": dead[2]} if dead else None,
        "zone": {"zone": tz[0], "set_at": tz[1]} if tz else None,
        "watched": {"removed_at": watched[0], "reason": watched[1]} if watched else None,
        "credit_parts": parts,
        "audit": audit,
        "audit_recipient": shown,
    }


def period(since: float, until: float) -> list[str]:
    """The UTC days from `since` to `until`, as YYYY-MM-DD, each once."""
    start = datetime.fromtimestamp(since, timezone.utc).date()
    end = datetime.fromtimestamp(until, timezone.utc).date()
    days = []
    while start <= end and len(days) <= 400:
        days.append(start.isoformat())
        start += timedelta(days=1)
    return days


def report(db: sqlite3.Connection, account: str, since: float, until: float | None = None) -> dict[str, Any]:
    """An account's compliance for a period: what it sent, what was held and refused (by rule and by day), the
    opt-outs learned from replies to it, and the complaints against numbers it sent to.

    Sent: its accepted sends on this node (send history); held and refused: every one the audit log counts (a
    folded row counts `count` times, on the day of its first); opt-outs learned: the deliver path's audit rows for
    the account; complaints: blacklist entries of source complaint made in the period for numbers the account
    sent to in it (or in the 30 days before)."""
    until = time.time() if until is None else until
    if until - since > MAX_REPORT_S:
        since = until - MAX_REPORT_S
    days = {d: {"day": d, "sent": 0, "held": 0, "refused": 0} for d in period(since, until)}
    by_rule: dict[str, int] = {}
    for day, rule, action, count in db.execute(
            "SELECT date(at, 'unixepoch'), rule, action, SUM(count) FROM audit WHERE at >= ? AND at <= ? AND "
            "account = ? AND actor = '' GROUP BY 1, 2, 3", (since, until, account)):
        d = days.setdefault(day, {"day": day, "sent": 0, "held": 0, "refused": 0})
        if action == "reject":
            d["refused"] += count
            by_rule[rule] = by_rule.get(rule, 0) + count
        elif action in ("hold", "schedule"):
            d["held"] += count
    for day, count in db.execute(
            "SELECT date(sent_at, 'unixepoch'), COUNT(*) FROM send_history WHERE sent_at >= ? AND sent_at <= ? AND "
            "account = ? AND node IS NULL GROUP BY 1", (since, until, account)):
        days.setdefault(day, {"day": day, "sent": 0, "held": 0, "refused": 0})["sent"] += count
    hold_ends = dict(db.execute(
        "SELECT action, SUM(count) FROM audit WHERE at >= ? AND at <= ? AND account = ? AND rule = 'hold' "
        "GROUP BY action", (since, until, account)).fetchall())
    # what the deliver path learned from replies to the account (store/learning.py's audit rows): an opt-out's
    # reason says "opted out (…)", a lifted one's "opted in again (…)", a confirmed consent's rule is consent
    learned = dict(db.execute(
        "SELECT CASE WHEN rule = 'optout' AND reason LIKE 'opted out%' THEN 'optout' "
        "WHEN rule = 'optout' THEN 'optin' ELSE rule END, SUM(count) FROM audit WHERE at >= ? AND at <= ? AND "
        "account = ? AND actor = 'deliver_sm' AND action = 'learned' GROUP BY 1", (since, until, account)).fetchall())
    (complaints,) = db.execute(
        "SELECT COUNT(*) FROM blacklist b WHERE b.source = 'complaint' AND b.added_at >= ? AND b.added_at <= ? AND "
        "b.number IN (SELECT number FROM send_history WHERE account = ? AND sent_at >= ? AND sent_at <= ?)",
        (since, until, account, since - 30 * 86400, until)).fetchone()
    series = [days[d] for d in sorted(days)]
    totals = {"sent": sum(d["sent"] for d in series), "held": sum(d["held"] for d in series),
              "refused": sum(d["refused"] for d in series)}
    attempted = totals["sent"] + totals["refused"]
    return {
        "account": account, "since": since, "until": until, "totals": totals,
        "refusal_rate": round(totals["refused"] / attempted, 4) if attempted else None,
        "refused_by_rule": dict(sorted(by_rule.items(), key=lambda kv: (-kv[1], kv[0]))),
        "held_outcomes": {k: hold_ends.get(k, 0) for k in ("released", "dropped", "expired", "cancelled")},
        "optouts_learned": learned.get("optout", 0), "optins_learned": learned.get("optin", 0),
        "consents_confirmed": learned.get("consent", 0),
        "complaints": complaints, "days": series,
    }


def accounts(db: sqlite3.Connection, since: float) -> list[str]:
    """The accounts with audit rows or sends since `since`: the console's list of reports."""
    names = {a for (a,) in db.execute("SELECT DISTINCT account FROM audit WHERE at >= ? AND account != ''",
                                      (since,))}
    names |= {a for (a,) in db.execute("SELECT DISTINCT account FROM send_history WHERE sent_at >= ?", (since,))}
    return sorted(names)


def refusals(db: sqlite3.Connection, *, before_id: int | None, limit: int, account: str | None = None,
             rule: str | None = None) -> list[dict[str, Any]]:
    """The newest refusals and holds (audit rows the proxy wrote), newest first, before the row `before_id`."""
    sql = ("SELECT id, at, COALESCE(last_at, at), count, account, sender, recipient, rule, action, status, reason "
           "FROM audit WHERE actor = ''")
    args: list = []
    if before_id is not None:
        sql += " AND id < ?"
        args.append(before_id)
    if account:
        sql += " AND account = ?"
        args.append(account)
    if rule:
        sql += " AND rule = ?"
        args.append(rule)
    sql += " ORDER BY id DESC LIMIT ?"
    args.append(limit)
    return [{"id": i, "first": at, "last": last, "count": count, "account": acc, "sender": sender,
             "recipient": recipient, "rule": rl, "action": action, "status": status, "reason": reason}
            for i, at, last, count, acc, sender, recipient, rl, action, status, reason in db.execute(sql, args)]
