"""Writing what the deliver path learned: apply_fact in the store, once, with its evidence."""

from __future__ import annotations

import json

import pytest

from smppguard.inbound import CONFIRM, DELIVERED_FACT, OPTIN, OPTOUT, Fact
from smppguard.inbound.receipts import BLACKLISTED, DEAD, SUSPENDED
from smppguard.store import lists
from smppguard.store.credit import DELIVERED_WINDOW_S
from smppguard.store.db import node_id
from smppguard.store.learning import LearningTerms, apply_fact, apply_facts

A = 8613800000001
NOW = 1_800_000_000.0
TERMS = LearningTerms()


def reply(kind: str, keyword: str, sender: str = "10690000", account: str = "acme", number: int = A) -> Fact:
    return Fact(kind, number, account, sender, keyword, {"text": keyword, "to": sender, "account": account})


def receipt(kind: str, code: str, number: int = A) -> Fact:
    return Fact(kind, number, "acme", "", code, {"receipt": "r1", "stat": "UNDELIV", "err": code, "account": "acme"})


def apply(db, fact, now=NOW, terms=TERMS, recipient="+86138****0001"):
    db.execute("BEGIN IMMEDIATE")
    try:
        return apply_fact(db, fact, now, terms, recipient)
    finally:
        db.execute("COMMIT")


def changes(db) -> list[tuple]:
    return db.execute("SELECT kind, op, number, scope, scope_key, actor FROM changelog ORDER BY id").fetchall()


def test_an_opt_out_is_written_once_with_its_evidence_and_audited_as_configured(db):
    assert apply(db, reply(OPTOUT, "td")) == "opted out (sender 10690000)"
    assert apply(db, reply(OPTOUT, "stop"), NOW + 60) is None  # known already: no second change-log row
    assert changes(db) == [("optout", "add", A, "sender", "10690000", "deliver_sm")]
    (data,) = db.execute("SELECT data FROM changelog").fetchone()
    assert json.loads(data) == {"source": "reply", "keyword": "td", "text": "td", "to": "10690000", "account": "acme"}
    assert db.execute("SELECT recipient, rule, action, actor, reason FROM audit").fetchall() == [
        ("+86138****0001", "optout", "learned", "deliver_sm",
         "opted out (sender 10690000): reply 'TD' to 10690000")]


@pytest.mark.parametrize("scope, sender, expected", [
    ("account", "10690000", ("account", "acme")),
    ("global", "10690000", ("global", "")),
    ("sender", "", ("account", "acme")),  # a reply to no address: the account it came on
])
def test_the_opt_out_takes_the_rules_scope(db, scope, sender, expected):
    apply(db, reply(OPTOUT, "t", sender=sender), terms=LearningTerms(optout_scope=scope))
    assert db.execute("SELECT scope, scope_key FROM optout").fetchall() == [expected]


def test_replies_to_three_senders_make_a_global_opt_out_that_an_opt_in_to_one_does_not_lift(db):
    for sender in ("1", "2", "3"):
        apply(db, reply(OPTOUT, "t", sender=sender))
    assert ("global", "", "correlation") in db.execute("SELECT scope, scope_key, source FROM optout").fetchall()
    assert apply(db, reply(OPTIN, "start", sender="2")) == "opted in again (sender 2)"
    assert db.execute("SELECT scope, scope_key FROM optout ORDER BY scope, scope_key").fetchall() == [
        ("global", ""), ("sender", "1"), ("sender", "3")]


def test_an_opt_in_lifts_nothing_it_did_not_make(db):
    lists.add_optouts(db, [(A, "sender", "10690000")], source="manual", actor="ops")
    lists.add_blacklist(db, [A], source="complaint", actor="ops")
    assert apply(db, reply(OPTIN, "start")) is None
    assert db.execute("SELECT COUNT(*) FROM optout").fetchone() == (1,)
    assert db.execute("SELECT COUNT(*) FROM blacklist").fetchone() == (1,)


def test_a_confirmation_confirms_a_pending_consent_of_that_number_and_account_in_time(db):
    lists.grant_consent(db, A, source="web", actor="ops", now=NOW - 3600)  # global, pending
    lists.grant_consent(db, A, source="web", account="other", actor="ops", now=NOW - 3600)
    assert apply(db, reply(CONFIRM, "yes")) == "consent confirmed"
    assert db.execute("SELECT scope_key, status, granted_at, confirmed_at FROM consent ORDER BY scope_key"
                      ).fetchall() == [("", "confirmed", NOW - 3600, NOW), ("other", "pending", NOW - 3600, None)]
    # what peers replay: a global consent (no scope), confirmed
    scope, key, data = db.execute("SELECT scope, scope_key, data FROM changelog ORDER BY id DESC LIMIT 1").fetchone()
    assert (scope, key, json.loads(data)["status"]) == ("", "", "confirmed")
    assert apply(db, reply(CONFIRM, "yes")) is None  # nothing pending any more


