"""What screening a submit_sm costs, counted in instructions: a figure that does not move with a shared host's
speed, where the benchmark's rates move by a fifth within minutes.

The daemon's own objects (`open_store` on a store filled as the benchmark fills it, with `smppguard bench`'s
"full" and "off" configs) screen `--messages` submit_sm, each to a new recipient with rules on, and settle each
with the SMSC's OK, as the bridge does. valgrind's callgrind counts only what runs inside `operator.call`, which
runs nothing else here: a batch of 100 screen + settle, then the event loop gets a turn (the store's writer
takes the sends), outside the count. With `--cache-sim` the instruction and data cache misses of its model of
this machine's caches are counted too (L1 misses cost more than most instructions on a small VM).

    scripts/instructions                   rules on and off, 2,000 messages each, 100,000 + 100,000 lists
    scripts/instructions --messages 5000 --lists 1000000

Needs valgrind (Debian's package); each policy takes a minute or two.
"""

from __future__ import annotations

import argparse
import asyncio
import operator
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BATCH = 100
#: callgrind's events with --cache-sim=yes, in the order of its totals line
EVENTS = ("Ir", "Dr", "Dw", "I1mr", "D1mr", "D1mw", "ILmr", "DLmr", "DLmw")


def screen_and_settle(db: Path, policy: str, messages: int, first: int = 0) -> int:
    """Screen `messages` submit_sm on the daemon's objects over store `db` (each in operator.call, BATCH at a
    time), settle each with an OK; return how many were forwarded."""
    from smppguard.app import open_store
    from smppguard.bench.load import RECIPIENT_DIGITS, RECIPIENT_PREFIX, SUBMIT_BODY
    from smppguard.bench.procs import proxy_toml
    from smppguard.bench.proxy import POLICY_TOML
    from smppguard.config import load_config
    from smppguard.proxy.screening import Forward
    from smppguard.smpp.commands import CommandId
    from smppguard.smpp.pdu import build, from_bytes

    config_path = db.with_suffix(f".{policy}.toml")
    config_path.write_text(proxy_toml(("127.0.0.1", 1), ("127.0.0.1", 2), 10, db, POLICY_TOML[policy]))
    raw = build(CommandId.SUBMIT_SM, 1, SUBMIT_BODY)
    at = raw.index(RECIPIENT_PREFIX) + len(RECIPIENT_PREFIX)
    pdus = []
    for i in range(messages):  # built before the count starts, as the load generator patches its block
        pdu = bytearray(raw)
        if policy == "full":  # a new recipient per message, as the benchmark's rules-on pass
            pdu[at:at + RECIPIENT_DIGITS] = b"%0*d" % (RECIPIENT_DIGITS, first + i)
        pdu[12:16] = (i + 1).to_bytes(4, "big")
        pdus.append(from_bytes(bytes(pdu)))
    ok = from_bytes(build(CommandId.SUBMIT_SM_RESP, 1, b"1\0"))

    async def run() -> int:
        store = await open_store(load_config(config_path))
        screen, settle = store.screening.screen, store.screening.settle
        forwarded = 0

        def batch(pdus: list) -> int:
            n = 0
            for pdu in pdus:
                out = screen(pdu, "bench")
                if type(out) is Forward:
                    settle(out.context, ok)
                    n += 1
            return n
        try:
            for k in range(0, messages, BATCH):
                forwarded += operator.call(batch, pdus[k:k + BATCH])
                await asyncio.sleep(0)
        finally:
            await store.close()
        return forwarded

    return asyncio.run(run())


def count(db: Path, policy: str, messages: int, cache_sim: bool) -> dict[str, float]:
    """Run screen_and_settle under callgrind in a child; its events per message."""
    with tempfile.TemporaryDirectory(prefix="smppguard-instructions-") as tmp:
        copy = Path(tmp) / "smppguard.db"
        shutil.copy(db, copy)  # each run on the store as filled: the sends of one do not refuse the next's
        out = Path(tmp) / "callgrind.out"
        cmd = ["valgrind", "--tool=callgrind", f"--cache-sim={'yes' if cache_sim else 'no'}",
               "--collect-atstart=no", "--toggle-collect=_operator_call", f"--callgrind-out-file={out}",
               sys.executable, __file__, "--inside", str(copy), policy, str(messages)]
        env = dict(os.environ, PYTHONHASHSEED="0")  # the same hashes, the same probes: the same count
        done = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if done.returncode != 0 or f"forwarded {messages}" not in done.stdout:
            raise SystemExit(f"the {policy} run failed:\n{done.stdout}\n{done.stderr[-3000:]}")
        events = totals = None
        for line in out.read_text().splitlines():
            if line.startswith("events:"):
                events = line.split()[1:]
            elif line.startswith(("totals:", "summary:")):
                totals = [int(x) for x in line.split()[1:]]
        assert events is not None and totals is not None, "no totals in callgrind's output"
        return {name: value / messages for name, value in zip(events, totals, strict=False)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/instructions", description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", "-n", type=int, default=2_000)
    parser.add_argument("--lists", type=int, default=100_000,
                        help="blacklist entries and as many opt-outs in the store (smppguard bench --lists)")
    parser.add_argument("--no-cache-sim", action="store_true", help="count instructions only (faster)")
    parser.add_argument("--inside", nargs=3, metavar=("DB", "POLICY", "MESSAGES"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.inside:
        db, policy, messages = args.inside
        print(f"forwarded {screen_and_settle(Path(db), policy, int(messages))}", flush=True)
        return 0
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 1
    from smppguard.bench.fill import fill_store

    with tempfile.TemporaryDirectory(prefix="smppguard-instructions-") as tmp:
        db = Path(tmp) / "smppguard.db"
        fill_store(db, args.lists)
        figures = {policy: count(db, policy, args.messages, not args.no_cache_sim) for policy in ("full", "off")}
    names = [e for e in EVENTS if e in figures["full"] and not e.startswith(("Dr", "Dw", "IL", "DL"))]
    print(f"screen + settle of one submit_sm, {args.messages:,} messages, {args.lists:,} + {args.lists:,} lists "
          "(callgrind; L1 misses from its cache model)")
    print(f"{'':12}" + "".join(f"{n:>10}" for n in names))
    for policy in ("full", "off"):
        print(f"{'rules ' + ('on' if policy == 'full' else 'off'):12}"
              + "".join(f"{figures[policy][n]:>10,.0f}" for n in names))
    print(f"{'on - off':12}" + "".join(f"{figures['full'][n] - figures['off'][n]:>10,.0f}" for n in names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
