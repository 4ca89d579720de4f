"""Runs `smppguard ...` (the command line after --) in this process with its store load slowed down and
systemd's intervals scaled down with it: each step the loader reports (a chunk of LIST_CHUNK numbers read)
takes DELAY seconds more, and the start-up progress asks for EXTEND_BY seconds every EXTEND_EVERY.

    python tests/slowload.py DELAY LIST_CHUNK EXTEND_EVERY EXTEND_BY -- python -m smppguard run ARGS...

A load of a large store in small time: what systemd sees of a start that reads 20M numbers from the tables."""

from __future__ import annotations

import runpy
import sys
import time

from smppguard import sdnotify
from smppguard.store import snapshot


def main() -> None:
    delay, chunk, every, extend = sys.argv[1:5]
    rest = sys.argv[sys.argv.index("--") + 1:]
    module = rest[rest.index("-m") + 1]
    snapshot.LIST_CHUNK = int(chunk)
    sdnotify.EXTEND_EVERY, sdnotify.EXTEND_BY = float(every), float(extend)
    step = sdnotify.Loading.step

    def slow_step(self, what, done, total=None):
        step(self, what, done, total)
        time.sleep(float(delay))

    sdnotify.Loading.step = slow_step  # type: ignore[method-assign]
    sys.argv = [module, *rest[rest.index("-m") + 2:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
