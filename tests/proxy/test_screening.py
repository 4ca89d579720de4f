"""Screening without sockets: a sender's PDU in, Forward / Answer / Hold out, and what it counts."""

from __future__ import annotations

from smppguard.policy import load_policy
from smppguard.policy.model import ALLOW, Index
from smppguard.proxy.screening import CONCAT_TTL_S, ConcatEntry, Screening

SUB = None


def test_screening_forgets_concatenated_messages_whose_parts_never_came():
    s = Screening(load_policy(), Index())
    s._remember_concat(("a", "S", "1", 7, 3), ConcatEntry(ALLOW, None, 100.0 + CONCAT_TTL_S, SUB), 100.0)
    assert s._maybe_concat(("a", "S", "1", 7, 3), 150.0) is not None
    later = 100.0 + CONCAT_TTL_S + 61
    s._remember_concat(("a", "S", "2", 8, 2), ConcatEntry(ALLOW, None, later + CONCAT_TTL_S, SUB), later)
    assert list(s.concat) == [("a", "S", "2", 8, 2)]  # the stale one went in the sweep, unasked for
