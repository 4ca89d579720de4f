"""Test helpers: real servers on 127.0.0.1:0 in a background event loop, and smpplib clients.

`Stack` runs the built-in simulator and the proxy in one thread with its own loop, so synchronous smpplib
clients in the test thread talk to them over real TCP. It is a context manager: it always stops both.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
from typing import Any, Callable

import smpplib.client
import smpplib.consts

from smppguard.app import open_store
from smppguard.config import Config, SessionConfig, SimulatorConfig, UpstreamConfig, parse_config
from smppguard.hooks import NO_HOOKS
from smppguard.proxy.server import ProxyServer
from smppguard.simulator import Simulator
from smppguard.smpp.commands import CommandId
from smppguard.smpp.fields import encode_body
from smppguard.smpp.pdu import build

#: The start of most end-to-end tests' policy: Chinese numbers, and no quiet hours to make the verdicts depend
#: on the time of day the suite runs at.
CN_ANY_HOUR = """
[policy]
default_region = "CN"
fallback_zone = "Asia/Shanghai"

[rules.quiet_hours]
enabled = false
"""


def make_config(policy_toml: str = "", **tables: Any) -> Config:
    """A Config with table overrides given as dicts, e.g. make_config(upstream={"window": 2}); policy tables
    ([policy], [rules.*], [[classes]]) as TOML text, parsed as a config file would be."""
    cfg = parse_config(policy_toml) if policy_toml else Config()
    tables.setdefault("metrics", {"address": None})  # off unless a test asks: tests run side by side
    for name, values in tables.items():
        cfg = dataclasses.replace(cfg, **{name: dataclasses.replace(getattr(cfg, name), **values)})
    return cfg


class Stack:
    """Simulator + proxy in a background loop. Use `with Stack() as s:`."""

    def __init__(self, config: Config | None = None, simulator_config: SimulatorConfig | None = None,
                 with_proxy: bool = True, store: bool = False, clock: Callable[[], float] | None = None,
                 upstream: tuple[str, int] | None = None, bind_failed: Callable[[str], None] | None = None):
        """`bind_failed`: told why each bind failed, as the daemon tells its metrics."""
        self.config = config or make_config(session={"enquire_link_interval": 30.0, "response_timeout": 5.0})
        self.simulator_config = simulator_config or self.config.simulator
        self.with_proxy = with_proxy
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.sim: Simulator | None = None
        self.proxy: ProxyServer | None = None
        self.with_store = store
        self.clock = clock
        self.upstream = upstream  # another SMSC (tests/rawsmsc.py) instead of the built-in simulator
        self.store = None  # smppguard.app.OpenStore when store=True
        self.bind_failed = bind_failed

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run a plain function in the loop's thread and return its result."""
        async def wrap():
            return fn()
        return asyncio.run_coroutine_threadsafe(wrap(), self.loop).result(10)

    def run(self, coro) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def __enter__(self) -> "Stack":
        self.thread.start()
        try:
            async def start():
                if self.upstream is None:
                    self.sim = Simulator(self.simulator_config,
                                         response_timeout=self.config.session.response_timeout)
                    await self.sim.start("127.0.0.1", 0)
                screening, hooks = None, NO_HOOKS
                if self.with_store:
                    self.store = await open_store(self.config, self.clock or time.time)
                    screening, hooks = self.store.screening, self.store.hooks
                if self.with_proxy:
                    upstream = self.upstream or self.sim.address  # type: ignore[union-attr]
                    self.proxy = ProxyServer(self.config, upstream, screening, hooks,
                                             holds=self.store.holds if self.store is not None else None,
                                             bind_failed=self.bind_failed)
                    if self.store is not None:  # as app.serve joins them: the store's back-pressure
                        self.store.writer.on_behind = self.proxy.hold_senders
                    await self.proxy.start(("127.0.0.1", 0))
            self.run(start())
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    @property
    def address(self) -> tuple[str, int]:
        assert self.proxy is not None
        return self.proxy.address

    def __exit__(self, *exc) -> None:
        async def stop():
            if self.proxy is not None:
                await self.proxy.stop(grace=1.0)
            if self.store is not None:
                await self.store.close()
            if self.sim is not None:
                await self.sim.stop()
        try:
            if self.thread.is_alive():
                self.run(stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)
            self.loop.close()


