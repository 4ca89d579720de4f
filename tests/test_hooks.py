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


def test_allowed_verdicts_are_counted_by_account_whether_or_not_an_event_is_built():
    from smppguard.policy import load_policy
    from smppguard.policy.model import Index
    from smppguard.proxy.screening import Screening
    from smppguard.smpp.commands import CommandId
    from smppguard.smpp.concat import build_udh
    from smppguard.smpp.fields import SmeDest, encode_body
    from smppguard.smpp.pdu import build, from_bytes

    def submit(number, text=b"x", **fields):
        return from_bytes(build(CommandId.SUBMIT_SM, 1, encode_body(CommandId.SUBMIT_SM, destination_addr=number,
                                                                    short_message=text, **fields)))

    parts = [submit("8613800000003", build_udh(7, 2, i) + b"part", esm_class=0x40) for i in (1, 2)]
    multi = from_bytes(build(CommandId.SUBMIT_MULTI, 2, encode_body(
        CommandId.SUBMIT_MULTI, dest_addresses=[SmeDest(1, 1, "8613800000004"), SmeDest(1, 1, "12")],
        short_message=b"x")))
    policy = load_policy({"default_region": "CN"}, {"quiet_hours": {"enabled": False}})
    for observers in ([Refusals()], [Refusals(), Everything()]):
        hooks = Hooks(observers)
        screening = Screening(policy, Index(), hooks=hooks)
        screening.screen(submit("8613800000001"), "acme")
        screening.screen(submit("12"), "acme")  # not a number: refused, not counted
        for part in parts:  # each part counts, as each got an allow
            screening.screen(part, "beta")
        screening.screen(multi, "beta")  # one destination allowed, one refused
        assert hooks.allowed == {"acme": 1, "beta": 3}, observers
