"""receipt.py: the de-facto receipt text and its quirks (SMPP-NOTES, Delivery receipts), the TLVs that win over
the text, and hex/decimal message ids."""

from __future__ import annotations

import pytest

from smppguard.smpp.fields import Tlv, TlvTag
from smppguard.smpp.receipt import Receipt, format_receipt, is_receipt, parse_receipt, parse_text, same_message_id

FULL = (b"id:1f sub:001 dlvrd:001 submit date:2401011230 done date:2401011231 stat:DELIVRD err:000 "
        b"text:Hello world")


def test_receipt_full_text():
    assert parse_receipt(FULL) == Receipt(message_id="1f", stat="DELIVRD", err="000", submit_date="2401011230",
                                          done_date="2401011231", text="Hello world", state=2)
    assert parse_receipt(FULL).delivered


def test_receipt_text_key_capitalised():
    r = parse_receipt(FULL.replace(b"text:", b"Text:"))
    assert r is not None and r.text == "Hello world"


def test_receipt_keys_in_any_case():
    r = parse_receipt(b"ID:42 SUB:001 DLVRD:000 Submit Date:2401011230 Done Date:2401011231 STAT:UNDELIV ERR:001")
    assert r == Receipt(message_id="42", stat="UNDELIV", err="001", submit_date="2401011230",
                        done_date="2401011231", state=5)
    assert not r.delivered


def test_receipt_without_text_key():
    r = parse_receipt(b"id:1f sub:001 dlvrd:001 submit date:2401011230 done date:2401011231 stat:DELIVRD err:000")
    assert r is not None
    assert r.text == "" and r.err == "000" and r.state == 2


def test_receipt_dates_with_seconds():
    r = parse_receipt(b"id:7 sub:001 dlvrd:001 submit date:240101123045 done date:240101123159 stat:DELIVRD "
                      b"err:000 text:")
    assert r is not None
    assert (r.submit_date, r.done_date) == ("240101123045", "240101123159")


def test_receipt_text_runs_to_end_even_with_keys_inside():
    r = parse_receipt(b"id:7 stat:DELIVRD err:000 text:reply stat:STOP id:9")
    assert r is not None
    assert (r.message_id, r.stat, r.text) == ("7", "DELIVRD", "reply stat:STOP id:9")


def test_receipt_carrier_stat_code():
    # China Mobile codes appear as stat (SMPP-NOTES): kept as written, with no message_state.
    r = parse_receipt(b"id:7 sub:001 dlvrd:000 submit date:2401011230 done date:2401011231 stat:MK:0001 err:000")
    assert r is not None
    assert r.stat == "MK:0001" and r.state is None


@pytest.mark.parametrize("stat,state", [("DELIVRD", 2), ("EXPIRED", 3), ("DELETED", 4), ("UNDELIV", 5),
                                        ("ACCEPTD", 6), ("UNKNOWN", 7), ("REJECTD", 8), ("ENROUTE", 1),
                                        ("DELIVERED", 2), ("delivrd", 2), ("REJECTED", 8)])
def test_receipt_stat_to_state(stat: str, state: int):
    r = parse_receipt(f"id:1 stat:{stat}".encode())
    assert r is not None and r.state == state


def test_receipt_tlvs_win_over_text():
    tlvs = [Tlv(TlvTag.RECEIPTED_MESSAGE_ID, b"1f\0"), Tlv(TlvTag.MESSAGE_STATE, b"\x02")]
    r = parse_receipt(b"id:31 stat:UNDELIV err:000", tlvs)
    assert r is not None
    assert r.message_id == "1f"
    assert r.state == 2 and r.delivered
    assert r.stat == "UNDELIV"  # stat stays as written


def test_receipt_tlvs_without_text():
    r = parse_receipt(b"", [Tlv(TlvTag.RECEIPTED_MESSAGE_ID, b"abc\0"), Tlv(TlvTag.MESSAGE_STATE, b"\x05")])
    assert r == Receipt(message_id="abc", stat="UNDELIV", state=5)


def test_receipt_tlv_id_without_nul():
    r = parse_receipt(b"id:x stat:DELIVRD", [Tlv(TlvTag.RECEIPTED_MESSAGE_ID, b"abc")])
    assert r is not None and r.message_id == "abc" and r.state == 2


@pytest.mark.parametrize("sm", [b"", b"hello", b"stat:DELIVRD err:000", b"id:1 sub:001 err:000"],
                         ids=["empty", "plain", "no-id", "no-stat"])
