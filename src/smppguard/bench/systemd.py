"""What systemd does with a Type=notify service's messages while it starts, for the measurements and tests of a
long start (scripts/cold_start_systemd.py, tests/test_systemd_unit.py): no systemd is needed, only its notify
socket and its start deadline, as systemd.service(5) describes them."""

from __future__ import annotations

import socket
import threading
import time


class StartWatch:
    """A start timeout from launch, pushed out by each EXTEND_TIMEOUT_USEC= to at least that long after it arrives;
    a start not READY=1 by then is killed. Reads the notify socket `sock` (AF_UNIX, SOCK_DGRAM, bound to the
    child's NOTIFY_SOCKET) in a thread, noting when each message came (seconds since launch, its fields)."""

    def __init__(self, sock: socket.socket, timeout: float):
        self.sock, self.timeout = sock, timeout
        self.messages: list[tuple[float, dict[str, str]]] = []
        self.launched = time.monotonic()
        self.deadline = self.launched + timeout
        self.killed_at: float | None = None
        self.ready_at: float | None = None
        self.least_left: float | None = None  # the least time the deadline had left when a message came
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while self.ready_at is None and self.killed_at is None:
            self.sock.settimeout(max(0.001, self.deadline - time.monotonic()))
            try:
                data = self.sock.recv(4096).decode()
            except socket.timeout:
                self.killed_at = time.monotonic()
                return
            now = time.monotonic()
            fields = dict(line.partition("=")[::2] for line in data.split("\n") if line)
            self.messages.append((now - self.launched, fields))
            left = self.deadline - now
            self.least_left = left if self.least_left is None else min(self.least_left, left)
            if now > self.deadline:
                self.killed_at = now
            elif "EXTEND_TIMEOUT_USEC" in fields:
                self.deadline = max(self.deadline, now + int(fields["EXTEND_TIMEOUT_USEC"]) / 1e6)
            if fields.get("READY") == "1":
                self.ready_at = now
