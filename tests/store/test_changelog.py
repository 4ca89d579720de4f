"""changelog.write: every kind and op updates its table and appends to the log, in one transaction."""

from __future__ import annotations

import json

import pytest

from smppguard.store.changelog import COLUMNS, Change, from_row, last_id, since, write
from smppguard.store.db import connect

NOW = 1_700_000_000.0
N1, N2, N3 = 8613800000001, 8613800000002, 8613800000003


def log(db):
    """The change log as dicts, oldest first."""
    return [{"id": c.id, "at": c.at, "origin": c.origin, "kind": c.kind, "op": c.op, "number": c.number,
             "scope": c.scope, "scope_key": c.scope_key, "data": c.data, "actor": c.actor}
            for c in since(db, 0)]


def rows(db, table):
    return db.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()


# --- each kind / op -----------------------------------------------------------------------------------------


def test_blacklist_add_updates_table_and_log(db):
    n = write(db, [Change("blacklist", "add", N1, data={"source": "import", "reason": "complaint"})],
              origin="node-a", actor="alice", now=NOW)
    assert n == 1
    assert rows(db, "blacklist") == [(N1, "import", "complaint", NOW, "alice")]
    assert log(db) == [{"id": 1, "at": NOW, "origin": "node-a", "kind": "blacklist", "op": "add", "number": N1,
                        "scope": "", "scope_key": "", "data": {"source": "import", "reason": "complaint"},
                        "actor": "alice"}]
    assert last_id(db) == 1
    assert not db.in_transaction


def test_blacklist_defaults(db):
    write(db, [Change("blacklist", "add", N1)], origin="o", now=NOW)
    assert rows(db, "blacklist") == [(N1, "manual", "", NOW, "")]


def test_change_keeps_its_own_time_origin_and_actor(db):
    write(db, [Change("blacklist", "add", N1, at=123.0, origin="peer", actor="bob")], origin="local",
          actor="cli", now=NOW)
    (c,) = since(db, 0)
    assert (c.at, c.origin, c.actor) == (123.0, "peer", "bob")
    assert rows(db, "blacklist") == [(N1, "manual", "", 123.0, "bob")]


def test_without_now_the_time_is_the_wall_clock(db):
    import time

    before = time.time()
    write(db, [Change("tz", "add", N1, data={"zone": "Asia/Shanghai"})], origin="o")
    (c,) = since(db, 0)
    assert before <= c.at <= time.time()


def test_optout_scopes(db):
    write(db, [Change("optout", "add", N1, "global", "", {"source": "mo", "keyword": "STOP"}),
               Change("optout", "add", N1, "sender", "ACME", {"source": "mo", "keyword": "TD"}),
               Change("optout", "add", N2, "account", "acct1", {"source": "cli"})],
          origin="o", actor="a", now=NOW)
    assert rows(db, "optout") == [(N1, "global", "", "mo", "STOP", NOW),
                                  (N1, "sender", "ACME", "mo", "TD", NOW),
                                  (N2, "account", "acct1", "cli", "", NOW)]
    assert [(e["kind"], e["op"], e["number"], e["scope"], e["scope_key"]) for e in log(db)] == [
        ("optout", "add", N1, "global", ""), ("optout", "add", N1, "sender", "ACME"),
        ("optout", "add", N2, "account", "acct1")]
    write(db, [Change("optout", "remove", N1, "sender", "ACME")], origin="o", now=NOW)
    assert rows(db, "optout") == [(N1, "global", "", "mo", "STOP", NOW), (N2, "account", "acct1", "cli", "", NOW)]


def test_dead_with_expires_at_and_default_expiry(db):
    write(db, [Change("dead", "add", N1, data={"reason": "empty", "expires_at": NOW + 3600}),
               Change("dead", "add", N2)], origin="o", now=NOW)
    assert rows(db, "dead") == [(N1, "empty", NOW, NOW + 3600), (N2, "", NOW, NOW + 90 * 86400)]
    assert log(db)[0]["data"] == {"reason": "empty", "expires_at": NOW + 3600}


