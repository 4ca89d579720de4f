"""concat.py: concatenation info from UDH (IEI 0x00 / 0x08) or SAR TLVs; a malformed UDH gives None and is
not a protocol error."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from smpp_helpers import h

from smppguard.smpp.concat import UDHI, Concat, build_udh, concat_info, from_sar, from_udh, split_udh
from smppguard.smpp.fields import Tlv, TlvTag

SAR = [Tlv(TlvTag.SAR_MSG_REF_NUM, h("1234")), Tlv(TlvTag.SAR_TOTAL_SEGMENTS, h("03")),
       Tlv(TlvTag.SAR_SEGMENT_SEQNUM, h("01"))]


def test_concat_udh_iei_00():
    sm = h("05 00 03 2A 02 01") + b"hello"
    assert split_udh(sm, UDHI) == (h("05 00 03 2A 02 01"), b"hello")
    assert concat_info(sm, UDHI, []) == Concat(0x2A, 2, 1)


def test_concat_udh_iei_08():
    sm = h("06 08 04 1234 03 02") + b"hello"
    assert concat_info(sm, UDHI | 0x03, []) == Concat(0x1234, 3, 2)


def test_concat_udh_after_other_element():
    # Port addressing (IEI 0x05, 4 octets) first, then the concatenation element.
    sm = h("0B 05 04 0B84 23F0 00 03 AA 02 02") + b"x"
    assert concat_info(sm, UDHI, []) == Concat(0xAA, 2, 2)


def test_concat_udh_without_concat_element():
    assert concat_info(h("06 05 04 0B84 23F0") + b"x", UDHI, []) is None


def test_concat_no_udhi_bit_ignores_udh_like_bytes():
    sm = h("05 00 03 2A 02 01") + b"hello"
    assert split_udh(sm, 0x00) == (b"", sm)
    assert concat_info(sm, 0x00, []) is None


def test_concat_sar_tlvs():
    assert from_sar(SAR) == Concat(0x1234, 3, 1)
    assert concat_info(b"hello", 0x00, SAR) == Concat(0x1234, 3, 1)


@pytest.mark.parametrize("missing", [TlvTag.SAR_MSG_REF_NUM, TlvTag.SAR_TOTAL_SEGMENTS, TlvTag.SAR_SEGMENT_SEQNUM])
def test_concat_sar_incomplete(missing: int):
    assert from_sar([t for t in SAR if t.tag != missing]) is None


def test_concat_udh_wins_over_sar():
    assert concat_info(h("05 00 03 2A 02 01") + b"x", UDHI, SAR) == Concat(0x2A, 2, 1)


def test_concat_malformed_udh_falls_back_to_sar():
    assert concat_info(h("05 00 03 2A"), UDHI, SAR) == Concat(0x1234, 3, 1)


@pytest.mark.parametrize("sm", [
    h("05 00 03 2A"),  # UDHL runs past the message
    h("05 00 05 2A 02 01") + b"x",  # element length runs past the UDH
    h("00") + b"x",  # empty UDH
    b"",  # no message at all
    h("FF") + b"x" * 10,
    h("05 00 03 2A 00 00") + b"x",  # total 0: ignore the element (3GPP TS 23.040 9.2.3.24.1)
    h("05 00 03 2A 02 00") + b"x",  # seqnum 0
    h("05 00 03 2A 02 03") + b"x",  # seqnum > total
    h("06 08 04 1234 02 03") + b"x",
], ids=["udhl-past-end", "iel-past-end", "udhl-0", "empty", "udhl-ff", "total-0", "seq-0", "seq-gt-total",
        "16bit-seq-gt-total"])
def test_concat_malformed_udh_gives_none(sm: bytes):
    assert concat_info(sm, UDHI, []) is None


def test_concat_malformed_udh_keeps_whole_message_as_payload():
    sm = h("05 00 03 2A")
    assert split_udh(sm, UDHI) == (b"", sm)


@pytest.mark.parametrize("total,seq", [(0, 0), (2, 0), (2, 3)])
def test_concat_sar_out_of_range_gives_none(total: int, seq: int):
    tlvs = [Tlv(TlvTag.SAR_MSG_REF_NUM, h("0001")), Tlv(TlvTag.SAR_TOTAL_SEGMENTS, bytes((total,))),
            Tlv(TlvTag.SAR_SEGMENT_SEQNUM, bytes((seq,)))]
    assert from_sar(tlvs) is None


def test_concat_build_udh_exact_bytes():
    assert build_udh(0x2A, 2, 1) == h("05 00 03 2A 02 01")
    assert build_udh(0x1234, 3, 2, sixteen_bit=True) == h("06 08 04 1234 03 02")


@settings(max_examples=60, deadline=None)
@given(ref=st.integers(0, 0xFFFF), total=st.integers(1, 255), data=st.data(), sixteen_bit=st.booleans(),
       payload=st.binary(max_size=20))
def test_concat_build_udh_round_trip(ref, total, data, sixteen_bit, payload):
    seq = data.draw(st.integers(1, total))
    udh = build_udh(ref, total, seq, sixteen_bit)
    assert split_udh(udh + payload, UDHI) == (udh, payload)
    assert from_udh(udh) == Concat(ref if sixteen_bit else ref & 0xFF, total, seq)


@settings(max_examples=120, deadline=None)
@given(sm=st.binary(max_size=40), esm_class=st.integers(0, 255))
def test_concat_never_raises(sm: bytes, esm_class: int):
    info = concat_info(sm, esm_class, [])
    assert info is None or 1 <= info.seqnum <= info.total
