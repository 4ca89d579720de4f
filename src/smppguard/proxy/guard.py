"""What the bridge needs to screen messages: the policy, the Index, the writer, the clock, and the small
per-server state of the hot path (verdicts of concatenated messages in progress, frequency reservations).

Kept apart from bridge.py so the bridge stays the hot path only; nothing here decides anything.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from ..config import AuditConfig
from ..policy import Policy
from ..policy.model import Index, Submission, Verdict
from ..store.audit import mask_recipient

#: How long the verdict of a concatenated message waits for its remaining parts.
CONCAT_TTL_S = 600.0


class Reservation:
    """A frequency reservation shared by the parts of one message; it counts once.

    Committed by the first part the SMSC accepts; released when every part has failed."""

    __slots__ = ("key", "at", "number", "account", "state", "outstanding")

    def __init__(self, key: int, at: float, number: int, account: str):
        self.key, self.at, self.number, self.account = key, at, number, account
        self.state = "reserved"
        self.outstanding = 0


@dataclass
class ConcatEntry:
    verdict: Verdict
    reservation: Reservation | None
    expires: float
    seen: set[int] = field(default_factory=set)
    # When a rule judges the text: the first part's Submission, and the text of each part seen, by seqnum
    sub: Submission | None = None
    texts: dict[int, str] | None = None

    def joined(self) -> str:
        assert self.texts is not None
        return "".join(self.texts[k] for k in sorted(self.texts))


@dataclass
class Guard:
    policy: Policy
    index: Index
    writer: object | None = None  # StoreWriter (None in tests that only need decisions)
    audit_config: AuditConfig = field(default_factory=AuditConfig)
    clock: Callable[[], float] = time.time
    text_codecs: tuple[str, str] = ("gsm03.38", "ascii")
    concat: dict[tuple, ConcatEntry] = field(default_factory=dict)
    _next_sweep: float = 0.0

    def mask(self, number: int | None, address: str) -> str:
        return mask_recipient(number, address, self.audit_config.recipient, self.audit_config.salt)

    def maybe_concat(self, key: tuple, now: float) -> ConcatEntry | None:
        entry = self.concat.get(key)
        if entry is not None and entry.expires < now:
            del self.concat[key]
            return None
        return entry

    def remember_concat(self, key: tuple, entry: ConcatEntry, now: float) -> None:
        """Keep the first part's verdict for the other parts. Messages whose last parts never come would stay
        forever, so at most once a minute the expired ones are dropped here."""
        self.concat[key] = entry
        if now >= self._next_sweep:
            self._next_sweep = now + 60.0
            for k in [k for k, e in self.concat.items() if e.expires < now]:
                del self.concat[k]
