"""What a delivery receipt says about the number it was for.

Rule: the receipt's stat and err are looked up in a table of codes (configurable; SMPP-NOTES lists the China
Mobile ones). A code that means the number does not exist or is empty makes it dead at once; a suspended
number is dead only after repeated failures (a phone switched off for a day is not a dead number); a carrier
blacklist code (MBBLACK, DBBLACK) puts the number on the blacklist with source `carrier`. A delivered receipt,
or a code in no list, says nothing. Codes are compared without case, and match the stat or the err field
("stat:UNDELIV err:MK:0001" and "stat:MK:0001" are both seen).
"""

from __future__ import annotations

from typing import Iterable, NamedTuple

from ..smpp.receipt import Receipt

DEAD, SUSPENDED, BLACKLISTED = "dead", "suspended", "blacklisted"

DEFAULT_DEAD = ("MK:0001", "DB:0101", "MI:0073", "MI:0210")
DEFAULT_SUSPENDED = ("MK:0005", "MK:0013", "DB:0102")
DEFAULT_BLACKLISTED = ("MBBLACK", "DBBLACK")


class ReceiptCodes(NamedTuple):
    dead: frozenset[str]
    suspended: frozenset[str]
    blacklisted: frozenset[str]

    @classmethod
    def of(cls, dead: Iterable[str] = DEFAULT_DEAD, suspended: Iterable[str] = DEFAULT_SUSPENDED,
           blacklisted: Iterable[str] = DEFAULT_BLACKLISTED) -> "ReceiptCodes":
        return cls(*(frozenset(c.strip().upper() for c in codes) for codes in (dead, suspended, blacklisted)))

    def classify(self, receipt: Receipt) -> tuple[str, str] | None:
        """(what it says, the code that says it), or None."""
        if receipt.delivered:
            return None
        codes = [c for c in (receipt.stat.strip().upper(), receipt.err.strip().upper()) if c]
        for kind, table in ((BLACKLISTED, self.blacklisted), (DEAD, self.dead), (SUSPENDED, self.suspended)):
            for code in codes:
                if code in table:
                    return kind, code
        return None
