"""framing.py: PduBuffer splits a byte stream into PDUs however it is chunked, and refuses what cannot be
framed (SMPP-NOTES, Framing: a bad command_length cannot be resynchronised, so the error is fatal)."""

from __future__ import annotations

import pytest
from smpp_helpers import CASE_IDS, PDU_TABLE, Case, drain, h, tr

from smppguard.smpp import MAX_PDU_LEN, NEED_DATA, Pdu, PduBuffer, PduError, Status
from smppguard.smpp.commands import CommandId


@pytest.mark.parametrize("case", PDU_TABLE, ids=CASE_IDS)
def test_framing_each_table_pdu(case: Case):
    tr(case.raw, [case.pdu])


def test_framing_all_table_pdus_back_to_back():
    tr(b"".join(c.raw for c in PDU_TABLE), [c.pdu for c in PDU_TABLE])


def test_framing_pdu_keeps_raw_bytes_and_header():
    case = next(c for c in PDU_TABLE if c.name == "submit_sm_tlvs_vendor")
    buf = PduBuffer()
    buf.receive_data(case.raw)
    pdu = buf.next_pdu()
    assert isinstance(pdu, Pdu)
    assert pdu.raw == case.raw
    assert pdu.command_id == CommandId.SUBMIT_SM
    assert pdu.status == Status.ROK
    assert pdu.sequence == 8
    assert pdu.body == case.raw[16:]


def test_framing_empty_buffer_needs_data():
    buf = PduBuffer()
    assert buf.next_pdu() is NEED_DATA
    buf.receive_data(b"")  # EOF between PDUs is a clean close
    assert buf.next_pdu() is NEED_DATA


def test_framing_unknown_command_id_is_framed():
    # Framing does not judge command_id; the session answers generic_nack RINVCMDID (SMPP-NOTES, Framing).
    raw = h("00000014 00000010 00000000 00000005") + b"abcd"
    tr(raw, [Pdu(0x10, Status.ROK, 5, raw)])


def test_framing_need_data_repr():
    assert repr(NEED_DATA) == "NEED_DATA"


# --- bad command_length: fatal, with RINVCMDLEN and the sequence number ---------------------------------------

def _fatal(data: bytes, max_pdu_len: int = MAX_PDU_LEN, eof: bool = False) -> PduError:
    buf = PduBuffer(max_pdu_len)
    buf.receive_data(data)
    if eof:
        buf.receive_data(b"")
    with pytest.raises(PduError) as info:
        drain(buf)
    assert info.value.fatal
    assert info.value.status == Status.RINVCMDLEN
    return info.value


@pytest.mark.parametrize("length", [0, 1, 15])
def test_framing_length_below_header(length: int):
    e = _fatal(length.to_bytes(4, "big") + h("00000015 00000000 00000007"))
    assert e.sequence == 7


def test_framing_length_above_max_pdu_len():
    e = _fatal((MAX_PDU_LEN + 1).to_bytes(4, "big") + h("00000004 00000000 00000009"))
    assert e.sequence == 9


def test_framing_length_huge():
    e = _fatal(h("FFFFFFFF 00000004 00000000 7FFFFFFF"))
    assert e.sequence == 0x7FFFFFFF


def test_framing_length_at_max_pdu_len_is_accepted():
    body = b"\0" * (MAX_PDU_LEN - 16)
    raw = MAX_PDU_LEN.to_bytes(4, "big") + h("80000004 00000000 00000001") + body
    buf = PduBuffer()
    buf.receive_data(raw[:-1])
    assert buf.next_pdu() is NEED_DATA
    buf.receive_data(raw[-1:])
    pdu = buf.next_pdu()
    assert isinstance(pdu, Pdu) and len(pdu.raw) == MAX_PDU_LEN


def test_framing_custom_max_pdu_len():
    raw = h("00000011 80000004 00000000 00000003") + b"\0"
    e = _fatal(raw, max_pdu_len=16)
    assert e.sequence == 3
    tr(h("00000010 80000004 00000000 00000003"), [Pdu(CommandId.SUBMIT_SM_RESP, Status.ROK, 3,
                                                        h("00000010 80000004 00000000 00000003"))])


def test_framing_bad_length_after_good_pdu():
    good = next(c for c in PDU_TABLE if c.name == "enquire_link")
    buf = PduBuffer()
    buf.receive_data(good.raw + h("00000008 00000015 00000000 00000002"))
    assert buf.next_pdu() == good.pdu
    with pytest.raises(PduError) as info:
        buf.next_pdu()
    assert info.value.fatal and info.value.sequence == 2


# --- EOF inside a PDU ------------------------------------------------------------------------------------------

def test_framing_eof_inside_body():
    case = next(c for c in PDU_TABLE if c.name == "submit_sm_tlvs_vendor")
    e = _fatal(case.raw[:-1], eof=True)
    assert e.sequence == case.sequence


def test_framing_eof_inside_body_without_eof_waits():
    case = next(c for c in PDU_TABLE if c.name == "submit_sm_tlvs_vendor")
    buf = PduBuffer()
    buf.receive_data(case.raw[:20])
    assert buf.next_pdu() is NEED_DATA
    assert buf.buffered == 20


@pytest.mark.parametrize("n", [1, 4, 12, 15])
def test_framing_eof_inside_header(n: int):
    e = _fatal(h("00000010 00000015 00000000 00000007")[:n], eof=True)
    assert e.sequence is None  # the header could not be read


def test_framing_eof_after_complete_pdus_then_partial():
    case = next(c for c in PDU_TABLE if c.name == "unbind")
    buf = PduBuffer()
    buf.receive_data(case.raw + case.raw[:3])
    buf.receive_data(b"")
    assert buf.next_pdu() == case.pdu
    with pytest.raises(PduError) as info:
        buf.next_pdu()
    assert info.value.fatal


def test_framing_errors_say_what_is_wrong():
    e = _fatal(h("00000008 00000015 00000000 00000007"))
    assert str(e) == f"command_length 8 outside [16, {MAX_PDU_LEN}]"
    e = _fatal(h("00000015 00000015"), eof=True)
    assert str(e) == "connection closed inside a PDU header (8 octets)"
    e = _fatal(h("00000015 00000015 00000000 00000001 00"), eof=True)
    assert str(e) == "connection closed inside a PDU (17 of 21 octets)"
