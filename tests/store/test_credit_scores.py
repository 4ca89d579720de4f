"""Credit scores from the store: the parts on record, and the numbers the Index keeps below the floor."""

from __future__ import annotations

from smppguard.policy import load_policy
from smppguard.policy.credit import CreditParts
from smppguard.store import lists
from smppguard.store.credit import load_low_credit, low_scores, parts_of
from smppguard.store.index import load_index

A, B, C, D = 8613800000001, 8613800000002, 8613800000003, 8613800000004
NOW = 1_800_000_000.0
DAYS = 86400.0
ON = load_policy(rules={"credit": {"enabled": True}})


def failures(db, number, *ats):
    db.executemany("INSERT INTO receipt_failure (number, at, code) VALUES (?, ?, 'MK:0005')",
                   [(number, at) for at in ats])


def test_the_parts_on_record(db):
    lists.add_optouts(db, [(A, "sender", "S1"), (A, "sender", "S2"), (A, "global", "")], actor="t", now=NOW)
    lists.add_blacklist(db, [B], source="complaint", actor="t", now=NOW)
    lists.add_blacklist(db, [C], source="carrier", actor="t", now=NOW)
    lists.mark_dead(db, [D], reason="MK:0001", expire_s=DAYS, actor="t", now=NOW)
    failures(db, A, NOW - 40 * DAYS, NOW - DAYS)  # the first outside the 30 days
    db.execute("INSERT INTO delivery_ok VALUES (?, 3, ?)", (A, NOW - DAYS))
    db.execute("INSERT INTO watched VALUES (?, ?, 'verified')", (C, NOW))
    parts = parts_of(db, [A, B, C, D, 8613800000009], NOW, 30 * DAYS)
    assert parts == {A: CreditParts(optout=2, global_optout=1, suspended=1, delivered=3),
                     B: CreditParts(complaint=1), C: CreditParts(listed=1, watched=1), D: CreditParts(dead=1),
                     8613800000009: CreditParts()}
    assert parts_of(db, [D], NOW + 2 * DAYS, 30 * DAYS)[D] == CreditParts()  # its dead entry has expired


def test_old_deliveries_add_nothing(db):
    db.execute("INSERT INTO delivery_ok VALUES (?, 3, ?)", (A, NOW - 31 * DAYS))
    assert parts_of(db, [A], NOW, 30 * DAYS)[A] == CreditParts()


def test_the_index_keeps_only_unlisted_numbers_below_the_floor(db):
    lists.add_optouts(db, [(A, "sender", "S1"), (A, "sender", "S2")], actor="t", now=NOW)  # 60: not below
    lists.add_optouts(db, [(B, "sender", "S1"), (B, "sender", "S2")], actor="t", now=NOW)
    failures(db, B, NOW - DAYS)  # 50
    lists.add_optouts(db, [(C, "sender", "S1"), (C, "sender", "S2")], actor="t", now=NOW)
    failures(db, C, NOW - DAYS)
    lists.add_blacklist(db, [C], source="complaint", actor="t", now=NOW)  # blacklisted: left to its rule
    lists.add_optouts(db, [(D, "sender", "S1"), (D, "sender", "S2")], actor="t", now=NOW)
    failures(db, D, NOW - DAYS)
    db.execute("INSERT INTO delivery_ok VALUES (?, 2, ?)", (D, NOW - DAYS))  # 60 again: delivered since
    assert load_low_credit(db, ON, NOW, 30 * DAYS) == {B: 50}
    assert load_index(db, ON, NOW).low_credit == {B: 50}
    assert load_index(db, load_policy(), NOW).low_credit == {}  # the rule off: nothing scored
    assert low_scores(db, [A, B, C], ON, NOW, 30 * DAYS) == {A: None, B: 50, C: None}


def test_a_number_whose_score_recovers_leaves_the_index_and_one_that_falls_joins_it(db, monkeypatch):
    from smppguard.store import credit

    low = {A: 40, C: 45}
    credit.apply_low_scores(low, {A: None, B: 50, D: None})  # A recovered, B fell, D was never low
    assert low == {B: 50, C: 45}
    monkeypatch.setattr(credit, "CHUNK", 2)  # numbers read a few at a time, as a big batch is
    lists.add_optouts(db, [(n, "sender", s) for n in (A, B, C, D) for s in ("S1", "S2")], actor="t", now=NOW)
    assert set(parts_of(db, [A, B, C, D], NOW, 30 * DAYS)) == {A, B, C, D}
