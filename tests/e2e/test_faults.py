"""Faults at either end, against an SMSC that shares no code with the proxy (tests/rawsmsc.py).

The sender is a raw socket (tests/helpers.RawPeer), so sequence numbers, pipelining and unanswered requests are
under the test's control. Every wait has a deadline that fails the test: a timeout never counts as success.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import pytest

from helpers import RawPeer, Stack, make_config
from rawsmsc import DELIVER_SM, RESP, deliver_sm_body
from smppguard.smpp.commands import CommandId
from smppguard.smpp.fields import SmeDest, parse_body
from smppguard.smpp.status import Status

A, B, C = "8613800000001", "8613800000002", "8613800000003"
SMSC_FAILURE = 0x400  # vendor-specific: distinct from every status the proxy itself answers


def config(tmp_path=None, policy: str = "", *, window: int = 10, response_timeout: float = 5.0,
           enquire_link_interval: float = 30.0, **tables):
    if tmp_path is not None:
        tables["store"] = {"path": str(tmp_path / "guard.db")}
    upstream = {"window": window, **tables.pop("upstream", {})}
    return make_config(policy, upstream=upstream, session={"response_timeout": response_timeout,
                                                           "enquire_link_interval": enquire_link_interval},
                       **tables)


def read_answers(peer: RawPeer, count: int) -> dict[int, tuple[int, int, bytes]]:
    """`count` responses, by sequence: (command_id, status, body). Requests from the proxy fail the test."""
    out = {}
    while len(out) < count:
        cid, status, seq, body = peer.read_pdu()
        assert cid & RESP, f"expected responses, got request 0x{cid:08X}"
        out[seq] = (cid, status, body)
    return out


def message_id(body: bytes) -> str:
    return body[:body.index(b"\0")].decode()


# --- submit_multi: the SMSC's failures and the proxy's refusals ---------------------------------------------

POLICY = """
[policy]
default_region = "CN"

[rules.quiet_hours]
enabled = false

