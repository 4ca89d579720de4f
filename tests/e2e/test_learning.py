"""The deliver path learns: replies opt out, opt in and confirm consent; receipts mark dead and blacklisted
numbers. Through the running proxy, the simulator (or the raw SMSC) sending, smpplib as the sender, real SQLite.

Every test waits for the Index to have caught up with the change log before it submits, so a refusal it sees
is the learned fact at work, and an allow is not a fact that has not arrived yet.
"""

from __future__ import annotations

import pytest
import smpplib.smpp

from helpers import CN_ANY_HOUR, Stack, make_config, rows, smpplib_client, wait_for
from rawsmsc import DELIVER_SM, RESP, RawSmsc, deliver_sm_body
from smppguard.smpp.commands import CommandId
from smppguard.smpp.concat import build_udh
from smppguard.smpp.fields import Tlv, TlvTag, encode_body
from smppguard.smpp.status import Status
from smppguard.store import lists
from smppguard.store.db import connect

POLICY = CN_ANY_HOUR + """
[rules.frequency]
enabled = false
"""
A, B = 8613800000001, 8613800000002
SENDER, OTHER_SENDER = "10690000", "10690001"
MARKETING = "新品上市, 回T退订"


def config(tmp_path, policy: str = POLICY, **tables):
    return make_config(policy, store={"path": str(tmp_path / "guard.db")},
                       session={"response_timeout": 5.0, "enquire_link_interval": 30.0}, **tables)




def mo_body(number: int, to: str, payload: bytes, data_coding: int = 0, esm_class: int = 0, tlvs=()) -> bytes:
    return encode_body(CommandId.DELIVER_SM, source_addr_ton=1, source_addr_npi=1, source_addr=str(number),
                       dest_addr_ton=0, dest_addr_npi=0, destination_addr=to, esm_class=esm_class,
                       data_coding=data_coding, short_message=payload, tlvs=list(tlvs))


class Sender:
    """A transceiver bind of account acme through the proxy, answering every deliver_sm it is sent."""

    def __init__(self, stack: Stack, kind: str = "transceiver"):
        self.client = smpplib_client(stack.address)
        getattr(self.client, f"bind_{kind}")(system_id="acme", password="pw")
        self.delivered: list = []

    def submit(self, source: str, number: int, text: str = MARKETING) -> int:
        """A marketing submit_sm from `source` to `number`; returns its status. A deliver_sm read meanwhile is
        kept and answered."""
        pdu = smpplib.smpp.make_pdu("submit_sm", client=self.client, source_addr_ton=0, source_addr=source,
                                    dest_addr_ton=1, dest_addr_npi=1, destination_addr=str(number),
                                    short_message=text.encode("utf-16-be"), data_coding=8)
        self.client.send_pdu(pdu)
        while True:
            got = self.client.read_pdu()
            if got.command == "deliver_sm":
                self.delivered.append(got)
                self.client._message_received(got)  # deliver_sm_resp
            elif got.command == "enquire_link":
                self.client._enquire_link_received(got)
            elif got.command == "submit_sm_resp" and got.sequence == pdu.sequence:
                return got.status

    def read_deliver(self):
        got = self.client.read_pdu()
        assert got.command == "deliver_sm", got.command
        self.delivered.append(got)
        self.client._message_received(got)
        return got

    def close(self) -> None:
        self.client.disconnect()


def caught_up(stack: Stack, path) -> None:
    """Wait until the daemon's Index has applied every change in the change log (the learned ones too)."""
    (last,) = rows(path, "SELECT COALESCE(MAX(id), 0) FROM changelog")[0]
    wait_for(lambda: stack.store.upkeep.index.change_id >= last, what="Index caught up with the change log")


def learned(path, number: int) -> list[tuple]:
    return rows(path, "SELECT scope, scope_key, source, keyword FROM optout WHERE number = ?", number)


UCS2, GSM = 0x08, 0x00


