"""The bind gate, with its clock in the test's hands."""

from __future__ import annotations

import pytest

from smppguard.proxy import limits
from smppguard.proxy.limits import BindGate


class Clock:
    now = 1000.0

    def __call__(self):
        return self.now


def test_the_backoff_starts_after_failed_binds_doubles_and_is_capped_and_a_success_clears_it():
    clock = Clock()
    gate = BindGate(failed_binds=2, backoff_s=10.0, clock=clock)
    gate.failed("h")
    assert gate.check("h", "acme") is None  # one failure: still let through
    gate.failed("h")
    status, why = gate.check("h", "acme")
    assert status == 0x0D and "2 failed binds from h" in why
    clock.now += 10.0
    assert gate.check("h", "acme") is None  # 10 s later
    gate.failed("h")  # the third: 20 s
    clock.now += 19.0
    assert gate.check("h", "acme") is not None
    clock.now += 1.0
    assert gate.check("h", "acme") is None
    for _ in range(10):
        gate.failed("h")
    assert gate._failures["h"][1] == clock.now + 10.0 * 16  # at most 16 times the first
    gate.bound("h", "acme")
    assert gate.check("h", "acme") is None and "h" not in gate._failures


@pytest.mark.parametrize("networks, host, allowed", [
    (["10.0.0.0/8"], "10.1.2.3", True),
    (["10.0.0.0/8"], "11.0.0.1", False),
    (["192.0.2.7"], "192.0.2.7", True),
    (["2001:db8::/32"], "2001:db8::1", True),
    (["10.0.0.0/8"], "not-an-address", False),
    (["10.1.2.3/8"], "10.200.0.1", True),  # host bits set, as people write it: the network it is in
])
def test_networks(networks, host, allowed):
    assert (BindGate(allow_networks=networks).check(host, "acme") is None) is allowed


def test_binds_per_account_are_counted_up_and_down():
    gate = BindGate(max_binds_per_account=1)
    gate.bound("h", "acme")
    assert gate.check("h", "acme")[0] == 0x05
    gate.unbound("acme")
    assert gate.check("h", "acme") is None and gate.binds == {}
    assert BindGate(max_binds_per_account=0).check("h", "acme") is None  # 0: no cap


def test_failures_are_remembered_for_a_bounded_number_of_addresses_the_least_recent_forgotten_first(monkeypatch):
    monkeypatch.setattr(limits, "MAX_TRACKED", 3)
    gate = BindGate(failed_binds=5)
    for host in ("h1", "h2", "h3", "h1", "h4"):  # h1 failed again: now h2 is the least recent
        gate.failed(host)
    assert list(gate._failures) == ["h3", "h1", "h4"]
    assert gate._failures["h1"][0] == 2
