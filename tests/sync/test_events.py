"""Events for other systems (sync/events.py): what each carries, that no full number leaves unless [audit]
recipient says so, the bound on the queue, and the kinds chosen."""

from __future__ import annotations

import asyncio
import json

import pytest

from smppguard.hooks import Decided
from smppguard.policy.model import Action, Submission, Verdict
from smppguard.smpp.commands import CommandId
from smppguard.store.changelog import Change
from smppguard.store.recipients import masker
from smppguard.sync.events import KINDS, EventFeed
from smppguard.sync.wire import Topics

N = 8613800138000


def decided(action: Action, rule: str, reason: str, until: float | None = None) -> Decided:
    sub = Submission(N, "13800138000", "10690000", "acme")
    return Decided(1_800_000_000.0, CommandId.SUBMIT_SM, "acme", "10690000", "13800138000", sub,
                   Verdict(action, rule, 0x45, reason, until))


def feed(mode: str = "masked", **kw) -> EventFeed:
    return EventFeed("a", KINDS, masker(mode, "pepper"), **kw)


def test_a_refusal_and_a_hold_become_events_and_an_allow_does_not():
    f = feed()
    f.decided(decided(Action.ALLOW, "", ""))
    f.decided(decided(Action.REJECT, "blacklist", "number is blacklisted"))
    f.decided(decided(Action.HOLD, "quiet_hours", "quiet hours", until=1_800_003_600.0))
    f.decided(decided(Action.SCHEDULE, "quiet_hours", "quiet hours", until=1_800_003_600.0))
    assert [(k, e["rule"], e.get("until")) for k, e in f.queue] == [
        ("refused", "blacklist", None), ("held", "quiet_hours", 1_800_003_600.0)]
    kind, event = f.queue[0]
    assert event == {"kind": "refused", "node": "a", "at": 1_800_000_000.0, "account": "acme", "sender": "10690000",
                     "recipient": "+86138****8000", "rule": "blacklist", "status": 0x45,
                     "reason": "number is blacklisted"}


@pytest.mark.parametrize("mode, shown", [("masked", "+86138****8000"), ("full", "+8613800138000")])
def test_no_full_number_leaves_in_any_field_unless_the_audit_keeps_full_numbers(mode, shown):
    f = feed(mode)
    f.decided(decided(Action.REJECT, "invalid", "not a valid phone number: '13800138000' (+8613800138000)"))
    f.released(1.0, "acme", "10690000", N, "13800138000", 0, "held message released to 8613800138000")
    f.learned(Change("optout", "add", N, "sender", "10690000", {"source": "reply", "keyword": "td",
                                                                "reason": "replied TD from 8613800138000"}, at=2.0))
    text = json.dumps(list(f.queue))
    assert ("13800138000" in text) == (mode == "full")
    assert [e["recipient"] for _, e in f.queue] == [shown] * 3
    assert [k for k, _ in f.queue] == ["refused", "released", "learned"]


def test_hashed_recipients_stay_hashed_in_events():
    f = feed("hashed")
    f.decided(decided(Action.REJECT, "invalid", "not a valid phone number: 13800138000"))
    (_, event), = f.queue
    assert event["recipient"].startswith("sha256:") and "13800138000" not in json.dumps(event)


def test_past_the_bound_events_are_dropped_and_counted_and_only_the_chosen_kinds_are_kept():
    f = EventFeed("a", ("refused",), masker(), max_queued=3)
    for _ in range(5):
        f.decided(decided(Action.REJECT, "blacklist", "listed"))
    f.decided(decided(Action.HOLD, "quiet_hours", "quiet"))
    assert len(f.queue) == 3 and f.dropped == 2


def test_an_imports_batch_row_makes_at_most_a_hundred_learned_events():
    f = feed()
    f.learned(Change("optout", "add", 0, "global", data={"source": "reply"}, numbers=range(N, N + 500), at=1.0))
    assert len(f.queue) == 100


def test_the_queue_is_published_no_faster_than_the_rate():
    class Client:
        def __init__(self):
            self.sent: list[tuple[str, float]] = []

        async def publish(self, topic, payload, qos):
            self.sent.append((topic, asyncio.get_running_loop().time()))

    async def run():
        f = feed(per_s=20.0)
        for _ in range(60):
            f.decided(decided(Action.REJECT, "blacklist", "listed"))
        client = Client()
        task = asyncio.ensure_future(f.publish_loop(client, Topics("p")))
        await asyncio.sleep(0.75)
        task.cancel()
        return client.sent

    sent = asyncio.run(run())
    assert {t for t, _ in sent} == {"p/events/refused"}
    # a burst of the bucket's size (20), then 20 a second: about 35 in 0.75 s (fewer on a busy host), never all 60
    assert 20 <= len(sent) <= 45
    late = [at for _, at in sent[20:]]
    assert all(b - a >= 0.04 for a, b in zip(late, late[1:], strict=False))
