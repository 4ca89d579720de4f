"""Policy through the running proxy: smpplib sends, the simulator receives, real SQLite behind the proxy."""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import smpplib.smpp

from helpers import CN_ANY_HOUR, RawPeer, Stack, make_config, smpplib_client
from helpers import send_submit as send
from smppguard.smpp.commands import CommandId
from smppguard.smpp.concat import build_udh
from smppguard.smpp.fields import DistributionList, SmeDest, encode_body, parse_body
from smppguard.smpp.pdu import build
from smppguard.smpp.status import Status
from smppguard.store import changelog
from smppguard.store.db import connect

BLACKLIST_STATUS = 0x401
POLICY = CN_ANY_HOUR + f"""
[rules.frequency]
max = 4
period = "30d"
min_interval = "0s"

[rules.blacklist]
status = {BLACKLIST_STATUS:#x}

[[classes]]
name = "transactional"
patterns = ["验证码", "verification code"]
"""
BLOCKED = 8613900000001
FREE = "13800138000"


def config(tmp_path, policy=POLICY, **tables):
    return make_config(policy, store={"path": str(tmp_path / "guard.db")},
                       session={"response_timeout": 5.0, "enquire_link_interval": 30.0}, **tables)


def add_changes(path, *changes):
    db = connect(path)
    try:
        changelog.write(db, changes, origin="test", actor="pytest")
    finally:
        db.close()


def history(path, number):
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT COUNT(*) FROM send_history WHERE number = ?", (number,)).fetchone()[0]
    finally:
        db.close()


def wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


@pytest.fixture
def client_of():
    clients = []

    def make(stack, kind="transmitter"):
        c = smpplib_client(stack.address)
        getattr(c, f"bind_{kind}")(system_id="acme", password="pw")
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.disconnect()


def test_blacklisted_number_refused_while_otp_passes(tmp_path, client_of):
    cfg = config(tmp_path)
    add_changes(cfg.store.path, changelog.Change("blacklist", "add", BLOCKED, data={"source": "complaint"}))
    with Stack(cfg, store=True) as stack:
        c = client_of(stack)
        assert send(c, "+8613900000001", "Big sale today!").status == BLACKLIST_STATUS
        otp = send(c, "13900000001", "您的验证码是 482913")
        assert otp.status == Status.ROK
        assert [r.fields["destination_addr"] for r in stack.sim.received] == ["13900000001"]
    db = sqlite3.connect(cfg.store.path)
    rows = db.execute("SELECT rule, action, status, recipient, account, sender FROM audit").fetchall()
    db.close()
    assert rows == [("blacklist", "reject", BLACKLIST_STATUS, "+86139****0001", "acme", "ACME")]


def test_fifth_marketing_message_refused_and_number_forms_count_together(tmp_path, client_of):
    cfg = config(tmp_path)
    with Stack(cfg, store=True) as stack:
        c = client_of(stack)
        forms = ["13800138000", "8613800138000", "+8613800138000", "008613800138000"]
        assert [send(c, f, f"offer {i}").status for i, f in enumerate(forms)] == [Status.ROK] * 4
        assert send(c, FREE, "offer 5").status == Status.RSUBMITFAIL
        assert send(c, "13800138001", "other number").status == Status.ROK
        assert len(stack.sim.received) == 5
    assert history(cfg.store.path, 8613800138000) == 4


