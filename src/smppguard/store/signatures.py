"""The registered signatures of each account (the `signature` rule reads them from the Index).

Rule: a signature is registered or removed through the change log, like a list entry (changelog.write), so the
daemon's tail brings it into its Index live and MQTT carries it to the other sidecars; the CLI's change is audited
with the OS user. A signature is kept as `policy.signature.normal` gives it: without brackets, NFKC.
"""

from __future__ import annotations

import sqlite3
from typing import Iterator

from ..policy.signature import normal
from . import changelog
from .changelog import Change
from .db import node_id
from .lists import os_user

MAX_LENGTH = 40  # carriers register signatures of 2 to 12 characters or so: anything longer is a mistake


def check(signature: str) -> str:
    """The signature as kept, or ValueError saying what is wrong with it."""
    sig = normal(signature)
    if not sig:
        raise ValueError("a signature cannot be empty")
    if len(sig) > MAX_LENGTH:
        raise ValueError(f"a signature is at most {MAX_LENGTH} characters, not {len(sig)}")
    if any(c in sig for c in "【】[]\n\r"):
        raise ValueError(f"a signature is the name between the brackets, without brackets: {signature!r}")
    return sig


def add(db: sqlite3.Connection, account: str, signature: str, *, source_addr: str = "", cert_id: str = "",
        actor: str | None = None, now: float | None = None) -> str:
    """Register `signature` for `account` (and only its `source_addr`, if given). Returns it as kept."""
    sig = check(signature)
    if not account:
        raise ValueError("an account (system_id) is needed")
    changelog.write(db, [Change("signature", "add", 0, "", account,
                                {"signature": sig, "source_addr": source_addr, "cert_id": cert_id})],
                    origin=node_id(db), actor=actor or os_user(), now=now, audited=True)
    return sig


def remove(db: sqlite3.Connection, account: str, signature: str, *, source_addr: str = "",
           actor: str | None = None, now: float | None = None) -> bool:
    """Remove a registered signature; False if it was not registered."""
    sig = normal(signature)
    held = db.execute("SELECT 1 FROM signature WHERE account = ? AND source_addr = ? AND signature = ? "
                      "AND removed = 0", (account, source_addr, sig)).fetchone()
    if not held:
        return False
    changelog.write(db, [Change("signature", "remove", 0, "", account,
                                {"signature": sig, "source_addr": source_addr})],
                    origin=node_id(db), actor=actor or os_user(), now=now, audited=True)
    return True


def listed(db: sqlite3.Connection, account: str | None = None) -> Iterator[dict]:
    sql = "SELECT account, source_addr, signature, cert_id, at, actor FROM signature WHERE removed = 0"
    args: tuple = ()
    if account is not None:
        sql += " AND account = ?"
        args = (account,)
    for acc, source, sig, cert, at, actor in db.execute(sql + " ORDER BY account, source_addr, signature", args):
        yield {"account": acc, "signature": f"【{sig}】", "source_addr": source or "*", "id": cert,
               "added_at": at, "actor": actor}