def test_consent_pending_then_confirmed(db):
    write(db, [Change("consent", "add", N1, scope_key="acct1",
                      data={"status": "pending", "source": "web", "wording": "Reply YES"})],
          origin="o", now=NOW)
    assert rows(db, "consent") == [(N1, "acct1", "pending", "web", "Reply YES", NOW, None)]
    write(db, [Change("consent", "add", N1, scope_key="acct1",
                      data={"status": "confirmed", "source": "web", "granted_at": NOW})],
          origin="o", now=NOW + 60)
    assert rows(db, "consent") == [(N1, "acct1", "confirmed", "web", "", NOW, NOW + 60)]


def test_consent_global_scope_defaults_to_confirmed(db):
    write(db, [Change("consent", "add", N2)], origin="o", now=NOW)
    assert rows(db, "consent") == [(N2, "", "confirmed", "", "", NOW, NOW)]
    write(db, [Change("consent", "remove", N2, scope_key="other")], origin="o", now=NOW)
    assert len(rows(db, "consent")) == 1  # another scope_key: nothing removed
    write(db, [Change("consent", "remove", N2)], origin="o", now=NOW)
    assert rows(db, "consent") == []


def test_tz(db):
    write(db, [Change("tz", "add", N1, data={"zone": "Asia/Shanghai"})], origin="o", now=NOW)
    assert rows(db, "tz_override") == [(N1, "Asia/Shanghai", NOW)]
    write(db, [Change("tz", "add", N1, data={"zone": "Europe/Paris"})], origin="o", now=NOW + 1)
    assert rows(db, "tz_override") == [(N1, "Europe/Paris", NOW + 1)]
    write(db, [Change("tz", "remove", N1)], origin="o", now=NOW + 2)
    assert rows(db, "tz_override") == []
    assert [e["op"] for e in log(db)] == ["add", "add", "remove"]


# --- idempotence and removals -------------------------------------------------------------------------------

ADDS = {
    "blacklist": (Change("blacklist", "add", N1, data={"reason": "x"}), "blacklist"),
    "optout": (Change("optout", "add", N1, "sender", "ACME"), "optout"),
    "dead": (Change("dead", "add", N1, data={"expires_at": NOW + 10}), "dead"),
    "consent": (Change("consent", "add", N1, scope_key="acct1", data={"status": "pending"}), "consent"),
    "tz": (Change("tz", "add", N1, data={"zone": "UTC"}), "tz_override"),
}


@pytest.mark.parametrize("kind", list(ADDS))
def test_replaying_a_change_is_idempotent(db, kind):
    change, table = ADDS[kind]
    write(db, [change], origin="o", now=NOW)
    write(db, [change], origin="o", now=NOW)
    assert len(rows(db, table)) == 1
    assert len(log(db)) == 2
    write(db, [change, change], origin="o", now=NOW)  # a duplicate inside one batch, too
    assert len(rows(db, table)) == 1
    assert len(log(db)) == 4


@pytest.mark.parametrize("kind", list(ADDS))
def test_remove(db, kind):
    change, table = ADDS[kind]
    write(db, [change, Change(kind, "add", N2, change.scope, change.scope_key, change.data)], origin="o", now=NOW)
    removal = Change(kind, "remove", N1, change.scope, change.scope_key)
    assert write(db, [removal], origin="o", now=NOW + 1) == 1
    assert [r[0] for r in rows(db, table)] == [N2]
    assert write(db, [removal], origin="o", now=NOW + 2) == 1  # removing what is gone: harmless, still logged
    assert [r[0] for r in rows(db, table)] == [N2]
    assert [(e["op"], e["number"]) for e in log(db)] == [("add", N1), ("add", N2), ("remove", N1), ("remove", N1)]


def test_add_and_remove_in_one_batch_apply_in_order(db):
    write(db, [Change("blacklist", "add", N1), Change("blacklist", "remove", N1), Change("blacklist", "add", N2),
               Change("blacklist", "add", N1), Change("blacklist", "remove", N2)], origin="o", now=NOW)
    assert [r[0] for r in rows(db, "blacklist")] == [N1]
    assert [(e["op"], e["number"]) for e in log(db)] == [("add", N1), ("remove", N1), ("add", N2), ("add", N1),
                                                         ("remove", N2)]


def test_empty_batch_writes_nothing(db):
    assert write(db, [], origin="o") == 0
    assert last_id(db) == 0
    assert not db.in_transaction


