"""load_index reads the list tables into the Index; apply_change keeps it equal to them, change by change."""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smppguard.policy import Submission, decide, load_policy
from smppguard.policy.frequency import HISTORY_S
from smppguard.policy.model import GLOBAL, SCOPE_STRIDE, Index, scoped
from smppguard.store.changelog import Change, last_id, since, write
from smppguard.store.db import connect
from smppguard.store.index import apply_change, load_index

NOW = 1_700_000_000.0
POLICY = load_policy()
GRACE = POLICY.settings("optout").grace
N1, N2, N3, N4 = 8613800000001, 8613800000002, 8613800000003, 14155550100


def view(index: Index) -> dict:
    """The Index's list state with scope ids decoded, so two Indexes that numbered scopes in a different order
    compare equal."""
    names = {sid: name for name, sid in index.scope_ids.items()}

    def decode(key):
        sid, number = divmod(key, SCOPE_STRIDE)
        return number, names[sid]

    return {"blacklist": set(index.blacklist),
            "optouts": {decode(k) for k in index.optouts},
            "optout_at": {decode(k): at for k, at in index.optout_at.items()},
            "dead": dict(index.dead),
            "consent": {decode(k): v for k, v in index.consent.items()},
            "tz": dict(index.tz)}


def replay(changes, now=NOW) -> Index:
    index = Index()
    for c in changes:
        apply_change(index, c, now, POLICY)
    return index


# --- load_index ---------------------------------------------------------------------------------------------


def test_empty_store_gives_an_empty_index(db):
    index = load_index(db, POLICY, NOW)
    assert view(index) == view(Index())
    assert index.history == {} and index.change_id == 0
    assert not db.in_transaction


def test_load_index_matches_the_tables(db):
    write(db, [
        Change("blacklist", "add", N1), Change("blacklist", "add", N2), Change("blacklist", "remove", N2),
        Change("optout", "add", N1, "global", ""),
        Change("optout", "add", N2, "sender", "ACME"),
        Change("optout", "add", N3, "account", "acct1"),
        Change("optout", "add", N3, "sender", "ACME", at=NOW - GRACE - 60),  # outside the grace period
        Change("optout", "add", N4, "sender", "ACME", data={"source": "import"}),  # a list, not a reply
        Change("dead", "add", N1, data={"expires_at": NOW + 60}),
        Change("dead", "add", N2, data={"expires_at": NOW - 1}),  # expired
        Change("dead", "add", N3, data={"expires_at": NOW}),  # expires now: expired
        Change("dead", "add", N4, at=NOW - 89 * 86400),  # default expiry, one day left
        Change("consent", "add", N1, data={"status": "confirmed"}),
        Change("consent", "add", N2, scope_key="acct1", data={"status": "pending"}),
        Change("tz", "add", N4, data={"zone": "America/Los_Angeles"}),
    ], origin="o", now=NOW - 10)
    index = load_index(db, POLICY, NOW)
    sid = index.scope_id
    assert index.blacklist == {N1}
    assert index.optouts == {scoped(N1, GLOBAL), scoped(N2, sid("sender", "ACME")),
                             scoped(N3, sid("account", "acct1")), scoped(N3, sid("sender", "ACME")),
                             scoped(N4, sid("sender", "ACME"))}
    assert scoped(N4, sid("sender", "ACME")) in index.optouts
    # the grace remembers a person's own recent replies: not global opt-outs, not imported lists
    assert index.optout_at == {scoped(N2, sid("sender", "ACME")): NOW - 10,
                               scoped(N3, sid("account", "acct1")): NOW - 10}
    assert index.dead == {N1: NOW + 60, N4: NOW + 86400}
    assert index.consent == {scoped(N1, GLOBAL): "confirmed",
                             scoped(N2, sid("account", "acct1")): "pending"}
    assert index.tz == {N4: "America/Los_Angeles"}
    assert index.change_id == last_id(db) == 15
    assert len(index.scope_ids) == 3  # "", s:ACME, a:acct1 (consent and account opt-outs share "a:" ids)
    assert not db.in_transaction


def test_change_id_is_the_last_changelog_id_even_when_the_tables_are_empty(db):
    write(db, [Change("blacklist", "add", N1), Change("blacklist", "remove", N1)], origin="o", now=NOW)
    index = load_index(db, POLICY, NOW)
    assert index.blacklist == set() and index.change_id == 2


