"""fields.py: every command's body against hand-written wire bytes (one table for encode and decode), the
malformed-body errors with their status hints, and the round-trip properties of the module's Rule 1."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from smpp_helpers import CASE_IDS, PDU_TABLE, Case, expected_fields, field_values, h

from smppguard.smpp import PduError, Status
from smppguard.smpp.commands import CommandId
from smppguard.smpp.fields import (
    SCHEMAS,
    DistributionList,
    SmeDest,
    SubmitView,
    Tlv,
    TlvTag,
    encode_body,
    parse_body,
    submit_view,
    tlv_int,
    tlv_value,
)
from smppguard.smpp.pdu import HEADER_LEN, build


def test_table_covers_every_command_schema():
    assert {c.command_id for c in PDU_TABLE} == set(SCHEMAS)


@pytest.mark.parametrize("case", PDU_TABLE, ids=CASE_IDS)
def test_table_command_length_matches_bytes(case: Case):
    assert int.from_bytes(case.raw[:4], "big") == len(case.raw)


@pytest.mark.parametrize("case", PDU_TABLE, ids=CASE_IDS)
def test_encode_body_gives_exact_bytes(case: Case):
    body = encode_body(case.command_id, case.fields)
    assert build(case.command_id, case.sequence, body, case.status) == case.raw


@pytest.mark.parametrize("case", PDU_TABLE, ids=CASE_IDS)
def test_parse_body_gives_fields(case: Case):
    assert parse_body(case.command_id, case.raw[HEADER_LEN:], case.sequence) == expected_fields(case)


def test_parse_body_keeps_unknown_vendor_tlv_in_wire_order():
    case = next(c for c in PDU_TABLE if c.name == "submit_sm_tlvs_vendor")
    tlvs = parse_body(case.command_id, case.raw[HEADER_LEN:])["tlvs"]
    assert tlvs == [Tlv(0x1401, b"abc"), Tlv(0x0204, b"\x00\x01")]


# --- error responses: 3.4 sends none, smpplib a lone NUL (SMPP-NOTES, Framing) --------------------------------

def test_parse_body_error_response_without_body():
    assert parse_body(CommandId.SUBMIT_SM_RESP, b"") == {"tlvs": []}


def test_parse_body_error_response_lone_nul():
    assert parse_body(CommandId.SUBMIT_SM_RESP, b"\0") == {"message_id": "", "tlvs": []}


def test_encode_body_response_without_fields_is_empty():
    assert encode_body(CommandId.SUBMIT_SM_RESP) == b""
    assert encode_body(CommandId.BIND_TRANSCEIVER_RESP) == b""


def test_encode_body_request_fills_missing_fields_with_defaults():
    # service_type "", 2 + "", 2 + "", esm/pid/prio, "", "", regdlv/replace/dcs/default, sm_length 0
    assert encode_body(CommandId.SUBMIT_SM) == b"\0" + h("00 00") + b"\0" + h("00 00") + b"\0" + h("00 00 00") \
        + b"\0\0" + h("00 00 00 00") + h("00")


def test_encode_body_accepts_keyword_fields():
    assert encode_body(CommandId.SUBMIT_SM_RESP, message_id="abc") == b"abc\0"


# --- malformed bodies ------------------------------------------------------------------------------------------

def _raises(command_id: int, body: bytes, status: Status, sequence: int = 42) -> PduError:
    with pytest.raises(PduError) as info:
        parse_body(command_id, body, sequence)
    assert info.value.status == status
    assert info.value.sequence == sequence
    assert not info.value.fatal  # the frame was whole: answer generic_nack and carry on
    return info.value


def test_parse_body_cstring_without_nul():
    _raises(CommandId.BIND_TRANSMITTER, b"smppclient1", Status.RINVCMDLEN)


def test_parse_body_request_ends_before_u8():
    _raises(CommandId.BIND_TRANSMITTER, b"id\0pw\0type\0", Status.RINVCMDLEN)


def test_parse_body_sm_length_past_end():
    case = next(c for c in PDU_TABLE if c.name == "replace_sm")
    body = case.raw[HEADER_LEN:]
    assert body.endswith(b"\x03new")
    _raises(CommandId.REPLACE_SM, body[:-4] + b"\x04new", Status.RINVMSGLEN)


def test_parse_body_sm_length_missing():
    _raises(CommandId.REPLACE_SM, b"1f\0" + h("01 01") + b"447700900000\0" + b"\0\0" + h("01 00"),
            Status.RINVCMDLEN)


def _submit_multi_body(dest: bytes) -> bytes:
    return b"\0" + h("01 01") + b"447700900000\0" + h("01") + dest + h("00 00 00") + b"\0\0" \
        + h("00 00 00 00") + b"\x02hi"


def test_parse_body_submit_multi_dest_flags():
    body = _submit_multi_body(h("02") + b"friends\0")
    assert parse_body(CommandId.SUBMIT_MULTI, body)["dest_addresses"] == [DistributionList("friends")]
    body = _submit_multi_body(h("01 01 01") + b"447700900001\0")
    assert parse_body(CommandId.SUBMIT_MULTI, body)["dest_addresses"] == [SmeDest(1, 1, "447700900001")]


@pytest.mark.parametrize("flag", [0, 3, 0xFF])
def test_parse_body_bad_dest_flag(flag: int):
    _raises(CommandId.SUBMIT_MULTI, _submit_multi_body(bytes((flag,)) + b"447700900001\0"), Status.RINVDESTFLAG)


def test_parse_body_submit_multi_more_dests_than_given():
    body = b"\0" + h("01 01") + b"447700900000\0" + h("02") + h("01 01 01") + b"447700900001\0"
    _raises(CommandId.SUBMIT_MULTI, body, Status.RINVCMDLEN)


def test_parse_body_unsuccess_status_truncated():
    _raises(CommandId.SUBMIT_MULTI_RESP, b"m1\0" + h("01 01 01") + b"447700900001\0" + h("0000 0B"),
            Status.RINVCMDLEN)


@pytest.mark.parametrize("tail", [h("04"), h("0424"), h("0424 00")], ids=["1", "2", "3"])
def test_parse_body_truncated_tlv_header(tail: bytes):
    _raises(CommandId.SUBMIT_SM_RESP, b"1f\0" + tail, Status.RINVOPTPARSTREAM)


def test_parse_body_tlv_value_past_end():
    _raises(CommandId.SUBMIT_SM_RESP, b"1f\0" + h("0424 0005") + b"abcd", Status.RINVPARLEN)


def test_parse_body_tlv_with_empty_value():
    assert parse_body(CommandId.SUBMIT_SM_RESP, b"1f\0" + h("1401 0000"))["tlvs"] == [Tlv(0x1401, b"")]


def test_parse_body_octets_after_last_field_of_tlvless_command():
    _raises(CommandId.QUERY_SM, b"1f\0" + h("01 01") + b"447700900000\0" + h("0424 0000"), Status.RINVCMDLEN)
    _raises(CommandId.ENQUIRE_LINK, b"\0", Status.RINVCMDLEN)


def test_parse_body_replace_sm_message_payload():
    # SMPP 5.0 section 4.5.3 lets replace_sm carry message_payload instead of short_message.
    body = b"1f\0" + h("01 01") + b"447700900000\0" + b"\0\0" + h("01 00") + h("00") + h("0424 0003") + b"new"
    fields = parse_body(CommandId.REPLACE_SM, body)
    assert fields["short_message"] == b""
    assert fields["tlvs"] == [Tlv(TlvTag.MESSAGE_PAYLOAD, b"new")]
    assert encode_body(CommandId.REPLACE_SM, fields) == body


def test_parse_body_unknown_command_id():
    _raises(0x00000010, b"", Status.RINVCMDID)
    _raises(0x80000102, b"", Status.RINVCMDID)  # alert_notification has no response


def test_parse_body_error_without_sequence():
    with pytest.raises(PduError) as info:
        parse_body(CommandId.BIND_TRANSMITTER, b"x")
    assert info.value.sequence is None


# --- encode errors: programmer errors are ValueError, not PduError --------------------------------------------

def test_encode_body_rejects_nul_in_cstring():
    with pytest.raises(ValueError):
        encode_body(CommandId.SUBMIT_SM_RESP, message_id="a\0b")


def test_encode_body_rejects_short_message_over_255():
    with pytest.raises(ValueError):
        encode_body(CommandId.SUBMIT_SM, short_message=b"x" * 256)


def test_encode_body_rejects_tlvs_where_none_allowed():
    with pytest.raises(ValueError):
        encode_body(CommandId.QUERY_SM, tlvs=[Tlv(0x1401, b"")])


# --- TLV helpers ------------------------------------------------------------------------------------------------

def test_tlv_value_first_match_wins():
    tlvs = [Tlv(0x1401, b"a"), Tlv(0x1401, b"b")]
    assert tlv_value(tlvs, 0x1401) == b"a"
    assert tlv_value(tlvs, 0x1402) is None


def test_tlv_int_big_endian_and_empty():
    assert tlv_int([Tlv(TlvTag.SAR_MSG_REF_NUM, b"\x12\x34")], TlvTag.SAR_MSG_REF_NUM) == 0x1234
    assert tlv_int([Tlv(TlvTag.MESSAGE_STATE, b"")], TlvTag.MESSAGE_STATE) is None
    assert tlv_int([], TlvTag.MESSAGE_STATE) is None


# --- Rule 1: parse(encode(f)) == f and encode(parse(b)) == b ---------------------------------------------------

@pytest.mark.parametrize("command_id", sorted(SCHEMAS), ids=lambda c: CommandId(c).name.lower())
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_fields_round_trip(command_id: int, data: st.DataObject):
    fields = data.draw(field_values(command_id))
    body = encode_body(command_id, fields)
    assert parse_body(command_id, body) == fields
    assert encode_body(command_id, parse_body(command_id, body)) == body


# --- submit_view: the hot path's parse of submit_sm / deliver_sm must agree with parse_body -----------------------

def _view_from_fields(fields: dict, body: bytes) -> SubmitView:
    schedule_at = body.index(b"\0") + 1  # after service_type
    schedule_at = body.index(b"\0", schedule_at + 2) + 1  # after source_addr
    schedule_at = body.index(b"\0", schedule_at + 2) + 4  # after destination_addr, esm/pid/priority
    return SubmitView(fields["service_type"], fields["source_addr_ton"], fields["source_addr"],
                      fields["dest_addr_ton"], fields["destination_addr"], fields["esm_class"],
                      fields["registered_delivery"], fields["data_coding"], fields["short_message"],
                      fields["tlvs"], schedule_at)


@pytest.mark.parametrize("case", [c for c in PDU_TABLE if c.command_id in (CommandId.SUBMIT_SM,
                                                                            CommandId.DELIVER_SM)],
                         ids=lambda c: c.name)
def test_submit_view_matches_table(case: Case):
    body = case.raw[HEADER_LEN:]
    view = submit_view(body, case.sequence)
    assert view == _view_from_fields(expected_fields(case), body)
    end = body.index(b"\0", view.schedule_at)
    assert body[view.schedule_at:end].decode("latin-1") == case.fields["schedule_delivery_time"]


def _agree(body: bytes) -> None:
    try:
        fields = parse_body(CommandId.SUBMIT_SM, body, 7)
    except PduError as e:
        with pytest.raises(PduError) as info:
            submit_view(body, 7)
        assert (info.value.status, info.value.sequence) == (e.status, 7)
        return
    assert submit_view(body, 7) == _view_from_fields(fields, body)


@settings(max_examples=50, deadline=None)
@given(fields=field_values(CommandId.SUBMIT_SM))
def test_submit_view_agrees_with_parse_body(fields: dict):
    _agree(encode_body(CommandId.SUBMIT_SM, fields))


_SM_BODIES = [c.raw[HEADER_LEN:] for c in PDU_TABLE if c.command_id in (CommandId.SUBMIT_SM, CommandId.DELIVER_SM)]


@settings(max_examples=120, deadline=None)
@given(data=st.data())
def test_submit_view_agrees_with_parse_body_on_broken_bodies(data: st.DataObject):
    body = data.draw(st.sampled_from(_SM_BODIES))
    cut = data.draw(st.integers(0, len(body)))
    _agree(body[:cut] + data.draw(st.binary(max_size=6)))


# --- every malformed body says which field, with the status and the sequence to answer --------------------------

def _multi(dests: bytes) -> bytes:
    return b"\0" + h("01 01") + b"447700900000\0" + dests


@pytest.mark.parametrize("command_id, body, status, message", [
    (CommandId.BIND_TRANSMITTER, b"smppclient1", Status.RINVCMDLEN,
     "system_id: C-octet string has no terminating NUL"),
    (CommandId.BIND_TRANSMITTER, b"id\0pw\0type\0", Status.RINVCMDLEN, "interface_version: body ends early"),
    (CommandId.REPLACE_SM, b"1f\0" + h("01 01") + b"447700900000\0" + b"\0\0" + h("01 00"), Status.RINVCMDLEN,
     "sm_length: body ends early"),
    (CommandId.REPLACE_SM, b"1f\0" + h("01 01") + b"447700900000\0" + b"\0\0" + h("01 00 04") + b"new",
     Status.RINVMSGLEN, "sm_length 4 runs past the body"),
    (CommandId.SUBMIT_MULTI, _multi(b""), Status.RINVCMDLEN, "number_of_dests: body ends early"),
    (CommandId.SUBMIT_MULTI, _multi(h("01")), Status.RINVCMDLEN, "dest_flag: body ends early"),
    (CommandId.SUBMIT_MULTI, _multi(h("01 01")), Status.RINVCMDLEN, "dest_addr_ton: body ends early"),
    (CommandId.SUBMIT_MULTI, _multi(h("01 01 01")), Status.RINVCMDLEN, "dest_addr_npi: body ends early"),
    (CommandId.SUBMIT_MULTI, _multi(h("01 01 01 01") + b"4477"), Status.RINVCMDLEN,
     "destination_addr: C-octet string has no terminating NUL"),
    (CommandId.SUBMIT_MULTI, _multi(h("01 02") + b"friends"), Status.RINVCMDLEN,
     "dl_name: C-octet string has no terminating NUL"),
    (CommandId.SUBMIT_MULTI, _multi(h("01 03") + b"x\0"), Status.RINVDESTFLAG, "dest_flag 3 is neither 1 nor 2"),
    (CommandId.SUBMIT_MULTI_RESP, b"m1\0" + h("01"), Status.RINVCMDLEN, "dest_addr_ton: body ends early"),
    (CommandId.SUBMIT_MULTI_RESP, b"m1\0" + h("01 01"), Status.RINVCMDLEN, "dest_addr_npi: body ends early"),
    (CommandId.SUBMIT_MULTI_RESP, b"m1\0" + h("01 01 01") + b"447", Status.RINVCMDLEN,
     "destination_addr: C-octet string has no terminating NUL"),
    (CommandId.SUBMIT_MULTI_RESP, b"m1\0" + h("01 01 01") + b"447\0" + h("0000 0B"), Status.RINVCMDLEN,
     "error_status_code runs past the body"),
    (CommandId.SUBMIT_SM_RESP, b"1f\0" + h("0424"), Status.RINVOPTPARSTREAM, "truncated optional parameter header"),
    (CommandId.SUBMIT_SM_RESP, b"1f\0" + h("0424 0005") + b"abcd", Status.RINVPARLEN,
     "optional parameter 0x0424 runs past the body"),
    (CommandId.QUERY_SM, b"1f\0" + h("01 01") + b"447700900000\0" + h("0424 0000"), Status.RINVCMDLEN,
     "4 unexpected octets after the last field"),
    (0x00000010, b"", Status.RINVCMDID, "unknown command_id 0x00000010"),
], ids=lambda v: v if isinstance(v, str) and " " not in v else None)
def test_parse_body_error_names_the_field(command_id: int, body: bytes, status: Status, message: str):
    e = _raises(command_id, body, status, sequence=7)
    assert str(e) == message
    assert type(e.status) is Status  # a known status comes back as the enum, for logs and tests


def test_submit_view_error_says_what_is_wrong():
    with pytest.raises(PduError) as info:
        submit_view(b"\0\x01\x01ACME", 9)
    assert (str(info.value), info.value.status, info.value.sequence) == (
        "submit_sm body ends early or a C-octet string has no NUL", Status.RINVCMDLEN, 9)
    body = (b"\0" + h("01 01") + b"ACME\0" + h("01 01") + b"4477\0" + h("00 00 00") + b"\0\0"
            + h("00 00 00 00 05") + b"hi")
    with pytest.raises(PduError) as info:
        submit_view(body, 9)
    assert (str(info.value), info.value.status) == ("sm_length 5 runs past the body", Status.RINVMSGLEN)


def test_encode_errors_say_what_is_wrong():
    with pytest.raises(ValueError, match="^C-octet string contains NUL$"):
        encode_body(CommandId.BIND_TRANSMITTER, system_id="a\0b")
    assert encode_body(CommandId.SUBMIT_SM, short_message=b"x" * 255)[-256:] == b"\xff" + b"x" * 255  # the most
    with pytest.raises(ValueError, match="^short_message longer than 255 octets: use message_payload$"):
        encode_body(CommandId.SUBMIT_SM, short_message=b"x" * 256)
    with pytest.raises(ValueError, match="^command 0x00000015 takes no optional parameters$"):
        encode_body(CommandId.ENQUIRE_LINK, tlvs=[(0x0424, b"x")])


def test_encode_body_takes_a_c_string_as_bytes_too():
    assert encode_body(CommandId.BIND_TRANSMITTER, system_id=b"acme")[:5] == b"acme\0"
