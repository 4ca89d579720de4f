"""Events for other systems (a CRM, a central compliance service, dashboards): one JSON object per refusal,
hold, release and learned fact, on <prefix>/events/<kind>.

Rule 1: an event never slows a message. `decided` (an observer of the hooks) and the others only append to a
bounded queue; past it an event is dropped and counted. The queue is published at most `per_s` a second.
Rule 2: no event carries a full number unless [audit] recipient keeps full numbers: the recipient as the audit
log keeps it, and any number inside a reason text masked the same way.
"""

from __future__ import annotations

import asyncio
import collections
import re
import time
from typing import Any, Callable

from ..hooks import Decided
from ..policy.model import Action
from ..store.changelog import Change
from . import wire

KINDS = ("refused", "held", "released", "learned", "review")
_DIGITS = re.compile(r"\+?\d{7,}")
#: learned events per change-log row at most (an import's batch row is no news item per number)
LEARNED_PER_ROW = 100


class EventFeed:
    """The events of one node, queued for the broker."""

    ignores_allows = True  # hooks: allowed messages, most of the traffic, never reach `decided`

    def __init__(self, node: str, kinds: tuple[str, ...], mask: Callable[[int | None, str], str], *,
                 per_s: float = 200.0, max_queued: int = 10_000):
        """`mask`: (number, address) -> as the audit log keeps it ([audit] recipient, store/recipients.py)."""
        self.node = node
        self.kinds = frozenset(kinds)
        self.mask = mask
        self.per_s = per_s
        self.max_queued = max_queued
        self.queue: collections.deque[tuple[str, dict]] = collections.deque()
        self.published = self.dropped = 0
        self._tokens = per_s
        self._tokens_at = time.monotonic()

    # --- what happened ------------------------------------------------------------------------------------

    def decided(self, e: Decided) -> None:
        action = e.verdict.action
        if action is Action.REJECT:
            self._verdict("refused", e)
        elif action is Action.HOLD:
            self._verdict("held", e)

    def released(self, at: float, account: str, sender: str, number: int | None, address: str, status: int,
                 reason: str) -> None:
        """A held message went to the SMSC and was accepted (the hold queue's audit says so)."""
        self.add("released", {"at": at, "account": account, "sender": sender, "recipient": self.mask(number, address),
                              "rule": "hold", "status": status, "reason": self.scrub(reason)})

    def learned(self, c: Change) -> None:
        """A fact learned from a reply or a receipt on this node (its change-log row, as it is published)."""
        for number in c.targets()[:LEARNED_PER_ROW]:
            self.add("learned", {"at": c.at, "list": c.kind, "scope": c.scope, "scope_key": c.scope_key,
                                 "recipient": self.mask(number, ""), "keyword": c.data.get("keyword", ""),
                                 "source": c.data.get("source", ""), "reason": self.scrub(c.data.get("reason", ""))})

    def _verdict(self, kind: str, e: Decided) -> None:
        if kind not in self.kinds:
            return
        v = e.verdict
        number = e.sub.recipient if e.sub is not None else None
        event = {"at": e.at, "account": e.account, "sender": e.sender, "recipient": self.mask(number, e.destination),
                 "rule": v.rule, "status": v.status, "reason": self.scrub(v.reason)}
        if v.until:
            event["until"] = v.until
        self.add(kind, event)

    def add(self, kind: str, fields: dict) -> None:
        if kind not in self.kinds:
            return
        if len(self.queue) >= self.max_queued:
            self.dropped += 1
            return
        self.queue.append((kind, {"kind": kind, "node": self.node, **fields}))

    def scrub(self, text: str) -> str:
        """A reason text with any run of 7 or more digits in it kept as the audit log keeps a number (Rule 2)."""
        return _DIGITS.sub(lambda m: self.mask(None, m.group()), text) if text else text

    # --- to the broker ------------------------------------------------------------------------------------

    async def publish_loop(self, client: Any, topics: wire.Topics) -> None:
        """Publish the queue, at most `per_s` a second (QoS 0: an event is news, not state)."""
        while True:
            if not self.queue:
                await asyncio.sleep(0.05)
                continue
            now = time.monotonic()
            self._tokens = min(self.per_s, self._tokens + (now - self._tokens_at) * self.per_s)
            self._tokens_at = now
            if self._tokens < 1:
                await asyncio.sleep(1 / self.per_s)
                continue
            self._tokens -= 1
            kind, event = self.queue.popleft()
            await client.publish(topics.event(kind), wire.encode_event(event), qos=0)
            self.published += 1
