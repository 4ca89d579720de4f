from smppguard.session.throttle import TokenBucket
from smppguard.session.window import Outstanding, Window
from smppguard.smpp.pdu import MAX_SEQUENCE


def entry(deadline):
    return Outstanding(command_id=4, deadline=deadline)


def test_window_allocate_wraps_to_one_and_skips_outstanding():
    w = Window(10, first=MAX_SEQUENCE - 1)
    a = w.allocate()
    w.add(a, entry(1))
    b = w.allocate()
    w.add(b, entry(1))
    assert (a, b) == (MAX_SEQUENCE - 1, MAX_SEQUENCE)
    assert w.allocate() == 1
    w2 = Window(10, first=5)
    w2.add(5, entry(1))
    assert w2.allocate() == 6


def test_window_full_and_pop():
    w = Window(2)
    for _ in range(2):
        w.add(w.allocate(), entry(1))
    assert w.full and len(w) == 2
    assert w.pop(1).command_id == 4
    assert not w.full
    assert w.pop(1) is None


def test_window_expired_returns_only_past_deadline_in_order():
    w = Window(10)
    for deadline in (1.0, 2.0, 3.0):
        w.add(w.allocate(), entry(deadline))
    assert [seq for seq, _ in w.expired(2.0)] == [1, 2]
    assert len(w) == 1
    assert w.expired(2.5) == []
    assert [seq for seq, _ in w.drain()] == [3]
    assert len(w) == 0


def test_token_bucket_grants_a_burst_then_paces():
    b = TokenBucket(rate=10, now=0.0)
    assert all(b.take(0.0) == 0.0 for _ in range(10))
    wait = b.take(0.0)
    assert 0.09 <= wait <= 0.11
    assert b.take(0.1) == 0.0
    assert b.take(0.1) > 0


def test_token_bucket_does_not_save_more_than_its_burst():
    b = TokenBucket(rate=5, now=0.0)
    granted = sum(1 for _ in range(20) if b.take(100.0) == 0.0)
    assert granted == 5
