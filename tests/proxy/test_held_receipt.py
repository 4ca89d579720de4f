"""The receipt the proxy makes for a held message it did not send (dropped by `queue drop`, expired): from the
recipient to the sender, naming the proxy's id, the state, when it was held and when it ended."""

from __future__ import annotations

import calendar

from smppguard.proxy.holds import held_receipt
from smppguard.smpp import CommandId
from smppguard.smpp.fields import encode_body, parse_body
from smppguard.smpp.receipt import parse_receipt
from smppguard.store.holds import HeldRow

HELD_AT = calendar.timegm((2026, 3, 1, 22, 15, 0))
NOW = calendar.timegm((2026, 3, 2, 8, 5, 0))


def row(pdu: bytes) -> HeldRow:
    return HeldRow(seq=1, id="0a1b2c3d4e5f6071", account="acme", sender="ACME", recipient="8613800138000",
                   number=8613800138000, command_id=CommandId.SUBMIT_SM, pdu=pdu, grp="", part=1, parts=1,
                   held_at=HELD_AT, release_at=NOW, expires_at=NOW + 86400, receipt=True)


def test_a_held_messages_receipt_answers_its_request_with_its_addresses_id_times_and_state():
    body = encode_body(CommandId.SUBMIT_SM, source_addr_ton=5, source_addr_npi=0, source_addr="ACME",
                       dest_addr_ton=1, dest_addr_npi=1, destination_addr="8613800138000", registered_delivery=1,
                       short_message=b"Sale tonight only")
    got = parse_body(CommandId.DELIVER_SM, held_receipt(row(b"\0" * 16 + body), "EXPIRED", NOW, "062"))
    assert (got["source_addr_ton"], got["source_addr_npi"], got["source_addr"]) == (1, 1, "8613800138000")
    assert (got["dest_addr_ton"], got["dest_addr_npi"], got["destination_addr"]) == (5, 0, "ACME")
    receipt = parse_receipt(got["short_message"], got["tlvs"])
    assert (receipt.message_id, receipt.stat, receipt.err) == ("0a1b2c3d4e5f6071", "EXPIRED", "062")
    assert (receipt.submit_date, receipt.done_date, receipt.text) == ("2603012215", "2603020805", "Sale tonight only")
    assert b"id:0a1b2c3d4e5f6071 " in got["short_message"]  # the text names the id as the TLV does


def test_a_held_row_that_cannot_be_read_still_gets_its_receipt_from_its_sender_and_recipient():
    got = parse_body(CommandId.DELIVER_SM, held_receipt(row(b"\0" * 16 + b"\x01"), "DELETED", NOW))
    assert (got["source_addr"], got["destination_addr"]) == ("8613800138000", "ACME")
    receipt = parse_receipt(got["short_message"], got["tlvs"])
    assert (receipt.message_id, receipt.stat, receipt.err) == ("0a1b2c3d4e5f6071", "DELETED", "000")
    assert (receipt.submit_date, receipt.done_date) == ("2603012215", "2603020805")
