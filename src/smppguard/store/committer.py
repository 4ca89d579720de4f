"""The group commit's rows (sends, audit rows, audit folds), saved by a process of its own.

Why a process: on a 2-core machine a commit beside the loop takes the core the message in flight needs, and a
lower nice value only softens that (the kernel still shares the core). In the idle scheduling class (SCHED_IDLE)
the kernel runs the commit only on a core that nothing else wants, and preempts it as soon as the relay wakes. A
thread of the daemon cannot be put there safely: one preempted while it holds the GIL would stall the loop for as
long as a busy host starves it. A process holds no GIL of the daemon's; starved, it only delays its commit, and
the rows queued behind it are saved by the writer's thread (writer.py, LAG_S).

Protocol (stdin, stdout; each message a 4-byte little-endian length and its marshal, or a pickle for what
marshal cannot write: a subclass of a built-in type): first the settings (the
store's path, busy timeout, audit settings, priority; on stdin rather than the command line, where any user of
the host could read the audit salt); then each batch, the rows of one commit, which the child commits in one
transaction and answers (True, None) (saved) or (False, the error's text) (nothing saved). ("execute", sql) runs
one statement on its connection. EOF on stdin: the child closes and ends. The child is started by `Committer`
and ends with the daemon, however the daemon ends (its stdin closes).

The child loads almost nothing: it runs without `site` (python -S: the package's folder is on its PYTHONPATH)
and imports only sqlite3 and the store's connection; marshal, not pickle, is its format (built in, and three
times faster to write on the loop). Every module it imports is memory the daemon's host holds for as long as the
daemon runs.
"""

from __future__ import annotations

import marshal
import os
import select
import signal
import sqlite3
import struct
import sys
import time

TYPE_CHECKING = False  # not typing's: the child would load typing for it
if TYPE_CHECKING:  # the child never starts a process: it need not load subprocess (nor anything it does not use)
    import subprocess
    from typing import Any