@pytest.mark.parametrize("parts, keyword", [
    pytest.param([("退订".encode("utf-16-be"), UCS2)], "退订", id="ucs2-tuiding"),
    pytest.param([(b"td", GSM)], "td", id="gsm-td"),
    pytest.param([("ＳＴＯＰ".encode("utf-16-be"), UCS2)], "stop", id="full-width-stop"),
    pytest.param([(build_udh(7, 2, 2) + b"OP", GSM), (build_udh(7, 2, 1) + b"ST", GSM)], "stop",
                 id="two-parts-second-first"),
])
def test_a_reply_opts_the_number_out_of_that_sender_only(tmp_path, parts, keyword):
    path = tmp_path / "guard.db"
    with Stack(config(tmp_path), store=True) as stack:
        sender = Sender(stack)
        try:
            assert sender.submit(SENDER, A) == Status.ROK  # before the reply: it passes
            for payload, dc in parts:
                esm = 0x40 if len(parts) > 1 else 0
                stack.call(lambda p=payload, d=dc, e=esm: stack.sim.deliver("acme", mo_body(A, SENDER, p, d, e)))
                sender.read_deliver()  # the reply still reaches the sender, unchanged
            assert wait_for(lambda: learned(path, A), what="opt-out") == [("sender", SENDER, "reply", keyword)]
            caught_up(stack, path)
            assert sender.submit(SENDER, A) == 0x45
            assert sender.submit(OTHER_SENDER, A) == Status.ROK  # another sender's message passes
            assert sender.submit(SENDER, B) == Status.ROK
        finally:
            sender.close()


def test_a_reply_that_only_contains_a_keyword_does_not_opt_out_in_exact_mode(tmp_path):
    path = tmp_path / "guard.db"
    with Stack(config(tmp_path), store=True) as stack:
        sender = Sender(stack)
        try:
            stack.call(lambda: stack.sim.deliver("acme", mo_body(A, SENDER, b"STOP PLEASE")))
            stack.call(lambda: stack.sim.deliver("acme", mo_body(B, SENDER, b"STOP")))  # behind it, a real one
            sender.read_deliver(), sender.read_deliver()
            wait_for(lambda: learned(path, B), what="B's opt-out")  # so A's reply has been judged too
            assert learned(path, A) == []
            caught_up(stack, path)
            assert sender.submit(SENDER, A) == Status.ROK
        finally:
            sender.close()


def test_start_lifts_an_opt_out_made_by_a_reply_but_not_a_typed_one(tmp_path):
    path = tmp_path / "guard.db"
    db = connect(str(path))
    lists.add_optouts(db, [(B, "sender", SENDER)], source="manual", actor="pytest")
    db.close()
    with Stack(config(tmp_path), store=True) as stack:
        sender = Sender(stack)
        try:
            stack.call(lambda: stack.sim.deliver("acme", mo_body(A, SENDER, b"T")))
            sender.read_deliver()
            wait_for(lambda: learned(path, A), what="opt-out")
            caught_up(stack, path)
            assert sender.submit(SENDER, A) == 0x45
            for n in (A, B):
                stack.call(lambda n=n: stack.sim.deliver("acme", mo_body(n, SENDER, b"start")))
                sender.read_deliver()
            wait_for(lambda: not learned(path, A), what="A opted in")
            caught_up(stack, path)
            assert sender.submit(SENDER, A) == Status.ROK
            assert learned(path, B) == [("sender", SENDER, "manual", "")]  # typed by a person: it stays
            assert sender.submit(SENDER, B) == 0x45
            (reason,) = rows(path, "SELECT reason FROM audit WHERE rule = 'optout' AND action = 'learned' "
                                   "AND reason LIKE 'opted in%'")[0]
            assert "'START' to 10690000" in reason
        finally:
            sender.close()


def test_yes_confirms_a_pending_consent(tmp_path):
    path = tmp_path / "guard.db"
    policy = POLICY + '\n[rules.consent]\nenabled = true\n'
    db = connect(str(path))
    lists.grant_consent(db, A, source="web form", actor="pytest")  # pending: double opt-in not yet confirmed
    lists.grant_consent(db, B, source="web form", actor="pytest")
    db.close()
    with Stack(config(tmp_path, policy), store=True) as stack:
        sender = Sender(stack)
        try:
            assert sender.submit(SENDER, A) == 0x45
            stack.call(lambda: stack.sim.deliver("acme", mo_body(A, SENDER, "是".encode("utf-16-be"), UCS2)))
            sender.read_deliver()
            wait_for(lambda: rows(path, "SELECT status FROM consent WHERE number = ?", A) == [("confirmed",)],
                     what="consent confirmed")
            caught_up(stack, path)
            assert sender.submit(SENDER, A) == Status.ROK
            assert sender.submit(SENDER, B) == 0x45  # B never confirmed
        finally:
            sender.close()


