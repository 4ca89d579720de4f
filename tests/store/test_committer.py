"""The store's commit process: a child that saves the group commit's rows in the idle scheduling class, and what
becomes of a commit when the child fails, stops answering, is signalled, or outlives the daemon."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from helpers import alive, proc_stat, wait_for
from smppguard.store.committer import IDLE, Committer, encode
from smppguard.store.db import connect
from smppguard.store.recipients import mask_recipient

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="scheduling classes and /proc are Linux's")

SCHED_IDLE = 5
SEND = (8613800138000, "acme", 100.0)
ONE = encode(([SEND], [], []))  # a batch: one send
NOTHING = encode(([], [], []))


def _nice(pid: int) -> int:
    return int(proc_stat(pid)[16])


def _policy(pid: int) -> int:
    return int(proc_stat(pid)[38])


@pytest.fixture
def store(tmp_path):
    path = tmp_path / "guard.db"
    connect(path).close()
    return str(path)


@pytest.fixture
def committer(store):
    c = Committer(store, busy_timeout=0.2, audit=("masked", ""), priority=IDLE)
    yield c
    c.close()


def sends(path: str) -> list[tuple]:
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT number, account, sent_at FROM send_history ORDER BY rowid").fetchall()
    finally:
        db.close()


def test_a_batch_is_saved_by_a_child_in_the_idle_scheduling_class(store, committer):
    committer.start()
    child = committer.pid
    assert child is not None and child != os.getpid()
    committer.commit(encode(([(8613800138000, "acme", 100.0), (8613800138001, "acme", 101.0)],
                             [(100.0, "acme", "ACME", "861380013****", "optout", "reject", 69, "opted out")], [])))
    assert sends(store) == [(8613800138000, "acme", 100.0), (8613800138001, "acme", 101.0)]
    db = sqlite3.connect(store)
    assert db.execute("SELECT account, rule, status, count FROM audit").fetchall() == [("acme", "optout", 69, 1)]
    # the fold: the audit row made at 100.0 now stands for 3, the last at 160.0
    committer.commit(encode(([], [], [(3, 160.0, 100.0, "acme", "ACME", "861380013****", "optout", 69)])))
    assert db.execute("SELECT count, last_at FROM audit").fetchall() == [(3, 160.0)]
    db.close()
    assert _policy(child) == SCHED_IDLE and committer.pid == child and committer.started == 1  # one child for all


def test_a_child_given_a_nice_value_runs_at_it(store):
    c = Committer(store, busy_timeout=1.0, audit=("masked", ""), priority=7)
    try:
        c.commit(NOTHING)  # answered: it has set its priority
        assert _policy(c.pid) == 0 and _nice(c.pid) == min(19, _nice(os.getpid()) + 7)
    finally:
        c.close()


def test_a_commit_the_store_refuses_raises_its_error_saves_nothing_and_the_next_one_goes(store, committer):
    lock = sqlite3.connect(store, isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")  # another process writes: the child waits its busy timeout, then fails
    try:
        with pytest.raises(sqlite3.OperationalError, match="database is locked"):
            committer.commit(ONE)
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    assert sends(store) == []
    committer.commit(ONE)
    assert sends(store) == [(8613800138000, "acme", 100.0)] and committer.started == 1


def test_a_child_that_dies_during_a_commit_fails_it_and_a_new_one_takes_the_next(store, committer):
    committer.commit(NOTHING)
    first = committer.pid
    os.kill(first, signal.SIGSTOP)  # it has the batch but has not saved it
    failed: list[BaseException] = []
    thread = threading.Thread(target=lambda: _catch(failed, committer.commit, ONE))
    thread.start()
    time.sleep(0.2)
    os.kill(first, signal.SIGKILL)
    thread.join(10)
    assert len(failed) == 1 and isinstance(failed[0], OSError)
    assert str(failed[0]) == ("the store's commit process ended (exit status -9; it ended): a new one takes over")
    assert sends(store) == []
    committer.commit(ONE)  # the writer tries the same rows again
    assert sends(store) == [(8613800138000, "acme", 100.0)]
    assert committer.started == 2 and committer.pid not in (None, first)


def test_a_child_found_dead_is_replaced_before_the_commit(store, committer):
    committer.commit(NOTHING)
    first = committer.pid
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: not alive(first), what="the child gone")
    committer.commit(ONE)
    assert sends(store) == [(8613800138000, "acme", 100.0)] and committer.started == 2


def _catch(into: list, fn, *args) -> None:
    try:
        fn(*args)
    except BaseException as e:  # noqa: BLE001 - handed to the test
        into.append(e)


def test_a_child_that_stops_answering_is_stopped_after_the_busy_timeout_and_its_slack(store, committer):
    committer.slack = 0.5
    committer.commit(NOTHING)
    stuck = committer.pid
    os.kill(stuck, signal.SIGSTOP)
    started = time.monotonic()
    with pytest.raises(OSError, match=r"did not answer within 0\.7 s: stopped, and a new one takes over"):
        committer.commit(ONE)
    assert 0.7 <= time.monotonic() - started < 5
    assert not alive(stuck)
    committer.slack = 10.0  # the new child starts (a Python process) on a host the suite keeps busy
    committer.commit(ONE)
    assert sends(store) == [(8613800138000, "acme", 100.0)]


def test_the_child_ignores_sigterm_and_sigint_and_ends_when_its_input_closes(store, committer):
    """systemd's stop signals the whole service, and Ctrl-C the whole terminal group: the child goes on saving
    what the daemon sends while it stops, and ends when the daemon closes it."""
    committer.commit(NOTHING)  # answered: it is past its start, where it sets the signals aside
    child = committer.pid
    os.kill(child, signal.SIGTERM)
    os.kill(child, signal.SIGINT)
    committer.commit(ONE)
    assert committer.pid == child and sends(store) == [(8613800138000, "acme", 100.0)]
    assert committer.close() == 0  # it ended by itself, not killed
    assert not alive(child) and committer.pid is None


def test_the_child_ends_with_a_daemon_killed_with_sigkill(store, tmp_path):
    """No daemon, no stdin: the child reads its end and exits, whatever ended the daemon."""
    script = textwrap.dedent(f"""
        import os, signal
        from smppguard.store.committer import Committer, encode
        ONE, NOTHING = encode(([{SEND!r}], [], [])), encode(([], [], []))
        c = Committer({store!r}, busy_timeout=1.0, audit=("masked", ""), priority="idle")
        c.commit(ONE)
        print(c.pid, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    daemon = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert daemon.returncode == -signal.SIGKILL, daemon.stderr
    child = int(daemon.stdout)
    wait_for(lambda: not alive(child), what="the orphaned child gone")
    assert sends(store) == [(8613800138000, "acme", 100.0)]


def test_a_store_the_child_cannot_open_fails_the_commit_with_the_reason_on_stderr(tmp_path, capfd):
    c = Committer(str(tmp_path / "missing.db"), busy_timeout=1.0, audit=("masked", ""), priority=IDLE)
    try:
        with pytest.raises(OSError, match=r"ended \(exit status 1;"):
            c.commit(ONE)
    finally:
        c.close()
    assert f"smppguard: the store's commit process: no store at {tmp_path / 'missing.db'}" in capfd.readouterr().err


def test_the_settings_reach_the_child_on_its_input_not_on_its_command_line(store):
    """Any user of the host can read a command line: the audit salt must not be on it."""
    c = Committer(store, busy_timeout=1.0, audit=("hashed", "s3cret-salt"), priority=IDLE)
    try:
        (kept,) = c.execute("SELECT audit_recipient(8613800138000)")
        with open(f"/proc/{c.pid}/cmdline", "rb") as f:
            cmdline = f.read()
    finally:
        c.close()
    assert kept == mask_recipient(8613800138000, "", "hashed", "s3cret-salt") != mask_recipient(
        8613800138000, "", "hashed", "")
    assert cmdline.split(b"\0")[1:] == [b"-S", b"-m", b"smppguard.store.committer", b""]


def test_a_daemon_killed_during_a_commit_leaves_it_saved_and_the_child_ends_quietly(store):
    """The child has the batch: it commits it, finds nobody to answer, and ends without a traceback."""
    script = textwrap.dedent(f"""
        import os, signal, threading, time
        from smppguard.store.committer import Committer, encode
        ONE, NOTHING = encode(([{SEND!r}], [], [])), encode(([], [], []))
        c = Committer({store!r}, busy_timeout=1.0, audit=("masked", ""), priority="idle")
        c.commit(NOTHING)
        os.kill(c.pid, signal.SIGSTOP)
        threading.Thread(target=c.commit, args=(ONE,), daemon=True).start()
        time.sleep(0.3)  # the batch is in the pipe
        print(c.pid, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    daemon = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    child = int(daemon.stdout.readline())
    assert daemon.wait(30) == -signal.SIGKILL
    os.kill(child, signal.SIGCONT)
    _out, err = daemon.communicate(timeout=30)  # the child holds stderr: it closes as the child ends
    wait_for(lambda: not alive(child), what="the child gone")
    assert sends(store) == [(8613800138000, "acme", 100.0)]
    assert "Traceback" not in err, err
