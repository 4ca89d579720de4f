"""Screening without sockets: a sender's PDU in, Forward / Answer / Hold out, and what it counts."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from smppguard.hooks import Decided, Hooks
from smppguard.policy import load_policy
from smppguard.policy.model import ALLOW, Action, Index
from smppguard.proxy.screening import (
    CONCAT_TTL_S,
    Answer,
    ConcatEntry,
    Forward,
    Hold,
    MultiContext,
    Screening,
    Send,
    smpp_time,
)
from smppguard.smpp.commands import CommandId
from smppguard.smpp.concat import build_udh
from smppguard.smpp.fields import DistributionList, SmeDest, UnsuccessSme, encode_body, parse_body
from smppguard.smpp.pdu import build, from_bytes
from smppguard.smpp.status import Status

SUB = None


def test_screening_forgets_concatenated_messages_whose_parts_never_came():
    s = Screening(load_policy(), Index())
    s._remember_concat(("a", "S", "1", 7, 3), ConcatEntry(ALLOW, None, 100.0 + CONCAT_TTL_S, SUB), 100.0)
    assert s._maybe_concat(("a", "S", "1", 7, 3), 150.0) is not None
    later = 100.0 + CONCAT_TTL_S + 61
    s._remember_concat(("a", "S", "2", 8, 2), ConcatEntry(ALLOW, None, later + CONCAT_TTL_S, SUB), later)
    assert list(s.concat) == [("a", "S", "2", 8, 2)]  # the stale one went in the sweep, unasked for


# --- screen(): the outcome, what counts, what the hooks hear --------------------------------------------------



NOON = datetime(2026, 11, 27, 12, 0, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()
NIGHT = datetime(2026, 11, 27, 23, 0, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()
CN = {"default_region": "CN", "fallback_zone": "Asia/Shanghai"}
A, B = 8613800000001, 8613900000001


class Heard:
    def __init__(self):
        self.events: list[Decided] = []

    def decided(self, e):
        self.events.append(e)


def screening_at(now: float, rules: dict | None = None, index: Index | None = None, sends=None,
                 class_rules: list | None = None):
    heard = Heard()
    s = Screening(load_policy(CN, rules or {}, class_rules), index if index is not None else Index(), clock=lambda: now,
                  hooks=Hooks([heard]), record_send=(lambda *row: sends.append(row)) if sends is not None else None)
    return s, heard


def submit(dest: str = "8613800000001", seq: int = 1, **fields):
    fields.setdefault("short_message", b"sale")
    return from_bytes(build(CommandId.SUBMIT_SM, seq, encode_body(CommandId.SUBMIT_SM, source_addr="ACME",
                                                                  destination_addr=dest, **fields)))


def data_sm(dest: str = "8613800000001"):
    return from_bytes(build(CommandId.DATA_SM, 1, encode_body(CommandId.DATA_SM, source_addr="ACME",
                                                              destination_addr=dest, tlvs=[(0x0424, b"sale")])))


def resp(command_id: int, status: int = 0, body: bytes = b"id\0"):
    return from_bytes(build(command_id, 1, body, status))


def test_an_allowed_submit_is_forwarded_as_it_came_and_counts_once_the_smsc_takes_it():
    sends = []
    s, heard = screening_at(NOON, sends=sends)
    pdu = submit()
    out = s.screen(pdu, "acme")
    assert type(out) is Forward and out.raw == pdu.raw and type(out.context) is Send
    assert s.index.history == {A: (NOON,)} and sends == []  # counted in flight, saved once accepted
    assert s.settle(out.context, resp(CommandId.SUBMIT_SM_RESP)) == resp(CommandId.SUBMIT_SM_RESP).raw
    assert sends == [(A, "acme", NOON)]
    [e] = heard.events
    assert (e.account, e.sender, e.destination, e.verdict.action, e.repeat) == (
        "acme", "ACME", "8613800000001", Action.ALLOW, False)


def test_a_send_the_smsc_refuses_or_never_answers_does_not_count():
    s, _ = screening_at(NOON)
    out = s.screen(submit(), "acme")
    s.settle(out.context, resp(CommandId.SUBMIT_SM_RESP, Status.RTHROTTLED, b""))
    assert s.index.history == {}
    out = s.screen(submit(), "acme")
    s.failed(out.context)
    assert s.index.history == {}


def test_a_refused_submit_is_answered_with_the_rules_status():
    s, heard = screening_at(NOON, index=Index(blacklist={B}))
    assert s.screen(submit("8613900000001"), "acme") == Answer(Status.RSUBMITFAIL)
    assert heard.events[0].verdict.rule == "blacklist" and s.index.history == {}


def test_quiet_hours_hold_and_schedule():
    s, _ = screening_at(NIGHT)
    out = s.screen(submit(), "acme")
    assert type(out) is Hold and out.status == Status.RTHROTTLED
    assert out.until == datetime(2026, 11, 28, 9, 0, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()
    assert s.index.history == {}
    s, _ = screening_at(NIGHT, {"quiet_hours": {"action": "schedule"}})
    out = s.screen(submit(), "acme")
    assert type(out) is Forward
    assert parse_body(CommandId.SUBMIT_SM, out.raw[16:])["schedule_delivery_time"] == "261128010000000+"
    assert s.index.history == {A: (NIGHT,)}  # scheduled is sent: it counts


def test_a_data_sm_quiet_hours_would_schedule_is_held_and_counts_nothing():
    s, _ = screening_at(NIGHT, {"quiet_hours": {"action": "schedule"}})
    out = s.screen(data_sm(), "acme")
    assert type(out) is Hold and out.status == Status.RTHROTTLED
    assert s.index.history == {}


def test_the_parts_of_a_long_message_share_the_first_verdict_and_count_once():
    s, heard = screening_at(NOON)
    parts = [submit(seq=i, esm_class=0x40, short_message=build_udh(7, 3, i) + b"part") for i in (1, 2, 3)]
    outs = [s.screen(p, "acme") for p in parts]
    assert all(type(o) is Forward for o in outs)
    assert len({id(o.context) for o in outs}) == 1 and outs[0].context.outstanding == 3
    assert s.index.history == {A: (NOON,)}
    assert [e.repeat for e in heard.events] == [False, True, True]
    assert s.concat == {}  # the last part ends the message


def test_a_forbidden_word_completed_by_a_later_part_refuses_that_part_and_the_ones_after_it():
    """The content rule reads the text as the parts join: "cas" + "ino" makes the forbidden word, so the second
    part is refused and the third with it; the first is gone already. The hooks hear the new verdict once, for
    the part that made it, and the third as a repeat of it."""
    s, heard = screening_at(NOON, {"content": {"forbidden": ["casino"]}})
    texts = (b"Big cas", b"ino night", b" at 8")
    parts = [submit(seq=i, esm_class=0x40, short_message=build_udh(9, 3, i) + t) for i, t in enumerate(texts, 1)]
    outs = [s.screen(p, "acme") for p in parts]
    assert type(outs[0]) is Forward
    assert outs[1:] == [Answer(Status.RSUBMITFAIL), Answer(Status.RSUBMITFAIL)]
    first, refused, third = heard.events
    assert (first.verdict.allowed, refused.verdict.rule, refused.repeat, third.verdict.rule, third.repeat) == (
        True, "content", False, "content", True)
    assert (refused.command_id, refused.account, refused.sender, refused.destination) == (
        CommandId.SUBMIT_SM, "acme", "ACME", "8613800000001")
    assert refused.sub.text == "Big casino night"
    assert (third.command_id, third.destination) == (CommandId.SUBMIT_SM, "8613800000001")
    assert s.concat == {}


def test_the_later_parts_of_a_held_message_are_held_with_it():
    s, _ = screening_at(NIGHT, {"content": {"forbidden": ["casino"]}, "quiet_hours": {"action": "hold"}})
    parts = [submit(seq=i, esm_class=0x40, short_message=build_udh(9, 2, i) + t)
             for i, t in enumerate((b"Big cas", b"ino night"), 1)]
    outs = [s.screen(p, "acme") for p in parts]
    assert [type(o) for o in outs] == [Hold, Hold]
    assert outs[0].group[0] == outs[1].group[0] and [o.group[1:] for o in outs] == [(1, 2), (2, 2)]


def test_submit_multi_screens_each_destination_and_refuses_a_distribution_list():
    s, heard = screening_at(NOON, index=Index(blacklist={B}))
    dests = [SmeDest(1, 1, "8613800000001"), SmeDest(1, 1, "8613900000001"), DistributionList("vip")]
    pdu = from_bytes(build(CommandId.SUBMIT_MULTI, 1, encode_body(CommandId.SUBMIT_MULTI, source_addr="ACME",
                                                                  dest_addresses=dests, short_message=b"x")))
    out = s.screen(pdu, "acme")
    assert type(out) is Forward and type(out.context) is MultiContext
    assert parse_body(CommandId.SUBMIT_MULTI, out.raw[16:])["dest_addresses"] == [dests[0]]
    assert [(u.address, u.status) for u in out.context.refused] == [("8613900000001", Status.RSUBMITFAIL),
                                                                   ("vip", Status.RCNTSUBDL)]
    lists = [e for e in heard.events if e.sub is None]
    assert [(e.destination, e.verdict.rule) for e in lists] == [("list:vip", "distribution_lists")]
    assert lists[0].verdict.reason == ("distribution list: its members cannot be screened "
                                       "([policy] distribution_lists = \"refuse\")")
    numbers = [e for e in heard.events if e.sub is not None]
    assert [(e.at, e.command_id, e.account, e.sender, e.destination, e.verdict.rule) for e in numbers] == [
        (NOON, CommandId.SUBMIT_MULTI, "acme", "ACME", "8613800000001", ""),  # allowed
        (NOON, CommandId.SUBMIT_MULTI, "acme", "ACME", "8613900000001", "blacklist")]
    merged = s.settle(out.context, resp(CommandId.SUBMIT_MULTI_RESP, body=encode_body(
        CommandId.SUBMIT_MULTI_RESP, message_id="m", unsuccess_sme=[])))
    assert [u.address for u in parse_body(CommandId.SUBMIT_MULTI_RESP, merged[16:])["unsuccess_sme"]] == [
        "8613900000001", "vip"]


def test_a_submit_multi_answer_that_cannot_be_merged_is_relayed_as_it_came():
    """The destinations refused here are added only to an OK the proxy can read: an error status (nothing was
    sent) or a body it cannot parse goes to the sender unchanged, and nothing is counted."""
    sends = []
    s, _ = screening_at(NOON, index=Index(blacklist={B}), sends=sends)
    dests = [SmeDest(1, 1, "8613800000001"), SmeDest(1, 1, "8613900000001")]
    multi = from_bytes(build(CommandId.SUBMIT_MULTI, 1, encode_body(CommandId.SUBMIT_MULTI, source_addr="ACME",
                                                                    dest_addresses=dests, short_message=b"x")))
    readable = encode_body(CommandId.SUBMIT_MULTI_RESP, message_id="", unsuccess_sme=[])
    for answer in (resp(CommandId.SUBMIT_MULTI_RESP, Status.RTHROTTLED, b""),
                   resp(CommandId.SUBMIT_MULTI_RESP, Status.RTHROTTLED, readable),  # an error with a body
                   resp(CommandId.SUBMIT_MULTI_RESP, Status.ROK, b"no terminating NUL")):
        out = s.screen(multi, "acme")
        assert out.context.refused
        assert s.settle(out.context, answer) == answer.raw
    assert sends == [(A, "acme", NOON)]  # only the OK counts, even unreadable


def test_submit_multi_text_is_read_for_the_content_rule_past_a_udh_and_from_message_payload():
    s, _ = screening_at(NOON, {"content": {"forbidden": ["casino"]}})
    dests = [SmeDest(1, 1, "8613800000001"), SmeDest(1, 1, "8613900000001")]

    def multi(**fields):
        return from_bytes(build(CommandId.SUBMIT_MULTI, 1, encode_body(CommandId.SUBMIT_MULTI, source_addr="ACME",
                                                                      dest_addresses=dests, **fields)))
    for pdu in (multi(esm_class=0x40, short_message=build_udh(3, 2, 1) + b"casino night"),
                multi(short_message=b"", tlvs=[(0x0424, b"casino night")])):
        out = s.screen(pdu, "acme")
        assert type(out) is Answer and out.status == Status.ROK  # every destination refused: answered here
        assert [(u.address, u.status) for u in parse_body(CommandId.SUBMIT_MULTI_RESP, out.body)[
            "unsuccess_sme"]] == [(d.address, Status.RSUBMITFAIL) for d in dests]
    assert type(s.screen(multi(short_message=b"winter sale"), "acme")) is Forward


def test_the_text_of_a_submit_sm_or_data_sm_is_read_from_message_payload_when_short_message_is_empty():
    s, _ = screening_at(NOON, {"content": {"forbidden": ["casino"]}})

    numbers = iter(range(8613800000001, 8613800000100))  # a recipient each: the frequency cap stays out of it

    def pdu(command_id, text: bytes, payload: bytes | None = None):
        fields = {"short_message": text} if command_id == CommandId.SUBMIT_SM else {}
        tlvs = [(0x0424, payload)] if payload is not None else []
        return from_bytes(build(command_id, 1, encode_body(command_id, source_addr="ACME",
                                                           destination_addr=str(next(numbers)), tlvs=tlvs, **fields)))
    for command_id in (CommandId.SUBMIT_SM, CommandId.DATA_SM):
        assert s.screen(pdu(command_id, b"", b"casino night"), "acme") == Answer(Status.RSUBMITFAIL)
        assert type(s.screen(pdu(command_id, b"", b"winter sale"), "acme")) is Forward
    # short_message, when it has the text, is what is read
    assert s.screen(pdu(CommandId.SUBMIT_SM, b"casino night"), "acme") == Answer(Status.RSUBMITFAIL)


def test_a_submit_multi_with_every_destination_allowed_goes_as_it_came_and_counts_what_the_smsc_takes():
    s, _ = screening_at(NOON)
    dests = [SmeDest(1, 1, "8613800000001"), SmeDest(1, 1, "8613900000001")]
    pdu = from_bytes(build(CommandId.SUBMIT_MULTI, 1, encode_body(CommandId.SUBMIT_MULTI, source_addr="ACME",
                                                                  dest_addresses=dests, short_message=b"x")))
    out = s.screen(pdu, "acme")
    assert type(out) is Forward and out.raw == pdu.raw
    assert sorted(s.index.history) == [A, B]  # reserved as they go
    s.settle(out.context, resp(CommandId.SUBMIT_MULTI_RESP, Status.RTHROTTLED, b""))
    assert s.index.history == {}  # the SMSC took neither: neither counts
    out = s.screen(pdu, "acme")
    assert sorted(s.index.history) == [A, B]
    s.failed(out.context)  # no answer at all (timed out, the SMSC gone): neither counts either
    assert s.index.history == {}


def test_a_distribution_list_passes_when_configured_beside_the_numbers_allowed():
    s = Screening(load_policy({**CN, "distribution_lists": "pass"}), Index(blacklist={B}), clock=lambda: NOON)
    dests = [SmeDest(1, 1, "8613800000001"), SmeDest(1, 1, "8613900000001"), DistributionList("vip")]
    pdu = from_bytes(build(CommandId.SUBMIT_MULTI, 1, encode_body(CommandId.SUBMIT_MULTI, source_addr="ACME",
                                                                  dest_addresses=dests, short_message=b"x")))
    out = s.screen(pdu, "acme")
    assert parse_body(CommandId.SUBMIT_MULTI, out.raw[16:])["dest_addresses"] == [dests[0], dests[2]]
    assert [u.address for u in out.context.refused] == ["8613900000001"]


def test_the_destinations_after_a_refused_distribution_list_are_still_screened_each_by_its_own_ton():
    """A list first: it is refused with TON and NPI unknown (unsuccess_sme has no form for a list) and the
    destinations after it are screened as usual, each number read by its own TON: 447911123456 with TON 1 is a
    British mobile (at 04:00 in London: quiet hours), where read as a Chinese national number it is none."""
    s, heard = screening_at(NOON)
    dests = [DistributionList("vip"), SmeDest(1, 1, "8613800000001"), SmeDest(1, 9, "447911123456")]
    pdu = from_bytes(build(CommandId.SUBMIT_MULTI, 1, encode_body(CommandId.SUBMIT_MULTI, source_addr="ACME",
                                                                  dest_addresses=dests, short_message=b"x")))
    out = s.screen(pdu, "acme")
    assert parse_body(CommandId.SUBMIT_MULTI, out.raw[16:])["dest_addresses"] == [dests[1]]
    assert [tuple(u) for u in out.context.refused] == [(0, 0, "vip", Status.RCNTSUBDL),
                                                      (1, 9, "447911123456", Status.RTHROTTLED)]
    assert [e.verdict.rule for e in heard.events] == ["distribution_lists", "", "quiet_hours"]
    assert out.context.reservations[0][1].outstanding == 1  # one answer of the SMSC settles it


def test_submit_multi_text_is_decoded_with_the_configured_default_alphabet():
    """[text] default_codec = "latin-1": a submit_multi's text, like a submit_sm's, is read with it."""
    s = Screening(load_policy(CN, {"content": {"forbidden": ["café"]}}), Index(), clock=lambda: NOON,
                  text_codecs=("latin-1", "ascii"))
    dests = [SmeDest(1, 1, "8613800000001")]
    out = s.screen(from_bytes(build(CommandId.SUBMIT_MULTI, 1, encode_body(
        CommandId.SUBMIT_MULTI, source_addr="ACME", dest_addresses=dests, short_message=b"caf\xe9 sale"))), "acme")
    assert type(out) is Answer
    assert [u.address for u in parse_body(CommandId.SUBMIT_MULTI_RESP, out.body)["unsuccess_sme"]] == [
        "8613800000001"]


class RefusalsOnly(Heard):
    ignores_allows = True  # as the audit log: the hot path builds no event for an allowed message


def test_an_observer_of_refusals_only_hears_the_refused_destinations_and_parts():
    heard = RefusalsOnly()
    s = Screening(load_policy(CN, {"content": {"forbidden": ["casino"]}}), Index(blacklist={B}),
                  clock=lambda: NOON, hooks=Hooks([heard]))
    dests = [SmeDest(1, 1, "8613800000001"), SmeDest(1, 1, "8613900000001")]
    s.screen(from_bytes(build(CommandId.SUBMIT_MULTI, 1, encode_body(
        CommandId.SUBMIT_MULTI, source_addr="ACME", dest_addresses=dests, short_message=b"x"))), "acme")
    assert [(e.destination, e.verdict.rule) for e in heard.events] == [("8613900000001", "blacklist")]
    heard.events.clear()
    for i, text in enumerate((b"Big cas", b"ino night", b" at 8"), 1):
        s.screen(submit("8613800000077", seq=i, esm_class=0x40, short_message=build_udh(4, 3, i) + text), "acme")
    assert [(e.verdict.rule, e.repeat) for e in heard.events] == [("content", False), ("content", True)]
    heard.events.clear()
    for i, text in enumerate((b"Winter ", b"sale"), 1):  # allowed, every part: nothing to hear
        s.screen(submit("8613800000078", seq=i, esm_class=0x40, short_message=build_udh(5, 2, i) + text), "acme")
    assert heard.events == []


def test_submit_multi_with_every_destination_refused_is_answered_here():
    s, _ = screening_at(NOON, index=Index(blacklist={B}))
    pdu = from_bytes(build(CommandId.SUBMIT_MULTI, 1, encode_body(
        CommandId.SUBMIT_MULTI, source_addr="ACME", dest_addresses=[SmeDest(1, 1, "8613900000001")],
        short_message=b"x")))
    out = s.screen(pdu, "acme")
    assert type(out) is Answer and out.status == Status.ROK
    assert parse_body(CommandId.SUBMIT_MULTI_RESP, out.body) == {
        "message_id": "", "unsuccess_sme": [UnsuccessSme(1, 1, "8613900000001", Status.RSUBMITFAIL)], "tlvs": []}


def test_smpp_time_is_utc_in_the_absolute_format():
    assert smpp_time(datetime(2026, 11, 28, 1, 2, 3, tzinfo=ZoneInfo("UTC")).timestamp()) == "261128010203000+"


# --- screen_replace(): a replace_sm's new text through the rules that read text ----------------------------------

def replace(text: bytes = b"", payload: bytes | None = None, source_addr: str = "ACME"):
    tlvs = [(0x0424, payload)] if payload is not None else []
    return from_bytes(build(CommandId.REPLACE_SM, 9, encode_body(CommandId.REPLACE_SM, message_id="3f9a0c4e5d6b7a81",
                                                                 source_addr=source_addr, short_message=text,
                                                                 tlvs=tlvs)))


def replace_screening(class_rules: list | None = None):
    return screening_at(NOON, {"content": {"forbidden": ["casino"]}}, class_rules=class_rules)


def test_a_replace_sms_new_text_is_refused_for_a_forbidden_word_and_the_hooks_hear_why():
    s, heard = replace_screening()
    assert s.screen_replace(replace(b"Visit our casino"), "acme") == Answer(Status.RSUBMITFAIL)
    [e] = heard.events
    assert (e.at, e.command_id, e.account, e.sender, e.destination) == (
        NOON, CommandId.REPLACE_SM, "acme", "ACME", "message 3f9a0c4e5d6b7a81")
    assert (e.verdict.rule, e.verdict.action, e.sub.text) == ("content", Action.REJECT, "Visit our casino")
    assert (e.sub.account, e.sub.sender, e.sub.traffic_class) == ("acme", "ACME", "marketing")
    assert s.screen_replace(replace(b"Winter sale"), "acme") is None
    assert len(heard.events) == 1


def test_a_replace_sms_text_is_read_from_message_payload_and_as_ucs2_too():
    s, _heard = replace_screening()
    assert s.screen_replace(replace(payload=b"casino night"), "acme") == Answer(Status.RSUBMITFAIL)
    assert s.screen_replace(replace(payload=b"winter sale"), "acme") is None
    assert s.screen_replace(replace("赌场 casino".encode("utf-16-be")), "acme") == Answer(Status.RSUBMITFAIL)
    assert s.screen_replace(replace("冬季促销".encode("utf-16-be")), "acme") is None


def test_a_replace_sm_is_judged_in_the_class_of_its_account_and_sender():
    """The content rule is for marketing: the same words from an account or a sender classed transactional
    pass."""
    s, _heard = replace_screening([{"name": "transactional", "system_id": ["bank"]},
                                   {"name": "transactional", "source_addr": ["OTP"]}])
    assert s.screen_replace(replace(b"casino"), "bank") is None
    assert s.screen_replace(replace(b"casino", source_addr="OTP"), "acme") is None
    assert s.screen_replace(replace(b"casino"), "acme") == Answer(Status.RSUBMITFAIL)
