"""pdu.py, commands.py, status.py, errors.py: the Pdu value, builders, and renumbering that touches only the
four sequence bytes (pdu.py Rule 2)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from smpp_helpers import CASE_IDS, PDU_TABLE, Case, h

from smppguard.smpp import Pdu, PduError, SmppError, Status
from smppguard.smpp.commands import (
    BINDS,
    KNOWN,
    NO_RESPONSE,
    RESPONSE_BIT,
    CommandId,
    command_name,
    is_response,
    response_id,
)
from smppguard.smpp.pdu import MAX_SEQUENCE, build, from_bytes, generic_nack, renumber, response_to
from smppguard.smpp.status import TEMPORARY, status_name

sequences = st.integers(1, MAX_SEQUENCE)


@pytest.mark.parametrize("case", PDU_TABLE, ids=CASE_IDS)
@settings(max_examples=10, deadline=None)
@given(sequence=sequences)
def test_pdu_renumber_changes_only_sequence_bytes(case: Case, sequence: int):
    new = case.pdu.renumbered(sequence)
    assert len(new) == len(case.raw)
    assert new[:12] == case.raw[:12]
    assert new[16:] == case.raw[16:]
    assert int.from_bytes(new[12:16], "big") == sequence
    assert from_bytes(new) == Pdu(case.command_id, case.status, sequence, new)


def test_pdu_renumber_exact_bytes():
    raw = h("00000011 80000004 00000045 00000009") + b"\0"
    assert renumber(raw, 0x01020304) == h("00000011 80000004 00000045 01020304") + b"\0"
    assert renumber(renumber(raw, 5), 9) == raw


def test_pdu_from_bytes_reads_header():
    case = next(c for c in PDU_TABLE if c.name == "submit_sm_resp_error_no_body")
    pdu = from_bytes(case.raw)
    assert pdu == case.pdu
    assert pdu.status == Status.RTHROTTLED
    assert pdu.is_response
    assert pdu.body == b""


def test_pdu_is_immutable_and_has_no_dict():
    pdu = next(c for c in PDU_TABLE if c.name == "enquire_link").pdu
    with pytest.raises(AttributeError):
        pdu.sequence = 2  # type: ignore[misc]
    assert not hasattr(pdu, "__dict__")


def test_pdu_build_header():
    assert build(CommandId.ENQUIRE_LINK, 7) == h("00000010 00000015 00000000 00000007")
    assert build(CommandId.SUBMIT_SM_RESP, 8, b"1f\0") == h("00000013 80000004 00000000 00000008") + b"1f\0"


def test_pdu_response_to_request():
    request = next(c for c in PDU_TABLE if c.name == "submit_sm_tlvs_vendor").pdu
    assert response_to(request, body=b"1f\0") == h("00000013 80000004 00000000 00000008") + b"1f\0"


def test_pdu_error_response_has_no_body():
    request = next(c for c in PDU_TABLE if c.name == "submit_sm_tlvs_vendor").pdu
    raw = response_to(request, Status.RTHROTTLED)
    assert from_bytes(raw) == Pdu(CommandId.SUBMIT_SM_RESP, Status.RTHROTTLED, 8, raw)
    assert len(raw) == 16


def test_pdu_response_to_outbind_is_generic_nack():
    request = next(c for c in PDU_TABLE if c.name == "outbind").pdu
    assert from_bytes(response_to(request, Status.RINVCMDID)).command_id == CommandId.GENERIC_NACK


def test_pdu_generic_nack():
    assert generic_nack(6, Status.RINVCMDID) == next(c for c in PDU_TABLE if c.name == "generic_nack").raw


# --- commands.py -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("command_id", sorted(c for c in KNOWN if not is_response(c)), ids=command_name)
def test_commands_response_id(command_id: int):
    if command_id in NO_RESPONSE:
        assert response_id(command_id) == CommandId.GENERIC_NACK
    else:
        assert response_id(command_id) == command_id | RESPONSE_BIT
        assert response_id(command_id) in KNOWN


def test_commands_is_response():
    assert is_response(CommandId.GENERIC_NACK)
    assert is_response(CommandId.SUBMIT_SM_RESP)
    assert not is_response(CommandId.SUBMIT_SM)


def test_commands_names():
    assert command_name(CommandId.SUBMIT_MULTI_RESP) == "submit_multi_resp"
    assert command_name(0x00000010) == "0x00000010"
    assert BINDS == {CommandId.BIND_RECEIVER, CommandId.BIND_TRANSMITTER, CommandId.BIND_TRANSCEIVER}


# --- status.py / errors.py --------------------------------------------------------------------------------------

def test_status_names():
    assert status_name(Status.RTHROTTLED) == "ESME_RTHROTTLED"
    assert status_name(0x0400) == "0x00000400"


def test_status_temporary_codes_follow_kannel():
    # SMPP-NOTES: Kannel retries only these; everything else is permanent.
    assert TEMPORARY == {Status.RMSGQFUL, Status.RTHROTTLED, Status.RSYSERR, Status.RX_T_APPN}
    assert Status.RSUBMITFAIL not in TEMPORARY


def test_errors_status_hint_and_sequence():
    e = PduError("bad", Status.RINVDESTFLAG, 5)
    assert isinstance(e, SmppError)
    assert e.status is Status.RINVDESTFLAG and e.sequence == 5 and not e.fatal
    assert SmppError("x").status is Status.RSYSERR
    assert PduError("x", 0x0401).status == 0x0401  # a vendor code stays a plain int
