"""Running the daemon: start the simulator if it is the upstream, serve, and shut down in order.

`run(config, shutdown_trigger=None)`: the trigger is an awaitable factory; by default SIGTERM / SIGINT.
Order at shutdown: stop accepting -> unbind both legs of every session within the grace period (answering
everything outstanding) -> stop the simulator.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Awaitable, Callable

from .config import Config
from .proxy.server import ProxyServer
from .simulator import Simulator

log = logging.getLogger("smppguard")


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")


async def _wait_for_signal() -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


async def serve(config: Config, shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
                ready: Callable[[ProxyServer], None] | None = None) -> None:
    simulator = None
    upstream = config.upstream.address
    if upstream is None:
        simulator = Simulator(config.simulator, response_timeout=config.session.response_timeout,
                              enquire_link_interval=config.session.enquire_link_interval)
        await simulator.start("127.0.0.1", 0, control=config.simulator.control)
        upstream = simulator.address
        log.info("built-in SMSC simulator on %s:%d%s", *upstream,
                 f", control http://{simulator.control_address[0]}:{simulator.control_address[1]}"
                 if simulator.control_address else "")
    proxy = ProxyServer(config, upstream)
    try:
        await proxy.start()
        log.info("listening on %s:%d, upstream %s:%d", *proxy.address, *upstream)
        if ready is not None:
            ready(proxy)
        await (shutdown_trigger or _wait_for_signal)()
        log.info("shutting down")
        await proxy.stop()
    finally:
        if simulator is not None:
            await simulator.stop()


def run_loop(main: Awaitable) -> None:
    """uvloop when it is installed, asyncio otherwise."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency, but not on every platform
        asyncio.run(main)  # type: ignore[arg-type]
    else:
        uvloop.run(main)  # type: ignore[arg-type]


def run(config: Config, shutdown_trigger: Callable[[], Awaitable[None]] | None = None) -> None:
    configure_logging(config.log.level)
    run_loop(serve(config, shutdown_trigger))


def run_simulator(config: Config, host: str, port: int, control: tuple[str, int] | None, sink: bool) -> None:
    async def main() -> None:
        sim = Simulator(config.simulator, sink=sink, window=max(100, config.upstream.window),
                        response_timeout=config.session.response_timeout,
                        enquire_link_interval=config.session.enquire_link_interval)
        await sim.start(host, port, control=control)
        log.info("SMSC simulator on %s:%d%s", *sim.address,
                 f", control http://{sim.control_address[0]}:{sim.control_address[1]}"
                 if sim.control_address else "")
        try:
            await _wait_for_signal()
        finally:
            await sim.stop()

    run_loop(main())
