"""The hold queue through the running proxy: smpplib sends, the simulator receives and sends receipts, real SQLite
behind the proxy, and the proxy's clock set by the test (23:00 in Shanghai holds marketing, 10:00 releases it).

What each test shows is what the sender and the SMSC see: the OK and its proxy id, nothing at the SMSC while
held, then the message exactly once, and a receipt that names the id the sender knows.
"""

from __future__ import annotations

import re
import time
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import smpplib.smpp
from click.testing import CliRunner

import rawsmsc
from helpers import RawPeer, Stack, make_config, rows, smpplib_client, wait_for
from rawsmsc import RawSmsc, deliver_sm_body
from smppguard.cli import main
from smppguard.smpp.commands import CommandId
from smppguard.smpp.concat import build_udh
from smppguard.smpp.fields import SmeDest, Tlv, TlvTag, encode_body, parse_body, tlv_value
from smppguard.smpp.pdu import build
from smppguard.smpp.receipt import parse_receipt, receipt_body
from smppguard.smpp.status import Status
from smppguard.store import changelog
from smppguard.store import holds as held_store
from smppguard.store.db import connect

POLICY = """
[policy]
default_region = "CN"
fallback_zone = "Asia/Shanghai"

[rules.quiet_hours]
action = "hold"

[rules.frequency]
max = 2
period = "30d"
min_interval = "0s"
"""
A, B, C = "13800138000", "13800138001", "13800138002"
OFFER = "Winter sale: 20% off"


