"""The bridge driven without sockets: in-memory legs (tests/memory.py), an injected connect function, scripted
sender and SMSC. Every path a request can take, the error paths included, and what the hooks are told."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from helpers import make_config
from memory import Peer, pipe
from smppguard.hooks import Answered, Bound, Decided, Delivered, Hooks, Unbound
from smppguard.policy import RULES, load_policy
from smppguard.policy.model import Action, Index
from smppguard.proxy.bridge import Bridge
from smppguard.proxy.holds import Released
from smppguard.proxy.screening import Screening
from smppguard.smpp.commands import CommandId
from smppguard.smpp.errors import PduError
from smppguard.smpp.fields import SmeDest, UnsuccessSme, encode_body, parse_body
from smppguard.smpp.pdu import Pdu, build
from smppguard.smpp.state import BindState
from smppguard.smpp.status import Status

RESP = 0x80000000
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()
NIGHT = datetime(2026, 11, 27, 23, 0, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()
CONFIG = make_config(session={"response_timeout": 0.3, "enquire_link_interval": 30.0, "unbind_grace": 0.5},
                     upstream={"bind_timeout": 0.3, "connect_timeout": 0.3})
POLICY = load_policy({"default_region": "CN", "fallback_zone": "Asia/Shanghai"}, {"frequency": {"max": 1}})
BLOCKED = 8613900000001


class Recorder:
    """An observer of every event."""

    def __init__(self) -> None:
        self.events: list = []

    def decided(self, e: Decided) -> None:
        self.events.append(e)

    def answered(self, e: Answered) -> None:
        self.events.append(e)

    def delivered(self, e: Delivered) -> None:
        self.events.append(e)

    def bound(self, e: Bound) -> None:
        self.events.append(e)

    def unbound(self, e: Unbound) -> None:
        self.events.append(e)

    def of(self, kind: type) -> list:
        return [e for e in self.events if type(e) is kind]


class Rig:
    """A bridge between a scripted sender and a scripted SMSC, joined in memory."""

    def __init__(self, config=CONFIG, screening: Screening | None = None, connect_error: Exception | None = None,
                 observers=()):
        self.sender, self.smsc = Peer(), Peer()
        self.recorder = Recorder()
        self.connects = 0

        async def connect(session):
            self.connects += 1
            if connect_error is not None:
                raise connect_error
            pipe(session, self.smsc, ("upstream", "smsc"))

        self.bridge = Bridge(config, connect, screening=screening, hooks=Hooks([*observers, self.recorder]),
                             clock=lambda: NOW)
        pipe(self.sender, self.bridge.downstream, ("sender", "downstream"))

    async def bind(self, command_id: int = CommandId.BIND_TRANSCEIVER) -> None:
        self.sender.send(command_id, 1, encode_body(command_id, system_id="acme", password="pw"))
        bind = await self.smsc.next()
        self.smsc.send(command_id | RESP, bind.sequence, b"smsc\0")
        assert (await self.sender.next())[:3] == (command_id | RESP, Status.ROK, 1)

    def submit(self, sequence: int, dest: str = "8613800000001", **fields) -> None:
        self.sender.send(CommandId.SUBMIT_SM, sequence,
                         encode_body(CommandId.SUBMIT_SM, source_addr="ACME", destination_addr=dest,
                                     short_message=fields.pop("text", b"sale"), **fields))

    async def close(self) -> None:
        for peer in (self.sender, self.smsc):
            if peer.transport is not None:
                peer.transport.close()
        for _ in range(5):
            await asyncio.sleep(0)


@pytest.fixture
async def rigs():
    made: list[Rig] = []

    def make(**kw) -> Rig:
        made.append(Rig(**kw))
        return made[-1]

    yield make
    for rig in made:
        await rig.close()


def screening(policy=POLICY, index=None, clock=lambda: NOW, hooks=None) -> Screening:
    return Screening(policy, index if index is not None else Index(), clock=clock,
                     **({"hooks": hooks} if hooks is not None else {}))


# --- binds --------------------------------------------------------------------------------------------------

async def test_bind_goes_upstream_as_sent_and_the_sender_gets_the_smscs_answer(rigs):
    rig = rigs()
    body = encode_body(CommandId.BIND_TRANSMITTER, system_id="acme", password="pw", system_type="VMA",
                       interface_version=0x50, address_range="^86")
    rig.sender.send(CommandId.BIND_TRANSMITTER, 7, body)
    bind = await rig.smsc.next()
    assert (bind.command_id, bind.body) == (CommandId.BIND_TRANSMITTER, body)
    rig.smsc.send(CommandId.BIND_TRANSMITTER_RESP, bind.sequence, b"carrier\0\x02\x10\x00\x01\x34")
    resp = await rig.sender.next()
    assert (resp.command_id, resp.status, resp.sequence, resp.body) == (
        CommandId.BIND_TRANSMITTER_RESP, Status.ROK, 7, b"carrier\0\x02\x10\x00\x01\x34")
    assert rig.bridge.downstream.state is BindState.BOUND_TX is rig.bridge.upstream.state
    assert rig.recorder.of(Bound) == [Bound(NOW, "acme", "sender:0", "bound_tx")]


async def test_bind_to_an_unreachable_smsc_is_answered_rsyserr_and_closed(rigs):
    rig = rigs(connect_error=ConnectionRefusedError("refused"))
    rig.sender.send(CommandId.BIND_TRANSCEIVER, 3, encode_body(CommandId.BIND_TRANSCEIVER, system_id="acme"))
    assert (await rig.sender.next())[:3] == (CommandId.BIND_TRANSCEIVER_RESP, Status.RSYSERR, 3)
    await asyncio.wait_for(rig.sender.closed.wait(), 1)
    assert rig.recorder.of(Bound) == []


async def test_bind_the_smsc_never_answers_is_answered_rsyserr(rigs):
    rig = rigs()
    rig.sender.send(CommandId.BIND_TRANSCEIVER, 3, encode_body(CommandId.BIND_TRANSCEIVER, system_id="acme"))
    await rig.smsc.next()  # and never answered (bind_timeout 0.3 s)
    assert (await rig.sender.next())[:3] == (CommandId.BIND_TRANSCEIVER_RESP, Status.RSYSERR, 3)
    await asyncio.wait_for(rig.smsc.closed.wait(), 1)


async def test_bind_the_smsc_refuses_gets_its_answer_and_both_legs_close(rigs):
    rig = rigs()
    rig.sender.send(CommandId.BIND_TRANSCEIVER, 3, encode_body(CommandId.BIND_TRANSCEIVER, system_id="acme"))
    bind = await rig.smsc.next()
    rig.smsc.send(CommandId.BIND_TRANSCEIVER_RESP, bind.sequence, status=Status.RINVPASWD)
    assert (await rig.sender.next())[:3] == (CommandId.BIND_TRANSCEIVER_RESP, Status.RINVPASWD, 3)
    await asyncio.wait_for(asyncio.gather(rig.sender.closed.wait(), rig.smsc.closed.wait()), 1)


async def test_a_submit_before_the_upstream_is_up_is_answered_rsyserr(rigs):
    rig = rigs()
    rig.bridge.downstream.state = BindState.BOUND_TX  # as if bound, with no upstream leg
    rig.submit(4)
    assert (await rig.sender.next())[:3] == (CommandId.SUBMIT_SM_RESP, Status.RSYSERR, 4)
    assert rig.connects == 0


# --- submits --------------------------------------------------------------------------------------------------

async def test_submit_is_relayed_renumbered_and_its_answer_comes_back_renumbered(rigs):
    rig = rigs()
    await rig.bind()
    rig.submit(42)
    up = await rig.smsc.next()
    assert up.command_id == CommandId.SUBMIT_SM and up.sequence != 42
    assert up.raw[16:] == encode_body(CommandId.SUBMIT_SM, source_addr="ACME", destination_addr="8613800000001",
                                      short_message=b"sale")  # byte for byte
    rig.smsc.send(CommandId.SUBMIT_SM_RESP, up.sequence, b"msg-1\0")
    resp = await rig.sender.next()
    assert (resp.command_id, resp.status, resp.sequence, resp.body) == (CommandId.SUBMIT_SM_RESP, 0, 42, b"msg-1\0")
    [answered] = rig.recorder.of(Answered)
    assert (answered.at, answered.account, answered.command_id, answered.status) == (
        NOW, "acme", CommandId.SUBMIT_SM_RESP, 0)
    assert answered.pdu.body == b"msg-1\0"  # the SMSC's answer itself


async def test_refused_submit_is_answered_here_and_told_to_the_hooks(rigs):
    index = Index(blacklist={BLOCKED})
    rec = Recorder()
    rig = rigs(screening=screening(index=index, hooks=Hooks([rec])))
    await rig.bind()
    rig.submit(5, dest="13900000001")
    assert (await rig.sender.next())[:3] == (CommandId.SUBMIT_SM_RESP, Status.RSUBMITFAIL, 5)
    await rig.smsc.nothing()
    [d] = rec.of(Decided)
    assert (d.account, d.sender, d.destination, d.sub.recipient, d.verdict.rule) == (
        "acme", "ACME", "13900000001", BLOCKED, "blacklist")


async def test_a_rule_registered_in_one_line_refuses_through_the_bridge(rigs):
    from prefix_rule import REFUSED, WITH_PREFIX
    policy = load_policy({"default_region": "CN"}, {"prefix": {"prefixes": ["86138"]}}, registry=WITH_PREFIX)
    rig = rigs(screening=screening(policy))
    await rig.bind()
    rig.submit(6, dest="13800000001")
    rig.submit(7, dest="13900000001")
    assert (await rig.sender.next())[:3] == (CommandId.SUBMIT_SM_RESP, REFUSED, 6)
    assert (await rig.smsc.next()).command_id == CommandId.SUBMIT_SM  # the other one goes
    assert "prefix" not in [r.name for r in RULES]  # registered for this test only


async def test_a_message_held_for_quiet_hours_is_answered_try_later_and_not_counted(rigs):
    index = Index()
    rig = rigs(screening=screening(index=index, clock=lambda: NIGHT))
    await rig.bind()
    rig.submit(8)
    assert (await rig.sender.next())[:3] == (CommandId.SUBMIT_SM_RESP, Status.RTHROTTLED, 8)
    await rig.smsc.nothing()
    assert index.history == {}


async def test_a_screening_bug_answers_rsyserr_never_a_silent_allow(rigs, caplog):
    broken = screening()
    broken.policy = None  # type: ignore[assignment]  # any rule that raises
    rig = rigs(screening=broken)
    await rig.bind()
    with caplog.at_level(logging.ERROR, logger="smppguard.proxy"):
        rig.submit(9)
        assert (await rig.sender.next())[:3] == (CommandId.SUBMIT_SM_RESP, Status.RSYSERR, 9)
    await rig.smsc.nothing()
    [record] = [r for r in caplog.records if r.name == "smppguard.proxy" and r.levelname == "ERROR"]
    assert record.getMessage() == f"{rig.bridge.downstream.label}: screening submit_sm failed; answered RSYSERR"
    assert record.exc_info is not None and record.exc_info[0] is AttributeError  # the bug's traceback, to report


async def test_a_malformed_submit_gets_the_codecs_status(rigs, caplog):
    rig = rigs(screening=screening())
    await rig.bind()
    body = b"\0\x01\x01ACME"  # ends inside source_addr
    with caplog.at_level(logging.INFO, logger="smppguard.proxy"):
        rig.sender.send(CommandId.SUBMIT_SM, 10, body)
        resp = await rig.sender.next()
    with pytest.raises(PduError) as codec:
        parse_body(CommandId.SUBMIT_SM, body)
    assert (resp.command_id, resp.status, resp.sequence) == (CommandId.SUBMIT_SM_RESP, codec.value.status, 10)
    assert codec.value.status != Status.ROK
    await rig.smsc.nothing()
    [line] = [r.getMessage() for r in caplog.records if r.name == "smppguard.proxy" and "malformed" in r.getMessage()]
    assert line == (f"{rig.bridge.downstream.label}: malformed submit_sm: "
                    "submit_sm body ends early or a C-octet string has no NUL")


async def test_submit_multi_refusals_and_the_smscs_failures_share_one_answer(rigs):
    index = Index(blacklist={BLOCKED})
    rig = rigs(screening=screening(index=index))
    await rig.bind()
    dests = [SmeDest(1, 1, "8613800000001"), SmeDest(1, 1, str(BLOCKED)), SmeDest(1, 1, "8613800000003")]
    rig.sender.send(CommandId.SUBMIT_MULTI, 11, encode_body(CommandId.SUBMIT_MULTI, source_addr="ACME",
                                                            dest_addresses=dests, short_message=b"sale"))
    up = await rig.smsc.next()
    assert parse_body(up.command_id, up.body)["dest_addresses"] == [dests[0], dests[2]]
    rig.smsc.send(CommandId.SUBMIT_MULTI_RESP, up.sequence, encode_body(
        CommandId.SUBMIT_MULTI_RESP, message_id="m1", unsuccess_sme=[UnsuccessSme(1, 1, "8613800000003", 0x400)]))
    resp = await rig.sender.next()
    assert (resp.status, resp.sequence) == (Status.ROK, 11)
    assert sorted((u.address, u.status) for u in parse_body(resp.command_id, resp.body)["unsuccess_sme"]) == [
        ("8613800000003", 0x400), (str(BLOCKED), Status.RSUBMITFAIL)]
    assert index.history == {8613800000001: (NOW,)}  # the SMSC's failure does not count


# --- the SMSC drops, times out, unbinds -----------------------------------------------------------------------

async def test_a_dropped_smsc_answers_every_request_in_flight_and_closes_the_sender(rigs):
    index = Index()
    rig = rigs(screening=screening(index=index))
    await rig.bind()
    for seq in (20, 21, 22):
        rig.submit(seq, dest=f"86138000000{seq}")
    for _ in range(3):
        await rig.smsc.next()
    assert len(index.history) == 3  # reserved while in flight
    rig.smsc.close()
    answers = {(p.command_id, p.status, p.sequence) for p in [await rig.sender.next() for _ in range(3)]}
    assert answers == {(CommandId.SUBMIT_SM_RESP, Status.RSYSERR, s) for s in (20, 21, 22)}
    await asyncio.wait_for(rig.sender.closed.wait(), 1)
    assert index.history == {}  # released: none of them went
    assert [a.status for a in rig.recorder.of(Answered)] == [Status.RSYSERR] * 3


async def test_a_submit_the_smsc_never_answers_is_answered_rsyserr(rigs):
    rig = rigs()
    await rig.bind()
    rig.submit(30)
    await rig.smsc.next()
    got = await rig.sender.next(timeout=3)
    assert (got.command_id, got.status, got.sequence, got.body) == (CommandId.SUBMIT_SM_RESP, Status.RSYSERR, 30, b"")
    # the observers hear the proxy's own answer, as they hear the SMSC's
    assert rig.recorder.of(Answered) == [Answered(NOW, "acme", CommandId.SUBMIT_SM_RESP, Status.RSYSERR, None)]


async def test_an_smsc_unbind_fails_what_is_in_flight_and_unbinds_the_sender(rigs):
    rig = rigs()
    await rig.bind()
    rig.submit(31)
    await rig.smsc.next()
    rig.smsc.send(CommandId.UNBIND, 99)
    got = [await rig.sender.next(), await rig.sender.next()]
    assert (got[0].command_id, got[0].status, got[0].sequence) == (CommandId.SUBMIT_SM_RESP, Status.RSYSERR, 31)
    assert got[1].command_id == CommandId.UNBIND
    assert (await rig.smsc.next())[:3] == (CommandId.UNBIND_RESP, Status.ROK, 99)
    rig.sender.send(CommandId.UNBIND_RESP, got[1].sequence)
    await asyncio.wait_for(rig.sender.closed.wait(), 1)
    assert [(e.account, e.peer) for e in rig.recorder.of(Unbound)] == [("acme", "sender:0")]


# --- deliver_sm going down ----------------------------------------------------------------------------------

async def test_deliver_sm_goes_down_renumbered_and_its_answer_comes_back(rigs):
    rig = rigs()
    await rig.bind()
    body = encode_body(CommandId.DELIVER_SM, source_addr="8613800000001", destination_addr="10690000",
                       short_message=b"TD")
    rig.smsc.send(CommandId.DELIVER_SM, 500, body)
    down = await rig.sender.next()
    assert (down.command_id, down.body) == (CommandId.DELIVER_SM, body)
    rig.sender.send(CommandId.DELIVER_SM_RESP, down.sequence, b"\0")
    assert (await rig.smsc.next())[:3] == (CommandId.DELIVER_SM_RESP, Status.ROK, 500)
    [delivered] = rig.recorder.of(Delivered)
    assert (delivered.account, delivered.pdu.body) == ("acme", body)


async def test_a_request_that_goes_the_other_way_is_answered_invalid_command_and_not_relayed(rigs):
    """A deliver_sm from the sender, a submit_sm from the SMSC: requests only the other side may send. Each gets
    its own response with 0x04 (ESME_RINVBNDSTS: not allowed in that bind), and goes no further."""
    rig = rigs()
    await rig.bind()
    rig.sender.send(CommandId.DELIVER_SM, 70, encode_body(CommandId.DELIVER_SM, short_message=b"x"))
    assert (await rig.sender.next())[:3] == (CommandId.DELIVER_SM_RESP, Status.RINVBNDSTS, 70)
    rig.smsc.send(CommandId.SUBMIT_SM, 71, encode_body(CommandId.SUBMIT_SM, destination_addr="8613800000001"))
    assert (await rig.smsc.next())[:3] == (CommandId.SUBMIT_SM_RESP, Status.RINVBNDSTS, 71)
    await rig.sender.nothing(0.2)
    await rig.smsc.nothing(0.05)
    assert rig.recorder.of(Delivered) == []


async def test_a_deliver_sm_the_sender_never_answers_is_answered_rx_t_appn(rigs):
    rig = rigs()
    await rig.bind()
    rig.smsc.send(CommandId.DELIVER_SM, 501, encode_body(CommandId.DELIVER_SM, short_message=b"x"))
    await rig.sender.next()
    got = await rig.smsc.next(timeout=3)
    assert (got.command_id, got.status, got.sequence, got.body) == (CommandId.DELIVER_SM_RESP, Status.RX_T_APPN, 501,
                                                                   b"")  # an error answer has no body
    assert rig.recorder.of(Answered) == []  # an answer to the SMSC is no answer to a sender's request


async def test_deliver_sm_waits_for_a_slot_in_the_senders_window(rigs):
    rig = rigs(config=make_config(upstream={"window": 1}, session={"response_timeout": 5.0}))
    await rig.bind()
    for seq in (600, 601):
        rig.smsc.send(CommandId.DELIVER_SM, seq, encode_body(CommandId.DELIVER_SM, short_message=b"mo%d" % seq))
    first = await rig.sender.next()
    await rig.sender.nothing()  # the second waits until the first is answered
    assert "window" in rig.bridge.upstream.paused
    rig.sender.send(CommandId.DELIVER_SM_RESP, first.sequence, b"\0")
    second = await rig.sender.next()
    assert parse_body(second.command_id, second.body)["short_message"] == b"mo601"


async def test_a_full_window_stops_reading_from_the_sender_until_an_answer_frees_it(rigs):
    rig = rigs(config=make_config(upstream={"window": 1}, session={"response_timeout": 5.0}))
    await rig.bind()
    rig.submit(40)
    rig.submit(41)
    first = await rig.smsc.next()
    await rig.smsc.nothing()  # the second waits in the proxy
    assert "window" in rig.bridge.downstream.paused
    rig.smsc.send(CommandId.SUBMIT_SM_RESP, first.sequence, b"a\0")
    second = await rig.smsc.next()
    rig.smsc.send(CommandId.SUBMIT_SM_RESP, second.sequence, b"b\0")
    assert [p.sequence for p in (await rig.sender.next(), await rig.sender.next())] == [40, 41]


# --- unbind from the sender; observers ----------------------------------------------------------------------

async def test_a_sender_unbind_unbinds_upstream_first_then_answers(rigs):
    rig = rigs()
    await rig.bind()
    rig.sender.send(CommandId.UNBIND, 50)
    up = await rig.smsc.next()
    assert up.command_id == CommandId.UNBIND
    await rig.sender.nothing()  # not answered before the SMSC has
    rig.smsc.send(CommandId.UNBIND_RESP, up.sequence)
    assert (await rig.sender.next())[:3] == (CommandId.UNBIND_RESP, Status.ROK, 50)
    await asyncio.wait_for(asyncio.gather(rig.sender.closed.wait(), rig.smsc.closed.wait()), 1)


async def test_an_unbind_either_way_closes_the_bind_to_the_hold_queue_and_logs_no_lost_connection(rigs, caplog):
    """An unbind, by the sender or by the SMSC: from its start the bind takes no released message and no kept
    delivery; it closes both legs as asked, with no warning that a connection was lost."""
    caplog.set_level(logging.INFO, "smppguard.proxy")
    for first, second in (("sender", "smsc"), ("smsc", "sender")):
        rig = rigs()
        await rig.bind()
        a, b = getattr(rig, first), getattr(rig, second)
        assert rig.bridge.can_release() and rig.bridge.can_receive()  # a transceiver bind, up
        a.send(CommandId.UNBIND, 50)
        unbind = await b.next()
        assert unbind.command_id == CommandId.UNBIND
        # while it unbinds, the hold queue neither releases through it nor delivers to it
        assert not rig.bridge.can_release() and not rig.bridge.can_receive()
        b.send(CommandId.UNBIND_RESP, unbind.sequence)
        assert (await a.next())[:3] == (CommandId.UNBIND_RESP, Status.ROK, 50)
        await asyncio.wait_for(asyncio.gather(rig.sender.closed.wait(), rig.smsc.closed.wait()), 1)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert not [r for r in caplog.records if "disconnected" in r.getMessage() or "lost" in r.getMessage()]


@pytest.mark.parametrize("first", ["sender", "smsc"])
async def test_an_unbind_the_other_side_never_answers_is_answered_after_the_grace(rigs, first):
    """[session] unbind_grace bounds the wait for the other leg's unbind_resp (not the longer response_timeout)."""
    rig = rigs(config=make_config(session={"response_timeout": 30.0, "unbind_grace": 0.3}))
    await rig.bind()
    a, b = getattr(rig, first), getattr(rig, "smsc" if first == "sender" else "sender")
    a.send(CommandId.UNBIND, 51)
    assert (await b.next()).command_id == CommandId.UNBIND  # and never answered
    assert (await a.next(timeout=5))[:3] == (CommandId.UNBIND_RESP, Status.ROK, 51)
    await asyncio.wait_for(asyncio.gather(rig.sender.closed.wait(), rig.smsc.closed.wait()), 5)


