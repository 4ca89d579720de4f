"""The compact Index (CompactSet, CompactHistory and the lists' Sieve, as the store loads it) and the plain one (a
set and a dict) hold the same and decide the same, whatever the stream of list changes, sends, refusals, prunes,
roll forwards of the base and times."""

from __future__ import annotations

import dataclasses
from unittest.mock import patch

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from policy_helpers import CN_MOBILE, DAY, HOUR, at, sub

from prefix_rule import RULE as PREFIX_RULE
from prefix_rule import WITH_PREFIX
from smppguard.policy import Action, blacklist, compact, decide, load_policy, optout
from smppguard.policy.compact import (
    CompactHistory,
    CompactSet,
    HistoryArrays,
    KeySlots,
    KeyTable,
    attach_sieve,
    merged_keys,
    place,
    sieve_of,
    unique_keys,
)
from smppguard.policy.model import GLOBAL, Index, scoped
from smppguard.policy.sieve import Sieve

T0 = at(2025, 6, 1, 10)
NUMBERS = [8613800000000 + 7919 * i for i in range(12)]
NUMBERS.append(NUMBERS[0] + (1 << 16))  # its bit in a small sieve is the first number's
POLICY = load_policy(rules={"quiet_hours": {"enabled": False}, "frequency": {"max": 2, "period": "3d",
                                                                            "min_interval": "6h"}})


def test_place_puts_every_key_in_one_slot_reachable_from_its_hash():
    keys = np.unique(np.random.default_rng(5).integers(0, 2**62, 50_000))
    table = KeyTable(keys)
    assert sorted(table.rows[table.rows >= 0].tolist()) == list(range(len(keys)))
    assert [table.row(int(k)) for k in keys[::7]] == list(range(0, len(keys), 7))
    assert table.row(int(keys[0]) + 1) in (-1, 1) and table.row(-5) == -1 and table.row(2**70) == -1
    rows = place(keys, 17)  # a fuller table (0.38): still one key a slot
    assert (rows >= 0).sum() == len(keys)


def test_a_million_sequential_numbers_are_not_one_long_probe_run():
    keys = np.arange(8613800000000, 8613801000000, dtype=np.int64)
    table = KeyTable(keys)
    taken = np.concatenate(([0], (table.rows >= 0).astype(np.int8), [0]))
    runs = np.diff(np.flatnonzero(np.diff(taken)))[::2]
    assert runs.max() < 200  # an identity hash would make this one run of a million


# --- CompactSet == set ----------------------------------------------------------------------------------------

KEYS = st.sampled_from([*NUMBERS[:6], scoped(NUMBERS[0], 3), scoped(NUMBERS[1], 9000)])  # 9000: past int64
set_ops = st.lists(st.one_of(
    st.tuples(st.sampled_from(["add", "discard"]), KEYS),
    st.tuples(st.sampled_from(["update", "difference_update"]), st.lists(KEYS, max_size=5)),
    st.tuples(st.sampled_from(["roll", "abandon"]),
              st.lists(st.tuples(st.sampled_from(["add", "discard", "update", "difference_update"]), KEYS),
                       max_size=4)),
), max_size=30)


@settings(max_examples=300, deadline=None)
@given(start=st.lists(KEYS, max_size=6), ops=set_ops)
def test_property_compact_set_holds_what_a_set_holds(start, ops):
    """...and its sieve has the bit of every key it holds, across roll forwards that build a new sieve as the
    upkeep does (from the new base, while writes go on) and those abandoned."""
    plain, packed = set(start), CompactSet(start)
    sieve = sieve_of(packed.base.slots)
    packed.attach(sieve)
    with patch.object(compact, "VECTORIZE", 3):  # batches of 3 or more look at the base in one pass
        for op, arg in ops:
            if op in ("roll", "abandon"):  # a roll forward: pending(), writes meanwhile, the new base (or none)
                added, removed = packed.pending()
                table = KeySlots.of(merged_keys(packed.base.keys, added, removed))
                new_sieve = sieve_of(table.slots)
                for inner, key in arg:
                    value = [key, key + 1, key] if inner.endswith("update") else key
                    getattr(plain, inner)(value)
                    getattr(packed, inner)(value)
                    assert packed == plain and len(packed) == len(plain)
                if op == "roll":
                    packed.install(table)
                    packed.attach(new_sieve)
                    sieve = new_sieve
                else:
                    packed.abandon()
            else:
                getattr(plain, op)(arg)
                getattr(packed, op)(arg)
            assert packed == plain and len(packed) == len(plain)
            assert all((k in packed) == (k in plain) for k in (*NUMBERS[:7], scoped(NUMBERS[0], 3)))
            assert all(k in sieve for k in plain)