def test_a_receipt_that_says_the_number_does_not_exist_marks_it_dead(tmp_path):
    path = tmp_path / "guard.db"
    with Stack(config(tmp_path), store=True) as stack:
        sender = Sender(stack)
        try:
            text = b"id:0a1b sub:001 dlvrd:000 submit date:2612011200 done date:2612011201 stat:UNDELIV err:MK:0001"
            stack.call(lambda: stack.sim.deliver("acme", mo_body(A, SENDER, text, esm_class=0x04)))
            assert b"MK:0001" in sender.read_deliver().short_message
            wait_for(lambda: rows(path, "SELECT number FROM dead"), what="dead number")
            assert rows(path, "SELECT number FROM dead") == [(A,)]
            caught_up(stack, path)
            assert sender.submit(SENDER, A) == Status.RINVDSTADR
            assert sender.submit(SENDER, B) == Status.ROK
        finally:
            sender.close()


def test_a_carrier_blacklist_receipt_blacklists_and_suspended_ones_only_when_repeated(tmp_path):
    path = tmp_path / "guard.db"
    with Stack(config(tmp_path), store=True) as stack:
        sender = Sender(stack)
        try:
            def receipt(number, stat, i):
                tlvs = [Tlv(TlvTag.RECEIPTED_MESSAGE_ID, b"%d\0" % i), Tlv(TlvTag.MESSAGE_STATE, b"\x05")]
                return mo_body(number, SENDER, f"id:{i} stat:{stat} err:000".encode(), esm_class=0x04, tlvs=tlvs)

            stack.call(lambda: stack.sim.deliver("acme", receipt(A, "MBBLACK", 1)))
            for i in range(2):
                stack.call(lambda i=i: stack.sim.deliver("acme", receipt(B, "MK:0005", 10 + i)))
            for _ in range(3):
                sender.read_deliver()
            wait_for(lambda: rows(path, "SELECT number, source FROM blacklist"), what="blacklisted")
            assert rows(path, "SELECT number, source FROM blacklist") == [(A, "carrier")]
            wait_for(lambda: len(rows(path, "SELECT 1 FROM receipt_failure WHERE number = ?", B)) == 2,
                     what="2 failures counted")
            assert rows(path, "SELECT number FROM dead") == []  # suspended twice: not yet dead
            stack.call(lambda: stack.sim.deliver("acme", receipt(B, "MK:0005", 12)))
            sender.read_deliver()
            wait_for(lambda: rows(path, "SELECT number FROM dead"), what="dead after the third")
            assert rows(path, "SELECT number FROM dead") == [(B,)]
        finally:
            sender.close()


def test_an_mo_sent_while_no_receiver_is_bound_is_not_lost(tmp_path):
    """The sender has only a transmitter bind: the SMSC keeps the MO (the proxy opened only a transmitter bind
    upstream) and hands it over when a receiver binds; it reaches the sender then, and is learned."""
    path = tmp_path / "guard.db"
    with Stack(config(tmp_path), store=True) as stack:
        transmitter = Sender(stack, "transmitter")
        try:
            assert stack.call(lambda: stack.sim.inject_mo(str(A), SENDER, "TD", "acme")) is False  # kept
            receiver = Sender(stack, "receiver")
            try:
                assert receiver.read_deliver().short_message == b"TD"
            finally:
                receiver.close()
            wait_for(lambda: learned(path, A), what="opt-out")
            caught_up(stack, path)
            assert transmitter.submit(SENDER, A) == 0x45
        finally:
            transmitter.close()


def test_an_mo_written_with_the_bind_response_reaches_the_sender_and_is_learned(tmp_path):
    path = tmp_path / "guard.db"
    with RawSmsc() as smsc:
        smsc.deliver_on_bind = [deliver_sm_body(str(A), SENDER, b"TD")]
        with Stack(config(tmp_path), store=True, upstream=smsc.address) as stack:
            sender = Sender(stack)
            try:
                assert sender.read_deliver().short_message == b"TD"
                (seq,) = smsc.delivered_on_bind
                assert smsc.wait(lambda: smsc.answers.get(seq), what="deliver_sm_resp") == (DELIVER_SM | RESP,
                                                                                          Status.ROK)
                assert wait_for(lambda: learned(path, A), what="opt-out") == [("sender", SENDER, "reply", "td")]
            finally:
                sender.close()


def test_a_reply_to_a_long_code_with_an_extension_opts_out_of_the_listed_sender(tmp_path):
    path = tmp_path / "guard.db"
    with Stack(config(tmp_path, inbound={"sender_prefixes": [SENDER]}), store=True) as stack:
        sender = Sender(stack)
        try:
            stack.call(lambda: stack.sim.deliver("acme", mo_body(A, SENDER + "8123", b"TD")))
            sender.read_deliver()
            assert wait_for(lambda: learned(path, A), what="opt-out") == [("sender", SENDER, "reply", "td")]
            caught_up(stack, path)
            assert sender.submit(SENDER, A) == 0x45
        finally:
            sender.close()


