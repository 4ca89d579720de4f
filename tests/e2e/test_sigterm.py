"""SIGTERM to a running `smppguard run` (as systemd stops it) under pipelined traffic: the README promises that it
stops accepting binds, answers every request in flight, unbinds both legs and exits 0."""

from __future__ import annotations

import signal
import socket

import pytest

from helpers import RawPeer, start_daemon
from rawsmsc import RawSmsc
from smppguard.smpp.commands import CommandId
from smppguard.smpp.fields import encode_body
from smppguard.smpp.pdu import build
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


def start_windowed(tmp_path, upstream: tuple[str, int], grace: str):
    return start_daemon(tmp_path, f'[upstream]\naddress = "{upstream[0]}:{upstream[1]}"\nwindow = 2\n'
                                  f'[session]\nunbind_grace = "{grace}"\n'
                                  f'[store]\npath = "{tmp_path / "guard.db"}"\n[policy]\ndefault_region = "CN"\n'
                                  '[rules.quiet_hours]\nenabled = false\n[rules.frequency]\nenabled = false\n')


def pipeline(peer: RawPeer, count: int) -> list[int]:
    sequences = list(range(2, 2 + count))
    peer.send(b"".join(build(CommandId.SUBMIT_SM, seq, encode_body(
        CommandId.SUBMIT_SM, source_addr="ACME", destination_addr=f"86138000{seq:05d}", short_message=b"x"))
        for seq in sequences))
    return sequences


def answers_then_unbind(peer: RawPeer, sequences: list[int]) -> dict[int, tuple[int, bytes]]:
    answers = {}
    while len(answers) < len(sequences):
        cid, status, seq, body = peer.read_pdu()
        assert cid == CommandId.SUBMIT_SM_RESP, hex(cid)
        answers[seq] = (status, body[:3])
    cid, _status, seq, _body = peer.read_pdu()
    assert cid == CommandId.UNBIND
    peer.send(bytes.fromhex("00000010 80000006 00000000") + seq.to_bytes(4, "big"))
    return answers


def stop_under_pipeline(tmp_path, smsc: RawSmsc, grace: str) -> tuple[dict, str, int, int]:
    """Ten pipelined submits through a window of 2, SIGTERM once the SMSC has the first two: (the answers by
    sequence, the daemon's stderr, its exit status, the submits the SMSC received)."""
    daemon, address = start_windowed(tmp_path, smsc.address, grace)
    peer = RawPeer(address, 15)
    try:
        peer.bind()
        sequences = pipeline(peer, 10)
        smsc.wait(lambda: len(smsc.received) >= 2, what="the first two submits")
        daemon.send_signal(signal.SIGTERM)
        answers = answers_then_unbind(peer, sequences)
        _out, err = daemon.communicate(timeout=20)
    finally:
        peer.close()
        if daemon.poll() is None:
            daemon.kill()
            daemon.communicate()
    return answers, err, daemon.returncode, len(smsc.received)


def test_sigterm_forwards_what_it_read_beyond_the_window_and_the_smsc_answers_it(tmp_path):
    """Eight of the ten were read but not forwarded when SIGTERM came. Each goes on within the grace and gets
    the SMSC's own answer."""
    with RawSmsc() as smsc:
        smsc.delay = 0.2
        answers, err, status, received = stop_under_pipeline(tmp_path, smsc, "10s")
    assert answers == {seq: (Status.ROK, b"raw") for seq in range(2, 12)}
    assert received == 10 and status == 0, err


def test_sigterm_answers_0x08_what_the_grace_leaves_unforwarded(tmp_path):
    with RawSmsc() as smsc:
        smsc.answer = "never"  # the SMSC answers nothing: every request is still owed an answer at the end
        answers, err, _status, _received = stop_under_pipeline(tmp_path, smsc, "1s")
    assert answers == {seq: (Status.RSYSERR, b"") for seq in range(2, 12)}  # every one answered: 0x08, retry
    assert "8 requests read but not forwarded within the grace answered 0x08" in err


def test_a_sigterm_the_moment_the_daemon_says_it_is_ready_stops_it_in_order(tmp_path):
    """A supervisor may stop the daemon as soon as it says READY, or while it still loads its store: the handler
    that stops it in order (answers, unbinds, flushes, exit 0) is in place from the start, not from a turn of the
    loop after READY (the default action then: killed, exit -15, nothing flushed)."""
    import subprocess
    import sys

    from helpers import free_port

    config = tmp_path / "smppguard.toml"
    config.write_text(f'[listen]\naddress = "127.0.0.1:{free_port()}"\n[store]\npath = "{tmp_path / "guard.db"}"\n'
                      '[metrics]\naddress = ""\n[simulator]\ncontrol = ""\n')
    code = ("import os, signal, sys\n"
            "from smppguard.app import configure_logging, run_loop, serve\n"
            "from smppguard.config import load_config\n"
            "configure_logging('info')\n"
            "run_loop(serve(load_config(sys.argv[1]), ready=lambda proxy: os.kill(os.getpid(), signal.SIGTERM)))\n")
    done = subprocess.run([sys.executable, "-c", code, str(config)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "shutting down" in done.stderr