# --- the Index, plain and compact: the same verdicts ---------------------------------------------------------

events = st.lists(st.one_of(
    st.tuples(st.just("list"), st.sampled_from(["blacklist", "optout"]), st.sampled_from(["add", "remove"]),
              st.sampled_from(NUMBERS)),
    st.tuples(st.just("send"), st.sampled_from(NUMBERS), st.booleans()),  # accepted by the SMSC, or refused
    st.tuples(st.just("wait"), st.floats(0, 2 * DAY)),
    st.tuples(st.just("prune"), st.integers(1, 5)),
    st.tuples(st.just("roll")),
), max_size=60)


def roll(index: Index, accepted: list[tuple[int, float]], mark: int, now: float) -> int:
    """What Upkeep.roll_forward does to the Index: the sends the store holds since `mark` merged into the
    history's base (and those past the longest period dropped), the lists' overlays folded into their bases."""
    new = accepted[mark:]
    arrays = index.history.base.merged(np.array([k for k, _ in new], dtype=np.int64),
                                       np.array([t for _, t in new], dtype=np.float64), now - POLICY.history_span_s)
    index.history.install(arrays)
    for packed in (index.blacklist, index.optouts):
        added, removed = packed.pending()
        packed.install(KeySlots.of(merged_keys(packed.base.keys, added, removed)))
    index.listed = attach_sieve(index.blacklist, index.optouts)  # bits only of what the lists hold now
    return len(accepted)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stream=events)
def test_property_compact_index_decides_as_the_plain_one(stream):
    plain = Index()
    packed = Index(blacklist=CompactSet(), optouts=CompactSet(), history=CompactHistory())
    packed.listed = attach_sieve(packed.blacklist, packed.optouts)
    now, accepted, mark = T0, [], 0
    for event in stream:
        if event[0] == "list":
            _, kind, op, number = event
            for index in (plain, packed):
                table = index.blacklist if kind == "blacklist" else index.optouts
                key = number if kind == "blacklist" else scoped(number, index.scope_id("sender", "ACME"))
                (table.add if op == "add" else table.discard)(key)
        elif event[0] == "send":
            _, number, ok = event
            verdicts = [decide(sub(number), index, now, POLICY) for index in (plain, packed)]
            assert verdicts[0] == verdicts[1]
            if verdicts[0].allowed:
                for index in (plain, packed):
                    POLICY.forward(sub(number), verdicts[0], index, now)
                    if not ok:
                        index.release(number, now)
                if ok:
                    accepted.append((number, now))
            now += 1.0
        elif event[0] == "wait":
            now += event[1]
        elif event[0] == "prune":
            for index in (plain, packed):
                index.prune_history(now - POLICY.history_span_s, budget=event[1])
        else:
            mark = roll(packed, accepted, mark, now)
            assert len(packed.history) == sum(1 for _ in packed.history)  # the count kept across a new base
        for number in NUMBERS:
            assert decide(sub(number), plain, now, POLICY) == decide(sub(number), packed, now, POLICY)
            assert decide(sub(number, sender="BETA"), plain, now, POLICY) == \
                decide(sub(number, sender="BETA"), packed, now, POLICY)
        assert packed.blacklist == plain.blacklist and packed.optouts == plain.optouts
    span = now - POLICY.history_span_s
    recent = {k: tuple(t for t in v if t > span) for k, v in plain.history.items()}
    assert {k: tuple(t for t in packed.history[k] if t > span) for k in packed.history
            if any(t > span for t in packed.history[k])} == {k: v for k, v in recent.items() if v}


