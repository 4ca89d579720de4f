"""Hostile clients cannot lock others out or forge log lines (the connection limits, the bind timeout, the log's
escaping and throttling), against a raw SMSC, with raw sockets as the clients.

127.0.0.2 is another loopback address: to the proxy, a sender on another host.
"""

from __future__ import annotations

import logging
import re
import socket
import time

import pytest

from helpers import RawPeer, Stack, make_config, start_daemon
from smppguard.metrics import Metrics
from smppguard.smpp.commands import CommandId
from smppguard.smpp.fields import encode_body
from smppguard.smpp.pdu import build

OTHER_HOST = "127.0.0.2"


def config(**listen):
    return make_config(listen=listen, session={"response_timeout": 5.0, "enquire_link_interval": 30.0})


def test_idle_connections_from_one_address_cannot_lock_out_a_sender_from_another(smsc, peers, caplog):
    with Stack(config(max_connections_per_address=5, bind_timeout=30.0), upstream=smsc.address) as stack:
        with caplog.at_level(logging.WARNING, logger="smppguard.proxy"):
            idle = [peers(stack) for _ in range(5)]
            flood = [peers(stack) for _ in range(40)]  # over the cap: each closed as it opens
            assert all(p.closed_by_peer(timeout=2.0) for p in flood)
            assert not idle[0].closed_by_peer(timeout=0.2)  # the first five stay (until the bind timeout)
            peers(stack, OTHER_HOST).bind(system_id="other")  # another address binds at once
        refused = [r for r in caplog.records if "max_connections_per_address" in r.getMessage()]
        assert len(refused) == 1  # 40 refusals, one line (once a minute per address)


def test_a_connection_that_sends_no_bind_in_time_is_closed_and_its_slot_freed(smsc, peers, caplog):
    with Stack(config(max_connections_per_address=1, bind_timeout=0.5), upstream=smsc.address) as stack:
        idle = peers(stack)
        started = time.monotonic()
        with caplog.at_level(logging.INFO, logger="smppguard.proxy"):
            assert idle.closed_by_peer(timeout=3.0)
        assert time.monotonic() - started >= 0.4
        assert [r.getMessage() for r in caplog.records if r.getMessage().startswith("connection from")] == [
            "connection from 127.0.0.1 closed: no bind within 0.5 s ([listen] bind_timeout)"]
        peers(stack).bind()  # the slot is free again; a bound connection is not timed out
        bound = stack.proxy.bridges
        time.sleep(0.8)
        assert len(bound) == 1 and next(iter(bound)).downstream.is_open


def test_a_bind_sent_a_byte_at_a_time_is_cut_off_by_the_bind_timeout(smsc, peers):
    bind = build(CommandId.BIND_TRANSCEIVER, 1, encode_body(CommandId.BIND_TRANSCEIVER, system_id="slow",
                                                            password="pw"))
    with Stack(config(bind_timeout=0.5), upstream=smsc.address) as stack:
        slow = peers(stack)
        sent = 0
        try:
            for byte in bind[:-1]:
                slow.send(bytes((byte,)))
                sent += 1
                time.sleep(0.05)
        except OSError:
            pass  # closed under us: what is expected
        assert slow.closed_by_peer(timeout=2.0)
        assert sent < len(bind) - 1
        assert not smsc.conns  # it never reached the SMSC


def test_a_system_id_with_a_newline_cannot_forge_a_log_line(tmp_path):
    daemon, address = start_daemon(tmp_path, '[log]\nlevel = "info"\n')
    try:
        peer = RawPeer(address, 5.0)
        peer.request(CommandId.BIND_TRANSCEIVER, 1, system_id="x\nCRITICAL FORGED", password="pw")
        peer.read_pdu()
        peer.close()
        time.sleep(0.3)
    finally:
        daemon.terminate()
        _, stderr = daemon.communicate(timeout=10)
    lines = stderr.splitlines()
    assert not [line for line in lines if line.startswith("CRITICAL") or line.startswith("FORGED")]
    assert any("x\\nCRITICAL FORGED" in line for line in lines), stderr[-2000:]


