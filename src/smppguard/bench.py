"""The benchmark: the same submit_sm load straight to a sink SMSC and through the proxy, in one run.

`run_bench(messages, binds, window)` starts two child processes, a sink SMSC (``smppguard simulate --sink``)
and the proxy (``smppguard run`` with a temporary config pointing at the sink), and drives them from a load
generator in this process:

1. direct: N submit_sm over B binds with W outstanding per bind, straight to the sink;
2. proxied: the same through the proxy, reading the proxy's CPU time (/proc/<pid>/stat) around it;
3. low load: 1 bind, window 1, a couple of thousand submit_sm each way, whose latency difference is the
   cleanest figure for the latency the proxy adds (under load most of the latency is queueing).

Each pass starts with an excluded warm-up. The load generator is an asyncio Protocol (uvloop when installed)
that sends pre-encoded PDUs, patching only the sequence number (and, with policy "full", the recipient's last
digits), and parses responses with ``struct.unpack_from`` over one bytearray: it shares the machine's cores
with both children, so it must be cheap per message. Both children are always terminated (SIGTERM, then
SIGKILL after 5 s). `policy` (see POLICIES) chooses what the proxy screens; the default, "full", is the
shipped rule set with a new recipient per message.

Rates depend on what else the machine is doing (the figures include the load average); the proxy's CPU time
per message is the steadier figure. The proxy's CPU time and memory are its own and its children's (the store's
commit process); memory they share is counted for each, so the RSS figures are an upper bound.

``python -m smppguard.bench -n 200000 -b 4 -w 10 [--policy full|off] [--json]`` is ``smppguard bench`` too.

`run_soak(refusals, recipients)` (``smppguard bench --soak 2500000 --recipients 50000``) is the other kind of
run: a sender that keeps resending to the same recipients after the frequency cap (1) refused them, as a legacy
sender or a script in a loop does. It reports what the refusals cost the store (its growth on disk), and checks
that the audit log counts every refusal the sender got, per recipient and in `stats`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterator, NamedTuple

from .smpp.commands import CommandId
from .smpp.fields import encode_body
from .smpp.pdu import build

#: Targets on the 2-core reference machine (4 binds, window 10), for the relay with every rule off ...
TARGET_RATE = 25_000
TARGET_CPU_US = 30.0
#: ... and with every rule on and 1M blacklist entries + 1M opt-outs loaded (`compare`): start-up with the lists.
#: The rules-on / off throughput ratio and the memory at the end are measured and printed, against no target:
#: the first targets (0.80, 300 MB) were retired, and the README gives the figures measured.
TARGET_STARTUP_S = 3.0
#: `compare`: rules-off and rules-on passes, back to back, this many times (the ratio is their median)
ROUNDS = 3

WARMUP = 2_000
LOW_LOAD_MESSAGES = 2_000
LOW_LOAD_WARMUP = 200
START_TIMEOUT = 15.0
MIN_RATE = 500  # submit_sm/s: a pass slower than this (after a minute's grace) is stuck, and ends in an error
STOP_TIMEOUT = 5.0

_HEADER = struct.Struct(">IIII")
_SEQ = struct.Struct(">I")
_SUBMIT_SM_RESP = int(CommandId.SUBMIT_SM_RESP)
_ENQUIRE_LINK = int(CommandId.ENQUIRE_LINK)

#: Recipients are valid Chinese mobiles, 86138 followed by 8 digits that the load generator patches in.
RECIPIENT_PREFIX = b"86138"
RECIPIENT_DIGITS = 8
SUBMIT_BODY = encode_body(CommandId.SUBMIT_SM, source_addr_ton=5, source_addr_npi=0, source_addr="smppguard",
                          dest_addr_ton=1, dest_addr_npi=1,
                          destination_addr=(RECIPIENT_PREFIX + b"0" * RECIPIENT_DIGITS).decode(),
                          registered_delivery=0, data_coding=0,
                          short_message=b"smppguard benchmark: spring sale, 20% off everything this week")

#: What the proxy screens. "full": the shipped rules (config/smppguard.toml defaults, region CN), except that
#: quiet hours schedule rather than hold and fire one minute a day, so every message is forwarded at any time of
#: day with the same work; each submit_sm
#: goes to a new recipient, so no frequency cap refuses it and every rule runs in full (number validation,
#: time zones, the frequency reservation and its send-history row). "off": every rule disabled and one
#: recipient for all: the relay plus the screening skeleton, the floor of the current bridge.
POLICIES = ("full", "off")
_POLICY_TOML = {
    "full": (
        '[policy]\ndefault_region = "CN"\nfallback_zone = "Asia/Shanghai"\n\n'
        # quiet hours run in full for every message but fire one minute a day (the figures do not depend on
        # the time of day the benchmark runs; at night the shipped windows would schedule every message)
        '[rules.quiet_hours]\naction = "schedule"\nwindows = [{ start = "04:00", end = "04:01" }]\n'),
    "off": (
        '[policy]\ndefault_region = "CN"\nfallback_zone = "Asia/Shanghai"\nconfirmation_patterns = []\n\n'
        + "".join(f"[rules.{name}]\nenabled = false\n\n" for name in
                  ("invalid", "dead", "blacklist", "optout", "consent", "content", "frequency", "quiet_hours"))),
}
BIND_BODY = encode_body(CommandId.BIND_TRANSMITTER, system_id="bench", password="bench", system_type="",
                        interface_version=0x34)


class BenchError(RuntimeError):
    pass


# --- the load generator --------------------------------------------------------------------------------------

class _Client(asyncio.Protocol):
    """One transmitter bind that keeps `window` submit_sm outstanding, and times each one."""

    def __init__(self, window: int, distinct: bool, cycle: int = 0, bind_body: bytes = BIND_BODY):
        self.window = window
        self.bind_body = bind_body
        self.distinct = distinct
        self.cycle = cycle  # with distinct: recipients go round numbers 0 .. cycle-1 (0: every one new)
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.pdu_len = 16 + len(SUBMIT_BODY)
        one = build(CommandId.SUBMIT_SM, 0, SUBMIT_BODY)
        self.block = bytearray(one * window)  # `window` submit_sm back to back; sequence (and recipient) patched
        self.recipient_at = one.index(RECIPIENT_PREFIX) + len(RECIPIENT_PREFIX)
        self.number = 0  # the next recipient's last digits, when distinct
        self.seq = 1  # the last sequence number used
        self.control: asyncio.Future | None = None  # the response awaited by bind / unbind
        self.control_id = 0
        self.lost: asyncio.Future | None = None
        # per run
        self.count = 0
        self.base = 0  # the sequence number of the run's first submit_sm
        self.to_send = 0
        self.received = 0
        self.errors = 0
        self.sent_at: list[float] = []
        self.latencies: list[float] = []
        self.finished = 0.0
        self.done: asyncio.Future | None = None

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.lost = asyncio.get_running_loop().create_future()
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        err = ConnectionError(f"connection lost: {exc or 'closed by peer'}")
        for fut in (self.control, self.done):
            if fut is not None and not fut.done():
                fut.set_exception(err)
        if self.lost is not None and not self.lost.done():
            self.lost.set_result(None)

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        now = time.perf_counter()
        end = len(buf)
        pos = 0
        answered = 0
        unpack = _HEADER.unpack_from
        sent_at = self.sent_at
        base = self.base
        append = self.latencies.append
        while end - pos >= 16:
            length, command_id, status, seq = unpack(buf, pos)
            if end - pos < length:
                break
            if command_id == _SUBMIT_SM_RESP:
                append(now - sent_at[seq - base])
                if status:
                    self.errors += 1
                answered += 1
            else:
                self._other(command_id, status, seq)
            pos += length
        if pos:
            del buf[:pos]
        if answered:
            self.received += answered
            if self.to_send:
                self._send(min(answered, self.to_send), now)
            if self.received >= self.count and self.done is not None and not self.done.done():
                self.finished = now
                self.done.set_result(None)

    def _other(self, command_id: int, status: int, seq: int) -> None:
        if command_id == self.control_id and self.control is not None and not self.control.done():
            self.control.set_result(status)
        elif command_id == _ENQUIRE_LINK:
            self.transport.write(build(CommandId.ENQUIRE_LINK_RESP, seq))  # type: ignore[union-attr]
        elif command_id == CommandId.GENERIC_NACK:
            self.errors += 1

    # sending

    def _send(self, k: int, now: float) -> None:
        seq = self.seq
        block = self.block
        size = self.pdu_len
        pack_into = _SEQ.pack_into
        offset = 12
        for s in range(seq + 1, seq + k + 1):
            pack_into(block, offset, s)
            offset += size
        if self.distinct:
            number = self.number
            at = self.recipient_at
            cycle = self.cycle
            for _ in range(k):
                block[at:at + RECIPIENT_DIGITS] = b"%08d" % (number % cycle if cycle else number)
                number += 1
                at += size
            self.number = number
        start = seq + 1 - self.base
        self.sent_at[start:start + k] = [now] * k
        self.seq = seq + k
        self.to_send -= k
        self.transport.write(block[:k * size])  # type: ignore[union-attr]  # the slice is a copy

    def start(self, count: int, first_number: int = 0) -> asyncio.Future:
        """Send `count` submit_sm keeping `window` outstanding; the future is done when all are answered.
        With distinct recipients they get numbers first_number, first_number + 1, ..."""
        loop = asyncio.get_running_loop()
        self.number = first_number
        self.count = count
        self.base = self.seq + 1
        self.to_send = count
        self.received = 0
        self.errors = 0
        self.sent_at = [0.0] * count
        self.latencies = []
        self.done = loop.create_future()
        if count == 0:
            self.done.set_result(None)
        else:
            self._send(min(self.window, count), time.perf_counter())
        return self.done

    async def _control_request(self, command_id: int, body: bytes, timeout: float) -> int:
        if self.transport is None:
            raise ConnectionError("not connected")
        self.seq += 1
        self.control_id = command_id | 0x80000000
        self.control = asyncio.get_running_loop().create_future()
        self.transport.write(build(command_id, self.seq, body))
        return await asyncio.wait_for(self.control, timeout)

    async def bind(self) -> None:
        status = await self._control_request(CommandId.BIND_TRANSMITTER, self.bind_body, 10.0)
        if status:
            raise BenchError(f"bind_transmitter refused with status 0x{status:08X}")

    async def close(self) -> None:
        """Unbind politely (bounded), then close."""
        if self.done is not None and not self.done.done():
            self.done.cancel()  # a run cut short (SIGTERM): nobody waits for it any more
        if self.transport is None:
            return
        with contextlib.suppress(Exception):
            await self._control_request(CommandId.UNBIND, b"", 5.0)
        if self.transport is not None:
            self.transport.close()
        if self.lost is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self.lost), 5.0)


def _split(total: int, parts: int) -> list[int]:
    q, r = divmod(total, parts)
    return [q + (1 if i < r else 0) for i in range(parts)]


def _percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return 0.0
    k = min(len(sorted_values) - 1, max(0, round(p / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[k]


class _Numbers:
    """Hands out disjoint ranges of recipients, so that no recipient gets two messages in one run."""

    def __init__(self) -> None:
        self.next = 0

    def take(self, count: int) -> int:
        first = self.next
        self.next += count
        if self.next >= 10 ** RECIPIENT_DIGITS:
            raise BenchError("out of distinct recipients")
        return first


async def _run(clients: list[_Client], total: int, numbers: _Numbers) -> dict[str, Any]:
    counts = _split(total, len(clients))
    firsts = [numbers.take(n) for n in counts]
    t0 = time.perf_counter()
    waits = [c.start(n, first) for c, n, first in zip(clients, counts, firsts, strict=True)]
    limit = 60 + total / MIN_RATE
    # asyncio.wait, not wait_for(gather(...)): cancelled (SIGTERM), a gather future would be left holding an
    # exception nobody reads, and asyncio would print it
    done, pending = await asyncio.wait(waits, timeout=limit, return_when=asyncio.FIRST_EXCEPTION)
    for fut in done:
        fut.result()  # a lost connection
    if pending:
        answered = sum(c.received for c in clients)
        raise BenchError(f"only {answered:,} of {total:,} submit_sm answered within {limit:.0f}s")
    t1 = max([c.finished for c, n in zip(clients, counts, strict=True) if n] or [t0])
    latencies = sorted(x for c in clients for x in c.latencies)
    seconds = t1 - t0
    return {
        "messages": total,
        "seconds": seconds,
        "rate": total / seconds if seconds > 0 else 0.0,
        "p50_us": _percentile(latencies, 50) * 1e6,
        "p99_us": _percentile(latencies, 99) * 1e6,
        "errors": sum(c.errors for c in clients),
    }


async def _pass(address: tuple[str, int], total: int, binds: int, window: int, warmup: int,
                numbers: _Numbers, distinct: bool, pid: int | None = None) -> dict[str, Any]:
    """Connect and bind `binds` clients, warm up, then time `total` submit_sm (and the proxy's CPU, if pid)."""
    loop = asyncio.get_running_loop()
    clients: list[_Client] = []
    try:
        for _ in range(binds):
            _, client = await loop.create_connection(lambda: _Client(window, distinct), *address)
            clients.append(client)
        await asyncio.gather(*(c.bind() for c in clients))
        if warmup:
            await _run(clients, max(warmup, binds), numbers)
        cpu0 = _cpu_seconds(pid) if pid else 0.0
        result = await _run(clients, total, numbers)
        if pid:
            result["cpu_seconds"] = _cpu_seconds(pid) - cpu0
            result["rss_kb"] = _rss_kb(pid)
            if not _running(pid):  # what answered was not the proxy (another listener had its port)
                raise BenchError(f"the proxy (pid {pid}) is not running, yet {total:,} submit_sm through "
                                 f"{address[0]}:{address[1]} were answered: something else listens there")
        return result
    finally:
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)