def test_bad_kind_or_op_is_refused():
    with pytest.raises(ValueError):
        Change("whitelist", "add", N1)
    with pytest.raises(ValueError):
        Change("blacklist", "update", N1)


def test_since_and_from_row_round_trip(db):
    data = {"zone": "Asia/Shanghai", "note": "退订 ✓"}
    write(db, [Change("tz", "add", N1, data=data)] + [Change("blacklist", "add", n) for n in range(10, 20)],
          origin="o", actor="a", now=NOW)
    assert last_id(db) == 11
    assert since(db, 0)[0].data == data
    assert json.loads(db.execute("SELECT data FROM changelog WHERE id = 1").fetchone()[0]) == data
    assert [c.id for c in since(db, 5)] == list(range(6, 12))
    assert [c.id for c in since(db, 2, limit=3)] == [3, 4, 5]
    assert since(db, 11) == []
    row = db.execute(f"SELECT {COLUMNS} FROM changelog WHERE id = 1").fetchone()
    c = from_row(row)
    assert (c.id, c.at, c.origin, c.kind, c.op, c.number, c.actor) == (1, NOW, "o", "tz", "add", N1, "a")


# --- correlation ---------------------------------------------------------------------------------------------


def opt_out(db, number, sender, threshold=3, now=NOW, **kw):
    return write(db, [Change("optout", "add", number, "sender", sender, {"source": "mo", "keyword": "STOP"})],
                 origin="o", actor="deliver", correlation_threshold=threshold, now=now, **kw)


def global_changes(db):
    return [e for e in log(db) if e["kind"] == "optout" and e["scope"] == "global"]


def test_correlation_adds_one_global_opt_out_at_the_threshold(db):
    assert opt_out(db, N1, "ACME") == 1
    assert opt_out(db, N1, "BETA") == 1
    assert opt_out(db, N2, "ACME") == 1  # another number does not count
    assert global_changes(db) == []
    assert opt_out(db, N1, "GAMMA", now=NOW + 5) == 2  # the third distinct sender: + the global opt-out
    (g,) = global_changes(db)
    assert g["number"] == N1 and g["op"] == "add" and g["scope_key"] == ""
    assert g["data"]["source"] == "correlation"
    assert g["data"]["keyword"] == "STOP"
    assert g["data"]["reason"] == "opted out from 3 senders"
    assert (g["at"], g["origin"], g["actor"]) == (NOW + 5, "o", "deliver")
    assert db.execute("SELECT source FROM optout WHERE number = ? AND scope = 'global'", (N1,)).fetchall() == [
        ("correlation",)]
    assert opt_out(db, N1, "DELTA") == 1  # a fourth sender: no second global opt-out
    assert opt_out(db, N1, "ACME") == 1  # nor a repeated one
    assert len(global_changes(db)) == 1
    assert db.execute("SELECT COUNT(*) FROM optout WHERE scope = 'global'").fetchone()[0] == 1


def test_correlation_within_one_batch(db):
    batch = [Change("optout", "add", N1, "sender", s) for s in ("A", "B", "C", "D")]
    assert write(db, batch, origin="o", correlation_threshold=3, now=NOW) == 5
    [g] = global_changes(db)
    assert g["data"] == {"source": "correlation", "keyword": "", "reason": "opted out from 4 senders"}
    assert log(db)[-1]["scope"] == "global"  # logged after the opt-outs that caused it


def test_same_sender_twice_is_not_two_senders(db):
    for _ in range(3):
        opt_out(db, N1, "ACME")
    opt_out(db, N1, "BETA")
    assert global_changes(db) == []


def test_correlation_off_by_default_and_not_for_other_scopes(db):
    for s in ("A", "B", "C"):
        write(db, [Change("optout", "add", N1, "sender", s)], origin="o", now=NOW)
        write(db, [Change("optout", "add", N2, "account", s)], origin="o", correlation_threshold=3, now=NOW)
    assert global_changes(db) == []


def test_no_correlation_when_already_globally_opted_out(db):
    write(db, [Change("optout", "add", N1, "global", "", {"source": "cli"})], origin="o", now=NOW)
    for s in ("A", "B", "C"):
        opt_out(db, N1, s)
    assert [g["data"].get("source") for g in global_changes(db)] == ["cli"]