def test_history_arrays_from_chunks_in_time_order_equal_from_rows_and_the_chunks_are_let_go():
    """As start-up reads them: chunks of rows in time order, keys and times views of one structured array each."""
    rng = np.random.default_rng(5)
    keys, times, all_keys, all_times = [], [], [], []
    for start in range(0, 10_000, 999):
        pairs = np.empty(min(999, 10_000 - start), dtype=[("k", np.int64), ("t", np.float64)])
        pairs["k"] = 8613800000000 + rng.integers(0, 700, len(pairs))
        pairs["t"] = start + np.arange(len(pairs)) + rng.random(len(pairs)) / 2
        keys.append(pairs["k"])
        times.append(pairs["t"])
        all_keys.append(pairs["k"].copy())
        all_times.append(pairs["t"].copy())
    expected = HistoryArrays.from_rows(np.concatenate(all_keys), np.concatenate(all_times))
    got = HistoryArrays.from_chunks(keys, times)
    assert not keys and not times
    assert all(np.array_equal(a, b) for a, b in zip(got, expected, strict=True)) and len(got.keys) > 600
    assert all(np.array_equal(a, b) for a, b in zip(HistoryArrays.from_chunks([], []), HistoryArrays.empty(),
                                                     strict=True))


def test_history_arrays_merge_drops_old_sends_and_keeps_each_key_in_time_order():
    base = HistoryArrays.from_rows(np.array([5, 3, 5, 9]), np.array([10.0, 1.0, 30.0, 2.0]))
    merged = base.merged(np.array([5, 7, 3, 5]), np.array([40.0, 5.0, 0.5, 20.0]), after=1.5)
    assert merged.keys.tolist() == [5, 7, 9]
    assert merged.offs.tolist() == [0, 4, 5, 6]
    assert merged.times.tolist() == [10.0, 20.0, 30.0, 40.0, 5.0, 2.0]
    history = CompactHistory(merged)
    assert history.get(5) == (10.0, 20.0, 30.0, 40.0) and 3 not in history and len(history) == 3


def test_a_merge_in_time_order_drops_the_keys_left_with_no_send_and_every_send_at_the_cut():
    """The usual roll forward: new sends later than the base's. A key whose every send is at or before `after`
    (the longest period's start) leaves the keys; a send exactly at `after` is dropped too, as prune_history
    drops it from the plain Index."""
    base = HistoryArrays.from_rows(np.array([3, 5, 5, 9]), np.array([1.0, 1.5, 10.0, 1.5]))
    merged = base.merged(np.array([5, 7, 8]), np.array([20.0, 1.5, 30.0]), after=1.5)
    assert merged.keys.tolist() == [5, 8]
    assert merged.offs.tolist() == [0, 2, 3]
    assert merged.times.tolist() == [10.0, 20.0, 30.0]
    assert len(CompactHistory(merged)) == 2
    # a key with one send kept, and a new one earlier than it: still in time order
    late = HistoryArrays.from_rows(np.array([5]), np.array([10.0])).merged(np.array([5]), np.array([8.0]), 1.5)
    assert (late.keys.tolist(), late.times.tolist()) == ([5], [8.0, 10.0])


def test_scoped_keys_of_one_number_do_not_collide_in_the_table():
    keys = np.array(sorted(scoped(NUMBERS[0], sid) for sid in range(1, 200)), dtype=np.int64)
    table = KeyTable(keys)
    assert all(table.row(int(k)) == i for i, k in enumerate(keys.tolist()))
    assert table.row(scoped(NUMBERS[0], GLOBAL)) == -1


def _one_run(count: int) -> tuple[list[int], int]:
    """`count` numbers whose hash is one slot of the table that `count` keys get, and one more, kept out."""
    bits = compact.table_bits(count)
    slot = lambda k: (k * compact._MULT >> (64 - bits)) & ((1 << bits) - 1)  # noqa: E731
    same = [k for k in range(8613800000000, 8613800200000) if slot(k) == slot(8613800000000)]
    return same[:count], same[count]


