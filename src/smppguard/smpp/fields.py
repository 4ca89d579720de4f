"""Body fields of every SMPP 3.4 PDU: parse and encode, sans I/O.

Rule 1: parse(encode(f)) == f, and encode(parse(b)) == b for any well-formed body b, so optional parameters
(TLVs) are kept raw in wire order, unknown tags included (SMPP-NOTES: "keep unknown TLVs byte for byte").
Rule 2: a malformed body raises `PduError` with the status to answer; nothing else escapes.
Strategy: one schema table of (name, kind, max_octets) per command (SMPP 3.4 chapter 4). C-octet strings
decode as latin-1 so any octet survives; short_message and TLV values stay bytes. A response may end early
(3.4 error responses have no body; smpplib sends a lone NUL): its missing trailing fields are simply absent.
Maximum string sizes are not enforced: that judgement belongs to the SMSC the message is forwarded to.
"""

from __future__ import annotations

import re
import struct
from typing import Any, Mapping, NamedTuple

from .commands import CommandId, is_response
from .errors import PduError
from .status import Status

C, U8, U32, SM, DESTS, UNSUCCESS = "C", "U8", "U32", "SM", "DESTS", "UNSUCCESS"


class Tlv(NamedTuple):
    tag: int
    value: bytes


class SmeDest(NamedTuple):
    """A submit_multi destination with dest_flag 1 (SME address)."""

    ton: int
    npi: int
    address: str


class DistributionList(NamedTuple):
    """A submit_multi destination with dest_flag 2 (distribution list name)."""

    name: str


class UnsuccessSme(NamedTuple):
    """One entry of submit_multi_resp's unsuccess_sme list."""

    ton: int
    npi: int
    address: str
    status: int


class TlvTag:
    """Optional parameter tags smppguard reads (SMPP 3.4 section 5.3.2)."""

    RECEIPTED_MESSAGE_ID = 0x001E
    SAR_MSG_REF_NUM = 0x020C
    SAR_TOTAL_SEGMENTS = 0x020E
    SAR_SEGMENT_SEQNUM = 0x020F
    SC_INTERFACE_VERSION = 0x0210
    NETWORK_ERROR_CODE = 0x0423
    MESSAGE_PAYLOAD = 0x0424
    MESSAGE_STATE = 0x0427


_BIND = (("system_id", C, 16), ("password", C, 9), ("system_type", C, 13), ("interface_version", U8, 1),
         ("addr_ton", U8, 1), ("addr_npi", U8, 1), ("address_range", C, 41))
_SM = (("service_type", C, 6), ("source_addr_ton", U8, 1), ("source_addr_npi", U8, 1), ("source_addr", C, 21),
       ("dest_addr_ton", U8, 1), ("dest_addr_npi", U8, 1), ("destination_addr", C, 21), ("esm_class", U8, 1),
       ("protocol_id", U8, 1), ("priority_flag", U8, 1), ("schedule_delivery_time", C, 17),
       ("validity_period", C, 17), ("registered_delivery", U8, 1), ("replace_if_present_flag", U8, 1),
       ("data_coding", U8, 1), ("sm_default_msg_id", U8, 1), ("short_message", SM, 254))
_MESSAGE_ID = (("message_id", C, 65),)