def test_a_confirmation_after_the_time_limit_confirms_nothing(db):
    lists.grant_consent(db, A, source="web", actor="ops", now=NOW - 73 * 3600)
    assert apply(db, reply(CONFIRM, "y")) is None
    assert db.execute("SELECT status FROM consent").fetchall() == [("pending",)]


def test_a_dead_number_is_marked_once_for_the_rules_time(db):
    terms = LearningTerms(dead_for_s=86400.0)
    assert apply(db, receipt(DEAD, "MK:0001"), terms=terms).startswith("marked dead")
    assert apply(db, receipt(DEAD, "MK:0001"), NOW + 10, terms=terms) is None
    assert db.execute("SELECT number, expires_at FROM dead").fetchall() == [(A, NOW + 86400.0)]
    assert apply(db, receipt(DEAD, "MK:0001"), NOW + 86400.0, terms=terms) is not None  # expired: marked again


def test_suspended_receipts_count_only_within_their_window(db):
    terms = LearningTerms(suspended_failures=2, suspended_within_s=100.0)
    assert apply(db, receipt(SUSPENDED, "MK:0005"), NOW, terms=terms) is None
    assert apply(db, receipt(SUSPENDED, "MK:0005"), NOW + 101, terms=terms) is None  # the first is too old
    assert db.execute("SELECT COUNT(*) FROM dead").fetchone() == (0,)
    assert apply(db, receipt(SUSPENDED, "DB:0102"), NOW + 150, terms=terms).startswith("marked dead")
    assert db.execute("SELECT COUNT(*) FROM receipt_failure").fetchone() == (0,)  # dead: its count is spent


def test_a_carrier_blacklist_receipt_blacklists_once(db):
    assert apply(db, receipt(BLACKLISTED, "MBBLACK")) == "blacklisted (carrier)"
    assert apply(db, receipt(BLACKLISTED, "DBBLACK")) is None
    assert db.execute("SELECT number, source, reason FROM blacklist").fetchall() == [
        (A, "carrier", "receipt r1 said MBBLACK")]


def apply_batch(db, facts):
    db.execute("BEGIN IMMEDIATE")
    try:
        return apply_facts(db, [(f, NOW + i, "+x") for i, f in enumerate(facts)], TERMS)
    finally:
        db.execute("COMMIT")


B, C = 8613800000002, 8613800000003


def test_a_batch_is_applied_in_order_as_one_fact_after_another_would_be(db):
    apply(db, reply(OPTOUT, "t", number=C))
    results = apply_batch(db, [reply(OPTOUT, "t"), reply(OPTOUT, "td", number=B), reply(OPTOUT, "t", number=C),
                               reply(OPTIN, "start"), reply(OPTOUT, "stop"), reply(OPTOUT, "t", number=B)])
    assert results == ["opted out (sender 10690000)", "opted out (sender 10690000)", None,
                       "opted in again (sender 10690000)", "opted out (sender 10690000)", None]
    assert sorted(db.execute("SELECT number, keyword FROM optout")) == [(A, "stop"), (B, "td"), (C, "t")]
    assert [r[1:3] for r in changes(db)] == [("add", C), ("add", A), ("add", B), ("remove", A), ("add", A)]
    assert db.execute("SELECT COUNT(*) FROM audit WHERE action = 'learned'").fetchone() == (5,)


def savepoints(db, facts) -> list[str]:
    """The savepoints apply_facts opened for `facts`: "facts" for a run of opt-outs written at once, "fact" for
    one fact on its own."""
    seen: list[str] = []
    db.set_trace_callback(lambda sql: seen.append(sql.split()[1]) if sql.startswith("SAVEPOINT") else None)
    try:
        apply_batch(db, facts)
    finally:
        db.set_trace_callback(None)
    return seen