[rules.frequency]
max = 1
min_interval = "0s"
"""


def test_submit_multi_lists_the_smscs_failures_with_the_proxys_and_counts_only_what_the_smsc_took(
        tmp_path, smsc, peers):
    from smppguard.store import changelog
    from smppguard.store.db import connect

    db = connect(tmp_path / "guard.db")
    changelog.write(db, [changelog.Change("blacklist", "add", int(B))], origin="test")
    db.close()
    smsc.fail_destinations = {C: SMSC_FAILURE}
    with Stack(config(tmp_path, POLICY), store=True, upstream=smsc.address) as stack:
        peer = peers(stack)
        peer.bind()
        dests = [SmeDest(1, 1, a) for a in (A, B, C)]
        peer.request(CommandId.SUBMIT_MULTI, 2, source_addr="ACME", dest_addresses=dests, short_message=b"sale")
        (cid, status, body), = read_answers(peer, 1).values()
        assert (cid, status) == (CommandId.SUBMIT_MULTI_RESP, Status.ROK)
        resp = parse_body(cid, body)
        assert resp["message_id"] == "raw1"
        assert sorted((u.address, u.status) for u in resp["unsuccess_sme"]) == [
            (B, Status.RSUBMITFAIL), (C, SMSC_FAILURE)]
        assert smsc.received[0].destinations == [A, C]  # the blacklisted one never left the proxy
        history = stack.call(lambda: dict(stack.store.screening.index.history))
        assert list(history) == [int(A)]  # the SMSC failed C: its send does not count

        # The cap is 1: A is now refused here, while C, never delivered, may still be sent to.
        smsc.fail_destinations = {}
        peer.request(CommandId.SUBMIT_MULTI, 3, source_addr="ACME", dest_addresses=[dests[0], dests[2]],
                     short_message=b"sale")
        (cid, status, body), = read_answers(peer, 1).values()
        assert [(u.address, u.status) for u in parse_body(cid, body)["unsuccess_sme"]] == [(A, Status.RSUBMITFAIL)]
        assert smsc.received[1].destinations == [C]
        stack.run(stack.store.writer.flush())
    db = connect(tmp_path / "guard.db")
    try:
        assert db.execute("SELECT number FROM send_history ORDER BY number").fetchall() == [(int(A),), (int(C),)]
    finally:
        db.close()


def test_a_burst_of_throttled_answers_reaches_the_sender_and_counts_no_send(tmp_path, smsc, peers):
    smsc.throttle_next = 3
    with Stack(config(tmp_path, POLICY), store=True, upstream=smsc.address) as stack:
        peer = peers(stack)
        peer.bind()
        for seq, dest in enumerate((A, B, C), 2):
            peer.request(CommandId.SUBMIT_SM, seq, source_addr="ACME", destination_addr=dest, short_message=b"x")
        answers = read_answers(peer, 3)
        assert {seq: a[:2] for seq, a in answers.items()} == {
            seq: (CommandId.SUBMIT_SM_RESP, Status.RTHROTTLED) for seq in (2, 3, 4)}
        assert stack.call(lambda: dict(stack.store.screening.index.history)) == {}
        # The sender retries (0x58 means "later"): with a cap of 1, the retries pass, since nothing counted.
        for seq, dest in enumerate((A, B, C), 5):
            peer.request(CommandId.SUBMIT_SM, seq, source_addr="ACME", destination_addr=dest, short_message=b"x")
        assert {a[1] for a in read_answers(peer, 3).values()} == {Status.ROK}


def test_answers_that_come_out_of_order_go_back_to_the_right_requests(smsc, peers):
    smsc.answer = "hold"
    with Stack(config(), upstream=smsc.address) as stack:
        peer = peers(stack)
        peer.bind()
        dests = {seq: f"86138000000{seq:02d}" for seq in range(10, 15)}
        for seq, dest in dests.items():
            peer.request(CommandId.SUBMIT_SM, seq, destination_addr=dest, short_message=b"x")
        smsc.wait(lambda: len(smsc.held) == 5, what="5 submits")
        assert smsc.release() == 5  # newest first
        answers = read_answers(peer, 5)
        ids = {req.destinations[0]: f"raw{5 - i}" for i, req in enumerate(smsc.received)}  # released in reverse
        assert {seq: message_id(body) for seq, (_c, _s, body) in answers.items()} == {
            seq: ids[dest] for seq, dest in dests.items()}


def test_a_submit_the_smsc_never_answers_is_answered_rsyserr(smsc, peers):
    smsc.answer = "never"
    with Stack(config(response_timeout=0.3), upstream=smsc.address) as stack:
        peer = peers(stack)
        peer.bind()
        peer.request(CommandId.SUBMIT_SM, 7, destination_addr=A, short_message=b"x")
        assert peer.read_pdu()[:3] == (CommandId.SUBMIT_SM_RESP, Status.RSYSERR, 7)


# --- links: enquire_link and the number of connections ------------------------------------------------------

def answer_enquire_links_until_closed(peer: RawPeer, timeout: float) -> float:
    """Answer the proxy's enquire_links until it closes the connection; returns when (fails at `timeout`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            cid, _status, seq, _body = peer.read_pdu()
        except ConnectionError:
            return time.monotonic()
        except socket.timeout:
            continue
        if cid == CommandId.ENQUIRE_LINK:
            peer.send(bytes.fromhex("00000010 80000015 00000000") + seq.to_bytes(4, "big"))
        elif cid == CommandId.UNBIND:
            peer.send(bytes.fromhex("00000010 80000006 00000000") + seq.to_bytes(4, "big"))
    raise AssertionError(f"the proxy did not close the sender's connection within {timeout} s")


def test_an_smsc_that_stops_answering_enquire_link_is_dropped_and_the_sender_told(smsc, peers):
    smsc.answer_enquire_link = False
    with Stack(config(enquire_link_interval=0.2, response_timeout=0.5), upstream=smsc.address) as stack:
        peer = peers(stack, timeout=0.5)
        peer.bind()
        conn = smsc.bound()
        smsc.wait(lambda: smsc.enquire_links >= 1, what="enquire_link from the proxy")
        answer_enquire_links_until_closed(peer, timeout=5.0)
        assert conn.closed.wait(2.0), "the proxy kept the silent SMSC's connection open"


