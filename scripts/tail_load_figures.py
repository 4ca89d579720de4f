"""The Index's load alone, in this process, from a snapshot with send rows after it: how long `open_index` takes
and the peak resident memory, for the build this script runs under (run it under another build's Python, on the
same store, to compare):

    .venv/bin/python scripts/tail_load_figures.py /tmp/tail.db --tail 2000000

The first run makes the store: 1,000,000 sends of the last day, a snapshot of them (index.write_snapshot), then
TAIL sends after it to random new recipients. Later runs on the same path only load it."""

from __future__ import annotations

import argparse
import random
import resource
import sys
import time
from pathlib import Path

from smppguard.policy import load_policy
from smppguard.store.db import connect
from smppguard.store.index import open_index, write_snapshot


def make(path: Path, tail: int) -> None:
    policy = load_policy()
    conn = connect(str(path))
    now, rnd = time.time(), random.Random(1)
    sql = "INSERT INTO send_history (number, account, sent_at) VALUES (?, 'acct1', ?)"
    with conn:
        conn.executemany(sql, ((8613900000000 + rnd.randrange(10**8), now - 86400 + i / 100)
                               for i in range(1_000_000)))
    write_snapshot(conn, policy, time.time())
    with conn:
        conn.executemany(sql, ((8613900000000 + rnd.randrange(10**8), now - 3600 + i / 1000) for i in range(tail)))
    conn.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("store")
    parser.add_argument("--tail", type=int, default=2_000_000)
    args = parser.parse_args()
    path = Path(args.store)
    if not path.exists():
        make(path, args.tail)
        print(f"made {path}: run again to load it")
        return
    conn = connect(str(path))
    started = time.perf_counter()
    index, current = open_index(conn, load_policy(), time.time())
    took = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    print(f"{sys.prefix}: snapshot used {current}, {len(index.history)} keys, loaded in {took:.2f} s, "
          f"peak RSS {peak} MB")


if __name__ == "__main__":
    main()