def test_a_run_of_opt_outs_of_distinct_numbers_is_written_at_once_and_anything_else_one_by_one(db):
    """A flood of STOPs costs one change-log write (one correlation query, one statement per table), not one a
    number: what the run and the fact-by-fact paths write is the same (see the test above)."""
    assert savepoints(db, [reply(OPTOUT, "t"), reply(OPTOUT, "t", number=B)]) == ["facts"]
    assert [r[1:3] for r in changes(db)] == [("add", A), ("add", B)]
    assert [r[0] for r in db.execute("SELECT origin FROM changelog")] == [node_id(db)] * 2
    assert savepoints(db, [reply(OPTOUT, "t", number=C)]) == ["fact"]  # one alone: no run
    # a repeated number ends the run: the second could depend on the first
    assert savepoints(db, [reply(OPTIN, "start"), reply(OPTOUT, "t"), reply(OPTOUT, "t", number=B),
                           reply(OPTOUT, "t")]) == ["fact", "facts", "fact"]


def test_a_fact_that_fails_loses_only_itself(db):
    bogus = Fact("bogus", B, "acme", "10690000", "x", {})
    results = apply_batch(db, [reply(OPTOUT, "t"), bogus, reply(OPTOUT, "t", number=C)])
    assert results[0] == results[2] == "opted out (sender 10690000)"
    assert isinstance(results[1], ValueError)
    assert sorted(n for (n,) in db.execute("SELECT number FROM optout")) == [A, C]


def test_a_run_of_opt_outs_with_a_bad_one_falls_back_to_one_by_one(db):
    unwritable = Fact(OPTOUT, B, "acme", "10690000", "t", {"text": object()})  # evidence JSON cannot hold
    results = apply_batch(db, [reply(OPTOUT, "t"), unwritable, reply(OPTOUT, "t", number=C)])
    assert results[0] == results[2] == "opted out (sender 10690000)"
    assert isinstance(results[1], TypeError)
    assert sorted(n for (n,) in db.execute("SELECT number FROM optout")) == [A, C]
    assert [r[2] for r in changes(db)] == [A, C]


def audits(db) -> list[tuple]:
    return db.execute("SELECT rule, reason FROM audit WHERE action = 'learned' ORDER BY id").fetchall()


def test_each_fact_says_what_it_did_and_audits_it_under_its_rule(db):
    assert apply(db, reply(OPTOUT, "t"), terms=LearningTerms(optout_scope="global")) == "opted out (global)"
    assert apply(db, reply(OPTIN, "start", number=B)) is None  # nothing to lift: nothing said, nothing audited
    assert apply(db, reply(OPTIN, "start")) == "opted in again (global)"
    assert apply(db, receipt(DEAD, "MK:0001")) == "marked dead"
    assert apply(db, receipt(BLACKLISTED, "MBBLACK", number=B)) == "blacklisted (carrier)"
    assert [rule for rule, _ in audits(db)] == ["optout", "optout", "dead", "blacklist"]
    assert audits(db)[2][1] == "marked dead, empty or nonexistent (MK:0001): receipt r1 said MK:0001"
    # every change the deliver path makes is the deliver path's
    assert {actor for *_, actor in changes(db)} == {"deliver_sm"}


def test_an_opt_in_lifts_the_reply_opt_outs_of_every_scope_it_reaches_and_says_each(db):
    for scope in ("global", "account", "sender"):
        apply(db, reply(OPTOUT, "t"), terms=LearningTerms(optout_scope=scope))
    assert apply(db, reply(OPTIN, "start")) == "opted in again (account acme, global, sender 10690000)"
    assert db.execute("SELECT COUNT(*) FROM optout").fetchone() == (0,)


def test_a_dead_receipt_keeps_its_reason_and_evidence(db):
    apply(db, receipt(DEAD, "MK:0001"), terms=LearningTerms(dead_for_s=86400.0))
    assert db.execute("SELECT reason, marked_at, expires_at FROM dead").fetchall() == [
        ("empty or nonexistent (MK:0001)", NOW, NOW + 86400.0)]
    (data,) = db.execute("SELECT data FROM changelog").fetchone()
    assert json.loads(data) == {"reason": "empty or nonexistent (MK:0001)", "expires_at": NOW + 86400.0,
                                "receipt": "r1", "stat": "UNDELIV", "err": "MK:0001", "account": "acme"}


def test_suspended_receipts_make_a_dead_number_whose_reason_counts_them(db):
    terms = LearningTerms(suspended_failures=2, suspended_within_s=2 * 86400.0)
    apply(db, receipt(SUSPENDED, "MK:0005"), NOW, terms=terms)
    apply(db, receipt(SUSPENDED, "MK:0005"), NOW + 2 * 86400.0, terms=terms)  # the first one is just in the window
    assert db.execute("SELECT reason FROM dead").fetchall() == [("suspended: 2 receipts within 2 days (MK:0005)",)]


