"""Which account got which message id: bounded by count and age."""

from __future__ import annotations

from smppguard.proxy.owners import MessageOwners, message_id_of


class Clock:
    now = 0.0

    def __call__(self):
        return self.now


def test_another_accounts_message_is_refused_an_unknown_one_is_not():
    owners = MessageOwners()
    owners.record(b"m1", "acme")
    assert owners.refuses(b"m1", "beta") and not owners.refuses(b"m1", "acme")
    assert not owners.refuses(b"m2", "beta")


def test_at_most_max_ids_the_oldest_forgotten_first():
    owners = MessageOwners(max_ids=3)
    for i in range(5):
        owners.record(b"m%d" % i, "acme")
    assert len(owners) == 3
    assert not owners.refuses(b"m0", "beta") and owners.refuses(b"m4", "beta")


def test_an_id_older_than_max_age_is_let_through_and_forgotten_as_new_ones_come():
    clock = Clock()
    owners = MessageOwners(max_age_s=10.0, clock=clock)
    owners.record(b"old", "acme")
    clock.now = 11.0
    assert not owners.refuses(b"old", "beta")
    for i in range(1023):  # the old ones are looked for every 1024 records
        owners.record(b"new%d" % i, "acme")
    assert len(owners) == 1023 and not owners.refuses(b"old", "beta")


def test_message_id_of():
    assert message_id_of(b"abc\0rest") == b"abc"
    assert message_id_of(b"abc") == b"abc"


def test_ids_go_a_generation_at_a_time_and_the_count_stays_within_max_ids():
    owners = MessageOwners(max_ids=800)
    for i in range(8000):
        owners.record(b"m%d" % i, "acme")
        assert len(owners) <= 800
    assert len(owners) >= 700  # at least seven eighths: an eighth goes at a time
    assert owners.refuses(b"m7999", "beta") and owners.refuses(b"m7300", "beta")
    assert not owners.refuses(b"m7000", "beta") and not owners.refuses(b"m0", "beta")


def test_an_id_is_remembered_for_max_age_and_at_most_an_eighth_longer():
    clock = Clock()
    owners = MessageOwners(max_age_s=80.0, clock=clock)
    for t in range(0, 200):  # an id a second: generations close every 10 s
        clock.now = float(t)
        owners.record(b"m%d" % t, "acme")
    assert owners.refuses(b"m119", "beta") and owners.refuses(b"m199", "beta")  # 80 s old and younger
    assert not owners.refuses(b"m100", "beta")  # 99 s old: past max_age and its eighth
    clock.now = 1000.0  # nothing recorded since: all of them are past max_age
    assert not owners.refuses(b"m199", "beta")


def test_closed_generations_keep_each_ids_own_account():
    owners = MessageOwners(max_ids=800)
    accounts = ["acme", "beta", "gamma"]
    for i in range(700):  # seven generations closed, ids of three accounts interleaved
        owners.record(b"id-%d" % i, accounts[i * 7 % 3])
    assert len(owners._older) == 6
    for i in range(0, 700, 13):
        mine = accounts[i * 7 % 3]
        assert not owners.refuses(b"id-%d" % i, mine)
        assert all(owners.refuses(b"id-%d" % i, other) for other in accounts if other != mine)
    assert not owners.refuses(b"id-700", "beta") and not owners.refuses(b"id-", "beta")  # never recorded