async def _bench(sink: tuple[str, int], proxy: tuple[str, int], proxy_pid: int, messages: int, binds: int,
                 window: int, warmup: int, low_load: int, policy: str,
                 numbers: _Numbers | None = None) -> dict[str, Any]:
    numbers = numbers or _Numbers()
    distinct = policy == "full"
    direct = await _pass(sink, messages, binds, window, warmup, numbers, distinct)
    proxied = await _pass(proxy, messages, binds, window, warmup, numbers, distinct, pid=proxy_pid)
    low_direct = low_proxied = None
    if low_load:
        low_warm = min(LOW_LOAD_WARMUP, low_load)
        low_direct = await _pass(sink, low_load, 1, 1, low_warm, numbers, distinct)
        low_proxied = await _pass(proxy, low_load, 1, 1, low_warm, numbers, distinct)
    cpu = proxied.pop("cpu_seconds")
    rss = proxied.pop("rss_kb")
    result: dict[str, Any] = {
        "messages": messages,
        "binds": binds,
        "window": window,
        "warmup": warmup,
        "policy": policy,
        "loop": _loop_name(),
        "load_average": list(os.getloadavg()),  # other work on the machine skews the rates
        "direct": direct,
        "proxied": proxied,
        "ratio": proxied["rate"] / direct["rate"] if direct["rate"] else 0.0,
        "added_p50_us": proxied["p50_us"] - direct["p50_us"],
        "added_p99_us": proxied["p99_us"] - direct["p99_us"],
        "proxy_cpu_seconds": cpu,
        "proxy_cpu_us_per_msg": cpu / messages * 1e6 if messages else 0.0,
        "proxy_rss_kb": rss,
        "low_load": None,
        "targets": {"rate": TARGET_RATE, "cpu_us_per_msg": TARGET_CPU_US},
    }
    if low_direct is not None and low_proxied is not None:
        result["low_load"] = {
            "messages": low_load,
            "binds": 1,
            "window": 1,
            "direct": low_direct,
            "proxied": low_proxied,
            "added_p50_us": low_proxied["p50_us"] - low_direct["p50_us"],
            "added_p99_us": low_proxied["p99_us"] - low_direct["p99_us"],
        }
    return result