def test_deliveries_are_counted_within_their_window_and_start_again_after_it(db):
    delivered = Fact(DELIVERED_FACT, A, "acme", "", "DELIVRD", {})
    for at in (NOW, NOW + 10, NOW + 20):
        assert apply(db, delivered, at) is None
    assert db.execute("SELECT count, since FROM delivery_ok").fetchall() == [(3, NOW)]
    apply(db, delivered, NOW + DELIVERED_WINDOW_S + 1)  # the first is past the window: counting starts again
    assert db.execute("SELECT count, since FROM delivery_ok").fetchall() == [(1, NOW + DELIVERED_WINDOW_S + 1)]
    assert changes(db) == []  # counted, not a list change


def test_a_confirmation_of_an_account_consent_keeps_its_source_and_wording(db):
    lists.grant_consent(db, A, source="web form", wording="Yes to offers", account="acme", actor="ops",
                        now=NOW - 60)
    assert apply(db, reply(CONFIRM, "yes")) == "consent confirmed"
    assert db.execute("SELECT scope_key, status, source, wording, granted_at, confirmed_at FROM consent").fetchall() \
        == [("acme", "confirmed", "web form", "Yes to offers", NOW - 60, NOW)]
    kind, op, number, scope, key, actor = changes(db)[-1]
    assert (kind, op, scope, key, actor) == ("consent", "add", "account", "acme", "deliver_sm")
    (data,) = db.execute("SELECT data FROM changelog ORDER BY id DESC LIMIT 1").fetchone()
    assert json.loads(data)["confirmed_by"] == "yes"
    assert audits(db) == [("consent", "consent confirmed: reply 'YES' to 10690000")]


def test_a_reply_that_names_no_address_says_so(db):
    bare = Fact(OPTOUT, A, "acme", "", "t", {"text": "t"})
    apply(db, bare)
    assert audits(db) == [("optout", "opted out (account acme): reply 'T' to ")]


def test_a_batch_of_opt_outs_keeps_each_reply_s_time_and_a_repeated_number_once(db):
    results = apply_batch(db, [reply(OPTOUT, "t"), reply(OPTOUT, "t", number=B), reply(OPTOUT, "td")])
    assert results[:2] == ["opted out (sender 10690000)"] * 2
    assert results[2] is None  # the same number and sender again, within the batch
    assert sorted(db.execute("SELECT number, added_at FROM optout")) == [(A, NOW), (B, NOW + 1)]
    assert [(r[2], r[0]) for r in changes(db)] == [(A, "optout"), (B, "optout")]


def test_an_unknown_fact_is_named_in_its_error(db):
    with pytest.raises(ValueError, match="unknown fact 'bogus'"):
        apply(db, Fact("bogus", A, "acme", "", "x", {}))


def test_no_learned_fact_puts_the_number_into_its_audited_reason(db):
    """The audit row keeps the recipient as [audit] recipient says; its reason is kept as it is, so it must not
    carry the number: every kind of fact, from a reply and from a receipt, and one from an unreadable
    address."""
    from smppguard.inbound import UNREAD

    lists.grant_consent(db, A, source="web", actor="ops", now=NOW - 3600)
    terms = LearningTerms(suspended_failures=1)
    for fact in (reply(OPTOUT, "td"), reply(OPTIN, "start"), reply(CONFIRM, "yes"), receipt(DEAD, "MK:0001"),
                 receipt(SUSPENDED, "MK:0005", A + 1), receipt(BLACKLISTED, "MBBLACK", A + 2),
                 Fact(UNREAD, 0, "acme", "10690000", "td", {"text": "TD", "to": "10690000", "account": "acme",
                                                            "address": str(A), "ton": 5, "reason": "no number",
                                                            "lost": OPTOUT})):
        apply(db, fact, terms=terms)
    audited = db.execute("SELECT rule, reason FROM audit WHERE actor = 'deliver_sm' ORDER BY id").fetchall()
    assert [rule for rule, _ in audited] == ["optout", "optout", "consent", "dead", "dead", "blacklist", "inbound"]
    for _rule, reason in audited:
        assert not any(str(n)[i:i + 7] in reason for n in (A, A + 1, A + 2) for i in range(len(str(n)) - 6)), reason
