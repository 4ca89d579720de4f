"""The codec's fuzz invariants (h11's): arbitrary bytes from a peer raise only `PduError`, never anything else
(errors.py: "anything else escaping the codec is a bug"); whatever parses re-encodes to the same bytes; and
receipt parsing, which sees any text a peer sends, never raises."""

from __future__ import annotations

import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from smpp_helpers import PDU_TABLE

from smppguard.smpp import NEED_DATA, Pdu, PduBuffer, PduError
from smppguard.smpp.commands import CommandId
from smppguard.smpp.fields import SCHEMAS, Tlv, TlvTag, encode_body, parse_body
from smppguard.smpp.receipt import parse_receipt, parse_text, same_message_id

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

command_ids = st.one_of(st.sampled_from(sorted(SCHEMAS)), st.integers(0, 0xFFFFFFFF))


@st.composite
def framed(draw) -> bytes:
    """A header with a consistent length (mostly) and a body that is random, a mutated table body, or the
    pieces of real bodies, so parse_body gets past its first field often enough to matter."""
    command_id = draw(command_ids)
    body = draw(st.one_of(
        st.binary(max_size=64),
        st.sampled_from(PDU_TABLE).flatmap(
            lambda c: st.tuples(st.integers(0, len(c.raw) - 16), st.binary(max_size=8)).map(
                lambda t: c.raw[16:16 + t[0]] + t[1])),
    ))
    length = 16 + len(body)
    if draw(st.integers(0, 9)) == 0:
        length = draw(st.integers(0, 0xFFFFFFFF))
    return struct.pack(">IIII", length, command_id, draw(st.integers(0, 0xFFFFFFFF)),
                       draw(st.integers(0, 0xFFFFFFFF))) + body


streams = st.one_of(st.binary(max_size=200), st.lists(framed(), max_size=4).map(b"".join))


def _feed(stream: bytes, cuts: list[int]) -> list[Pdu]:
    """Feed `stream` cut at `cuts`, then EOF; collect PDUs until the buffer waits or raises PduError."""
    buf = PduBuffer()
    pdus: list[Pdu] = []
    bounds = sorted({0, len(stream), *(c % (len(stream) + 1) for c in cuts)})
    try:
        for lo, hi in zip(bounds, bounds[1:], strict=False):
            buf.receive_data(stream[lo:hi])
            while (pdu := buf.next_pdu()) is not NEED_DATA:
                pdus.append(pdu)
        buf.receive_data(b"")
        while (pdu := buf.next_pdu()) is not NEED_DATA:
            pdus.append(pdu)
    except PduError as e:
        assert e.status  # a status hint to answer with, never ROK
    return pdus


@FUZZ
@given(stream=streams, cuts=st.lists(st.integers(0, 1000), max_size=6))
def test_fuzz_arbitrary_bytes_raise_only_pdu_error(stream: bytes, cuts: list[int]):
    for pdu in _feed(stream, cuts):
        assert len(pdu.raw) >= 16
        try:
            fields = parse_body(pdu.command_id, pdu.body, pdu.sequence)
        except PduError as e:
            assert e.status
            assert e.sequence == pdu.sequence
            continue
        # fields.py Rule 1: whatever parses re-encodes to the very same bytes.
        assert encode_body(pdu.command_id, fields) == pdu.body


@FUZZ
@given(stream=streams, cuts=st.lists(st.integers(0, 1000), max_size=6))
def test_fuzz_chunking_does_not_change_pdus(stream: bytes, cuts: list[int]):
    assert _feed(stream, cuts) == _feed(stream, [])


@FUZZ
@given(command_id=st.sampled_from(sorted(SCHEMAS)), body=st.binary(max_size=300))
def test_fuzz_parse_body_raises_only_pdu_error(command_id: int, body: bytes):
    try:
        fields = parse_body(command_id, body, 1)
    except PduError:
        return
    assert encode_body(command_id, fields) == body


# --- receipts: any text a peer sends -----------------------------------------------------------------------------

receipt_words = st.sampled_from(["id:", "ID:", "sub:", "dlvrd:", "submit date:", "done date:", "stat:", "Stat :",
                                 "err:", "text:", "Text:", " ", "DELIVRD", "1f", "31", "MK:0001", ":", "\0"])
receipt_texts = st.one_of(st.text(max_size=120), st.lists(receipt_words, max_size=20).map("".join))
receipt_tlvs = st.lists(st.builds(Tlv, st.sampled_from([TlvTag.RECEIPTED_MESSAGE_ID, TlvTag.MESSAGE_STATE,
                                                        TlvTag.NETWORK_ERROR_CODE, 0x1401]),
                                  st.binary(max_size=10)), max_size=3)


@FUZZ
@given(text=receipt_texts)
def test_fuzz_receipt_parse_text_never_raises(text: str):
    out = parse_text(text)
    assert out is None or ("id" in out and "stat" in out)


@FUZZ
@given(text=receipt_texts, raw=st.binary(max_size=160), tlvs=receipt_tlvs)
def test_fuzz_receipt_parse_receipt_never_raises(text: str, raw: bytes, tlvs: list[Tlv]):
    parse_receipt(raw, tlvs)
    parse_receipt(text.encode("latin-1", "replace"), tlvs)


@FUZZ
@given(a=st.text(max_size=12), b=st.text(max_size=12))
def test_fuzz_receipt_same_message_id_never_raises_and_is_symmetric(a: str, b: str):
    assert same_message_id(a, b) == same_message_id(b, a)
    if a.strip():
        assert same_message_id(a, a)


def test_fuzz_corpus_table_is_parseable():
    # The mutation source above is only useful if the untouched table bodies parse.
    for case in PDU_TABLE:
        assert encode_body(case.command_id, parse_body(case.command_id, case.raw[16:])) == case.raw[16:]
    assert CommandId.SUBMIT_SM in SCHEMAS