# --- atomicity -----------------------------------------------------------------------------------------------


def test_a_batch_failing_midway_rolls_back_everything(db):
    write(db, [Change("blacklist", "add", N3)], origin="o", now=NOW)
    batch = [Change("blacklist", "add", N1), Change("optout", "add", N1, "sender", "ACME"),
             Change("tz", "add", N2, data={"timezone": "Asia/Shanghai"})]  # no "zone": KeyError
    with pytest.raises(KeyError):
        write(db, batch, origin="o", now=NOW)
    assert not db.in_transaction
    assert [r[0] for r in rows(db, "blacklist")] == [N3]
    assert rows(db, "optout") == [] and rows(db, "tz_override") == []
    assert last_id(db) == 1
    # the connection is still usable
    write(db, [Change("blacklist", "add", N1)], origin="o", now=NOW)
    assert [r[0] for r in rows(db, "blacklist")] == [N1, N3]


def test_a_failing_batch_that_reaches_the_threshold_writes_no_global_opt_out(db):
    opt_out(db, N1, "A")
    opt_out(db, N1, "B")
    with pytest.raises(KeyError):
        write(db, [Change("optout", "add", N1, "sender", "C"), Change("tz", "add", N1)], origin="o",
              correlation_threshold=3, now=NOW)
    assert len(log(db)) == 2
    assert db.execute("SELECT COUNT(*) FROM optout").fetchone()[0] == 2


# --- batches: one log row for many numbers ---------------------------------------------------------------------


def test_a_batch_fills_the_table_and_logs_one_row_with_its_numbers(db):
    numbers = [N3, N1, N2]
    batch = Change("blacklist", "add", 0, data={"source": "complaint", "reason": "10086"}, numbers=numbers)
    assert batch.numbers == (N3, N1, N2) and batch.targets() == (N3, N1, N2)
    assert write(db, [batch], origin="o", actor="alice", now=NOW) == 1
    assert rows(db, "blacklist") == [(n, "complaint", "10086", NOW, "alice") for n in (N1, N2, N3)]
    assert db.execute("SELECT number, numbers FROM changelog").fetchall() == [(0, f"[{N3},{N1},{N2}]")]
    (c,) = since(db, 0)
    assert c == Change("blacklist", "add", 0, data={"source": "complaint", "reason": "10086"}, at=NOW, origin="o",
                       actor="alice", id=1, numbers=numbers)
    assert last_id(db) == 1


def test_a_one_number_change_has_no_numbers_in_the_log(db):
    write(db, [Change("blacklist", "add", N1)], origin="o", now=NOW)
    assert db.execute("SELECT number, numbers FROM changelog").fetchall() == [(N1, None)]
    (c,) = since(db, 0)
    assert c.numbers == () and c.targets() == (N1,)


def test_a_batch_change_has_number_0():
    with pytest.raises(ValueError):
        Change("blacklist", "add", N1, numbers=[N2])


@pytest.mark.parametrize("kind", list(ADDS))
def test_batches_of_every_kind_equal_their_numbers_one_by_one(tmp_path, kind):
    """A batch add then a batch remove leaves the tables as the same changes made one number at a time."""
    change, table = ADDS[kind]
    numbers = [N1, N2, N3]

    def run(path, batches: bool):
        conn = connect(path)
        try:
            for op, ns in (("add", numbers), ("remove", [N1, N3])):
                data = change.data if op == "add" else {}
                if batches:
                    changes = [Change(kind, op, 0, change.scope, change.scope_key, data, numbers=ns)]
                else:
                    changes = [Change(kind, op, n, change.scope, change.scope_key, data) for n in ns]
                write(conn, changes, origin="o", now=NOW)
            return rows(conn, table)
        finally:
            conn.close()

    one_by_one = run(tmp_path / "singles.db", batches=False)
    assert run(tmp_path / "batches.db", batches=True) == one_by_one
    assert [r[0] for r in one_by_one] == [N2]


def test_batches_and_single_changes_mix_in_one_write_in_order(db):
    write(db, [Change("blacklist", "add", N1), Change("blacklist", "add", 0, numbers=[N2, N3]),
               Change("blacklist", "remove", 0, numbers=[N1, N2]), Change("blacklist", "add", N2)],
          origin="o", now=NOW)
    assert [r[0] for r in rows(db, "blacklist")] == [N2, N3]
    assert [(c.op, c.number, c.numbers) for c in since(db, 0)] == [
        ("add", N1, ()), ("add", 0, (N2, N3)), ("remove", 0, (N1, N2)), ("add", N2, ())]


