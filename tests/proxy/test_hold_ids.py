"""The hold queue's id work, without sockets: receipts of released messages get the proxy id (in the TLV and in
the text, whichever form the SMSC wrote the id in), nothing else is touched; query_sm is translated both ways."""

from __future__ import annotations

from smppguard.proxy.hold_ids import IdMap, Translated
from smppguard.proxy.holds import _groups
from smppguard.smpp.commands import CommandId
from smppguard.smpp.fields import Tlv, TlvTag, encode_body, parse_body, tlv_value
from smppguard.smpp.pdu import Pdu, build, from_bytes
from smppguard.smpp.receipt import format_receipt
from smppguard.store.holds import HeldRow

PROXY_ID = "0123456789abcdef"


def queue() -> IdMap:
    q = IdMap()
    q.remember("acme", "1f4", PROXY_ID, 1e12)  # the SMSC's id, in hex
    return q


def receipt(message_id: str, tlv_id: str | None = None, esm_class: int = 0x04, payload: bool = False) -> Pdu:
    text = format_receipt(message_id, "DELIVRD", submit_date="2611272300", done_date="2611272301")
    tlvs = [Tlv(TlvTag.RECEIPTED_MESSAGE_ID, tlv_id.encode() + b"\0")] if tlv_id else []
    if payload:
        tlvs.append(Tlv(TlvTag.MESSAGE_PAYLOAD, text))
    body = encode_body(CommandId.DELIVER_SM, source_addr="8613800138000", destination_addr="ACME",
                       esm_class=esm_class, short_message=b"" if payload else text, tlvs=tlvs)
    return from_bytes(build(CommandId.DELIVER_SM, 7, body))


def fields(pdu: Pdu) -> dict:
    return parse_body(pdu.command_id, pdu.body)


def test_a_receipt_with_the_tlv_and_the_text_gets_the_proxy_id_in_both():
    got = queue().rewrite_receipt(receipt("1f4", "1f4"), "acme")
    f = fields(got)
    assert tlv_value(f["tlvs"], TlvTag.RECEIPTED_MESSAGE_ID) == PROXY_ID.encode() + b"\0"
    assert f["short_message"].startswith(f"id:{PROXY_ID} sub:001".encode())
    assert got.sequence == 7 and f["source_addr"] == "8613800138000"


def test_a_text_only_receipt_with_the_id_in_decimal_is_found_too():
    f = fields(queue().rewrite_receipt(receipt("500"), "acme"))  # 0x1f4 == 500
    assert f["short_message"].startswith(f"id:{PROXY_ID} ".encode())
    f = fields(queue().rewrite_receipt(receipt("500", payload=True), "acme"))
    assert tlv_value(f["tlvs"], TlvTag.MESSAGE_PAYLOAD).startswith(f"id:{PROXY_ID} ".encode())


def test_the_rewrite_changes_the_ids_and_nothing_else():
    """The receipt's other TLVs (its state, the network's error) and its payload's text around the id stay as
    the SMSC wrote them, in their order; the PDU keeps its sequence and status."""
    extra = [Tlv(TlvTag.MESSAGE_STATE, b"\x02"), Tlv(TlvTag.NETWORK_ERROR_CODE, b"\x03\x00\x01")]
    for payload in (False, True):
        original = receipt("1f4", "1f4", payload=payload)
        f = fields(original)
        body = encode_body(CommandId.DELIVER_SM, {**f, "tlvs": [*f["tlvs"], *extra]})
        got = fields(queue().rewrite_receipt(from_bytes(build(CommandId.DELIVER_SM, 7, body)), "acme"))
        text = format_receipt(PROXY_ID, "DELIVRD", submit_date="2611272300", done_date="2611272301")
        expected = [Tlv(TlvTag.RECEIPTED_MESSAGE_ID, PROXY_ID.encode() + b"\0")]
        if payload:
            expected.append(Tlv(TlvTag.MESSAGE_PAYLOAD, text))
        assert [(t[0], t[1]) for t in got["tlvs"]] == [(t[0], t[1]) for t in [*expected, *extra]], payload
        assert got["short_message"] == (b"" if payload else text)


