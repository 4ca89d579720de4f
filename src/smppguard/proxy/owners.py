"""Which account got which message id, so that one account cannot query, cancel or replace another's messages
through the proxy (they share one SMSC account only if they share a system_id; several system_ids may share an
SMSC that hands out ids from one sequence).

Rule: bounded by count and by age (the oldest forgotten first); an id not remembered is let through, since the
SMSC then judges it as it always did. Pure: the clock is passed in.
"""

from __future__ import annotations

import time
from typing import Callable

from ..smpp.commands import CommandId
from ..smpp.status import Status

#: The status each request is refused with when the message is another account's.
REFUSAL = {CommandId.QUERY_SM: Status.RQUERYFAIL, CommandId.CANCEL_SM: Status.RCANCELFAIL,
           CommandId.REPLACE_SM: Status.RREPLACEFAIL}


class MessageOwners:
    def __init__(self, max_ids: int = 200_000, max_age_s: float = 86400.0,
                 clock: Callable[[], float] = time.monotonic):
        self.max_ids = max_ids
        self.max_age_s = max_age_s
        self.clock = clock
        self._owner: dict[bytes, tuple[str, float]] = {}  # message id -> (account, when); oldest first
        self._recorded = 0

    def __len__(self) -> int:
        return len(self._owner)

    def record(self, message_id: bytes, account: str) -> None:
        """Once per accepted submit: a dict store, and now and then the oldest ids dropped."""
        owner = self._owner
        owner[message_id] = (account, self.clock())  # an id seen again keeps its place: ids do not repeat
        if len(owner) > self.max_ids:
            del owner[next(iter(owner))]
        self._recorded += 1
        if not self._recorded & 1023:
            self._forget_old()

    def _forget_old(self) -> None:
        owner = self._owner
        cutoff = self.clock() - self.max_age_s
        while owner:
            key = next(iter(owner))
            if owner[key][1] >= cutoff:
                return
            del owner[key]

    def refuses(self, message_id: bytes, account: str) -> bool:
        """Whether `account` may not touch this message: another account got its id."""
        found = self._owner.get(message_id)
        return found is not None and found[0] != account and self.clock() - found[1] <= self.max_age_s


def message_id_of(body: bytes) -> bytes:
    """The message_id C-string at the start of a body (submit_sm_resp, query_sm, cancel_sm, replace_sm)."""
    end = body.find(b"\0")
    return body if end < 0 else body[:end]
