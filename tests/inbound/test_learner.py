"""The Learner: a deliver_sm or data_sm in, the facts it teaches out."""

from __future__ import annotations

import pytest

from smppguard.inbound import CONFIRM, OPTIN, OPTOUT, UNREAD, Learner, LearnerSettings, reply_numbers
from smppguard.inbound.keywords import Keywords
from smppguard.inbound.receipts import DEAD, ReceiptCodes
from smppguard.smpp.commands import CommandId
from smppguard.smpp.concat import build_udh
from smppguard.smpp.fields import Tlv, TlvTag, encode_body
from smppguard.smpp.pdu import Pdu, build

A = 8613800000001
SETTINGS = LearnerSettings(default_region="CN", reassembly_timeout_s=60.0)


def deliver(text: bytes, *, source: str = str(A), ton: int = 1, to: str = "10690000", dc: int = 0, esm: int = 0,
            tlvs=(), command_id: int = CommandId.DELIVER_SM) -> Pdu:
    fields = dict(source_addr_ton=ton, source_addr_npi=1, source_addr=source, dest_addr_ton=0, dest_addr_npi=0,
                  destination_addr=to, esm_class=esm, data_coding=dc, tlvs=list(tlvs))
    if command_id == CommandId.DELIVER_SM:
        fields["short_message"] = text
    else:
        fields["tlvs"] = [Tlv(TlvTag.MESSAGE_PAYLOAD, text), *tlvs]
    raw = build(command_id, 7, encode_body(command_id, **fields))
    return Pdu(command_id, 0, 7, raw)


def kinds(facts) -> list[tuple]:
    return [(f.kind, f.number, f.sender, f.keyword) for f in facts]


def test_a_reply_is_an_opt_out_of_the_address_it_was_sent_to():
    (fact,) = Learner(SETTINGS).observe("acme", deliver(b"TD"), 1.0)
    assert (fact.kind, fact.number, fact.account, fact.sender, fact.keyword) == (OPTOUT, A, "acme", "10690000", "td")
    assert fact.evidence == {"text": "TD", "to": "10690000", "account": "acme"}


def test_a_national_number_is_read_in_the_default_region():
    assert kinds(Learner(SETTINGS).observe("acme", deliver(b"T", source="13800000001", ton=0), 1.0)) == [
        (OPTOUT, A, "10690000", "t")]


def test_data_sm_carries_the_reply_in_message_payload():
    facts = Learner(SETTINGS).observe("acme", deliver("退订".encode("utf-16-be"), dc=8,
                                                      command_id=CommandId.DATA_SM), 1.0)
    assert kinds(facts) == [(OPTOUT, A, "10690000", "退订")]


@pytest.mark.parametrize("source, ton", [
    ("13800000001", 1),  # a national number marked international, as SMSCs often send it
    ("13800000001", 0), ("13800000001", 2), ("+13800000001", 1), ("+13800000001", 0), ("013800000001", 1),
    ("8613800000001", 0), ("8613800000001", 1), ("+8613800000001", 1), ("008613800000001", 1),
    ("008613800000001", 0), ("0013800000001", 1), (" 13800000001 ", 1),
])
def test_a_reply_address_is_read_the_way_carriers_send_it(source, ton):
    assert kinds(Learner(SETTINGS).observe("acme", deliver(b"TD", source=source, ton=ton), 1.0)) == [
        (OPTOUT, A, "10690000", "td")]


def test_an_address_that_reads_as_two_numbers_opts_both_out_and_opts_in_the_first():
    # 13012345678: +1 301 234 5678 as TON 1 says, +86 130 1234 5678 as CN reads it
    assert reply_numbers("13012345678", 1, "CN") == (13012345678, 8613012345678)
    learner = Learner(SETTINGS)
    assert [f.number for f in learner.observe("acme", deliver(b"TD", source="13012345678"), 1.0)] == [
        13012345678, 8613012345678]
    assert [f.number for f in learner.observe("acme", deliver(b"START", source="13012345678"), 1.0)] == [
        13012345678]
    assert reply_numbers("13800000001", 1, None) == ()  # no default region: no national reading
    assert reply_numbers("+8613800000001", 1, None) == (A,)