class Failing:
    def decided(self, e):
        raise RuntimeError("observer bug")

    def answered(self, e):
        raise RuntimeError("observer bug")


async def test_an_observer_that_raises_changes_no_verdict_and_stops_no_traffic(rigs, caplog):
    index = Index(blacklist={BLOCKED})
    rig = rigs(screening=screening(index=index, hooks=Hooks([Failing()])), observers=[Failing()])
    await rig.bind()
    with caplog.at_level(logging.ERROR, logger="smppguard.hooks"):
        rig.submit(60, dest=str(BLOCKED))
        rig.submit(61)
        assert (await rig.sender.next())[:3] == (CommandId.SUBMIT_SM_RESP, Status.RSUBMITFAIL, 60)
        up = await rig.smsc.next()
        rig.smsc.send(CommandId.SUBMIT_SM_RESP, up.sequence, b"ok\0")
        assert (await rig.sender.next())[:3] == (CommandId.SUBMIT_SM_RESP, Status.ROK, 61)
    assert caplog.text.count("observer Failing failed on decided") == 1  # once a minute, not per message
    assert "observer Failing failed on answered" in caplog.text


def pdu_of(raw: bytes) -> Pdu:
    from smppguard.smpp.pdu import from_bytes
    return from_bytes(raw)


async def test_hold_verdicts_are_audited_through_the_hooks():
    from smppguard.store.audit import AuditLog
    rows = []

    class Rows:
        def audit(self, *row):
            rows.append(row)

        def audit_fold(self, *fold):
            raise AssertionError("no repeat here")

    audit = AuditLog(Rows(), "full")
    s = screening(clock=lambda: NIGHT, hooks=Hooks([audit]))
    raw = build(CommandId.SUBMIT_SM, 1, encode_body(CommandId.SUBMIT_SM, source_addr="ACME",
                                                    destination_addr="8613800000001", short_message=b"sale"))
    outcome = s.screen(pdu_of(raw), "acme")
    assert type(outcome).__name__ == "Hold" and outcome.status == Status.RTHROTTLED
    [(at, account, sender, recipient, rule, action, status, _reason)] = rows
    assert (at, account, sender, recipient, rule, action, status) == (
        NIGHT, "acme", "ACME", "+8613800000001", "quiet_hours", Action.HOLD.value, Status.RTHROTTLED)


