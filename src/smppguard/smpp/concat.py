"""Concatenation info for long messages: UDH (IEI 0x00 8-bit ref, IEI 0x08 16-bit ref) or SAR TLVs.

Rule: a malformed UDH is not a protocol error (the SMSC decides); it yields no concatenation info and the whole
short_message is treated as the payload. UDH is present when esm_class has bit 0x40 (UDHI) set (SMPP 3.4
section 5.2.12); SAR parameters are 0x020C / 0x020E / 0x020F (section 5.3.2.22-24).
"""

from __future__ import annotations

from typing import NamedTuple

from .fields import TlvTag, tlv_int

UDHI = 0x40


class Concat(NamedTuple):
    reference: int
    total: int
    seqnum: int


def split_udh(short_message: bytes, esm_class: int) -> tuple[bytes, bytes]:
    """(udh, payload). udh is b"" when there is none or it is malformed."""
    if not esm_class & UDHI or not short_message:
        return b"", short_message
    udhl = short_message[0]
    if udhl + 1 > len(short_message):
        return b"", short_message
    return short_message[: udhl + 1], short_message[udhl + 1:]


def _plausible(total: int, seqnum: int) -> bool:
    # 3GPP TS 23.040 section 9.2.3.24.1: total 0, seqnum 0 or seqnum > total means "ignore the element";
    # SMPP 3.4 sections 5.3.2.23-24 give the SAR counts the range 1-255.
    return 1 <= seqnum <= total


def from_udh(udh: bytes) -> Concat | None:
    pos, end = 1, len(udh)
    while pos + 2 <= end:
        iei, iel = udh[pos], udh[pos + 1]
        data = udh[pos + 2: pos + 2 + iel]
        if len(data) != iel:
            return None
        if iei == 0x00 and iel == 3 and _plausible(data[1], data[2]):
            return Concat(data[0], data[1], data[2])
        if iei == 0x08 and iel == 4 and _plausible(data[2], data[3]):
            return Concat(int.from_bytes(data[:2], "big"), data[2], data[3])
        pos += 2 + iel
    return None


_SAR_REF, _SAR_TOTAL, _SAR_SEQ = (int(t) for t in (TlvTag.SAR_MSG_REF_NUM, TlvTag.SAR_TOTAL_SEGMENTS,
                                                    TlvTag.SAR_SEGMENT_SEQNUM))


def from_sar(tlvs) -> Concat | None:
    if not tlvs:  # most submits carry no TLV: asked of every one
        return None
    ref = tlv_int(tlvs, _SAR_REF)
    total = tlv_int(tlvs, _SAR_TOTAL)
    seq = tlv_int(tlvs, _SAR_SEQ)
    if ref is None or total is None or seq is None or not _plausible(total, seq):
        return None
    return Concat(ref, total, seq)


def concat_info(short_message: bytes, esm_class: int, tlvs) -> Concat | None:
    udh, _ = split_udh(short_message, esm_class)
    return (from_udh(udh) if udh else None) or from_sar(tlvs)


def build_udh(reference: int, total: int, seqnum: int, sixteen_bit: bool = False) -> bytes:
    if sixteen_bit:
        return bytes((6, 0x08, 4)) + reference.to_bytes(2, "big") + bytes((total, seqnum))
    return bytes((5, 0x00, 3, reference & 0xFF, total, seqnum))