def test_a_batch_failing_rolls_back_with_the_rest(db):
    with pytest.raises(KeyError):
        write(db, [Change("blacklist", "add", 0, numbers=[N1, N2]), Change("tz", "add", 0, numbers=[N3])],
              origin="o", now=NOW)  # no "zone"
    assert rows(db, "blacklist") == [] and last_id(db) == 0


def test_correlation_counts_the_senders_of_each_number_of_a_batch(db):
    opt_out(db, N1, "A")
    opt_out(db, N2, "A")
    opt_out(db, N1, "B")
    write(db, [Change("optout", "add", N3, "global", "", {"source": "cli"})], origin="o", now=NOW)
    opt_out(db, N3, "A")
    opt_out(db, N3, "B")
    batch = Change("optout", "add", 0, "sender", "C", {"source": "import", "keyword": "TD"}, numbers=[N1, N2, N3])
    assert write(db, [batch], origin="o", actor="bulk", correlation_threshold=3, now=NOW + 1) == 2
    # N1: A, B, C; N2: only A, C; N3: three senders, but already opted out globally
    (g,) = [e for e in global_changes(db) if e["data"].get("source") == "correlation"]
    assert (g["number"], g["data"]["keyword"], g["at"], g["actor"]) == (N1, "TD", NOW + 1, "bulk")


def test_a_batch_listing_cancels_the_pending_removals_of_its_numbers_and_a_manual_one_does_not(db):
    from smppguard.store.lists import pending_removals, request_removal

    write(db, [Change("blacklist", "add", 0, data={"source": "complaint"}, numbers=[N1, N2, N3])], origin="o",
          now=NOW)
    for n in (N1, N2):
        request_removal(db, n, reason="verified", actor="bob", now=NOW)
    write(db, [Change("blacklist", "add", 0, data={"source": "manual"}, numbers=[N1, N2])], origin="o", now=NOW)
    write(db, [Change("blacklist", "add", N1)], origin="o", now=NOW)  # no source: by hand too
    write(db, [Change("dead", "add", N1, data={"source": "receipt"})], origin="o", now=NOW)  # not a listing
    assert [p.status for p in pending_removals(db)] == ["pending", "pending"]
    write(db, [Change("blacklist", "add", 0, data={"source": "carrier"}, numbers=[N3, N2])], origin="o",
          actor="alice", now=NOW + 1)
    assert [(p.number, p.status) for p in pending_removals(db, include_closed=True)] == [
        (N1, "pending"), (N2, "cancelled")]
    assert db.execute("SELECT recipient, action, reason, actor FROM audit WHERE action = 'cancelled'").fetchall() == [
        ("+86138****0002", "cancelled", "new blacklist entry (carrier)", "alice")]  # masked, the default
    # a peer's opt-out, with no actor: the cancellation names the node it came from
    write(db, [Change("optout", "add", 0, "sender", "ACME", numbers=[N1, N3], origin="peer-7")], origin="o", now=NOW)
    assert pending_removals(db) == []
    assert db.execute("SELECT actor, reason FROM audit WHERE action = 'cancelled' ORDER BY id DESC LIMIT 1"
                      ).fetchone() == ("peer-7", "new optout entry (sender)")


# --- correlation: only sender opt-outs count, each number of a batch on its own -----------------------------------


def test_only_adding_a_sender_opt_out_can_make_a_global_one(db):
    for s in ("A", "B", "C", "D"):
        opt_out(db, N1, s)
    write(db, [Change("optout", "remove", N1, "global", "")], origin="ops", now=NOW)  # an operator lifts it
    # neither removing one of the four (three stay) nor an account opt-out makes it again
    write(db, [Change("optout", "remove", N1, "sender", "D")], origin="o", correlation_threshold=3, now=NOW)
    write(db, [Change("optout", "add", N1, "account", "acme")], origin="o", correlation_threshold=3, now=NOW)
    assert db.execute("SELECT COUNT(*) FROM optout WHERE scope = 'global'").fetchone() == (0,)