def test_the_flood_costs_no_memory_past_the_caps(smsc, peers):
    """Connections over the caps are closed as they open: the proxy keeps no bridge for them."""
    with Stack(config(max_connections=10, max_connections_per_address=3, bind_timeout=30.0),
               upstream=smsc.address) as stack:
        kept = [peers(stack) for _ in range(3)]
        for _ in range(100):
            s = socket.create_connection(stack.address, timeout=2.0)
            s.close()
        time.sleep(0.2)
        assert stack.call(lambda: (len(stack.proxy.bridges), dict(stack.proxy._per_host))) == (
            3, {"127.0.0.1": 3})
        for p in kept:
            p.close()
        time.sleep(0.2)
        assert stack.call(lambda: (len(stack.proxy.bridges), dict(stack.proxy._per_host))) == (0, {})


def test_a_flood_of_unknown_commands_is_answered_each_and_logged_once(smsc, peers, caplog):
    with Stack(config(), upstream=smsc.address) as stack:
        with caplog.at_level(logging.INFO, logger="smppguard.session"):
            peer = peers(stack)
            peer.send(b"".join(build(0x00000999, seq, b"") for seq in range(1, 1001)))
            answers = [peer.read_pdu() for _ in range(1000)]
        assert {(cid, status) for cid, status, _seq, _body in answers} == {(CommandId.GENERIC_NACK, 0x03)}
        unknown = [r for r in caplog.records if "unknown command_id" in r.getMessage()]
        assert len(unknown) == 1


# --- the bind gate -----------------------------------------------------------------------------------------

def bind_status(peer: RawPeer, system_id: str, password: str, seq: int = 1) -> int:
    peer.request(CommandId.BIND_TRANSCEIVER, seq, system_id=system_id, password=password)
    cid, status, got_seq, _ = peer.read_pdu()
    assert (cid, got_seq) == (CommandId.BIND_TRANSCEIVER_RESP, seq)
    return status


def test_a_password_guesser_makes_a_few_upstream_binds_and_is_then_refused_here(smsc, peers):
    smsc.passwords = {"acme": "right"}
    metrics = Metrics()
    with Stack(config(failed_binds=3, bind_backoff=0.5), upstream=smsc.address, bind_failed=metrics.bind_failed) \
            as stack:
        statuses = [bind_status(peers(stack), "acme", f"guess{i}") for i in range(20)]
        assert statuses[:3] == [0x0E] * 3  # the SMSC's own answer, three times
        assert statuses[3:] == [0x0D] * 17  # then refused here: the SMSC saw none of them
        assert smsc.binds == 3
        assert bind_status(peers(stack, OTHER_HOST), "acme", "right") == 0  # another address binds meanwhile
        assert bind_status(peers(stack), "acme", "right") == 0x0D  # the guesser's address, even with the password
        time.sleep(0.6)  # the backoff ends
        assert bind_status(peers(stack), "acme", "right") == 0
        assert smsc.binds == 5
        assert metrics.bind_failures == {"smsc_refused": 3, "refused_here": 18}  # smppguard_bind_failures


def test_the_bind_timeout_stops_at_the_bind_a_slow_smsc_has_until_the_upstream_bind_timeout(smsc, peers):
    """[listen] bind_timeout closes a connection that sends no bind; one whose bind waits for a slow SMSC is not
    closed by it: it gets its answer (0x08 here, when [upstream] bind_timeout passes with none)."""
    cfg = make_config(listen={"bind_timeout": 0.3}, upstream={"bind_timeout": 1.0},
                      session={"response_timeout": 5.0, "enquire_link_interval": 30.0})
    with Stack(cfg, upstream=smsc.address) as stack:
        smsc.answer_binds = False
        peer = peers(stack)
        assert bind_status(peer, "acme", "pw") == 0x08


def test_a_bind_that_succeeds_forgets_the_failures_of_its_address(smsc, peers):
    """A sender that mistyped its password twice and then bound is not one failure away from the backoff: its
    address starts again from none."""
    smsc.passwords = {"acme": "right"}
    with Stack(config(failed_binds=3, bind_backoff=30.0), upstream=smsc.address) as stack:
        assert [bind_status(peers(stack), "acme", "typo") for _ in range(2)] == [0x0E] * 2
        assert bind_status(peers(stack), "acme", "right") == 0
        assert [bind_status(peers(stack), "acme", "typo") for _ in range(2)] == [0x0E] * 2  # the SMSC's answers
        assert smsc.binds == 5


