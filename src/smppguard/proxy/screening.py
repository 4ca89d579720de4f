"""Screening: a sender's submit_sm, data_sm or submit_multi in, what to do with it out. No I/O, no await.

`Screening.screen(pdu, account)` parses what policy needs, builds a `Submission` per destination, asks
`policy.decide()` and turns the verdicts into one outcome:
- `Forward(raw, context)`: send these bytes upstream (the original PDU, or a submit_multi without its refused
  destinations, or a submit_sm with schedule_delivery_time set); `context` goes with the request and comes
  back with the SMSC's answer to `settle()`;
- `Answer(status, body)`: answer the sender now (a refusal; a submit_multi whose every destination was refused);
- `Hold(until, status, number)`: keep it until `until` (the hold queue, proxy/holds.py; a proxy without one
  answers `status`, 0x58 "try later");
- `HoldMulti(held, refused)`: a submit_multi none of whose destinations goes now and some are held. A
  submit_multi with some destinations allowed and some held is a Forward whose MultiContext lists the held ones.
  Without a hold queue (`holding` False) held destinations are refused with their rule's status instead.
Every verdict is told to the hooks (`Decided`; an allowed one counted in `hooks.allowed`, and an event built
only if an observer wants allows); the audit log is one of their observers.

Rule 1: a message's parts share one verdict and count once for the frequency cap (SMPP-NOTES, Long messages);
only the rules that read the text see more with each part.
Rule 2: a send counts (Index.history) from the moment it is forwarded, as a reservation, so concurrent messages
cannot overrun a cap; it is recorded in the store when the SMSC first accepts a part, and taken back when every
part failed. A message of one part carries a `Send`, a concatenated one a `Reservation` that its parts share.
Rule 3: malformed bodies raise PduError (the bridge answers its status); nothing else escapes but bugs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Callable, NamedTuple

from ..hooks import NO_HOOKS, Decided, Hooks
from ..policy import Policy, decide, judge_text, make_submission
from ..policy.model import Action, Index, Submission, Verdict
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
from ..smpp.pdu import Pdu, build
from ..smpp.status import Status
from ..smpp.text import decode

#: How long the verdict of a concatenated message waits for its remaining parts.
CONCAT_TTL_S = 600.0


class Forward(NamedTuple):
    raw: bytes
    context: object  # None, a Reservation or a MultiContext: given back to settle() with the SMSC's answer


class Answer(NamedTuple):
    status: int
    body: bytes = b""


class Hold(NamedTuple):
    until: float  # when the message may go (UTC epoch seconds)
    status: int  # what the sender is answered when there is no hold queue
    number: int | None = None  # the recipient, E.164
    group: tuple | None = None  # a part of a concatenated message: (its message's key, seqnum, total)
    key: int | None = None  # the history key it counts under for the frequency cap while held (None: not counted)


class HoldMulti(NamedTuple):
    held: list  # (SmeDest, until, number) of each destination to hold
    refused: list  # UnsuccessSme of each destination refused here


Outcome = Forward | Answer | Hold | HoldMulti


class Send(NamedTuple):
    """A message of one part, counted for the frequency cap as it goes: recorded once the SMSC accepts it, taken
    back if it refuses it or never answers. A tuple, not a Reservation: most messages are one part, and this is
    built for each."""

    key: int  # the Index.history key it counts under
    at: float
    number: int
    account: str


class Reservation:
    """A send counted for the frequency cap, shared by the parts of one message; it counts once.

    Committed by the first part the SMSC accepts; released when every part has failed."""

    __slots__ = ("key", "at", "number", "account", "state", "outstanding")

    def __init__(self, key: int, at: float, number: int, account: str):
        self.key, self.at, self.number, self.account = key, at, number, account
        self.state = "reserved"
        self.outstanding = 0


class MultiContext:
    """A submit_multi in flight: destinations refused here, reservations of the allowed ones, and the ones held
    (the bridge hands those to the hold queue, which then gives the answer its proxy id)."""

    __slots__ = ("refused", "reservations", "held", "hold")

    def __init__(self, refused: list, reservations: list, held: list | None = None):
        self.refused = refused
        self.reservations = reservations
        self.held = held
        self.hold: tuple | None = None  # (proxy id, durability future), set by the bridge


@dataclass
class ConcatEntry:
    """The first part's verdict and reservation, kept for the other parts of the message."""

    verdict: Verdict
    reservation: Reservation | None
    expires: float
    sub: Submission  # the first part's
    seen: set[int] = field(default_factory=set)
    texts: dict[int, str] | None = None  # when a rule reads the text: the text of each part seen, by seqnum

    def joined(self) -> str:
        assert self.texts is not None
        return "".join(self.texts[k] for k in sorted(self.texts))


