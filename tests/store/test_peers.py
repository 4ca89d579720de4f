"""The store's side of sync (store/peers.py): origins, idempotence, the conflict rule, the observation period
across nodes, gaps. Each "node" is a store file of its own; rows travel between them as the MQTT link carries
them (Change values with their origin), in whatever order the test or hypothesis picks."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smppguard.policy import load_policy
from smppguard.store import changelog, lists, peers
from smppguard.store.changelog import Change
from smppguard.store.db import connect
from smppguard.store.index import load_index

N1, N2, N3 = 8613800000001, 8613800000002, 8613800000003
T = 1_800_000_000.0
DAY = 86400.0


class Node:
    """One sidecar's store: changes made here are logged and stamped as the daemon's sync stamps them."""

    def __init__(self, path, name: str):
        self.name = name
        self.db = connect(path)

    def make(self, *changes: Change, threshold: int = 0) -> list[Change]:
        """Changes made on this node (as the CLI makes them), stamped; returns them as they go out."""
        before = peers.head(self.db, self.name)
        changelog.write(self.db, list(changes), origin=self.name, actor="ops", correlation_threshold=threshold)
        self.stamp()
        return peers.rows_of(self.db, self.name, before)

    def stamp(self) -> int:
        self.db.execute("BEGIN IMMEDIATE")
        n = peers.stamp_local(self.db, self.name)
        self.db.execute("COMMIT")
        return n

    def receive(self, rows, threshold: int = 0) -> peers.Applied:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            return peers.apply_remote(self.db, rows, correlation_threshold=threshold)
        finally:
            self.db.execute("COMMIT")

    def lists(self) -> dict:
        q = self.db.execute
        return {"blacklist": q("SELECT number, source FROM blacklist ORDER BY number").fetchall(),
                "optout": q("SELECT number, scope, scope_key FROM optout ORDER BY 1, 2, 3").fetchall(),
                "dead": q("SELECT number FROM dead ORDER BY number").fetchall(),
                "consent": q("SELECT number, scope_key, status FROM consent ORDER BY 1, 2").fetchall()}


@pytest.fixture
def a(tmp_path):
    n = Node(tmp_path / "a.db", "a")
    yield n
    n.db.close()


@pytest.fixture
def b(tmp_path):
    n = Node(tmp_path / "b.db", "b")
    yield n
    n.db.close()


def test_local_rows_get_this_nodes_name_and_its_next_numbers_in_log_order_once(a, b):
    changelog.write(a.db, [Change("blacklist", "add", N1), Change("dead", "add", N2)], origin="x", now=T)
    assert a.stamp() == 2
    rows = a.db.execute("SELECT node, seq, kind FROM changelog ORDER BY id").fetchall()
    assert rows == [("a", 1, "blacklist"), ("a", 2, "dead")]
    assert a.stamp() == 0  # nothing new: nothing renumbered
    b.receive(peers.rows_of(a.db, "a", 0))
    changelog.write(b.db, [Change("optout", "add", N3, "global")], origin="y", now=T + 1)
    assert b.stamp() == 1  # only its own row: a's keep their origin
    assert b.db.execute("SELECT node, seq, kind FROM changelog ORDER BY id").fetchall() == [
        ("a", 1, "blacklist"), ("a", 2, "dead"), ("b", 1, "optout")]


def test_the_same_remote_row_twice_applies_once_whatever_came_between(a, b):
    rows = a.make(Change("blacklist", "add", N1, data={"source": "complaint"}))
    assert b.receive(rows) == peers.Applied(1, 0, 0, 0)
    assert b.receive(rows + rows) == peers.Applied(0, 2, 0, 0)
    assert b.db.execute("SELECT COUNT(*) FROM changelog").fetchone() == (1,)
    assert b.lists() == a.lists()


def test_a_removal_made_later_wins_over_an_add_that_arrives_after_it(a, b):
    added = a.make(Change("blacklist", "add", N1, data={"source": "carrier"}, at=T))
    removed = a.make(Change("blacklist", "remove", N1, at=T + 10))
    b.receive(removed)  # reordered by the network: the removal first
    applied = b.receive(added)
    assert applied.lost == 1 and b.lists()["blacklist"] == [] == a.lists()["blacklist"]
    # the losing row is kept, with no number, so a's sequence has no gap on b and can be replayed from it
    assert peers.holdings(b.db) == {"a": peers.Holding(2, ())}
    assert [(r.seq, r.targets()) for r in peers.rows_of(b.db, "a", 0)] == [(1, ()), (2, (N1,))]


def test_a_change_that_loses_for_some_numbers_of_a_batch_applies_to_the_others(a, b):
    b.make(Change("blacklist", "remove", 0, numbers=[N2], at=T + 5))
    rows = a.make(Change("blacklist", "add", 0, data={"source": "carrier"}, numbers=[N1, N2, N3], at=T))
    assert b.receive(rows).lost == 1
    assert b.lists()["blacklist"] == [(N1, "carrier"), (N3, "carrier")]
    index = load_index(b.db, load_policy({}, {}, []), T + 10)
    assert N1 in index.blacklist and N2 not in index.blacklist and N3 in index.blacklist


def test_a_change_made_now_is_later_than_every_change_the_store_holds_even_from_a_clock_ahead(a, b):
    ahead = b.make(Change("blacklist", "remove", N1, at=T + 10 * 365 * DAY))  # b's clock runs years ahead
    a.receive(ahead)
    a.make(Change("blacklist", "add", N1, data={"source": "complaint"}))  # made now, on a
    assert a.db.execute("SELECT MAX(at) FROM changelog").fetchone()[0] > T + 10 * 365 * DAY
    b.receive(peers.rows_of(a.db, "a", 0))
    assert a.lists()["blacklist"] == b.lists()["blacklist"] == [(N1, "complaint")]


# --- conflicts: two nodes change the same numbers at once, each hears the other's changes in any order ---------

KEYS = [("blacklist", "", ""), ("optout", "sender", "1069"), ("optout", "global", ""), ("consent", "", "acme")]


def _change(kind_scope, op: str, number: int, at: float) -> Change:
    kind, scope, key = kind_scope
    data = {"source": "carrier"} if kind == "blacklist" else {"status": "confirmed"} if kind == "consent" else {}
    return Change(kind, op, number, scope, key, data, at=at)


changes = st.lists(st.tuples(st.sampled_from(KEYS), st.sampled_from(["add", "remove"]),
                             st.sampled_from([N1, N2]), st.sampled_from(["a", "b"])), min_size=1, max_size=12)


@settings(max_examples=60, deadline=None)
@given(changes, st.randoms(use_true_random=False))
def test_concurrent_changes_end_the_same_on_both_nodes_whatever_order_they_arrive_in(tmp_path_factory, made, rnd):
    folder = tmp_path_factory.mktemp("conflict")
    a, b = Node(folder / "a.db", "a"), Node(folder / "b.db", "b")
    try:
        out: dict[str, list[Change]] = {"a": [], "b": []}
        for i, (key, op, number, where) in enumerate(made):  # distinct times: equal ones are the tie rule's
            node = a if where == "a" else b
            out[where] += node.make(_change(key, op, number, T + i * 0.001 + (0.0005 if where == "b" else 0)))
        for node, theirs in ((a, out["b"]), (b, out["a"])):
            rows = list(theirs)
            rnd.shuffle(rows)
            for row in rows:  # one at a time, some twice
                node.receive([row] * rnd.randint(1, 2))
        assert a.lists() == b.lists()
        # and what the last change made of each entry is what both hold
        last: dict = {}
        for key, op, number, _where in made:
            last[(key, number)] = op
        for (key, number), op in last.items():
            kind, scope, scope_key = key
            held = a.db.execute({"blacklist": "SELECT 1 FROM blacklist WHERE number = ?",
                                 "optout": "SELECT 1 FROM optout WHERE number = ? AND scope = ? AND scope_key = ?",
                                 "consent": "SELECT 1 FROM consent WHERE number = ? AND scope_key = ?"}[kind],
                                {"blacklist": (number,), "optout": (number, scope, scope_key),
                                 "consent": (number, scope_key)}[kind]).fetchone()
            assert (held is not None) == (op == "add"), (key, number, op)
    finally:
        a.db.close()
        b.db.close()


def test_an_add_and_a_removal_made_at_the_same_instant_end_as_the_add_on_both_nodes(a, b):
    from_a = a.make(Change("optout", "remove", N1, "global", at=T))
    a_before = a.make(Change("optout", "add", N2, "global", at=T))
    from_b = b.make(Change("optout", "add", N1, "global", data={"source": "reply"}, at=T))
    a.receive(from_b)
    b.receive(from_a + a_before)
    assert a.lists()["optout"] == b.lists()["optout"] == [(N1, "global", ""), (N2, "global", "")]


# --- what the seed's rules need across nodes ------------------------------------------------------------------

def test_opt_outs_from_three_senders_on_two_nodes_make_it_global_on_both(a, b):
    first = a.make(Change("optout", "add", N1, "sender", "s1", at=T), threshold=3)
    second = a.make(Change("optout", "add", N1, "sender", "s2", at=T + 1), threshold=3)
    third = b.make(Change("optout", "add", N1, "sender", "s3", at=T + 2), threshold=3)
    b.receive(first + second, threshold=3)
    a.receive(third, threshold=3)
    for node in (a, b):
        assert (N1, "global", "") in node.lists()["optout"], node.name
    assert a.lists() == b.lists()


@pytest.mark.parametrize("complaint_first", [True, False], ids=["complaint-arrives-first", "removal-arrives-first"])
def test_a_complaint_on_another_node_during_the_observation_period_keeps_the_number_listed(a, b, complaint_first):
    listed = a.make(Change("blacklist", "add", N1, data={"source": "carrier"}, at=T - 10 * DAY))
    b.receive(listed)
    lists.request_removal(a.db, N1, reason="ticket 7", observe_s=3 * DAY, actor="cs", now=T - 3 * DAY)
    complaint = b.make(Change("blacklist", "add", N1, data={"source": "complaint"}, at=T - DAY))  # meanwhile, on b
    if complaint_first:  # it reaches a before the period ends: the pending removal is cancelled there
        a.receive(complaint)
        assert lists.apply_due_removals(a.db, T) == []
        a.stamp()
        b.receive(peers.rows_of(a.db, "a", 1))
    else:  # a was cut off: the removal took effect there, then the complaint arrived
        assert lists.apply_due_removals(a.db, T) == [N1]
        a.stamp()
        b.receive(peers.rows_of(a.db, "a", 1))  # the removal: b does not apply it (its complaint came after)
        assert b.lists()["blacklist"] == [(N1, "complaint")]
        assert a.receive(complaint).restored == 1  # a puts the number back, as a change of its own
        a.stamp()
        b.receive(peers.rows_of(a.db, "a", 2))
        assert a.db.execute("SELECT actor FROM audit WHERE rule = 'blacklist' AND action = 'add' "
                            "ORDER BY id DESC LIMIT 1").fetchone() == ("sync",)
    assert [n for n, _ in a.lists()["blacklist"]] == [n for n, _ in b.lists()["blacklist"]] == [N1]


def test_a_removal_whose_period_saw_no_complaint_takes_effect_on_every_node(a, b):
    b.receive(a.make(Change("blacklist", "add", N1, data={"source": "carrier"}, at=T - 10 * DAY)))
    b.make(Change("blacklist", "add", N2, data={"source": "complaint"}, at=T - DAY))  # another number's
    lists.request_removal(a.db, N1, reason="ticket 8", observe_s=3 * DAY, actor="cs", now=T - 3 * DAY)
    assert lists.apply_due_removals(a.db, T) == [N1]
    a.stamp()
    b.receive(peers.rows_of(a.db, "a", 1))
    assert b.lists()["blacklist"] == [(N2, "complaint")]


# --- gaps -----------------------------------------------------------------------------------------------------

def test_holdings_name_the_ranges_missing_in_each_origins_sequence(a, b):
    rows = a.make(*[Change("dead", "add", n, at=T + i) for i, n in enumerate(range(N1, N1 + 8))])
    assert peers.holdings(b.db) == {}
    b.receive([rows[1], rows[2], rows[5], rows[7]])  # seq 2, 3, 6, 8
    held = peers.holdings(b.db)["a"]
    assert held == peers.Holding(8, ((1, 1), (4, 5), (7, 7)))
    assert held.contiguous == 0
    b.receive(rows[:1])
    assert peers.holdings(b.db)["a"].contiguous == 3
    b.receive(rows)
    assert peers.holdings(b.db)["a"] == peers.Holding(8, ())


def test_a_remote_row_needs_its_origin(b):
    with pytest.raises(ValueError, match="origin"):
        b.receive([Change("blacklist", "add", N1, at=T)])


def test_own_sends_are_answered_and_sends_of_other_nodes_are_kept_apart(a):
    a.db.executemany("INSERT INTO send_history (number, account, sent_at) VALUES (?, ?, ?)",
                     [(N1, "acme", T + 1), (N2, "acme", T + 2)])
    a.db.execute("BEGIN")
    assert peers.record_remote_sends(a.db, "b", [(N3, "acme", T + 1.5)], T + 1.5) == 1
    a.db.execute("COMMIT")
    assert peers.sends_marks(a.db) == {"b": T + 1.5}  # b is asked only for what came after
    assert peers.own_sends_since(a.db, T) == [(N1, "acme", T + 1), (N2, "acme", T + 2)]
    assert peers.own_sends_since(a.db, T + 1) == [(N2, "acme", T + 2)]





def test_a_row_that_lost_everywhere_keeps_what_it_said_for_the_nodes_it_is_replayed_to(a, b):
    b.make(Change("optout", "remove", N1, "sender", "1069", at=T + 5))
    rows = a.make(Change("optout", "add", N1, "sender", "1069", {"source": "reply", "keyword": "td"}, at=T))
    b.receive(rows)
    (kept,) = peers.rows_of(b.db, "a", 0)
    assert kept.targets() == () and (kept.kind, kept.op, kept.scope, kept.scope_key) == ("optout", "add", "sender",
                                                                                          "1069")
    assert (kept.data, kept.at, kept.origin, kept.actor, kept.node, kept.seq) == (
        {"source": "reply", "keyword": "td"}, T, "a", "ops", "a", 1)
    assert b.lists()["optout"] == []


def test_only_an_add_made_between_the_removals_request_and_its_end_cancels_it(a, b):
    b.receive(a.make(Change("blacklist", "add", N1, data={"source": "carrier"}, at=T - 10 * DAY)))
    b.make(Change("blacklist", "add", N1, data={"source": "manual"}, at=T - 2 * DAY))  # by hand: cancels nothing
    b.make(Change("optout", "add", 0, "global", numbers=[N2, N3], at=T - 2 * DAY))  # other numbers' opt-outs
    lists.request_removal(a.db, N1, reason="ticket 9", observe_s=3 * DAY, actor="cs", now=T - 3 * DAY)
    assert lists.apply_due_removals(a.db, T) == [N1]
    a.stamp()
    b.receive(peers.rows_of(a.db, "a", 1))
    assert N1 not in [n for n, _ in b.lists()["blacklist"]]  # nothing that cancels it came meanwhile


def test_an_opt_out_in_an_imports_batch_cancels_a_removal_asked_for_before_it(a, b):
    b.receive(a.make(Change("blacklist", "add", N1, data={"source": "carrier"}, at=T - 10 * DAY)))
    b.make(Change("optout", "add", 0, "global", numbers=[N2, N1, N3], at=T - DAY))
    lists.request_removal(a.db, N1, reason="ticket 10", observe_s=3 * DAY, actor="cs", now=T - 3 * DAY)
    assert lists.apply_due_removals(a.db, T) == [N1]
    a.stamp()
    b.receive(peers.rows_of(a.db, "a", 1))
    assert N1 in [n for n, _ in b.lists()["blacklist"]]


def test_a_copy_for_a_new_node_holds_the_lists_and_sends_as_the_exporters_and_nothing_of_its_own(a, b, tmp_path):
    import sqlite3

    b.receive(a.make(Change("blacklist", "add", N1, data={"source": "carrier"}, at=T)))
    changelog.write(b.db, [Change("dead", "add", N2)], origin="b")  # not stamped yet: the export stamps it
    b.db.executemany("INSERT INTO send_history (number, account, sent_at, node) VALUES (?, 'acme', ?, ?)",
                     [(N1, T + 1, None), (N1, T + 2, None), (N3, T + 1.25, "a"), (N3, T + 1.5, "a")])
    for sql in ("INSERT INTO audit (at, account, sender, recipient, rule, action, status, reason) "
                "VALUES (1, 'acme', 'S', 'x', 'blacklist', 'reject', 69, 'listed')",
                "INSERT INTO pending_removal (number, reason, actor, requested_at, effective_at) "
                "VALUES (1, 'r', 'cs', 1, 2)",
                "INSERT INTO meta (key, value) VALUES ('sync.published.b', '7')",
                "INSERT INTO owed (account, body, kind, made_at) VALUES ('acme', x'00', 'receipt', 1)",
                "INSERT INTO message_map (account, smsc_id, proxy_id, expires_at) VALUES ('acme', 's', 'p', 1)"):
        b.db.execute(sql)
    path = str(tmp_path / "copy.db")
    counts = peers.export_for_new_node(b.db, "b", path)
    assert counts == {"changes": 2, "blacklist": 1, "optouts": 0, "sends": 4}
    copy = sqlite3.connect(path)
    try:
        q = copy.execute
        assert q("SELECT node, seq, kind FROM changelog ORDER BY id").fetchall() == [("a", 1, "blacklist"),
                                                                                     ("b", 1, "dead")]
        assert q("SELECT number, sent_at, node FROM send_history ORDER BY sent_at").fetchall() == [
            (N1, T + 1, "b"), (N3, T + 1.25, "a"), (N3, T + 1.5, "a"), (N1, T + 2, "b")]
        assert dict(q("SELECT key, value FROM meta WHERE key LIKE 'sync.%' OR key = 'node_id'").fetchall()) == {
            "sync.sends.a": repr(T + 1.5), "sync.sends.b": repr(T + 2)}
        for table in ("audit", "pending_removal", "owed", "message_map", "held"):
            assert q(f"SELECT COUNT(*) FROM {table}").fetchone() == (0,), table
        assert q("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        copy.close()
    assert b.db.execute("SELECT COUNT(*) FROM audit").fetchone() == (1,)  # the exporter keeps its own
