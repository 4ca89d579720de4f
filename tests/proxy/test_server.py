"""ProxyServer.stop: nothing the bridges started is left running when it returns."""

from __future__ import annotations

import asyncio
import struct
import time

from helpers import make_config
from smppguard.proxy.server import ProxyServer
from smppguard.smpp.commands import CommandId
from smppguard.smpp.fields import encode_body
from smppguard.smpp.pdu import build


class SilentOnUnbind(asyncio.Protocol):
    """An SMSC that accepts any bind and never answers anything else: an unbind to it stays in flight."""

    def connection_made(self, transport):
        self.transport, self.buffer = transport, b""

    def data_received(self, data):
        self.buffer += data
        while len(self.buffer) >= 16:
            length, command_id, _status, sequence = struct.unpack(">IIII", self.buffer[:16])
            if len(self.buffer) < length:
                return
            self.buffer = self.buffer[length:]
            if command_id == CommandId.BIND_TRANSMITTER:
                self.transport.write(build(CommandId.BIND_TRANSMITTER_RESP, sequence, b"silent\0"))


async def read_pdu(reader) -> tuple[int, int]:
    length, command_id, status, _seq = struct.unpack(">IIII", await reader.readexactly(16))
    await reader.readexactly(length - 16)
    return command_id, status


async def test_stop_ends_an_upstream_unbind_left_by_a_sender_that_went_away():
    loop = asyncio.get_running_loop()
    smsc = await loop.create_server(SilentOnUnbind, "127.0.0.1", 0)
    proxy = ProxyServer(make_config(session={"unbind_grace": 30.0}), smsc.sockets[0].getsockname()[:2])
    await proxy.start(("127.0.0.1", 0))
    try:
        reader, writer = await asyncio.open_connection(*proxy.address)
        writer.write(build(CommandId.BIND_TRANSMITTER, 1,
                           encode_body(CommandId.BIND_TRANSMITTER, system_id="acme", password="pw")))
        assert await read_pdu(reader) == (CommandId.BIND_TRANSMITTER_RESP, 0)
        writer.close()  # gone without an unbind: the proxy unbinds upstream, and the SMSC never answers
        deadline = time.monotonic() + 5
        while not proxy.tasks and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        (unbind,) = proxy.tasks
        assert unbind.get_name().startswith("unbind upstream")
        started = time.monotonic()
        await proxy.stop(grace=0.2)
        assert time.monotonic() - started < 2  # the grace, not the 30 s unbind_grace
        assert unbind.cancelled() and not proxy.tasks  # ended here, not failing later with nobody to hear it
    finally:
        smsc.close()
        await smsc.wait_closed()


async def test_hold_senders_pauses_every_sender_and_those_that_connect_meanwhile():
    loop = asyncio.get_running_loop()
    smsc = await loop.create_server(SilentOnUnbind, "127.0.0.1", 0)
    proxy = ProxyServer(make_config(), smsc.sockets[0].getsockname()[:2])
    await proxy.start(("127.0.0.1", 0))
    writers = []
    try:
        async def connect():
            reader, writer = await asyncio.open_connection(*proxy.address)
            writers.append(writer)
            while len(proxy.bridges) < len(writers):
                await asyncio.sleep(0.01)
            return reader, writer

        await connect()
        proxy.hold_senders(True)
        reader, writer = await connect()  # connects while held
        assert all("store" in b.downstream.paused for b in proxy.bridges) and len(proxy.bridges) == 2
        proxy.hold_senders(False)
        assert not any(b.downstream.paused for b in proxy.bridges)
        writer.write(build(CommandId.BIND_TRANSMITTER, 1,
                           encode_body(CommandId.BIND_TRANSMITTER, system_id="acme", password="pw")))
        assert await asyncio.wait_for(read_pdu(reader), 5) == (CommandId.BIND_TRANSMITTER_RESP, 0)
    finally:
        for w in writers:
            w.close()
        await proxy.stop(grace=0.2)
        smsc.close()
        await smsc.wait_closed()


def test_a_reload_applies_the_new_limits_and_sessions_but_keeps_the_address_tls_and_upstream():
    """SIGHUP's part here: the gate and the session settings from the new file, for binds from now on; the
    listener's address and TLS, and the SMSC, stay as started (a restart changes them)."""
    import ipaddress

    old = make_config(listen={"address": ("127.0.0.1", 2775), "tls_cert": "/etc/a.pem", "tls_key": "/etc/a.key",
                              "tls_client_ca": "/etc/ca.pem"},
                      upstream={"address": ("10.0.0.1", 2775), "window": 10})
    server = ProxyServer(old, ("10.0.0.1", 2775))
    new = make_config(listen={"address": ("0.0.0.0", 9999), "tls_cert": "", "tls_key": "", "tls_client_ca": "",
                              "allow_system_ids": ("acme",), "allow_networks": ("10.1.2.3/16",),
                              "max_binds_per_account": 3, "failed_binds": 2, "bind_backoff": 5.0,
                              "max_connections": 7},
                      upstream={"address": ("10.9.9.9", 1), "window": 99}, session={"unbind_grace": 1.5})
    server.apply_limits(new)
    listen = server.config.listen
    assert (listen.address, listen.tls_cert, listen.tls_key, listen.tls_client_ca) == (
        ("127.0.0.1", 2775), "/etc/a.pem", "/etc/a.key", "/etc/ca.pem")
    assert listen.max_connections == 7 and server.config.session.unbind_grace == 1.5
    assert server.config.upstream == old.upstream
    gate = server.gate
    assert gate.allow_system_ids == frozenset({"acme"})
    assert gate.allow_networks == (ipaddress.ip_network("10.1.0.0/16"),)
    assert (gate.max_binds_per_account, gate.failed_binds, gate.backoff_s) == (3, 2, 5.0)