def proc_stat(pid: int, tid: int | None = None) -> list[str]:
    """The fields of /proc/PID/stat (of one thread: /proc/PID/task/TID/stat) from the third on: [0] is the state,
    [16] the nice value, [38] the scheduling policy (5: SCHED_IDLE). The command name before them may hold
    spaces and parentheses."""
    with open(f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat") as f:
        return f.read().rpartition(")")[2].split()


def alive(pid: int) -> bool:
    """Whether a process runs (a zombie has ended, only not been reaped yet)."""
    try:
        return proc_stat(pid)[0] != "Z"
    except FileNotFoundError:
        return False


def children(pid: int) -> list[int]:
    """The processes `pid` started that have not been reaped (Linux: /proc/PID/task/*/children)."""
    out = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            out += [int(c) for c in f.read().split()]
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


#: A command line that runs the rest of it as a child that ends with this process, however this process ends (a
#: test run killed at its time limit, kill -9): PR_SET_PDEATHSIG, as the import workers have it, set by
#: util-linux's setpriv, which then execs the command (a preexec_fn would run Python in a forked child of a
#: process with threads). Linux only; elsewhere nothing.
DIE_WITH_US: tuple[str, ...] = (("setpriv", "--pdeathsig", "KILL", "--")
                                if sys.platform == "linux" and shutil.which("setpriv") else ())


def start_daemon(tmp_path, config_toml: str, stdout=subprocess.DEVNULL,
                 stderr=subprocess.PIPE, env: dict | None = None,
                 wrapper: tuple[str, ...] = ()) -> tuple[subprocess.Popen, tuple[str, int]]:
    """`smppguard run` in a child process, as systemd runs it, on a free port with `config_toml` (its [listen]
    table starts with the address, so the caller's keys of [listen] come first in it; [metrics] and [simulator]
    control are off unless it has those tables); returns once it accepts connections. The caller stops it.
    `wrapper`: a command that runs the daemon's command line (its argv comes after the wrapper's)."""
    port = free_port()
    cfg = tmp_path / "smppguard.toml"
    # the metrics and the simulator's control interface have fixed default ports: off unless the test sets them,
    # or two test processes (xdist, two mutation runs) would meet on them
    metrics_off = "" if "[metrics]" in config_toml else '\n[metrics]\naddress = ""\n'
    control_off = "" if "[simulator]" in config_toml else '\n[simulator]\ncontrol = ""\n'
    cfg.write_text(f'[listen]\naddress = "127.0.0.1:{port}"\n{config_toml}{metrics_off}{control_off}')
    daemon = subprocess.Popen([*DIE_WITH_US, *wrapper, sys.executable, "-m", "smppguard", "run", "--config",
                               str(cfg)],
                              stdout=stdout, stderr=stderr, text=True,
                              env=None if env is None else {**os.environ, **env})
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return daemon, ("127.0.0.1", port)
        except OSError:
            if daemon.poll() is not None or time.monotonic() > deadline:
                daemon.kill()
                raise AssertionError(f"the daemon did not start: {daemon.communicate()}") from None
            time.sleep(0.05)


def smpplib_client(address: tuple[str, int], timeout: float = 5) -> smpplib.client.Client:
    client = smpplib.client.Client(address[0], address[1], timeout=timeout, allow_unknown_opt_params=True)
    client.connect()
    return client


def send_submit(client, dest, text="hello", *, data_coding=None, **kw):
    """A submit_sm from source ACME through smpplib; returns its submit_sm_resp. A str text goes as ASCII
    (data_coding 0) when it can, else UCS2."""
    if isinstance(text, str):
        try:
            payload, dc = text.encode("ascii"), 0
        except UnicodeEncodeError:
            payload, dc = text.encode("utf-16-be"), 8
    else:
        payload, dc = text, 0
    params = dict(source_addr_ton=5, source_addr="ACME", dest_addr_ton=0, dest_addr_npi=1, destination_addr=dest,
                  short_message=payload, data_coding=dc if data_coding is None else data_coding)
    params.update(kw)
    pdu = smpplib.smpp.make_pdu("submit_sm", client=client, **params)
    client.send_pdu(pdu)
    while True:
        resp = client.read_pdu()
        if resp.command == "submit_sm_resp":
            assert resp.sequence == pdu.sequence
            return resp


def raw_socket(address: tuple[str, int], timeout: float = 5) -> "RawPeer":
    return RawPeer(address, timeout)


class RawPeer:
    """A bare TCP peer for malformed input: send exact bytes, read whole PDUs back."""

    def __init__(self, address: tuple[str, int], timeout: float, source: str | None = None):
        """`source`: the local IP address to connect from (another loopback address: another host to the proxy)."""
        self.sock = socket.create_connection(address, timeout=timeout,
                                             source_address=(source, 0) if source else None)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_pdu(self) -> tuple[int, int, int, bytes]:
        """(command_id, status, sequence, body); raises ConnectionError at EOF."""
        while len(self.buf) < 4 or len(self.buf) < struct.unpack(">I", self.buf[:4])[0]:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        length = struct.unpack(">I", self.buf[:4])[0]
        pdu, self.buf = self.buf[:length], self.buf[length:]
        _, cid, status, seq = struct.unpack(">IIII", pdu[:16])
        return cid, status, seq, pdu[16:]

    def request(self, command_id: int, sequence: int, **fields: Any) -> None:
        self.send(build(command_id, sequence, encode_body(command_id, **fields)))

    def bind(self, command_id: int = CommandId.BIND_TRANSCEIVER, system_id: str = "acme", sequence: int = 1) -> None:
        """Bind and check the answer is ROK."""
        self.request(command_id, sequence, system_id=system_id, password="pw")
        cid, status, seq, _ = self.read_pdu()
        assert (cid, status, seq) == (command_id | 0x80000000, 0, sequence), (hex(cid), hex(status), seq)

    def closed_by_peer(self, timeout: float = 5.0) -> bool:
        """True once the peer has closed the connection (EOF or reset); False if it is still open after
        `timeout`, or sends more bytes instead. A timeout is never taken for a close."""
        before = self.sock.gettimeout()
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(1) == b""
        except ConnectionError:
            return True
        except socket.timeout:
            return False
        finally:
            self.sock.settimeout(before)

    def close(self) -> None:
        self.sock.close()


__all__ = ["Stack", "make_config", "smpplib_client", "raw_socket", "RawPeer", "SessionConfig", "UpstreamConfig",
           "smpplib", "send_submit"]


def wait_for(predicate: Callable[[], Any], timeout: float = 5.0, what: str = "condition", every: float = 0.02) -> Any:
    """Poll until predicate() is truthy and return its value; an AssertionError naming `what` after `timeout`
    (a timeout is never taken for success)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"no {what} within {timeout} s")


def rows(path, sql: str, *args: Any) -> list[tuple]:
    """The rows of one query on a store file, read as another process would."""
    import sqlite3
    db = sqlite3.connect(path)
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()