def test_a_sender_that_stops_answering_enquire_link_is_dropped_and_unbound_upstream(smsc, peers):
    with Stack(config(enquire_link_interval=0.2, response_timeout=0.5), upstream=smsc.address) as stack:
        peer = peers(stack)
        peer.bind()
        assert peer.read_pdu()[0] == CommandId.ENQUIRE_LINK  # and never answered
        assert peer.closed_by_peer(timeout=3.0)
        smsc.wait(lambda: smsc.unbinds, what="unbind from the proxy")


def test_max_connections_refuses_the_one_too_many_and_keeps_the_others(smsc, peers):
    with Stack(config(listen={"max_connections": 2}), upstream=smsc.address) as stack:
        first, second = peers(stack), peers(stack)
        first.bind(system_id="one")
        second.bind(system_id="two")
        third = peers(stack)
        assert third.closed_by_peer(timeout=2.0)
        for seq, peer in enumerate((first, second), 5):
            peer.send(bytes.fromhex("00000010 00000015 00000000") + seq.to_bytes(4, "big"))
            assert peer.read_pdu()[:3] == (CommandId.ENQUIRE_LINK_RESP, Status.ROK, seq)
        second.close()  # a slot frees: a new sender gets in
        smsc.wait(lambda: sum(1 for c in smsc.conns if c.closed.is_set()) == 1, what="second's upstream closed")
        fourth = peers(stack)
        fourth.bind(system_id="four")


# --- deliver_sm going down ----------------------------------------------------------------------------------

def test_deliver_sm_waits_for_a_slot_in_the_senders_window(smsc, peers):
    with Stack(config(window=1), upstream=smsc.address) as stack:
        peer = peers(stack)
        peer.bind()
        conn = smsc.bound()
        sent = [conn.request(DELIVER_SM, deliver_sm_body(A, "10690000", f"mo{i}".encode())) for i in range(3)]
        got = []
        for i in range(3):
            cid, _status, seq, body = peer.read_pdu()
            assert cid == CommandId.DELIVER_SM
            got.append(parse_body(cid, body)["short_message"])
            if i < 2:  # the window (1) is full until this one is answered: nothing more comes meanwhile
                peer.sock.settimeout(0.5)
                with pytest.raises(socket.timeout):
                    peer.read_pdu()
                peer.sock.settimeout(5.0)
            peer.send(bytes.fromhex("00000011 80000005 00000000") + seq.to_bytes(4, "big") + b"\0")
        assert got == [b"mo0", b"mo1", b"mo2"]
        smsc.wait(lambda: all(s in smsc.answers for s in sent), what="3 deliver_sm_resp")
        assert [smsc.answers[s] for s in sent] == [(DELIVER_SM | RESP, Status.ROK)] * 3


def test_a_deliver_sm_written_with_the_bind_response_reaches_the_sender(smsc, peers):
    """The SMSC hands over what it held for the account in the very write that carries bind_resp: the
    deliver_sm is relayed after the sender's bind_resp, not refused 0x04 for coming before the bound state."""
    smsc.deliver_on_bind = [deliver_sm_body(A, "10690000", b"held MO")]
    with Stack(config(), upstream=smsc.address) as stack:
        peer = peers(stack)
        peer.bind()  # reads bind_resp ROK: the deliver_sm comes after it
        cid, _status, seq, body = peer.read_pdu()
        assert cid == CommandId.DELIVER_SM and parse_body(cid, body)["short_message"] == b"held MO"
        peer.send(bytes.fromhex("00000011 80000005 00000000") + seq.to_bytes(4, "big") + b"\0")
        (sent,) = smsc.delivered_on_bind
        assert smsc.wait(lambda: smsc.answers.get(sent), what="deliver_sm_resp") == (DELIVER_SM | RESP, Status.ROK)


def test_a_deliver_sm_the_sender_never_answers_is_answered_temporary_app_error(smsc, peers):
    with Stack(config(response_timeout=0.3), upstream=smsc.address) as stack:
        peer = peers(stack)
        peer.bind()
        seq = smsc.bound().request(DELIVER_SM, deliver_sm_body(A, "10690000", b"T"))
        assert peer.read_pdu()[0] == CommandId.DELIVER_SM  # and left unanswered
        # RX_T_APPN asks the SMSC to deliver it again later (SMPP 3.4 section 5.1.3), not 0x08
        assert smsc.wait(lambda: smsc.answers.get(seq), what="deliver_sm_resp") == (DELIVER_SM | RESP,
                                                                                      Status.RX_T_APPN)