def udh_parts(text: bytes, ref: int, parts: int = 3) -> list[bytes]:
    size = -(-len(text) // parts)
    return [build_udh(ref, parts, i + 1) + text[i * size:(i + 1) * size] for i in range(parts)]


def test_three_part_message_counts_once_and_is_refused_whole(tmp_path, client_of):
    policy = POLICY.replace("max = 4", "max = 2")
    cfg = config(tmp_path, policy)
    with Stack(cfg, store=True) as stack:
        c = client_of(stack)
        assert send(c, FREE, "single").status == Status.ROK
        first = [send(c, FREE, part, esm_class=0x40).status for part in udh_parts(b"A" * 400, ref=7)]
        assert first == [Status.ROK] * 3  # three parts, one message: 2 of 2
        second = [send(c, FREE, part, esm_class=0x40).status for part in udh_parts(b"B" * 400, ref=8)]
        assert second == [Status.RSUBMITFAIL] * 3  # refused whole, not part by part
        assert len(stack.sim.received) == 4
    assert history(cfg.store.path, 8613800138000) == 2


def test_message_whose_first_part_the_smsc_refused_counts_once_a_later_part_is_accepted(tmp_path, client_of):
    cfg = config(tmp_path, POLICY.replace("max = 4", "max = 1"))
    with Stack(cfg, store=True) as stack:
        c = client_of(stack)
        parts = udh_parts(b"C" * 400, ref=9)
        stack.sim.submit_status = Status.RSUBMITFAIL
        assert send(c, FREE, parts[0], esm_class=0x40).status == Status.RSUBMITFAIL  # released: nothing counts
        stack.sim.submit_status = None
        assert [send(c, FREE, part, esm_class=0x40).status for part in parts[1:]] == [Status.ROK] * 2
        assert send(c, FREE, "another").status == Status.RSUBMITFAIL  # the message counted: 1 of 1
    assert history(cfg.store.path, 8613800138000) == 1


def test_concatenated_message_to_a_blacklisted_number_is_refused_whole(tmp_path, client_of):
    cfg = config(tmp_path)
    add_changes(cfg.store.path, changelog.Change("blacklist", "add", BLOCKED))
    with Stack(cfg, store=True) as stack:
        c = client_of(stack)
        statuses = [send(c, "13900000001", part, esm_class=0x40).status for part in udh_parts(b"C" * 300, 9)]
        assert statuses == [BLACKLIST_STATUS] * 3
        assert not stack.sim.received


def test_change_written_by_another_process_takes_effect_within_a_second(tmp_path, client_of):
    cfg = config(tmp_path)
    with Stack(cfg, store=True) as stack:
        c = client_of(stack)
        assert send(c, "13700000001", "before").status == Status.ROK
        add_changes(cfg.store.path, changelog.Change("blacklist", "add", 8613700000001))
        start = time.monotonic()
        assert wait_for(lambda: 8613700000001 in stack.store.screening.index.blacklist, timeout=1.0)
        assert send(c, "13700000001", "after").status == BLACKLIST_STATUS
        print(f"change applied after {time.monotonic() - start:.2f}s")


def test_invalid_number_refused_with_invdstadr(tmp_path, client_of):
    with Stack(config(tmp_path), store=True) as stack:
        c = client_of(stack)
        assert send(c, "12345", "hi").status == Status.RINVDSTADR


def test_an_invalid_number_is_masked_in_the_audit_row_and_the_log_line_reason_included(tmp_path, client_of,
                                                                                       caplog):
    """the recipient was masked, but the reason quoted it in full."""
    caplog.set_level("INFO", "smppguard.verdicts")
    with Stack(config(tmp_path), store=True) as stack:
        c = client_of(stack)
        assert send(c, "1380013800", "hi").status == Status.RINVDSTADR  # one digit short
        assert send(c, "13800138000", "hi", dest_addr_ton=1).status == Status.RINVDSTADR  # TON 1: no country code
    db = sqlite3.connect(tmp_path / "guard.db")
    rows = db.execute("SELECT recipient, reason FROM audit ORDER BY id").fetchall()
    db.close()
    assert [r for r, _ in rows] == ["13****3800", "138****8000"]
    lines = [r.getMessage() for r in caplog.records if r.name == "smppguard.verdicts"]
    assert len(lines) == 2
    for text in [reason for _, reason in rows] + lines:
        assert "1380013800" not in text and "13800138000" not in text, text


def test_submit_multi_refused_destinations_listed_with_the_smsc_ones(tmp_path):
    cfg = config(tmp_path)
    add_changes(cfg.store.path, changelog.Change("blacklist", "add", BLOCKED))
    with Stack(cfg, store=True) as stack:
        peer = RawPeer(stack.address, 5)
        try:
            peer.send(build(CommandId.BIND_TRANSMITTER, 1, encode_body(CommandId.BIND_TRANSMITTER,
                                                                      system_id="acme", password="pw")))
            assert peer.read_pdu()[1] == Status.ROK
            dests = [SmeDest(1, 1, "8613800138000"), SmeDest(1, 1, "8613900000001"), SmeDest(0, 1, "12345"),
                     DistributionList("vip")]
            peer.send(build(CommandId.SUBMIT_MULTI, 2, encode_body(CommandId.SUBMIT_MULTI, source_addr="ACME",
                                                                  dest_addresses=dests, short_message=b"hi all")))
            cid, status, seq, body = peer.read_pdu()
            assert (cid, status, seq) == (CommandId.SUBMIT_MULTI_RESP, Status.ROK, 2)
            resp = parse_body(cid, body)
            assert resp["message_id"] == stack.sim.received[0].message_id
            assert [(u.address, u.status) for u in resp["unsuccess_sme"]] == [
                ("8613900000001", BLACKLIST_STATUS), ("12345", Status.RINVDSTADR), ("vip", Status.RCNTSUBDL)]
            forwarded = stack.sim.received[0].fields["dest_addresses"]
            assert forwarded == [SmeDest(1, 1, "8613800138000")]  # a list's members cannot be screened
            # every destination refused: answered here, nothing forwarded
            peer.send(build(CommandId.SUBMIT_MULTI, 3, encode_body(CommandId.SUBMIT_MULTI, source_addr="ACME",
                                                                  dest_addresses=[SmeDest(1, 1, "8613900000001")],
                                                                  short_message=b"x")))
            cid, status, seq, body = peer.read_pdu()
            assert (cid, status, seq) == (CommandId.SUBMIT_MULTI_RESP, Status.ROK, 3)
            assert [u.address for u in parse_body(cid, body)["unsuccess_sme"]] == ["8613900000001"]
            assert len(stack.sim.received) == 1
        finally:
            peer.close()


def submit_multi_to_a_list(stack) -> tuple[int, list]:
    """submit_multi to one number and one distribution list: (status, the unsuccess_sme list)."""
    peer = RawPeer(stack.address, 5)
    try:
        peer.send(build(CommandId.BIND_TRANSMITTER, 1, encode_body(CommandId.BIND_TRANSMITTER,
                                                                  system_id="acme", password="pw")))
        assert peer.read_pdu()[1] == Status.ROK
        peer.send(build(CommandId.SUBMIT_MULTI, 2, encode_body(
            CommandId.SUBMIT_MULTI, source_addr="ACME", short_message=b"sale",
            dest_addresses=[SmeDest(1, 1, "8613800138000"), DistributionList("vip")])))
        cid, status, _seq, body = peer.read_pdu()
        return status, [(u.address, u.status) for u in parse_body(cid, body)["unsuccess_sme"]]
    finally:
        peer.close()


def test_distribution_list_is_refused_and_audited_unless_configured_to_pass(tmp_path):
    cfg = config(tmp_path)
    with Stack(cfg, store=True) as stack:
        assert submit_multi_to_a_list(stack) == (Status.ROK, [("vip", Status.RCNTSUBDL)])
        assert stack.sim.received[0].fields["dest_addresses"] == [SmeDest(1, 1, "8613800138000")]
    db = sqlite3.connect(cfg.store.path)
    try:
        assert db.execute("SELECT recipient, rule, status FROM audit").fetchall() == [
            ("list:vip", "distribution_lists", Status.RCNTSUBDL)]
    finally:
        db.close()
    cfg = config(tmp_path, POLICY.replace("[policy]\n", '[policy]\ndistribution_lists = "pass"\n'))
    with Stack(cfg, store=True) as stack:
        assert submit_multi_to_a_list(stack) == (Status.ROK, [])
        assert stack.sim.received[0].fields["dest_addresses"] == [SmeDest(1, 1, "8613800138000"),
                                                                  DistributionList("vip")]


def test_data_sm_to_a_blacklisted_number_refused(tmp_path):
    cfg = config(tmp_path)
    add_changes(cfg.store.path, changelog.Change("blacklist", "add", BLOCKED))
    with Stack(cfg, store=True) as stack:
        peer = RawPeer(stack.address, 5)
        try:
            peer.send(build(CommandId.BIND_TRANSCEIVER, 1, encode_body(CommandId.BIND_TRANSCEIVER,
                                                                      system_id="acme", password="pw")))
            assert peer.read_pdu()[1] == Status.ROK
            for seq, dest in ((2, "13900000001"), (3, FREE)):
                peer.send(build(CommandId.DATA_SM, seq, encode_body(CommandId.DATA_SM, source_addr="ACME",
                                                                   destination_addr=dest,
                                                                   tlvs=[(0x0424, b"sale")])))
            assert peer.read_pdu()[:3] == (CommandId.DATA_SM_RESP, BLACKLIST_STATUS, 2)
            assert peer.read_pdu()[:3] == (CommandId.DATA_SM_RESP, Status.ROK, 3)
        finally:
            peer.close()


def shanghai(hour, minute=0):
    return datetime(2026, 11, 27, hour, minute, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()


def test_quiet_hours_hold_keeps_the_message_and_schedule_sets_the_time(tmp_path, client_of):
    at_night = shanghai(23, 0)
    policy = POLICY.replace("[rules.quiet_hours]\nenabled = false", "[rules.quiet_hours]\naction = \"hold\"")
    with Stack(config(tmp_path, policy), store=True, clock=lambda: at_night) as stack:
        c = client_of(stack)
        assert send(c, FREE, "night offer").status == Status.ROK  # held: OK with a proxy id, not sent
        assert [r.fields["short_message"] for r in stack.sim.received] == []
        assert send(c, FREE, "您的验证码是 1234").status == Status.ROK  # transactional ignores quiet hours
        assert [r.fields["short_message"] for r in stack.sim.received] == ["您的验证码是 1234".encode("utf-16-be")]
    policy = POLICY.replace("[rules.quiet_hours]\nenabled = false",
                            "[rules.quiet_hours]\naction = \"hold\"\n[hold]\nmax_messages = 0")
    with Stack(config(tmp_path, policy), store=True, clock=lambda: at_night) as stack:
        c = client_of(stack)
        assert send(c, "13800138001", "night offer").status == Status.RMSGQFUL  # no room: try later
    policy = POLICY.replace("[rules.quiet_hours]\nenabled = false", "[rules.quiet_hours]\naction = \"schedule\"")
    with Stack(config(tmp_path, policy), store=True, clock=lambda: at_night) as stack:
        c = client_of(stack)
        assert send(c, "13800138002", "night offer").status == Status.ROK
        got = stack.sim.received[-1].fields
        # next 09:00 in Shanghai is 01:00 UTC on the 28th
        assert got["schedule_delivery_time"] == "261128010000000+"
        assert got["short_message"] == b"night offer"


def test_refused_message_releases_nothing_and_smsc_failure_releases_the_reservation(tmp_path, client_of):
    policy = POLICY.replace("max = 4", "max = 1")
    cfg = config(tmp_path, policy)
    with Stack(cfg, store=True) as stack:
        c = client_of(stack)
        stack.sim.bind_status = None
        stack.sim.respond = False
        pdu = smpplib.smpp.make_pdu("submit_sm", client=c, source_addr="ACME", destination_addr=FREE,
                                    short_message=b"first")
        c.send_pdu(pdu)
        assert wait_for(lambda: len(stack.sim.received) == 1)
        # in flight: it holds the only slot, so a concurrent second message is refused
        assert send(c, FREE, "second").status == Status.RSUBMITFAIL
        stack.call(stack.sim.drop_connections)  # the SMSC fails the first: its reservation is released
        assert c.read_pdu().status == Status.RSYSERR
    assert history(cfg.store.path, 8613800138000) == 0


CONTENT = POLICY + '\n[rules.content]\nforbidden = ["casino"]\nrequired = ["reply STOP"]\n'


def test_content_of_a_concatenated_message_is_judged_as_its_parts_arrive(tmp_path, client_of):
    with Stack(config(tmp_path, CONTENT), store=True) as stack:
        c = client_of(stack)
        parts = udh_parts(b"Weekend sale, everything half price in all our shops. Reply STOP to opt out", ref=1)
        assert [send(c, FREE, p, esm_class=0x40).status for p in parts] == [Status.ROK] * 3  # STOP ends it
        parts = udh_parts(b"Weekend sale, everything half price in all our shops, and more to come!!", ref=2)
        assert [send(c, FREE, p, esm_class=0x40).status for p in parts] == [Status.ROK, Status.ROK,
                                                                             Status.RSUBMITFAIL]
        parts = [build_udh(3, 2, 1) + b"Weekend sale: our new cas",  # the word is cut between the parts
                 build_udh(3, 2, 2) + b"ino opens, everything half price. Reply STOP"]
        assert [send(c, FREE, p, esm_class=0x40).status for p in parts] == [Status.ROK, Status.RSUBMITFAIL]
        parts = udh_parts(b"Casino weekend: everything half price in all our shops. Reply STOP now", ref=4)
        assert [send(c, FREE, p, esm_class=0x40).status for p in parts] == [Status.RSUBMITFAIL] * 3
        parts = udh_parts(b"Weekend sale, everything half price in all our shops. Reply STOP to opt out", ref=5)
        assert [send(c, FREE, parts[i], esm_class=0x40).status for i in (2, 0, 1)] == [Status.ROK] * 3  # any order
        assert len(stack.sim.received) == 3 + 2 + 1 + 3
    db = sqlite3.connect(config(tmp_path).store.path)
    try:
        rows = db.execute("SELECT reason, count FROM audit WHERE rule = 'content' ORDER BY id").fetchall()
    finally:
        db.close()
    # one recipient, rule and status: one folded row, counting every part refused (1 + 1 + 3)
    assert rows == [("content refused: no opt-out instruction", 5)]


def test_parts_of_a_message_scheduled_for_after_quiet_hours_are_judged_too(tmp_path, client_of):
    at_night = shanghai(23, 0)
    policy = CONTENT.replace("[rules.quiet_hours]\nenabled = false", "[rules.quiet_hours]\naction = \"schedule\"")
    with Stack(config(tmp_path, policy), store=True, clock=lambda: at_night) as stack:
        c = client_of(stack)
        parts = udh_parts(b"Night owl sale, everything half price in all of our shops until dawn!!", ref=6, parts=2)
        assert [send(c, FREE, p, esm_class=0x40).status for p in parts] == [Status.ROK, Status.RSUBMITFAIL]
        assert stack.sim.received[0].fields["schedule_delivery_time"] == "261128010000000+"
        assert len(stack.sim.received) == 1


def test_a_message_scheduled_for_after_quiet_hours_counts_for_the_frequency_cap(tmp_path, client_of):
    at_night = shanghai(23, 0)
    policy = POLICY.replace("[rules.quiet_hours]\nenabled = false", "[rules.quiet_hours]\naction = \"schedule\"")
    cfg = config(tmp_path, policy.replace("max = 4", "max = 1"))
    with Stack(cfg, store=True, clock=lambda: at_night) as stack:
        c = client_of(stack)
        assert send(c, FREE, "night offer").status == Status.ROK  # forwarded, scheduled for 09:00
        assert stack.sim.received[-1].fields["schedule_delivery_time"] == "261128010000000+"
        # the cap (1) is reached by the scheduled message: the next is refused by frequency, not scheduled
        assert send(c, FREE, "second night offer").status == Status.RSUBMITFAIL
        assert len(stack.sim.received) == 1
    assert history(cfg.store.path, 8613800138000) == 1


def test_an_opt_out_confirmation_passes_once_within_the_grace(tmp_path, client_of):
    cfg = config(tmp_path)
    with Stack(cfg, store=True) as stack:
        add_changes(cfg.store.path, changelog.Change("optout", "add", 8613800138000, "sender", "ACME",
                                                     data={"source": "mo", "keyword": "T"}))
        assert wait_for(lambda: stack.store.screening.index.optout_at, timeout=2.0)
        c = client_of(stack)
        assert send(c, FREE, "You are unsubscribed from ACME offers").status == Status.ROK
        assert send(c, FREE, "You are unsubscribed from ACME offers").status == Status.RSUBMITFAIL  # one only
        assert send(c, FREE, "Weekend sale").status == Status.RSUBMITFAIL
        assert [r.fields["short_message"] for r in stack.sim.received] == [b"You are unsubscribed from ACME offers"]


def test_a_sender_that_resends_what_was_refused_gets_one_audit_row_that_counts_every_refusal(tmp_path, client_of):
    from click.testing import CliRunner

    from smppguard.cli import main

    cfg = config(tmp_path, POLICY.replace("max = 4", "max = 1"))
    with Stack(cfg, store=True) as stack:
        c = client_of(stack)
        statuses = [send(c, FREE, f"offer {i}").status for i in range(6)]
        parts = udh_parts(b"D" * 300, ref=11)
        statuses += [send(c, FREE, p, esm_class=0x40).status for p in parts]  # one message, three refusals
        assert statuses == [Status.ROK] + [Status.RSUBMITFAIL] * 8
        stack.run(stack.store.writer.flush())
    db = sqlite3.connect(cfg.store.path)
    try:
        assert db.execute("SELECT rule, status, count FROM audit").fetchall() == [("frequency", 0x45, 8)]
    finally:
        db.close()
    toml = tmp_path / "smppguard.toml"
    toml.write_text(f'[store]\npath = "{cfg.store.path}"\n[policy]\ndefault_region = "CN"\n')
    r = CliRunner().invoke(main, ["stats", "--json", "--config", str(toml)])
    assert [(x["rule"], x["action"], x["count"]) for x in json.loads(r.stdout)] == [
        ("-", "sent", 1), ("frequency", "reject", 8)]