# --- back-pressure: max_tps and a leg that cannot write -------------------------------------------------------

async def test_submits_waiting_for_max_tps_are_answered_rsyserr_when_the_smsc_goes(rigs):
    index = Index()
    rig = rigs(config=make_config(upstream={"max_tps": 1.0}, session={"response_timeout": 5.0}),
               screening=screening(index=index))
    await rig.bind()
    for seq in (70, 71, 72):
        rig.submit(seq, dest=f"86138000000{seq}")
    await rig.smsc.next()  # the first goes at once; the second waits for a token, and the third is not read
    await rig.smsc.nothing()
    assert "throttle" in rig.bridge.downstream.paused
    rig.smsc.close()
    answers = [(p.command_id, p.status, p.sequence) for p in [await rig.sender.next() for _ in range(2)]]
    assert answers == [(CommandId.SUBMIT_SM_RESP, Status.RSYSERR, s) for s in (70, 71)]  # in flight, then waiting
    await asyncio.wait_for(rig.sender.closed.wait(), 1)
    assert index.history == {}  # neither went: neither counted
    assert [a.status for a in rig.recorder.of(Answered)] == [Status.RSYSERR] * 2


async def test_a_submit_that_waited_for_max_tps_and_fills_the_smscs_window_pauses_the_sender_until_it_opens(rigs):
    """max_tps 5 lets 5 go at once; the sixth waits a fifth of a second for its token, and fills the window of 6:
    reading from the sender stops until the SMSC answers, and only what the SMSC accepted counts, as without
    max_tps."""
    index = Index()
    rig = rigs(config=make_config(upstream={"max_tps": 5.0, "window": 6}, session={"response_timeout": 5.0}),
               screening=screening(index=index))
    await rig.bind()
    down = rig.bridge.downstream
    numbers = [8613800000090 + i for i in range(6)]
    for seq, number in enumerate(numbers, 90):
        rig.submit(seq, dest=str(number))
    sent = [await rig.smsc.next() for _ in numbers]
    assert "window" in down.paused and "throttle" not in down.paused
    for pdu in sent[:5]:
        rig.smsc.send(CommandId.SUBMIT_SM_RESP, pdu.sequence, b"id\0")
    rig.smsc.send(CommandId.SUBMIT_SM_RESP, sent[5].sequence, b"", Status.RTHROTTLED)
    assert [(await rig.sender.next())[1] for _ in numbers] == [Status.ROK] * 5 + [Status.RTHROTTLED]
    assert not down.paused
    assert sorted(index.history) == numbers[:5]  # the one the SMSC refused is not counted


