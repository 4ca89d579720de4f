"""Sequence numbers and the window of outstanding requests of one session, pure (no event loop).

Rule 1: sequence numbers run 1..0x7FFFFFFF and wrap to 1 (SMPP 3.4 section 3.2), skipping any still
outstanding. Rule 2: every request put in the window leaves it exactly once: by `pop` (its response came) or
by `expired` / `drain` (the session answers it itself). Strategy: one dict in send order; since every entry
gets the same timeout, deadlines are ordered and `expired(now)` stops at the first live entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..smpp.pdu import MAX_SEQUENCE


@dataclass(slots=True)
class Outstanding:
    """A request we sent and still owe an answer for.

    `origin` is the session the request came from (None for our own, e.g. enquire_link) and `origin_sequence`
    its sequence number there, so the response can be renumbered back. `waiter` is a future for local requests
    (their `context`: the pause reason to set when the response arrives, or None).
    """

    command_id: int
    deadline: float
    origin: Any = None
    origin_sequence: int = 0
    waiter: Any = None
    context: Any = None


class Window:
    __slots__ = ("size", "_next", "_outstanding")

    def __init__(self, size: int, first: int = 1):
        self.size = size
        self._next = first
        self._outstanding: dict[int, Outstanding] = {}

    def __len__(self) -> int:
        return len(self._outstanding)

    @property
    def full(self) -> bool:
        return len(self._outstanding) >= self.size

    def allocate(self) -> int:
        seq = self._next
        while seq in self._outstanding:
            seq = 1 if seq >= MAX_SEQUENCE else seq + 1
        self._next = 1 if seq >= MAX_SEQUENCE else seq + 1
        return seq

    def add(self, sequence: int, entry: Outstanding) -> None:
        self._outstanding[sequence] = entry

    def pop(self, sequence: int) -> Outstanding | None:
        return self._outstanding.pop(sequence, None)

    def expired(self, now: float) -> list[tuple[int, Outstanding]]:
        out = []
        for seq, entry in self._outstanding.items():
            if entry.deadline > now:
                break
            out.append((seq, entry))
        for seq, _ in out:
            del self._outstanding[seq]
        return out

    def drain(self) -> list[tuple[int, Outstanding]]:
        out = list(self._outstanding.items())
        self._outstanding.clear()
        return out
