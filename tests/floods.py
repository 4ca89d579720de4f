"""What floods cost a running `smppguard run` (its memory, its log), as a hostile network would send them:

    .venv/bin/python tests/floods.py

1. 1,200 idle connections from 20 loopback addresses (10 over the per-address cap each), then a sender from
   another address binds; after the bind timeout, how many idle ones are still open;
2. wrong-password binds from one address for 10 s: how many the proxy refused itself (never reaching the SMSC);
3. 400,000 unknown commands and submits before bind on one connection: how much the log grew.

Prints a line per flood, then the daemon's exit status after SIGTERM.
"""

from __future__ import annotations

import os
import socket
import struct
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from helpers import start_daemon  # noqa: E402
from smppguard.smpp.commands import CommandId  # noqa: E402
from smppguard.smpp.fields import encode_body  # noqa: E402
from smppguard.smpp.pdu import build  # noqa: E402


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    return 0.0


def bind_pdu(password: str) -> bytes:
    return build(CommandId.BIND_TRANSCEIVER, 1, encode_body(CommandId.BIND_TRANSCEIVER, system_id="acme",
                                                            password=password))


def status_of(sock: socket.socket) -> int:
    head = sock.recv(16)
    return struct.unpack(">IIII", head)[2] if len(head) == 16 else -1


def idle_flood(address, pid: int) -> None:
    idle = []
    for a in range(1, 21):
        for _ in range(60):
            try:
                idle.append(socket.create_connection(address, timeout=2, source_address=(f"127.0.1.{a}", 0)))
            except OSError:
                pass
    time.sleep(0.5)
    started = time.monotonic()
    with socket.create_connection(address, timeout=5, source_address=("127.0.2.1", 0)) as other:
        other.sendall(bind_pdu("right"))
        bound = status_of(other) == 0
    print(f"1,200 idle connections from 20 addresses: RSS {rss_mb(pid):.0f} MB; a sender from another address "
          f"bound: {bound}, in {time.monotonic() - started:.2f} s")
    time.sleep(16)  # past the 15 s bind timeout
    still_open = 0
    for c in idle:
        c.settimeout(0.01)
        try:
            still_open += c.recv(1) != b""
        except socket.timeout:
            still_open += 1
        except OSError:
            pass
        c.close()
    print(f"after the bind timeout: {still_open} of {len(idle)} idle connections open; RSS {rss_mb(pid):.0f} MB")


def bind_flood(address, pid: int) -> None:
    started, tried, refused_here = time.monotonic(), 0, 0
    while time.monotonic() - started < 10:
        try:
            with socket.create_connection(address, timeout=5) as c:
                c.sendall(bind_pdu(f"guess{tried}"))
                refused_here += status_of(c) == 0x0D
            tried += 1
        except OSError:
            pass
    print(f"wrong-password binds in 10 s: {tried}, refused by the proxy itself (0x0D): {refused_here}; "
          f"RSS {rss_mb(pid):.0f} MB")


def junk_flood(address, pid: int, log: Path) -> None:
    before = log.stat().st_size
    junk = (b"".join(build(0x999, i, b"") for i in range(1, 20001))
            + b"".join(build(CommandId.SUBMIT_SM, i, b"") for i in range(20001, 40001)))
    with socket.create_connection(address, timeout=5) as c:
        for _ in range(10):
            c.sendall(junk)
            got = 0
            while got < 40000 * 16:
                got += len(c.recv(1 << 20))
    time.sleep(0.5)
    print(f"400,000 unknown commands and submits before bind ({10 * len(junk) / 1e6:.1f} MB in): the log grew "
          f"{log.stat().st_size - before} bytes; RSS {rss_mb(pid):.0f} MB")


def main() -> int:
    tmp = Path(tempfile.mkdtemp(prefix="smppguard-floods-"))
    log = tmp / "daemon.log"
    with open(log, "w") as out:
        daemon, address = start_daemon(tmp, '[simulator]\ncontrol = ""\naccounts = { acme = "right" }\n'
                                            f'[store]\npath = "{tmp / "guard.db"}"\n[log]\nlevel = "info"\n',
                                       stderr=out)
    try:
        time.sleep(0.5)
        print(f"at rest: RSS {rss_mb(daemon.pid):.0f} MB")
        idle_flood(address, daemon.pid)
        bind_flood(address, daemon.pid)
        junk_flood(address, daemon.pid, log)
    finally:
        daemon.terminate()
        daemon.wait(15)
    print(f"stopped with exit status {daemon.returncode}")
    return daemon.returncode


if __name__ == "__main__":
    sys.exit(main())
