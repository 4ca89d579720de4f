"""The proxy server: the listener that makes one Bridge per sender connection, and orderly shutdown.

Shutdown order (hypercorn's habit of a fixed order with an injectable trigger): stop accepting, then unbind
both legs of every bridge within the grace period, answering every outstanding request, then return.
Back-pressure from the store: while the writer has more acknowledged-but-unsaved rows than its bound
(`hold_senders(True)`), no sender's requests are read; reading resumes when it catches up.
Rule 1: no one can lock the others out. A connection over `max_connections_per_address` from its IP address is
closed as it opens; at `[listen] max_connections`, a new connection takes the place of the oldest one that has
sent no bind (and is refused only when every one is bound); one that has not sent a bind within `bind_timeout`
(an idle socket, a bind sent a byte a second) is closed then. Each is logged once a minute per
address at most (logs.Throttle).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import ssl
import time
from typing import Callable

from .. import tasks
from ..config import Config
from ..hooks import NO_HOOKS, Hooks
from ..logs import Throttle
from ..session.session import Session
from . import tls
from .bridge import Bridge, Connect
from .holds import HoldQueue
from .limits import BindGate, networks
from .owners import MessageOwners
from .screening import Screening

log = logging.getLogger("smppguard.proxy")

STORE_PAUSE = "store"  # the pause reason while the store's writer is behind


class ProxyServer:
    def __init__(self, config: Config, upstream_address: tuple[str, int], screening: Screening | None = None,
                 hooks: Hooks = NO_HOOKS, connect: Connect | None = None, holds: HoldQueue | None = None,
                 timing: Callable[[float], None] | None = None, bind_failed: Callable[[str], None] | None = None):
        self.config = config
        self.timing = timing  # the time each screening took (metrics)
        self.bind_failed = bind_failed  # why a bind failed (metrics)
        self.holds = holds
        self.screening = screening
        self.hooks = hooks
        self.upstream_address = upstream_address
        self.connect = connect or self._connect_tcp
        if holds is not None:
            holds.bridges = lambda: list(self.bridges)
            holds.connect = self.connect
            holds.config = config
            holds.own_accounts = dict(config.hold.accounts)
        self.bridges: set[Bridge] = set()
        self.tasks: set[asyncio.Task] = set()  # the bridges' binds and unbinds, which stop() waits for
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self._server: asyncio.base_events.Server | None = None
        self._senders_held = False
        self._per_host: dict[str, int] = {}  # open connections per IP address
        self._host_of: dict[Bridge, str] = {}
        # connections that have sent no bind, oldest first, and their bind_timeout timers
        self._unbound: dict[Bridge, asyncio.TimerHandle] = {}
        self._throttle = Throttle(log)
        self.owners = MessageOwners()
        self._upstream_tls: ssl.SSLContext | None = None
        listen = config.listen
        self.gate = BindGate(allow_system_ids=listen.allow_system_ids, allow_networks=listen.allow_networks,
                             max_binds_per_account=listen.max_binds_per_account, failed_binds=listen.failed_binds,
                             backoff_s=listen.bind_backoff)

    async def start(self, address: tuple[str, int] | None = None) -> None:
        """Listen. TlsError: a TLS file of the config cannot be used (checked before anything listens)."""
        self.loop = asyncio.get_running_loop()
        host, port = address or self.config.listen.address
        listener_tls = tls.listener_context(self.config.listen)
        self._upstream_tls = tls.upstream_context(self.config.upstream)
        self._server = await self.loop.create_server(self._new_connection, host, port, reuse_address=True,
                                                     ssl=listener_tls)

    @property
    def listening(self) -> bool:
        return self._server is not None and self._server.is_serving()

    @property
    def address(self) -> tuple[str, int]:
        assert self._server is not None
        return self._server.sockets[0].getsockname()[:2]

    async def _connect_tcp(self, session: Session) -> None:
        host, port = self.upstream_address
        if self._upstream_tls is None:
            await self.loop.create_connection(lambda: session, host, port)
            return
        try:
            await self.loop.create_connection(lambda: session, host, port, ssl=self._upstream_tls,
                                              server_hostname=self.config.upstream.tls_server_name or host)
        except ssl.SSLError as e:  # a certificate that does not verify: the bind fails as an unreachable SMSC does
            raise OSError(f"TLS to the SMSC failed: {e.reason or e}") from None

    def _new_connection(self) -> Session:
        bridge = Bridge(self.config, self.connect, screening=self.screening, hooks=self.hooks, spawn=self.spawn,
                        on_closed=self._closed, admit=self._admit, gate=self, owners=self.owners,
                        holds=self.holds, keep_deliveries=self.config.inbound.no_receiver == "keep",
                        timing=self.timing, bind_failed=self.bind_failed,
                        clock=self.screening.clock if self.screening is not None else time.time)
        return bridge.downstream

    def _admit(self, bridge: Bridge) -> bool:
        """A sender connected: within the limits it stays, and has `bind_timeout` to bind (Rule 1)."""
        listen = self.config.listen
        host = bridge.downstream.peer.rpartition(":")[0]
        if self._per_host.get(host, 0) >= listen.max_connections_per_address:
            self._throttle.log(logging.WARNING, host, "connection from %s refused: %d open from that address "
                               "(max_connections_per_address)", host, listen.max_connections_per_address)
            return False
        if len(self.bridges) >= listen.max_connections and not self._make_room(host):
            self._throttle.log(logging.WARNING, "max", "connection from %s refused: max_connections (%d) reached, "
                               "every one of them bound", host, listen.max_connections)
            return False
        self._per_host[host] = self._per_host.get(host, 0) + 1
        self._host_of[bridge] = host
        self.bridges.add(bridge)
        if self._senders_held:
            bridge.downstream.pause(STORE_PAUSE)
        self._unbound[bridge] = self.loop.call_later(listen.bind_timeout, self._bind_deadline, bridge)
        return True

    def _make_room(self, host: str) -> bool:
        """At max_connections, a new connection takes the place of the oldest one that has sent no bind: idle
        sockets, from however many addresses, cannot keep a sender out while any of them is idle."""
        for idle in self._unbound:
            if not idle.bind_started:
                self._throttle.log(logging.WARNING, "evict", "max_connections (%d) reached: the oldest connection "
                                   "that has not bound (from %s) closed for one from %s",
                                   self.config.listen.max_connections, self._host_of.get(idle, "?"), host)
                self._closed(idle)
                idle.downstream.abort()
                return True
        return False

    def _bind_deadline(self, bridge: Bridge) -> None:
        if bridge in self.bridges and not bridge.bind_started and bridge.downstream.is_open:
            host = self._host_of.get(bridge, "?")
            self._throttle.log(logging.INFO, ("unbound", host), "connection from %s closed: no bind within %g s "
                               "([listen] bind_timeout)", host, self.config.listen.bind_timeout)
            self._closed(bridge)  # its slot is free now, not when the loop gets to connection_lost
            bridge.downstream.abort()

    # --- the bind gate (proxy/limits.py), by the sender's address ---------------------------------------------

    def check(self, bridge: Bridge, system_id: str) -> tuple[int, str] | None:
        self._forget_unbound(bridge)  # it has sent a bind: no longer the first to go at max_connections
        return self.gate.check(self._host_of.get(bridge, ""), system_id)

    def _forget_unbound(self, bridge: Bridge) -> None:
        deadline = self._unbound.pop(bridge, None)
        if deadline is not None:
            deadline.cancel()  # a timer left to run would keep the closed bridge in memory until it fires

    def bound(self, bridge: Bridge) -> None:
        self.gate.bound(self._host_of.get(bridge, ""), bridge.downstream.system_id)

    def failed(self, bridge: Bridge) -> None:
        self.gate.failed(self._host_of.get(bridge, ""))

    def _closed(self, bridge: Bridge) -> None:
        """A sender's connection is gone (or going): its slots are free. Called again, it does nothing."""
        if bridge.bound_as:
            self.gate.unbound(bridge.bound_as)
            bridge.bound_as = ""
        self.bridges.discard(bridge)
        self._forget_unbound(bridge)
        host = self._host_of.pop(bridge, None)
        if host is not None:
            left = self._per_host[host] - 1
            if left:
                self._per_host[host] = left
            else:
                del self._per_host[host]

    def apply_limits(self, config: Config) -> None:
        """A reloaded config's listener limits and session settings, for the connections and binds from now on;
        the listen address and TLS stay as they were started (a restart changes them). Binds already counted at
        the gate stay counted."""
        listen = dataclasses.replace(config.listen, address=self.config.listen.address,
                                     tls_cert=self.config.listen.tls_cert, tls_key=self.config.listen.tls_key,
                                     tls_client_ca=self.config.listen.tls_client_ca)
        self.config = dataclasses.replace(config, listen=listen, upstream=self.config.upstream)
        gate = self.gate
        gate.allow_system_ids = frozenset(listen.allow_system_ids)
        gate.allow_networks = networks(listen.allow_networks)
        gate.max_binds_per_account = listen.max_binds_per_account
        gate.failed_binds, gate.backoff_s = listen.failed_binds, listen.bind_backoff

    def hold_senders(self, held: bool) -> None:
        """Stop (True) or resume (False) reading requests from every sender: the store's back-pressure."""
        if held == self._senders_held:
            return
        self._senders_held = held
        for bridge in list(self.bridges):
            (bridge.downstream.pause if held else bridge.downstream.resume)(STORE_PAUSE)

    def spawn(self, coro, *, name: str) -> asyncio.Task:
        """A bridge's background work (a bind, an unbind): kept, so that stop() can wait for it."""
        task = tasks.spawn(coro, name=name)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def stop(self, grace: float | None = None) -> None:
        grace = self.config.session.unbind_grace if grace is None else grace
        if self._server is None:
            return  # never started listening
        self._server.close()
        bridges = list(self.bridges)
        if bridges:
            log.info("unbinding %d sessions", len(bridges))
            await asyncio.gather(*(b.shutdown(grace) for b in bridges), return_exceptions=True)
            await asyncio.gather(*(b.downstream.wait_closed() for b in bridges), return_exceptions=True)
        # A sender that left just before leaves an upstream unbind in flight: let it end within the grace, then
        # cancel it. Left pending, it would fail when the loop closes, with nobody to hear it.
        if self.tasks:
            _done, late = await asyncio.wait(set(self.tasks), timeout=grace)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        await self._server.wait_closed()