#: (fields, takes TLVs) per command. TLVs are allowed where 3.4 or 5.0 allows them.
SCHEMAS: dict[int, tuple[tuple[tuple[str, str, int], ...], bool]] = {
    CommandId.BIND_RECEIVER: (_BIND, False),
    CommandId.BIND_TRANSMITTER: (_BIND, False),
    CommandId.BIND_TRANSCEIVER: (_BIND, False),
    CommandId.BIND_RECEIVER_RESP: ((("system_id", C, 16),), True),
    CommandId.BIND_TRANSMITTER_RESP: ((("system_id", C, 16),), True),
    CommandId.BIND_TRANSCEIVER_RESP: ((("system_id", C, 16),), True),
    CommandId.OUTBIND: ((("system_id", C, 16), ("password", C, 9)), False),
    CommandId.UNBIND: ((), False),
    CommandId.UNBIND_RESP: ((), False),
    CommandId.GENERIC_NACK: ((), False),
    CommandId.ENQUIRE_LINK: ((), False),
    CommandId.ENQUIRE_LINK_RESP: ((), False),
    CommandId.SUBMIT_SM: (_SM, True),
    CommandId.SUBMIT_SM_RESP: (_MESSAGE_ID, True),
    CommandId.DELIVER_SM: (_SM, True),
    CommandId.DELIVER_SM_RESP: (_MESSAGE_ID, True),
    CommandId.DATA_SM: ((("service_type", C, 6), ("source_addr_ton", U8, 1), ("source_addr_npi", U8, 1),
                         ("source_addr", C, 65), ("dest_addr_ton", U8, 1), ("dest_addr_npi", U8, 1),
                         ("destination_addr", C, 65), ("esm_class", U8, 1), ("registered_delivery", U8, 1),
                         ("data_coding", U8, 1)), True),
    CommandId.DATA_SM_RESP: (_MESSAGE_ID, True),
    CommandId.SUBMIT_MULTI: ((("service_type", C, 6), ("source_addr_ton", U8, 1), ("source_addr_npi", U8, 1),
                              ("source_addr", C, 21), ("dest_addresses", DESTS, 254), ("esm_class", U8, 1),
                              ("protocol_id", U8, 1), ("priority_flag", U8, 1),
                              ("schedule_delivery_time", C, 17), ("validity_period", C, 17),
                              ("registered_delivery", U8, 1), ("replace_if_present_flag", U8, 1),
                              ("data_coding", U8, 1), ("sm_default_msg_id", U8, 1),
                              ("short_message", SM, 254)), True),
    CommandId.SUBMIT_MULTI_RESP: ((("message_id", C, 65), ("unsuccess_sme", UNSUCCESS, 254)), True),
    CommandId.QUERY_SM: ((("message_id", C, 65), ("source_addr_ton", U8, 1), ("source_addr_npi", U8, 1),
                          ("source_addr", C, 21)), False),
    CommandId.QUERY_SM_RESP: ((("message_id", C, 65), ("final_date", C, 17), ("message_state", U8, 1),
                               ("error_code", U8, 1)), False),
    CommandId.CANCEL_SM: ((("service_type", C, 6), ("message_id", C, 65), ("source_addr_ton", U8, 1),
                           ("source_addr_npi", U8, 1), ("source_addr", C, 21), ("dest_addr_ton", U8, 1),
                           ("dest_addr_npi", U8, 1), ("destination_addr", C, 21)), False),
    CommandId.CANCEL_SM_RESP: ((), False),
    CommandId.REPLACE_SM: ((("message_id", C, 65), ("source_addr_ton", U8, 1), ("source_addr_npi", U8, 1),
                            ("source_addr", C, 21), ("schedule_delivery_time", C, 17),
                            ("validity_period", C, 17), ("registered_delivery", U8, 1),
                            ("sm_default_msg_id", U8, 1), ("short_message", SM, 254)),
                           True),  # 5.0 section 4.5.3: an optional message_payload may replace short_message
    CommandId.REPLACE_SM_RESP: ((), False),
    CommandId.ALERT_NOTIFICATION: ((("source_addr_ton", U8, 1), ("source_addr_npi", U8, 1),
                                    ("source_addr", C, 65), ("esme_addr_ton", U8, 1), ("esme_addr_npi", U8, 1),
                                    ("esme_addr", C, 65)), True),
}

_U32 = struct.Struct(">I")
_TLV_HEAD = struct.Struct(">HH")


def _cstring(body: bytes, pos: int, name: str, sequence: int | None) -> tuple[str, int]:
    end = body.find(b"\0", pos)
    if end < 0:
        raise PduError(f"{name}: C-octet string has no terminating NUL", Status.RINVCMDLEN, sequence)
    return body[pos:end].decode("latin-1"), end + 1


def _u8(body: bytes, pos: int, name: str, sequence: int | None) -> tuple[int, int]:
    if pos >= len(body):
        raise PduError(f"{name}: body ends early", Status.RINVCMDLEN, sequence)
    return body[pos], pos + 1


