"""Start-up after a large import and after a burst of sends, measured from outside, for one or two builds of
smppguard side by side (the one this script runs under, and any other by its Python):

    .venv/bin/python scripts/startup_figures.py --rows 2000000 --sends 1000000 [--other /tmp/old/.venv/bin/python]

For each build, in a store of its own: a two-column CSV of ROWS numbers (`+86139…,carrier list`) imported with
`smppguard blacklist import`; the first start after it (launch to accepting binds, and the resident memory of
the daemon and its commit process then); a start, SENDS submit_sm to SENDS new recipients through 4 binds ×
window 10 with the shipped rules (this build's load generator, the same for both), a stop; and the restart
after that burst, with the send rows it replays (those after its snapshot's). The builds run one after the
other, each step of one right after the same step of the other.

How many rows the restart replays depends on when the daemon last rolled its snapshot forward (every 250,000
sends, in a thread): `--whole-tail` puts back the snapshot the burst started from before the restart, so it
replays every send of the burst, as after a roll forward that never finished (the most a restart can replay)."""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from smppguard import bench
from smppguard.store import snapshot

RULES = bench._POLICY_TOML["full"]


def csv(path: Path, rows: int) -> Path:
    if not path.exists():
        rnd = random.Random(1)
        with open(path, "w") as f:
            f.write("number,reason\n")
            for _ in range(rows):
                f.write(f"+86139{rnd.randrange(10 ** 8):08d},carrier list\n")
    return path


class Build:
    def __init__(self, name: str, python: str, root: Path, sink: tuple[str, int]):
        self.name, self.python = name, python
        self.dir = root / name
        self.dir.mkdir()
        self.db = self.dir / "guard.db"
        self.address = ("127.0.0.1", bench._free_port())
        self.config = self.dir / "proxy.toml"
        self.config.write_text(bench.proxy_toml(self.address, sink, 10, self.db, RULES, log_level="info"))
        self.figures: dict[str, float | int | str] = {}

    def smppguard(self, *args: str) -> list[str]:
        return [self.python, "-m", "smppguard", *args]

    def imported(self, data: Path) -> None:
        started = time.monotonic()
        subprocess.run(self.smppguard("blacklist", "import", "--config", str(self.config), str(data), "--silent"),
                       check=True, cwd=self.dir, stdout=subprocess.DEVNULL)
        self.figures["import_s"] = round(time.monotonic() - started, 2)
        self.figures["snapshot_after_import"] = snapshot.path_for(self.db).exists()

    def start(self, label: str) -> subprocess.Popen:
        log = open(self.dir / f"{label}.log", "w")
        launched = time.monotonic()
        proc = subprocess.Popen(self.smppguard("run", "--config", str(self.config)), cwd=self.dir, stdout=log,
                                stderr=subprocess.STDOUT)
        bench._wait_accepting(proc, self.address, "proxy", self.dir / f"{label}.log", timeout=600)
        self.figures[f"{label}_s"] = round(time.monotonic() - launched, 2)
        self.figures[f"{label}_rss_mb"] = round(bench._rss_kb(proc.pid) / 1024)
        return proc

    def stop(self, proc: subprocess.Popen) -> None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(120)

    def tail(self) -> int:
        """The send rows a start would replay: those after the snapshot's."""
        import sqlite3

        snap = snapshot.read(snapshot.path_for(self.db))
        mark = snap.meta["history_row"] if snap is not None else 0
        db = sqlite3.connect(self.db)
        try:
            return db.execute("SELECT COUNT(*) FROM send_history WHERE rowid > ?", (mark,)).fetchone()[0]
        finally:
            db.close()


def burst(build: Build, sends: int, numbers: bench._Numbers, whole_tail: bool = False) -> None:
    proc = build.start("start_before_burst")
    kept = build.dir / "before-burst.index"
    try:
        # a build that read the tables writes its snapshot soon after: the burst starts from a current one
        deadline = time.monotonic() + 120
        while not snapshot.path_for(build.db).exists() and time.monotonic() < deadline:
            time.sleep(0.5)
        if whole_tail:
            shutil.copyfile(snapshot.path_for(build.db), kept)
        result = bench._run_loop(bench._pass(build.address, sends, 4, 10, 0, numbers, True, proc.pid))
        build.figures["burst_rate"] = round(result["rate"])
        build.figures["burst_errors"] = result["errors"]
    finally:
        build.stop(proc)
    if whole_tail:
        os.replace(kept, snapshot.path_for(build.db))
    build.figures["tail_rows_at_restart"] = build.tail()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--sends", type=int, default=1_000_000)
    parser.add_argument("--other", help="the Python of another build to measure beside this one")
    parser.add_argument("--whole-tail", action="store_true",
                        help="restart from the snapshot the burst started from: every send of it replayed")
    parser.add_argument("--data", default=str(Path(tempfile.gettempdir()) / "smppguard-startup-rows.csv"))
    args = parser.parse_args()
    data = csv(Path(args.data + f".{args.rows}"), args.rows)
    with tempfile.TemporaryDirectory(prefix="smppguard-startup-") as tmp:
        root = Path(tmp)
        sink_address = ("127.0.0.1", bench._free_port())
        sink = bench.start_sink(root, sink_address)
        try:
            builds = [Build("this", sys.executable, root, sink_address)]
            if args.other:
                builds.append(Build("other", args.other, root, sink_address))
            numbers = bench._Numbers()
            for b in builds:
                b.imported(data)
            for b in builds:
                b.stop(b.start("first_start"))
            for b in builds:
                burst(b, args.sends, numbers, args.whole_tail)
            for b in builds:
                b.stop(b.start("restart_after_burst"))
        finally:
            bench._stop(sink)
        for b in builds:
            print(json.dumps({"build": b.name, "python": b.python, **b.figures}))
    os.sync()


if __name__ == "__main__":
    main()
