"""Hooks: observers in order, only the events each wants, and an observer's failure logged, never raised."""

from __future__ import annotations

import logging

from smppguard.hooks import Bound, Hooks, Unbound


class Order:
    def __init__(self, name, seen):
        self.name, self.seen = name, seen

    def bound(self, e):
        self.seen.append((self.name, e.account))


class OnlyUnbound:
    def __init__(self, seen):
        self.seen = seen

    def unbound(self, e):
        self.seen.append(("unbound", e.account))


def test_hooks_call_observers_in_order_and_only_for_the_events_they_have():
    seen: list = []
    hooks = Hooks([Order("audit", seen), OnlyUnbound(seen), Order("metrics", seen)])
    hooks.bound(Bound(1.0, "acme", "peer", "bound_trx"))
    hooks.unbound(Unbound(2.0, "acme", "peer"))
    assert seen == [("audit", "acme"), ("metrics", "acme"), ("unbound", "acme")]
    assert not hooks.wants_decided and not hooks.wants_answered and not hooks.wants_delivered


class Broken:
    def bound(self, e):
        raise ValueError("bug")


def test_a_failing_observer_is_logged_once_a_minute_and_the_next_still_runs(caplog):
    seen: list = []
    now = [0.0]
    hooks = Hooks([Broken(), Order("next", seen)], clock=lambda: now[0])
    with caplog.at_level(logging.ERROR, logger="smppguard.hooks"):
        for t in (0.0, 30.0, 61.0):
            now[0] = t
            hooks.bound(Bound(t, "acme", "peer", "bound_tx"))
    assert seen == [("next", "acme")] * 3
    assert caplog.text.count("observer Broken failed on bound") == 2  # at 0 s and at 61 s


class Refusals:
    ignores_allows = True

    def decided(self, e):
        pass


class Everything:
    def decided(self, e):
        pass


def test_allowed_messages_build_events_only_for_an_observer_that_wants_them():
    assert (Hooks([Refusals()]).wants_decided, Hooks([Refusals()]).wants_allowed) == (True, False)
    assert Hooks([Refusals(), Everything()]).wants_allowed
    assert not Hooks([]).wants_allowed and not Hooks([]).wants_decided


def test_screening_tells_an_allow_only_to_hooks_that_want_allows():
    from smppguard.policy import load_policy
    from smppguard.policy.model import Index
    from smppguard.proxy.screening import Screening
    from smppguard.smpp.commands import CommandId
    from smppguard.smpp.fields import encode_body
    from smppguard.smpp.pdu import build, from_bytes

    seen = []

    class Allows:
        def decided(self, e):
            seen.append(("allows", e.verdict.action.value))

    class Quiet:
        ignores_allows = True

        def decided(self, e):
            seen.append(("quiet", e.verdict.action.value))

    pdu = from_bytes(build(CommandId.SUBMIT_SM, 1, encode_body(CommandId.SUBMIT_SM, destination_addr="8613800000001",
                                                               short_message=b"x")))
    policy = load_policy({"default_region": "CN"}, {"quiet_hours": {"enabled": False}})
    Screening(policy, Index(), hooks=Hooks([Quiet()])).screen(pdu, "acme")
    assert seen == []  # no event was built
    Screening(policy, Index(), hooks=Hooks([Quiet(), Allows()])).screen(pdu, "acme")
    assert seen == [("allows", "allow")]  # the one that wants allows gets it, the other is not called