def parse_tlvs(body: bytes, pos: int, sequence: int | None = None) -> list[Tlv]:
    tlvs = []
    end = len(body)
    while pos < end:
        if pos + 4 > end:
            raise PduError("truncated optional parameter header", Status.RINVOPTPARSTREAM, sequence)
        tag, length = _TLV_HEAD.unpack_from(body, pos)
        pos += 4
        if pos + length > end:
            raise PduError(f"optional parameter 0x{tag:04X} runs past the body", Status.RINVPARLEN, sequence)
        tlvs.append(Tlv(tag, body[pos:pos + length]))
        pos += length
    return tlvs


def parse_body(command_id: int, body: bytes, sequence: int | None = None) -> dict[str, Any]:
    """Parse a body into ``{field: value, ..., "tlvs": [Tlv, ...]}``."""
    try:
        fields, takes_tlvs = SCHEMAS[command_id]
    except KeyError:
        raise PduError(f"unknown command_id 0x{command_id:08X}", Status.RINVCMDID, sequence) from None
    out: dict[str, Any] = {}
    pos = 0
    end = len(body)
    response = is_response(command_id)
    for name, kind, _max in fields:
        if pos == end and response:
            break  # an error response may carry no body, or only part of it
        if kind == C:
            out[name], pos = _cstring(body, pos, name, sequence)
        elif kind == U8:
            out[name], pos = _u8(body, pos, name, sequence)
        elif kind == SM:
            length, pos = _u8(body, pos, "sm_length", sequence)
            if pos + length > end:
                raise PduError(f"sm_length {length} runs past the body", Status.RINVMSGLEN, sequence)
            out[name] = body[pos:pos + length]
            pos += length
        elif kind == DESTS:
            count, pos = _u8(body, pos, "number_of_dests", sequence)
            dests: list[SmeDest | DistributionList] = []
            for _ in range(count):
                flag, pos = _u8(body, pos, "dest_flag", sequence)
                if flag == 1:
                    ton, pos = _u8(body, pos, "dest_addr_ton", sequence)
                    npi, pos = _u8(body, pos, "dest_addr_npi", sequence)
                    addr, pos = _cstring(body, pos, "destination_addr", sequence)
                    dests.append(SmeDest(ton, npi, addr))
                elif flag == 2:
                    dl, pos = _cstring(body, pos, "dl_name", sequence)
                    dests.append(DistributionList(dl))
                else:
                    raise PduError(f"dest_flag {flag} is neither 1 nor 2", Status.RINVDESTFLAG, sequence)
            out[name] = dests
        elif kind == UNSUCCESS:
            count, pos = _u8(body, pos, "no_unsuccess", sequence)
            items = []
            for _ in range(count):
                ton, pos = _u8(body, pos, "dest_addr_ton", sequence)
                npi, pos = _u8(body, pos, "dest_addr_npi", sequence)
                addr, pos = _cstring(body, pos, "destination_addr", sequence)
                if pos + 4 > end:
                    raise PduError("error_status_code runs past the body", Status.RINVCMDLEN, sequence)
                (code,) = _U32.unpack_from(body, pos)
                pos += 4
                items.append(UnsuccessSme(ton, npi, addr, code))
            out[name] = items
    if takes_tlvs:
        out["tlvs"] = parse_tlvs(body, pos, sequence)
    elif pos != end:
        raise PduError(f"{end - pos} unexpected octets after the last field", Status.RINVCMDLEN, sequence)
    else:
        out["tlvs"] = []
    return out


def _encode_cstring(value: str | bytes) -> bytes:
    raw = value.encode("latin-1") if isinstance(value, str) else bytes(value)
    if b"\0" in raw:
        raise ValueError("C-octet string contains NUL")
    return raw + b"\0"


def encode_tlvs(tlvs) -> bytes:
    return b"".join(_TLV_HEAD.pack(tag, len(value)) + bytes(value) for tag, value in tlvs)


