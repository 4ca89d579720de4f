"""How the audit log keeps a recipient ([audit] recipient): in full, masked (+86138****8000) or hashed with a
secret salt. One function for every writer of audit rows: the proxy's verdicts, what the deliver path learned,
and the list operations of the admin commands, which SQL reaches as `audit_recipient(number)` (`install`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

MODES = ("full", "masked", "hashed")


def mask_recipient(number: int | None, address: str, mode: str = "masked", salt: str = "") -> str:
    shown = f"+{number}" if number is not None else address
    if mode == "full":
        return shown
    if mode == "hashed":
        from hashlib import sha256  # here: the store's commit process, which never hashes, need not load OpenSSL

        return "sha256:" + sha256((salt + shown).encode()).hexdigest()[:24]
    if len(shown) <= 6:
        return "*" * len(shown)
    return shown[:-8] + "****" + shown[-4:] if len(shown) > 8 else shown[:2] + "****"


def masker(mode: str = "masked", salt: str = "") -> Callable[[int | None, str], str]:
    """mask_recipient with the mode and salt of [audit]: (number, address as sent) -> as the audit log keeps it."""
    return lambda number, address: mask_recipient(number, address, mode, salt)


def install(db: sqlite3.Connection, mode: str = "masked", salt: str = "") -> None:
    """Give this connection the SQL function audit_recipient(number): the number as the audit log keeps it."""
    if mode not in MODES:
        raise ValueError(f"audit recipient mode must be one of {', '.join(MODES)}")
    db.create_function("audit_recipient", 1, lambda number: mask_recipient(number, "", mode, salt),
                       deterministic=True)
