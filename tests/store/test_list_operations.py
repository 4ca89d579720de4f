"""The list operations behind the CLI (`smppguard blacklist / optout / consent / tz / dead`), in this process: each
is one change-log row per change, at the time and by the actor given, and one audit row saying what was done.
The CLI tests run the same through `smppguard` itself."""

from __future__ import annotations

import pytest

from smppguard.store import lists

A, B = 8613800000001, 8613800000002
NOW = 1_800_000_000.0


def logged(db) -> list[tuple]:
    return db.execute("SELECT at, kind, op, number, scope, scope_key, actor FROM changelog ORDER BY id").fetchall()


def audited(db) -> list[tuple]:
    return db.execute("SELECT at, rule, action, recipient, reason, actor FROM audit ORDER BY id").fetchall()


@pytest.mark.parametrize("operation, log, audit", [
    (lambda db: lists.add_optouts(db, [(A, "sender", "1069"), (B, "global", "ignored")], source="web",
                                  actor="ops", now=NOW),
     [(NOW, "optout", "add", A, "sender", "1069", "ops"), (NOW, "optout", "add", B, "global", "", "ops")],
     [(NOW, "optout", "add", "+86138****0001", "optout add (sender 1069, source web)", "ops"),
      (NOW, "optout", "add", "+86138****0002", "optout add (global, source web)", "ops")]),
    (lambda db: lists.grant_consent(db, A, source="form", account="acme", actor="ops", now=NOW),
     [(NOW, "consent", "add", A, "account", "acme", "ops")],
     [(NOW, "consent", "add", "+86138****0001", "consent add (account acme, source form)", "ops")]),
    (lambda db: lists.grant_consent(db, A, source="form", actor="ops", now=NOW),
     [(NOW, "consent", "add", A, "", "", "ops")],
     [(NOW, "consent", "add", "+86138****0001", "consent add (source form)", "ops")]),
    (lambda db: lists.set_zone(db, A, "Asia/Tokyo", actor="ops", now=NOW),
     [(NOW, "tz", "add", A, "", "", "ops")],
     [(NOW, "tz", "add", "+86138****0001", "tz add (Asia/Tokyo)", "ops")]),
    (lambda db: lists.mark_dead(db, [A], reason="MBDEAD", expire_s=86400.0, actor="ops", now=NOW),
     [(NOW, "dead", "add", A, "", "", "ops")],
     [(NOW, "dead", "add", "+86138****0001", "dead add (MBDEAD)", "ops")]),
])
def test_a_list_operation_logs_each_change_and_audits_what_it_did(db, operation, log, audit):
    operation(db)
    assert logged(db) == log
    assert audited(db) == audit


@pytest.mark.parametrize("account", ["acme", ""])
def test_revoking_consent_removes_the_record_of_that_scope_only(db, account):
    lists.grant_consent(db, A, source="form", account="acme", confirmed=True, actor="ops", now=NOW - 60)
    lists.grant_consent(db, A, source="form", confirmed=True, actor="ops", now=NOW - 60)
    lists.revoke_consent(db, A, account=account, actor="cs", now=NOW)
    assert logged(db)[-1] == (NOW, "consent", "remove", A, "account" if account else "", account, "cs")
    assert audited(db)[-1] == (NOW, "consent", "remove", "+86138****0001",
                               "consent remove" + (" (account acme)" if account else ""), "cs")
    assert db.execute("SELECT scope_key FROM consent").fetchall() == [("" if account else "acme",)]
    with pytest.raises(lists.NotFound, match="has no consent record"):
        lists.revoke_consent(db, A, account=account, actor="cs", now=NOW)


def test_removing_an_opt_out_logs_and_audits_it_and_a_global_one_needs_no_key(db):
    lists.add_optouts(db, [(A, "global", "")], actor="ops", now=NOW - 60)
    lists.remove_optout(db, A, "global", "whatever", actor="cs", now=NOW)
    assert logged(db)[-1] == (NOW, "optout", "remove", A, "global", "", "cs")
    assert audited(db)[-1] == (NOW, "optout", "remove", "+86138****0001", "optout remove (global)", "cs")
    with pytest.raises(lists.NotFound, match="has no global opt-out"):
        lists.remove_optout(db, A, "global", "", actor="cs", now=NOW)