def encode_body(command_id: int, values: Mapping[str, Any] | None = None, /, **kw: Any) -> bytes:
    """Encode a body. Missing request fields take 0 / empty; a response stops at its first missing field,
    so ``encode_body(SUBMIT_SM_RESP)`` is the empty body of a 3.4 error response."""
    merged = dict(values or {}, **kw)
    fields, takes_tlvs = SCHEMAS[command_id]
    response = is_response(command_id)
    parts: list[bytes] = []
    for name, kind, _max in fields:
        if name not in merged:
            if response:
                break
            value: Any = {C: "", U8: 0, SM: b"", DESTS: [], UNSUCCESS: []}[kind]
        else:
            value = merged[name]
        if kind == C:
            parts.append(_encode_cstring(value))
        elif kind == U8:
            parts.append(bytes((value,)))
        elif kind == SM:
            value = bytes(value)
            if len(value) > 255:
                raise ValueError("short_message longer than 255 octets: use message_payload")
            parts.append(bytes((len(value),)) + value)
        elif kind == DESTS:
            parts.append(bytes((len(value),)))
            for dest in value:
                if isinstance(dest, DistributionList):
                    parts.append(b"\x02" + _encode_cstring(dest.name))
                else:
                    parts.append(bytes((1, dest.ton, dest.npi)) + _encode_cstring(dest.address))
        elif kind == UNSUCCESS:
            parts.append(bytes((len(value),)))
            for item in value:
                parts.append(bytes((item.ton, item.npi)) + _encode_cstring(item.address)
                             + _U32.pack(item.status))
    tlvs = merged.get("tlvs") or []
    if tlvs and not takes_tlvs:
        raise ValueError(f"command 0x{command_id:08X} takes no optional parameters")
    parts.append(encode_tlvs(tlvs))
    return b"".join(parts)


def tlv_value(tlvs, tag: int) -> bytes | None:
    for t, v in tlvs:
        if t == tag:
            return v
    return None


def tlv_int(tlvs, tag: int) -> int | None:
    value = tlv_value(tlvs, tag)
    return int.from_bytes(value, "big") if value else None


class SubmitView(NamedTuple):
    """The fields of a submit_sm (or deliver_sm) that policy reads, without building the whole field dict."""

    service_type: str
    source_addr_ton: int
    source_addr: str
    dest_addr_ton: int
    destination_addr: str
    esm_class: int
    registered_delivery: int
    data_coding: int
    short_message: bytes
    tlvs: list[Tlv]
    schedule_at: int  # offset of schedule_delivery_time in the body (for rewriting it)


#: submit_sm / deliver_sm up to short_message (SMPP 3.4 section 4.4.1): service_type, then source_addr after its
#: TON and NPI, destination_addr after its TON and NPI, esm_class, protocol_id, priority_flag, the two times,
#: registered_delivery, replace_if_present_flag, data_coding, sm_default_msg_id, sm_length. C-octet strings
#: end at their NUL; one C call finds every field (the `find`s, slices and index checks of this spelled out in
#: Python cost 0.5 us more a message).
_SUBMIT_HEAD = re.compile(rb"([^\0]*)\0..([^\0]*)\0..([^\0]*)\0...[^\0]*\0[^\0]*\0.....", re.S)
_new_tuple = tuple.__new__


def submit_view(body: bytes, sequence: int | None = None, _match=_SUBMIT_HEAD.match) -> SubmitView:
    """Fast path of parse_body for submit_sm / deliver_sm: same errors, fewer objects (SMPP 3.4 4.4.1)."""
    m = _match(body)
    if m is None:
        raise PduError("submit_sm body ends early or a C-octet string has no NUL", Status.RINVCMDLEN, sequence)
    service_type, source, dest = m.groups()
    source_end, dest_end, p = m.end(2), m.end(3), m.end()
    sm_length = body[p - 1]
    if p + sm_length > len(body):
        raise PduError(f"sm_length {sm_length} runs past the body", Status.RINVMSGLEN, sequence)
    return _new_tuple(SubmitView, (
        service_type.decode("latin-1"), body[m.end(1) + 1], source.decode("latin-1"), body[source_end + 1],
        dest.decode("latin-1"), body[dest_end + 1], body[p - 5], body[p - 3], body[p:p + sm_length],
        parse_tlvs(body, p + sm_length, sequence) if p + sm_length < len(body) else [], dest_end + 4))
