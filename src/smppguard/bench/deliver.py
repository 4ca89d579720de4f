"""The deliver-path benchmark: MO messages and delivery receipts from an SMSC through the proxy to a receiver.

``smppguard bench --deliver 60000`` starts the proxy as a child process (as `bench` does) twice, once with the
deliver path's learning off (``[inbound] enabled = false``: the relay alone) and once with it on, and drives
each from this process: an SMSC (an asyncio Protocol here) sends N deliver_sm with W outstanding to the upstream
bind the proxy opens, and a receiver bound through the proxy answers each. A third of them are replies with no
keyword, a third delivery receipts (text and TLVs), a third "TD" replies from a new number each, so every third
message teaches an opt-out that is written to the store. Reported per pass: deliver_sm per second, the proxy's
CPU time per deliver_sm and its response, and (learning on) the opt-outs found in the store afterwards, which
must be one per "TD".
"""

from __future__ import annotations

import asyncio
import sqlite3
import struct
import time
from typing import Any

from ..smpp.commands import CommandId
from ..smpp.fields import Tlv, TlvTag, encode_body
from .load import run_loop
from .procs import BenchError, cpu_seconds, report, rig, start_proxy

_HEADER = struct.Struct(">IIII")
_RESP = 0x80000000
SENDER = "10690000"
PASS_TIMEOUT_S = 600.0


def deliver_bodies(count: int) -> list[bytes]:
    """The deliver_sm bodies of a pass: a plain reply, a receipt, a "TD" reply from a new number, in turn."""
    out = []
    for i in range(count):
        number = f"86138{i:08d}"
        kind = i % 3
        if kind == 0:
            out.append(encode_body(CommandId.DELIVER_SM, source_addr_ton=1, source_addr_npi=1, source_addr=number,
                                   destination_addr=SENDER, short_message=b"Thanks, see you on Saturday"))
        elif kind == 1:
            text = (f"id:{i:x} sub:001 dlvrd:001 submit date:2612011200 done date:2612011201 stat:DELIVRD "
                    f"err:000 text:").encode()
            out.append(encode_body(CommandId.DELIVER_SM, source_addr_ton=1, source_addr_npi=1, source_addr=number,
                                   destination_addr=SENDER, esm_class=0x04, short_message=text,
                                   tlvs=[Tlv(TlvTag.RECEIPTED_MESSAGE_ID, f"{i:x}\0".encode()),
                                         Tlv(TlvTag.MESSAGE_STATE, b"\x02")]))
        else:
            out.append(encode_body(CommandId.DELIVER_SM, source_addr_ton=1, source_addr_npi=1, source_addr=number,
                                   destination_addr=SENDER, short_message=b"TD"))
    return out


class _Peer(asyncio.Protocol):
    """One end of an SMPP connection in the load generator: reads PDUs, hands each to `on_pdu`."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buf = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        pos = 0
        while len(buf) - pos >= 16:
            length, command_id, status, seq = _HEADER.unpack_from(buf, pos)
            if len(buf) - pos < length:
                break
            self.on_pdu(command_id, status, seq, bytes(buf[pos + 16:pos + length]))
            pos += length
        del buf[:pos]

    def on_pdu(self, command_id: int, status: int, seq: int, body: bytes) -> None:
        raise NotImplementedError

    def send(self, command_id: int, seq: int, body: bytes = b"", status: int = 0) -> None:
        assert self.transport is not None
        self.transport.write(_HEADER.pack(16 + len(body), command_id, status, seq) + body)


class _Smsc(_Peer):
    """The SMSC: answers the proxy's bind, then sends the bodies with `window` outstanding."""

    def __init__(self, server: "_SmscServer"):
        super().__init__()
        self.server = server

    def on_pdu(self, command_id: int, status: int, seq: int, body: bytes) -> None:
        if command_id in (CommandId.BIND_RECEIVER, CommandId.BIND_TRANSCEIVER, CommandId.BIND_TRANSMITTER):
            self.send(command_id | _RESP, seq, b"bench\0")
            if not self.server.bound.done():
                self.server.bound.set_result(self)
        elif command_id == CommandId.DELIVER_SM_RESP:
            self.server.answered(status)
        elif command_id == CommandId.ENQUIRE_LINK:
            self.send(command_id | _RESP, seq)
        elif command_id == CommandId.UNBIND:
            self.send(command_id | _RESP, seq)
        elif not command_id & _RESP:
            self.send(CommandId.GENERIC_NACK, seq, status=0x03)


class _SmscServer:
    def __init__(self, bodies: list[bytes], window: int):
        self.bodies = bodies
        self.window = window
        self.sent = 0
        self.done_count = 0
        self.failed = 0
        self.bound: asyncio.Future = asyncio.get_running_loop().create_future()
        self.finished: asyncio.Future = asyncio.get_running_loop().create_future()
        self.conn: _Smsc | None = None

    def start(self, conn: _Smsc) -> None:
        self.conn = conn
        for _ in range(min(self.window, len(self.bodies))):
            self._send_next()

    def _send_next(self) -> None:
        assert self.conn is not None
        i = self.sent
        self.sent += 1
        self.conn.send(CommandId.DELIVER_SM, i + 1, self.bodies[i])

    def answered(self, status: int) -> None:
        self.done_count += 1
        if status:
            self.failed += 1
        if self.sent < len(self.bodies):
            self._send_next()
        elif self.done_count == len(self.bodies) and not self.finished.done():
            self.finished.set_result(None)