def _sends(db, rows):
    db.executemany("INSERT INTO send_history (number, account, sent_at) VALUES (?, ?, ?)", rows)


def test_send_history_within_history_s_keyed_by_number(db):
    _sends(db, [(N1, "acct1", NOW - 10), (N1, "acct2", NOW - 86400), (N1, "acct1", NOW - 5),
                (N2, "acct1", NOW - HISTORY_S + 1), (N2, "acct1", NOW - HISTORY_S),  # on the edge: too old
                (N3, "acct1", NOW - HISTORY_S - 3600)])
    index = load_index(db, POLICY, NOW)
    assert index.history == {N1: (NOW - 86400, NOW - 10, NOW - 5), N2: (NOW - HISTORY_S + 1,)}
    assert index.sends_between(N1, NOW - 20, NOW) == 2


def test_send_history_keyed_by_account_when_frequency_scope_is_account(db):
    policy = load_policy(rules={"frequency": {"scope": "account"}})
    assert policy.settings("frequency").scope == "account"
    _sends(db, [(N1, "acct1", NOW - 10), (N1, "acct2", NOW - 86400), (N1, "acct1", NOW - 5),
                (N2, "acct2", NOW - 1), (N2, "acct2", NOW - HISTORY_S - 1)])
    index = load_index(db, policy, NOW)
    a1, a2 = index.scope_id("account", "acct1"), index.scope_id("account", "acct2")
    assert index.history == {scoped(N1, a1): (NOW - 10, NOW - 5), scoped(N1, a2): (NOW - 86400,),
                             scoped(N2, a2): (NOW - 1,)}


def test_account_scope_ids_are_shared_between_history_and_opt_outs(db):
    policy = load_policy(rules={"frequency": {"scope": "account"}})
    write(db, [Change("optout", "add", N1, "account", "acct1")], origin="o", now=NOW)
    _sends(db, [(N2, "acct1", NOW - 1)])
    index = load_index(db, policy, NOW)
    a1 = index.scope_id("account", "acct1")
    assert index.optouts == {scoped(N1, a1)}
    assert list(index.history) == [scoped(N2, a1)]


def test_load_index_sees_a_consistent_snapshot(tmp_path):
    path = tmp_path / "store.db"
    a, b = connect(path), connect(path)
    try:
        write(a, [Change("blacklist", "add", N1)], origin="o", now=NOW)
        index = load_index(b, POLICY, NOW)
        write(a, [Change("blacklist", "add", N2)], origin="o", now=NOW)
        assert index.blacklist == {N1} and index.change_id == 1
        for c in since(b, index.change_id):  # tailing from change_id picks up exactly what came after
            apply_change(index, c, NOW, POLICY)
        assert index.blacklist == {N1, N2} and index.change_id == 2
    finally:
        a.close()
        b.close()


# --- apply_change ---------------------------------------------------------------------------------------------

SCENARIOS = {
    "blacklist": [Change("blacklist", "add", N1), Change("blacklist", "add", N2), Change("blacklist", "remove", N1)],
    "optout": [Change("optout", "add", N1, "global", ""), Change("optout", "add", N1, "sender", "ACME"),
               Change("optout", "add", N2, "account", "acct1"), Change("optout", "add", N2, "sender", "BETA"),
               Change("optout", "remove", N1, "global", ""), Change("optout", "remove", N2, "sender", "BETA")],
    "dead": [Change("dead", "add", N1, data={"expires_at": NOW + 5}), Change("dead", "add", N2),
             Change("dead", "add", N3), Change("dead", "remove", N3)],
    "consent": [Change("consent", "add", N1, data={"status": "pending"}),
                Change("consent", "add", N1, data={"status": "confirmed"}),
                Change("consent", "add", N2, scope_key="acct1", data={"status": "pending"}),
                Change("consent", "add", N2, scope_key="acct2"), Change("consent", "remove", N2, scope_key="acct2")],
    "tz": [Change("tz", "add", N1, data={"zone": "Asia/Shanghai"}), Change("tz", "add", N2, data={"zone": "UTC"}),
           Change("tz", "add", N1, data={"zone": "Asia/Tokyo"}), Change("tz", "remove", N2)],
}


