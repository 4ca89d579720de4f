"""Send history keyed by account (`[rules.frequency] scope = "account"`) at scale: a roll forward while the event
loop does Python work, as it does while relaying (how long the roll takes, how much of the loop's own pace the
loop keeps meanwhile, its longest stall), then the Index read from the tables as a start without the snapshot
file reads it. It runs the build it is run under; to compare two builds, run it under each (another checkout's
code first on PYTHONPATH):

    .venv/bin/python scripts/account_roll.py --sends 1000000
    PYTHONPATH=/path/to/other/src .venv/bin/python scripts/account_roll.py --sends 1000000

Each run makes a store of its own in a temporary folder: SENDS sends of the last hour from three accounts to
random recipients, logged after the Index was opened, so the roll forward merges every one of them."""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from pathlib import Path

from smppguard.policy import load_policy
from smppguard.store.db import connect
from smppguard.store.index import open_index
from smppguard.store.upkeep import Upkeep
from smppguard.store.writer import StoreWriter

POLICY = load_policy(rules={"frequency": {"scope": "account"}})
SPIN = 200  # empty loop turns between two yields to the loop: about 5 µs of Python, as a message's screening


async def measure(path: str, sends: int) -> str:
    conn = connect(path)
    index = open_index(conn, POLICY, time.time())[0]
    now, rnd = time.time(), random.Random(5)
    with conn:
        conn.executemany("INSERT INTO send_history (number, account, sent_at) VALUES (?, ?, ?)",
                         ((8613900000000 + rnd.randrange(10**7), ("acme", "beta", "gamma")[i % 3],
                           now - 3600 + i * 0.001) for i in range(sends)))
    conn.close()
    writer = StoreWriter(path)
    await writer.start()
    upkeep = Upkeep(path, index, POLICY, writer, snapshot_first=3600)
    await upkeep.start()
    done, work, stall = False, 0, 0.0

    async def spin() -> None:
        nonlocal work, stall
        last = time.perf_counter()
        while not done:
            for _ in range(SPIN):
                pass
            work += 1
            await asyncio.sleep(0)
            t = time.perf_counter()
            stall, last = max(stall, t - last), t

    spinning = asyncio.ensure_future(spin())
    try:
        await asyncio.sleep(2.0)  # the loop's own pace, with nothing beside it
        pace, work, stall = work / 2.0, 0, 0.0
        started = time.perf_counter()
        rolled = await upkeep.roll_forward()
        seconds = time.perf_counter() - started
        kept = work / seconds / pace
    finally:
        done = True
        await spinning
        await upkeep.close()
        await writer.close()
    # then a start from the tables, as with the snapshot file gone: the sends read and keyed a chunk at a time
    conn = connect(path)
    try:
        started = time.perf_counter()
        again = open_index(conn, POLICY, time.time(), use_snapshot=False)[0]
        start_s = time.perf_counter() - started
    finally:
        conn.close()
    assert len(again.history) == len(index.history)
    return (f"roll forward of {rolled['sends_merged']:,} sends keyed by account: {seconds:.2f} s; the loop kept "
            f"{kept:.2f} of its own pace meanwhile; its longest stall {stall * 1e3:.0f} ms\n"
            f"the Index read from the tables (no snapshot): {start_s:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sends", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        print(asyncio.run(measure(str(Path(folder) / "guard.db"), args.sends)))


if __name__ == "__main__":
    main()