def test_an_unknown_opt_out_scope_is_refused_naming_the_scopes(db):
    with pytest.raises(ValueError, match="^scope must be one of sender, account, global$"):
        lists.add_optouts(db, [(A, "everyone", "")], actor="ops", now=NOW)
    assert logged(db) == []


def test_clearing_dead_numbers_logs_only_those_that_were_dead(db):
    lists.mark_dead(db, [A], reason="MBDEAD", expire_s=86400.0, actor="ops", now=NOW - 60)
    assert lists.clear_dead(db, [A, B], actor="cs", now=NOW) == 1
    assert logged(db)[-1] == (NOW, "dead", "remove", A, "", "", "cs")
    assert audited(db)[-1] == (NOW, "dead", "remove", "+86138****0001", "dead remove", "cs")


def test_a_number_blacklisted_by_hand_is_logged_and_audited_as_manual_with_no_reason(db):
    lists.add_blacklist(db, [A], actor="ops", now=NOW)
    assert db.execute("SELECT number, source, reason, added_at, actor FROM blacklist").fetchall() == [
        (A, "manual", "", NOW, "ops")]
    assert logged(db) == [(NOW, "blacklist", "add", A, "", "", "ops")]
    assert audited(db) == [(NOW, "blacklist", "add", "+86138****0001", "blacklist add (source manual)", "ops")]
    with pytest.raises(ValueError, match="^source must be one of complaint, carrier, regulator, manual$"):
        lists.add_blacklist(db, [B], source="rumour", actor="ops", now=NOW)
    assert len(logged(db)) == 1


C = 8613800000003
DAY = 86400.0


def test_a_removal_request_opens_an_observation_period_and_audits_it(db):
    lists.add_blacklist(db, [A], actor="ops", now=NOW - DAY)
    asked = lists.request_removal(db, A, reason="ticket 12", observe_s=3 * DAY, actor="cs", now=NOW)
    assert asked == lists.PendingRemoval(asked.id, A, "ticket 12", "cs", NOW, NOW + 3 * DAY, "pending")
    assert lists.pending_removals(db) == [asked]
    assert asked.id == db.execute("SELECT id FROM pending_removal").fetchone()[0]
    assert audited(db)[-1] == (NOW, "blacklist-removal", "requested", "+86138****0001",
                               "ticket 12 (observe 3 days)", "cs")
    with pytest.raises(lists.AlreadyExists, match=r"^\+8613800000001 already has a pending removal$"):
        lists.request_removal(db, A, reason="again", actor="cs", now=NOW)
    with pytest.raises(lists.NotFound, match=r"^\+8613800000002 is not blacklisted$"):
        lists.request_removal(db, B, reason="ticket 13", actor="cs", now=NOW)
    with pytest.raises(ValueError, match="^a removal needs a reason$"):
        lists.request_removal(db, A, reason="  ", actor="cs", now=NOW)
    assert len(lists.pending_removals(db)) == 1


def test_a_due_removal_takes_the_number_off_the_list_at_its_time_and_watches_it(db):
    lists.add_blacklist(db, [A, B], actor="ops", now=NOW - 10 * DAY)
    lists.request_removal(db, A, reason="ticket 12", observe_s=3 * DAY, actor="cs", now=NOW - 4 * DAY)
    lists.request_removal(db, B, reason="ticket 13", observe_s=3 * DAY, actor="cs", now=NOW - DAY)
    assert lists.apply_due_removals(db, NOW - 2 * DAY) == []  # its period has not ended yet
    assert lists.apply_due_removals(db, NOW) == [A]
    assert db.execute("SELECT number FROM blacklist").fetchall() == [(B,)]
    assert db.execute("SELECT * FROM watched").fetchall() == [(A, NOW, "ticket 12")]
    assert db.execute("SELECT at, kind, op, number, actor, data FROM changelog ORDER BY id DESC LIMIT 1").fetchone() \
        == (NOW, "blacklist", "remove", A, "cs", f'{{"reason":"ticket 12","requested_at":{NOW - 4 * DAY}}}')
    assert audited(db)[-1] == (NOW, "blacklist-removal", "done", "+86138****0001", "ticket 12", "cs")
    assert [(p.number, p.status, p.close_reason) for p in lists.pending_removals(db, include_closed=True)] == [
        (A, "done", "observation period ended"), (B, "pending", "")]
    assert db.execute("SELECT closed_at FROM pending_removal WHERE number = ?", (A,)).fetchone() == (NOW,)