def _loop_name() -> str:
    loop = asyncio.get_running_loop()
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"


def _run_loop(coro):
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency, but not on every platform
        return asyncio.run(_cancelled_by_sigterm(coro))
    return uvloop.run(_cancelled_by_sigterm(coro))


async def _cancelled_by_sigterm(coro):
    """Run `coro`; SIGTERM cancels it, through the loop's own signal handling: an exception raised by a Python
    signal handler inside a protocol callback would surface as a lost connection instead."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None

    def cancel() -> None:
        global _terminated
        _terminated = True
        task.cancel()

    outer = signal.getsignal(signal.SIGTERM)
    try:
        loop.add_signal_handler(signal.SIGTERM, cancel)
    except (RuntimeError, ValueError):  # not the main thread: no signals here
        return await coro
    try:
        return await coro
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
        signal.signal(signal.SIGTERM, outer)  # remove_signal_handler leaves the default behind


# --- the child processes -----------------------------------------------------------------------------------

def _children(pid: int) -> list[int]:
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


def _running(pid: int) -> bool:
    """Whether the process is alive (not ended, not a zombie waiting to be reaped)."""
    fields = _stat(pid)
    return fields is not None and fields[0] not in (b"Z", b"X")


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a process and of its children, running or ended, from /proc/<pid>/stat."""
    fields = _stat(pid)
    if fields is None:
        return 0.0
    ticks = sum(int(x) for x in fields[11:15])  # utime, stime, and those of its children that ended
    return ticks / os.sysconf("SC_CLK_TCK") + sum(_cpu_seconds(c) for c in _children(pid))


