"""The sending-pattern review and keyword replies through the running proxy, at an SMSC that shares no code with
it (tests/rawsmsc.py), smpplib as the sender, a real Mosquitto for the review's event.

The review: a burst of numbers never sent to before trips it, the event is published, and the account's
marketing is held (the sender gets OK, the SMSC nothing) until `smppguard account release`, when what was held
goes out. Keyword replies: a STOP gets exactly one confirmation through the account's own bind, a second STOP the
same day none; HELP gets the help text.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from e2e.test_learning import Sender
from helpers import CN_ANY_HOUR, Stack, make_config, rows, wait_for
from mosquitto import Broker, Watcher, need_mosquitto
from rawsmsc import DELIVER_SM, RawSmsc, deliver_sm_body
from smppguard.cli import main
from smppguard.smpp.status import Status

POLICY = CN_ANY_HOUR + """
[rules.frequency]
max = 100
period = "30d"
min_interval = "0s"
"""
SENDER = "10690000"


def config(tmp_path, **tables):
    return make_config(POLICY, store={"path": str(tmp_path / "guard.db")},
                       session={"response_timeout": 5.0, "enquire_link_interval": 30.0}, **tables)


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), prog_name="smppguard", catch_exceptions=False)


def sent_to(smsc: RawSmsc) -> list[str]:
    return [d for r in smsc.received for d in r.destinations]


# --- the review ---------------------------------------------------------------------------------------------

@pytest.fixture
def broker():
    need_mosquitto()
    with Broker() as b:
        yield b


def test_a_burst_of_fresh_numbers_trips_the_review_and_holds_the_accounts_marketing_until_released(
        tmp_path, broker):
    path = tmp_path / "guard.db"
    watcher = Watcher(broker, "smppguard/events/review")
    review = {"enabled": True, "action": "hold", "min_sent": 20, "new_share": 0.9}
    try:
        with RawSmsc() as smsc, Stack(config(tmp_path, review=review, mqtt={"url": broker.url, "node": "a"}),
                                      store=True, upstream=smsc.address) as stack:
            sender = Sender(stack)
            try:
                # the same 5 recipients, 4 times: 20 sent, no more than 25% new: no trip
                for _ in range(4):
                    for n in range(5):
                        assert sender.submit(SENDER, 8613800000000 + n) == Status.ROK
                wait_for(lambda: stack.store.review.last.get("acme", {}).get("sent") == 20, what="judged")
                assert rows(path, "SELECT * FROM account_review") == []
                # then 200 numbers never sent to: 220 sent, 205 of them new
                for n in range(200):
                    assert sender.submit(SENDER, 8613900000000 + n) == Status.ROK
                assert len(sent_to(smsc)) == 220
                state = wait_for(lambda: rows(path, "SELECT state, reason FROM account_review WHERE account = 'acme'"),
                                 what="the account marked")
                assert state[0][0] == "held" and "new recipients 93% of 220 sent" in state[0][1]
                event = json.loads(wait_for(lambda: watcher.on("smppguard/events/review"), what="the event")[0])
                assert event["account"] == "acme" and event["state"] == "held" and event["figures"]["sent"] == 220
                # held, not refused: the sender gets OK, the SMSC nothing
                assert sender.submit(SENDER, 8613700000001) == Status.ROK
                assert wait_for(lambda: rows(path, "SELECT COUNT(*) FROM held WHERE account = 'acme'")[0][0] == 1,
                                what="the message held")
                assert len(sent_to(smsc)) == 220
                shown = invoke("account", "show", "acme", "--db", str(path))
                assert shown.exit_code == 0 and "state        held" in shown.output and "new_share" in shown.output
                listed = invoke("account", "list", "--json", "--db", str(path))
                assert json.loads(listed.output)[0]["held"] == 1
                released = invoke("account", "release", "acme", "--db", str(path))
                assert released.exit_code == 0, released.output
                assert "1 held message due now" in released.output
                smsc.wait(lambda: len(smsc.received) == 221, timeout=10, what="the held message sent")
                assert sent_to(smsc)[-1] == "8613700000001"
                assert sender.submit(SENDER, 8613700000002) == Status.ROK  # and new marketing goes straight out
                smsc.wait(lambda: len(smsc.received) == 222, what="new marketing forwarded")
                assert invoke("account", "release", "acme", "--db", str(path)).exit_code == 1  # not under review
                audited = rows(path, "SELECT action, actor FROM audit WHERE rule = 'review' AND action != 'hold' "
                                     "ORDER BY id")
                assert [a for a, _who in audited if a in ("held", "released")] == ["held", "released"]
            finally:
                sender.close()
    finally:
        watcher.close()


def test_with_action_alert_the_review_only_reports(tmp_path):
    path = tmp_path / "guard.db"
    review = {"enabled": True, "action": "alert", "min_sent": 20, "new_share": 0.9}
    with RawSmsc() as smsc, Stack(config(tmp_path, review=review), store=True, upstream=smsc.address) as stack:
        sender = Sender(stack)
        try:
            for n in range(25):
                assert sender.submit(SENDER, 8613900000000 + n) == Status.ROK
            wait_for(lambda: rows(path, "SELECT state FROM account_review"), what="the account marked")
            assert rows(path, "SELECT state FROM account_review") == [("alert",)]
            assert stack.store.review.tripped["acme"] == 1
            assert sender.submit(SENDER, 8613700000001) == Status.ROK
            smsc.wait(lambda: len(smsc.received) == 26, what="still forwarded")
        finally:
            sender.close()


def listed(path, number: str, source: str) -> None:
    assert invoke("blacklist", "add", number, "--source", source, "--db", str(path)).exit_code == 0


def test_a_complaint_against_a_number_the_account_sent_to_counts_against_that_account(tmp_path):
    path = tmp_path / "guard.db"
    review = {"enabled": True, "action": "alert", "min_sent": 20, "new_share": 0.0, "complaints_per_1000": 20.0}
    with RawSmsc() as smsc, Stack(config(tmp_path, review=review), store=True, upstream=smsc.address) as stack:
        sender = Sender(stack)
        try:
            for n in range(40):
                assert sender.submit(SENDER, 8613900000000 + n) == Status.ROK
            wait_for(lambda: rows(path, "SELECT COUNT(*) FROM send_history")[0][0] == 40, what="the sends saved")
            # a number nobody here sent to: no account to count it against
            listed(path, "8613600000000", "complaint")
            listed(path, "8613900000007", "carrier")
            wait_for(lambda: stack.store.upkeep.index.change_id >= 2, what="both changes applied")
            wait_for(lambda: stack.store.review.last.get("acme", {}).get("sent") == 40, what="judged")
            assert stack.store.review.last["acme"]["complaints"] == 0
            assert rows(path, "SELECT * FROM account_review") == []
            listed(path, "8613900000003", "complaint")
            state = wait_for(lambda: rows(path, "SELECT state, reason FROM account_review"), what="tripped")
            assert state == [("alert", "complaints 1 (25.0 per 1000 sent; threshold 20.0)")]
        finally:
            sender.close()


# --- keyword replies ----------------------------------------------------------------------------------------

A, B = 8613800000001, 8613800000002


def reply(stack: Stack, smsc: RawSmsc, sender: Sender, number: int, text: bytes) -> None:
    smsc.bound().request(DELIVER_SM, deliver_sm_body(str(number), SENDER, text))
    sender.read_deliver()  # the reply still reaches the sender


def answers(smsc: RawSmsc) -> list[tuple[str, str, str]]:
    """(destination, source, text) of the submits that carry an answer (the proxy's own)."""
    out = []
    for r in smsc.received:
        body = r.body
        from smppguard.smpp.commands import CommandId
        from smppguard.smpp.fields import parse_body
        f = parse_body(CommandId.SUBMIT_SM, body)
        raw = f["short_message"]
        text = raw.decode("utf-16-be") if f["data_coding"] == 8 else raw.decode("latin-1")
        out.append((f["destination_addr"], f["source_addr"], text))
    return out


def test_a_stop_reply_gets_exactly_one_confirmation_through_the_accounts_bind_and_help_its_text(tmp_path):
    path = tmp_path / "guard.db"
    replies = {"enabled": True, "optout_text": "您已退订, 不再收到短信", "help_text": "Reply STOP to opt out"}
    with RawSmsc() as smsc, Stack(config(tmp_path, replies=replies), store=True, upstream=smsc.address) as stack:
        sender = Sender(stack)
        try:
            reply(stack, smsc, sender, A, b"STOP")
            smsc.wait(lambda: len(smsc.received) == 1, what="the confirmation")
            assert answers(smsc) == [(str(A), SENDER, "您已退订, 不再收到短信")]
            assert smsc.received[0].conn.system_id == "acme"  # through the account's own bind
            from smppguard.smpp.fields import parse_body
            first = parse_body(smsc.received[0].command_id, smsc.received[0].body)
            # from the long code as digits of unknown type (1069... is national), to the recipient as international
            assert (first["source_addr_ton"], first["dest_addr_ton"], first["registered_delivery"]) == (0, 1, 0)
            reply(stack, smsc, sender, A, b"TD")  # a second opt-out the same day: no second confirmation
            wait_for(lambda: rows(path, "SELECT COUNT(*) FROM audit WHERE rule = 'reply' AND action = 'not sent'"
                                  )[0][0] == 1, what="the second answer audited as not sent")
            reply(stack, smsc, sender, B, b"help")
            smsc.wait(lambda: len(smsc.received) == 2, what="the help text")
            assert answers(smsc)[1] == (str(B), SENDER, "Reply STOP to opt out")
            wait_for(lambda: rows(path, "SELECT number, kind FROM keyword_reply ORDER BY number") == [
                (A, "optout"), (B, "help")], what="both answers kept")
            assert rows(path, "SELECT COUNT(*) FROM optout WHERE number = ?", B)[0][0] == 0  # help opts nobody out
        finally:
            sender.close()
        assert len(smsc.received) == 2
    # a restart within the day still knows the number was answered
    with RawSmsc() as smsc, Stack(config(tmp_path, replies=replies), store=True, upstream=smsc.address) as stack:
        sender = Sender(stack)
        try:
            reply(stack, smsc, sender, A, b"STOP")
            wait_for(lambda: rows(path, "SELECT COUNT(*) FROM audit WHERE rule = 'reply' AND action = 'not sent'"
                                  )[0][0] == 2, what="not answered again after the restart")
            assert smsc.received == []
        finally:
            sender.close()


def test_a_blacklisted_number_gets_no_answer(tmp_path):
    path = tmp_path / "guard.db"
    assert invoke("blacklist", "add", str(A), "--db", str(path)).exit_code == 0
    with RawSmsc() as smsc, Stack(config(tmp_path, replies={"enabled": True}), store=True,
                                  upstream=smsc.address) as stack:
        sender = Sender(stack)
        try:
            reply(stack, smsc, sender, A, b"STOP")
            got = wait_for(lambda: rows(path, "SELECT reason FROM audit WHERE rule = 'reply'"), what="audited")
            assert got == [("optout answer not sent: the number is blacklisted",)]
            assert smsc.received == []
        finally:
            sender.close()


def test_only_the_configured_accounts_and_senders_answer(tmp_path):
    path = tmp_path / "guard.db"
    for replies in ({"enabled": True, "senders": ["10690099"]}, {"enabled": True, "system_ids": ["other"]}):
        with RawSmsc() as smsc, Stack(config(tmp_path, replies=replies), store=True, upstream=smsc.address) as stack:
            sender = Sender(stack)
            try:
                reply(stack, smsc, sender, A, b"HELP")
                reply(stack, smsc, sender, B, b"STOP")
                wait_for(lambda: rows(path, "SELECT COUNT(*) FROM optout WHERE number = ?", B)[0][0] == 1,
                         what="the opt-out learned all the same")
                assert sender.submit(SENDER, 8613700000001) == Status.ROK  # the bind works; it just does not answer
                smsc.wait(lambda: len(smsc.received) == 1, what="the one submit")
                assert sent_to(smsc) == ["8613700000001"]
                assert rows(path, "SELECT COUNT(*) FROM audit WHERE rule = 'reply'") == [(0,)]
            finally:
                sender.close()