_ALLOW, _SCHEDULE = Action.ALLOW, Action.SCHEDULE
# plain ints for the comparisons made per message: reading an Enum's member off its class costs 0.1 us
_SUBMIT_SM, _SUBMIT_MULTI, _ROK = int(CommandId.SUBMIT_SM), int(CommandId.SUBMIT_MULTI), int(Status.ROK)
_new_tuple = tuple.__new__  # builds a NamedTuple from a tuple of all its fields, in C


def _text(payload: bytes, v: SubmitView, codecs: tuple[str, str]) -> str | None:
    """The decoded text of a submit: its short_message without the UDH, or its message_payload."""
    data = payload or tlv_value(v.tlvs, TlvTag.MESSAGE_PAYLOAD) or b""
    return decode(data, v.data_coding, *codecs)


def _goes(verdict: Verdict, v: SubmitView) -> bool:
    """Whether a message with this verdict is forwarded now (a data_sm has no schedule_delivery_time to set)."""
    return verdict.action is Action.ALLOW or (verdict.action is Action.SCHEDULE and v.schedule_at >= 0)


class Screening:
    """The policy, the Index and the hot path's own small state (verdicts of concatenated messages in progress).

    `record_send(number, account, at)` stores an accepted send (the store's writer); None keeps sends in the
    Index only."""

    def __init__(self, policy: Policy, index: Index, *, record_send: Callable[[int, str, float], None] | None = None,
                 hooks: Hooks = NO_HOOKS, clock: Callable[[], float] = time.time,
                 text_codecs: tuple[str, str] = ("gsm03.38", "ascii"), holding: bool = False):
        self.policy = policy
        self.holding = holding  # a hold queue keeps held submit_multi destinations
        self.index = index
        self.record_send = record_send
        self.hooks = hooks
        self.clock = clock
        self.text_codecs = text_codecs
        self.concat: dict[tuple, ConcatEntry] = {}
        self._next_sweep = 0.0

    # --- requests ------------------------------------------------------------------------------------------

    def screen(self, pdu: Pdu, account: str) -> Outcome:
        """What to do with a sender's submit_sm, data_sm or submit_multi. PduError: its body is malformed."""
        command_id = pdu.command_id
        if command_id == _SUBMIT_MULTI:
            return self._screen_multi(pdu, account)
        if command_id == _SUBMIT_SM:
            v = submit_view(pdu.body, pdu.sequence)
        else:  # data_sm: no short_message; text in message_payload, concatenation only by SAR
            f = parse_body(command_id, pdu.body, pdu.sequence)
            v = SubmitView(f["service_type"], f["source_addr_ton"], f["source_addr"], f["dest_addr_ton"],
                           f["destination_addr"], f["esm_class"], f["registered_delivery"], f["data_coding"],
                           b"", f["tlvs"], -1)
        policy, index = self.policy, self.index
        now = self.clock()
        udh, payload = split_udh(v.short_message, v.esm_class)
        concat = (from_udh(udh) if udh else None) or from_sar(v.tlvs)
        # decoded only if a rule will read it (most messages: none). A partial, not a closure: a closure would
        # make `v` and `payload` cells, read more slowly all through this method, and cost a function a message
        text_of = partial(_text, payload, v, self.text_codecs) if policy.needs_text else None
        ckey = None
        if concat is not None and concat.total > 1:
            # All parts share the first part's verdict and count once (Rule 1); only the rules that read the
            # text see more with each part (_later_part).
            ckey = (account, v.source_addr, v.destination_addr, concat.reference, concat.total)
            entry = self._maybe_concat(ckey, now)
            if entry is not None:
                return self._later_part(pdu, v, concat.seqnum, concat.total, ckey, entry, text_of, now)
        sub = make_submission(policy, v.destination_addr, v.dest_addr_ton, v.source_addr, account, v.service_type,
                              None, concat, index, text_of)
        verdict = decide(sub, index, now, policy)
        action = verdict.action
        if action is _ALLOW or (action is _SCHEDULE and v.schedule_at >= 0):  # it goes out now (_goes)
            key = policy.forward(sub, verdict, index, now)  # _reserve, spelled out: this runs for every message
            if key is None:
                reservation = None
            elif ckey is None:
                reservation = _new_tuple(Send, (key, now, sub.recipient, sub.account))
            else:
                reservation = Reservation(key, now, sub.recipient, sub.account)  # type: ignore[arg-type]
        else:
            reservation = None
        if ckey is not None:
            entry = ConcatEntry(verdict, reservation, now + CONCAT_TTL_S, sub, {concat.seqnum})  # type: ignore
            if sub.text is not None and policy.text_checks_for(sub.traffic_class):
                entry.texts = {concat.seqnum: sub.text}  # type: ignore[union-attr]
            self._remember_concat(ckey, entry, now)
        hooks = self.hooks
        if action is _ALLOW:  # hooks.wants, spelled out: this runs for every message
            hooks.allowed[account] += 1
            tell = hooks.wants_allowed
        else:
            tell = hooks.wants_decided
        if tell:
            # built without the keyword handling of Decided(...): one per message
            hooks.decided(_new_tuple(Decided, (now, command_id, account, v.source_addr, v.destination_addr, sub,
                                               verdict, False)))
        if action is _ALLOW:  # the common case, without _outcome's other cases
            if type(reservation) is Reservation:
                reservation.outstanding += 1
            return _new_tuple(Forward, (pdu.raw, reservation))
        return self._outcome(pdu, v, verdict, reservation, sub.recipient,
                             (ckey, concat.seqnum, concat.total) if ckey is not None else None,  # type: ignore[union-attr]
                             sub)

    def _later_part(self, pdu: Pdu, v: SubmitView, seqnum: int, total: int, ckey: tuple, entry: ConcatEntry,
                    text_of: Callable[[], str | None] | None, now: float) -> Outcome:
        """A part after the first: the first part's verdict and reservation, unless a rule that reads the text
        objects now that this part's text has joined the others. Then this part and the ones after it are
        refused; the parts already forwarded cannot be called back."""
        entry.seen.add(seqnum)
        complete = len(entry.seen) >= total
        if complete:
            del self.concat[ckey]
        if entry.texts is not None and text_of is not None and _goes(entry.verdict, v):
            entry.texts[seqnum] = text_of() or ""
            sub = replace(entry.sub, text=entry.joined(), partial=not complete)
            verdict = judge_text(sub, self.index, now, self.policy)
            if verdict is not None and not verdict.allowed:
                entry.verdict = verdict
                if self.hooks.wants(verdict, sub.account):
                    self.hooks.decided(Decided(now, pdu.command_id, sub.account, sub.sender, v.destination_addr,
                                               sub, verdict))
                return self._outcome(pdu, v, verdict, None, sub.recipient, (ckey, seqnum, total), sub)
        if self.hooks.wants(entry.verdict, ckey[0]):
            self.hooks.decided(Decided(now, pdu.command_id, ckey[0], v.source_addr, v.destination_addr,
                                       entry.sub, entry.verdict, repeat=True))
        return self._outcome(pdu, v, entry.verdict, entry.reservation, entry.sub.recipient, (ckey, seqnum, total),
                             entry.sub)

    def _reserve(self, sub: Submission, verdict: Verdict, now: float) -> Reservation | None:
        """The message goes out now: its send counts from here on (Rule 2)."""
        key = self.policy.forward(sub, verdict, self.index, now)
        if key is None:
            return None
        return Reservation(key, now, sub.recipient, sub.account)  # type: ignore[arg-type]

    def _outcome(self, pdu: Pdu, v: SubmitView, verdict: Verdict, reservation: Reservation | Send | None,
                 number: int | None = None, group: tuple | None = None, sub: Submission | None = None) -> Outcome:
        action = verdict.action
        if action is Action.ALLOW:
            if type(reservation) is Reservation:
                reservation.outstanding += 1
            return Forward(pdu.raw, reservation)
        if action is Action.SCHEDULE and v.schedule_at >= 0:
            if type(reservation) is Reservation:
                reservation.outstanding += 1
            return Forward(with_schedule(pdu.raw, v.schedule_at, verdict.until or 0.0), reservation)
        status = verdict.status or Status.RSUBMITFAIL
        if action is Action.HOLD or action is Action.SCHEDULE:  # a data_sm has no schedule_delivery_time to set
            key = self.policy.held_key(sub, self.index) if sub is not None else None
            return Hold(verdict.until or 0.0, status, number, group, key)
        return Answer(status)

    def _screen_multi(self, pdu: Pdu, account: str) -> Outcome:
        """submit_multi: a verdict per destination; only allowed ones go upstream; the refused ones are
        listed in the response (SMPP 3.4 section 4.5.2), merged with the SMSC's own unsuccessful list."""
        fields = parse_body(pdu.command_id, pdu.body, pdu.sequence)
        policy, index, hooks = self.policy, self.index, self.hooks
        now = self.clock()
        sender = fields["source_addr"]
        text = None
        if policy.needs_text:
            _udh, payload = split_udh(fields["short_message"], fields["esm_class"])
            data = payload or tlv_value(fields["tlvs"], TlvTag.MESSAGE_PAYLOAD) or b""
            text = decode(data, fields["data_coding"], *self.text_codecs)
        allowed, refused, reservations, held = [], [], [], []
        for dest in fields["dest_addresses"]:
            if isinstance(dest, DistributionList):  # its members are known only to the SMSC: nothing to screen
                if policy.distribution_lists == "pass":
                    allowed.append(dest)
                    continue
                verdict = Verdict(Action.REJECT, "distribution_lists", Status.RCNTSUBDL,
                                  "distribution list: its members cannot be screened "
                                  "([policy] distribution_lists = \"refuse\")")
                if hooks.wants(verdict, account):
                    hooks.decided(Decided(now, pdu.command_id, account, sender, f"list:{dest.name}", None, verdict))
                # unsuccess_sme has no form for a list: its name stands as the address, TON/NPI unknown
                refused.append(UnsuccessSme(0, 0, dest.name, Status.RCNTSUBDL))
                continue
            sub = make_submission(policy, dest.address, dest.ton, sender, account, fields["service_type"], text,
                                  None, index)
            verdict = decide(sub, index, now, policy)
            if hooks.wants(verdict, account):
                hooks.decided(Decided(now, pdu.command_id, account, sender, dest.address, sub, verdict))
            if verdict.action is Action.ALLOW:
                allowed.append(dest)
                reservation = self._reserve(sub, verdict, now)
                if reservation is not None:
                    reservation.outstanding += 1
                    reservations.append((dest.address, reservation))
            elif self.holding and verdict.action in (Action.HOLD, Action.SCHEDULE) and verdict.until is not None:
                held.append((dest, verdict.until, sub.recipient,  # no schedule per destination: held
                             policy.held_key(sub, index)))
            else:
                refused.append(UnsuccessSme(dest.ton, dest.npi, dest.address, verdict.status or Status.RSUBMITFAIL))
        if not allowed:
            if held:
                return HoldMulti(held, refused)
            return Answer(Status.ROK, encode_body(CommandId.SUBMIT_MULTI_RESP, message_id="", unsuccess_sme=refused))
        if not refused and not held:
            return Forward(pdu.raw, MultiContext([], reservations) if reservations else None)
        fields["dest_addresses"] = allowed
        raw = build(pdu.command_id, pdu.sequence, encode_body(pdu.command_id, fields))
        return Forward(raw, MultiContext(refused, reservations, held or None))

    # --- answers -------------------------------------------------------------------------------------------

    def screen_replace(self, pdu: Pdu, account: str) -> Answer | None:
        """A replace_sm's new text goes through the rules that read text, as a submit's would (None: it may go).
        The PDU carries no data_coding (the replaced message's applies), so the text is judged as the default
        alphabet and as UCS2 both: whichever the original used, a forbidden word is found. PduError: malformed."""
        policy = self.policy
        if not policy.needs_text:
            return None
        f = parse_body(pdu.command_id, pdu.body, pdu.sequence)
        payload = f["short_message"] or tlv_value(f["tlvs"], TlvTag.MESSAGE_PAYLOAD) or b""
        now = self.clock()
        texts = {decode(payload, 0, *self.text_codecs)}
        if len(payload) % 2 == 0:
            texts.add(decode(payload, 0x08))
        replaced = f"message {f['message_id']}"  # what the audit log names: there is no recipient in a replace_sm
        for text in texts:
            if text is None:
                continue
            sub = make_submission(policy, replaced, 0, f["source_addr"], account, "", text)
            verdict = judge_text(sub, self.index, now, policy)
            if verdict is not None and verdict.action is not Action.ALLOW:
                if self.hooks.wants(verdict, account):
                    self.hooks.decided(Decided(now, pdu.command_id, account, f["source_addr"], replaced, sub,
                                               verdict))
                return Answer(verdict.status)
        return None

    def settle(self, context: object, response: Pdu) -> bytes:
        """The SMSC answered a forwarded request with `response`: count what it accepted, release what it did
        not. Returns the bytes to relay (a submit_multi_resp also lists the destinations refused here)."""
        kind = type(context)
        if kind is Send:
            if response.status == _ROK:  # it counts in the Index already: the store records it
                if self.record_send is not None:
                    self.record_send(context.number, context.account, context.at)  # type: ignore[attr-defined]
            else:
                self.index.release(context.key, context.at)  # type: ignore[attr-defined]
        elif kind is Reservation:
            self._settle(context, response.status == _ROK)  # type: ignore[arg-type]
        elif kind is MultiContext:
            return self._merge_multi(response, context)
        return response.raw

    def failed(self, context: object) -> None:
        """A forwarded request got no answer from the SMSC (timed out, dropped): nothing it reserved counts."""
        if type(context) is Send:
            self.index.release(context.key, context.at)  # type: ignore[attr-defined]
        elif type(context) is Reservation:
            self._settle(context, False)
        elif type(context) is MultiContext:
            for _address, r in context.reservations:
                self._settle(r, False)

    def _settle(self, r: Reservation, accepted: bool) -> None:
        """A part of a message got its answer: the send counts once, when the SMSC first accepts it."""
        r.outstanding -= 1
        if accepted:
            if r.state != "committed":
                if r.state == "released":  # every part so far failed, and now one is accepted after all
                    self.index.record_send(r.key, r.at)
                r.state = "committed"  # a reserved send already counts in the Index
                if self.record_send is not None:
                    self.record_send(r.number, r.account, r.at)
        elif r.outstanding <= 0 and r.state == "reserved":
            self.index.release(r.key, r.at)
            r.state = "released"

    def _merge_multi(self, pdu: Pdu, ctx: MultiContext) -> bytes:
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

    # --- concatenated messages in progress -----------------------------------------------------------------

    def _maybe_concat(self, key: tuple, now: float) -> ConcatEntry | None:
        entry = self.concat.get(key)
        if entry is not None and entry.expires < now:
            del self.concat[key]
            return None
        return entry

    def _remember_concat(self, key: tuple, entry: ConcatEntry, now: float) -> None:
        """Keep the first part's verdict for the other parts. Messages whose last parts never come would stay
        forever, so at most once a minute the expired ones are dropped here."""
        self.concat[key] = entry
        if now >= self._next_sweep:
            self._next_sweep = now + 60.0
            for k in [k for k, e in self.concat.items() if e.expires < now]:
                del self.concat[k]


def smpp_time(epoch: float) -> str:
    """Absolute time in SMPP format YYMMDDhhmmsstnnp, in UTC (SMPP 3.4 section 7.1.1)."""
    return time.strftime("%y%m%d%H%M%S", time.gmtime(epoch)) + "000+"


def with_schedule(raw: bytes, offset: int, until: float) -> bytes:
    """The submit_sm with schedule_delivery_time replaced (the only field re-encoded on a forwarded PDU)."""
    start = 16 + offset
    end = raw.index(b"\0", start)
    new = raw[:start] + smpp_time(until).encode() + raw[end:]
    return len(new).to_bytes(4, "big") + new[4:]
