"""The start-up progress (sdnotify.Loading): extensions while the load moves, none once it stops moving."""

from __future__ import annotations

import logging
import time

from smppguard import sdnotify


def test_loading_asks_for_more_time_while_steps_come_and_stops_once_they_stop(monkeypatch, caplog):
    monkeypatch.setattr(sdnotify, "EXTEND_EVERY", 0.05)
    monkeypatch.setattr(sdnotify, "EXTEND_BY", 0.2)
    monkeypatch.setattr(sdnotify, "STALL", 0.3)
    monkeypatch.setattr(sdnotify, "LOG_EVERY", 0.1)
    sent: list[tuple[float, tuple[str, ...]]] = []
    caplog.set_level(logging.INFO, logger="smppguard")
    with sdnotify.Loading(send=lambda *lines: sent.append((time.monotonic(), lines)) or True) as loading:
        for n in range(1, 11):
            loading.step("blacklist", n * 2_000_000, 20_000_000)
            time.sleep(0.05)
        moved = time.monotonic()
        time.sleep(0.8)  # a load that hangs
    assert loading.extensions == len(sent) >= 5
    assert all(lines[0] == "EXTEND_TIMEOUT_USEC=200000" for _at, lines in sent)
    assert ("STATUS=loading blacklist 20.0M/20.0M",) == sent[-1][1][1:]
    assert max(at for at, _lines in sent) <= moved + 0.3 + 0.06  # none once no step came for STALL
    assert "loading blacklist" in caplog.text


def test_loading_without_a_socket_sends_nothing_and_a_fast_load_says_nothing(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    with sdnotify.Loading() as loading:
        loading.step("blacklist", 1, 2)
    assert loading.extensions == 0 and loading.status == "loading blacklist 1/2"