def test_a_lookup_follows_a_run_of_keys_that_share_a_slot_to_its_end():
    keys, absent = _one_run(6)  # six keys, one hash: they take six slots in a row, the first at their hash
    numbers = CompactSet(keys)
    assert all(k in numbers for k in keys) and absent not in numbers
    assert all(numbers.base.has(k) for k in keys) and not numbers.base.has(absent)
    history = CompactHistory(HistoryArrays.from_rows(np.array(keys), np.arange(6.0)))
    assert all(k in history for k in keys) and absent not in history
    assert [history.get(k) for k in keys] == [(float(i),) for i in range(6)] and history.get(absent) is None
    history.insert(absent, 9.0)  # after the miss: no second look at the base, and the keys below are still there
    assert history.get(absent) == (9.0,) and history.get(keys[-1]) == (5.0,) and len(history) == 7


def test_a_prune_keeps_the_sends_made_since_the_last_roll_forward():
    index = Index(blacklist=CompactSet(), optouts=CompactSet(), history=CompactHistory())
    n = NUMBERS[0]
    POLICY.forward(sub(n), decide(sub(n), index, T0, POLICY), index, T0)
    roll(index, [(n, T0)], 0, T0 + 1)  # the base now holds the first send
    later = T0 + 7 * HOUR
    assert decide(sub(n), index, later, POLICY).allowed
    POLICY.forward(sub(n), decide(sub(n), index, later, POLICY), index, later)
    index.prune_history(later - POLICY.history_span_s)
    assert index.history.get(n) == (T0, later)
    assert decide(sub(n), index, later + 7 * HOUR, POLICY).rule == "frequency"  # 2 in 3 days: a third refused
    roll(index, [(n, T0), (n, later)], 1, later + 1)
    index.prune_history(later - POLICY.history_span_s)  # the base has caught up: the overlay lets the key go
    assert index.history.overlay_size == 0 and index.history.get(n) == (T0, later)


def test_a_new_base_keeps_the_count_of_keys_the_overlay_adds_and_deletes():
    history = CompactHistory(HistoryArrays.from_rows(np.array([1, 2, 5]), np.array([1.0, 2.0, 5.0])))
    del history[1]  # a key of the base deleted: a tombstone
    history.insert(3, 3.0)  # a key the base lacks
    history.insert(2**64, 4.0)  # past int64: never in a base
    history.insert(5, 6.0)
    assert len(history) == 4 == sum(1 for _ in history)
    history.install(HistoryArrays.from_rows(np.array([1, 2, 7]), np.array([1.0, 2.0, 7.0])))
    assert sorted(history) == [2, 3, 5, 7, 2**64] and len(history) == 5
    assert history.get(1) is None and history.get(5) == (5.0, 6.0) and history.get(7) == (7.0,)


def test_an_insert_after_a_lookup_that_missed_the_base_is_exact_and_a_new_base_is_looked_at_again():
    """The frequency rule asks for a new recipient, then its send is inserted: the insert takes the lookup's word
    that the base lacks the key, until another base is installed."""
    history = CompactHistory(HistoryArrays.from_rows(np.array([1]), np.array([1.0])))
    assert 7 not in history
    history.insert(7, 3.0)
    assert history.get(7) == (3.0,) and len(history) == 2
    assert 9 not in history
    history.install(HistoryArrays.from_rows(np.array([1, 9]), np.array([1.0, 2.0])))  # now the base has 9
    history.insert(9, 4.0)
    assert history.get(9) == (2.0, 4.0) and len(history) == 3 == sum(1 for _ in history)


