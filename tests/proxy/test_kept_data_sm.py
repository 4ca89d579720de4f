"""A data_sm from the SMSC kept for a sender with no receiver bound is kept as a deliver_sm (most legacy
senders take no data_sm): the same addresses, esm_class and coding; its payload in short_message when it fits
(254 octets), else in message_payload; its other TLVs kept."""

from __future__ import annotations

from smppguard.proxy.holds import _as_deliver_sm
from smppguard.smpp import CommandId
from smppguard.smpp.fields import Tlv, TlvTag, encode_body, parse_body, tlv_value
from smppguard.smpp.pdu import build, from_bytes

SAR_REF = Tlv(TlvTag.SAR_MSG_REF_NUM, b"\x00\x07")


def kept(*tlvs: Tlv) -> dict:
    body = encode_body(CommandId.DATA_SM, source_addr="8613800000009", destination_addr="ACME", data_coding=8,
                       tlvs=list(tlvs))
    return parse_body(CommandId.DELIVER_SM, _as_deliver_sm(from_bytes(build(CommandId.DATA_SM, 3, body))))


def test_a_payload_that_fits_goes_in_short_message():
    got = kept(Tlv(TlvTag.MESSAGE_PAYLOAD, b"\x00h\x00i"), SAR_REF)
    assert (got["source_addr"], got["destination_addr"], got["data_coding"]) == ("8613800000009", "ACME", 8)
    assert got["short_message"] == b"\x00h\x00i"
    assert [(t[0], t[1]) for t in got["tlvs"]] == [(SAR_REF[0], SAR_REF[1])]


def test_a_payload_too_long_for_short_message_stays_in_message_payload():
    long = b"x" * 255
    got = kept(Tlv(TlvTag.MESSAGE_PAYLOAD, long))
    assert got["short_message"] == b"" and tlv_value(got["tlvs"], TlvTag.MESSAGE_PAYLOAD) == long


def test_a_data_sm_without_a_payload_is_kept_empty():
    got = kept()
    assert got["short_message"] == b"" and got["tlvs"] == []