@pytest.mark.parametrize("kind", list(SCENARIOS))
def test_apply_change_matches_load_index(db, kind):
    write(db, SCENARIOS[kind], origin="o", now=NOW)
    loaded = load_index(db, POLICY, NOW)
    logged = since(db, 0)
    assert [c.kind for c in logged] == [kind] * len(SCENARIOS[kind])
    index = replay(logged)
    assert view(index) == view(loaded)
    assert index.change_id == loaded.change_id == len(logged)
    assert any(view(loaded)[k] for k in ("blacklist", "optouts", "dead", "consent", "tz"))


def test_apply_change_is_idempotent_and_never_moves_change_id_back(db):
    write(db, [c for cs in SCENARIOS.values() for c in cs], origin="o", now=NOW)
    logged = since(db, 0)
    index = replay(logged)
    before = view(index)
    for c in logged:  # a replay of everything (e.g. a reload overlapping the tail)
        apply_change(index, c, NOW, POLICY)
    assert view(index) == before
    assert index.change_id == len(logged)
    apply_change(index, Change("blacklist", "add", N4, id=3), NOW, POLICY)
    assert index.change_id == len(logged) and N4 in index.blacklist


def test_policy_tidy_forgets_what_every_rule_no_longer_needs(db):
    index = Index()
    fresh, old = scoped(N1, GLOBAL), scoped(N2, GLOBAL)
    index.optout_at = {fresh: NOW - 10, old: NOW - GRACE - 1}
    index.grace_used = {fresh, old}
    index.dead = {N1: NOW + 1, N2: NOW}
    index.history = {N1: (NOW - HISTORY_S - 1, NOW - 1), N2: (NOW - HISTORY_S - 5,)}
    POLICY.tidy(index, NOW)
    assert index.optout_at == {fresh: NOW - 10} and index.grace_used == {fresh}
    assert index.dead == {N1: NOW + 1}
    assert index.history == {N1: (NOW - 1,)}


# --- property: apply_change one by one == load_index after write ----------------------------------------------

NUMBERS = st.sampled_from([N1, N2, N3, N4])
SENDERS = st.sampled_from(["ACME", "BETA", "GAMMA"])
ACCOUNTS = st.sampled_from(["acct1", "acct2"])
OPS = st.sampled_from(["add", "remove"])


def _change(kind, op, number, scope="", scope_key="", data=None):
    return Change(kind, op, number, scope, scope_key, data if op == "add" else {}, at=NOW)


blacklist_changes = st.builds(_change, st.just("blacklist"), OPS, NUMBERS,
                              data=st.fixed_dictionaries({}, optional={"reason": st.text(max_size=5)}))
optout_changes = st.one_of(
    st.builds(_change, st.just("optout"), OPS, NUMBERS, st.just("global"), st.just("")),
    st.builds(_change, st.just("optout"), OPS, NUMBERS, st.just("sender"), SENDERS),
    st.builds(_change, st.just("optout"), OPS, NUMBERS, st.just("account"), ACCOUNTS),
).map(lambda c: Change(c.kind, c.op, c.number, c.scope, c.scope_key, {"source": "mo"}, at=NOW))
dead_changes = st.builds(
    _change, st.just("dead"), OPS, NUMBERS,
    data=st.fixed_dictionaries({}, optional={"expires_at": st.floats(NOW + 1, NOW + 365 * 86400)}))
consent_changes = st.builds(
    _change, st.just("consent"), OPS, NUMBERS, st.just(""), st.sampled_from(["", "acct1", "acct2"]),
    data=st.fixed_dictionaries({}, optional={"status": st.sampled_from(["pending", "confirmed"])}))
tz_changes = st.builds(_change, st.just("tz"), st.just("add"), NUMBERS,
                       data=st.fixed_dictionaries({"zone": st.sampled_from(["UTC", "Asia/Shanghai", "Europe/Paris"])})
                       ) | st.builds(_change, st.just("tz"), st.just("remove"), NUMBERS)
single_changes = st.one_of(blacklist_changes, optout_changes, dead_changes, consent_changes, tz_changes)


def _as_batch(c: Change, numbers: list[int]) -> Change:
    return Change(c.kind, c.op, 0, c.scope, c.scope_key, c.data, at=c.at, numbers=numbers)


#: a change of several numbers (an import's change-log row), duplicates included
batch_changes = st.builds(_as_batch, single_changes, st.lists(NUMBERS, min_size=1, max_size=6))
changes = st.lists(st.one_of(single_changes, batch_changes), max_size=40)