_LEN = struct.Struct("<I")
SEND = "INSERT INTO send_history (number, account, sent_at) VALUES (?, ?, ?)"
AUDIT = ("INSERT INTO audit (at, account, sender, recipient, rule, action, status, reason) "
         "VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
# A fold's row is found by what made it (audit_at narrows it to the rows of that instant): see audit_fold().
FOLD = ("UPDATE audit SET count = ?, last_at = ? WHERE at = ? AND account = ? AND sender = ? AND recipient = ? "
        "AND rule = ? AND status = ? AND actor = ''")
#: Beyond its connection's busy timeout, how long a commit may take before the daemon gives the child up
#: (stopped, or starved on a host that never idles): killed, and the rows tried again in a new one.
SLACK_S = 60.0
IDLE = "idle"
CACHE_KIB = 2048  # the child's page cache: its appends touch the last pages of a few tables only


def write_rows(db: sqlite3.Connection, sends: list[tuple], audits: list[tuple], folds: list[tuple]) -> None:
    """The rows of one group commit, inside the caller's transaction. Folds come after the inserts: a fold's first
    row may be in this very batch."""
    if sends:
        db.executemany(SEND, sends)
    if audits:
        db.executemany(AUDIT, audits)
    if folds:
        db.executemany(FOLD, folds)


class Committer:
    """The daemon's side: starts the child on first use (again after it ended), sends it batches, waits for
    their answer. Its methods block: they run on the writer's thread."""

    def __init__(self, path: str, *, busy_timeout: float, audit: tuple[str, str], priority: int | str):
        self.path = path
        self.busy_timeout = busy_timeout
        self.audit = audit
        # IDLE, or a nice value to add to the caller's (the child is started from a thread that may have its own)
        self.priority = priority if priority == IDLE else _nice_plus(int(priority))
        self.slack = SLACK_S
        self.started = 0  # children started (more than one: one ended and was replaced)
        self._child: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        return self._child.pid if self._child is not None and self._child.poll() is None else None

    def start(self) -> subprocess.Popen:
        """The running child, started now if there is none (at the daemon's start: it opens the store meanwhile)."""
        if self._child is None or self._child.poll() is not None:
            return self._start()
        return self._child

    def commit(self, rows: bytes) -> None:
        """Save the rows, `encode((sends, audits, folds))`, in one transaction of the child's (the loop encodes
        them while they are in its cache; the writer's thread only passes them on). sqlite3.Error with the child's
        text if it failed (nothing saved); OSError if the child ended or stopped answering (nothing saved either:
        a transaction that did not reach COMMIT is rolled back)."""
        self._ask(rows)

    def execute(self, sql: str) -> Any:
        """Run one statement on the child's connection; its first row."""
        return self._ask(encode(("execute", sql)))

    def _ask(self, message: bytes) -> Any:
        child = self.start()
        limit = self.busy_timeout + self.slack
        try:
            _write(child.stdin.fileno(), message)  # type: ignore[union-attr]
            ok, value = _receive(child.stdout.fileno(), limit)  # type: ignore[union-attr]
        except TimeoutError:
            self._end(child)
            raise OSError(f"the store's commit process did not answer within {limit:g} s: stopped, and a new one "
                          f"takes over") from None
        except (OSError, EOFError, ValueError, TypeError) as e:
            status = self._end(child)
            raise OSError(f"the store's commit process ended (exit status {status}; {e}): a new one takes "
                          f"over") from None
        if not ok:
            raise sqlite3.OperationalError(value)
        return value

    def _start(self) -> subprocess.Popen:
        import subprocess

        child = subprocess.Popen([sys.executable, "-S", "-m", "smppguard.store.committer"], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, bufsize=0, close_fds=True, env=child_env())
        self._child = child
        self.started += 1
        try:
            _send(child.stdin.fileno(), (self.path, self.busy_timeout, self.audit, self.priority))  # type: ignore
        except OSError:  # it died at once: the commit that follows says so
            pass
        return child

    def _end(self, child: subprocess.Popen) -> int:
        """Stop a child that failed (if it still runs) and forget it; its exit status."""
        child.kill()
        status = child.wait()
        for pipe in (child.stdin, child.stdout):
            if pipe is not None:
                pipe.close()
        if self._child is child:
            self._child = None
        return status

    def close(self, timeout: float = 10.0) -> int | None:
        """Let the child close its connection and end (killed after `timeout`); its exit status (None: none ran)."""
        child, self._child = self._child, None
        if child is None:
            return None
        assert child.stdin is not None and child.stdout is not None
        import subprocess

        child.stdin.close()
        try:
            status = child.wait(timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            status = child.wait()
        child.stdout.close()
        return status


def encode(message: Any) -> bytes:
    """A message as it goes on the pipe: its length, then its marshal (or its pickle, see _decode)."""
    try:
        data = marshal.dumps(message)
    except ValueError:  # a subclass of a built-in type (a str enum, say): what marshal refuses, pickle takes
        import pickle

        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _LEN.pack(len(data)) + data


def _write(fd: int, frame: bytes) -> None:
    view = memoryview(frame)
    while view:
        view = view[os.write(fd, view):]


def _send(fd: int, message: Any) -> None:
    _write(fd, encode(message))


def _read_exactly(fd: int, n: int, deadline: float | None) -> bytes:
    parts = []
    while n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError
        chunk = os.read(fd, n)
        if not chunk:
            raise EOFError("it ended")
        parts.append(chunk)
        n -= len(chunk)
    return b"".join(parts)


def _receive(fd: int, timeout: float | None = None) -> Any:
    deadline = None if timeout is None else time.monotonic() + timeout
    (n,) = _LEN.unpack(_read_exactly(fd, _LEN.size, deadline))
    return _decode(_read_exactly(fd, n, deadline))


def _decode(data: bytes) -> Any:
    """A message's marshal or pickle: a pickle starts with PROTO (0x80), which no marshal does (its first byte
    is a type code, 0x80 being the flag of the types it keeps references to, never alone)."""
    if data[:1] != b"\x80":
        return marshal.loads(data)
    import pickle

    try:
        return pickle.loads(data)
    except pickle.UnpicklingError as e:
        raise ValueError(str(e)) from None


def child_env() -> dict[str, str]:
    """The daemon's environment, with the folder this package is in first on PYTHONPATH: the child runs without
    `site` (python -S), which would have put it there."""
    env = dict(os.environ)
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH", "")) if p)
    return env


def _nice_plus(more: int) -> int:
    """The calling thread's nice value plus `more`, at most 19."""
    try:
        return min(19, os.getpriority(os.PRIO_PROCESS, 0) + max(0, more))
    except (OSError, AttributeError):
        return max(0, more)


# --- the child ------------------------------------------------------------------------------------------------


def lower_priority(priority: int | str) -> None:
    """The child's own scheduling: the idle class, or the nice value `priority` (if it is lower than the one the
    child has; no privilege is needed for either). A system that refuses (not Linux, a sandbox) leaves it as it
    is, with a warning."""
    try:
        if priority == IDLE:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))  # type: ignore[attr-defined]
        elif int(priority) > os.getpriority(os.PRIO_PROCESS, 0):
            os.setpriority(os.PRIO_PROCESS, 0, int(priority))
    except (OSError, AttributeError) as e:
        print(f"smppguard: the store's commit process could not lower its priority ({priority}): {e}",
              file=sys.stderr, flush=True)


def serve(stdin: int = 0, stdout: int = 1) -> int:
    from .db import StoreError, connect, write_transaction

    try:
        path, busy_timeout, audit, priority = _receive(stdin)
    except EOFError:
        return 0
    lower_priority(priority)

    try:
        db = connect(path, create=False, audit=audit)
    except StoreError as e:  # the daemon says the commit failed; this says why
        print(f"smppguard: the store's commit process: {e}", file=sys.stderr, flush=True)
        return 1
    db.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
    db.execute(f"PRAGMA cache_size = -{CACHE_KIB}")  # appends touch the last pages of a few tables only
    try:
        while True:
            try:
                message = _receive(stdin)
            except EOFError:
                return 0
            try:
                if message[0] == "execute":
                    answer = (True, db.execute(message[1]).fetchone())
                else:
                    with write_transaction(db):
                        write_rows(db, *message)
                    answer = (True, None)
            except sqlite3.Error as e:
                answer = (False, str(e))
            try:
                _send(stdout, answer)
            except BrokenPipeError:  # the daemon is gone (killed): what it sent last is saved all the same
                return 0
    finally:
        db.close()


def main() -> None:
    # It ends when the daemon closes its stdin (or dies): a SIGTERM to the whole service, or Ctrl-C in a terminal,
    # must leave it to save what the daemon still sends it while it stops.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.exit(serve())


if __name__ == "__main__":
    main()