def _rss_kb(pid: int) -> int:
    """The resident memory of a process and of its running children (pages they share counted for each)."""
    total = 0
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    total = int(line.split()[1])
    except OSError:
        return 0
    return total + sum(_rss_kb(c) for c in _children(pid))


_handed_out: set[int] = set()


def _free_port() -> int:
    """A port free now and not handed out before by this process: the kernel may give a port it just gave again,
    and the sink and the proxy of a rig, or the two rigs of `--policy compare`, take theirs only later."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def _wait_accepting(proc: subprocess.Popen, address: tuple[str, int], name: str, log: Path,
                    timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise BenchError(f"the {name} exited with {proc.returncode} before listening:\n{_tail(log)}")
        try:
            with socket.create_connection(address, timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise BenchError(f"the {name} did not listen on {address[0]}:{address[1]} within "
                                 f"{timeout:.0f}s:\n{_tail(log)}") from None
            time.sleep(0.05)


def _tail(path: Path, lines: int = 20) -> str:
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


@contextlib.contextmanager
def _terminated_cleanly():
    """SIGTERM (from `timeout`, say) ends the run like Ctrl-C does, through the `finally` that stops both
    children; Python's default would exit at once and leave them running."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, _frame):
        global _terminated
        _terminated = True
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _start(args: list[str], log: Path, cwd: str) -> subprocess.Popen:
    env = dict(os.environ)
    env.pop("SMPPGUARD_CONFIG", None)
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-m", "smppguard", *args], stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT, cwd=cwd, env=env)