@pytest.mark.parametrize("fault", ["unreachable", "silent"])
def test_a_bind_the_smsc_cannot_take_is_answered_0x08_and_counted_by_why(smsc, peers, caplog, fault):
    """An SMSC that cannot be reached in [upstream] connect_timeout, or does not answer the bind in bind_timeout:
    the sender's bind is answered 0x08 (RSYSERR), the log says why, and the bind failures count it."""
    metrics = Metrics()
    cfg = make_config(session={"response_timeout": 5.0, "enquire_link_interval": 30.0},
                      upstream={"connect_timeout": 0.5, "bind_timeout": 0.5})
    with Stack(cfg, upstream=smsc.address, bind_failed=metrics.bind_failed) as stack:
        if fault == "unreachable":
            smsc.stall_connects()
        else:
            smsc.answer_binds = False
        with caplog.at_level(logging.WARNING, logger="smppguard.proxy"):
            assert bind_status(peers(stack), "acme", "pw") == 0x08
        said = [r.getMessage() for r in caplog.records if "RSYSERR" in r.getMessage()]
        if fault == "unreachable":
            assert metrics.bind_failures == {"smsc_unreachable": 1}
            assert [m.split(": ", 1)[1] for m in said] == ["SMSC unreachable (timed out); bind answered RSYSERR"]
        else:
            assert metrics.bind_failures == {"smsc_no_answer": 1}
            [line] = said
            assert re.fullmatch(r"\S+: no bind response from the SMSC \(upstream:\S+: request timed out\); "
                                r"answered RSYSERR", line), line


def test_binds_outside_the_allowed_system_ids_and_networks_never_reach_the_smsc(smsc, peers):
    with Stack(config(allow_system_ids=["acme"], allow_networks=["127.0.0.2/32"]), upstream=smsc.address) as stack:
        assert bind_status(peers(stack, OTHER_HOST), "evil", "pw") == 0x0F
        assert bind_status(peers(stack), "acme", "pw") == 0x0D  # 127.0.0.1 is not allowed
        assert smsc.binds == 0
        assert bind_status(peers(stack, OTHER_HOST), "acme", "pw") == 0
        assert smsc.binds == 1


def test_an_account_has_at_most_max_binds_per_account_at_once(smsc, peers):
    with Stack(config(max_binds_per_account=2), upstream=smsc.address) as stack:
        first, second = peers(stack), peers(stack)
        assert bind_status(first, "acme", "pw") == bind_status(second, "acme", "pw") == 0
        assert bind_status(peers(stack), "acme", "pw") == 0x05  # RALYBND
        assert bind_status(peers(stack), "beta", "pw") == 0  # another account
        first.close()
        smsc.wait(lambda: sum(1 for c in smsc.conns if c.closed.is_set()) == 1, what="first's upstream closed")
        time.sleep(0.1)
        assert bind_status(peers(stack), "acme", "pw") == 0


# --- no way around the rules: query_sm, cancel_sm, replace_sm ----------------------------------------------

CONTENT = """
[policy]
default_region = "CN"

[rules.quiet_hours]
enabled = false

[rules.content]
forbidden = ["赌博", "casino"]
"""


def submit(peer: RawPeer, seq: int) -> bytes:
    peer.request(CommandId.SUBMIT_SM, seq, source_addr="ACME", dest_addr_ton=1, destination_addr="8613800000001",
                 short_message=b"hello")
    cid, status, got, body = peer.read_pdu()
    assert (cid, status, got) == (CommandId.SUBMIT_SM_RESP, 0, seq)
    return body.rstrip(b"\0")


def other_request(peer: RawPeer, command_id: int, seq: int, message_id: bytes, text: bytes = b"") -> int:
    fields = {"message_id": message_id.decode(), "source_addr": "ACME"}
    if command_id == CommandId.REPLACE_SM:
        fields["short_message"] = text
    peer.request(command_id, seq, **fields)
    cid, status, got, _ = peer.read_pdu()
    assert got == seq
    return status


