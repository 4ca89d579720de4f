"""SIGTERM to a running `smppguard run` (as systemd stops it) under pipelined traffic: the README promises that it
stops accepting binds, answers every request in flight, unbinds both legs and exits 0."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

import pytest

from helpers import RawPeer
from rawsmsc import RawSmsc
from smppguard.smpp.commands import CommandId
from smppguard.smpp.status import Status

pytestmark = pytest.mark.subprocess


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_daemon(tmp_path, upstream: tuple[str, int]) -> tuple[subprocess.Popen, tuple[str, int]]:
    port = free_port()
    cfg = tmp_path / "smppguard.toml"
    cfg.write_text(f'[listen]\naddress = "127.0.0.1:{port}"\n[upstream]\naddress = "{upstream[0]}:{upstream[1]}"\n'
                   f'[store]\npath = "{tmp_path / "guard.db"}"\n[policy]\ndefault_region = "CN"\n'
                   '[rules.quiet_hours]\nenabled = false\n[rules.frequency]\nenabled = false\n')
    daemon = subprocess.Popen([sys.executable, "-m", "smppguard", "run", "--config", str(cfg)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return daemon, ("127.0.0.1", port)
        except OSError:
            if daemon.poll() is not None or time.monotonic() > deadline:
                daemon.kill()
                raise AssertionError(f"the daemon did not start: {daemon.communicate()}") from None
            time.sleep(0.05)


def test_sigterm_answers_every_request_in_flight_unbinds_both_legs_and_exits_0(tmp_path):
    with RawSmsc() as smsc:
        smsc.delay = 1.0  # the SMSC takes its time: the submits are still in flight when SIGTERM comes
        daemon, address = start_daemon(tmp_path, smsc.address)
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
