"""A send of another node counts once, whether it came live, in an answer to a catch-up, or both (their ranges
can overlap while a batch is on its way); two sends alike that came the same way both count."""

from __future__ import annotations

from smppguard.sync import node
from smppguard.sync.node import _Seen

S = (8613800138000, "acme", 1_800_000_000.0)


def test_a_send_that_came_live_and_again_in_an_answer_counts_once_either_order():
    seen = _Seen()
    assert seen.first_time(S, live=True) is True
    assert seen.first_time(S, live=False) is False
    seen = _Seen()
    assert seen.first_time(S, live=False) is True
    assert seen.first_time(S, live=True) is False


def test_two_sends_alike_the_same_way_both_count_and_each_is_matched_once():
    seen = _Seen()
    assert [seen.first_time(S, live=True) for _ in range(2)] == [True, True]
    assert [seen.first_time(S, live=False) for _ in range(3)] == [False, False, True]


def test_what_it_remembers_is_bounded(monkeypatch):
    monkeypatch.setattr(node, "SEEN_SENDS", 10)
    seen = _Seen()
    for i in range(100):
        assert seen.first_time((i, "acme", 1.0), live=True)
    assert len(seen.order) == 10 and len(seen.counts) == 10
    assert seen.first_time((0, "acme", 1.0), live=False) is True  # forgotten: counted (the bound's price)
    assert seen.first_time((99, "acme", 1.0), live=False) is False
