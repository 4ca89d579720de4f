"""Concatenated MO messages put back together (UDH 8/16-bit or SAR), so "ST" + "OP" is read as "STOP".

Rule 1: parts may arrive in any order; the text is decoded once from the payloads joined in part order (a UCS2
character split between two parts decodes whole).
Rule 2: nothing waits for ever: a set still incomplete `timeout_s` after its first part is judged on the parts
that came (`expire`), and past `max_sets` open sets the oldest is judged at once, so a phone (or an attacker)
sending first parts only cannot grow memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Hashable

from ..smpp.concat import Concat


@dataclass(slots=True)
class _Set:
    first_at: float
    total: int
    data_coding: int
    parts: dict[int, bytes] = field(default_factory=dict)

    def payload(self) -> bytes:
        return b"".join(self.parts[k] for k in sorted(self.parts))


class Reassembler:
    def __init__(self, timeout_s: float = 60.0, max_sets: int = 10_000):
        self.timeout_s = timeout_s
        self.max_sets = max_sets
        self._sets: dict[Hashable, _Set] = {}  # insertion order: oldest first

    def __len__(self) -> int:
        return len(self._sets)

    def add(self, key: Hashable, concat: Concat, payload: bytes, data_coding: int,
            now: float) -> list[tuple[Hashable, bytes, int, bool]]:
        """Add one part; returns the sets that are now to be judged: (key, payload, data_coding, complete) for
        this set once it has every part, and for the oldest set when there are too many open."""
        full_key = (key, concat.reference, concat.total)
        s = self._sets.get(full_key)
        if s is None:
            s = self._sets[full_key] = _Set(now, concat.total, data_coding)
        s.parts.setdefault(concat.seqnum, payload)  # a part sent twice counts once
        out = []
        if len(s.parts) >= s.total:
            del self._sets[full_key]
            out.append((key, s.payload(), s.data_coding, True))
        while len(self._sets) > self.max_sets:
            old_key = next(iter(self._sets))
            old = self._sets.pop(old_key)
            out.append((old_key[0], old.payload(), old.data_coding, False))
        return out

    def expire(self, now: float) -> list[tuple[Hashable, bytes, int, bool]]:
        """The sets whose time is up, judged on the parts that came."""
        out = []
        while self._sets:
            full_key, s = next(iter(self._sets.items()))
            if now - s.first_at < self.timeout_s:
                break
            del self._sets[full_key]
            out.append((full_key[0], s.payload(), s.data_coding, False))
        return out