def test_a_prune_forgets_old_sends_and_keeps_the_count_key_by_key():
    base = HistoryArrays.from_rows(np.array([1, 2, 3]), np.array([5.0, 5.0, 50.0]))
    history = CompactHistory(base)
    history.insert(1, 60.0)  # in the base too: (5, 60); the base's 5 is old
    history.insert(2, 7.0)  # (5, 7): all old
    history.insert(5, 70.0)  # only in the overlay, recent
    history.insert(4, 8.0)  # only in the overlay, old
    history.insert(7, 9.0)  # the same
    history.insert(3, 55.0)
    del history[3]  # a tombstone over the base's (50,)
    history.insert(6, 9.5)
    assert len(history) == 6
    pending: list[int] = []
    history.prune(10.0, pending, 2)  # two keys a call, from the end of the pass's list: 3 and 6
    assert pending == [1, 2, 5, 4, 7] and len(history) == 5 == sum(1 for _ in history)
    del history[4]  # leaves the overlay while still on the pass's list: the pass goes on past it, to 7
    history.prune(10.0, pending, 2)
    assert pending == [1, 2, 5] and 7 not in history and len(history) == 3 == sum(1 for _ in history)
    while pending:
        history.prune(10.0, pending, 2)
    assert history.get(1) == (60.0,) and 2 not in history and history.get(5) == (70.0,) and 3 not in history
    assert len(history) == 2 == sum(1 for _ in history)
    assert history.overlay_size == 4  # 1, 5 (the base lacks their recent sends), and the tombstones of 2 and 3


def test_a_send_recorded_out_of_time_order_takes_its_place_in_both_indexes():
    """A send scheduled for later (quiet hours' "schedule") is counted at its delivery time, so a send made now
    can come after it in the history: each key's times stay in order, in the plain Index and the compact one,
    whether the key's earlier sends are in the overlay or in the base."""
    plain = Index()
    packed = Index(history=CompactHistory())
    for index in (plain, packed):
        for key, when in ((1, 100.0), (1, 300.0), (1, 200.0), (1, 50.0), (2, 10.0)):
            index.record_send(key, when)
    assert plain.history == {1: (50.0, 100.0, 200.0, 300.0), 2: (10.0,)}
    assert {k: packed.history[k] for k in packed.history} == plain.history
    based = CompactHistory()
    based.install(based.base.merged(np.array([1, 1], dtype=np.int64), np.array([100.0, 300.0]), 0.0))
    based.insert(1, 200.0)  # its earlier sends in the base, none in the overlay
    assert based[1] == (100.0, 200.0, 300.0)


# --- the lists' sieve -----------------------------------------------------------------------------------------

def test_a_sieve_has_the_bit_of_every_key_it_was_built_from_and_few_others():
    keys = np.unique(np.random.default_rng(3).integers(8613000000000, 8619999999999, 200_000))
    sieve = sieve_of(keys[:150_000], np.append(keys[150_000:], [-1, -1]))  # a table's EMPTY slots left out
    assert sieve.mask + 1 == 1 << 21  # a power of two, at least 8 bits a key
    assert all(int(k) in sieve for k in keys)
    others = np.random.default_rng(4).integers(8613000000000, 8619999999999, 20_000)
    others = others[~np.isin(others, keys)]
    maybe = sum(int(k) in sieve for k in others) / len(others)
    assert 0.02 < maybe < 0.15  # about a tenth of the bits set
    assert (sieve_of(np.zeros(0, dtype=np.int64)).mask + 1) == 1 << 16
    small = sieve_of(np.array([5, -1, 2**40 + 9, -1]))  # -1: an EMPTY slot of a table, no key
    assert [i for i in range(small.mask + 1) if i in small] == [5, 9]
    copy = Sieve.of_bits(np.frombuffer(bytes(small.bits), dtype=np.uint8))
    assert copy.mask == small.mask and copy.bits == small.bits and copy.bits is not small.bits
    with pytest.raises(ValueError, match="2\\^n bytes, not 3"):
        Sieve.of_bits(b"abc")
    assert all((scoped(int(k), 7) in sieve) == (int(k) in sieve) for k in others[:1000])  # one bit, every scope


