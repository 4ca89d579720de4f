"""The child processes of a benchmark: a sink SMSC and the proxy (``smppguard run``) started in a temporary
folder with a config written for them, their CPU time and memory read off /proc, and stopped however the run ends
(SIGTERM to the benchmark included); and `report`, which prints a run's figures or what went wrong.

The proxy's CPU time and memory are its own and its children's (the store's commit process); memory they share is
counted for each, so the RSS figures are an upper bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple

START_TIMEOUT = 15.0
STOP_TIMEOUT = 5.0


class BenchError(RuntimeError):
    pass


# --- the child processes -----------------------------------------------------------------------------------

def child_pids(pid: int) -> list[int]:
    """The processes `pid` started and that still run (the proxy's store commit process)."""
    found = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                found.extend(int(c) for c in f.read().split())
    except OSError:  # it ended meanwhile
        pass
    return found


def _stat(pid: int) -> list[bytes] | None:
    """The fields of /proc/<pid>/stat from the third (state) on, or None when the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    return stat[stat.rindex(b")") + 2:].split()  # after the command name, which may hold spaces and ")"


def running(pid: int) -> bool:
    """Whether the process is alive (not ended, not a zombie waiting to be reaped)."""
    fields = _stat(pid)
    return fields is not None and fields[0] not in (b"Z", b"X")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process and of its children, running or ended, from /proc/<pid>/stat."""
    fields = _stat(pid)
    if fields is None:
        return 0.0
    ticks = sum(int(x) for x in fields[11:15])  # utime, stime, and those of its children that ended
    return ticks / os.sysconf("SC_CLK_TCK") + sum(cpu_seconds(c) for c in child_pids(pid))


def _kb(path: str, field: str) -> int:
    """A "Field:  N kB" line of a /proc file, in kB (0 when the process is gone)."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def own_rss_kb(pid: int) -> int:
    """The resident memory of a process alone (0 when it is gone)."""
    return _kb(f"/proc/{pid}/status", "VmRSS:")


def pss_kb(pid: int) -> int:
    """A process's proportional share of memory: each page it shares with N processes counts 1/N (0 when it is
    gone). The daemon and its commit process map one libpython and one libsqlite, which RSS counts in both."""
    return _kb(f"/proc/{pid}/smaps_rollup", "Pss:")


def rss_kb(pid: int) -> int:
    """The resident memory of a process and of its running children (pages they share counted for each)."""
    return own_rss_kb(pid) + sum(rss_kb(c) for c in child_pids(pid))


_handed_out: set[int] = set()


def free_port() -> int:
    """A port free now and not handed out before by this process: the kernel may give a port it just gave again,
    and the sink and the proxy of a rig, or the two rigs of `--policy compare`, take theirs only later."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def wait_accepting(proc: subprocess.Popen, address: tuple[str, int], name: str, log: Path,
                    timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise BenchError(f"the {name} exited with {proc.returncode} before listening:\n{tail(log)}")
        try:
            with socket.create_connection(address, timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise BenchError(f"the {name} did not listen on {address[0]}:{address[1]} within "
                                 f"{timeout:.0f}s:\n{tail(log)}") from None
            time.sleep(0.05)


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


#: Set when SIGTERM ended a run (SystemExit outside the event loop, cancellation inside it): reported as that,
#: with exit status 128 + SIGTERM.
_terminated = False
EXIT_TERMINATED = 128 + signal.SIGTERM
#: What a run ended by SIGTERM raises.
TERMINATION = (SystemExit, asyncio.CancelledError)


def terminated() -> bool:
    return _terminated


def mark_terminated() -> None:
    global _terminated
    _terminated = True


@contextlib.contextmanager
def terminated_cleanly():
    """SIGTERM (from `timeout`, say) ends the run like Ctrl-C does, through the `finally` that stops both
    children; Python's default would exit at once and leave them running."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, _frame):
        mark_terminated()
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def start_smppguard(args: list[str], log: Path, cwd: str, python: str = sys.executable) -> subprocess.Popen:
    """`smppguard ARGS` in a child process, its output to `log`; `python`: another installation's interpreter."""
    env = dict(os.environ)
    env.pop("SMPPGUARD_CONFIG", None)
    with open(log, "wb") as out:
        return subprocess.Popen([python, "-m", "smppguard", *args], stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT, cwd=cwd, env=env)


def stop_child(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()

def start_sink(tmpdir: Path, address: tuple[str, int]) -> subprocess.Popen:
    """`smppguard simulate --sink` on `address`, once it accepts binds (stopped again if it never does)."""
    (tmpdir / "sink.toml").write_text('[log]\nlevel = "warning"\n')
    return _started(["simulate", "--config", str(tmpdir / "sink.toml"), "--sink", "--listen",
                     f"{address[0]}:{address[1]}", "--control", ""], tmpdir, "sink", address, START_TIMEOUT)


def start_proxy(tmpdir: Path, address: tuple[str, int], timeout: float = START_TIMEOUT,
                python: str = sys.executable) -> subprocess.Popen:
    """`smppguard run` with tmpdir/proxy.toml, once it accepts binds (stopped again if it never does); `python`:
    another installation's interpreter (another revision's daemon)."""
    return _started(["run", "--config", str(tmpdir / "proxy.toml")], tmpdir, "proxy", address, timeout, python)


def _started(args: list[str], tmpdir: Path, name: str, address: tuple[str, int], timeout: float,
             python: str = sys.executable) -> subprocess.Popen:
    log = tmpdir / f"{name}.log"
    proc = start_smppguard(args, log, str(tmpdir), python)
    try:
        wait_accepting(proc, address, "sink SMSC" if name == "sink" else name, log, timeout)
    except BaseException:
        stop_child(proc)
        raise
    return proc


def proxy_toml(proxy: tuple[str, int], upstream: tuple[str, int], window: int, db: Path, rest: str,
               store: str = "", log_level: str = "warning") -> str:
    """The proxy's config in every benchmark: its address, the SMSC's, long timeouts (a pass must not time out
    under load), metrics on as shipped, the store (and `store`, more of its settings), quiet logs, and `rest`
    (the policy, mostly)."""
    return (f'[listen]\naddress = "{proxy[0]}:{proxy[1]}"\n\n'
            f'[upstream]\naddress = "{upstream[0]}:{upstream[1]}"\nwindow = {window}\n\n'
            '[session]\nresponse_timeout = "300s"\nenquire_link_interval = "300s"\n\n'
            f'[metrics]\naddress = "127.0.0.1:{free_port()}"\n\n'
            f'[store]\npath = "{db}"\n{store}\n[log]\nlevel = "{log_level}"\n\n' + rest)


class Rig(NamedTuple):
    """A benchmark's temporary folder, the proxy's store in it and the two addresses (proxy.toml is written);
    the children started into `children` are stopped, proxy first, when the `rig()` block ends."""

    dir: Path
    db: Path
    sink: tuple[str, int]
    proxy: tuple[str, int]
    children: list[subprocess.Popen]

    def start(self, child: subprocess.Popen) -> subprocess.Popen:
        self.children.append(child)
        return child

    def stop(self) -> None:
        """Stop the children, last started first (SIGTERM: the proxy saves what it owes before it exits)."""
        while self.children:
            stop_child(self.children.pop())


@contextlib.contextmanager
def rig(name: str, window: int, rest: str, **toml: str) -> Iterator[Rig]:
    """The setting of every benchmark that runs `smppguard run` between a client and the sink SMSC; `rest` and
    `toml` as proxy_toml takes them."""
    with terminated_cleanly(), tempfile.TemporaryDirectory(prefix=f"smppguard-{name}-") as tmp:
        tmpdir = Path(tmp)
        r = Rig(tmpdir, tmpdir / "smppguard.db", ("127.0.0.1", free_port()), ("127.0.0.1", free_port()), [])
        (tmpdir / "proxy.toml").write_text(proxy_toml(r.proxy, r.sink, window, r.db, rest, **toml))
        try:
            yield r
        finally:
            r.stop()


def store_bytes(db: Path) -> int:
    return sum(p.stat().st_size for p in (db, Path(f"{db}-wal")) if p.exists())


def report(measure: Callable[[], dict[str, Any]], formatter: Callable[[dict[str, Any]], str], as_json: bool) -> int:
    """Run `measure`, print its figures (as JSON, or through `formatter`) or one line saying what went wrong;
    return the exit status (EXIT_TERMINATED when SIGTERM ended it: the children are stopped either way)."""
    import json

    try:
        result = measure()
    except (BenchError, ValueError, *TERMINATION) as e:
        if terminated():
            print("terminated: the child processes stopped", file=sys.stderr)
            return EXIT_TERMINATED
        if isinstance(e, TERMINATION):
            raise
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2) if as_json else formatter(result))
    return 0


def met(ok: bool) -> str:
    return "met" if ok else "NOT met"
