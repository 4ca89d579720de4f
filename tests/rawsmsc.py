"""An SMSC for the end-to-end tests that shares no code with smppguard: `struct` over blocking sockets, a thread
per connection, written from the SMPP 3.4 layouts (header 3.2; submit_sm 4.4.1; submit_multi 4.5.1 and its
response 4.5.2; deliver_sm 4.6.1).

A bug that the proxy and the built-in simulator share (both are built on smppguard's Session and codec) cannot
show against the simulator; against this it can. It is as small as an SMSC can be and still bind, answer and
send, and every fault is a switch the test flips:

- `answer`: "now" (the default), "never" (requests are recorded and never answered), or "hold" (kept until
  `release()`, which answers them newest first: out of order);
- `throttle_next`: the next N submits are answered 0x58 ESME_RTHROTTLED (a burst);
- `fail_destinations`: {address: status}: submit_multi lists these as unsuccessful, submit_sm / data_sm to
  them are refused with that status;
- `answer_enquire_link`: False leaves enquire_link unanswered;
- `delay`: seconds before each submit is answered;
- `deliver_on_bind`: deliver_sm bodies written in the same `write()` as the bind response (an SMSC handing over
  the MOs and receipts it held for the account);
- `passwords`: {system_id: password}; when set, a bind with another password is refused 0x0E (RINVPASWD). Every
  bind is counted in `binds`.

It sends deliver_sm and unbind to a bound connection and records the answers, so the tests can see what the
proxy tells the SMSC.
"""

from __future__ import annotations

import socket
import ssl
import struct
import threading
import time
from dataclasses import dataclass, field

HEADER = struct.Struct(">IIII")

BIND_RECEIVER, BIND_TRANSMITTER, BIND_TRANSCEIVER = 0x01, 0x02, 0x09
SUBMIT_SM, DELIVER_SM, UNBIND, ENQUIRE_LINK = 0x04, 0x05, 0x06, 0x15
SUBMIT_MULTI, DATA_SM, GENERIC_NACK = 0x21, 0x103, 0x80000000
RESP = 0x80000000
SUBMITS = (SUBMIT_SM, DATA_SM, SUBMIT_MULTI)
BINDS = (BIND_RECEIVER, BIND_TRANSMITTER, BIND_TRANSCEIVER)
THROTTLED = 0x58


def pdu(command_id: int, sequence: int, body: bytes = b"", status: int = 0) -> bytes:
    return HEADER.pack(16 + len(body), command_id, status, sequence) + body


def cstr(data: bytes, pos: int) -> tuple[str, int]:
    end = data.index(b"\0", pos)
    return data[pos:end].decode("latin-1"), end + 1


def destinations(command_id: int, body: bytes) -> list[str]:
    """The destination addresses of a submit_sm / data_sm (one) or a submit_multi (each SME address; a
    distribution list as "list:<name>")."""
    _service_type, pos = cstr(body, 0)
    _source, pos = cstr(body, pos + 2)  # after source_addr_ton, source_addr_npi
    if command_id != SUBMIT_MULTI:
        address, _ = cstr(body, pos + 2)
        return [address]
    count, pos = body[pos], pos + 1
    out = []
    for _ in range(count):
        flag, pos = body[pos], pos + 1
        if flag == 1:
            address, pos = cstr(body, pos + 2)
            out.append(address)
        else:
            name, pos = cstr(body, pos)
            out.append(f"list:{name}")
    return out


def deliver_sm_body(source: str, destination: str, text: bytes, esm_class: int = 0, data_coding: int = 0,
                    tlvs: bytes = b"") -> bytes:
    return (b"\0" + bytes((1, 1)) + source.encode() + b"\0" + bytes((0, 0)) + destination.encode() + b"\0"
            + bytes((esm_class, 0, 0)) + b"\0\0" + bytes((0, 0, data_coding, 0, len(text))) + text + tlvs)