def test_a_number_in_no_list_is_not_judged_by_the_rules_that_read_only_the_lists():
    """decide() leaves out a rule marked lists_only for a number whose bit the Index's sieve has clear, and asks
    it whenever the bit is set, the number's own or another's with the same low bits."""
    rules = tuple(dataclasses.replace(r, lists_only=True) if r is PREFIX_RULE else r for r in WITH_PREFIX)
    policy = load_policy({}, {"prefix": {"prefixes": ["86138"]}}, registry=rules)
    assert decide(sub(CN_MOBILE), Index(), T0, policy).rule == "prefix"  # a plain Index: every bit set
    index = Index(listed=Sieve(16))
    assert decide(sub(CN_MOBILE), index, T0, policy).allowed  # the prefix rule would refuse it: left out
    index.listed.add(CN_MOBILE + 5 * (1 << 16))  # another number, the same bit
    verdict = decide(sub(CN_MOBILE), index, T0, policy)
    assert (verdict.action, verdict.rule) == (Action.REJECT, "prefix")
    plain_rules = load_policy({}, {"prefix": {"prefixes": ["86138"]}}, registry=WITH_PREFIX)
    assert decide(sub(CN_MOBILE), Index(listed=Sieve(16)), T0, plain_rules).rule == "prefix"  # not lists_only


def test_the_blacklist_and_the_optout_rules_read_only_the_lists():
    listed = Sieve(16)
    index = Index(blacklist=CompactSet(), optouts=CompactSet(), listed=listed)
    index.blacklist.attach(listed)
    index.optouts.attach(listed)
    assert decide(sub(CN_MOBILE), index, T0, POLICY).allowed
    index.optouts.add(scoped(CN_MOBILE, index.scope_id("sender", "ACME")))
    assert decide(sub(CN_MOBILE, sender="ACME"), index, T0, POLICY).rule == "optout"
    index.blacklist.update([CN_MOBILE + 1, *range(2000)])  # a batch: the sieve too, in one pass
    assert decide(sub(CN_MOBILE + 1), index, T0, POLICY).rule == "blacklist"
    # and neither is asked about a number in no list: most new recipients cost a bit, not their lookups
    assert {c for c, _s in POLICY.checks_for("marketing")} - {c for c, _s in POLICY.unlisted_checks_for("marketing")} \
        == {blacklist.check, optout.check}


@given(st.lists(st.integers(0, 1 << 40), max_size=200), st.lists(st.integers(0, 1 << 40), max_size=50),
       st.lists(st.integers(0, 1 << 40), max_size=50))
def test_unique_keys_and_merged_keys_give_the_sorted_distinct_keys_whatever_the_order(keys, added, removed):
    arr = np.array(keys, dtype=np.int64)
    assert unique_keys(arr).tolist() == sorted(set(keys))
    assert unique_keys(np.sort(arr)).tolist() == sorted(set(keys))
    base = np.array(sorted(set(keys)), dtype=np.int64)
    merged = merged_keys(base, np.array(sorted(set(added)), dtype=np.int64),
                         np.array(sorted(set(removed)), dtype=np.int64))
    assert merged.tolist() == sorted((set(keys) - set(removed)) | set(added))


# --- the sends after a snapshot, replayed in bulk (a tail) or one by one: the same history -----------------

TAIL_KEYS = st.sampled_from([*NUMBERS[:5], scoped(NUMBERS[0], 3), scoped(NUMBERS[1], 7)])
TAIL_TIMES = st.integers(0, 48).map(lambda i: T0 + i * HOUR)  # few distinct times: ties, sends out of order
tail_sends = st.lists(st.tuples(TAIL_KEYS, TAIL_TIMES), max_size=25)
after_tail = st.lists(st.one_of(
    st.tuples(st.just("send"), TAIL_KEYS, TAIL_TIMES, st.booleans()),  # accepted (logged), or refused
    st.tuples(st.just("prune"), TAIL_TIMES, st.integers(1, 4)),
    st.tuples(st.just("roll"), TAIL_TIMES),
), max_size=25)


def arrays_of(sends: list[tuple[int, float]]) -> tuple[np.ndarray, np.ndarray]:
    return np.array([k for k, _ in sends], dtype=np.int64), np.array([t for _, t in sends], dtype=np.float64)