def shanghai(hour: int, minute: int = 0) -> float:
    return datetime(2026, 11, 27, hour, minute, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()


NIGHT = shanghai(23)
MORNING = NIGHT + 10.5 * 3600  # 09:30 the next day


class Clock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


def config(tmp_path, policy: str = POLICY, **tables):
    tables.setdefault("session", {"response_timeout": 5.0, "enquire_link_interval": 30.0})
    return make_config(policy, store={"path": str(tmp_path / "guard.db")}, **tables)


#: Quiet hours off: replies come and go at any hour in the tests of what is kept for a sender.
NO_QUIET_HOURS = POLICY.replace('action = "hold"', 'enabled = false')


def keeping(tmp_path, **tables):
    """The config of a proxy that keeps the replies and receipts for a sender with no receiver bound
    ([inbound] no_receiver = "keep"), quiet hours off."""
    return config(tmp_path, NO_QUIET_HOURS, inbound={"no_receiver": "keep"}, **tables)




class Sender:
    """A transceiver bind of account acme through the proxy; deliver_sm it is sent are kept and answered."""

    def __init__(self, stack: Stack, system_id: str = "acme"):
        self.client = smpplib_client(stack.address)
        self.client.bind_transceiver(system_id=system_id, password="pw")
        self.delivered: list = []

    def request(self, name: str, **params):
        pdu = smpplib.smpp.make_pdu(name, client=self.client, **params)
        self.client.send_pdu(pdu)
        while True:
            got = self.client.read_pdu()
            if got.command == "deliver_sm":
                self.delivered.append(got)
                self.client._message_received(got)  # deliver_sm_resp
            elif got.command == "enquire_link":
                self.client._enquire_link_received(got)
            elif got.sequence == pdu.sequence:
                return got

    def submit(self, dest: str, text: str | bytes = OFFER, **params):
        params = dict(dict(source_addr_ton=5, source_addr="ACME", dest_addr_ton=0, dest_addr_npi=1,
                           destination_addr=dest, short_message=text.encode() if isinstance(text, str) else text),
                      **params)
        return self.request("submit_sm", **params)

    def receipts(self, count: int = 1, timeout: float = 5.0) -> list:
        """Wait until `count` deliver_sm have come (answering them), and return them."""
        deadline = time.monotonic() + timeout
        self.client._socket.settimeout(0.2)
        try:
            while len(self.delivered) < count and time.monotonic() < deadline:
                try:
                    got = self.client.read_pdu()
                except Exception:  # a read timeout: look again
                    continue
                if got.command == "deliver_sm":
                    self.delivered.append(got)
                    self.client._message_received(got)
                elif got.command == "enquire_link":
                    self.client._enquire_link_received(got)
        finally:
            self.client._socket.settimeout(5.0)
        assert len(self.delivered) >= count, f"{len(self.delivered)} deliver_sm of {count} within {timeout} s"
        return self.delivered

    def close(self) -> None:
        self.client.disconnect()


def at_smsc(stack: Stack, dest: str) -> list:
    return [r for r in stack.sim.received if r.fields.get("destination_addr") == dest]


def proxy_id_of(resp) -> str:
    message_id = resp.message_id.decode() if isinstance(resp.message_id, bytes) else resp.message_id
    assert len(message_id) == 16 and int(message_id, 16) >= 0, message_id
    return message_id


def released(stack: Stack) -> int:
    return stack.store.holds.released


def test_a_held_message_is_answered_ok_sent_once_when_the_window_opens_and_its_receipt_names_the_proxy_id(tmp_path):
    clock = Clock(NIGHT)
    with Stack(config(tmp_path), store=True, clock=clock) as stack:
        s = Sender(stack)
        resp = s.submit(A, registered_delivery=1)
        assert resp.status == Status.ROK
        proxy_id = proxy_id_of(resp)
        [(state, account, recipient)] = rows(stack.config.store.path, "SELECT state, account, recipient FROM held "
                                             "WHERE id = ?", proxy_id)  # saved before the OK
        assert (state, account, recipient) == ("held", "acme", A)
        time.sleep(0.6)  # three rounds of the queue: still night
        assert at_smsc(stack, A) == []
        clock.now = MORNING
        [got] = wait_for(lambda: at_smsc(stack, A), what="the released message at the SMSC")
        assert got.fields["short_message"] == OFFER.encode()
        [receipt] = s.receipts(1)
        assert receipt.receipted_message_id.rstrip(b"\0").decode() == proxy_id
        assert parse_receipt(receipt.short_message).message_id == proxy_id
        assert got.message_id != proxy_id  # the SMSC's own id never reaches the sender
        time.sleep(0.6)
        assert len(at_smsc(stack, A)) == 1  # exactly once
        assert rows(stack.config.store.path, "SELECT COUNT(*) FROM held") == [(0,)]
        assert rows(stack.config.store.path, "SELECT smsc_id, proxy_id FROM message_map") == [(got.message_id,
                                                                                              proxy_id)]
        s.close()


def test_an_opt_out_reply_while_held_drops_the_message_with_a_rejected_receipt(tmp_path):
    clock = Clock(NIGHT)
    with Stack(config(tmp_path), store=True, clock=clock) as stack:
        s = Sender(stack)
        proxy_id = proxy_id_of(s.submit(B, registered_delivery=1))
        stack.call(lambda: stack.sim.inject_mo("86" + B, "ACME", "TD", "acme"))
        s.receipts(1)  # the reply itself reaches the sender
        path = stack.config.store.path
        wait_for(lambda: rows(path, "SELECT 1 FROM optout WHERE number = ?", int("86" + B)), what="opt-out")
        assert rows(path, "SELECT added_at FROM optout") == [(NIGHT,)]  # learned at the proxy's time
        wait_for(lambda: stack.store.upkeep.index.change_id >= rows(path, "SELECT MAX(id) FROM changelog")[0][0],
                 what="Index caught up")
        clock.now = MORNING
        delivered = s.receipts(2)
        receipt = parse_receipt(delivered[1].short_message)
        assert (receipt.message_id, receipt.stat) == (proxy_id, "REJECTD")
        assert tlv_value_of(delivered[1], "receipted_message_id") == proxy_id
        time.sleep(0.5)
        assert at_smsc(stack, B) == []
        assert rows(path, "SELECT COUNT(*) FROM held") == [(0,)]
        [(rule, action)] = rows(path, "SELECT rule, action FROM audit WHERE action = 'dropped'")
        assert rule == "hold" and "proxy id " + proxy_id in rows(path, "SELECT reason FROM audit WHERE action = "
                                                                       "'dropped'")[0][0]
        s.close()


def tlv_value_of(pdu, name: str) -> str:
    value = getattr(pdu, name)
    return (value.decode() if isinstance(value, bytes) else value).rstrip("\0")


def test_a_three_part_message_is_held_and_released_together_in_order(tmp_path):
    clock = Clock(NIGHT)
    with Stack(config(tmp_path), store=True, clock=clock) as stack:
        s = Sender(stack)
        ids = []
        for part in (1, 2, 3):
            resp = s.submit(C, build_udh(0x42, 3, part) + f"part {part} ".encode(), esm_class=0x40)
            assert resp.status == Status.ROK
            ids.append(proxy_id_of(resp))
        assert len(set(ids)) == 3
        groups = rows(stack.config.store.path, "SELECT DISTINCT grp FROM held")
        assert len(groups) == 1 and groups[0][0]
        clock.now = MORNING
        got = wait_for(lambda: len(at_smsc(stack, C)) == 3 and at_smsc(stack, C), what="three parts")
        assert [r.fields["short_message"][6:] for r in got] == [b"part 1 ", b"part 2 ", b"part 3 "]
        time.sleep(0.5)
        assert len(at_smsc(stack, C)) == 3
        s.close()


class Raw(RawPeer):
    """A transceiver bind of `system_id` for the requests smpplib does not have (cancel_sm, submit_multi)."""

    def __init__(self, stack: Stack, system_id: str = "acme"):
        super().__init__(stack.address, 5.0)
        self.bind(system_id=system_id)
        self.seq = 1

    def ask(self, command_id: int, **fields) -> tuple[int, dict]:
        """Send a request; its response's status and fields (deliver_sm met meanwhile are answered)."""
        self.seq += 1
        self.request(command_id, self.seq, **fields)
        while True:
            cid, status, seq, body = self.read_pdu()
            if cid == CommandId.DELIVER_SM:
                self.send(build(CommandId.DELIVER_SM_RESP, seq, b"\0"))
            elif seq == self.seq:
                assert cid == command_id | 0x80000000, hex(cid)
                return status, (parse_body(cid, body) if body and status == 0 else {})


SUBMIT = dict(source_addr_ton=5, source_addr="ACME", dest_addr_ton=0, dest_addr_npi=1)


def test_query_cancel_and_replace_of_a_held_message_are_answered_from_the_queue(tmp_path, caplog):
    clock = Clock(NIGHT)
    with Stack(config(tmp_path), store=True, clock=clock) as stack:
        s = Raw(stack)
        status, kept = s.ask(CommandId.SUBMIT_SM, destination_addr=A, short_message=b"old text", **SUBMIT)
        kept = kept["message_id"]
        status, gone = s.ask(CommandId.SUBMIT_SM, destination_addr=B, short_message=OFFER.encode(), **SUBMIT)
        gone = gone["message_id"]
        status, q = s.ask(CommandId.QUERY_SM, message_id=kept, source_addr_ton=5, source_addr="ACME")
        assert (status, q["message_id"], q["message_state"]) == (Status.ROK, kept, 1)  # ENROUTE: waiting
        assert (q["final_date"], q["error_code"]) == ("", 0)  # not final, no error
        assert s.ask(CommandId.CANCEL_SM, message_id=gone, source_addr="ACME")[0] == Status.ROK
        assert s.ask(CommandId.REPLACE_SM, message_id=kept, source_addr="ACME",
                     short_message=b"new text")[0] == Status.ROK
        # gone already: not in the queue; it goes to the SMSC, which does not know the proxy id
        assert s.ask(CommandId.CANCEL_SM, message_id=gone, source_addr="ACME")[0] != Status.ROK
        stack.run(stack.store.writer.flush())
        assert rows(stack.config.store.path, "SELECT account, action, reason FROM audit WHERE action = 'cancelled'") \
            == [("acme", "cancelled", f"held message cancelled by the sender; proxy id {gone}")]
        other = Raw(stack, "other")
        with caplog.at_level("WARNING", logger="smppguard.proxy"):
            assert other.ask(CommandId.QUERY_SM, message_id=kept, source_addr="ACME")[0] == Status.RQUERYFAIL
            assert other.ask(CommandId.CANCEL_SM, message_id=kept, source_addr="ACME")[0] == Status.RCANCELFAIL
        # one line a minute per account: the cancel that followed the query is not logged again
        [refused] = [r.getMessage() for r in caplog.records
                     if r.name == "smppguard.proxy" and r.levelname == "WARNING"]
        assert refused.startswith("downstream:127.0.0.1:") and refused.endswith(
            ":other: query_sm for a message of another account refused"), refused
        clock.now = MORNING
        [got] = wait_for(lambda: at_smsc(stack, A), what="the replaced message at the SMSC")
        assert got.fields["short_message"] == b"new text"
        wait_for(lambda: not rows(stack.config.store.path, "SELECT 1 FROM held"), what="the queue empty")
        # released: a query with the proxy id reaches the SMSC with the SMSC's id, and comes back with ours
        status, q = s.ask(CommandId.QUERY_SM, message_id=kept, source_addr="ACME")
        assert (status, q["message_id"]) == (Status.ROK, kept)
        time.sleep(0.5)
        assert at_smsc(stack, B) == []
        other.close()
        s.close()


def test_a_replace_sm_changes_the_held_messages_receipt_and_validity_only_of_a_submit_sm(tmp_path):
    clock = Clock(NIGHT)
    with Stack(config(tmp_path), store=True, clock=clock) as stack:
        s = Raw(stack)
        path = stack.config.store.path
        _status, kept = s.ask(CommandId.SUBMIT_SM, destination_addr=A, short_message=b"old", **SUBMIT)
        kept = kept["message_id"]
        assert rows(path, "SELECT receipt FROM held") == [(0,)]
        # a receipt asked for now, and a validity 48 hours on
        assert s.ask(CommandId.REPLACE_SM, message_id=kept, source_addr="ACME", short_message=b"new",
                     registered_delivery=1, validity_period="000002000000000R")[0] == Status.ROK
        [(receipt, expires_at, pdu)] = rows(path, "SELECT receipt, expires_at, pdu FROM held")
        assert (receipt, expires_at) == (1, NIGHT + 48 * 3600)
        held = parse_body(CommandId.SUBMIT_SM, pdu[16:])
        assert (held["short_message"], held["registered_delivery"], held["validity_period"]) == (
            b"new", 1, "000002000000000R")
        # a replace that sets neither keeps them
        assert s.ask(CommandId.REPLACE_SM, message_id=kept, source_addr="ACME", short_message=b"newer")[0] == 0
        assert rows(path, "SELECT receipt, expires_at FROM held") == [(1, NIGHT + 48 * 3600)]
        # intermediate notifications only (0x10): no receipt any more
        assert s.ask(CommandId.REPLACE_SM, message_id=kept, source_addr="ACME", short_message=b"newer",
                     registered_delivery=0x10)[0] == Status.ROK
        assert rows(path, "SELECT receipt FROM held") == [(0,)]
        assert s.ask(CommandId.REPLACE_SM, message_id=kept, source_addr="ACME", short_message=b"newer",
                     registered_delivery=1)[0] == Status.ROK
        # the text in message_payload (SMPP 5.0's replace_sm), then back in short_message: one place at a time
        long_text = b"L" * 300
        assert s.ask(CommandId.REPLACE_SM, message_id=kept, source_addr="ACME", short_message=b"",
                     sm_default_msg_id=3, tlvs=[Tlv(TlvTag.MESSAGE_PAYLOAD, long_text)])[0] == Status.ROK
        held = parse_body(CommandId.SUBMIT_SM, rows(path, "SELECT pdu FROM held")[0][0][16:])
        assert (held["short_message"], held["tlvs"], held["sm_default_msg_id"]) == (
            b"", [(TlvTag.MESSAGE_PAYLOAD, long_text)], 3)
        assert s.ask(CommandId.REPLACE_SM, message_id=kept, source_addr="ACME", short_message=b"short")[0] == 0
        held = parse_body(CommandId.SUBMIT_SM, rows(path, "SELECT pdu FROM held")[0][0][16:])
        assert (held["short_message"], held["tlvs"], held["registered_delivery"]) == (b"short", [], 1)
        # what replace_sm cannot change: a submit_multi held for several destinations (one id, several rows), a
        # data_sm (replace_sm is for submit_sm)
        _status, multi = s.ask(CommandId.SUBMIT_MULTI, source_addr_ton=5, source_addr="ACME", short_message=b"m",
                               dest_addresses=[SmeDest(0, 1, B), SmeDest(0, 1, C)])
        _status, single = s.ask(CommandId.SUBMIT_MULTI, source_addr_ton=5, source_addr="ACME", short_message=b"m",
                                dest_addresses=[SmeDest(0, 1, "13800138003")])
        _status, data = s.ask(CommandId.DATA_SM, destination_addr=C, tlvs=[Tlv(TlvTag.MESSAGE_PAYLOAD, b"d")],
                              **SUBMIT)
        for message_id in (multi["message_id"], single["message_id"], data["message_id"]):
            assert s.ask(CommandId.REPLACE_SM, message_id=message_id, source_addr="ACME",
                         short_message=b"x")[0] == Status.RREPLACEFAIL
        assert s.ask(CommandId.CANCEL_SM, message_id=kept, source_addr="ACME")[0] == Status.ROK
        assert not stack.proxy.holds.busy  # every answer given: nothing left for a shutdown to wait for
        s.close()


def test_a_held_message_dropped_by_the_operator_meanwhile_cannot_be_cancelled_or_replaced(tmp_path, caplog):
    """`smppguard queue drop` deletes from the store while the daemon still counts the message (until its next
    count): the sender's cancel_sm gets 0x11 and its replace_sm 0x13, not an OK for a message that is gone. A held
    row the proxy cannot read any more (a damaged store) is not replaced either."""
    clock = Clock(NIGHT)
    with Stack(config(tmp_path), store=True, clock=clock) as stack:
        s = Raw(stack)
        path = stack.config.store.path
        dropped = s.ask(CommandId.SUBMIT_SM, destination_addr=A, short_message=b"a", **SUBMIT)[1]["message_id"]
        damaged = s.ask(CommandId.SUBMIT_SM, destination_addr=B, short_message=b"b", **SUBMIT)[1]["message_id"]
        r = CliRunner().invoke(main, ["queue", "drop", dropped, "--db", path])
        assert r.exit_code == 0, r.output
        assert s.ask(CommandId.CANCEL_SM, message_id=dropped, source_addr="ACME")[0] == Status.RCANCELFAIL
        assert s.ask(CommandId.REPLACE_SM, message_id=dropped, source_addr="ACME",
                     short_message=b"x")[0] == Status.RREPLACEFAIL
        db = connect(path)
        db.execute("UPDATE held SET pdu = x'00000010' WHERE id = ?", (damaged,))
        db.close()
        with caplog.at_level("INFO", logger="smppguard.hold"):
            assert s.ask(CommandId.REPLACE_SM, message_id=damaged, source_addr="ACME",
                         short_message=b"x")[0] == Status.RREPLACEFAIL
        assert any(r.getMessage().startswith(f"replace_sm of held message {damaged} refused: ")
                   for r in caplog.records)
        assert not stack.proxy.holds.busy
        assert list(stack.sim.received) == []  # neither went to the SMSC
        s.close()


def test_a_full_queue_answers_0x14_and_holds_nothing_more(tmp_path):
    clock = Clock(NIGHT)
    with Stack(config(tmp_path, hold={"max_per_account": 2}), store=True, clock=clock) as stack:
        s = Sender(stack)
        assert s.submit(A).status == Status.ROK
        assert s.submit(B).status == Status.ROK
        assert s.submit(C).status == Status.RMSGQFUL
        other = Sender(stack, "other")
        assert other.submit(C).status == Status.ROK  # one account cannot fill the queue for the others
        assert rows(stack.config.store.path, "SELECT account, COUNT(*) FROM held GROUP BY account ORDER BY 1") == [
            ("acme", 2), ("other", 1)]
        other.close()
        s.close()


def test_a_message_that_expires_gets_a_receipt_only_if_its_sender_asked_for_one(tmp_path):
    clock = Clock(NIGHT)
    with Stack(config(tmp_path), store=True, clock=clock) as stack:
        s = Sender(stack)
        s.submit(A, validity_period="000000020000000R")  # no receipt asked for; held first, expires first
        asked = proxy_id_of(s.submit(B, registered_delivery=1, validity_period="000000020000000R"))
        clock.now = NIGHT + 3 * 3600
        s.receipts(1)  # made in the round that expired both: one for the held message that asked for it
        assert rows(stack.config.store.path, "SELECT COUNT(*) FROM held") == [(0,)]
        with pytest.raises(AssertionError):
            s.receipts(2, timeout=0.5)
        assert [parse_receipt(r.short_message).message_id for r in s.delivered] == [asked]
        stack.run(stack.store.writer.flush())
        assert rows(stack.config.store.path, "SELECT reason FROM audit WHERE action = 'expired' AND reason LIKE ?",
                    f"%{asked}") == [(f"held message expired before its release; proxy id {asked}",)]
        s.close()


def test_receipts_for_expired_messages_are_owed_to_a_sender_gone_up_to_max_owed(tmp_path):
    """Three held messages asked for receipts and expire while their sender is away: the receipts are kept for
    it as owed deliveries ("receipt"), [hold] max_owed (2) of them, and go to its next receiver."""
    clock = Clock(NIGHT)
    with Stack(config(tmp_path, hold={"max_owed": 2}), store=True, clock=clock) as stack:
        s = Sender(stack)
        ids = [proxy_id_of(s.submit(d, registered_delivery=1, validity_period="000000020000000R")) for d in (A, B, C)]
        s.close()
        wait_for(lambda: not stack.proxy.bridges, what="the sender gone")
        clock.now = NIGHT + 3 * 3600
        path = stack.config.store.path
        wait_for(lambda: rows(path, "SELECT COUNT(*) FROM held") == [(0,)], what="all three expired")
        assert rows(path, "SELECT account, kind FROM owed") == [("acme", "receipt")] * 2
        assert stack.proxy.holds.owed == 2
        later = Sender(stack)
        got = sorted(parse_receipt(r.short_message).message_id for r in later.receipts(2))
        assert got == sorted(ids[:2])
        wait_for(lambda: rows(path, "SELECT COUNT(*) FROM owed") == [(0,)], what="owed cleared")
        # counted down as delivered, and nothing left marked on its way
        wait_for(lambda: stack.proxy.holds.owed == 0 and not stack.proxy.holds._owed_inflight, what="owed 0")
        later.close()


def test_a_message_past_its_validity_expires_with_an_expired_receipt(tmp_path):
    clock = Clock(NIGHT)
    with Stack(config(tmp_path), store=True, clock=clock) as stack:
        s = Sender(stack)
        proxy_id = proxy_id_of(s.submit(A, registered_delivery=1, validity_period="000000020000000R"))  # 2 h
        clock.now = NIGHT + 3 * 3600  # 02:00: still night, but past its validity
        [receipt] = s.receipts(1)
        got = parse_receipt(receipt.short_message)
        assert (got.message_id, got.stat) == (proxy_id, "EXPIRED")
        clock.now = MORNING
        time.sleep(0.5)
        assert at_smsc(stack, A) == []
        s.close()


def test_a_released_message_is_marked_sending_in_the_store_before_the_smsc_sees_it(tmp_path):
    """The mark that makes a crash unable to send it twice is durable before the submit leaves; an SMSC that
    never answers leaves the message "unknown", not held again."""
    clock = Clock(NIGHT)
    cfg = config(tmp_path, session={"response_timeout": 1.0, "enquire_link_interval": 30.0})
    with Stack(cfg, store=True, clock=clock) as stack:
        s = Sender(stack)
        proxy_id = proxy_id_of(s.submit(A))
        stack.sim.respond = False
        clock.now = MORNING
        wait_for(lambda: at_smsc(stack, A), what="the submit at the SMSC")
        assert rows(cfg.store.path, "SELECT state FROM held WHERE id = ?", proxy_id) == [("sending",)]
        wait_for(lambda: rows(cfg.store.path, "SELECT state FROM held") == [("unknown",)], what="unknown")
        time.sleep(0.5)
        assert len(at_smsc(stack, A)) == 1
        s.close()


def test_held_messages_survive_a_restart_and_one_marked_sending_is_never_sent_again(tmp_path):
    clock = Clock(NIGHT)
    cfg = config(tmp_path)
    with Stack(cfg, store=True, clock=clock) as stack:
        s = Sender(stack)
        kept = proxy_id_of(s.submit(A))
        maybe_sent = proxy_id_of(s.submit(B))
        s.close()
    # as a kill -9 after the mark and before the SMSC's answer leaves it
    db = connect(cfg.store.path)
    db.execute("UPDATE held SET state = 'sending' WHERE id = ?", (maybe_sent,))
    db.close()
    clock.now = MORNING
    with Stack(cfg, store=True, clock=clock) as stack:
        s = Sender(stack)
        [got] = wait_for(lambda: at_smsc(stack, A), what="the held message after the restart")
        time.sleep(0.6)
        assert at_smsc(stack, B) == []
        assert rows(cfg.store.path, "SELECT id, state FROM held") == [(maybe_sent, "unknown")]
        s.close()
    # the operator judges it did not reach the SMSC: `queue release` sends it (once)
    db = connect(cfg.store.path)
    assert held_store.release_now(db, maybe_sent, clock.now) == 1
    db.close()
    with Stack(cfg, store=True, clock=clock) as stack:
        s = Sender(stack)
        wait_for(lambda: at_smsc(stack, B), what="the released unknown message")
        s.close()
    assert kept != maybe_sent and got is not None


def test_queue_release_sends_now_through_the_other_rules(tmp_path):
    clock = Clock(NIGHT)
    with Stack(config(tmp_path), store=True, clock=clock) as stack:
        s = Sender(stack)
        first = proxy_id_of(s.submit(A))
        listed = proxy_id_of(s.submit(B))
        path = stack.config.store.path
        db = connect(path)
        changelog.write(db, [changelog.Change("blacklist", "add", int("86" + B), data={"source": "complaint"})],
                        origin="test")
        wait_for(lambda: stack.store.upkeep.index.change_id >= rows(path, "SELECT MAX(id) FROM changelog")[0][0],
                 what="Index caught up")
        assert held_store.release_now(db, first, clock.now) == 1
        assert held_store.release_now(db, listed, clock.now) == 1
        db.close()
        wait_for(lambda: at_smsc(stack, A), what="the message released by hand, at night")
        wait_for(lambda: not rows(path, "SELECT 1 FROM held"), what="the blacklisted one dropped")
        assert at_smsc(stack, B) == []
        s.close()


def test_submit_multi_destinations_are_held_under_one_proxy_id(tmp_path):
    clock = Clock(NIGHT)
    with Stack(config(tmp_path), store=True, clock=clock) as stack:
        s = Raw(stack)
        status, resp = s.ask(CommandId.SUBMIT_MULTI, source_addr_ton=5, source_addr="ACME",
                             short_message=OFFER.encode(), dest_addresses=[SmeDest(0, 1, A), SmeDest(0, 1, B)])
        assert status == Status.ROK and resp["unsuccess_sme"] == []
        proxy_id = resp["message_id"]
        # each destination its own row (a message of one part), with the number the opt-out and dead rules find
        assert rows(stack.config.store.path, "SELECT id, recipient, number, sender, grp, part, parts FROM held "
                    "ORDER BY seq") == [(proxy_id, A, int("86" + A), "ACME", "", 1, 1),
                                        (proxy_id, B, int("86" + B), "ACME", "", 1, 1)]
        clock.now = MORNING
        got = wait_for(lambda: len(stack.sim.received) == 2 and list(stack.sim.received), what="both released")
        assert sorted(d.address for r in got for d in r.fields["dest_addresses"]) == [A, B]
        assert {(r.fields["source_addr_ton"], r.fields["source_addr"], r.fields["short_message"]) for r in got} == {
            (5, "ACME", OFFER.encode())}
        s.close()


def daytime(stack: Stack, number: str) -> None:
    """Give `number` a zone where it is daytime at NIGHT (New York), and wait until the proxy's Index has it."""
    path = stack.config.store.path
    db = connect(path)
    changelog.write(db, [changelog.Change("tz", "add", int("86" + number), data={"zone": "America/New_York"})],
                    origin="test")
    db.close()
    wait_for(lambda: stack.store.upkeep.index.change_id >= rows(path, "SELECT MAX(id) FROM changelog")[0][0],
             what="Index caught up")


def test_a_held_message_still_in_quiet_hours_at_its_release_is_held_again_until_they_end(tmp_path):
    """Held at night in Shanghai; by the morning the recipient is known to live in New York, where it is 20:30,
    quiet until 09:00 there: at its release it is held again until then, not sent."""
    clock = Clock(NIGHT)
    with Stack(config(tmp_path), store=True, clock=clock) as stack:
        s = Sender(stack)
        proxy_id = proxy_id_of(s.submit(A))
        path = stack.config.store.path
        daytime(stack, A)  # New York: daytime at NIGHT, 20:30 at MORNING
        clock.now = MORNING
        new_york_nine = datetime(2026, 11, 28, 9, 0, tzinfo=ZoneInfo("America/New_York")).timestamp()
        wait_for(lambda: rows(path, "SELECT release_at FROM held WHERE id = ?", proxy_id) == [(new_york_nine,)],
                 what="held again until 09:00 in New York")
        assert rows(path, "SELECT state FROM held") == [("held",)]
        time.sleep(0.5)
        assert at_smsc(stack, A) == []
        s.close()


def test_the_stores_id_maps_past_their_time_are_forgotten_hourly(tmp_path):
    """The maps from SMSC ids to proxy ids last [hold] map_ttl: once an hour the daemon deletes those past it
    from the store, and keeps the others."""
    clock = Clock(NIGHT)
    with Stack(config(tmp_path), store=True, clock=clock) as stack:
        path = stack.config.store.path
        wait_for(lambda: stack.proxy.holds._next_prune > 0, what="the queue's first look at the maps, at NIGHT")
        db = connect(path)
        db.executemany("INSERT INTO message_map VALUES ('acme', ?, ?, ?)",
                       [("smsc-old", "p" * 16, NIGHT + 1800), ("smsc-new", "q" * 16, NIGHT + 7200)])
        db.close()
        clock.now = NIGHT + 1900  # the old one is past its time, but the hour is not over
        time.sleep(0.6)
        assert len(rows(path, "SELECT smsc_id FROM message_map")) == 2
        clock.now = NIGHT + 3601  # the next hourly look
        wait_for(lambda: rows(path, "SELECT smsc_id FROM message_map") == [("smsc-new",)], what="the old map gone")


def test_a_submit_multi_partly_held_forwards_the_rest_and_answers_with_the_proxy_id(tmp_path):
    clock = Clock(NIGHT)
    with Stack(config(tmp_path), store=True, clock=clock) as stack:
        s = Raw(stack)
        daytime(stack, B)  # its part goes at once, A's is held
        path = stack.config.store.path
        status, resp = s.ask(CommandId.SUBMIT_MULTI, source_addr_ton=5, source_addr="ACME",
                             short_message=OFFER.encode(), dest_addresses=[SmeDest(0, 1, A), SmeDest(0, 1, B)])
        assert status == Status.ROK and resp["unsuccess_sme"] == []
        [now_sent] = list(stack.sim.received)
        assert [d.address for d in now_sent.fields["dest_addresses"]] == [B]
        assert resp["message_id"] != now_sent.message_id  # the proxy id, also for the part that went
        assert rows(path, "SELECT id, recipient FROM held") == [(resp["message_id"], A)]
        stack.run(stack.store.writer.flush())
        assert rows(path, "SELECT smsc_id, proxy_id FROM message_map") == [(now_sent.message_id, resp["message_id"])]
        s.close()


def test_the_receipt_of_a_partly_held_submit_multis_forwarded_part_names_the_proxy_id(tmp_path):
    """The sender knows one id for the whole submit_multi, the proxy's: the SMSC's receipt for the part that went
    at once must name it too (the SMSC's id is swapped for it, in the TLV and in the text)."""
    clock = Clock(NIGHT)
    with Stack(config(tmp_path), store=True, clock=clock) as stack:
        s = Raw(stack)
        daytime(stack, B)
        multi = dict(source_addr_ton=5, source_addr="ACME", short_message=OFFER.encode(), registered_delivery=1,
                     dest_addresses=[SmeDest(0, 1, A), SmeDest(0, 1, B)])
        status, resp = s.ask(CommandId.SUBMIT_MULTI, **multi)
        assert status == Status.ROK
        [now_sent] = list(stack.sim.received)
        assert now_sent.message_id != resp["message_id"]
        forwarded = dict(multi, dest_addresses=[SmeDest(0, 1, B)])
        time.sleep(0.6)  # rounds of the queue go by: the mapping lasts [hold] map_ttl, not until the next one
        stack.call(lambda: stack.sim.deliver("acme", receipt_body(now_sent.message_id, forwarded, "DELIVRD",
                                                                  time.time(), time.time())))
        cid, _status, seq, body = s.read_pdu()
        assert cid == CommandId.DELIVER_SM
        s.send(build(CommandId.DELIVER_SM_RESP, seq, b"\0"))
        got = parse_body(CommandId.DELIVER_SM, body)
        assert tlv_value(got["tlvs"], TlvTag.RECEIPTED_MESSAGE_ID).rstrip(b"\0").decode() == resp["message_id"]
        assert parse_receipt(got["short_message"]).message_id == resp["message_id"]
        assert got["source_addr"] == B
        s.close()


def refuse_inserts(path: str, table: str = "held") -> None:
    """From now on the store refuses new rows of `table` (a disk full, a constraint broken): a real SQLite
    failure inside the writer's commit, for that job only."""
    db = connect(path)
    db.execute(f"CREATE TRIGGER no_room BEFORE INSERT ON {table} BEGIN SELECT RAISE(ABORT, 'no room'); END")
    db.close()


def test_a_message_that_cannot_be_saved_for_the_hold_queue_is_answered_0x08_and_not_counted(tmp_path):
    clock = Clock(NIGHT)
    with Stack(config(tmp_path), store=True, clock=clock) as stack:
        refuse_inserts(stack.config.store.path)
        s = Raw(stack)
        assert s.ask(CommandId.SUBMIT_SM, destination_addr=A, short_message=b"a", **SUBMIT)[0] == Status.RSYSERR
        assert s.ask(CommandId.SUBMIT_MULTI, source_addr_ton=5, source_addr="ACME", short_message=b"m",
                     dest_addresses=[SmeDest(0, 1, A), SmeDest(0, 1, B)])[0] == Status.RSYSERR
        assert len(stack.proxy.holds) == 0 and not stack.proxy.holds.busy
        assert list(stack.sim.received) == []
        s.close()


def test_a_partly_held_submit_multi_whose_held_part_cannot_be_saved_lists_it_as_failed(tmp_path):
    """The part that went is the SMSC's: the sender gets the SMSC's id (no proxy id stands for anything), and the
    held destinations listed as failed with 0x08, so that it sends them again."""
    clock = Clock(NIGHT)
    with Stack(config(tmp_path), store=True, clock=clock) as stack:
        daytime(stack, B)
        refuse_inserts(stack.config.store.path)
        s = Raw(stack)
        status, resp = s.ask(CommandId.SUBMIT_MULTI, source_addr_ton=5, source_addr="ACME", short_message=b"m",
                             dest_addresses=[SmeDest(0, 1, A), SmeDest(0, 1, B)])
        assert status == Status.ROK
        [now_sent] = list(stack.sim.received)
        assert resp["message_id"] == now_sent.message_id
        assert [(u.ton, u.npi, u.address, u.status) for u in resp["unsuccess_sme"]] == [(0, 1, A, Status.RSYSERR)]
        assert len(stack.proxy.holds) == 0 and not stack.proxy.holds.busy
        stack.run(stack.store.writer.flush())
        assert rows(stack.config.store.path, "SELECT * FROM message_map") == []
        s.close()


def test_a_partly_held_submit_multi_not_saved_lists_the_smscs_failures_and_its_held_part(tmp_path):
    """The SMSC failed one forwarded destination and the held part could not be saved: the sender's answer lists
    both, the SMSC's with the SMSC's status and the held one with 0x08."""
    clock = Clock(NIGHT)
    with RawSmsc() as smsc, Stack(config(tmp_path), store=True, clock=clock, upstream=smsc.address) as stack:
        daytime(stack, B)
        daytime(stack, C)
        refuse_inserts(stack.config.store.path)
        smsc.fail_destinations = {C: Status.RINVDSTADR}
        s = Raw(stack)
        status, resp = s.ask(CommandId.SUBMIT_MULTI, source_addr_ton=5, source_addr="ACME", short_message=b"m",
                             dest_addresses=[SmeDest(0, 1, A), SmeDest(0, 1, B), SmeDest(0, 1, C)])
        assert status == Status.ROK
        [forwarded] = smsc.received
        assert forwarded.destinations == [B, C]
        assert resp["message_id"].startswith("raw")  # the SMSC's id: no proxy id stands for anything
        assert [(u.ton, u.npi, u.address, u.status) for u in resp["unsuccess_sme"]] == [
            (1, 1, C, Status.RINVDSTADR), (0, 1, A, Status.RSYSERR)]
        s.close()


def test_a_submit_multi_whose_forwarded_part_the_smsc_refuses_drops_its_held_part_too(tmp_path):
    """The sender is told the whole submit_multi failed (the SMSC's 0x58): it will send it again, so the part held
    for quiet hours must not go as well."""
    clock = Clock(NIGHT)
    with RawSmsc() as smsc, Stack(config(tmp_path), store=True, clock=clock, upstream=smsc.address) as stack:
        s = Raw(stack)
        daytime(stack, B)
        path = stack.config.store.path
        smsc.throttle_next = 1
        status, _resp = s.ask(CommandId.SUBMIT_MULTI, source_addr_ton=5, source_addr="ACME",
                              short_message=OFFER.encode(), dest_addresses=[SmeDest(0, 1, A), SmeDest(0, 1, B)])
        assert status == Status.RTHROTTLED
        assert [r.destinations for r in smsc.received] == [[B]]  # A's part was held, not sent
        wait_for(lambda: rows(path, "SELECT COUNT(*) FROM held") == [(0,)], what="the held part dropped")
        assert len(stack.proxy.holds) == 0
        clock.now = MORNING
        time.sleep(0.5)  # the morning's release rounds find nothing
        assert [r.destinations for r in smsc.received] == [[B]]
        s.close()


def test_the_age_of_the_oldest_held_message_is_counted_from_when_it_was_held(tmp_path):
    """What /metrics and `smppguard status` show: as of the queue's last count (once a minute); 0 when empty."""
    clock = Clock(NIGHT)
    with Stack(config(tmp_path), store=True, clock=clock) as stack:
        holds = stack.proxy.holds
        assert holds.oldest_age() == 0.0
        s = Sender(stack)
        proxy_id_of(s.submit(A))
        clock.now = NIGHT + 30
        # held since the last count: its age shows at once, not 0.0 until the next count
        assert holds.oldest_age() == 30.0
        proxy_id_of(s.submit(B))
        clock.now = NIGHT + 600  # past the minute: the queue counts again
        assert wait_for(lambda: holds.oldest_age() == 600.0, what="the oldest age counted")
        clock.now = MORNING
        wait_for(lambda: len(at_smsc(stack, A)) and len(at_smsc(stack, B)), what="both released")
        wait_for(lambda: len(holds) == 0, what="the queue empty")
        assert holds.oldest_age() == 0.0  # at once, not at the next count
        s.close()


def test_a_full_queue_lists_a_submit_multis_held_destinations_as_failed_and_a_cancel_makes_room(tmp_path):
    """[hold] max_per_account: a submit_multi whose quiet-hour destinations do not fit goes to its others, and
    the answer lists the ones left out with 0x14; cancelling a held message frees its place."""
    clock = Clock(NIGHT)
    D = "13800138003"
    with Stack(config(tmp_path, hold={"max_per_account": 2}), store=True, clock=clock) as stack:
        daytime(stack, D)
        s = Raw(stack)
        first = s.ask(CommandId.SUBMIT_SM, destination_addr=A, short_message=b"a", **SUBMIT)[1]["message_id"]
        assert s.ask(CommandId.SUBMIT_SM, destination_addr=B, short_message=b"b", **SUBMIT)[0] == Status.ROK
        assert len(stack.proxy.holds) == 2
        status, resp = s.ask(CommandId.SUBMIT_MULTI, source_addr_ton=5, source_addr="ACME", short_message=b"m",
                             dest_addresses=[SmeDest(0, 1, C), SmeDest(0, 1, D)])
        assert status == Status.ROK
        assert [(u.ton, u.npi, u.address, u.status) for u in resp["unsuccess_sme"]] == [(0, 1, C, Status.RMSGQFUL)]
        assert [d.address for d in stack.sim.received[-1].fields["dest_addresses"]] == [D]
        assert s.ask(CommandId.CANCEL_SM, message_id=first, source_addr="ACME")[0] == Status.ROK
        assert wait_for(lambda: len(stack.proxy.holds) == 1, what="the cancelled message uncounted")
        assert s.ask(CommandId.SUBMIT_SM, destination_addr=C, short_message=b"c", **SUBMIT)[0] == Status.ROK
        assert len(stack.proxy.holds) == 2
        s.close()


def test_a_data_sm_is_held_and_answered_with_a_proxy_id(tmp_path):
    clock = Clock(NIGHT)
    with Stack(config(tmp_path), store=True, clock=clock) as stack:
        s = Sender(stack)
        resp = s.request("data_sm", source_addr_ton=5, source_addr="ACME", dest_addr_ton=0, dest_addr_npi=1,
                         destination_addr=A, message_payload=OFFER.encode())
        assert resp.status == Status.ROK
        proxy_id_of(resp)
        clock.now = MORNING
        [got] = wait_for(lambda: at_smsc(stack, A), what="the released data_sm")
        assert got.command_id == CommandId.DATA_SM
        s.close()


def reply_as_the_sender_goes(stack: Stack, command_id: int, body: bytes):
    """The sender's leg closes and, in the same turn of the loop, the SMSC (not yet unbound) sends it a request:
    returns the proxy's answer to the SMSC (its status, or the exception)."""
    return replies_as_the_sender_goes(stack, command_id, body)[0]


def replies_as_the_sender_goes(stack: Stack, command_id: int, *bodies: bytes) -> list:
    """As reply_as_the_sender_goes, with a request per body in that same turn: the answers, in order."""
    bridge = wait_for(lambda: next(iter(stack.proxy.bridges), None), what="the bridge")
    smsc_leg = wait_for(lambda: next((x for x in stack.sim.sessions if x.system_id == "acme"), None),
                        what="the SMSC's session")
    answers: dict[int, object] = {}

    def reply():
        bridge.downstream.close()
        for i, body in enumerate(bodies):
            smsc_leg.request(build(command_id, 0, body), timeout=5).add_done_callback(
                lambda f, i=i: answers.setdefault(i, f.result().status if not f.exception() else f.exception()))
    stack.call(reply)
    wait_for(lambda: len(answers) == len(bodies), what="the proxy's answers to the SMSC")
    return [answers[i] for i in range(len(bodies))]


def the_next_receiver_gets_it(stack: Stack) -> None:
    """The account's next receiver gets the kept reply ("hello there"), and then nothing is owed."""
    later = Sender(stack)
    [got] = later.receipts(1)
    assert got.short_message == b"hello there"
    wait_for(lambda: rows(stack.config.store.path, "SELECT COUNT(*) FROM owed") == [(0,)], what="owed cleared")
    later.close()


def keep_a_reply(stack: Stack) -> Sender:
    """A reply ("hello there") comes as the sender's bind goes, and the proxy keeps it ([inbound] no_receiver =
    "keep"); returns that first sender, whose socket the test closes at its end."""
    first = Sender(stack)
    body = encode_body(CommandId.DELIVER_SM, source_addr_ton=1, source_addr_npi=1, source_addr="8613800000009",
                       destination_addr="ACME", short_message=b"hello there")
    assert reply_as_the_sender_goes(stack, CommandId.DELIVER_SM, body) == Status.ROK
    return first


@pytest.mark.parametrize("mode", ["retry", "keep"])
def test_a_reply_with_no_receiver_bound_is_kept_and_delivered_when_one_binds(tmp_path, mode):
    """[inbound] no_receiver: a reply that comes as the sender's bind goes (its leg closed, the SMSC's not yet
    unbound). "keep" saves it and gives it to the account's next receiver; "retry" leaves it to the SMSC (0x64)."""
    with Stack(config(tmp_path, NO_QUIET_HOURS, inbound={"no_receiver": mode}), store=True) as stack:
        first = Sender(stack)
        body = encode_body(CommandId.DELIVER_SM, source_addr_ton=1, source_addr_npi=1, source_addr="8613800000009",
                           destination_addr="ACME", short_message=b"hello there")
        answers = [reply_as_the_sender_goes(stack, CommandId.DELIVER_SM, body)]
        if mode == "retry":
            assert answers == [Status.RX_T_APPN]
            assert rows(stack.config.store.path, "SELECT COUNT(*) FROM owed") == [(0,)]
            return
        assert answers == [Status.ROK]
        assert rows(stack.config.store.path, "SELECT account, kind FROM owed") == [("acme", "mo")]
        the_next_receiver_gets_it(stack)
        first.client._socket.close()


def test_replies_kept_together_are_each_answered_before_the_smsc_leg_unbinds(tmp_path):
    """Three replies come in the turn the sender's leg goes: each is saved and answered OK; the SMSC's leg
    waits for all three before it unbinds, not for the first."""
    with Stack(keeping(tmp_path), store=True) as stack:
        first = Sender(stack)
        bodies = [encode_body(CommandId.DELIVER_SM, source_addr_ton=1, source_addr_npi=1, source_addr="8613800000009",
                              destination_addr="ACME", short_message=b"reply %d" % i) for i in range(3)]
        assert replies_as_the_sender_goes(stack, CommandId.DELIVER_SM, *bodies) == [Status.ROK] * 3
        assert rows(stack.config.store.path, "SELECT COUNT(*) FROM owed") == [(3,)]
        later = Sender(stack)
        assert sorted(g.short_message for g in later.receipts(3)) == [b"reply 0", b"reply 1", b"reply 2"]
        later.close()
        first.client._socket.close()


def test_kept_replies_go_one_at_a_time_through_a_window_of_one(tmp_path):
    """[upstream] window = 1 bounds what the proxy sends the sender too: two kept replies go to the next receiver
    one after the other, each once the one before is answered."""
    with Stack(keeping(tmp_path, upstream={"window": 1}),
               store=True) as stack:
        first = Sender(stack)
        bodies = [encode_body(CommandId.DELIVER_SM, source_addr_ton=1, source_addr_npi=1, source_addr="8613800000009",
                              destination_addr="ACME", short_message=b"reply %d" % i) for i in range(2)]
        assert replies_as_the_sender_goes(stack, CommandId.DELIVER_SM, *bodies) == [Status.ROK] * 2
        later = Sender(stack)
        assert sorted(g.short_message for g in later.receipts(2)) == [b"reply 0", b"reply 1"]
        wait_for(lambda: rows(stack.config.store.path, "SELECT COUNT(*) FROM owed") == [(0,)], what="owed cleared")
        later.close()
        first.client._socket.close()


def test_a_kept_reply_the_receiver_refuses_stays_owed_and_comes_again(tmp_path):
    """The receiver answers the kept reply with an error (0x08): it is still owed, and comes again at a later
    round until the receiver takes it; then it is owed no more."""
    with Stack(keeping(tmp_path), store=True) as stack:
        first = keep_a_reply(stack)
        answers = iter([Status.RSYSERR])
        later = Sender(stack)
        later.client.message_received_handler = lambda pdu: next(answers, None)  # refused once, then taken
        got = later.receipts(2)
        assert [g.short_message for g in got] == [b"hello there", b"hello there"]
        wait_for(lambda: rows(stack.config.store.path, "SELECT COUNT(*) FROM owed") == [(0,)], what="owed cleared")
        later.close()
        first.client._socket.close()


@pytest.mark.parametrize("saved", [True, False], ids=["saved", "not-saved"])
def test_a_kept_reply_is_answered_once_saved_and_then_the_smsc_leg_unbinds_at_once(tmp_path, saved):
    """The SMSC's leg of a sender that went stays up only until the reply kept for it is answered: OK once it is
    saved, 0x64 (the SMSC keeps it and retries) if it cannot be; then the leg unbinds, well within the grace."""
    cfg = keeping(tmp_path,
                 session={"response_timeout": 5.0, "enquire_link_interval": 30.0, "unbind_grace": 10.0})
    body = encode_body(CommandId.DELIVER_SM, source_addr_ton=1, source_addr_npi=1, source_addr="8613800000009",
                       destination_addr="ACME", short_message=b"hello there")
    with Stack(cfg, store=True) as stack:
        if not saved:
            refuse_inserts(stack.config.store.path, "owed")
        sender = Sender(stack)
        assert reply_as_the_sender_goes(stack, CommandId.DELIVER_SM, body) == (
            Status.ROK if saved else Status.RX_T_APPN)
        answered = time.monotonic()
        wait_for(lambda: not [x for x in stack.sim.sessions if x.system_id == "acme"], timeout=5.0,
                 what="the SMSC's leg unbound")
        assert time.monotonic() - answered < 5.0  # not the 10 s grace
        assert rows(stack.config.store.path, "SELECT COUNT(*) FROM owed") == [(1 if saved else 0,)]
        sender.client._socket.close()


def test_replies_kept_for_senders_stop_at_max_owed_and_the_smsc_is_told_to_retry(tmp_path, caplog):
    """[hold] max_owed bounds what is kept for senders with no receiver bound: past it the SMSC gets 0x64 and
    keeps the reply itself, and the operator is told why."""
    body = encode_body(CommandId.DELIVER_SM, source_addr_ton=1, source_addr_npi=1, source_addr="8613800000009",
                       destination_addr="ACME", short_message=b"hello there")
    with Stack(keeping(tmp_path, hold={"max_owed": 2}),
               store=True) as stack:
        answers, owed = [], []
        for _ in range(3):
            sender = Sender(stack)
            answers.append(reply_as_the_sender_goes(stack, CommandId.DELIVER_SM, body))
            owed.append(stack.proxy.holds.owed)
            sender.client._socket.close()
            wait_for(lambda: not stack.proxy.bridges, what="the sender gone")
        assert answers == [Status.ROK, Status.ROK, Status.RX_T_APPN]
        assert owed == [1, 2, 2]
        assert rows(stack.config.store.path, "SELECT COUNT(*) FROM owed") == [(2,)]
        assert ("2 deliveries kept for senders with no receiver bound ([hold] max_owed): the SMSC is answered 0x64"
                in [r.getMessage() for r in caplog.records if r.levelname == "WARNING"])


@pytest.mark.parametrize("payload", [b"TD please", b"\x4e" * 254, b"\x4e" * 255, "退订".encode("utf-16-be") * 70],
                         ids=["short", "254", "255", "long"])
def test_a_data_sm_kept_for_a_sender_is_delivered_as_a_deliver_sm_with_its_addresses_and_payload(tmp_path,
                                                                                              payload):
    """[inbound] no_receiver = "keep" and a data_sm from the SMSC: the sender's receiver gets a deliver_sm with the
    same addresses, esm_class, data_coding and text: in short_message up to 254 octets, else in
    message_payload; its other TLVs kept."""
    with Stack(keeping(tmp_path), store=True) as stack:
        first = Sender(stack)
        body = encode_body(CommandId.DATA_SM, service_type="WAP", source_addr_ton=1, source_addr_npi=1,
                           source_addr="8613800000009", dest_addr_ton=5, dest_addr_npi=9, destination_addr="ACME",
                           esm_class=0x80, registered_delivery=0x10, data_coding=8,
                           tlvs=[Tlv(TlvTag.MESSAGE_PAYLOAD, payload),
                                 Tlv(0x0204, b"\x00\x07")])  # user_message_reference
        assert reply_as_the_sender_goes(stack, CommandId.DATA_SM, body) == Status.ROK
        later = Sender(stack)
        [got] = later.receipts(1)
        assert (got.service_type, got.source_addr_ton, got.source_addr_npi, got.source_addr) == (
            b"WAP", 1, 1, b"8613800000009")
        assert (got.dest_addr_ton, got.dest_addr_npi, got.destination_addr) == (5, 9, b"ACME")
        assert (got.esm_class, got.registered_delivery, got.data_coding, got.user_message_reference) == (
            0x80, 0x10, 8, 7)  # esm_class: the reply path bit
        if len(payload) <= 254:
            assert (got.short_message, got.message_payload) == (payload, None)
        else:
            assert (got.short_message, got.message_payload) == (b"", payload)
        later.close()
        first.client._socket.close()


def held_till_morning(stack: Stack, clock: Clock, numbers: list[str]) -> Sender:
    """A sender's message to each of `numbers` held at night; then it is morning. Returns the sender."""
    s = Sender(stack)
    for n in numbers:
        proxy_id_of(s.submit(n))
    clock.now = MORNING
    return s


def test_a_release_goes_through_the_senders_max_tps_and_each_message_leaves_once(tmp_path):
    """[upstream] max_tps applies to released messages as to the sender's own: those over the rate wait their
    turn in the bridge, and each reaches the SMSC once, in order, and leaves the queue."""
    clock = Clock(NIGHT)
    with Stack(config(tmp_path, upstream={"max_tps": 5.0}, hold={"release_rate": 1000}), store=True,
               clock=clock) as stack:
        numbers = [f"1380013{i:04d}" for i in range(8)]
        s = held_till_morning(stack, clock, numbers)
        got = wait_for(lambda: len(stack.sim.received) == 8 and list(stack.sim.received), timeout=10,
                       what="all eight released")
        assert [r.fields["destination_addr"] for r in got] == numbers
        wait_for(lambda: rows(stack.config.store.path, "SELECT COUNT(*) FROM held") == [(0,)], what="queue empty")
        time.sleep(0.3)
        assert len(stack.sim.received) == 8
        s.close()


def test_released_messages_still_waiting_for_max_tps_when_the_smsc_goes_stay_held_and_go_later(tmp_path):
    """They never left: they are held again (not "unknown"), and go through the account's next bind."""
    clock = Clock(NIGHT)
    with Stack(config(tmp_path, upstream={"max_tps": 1.0}, hold={"release_rate": 1000}), store=True,
               clock=clock) as stack:
        numbers = [f"1380014{i:04d}" for i in range(4)]
        held_till_morning(stack, clock, numbers)
        wait_for(lambda: stack.sim.received, what="the first released")
        leg = next(x for x in stack.sim.sessions if x.system_id == "acme")
        stack.call(leg.close)  # the SMSC goes while the others wait for a token
        path = stack.config.store.path
        states = wait_for(lambda: (st := dict(rows(path, "SELECT recipient, state FROM held")))
                          and "sending" not in st.values() and st, what="the release settled")
        sent = {r.fields["destination_addr"] for r in stack.sim.received}
        assert len(sent) == 1 and all(state == "held" for n, state in states.items() if n not in sent)
        again = Sender(stack)
        wait_for(lambda: {r.fields["destination_addr"] for r in stack.sim.received} == set(numbers), timeout=10,
                 what="the rest released through the new bind")
        assert sorted(r.fields["destination_addr"] for r in stack.sim.received) == numbers
        again.close()


def test_a_stop_during_the_release_leaves_nothing_unknown_that_did_not_leave(tmp_path):
    """SIGTERM while held messages go out: the round in progress ends first, so every message the store calls
    "unknown" did reach the SMSC, and every one that did not is still held (it goes after the restart)."""
    clock = Clock(NIGHT)
    cfg = config(tmp_path, hold={"release_rate": 1000})
    with Stack(cfg, store=True, clock=clock) as stack:
        s = Sender(stack)
        numbers = [f"1380013{i:04d}" for i in range(60)]
        for n in numbers:
            assert s.submit(n).status == Status.ROK
        clock.now = MORNING
        wait_for(lambda: stack.sim.received, what="the release under way")
        s.client._socket.close()
    reached = {r.fields["destination_addr"] for r in stack.sim.received}
    states = dict(rows(cfg.store.path, "SELECT recipient, state FROM held"))
    assert all(n in reached for n, state in states.items() if state == "unknown"), states
    assert all(states.get(n) == "held" for n in numbers if n not in reached)
    assert "sending" not in states.values()


def test_due_messages_of_an_account_with_no_bind_wait_and_say_so(tmp_path, caplog):
    clock = Clock(NIGHT)
    with Stack(config(tmp_path), store=True, clock=clock) as stack:
        s = Sender(stack)
        proxy_id_of(s.submit(A))
        s.close()
        wait_for(lambda: not stack.proxy.bridges, what="the bind gone")
        with caplog.at_level("WARNING", logger="smppguard.hold"):
            clock.now = MORNING
            wait_for(lambda: "1 messages of account acme are due and wait for a transmitter or transceiver bind"
                     in caplog.text, what="the log line")
        assert at_smsc(stack, A) == []
        s = Sender(stack)  # a bind of the account: now it goes
        wait_for(lambda: at_smsc(stack, A), what="the message once the account bound")
        s.close()


def hold_and_go(stack: Stack, *dests: str) -> list[str]:
    """The sender holds a message to each of `dests` (at night) and goes away, its bind closed: the proxy ids."""
    s = Sender(stack)
    ids = [proxy_id_of(s.submit(dest)) for dest in dests]
    s.close()
    wait_for(lambda: not stack.proxy.bridges, what="the sender gone")
    return ids


def test_the_proxys_own_bind_answers_what_the_smsc_asks_and_marks_a_release_it_never_answered(tmp_path, caplog):
    """The proxy's transmitter bind for [hold] accounts, releasing while the SMSC does not answer: a deliver_sm
    from the SMSC is answered 0x04 (a transmitter takes none); its unbind is answered and the bind closed; the
    release in flight is then "unknown": it left, and is never sent again by itself."""
    clock = Clock(NIGHT)
    cfg = config(tmp_path, hold={"accounts": (("acme", "pw"),)})
    with RawSmsc() as smsc, Stack(cfg, store=True, clock=clock, upstream=smsc.address) as stack:
        smsc.passwords = {"acme": "pw"}  # the proxy's bind gives the configured password
        [proxy_id] = hold_and_go(stack, A)
        smsc.answer = "hold"  # the SMSC takes the release and never answers it
        clock.now = MORNING
        [release] = smsc.wait(lambda: smsc.received, what="the release")
        own = release.conn
        seq = own.request(rawsmsc.DELIVER_SM, deliver_sm_body("8613800000009", "ACME", b"hi"))
        assert smsc.wait(lambda: smsc.answers.get(seq), what="deliver_sm_resp") == (
            rawsmsc.DELIVER_SM | rawsmsc.RESP, Status.RINVBNDSTS)
        seq = own.request(rawsmsc.UNBIND)
        assert smsc.wait(lambda: smsc.answers.get(seq), what="unbind_resp") == (rawsmsc.UNBIND | rawsmsc.RESP, 0)
        assert own.closed.wait(5)
        path = stack.config.store.path
        assert wait_for(lambda: rows(path, "SELECT recipient, state FROM held") == [(A, "unknown")],
                        what="the release marked unknown")
        assert 86 * 10**11 + int(A) not in stack.store.screening.index.history  # a send it never confirmed
        assert (f'hold queue: the SMSC did not answer released message {proxy_id}; kept as "unknown", not sent '
                'again (smppguard queue list)') in [r.getMessage() for r in caplog.records
                                                    if r.levelname == "WARNING" and r.name == "smppguard.hold"]
        time.sleep(0.5)
        assert len(smsc.received) == 1  # not sent again


def test_a_release_bind_the_smsc_refuses_is_not_tried_again_at_every_round(tmp_path, caplog):
    """[hold] accounts with a password the SMSC no longer takes: the proxy's bind is refused, said once, and
    tried again only after 30 s, not at each look the queue takes at its own binds (every 2 s); the message
    stays held."""
    clock = Clock(NIGHT)
    cfg = config(tmp_path, hold={"accounts": (("acme", "pw"),)})
    with RawSmsc() as smsc, Stack(cfg, store=True, clock=clock, upstream=smsc.address) as stack:
        hold_and_go(stack, A)
        smsc.passwords = {"acme": "changed"}
        binds = smsc.binds
        clock.now = MORNING
        smsc.wait(lambda: smsc.binds > binds, what="the release bind")
        time.sleep(4.5)  # two more looks
        assert smsc.binds == binds + 1
        refused = [r.getMessage() for r in caplog.records if r.name == "smppguard.hold" and "refused" in r.getMessage()]
        assert refused == ["hold queue: the SMSC refused the release bind of acme with 0x0E ([hold] accounts)"]
        assert smsc.received == [] and rows(stack.config.store.path, "SELECT state FROM held") == [("held",)]


def test_with_hold_accounts_the_proxy_binds_itself_only_when_no_sender_of_the_account_is_bound(tmp_path, caplog):
    """[hold] accounts: nothing held, no bind; messages due while a sender of the account is bound go through
    that sender's bind, even while its window is full (one here, the SMSC slow to answer), and the proxy opens
    none of its own. No release round fails meanwhile."""
    clock = Clock(NIGHT)
    cfg = config(tmp_path, hold={"accounts": (("acme", "pw"),)}, upstream={"window": 1})
    with RawSmsc() as smsc, Stack(cfg, store=True, clock=clock, upstream=smsc.address) as stack:
        time.sleep(0.6)  # rounds of the queue with nothing held
        assert smsc.bind_requests == []
        s = Sender(stack)
        s.submit(A)
        s.submit(B)
        [sender_leg] = [c for c in smsc.conns if c.bound]
        smsc.answer = "hold"
        clock.now = MORNING
        [release] = smsc.wait(lambda: smsc.received, what="the first release")
        assert release.conn is sender_leg
        time.sleep(2.2)  # the second is due, the sender's window full: the queue looks at its own binds (2 s)
        assert len(smsc.bind_requests) == 1  # the sender's own
        smsc.release()
        [second] = smsc.wait(lambda: smsc.received[1:], what="the second release")
        assert second.conn is sender_leg
        smsc.release()
        assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == []
        s.close()


def test_the_proxys_own_bind_stays_up_between_releases_paced_by_release_rate(tmp_path):
    """[hold] release_rate = 0.7/s: the account's three messages leave 1.4 s apart, with nothing in flight between
    them when the queue looks at its own binds (every 2 s): the proxy's bind stays up for all three."""
    clock = Clock(NIGHT)
    cfg = config(tmp_path, hold={"accounts": (("acme", "pw"),), "release_rate": 0.7})
    with RawSmsc() as smsc, Stack(cfg, store=True, clock=clock, upstream=smsc.address) as stack:
        hold_and_go(stack, A, B, C)
        binds = len(smsc.bind_requests)
        clock.now = MORNING
        got = smsc.wait(lambda: smsc.received if len(smsc.received) == 3 else None, timeout=10, what="3 releases")
        assert len({r.conn for r in got}) == 1 and len(smsc.bind_requests) == binds + 1


def test_the_proxys_own_bind_unbinds_once_it_has_released_what_was_due(tmp_path):
    """Against an SMSC that shares no code with the proxy: the release bind sends the message once, and when
    nothing of the account is due or on its way it unbinds (unbind, answered) and closes, leaving no bind."""
    clock = Clock(NIGHT)
    cfg = config(tmp_path, hold={"accounts": (("acme", "pw"),)})
    with RawSmsc() as smsc, Stack(cfg, store=True, clock=clock, upstream=smsc.address) as stack:
        hold_and_go(stack, A)
        smsc.wait(lambda: smsc.unbinds, what="the sender's leg unbound")
        unbinds = len(smsc.unbinds)
        clock.now = MORNING
        [release] = smsc.wait(lambda: smsc.received, what="the release")
        own = release.conn
        assert own.system_id == "acme"
        [unbind] = smsc.wait(lambda: smsc.unbinds[unbinds:], timeout=10, what="the release bind unbound")
        assert unbind.conn is own
        assert own.closed.wait(5)
        wait_for(lambda: not stack.store.holds._own, what="the release bind forgotten")
        assert rows(stack.config.store.path, "SELECT COUNT(*) FROM held") == [(0,)] and len(smsc.received) == 1


def test_the_proxys_own_bind_keeps_to_max_tps_and_a_release_it_could_not_send_is_held_again(tmp_path):
    """[upstream] max_tps = 1 applies to the release bind too: its releases leave a second apart (a burst of one
    second's worth, one). When the SMSC drops the connection, a release still waiting for its token never left:
    it is held again (not "unknown") and goes through the next bind the proxy opens."""
    clock = Clock(NIGHT)
    cfg = config(tmp_path, hold={"accounts": (("acme", "pw"),)}, upstream={"max_tps": 1.0})
    with RawSmsc() as smsc, Stack(cfg, store=True, clock=clock, upstream=smsc.address) as stack:
        hold_and_go(stack, A, B, C)
        clock.now = MORNING
        first, second = smsc.wait(lambda: smsc.received[:2] if len(smsc.received) >= 2 else None,
                                  what="two releases")
        assert second.at - first.at >= 0.8  # a token a second
        assert second.conn is first.conn  # one bind for the account's due messages, not one each
        first.conn.close()  # the third still waits for its token
        path = stack.config.store.path
        third = wait_for(lambda: rows(path, "SELECT recipient FROM held WHERE state = 'held'"),
                         what="the third held again")
        assert third == [(C,)]
        # the first was answered; the second was answered, or its answer lost with the connection (sent: unknown)
        assert rows(path, "SELECT recipient, state FROM held WHERE recipient != ?", C) in ([], [(B, "unknown")])
        [again] = smsc.wait(lambda: smsc.received[2:], timeout=10, what="the third through a new bind")
        assert again.conn is not first.conn and again.destinations == [third[0][0]]


def test_with_hold_accounts_the_proxy_binds_itself_to_release_what_no_sender_is_bound_for(tmp_path):
    """[hold] accounts: the sender held a message at night and went away; in the morning the proxy opens a
    transmitter bind of that account itself, releases the message once, and unbinds when nothing is due."""
    clock = Clock(NIGHT)
    with Stack(config(tmp_path, hold={"accounts": (("acme", "pw"),)}), store=True, clock=clock) as stack:
        hold_and_go(stack, A)
        binds_before = len(stack.sim.binds)
        clock.now = MORNING
        [got] = wait_for(lambda: at_smsc(stack, A), timeout=10, what="the message released through the proxy's bind")
        [own] = stack.sim.binds[binds_before:]
        assert own.command_id == CommandId.BIND_TRANSMITTER
        assert parse_body(own.command_id, own.body)["system_id"] == "acme"
        assert got.system_id == "acme"
        wait_for(lambda: not stack.store.holds._own, timeout=10, what="the proxy's bind closed")
        time.sleep(0.5)
        assert len(at_smsc(stack, A)) == 1
        assert rows(stack.config.store.path, "SELECT COUNT(*) FROM held") == [(0,)]


def test_the_proxys_own_bind_is_a_version_3_4_transmitter_bind_that_keeps_to_the_window_and_enquires(tmp_path,
                                                                                                     caplog):
    """The release bind for [hold] accounts: bind_transmitter with status 0, the account's password and
    interface_version 0x34; it says so once bound; it keeps to [upstream] window (1 here: the second release
    waits for the first's answer) and sends enquire_link when idle for [session] enquire_link_interval."""
    clock = Clock(NIGHT)
    cfg = config(tmp_path, hold={"accounts": (("acme", "pw"),)}, upstream={"window": 1},
                 session={"response_timeout": 30.0, "enquire_link_interval": 0.5})
    with RawSmsc() as smsc, Stack(cfg, store=True, clock=clock, upstream=smsc.address) as stack:
        hold_and_go(stack, A, B)
        smsc.answer = "hold"
        binds = len(smsc.bind_requests)
        with caplog.at_level("INFO", logger="smppguard.hold"):
            clock.now = MORNING
            [first] = smsc.wait(lambda: smsc.received, what="the first release")
            enquiries = smsc.enquire_links
            smsc.wait(lambda: smsc.enquire_links > enquiries, what="an enquire_link on the idle release bind")
            assert len(smsc.received) == 1  # the window is full until the SMSC answers
            assert smsc.release() == 1
            [second] = smsc.wait(lambda: smsc.received[1:], what="the second release")
            assert second.conn is first.conn
        [bind] = smsc.bind_requests[binds:]
        assert (bind.command_id, bind.status, bind.conn) == (rawsmsc.BIND_TRANSMITTER, 0, first.conn)
        fields = parse_body(CommandId.BIND_TRANSMITTER, bind.body)
        assert (fields["system_id"], fields["password"], fields["interface_version"]) == ("acme", "pw", 0x34)
        assert [r.getMessage() for r in caplog.records if r.name == "smppguard.hold" and "bound" in r.getMessage()] \
            == ["hold queue: bound acme as a transmitter to release its held messages"]
        smsc.release()


def test_a_release_bind_the_smsc_never_answers_gives_up_after_the_bind_timeout_and_says_so(tmp_path, caplog):
    clock = Clock(NIGHT)
    cfg = config(tmp_path, hold={"accounts": (("acme", "pw"),)}, upstream={"bind_timeout": 0.5})
    with RawSmsc() as smsc, Stack(cfg, store=True, clock=clock, upstream=smsc.address) as stack:
        hold_and_go(stack, A)
        smsc.answer_binds = False
        binds = len(smsc.bind_requests)
        with caplog.at_level("WARNING", logger="smppguard.hold"):
            clock.now = MORNING
            [bind] = smsc.wait(lambda: smsc.bind_requests[binds:], what="the release bind")
            assert bind.conn.closed.wait(3), "the proxy gave up on the bind and closed the connection"
        [said] = [r.getMessage() for r in caplog.records if r.name == "smppguard.hold" and "cannot" in r.getMessage()]
        assert re.fullmatch(r"hold queue: cannot open a bind of acme to release its held messages: "
                            r"release:127\.0\.0\.1:\d+:acme: request timed out", said), said
        assert smsc.received == [] and rows(stack.config.store.path, "SELECT state FROM held") == [("held",)]


def test_a_release_bind_that_cannot_connect_gives_up_after_the_connect_timeout_and_says_timed_out(tmp_path,
                                                                                                   caplog):
    clock = Clock(NIGHT)
    cfg = config(tmp_path, hold={"accounts": (("acme", "pw"),)}, upstream={"connect_timeout": 0.5})
    with RawSmsc() as smsc, Stack(cfg, store=True, clock=clock, upstream=smsc.address) as stack:
        hold_and_go(stack, A)
        smsc.stall_connects()
        with caplog.at_level("WARNING", logger="smppguard.hold"):
            clock.now = MORNING
            said = wait_for(lambda: [r.getMessage() for r in caplog.records
                                     if r.name == "smppguard.hold" and "cannot" in r.getMessage()],
                            timeout=5, what="the warning")
        assert said == ["hold queue: cannot open a bind of acme to release its held messages: timed out"]
        assert rows(stack.config.store.path, "SELECT state FROM held") == [("held",)]


def test_a_kept_reply_whose_receiver_goes_without_answering_stays_owed_and_comes_to_the_next(tmp_path):
    """The receiver takes the kept reply's deliver_sm and closes without answering it: it was not delivered, so
    it is still owed, and the next receiver of the account gets it."""
    with Stack(keeping(tmp_path), store=True) as stack:
        first = keep_a_reply(stack)
        mute = RawPeer(stack.address, timeout=5)
        mute.bind()
        command_id, _, _, got = mute.read_pdu()
        assert command_id == CommandId.DELIVER_SM and parse_body(command_id, got)["short_message"] == b"hello there"
        mute.sock.close()  # gone without a deliver_sm_resp
        wait_for(lambda: not stack.proxy.bridges, what="the silent receiver gone")
        assert rows(stack.config.store.path, "SELECT COUNT(*) FROM owed") == [(1,)]
        the_next_receiver_gets_it(stack)
        first.client._socket.close()


def test_a_release_the_smsc_refuses_for_good_is_dropped_with_a_rejected_receipt_and_counted(tmp_path):
    """Two held messages released in the morning: the SMSC takes one and refuses the other with 0x0B (for good,
    not a throttle). The refused one leaves the queue with a REJECTD receipt to its sender; each is audited and
    counted as what happened to it."""
    clock = Clock(NIGHT)
    with RawSmsc() as smsc, Stack(config(tmp_path), store=True, clock=clock, upstream=smsc.address) as stack:
        s = Sender(stack)
        taken, refused = (proxy_id_of(s.submit(d, registered_delivery=1)) for d in (A, B))
        smsc.fail_destinations = {B: Status.RINVDSTADR}
        clock.now = MORNING
        smsc.wait(lambda: len(smsc.received) == 2, what="both releases")
        path = stack.config.store.path
        wait_for(lambda: rows(path, "SELECT COUNT(*) FROM held") == [(0,)], what="the queue empty")
        [receipt] = s.receipts(1)
        got = parse_receipt(receipt.short_message)
        assert (got.message_id, got.stat) == (refused, "REJECTD")
        assert (stack.proxy.holds.released, stack.proxy.holds.dropped) == (1, 1)
        audited = rows(path, "SELECT recipient, action, status, reason FROM audit WHERE rule = 'hold' "
                             "AND action IN ('released', 'dropped') ORDER BY action")
        dropped, released_ = audited
        assert dropped == ("+86138****8001", "dropped", Status.RINVDSTADR,
                           f"the SMSC refused the released message with 0x0B; proxy id {refused}")
        assert released_[:3] == ("+86138****8000", "released", 0)
        assert re.fullmatch(rf"held message released \(SMSC id raw[12]\); proxy id {taken}", released_[3]), released_
        s.close()


def test_messages_refused_at_release_in_one_round_are_each_dropped_with_a_receipt(tmp_path):
    """Both held recipients opt out overnight: in the morning each message is refused at its release (its own
    group), leaves the queue, and gets its REJECTD receipt; none reaches the SMSC."""
    clock = Clock(NIGHT)
    with Stack(config(tmp_path), store=True, clock=clock) as stack:
        s = Sender(stack)
        ids = {proxy_id_of(s.submit(d, registered_delivery=1)) for d in (A, B)}
        path = stack.config.store.path
        db = connect(path)
        changelog.write(db, [changelog.Change("optout", "add", int("86" + d), "global") for d in (A, B)],
                        origin="test")
        db.close()
        wait_for(lambda: stack.store.upkeep.index.change_id >= rows(path, "SELECT MAX(id) FROM changelog")[0][0],
                 what="Index caught up")
        clock.now = MORNING
        got = {(r.message_id, r.stat) for r in (parse_receipt(x.short_message) for x in s.receipts(2))}
        assert got == {(i, "REJECTD") for i in ids}
        wait_for(lambda: rows(path, "SELECT COUNT(*) FROM held") == [(0,)], what="both dropped")
        assert at_smsc(stack, A) == at_smsc(stack, B) == []
        assert stack.proxy.holds.dropped == 2
        with pytest.raises(AssertionError):  # each refused once: no second receipt
            s.receipts(3, timeout=0.5)
        s.close()


def test_a_cancelled_message_gives_its_rows_places_back_to_its_account(tmp_path):
    """[hold] max_per_account = 3: a submit_multi held for two numbers and one more message fill it; cancelling
    the submit_multi frees its two places, and two more are held."""
    clock = Clock(NIGHT)
    with Stack(config(tmp_path, hold={"max_per_account": 3}), store=True, clock=clock) as stack:
        s = Raw(stack)
        status, multi = s.ask(CommandId.SUBMIT_MULTI, source_addr_ton=5, source_addr="ACME", short_message=b"m",
                              dest_addresses=[SmeDest(0, 1, A), SmeDest(0, 1, B)])
        assert status == Status.ROK

        def ask(dest: str) -> int:
            return s.ask(CommandId.SUBMIT_SM, destination_addr=dest, short_message=b"a", **SUBMIT)[0]

        assert [ask(C), ask(C)] == [Status.ROK, Status.RMSGQFUL]
        assert s.ask(CommandId.CANCEL_SM, message_id=multi["message_id"], source_addr="ACME")[0] == Status.ROK
        assert [ask(A), ask(B), ask(C)] == [Status.ROK, Status.ROK, Status.RMSGQFUL]
        s.close()


def test_the_hold_queue_takes_max_messages_and_refuses_the_next_with_0x14(tmp_path):
    clock = Clock(NIGHT)
    with Stack(config(tmp_path, hold={"max_messages": 2}), store=True, clock=clock) as stack:
        s = Sender(stack)
        assert [s.submit(d).status for d in (A, B, C)] == [Status.ROK, Status.ROK, Status.RMSGQFUL]
        assert rows(stack.config.store.path, "SELECT COUNT(*) FROM held") == [(2,)]
        s.close()


def test_held_messages_count_for_the_frequency_cap_from_the_moment_they_are_held(tmp_path, caplog):
    """in quiet hours every message to one number was held, and all but the cap's worth dropped at
    release. A held message counts as a send at its release time: past the cap (max 2) the next one is refused
    0x45 at once, as by day; a cancelled one gives its place back. The hold's log line says what the sender got."""
    caplog.set_level("INFO", "smppguard.verdicts")
    clock = Clock(NIGHT)
    with Stack(config(tmp_path), store=True, clock=clock) as stack:
        s = Raw(stack)

        def submit(dest: str) -> tuple[int, dict]:
            return s.ask(CommandId.SUBMIT_SM, destination_addr=dest, short_message=OFFER.encode(), **SUBMIT)

        (first, _), (second, held) = submit(A), submit(A)
        assert (first, second) == (Status.ROK, Status.ROK)  # held, both within the cap
        assert submit(A)[0] == Status.RSUBMITFAIL  # a third: refused now, not dropped at release
        assert submit(B)[0] == Status.ROK  # another number has its own count
        assert s.ask(CommandId.CANCEL_SM, message_id=held["message_id"], source_addr="ACME")[0] == Status.ROK
        assert submit(A)[0] == Status.ROK  # the cancelled one gave its place back
        holds = [r.getMessage() for r in caplog.records if r.name == "smppguard.verdicts" and " hold " in
                 r.getMessage()]
        assert len(holds) == 4 and all(", status 0x00: quiet hours" in line for line in holds), holds
        clock.now = MORNING
        wait_for(lambda: len(at_smsc(stack, A)) == 2 and len(at_smsc(stack, B)) == 1, what="the releases")
        wait_for(lambda: not rows(stack.config.store.path, "SELECT 1 FROM held"), what="the queue empty")
        assert (stack.store.holds.dropped, stack.store.holds.released) == (0, 3)
        assert submit(A)[0] == Status.RSUBMITFAIL  # the two released ones count as sends now
        assert submit(B)[0] == Status.ROK
        s.close()


def test_messages_held_before_a_restart_still_count_for_the_frequency_cap(tmp_path):
    clock = Clock(NIGHT)
    for _ in range(2):
        with Stack(config(tmp_path), store=True, clock=clock) as stack:
            s = Raw(stack)
            assert s.ask(CommandId.SUBMIT_SM, destination_addr=A, short_message=OFFER.encode(), **SUBMIT)[0] == \
                Status.ROK
            s.close()
    with Stack(config(tmp_path), store=True, clock=clock) as stack:
        s = Raw(stack)
        assert s.ask(CommandId.SUBMIT_SM, destination_addr=A, short_message=OFFER.encode(), **SUBMIT)[0] == \
            Status.RSUBMITFAIL  # the two held by the earlier daemons count (max 2)
        s.close()


def test_a_held_message_of_a_class_the_cap_does_not_count_is_not_counted_after_a_recount(tmp_path):
    """Quiet hours hold both classes, the cap counts marketing only: a held notice never counts, not even after
    the queue's recount (which counts rows it does not know, held before a restart)."""
    policy = POLICY.replace('action = "hold"', 'action = "hold"\nclasses = ["marketing", "notice"]') + """
[[classes]]
name = "notice"
patterns = ["^Notice"]
"""
    clock = Clock(NIGHT)
    with Stack(config(tmp_path, policy), store=True, clock=clock) as stack:
        s = Raw(stack)

        def submit(text: str) -> int:
            return s.ask(CommandId.SUBMIT_SM, destination_addr=A, short_message=text.encode(), **SUBMIT)[0]

        assert [submit("Notice: your parcel"), submit("Notice: your bill")] == [Status.ROK, Status.ROK]
        stack.call(lambda: setattr(stack.store.holds, "_next_states", 0.0))  # recount at the next round
        wait_for(lambda: stack.store.holds._next_states > 0.0, what="the queue's recount")
        assert [submit(OFFER), submit(OFFER)] == [Status.ROK, Status.ROK]  # held: the notices did not count
        assert submit(OFFER) == Status.RSUBMITFAIL  # the cap (2) counts the marketing ones
        s.close()
