"""Another node's held messages count here as they count there (sync/node.py, `Sync._count_held`): one that starts
counting, moves, stops; a full set from a node that was asked replaces what this node knew of it; a release time
an hour gone with no word since no longer counts."""

from __future__ import annotations

from smppguard.policy import load_policy
from smppguard.policy.model import Index
from smppguard.store.recipients import masker
from smppguard.sync.node import Sync, SyncSettings

N1, N2 = 8613800000001, 8613800000002
T = 1_800_000_000.0


def sync(now: float = T) -> tuple[Sync, Index]:
    index = Index()
    policy = load_policy({}, {"frequency": {"max": 2}}, [])
    s = Sync(SyncSettings("127.0.0.1", 1883, "b"), writer=None, index=index, policy=lambda: policy, path="",
             mask=masker(), clock=lambda: now)
    return s, index


def test_a_held_message_counts_moves_and_stops_counting_as_its_node_says():
    s, index = sync()
    s._count_held("a", (("p1", N1, "acme", T + 600),), full=False)
    assert index.held == {N1: (T + 600,)}
    s._count_held("a", (("p1", N1, "acme", T + 900),), full=False)  # its release moved
    assert index.held == {N1: (T + 900,)}
    s._count_held("a", (("p2", N1, "acme", T + 900),), full=False)  # another one, same time
    assert index.held == {N1: (T + 900, T + 900)}
    s._count_held("a", (("p1", N1, "acme", None),), full=False)  # released, or dropped
    assert index.held == {N1: (T + 900,)}


def test_a_full_set_replaces_what_was_known_of_that_node_and_of_no_other():
    s, index = sync()
    s._count_held("a", (("p1", N1, "acme", T + 600), ("p2", N2, "acme", T + 600)), full=False)
    s._count_held("c", (("p1", N1, "acme", T + 700),), full=False)  # the same proxy id on another node
    s._count_held("a", (("p2", N2, "acme", T + 600),), full=True)  # a, asked: only p2 holds now
    assert index.held == {N1: (T + 700,), N2: (T + 600,)}
    s._count_held("a", (), full=True)
    assert index.held == {N1: (T + 700,)}


def test_a_release_an_hour_gone_with_no_word_since_no_longer_counts():
    s, index = sync()
    s._count_held("a", (("p1", N1, "acme", T - 3601), ("p2", N2, "acme", T - 10)), full=False)
    s._forget_stale_held()
    assert index.held == {N2: (T - 10,)}