async def test_released_messages_that_wait_for_the_window_go_as_soon_as_it_opens(rigs):
    """No max_tps: a release that finds the SMSC's window full waits for it, not for a token's timer."""
    answers: list = []

    class Holds:  # the hold queue's side: what the SMSC answered each release
        def settled(self, context, pdu):
            answers.append((context.row, pdu.status))

    rig = rigs(config=make_config(upstream={"window": 1}, session={"response_timeout": 5.0}))
    await rig.bind()
    rig.bridge.holds = Holds()
    for n in (1, 2):
        rig.bridge.release(build(CommandId.SUBMIT_SM, 0, encode_body(CommandId.SUBMIT_SM, source_addr="ACME",
                                                                     destination_addr=f"861380000000{n}")),
                           Released(n, None))
    first = await rig.smsc.next()
    await rig.smsc.nothing()  # the second waits for the window
    rig.smsc.send(CommandId.SUBMIT_SM_RESP, first.sequence, b"a\0")
    second = await rig.smsc.next(timeout=0.5)
    rig.smsc.send(CommandId.SUBMIT_SM_RESP, second.sequence, b"b\0")
    await asyncio.sleep(0.05)
    assert answers == [(1, Status.ROK), (2, Status.ROK)]


async def test_a_leg_that_cannot_write_stops_the_bridge_reading_from_the_other(rigs):
    """The transport's pause_writing (its buffer is full: the peer reads too slowly) stops reading on the other
    leg, so nothing piles up in the proxy; resume_writing starts it again."""
    rig = rigs()
    await rig.bind()
    down, up = rig.bridge.downstream, rig.bridge.upstream
    down.pause_writing()  # the sender does not read its deliver_sm
    assert "peer-write" in up.paused and "peer-write" not in down.paused
    down.resume_writing()
    assert "peer-write" not in up.paused
    up.pause_writing()  # the SMSC does not read its submits
    assert "peer-write" in down.paused
    up.resume_writing()
    assert "peer-write" not in down.paused


async def test_a_deliver_sm_with_no_sender_left_is_answered_0x64_and_still_told_to_the_hooks(rigs):
    """The sender went while its SMSC leg is being unbound: a reply that comes meanwhile is answered 0x64 (the
    SMSC delivers it again), and the hooks hear of it, not relayed, so learning learns it all the same."""
    rig = rigs()
    await rig.bind()
    rig.sender.close()
    assert (await rig.smsc.next()).command_id == CommandId.UNBIND
    body = encode_body(CommandId.DELIVER_SM, source_addr="8613800000001", destination_addr="10690000",
                       short_message=b"TD")
    rig.smsc.send(CommandId.DELIVER_SM, 700, body)
    assert (await rig.smsc.next())[:3] == (CommandId.DELIVER_SM_RESP, Status.RX_T_APPN, 700)
    [delivered] = rig.recorder.of(Delivered)
    assert (delivered.at, delivered.account, delivered.pdu.body, delivered.relayed) == (NOW, "acme", body, False)
