"""Every background task is created here, named and kept (mitmproxy's asyncio_utils habit).

asyncio keeps only a weak reference to tasks, so an unkept task may be collected mid-flight; a name with the peer
and system_id makes a stuck task findable in a dump. An exception that ends a task is logged, never lost.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Coroutine

log = logging.getLogger("smppguard.tasks")
_running: set[asyncio.Task] = set()


def spawn(coro: Coroutine, *, name: str) -> asyncio.Task:
    task = asyncio.get_running_loop().create_task(coro, name=name)  # noqa: TID251 - the one allowed create_task
    _running.add(task)
    task.add_done_callback(_done)
    return task


def _done(task: asyncio.Task) -> None:
    _running.discard(task)
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("task %s failed", task.get_name(), exc_info=exc)


def running() -> frozenset[asyncio.Task]:
    return frozenset(_running)
