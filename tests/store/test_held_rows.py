"""The hold queue's tables: what is due comes in whole concatenated messages, in order; marks are taken only
once; a restart turns what was being sent into "unknown"; the admin's release and drop."""

from __future__ import annotations

import pytest

from smppguard.store import holds
from smppguard.store.holds import HeldRow

T = 1_800_000_000.0


def row(proxy_id: str, release_at: float, account: str = "acme", *, grp: str = "", part: int = 1, parts: int = 1,
        expires_at: float = T + 86400, state: str = "held") -> HeldRow:
    return HeldRow(0, proxy_id, account, "ACME", "13800138000", 8613800138000, 4, b"pdu-" + proxy_id.encode(), grp,
                   part, parts, T, release_at, expires_at, True, state)


def ids(rows) -> list[str]:
    return [r.id for r in rows]


def test_due_gives_what_is_due_oldest_first_for_the_accounts_asked(db):
    holds.add(db, [row("late", T + 50), row("early", T + 10), row("future", T + 500), row("other", T + 5, "zz")])
    assert ids(holds.due(db, T + 100, ["acme"], 10)) == ["early", "late"]
    assert ids(holds.due(db, T + 100, None, 10)) == ["other", "early", "late"]
    assert holds.due(db, T + 100, [], 10) == []
    assert ids(holds.due(db, T + 100, ["acme"], 1)) == ["early"]
    [r] = holds.due(db, T + 20, ["acme"], 10)
    assert (r.pdu, r.receipt, r.forced, r.number) == (b"pdu-early", True, False, 8613800138000)


def test_a_concatenated_message_cut_by_the_limit_comes_whole_and_in_part_order(db):
    holds.add(db, [row("p3", T + 10, grp="g", part=3, parts=3), row("single", T + 5),
                   row("p1", T + 10, grp="g", part=1, parts=3), row("p2", T + 10, grp="g", part=2, parts=3)])
    assert ids(holds.due(db, T + 20, ["acme"], 2)) == ["single", "p1", "p2", "p3"]


def test_a_mark_is_taken_once_and_never_for_a_row_dropped_meanwhile(db):
    seqs = holds.add(db, [row("a", T), row("b", T)])
    holds.remove(db, [seqs[1]])
    assert holds.mark_sending(db, seqs) == {seqs[0]}
    assert holds.mark_sending(db, seqs) == set()
    assert holds.due(db, T + 1, None, 10) == []


def test_a_restart_turns_sending_into_unknown_and_only_an_operator_sends_it_again(db):
    seqs = holds.add(db, [row("a", T), row("b", T)])
    holds.mark_sending(db, [seqs[0]])
    assert holds.reconcile(db) == 1
    assert holds.counts(db) == {"unknown": 1, "held": 1}
    assert ids(holds.due(db, T + 1, None, 10)) == ["b"]
    assert holds.release_now(db, "a", T + 2) == 1
    [again] = [r for r in holds.due(db, T + 3, None, 10) if r.id == "a"]
    assert (again.state, again.forced) == ("held", True)


def test_sent_leaves_the_queue_and_maps_the_smsc_id_until_it_expires(db):
    [seq] = holds.add(db, [row("a", T)])
    holds.sent(db, seq, "acme", "a", "SMSC-1", T + 100)
    assert holds.counts(db) == {}
    assert holds.mappings(db, T + 50) == [("acme", "SMSC-1", "a", T + 100)]
    assert holds.mappings(db, T + 100) == []
    assert holds.prune_mappings(db, T + 100) == 1


def test_release_later_and_replace_change_only_held_rows(db):
    a, b = holds.add(db, [row("a", T), row("b", T)])
    holds.mark_sending(db, [b])
    holds.release_later(db, [(a, T + 999)])
    assert [r.release_at for r in holds.by_id(db, "a")] == [T + 999]
    assert holds.replace_pdu(db, a, b"new", T + 10, False)
    assert not holds.replace_pdu(db, b, b"new", None, False)  # being sent: too late
    [r] = holds.by_id(db, "a")
    assert (r.pdu, r.expires_at, r.receipt) == (b"new", T + 10, False)


def test_drop_audits_each_row_and_owes_a_receipt_only_when_one_was_asked(db):
    holds.add(db, [row("a", T), row("a", T)._replace(receipt=False), row("s", T, state="sending")])
    def broken(r):
        raise RuntimeError("cannot make the receipt")
    with pytest.raises(RuntimeError):  # all or nothing: the rows stay held, nothing is audited
        holds.drop(db, "a", "alice", T + 1, lambda number, address: "x", broken)
    assert len(holds.by_id(db, "a")) == 2 and db.execute("SELECT COUNT(*) FROM audit").fetchone() == (0,)
    n = holds.drop(db, "a", "alice", T + 1, lambda number, address: f"masked:{number}:{address}",
                   lambda r: b"receipt")
    assert n == 2
    assert holds.drop(db, "s", "alice", T + 1, lambda n, a: "x") == 0
    assert db.execute("SELECT recipient, action, actor FROM audit").fetchall() == [
        ("masked:8613800138000:13800138000", "dropped", "alice")] * 2
    assert holds.owed_for(db, ["acme"], 10) == [(1, "acme", b"receipt")]
    assert db.execute("SELECT kind FROM owed").fetchall() == [("receipt",)]
    assert holds.owed_for(db, ["acme"], 10, skip=[1]) == []
    holds.owed_done(db, [1])
    assert holds.owed_count(db) == 0


def test_owed_deliveries_are_read_for_several_accounts_skipping_those_in_flight_oldest_first(db):
    for account, body in (("acme", b"1"), ("beta", b"2"), ("gone", b"3"), ("acme", b"4"), ("beta", b"5")):
        holds.owe(db, account, body, "mo", T)
    assert holds.owed_for(db, ["acme", "beta"], 10) == [(1, "acme", b"1"), (2, "beta", b"2"), (4, "acme", b"4"),
                                                         (5, "beta", b"5")]
    assert holds.owed_for(db, ["acme", "beta"], 10, skip=[1, 2]) == [(4, "acme", b"4"), (5, "beta", b"5")]
    assert holds.owed_for(db, ["acme", "beta"], 1, skip=[1]) == [(2, "beta", b"2")]


def test_release_now_takes_held_and_unknown_rows_but_never_one_being_sent(db):
    holds.add(db, [row("a", T + 999), row("a", T + 999, state="unknown"), row("a", T + 999, state="sending")])
    assert holds.release_now(db, "a", T + 2) == 2
    assert sorted((r.state, r.release_at, r.forced) for r in holds.by_id(db, "a")) == [
        ("held", T + 2, True), ("held", T + 2, True), ("sending", T + 999, False)]
