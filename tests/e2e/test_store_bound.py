"""What the proxy acknowledged it owes: with the store write-locked by another process, `smppguard run` stops
reading from senders once [store] max_unsaved rows wait to be saved, goes on when the lock goes, and a kill -9
while locked loses at most that bound (plus one window of requests in flight)."""

from __future__ import annotations

import signal
import sqlite3
import threading
import time

import pytest

from helpers import RawPeer, start_daemon
from rawsmsc import RawSmsc
from smppguard.smpp.commands import CommandId

pytestmark = pytest.mark.subprocess
BOUND, WINDOW = 200, 10


def start(tmp_path, smsc: RawSmsc):
    db = tmp_path / "guard.db"
    daemon, address = start_daemon(tmp_path, f'[upstream]\naddress = "{smsc.address[0]}:{smsc.address[1]}"\n'
                                             f'window = {WINDOW}\n[store]\npath = "{db}"\nmax_unsaved = {BOUND}\n'
                                             'max_unsaved_age = "30s"\n[policy]\ndefault_region = "CN"\n'
                                             '[rules.quiet_hours]\nenabled = false\n'
                                             '[rules.frequency]\nmax = 1000\nmin_interval = "0s"\n')
    return daemon, address, db


class Sender:
    """Pipelines submits to distinct recipients from one thread and counts the OK answers from another."""

    def __init__(self, address):
        self.peer = RawPeer(address, 30)
        self.peer.bind(CommandId.BIND_TRANSMITTER)
        self.acked = 0
        self.next_seq = 2
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def send(self, count: int) -> None:
        def go(first: int) -> None:
            for seq in range(first, first + count):
                self.peer.request(CommandId.SUBMIT_SM, seq, source_addr="ACME",
                                  destination_addr=f"8613{seq:09d}", short_message=b"x")
        threading.Thread(target=go, args=(self.next_seq,), daemon=True).start()  # blocks once the proxy stops
        self.next_seq += count

    def _read(self) -> None:
        try:
            while True:
                cid, status, _seq, _body = self.peer.read_pdu()
                if cid == CommandId.SUBMIT_SM_RESP and status == 0:
                    self.acked += 1
        except (ConnectionError, OSError):
            pass

    def settled(self, quiet: float = 1.0, timeout: float = 20.0) -> int:
        """The count of OK answers once it has stopped growing for `quiet` seconds."""
        deadline = time.monotonic() + timeout
        last, since = self.acked, time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.05)
            if self.acked != last:
                last, since = self.acked, time.monotonic()
            elif time.monotonic() - since >= quiet:
                return last
        raise AssertionError(f"answers still coming after {timeout} s: {self.acked}")


def saved(db) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT COUNT(*) FROM send_history").fetchone()[0]


def test_a_locked_store_stops_acknowledging_at_the_bound_and_a_kill_loses_no_more(tmp_path):
    with RawSmsc() as smsc:
        daemon, address, db = start(tmp_path, smsc)
        lock = None
        sender = None
        try:
            sender = Sender(address)
            lock = sqlite3.connect(db, isolation_level=None)
            lock.execute("BEGIN IMMEDIATE")  # another process holds the write lock
            sender.send(1000)
            first = sender.settled()
            assert BOUND <= first <= BOUND + 1 + WINDOW, first  # stopped at the bound, not at 1000
            assert saved(db) == 0
            lock.execute("COMMIT")  # the lock goes: every submit is answered, every send saved
            deadline = time.monotonic() + 20
            while sender.acked < 1000 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert sender.acked == 1000
            deadline = time.monotonic() + 5
            while saved(db) < 1000 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert saved(db) == 1000

            lock.execute("BEGIN IMMEDIATE")  # locked again, and then the daemon is killed
            sender.send(1000)
            acked = sender.settled()  # all of the first 1000, and what the second batch got before the bound
            daemon.send_signal(signal.SIGKILL)
            daemon.wait(10)
            lock.execute("COMMIT")
            lost = acked - saved(db)
            print(f"acknowledged {acked}, saved {saved(db)}, lost {lost} (bound {BOUND} + window {WINDOW})")
            assert 0 < lost <= BOUND + 1 + WINDOW
        finally:
            if lock is not None:
                if lock.in_transaction:
                    lock.execute("ROLLBACK")
                lock.close()
            if sender is not None:
                sender.peer.close()
            if daemon.poll() is None:
                daemon.kill()
            daemon.communicate()


def test_a_full_disk_stops_acknowledging_at_the_bound_says_so_and_loses_nothing_when_space_returns(tmp_path, caplog):
    """SQLITE_FULL (the disk is full: here the store may not grow a page) on every group commit: the proxy goes
    on answering until the bound, then holds the sender; the log says why; freed space lets it all be saved."""
    import logging

    from helpers import Stack, make_config

    db = tmp_path / "guard.db"
    cfg = make_config('[policy]\ndefault_region = "CN"\n[rules.quiet_hours]\nenabled = false\n'
                      '[rules.frequency]\nmax = 1000\nmin_interval = "0s"\n',
                      store={"path": str(db), "max_unsaved": BOUND, "max_unsaved_age": 30.0},
                      upstream={"window": WINDOW})
    with RawSmsc() as smsc, Stack(cfg, store=True, upstream=smsc.address) as stack:
        writer = stack.store.writer
        (pages,), _ = stack.run(writer.execute("PRAGMA page_count"))
        stack.run(writer.execute(f"PRAGMA max_page_count = {pages}"))  # not one page more: the disk is full
        sender = Sender(stack.address)
        try:
            with caplog.at_level(logging.ERROR, logger="smppguard.store"):
                sender.send(1000)
                first = sender.settled()
                # answers stopped short of 1000, and what was acknowledged but not saved stays within the bound
                # (commits that fit in the store's free pages may still succeed now and then: saved only grows)
                assert first < 1000 and first - saved(db) <= BOUND + 1 + WINDOW, (first, saved(db))
                assert writer.failures > 0
            assert any("database or disk is full" in r.getMessage() for r in caplog.records)
            stack.run(writer.execute("PRAGMA max_page_count = 1073741823"))  # space again
            deadline = time.monotonic() + 20
            while (sender.acked < 1000 or saved(db) < 1000) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert (sender.acked, saved(db)) == (1000, 1000)
        finally:
            sender.peer.close()
