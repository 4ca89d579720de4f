"""The test harness's own promises: a check that times out fails, and a machine that must test against Kannel
cannot skip it. Without these, a test could pass by waiting."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

import kannel
from helpers import RawPeer
from rawsmsc import RawSmsc


def test_closed_by_peer_is_false_for_a_peer_that_stays_open_and_true_once_it_closes():
    with socket.create_server(("127.0.0.1", 0)) as listener:
        peer = RawPeer(listener.getsockname()[:2], 5)
        server_side, _ = listener.accept()
        try:
            assert peer.closed_by_peer(timeout=0.2) is False  # a timeout is not a close
            server_side.sendall(b"x")
            assert peer.closed_by_peer(timeout=0.2) is False  # nor are more bytes
            server_side.close()
            assert peer.closed_by_peer(timeout=2.0) is True
        finally:
            peer.close()


def test_raw_smsc_wait_fails_at_its_deadline():
    with RawSmsc() as smsc:
        with pytest.raises(AssertionError, match="no bound connection within 0.2 s"):
            smsc.bound(timeout=0.2)


def test_kannel_tests_fail_instead_of_skipping_where_kannel_must_be(monkeypatch):
    monkeypatch.setattr(kannel, "BEARERBOX", Path("/nonexistent/bearerbox"))
    monkeypatch.setenv(kannel.REQUIRE, "1")
    with pytest.raises(pytest.fail.Exception, match="must test against it"):
        kannel.require_kannel()
    monkeypatch.delenv(kannel.REQUIRE)
    with pytest.raises(pytest.skip.Exception):
        kannel.require_kannel()