def _stop(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def fill_store(path: Path, entries: int, seed: int = 7, *, history: int = 0, recipients: int = 0,
               optouts: int | None = None, history_days: float = 30.0) -> None:
    """`entries` blacklisted numbers and `optouts` (`entries` when None) sender-scoped opt-outs over 50 senders,
    none of them a benchmark recipient (those are 86138...; these are other Chinese mobile ranges), written
    straight into the list tables in key order; and `history` accepted sends over the last 30 days to
    `recipients` distinct numbers (a third as many as sends when 0), as a month of a real sender's traffic
    leaves in send_history. Reproducible: the same seed, the same store (numpy's PCG64). 20M + 5M entries and
    30M sends take a few minutes."""
    import sqlite3

    import numpy as np

    from .store.db import connect

    db = connect(path)
    db.close()
    rng = np.random.default_rng(seed)
    prefixes = np.array([86139, 86150, 86151, 86152, 86158, 86159, 86186, 86187, 86188], dtype=np.int64)

    def numbers(n: int) -> np.ndarray:
        return prefixes[rng.integers(0, len(prefixes), n)] * 10**8 + rng.integers(0, 10**8, n)

    db = sqlite3.connect(path)
    try:
        db.execute("PRAGMA synchronous = OFF")
        db.execute("PRAGMA cache_size = -262144")
        db.execute("BEGIN")
        now = time.time()
        black = np.unique(numbers(entries)).tolist()
        db.executemany("INSERT OR IGNORE INTO blacklist (number, source, reason, added_at) "
                       "VALUES (?, 'complaint', '', ?)", zip(black, itertools.repeat(now)))
        del black
        count = entries if optouts is None else optouts
        opt = numbers(count)
        sender = rng.integers(0, 50, count)
        order = np.lexsort((sender, opt))
        db.executemany("INSERT OR IGNORE INTO optout (number, scope, scope_key, source, added_at) "
                       "VALUES (?, 'sender', 'SENDER' || ?, 'import', ?)",
                       zip(opt[order].tolist(), sender[order].tolist(), itertools.repeat(now - 86400)))
        del opt, sender, order
        if history:  # in time order, as the daemon logs them: the index on sent_at grows at its end
            people = recipients or max(1, history // 3)
            times = np.sort(now - rng.random(history) * history_days * 86400)
            for start in range(0, history, 1_000_000):
                n = min(1_000_000, history - start)
                db.executemany("INSERT INTO send_history (number, account, sent_at) VALUES (?, 'bench', ?)",
                               zip((8613700000000 + rng.integers(0, people, n)).tolist(),
                                   times[start:start + n].tolist(), strict=True))
        db.execute("COMMIT")
    finally:
        db.close()


def start_sink(tmpdir: Path, address: tuple[str, int]) -> subprocess.Popen:
    """`smppguard simulate --sink` on `address`, once it accepts binds (stopped again if it never does)."""
    (tmpdir / "sink.toml").write_text('[log]\nlevel = "warning"\n')
    return _started(["simulate", "--config", str(tmpdir / "sink.toml"), "--sink", "--listen",
                     f"{address[0]}:{address[1]}", "--control", ""], tmpdir, "sink", address, START_TIMEOUT)


def start_proxy(tmpdir: Path, address: tuple[str, int], timeout: float = START_TIMEOUT) -> subprocess.Popen:
    """`smppguard run` with tmpdir/proxy.toml, once it accepts binds (stopped again if it never does)."""
    return _started(["run", "--config", str(tmpdir / "proxy.toml")], tmpdir, "proxy", address, timeout)


def _started(args: list[str], tmpdir: Path, name: str, address: tuple[str, int], timeout: float) -> subprocess.Popen:
    log = tmpdir / f"{name}.log"
    proc = _start(args, log, str(tmpdir))
    try:
        _wait_accepting(proc, address, "sink SMSC" if name == "sink" else name, log, timeout)
    except BaseException:
        _stop(proc)
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
            f'[metrics]\naddress = "127.0.0.1:{_free_port()}"\n\n'
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
            _stop(self.children.pop())


@contextlib.contextmanager
def rig(name: str, window: int, rest: str, **toml: str) -> Iterator[Rig]:
    """The setting of every benchmark that runs `smppguard run` between a client and the sink SMSC; `rest` and
    `toml` as proxy_toml takes them."""
    with _terminated_cleanly(), tempfile.TemporaryDirectory(prefix=f"smppguard-{name}-") as tmp:
        tmpdir = Path(tmp)
        r = Rig(tmpdir, tmpdir / "smppguard.db", ("127.0.0.1", _free_port()), ("127.0.0.1", _free_port()), [])
        (tmpdir / "proxy.toml").write_text(proxy_toml(r.proxy, r.sink, window, r.db, rest, **toml))
        try:
            yield r
        finally:
            r.stop()


def run_bench(messages: int = 100_000, binds: int = 4, window: int = 10, *, warmup: int = WARMUP,
              low_load: int = LOW_LOAD_MESSAGES, policy: str = "full", lists: int = 0,
              history: int = 0, optouts: int | None = None, recipients: int = 0) -> dict[str, Any]:
    """Start a sink SMSC and the proxy as child processes, measure both ways, stop both; return the figures.
    `policy` is one of POLICIES (see there); `lists` pre-loads that many blacklist entries and as many opt-outs
    into the proxy's store, and the proxy's start-up time (launch to accepting binds) is reported."""
    _check(messages, binds, window)
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {', '.join(POLICIES)}")
    with rig("bench", window, _POLICY_TOML[policy]) as r:
        started = _set_up(r, lists, history, optouts, recipients)
        result = _run_loop(_bench(r.sink, r.proxy, started["proxy_pid"], messages, binds, window, warmup, low_load,
                                  policy))
        result.update(started)
        return result


def _check(messages: int, binds: int, window: int) -> None:
    if messages < 1 or binds < 1 or window < 1:
        raise ValueError("messages, binds and window must be at least 1")


def _set_up(r: Rig, lists: int, history: int, optouts: int | None, recipients: int) -> dict[str, Any]:
    """Fill the store of rig `r` (see fill_store) when asked, start its sink and its proxy; return their pids, what
    was loaded, the store's figures and the proxy's start-up (time and memory)."""
    filled = bool(lists or history or optouts)
    result_store: dict[str, Any] = {}
    if filled:
        started = time.monotonic()
        fill_store(r.db, lists, history=history, recipients=recipients, optouts=optouts)
        result_store["fill_s"] = time.monotonic() - started
    sink = r.start(start_sink(r.dir, r.sink))
    size = lists + (lists if optouts is None else optouts) + history
    if filled:  # the first start reads the tables and writes the snapshot file; the one measured reads that
        result_store.update(_first_start(r.dir, r.proxy, START_TIMEOUT + size / 50_000))
    launched = time.monotonic()
    proxy = r.start(start_proxy(r.dir, r.proxy, START_TIMEOUT + size / 50_000))
    startup_s = time.monotonic() - launched
    return {"sink_pid": sink.pid, "proxy_pid": proxy.pid, "lists": lists,
            "optouts": lists if optouts is None else optouts, "history": history, "store": result_store,
            "proxy_startup_s": startup_s, "proxy_startup_rss_kb": _rss_kb(proxy.pid)}


def _format_store(s: dict[str, Any]) -> list[str]:
    if not s:
        return []
    return [f"store filled in            {s['fill_s']:.1f} s",
            f"first start (the tables)   {s['first_startup_s']:.2f} s, {s['first_startup_rss_kb'] / 1024:.0f} MiB; "
            f"snapshot file ({s['snapshot_mb']:.0f} MB) written {s['snapshot_written_after_s']:.1f} s after launch, "
            f"{s['snapshot_peak_rss_kb'] / 1024:.0f} MiB at most meanwhile"]


def _first_start(tmpdir: Path, proxy_addr: tuple[str, int], timeout: float) -> dict[str, Any]:
    """Start the proxy on a store it has never opened, wait for the snapshot file it then writes, stop it; return
    how long each took and its memory meanwhile."""
    from .store import snapshot

    launched = time.monotonic()
    proxy = start_proxy(tmpdir, proxy_addr, timeout)
    try:
        first = {"first_startup_s": time.monotonic() - launched, "first_startup_rss_kb": _rss_kb(proxy.pid)}
        path = snapshot.path_for(tmpdir / "smppguard.db")
        peak = 0
        while not path.exists():
            if proxy.poll() is not None or time.monotonic() - launched > 10 * timeout:
                raise BenchError(f"the proxy wrote no snapshot file:\n{_tail(tmpdir / 'proxy.log')}")
            peak = max(peak, _rss_kb(proxy.pid))
            time.sleep(0.2)
        first["snapshot_written_after_s"] = time.monotonic() - launched
        first["snapshot_peak_rss_kb"] = peak
        first["snapshot_mb"] = path.stat().st_size / 1e6
    finally:
        _stop(proxy)
    return first


# --- the soak: refusals, again and again ----------------------------------------------------------------------

#: What the soak's proxy screens: the frequency cap at 1, so that every message to a recipient after its first is
#: refused; recipients kept in full in the audit log, so its counts can be checked recipient by recipient.
SOAK_TOML = ('[policy]\ndefault_region = "CN"\nfallback_zone = "Asia/Shanghai"\n\n'
             '[rules.quiet_hours]\nenabled = false\n\n[rules.frequency]\nmax = 1\nmin_interval = "0s"\n\n'
             '[audit]\nrecipient = "full"\n')
#: 2.5 million refusals over 50,000 recipients may grow the store by this much at most.
TARGET_SOAK_MB_PER_MILLION = 20.0


async def _soak_pass(address: tuple[str, int], total: int, binds: int, window: int, recipients: int,
                     pid: int) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    clients: list[_Client] = []
    try:
        for _ in range(binds):
            _, client = await loop.create_connection(lambda: _Client(window, True, recipients), *address)
            clients.append(client)
        await asyncio.gather(*(c.bind() for c in clients))
        cpu0 = _cpu_seconds(pid)
        result = await _run(clients, total, _Numbers())
        result["cpu_seconds"] = _cpu_seconds(pid) - cpu0
        result["rss_kb"] = _rss_kb(pid)
        return result
    finally:
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)


def _store_bytes(db: Path) -> int:
    return sum(p.stat().st_size for p in (db, Path(f"{db}-wal")) if p.exists())


def run_soak(refusals: int = 2_500_000, recipients: int = 50_000, binds: int = 4, window: int = 10) -> dict[str, Any]:
    """A sender that resends to `recipients` numbers until `refusals` messages have been refused (the frequency
    cap is 1: each recipient's first message is accepted, every later one refused). Returns what the store grew
    by, and whether the audit log and `stats` count every refusal the sender received."""
    import sqlite3

    from .store import audit

    if refusals < 0 or recipients < 1 or binds < 1 or window < 1:
        raise ValueError("recipients, binds and window must be at least 1, refusals at least 0")
    total = refusals + recipients
    with rig("soak", window, SOAK_TOML) as r:
        db = r.db
        r.start(start_sink(r.dir, r.sink))
        proxy = r.start(start_proxy(r.dir, r.proxy))
        before = _store_bytes(db)
        result = _run_loop(_soak_pass(r.proxy, total, binds, window, recipients, proxy.pid))
        r.stop()  # SIGTERM: the proxy saves what it owes before it exits
        after = _store_bytes(db)
        conn = sqlite3.connect(db)
        try:
            rows, counted = conn.execute("SELECT COUNT(*), COALESCE(SUM(count), 0) FROM audit "
                                         "WHERE rule = 'frequency'").fetchone()
            per_recipient = dict(conn.execute("SELECT recipient, SUM(count) FROM audit WHERE rule = 'frequency' "
                                              "GROUP BY recipient"))
            in_stats = sum(r["count"] for r in audit.stats(conn) if r["action"] == "reject")
            audit_bytes = audit.size(conn)
        finally:
            conn.close()
    # recipient r got the messages i (i % recipients == r) of 0 .. total-1, and one of them was accepted
    expected = {f"+{RECIPIENT_PREFIX.decode()}{r:08d}": (total - r - 1) // recipients for r in range(recipients)}
    expected = {k: v for k, v in expected.items() if v}
    return {"refusals": refusals, "recipients": recipients, "binds": binds, "window": window,
            "messages": total, "seconds": result["seconds"], "rate": result["rate"],
            "refusals_received": result["errors"], "store_growth_bytes": after - before,
            "audit_bytes": audit_bytes, "audit_rows": rows, "audit_count": counted,
            "audit_matches_per_recipient": per_recipient == expected, "stats_refusals": in_stats,
            "proxy_cpu_us_per_msg": result["cpu_seconds"] / total * 1e6 if total else 0.0,
            "proxy_rss_kb": result["rss_kb"],
            "target_growth_mb": TARGET_SOAK_MB_PER_MILLION * refusals / 1e6}


def format_soak(r: dict[str, Any]) -> str:
    growth_mb = r["store_growth_bytes"] / 1e6
    per_million = growth_mb / (r["refusals"] / 1e6) if r["refusals"] else 0.0
    return "\n".join([
        f"smppguard bench --soak: {r['refusals']:,} refusals over {r['recipients']:,} recipients "
        f"({r['binds']} binds, window {r['window']}; frequency cap 1, so every message after a recipient's first "
        "is refused)",
        "",
        f"submit_sm sent            {r['messages']:,} in {r['seconds']:.1f} s ({r['rate']:,.0f}/s; "
        f"proxy CPU {r['proxy_cpu_us_per_msg']:.1f} µs each)",
        f"refusals received         {r['refusals_received']:,}",
        f"store growth              {growth_mb:.1f} MB, {per_million:.1f} MB per million refusals "
        f"(target <= {TARGET_SOAK_MB_PER_MILLION:.0f} MB per million, {r['target_growth_mb']:.1f} MB for this run: "
        f"{_met(growth_mb <= r['target_growth_mb'])})",
        f"audit log                 {r['audit_rows']:,} rows, {r['audit_bytes'] / 1e6:.1f} MB, counting "
        f"{r['audit_count']:,} refusals",
        "per recipient             every count = the refusals it got: "
        f"{'yes' if r['audit_matches_per_recipient'] else 'NO'}",
        f"stats                     {r['stats_refusals']:,} refusals = received: "
        f"{'yes' if r['stats_refusals'] == r['refusals_received'] else 'NO'}",
        f"proxy RSS at the end      {r['proxy_rss_kb'] * 1024 / 1e6:.0f} MB",
    ])


# --- output -------------------------------------------------------------------------------------------------

def format_result(r: dict[str, Any]) -> str:
    d, p = r["direct"], r["proxied"]
    lines = [
        f"smppguard bench: {r['messages']:,} submit_sm over {r['binds']} binds, window {r['window']} "
        f"(warm-up {r['warmup']:,} excluded; policy {r.get('policy', 'full')}; load generator on {r['loop']})",
        "",
        f"{'':24}{'direct':>12}{'proxied':>12}{'proxy adds':>12}",
        f"{'rate (submit_sm/s)':24}{d['rate']:>12,.0f}{p['rate']:>12,.0f}{'':>12}",
        f"{'latency p50 (µs)':24}{d['p50_us']:>12,.0f}{p['p50_us']:>12,.0f}{r['added_p50_us']:>12,.0f}",
        f"{'latency p99 (µs)':24}{d['p99_us']:>12,.0f}{p['p99_us']:>12,.0f}{r['added_p99_us']:>12,.0f}",
        f"{'error responses':24}{d['errors']:>12,}{p['errors']:>12,}",
    ]
    low = r.get("low_load")
    if low:
        ld, lp = low["direct"], low["proxied"]
        lines += [
            "",
            f"low load: {low['messages']:,} submit_sm, 1 bind, window 1",
            f"{'latency p50 (µs)':24}{ld['p50_us']:>12,.0f}{lp['p50_us']:>12,.0f}{low['added_p50_us']:>12,.0f}",
            f"{'latency p99 (µs)':24}{ld['p99_us']:>12,.0f}{lp['p99_us']:>12,.0f}{low['added_p99_us']:>12,.0f}",
        ]
    lines += [
        "",
        f"proxied / direct rate    {r['ratio']:.2f}",
        f"proxy CPU per submit_sm  {r['proxy_cpu_us_per_msg']:.1f} µs  "
        f"({r['proxy_cpu_seconds']:.2f} s for {r['messages']:,}; submit_sm + its response)",
        f"proxy RSS                {r['proxy_rss_kb'] / 1024:.1f} MiB at the end, "
        f"{r.get('proxy_startup_rss_kb', 0) / 1024:.1f} MiB after start-up",
        f"proxy start-up           {r.get('proxy_startup_s', 0):.2f} s (launch to accepting binds; "
        f"{r.get('lists', 0):,} blacklist entries + {r.get('optouts', 0):,} opt-outs + {r.get('history', 0):,} "
        "sends of send history loaded)",
        *_format_store(r.get("store") or {}),
    ]
    if r.get("policy") == "off":  # the relay's own targets; with rules on, `compare` judges against the relay
        t = r.get("targets", {"rate": TARGET_RATE, "cpu_us_per_msg": TARGET_CPU_US})
        lines.append(f"targets (4 binds, window 10, 2 cores): >= {t['rate']:,} submit_sm/s proxied: "
                     f"{_met(p['rate'] >= t['rate'])}; <= {t['cpu_us_per_msg']:.0f} µs proxy CPU per message: "
                     f"{_met(r['proxy_cpu_us_per_msg'] <= t['cpu_us_per_msg'])}")
    if "load_average" in r:
        lines.append(f"load average at the end  {' '.join(f'{x:.2f}' for x in r['load_average'])} "
                     f"(on {os.cpu_count()} cores; other work skews the rates)")
    return "\n".join(lines)


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def run_comparison(messages: int = 100_000, binds: int = 4, window: int = 10, *, lists: int = 0, history: int = 0,
                   warmup: int = WARMUP, low_load: int = LOW_LOAD_MESSAGES, optouts: int | None = None,
                   recipients: int = 0, rounds: int = ROUNDS) -> dict[str, Any]:
    """The relay with every rule off, and every rule on with `lists` entries loaded, in one run on one machine:
    what the policy costs, as the ratio of the two proxied rates.

    Both proxies run side by side, and their passes alternate, `rounds` times: off then on, on then off, and so
    on. Each round's ratio compares two passes run back to back, and the figure is their median: a shared host's
    speed drifts by a fifth within minutes, which a single pass of each (minutes apart) takes for the rules'
    cost. The first round also measures the direct rates and the low-load latency of each (the off proxy's
    low-load passes and the direct pass of the on proxy's sink come between its two proxied passes)."""
    _check(messages, binds, window)
    if rounds < 1:
        raise ValueError("rounds must be at least 1")
    with rig("bench-off", window, _POLICY_TOML["off"]) as r_off, \
            rig("bench-full", window, _POLICY_TOML["full"]) as r_full:
        off_started = _set_up(r_off, 0, 0, None, 0)
        full_started = _set_up(r_full, lists, history, optouts, recipients)
        off, full, passes = _run_loop(_compare(r_off, off_started["proxy_pid"], r_full, full_started["proxy_pid"],
                                               messages, binds, window, warmup, low_load, rounds))
        off.update(off_started)
        full.update(full_started)
    return {"off": off, "full": full, **rounds_figures(passes),
            "targets": {"startup_s": TARGET_STARTUP_S}}


def rounds_figures(passes: list[tuple[dict, dict]]) -> dict[str, Any]:
    """From each round's (off, full) passes (their rate and CPU per message): the rounds with their ratio, the
    median ratio and the median CPU per message of each side."""
    ratios = [f["rate"] / o["rate"] if o["rate"] else 0.0 for o, f in passes]
    return {"rounds": [{"off": o, "full": f, "ratio": x} for (o, f), x in zip(passes, ratios, strict=True)],
            "throughput_ratio": statistics.median(ratios),
            "cpu_us_per_msg": {"off": statistics.median(o["cpu_us_per_msg"] for o, _f in passes),
                               "full": statistics.median(f["cpu_us_per_msg"] for _o, f in passes)}}


async def _compare(r_off: Rig, off_pid: int, r_full: Rig, full_pid: int, messages: int, binds: int, window: int,
                   warmup: int, low_load: int, rounds: int) -> tuple[dict, dict, list[tuple[dict, dict]]]:
    """The first round (each proxy's whole _bench), then rounds of one proxied pass each, in alternating order.
    Returns the two _bench results and, per round, the (off, full) proxied passes: rate and CPU per message."""
    off_numbers, full_numbers = _Numbers(), _Numbers()
    off = await _bench(r_off.sink, r_off.proxy, off_pid, messages, binds, window, warmup, low_load, "off",
                       off_numbers)
    full = await _bench(r_full.sink, r_full.proxy, full_pid, messages, binds, window, warmup, low_load, "full",
                        full_numbers)
    passes = [({"rate": off["proxied"]["rate"], "cpu_us_per_msg": off["proxy_cpu_us_per_msg"]},
               {"rate": full["proxied"]["rate"], "cpu_us_per_msg": full["proxy_cpu_us_per_msg"]})]
    passes += await alternating(
        lambda: timed_pass(r_off.proxy, off_pid, off_numbers, False, messages, binds, window, warmup),
        lambda: timed_pass(r_full.proxy, full_pid, full_numbers, True, messages, binds, window, warmup),
        rounds, first_round=1)
    return off, full, passes


async def timed_pass(proxy: tuple[str, int], pid: int, numbers: _Numbers, distinct: bool, messages: int,
                     binds: int, window: int, warmup: int) -> dict[str, float]:
    """One proxied pass of a comparison round: its rate, the proxy's CPU per message and its error responses."""
    started = time.monotonic()
    p = await _pass(proxy, messages, binds, window, warmup, numbers, distinct, pid=pid)
    return {"rate": p["rate"], "cpu_us_per_msg": p["cpu_seconds"] / messages * 1e6, "started": started,
            "errors": p["errors"]}


async def alternating(a: Callable[[], Awaitable[dict]], b: Callable[[], Awaitable[dict]], rounds: int, *,
                      first_round: int = 0) -> list[tuple[dict, dict]]:
    """Rounds `first_round` .. rounds-1 of a comparison: a pass of each side, back to back, a first then b in
    even rounds and b first in odd ones, so that a steady drift in the host's speed favours neither side.
    Returns the (a, b) results of each round."""
    passes = []
    for k in range(first_round, rounds):
        if k % 2:
            y = await b()
            x = await a()
        else:
            x = await a()
            y = await b()
        passes.append((x, y))
    return passes


def format_comparison(c: dict[str, Any]) -> str:
    off, full, t = c["off"], c["full"], c["targets"]
    rss_mb = full["proxy_rss_kb"] * 1024 / 1e6
    cpu_off, cpu_full = c["cpu_us_per_msg"]["off"], c["cpu_us_per_msg"]["full"]
    rounds = c["rounds"]
    each = ", ".join(f"{r['ratio']:.2f}" for r in rounds)
    return "\n".join([
        format_result(off), "", format_result(full), "",
        f"what the rules cost ({full.get('lists', 0):,} blacklist entries + {full.get('optouts', 0):,} opt-outs, "
        f"a new recipient per message; {len(rounds)} round{'s' if len(rounds) > 1 else ''}: a pass of each, "
        "back to back, in alternating order)",
        f"proxied rate, rules on / off   {c['throughput_ratio']:.2f}"
        + (f"  (the median of {each})" if len(rounds) > 1 else ""),
        f"proxy CPU per submit_sm        {cpu_full:.1f} µs on, {cpu_off:.1f} µs off (+{cpu_full - cpu_off:.1f} µs)"
        + (", medians" if len(rounds) > 1 else ""),
        f"proxy RSS at the end           {rss_mb:.0f} MB",
        f"proxy start-up                 {full.get('proxy_startup_s', 0):.2f} s (target <= {t['startup_s']:.0f} s: "
        f"{_met(full.get('proxy_startup_s', 0) <= t['startup_s'])})",
    ])


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m smppguard.bench",
                                     description="Measure the proxy: the same load straight to a sink SMSC "
                                                 "and through the proxy.")
    parser.add_argument("-n", "--messages", type=int, default=100_000, help="submit_sm per pass")
    parser.add_argument("-b", "--binds", type=int, default=4, help="concurrent transmitter binds")
    parser.add_argument("-w", "--window", type=int, default=10, help="outstanding requests per bind")
    parser.add_argument("--policy", choices=POLICIES + ("compare",), default="full",
                        help="full: the shipped rules, a new recipient per message (default); off: no rules; "
                             "compare: off, then full, and the ratio of the two")
    parser.add_argument("--lists", type=int, default=0,
                        help="pre-load this many blacklist entries and as many opt-outs into the store")
    parser.add_argument("--rounds", type=int, default=ROUNDS,
                        help="with --policy compare: the off and full passes, back to back, this many times")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--soak", type=int, metavar="REFUSALS",
                        help="instead: resend to --recipients numbers until this many are refused; report the store's "
                             "growth and check the audit's counts")
    parser.add_argument("--recipients", type=int, default=50_000, help="with --soak: how many recipients")
    args = parser.parse_args(argv)
    return run_command(args.messages, args.binds, args.window, args.policy, args.lists, args.json, args.soak,
                       args.recipients, rounds=args.rounds)


def run_command(messages: int, binds: int, window: int, policy: str, lists: int, as_json: bool,
                soak: int | None = None, recipients: int = 50_000, history: int = 0, *, optouts: int | None = None,
                history_recipients: int = 0, rounds: int = ROUNDS) -> int:
    """`smppguard bench` and `python -m smppguard.bench`: measure, print the figures (or one line saying what
    went wrong), return the exit status."""
    def measure() -> dict[str, Any]:
        if soak is not None:
            return run_soak(soak, recipients, binds, window)
        if policy == "compare":
            return run_comparison(messages, binds, window, lists=lists, history=history, optouts=optouts,
                                  recipients=history_recipients, rounds=rounds)
        return run_bench(messages=messages, binds=binds, window=window, policy=policy, lists=lists, history=history,
                         optouts=optouts, recipients=history_recipients)

    formatter = format_soak if soak is not None else format_comparison if policy == "compare" else format_result
    return report(measure, formatter, as_json)


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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
