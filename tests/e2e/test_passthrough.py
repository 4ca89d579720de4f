"""The transparent proxy with smpplib as the sender and the built-in simulator as the SMSC, over real TCP."""

from __future__ import annotations

import struct
import threading
import time

import pytest
import smpplib.consts
import smpplib.exceptions
import smpplib.smpp

from helpers import Stack, make_config, smpplib_client
from smppguard.config import SimulatorConfig
from smppguard.smpp.status import Status

DEST = "8613800138000"


def submit(client, text=b"hello", dest=DEST, **kw):
    """Send a submit_sm with smpplib and return the smpplib PDU object (sequence known)."""
    params = dict(source_addr_ton=5, source_addr="ACME", dest_addr_ton=1, dest_addr_npi=1,
                  destination_addr=dest, short_message=text)
    params.update(kw)
    pdu = smpplib.smpp.make_pdu("submit_sm", client=client, **params)
    client.send_pdu(pdu)
    return pdu


def read_until(client, command, timeout=5.0):
    """Read PDUs (answering enquire_link and deliver_sm as smpplib does) until one of `command`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pdu = client.read_pdu()
        if pdu.command == command:
            return pdu
        if pdu.command == "enquire_link":
            client._enquire_link_received(pdu)
    raise AssertionError(f"no {command} within {timeout}s")


def wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


@pytest.fixture
def stack():
    with Stack() as s:
        yield s


@pytest.mark.parametrize("kind", ["transmitter", "receiver", "transceiver"])
def test_bind_each_kind_gets_the_smsc_bind_response(stack, kind):
    client = smpplib_client(stack.address)
    try:
        resp = getattr(client, f"bind_{kind}")(system_id="acme", password="secret")
        assert resp.status == Status.ROK
        assert resp.system_id == b"smppguard-sim"  # the SMSC's own system_id, not the proxy's
        upstream = stack.call(lambda: [s.system_id for s in stack.sim.sessions])
        assert upstream == ["acme"]
        client.unbind()
    finally:
        client.disconnect()


def test_submit_message_id_and_vendor_tlv_pass_byte_identical(stack):
    client = smpplib_client(stack.address)
    try:
        client.bind_transmitter(system_id="acme", password="secret")
        pdu = smpplib.smpp.make_pdu("submit_sm", client=client, source_addr="ACME", destination_addr=DEST,
                                    short_message=b"vendor tlv", registered_delivery=0)
        raw = pdu.generate() + struct.pack(">HH", 0x1401, 4) + b"\x01\x02\x03\x04"  # unknown vendor TLV
        raw = struct.pack(">I", len(raw)) + raw[4:]
        client._socket.sendall(raw)
        resp = read_until(client, "submit_sm_resp")
        assert resp.status == Status.ROK
        assert resp.sequence == pdu.sequence
        got = stack.sim.received[0]
        assert resp.message_id.decode() == got.message_id
        assert got.pdu.raw[16:] == raw[16:]  # body byte for byte; only the sequence number differs
        assert got.pdu.raw[:12] == raw[:12]
        assert (0x1401, b"\x01\x02\x03\x04") in got.fields["tlvs"]
    finally:
        client.disconnect()


@pytest.mark.parametrize("kind", ["receiver", "transceiver"])
def test_receipt_and_mo_reach_a_receiving_bind(stack, kind):
    sender = smpplib_client(stack.address)
    receiver = sender if kind == "transceiver" else smpplib_client(stack.address)
    try:
        if kind == "receiver":
            sender.bind_transmitter(system_id="acme", password="secret")
            receiver.bind_receiver(system_id="acme", password="secret")
        else:
            sender.bind_transceiver(system_id="acme", password="secret")
        submit(sender, registered_delivery=1)
        resp = read_until(sender, "submit_sm_resp")
        receipt = read_until(receiver, "deliver_sm")
        assert receipt.esm_class & 0x3C == 0x04
        assert receipt.receipted_message_id == resp.message_id
        assert b"stat:DELIVRD" in receipt.short_message
        receiver._message_received(receipt)  # deliver_sm_resp back through the proxy
        assert wait_for(lambda: len(stack.sim.delivered) == 1)
        assert stack.sim.delivered[0][1].status == Status.ROK

        assert stack.call(lambda: stack.sim.inject_mo(DEST, "10690000", "TD"))
        mo = read_until(receiver, "deliver_sm")
        assert mo.short_message == b"TD" and mo.source_addr == DEST.encode()
        receiver._message_received(mo)
        assert wait_for(lambda: len(stack.sim.delivered) == 2)
    finally:
        sender.disconnect()
        if receiver is not sender:
            receiver.disconnect()


def test_enquire_link_answered_on_each_leg():
    cfg = make_config(session={"enquire_link_interval": 0.2, "response_timeout": 2.0})
    with Stack(cfg) as stack:
        client = smpplib_client(stack.address)
        try:
            client.bind_transceiver(system_id="acme", password="secret")
            # our own enquire_link is answered by the proxy
            client.send_pdu(smpplib.smpp.make_pdu("enquire_link", client=client))
            assert read_until(client, "enquire_link_resp").status == Status.ROK
            # the idle proxy probes us on the downstream leg ...
            probe = read_until(client, "enquire_link", timeout=3)
            client._enquire_link_received(probe)
            # ... and the SMSC on the upstream leg
            assert wait_for(lambda: stack.call(
                lambda: sum(s.enquire_links_received for s in stack.sim.sessions)) >= 1, 3)
        finally:
            client.disconnect()


def test_unbind_unbinds_the_upstream_leg(stack):
    client = smpplib_client(stack.address)
    client.bind_transmitter(system_id="acme", password="secret")
    assert wait_for(lambda: len(stack.sim.sessions) == 1)
    resp = client.unbind()
    assert resp.status == Status.ROK
    assert wait_for(lambda: len(stack.sim.sessions) == 0)
    client.disconnect()


def test_smsc_unbind_unbinds_the_sender(stack):
    client = smpplib_client(stack.address)
    try:
        client.bind_transceiver(system_id="acme", password="secret")
        stack.call(stack.sim.unbind_all)
        pdu = read_until(client, "unbind")
        resp = smpplib.smpp.make_pdu("unbind_resp", client=client)
        resp.sequence = pdu.sequence  # make_pdu ignores sequence= (SMPP-NOTES, smpplib)
        client.send_pdu(resp)
        with pytest.raises(smpplib.exceptions.ConnectionError):
            client.read_pdu()
    finally:
        client.disconnect()


def test_wrong_password_refused_with_the_smsc_status():
    with Stack(simulator_config=SimulatorConfig(accounts=(("acme", "secret"),))) as stack:
        client = smpplib_client(stack.address)
        try:
            with pytest.raises(smpplib.exceptions.PDUError) as e:
                client.bind_transmitter(system_id="acme", password="wrong")
            assert e.value.args[1] == Status.RINVPASWD
            with pytest.raises(smpplib.exceptions.ConnectionError):
                client.read_pdu()  # and the proxy closed the connection
        finally:
            client.disconnect()
        client = smpplib_client(stack.address)
        try:
            assert client.bind_transmitter(system_id="acme", password="secret").status == Status.ROK
        finally:
            client.disconnect()


def test_smsc_unreachable_answers_rsyserr():
    with Stack() as stack:
        stack.proxy.upstream_address = ("127.0.0.1", 1)  # nothing listens there
        client = smpplib_client(stack.address)
        try:
            with pytest.raises(smpplib.exceptions.PDUError) as e:
                client.bind_transceiver(system_id="acme", password="secret")
            assert e.value.args[1] == Status.RSYSERR
        finally:
            client.disconnect()


def test_smsc_drop_mid_window_answers_every_in_flight_request(stack):
    client = smpplib_client(stack.address)
    try:
        client.bind_transmitter(system_id="acme", password="secret")
        stack.sim.respond = False
        sent = [submit(client, text=b"m%d" % i).sequence for i in range(5)]
        assert wait_for(lambda: len(stack.sim.received) == 5)
        stack.call(stack.sim.drop_connections)
        answers = {}
        for _ in sent:
            pdu = read_until(client, "submit_sm_resp")
            answers[pdu.sequence] = pdu.status
        assert answers == {seq: Status.RSYSERR for seq in sent}
        with pytest.raises(smpplib.exceptions.ConnectionError):
            client.read_pdu()  # then the sender's connection is closed, so it reconnects
    finally:
        client.disconnect()


def test_response_timeout_answers_rsyserr():
    cfg = make_config(session={"response_timeout": 0.3, "enquire_link_interval": 30.0})
    with Stack(cfg) as stack:
        client = smpplib_client(stack.address)
        try:
            client.bind_transmitter(system_id="acme", password="secret")
            stack.sim.respond = False
            seq = submit(client).sequence
            resp = read_until(client, "submit_sm_resp", timeout=3)
            assert (resp.sequence, resp.status) == (seq, Status.RSYSERR)
        finally:
            client.disconnect()


def test_full_window_stops_reading_instead_of_failing():
    cfg = make_config(upstream={"window": 2}, session={"response_timeout": 5.0})
    with Stack(cfg) as stack:
        client = smpplib_client(stack.address)
        try:
            client.bind_transmitter(system_id="acme", password="secret")
            stack.sim.respond = False
            sent = [submit(client, text=b"w%d" % i).sequence for i in range(6)]
            assert wait_for(lambda: len(stack.sim.received) == 2)
            time.sleep(0.2)
            assert len(stack.sim.received) == 2  # the rest wait in the proxy, none failed
            stack.sim.respond = True
            stack.call(stack.sim.release_held)
            statuses = {}
            while len(statuses) < 6:
                pdu = read_until(client, "submit_sm_resp")
                statuses[pdu.sequence] = pdu.status
            assert statuses == {seq: Status.ROK for seq in sent}
            assert len(stack.sim.received) == 6
        finally:
            client.disconnect()


def test_max_tps_spaces_submits_instead_of_refusing():
    cfg = make_config(upstream={"max_tps": 20.0})
    with Stack(cfg) as stack:
        client = smpplib_client(stack.address)
        try:
            client.bind_transmitter(system_id="acme", password="secret")
            start = time.monotonic()
            sent = [submit(client, text=b"t%d" % i).sequence for i in range(30)]
            statuses = [read_until(client, "submit_sm_resp").status for _ in sent]
            elapsed = time.monotonic() - start
            assert statuses == [Status.ROK] * 30
            # a burst of 20, then 10 more at 20/s: at least ~0.5 s
            assert elapsed >= 0.4
            times = [r.at for r in stack.sim.received]
            assert times[-1] - times[0] >= 0.4
        finally:
            client.disconnect()


def test_deliver_sm_waits_for_the_senders_window():
    """The symmetric back-pressure: deliver_sm going down respects the downstream window."""
    cfg = make_config(upstream={"window": 1})
    with Stack(cfg) as stack:
        client = smpplib_client(stack.address)
        try:
            client.bind_receiver(system_id="acme", password="secret")
            for i in range(3):
                stack.call(lambda i=i: stack.sim.inject_mo(DEST, "10690000", f"mo{i}"))
            texts = []
            for _ in range(3):
                pdu = read_until(client, "deliver_sm")
                texts.append(pdu.short_message)
                client._message_received(pdu)
            assert sorted(texts) == [b"mo0", b"mo1", b"mo2"]
            assert wait_for(lambda: len(stack.sim.delivered) == 3)
        finally:
            client.disconnect()


def test_many_concurrent_senders():
    with Stack() as stack:
        errors = []

        def worker(n):
            try:
                c = smpplib_client(stack.address)
                c.bind_transceiver(system_id=f"acct{n}", password="pw")
                for _ in range(20):
                    submit(c, text=b"x")
                for _ in range(20):
                    assert read_until(c, "submit_sm_resp").status == Status.ROK
                c.unbind()
                c.disconnect()
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(e)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
        assert errors == []
        assert len(stack.sim.received) == 160
