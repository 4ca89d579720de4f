"""The proxy server: the listener that makes one Bridge per sender connection, and orderly shutdown.

Shutdown order (hypercorn's habit of a fixed order with an injectable trigger): stop accepting, then unbind
both legs of every bridge within the grace period, answering every outstanding request, then return.
"""

from __future__ import annotations

import asyncio
import logging

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
        await self._server.wait_closed()