def test_a_receipt_naming_the_message_only_in_its_tlv_gets_the_proxy_id_there():
    text = b"your message was delivered"
    body = encode_body(CommandId.DELIVER_SM, source_addr="8613800138000", destination_addr="ACME", esm_class=0x04,
                       short_message=text, tlvs=[Tlv(TlvTag.RECEIPTED_MESSAGE_ID, b"1f4\0")])
    f = fields(queue().rewrite_receipt(from_bytes(build(CommandId.DELIVER_SM, 7, body)), "acme"))
    assert tlv_value(f["tlvs"], TlvTag.RECEIPTED_MESSAGE_ID) == PROXY_ID.encode() + b"\0"
    assert f["short_message"] == text


def test_an_unknown_id_in_the_tlv_does_not_hide_a_known_one_in_the_text():
    f = fields(queue().rewrite_receipt(receipt("1f4", "77"), "acme"))
    assert f["short_message"].startswith(f"id:{PROXY_ID} ".encode())


def test_ids_are_found_whichever_way_round_the_smsc_writes_them():
    """The SMSC answered with one form and writes its receipt with the other: decimal then hex, upper-case hex
    then decimal."""
    for answered, in_receipt in (("500", "1f4"), ("500", "1F4"), ("1F4", "500"), ("1f4", "500"),
                                 ("1280", "500")):  # hex written with digits only: 0x500 == 1280
        q = IdMap()
        q.remember("acme", answered, PROXY_ID, 1e12)
        f = fields(q.rewrite_receipt(receipt(in_receipt), "acme"))
        assert f["short_message"].startswith(f"id:{PROXY_ID} ".encode()), (answered, in_receipt)
    q = IdMap()
    q.remember("acme", "501", PROXY_ID, 1e12)  # another number: no match in any form
    assert q.rewrite_receipt(receipt("1f4"), "acme").body == receipt("1f4").body


def test_anything_else_passes_untouched():
    q = queue()
    for pdu, account in ((receipt("999", "999"), "acme"),  # not a released message
                         (receipt("1f4", "1f4"), "other"),  # another account's id space
                         (receipt("1f4", "1f4", esm_class=0), "acme")):  # an MO that looks like a receipt
        assert q.rewrite_receipt(pdu, account) is pdu


def test_a_query_for_a_released_message_goes_with_the_smsc_id_and_comes_back_with_the_proxy_id():
    q = queue()
    body = encode_body(CommandId.QUERY_SM, message_id=PROXY_ID, source_addr="ACME")
    pdu = from_bytes(build(CommandId.QUERY_SM, 3, body))
    raw, context = q.translate(pdu, parse_body(CommandId.QUERY_SM, body), "acme")
    assert parse_body(CommandId.QUERY_SM, raw[16:])["message_id"] == "1f4"
    assert q.translate(pdu, parse_body(CommandId.QUERY_SM, body), "other") is None
    resp = from_bytes(build(CommandId.QUERY_SM_RESP, 9, encode_body(CommandId.QUERY_SM_RESP, message_id="1f4",
                                                                    final_date="", message_state=2, error_code=0)))
    back = parse_body(CommandId.QUERY_SM_RESP, IdMap.untranslate(context, resp)[16:])
    assert (back["message_id"], back["message_state"]) == (PROXY_ID, 2)
    assert isinstance(context, Translated)


def test_groups_keep_the_parts_of_a_message_together_in_part_order():
    def r(seq, grp="", part=1):
        return HeldRow(seq, str(seq), "acme", "", "", None, 4, b"", grp, part, 3, 0, 0, 0, False)
    rows = [r(1), r(2, "g", 2), r(3), r(4, "g", 1), r(5, "g", 3)]
    assert [[x.seq for x in g] for g in _groups(rows)] == [[1], [4, 2, 5], [3]]


def test_maps_are_forgotten_when_they_expire_and_past_the_memory_bound(monkeypatch):
    import smppguard.proxy.hold_ids as hold_ids

    q = IdMap()
    q.remember("acme", "a", "P1", 100.0)
    q.remember("acme", "b", "P2", 200.0)
    q.forget(150.0)
    assert len(q) == 1 and q._find("acme", "a") is None and q._find("acme", "b") == "P2"
    monkeypatch.setattr(hold_ids, "MAX_MAPPED", 2)
    q.remember("acme", "c", "P3", 300.0)
    q.remember("acme", "d", "P4", 400.0)  # a third: the oldest goes
    assert [q._find("acme", x) for x in "bcd"] == [None, "P3", "P4"]