def recent(index: Index, cut: float) -> dict[int, tuple[float, ...]]:
    """The history's sends later than `cut`: before a prune or a roll forward, every send (cut -inf); after one,
    those its cut keeps, the only ones a rule reads (the plain Index and the compact one differ in the same way)."""
    kept = {k: tuple(t for t in index.history[k] if t > cut) for k in index.history}
    return {k: v for k, v in kept.items() if v}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(base=tail_sends, tail=tail_sends, ops=after_tail)
def test_property_a_tail_of_sends_in_bulk_gives_the_history_that_replaying_them_one_by_one_gives(base, tail, ops):
    """A restart takes the sends logged after its snapshot's base as a tail of arrays (CompactHistory.add_tail);
    it replayed them a send at a time before. The two say the same of every key, then and after any sends,
    refusals, prunes and roll forwards since (a roll forward's new base holds the tail)."""
    arrays = HistoryArrays.from_rows(*arrays_of(base))
    one_by_one = Index(history=CompactHistory(arrays))
    for key, sent_at in sorted(tail, key=lambda send: send[1]):  # as start-up replayed them: in time order
        one_by_one.record_send(key, sent_at)
    in_bulk = Index(history=CompactHistory(arrays))
    in_bulk.history.add_tail(*arrays_of(tail))
    assert in_bulk.history.overlay_size == 0 and in_bulk.history.tail_size == len({k for k, _ in tail})
    logged, cut = list(tail), -np.inf  # the sends the store holds after the base's mark; what a prune left
    for step in [None, *ops]:
        if step is None:
            pass
        elif step[0] == "send":
            _, key, sent_at, ok = step
            asked = [key in index.history for index in (one_by_one, in_bulk)]  # as the frequency rule asks first
            assert asked[0] == asked[1] or cut > -np.inf
            for index in (one_by_one, in_bulk):
                index.reserve(key, sent_at)
                if not ok:
                    index.release(key, sent_at)
            if ok:
                logged.append((key, sent_at))
        elif step[0] == "prune":
            cut = max(cut, step[1])
            for index in (one_by_one, in_bulk):
                index.prune_history(step[1], budget=step[2])
        else:  # a roll forward: the sends logged since the last one merged into the base
            cut = max(cut, step[1])
            new = one_by_one.history.base.merged(*arrays_of(logged), step[1])
            for index in (one_by_one, in_bulk):
                index.history.install(new)
            logged = []
            assert in_bulk.history.tail_size == 0
        for index in (one_by_one, in_bulk):
            assert len(index.history) == sum(1 for _ in index.history) == len(set(index.history))
        if cut == -np.inf:
            assert dict(in_bulk.history.items()) == dict(one_by_one.history.items())
            assert len(in_bulk.history) == len(one_by_one.history)
        assert recent(in_bulk, cut) == recent(one_by_one, cut)
        for key in (*NUMBERS[:6], scoped(NUMBERS[0], 3), scoped(NUMBERS[1], 7)):
            for start, end in ((np.nextafter(cut, np.inf), np.inf), (T0 + 10 * HOUR, T0 + 30 * HOUR)):
                if start > cut:
                    assert in_bulk.sends_between(key, start, end) == one_by_one.sends_between(key, start, end)
            if (in_bulk.last_send(key) or -np.inf) > cut or (one_by_one.last_send(key) or -np.inf) > cut:
                assert in_bulk.last_send(key) == one_by_one.last_send(key)