def test_one_account_cannot_query_cancel_or_replace_anothers_messages(tmp_path, smsc, peers):
    cfg = make_config(CONTENT, store={"path": str(tmp_path / "guard.db")})
    with Stack(cfg, store=True, upstream=smsc.address) as stack:
        owner, intruder = peers(stack), peers(stack)
        owner.bind(system_id="acme")
        intruder.bind(system_id="beta")
        message_id = submit(owner, 2)
        for seq, command_id in enumerate((CommandId.QUERY_SM, CommandId.CANCEL_SM, CommandId.REPLACE_SM), 3):
            assert other_request(intruder, command_id, seq, message_id) == {
                CommandId.QUERY_SM: 0x67, CommandId.CANCEL_SM: 0x11, CommandId.REPLACE_SM: 0x13}[command_id]
            # the owner's own request goes to the SMSC (which answers this one generic_nack 0x03)
            assert other_request(owner, command_id, seq, message_id) == 0x03
        assert other_request(intruder, CommandId.QUERY_SM, 9, b"unknown-id") == 0x03  # not ours to judge


@pytest.mark.parametrize("text", ["澳门赌博".encode("utf-16-be"), b"best casino in town"], ids=["ucs2", "gsm"])
def test_replace_sm_cannot_bring_in_text_the_content_rule_forbids(tmp_path, smsc, peers, text):
    cfg = make_config(CONTENT, store={"path": str(tmp_path / "guard.db")}, audit={"recipient": "full"})
    with Stack(cfg, store=True, upstream=smsc.address) as stack:
        owner = peers(stack)
        owner.bind(system_id="acme")
        message_id = submit(owner, 2)
        assert other_request(owner, CommandId.REPLACE_SM, 3, message_id, text) == 0x45
        assert other_request(owner, CommandId.REPLACE_SM, 4, message_id, b"spring sale") == 0x03  # to the SMSC
        stack.run(stack.store.writer.flush())
        import sqlite3
        db = sqlite3.connect(tmp_path / "guard.db")
        try:
            assert db.execute("SELECT rule, status, recipient FROM audit").fetchall() == [
                ("content", 0x45, f"message {message_id.decode()}")]
        finally:
            db.close()


def test_at_max_connections_a_new_sender_takes_the_place_of_the_oldest_idle_connection(smsc, peers, caplog):
    """Idle sockets from many addresses fill max_connections: a sender still gets in, in place of the oldest
    connection that has sent no bind; only when every connection is bound is one refused."""
    with Stack(config(max_connections=4, bind_timeout=30.0), upstream=smsc.address) as stack:
        idle = [peers(stack, f"127.0.1.{i}") for i in range(1, 5)]
        time.sleep(0.1)
        with caplog.at_level(logging.WARNING, logger="smppguard.proxy"):
            peers(stack, OTHER_HOST).bind(system_id="sender")
            assert idle[0].closed_by_peer(timeout=2.0)  # the oldest idle one made room
        assert [r.getMessage() for r in caplog.records
                if r.name == "smppguard.proxy" and r.levelname == "WARNING"] == [
            "max_connections (4) reached: the oldest connection that has not bound (from 127.0.1.1) closed for one "
            f"from {OTHER_HOST}"]
        assert not idle[1].closed_by_peer(timeout=0.2)
        for n, p in enumerate(idle[1:]):
            p.bind(system_id=f"late{n}")  # the three others bind: now every connection is bound
        assert peers(stack, "127.0.1.9").closed_by_peer(timeout=2.0)  # refused: no idle one to replace


def test_connections_that_come_and_go_leave_nothing_behind(smsc, peers):
    """A bind flood (each refused, closed at once): no Bridge outlives its connection, though the bind timeout
    of each would still be running."""
    import gc

    smsc.passwords = {"acme": "right"}
    with Stack(config(bind_timeout=60.0, failed_binds=3), upstream=smsc.address) as stack:
        for n in range(300):
            peer = peers(stack)
            assert bind_status(peer, "acme", f"guess{n}") in (0x0D, 0x0E)
            peer.close()
        def bridges_in_memory() -> int:
            gc.collect()
            return sum(1 for o in gc.get_objects() if type(o).__name__ == "Bridge")

        for _ in range(100):
            left = stack.call(bridges_in_memory)
            if left == 0:
                break
            time.sleep(0.05)
        assert left == 0
        assert stack.call(lambda: (len(stack.proxy.bridges), len(stack.proxy._unbound), len(stack.proxy._host_of))) \
            == (0, 0, 0)
