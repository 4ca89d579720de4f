"""Event hooks: one ordered list of observers of what the proxy does (DESIGN, Seams; mitmproxy's hooks habit).

The audit log is an observer; learning from deliver_sm, metrics and MQTT sync plug in the same way. An observer
is any object with a method named after each event it wants, taking the event: `decided(event)`,
`answered(event)`, `delivered(event)`, `bound(event)`, `unbound(event)`. Hooks looks the methods up once, so an
event nobody observes costs nothing: the proxy asks `wants_*` before it builds one. An observer of `decided` that
has no use for allow verdicts (the audit log) says so with a class attribute `ignores_allows = True`; an allowed
message, most of the traffic, then builds no event unless another observer wants it, and reaches only those.
Allowed verdicts are counted by account in `hooks.allowed` (the metrics' counter) whether or not an event is
built: an observer that only counts them (the metrics) ignores allows and reads that counter.

Rule 1: an observer never changes a verdict or stops traffic. It is called after the proxy has acted, and
whatever it raises is logged (at most once a minute per observer and event) and swallowed.
Rule 2: an observer must not block the event loop; what it writes goes through the store's writer.
Events are immutable records; the time in each is the proxy's clock (UTC epoch seconds).
"""

from __future__ import annotations

import collections
import logging
import time
from typing import Any, Callable, Iterable, NamedTuple

from .policy.model import Action, Submission, Verdict
from .smpp.pdu import Pdu

log = logging.getLogger("smppguard.hooks")


class Decided(NamedTuple):
    """A verdict on one destination of a submit_sm, data_sm or submit_multi: every one, allow too."""

    at: float
    command_id: int
    account: str  # system_id
    sender: str  # source_addr
    destination: str  # destination_addr as sent; "list:<name>" for a submit_multi distribution list
    sub: Submission | None  # None for a distribution list: nothing to screen
    verdict: Verdict
    repeat: bool = False  # a later part of a concatenated message, sharing the verdict its first part got


class Answered(NamedTuple):
    """A request the proxy forwarded was answered: by the SMSC (`pdu` is its response), or by the proxy with
    0x08 / 0x64 because the other leg timed out or dropped (`pdu` is None)."""

    at: float
    account: str
    command_id: int  # of the response
    status: int
    pdu: Pdu | None


class Delivered(NamedTuple):
    """A deliver_sm or data_sm from the SMSC (a delivery receipt or a mobile-originated message), as it goes to
    the sender; `relayed` False when no sender was there to take it (the SMSC was answered 0x64 and will
    deliver it again)."""

    at: float
    account: str
    pdu: Pdu
    relayed: bool = True


class Bound(NamedTuple):
    """A sender bound, through an upstream bind of the same credentials."""

    at: float
    account: str
    peer: str
    state: str  # bound_tx, bound_rx, bound_trx


class Unbound(NamedTuple):
    """A sender's connection ended (unbind, close, or a dropped SMSC)."""

    at: float
    account: str
    peer: str


_ALLOW = Action.ALLOW
EVENTS = {"decided": Decided, "answered": Answered, "delivered": Delivered, "bound": Bound, "unbound": Unbound}
_QUIET_S = 60.0  # an observer that keeps failing is logged once per this period


class Hooks:
    """The observers, in order. `hooks.decided(event)` calls each observer's `decided`, and so on."""

    def __init__(self, observers: Iterable[Any] = (), clock: Callable[[], float] = time.monotonic,
                 allowed: collections.Counter[str] | None = None):
        self.observers = tuple(observers)
        # allowed verdicts by account: one dict increment a message where an event would be built and passed on
        self.allowed: collections.Counter[str] = collections.Counter() if allowed is None else allowed
        self._clock = clock
        self._last_logged: dict[tuple[int, str], float] = {}
        self._calls = {name: tuple((o, getattr(o, name)) for o in self.observers if callable(getattr(o, name, None)))
                       for name in EVENTS}
        self._decided = self._calls["decided"]
        # An allowed message goes only to the observers that look at allows (most messages are allowed)
        self._allowed = tuple((o, call) for o, call in self._decided if not getattr(o, "ignores_allows", False))
        # Whether anyone observes these: the hot path builds no event otherwise.
        self.wants_decided = bool(self._decided)
        self.wants_allowed = bool(self._allowed)
        self.wants_answered = bool(self._calls["answered"])
        self.wants_delivered = bool(self._calls["delivered"])

    def wants(self, verdict: Verdict, account: str) -> bool:
        """Whether to build a Decided event for this verdict; an allowed one is counted either way."""
        if verdict.action is _ALLOW:
            self.allowed[account] += 1
            return self.wants_allowed
        return self.wants_decided

    def decided(self, event: Decided) -> None:
        """Tell the observers (`wants` said to build the event, and counted it if it is allowed)."""
        # _emit, spelled out: this runs for every message
        for observer, call in self._allowed if event.verdict.action is _ALLOW else self._decided:
            try:
                call(event)
            except Exception:
                self._failed(observer, "decided")

    def answered(self, event: Answered) -> None:
        self._emit("answered", event)

    def delivered(self, event: Delivered) -> None:
        self._emit("delivered", event)

    def bound(self, event: Bound) -> None:
        self._emit("bound", event)

    def unbound(self, event: Unbound) -> None:
        self._emit("unbound", event)

    def _emit(self, name: str, event: Any) -> None:
        for observer, call in self._calls[name]:
            try:
                call(event)
            except Exception:
                self._failed(observer, name)

    def _failed(self, observer: Any, name: str) -> None:
        key = (id(observer), name)
        now = self._clock()
        last = self._last_logged.get(key)
        if last is None or now - last >= _QUIET_S:
            self._last_logged[key] = now
            log.exception("observer %s failed on %s; the proxy goes on (logged at most once a minute)",
                          type(observer).__name__, name)


#: No observers: what a proxy without a store uses.
NO_HOOKS = Hooks()
