"""The proxy server: the listener that makes one Bridge per sender connection, and orderly shutdown.

Shutdown order (hypercorn's habit of a fixed order with an injectable trigger): stop accepting, then unbind
both legs of every bridge within the grace period, answering every outstanding request, then return.
"""

from __future__ import annotations

import asyncio
import logging

from .. import tasks
from ..config import Config
from .bridge import Bridge
from .guard import Guard

log = logging.getLogger("smppguard.proxy")


class ProxyServer:
    def __init__(self, config: Config, upstream_address: tuple[str, int], guard: Guard | None = None):
        self.config = config
        self.guard = guard
        self.upstream_address = upstream_address
        self.bridges: set[Bridge] = set()
        self.tasks: set[asyncio.Task] = set()  # the bridges' binds and unbinds, which stop() waits for
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self._server: asyncio.base_events.Server | None = None

    async def start(self, address: tuple[str, int] | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        host, port = address or self.config.listen.address
        self._server = await self.loop.create_server(self._new_connection, host, port, reuse_address=True)

    @property
    def address(self) -> tuple[str, int]:
        assert self._server is not None
        return self._server.sockets[0].getsockname()[:2]

    def _new_connection(self):
        bridge = Bridge(self)
        if len(self.bridges) >= self.config.listen.max_connections:
            log.warning("connection refused: max_connections (%d) reached", self.config.listen.max_connections)
            bridge.refuse = True
        else:
            self.bridges.add(bridge)
        return bridge.downstream

    def bridge_closed(self, bridge: Bridge) -> None:
        self.bridges.discard(bridge)

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
