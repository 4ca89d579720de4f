"""Every background task is created here, named and kept (mitmproxy's asyncio_utils habit); so is every thread
of background work.

asyncio keeps only a weak reference to tasks, so an unkept task may be collected mid-flight; a name with the peer
and system_id makes a stuck task findable in a dump. An exception that ends a task is logged, never lost.
A background thread (the store's group commit, its upkeep) runs at a lower CPU priority than the loop: on a
machine with few cores, a commit that takes a core just as a message arrives would otherwise delay that message
by the commit's length, and at low load those delays are the proxy's whole latency tail.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
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


def background_thread(name: str, nice: int) -> ThreadPoolExecutor:
    """One worker thread named `name`, its nice value raised by `nice` (0: the process's own priority)."""
    return ThreadPoolExecutor(1, thread_name_prefix=name, initializer=lower_priority, initargs=(nice,))


def lower_priority(nice: int) -> None:
    """Raise the calling thread's nice value by `nice` (up to 19). On Linux a thread's nice value is its own
    (setpriority(2)); elsewhere the call would name a process, so it is not made. Raising it needs no privilege."""
    if nice <= 0 or sys.platform != "linux":
        return
    tid = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))
    except OSError as e:  # a sandbox that forbids it: the thread runs at the loop's priority
        log.warning("could not lower the priority of thread %s: %s", threading.current_thread().name, e)