# --- max_tps: every kind of submit waits its turn ----------------------------------------------------------

@pytest.mark.parametrize("command_id", [CommandId.SUBMIT_SM, CommandId.DATA_SM, CommandId.SUBMIT_MULTI])
def test_max_tps_spaces_every_kind_of_submit(smsc, peers, command_id):
    with Stack(config(upstream={"max_tps": 10.0}), upstream=smsc.address) as stack:
        peer = peers(stack)
        peer.bind()
        for seq in range(2, 17):  # 15: a burst of 10 (one second's worth), then 5 more at 10/s
            if command_id == CommandId.SUBMIT_MULTI:
                peer.request(command_id, seq, dest_addresses=[SmeDest(1, 1, A)], short_message=b"x")
            elif command_id == CommandId.DATA_SM:
                peer.request(command_id, seq, destination_addr=A, tlvs=[(0x0424, b"x")])
            else:
                peer.request(command_id, seq, destination_addr=A, short_message=b"x")
        assert {a[1] for a in read_answers(peer, 15).values()} == {Status.ROK}
        times = [r.at for r in smsc.received]
        assert len(times) == 15
        assert times[-1] - times[0] >= 0.4, f"15 {command_id.name} in {times[-1] - times[0]:.2f} s at 10/s"


# --- stopping: unbind both legs, answer what is in flight ---------------------------------------------------

def test_stop_answers_0x08_for_what_the_smsc_does_not_answer_within_the_grace_and_ends(smsc, peers):
    """The SMSC never answers: after the grace each request in flight is answered 0x08 (the sender will send it
    again), the sender is unbound, and the stop ends."""
    smsc.answer = "hold"
    cfg = make_config(session={"response_timeout": 60.0, "enquire_link_interval": 30.0})  # only the grace ends it
    with Stack(cfg, upstream=smsc.address) as stack:
        peer = submits_in_flight(stack, peers, smsc, 3)
        started = time.monotonic()
        with stopping(stack, grace=1.0):
            answers = read_answers(peer, 3)
            assert {seq: a[1] for seq, a in answers.items()} == {seq: Status.RSYSERR for seq in range(2, 5)}
            assert time.monotonic() - started >= 0.9  # not before the grace ends
            unbound_by_the_proxy(peer)


def submits_in_flight(stack: Stack, peers, smsc, n: int) -> RawPeer:
    """A sender bound with `n` submit_sm (sequences 2...) sent on, all of them at the SMSC."""
    peer = peers(stack)
    peer.bind()
    for seq in range(2, 2 + n):
        peer.request(CommandId.SUBMIT_SM, seq, destination_addr=A, short_message=b"x")
    smsc.wait(lambda: len(smsc.received) == n, what=f"{n} submits")
    return peer


@contextlib.contextmanager
def stopping(stack: Stack, grace: float):
    """stack.proxy.stop(grace) running on another thread for the block; it must have ended after it."""
    stopper = threading.Thread(target=stack.run, args=(stack.proxy.stop(grace=grace),))
    stopper.start()
    try:
        yield
    finally:
        stopper.join(10)
    assert not stopper.is_alive()


def unbound_by_the_proxy(peer: RawPeer) -> None:
    """The proxy sends the sender an unbind; answered, it closes the connection."""
    cid, _status, seq, _body = peer.read_pdu()
    assert cid == CommandId.UNBIND
    peer.send(bytes.fromhex("00000010 80000006 00000000") + seq.to_bytes(4, "big"))
    assert peer.closed_by_peer(timeout=3.0)


def test_stop_answers_in_flight_requests_with_the_smscs_answers_then_unbinds_both_legs(smsc, peers):
    smsc.delay = 0.5
    with Stack(config(), upstream=smsc.address) as stack:
        peer = submits_in_flight(stack, peers, smsc, 5)
        with stopping(stack, grace=5.0):
            answers = read_answers(peer, 5)
            assert {seq: (a[1], message_id(a[2])[:3]) for seq, a in answers.items()} == {
                seq: (Status.ROK, "raw") for seq in range(2, 7)}  # the SMSC's answers, not 0x08
            unbound_by_the_proxy(peer)
            smsc.wait(lambda: smsc.unbinds, what="unbind from the proxy")
