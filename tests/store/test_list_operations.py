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