def test_replies_to_two_senders_and_a_suspended_receipt_lower_the_credit_score_below_the_floor(tmp_path):
    """With the credit rule on: two senders' opt-outs (60) still let a third sender through; a receipt that says
    the number is suspended (50, no change-log row of its own) puts it below min_score (60) for every sender."""
    path = tmp_path / "guard.db"
    with Stack(config(tmp_path, POLICY + "\n[rules.credit]\nenabled = true\n"), store=True) as stack:
        sender = Sender(stack)
        try:
            for to in ("10690001", "10690002"):
                stack.call(lambda to=to: stack.sim.deliver("acme", mo_body(A, to, b"TD")))
                sender.read_deliver()
            wait_for(lambda: len(learned(path, A)) == 2, what="two opt-outs")
            caught_up(stack, path)
            assert sender.submit("10690003", A) == Status.ROK
            text = b"id:9 sub:001 dlvrd:000 submit date:2612011200 done date:2612011201 stat:UNDELIV err:MK:0005"
            stack.call(lambda: stack.sim.deliver("acme", mo_body(A, SENDER, text, esm_class=0x04)))
            sender.read_deliver()
            wait_for(lambda: stack.store.upkeep.index.low_credit.get(A) == 50, what="A's score in the Index")
            assert sender.submit("10690003", A) == 0x45
            assert sender.submit("10690003", B) == Status.ROK
            # the other order: the receipt first, then the opt-outs, whose change-log rows rescore B
            stack.call(lambda: stack.sim.deliver("acme", mo_body(B, SENDER, text, esm_class=0x04)))
            sender.read_deliver()
            wait_for(lambda: rows(path, "SELECT 1 FROM receipt_failure WHERE number = ?", B), what="B's receipt")
            stack.run(stack.store.learning.flush())  # its callback has asked for B to be rescored ...
            stack.run(stack.store.upkeep.rescore())  # ... and it is (90: not kept), before the opt-outs come
            assert B not in stack.call(lambda: dict(stack.store.upkeep.index.low_credit))
            for to in ("10690001", "10690002"):
                stack.call(lambda to=to: stack.sim.deliver("acme", mo_body(B, to, b"TD")))
                sender.read_deliver()
            wait_for(lambda: stack.store.upkeep.index.low_credit.get(B) == 50, what="B's score in the Index")
            assert sender.submit("10690003", B) == 0x45
            assert wait_for(lambda: rows(path, "SELECT reason FROM audit WHERE rule = 'credit'"), what="audit") == [
                ("number's credit score is too low (50 < 60)",)]
        finally:
            sender.close()


def test_a_reply_from_a_national_number_marked_international_opts_it_out_and_an_unreadable_one_is_reported(
        tmp_path):
    """the simulator marks every MO's source_addr international (TON 1), as many SMSCs do, also a
    national number; the reply is read as the default region reads it. A reply with no readable number is
    logged, audited (rule inbound, its address masked) and counted."""
    from prometheus_client import CollectorRegistry, generate_latest

    from smppguard.metrics import Collector, Metrics, State

    path = tmp_path / "guard.db"
    national, full = "13800138077", 8613800138077
    with Stack(config(tmp_path), store=True) as stack:
        sender = Sender(stack)
        try:
            assert sender.submit(SENDER, full) == Status.ROK
            stack.call(lambda: stack.sim.inject_mo(national, SENDER, "TD", "acme"))
            assert sender.read_deliver().source_addr == national.encode()  # relayed unchanged
            assert wait_for(lambda: learned(path, full), what="opt-out") == [("sender", SENDER, "reply", "td")]
            caught_up(stack, path)
            assert sender.submit(SENDER, full) == 0x45
            stack.call(lambda: stack.sim.inject_mo("1380013807x", SENDER, "TD", "acme"))
            sender.read_deliver()
            audited = wait_for(lambda: rows(path, "SELECT recipient, rule, action, reason FROM audit "
                                                  "WHERE rule = 'inbound'"), what="the unread reply audited")
            assert audited == [("138****807x", "inbound", "unread", "not learned (optout): source_addr is not a "
                                "phone number (TON 1, default region CN): reply 'TD' to 10690000")]
            registry = CollectorRegistry(auto_describe=False)
            registry.register(Collector(State(Metrics(), stack.proxy, stack.store)))  # type: ignore[arg-type]
            scraped = generate_latest(registry).decode()
            assert 'smppguard_inbound_unread_total{kind="optout"} 1.0' in scraped
            assert 'smppguard_learned_total{kind="optout"} 1.0' in scraped
        finally:
            sender.close()
