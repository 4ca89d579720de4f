"""The proxy server: the listener that makes one Bridge per sender connection, and orderly shutdown.

Shutdown order (hypercorn's habit of a fixed order with an injectable trigger): stop accepting, then unbind
both legs of every bridge within the grace period, answering every outstanding request, then return.
Back-pressure from the store: while the writer has more acknowledged-but-unsaved rows than its bound
(`hold_senders(True)`), no sender's requests are read; reading resumes when it catches up.
"""

from __future__ import annotations

import asyncio
import logging
import time

from .. import tasks
from ..config import Config
from ..hooks import NO_HOOKS, Hooks
from ..session.session import Session
from .bridge import Bridge, Connect
from .screening import Screening

log = logging.getLogger("smppguard.proxy")

STORE_PAUSE = "store"  # the pause reason while the store's writer is behind


class ProxyServer:
    def __init__(self, config: Config, upstream_address: tuple[str, int], screening: Screening | None = None,
                 hooks: Hooks = NO_HOOKS, connect: Connect | None = None):
        self.config = config
        self.screening = screening
        self.hooks = hooks
        self.upstream_address = upstream_address
        self.connect = connect or self._connect_tcp
        self.bridges: set[Bridge] = set()
        self.tasks: set[asyncio.Task] = set()  # the bridges' binds and unbinds, which stop() waits for
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self._server: asyncio.base_events.Server | None = None
        self._senders_held = False

    async def start(self, address: tuple[str, int] | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        host, port = address or self.config.listen.address
        self._server = await self.loop.create_server(self._new_connection, host, port, reuse_address=True)

    @property
    def address(self) -> tuple[str, int]:
        assert self._server is not None
        return self._server.sockets[0].getsockname()[:2]

    async def _connect_tcp(self, session: Session) -> None:
        host, port = self.upstream_address
        await self.loop.create_connection(lambda: session, host, port)

    def _new_connection(self) -> Session:
        bridge = Bridge(self.config, self.connect, screening=self.screening, hooks=self.hooks, spawn=self.spawn,
                        on_closed=self.bridges.discard,
                        clock=self.screening.clock if self.screening is not None else time.time)
        if len(self.bridges) >= self.config.listen.max_connections:
            log.warning("connection refused: max_connections (%d) reached", self.config.listen.max_connections)
            bridge.refuse = True
        else:
            self.bridges.add(bridge)
            if self._senders_held:
                bridge.downstream.pause(STORE_PAUSE)
        return bridge.downstream

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