def test_a_removal_cancelled_while_others_are_applied_is_skipped_and_the_next_still_goes(db):
    """A complaint can cancel a removal between the look for due ones and its own transaction: it is re-read
    there. Here applying A's removal cancels B's, as a complaint arriving at that moment would."""
    lists.add_blacklist(db, [A, B, C], actor="ops", now=NOW - 10 * DAY)
    for number in (A, B, C):
        lists.request_removal(db, number, reason="ticket", observe_s=3 * DAY, actor="cs", now=NOW - 4 * DAY)
    db.execute(f"CREATE TRIGGER complaint AFTER UPDATE OF status ON pending_removal WHEN NEW.number = {A} BEGIN "
               f"UPDATE pending_removal SET status = 'cancelled' WHERE number = {B}; END")
    assert lists.apply_due_removals(db, NOW) == [A, C]
    assert db.execute("SELECT number FROM blacklist").fetchall() == [(B,)]
    assert not db.in_transaction


def test_a_removal_that_fails_half_way_leaves_it_pending_and_the_number_listed(db):
    lists.add_blacklist(db, [A], actor="ops", now=NOW - 10 * DAY)
    lists.request_removal(db, A, reason="ticket 12", observe_s=3 * DAY, actor="cs", now=NOW - 4 * DAY)
    db.execute("CREATE TRIGGER no_room BEFORE INSERT ON changelog BEGIN SELECT RAISE(ABORT, 'no room'); END")
    with pytest.raises(Exception, match="no room"):
        lists.apply_due_removals(db, NOW)
    assert not db.in_transaction
    assert [(p.number, p.status) for p in lists.pending_removals(db)] == [(A, "pending")]
    assert db.execute("SELECT number FROM blacklist").fetchall() == [(A,)]
    assert db.execute("SELECT * FROM watched").fetchall() == []


def test_list_operations_defaults(db, monkeypatch):
    """What the CLI leaves out: no wording, every account, the shipped correlation of three senders."""
    lists.grant_consent(db, A, source="form", actor="ops", now=NOW)
    assert db.execute("SELECT scope_key, wording, status FROM consent").fetchall() == [("", "", "pending")]
    lists.revoke_consent(db, A, actor="ops", now=NOW)
    assert db.execute("SELECT COUNT(*) FROM consent").fetchone() == (0,)
    lists.add_optouts(db, [(B, "sender", s) for s in ("1069", "1070", "1071")], actor="ops", now=NOW)
    assert [(o["scope"], o["key"]) for o in lists.list_optouts(db, number=B, scope="global")] == [("global", "")]
    assert [o["key"] for o in lists.list_optouts(db, key="1070")] == ["1070"]
    lists.mark_dead(db, [C], reason="MBDEAD", expire_s=DAY, actor="ops", now=NOW - 2 * DAY)
    assert lists.list_dead(db, now=NOW) == []  # expired by then, though not by the clock
    assert [d["number"] for d in lists.list_dead(db, now=NOW - 2 * DAY + 60)] == ["+8613800000003"]
    assert [d["number"] for d in lists.list_dead(db, include_expired=True, now=NOW)] == ["+8613800000003"]
    monkeypatch.setattr(lists.getpass, "getuser", lambda: (_ for _ in ()).throw(KeyError("no user")))
    assert lists.os_user() == str(lists.os.getuid())


def test_a_csv_export_leaves_a_missing_column_empty():
    import io

    out = io.StringIO()
    assert lists.write_csv(out, [{"number": "+1"}, {"number": "+2", "reason": "x"}], ("number", "reason")) == 2
    assert out.getvalue() == "number,reason\r\n+1,\r\n+2,x\r\n"
