"""Shared by the smpp/ tests: `tr()` (the h11 tests/helpers idea), the one table of PDUs with their exact wire
bytes, and Hypothesis strategies for field values.

The wire bytes in `PDU_TABLE` are written by hand from the SMPP 3.4 layouts (chapter 4: header 3.2, then
the mandatory fields in order, then TLVs as tag/length/value), never produced by `encode_body`, so the encode
and decode tests check the codec against the spec rather than against itself. Each entry's comment counts the
body octets so the command_length can be checked by eye.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from hypothesis import strategies as st

from smppguard.smpp import NEED_DATA, Pdu, PduBuffer
from smppguard.smpp.commands import CommandId, is_response
from smppguard.smpp.fields import DESTS, SCHEMAS, SM, U8, UNSUCCESS, C, DistributionList, SmeDest, Tlv, UnsuccessSme
from smppguard.smpp.status import Status

h = bytes.fromhex  # header and binary fields as spaced hex: "length command_id status sequence"


def drain(buf: PduBuffer) -> list[Pdu]:
    out = []
    while (pdu := buf.next_pdu()) is not NEED_DATA:
        out.append(pdu)
    return out


#: The start of a following PDU (an enquire_link header cut short), fed after the data under test.
TRAILING = h("00000010 00000015 00")


def tr(data: bytes, expected: list[Pdu], trailing: bytes = TRAILING) -> None:
    """Feed `data` whole, byte by byte, and followed by the first bytes of another PDU; each way must yield
    exactly `expected`, leave nothing (or just the trailing bytes) buffered, and end cleanly at EOF."""
    # Whole, then EOF.
    buf = PduBuffer()
    buf.receive_data(data)
    assert drain(buf) == expected
    assert buf.buffered == 0
    buf.receive_data(b"")
    assert buf.next_pdu() is NEED_DATA

    # Byte by byte: a PDU appears exactly when its last byte arrives.
    buf = PduBuffer()
    out: list[Pdu] = []
    for i in range(len(data)):
        buf.receive_data(data[i:i + 1])
        out.extend(drain(buf))
    assert out == expected
    assert buf.buffered == 0

    # With trailing bytes of the next PDU in the same chunk: they stay buffered, waiting for the rest.
    buf = PduBuffer()
    buf.receive_data(data + trailing)
    assert drain(buf) == expected
    assert buf.buffered == len(trailing)
    assert buf.next_pdu() is NEED_DATA


class Case(NamedTuple):
    name: str
    command_id: CommandId
    sequence: int
    status: Status
    fields: dict[str, Any]  # as parse_body returns them, "tlvs" aside (absent means [])
    raw: bytes  # the whole PDU

    @property
    def pdu(self) -> Pdu:
        return Pdu(self.command_id, self.status, self.sequence, self.raw)


def _sm(**over: Any) -> dict[str, Any]:
    """submit_sm / deliver_sm fields, all of them (parse_body returns every mandatory field)."""
    f = dict(service_type="", source_addr_ton=0, source_addr_npi=0, source_addr="", dest_addr_ton=0,
             dest_addr_npi=0, destination_addr="", esm_class=0, protocol_id=0, priority_flag=0,
             schedule_delivery_time="", validity_period="", registered_delivery=0, replace_if_present_flag=0,
             data_coding=0, sm_default_msg_id=0, short_message=b"")
    f.update(over)
    return f


ROK = Status.ROK
B = CommandId

PDU_TABLE: list[Case] = [
    # --- session management (3.4 section 4.1) ---------------------------------------------------------------
    Case("bind_transmitter", B.BIND_TRANSMITTER, 1, ROK,
         dict(system_id="smppclient1", password="secret08", system_type="SUBMIT1", interface_version=0x34,
              addr_ton=1, addr_npi=1, address_range=""),
         # body 12 + 9 + 8 + 3 + 1 = 33 -> length 49
         h("00000031 00000002 00000000 00000001") + b"smppclient1\0secret08\0SUBMIT1\0" + h("34 01 01") + b"\0"),
    Case("bind_receiver", B.BIND_RECEIVER, 2, ROK,
         dict(system_id="rx", password="pw", system_type="", interface_version=0x34, addr_ton=0, addr_npi=0,
              address_range="^44"),
         # body 3 + 3 + 1 + 3 + 4 = 14 -> 30
         h("0000001E 00000001 00000000 00000002") + b"rx\0pw\0\0" + h("34 00 00") + b"^44\0"),
    Case("bind_transceiver_v50", B.BIND_TRANSCEIVER, 3, ROK,  # node-smpp binds with interface_version 0x50
         dict(system_id="trx", password="", system_type="", interface_version=0x50, addr_ton=0, addr_npi=0,
              address_range=""),
         # body 4 + 1 + 1 + 3 + 1 = 10 -> 26
         h("0000001A 00000009 00000000 00000003") + b"trx\0\0\0" + h("50 00 00") + b"\0"),
    Case("bind_transmitter_resp_sc_interface_version", B.BIND_TRANSMITTER_RESP, 1, ROK,
         dict(system_id="SMSC", tlvs=[Tlv(0x0210, b"\x34")]),
         # body 5 + TLV 5 = 10 -> 26
         h("0000001A 80000002 00000000 00000001") + b"SMSC\0" + h("0210 0001 34")),
    Case("bind_receiver_resp", B.BIND_RECEIVER_RESP, 2, ROK, dict(system_id="SMSC"),
         h("00000015 80000001 00000000 00000002") + b"SMSC\0"),
    Case("bind_transceiver_resp_error_no_body", B.BIND_TRANSCEIVER_RESP, 3, Status.RBINDFAIL, {},
         h("00000010 80000009 0000000D 00000003")),
    Case("outbind", B.OUTBIND, 4, ROK, dict(system_id="SMSC", password="pw"),
         h("00000018 0000000B 00000000 00000004") + b"SMSC\0pw\0"),
    Case("unbind", B.UNBIND, 5, ROK, {}, h("00000010 00000006 00000000 00000005")),
    Case("unbind_resp", B.UNBIND_RESP, 5, ROK, {}, h("00000010 80000006 00000000 00000005")),
    Case("generic_nack", B.GENERIC_NACK, 6, Status.RINVCMDID, {}, h("00000010 80000000 00000003 00000006")),
    Case("enquire_link", B.ENQUIRE_LINK, 7, ROK, {}, h("00000010 00000015 00000000 00000007")),
    Case("enquire_link_resp", B.ENQUIRE_LINK_RESP, 7, ROK, {}, h("00000010 80000015 00000000 00000007")),
    # --- message submission and delivery (3.4 sections 4.4-4.7) --------------------------------------------
    Case("submit_sm_tlvs_vendor", B.SUBMIT_SM, 8, ROK,
         _sm(source_addr_ton=5, source_addr="Brand", dest_addr_ton=1, dest_addr_npi=1,
             destination_addr="447700900123", validity_period="000001000000000R", registered_delivery=1,
             short_message=b"hello",
             tlvs=[Tlv(0x1401, b"abc"), Tlv(0x0204, b"\x00\x01")]),  # vendor TLV kept; user_message_reference
         # body: service_type 1, source 2+6, dest 2+13, esm/pid/prio 3, sched 1 + validity 17,
         # regdlv/replace/dcs/default 4, sm 1+5, TLVs 7 + 6 = 68 -> 84
         h("00000054 00000004 00000000 00000008") + b"\0" + h("05 00") + b"Brand\0" + h("01 01")
         + b"447700900123\0" + h("00 00 00") + b"\0" + b"000001000000000R\0" + h("01 00 00 00") + b"\x05hello"
         + h("1401 0003") + b"abc" + h("0204 0002 0001")),
    Case("submit_sm_resp", B.SUBMIT_SM_RESP, 8, ROK, dict(message_id="1f"),
         h("00000013 80000004 00000000 00000008") + b"1f\0"),
    Case("submit_sm_resp_error_no_body", B.SUBMIT_SM_RESP, 9, Status.RTHROTTLED, {},  # 3.4: 16 octets
         h("00000010 80000004 00000058 00000009")),
    Case("submit_sm_resp_error_lone_nul", B.SUBMIT_SM_RESP, 9, Status.RSUBMITFAIL, dict(message_id=""),
         h("00000011 80000004 00000045 00000009") + b"\0"),  # smpplib: 17 octets
    Case("deliver_sm_receipt", B.DELIVER_SM, 10, ROK,
         _sm(source_addr_ton=1, source_addr_npi=1, source_addr="447700900123", dest_addr_ton=5,
             destination_addr="Brand", esm_class=0x04, short_message=b"id:31 stat:DELIVRD",
             tlvs=[Tlv(0x001E, b"1f\0"), Tlv(0x0427, b"\x02")]),
         # body: 1 + 15 + 8 + 3 + 2 + 4 + (1 + 18) + 7 + 5 = 64 -> 80
         h("00000050 00000005 00000000 0000000A") + b"\0" + h("01 01") + b"447700900123\0" + h("05 00")
         + b"Brand\0" + h("04 00 00") + b"\0\0" + h("00 00 00 00") + b"\x12id:31 stat:DELIVRD"
         + h("001E 0003") + b"1f\0" + h("0427 0001 02")),
    Case("deliver_sm_resp", B.DELIVER_SM_RESP, 10, ROK, dict(message_id=""),
         h("00000011 80000005 00000000 0000000A") + b"\0"),
    Case("data_sm_payload_ucs2", B.DATA_SM, 11, ROK,
         dict(service_type="", source_addr_ton=5, source_addr_npi=0, source_addr="Brand", dest_addr_ton=1,
              dest_addr_npi=1, destination_addr="447700900123", esm_class=0, registered_delivery=1,
              data_coding=8, tlvs=[Tlv(0x0424, "退订".encode("utf-16-be"))]),
         # body: 1 + 8 + 15 + 3 + TLV 4+4 = 35 -> 51
         h("00000033 00000103 00000000 0000000B") + b"\0" + h("05 00") + b"Brand\0" + h("01 01")
         + b"447700900123\0" + h("00 01 08") + h("0424 0004 9000 8BA2")),
    Case("data_sm_resp", B.DATA_SM_RESP, 11, ROK, dict(message_id="abc"),
         h("00000014 80000103 00000000 0000000B") + b"abc\0"),
    Case("submit_multi_sme_and_dl", B.SUBMIT_MULTI, 12, ROK,
         dict(service_type="", source_addr_ton=1, source_addr_npi=1, source_addr="447700900000",
              dest_addresses=[SmeDest(1, 1, "447700900001"), DistributionList("friends"),
                              SmeDest(1, 1, "447700900002")],
              esm_class=0, protocol_id=0, priority_flag=0, schedule_delivery_time="", validity_period="",
              registered_delivery=0, replace_if_present_flag=0, data_coding=3, sm_default_msg_id=0,
              short_message=b"hi"),
         # body: 1 + 15 + number_of_dests 1 + (3+13) + (1+8) + (3+13) + 3 + 2 + 4 + 3 = 70 -> 86
         h("00000056 00000021 00000000 0000000C") + b"\0" + h("01 01") + b"447700900000\0" + h("03")
         + h("01 01 01") + b"447700900001\0" + h("02") + b"friends\0" + h("01 01 01") + b"447700900002\0"
         + h("00 00 00") + b"\0\0" + h("00 00 03 00") + b"\x02hi"),
    Case("submit_multi_resp_unsuccess", B.SUBMIT_MULTI_RESP, 12, ROK,
         dict(message_id="m1", unsuccess_sme=[UnsuccessSme(1, 1, "447700900001", Status.RINVDSTADR),
                                              UnsuccessSme(1, 1, "447700900002", Status.RSUBMITFAIL)]),
         # body: 3 + no_unsuccess 1 + (2+13+4) * 2 = 42 -> 58
         h("0000003A 80000021 00000000 0000000C") + b"m1\0" + h("02")
         + h("01 01") + b"447700900001\0" + h("0000000B") + h("01 01") + b"447700900002\0" + h("00000045")),
    # --- ancillary operations (3.4 sections 4.8-4.12) --------------------------------------------------------
    Case("query_sm", B.QUERY_SM, 13, ROK,
         dict(message_id="1f", source_addr_ton=1, source_addr_npi=1, source_addr="447700900000"),
         h("00000022 00000003 00000000 0000000D") + b"1f\0" + h("01 01") + b"447700900000\0"),
    Case("query_sm_resp", B.QUERY_SM_RESP, 13, ROK,
         dict(message_id="1f", final_date="240101123000004+", message_state=2, error_code=0),
         # body: 3 + 17 + 2 = 22 -> 38
         h("00000026 80000003 00000000 0000000D") + b"1f\0" + b"240101123000004+\0" + h("02 00")),
    Case("cancel_sm", B.CANCEL_SM, 14, ROK,
         dict(service_type="", message_id="1f", source_addr_ton=1, source_addr_npi=1,
              source_addr="447700900000", dest_addr_ton=1, dest_addr_npi=1, destination_addr="447700900001"),
         # body: 1 + 3 + 15 + 15 = 34 -> 50
         h("00000032 00000008 00000000 0000000E") + b"\0" + b"1f\0" + h("01 01") + b"447700900000\0"
         + h("01 01") + b"447700900001\0"),
    Case("cancel_sm_resp", B.CANCEL_SM_RESP, 14, ROK, {}, h("00000010 80000008 00000000 0000000E")),
    Case("replace_sm", B.REPLACE_SM, 15, ROK,
         dict(message_id="1f", source_addr_ton=1, source_addr_npi=1, source_addr="447700900000",
              schedule_delivery_time="", validity_period="", registered_delivery=1, sm_default_msg_id=0,
              short_message=b"new"),
         # body: 3 + 15 + 2 + 1 + 1 + 4 = 26 -> 42
         h("0000002A 00000007 00000000 0000000F") + b"1f\0" + h("01 01") + b"447700900000\0" + b"\0\0"
         + h("01 00") + b"\x03new"),
    Case("replace_sm_resp", B.REPLACE_SM_RESP, 15, ROK, {}, h("00000010 80000007 00000000 0000000F")),
    Case("alert_notification", B.ALERT_NOTIFICATION, 16, ROK,
         dict(source_addr_ton=1, source_addr_npi=1, source_addr="447700900001", esme_addr_ton=1,
              esme_addr_npi=1, esme_addr="447700900000", tlvs=[Tlv(0x0422, b"\x00")]),  # ms_availability_status
         # body: 15 + 15 + 5 = 35 -> 51
         h("00000033 00000102 00000000 00000010") + h("01 01") + b"447700900001\0" + h("01 01")
         + b"447700900000\0" + h("0422 0001 00")),
]

CASE_IDS = [c.name for c in PDU_TABLE]


def expected_fields(case: Case) -> dict[str, Any]:
    return {"tlvs": [], **case.fields}


# --- Hypothesis strategies -------------------------------------------------------------------------------------

# C-octet strings decode as latin-1, so any octet but NUL is a character.
cstrings = st.text(st.characters(min_codepoint=1, max_codepoint=255), max_size=20)
u8s = st.integers(0, 255)
tlvs = st.lists(st.builds(Tlv, st.integers(0, 0xFFFF), st.binary(max_size=16)), max_size=4)
dests = st.lists(st.one_of(st.builds(SmeDest, u8s, u8s, cstrings), st.builds(DistributionList, cstrings)),
                 max_size=5)
unsuccess = st.lists(st.builds(UnsuccessSme, u8s, u8s, cstrings, st.integers(0, 0xFFFFFFFF)), max_size=5)
_BY_KIND = {C: cstrings, U8: u8s, SM: st.binary(max_size=254), DESTS: dests, UNSUCCESS: unsuccess}


@st.composite
def field_values(draw, command_id: int) -> dict[str, Any]:
    """Field values for `command_id`, in the shape parse_body returns. A response may stop after any field
    (3.4 error responses have no body); then it carries no TLVs, which could not be told from fields."""
    schema, takes_tlvs = SCHEMAS[command_id]
    n = len(schema)
    if is_response(command_id):
        n = draw(st.integers(0, n))
    out = {name: draw(_BY_KIND[kind]) for name, kind, _max in schema[:n]}
    out["tlvs"] = draw(tlvs) if takes_tlvs and n == len(schema) else []
    return out
