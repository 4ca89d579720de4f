"""The bridge: one downstream bind paired with its own upstream bind. The hot path reads top to bottom here.

Guarantees:
- Every request from either leg gets exactly one response: the peer's (renumbered back, bytes untouched
  otherwise) or ours (0x08 RSYSERR when the other leg timed out, dropped, or could not be reached).
- A downstream bind opens one upstream bind with the very same bind PDU (system_id, password, system_type,
  interface_version, address range), and the sender gets the SMSC's own bind response.
- Back-pressure, not loss: a full upstream window, an upstream write buffer over its high-water mark or the
  carrier's max_tps pause reading from the sender; the symmetric rules hold for deliver_sm going down.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from typing import TYPE_CHECKING

from ..policy import decide, judge_text, make_submission
from ..policy.model import Action, Verdict
from ..session.session import Session
from ..session.throttle import TokenBucket
from ..session.window import Outstanding
from ..smpp import commands as cmd
from ..smpp.commands import CommandId
from ..smpp.concat import from_sar, from_udh, split_udh
from ..smpp.errors import PduError
from ..smpp.fields import (
    DistributionList,
    SubmitView,
    TlvTag,
    UnsuccessSme,
    encode_body,
    parse_body,
    submit_view,
    tlv_value,
)
from ..smpp.pdu import Pdu, build, renumber
from ..smpp.state import BIND_TRANSITIONS, BindState, Role
from ..smpp.status import Status
from ..smpp.text import decode
from .guard import CONCAT_TTL_S, ConcatEntry, Guard, Reservation

if TYPE_CHECKING:
    from .server import ProxyServer

log = logging.getLogger("smppguard.proxy")

_FORWARD_DOWN = frozenset({CommandId.DELIVER_SM, CommandId.DATA_SM})


class Bridge:
    def __init__(self, server: "ProxyServer"):
        self.server = server
        cfg = server.config
        self.config = cfg
        self.downstream = Session(Role.SMSC, self, window=cfg.upstream.window,
                                  response_timeout=cfg.session.response_timeout,
                                  enquire_link_interval=cfg.session.enquire_link_interval, name="downstream")
        self.upstream: Session | None = None
        self.guard: Guard | None = server.guard
        self._bucket: TokenBucket | None = None
        self._throttled: collections.deque[tuple[Pdu, bytes, object]] = collections.deque()
        self._throttle_timer: asyncio.TimerHandle | None = None
        self._closing = False
        self.refuse = False  # over max_connections: closed as soon as it opens

    def __repr__(self) -> str:
        return f"<Bridge {self.downstream.label}>"

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
                guard = self.guard
                if guard is not None and command_id in cmd.SUBMITS:
                    try:
                        outcome = self._screen(pdu, guard)
                    except PduError as e:
                        log.info("%s: malformed %s: %s", session.label, cmd.command_name(command_id), e)
                        session.respond(pdu, e.status)
                        return
                    except Exception:  # a bug in a rule: never a silent allow; 0x08 makes the sender retry
                        log.exception("%s: screening %s failed; answered RSYSERR", session.label,
                                      cmd.command_name(command_id))
                        session.respond(pdu, Status.RSYSERR)
                        return
                    if outcome is None:
                        return  # answered here (refused, or held)
                    raw, context = outcome
                if self._bucket is not None and command_id in cmd.SUBMITS and (
                        self._throttled or self._bucket.take(self.server.loop.time()) > 0):
                    self._throttle(pdu, raw, context)
                    return
                upstream.send_request(raw, session, pdu.sequence, context)
                if upstream.window.full:
                    session.pause("window")
            elif command_id in cmd.BINDS:
                session.pause("bind")
                self.server.spawn(self._bind(pdu), name=f"bind {session.label}")
            elif command_id == CommandId.UNBIND:
                session.pause("unbind")
                self.server.spawn(self._downstream_unbind(pdu), name=f"unbind {session.label}")
            else:
                session.respond(pdu, Status.RINVCMDID)
        else:
            downstream = self.downstream
            if command_id in _FORWARD_DOWN:
                if not downstream.is_open:
                    session.respond(pdu, Status.RX_T_APPN)
                    return
                downstream.send_request(pdu.raw, session, pdu.sequence)
                if downstream.window.full:
                    session.pause("window")
            elif command_id == CommandId.ALERT_NOTIFICATION:
                downstream.send(pdu.raw)  # no response exists (SMPP 3.4 section 4.12.1)
            elif command_id == CommandId.UNBIND:
                self.server.spawn(self._upstream_unbind(pdu), name=f"unbind {session.label}")
            elif command_id == CommandId.OUTBIND:
                log.warning("%s: outbind on an open upstream connection ignored", session.label)
            else:
                session.respond(pdu, Status.RINVCMDID)

    # --- screening: parse what policy needs, decide, act. No await anywhere below. -------------------------

    def _screen(self, pdu: Pdu, guard: Guard) -> tuple[bytes, object] | None:
        """(bytes to forward, response context), or None when the sender has been answered here."""
        command_id = pdu.command_id
        if command_id == CommandId.SUBMIT_MULTI:
            return self._screen_multi(pdu, guard)
        if command_id == CommandId.SUBMIT_SM:
            v = submit_view(pdu.body, pdu.sequence)
        else:  # data_sm: no short_message; text in message_payload, concatenation only by SAR
            f = parse_body(command_id, pdu.body, pdu.sequence)
            v = SubmitView(f["service_type"], f["source_addr_ton"], f["source_addr"], f["dest_addr_ton"],
                           f["destination_addr"], f["esm_class"], f["registered_delivery"], f["data_coding"],
                           b"", f["tlvs"], -1)
        now = guard.clock()
        account = self.downstream.system_id
        udh, payload = split_udh(v.short_message, v.esm_class)
        concat = (from_udh(udh) if udh else None) or from_sar(v.tlvs)
        text_of = None
        if guard.policy.needs_text:
            def text_of() -> str | None:  # decoded only if a rule will read it (most messages: none)
                data = payload or tlv_value(v.tlvs, TlvTag.MESSAGE_PAYLOAD) or b""
                return decode(data, v.data_coding, *guard.text_codecs)
        ckey = None
        if concat is not None and concat.total > 1:
            # All parts share the first part's verdict and count once (SMPP-NOTES, Long messages); only the text
            # rules see more with each part (_later_part).
            ckey = (account, v.source_addr, v.destination_addr, concat.reference, concat.total)
            entry = guard.maybe_concat(ckey, now)
            if entry is not None:
                return self._later_part(pdu, v, concat, ckey, entry, text_of, guard, now)
        sub = make_submission(guard.policy, v.destination_addr, v.dest_addr_ton, v.source_addr, account,
                              v.service_type, None, concat, guard.index, text_of)
        verdict = decide(sub, guard.index, now, guard.policy)
        reservation = self._reserve(sub, verdict, guard, now)
        if ckey is not None:
            entry = ConcatEntry(verdict, reservation, now + CONCAT_TTL_S, {concat.seqnum})
            if sub.text is not None and guard.policy.text_checks_for(sub.traffic_class):
                entry.sub, entry.texts = sub, {concat.seqnum: sub.text}
            guard.remember_concat(ckey, entry, now)
        return self._act(pdu, v, verdict, reservation, guard, sub=sub, now=now)

    def _later_part(self, pdu: Pdu, v: SubmitView, concat, ckey: tuple, entry: ConcatEntry, text_of,
                    guard: Guard, now: float) -> tuple[bytes, object] | None:
        """A part after the first: the first part's verdict and reservation, unless a rule that judges the
        text objects now that this part's text has joined the others. Then this part and the ones after it
        are refused; the parts already forwarded cannot be called back."""
        entry.seen.add(concat.seqnum)
        complete = len(entry.seen) >= concat.total
        if complete:
            del guard.concat[ckey]
        forwarded = entry.verdict.action is Action.ALLOW or entry.verdict.action is Action.SCHEDULE
        if forwarded and entry.texts is not None and entry.sub is not None and text_of is not None:
            entry.texts[concat.seqnum] = text_of() or ""
            sub = entry.sub._replace(text=entry.joined(), partial=not complete)
            verdict = judge_text(sub, guard.index, now, guard.policy)
            if verdict is not None and not verdict.allowed:
                entry.verdict = verdict
                return self._act(pdu, v, verdict, None, guard, sub=sub, now=now)
        return self._act(pdu, v, entry.verdict, entry.reservation, guard, audit=False)

    def _reserve(self, sub, verdict: Verdict, guard: Guard, now: float) -> Reservation | None:
        if verdict.action is not Action.ALLOW and verdict.action is not Action.SCHEDULE:
            return None
        key = guard.policy.forward(sub, verdict, guard.index, now)
        if key is None:
            return None
        return Reservation(key, now, sub.recipient, sub.account)

    def _act(self, pdu: Pdu, v: SubmitView, verdict: Verdict, reservation: Reservation | None, guard: Guard,
             *, sub=None, now: float = 0.0, audit: bool = True) -> tuple[bytes, object] | None:
        action = verdict.action
        if action is Action.ALLOW:
            if reservation is not None:
                reservation.outstanding += 1
            return pdu.raw, reservation
        if action is Action.SCHEDULE and v.schedule_at >= 0:
            if reservation is not None:
                reservation.outstanding += 1
            if audit and sub is not None:
                self._audit(guard, sub, verdict, now)
            return with_schedule(pdu.raw, v.schedule_at, verdict.until or 0.0), reservation
        # reject, hold (until the hold queue lands, a hold answers its status: "try later"), or schedule on a
        # data_sm, which has no schedule_delivery_time to set
        if audit and sub is not None:
            self._audit(guard, sub, verdict, now)
        self.downstream.respond(pdu, verdict.status or Status.RSUBMITFAIL)
        return None

    def _refuse_list(self, guard: Guard, sender: str, account: str, name: str, now: float) -> None:
        if guard.writer is not None:
            guard.writer.audit(now, account, sender, f"list:{name}", "distribution_lists", Action.REJECT.value,
                               Status.RCNTSUBDL, "distribution list: its members cannot be screened "
                               "([policy] distribution_lists = \"refuse\")")

    def _audit(self, guard: Guard, sub, verdict: Verdict, now: float) -> None:
        writer = guard.writer
        if writer is not None:
            writer.audit(now, sub.account, sub.sender, guard.mask(sub.recipient, sub.address), verdict.rule,
                         verdict.action.value, verdict.status, verdict.reason)

    def _screen_multi(self, pdu: Pdu, guard: Guard) -> tuple[bytes, object] | None:
        """submit_multi: a verdict per destination; only allowed ones go upstream; the refused ones are
        listed in the response (SMPP 3.4 section 4.5.2), merged with the SMSC's own unsuccessful list."""
        fields = parse_body(pdu.command_id, pdu.body, pdu.sequence)
        now = guard.clock()
        account = self.downstream.system_id
        text = None
        if guard.policy.needs_text:
            udh, payload = split_udh(fields["short_message"], fields["esm_class"])
            data = payload or tlv_value(fields["tlvs"], TlvTag.MESSAGE_PAYLOAD) or b""
            text = decode(data, fields["data_coding"], *guard.text_codecs)
        allowed, refused, reservations = [], [], []
        for dest in fields["dest_addresses"]:
            if isinstance(dest, DistributionList):  # its members are known only to the SMSC: nothing to screen
                if guard.policy.distribution_lists == "pass":
                    allowed.append(dest)
                else:
                    self._refuse_list(guard, fields["source_addr"], account, dest.name, now)
                    # unsuccess_sme has no form for a list: its name stands as the address, TON/NPI unknown
                    refused.append(UnsuccessSme(0, 0, dest.name, Status.RCNTSUBDL))
                continue
            sub = make_submission(guard.policy, dest.address, dest.ton, fields["source_addr"], account,
                                  fields["service_type"], text, None, guard.index)
            verdict = decide(sub, guard.index, now, guard.policy)
            if verdict.action is Action.ALLOW:
                allowed.append(dest)
                reservation = self._reserve(sub, verdict, guard, now)
                if reservation is not None:
                    reservation.outstanding += 1
                    reservations.append((dest.address, reservation))
            else:
                self._audit(guard, sub, verdict, now)
                refused.append(UnsuccessSme(dest.ton, dest.npi, dest.address, verdict.status or Status.RSUBMITFAIL))
        if not allowed:
            self.downstream.respond(pdu, Status.ROK, encode_body(CommandId.SUBMIT_MULTI_RESP, message_id="",
                                                                 unsuccess_sme=refused))
            return None
        if not refused:
            return pdu.raw, MultiContext([], reservations) if reservations else None
        fields["dest_addresses"] = allowed
        raw = build(pdu.command_id, pdu.sequence, encode_body(pdu.command_id, fields))
        return raw, MultiContext(refused, reservations)

    # --- responses -----------------------------------------------------------------------------------------

    def response_received(self, session: Session, pdu: Pdu, entry: Outstanding) -> None:
        origin = entry.origin
        context = entry.context
        if context is None:
            if origin is not None:
                origin.send(pdu.renumbered(entry.origin_sequence))
            return
        raw = pdu.raw
        if type(context) is Reservation:
            self._settle(context, pdu.status == Status.ROK)
        elif type(context) is MultiContext:
            raw = self._merge_multi(pdu, context)
        if origin is not None:
            origin.send(renumber(raw, entry.origin_sequence))

    def _settle(self, r: Reservation, accepted: bool) -> None:
        """A part of a message got its answer: the send counts once, when the SMSC first accepts it."""
        guard = self.guard
        assert guard is not None
        r.outstanding -= 1
        if accepted:
            if r.state != "committed":
                if r.state == "released":  # every part so far failed, and now one is accepted after all
                    guard.index.record_send(r.key, r.at)
                r.state = "committed"  # a reserved send already counts in the Index
                if guard.writer is not None:
                    guard.writer.record_send(r.number, r.account, r.at)
        elif r.outstanding <= 0 and r.state == "reserved":
            guard.index.release(r.key, r.at)
            r.state = "released"

    def _merge_multi(self, pdu: Pdu, ctx: "MultiContext") -> bytes:
        theirs: list = []
        fields = None
        if pdu.command_id == CommandId.SUBMIT_MULTI_RESP and pdu.status == Status.ROK:
            try:
                fields = parse_body(pdu.command_id, pdu.body, pdu.sequence)
                theirs = fields.get("unsuccess_sme", [])
            except PduError:
                fields = None
        failed = {u.address for u in theirs}
        for address, r in ctx.reservations:
            self._settle(r, pdu.status == Status.ROK and address not in failed)
        if not ctx.refused or fields is None:
            return pdu.raw
        fields["unsuccess_sme"] = list(theirs) + ctx.refused
        return build(pdu.command_id, pdu.sequence, encode_body(pdu.command_id, fields), pdu.status)

    def request_failed(self, session: Session, entry: Outstanding, reason: str) -> None:
        context = entry.context
        if type(context) is Reservation:
            self._settle(context, False)
        elif type(context) is MultiContext:
            for _address, r in context.reservations:
                self._settle(r, False)
        origin = entry.origin
        if origin is None:
            return
        status = Status.RSYSERR
        if session is self.downstream:
            # deliver_sm the sender did not answer: RX_T_APPN asks the SMSC to redeliver later (3.4 5.1.3).
            status = Status.RX_T_APPN
        origin.send(build(cmd.response_id(entry.command_id), entry.origin_sequence, b"", status))

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

    def _throttle(self, pdu: Pdu, raw: bytes, context: object) -> None:
        self._throttled.append((pdu, raw, context))
        self.downstream.pause("throttle")
        if self._throttle_timer is None:
            self._release_throttled()

    def _release_throttled(self) -> None:
        """Forward queued submits as tokens and the window allow; re-arm the timer for the next token."""
        self._throttle_timer = None
        loop = self.server.loop
        up = self.upstream
        assert self._bucket is not None
        while self._throttled:
            if up is not None and up.is_open and up.window.full:
                return  # window_opened calls again
            wait = self._bucket.take(loop.time())
            if wait > 0:
                self._throttle_timer = loop.call_later(wait, self._release_throttled)
                return
            self._release_one()
        self.downstream.resume("throttle")

    def _release_one(self) -> None:
        pdu, raw, context = self._throttled.popleft()
        upstream = self.upstream
        if upstream is None or not upstream.is_open:
            self.request_failed(upstream or self.downstream,  # type: ignore[arg-type]
                                Outstanding(pdu.command_id, 0.0, self.downstream, pdu.sequence, None, context),
                                "upstream closed")
            return
        upstream.send_request(raw, self.downstream, pdu.sequence, context)
        if upstream.window.full:
            self.downstream.pause("window")

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
        host, port = self.server.upstream_address
        loop = self.server.loop
        up = Session(Role.ESME, self, window=cfg.upstream.window, response_timeout=cfg.session.response_timeout,
                     enquire_link_interval=cfg.session.enquire_link_interval, name="upstream")
        up.system_id = down.system_id
        try:
            await asyncio.wait_for(loop.create_connection(lambda: up, host, port), cfg.upstream.connect_timeout)
        except (OSError, asyncio.TimeoutError) as e:
            log.warning("%s: SMSC %s:%d unreachable (%s); bind answered RSYSERR", down.label, host, port, e)
            down.respond(pdu, Status.RSYSERR)
            down.close()
            return
        self.upstream = up
        if down.state is BindState.CLOSED:  # the sender gave up while we connected
            up.close()
            return
        try:
            resp = await up.request(pdu.raw, timeout=cfg.upstream.bind_timeout)
        except (TimeoutError, ConnectionError) as e:
            log.warning("%s: no bind response from the SMSC (%s); answered RSYSERR", down.label, e)
            down.respond(pdu, Status.RSYSERR)
            down.close()
            up.close()
            return
        if resp.command_id == cmd.response_id(pdu.command_id) and resp.status == Status.ROK:
            state = BIND_TRANSITIONS[pdu.command_id]
            up.state = down.state = state
            if cfg.upstream.max_tps > 0:
                self._bucket = TokenBucket(cfg.upstream.max_tps, loop.time())
            down.send(resp.renumbered(pdu.sequence))
            log.info("%s: bound %s through %s", down.label, state.value, up.label)
            down.resume("bind")
            return
        status = resp.status or Status.RBINDFAIL
        log.info("%s: SMSC refused the bind with 0x%02X", down.label, status)
        if resp.command_id == cmd.response_id(pdu.command_id):
            down.send(resp.renumbered(pdu.sequence))  # the SMSC's own answer, body and all
        else:
            down.respond(pdu, status)
        down.close()
        up.close()

    async def _drain_upstream(self, timeout: float) -> None:
        """Wait, at most `timeout`, for the SMSC to answer what the sender has in flight."""
        up = self.upstream
        deadline = self.server.loop.time() + timeout
        while up is not None and up.is_open and len(up.window) and self.server.loop.time() < deadline:
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
        """Unbind both legs within `grace`, answering everything outstanding."""
        down, up = self.downstream, self.upstream
        self._closing = True
        down.pause("shutdown")
        await self._drain_upstream(grace)
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
                if type(context) is Reservation:
                    self._settle(context, False)
            if self.upstream is not None and self.upstream.is_open:
                if not self._closing:
                    log.info("%s: sender disconnected; unbinding upstream", session.label)
                    self.server.spawn(self._unbind_and_close(self.upstream), name=f"unbind {self.upstream.label}")
            self.server.bridge_closed(self)
        else:
            # A dropped upstream closes the downstream, as a real SMSC would; its in-flight requests were
            # answered 0x08 by request_failed when the upstream window drained.
            while self._throttled:
                pdu, _raw, context = self._throttled.popleft()
                self.request_failed(session, Outstanding(pdu.command_id, 0.0, self.downstream, pdu.sequence,
                                                         None, context), "upstream closed")
            if self.downstream.is_open:
                if not self._closing:
                    log.warning("%s: SMSC connection lost (%s); closing the sender's connection",
                                session.label, exc or "closed by peer")
                self.downstream.close()

    async def _unbind_and_close(self, session: Session) -> None:
        try:
            await session.request(build(CommandId.UNBIND, 0), timeout=self.config.session.unbind_grace)
        except (TimeoutError, ConnectionError):
            pass
        session.close()


_UPWARD_OTHER = frozenset({CommandId.QUERY_SM, CommandId.CANCEL_SM, CommandId.REPLACE_SM})


class MultiContext:
    """A submit_multi in flight: destinations refused here, and reservations of the allowed ones."""

    __slots__ = ("refused", "reservations")

    def __init__(self, refused: list, reservations: list):
        self.refused = refused
        self.reservations = reservations


def smpp_time(epoch: float) -> str:
    """Absolute time in SMPP format YYMMDDhhmmsstnnp, in UTC (SMPP 3.4 section 7.1.1)."""
    return time.strftime("%y%m%d%H%M%S", time.gmtime(epoch)) + "000+"


def with_schedule(raw: bytes, offset: int, until: float) -> bytes:
    """The submit_sm with schedule_delivery_time replaced (the only field re-encoded on a forwarded PDU)."""
    start = 16 + offset
    end = raw.index(b"\0", start)
    new = raw[:start] + smpp_time(until).encode() + raw[end:]
    return len(new).to_bytes(4, "big") + new[4:]
