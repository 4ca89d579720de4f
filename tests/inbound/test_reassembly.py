"""Concatenated replies: any order, once, time out, bounded."""

from __future__ import annotations

from smppguard.inbound.reassembly import Reassembler
from smppguard.smpp.concat import Concat


def test_parts_in_any_order_are_joined_in_part_order_and_decoded_once():
    r = Reassembler()
    # "退" split across parts in the middle of its UCS2 code unit pair would not decode alone
    text = "退订".encode("utf-16-be")
    assert r.add("k", Concat(9, 3, 3), text[3:], 8, 0.0) == []
    assert r.add("k", Concat(9, 3, 1), text[:1], 8, 0.0) == []
    assert r.add("k", Concat(9, 3, 1), b"dup", 8, 0.0) == []  # a part sent twice counts once
    assert r.add("k", Concat(9, 3, 2), text[1:3], 8, 0.0) == [("k", text, 8, True)]
    assert len(r) == 0


def test_sets_are_kept_apart_by_key_and_reference():
    r = Reassembler()
    r.add("a", Concat(1, 2, 1), b"ST", 0, 0.0)
    r.add("b", Concat(1, 2, 2), b"XX", 0, 0.0)
    r.add("a", Concat(2, 2, 2), b"YY", 0, 0.0)
    assert r.add("a", Concat(1, 2, 2), b"OP", 0, 0.0) == [("a", b"STOP", 0, True)]
    assert len(r) == 2


def test_an_incomplete_set_is_judged_on_what_came_when_its_time_is_up():
    r = Reassembler(timeout_s=60.0)
    r.add("a", Concat(1, 3, 1), b"ST", 0, 100.0)
    r.add("b", Concat(1, 2, 1), b"TD", 0, 130.0)
    assert r.expire(159.9) == []
    assert r.expire(160.0) == [("a", b"ST", 0, False)]
    assert r.expire(190.0) == [("b", b"TD", 0, False)]
    assert len(r) == 0


def test_past_max_sets_the_oldest_is_judged_at_once():
    r = Reassembler(max_sets=2)
    r.add("a", Concat(1, 2, 1), b"A", 0, 0.0)
    r.add("b", Concat(1, 2, 1), b"B", 0, 1.0)
    assert r.add("c", Concat(1, 2, 1), b"C", 0, 2.0) == [("a", b"A", 0, False)]
    assert len(r) == 2
