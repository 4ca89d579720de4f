"""The load generator of every submit_sm benchmark: transmitter binds that keep a window of submit_sm outstanding.

An asyncio Protocol (uvloop when installed) that sends pre-encoded PDUs, patching only the sequence number (and,
with distinct recipients, the recipient's last digits), and parses responses with ``struct.unpack_from`` over one
bytearray: it shares the machine's cores with the sink and the proxy, so it must be cheap per message. Also the
rounds of a comparison (`alternating`): a pass of each side, back to back, in alternating order.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import struct
import time
from typing import Any, Awaitable, Callable

from ..smpp.commands import CommandId
from ..smpp.fields import encode_body
from ..smpp.pdu import build
from . import procs
from .procs import BenchError, cpu_seconds, rss_kb, running

WARMUP = 2_000
LOW_LOAD_MESSAGES = 2_000
LOW_LOAD_WARMUP = 200
MIN_RATE = 500  # submit_sm/s: a pass slower than this (after a minute's grace) is stuck, and ends in an error

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
BIND_BODY = encode_body(CommandId.BIND_TRANSMITTER, system_id="bench", password="bench", system_type="",
                        interface_version=0x34)


# --- the load generator --------------------------------------------------------------------------------------

class Client(asyncio.Protocol):
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


class Numbers:
    """Hands out disjoint ranges of recipients, so that no recipient gets two messages in one run."""

    def __init__(self) -> None:
        self.next = 0

    def take(self, count: int) -> int:
        first = self.next
        self.next += count
        if self.next >= 10 ** RECIPIENT_DIGITS:
            raise BenchError("out of distinct recipients")
        return first


async def run_clients(clients: list[Client], total: int, numbers: Numbers) -> dict[str, Any]:
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


async def run_pass(address: tuple[str, int], total: int, binds: int, window: int, warmup: int,
                   numbers: Numbers, distinct: bool, pid: int | None = None, *, cycle: int = 0,
                   bind_body: bytes = BIND_BODY) -> dict[str, Any]:
    """Connect and bind `binds` clients, warm up, then time `total` submit_sm (and the proxy's CPU, if pid).
    `cycle` and `bind_body` as Client takes them: recipients that come round again, another account's bind."""
    loop = asyncio.get_running_loop()
    clients: list[Client] = []
    try:
        for _ in range(binds):
            _, client = await loop.create_connection(lambda: Client(window, distinct, cycle, bind_body), *address)
            clients.append(client)
        await asyncio.gather(*(c.bind() for c in clients))
        if warmup:
            await run_clients(clients, max(warmup, binds), numbers)
        cpu0 = cpu_seconds(pid) if pid else 0.0
        result = await run_clients(clients, total, numbers)
        if pid:
            result["cpu_seconds"] = cpu_seconds(pid) - cpu0
            result["rss_kb"] = rss_kb(pid)
            if not running(pid):  # what answered was not the proxy (another listener had its port)
                raise BenchError(f"the proxy (pid {pid}) is not running, yet {total:,} submit_sm through "
                                 f"{address[0]}:{address[1]} were answered: something else listens there")
        return result
    finally:
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)


def loop_name() -> str:
    loop = asyncio.get_running_loop()
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"


def run_loop(coro):
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
        procs.mark_terminated()
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


async def timed_pass(proxy: tuple[str, int], pid: int, numbers: Numbers, distinct: bool, messages: int,
                     binds: int, window: int, warmup: int) -> dict[str, float]:
    """One proxied pass of a comparison round: its rate, the proxy's CPU per message and its error responses."""
    started = time.monotonic()
    p = await run_pass(proxy, messages, binds, window, warmup, numbers, distinct, pid=pid)
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