def one_by_one(batch: list[Change]) -> list[Change]:
    """The changes with every batch expanded into its numbers' changes, in order."""
    return [c._replace(number=n, numbers=()) for c in batch for n in c.targets()]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=changes)
def test_property_apply_change_equals_load_index(tmp_path_factory, batch):
    conn = connect(tmp_path_factory.mktemp("prop") / "store.db")
    try:
        write(conn, batch, origin="o", now=NOW)
        loaded = load_index(conn, POLICY, NOW)
        logged = since(conn, 0)
    finally:
        conn.close()
    expected = view(loaded)
    assert view(replay(batch)) == expected  # the changes as made
    assert view(replay(logged)) == expected  # the changes as the tail reads them back
    assert view(replay(one_by_one(batch))) == expected  # a batch means exactly its numbers' changes
    assert replay(logged).change_id == loaded.change_id == len(batch)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches=st.lists(changes, min_size=1, max_size=4))
def test_property_tailing_the_log_with_correlation_equals_load_index(tmp_path_factory, batches):
    """Several writes (with the correlation rule on), tailed from the log after each: the Index stays equal
    to a fresh load, including the global opt-outs the correlation adds; and it decides as a plain Index given
    the same changes (the loaded one is compact: what the tail adds must reach the lists' sieve)."""
    conn = connect(tmp_path_factory.mktemp("tail") / "store.db")
    try:
        index = load_index(conn, POLICY, NOW)
        plain = Index()
        for batch in batches:
            write(conn, batch, origin="o", correlation_threshold=2, now=NOW)
            for c in since(conn, index.change_id):
                apply_change(index, c, NOW, POLICY)
                apply_change(plain, c, NOW, POLICY)
            loaded = load_index(conn, POLICY, NOW)
            assert view(index) == view(loaded) == view(plain)
            assert index.change_id == loaded.change_id
            for number in (N1, N2, N3, N4):
                for sender, account in (("ACME", "acct1"), ("BETA", "acct2"), ("GAMMA", "acct3")):
                    sub = Submission(number, f"+{number}", sender, account)
                    assert decide(sub, index, NOW, POLICY) == decide(sub, plain, NOW, POLICY)
    finally:
        conn.close()


# --- a million-row blacklist -----------------------------------------------------------------------------------


@pytest.mark.slow  # a scale test: seconds, which mutation runs would spend again on every change-log survivor
def test_million_row_blacklist(db, tmp_path):
    """A million numbers written as an import writes them (batches of 100,000: one change-log row each) load
    into an Index that holds each of them."""
    n, batch = 1_000_000, 100_000
    base = 8613000000000
    started = time.perf_counter()
    written = write(db, (Change("blacklist", "add", 0, data={"source": "import"}, numbers=range(start, start + batch))
                         for start in range(base, base + n, batch)), origin="import", actor="bulk", now=NOW)
    write_s = time.perf_counter() - started
    assert written == n // batch
    assert db.execute("SELECT COUNT(*), MIN(number), MAX(number) FROM blacklist").fetchone() == (n, base, base + n - 1)
    started = time.perf_counter()
    index = load_index(db, POLICY, NOW)
    load_s = time.perf_counter() - started
    assert len(index.blacklist) == n and base in index.blacklist and base + n - 1 in index.blacklist
    assert base - 1 not in index.blacklist and base + n not in index.blacklist
    assert index.change_id == n // batch
    size_mb = sum(p.stat().st_size for p in tmp_path.glob("store.db*")) / 1e6
    print(f"\n1M-row blacklist: changelog.write {write_s:.2f} s, load_index {load_s:.2f} s, "
          f"store files {size_mb:.0f} MB")


@pytest.mark.parametrize("kind", list(SCENARIOS))
def test_a_batch_applies_like_its_numbers_one_by_one(db, kind):
    """Each scenario's changes as batches of N1..N3 (remove batches after add batches): the tail's Index, a
    fresh load and the same changes made number by number all agree."""
    batches = [Change(c.kind, c.op, 0, c.scope, c.scope_key, c.data, numbers=[N1, N2, N3])
               for c in SCENARIOS[kind]]
    write(db, batches, origin="o", now=NOW)
    logged = since(db, 0)
    assert [len(c.numbers) for c in logged] == [3] * len(batches)
    loaded = load_index(db, POLICY, NOW)
    index = replay(logged)
    assert view(index) == view(loaded) == view(replay(one_by_one(logged)))
    assert index.change_id == loaded.change_id == len(batches)
