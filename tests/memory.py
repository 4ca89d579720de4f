"""In-memory connections for unit tests of the bridge: no sockets, the same asyncio Protocol calls.

`pipe(a, b)` joins two protocols: what one writes reaches the other's `data_received` on the next turn of the
event loop, as bytes from a socket would; `close()` on one end is EOF and `connection_lost` at the other. A
`Peer` is a scripted end (a sender or an SMSC) that frames what it receives into `Pdu`s.
"""

from __future__ import annotations

import asyncio
from typing import Any

from smppguard.smpp.framing import NEED_DATA, PduBuffer
from smppguard.smpp.pdu import Pdu, build


class MemoryTransport(asyncio.Transport):
    def __init__(self, loop: asyncio.AbstractEventLoop, protocol: asyncio.Protocol, name: str):
        super().__init__()
        self._loop = loop
        self._protocol = protocol
        self._name = name
        self.peer: MemoryTransport | None = None
        self._closing = False
        self._paused = False
        self._pending: list[bytes] = []
        self.written = 0  # bytes written by this end

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return (self._name, 0) if name == "peername" else default

    def write(self, data: bytes) -> None:
        if self._closing or self.peer is None:
            return
        self.written += len(data)
        self._loop.call_soon(self.peer._receive, bytes(data))

    def _receive(self, data: bytes) -> None:
        if self._closing:
            return
        if self._paused:
            self._pending.append(data)
        else:
            self._protocol.data_received(data)

    def pause_reading(self) -> None:
        self._paused = True

    def resume_reading(self) -> None:
        self._paused = False
        pending, self._pending = self._pending, []
        for data in pending:
            self._receive(data)

    def is_reading(self) -> bool:
        return not self._paused

    def is_closing(self) -> bool:
        return self._closing

    def get_write_buffer_size(self) -> int:
        return 0

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._loop.call_soon(self._protocol.connection_lost, None)
        if self.peer is not None:
            self._loop.call_soon(self.peer._peer_closed)

    def abort(self) -> None:
        self.close()

    def _peer_closed(self) -> None:
        if not self._closing:
            self._protocol.eof_received()
            self.close()


def pipe(a: asyncio.Protocol, b: asyncio.Protocol, names: tuple[str, str] = ("a", "b")) -> None:
    """Connect two protocols in memory (each gets connection_made with its end)."""
    loop = asyncio.get_running_loop()
    ta, tb = MemoryTransport(loop, a, names[1]), MemoryTransport(loop, b, names[0])
    ta.peer, tb.peer = tb, ta
    a.connection_made(ta)
    b.connection_made(tb)


class Peer(asyncio.Protocol):
    """A scripted sender or SMSC: records every PDU it receives; the test answers."""

    def __init__(self) -> None:
        self.buffer = PduBuffer()
        self.received: list[Pdu] = []
        self.transport: MemoryTransport | None = None
        self.closed = asyncio.Event()
        self._arrived = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer.receive_data(data)
        while (pdu := self.buffer.next_pdu()) is not NEED_DATA:
            self.received.append(pdu)  # type: ignore[arg-type]
        self._arrived.set()

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set()

    def send(self, command_id: int, sequence: int, body: bytes = b"", status: int = 0) -> None:
        assert self.transport is not None
        self.transport.write(build(command_id, sequence, body, status))

    def close(self) -> None:
        assert self.transport is not None
        self.transport.close()

    async def next(self, timeout: float = 2.0) -> Pdu:
        """The next PDU not yet taken; a timeout fails the test."""
        async def wait() -> Pdu:
            while not self.received:
                self._arrived.clear()
                await self._arrived.wait()
            return self.received.pop(0)
        return await asyncio.wait_for(wait(), timeout)

    async def nothing(self, wait: float = 0.05) -> None:
        """Let the loop run a little and check nothing more arrived."""
        await asyncio.sleep(wait)
        assert self.received == [], [hex(p.command_id) for p in self.received]
