"""A small SMSC: accepts binds, answers submits with message ids, sends receipts and injected MO messages.

It is the default upstream, so that `smppguard run` with the shipped config works with no carrier at all, and the
peer the tests drive. It speaks through the same Session class as the proxy (role SMSC). Faults can be switched
on for tests: hold all responses (`respond = False`), refuse binds, drop every connection.

`sink = True` makes it the benchmark's sink: submit_sm is answered with a new message id and no parsing (a real
SMSC's ids are unique, and the proxy remembers each one's account).
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from ..config import SimulatorConfig
from ..session.session import Session
from ..session.window import Outstanding
from ..smpp import commands as cmd
from ..smpp.commands import CommandId
from ..smpp.errors import PduError
from ..smpp.fields import Tlv, TlvTag, encode_body, parse_body
from ..smpp.pdu import Pdu, build
from ..smpp.receipt import STATE_OF_STAT, format_receipt
from ..smpp.state import BIND_TRANSITIONS, RECEIVING, BindState, Role
from ..smpp.status import Status

log = logging.getLogger("smppguard.simulator")


@dataclass
class Received:
    """A message the simulator accepted."""

    command_id: int
    system_id: str
    message_id: str
    pdu: Pdu
    fields: dict[str, Any]
    at: float = field(default_factory=time.time)


def _encode_text(text: str) -> tuple[int, bytes]:
    try:
        return 0x00, text.encode("gsm03.38")
    except UnicodeEncodeError:
        return 0x08, text.encode("utf-16-be")


def _timestamp(t: float) -> str:
    return time.strftime("%y%m%d%H%M%S", time.localtime(t))


class QueueFull(OverflowError):
    """The simulator keeps no more MO messages for receivers that have not bound."""


class Simulator:
    def __init__(self, config: SimulatorConfig | None = None, *, sink: bool = False, window: int = 100,
                 response_timeout: float = 30.0, enquire_link_interval: float = 30.0):
        self.config = config or SimulatorConfig()
        self.sink = sink
        self.window = window
        self.response_timeout = response_timeout
        self.enquire_link_interval = enquire_link_interval
        self.respond = True  # False: hold every submit response (to test timeouts and drops)
        self.bind_status: int | None = None  # set to refuse every bind with this status
        self.submit_status: int | None = None  # set to refuse every submit with this status
        self.received: collections.deque[Received] = collections.deque(maxlen=self.config.keep)
        self.binds: list[Pdu] = []  # every bind PDU as it arrived
        self.held: list[tuple[Session, Pdu, bytes]] = []  # responses held while respond is False
        # (deliver_sm sent, its response), the latest `keep`
        self.delivered: collections.deque[tuple[Pdu, Pdu]] = collections.deque(maxlen=self.config.keep)
        self.sessions: set[Session] = set()
        self._ids = itertools.count(1)
        self._pending: dict[str, list[bytes]] = {}  # system_id -> deliver_sm bodies waiting for a receiver
        self._rr = itertools.count()
        self._server: asyncio.base_events.Server | None = None
        self._control: asyncio.base_events.Server | None = None
        self._timers: set[asyncio.TimerHandle] = set()

    # --- lifecycle -----------------------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0, control: tuple[str, int] | None = None) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._new_session, host, port, reuse_address=True)
        if control is not None:
            from .control import start_control
            self._control = await start_control(self, *control)

    @property
    def address(self) -> tuple[str, int]:
        assert self._server is not None
        return self._server.sockets[0].getsockname()[:2]

    @property
    def control_address(self) -> tuple[str, int] | None:
        return self._control.sockets[0].getsockname()[:2] if self._control else None

    async def stop(self) -> None:
        for timer in self._timers:
            timer.cancel()
        for server in (self._server, self._control):
            if server is not None:
                server.close()
        for s in list(self.sessions):
            s.abort()
        for server in (self._server, self._control):
            if server is not None:
                await server.wait_closed()

    def release_held(self) -> int:
        """Send the responses held while `respond` was False; returns how many."""
        held, self.held = self.held, []
        for session, pdu, body in held:
            session.respond(pdu, body=body)
        return len(held)

    def unbind_all(self) -> None:
        """The SMSC ends every session with an unbind, as at a maintenance window."""
        for s in list(self.sessions):
            if s.is_open and s.state is not BindState.OPEN:
                s.send_request(build(CommandId.UNBIND, 0), context="unbind")

    def drop_connections(self) -> None:
        """Simulate a crash: cut every connection without unbinding."""
        for s in list(self.sessions):
            s.abort()

    def _new_session(self) -> Session:
        s = Session(Role.SMSC, self, window=self.window, response_timeout=self.response_timeout,
                    enquire_link_interval=self.enquire_link_interval, name="simulator")
        self.sessions.add(s)
        return s

    # --- SessionHandler ------------------------------------------------------------------------------------

    def request_received(self, session: Session, pdu: Pdu) -> None:
        command_id = pdu.command_id
        if self.sink and command_id == CommandId.SUBMIT_SM:
            session.send(build(CommandId.SUBMIT_SM_RESP, pdu.sequence, b"%08x\0" % next(self._ids)))
            return
        try:
            fields = parse_body(command_id, pdu.body, pdu.sequence)
        except PduError as e:
            session.respond(pdu, e.status)
            return
        if command_id in cmd.BINDS:
            self._bind(session, pdu, fields)
        elif command_id == CommandId.UNBIND:
            session.respond(pdu)
            session.state = BindState.CLOSED
            session.close()
        elif command_id in cmd.SUBMITS:
            self._submit(session, pdu, fields)
        elif command_id == CommandId.QUERY_SM:
            known = any(r.message_id == fields["message_id"] for r in self.received)
            if not known:
                session.respond(pdu, Status.RQUERYFAIL)
            else:
                session.respond(pdu, body=encode_body(CommandId.QUERY_SM_RESP, message_id=fields["message_id"],
                                                      final_date="", message_state=2, error_code=0))
        elif command_id in (CommandId.CANCEL_SM, CommandId.REPLACE_SM):
            known = any(r.message_id == fields["message_id"] for r in self.received)
            fail = Status.RCANCELFAIL if command_id == CommandId.CANCEL_SM else Status.RREPLACEFAIL
            session.respond(pdu, Status.ROK if known else fail)
        else:
            session.respond(pdu, Status.RINVCMDID)

    def _bind(self, session: Session, pdu: Pdu, fields: dict) -> None:
        self.binds.append(pdu)
        system_id, password = fields["system_id"], fields["password"]
        accounts = dict(self.config.accounts)
        status = Status.ROK
        if self.bind_status is not None:
            status = self.bind_status
        elif accounts and system_id not in accounts:
            status = Status.RINVSYSID
        elif accounts and accounts[system_id] != password:
            status = Status.RINVPASWD
        if status != Status.ROK:
            session.respond(pdu, status)
            return
        session.system_id = system_id
        session.state = BIND_TRANSITIONS[pdu.command_id]
        body = encode_body(cmd.response_id(pdu.command_id), system_id=self.config.system_id,
                           tlvs=[Tlv(TlvTag.SC_INTERFACE_VERSION, b"\x34")])
        session.respond(pdu, body=body)
        if session.state in RECEIVING:
            for key in (system_id, ""):  # "" holds messages for any receiver
                for body in self._pending.pop(key, []):
                    self._deliver_to(session, body)

    def _submit(self, session: Session, pdu: Pdu, fields: dict) -> None:
        message_id = f"{next(self._ids):08x}"
        self.received.append(Received(pdu.command_id, session.system_id, message_id, pdu, fields))
        if self.submit_status is not None:
            session.respond(pdu, self.submit_status)
            return
        if pdu.command_id == CommandId.SUBMIT_MULTI:
            body = encode_body(CommandId.SUBMIT_MULTI_RESP, message_id=message_id, unsuccess_sme=[])
        else:
            body = encode_body(cmd.response_id(pdu.command_id), message_id=message_id)
        if not self.respond:
            self.held.append((session, pdu, body))
            return
        session.respond(pdu, body=body)
        if fields.get("registered_delivery", 0) & 0x03 and pdu.command_id != CommandId.SUBMIT_MULTI:
            loop = asyncio.get_running_loop()
            handle = loop.call_later(self.config.receipt_delay, self._send_receipt, session.system_id,
                                     message_id, fields, time.time())
            self._timers.add(handle)

    def _send_receipt(self, system_id: str, message_id: str, fields: dict, submitted: float) -> None:
        stat = self.config.receipt_stat
        state = STATE_OF_STAT.get(stat.upper(), 7)
        text = format_receipt(message_id, stat, self.config.receipt_err, _timestamp(submitted),
                              _timestamp(time.time()))
        body = encode_body(CommandId.DELIVER_SM,
                           source_addr_ton=fields.get("dest_addr_ton", 0),
                           source_addr_npi=fields.get("dest_addr_npi", 0),
                           source_addr=fields.get("destination_addr", ""),
                           dest_addr_ton=fields.get("source_addr_ton", 0),
                           dest_addr_npi=fields.get("source_addr_npi", 0),
                           destination_addr=fields.get("source_addr", ""), esm_class=0x04, short_message=text,
                           tlvs=[Tlv(TlvTag.RECEIPTED_MESSAGE_ID, message_id.encode() + b"\0"),
                                 Tlv(TlvTag.MESSAGE_STATE, bytes((state,)))])
        self.deliver(system_id, body)

    def inject_mo(self, source: str, destination: str, text: str, system_id: str | None = None,
                  tlvs: list[Tlv] | None = None) -> bool:
        """Send a mobile-originated message to a receiver bind (of `system_id`, or any).
        Returns True if it went out now, False if it waits for a receiver to bind."""
        data_coding, payload = _encode_text(text)
        body = encode_body(CommandId.DELIVER_SM, source_addr_ton=1, source_addr_npi=1, source_addr=source,
                           dest_addr_ton=0, dest_addr_npi=0, destination_addr=destination, esm_class=0,
                           data_coding=data_coding, short_message=payload, tlvs=tlvs or [])
        return self.deliver(system_id, body)

    def deliver(self, system_id: str | None, body: bytes) -> bool:
        receivers = [s for s in self.sessions if s.state in RECEIVING and s.is_open
                     and (system_id is None or s.system_id == system_id)]
        if not receivers:
            queued = self._pending.setdefault(system_id or "", [])
            if sum(map(len, self._pending.values())) >= self.config.max_queued_mo:
                raise QueueFull(f"{self.config.max_queued_mo} MO messages already wait for a receiver "
                                "([simulator] max_queued_mo)")
            queued.append(body)
            return False
        self._deliver_to(receivers[next(self._rr) % len(receivers)], body)
        return True

    def _deliver_to(self, session: Session, body: bytes) -> None:
        session.send_request(build(CommandId.DELIVER_SM, 0, body), context="deliver")

    def response_received(self, session: Session, pdu: Pdu, entry: Outstanding) -> None:
        if entry.context == "unbind":
            session.close()
            return
        self.delivered.append((entry, pdu))  # type: ignore[arg-type]

    def request_failed(self, session: Session, entry: Outstanding, reason: str) -> None:
        log.info("simulator: deliver_sm to %s %s", session.label, reason)

    def window_opened(self, session: Session) -> None:
        pass

    def writing_paused(self, session: Session, paused: bool) -> None:
        (session.pause if paused else session.resume)("write")

    def connection_lost(self, session: Session, exc: Exception | None) -> None:
        self.sessions.discard(session)