class _Receiver(_Peer):
    """The sender's receiver bind through the proxy: answers every deliver_sm at once."""

    def __init__(self) -> None:
        super().__init__()
        self.bound: asyncio.Future = asyncio.get_running_loop().create_future()

    def on_pdu(self, command_id: int, status: int, seq: int, body: bytes) -> None:
        if command_id == CommandId.DELIVER_SM:
            self.send(CommandId.DELIVER_SM_RESP, seq, b"\0")
        elif command_id == CommandId.BIND_RECEIVER_RESP:
            if status:
                self.bound.set_exception(BenchError(f"the proxy refused the bind with 0x{status:08X}"))
            else:
                self.bound.set_result(None)
        elif command_id == CommandId.ENQUIRE_LINK:
            self.send(command_id | _RESP, seq)


async def _deliver_pass(proxy_addr: tuple[str, int], server: _SmscServer, pid: int) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    _, receiver = await loop.create_connection(_Receiver, *proxy_addr)
    try:
        receiver.send(CommandId.BIND_RECEIVER, 1, encode_body(CommandId.BIND_RECEIVER, system_id="bench",
                                                              password="bench"))
        await asyncio.wait_for(receiver.bound, 15)
        conn = await asyncio.wait_for(server.bound, 15)
        cpu0, t0 = cpu_seconds(pid), time.perf_counter()
        server.start(conn)
        await asyncio.wait_for(server.finished, PASS_TIMEOUT_S)
        seconds = time.perf_counter() - t0
        cpu = cpu_seconds(pid) - cpu0
    finally:
        assert receiver.transport is not None
        receiver.transport.close()
    n = len(server.bodies)
    return {"messages": n, "seconds": seconds, "rate": n / seconds, "proxy_cpu_us_per_msg": cpu / n * 1e6,
            "not_ok": server.failed}


def _one(messages: int, window: int, learning: bool) -> dict[str, Any]:
    inbound = f'[inbound]\nenabled = {"true" if learning else "false"}\n\n[policy]\ndefault_region = "CN"\n'
    with rig("deliver", window, inbound) as r:  # the SMSC is this process's, on the rig's sink address

        async def run() -> dict[str, Any]:
            server = _SmscServer(deliver_bodies(messages), window)
            listener = await asyncio.get_running_loop().create_server(lambda: _Smsc(server), *r.sink)
            try:
                proxy = r.start(await asyncio.to_thread(start_proxy, r.dir, r.proxy))
                return await _deliver_pass(r.proxy, server, proxy.pid)
            finally:
                listener.close()

        result = run_loop(run())
        r.stop()  # SIGTERM: the proxy saves what it owes before it exits
        conn = sqlite3.connect(r.db)
        try:
            (result["opt_outs_learned"],) = conn.execute("SELECT COUNT(*) FROM optout WHERE source = 'reply'"
                                                         ).fetchone()
        finally:
            conn.close()
    result["learning"] = learning
    result["replies_with_td"] = messages // 3
    return result


def run_deliver(messages: int = 60_000, window: int = 10) -> dict[str, Any]:
    """Learning off, then on: deliver_sm per second and the proxy's CPU per deliver_sm in each."""
    if messages < 3 or window < 1:
        raise ValueError("messages must be at least 3 and window at least 1")
    off = _one(messages, window, learning=False)
    on = _one(messages, window, learning=True)
    return {"messages": messages, "window": window, "off": off, "on": on, "ratio": on["rate"] / off["rate"]}


def format_deliver(r: dict[str, Any]) -> str:
    off, on = r["off"], r["on"]
    return "\n".join([
        f"smppguard bench --deliver: {r['messages']:,} deliver_sm from the SMSC to a receiver through the proxy "
        f"(window {r['window']}; a third plain replies, a third receipts, a third \"TD\" from new numbers)",
        "",
        f"{'':28}{'learning off':>14}{'learning on':>14}",
        f"{'rate (deliver_sm/s)':28}{off['rate']:>14,.0f}{on['rate']:>14,.0f}",
        f"{'proxy CPU per deliver_sm':28}{off['proxy_cpu_us_per_msg']:>11.1f} µs{on['proxy_cpu_us_per_msg']:>11.1f} µs",
        f"{'answered other than OK':28}{off['not_ok']:>14,}{on['not_ok']:>14,}",
        f"{'opt-outs learned':28}{off['opt_outs_learned']:>14,}{on['opt_outs_learned']:>14,}"
        f"   (\"TD\" replies sent: {on['replies_with_td']:,})",
        "",
        f"learning on / off: {r['ratio']:.2f} of the rate",
    ])


def run_command(messages: int, window: int, as_json: bool) -> int:
    """`smppguard bench --deliver N`: measure, print the figures (or what went wrong), return the exit status."""
    return report(lambda: run_deliver(messages, window), format_deliver, as_json)