def test_a_tail_is_looked_up_above_the_base_and_goes_when_a_new_base_holds_it():
    base = HistoryArrays.from_rows(np.array([1, 2, 3]), np.array([1.0, 2.0, 3.0]))
    history = CompactHistory(base)
    history.add_tail(np.array([2, 4, 2, 4]), np.array([5.0, 4.0, 1.5, 6.0]))
    assert history.get(2) == (1.5, 2.0, 5.0) and history.get(4) == (4.0, 6.0) and history.get(1) == (1.0,)
    assert 4 in history and 5 not in history and len(history) == 4 == sum(1 for _ in history)
    assert history.tail_size == 2 and history.overlay_size == 0
    history.insert(4, 7.0)
    del history[2]
    assert history.get(4) == (4.0, 6.0, 7.0) and 2 not in history and len(history) == 3 == len(list(history))
    with pytest.raises(RuntimeError):
        history.add_tail(np.array([9]), np.array([9.0]))  # the overlay has writes: a tail would hide them
    history.install(base.merged(np.array([2, 4, 2, 4]), np.array([5.0, 4.0, 1.5, 6.0]), 0.0))
    assert history.tail_size == 0 and history.get(4) == (4.0, 6.0, 7.0) and 2 not in history
    assert len(history) == 3 == len(list(history))


def test_a_vectorized_lookup_of_rows_is_the_one_key_lookup():
    keys = np.unique(np.random.default_rng(7).integers(0, 2**40, 20_000))
    table = KeyTable(keys)
    asked = np.concatenate((keys[::3], keys[:500] + 1, [0, 2**62]))
    assert table.rows_many(asked).tolist() == [table.row(int(k)) for k in asked]
    assert KeyTable(np.zeros(0, dtype=np.int64)).rows_many(keys[:5]).tolist() == [-1] * 5


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sends=tail_sends, fates=st.lists(st.sampled_from(["accepted", "refused", "in flight"]), max_size=25),
       after=TAIL_TIMES, late=tail_sends)
def test_property_a_roll_forward_drops_the_overlay_entries_its_base_holds_and_the_answers_stay(sends, fates,
                                                                                              after, late):
    """What the roll forward does after it installs a new base (Upkeep._settle): the overlay's entries are listed,
    those the base holds as they are found in a thread while more sends come, and dropped unless written since.
    The history then says what it said of every send after `after`, as prune would leave it one key at a time."""
    index = Index(history=CompactHistory())
    logged = []
    for (key, sent_at), fate in zip(sends, fates + ["accepted"] * len(sends), strict=False):
        index.reserve(key, sent_at)
        if fate == "refused":
            index.release(key, sent_at)
        elif fate == "accepted":  # logged, and so in the new base; one in flight is not yet
            logged.append((key, sent_at))
    history = index.history
    history.install(history.base.merged(*arrays_of(logged), after))
    keys, values = history.overlay_items()
    which = history.caught_up(keys, values, after)
    for key, sent_at in late:  # sends on the loop while the thread looks
        index.reserve(key, sent_at)
    before = recent(index, after)
    count = len(history)
    gone = history.forget(keys, values, which)
    assert recent(index, after) == before and len(history) == count == sum(1 for _ in history)
    written = {k for k, _ in late}
    assert gone == sum(1 for i in which if keys[i] not in written)
    for key in set(keys) - written:  # what is left in the overlay differs from the base after `after`
        if key in history._overlay:
            base = history._base_get(key) or ()
            mine = compact._times(history._overlay[key])
            assert tuple(t for t in mine if t > after) != tuple(t for t in base if t > after) \
                or not any(t > after for t in mine)


def test_an_overlay_entry_is_dropped_only_when_the_base_holds_the_same_sends_after_the_cut():
    history = CompactHistory()
    for key, times in ((1, (1.0, 5.0)), (2, (5.0,)), (3, (5.0, 6.0)), (4, (1.0,)), (2**64, (5.0,))):
        for sent_at in times:
            history.insert(key, sent_at)
    history.install(HistoryArrays.from_rows(np.array([1, 2, 3, 4]), np.array([5.0, 6.0, 5.0, 1.0])))
    keys, values = history.overlay_items()
    which = history.caught_up(keys, values, after=2.0)
    # 1: the same after the cut; 2: another time; 3: a send the base lacks; 4: nothing after it; 2**64: no base
    assert [keys[i] for i in which] == [1]
    assert history.forget(keys, values, which) == 1
    assert history.get(1) == (5.0,) and history.get(2) == (5.0,) and len(history) == 5 == sum(1 for _ in history)
