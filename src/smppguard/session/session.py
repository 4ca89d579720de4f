"""One SMPP connection, either leg: an asyncio Protocol that feeds bytes to the sans-I/O codec.

Rule 1: every request we send leaves the window exactly once, and whoever sent it is told: a response
(`response_received`), or a failure (`request_failed`: timed out or connection lost), never silence.
Rule 2: enquire_link is answered here, on each leg (SMPP-NOTES, Binds); everything else goes to the handler.
Rule 3: back-pressure is a set of pause reasons. While any is set, no PDU is dispatched; bytes already read stay
in the PduBuffer and the transport stops reading on the next chunk (lazy pausing: a full window that frees a slot
a microsecond later costs no epoll change).
Strategy: asyncio.Protocol rather than streams, because the relay's hot path is one synchronous callback from
bytes to forwarded bytes: no task switch, no await, and uvloop drives it without a Python-level reader loop.
Rule 4: what any session sends while a chunk of input is being handled (on this leg or the other) is gathered
and written once per session when that chunk is done, so N PDUs in one read cost one write, not N system
calls (the bytes and their order on each connection are unchanged). Outside input handling (timers, tasks,
connection_lost) `send` writes at once; `close` and `abort` first write what was gathered.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import threading
from typing import Protocol

from .. import tasks
from ..logs import Throttle
from ..smpp import commands as cmd
from ..smpp.commands import RESPONSE_BIT, CommandId
from ..smpp.errors import PduError
from ..smpp.framing import MAX_PDU_LEN, NEED_DATA, PduBuffer
from ..smpp.pdu import Pdu, build, generic_nack, renumber, response_to
from ..smpp.state import ALLOWED, BOUND, BindState, Role
from ..smpp.status import Status
from .window import Outstanding, Window

log = logging.getLogger("smppguard.session")
#: A peer can send the same protocol error again and again: one line per peer and kind a minute (logs.py).
_protocol_log = Throttle(log)
_U32_AT = struct.Struct(">I").unpack_from


class _WriteBatch:
    """The sessions of one event loop (one thread) with output gathered during the current input callback."""

    __slots__ = ("depth", "dirty")

    def __init__(self) -> None:
        self.depth = 0  # > 0 while an input callback runs
        self.dirty: list[Session] = []

    def flush(self) -> None:
        dirty = self.dirty
        while dirty:  # a flush may run handlers (pause_writing) that send more; they land here too
            sessions = dirty[:]
            dirty.clear()
            for session in sessions:
                session._flush()


_local = threading.local()


def _write_batch() -> _WriteBatch:
    batch = getattr(_local, "batch", None)
    if batch is None:
        batch = _local.batch = _WriteBatch()
    return batch


class SessionHandler(Protocol):
    def request_received(self, session: "Session", pdu: Pdu) -> None: ...
    def response_received(self, session: "Session", pdu: Pdu, entry: Outstanding) -> None: ...
    def request_failed(self, session: "Session", entry: Outstanding, reason: str) -> None: ...
    def window_opened(self, session: "Session") -> None: ...
    def writing_paused(self, session: "Session", paused: bool) -> None: ...
    def connection_lost(self, session: "Session", exc: Exception | None) -> None: ...


class Session(asyncio.Protocol):
    def __init__(self, role: Role, handler: SessionHandler, *, window: int = 10, response_timeout: float = 30.0,
                 enquire_link_interval: float = 30.0, max_pdu_len: int = MAX_PDU_LEN, name: str = ""):
        self.role = role
        self.handler = handler
        self.state = BindState.OPEN
        self.system_id = ""
        self.window = Window(window)
        self.buffer = PduBuffer(max_pdu_len)
        self.response_timeout = response_timeout
        self.enquire_link_interval = enquire_link_interval
        self.name = name or role.value
        self.peer = "?"
        self.transport: asyncio.Transport | None = None
        self.closed: asyncio.Future | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pause_reasons: set[str] = set()
        self._transport_paused = False
        self._reading_stopped = False  # stop_reading(): no more bytes, ever
        self._processing = False
        self._last_seen = 0.0
        self._enquiring = False
        self.enquire_links_received = 0
        self._ticker: asyncio.Task | None = None
        self._out: list[bytes] = []  # gathered output, written by _flush (Rule 4)
        self._allowed_state: BindState | None = None  # the state `_allowed` was looked up for
        self._allowed: frozenset[int] = frozenset()
        self._batch = _write_batch()

    def __repr__(self) -> str:
        return f"<Session {self.label} {self.state.value}>"

    @property
    def label(self) -> str:
        return f"{self.name}:{self.peer}:{self.system_id or '-'}"

    @property
    def is_open(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()

    # --- asyncio.Protocol ----------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._loop = asyncio.get_running_loop()
        self._batch = _write_batch()  # this loop's thread
        self.closed = self._loop.create_future()
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self._last_seen = self._loop.time()
        self._ticker = tasks.spawn(self._tick(), name=f"tick {self.label}")
        admit = getattr(self.handler, "admit", None)  # a handler may turn a connection away (limits)
        if admit is not None and not admit(self):
            transport.close()

    def data_received(self, data: bytes) -> None:
        self._last_seen = self._loop.time()  # type: ignore[union-attr]
        self.buffer.receive_data(data)
        if self._pause_reasons:
            if not self._transport_paused and self.transport is not None:
                self.transport.pause_reading()
                self._transport_paused = True
            return
        self._process_batched()

    def eof_received(self) -> bool:
        self.buffer.receive_data(b"")
        self._process_batched()
        return False  # close our side too

    def _process_batched(self) -> None:
        """Handle buffered input with output gathered, then written once per session (Rule 4)."""
        batch = self._batch
        batch.depth += 1
        try:
            self._process()
        finally:
            batch.depth -= 1
            if not batch.depth and batch.dirty:
                batch.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.state = BindState.CLOSED
        if self._ticker is not None:
            self._ticker.cancel()
        for _seq, entry in self.window.drain():
            self._fail(entry, "connection lost")
        if self.closed is not None and not self.closed.done():
            self.closed.set_result(None)
        self.transport = None
        self.handler.connection_lost(self, exc)

    def pause_writing(self) -> None:
        self.handler.writing_paused(self, True)

    def resume_writing(self) -> None:
        self.handler.writing_paused(self, False)

    # --- receiving -----------------------------------------------------------------------------------------

    def _process(self) -> None:
        if self._processing:
            return
        self._processing = True
        try:
            next_pdu = self.buffer.next_pdu
            dispatch = self._dispatch
            reasons = self._pause_reasons  # mutated in place by pause / resume, never replaced
            while not reasons and self.transport is not None:
                try:
                    pdu = next_pdu()
                except PduError as e:
                    self._protocol_error(e)
                    return
                if pdu is NEED_DATA:
                    return
                dispatch(pdu)  # type: ignore[arg-type]
        finally:
            self._processing = False

    def _dispatch(self, pdu: Pdu) -> None:
        command_id = pdu.command_id
        state = self.state
        if state is not self._allowed_state:  # the table lookup hashes two Enums: once per state change
            self._allowed = ALLOWED[(self.role, state)]
            self._allowed_state = state
        if command_id not in self._allowed:
            self._illegal(pdu)
        elif command_id & RESPONSE_BIT:
            was_full = self.window.full
            entry = self.window.pop(pdu.sequence)
            if entry is None:
                _protocol_log.log(logging.WARNING, (self.peer, "unknown sequence"),
                                  "%s: %s for unknown sequence %d dropped (timed out or never sent)",
                                  self.label, cmd.command_name(command_id), pdu.sequence)
                return
            if entry.waiter is not None:
                if entry.context is not None:  # hold what follows in this buffer until the waiter has acted
                    self._pause_reasons.add(entry.context)
                if not entry.waiter.done():
                    entry.waiter.set_result(pdu)
            elif entry.context == "enquire_link":
                self._enquiring = False
            else:
                self.handler.response_received(self, pdu, entry)
            if was_full and not self.window.full:
                self.handler.window_opened(self)
        elif command_id == CommandId.ENQUIRE_LINK:
            self.enquire_links_received += 1
            self.send(response_to(pdu))
        else:
            self.handler.request_received(self, pdu)

    def _illegal(self, pdu: Pdu) -> None:
        command_id = pdu.command_id
        if command_id not in cmd.KNOWN:
            _protocol_log.log(logging.INFO, (self.peer, "unknown"), "%s: unknown command_id 0x%08X answered "
                              "generic_nack", self.label, command_id)
            self.send(generic_nack(pdu.sequence, Status.RINVCMDID))
        elif command_id & RESPONSE_BIT or command_id in cmd.NO_RESPONSE:
            _protocol_log.log(logging.WARNING, (self.peer, "dropped"), "%s: %s not allowed in state %s, dropped",
                              self.label, cmd.command_name(command_id), self.state.value)
        elif command_id in cmd.BINDS and self.state in BOUND:
            self.send(response_to(pdu, Status.RALYBND))
        else:
            _protocol_log.log(logging.INFO, (self.peer, "state"), "%s: %s not allowed in state %s", self.label,
                              cmd.command_name(command_id), self.state.value)
            self.send(response_to(pdu, Status.RINVBNDSTS))

    def _protocol_error(self, e: PduError) -> None:
        """A frame we cannot read: tell the peer (generic_nack with the status hint), and if the byte stream
        cannot be resynchronised, close (SMPP-NOTES, Framing)."""
        _protocol_log.log(logging.WARNING, (self.peer, "malformed"), "%s: malformed PDU: %s", self.label, e)
        self.send(generic_nack(e.sequence or 0, e.status))
        if e.fatal:
            self.close()

    # --- sending -------------------------------------------------------------------------------------------

    def send(self, raw: bytes) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            if self._batch.depth:
                out = self._out
                if not out:
                    self._batch.dirty.append(self)
                out.append(raw)
            else:
                transport.write(raw)

    def _flush(self) -> None:
        """Write what was gathered during input handling (Rule 4), in one write."""
        out = self._out
        if not out:
            return
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    def send_request(self, raw: bytes, origin: "Session | None" = None, origin_sequence: int = 0,
                     context: object = None) -> int:
        """Send a request relayed from `origin` under a new sequence number; the response or a failure
        reaches the handler. Returns the sequence number used on this leg."""
        window = self.window
        seq = window.allocate()
        window.add(seq, Outstanding(_U32_AT(raw, 4)[0],
                                    self._loop.time() + self.response_timeout,  # type: ignore[union-attr]
                                    origin, origin_sequence, None, context))
        self.send(renumber(raw, seq))
        return seq

    def request(self, raw: bytes, timeout: float | None = None, pause_on_answer: str | None = None) -> asyncio.Future:
        """Send our own request; the future gets the response `Pdu`, or TimeoutError / ConnectionError.

        With `pause_on_answer`, the session pauses for that reason the moment the response is dispatched, so no
        PDU after it (an SMSC writes bind_resp and the deliver_sm it held in one segment) is dispatched before
        the waiter has acted on the response (moved the bind state) and called `resume(reason)`."""
        assert self._loop is not None
        waiter = self._loop.create_future()
        if not self.is_open:
            waiter.set_exception(ConnectionError("connection closed"))
            return waiter
        seq = self.window.allocate()
        deadline = self._loop.time() + (self.response_timeout if timeout is None else timeout)
        self.window.add(seq, Outstanding(int.from_bytes(raw[4:8], "big"), deadline, waiter=waiter,
                                         context=pause_on_answer))
        self.send(renumber(raw, seq))
        return waiter

    def respond(self, pdu: Pdu, status: int = Status.ROK, body: bytes = b"") -> None:
        self.send(response_to(pdu, status, body))

    # --- flow control --------------------------------------------------------------------------------------

    def pause(self, reason: str) -> None:
        self._pause_reasons.add(reason)

    def resume(self, reason: str) -> None:
        reasons = self._pause_reasons
        reasons.discard(reason)
        if reasons or self.transport is None:
            return
        self._process()
        if (not self._pause_reasons and self._transport_paused and not self._reading_stopped
                and self.transport is not None):
            self._transport_paused = False
            self.transport.resume_reading()

    @property
    def paused(self) -> frozenset[str]:
        return frozenset(self._pause_reasons)

    # --- stopping: what was read is still owed an answer -----------------------------------------------------

    def stop_reading(self) -> None:
        """Read no more bytes from the peer; PDUs already read are still dispatched as the pauses allow."""
        self._reading_stopped = True
        if self.transport is not None and not self._transport_paused:
            self.transport.pause_reading()
            self._transport_paused = True

    def fail_outstanding(self, reason: str) -> int:
        """Give up on every request in the window now: each origin is told (Rule 1); returns how many."""
        entries = self.window.drain()
        for _seq, entry in entries:
            self._fail(entry, reason)
        return len(entries)

    @property
    def has_buffered_pdu(self) -> bool:
        """Whether a whole PDU that was read waits in the buffer (a pause holds it)."""
        return self.buffer.has_pdu

    def answer_buffered(self, status: int) -> int:
        """Answer every request still in the buffer with `status` (the proxy is stopping and cannot forward it);
        returns how many. Responses and what cannot be framed are dropped."""
        answered = 0
        while True:
            try:
                pdu = self.buffer.next_pdu()
            except PduError:
                return answered
            if pdu is NEED_DATA:
                return answered
            if not pdu.command_id & RESPONSE_BIT and pdu.command_id not in cmd.NO_RESPONSE:  # type: ignore[union-attr]
                self.send(response_to(pdu, status) if pdu.command_id in cmd.KNOWN  # type: ignore[union-attr]
                          else generic_nack(pdu.sequence, status))  # type: ignore[union-attr]
                answered += 1

    # --- timers and closing --------------------------------------------------------------------------------

    def _fail(self, entry: Outstanding, reason: str) -> None:
        if entry.waiter is not None:
            if not entry.waiter.done():
                exc = TimeoutError if reason == "timed out" else ConnectionError
                entry.waiter.set_exception(exc(f"{self.label}: request {reason}"))
        elif entry.context == "enquire_link":
            self._enquiring = False
        else:
            self.handler.request_failed(self, entry, reason)

    async def _tick(self) -> None:
        """The session's one timer: expire requests past their deadline, keep the link alive when idle."""
        loop = self._loop
        assert loop is not None
        period = max(0.02, min(1.0, self.response_timeout / 4, self.enquire_link_interval / 4))
        while True:
            await asyncio.sleep(period)
            now = loop.time()
            was_full = self.window.full
            for _seq, entry in self.window.expired(now):
                if entry.context == "enquire_link":
                    log.warning("%s: no answer to enquire_link in %.1fs; closing", self.label,
                                self.response_timeout)
                    self.abort()
                    return
                log.info("%s: %s timed out", self.label, cmd.command_name(entry.command_id))
                self._fail(entry, "timed out")
            if was_full and not self.window.full:
                self.handler.window_opened(self)
            if (self.state in BOUND and not self._enquiring
                    and now - self._last_seen >= self.enquire_link_interval):
                self._enquiring = True
                self.send_request(build(CommandId.ENQUIRE_LINK, 0), context="enquire_link")

    def close(self) -> None:
        """Close after what is queued is written. The only place that tolerates an already-closed transport."""
        transport = self.transport
        if transport is not None and not transport.is_closing():
            self._flush()
            transport.close()

    def abort(self) -> None:
        transport = self.transport
        if transport is not None:
            self._flush()  # what was sent before the abort goes out first, as when it was written at once
            transport.abort()

    async def wait_closed(self) -> None:
        if self.closed is not None:
            await asyncio.shield(self.closed)