def test_a_number_of_a_batch_reaching_the_threshold_after_one_that_does_not_still_counts(db):
    opt_out(db, N2, "A")
    opt_out(db, N2, "B")
    batch = [Change("optout", "add", N1, "sender", "C"), Change("optout", "add", N2, "sender", "C")]
    write(db, batch, origin="o", correlation_threshold=3, now=NOW)
    assert [g["number"] for g in global_changes(db)] == [N2]


def test_the_global_opt_out_takes_its_cause_s_time_and_origin(db):
    opt_out(db, N1, "A")
    opt_out(db, N1, "B")
    cause = Change("optout", "add", N1, "sender", "C", {"keyword": "TD"}, at=NOW - 30, origin="peer-7", actor="mqtt")
    write(db, [cause], origin="here", actor="cli", correlation_threshold=3, now=NOW)
    (g,) = global_changes(db)
    assert (g["at"], g["origin"], g["actor"]) == (NOW - 30, "peer-7", "mqtt")
    assert db.execute("SELECT added_at FROM optout WHERE scope = 'global'").fetchone() == (NOW - 30,)


# --- the audit row of a list operation -----------------------------------------------------------------------


def test_a_list_operation_is_audited_once_per_kind_of_change_saying_what_it_was(db):
    write(db, [Change("blacklist", "add", N1, data={"source": "complaint", "reason": "10086 complaint"}),
               Change("blacklist", "add", N2, data={"source": "complaint", "reason": "10086 complaint"}),
               Change("blacklist", "add", N3, data={"source": "regulator"}),
               Change("optout", "add", N1, "sender", "ACME", {"source": "manual"}),
               Change("tz", "add", N2, data={"zone": "Asia/Tokyo"}),
               Change("consent", "remove", N3)],
          origin="o", actor="alice", now=NOW, audited=True)
    got = db.execute("SELECT rule, action, recipient, reason, actor FROM audit ORDER BY id").fetchall()
    assert got == [
        ("blacklist", "add", "2 numbers", "blacklist add (source complaint, 10086 complaint)", "alice"),
        ("blacklist", "add", "+86138****0003", "blacklist add (source regulator)", "alice"),  # masked, by default
        ("optout", "add", "+86138****0001", "optout add (sender ACME, source manual)", "alice"),
        ("tz", "add", "+86138****0002", "tz add (Asia/Tokyo)", "alice"),
        ("consent", "remove", "+86138****0003", "consent remove", "alice")]


def test_a_list_operation_inside_the_callers_transaction_is_audited_and_commits_with_it(db):
    db.execute("BEGIN IMMEDIATE")
    write(db, [Change("blacklist", "add", N1, data={"source": "complaint"})], origin="o", actor="alice", now=NOW,
          in_transaction=True, audited=True)
    assert db.in_transaction  # not committed by write()
    db.execute("ROLLBACK")
    assert rows(db, "audit") == [] and rows(db, "blacklist") == []
    db.execute("BEGIN IMMEDIATE")
    write(db, [Change("blacklist", "add", N1, data={"source": "complaint"})], origin="o", actor="alice", now=NOW,
          in_transaction=True, audited=True)
    db.execute("COMMIT")
    assert db.execute("SELECT rule, action, reason, actor FROM audit").fetchall() == [
        ("blacklist", "add", "blacklist add (source complaint)", "alice")]


def test_the_logged_data_is_compact_json_that_keeps_its_text_readable(db):
    """What `sqlite3` shows, and what peers receive: no spaces, Chinese as it is (not \\u escapes); data a
    batch repeats (an import) and data with lists in it are logged all the same."""
    reply = {"source": "reply", "keyword": "退订"}
    write(db, [Change("optout", "add", N1, "sender", "10690000", dict(reply)),
               Change("optout", "add", N2, "sender", "10690000", dict(reply)),
               Change("dead", "add", N3, data={"reasons": ["MBDEAD", "UNDELIV"]})], origin="o", now=NOW)
    assert [r for (r,) in db.execute("SELECT data FROM changelog ORDER BY id")] == [
        '{"source":"reply","keyword":"退订"}', '{"source":"reply","keyword":"退订"}',
        '{"reasons":["MBDEAD","UNDELIV"]}']