def test_receipt_not_a_receipt(sm: bytes):
    assert parse_receipt(sm) is None


def test_receipt_parse_text_needs_id_and_stat():
    assert parse_text("id:1 stat:DELIVRD") == {"id": "1", "stat": "DELIVRD"}
    assert parse_text("id:1 err:000") is None
    assert parse_text("") is None


def test_receipt_format_parses_back():
    raw = format_receipt("1f", "DELIVRD", submit_date="2401011230", done_date="2401011231", text="Hi there")
    assert raw == (b"id:1f sub:001 dlvrd:001 submit date:2401011230 done date:2401011231 stat:DELIVRD err:000 "
                   b"text:Hi there")
    assert parse_receipt(raw) == Receipt("1f", "DELIVRD", "000", "2401011230", "2401011231", "Hi there", 2)


def test_receipt_format_truncates_text_to_20():
    raw = format_receipt("1", "UNDELIV", text="x" * 30)
    assert raw.endswith(b"dlvrd:000 submit date: done date: stat:UNDELIV err:000 text:" + b"x" * 20)


@pytest.mark.parametrize("esm_class,expected", [(0x04, True), (0x44, True), (0x00, False), (0x08, False),
                                                (0x20, False), (0x24, False)])
def test_receipt_is_receipt(esm_class: int, expected: bool):
    assert is_receipt(esm_class) is expected


@pytest.mark.parametrize("a,b", [("1f", "31"), ("31", "1f"), ("1F", "31"), ("abc", "ABC"), ("0031", "31"),
                                 ("same", "same"), ("7fffffff", "2147483647")])
def test_receipt_same_message_id(a: str, b: str):
    assert same_message_id(a, b)


@pytest.mark.parametrize("a,b", [("1f", "32"), ("abc", "abd"), ("", "0"), ("zz", "35"), ("1f", "")])
def test_receipt_different_message_id(a: str, b: str):
    assert not same_message_id(a, b)


@pytest.mark.parametrize("a,b", [("10", "010"), ("010", "10"), ("X1", "0X1"), ("0X1", "X1"), ("X", "0X"),
                                 ("ab0", "0ab0")])
def test_receipt_same_message_id_ignores_leading_zeros_only(a: str, b: str):
    assert same_message_id(a, b)
    assert not same_message_id(a + "0", b)  # a trailing zero is part of the id


def test_receipt_ids_that_differ_in_more_than_leading_zeros_do_not_match():
    assert not same_message_id("X", "XX")


def test_receipt_tlv_id_keeps_its_own_characters():
    r = parse_receipt(b"", [Tlv(TlvTag.RECEIPTED_MESSAGE_ID, b"ABX\0")])
    assert r is not None and r.message_id == "ABX"


def test_receipt_without_stat_or_state_is_unknown():
    r = parse_receipt(b"", [Tlv(TlvTag.RECEIPTED_MESSAGE_ID, b"7\0")])
    assert r is not None and (r.stat, r.state) == ("UNKNOWN", 7)


def test_receipt_a_repeated_key_keeps_the_first_and_reads_on():
    assert parse_text("id:1 id:2 stat:DELIVRD") == {"id": "1", "stat": "DELIVRD"}


def test_receipt_format_defaults_and_an_explicit_dlvrd():
    assert format_receipt("9", "UNDELIV") == (b"id:9 sub:001 dlvrd:000 submit date: done date: stat:UNDELIV "
                                              b"err:000 text:")
    assert format_receipt("9", "DELIVRD", dlvrd="005").startswith(b"id:9 sub:001 dlvrd:005 ")
    assert format_receipt("9", "DELIVRD", text="退订").endswith(b"text:??")  # not Latin-1: replaced, not raised


def test_network_error_code_gives_err_when_the_text_has_none():
    from smppguard.smpp.fields import Tlv, TlvTag

    tlvs = [Tlv(TlvTag.RECEIPTED_MESSAGE_ID, b"7\0"), Tlv(TlvTag.MESSAGE_STATE, b"\x05"),
            Tlv(TlvTag.NETWORK_ERROR_CODE, b"\x03\x01\x02")]
    assert parse_receipt(b"", tlvs).err == "3:258"  # GSM (3), error 0x0102
    assert parse_receipt(b"id:7 stat:UNDELIV err:MK:0001", tlvs).err == "MK:0001"  # the text's own wins
    assert parse_receipt(b"", tlvs[:2] + [Tlv(TlvTag.NETWORK_ERROR_CODE, b"\x03")]).err == ""  # malformed
