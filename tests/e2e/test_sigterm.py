"""SIGTERM to a running `smppguard run` (as systemd stops it) under pipelined traffic: the README promises that it
stops accepting binds, answers every request in flight, unbinds both legs and exits 0."""

from __future__ import annotations

import signal
import socket

import pytest

from helpers import RawPeer, start_daemon
from rawsmsc import RawSmsc
from smppguard.smpp.commands import CommandId
from smppguard.smpp.status import Status

pytestmark = pytest.mark.subprocess


def start(tmp_path, upstream: tuple[str, int]):
    return start_daemon(tmp_path, f'[upstream]\naddress = "{upstream[0]}:{upstream[1]}"\n'
                                  f'[store]\npath = "{tmp_path / "guard.db"}"\n[policy]\ndefault_region = "CN"\n'
                                  '[rules.quiet_hours]\nenabled = false\n[rules.frequency]\nenabled = false\n')


def test_sigterm_answers_every_request_in_flight_unbinds_both_legs_and_exits_0(tmp_path):
    with RawSmsc() as smsc:
        smsc.delay = 1.0  # the SMSC takes its time: the submits are still in flight when SIGTERM comes
        daemon, address = start(tmp_path, smsc.address)
        peer = RawPeer(address, 10)
        try:
            peer.bind()
            sequences = list(range(2, 12))
            for seq in sequences:
                peer.request(CommandId.SUBMIT_SM, seq, source_addr="ACME", destination_addr=f"86138000{seq:05d}",
                             short_message=b"pipelined")
            smsc.wait(lambda: len(smsc.received) == len(sequences), what="10 submits")
            daemon.send_signal(signal.SIGTERM)
            answers = {}
            while len(answers) < len(sequences):
                cid, status, seq, body = peer.read_pdu()
                assert cid == CommandId.SUBMIT_SM_RESP, hex(cid)
                answers[seq] = (status, body[:3])
            assert answers == {seq: (Status.ROK, b"raw") for seq in sequences}  # the SMSC's, not 0x08
            cid, _status, seq, _body = peer.read_pdu()
            assert cid == CommandId.UNBIND
            peer.send(bytes.fromhex("00000010 80000006 00000000") + seq.to_bytes(4, "big"))
            assert peer.closed_by_peer(timeout=5.0)
            smsc.wait(lambda: smsc.unbinds, what="unbind from the proxy")
            _out, err = daemon.communicate(timeout=15)
        finally:
            peer.close()
            if daemon.poll() is None:
                daemon.kill()
                daemon.communicate()
        assert daemon.returncode == 0, err
        assert "shutting down" in err and "Traceback" not in err
        with socket.socket() as s:  # and it no longer accepts binds
            assert s.connect_ex(address) != 0