def test_a_reply_with_a_keyword_from_no_readable_number_is_an_unread_fact():
    learner = Learner(SETTINGS)
    (fact,) = learner.observe("acme", deliver(b"TD", source="1380013807x"), 1.0)
    assert (fact.kind, fact.number, fact.sender, fact.keyword) == (UNREAD, 0, "10690000", "td")
    assert fact.evidence["lost"] == OPTOUT and fact.evidence["address"] == "1380013807x"
    assert fact.evidence["ton"] == 1
    assert fact.evidence["reason"] == "source_addr is not a phone number (TON 1, default region CN)"
    assert learner.observe("acme", deliver(b"hello", source="abc"), 1.0) == []  # nothing to learn: not reported
    (fact,) = Learner(LearnerSettings()).observe("acme", deliver(b"TD", source="13800000001"), 1.0)
    assert fact.evidence["reason"] == ("source_addr is not a phone number (TON 1) (a number without a country "
                                       "code needs [policy] default_region)")
    text = b"id:abc sub:001 dlvrd:000 submit date:2612011200 done date:2612011201 stat:UNDELIV err:MK:0001 Text:x"
    (fact,) = learner.observe("acme", deliver(text, source="abc", esm=0x04), 1.0)
    assert (fact.kind, fact.keyword, fact.evidence["lost"], fact.evidence["receipt"]) == (
        UNREAD, "MK:0001", DEAD, "abc")


def test_what_cannot_be_read_teaches_nothing():
    learner = Learner(SETTINGS)
    assert learner.observe("acme", deliver(b"STOP", dc=0x04), 1.0) == []  # binary
    assert learner.observe("acme", deliver(b"STOP", esm=0x08), 1.0) == []  # an SMSC's own kind of message
    truncated = deliver(b"STOP")
    assert learner.observe("acme", Pdu(truncated.command_id, 0, 7, truncated.raw[:30]), 1.0) == []
    assert learner.observe("acme", Pdu(CommandId.SUBMIT_SM, 0, 7, truncated.raw), 1.0) == []


def test_yes_opts_in_and_confirms():
    assert sorted(kinds(Learner(SETTINGS).observe("acme", deliver(b"yes"), 1.0))) == [
        (CONFIRM, A, "10690000", "yes"), (OPTIN, A, "10690000", "yes")]


def test_sar_parts_are_reassembled_and_an_incomplete_set_is_judged_when_its_time_is_up():
    learner = Learner(SETTINGS)

    def sar(ref, total, seq):
        return [Tlv(TlvTag.SAR_MSG_REF_NUM, ref.to_bytes(2, "big")), Tlv(TlvTag.SAR_TOTAL_SEGMENTS, bytes((total,))),
                Tlv(TlvTag.SAR_SEGMENT_SEQNUM, bytes((seq,)))]

    assert learner.observe("acme", deliver(b"OP", tlvs=sar(5, 2, 2)), 1.0) == []
    assert kinds(learner.observe("acme", deliver(b"ST", tlvs=sar(5, 2, 1)), 2.0)) == [
        (OPTOUT, A, "10690000", "stop")]
    assert learner.observe("acme", deliver(build_udh(6, 3, 1) + b"T", esm=0x40), 10.0) == []
    assert learner.expire(69.0) == []
    (fact,) = learner.expire(70.0)
    assert (fact.kind, fact.keyword, fact.evidence["incomplete"]) == (OPTOUT, "t", True)


def test_sender_prefixes_map_an_extended_long_code_to_the_longest_listed_prefix():
    learner = Learner(LearnerSettings(default_region="CN", sender_prefixes=("1069", "10690123")))
    assert learner.sender_of("10690123456") == "10690123"
    assert learner.sender_of("1069999") == "1069"
    assert learner.sender_of("95555") == "95555"


def test_a_receipt_is_read_from_its_tlvs_when_the_text_says_nothing():
    tlvs = [Tlv(TlvTag.RECEIPTED_MESSAGE_ID, b"abc\0"), Tlv(TlvTag.MESSAGE_STATE, b"\x05")]
    learner = Learner(SETTINGS)
    assert learner.observe("acme", deliver(b"", esm=0x04, tlvs=tlvs), 1.0) == []  # undeliverable, no code
    text = b"id:abc sub:001 dlvrd:000 submit date:2612011200 done date:2612011201 stat:UNDELIV err:MK:0001 Text:x"
    (fact,) = learner.observe("acme", deliver(text, esm=0x04, tlvs=tlvs), 1.0)
    assert (fact.kind, fact.number, fact.keyword) == (DEAD, A, "MK:0001")
    assert fact.evidence == {"receipt": "abc", "stat": "UNDELIV", "err": "MK:0001", "account": "acme"}
    # a receipt that is "STOP" as text is still a receipt: never an opt-out
    assert learner.observe("acme", deliver(b"STOP", esm=0x04), 1.0) == []


