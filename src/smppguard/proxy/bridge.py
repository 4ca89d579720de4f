"""The bridge: one downstream bind paired with its own upstream bind. It relays; screening decides.

Guarantees:
- Every request from either leg gets exactly one response: the peer's (renumbered back, bytes untouched
  otherwise) or ours (0x08 RSYSERR when the other leg timed out, dropped, or could not be reached; 0x64
  RX_T_APPN for a deliver_sm the sender did not answer).
- A downstream bind opens one upstream bind with the very same bind PDU (system_id, password, system_type,
  interface_version, address range), and the sender gets the SMSC's own bind response.
- Back-pressure, not loss: a full upstream window, an upstream write buffer over its high-water mark or the
  carrier's max_tps pause reading from the sender; the symmetric rules hold for deliver_sm going down.
- The hot path, from a submit read to its bytes written upstream (or its answer), has no await: it is one
  callback through `request_received` and `Screening.screen`.
The bridge knows no rule and no socket: `connect` opens the upstream leg (a TCP connection in the server, an
in-memory one in tests), and what it does is told to the hooks.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from typing import Any, Awaitable, Callable, Protocol

from .. import tasks
from ..config import Config
from ..hooks import NO_HOOKS, Answered, Bound, Delivered, Hooks, Unbound
from ..logs import Throttle
from ..session.session import Session
from ..session.throttle import TokenBucket
from ..session.window import Outstanding
from ..smpp import commands as cmd
from ..smpp.commands import CommandId
from ..smpp.errors import PduError
from ..smpp.fields import UnsuccessSme, parse_body
from ..smpp.pdu import Pdu, build, renumber
from ..smpp.state import BIND_TRANSITIONS, BindState, Role
from ..smpp.status import Status
from .hold_ids import IdMap, Translated
from .holds import HoldQueue, Owed, Released
from .limits import AUTH_FAILURES
from .owners import REFUSAL, MessageOwners, message_id_of
from .screening import Answer, Forward, Hold, HoldMulti, MultiContext, Screening

log = logging.getLogger("smppguard.proxy")


class Gate(Protocol):
    """Who may bind (the server's, over proxy/limits.py's BindGate)."""

    def check(self, bridge: "Bridge", system_id: str) -> tuple[int, str] | None: ...
    def bound(self, bridge: "Bridge") -> None: ...
    def failed(self, bridge: "Bridge") -> None: ...

#: Opens the upstream leg: connects `session` (an asyncio Protocol) to the SMSC, or raises OSError.
Connect = Callable[[Session], Awaitable[Any]]

_FORWARD_DOWN = frozenset({CommandId.DELIVER_SM, CommandId.DATA_SM})
_UPWARD_OTHER = frozenset({CommandId.QUERY_SM, CommandId.CANCEL_SM, CommandId.REPLACE_SM})


class Bridge:
    _gate_log = Throttle(log)  # refused binds: once a minute per address and status
    _owner_log = Throttle(log)  # requests for another account's messages: once a minute per account

    def __init__(self, config: Config, connect: Connect, *, screening: Screening | None = None,
                 hooks: Hooks = NO_HOOKS, spawn: Callable[..., asyncio.Task] | None = None,
                 on_closed: Callable[["Bridge"], None] | None = None, clock: Callable[[], float] = time.time,
                 admit: Callable[["Bridge"], bool] | None = None, gate: "Gate | None" = None,
                 owners: MessageOwners | None = None, holds: HoldQueue | None = None, keep_deliveries: bool = False,
                 timing: Callable[[float], None] | None = None, bind_failed: Callable[[str], None] | None = None):
        self.config = config
        self.connect = connect
        self.screening = screening
        self.hooks = hooks
        self.clock = clock
        self._spawn = spawn or tasks.spawn
        self._on_closed = on_closed
        self.downstream = Session(Role.SMSC, self, window=config.upstream.window,
                                  response_timeout=config.session.response_timeout,
                                  enquire_link_interval=config.session.enquire_link_interval, name="downstream")
        self.upstream: Session | None = None
        self._bucket: TokenBucket | None = None
        # submits waiting for max_tps or the window: the sender's (its Pdu) and released held ones (None)
        self._throttled: collections.deque[tuple[Pdu | None, bytes, object]] = collections.deque()
        self._throttle_timer: asyncio.TimerHandle | None = None
        self._closing = False
        self._admit = admit  # the server's limits: False closes the connection as soon as it opens
        self._gate = gate  # who may bind, and how often they may fail (proxy/limits.py)
        self.owners = owners  # which account got which message id (proxy/owners.py), shared by every bridge
        self.holds = holds  # the hold queue (proxy/holds.py), shared by every bridge; None: holds answered 0x58
        self.keep_deliveries = keep_deliveries  # [inbound] no_receiver = "keep"
        self._timing = timing  # metrics: seconds each screening took
        self._bind_failed = bind_failed or (lambda _why: None)  # metrics: why a bind failed
        self.bound_as = ""  # the system_id this bridge is counted as bound under, at the gate
        self.bind_started = False  # a bind request came (the bind timeout no longer applies)
        self._keeping = 0  # deliveries kept for the account ([inbound] no_receiver = "keep") not yet saved

    def __repr__(self) -> str:
        return f"<Bridge {self.downstream.label}>"

    def admit(self, session: Session) -> bool:
        """Session: a leg connected. The sender's leg stays if the server's limits say so; ours to the SMSC does."""
        return session is not self.downstream or self._admit is None or self._admit(self)

    # --- requests: the hot path ----------------------------------------------------------------------------

    def request_received(self, session: Session, pdu: Pdu) -> None:
        """From here to the write there is no await: a PDU in is a PDU out (or an answer) in one callback."""
        command_id = pdu.command_id
        if session is self.downstream:
            upstream = self.upstream
            if command_id in cmd.SUBMITS or command_id in _UPWARD_OTHER:
                if upstream is None or not upstream.is_open:
                    session.respond(pdu, Status.RSYSERR)
                    return
                raw, context = pdu.raw, None
                screening = self.screening
                if command_id in _UPWARD_OTHER:
                    forward = self._other(session, pdu)
                    if forward is None:
                        return  # answered here
                    raw, context = forward
                elif screening is not None:
                    try:
                        if self._timing is None:
                            outcome = screening.screen(pdu, session.system_id)
                        else:
                            started = time.perf_counter()
                            outcome = screening.screen(pdu, session.system_id)
                            self._timing(time.perf_counter() - started)
                        if type(outcome) is not Forward:
                            self._answer(session, pdu, outcome)  # refused, or held
                            return
                        raw, context = outcome
                        if type(context) is MultiContext and context.held:
                            self._hold_some(session, pdu, context)
                    except Exception as e:
                        self._screening_failed(session, pdu, e)
                        return
                if self._bucket is not None and command_id in cmd.SUBMITS and (
                        self._throttled or self._bucket.take(_now()) > 0):
                    self._throttle(pdu, raw, context)
                    return
                upstream.send_request(raw, session, pdu.sequence, context)
                if upstream.window.full:
                    session.pause("window")
            elif command_id in cmd.BINDS:
                self.bind_started = True
                session.pause("bind")
                self._spawn(self._bind(pdu), name=f"bind {session.label}")
            elif command_id == CommandId.UNBIND:
                session.pause("unbind")
                self._spawn(self._downstream_unbind(pdu), name=f"unbind {session.label}")
            else:
                session.respond(pdu, Status.RINVCMDID)
        else:
            downstream = self.downstream
            if command_id in _FORWARD_DOWN:
                holds = self.holds
                if holds is not None and holds.maps_ids:
                    pdu = holds.rewrite_receipt(pdu, downstream.system_id)  # a released message's: the proxy id
                if not downstream.is_open:
                    self._no_receiver(session, pdu)
                    return
                downstream.send_request(pdu.raw, session, pdu.sequence)
                if downstream.window.full:
                    session.pause("window")
                if self.hooks.wants_delivered:
                    self.hooks.delivered(Delivered(self.clock(), downstream.system_id, pdu))
            elif command_id == CommandId.ALERT_NOTIFICATION:
                downstream.send(pdu.raw)  # no response exists (SMPP 3.4 section 4.12.1)
            elif command_id == CommandId.UNBIND:
                self._spawn(self._upstream_unbind(pdu), name=f"unbind {session.label}")
            elif command_id == CommandId.OUTBIND:
                log.warning("%s: outbind on an open upstream connection ignored", session.label)
            else:
                session.respond(pdu, Status.RINVCMDID)

    def _no_receiver(self, session: Session, pdu: Pdu) -> None:
        """A deliver_sm or data_sm with no sender to take it: kept for the account's next receiver ([inbound]
        no_receiver = "keep") and acknowledged once saved, or answered 0x64 so the SMSC delivers it again."""
        account = self.downstream.system_id
        future = self.holds.keep(account, pdu) if self.keep_deliveries and self.holds is not None and account \
            else None
        if future is None:
            session.respond(pdu, Status.RX_T_APPN)
        else:
            self._keeping += 1  # the SMSC's leg stays up until it is answered (_unbind_and_close)

            def saved(f: asyncio.Future) -> None:
                self._keeping -= 1
                session.respond(pdu, Status.ROK if not f.cancelled() and f.exception() is None else Status.RX_T_APPN)
            future.add_done_callback(saved)
        if self.hooks.wants_delivered:  # learned from all the same (learning is idempotent)
            self.hooks.delivered(Delivered(self.clock(), account, pdu, False))

    def _other(self, session: Session, pdu: Pdu) -> tuple[bytes, object] | None:
        """query_sm, cancel_sm, replace_sm: refused (and answered) if the message is another account's, or if a
        replace_sm's new text breaks a rule that reads text; answered from the hold queue if the message is held
        there; else what to send the SMSC (with the SMSC's id if it is a released message). None: answered."""
        try:
            body = parse_body(pdu.command_id, pdu.body, pdu.sequence)
            message_id = body["message_id"]
            holds = self.holds
            held_by = holds.owner(message_id) if holds is not None else None
            if (held_by is not None and held_by != session.system_id) or (
                    self.owners is not None and self.owners.refuses(message_id.encode("latin-1"), session.system_id)):
                self._owner_log.log(logging.WARNING, (session.system_id, "owner"),
                                    "%s: %s for a message of another account refused", session.label,
                                    cmd.command_name(pdu.command_id))
                session.respond(pdu, REFUSAL[pdu.command_id])
                return None
            if pdu.command_id == CommandId.REPLACE_SM and self.screening is not None:
                answer = self.screening.screen_replace(pdu, session.system_id)
                if answer is not None:
                    session.respond(pdu, answer.status)
                    return None
            if holds is not None:
                if held_by is not None:
                    holds.answer_request(session, pdu, body)
                    return None
                translated = holds.translate(pdu, body, session.system_id)
                if translated is not None:
                    return translated
        except Exception as e:
            self._screening_failed(session, pdu, e)
            return None
        return pdu.raw, None

    def _answer(self, session: Session, pdu: Pdu, outcome: Answer | Hold | HoldMulti) -> None:
        holds = self.holds
        if type(outcome) is Hold:
            if holds is None:  # no hold queue: the sender is told to try later
                session.respond(pdu, outcome.status)
            else:
                holds.hold(session, pdu, outcome)  # answered OK once saved
        elif type(outcome) is HoldMulti:
            assert holds is not None
            holds.hold_multi(session, pdu, outcome.held, outcome.refused, forwarded=False)
        else:
            assert type(outcome) is Answer
            session.respond(pdu, outcome.status, outcome.body)

    def _hold_some(self, session: Session, pdu: Pdu, context: MultiContext) -> None:
        """A submit_multi going out with some destinations held: the hold queue keeps those; when it cannot,
        they are listed as failed (0x14) in the answer."""
        assert self.holds is not None and context.held
        kept = self.holds.hold_multi(session, pdu, context.held, context.refused, forwarded=True)
        if kept is None:
            context.refused = context.refused + [UnsuccessSme(d.ton, d.npi, d.address, Status.RMSGQFUL)
                                                 for d, *_ in context.held]
            context.held = None
        else:
            context.hold = kept

    @staticmethod
    def _screening_failed(session: Session, pdu: Pdu, e: Exception) -> None:
        if isinstance(e, PduError):
            log.info("%s: malformed %s: %s", session.label, cmd.command_name(pdu.command_id), e)
            session.respond(pdu, e.status)
        else:  # a bug in a rule: never a silent allow; 0x08 makes the sender retry
            log.error("%s: screening %s failed; answered RSYSERR", session.label, cmd.command_name(pdu.command_id),
                      exc_info=e)
            session.respond(pdu, Status.RSYSERR)

    # --- responses -----------------------------------------------------------------------------------------

    def response_received(self, session: Session, pdu: Pdu, entry: Outstanding) -> None:
        origin = entry.origin
        context = entry.context
        raw = pdu.raw
        deferred = False
        if context is not None:
            kind = type(context)
            if kind is Released:
                assert self.holds is not None
                self.holds.settled(context, pdu)
            elif kind is Owed:
                assert self.holds is not None
                self.holds.delivered(context, pdu)
            elif kind is Translated:
                raw = IdMap.untranslate(context, pdu)
            else:
                assert self.screening is not None
                raw = self.screening.settle(context, pdu)
                if kind is MultiContext and context.hold is not None and origin is not None:
                    assert self.holds is not None
                    proxy_id, future = context.hold
                    sequence = entry.origin_sequence
                    self.holds.answer_multi(proxy_id, future, context.held, pdu, raw,
                                            lambda b: origin.send(renumber(b, sequence)))
                    deferred = True
        if origin is not None and not deferred:
            origin.send(renumber(raw, entry.origin_sequence))
        if self.owners is not None and pdu.status == 0 and entry.command_id in cmd.SUBMITS and \
                session is self.upstream:
            self.owners.record(message_id_of(pdu.body), self.downstream.system_id)
        if session is self.upstream and self.hooks.wants_answered:
            self.hooks.answered(Answered(self.clock(), self.downstream.system_id, pdu.command_id, pdu.status, pdu))

    def request_failed(self, session: Session, entry: Outstanding, reason: str) -> None:
        if entry.context is not None:
            self._context_failed(entry.context, sent=True)
        origin = entry.origin
        if origin is None:
            return
        status = Status.RSYSERR
        if session is self.downstream:
            # deliver_sm the sender did not answer: RX_T_APPN asks the SMSC to redeliver later (3.4 5.1.3).
            status = Status.RX_T_APPN
        response_id = cmd.response_id(entry.command_id)
        origin.send(build(response_id, entry.origin_sequence, b"", status))
        if session is not self.downstream and self.hooks.wants_answered:
            self.hooks.answered(Answered(self.clock(), self.downstream.system_id, response_id, status, None))

    def _context_failed(self, context: object, sent: bool) -> None:
        """A request with this context will get no answer (`sent`: it left, but none came)."""
        kind = type(context)
        if kind is Released:
            assert self.holds is not None
            self.holds.unanswered(context, sent)  # type: ignore[arg-type]
        elif kind is Owed:
            assert self.holds is not None
            self.holds.delivered(context, None)  # type: ignore[arg-type]
        elif kind is Translated:
            pass
        elif self.screening is not None:
            self.screening.failed(context)
            if kind is MultiContext and context.hold is not None and self.holds is not None:  # type: ignore
                self.holds.cancel_all(context.hold[0])  # type: ignore[attr-defined]

    # --- the hold queue's ways in (proxy/holds.py) -----------------------------------------------------------

    @property
    def account(self) -> str:
        return self.downstream.system_id

    def can_release(self) -> bool:
        """A held message of this account may go out through this bind now."""
        up = self.upstream
        return (not self._closing and up is not None and up.is_open and self.downstream.is_open
                and up.state in (BindState.BOUND_TX, BindState.BOUND_TRX))

    def release_room(self) -> int:
        """How many more requests the SMSC's window takes now."""
        up = self.upstream
        if up is None:
            return 0
        return max(0, up.window.size - len(up.window) - len(self._throttled))

    def release_load(self) -> int:
        up = self.upstream
        return (len(up.window) if up is not None else 0) + len(self._throttled)

    def release(self, raw: bytes, context: object) -> None:
        """Submit a released message: through the window and max_tps, like the sender's own, but answered to the
        hold queue (no origin)."""
        up = self.upstream
        assert up is not None
        if self._throttled or up.window.full or (self._bucket is not None and self._bucket.take(_now()) > 0):
            self._throttle(None, raw, context)
            return
        up.send_request(raw, None, 0, context)
        if up.window.full:
            self.downstream.pause("window")

    def can_receive(self) -> bool:
        down = self.downstream
        return not self._closing and down.is_open and down.state in (BindState.BOUND_RX, BindState.BOUND_TRX)

    def deliver_room(self) -> int:
        window = self.downstream.window
        return window.size - len(window)

    def deliver(self, raw: bytes, context: object) -> None:
        """A deliver_sm the proxy owes the sender (a receipt it made, a reply kept for it)."""
        self.downstream.send_request(raw, None, 0, context)

    def window_opened(self, session: Session) -> None:
        if session is self.upstream:
            self.downstream.resume("window")  # no-op while "throttle" holds it; then the queue goes first
            if self._throttled and self._throttle_timer is None:
                self._release_throttled()
        elif self.upstream is not None:
            self.upstream.resume("window")

    def writing_paused(self, session: Session, paused: bool) -> None:
        other = self.downstream if session is self.upstream else self.upstream
        if other is not None:
            (other.pause if paused else other.resume)("peer-write")

    # --- throttle (max_tps) --------------------------------------------------------------------------------

    def _throttle(self, pdu: Pdu | None, raw: bytes, context: object) -> None:
        self._throttled.append((pdu, raw, context))
        self.downstream.pause("throttle")
        if self._throttle_timer is None:
            self._release_throttled()

    def _release_throttled(self) -> None:
        """Forward queued submits as tokens and the window allow; re-arm the timer for the next token."""
        self._throttle_timer = None
        up = self.upstream
        while self._throttled:
            if up is not None and up.is_open and up.window.full:
                return  # window_opened calls again
            wait = self._bucket.take(_now()) if self._bucket is not None else 0.0
            if wait > 0:
                self._throttle_timer = asyncio.get_running_loop().call_later(wait, self._release_throttled)
                return
            self._release_one()
        self.downstream.resume("throttle")

    def _release_one(self) -> None:
        pdu, raw, context = self._throttled.popleft()
        upstream = self.upstream
        if upstream is None or not upstream.is_open:
            self._fail_throttled(pdu, context)
            return
        if pdu is None:  # a released message
            upstream.send_request(raw, None, 0, context)
        else:
            upstream.send_request(raw, self.downstream, pdu.sequence, context)
        if upstream.window.full:
            self.downstream.pause("window")

    def _fail_throttled(self, pdu: Pdu | None, context: object) -> None:
        """A submit that waited for max_tps and can no longer go: answered 0x08, its reservation released."""
        if pdu is None:
            self._context_failed(context, sent=False)
            return
        self.request_failed(self.upstream or self.downstream,  # type: ignore[arg-type]
                            Outstanding(pdu.command_id, 0.0, self.downstream, pdu.sequence, None, context),
                            "upstream closed")

    # --- bind and unbind -----------------------------------------------------------------------------------

    async def _bind(self, pdu: Pdu) -> None:
        down = self.downstream
        cfg = self.config
        try:
            body = parse_body(pdu.command_id, pdu.body, pdu.sequence)
        except PduError as e:
            log.warning("%s: malformed bind: %s", down.label, e)
            down.send(build(cmd.response_id(pdu.command_id), pdu.sequence, b"", e.status))
            down.resume("bind")
            return
        down.system_id = body["system_id"]
        refused = self._gate.check(self, down.system_id) if self._gate is not None else None
        if refused is not None:
            status, why = refused
            self._gate_log.log(logging.INFO, (down.peer.rpartition(":")[0], status), "%s: bind refused 0x%02X: %s",
                               down.label, status, why)
            down.respond(pdu, status)
            down.close()
            self._bind_failed("refused_here")
            return
        up = Session(Role.ESME, self, window=cfg.upstream.window, response_timeout=cfg.session.response_timeout,
                     enquire_link_interval=cfg.session.enquire_link_interval, name="upstream")
        up.system_id = down.system_id
        try:
            await asyncio.wait_for(self.connect(up), cfg.upstream.connect_timeout)
        except (OSError, asyncio.TimeoutError) as e:
            log.warning("%s: SMSC unreachable (%s); bind answered RSYSERR", down.label, str(e) or "timed out")
            self._bind_failed("smsc_unreachable")
            down.respond(pdu, Status.RSYSERR)
            down.close()
            return
        self.upstream = up
        if down.state is BindState.CLOSED:  # the sender gave up while we connected
            up.close()
            return
        try:
            # paused on the answer: a deliver_sm the SMSC writes right behind bind_resp waits for the bound state
            resp = await up.request(pdu.raw, timeout=cfg.upstream.bind_timeout, pause_on_answer="bind")
        except (TimeoutError, ConnectionError) as e:
            log.warning("%s: no bind response from the SMSC (%s); answered RSYSERR", down.label, e)
            self._bind_failed("smsc_no_answer")
            down.respond(pdu, Status.RSYSERR)
            down.close()
            up.close()
            return
        if resp.command_id == cmd.response_id(pdu.command_id) and resp.status == Status.ROK:
            state = BIND_TRANSITIONS[pdu.command_id]
            up.state = down.state = state
            if self._gate is not None:
                self._gate.bound(self)
                self.bound_as = down.system_id
            if cfg.upstream.max_tps > 0:
                self._bucket = TokenBucket(cfg.upstream.max_tps, _now())
            down.send(resp.renumbered(pdu.sequence))
            log.info("%s: bound %s through %s", down.label, state.value, up.label)
            down.resume("bind")
            self.hooks.bound(Bound(self.clock(), down.system_id, down.peer, state.value))
            up.resume("bind")  # now what the SMSC sent behind its bind_resp
            return
        status = resp.status or Status.RBINDFAIL
        log.info("%s: SMSC refused the bind with 0x%02X", down.label, status)
        self._bind_failed("smsc_refused")
        if self._gate is not None and status in AUTH_FAILURES:
            self._gate.failed(self)
        if resp.command_id == cmd.response_id(pdu.command_id):
            down.send(resp.renumbered(pdu.sequence))  # the SMSC's own answer, body and all
        else:
            down.respond(pdu, status)
        down.close()
        up.close()

    async def _drain_upstream(self, timeout: float) -> None:
        """Wait, at most `timeout`, for the SMSC to answer what the sender has in flight."""
        up = self.upstream
        deadline = _now() + timeout
        while up is not None and up.is_open and len(up.window) and _now() < deadline:
            await asyncio.sleep(0.01)

    async def _downstream_unbind(self, pdu: Pdu) -> None:
        """The sender unbinds: let its in-flight requests finish, unbind upstream, then answer and close."""
        down, up = self.downstream, self.upstream
        self._closing = True
        grace = self.config.session.unbind_grace
        await self._drain_upstream(grace)
        if up is not None and up.is_open and up.state is not BindState.OPEN:
            try:
                await up.request(build(CommandId.UNBIND, 0), timeout=grace)
            except (TimeoutError, ConnectionError):
                pass
        down.respond(pdu)
        down.state = BindState.CLOSED
        down.close()
        if up is not None:
            up.close()

    async def _upstream_unbind(self, pdu: Pdu) -> None:
        """The SMSC unbinds: it will answer nothing more, so fail what is in flight, unbind the sender, close."""
        up, down = self.upstream, self.downstream
        assert up is not None
        self._closing = True
        up.respond(pdu)
        for _seq, entry in up.window.drain():
            self.request_failed(up, entry, "unbound")
        if down.is_open and down.state is not BindState.OPEN:
            try:
                await down.request(build(CommandId.UNBIND, 0), timeout=self.config.session.unbind_grace)
            except (TimeoutError, ConnectionError):
                pass
        down.close()
        up.close()

    async def shutdown(self, grace: float) -> None:
        """Unbind both legs within `grace`, answering everything outstanding: the requests in flight upstream,
        and those read from the sender but not yet forwarded (held by a full window, say), which go on as usual
        while the grace lasts; what is left then is answered 0x08."""
        down, up = self.downstream, self.upstream
        self._closing = True
        down.stop_reading()
        deadline = _now() + grace
        while _now() < deadline and down.is_open and (down.has_buffered_pdu or self._throttled or (
                up is not None and up.is_open and len(up.window)) or (self.holds is not None and self.holds.busy)):
            await asyncio.sleep(0.01)
        down.pause("shutdown")
        left = down.answer_buffered(Status.RSYSERR)
        if left:
            log.warning("%s: stopping: %d requests read but not forwarded within the grace answered 0x08",
                        down.label, left)
        await self._drain_upstream(max(0.0, deadline - _now()))
        if up is not None and len(up.window):  # the SMSC did not answer in time: 0x08 before the unbind
            up.fail_outstanding("not answered before the stop")
        legs = [leg for leg in (up, down) if leg is not None and leg.is_open and leg.state is not BindState.OPEN]
        waits = [leg.request(build(CommandId.UNBIND, 0), timeout=grace) for leg in legs]
        if waits:
            await asyncio.gather(*waits, return_exceptions=True)
        for leg in (up, down):
            if leg is not None:
                leg.close()

    def connection_lost(self, session: Session, exc: Exception | None) -> None:
        if self._throttle_timer is not None:
            self._throttle_timer.cancel()
            self._throttle_timer = None
        if session is self.downstream:
            while self._throttled:
                _pdu, _raw, context = self._throttled.popleft()
                if context is not None:
                    self._context_failed(context, sent=False)
            if self.upstream is not None and self.upstream.is_open:
                if not self._closing:
                    log.info("%s: sender disconnected; unbinding upstream", session.label)
                    self._spawn(self._unbind_and_close(self.upstream), name=f"unbind {self.upstream.label}")
            if self._on_closed is not None:
                self._on_closed(self)
            if session.system_id:
                self.hooks.unbound(Unbound(self.clock(), session.system_id, session.peer))
        else:
            # A dropped upstream closes the downstream, as a real SMSC would; its in-flight requests were
            # answered 0x08 by request_failed when the upstream window drained.
            while self._throttled:
                pdu, _raw, context = self._throttled.popleft()
                self._fail_throttled(pdu, context)
            if self.downstream.is_open:
                if not self._closing:
                    log.warning("%s: SMSC connection lost (%s); closing the sender's connection",
                                session.label, exc or "closed by peer")
                self.downstream.close()

    async def _unbind_and_close(self, session: Session) -> None:
        deadline = _now() + self.config.session.unbind_grace
        while self._keeping and _now() < deadline:  # kept deliveries are answered before the leg goes
            await asyncio.sleep(0.01)
        try:
            await session.request(build(CommandId.UNBIND, 0), timeout=self.config.session.unbind_grace)
        except (TimeoutError, ConnectionError):
            pass
        session.close()


def _now() -> float:
    return asyncio.get_running_loop().time()
