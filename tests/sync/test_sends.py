"""Another node's sends count here once each (sync/node.py, `Sync._on_sends`): a batch published again after a
failed publish (the same numbers, perhaps more sends), a duplicate from the broker, a gap asked for by time, and an
answer that overlaps what came live."""

from __future__ import annotations

from smppguard.policy import load_policy
from smppguard.policy.model import Index
from smppguard.store.recipients import masker
from smppguard.sync.node import Sync, SyncSettings
from smppguard.sync.wire import Hello, Sends

N = 8613800000001
T = 1_800_000_000.0
RUN = 1_700_000_000.0


def sync():
    index = Index()
    policy = load_policy({}, {"frequency": {"max": 100}}, [])
    s = Sync(SyncSettings("127.0.0.1", 1883, "b"), writer=None, index=index, policy=lambda: policy, path="",
             mask=masker(), clock=lambda: T + 100)
    asked: list = []
    s._ask = asked.append
    return s, index, asked


def sends(*times: float) -> list[tuple[int, str, float]]:
    return [(N, "acme", t) for t in times]


def counted(index: Index) -> tuple[float, ...]:
    return index.history.get(N, ())


def test_a_batch_published_again_with_the_same_numbers_counts_each_send_once():
    s, index, asked = sync()
    s._on_sends(Sends("a", 1, sends(T + 1, T + 2), run=RUN))
    s._on_sends(Sends("a", 1, sends(T + 1, T + 2, T + 3), run=RUN))  # tried again after a failed publish, one more
    s._on_sends(Sends("a", 3, sends(T + 3), run=RUN))  # the broker's duplicate of the tail
    assert counted(index) == (T + 1, T + 2, T + 3)
    assert [r.kind for r in asked] == ["sends", "held"]  # the run was new: what came before it, and what is held


def test_two_sends_alike_in_one_batch_both_count():
    s, index, _ = sync()
    s._on_sends(Sends("a", 1, sends(T + 1, T + 1), run=RUN))
    assert counted(index) == (T + 1, T + 1)


def test_a_gap_in_the_numbers_is_asked_for_by_time_and_the_answer_fills_it_once():
    s, index, asked = sync()
    s._on_sends(Sends("a", 1, sends(T + 1), run=RUN))
    asked.clear()
    s._on_sends(Sends("a", 4, sends(T + 4), run=RUN))  # 2 and 3 never came
    (r,) = asked
    assert (r.kind, r.origin, r.since, r.until) == ("sends", "a", T + 1, T + 4)
    s._on_sends(Sends("a", 0, sends(T + 2, T + 3), T + 1, T + 4, last=True))
    s._on_sends(Sends("a", 0, sends(T + 2, T + 3), T + 1, T + 4, last=True))  # asked twice, answered twice
    assert counted(index) == (T + 1, T + 2, T + 3, T + 4)


def test_sends_asked_for_are_asked_again_until_the_last_answer_comes():
    s, index, asked = sync()
    s._on_hello(Hello("a", 0, 2, RUN, T + 2, T + 3), retained=True)  # a's run, 2 sends: asked for
    assert [(r.kind, r.until) for r in asked if r.kind == "sends"] == [("sends", T + 2 + 1e-6)]
    o = s.origins["a"]
    o.asked[T + 2 + 1e-6][1] -= 60  # no answer for a minute: a is away
    asked.clear()
    s._ask_again()
    assert [(r.kind, r.since) for r in asked] == [("sends", T + 100 - s._span())]
    s._on_sends(Sends("a", 0, sends(T + 1), T + 100 - s._span(), T + 2 + 1e-6))  # a part, not the last
    o.asked[T + 2 + 1e-6][1] -= 60
    asked.clear()
    s._ask_again()
    assert [r.since for r in asked] == [T + 1]  # from where the answers stopped
    s._on_sends(Sends("a", 0, sends(T + 2), T + 1, T + 2 + 1e-6, last=True))
    assert o.asked == {} and counted(index) == (T + 1, T + 2)
    asked.clear()
    s._ask_again()
    assert asked == []


def test_a_new_run_of_a_node_asks_for_what_its_earlier_runs_sent_before_it():
    s, _, asked = sync()
    s._on_hello(Hello("a", 0, 0, T + 50, 0.0, T + 51), retained=False)  # nothing sent in this run yet
    (r,) = [r for r in asked if r.kind == "sends"]
    assert r.until == T + 50  # the sends of its runs before this one, which this node may never have seen