def test_messaging_mode_bits_and_a_reply_path_do_not_hide_a_reply():
    learner = Learner(SETTINGS)
    for esm in (0x01, 0x02, 0x03, 0x80):
        assert kinds(learner.observe("acme", deliver(b"TD", esm=esm), 1.0)) == [(OPTOUT, A, "10690000", "td")]


def test_an_ia5_reply_is_decoded_as_configured():
    assert kinds(Learner(SETTINGS).observe("acme", deliver(b"STOP", dc=0x01), 1.0)) == [
        (OPTOUT, A, "10690000", "stop")]


def test_a_reply_is_kept_as_evidence_up_to_160_characters_and_a_complete_set_is_not_marked_incomplete():
    learner = Learner(LearnerSettings(default_region="CN", keywords=Keywords.of(mode="contains")))
    (fact,) = learner.observe("acme", deliver(b"STOP " + b"x" * 200), 1.0)
    assert fact.evidence["text"] == "STOP " + "x" * 155
    learner.observe("acme", deliver(build_udh(1, 2, 1) + b"ST", esm=0x40), 1.0)
    (fact,) = learner.observe("acme", deliver(build_udh(1, 2, 2) + b"OP", esm=0x40), 1.0)
    assert "incomplete" not in fact.evidence


def test_every_set_that_is_judged_at_once_teaches():
    learner = Learner(LearnerSettings(default_region="CN", reassembly_timeout_s=10.0))
    learner.observe("acme", deliver(build_udh(1, 2, 1) + b"T", esm=0x40), 1.0)
    learner.observe("beta", deliver(build_udh(2, 2, 1) + b"TD", source="8613800000002", to="95555", esm=0x40), 2.0)
    facts = learner.expire(20.0)  # both time out together
    assert [(f.account, f.number, f.sender, f.keyword) for f in facts] == [
        ("acme", A, "10690000", "t"), ("beta", 8613800000002, "95555", "td")]
    learner.reassembly.max_sets = 1  # the oldest is judged when a new set would be one too many
    learner.observe("acme", deliver(build_udh(3, 2, 1) + b"N", esm=0x40), 30.0)
    facts = learner.observe("acme", deliver(build_udh(4, 2, 1) + b"R", source="8613800000002", esm=0x40), 31.0)
    assert [(f.number, f.keyword) for f in facts] == [(A, "n")]


def test_delivered_receipts_are_facts_only_when_deliveries_are_counted():
    text_only = b"id:1 sub:001 dlvrd:001 submit date:2612011200 done date:2612011201 stat:DELIVRD err:000"
    tlv_only = [Tlv(TlvTag.RECEIPTED_MESSAGE_ID, b"1\0"), Tlv(TlvTag.MESSAGE_STATE, b"\x02")]
    off = Learner(SETTINGS)
    on = Learner(LearnerSettings(default_region="CN", count_deliveries=True))
    for pdu in (deliver(text_only, esm=0x04), deliver(b"id:1 stat:delivered", esm=0x04, tlvs=tlv_only)):
        assert off.observe("acme", pdu, 1.0) == []
        assert kinds(on.observe("acme", pdu, 1.0)) == [("delivered", A, "", "DELIVRD")]
    # the TLV wins over the text: undeliverable, whatever the text says
    undelivered = [Tlv(TlvTag.RECEIPTED_MESSAGE_ID, b"1\0"), Tlv(TlvTag.MESSAGE_STATE, b"\x05")]
    assert on.observe("acme", deliver(text_only, esm=0x04, tlvs=undelivered), 1.0) == []


def test_a_receipt_code_may_come_from_the_network_error_code_tlv():
    learner = Learner(LearnerSettings(default_region="CN", codes=ReceiptCodes.of(dead=["3:1"])))
    tlvs = [Tlv(TlvTag.RECEIPTED_MESSAGE_ID, b"1\0"), Tlv(TlvTag.MESSAGE_STATE, b"\x05"),
            Tlv(TlvTag.NETWORK_ERROR_CODE, b"\x03\x00\x01")]
    (fact,) = learner.observe("acme", deliver(b"", esm=0x04, tlvs=tlvs), 1.0)
    assert (fact.kind, fact.number, fact.sender, fact.keyword) == (DEAD, A, "", "3:1")
