"""Malformed input from a sender: the right answer, and the proxy keeps serving everyone else."""

from __future__ import annotations

import struct

import pytest

from helpers import Stack, raw_socket, smpplib_client
from smppguard.smpp.commands import CommandId
from smppguard.smpp.fields import encode_body
from smppguard.smpp.framing import MAX_PDU_LEN
from smppguard.smpp.pdu import build
from smppguard.smpp.status import Status


@pytest.fixture(scope="module")
def stack():
    with Stack() as s:
        yield s


def bind_raw(peer, seq=1):
    peer.send(build(CommandId.BIND_TRANSCEIVER, seq, encode_body(CommandId.BIND_TRANSCEIVER, system_id="acme",
                                                                password="pw", interface_version=0x34)))
    cid, status, rseq, _ = peer.read_pdu()
    assert (cid, status, rseq) == (CommandId.BIND_TRANSCEIVER_RESP, Status.ROK, seq)


def assert_still_serving(stack):
    client = smpplib_client(stack.address)
    try:
        assert client.bind_transmitter(system_id="other", password="pw").status == Status.ROK
    finally:
        client.disconnect()


def test_length_below_header_gets_generic_nack_and_close(stack):
    peer = raw_socket(stack.address)
    try:
        peer.send(struct.pack(">IIII", 8, CommandId.ENQUIRE_LINK, 0, 7))
        cid, status, seq, body = peer.read_pdu()
        assert (cid, status, seq) == (CommandId.GENERIC_NACK, Status.RINVCMDLEN, 7)
        assert peer.closed_by_peer()
    finally:
        peer.close()
    assert_still_serving(stack)


def test_length_over_the_limit_gets_generic_nack_and_close(stack):
    peer = raw_socket(stack.address)
    try:
        bind_raw(peer)
        peer.send(struct.pack(">IIII", MAX_PDU_LEN + 1, CommandId.SUBMIT_SM, 0, 9))
        cid, status, seq, _ = peer.read_pdu()
        assert (cid, status, seq) == (CommandId.GENERIC_NACK, Status.RINVCMDLEN, 9)
        assert peer.closed_by_peer()
    finally:
        peer.close()
    assert_still_serving(stack)


def test_unknown_command_id_gets_generic_nack_invcmdid(stack):
    peer = raw_socket(stack.address)
    try:
        bind_raw(peer)
        peer.send(build(0x00000077, 5))
        assert peer.read_pdu()[:3] == (CommandId.GENERIC_NACK, Status.RINVCMDID, 5)
        peer.send(build(CommandId.ENQUIRE_LINK, 6))  # the session goes on
        assert peer.read_pdu()[:3] == (CommandId.ENQUIRE_LINK_RESP, Status.ROK, 6)
    finally:
        peer.close()


def test_submit_before_bind_gets_invbndsts(stack):
    peer = raw_socket(stack.address)
    try:
        peer.send(build(CommandId.SUBMIT_SM, 3, encode_body(CommandId.SUBMIT_SM, destination_addr="1")))
        assert peer.read_pdu()[:3] == (CommandId.SUBMIT_SM_RESP, Status.RINVBNDSTS, 3)
        bind_raw(peer, seq=4)  # and a bind still works afterwards
    finally:
        peer.close()


def test_second_bind_gets_alybnd(stack):
    peer = raw_socket(stack.address)
    try:
        bind_raw(peer)
        peer.send(build(CommandId.BIND_TRANSMITTER, 2, encode_body(CommandId.BIND_TRANSMITTER, system_id="a")))
        assert peer.read_pdu()[:3] == (CommandId.BIND_TRANSMITTER_RESP, Status.RALYBND, 2)
    finally:
        peer.close()


def test_deliver_sm_from_a_sender_gets_invbndsts(stack):
    peer = raw_socket(stack.address)
    try:
        bind_raw(peer)
        peer.send(build(CommandId.DELIVER_SM, 8, encode_body(CommandId.DELIVER_SM, destination_addr="1")))
        assert peer.read_pdu()[:3] == (CommandId.DELIVER_SM_RESP, Status.RINVBNDSTS, 8)
    finally:
        peer.close()


def test_truncated_body_at_eof_does_not_disturb_others(stack):
    peer = raw_socket(stack.address)
    try:
        bind_raw(peer)
        peer.send(struct.pack(">IIII", 60, CommandId.SUBMIT_SM, 0, 11) + b"\0\x01\x01ACME\0")  # 60 promised
        peer.sock.shutdown(1)  # EOF inside the PDU
        cid, status, seq, _ = peer.read_pdu()
        assert (cid, status, seq) == (CommandId.GENERIC_NACK, Status.RINVCMDLEN, 11)
    finally:
        peer.close()
    assert_still_serving(stack)


def test_malformed_bind_body_is_refused(stack):
    peer = raw_socket(stack.address)
    try:
        peer.send(build(CommandId.BIND_TRANSMITTER, 2, b"acme-without-nul"))
        cid, status, seq, _ = peer.read_pdu()
        assert (cid, seq) == (CommandId.BIND_TRANSMITTER_RESP, 2)
        assert status == Status.RINVCMDLEN
    finally:
        peer.close()
    assert_still_serving(stack)


def test_byte_by_byte_sender_is_served(stack):
    peer = raw_socket(stack.address)
    try:
        data = build(CommandId.BIND_TRANSMITTER, 1, encode_body(CommandId.BIND_TRANSMITTER, system_id="slow"))
        for i in range(len(data)):
            peer.send(data[i:i + 1])
        assert peer.read_pdu()[:3] == (CommandId.BIND_TRANSMITTER_RESP, Status.ROK, 1)
    finally:
        peer.close()


@pytest.mark.parametrize("version", [0x34, 0x50])
def test_bind_with_interface_version_is_forwarded_as_sent(stack, version):
    peer = raw_socket(stack.address)
    try:
        body = encode_body(CommandId.BIND_TRANSCEIVER, system_id=f"v{version:x}", password="pw",
                           system_type="VMA", interface_version=version, addr_ton=1, addr_npi=1,
                           address_range="^86")
        peer.send(build(CommandId.BIND_TRANSCEIVER, 1, body))
        cid, status, seq, resp = peer.read_pdu()
        assert (cid, status, seq) == (CommandId.BIND_TRANSCEIVER_RESP, Status.ROK, 1)
        assert resp.startswith(b"smppguard-sim\0")
        upstream = [p for p in stack.sim.binds if p.body == body]
        assert len(upstream) == 1  # the SMSC got the sender's bind byte for byte (only the sequence differs)
    finally:
        peer.close()