@dataclass
class Request:
    """A request the SMSC received."""

    command_id: int
    sequence: int
    body: bytes
    conn: "Conn"
    status: int = 0
    at: float = field(default_factory=time.monotonic)

    @property
    def destinations(self) -> list[str]:
        return destinations(self.command_id, self.body)


class Conn:
    """One connection from the proxy."""

    def __init__(self, smsc: "RawSmsc", sock: socket.socket):
        self.smsc = smsc
        self.sock = sock
        self.system_id = ""
        self.bound = False
        self.closed = threading.Event()  # EOF or reset from the proxy, or closed here
        self._lock = threading.Lock()
        self._seq = 0

    def write(self, data: bytes) -> None:
        with self._lock:
            try:
                self.sock.sendall(data)
            except OSError:
                pass

    def request(self, command_id: int, body: bytes = b"") -> int:
        """Send our own request (deliver_sm, unbind, enquire_link); returns its sequence number. Its answer
        lands in `RawSmsc.answers`."""
        with self._lock:
            self._seq += 1
            seq = self._seq
        self.write(pdu(command_id, seq, body))
        return seq

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self.closed.set()


class RawSmsc:
    def __init__(self, tls: "ssl.SSLContext | None" = None) -> None:
        """`tls`: a server-side context: the SMSC speaks TLS (the handshake happens on the connection's thread)."""
        self.tls = tls
        self.answer = "now"
        self.throttle_next = 0
        self.fail_destinations: dict[str, int] = {}
        self.answer_enquire_link = True
        self.answer_binds = True  # False: bind requests are recorded and never answered
        self.delay = 0.0
        self.deliver_on_bind: list[bytes] = []
        self.passwords: dict[str, str] = {}
        self.binds = 0
        self.bind_requests: list[Request] = []
        self.delivered_on_bind: list[int] = []  # their sequence numbers; the answers land in `answers`
        self.received: list[Request] = []  # submits, in arrival order
        self.held: list[Request] = []
        self.unbinds: list[Request] = []  # unbind requests from the proxy
        self.enquire_links = 0
        self.answers: dict[int, tuple[int, int]] = {}  # our request's sequence -> (command_id, status)
        self.conns: list[Conn] = []
        self._ids = 0
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._threads: list[threading.Thread] = []
        self._stopping = False
        self._stalled: list[socket.socket] = []

    @property
    def address(self) -> tuple[str, int]:
        return self._listener.getsockname()[:2]

    def __enter__(self) -> "RawSmsc":
        self._spawn(self._accept)
        return self

    def __exit__(self, *exc) -> None:
        self._stop_accepting()
        for conn in list(self.conns):
            conn.close()
        for t in self._threads:
            t.join(5)
        for sock in self._stalled:
            sock.close()

    def stall_connects(self) -> None:
        """From now on a new connection hangs before it is made, as to a host that drops packets: the listener
        is replaced by one on the same port whose backlog (0) is already full, so the kernel drops the SYNs."""
        address = self.address
        self._stop_accepting()
        full = socket.socket()
        full.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        full.bind(address)
        full.listen(0)
        filler = socket.create_connection(address)  # the one connection the backlog holds, never accepted
        self._stalled = [full, filler]

    def _stop_accepting(self) -> None:
        self._stopping = True
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() (close alone does not)
        except OSError:
            pass
        self._listener.close()

    def _spawn(self, target, *args) -> None:
        t = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(t)
        t.start()

    # --- waiting -------------------------------------------------------------------------------------------

    def wait(self, predicate, timeout: float = 5.0, what: str = "condition"):
        """Wait until predicate() is true; a timeout fails the test (it is never taken as success)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not (value := predicate()):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"raw SMSC: no {what} within {timeout} s")
                self._changed.wait(min(left, 0.05))
        return value

    def bound(self, timeout: float = 5.0) -> Conn:
        return self.wait(lambda: next((c for c in self.conns if c.bound and not c.closed.is_set()), None),
                         timeout, "bound connection")

    # --- serving -------------------------------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._stopping:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            if self.tls is not None:
                sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
            conn = Conn(self, sock)
            with self._changed:
                self.conns.append(conn)
                self._changed.notify_all()
            self._spawn(self._serve, conn)

    def _serve(self, conn: Conn) -> None:
        buf = b""
        try:
            if self.tls is not None:
                conn.sock.do_handshake()  # a client that does not trust us fails here: no bind is seen
            while True:
                chunk = conn.sock.recv(65536)
                if not chunk:
                    break
                buf += chunk
                while len(buf) >= 16 and len(buf) >= HEADER.unpack_from(buf)[0]:
                    length, command_id, status, seq = HEADER.unpack_from(buf)
                    body, buf = buf[16:length], buf[length:]
                    self._handle(conn, command_id, status, seq, body)
        except OSError:
            pass
        finally:
            conn.closed.set()
            with self._changed:
                self._changed.notify_all()

    def _handle(self, conn: Conn, command_id: int, status: int, seq: int, body: bytes) -> None:
        if command_id & RESP:
            with self._changed:
                self.answers[seq] = (command_id, status)
                self._changed.notify_all()
            return
        if command_id in BINDS:
            system_id, pos = cstr(body, 0)
            password, _ = cstr(body, pos)
            with self._changed:
                self.binds += 1
                self.bind_requests.append(Request(command_id, seq, body, conn, status))
                self._changed.notify_all()
            if not self.answer_binds:
                return
            if self.passwords and self.passwords.get(system_id) != password:
                conn.write(pdu(command_id | RESP, seq, status=0x0E))
                return
            conn.system_id = system_id
            conn.bound = True
            data = pdu(command_id | RESP, seq, b"rawsmsc\0")
            for body in self.deliver_on_bind:
                with conn._lock:
                    conn._seq += 1
                    self.delivered_on_bind.append(conn._seq)
                data += pdu(DELIVER_SM, conn._seq, body)
            conn.write(data)  # one sendall: one segment on loopback
        elif command_id == ENQUIRE_LINK:
            with self._changed:
                self.enquire_links += 1
                self._changed.notify_all()
            if self.answer_enquire_link:
                conn.write(pdu(ENQUIRE_LINK | RESP, seq))
        elif command_id == UNBIND:
            with self._changed:
                self.unbinds.append(Request(command_id, seq, body, conn))
                self._changed.notify_all()
            conn.write(pdu(UNBIND | RESP, seq))
            conn.close()
        elif command_id in SUBMITS:
            req = Request(command_id, seq, body, conn)
            with self._changed:
                self.received.append(req)
                if self.answer == "hold":
                    self.held.append(req)
                self._changed.notify_all()
            if self.answer == "now":
                if self.delay:
                    timer = threading.Timer(self.delay, self._answer, (req,))
                    timer.daemon = True
                    timer.start()
                else:
                    self._answer(req)
        else:
            conn.write(pdu(GENERIC_NACK, seq, status=0x03))

    def _answer(self, req: Request) -> None:
        with self._lock:
            self._ids += 1
            message_id = f"raw{self._ids}".encode() + b"\0"
            throttled = self.throttle_next > 0
            if throttled:
                self.throttle_next -= 1
        if throttled:
            req.conn.write(pdu(req.command_id | RESP, req.sequence, status=THROTTLED))
            return
        failed = [(d, self.fail_destinations[d]) for d in req.destinations if d in self.fail_destinations]
        if req.command_id == SUBMIT_MULTI:
            unsuccess = b"".join(bytes((1, 1)) + d.encode() + b"\0" + struct.pack(">I", st) for d, st in failed)
            req.conn.write(pdu(SUBMIT_MULTI | RESP, req.sequence, message_id + bytes((len(failed),)) + unsuccess))
        elif failed:
            req.conn.write(pdu(req.command_id | RESP, req.sequence, status=failed[0][1]))
        else:
            req.conn.write(pdu(req.command_id | RESP, req.sequence, message_id))

    def release(self) -> int:
        """Answer every held request, newest first (out of order); returns how many."""
        with self._lock:
            held, self.held = self.held, []
        for req in reversed(held):
            self._answer(req)
        return len(held)
