"""Shared by the end-to-end tests: the raw SMSC, and raw-socket senders closed after each test."""

from __future__ import annotations

import pytest

from helpers import RawPeer, Stack
from rawsmsc import RawSmsc


@pytest.fixture
def smsc():
    with RawSmsc() as s:
        yield s


@pytest.fixture
def peers():
    """peers(stack[, source address][, timeout]) -> a RawPeer connected to the proxy; all closed afterwards."""
    opened: list[RawPeer] = []

    def make(stack: Stack, source: str | None = None, timeout: float = 5.0) -> RawPeer:
        peer = RawPeer(stack.address, timeout, source)
        opened.append(peer)
        return peer

    yield make
    for p in opened:
        p.close()
