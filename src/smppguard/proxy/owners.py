"""Which account got which message id, so that one account cannot query, cancel or replace another's messages
through the proxy (they share one SMSC account only if they share a system_id; several system_ids may share an
SMSC that hands out ids from one sequence).

Rule: bounded by count and by age, the oldest forgotten first; an id not remembered is let through, since the
SMSC then judges it as it always did. Pure: the clock is passed in.

The ids are kept in GENERATIONS, each closed when it holds an eighth of `max_ids` or spans an eighth of
`max_age_s`, and forgotten whole. So an id is remembered for at least `max_age_s` and at most an eighth longer,
and the count stays within `max_ids` (down to seven eighths of it just after the oldest generation goes).
The open generation is a dict of id -> account (the account's one str shared by all its ids). A closed one is two
arrays: the ids' hashes, sorted, and beside each the index of its account in the generation's own short list;
9 bytes an id instead of about 100 (15 MB of a daemon that relays 200,000 messages). An id is known by its 64-bit
hash there: two ids of different accounts would have to share one among 200,000 for a refusal to be wrong.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Callable, NamedTuple

import numpy as np

from ..smpp.commands import CommandId
from ..smpp.status import Status

#: The status each request is refused with when the message is another account's.
REFUSAL = {CommandId.QUERY_SM: Status.RQUERYFAIL, CommandId.CANCEL_SM: Status.RCANCELFAIL,
           CommandId.REPLACE_SM: Status.RREPLACEFAIL}
GENERATIONS = 8


class _Closed(NamedTuple):
    """A closed generation: its ids' hashes, sorted, and the index in `accounts` of each one's account."""

    last: float  # when it took its last id
    hashes: np.ndarray  # int64
    which: np.ndarray  # uint8, or wider for more accounts than 256
    accounts: tuple[str, ...]

    @classmethod
    def of(cls, ids: dict[bytes, str], last: float) -> _Closed:
        accounts = tuple(set(ids.values()))
        hashes = np.fromiter(map(hash, ids), np.int64, len(ids))
        if len(accounts) == 1:  # most often: 3 ms for 25,000 ids, on the loop
            hashes.sort()
            return cls(last, hashes, np.zeros(len(ids), np.uint8), accounts)
        position = {account: i for i, account in enumerate(accounts)}
        which = np.fromiter(map(position.__getitem__, ids.values()), np.min_scalar_type(len(accounts)), len(ids))
        order = hashes.argsort()
        return cls(last, hashes[order], which[order], accounts)

    def get(self, message_id: bytes) -> str | None:
        h = hash(message_id)
        i = int(np.searchsorted(self.hashes, h))
        if i < len(self.hashes) and self.hashes[i] == h:
            return self.accounts[self.which[i]]
        return None


class MessageOwners:
    def __init__(self, max_ids: int = 200_000, max_age_s: float = 86400.0,
                 clock: Callable[[], float] = time.monotonic):
        self.max_ids = max_ids
        self.max_age_s = max_age_s
        self.clock = clock
        self._size = max(1, max_ids // GENERATIONS)  # ids a generation takes
        self._span = max_age_s / GENERATIONS  # and the time it spans
        self._current: dict[bytes, str] = {}  # the generation ids go to: message id -> account
        self._first = self._last = clock()  # when it took its first and its last id
        self._older: deque[_Closed] = deque()  # oldest first
        self._older_count = 0

    def __len__(self) -> int:
        return self._older_count + len(self._current)

    def record(self, message_id: bytes, account: str) -> None:
        """Once per accepted submit: a dict store, and now and then a generation closed and the oldest dropped."""
        now = self.clock()
        current = self._current
        if current and (len(current) >= self._size or now - self._first >= self._span):
            current = self._close(now)
        if not current:
            self._first = now
        current[message_id] = account  # an id seen again is kept twice at most: ids do not repeat
        self._last = now

    def _close(self, now: float) -> dict[bytes, str]:
        """Close the current generation (its time: its last id's) and drop the oldest ones past the bounds, room
        made for one more id; the new current generation."""
        older = self._older
        older.append(_Closed.of(self._current, self._last))
        self._older_count += len(self._current)
        self._current = {}
        cutoff = now - self.max_age_s
        while older and (self._older_count >= self.max_ids or older[0].last < cutoff):
            self._older_count -= len(older.popleft().hashes)
        return self._current

    def refuses(self, message_id: bytes, account: str) -> bool:
        """Whether `account` may not touch this message: another account got its id."""
        found = self._current.get(message_id)
        last = self._last
        if found is None:
            for closed in reversed(self._older):
                found = closed.get(message_id)
                if found is not None:
                    last = closed.last
                    break
            else:
                return False
        return found != account and self.clock() - last <= self.max_age_s


def message_id_of(body: bytes) -> bytes:
    """The message_id C-string at the start of a body (submit_sm_resp, query_sm, cancel_sm, replace_sm)."""
    end = body.find(b"\0")
    return body if end < 0 else body[:end]
