"""The sending-pattern review's state of each account (review.py watches the figures; policy/review.py holds).

Rule: a state is a change-log row (kind "review"), like a list change: the daemon's tail brings it into the
Index, MQTT carries it to the other sidecars, and the later change wins. `release` also makes the account's held
messages due now: the hold queue screens them again, so quiet hours and the other rules still apply.
"""

from __future__ import annotations

import json
import sqlite3
import time

from . import changelog
from .changelog import Change
from .db import node_id, write_transaction
from .lists import os_user

RELEASE_AFTER_S = 2.0


def mark(db: sqlite3.Connection, account: str, state: str, reason: str, figures: dict, *, actor: str = "review",
         now: float | None = None, in_transaction: bool = False) -> None:
    """Record that `account` tripped the review (state "alert" or "held"), or was released."""
    changelog.write(db, [Change("review", "add", 0, "", account,
                                {"state": state, "reason": reason, "figures": figures})],
                    origin=node_id(db), actor=actor, now=now, audited=True, in_transaction=in_transaction)


def release(db: sqlite3.Connection, account: str, *, actor: str | None = None, now: float | None = None) -> int:
    """Lift the review of `account`; its messages held meanwhile are due now. Returns how many; -1 when the account
    was not under review."""
    state = db.execute("SELECT state FROM account_review WHERE account = ?", (account,)).fetchone()
    if state is None or state[0] == "released":
        return -1
    now = time.time() if now is None else now
    with write_transaction(db):
        mark(db, account, "released", f"released from {state[0]} by an operator", {}, actor=actor or os_user(),
             in_transaction=True)
        # due once a running daemon has read the release from the change log (its tail reads every 0.5 s), so the
        # hold queue's second look does not find the account still held
        return db.execute("UPDATE held SET release_at = ? WHERE account = ? AND state = 'held' AND release_at > ?",
                          (now + RELEASE_AFTER_S, account, now + RELEASE_AFTER_S)).rowcount


def states(db: sqlite3.Connection, account: str | None = None) -> list[dict]:
    sql = ("SELECT r.account, r.state, r.since, r.reason, r.figures, r.released_at, r.released_by, "
           "(SELECT COUNT(*) FROM held h WHERE h.account = r.account AND h.state = 'held') FROM account_review r")
    args: tuple = ()
    if account is not None:
        sql += " WHERE r.account = ?"
        args = (account,)
    out = []
    for acc, state, since, reason, figures, released_at, released_by, held in db.execute(
            sql + " ORDER BY r.since DESC", args):
        out.append({"account": acc, "state": state, "since": since, "reason": reason,
                    "figures": json.loads(figures), "released_at": released_at, "released_by": released_by,
                    "held": held})
    return out
