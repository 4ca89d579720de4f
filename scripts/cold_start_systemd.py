"""The first start of a daemon whose Index snapshot is gone, on the README's largest store, as systemd starts it:
is it ever killed, and do its EXTEND_TIMEOUT_USEC messages come in time?

    .venv/bin/python scripts/cold_start_systemd.py [--entries 20000000 --optouts 5000000 --history 30000000
        --recipients 10000000] [--timeout 90] [--store PATH | --dir DIR --keep] [--json]

Without a snapshot the daemon reads its lists and a month of sends from the tables, which on that store takes
longer than the unit's TimeoutStartSec=90. systemd kills such a start unless an EXTEND_TIMEOUT_USEC= comes before
each deadline (sdnotify.Loading sends one every 10 s while the load moves). The unit test
(tests/test_systemd_unit.py) checks the mechanism with a load slowed down and systemd's intervals scaled down;
this script measures the real thing: a store filled as bench/fill.py fills it (or `--store`, one filled before),
its snapshot file deleted, `smppguard run` started with NOTIFY_SOCKET on a socket read here the way systemd reads
it (a start deadline from launch, pushed out by each extension to at least its length after it came; a start
not READY=1 by a deadline is killed, here too).

It prints every notify message with its time since launch, the time to READY=1, the least time any deadline
had left when a message came, the daemon's peak resident memory (its and its children's VmRSS every 0.2 s), and
how long after READY=1 the daemon wrote its snapshot (the upkeep's first roll forward, SNAPSHOT_SOON after the
start); then it stops the daemon with SIGTERM and checks it exits 0. The store's pages are in the page cache
after a fill; `--evict` asks the kernel to drop them (posix_fadvise, this store's files only), as after a reboot.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from smppguard import sdnotify
from smppguard.bench.fill import fill_store
from smppguard.bench.procs import child_pids, free_port, rss_kb, terminated_cleanly
from smppguard.bench.systemd import StartWatch
from smppguard.store import snapshot

#: The log's lines for a roll forward done and failed (store/upkeep.py).
ROLLED = re.compile(r"index snapshot rolled forward in ([\d.]+)s")
ROLL_FAILED = "rolling the index snapshot forward failed"
#: A STATUS= line of the load ("loading blacklist 3.2M/20.0M"): what is read, how many so far.
LOADING = re.compile(r"loading (.+?) ([\d.]+[kM]?)(?:/([\d.]+[kM]?))?$")
#: The daemon dies with this script (kill -9 included): util-linux's setpriv sets PR_SET_PDEATHSIG and execs it.
DIE_WITH_US: tuple[str, ...] = (("setpriv", "--pdeathsig", "KILL", "--")
                                if sys.platform == "linux" and shutil.which("setpriv") else ())


class _Log:
    """The daemon's output, a line at a time into `path`, each noted with when it came (seconds since launch):
    the roll forward's line says when the snapshot was written, and the last lines what went wrong."""

    def __init__(self, stream, path: Path, launched: float):
        self.stream, self.path, self.launched = stream, path, launched
        self.lines: list[tuple[float, str]] = []
        self.rolled = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        with open(self.path, "w") as out:
            for raw in self.stream:
                at = time.monotonic() - self.launched
                line = raw.decode(errors="replace").rstrip("\n")
                self.lines.append((at, line))
                out.write(f"{at:9.2f} {line}\n")
                out.flush()
                if ROLLED.search(line) or ROLL_FAILED in line:
                    self.rolled.set()

    def first(self, pattern: str | re.Pattern) -> tuple[float, str] | None:
        return next(((at, line) for at, line in self.lines if re.search(pattern, line)), None)

    def tail(self, n: int = 15) -> list[str]:
        return [f"{at:9.2f} {line}" for at, line in self.lines[-n:]]


class _Memory:
    """The resident memory of the daemon and its children (the store's commit process, the roll forward's
    reader), every 0.2 s: the peak until READY=1 (`start_mb`) and until the sampling stops (`peak_mb`). Also
    notes when the snapshot file first exists (it is written under another name and renamed)."""

    def __init__(self, pid: int, snapshot_file: Path, launched: float, every: float = 0.2):
        self.pid, self.file, self.launched, self.every = pid, snapshot_file, launched, every
        self.peak_kb = self.start_kb = 0
        self.peak_at = 0.0
        self.ready = False
        self.file_at: float | None = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.wait(self.every):
            kb = rss_kb(self.pid)
            if kb > self.peak_kb:
                self.peak_kb, self.peak_at = kb, time.monotonic() - self.launched
            if not self.ready:
                self.start_kb = max(self.start_kb, kb)
            if self.file_at is None and self.file.exists():
                self.file_at = time.monotonic() - self.launched

    def now_mb(self) -> int:
        return round(rss_kb(self.pid) / 1024)


def config_toml(listen: tuple[str, int], upstream: tuple[str, int], db: Path) -> str:
    """The least a unit's config has: where to listen, the SMSC (not dialled until a client binds), the store;
    the default rules (the frequency cap's month of sends is read at start-up) with the shipped config's region,
    metrics and the built-in simulator's control interface off (their fixed ports), the log at info (the load's
    progress lines)."""
    return (f'[listen]\naddress = "{listen[0]}:{listen[1]}"\n\n'
            f'[upstream]\naddress = "{upstream[0]}:{upstream[1]}"\n\n'
            f'[store]\npath = "{db}"\n\n[policy]\ndefault_region = "CN"\n\n'
            '[metrics]\naddress = ""\n\n[simulator]\ncontrol = ""\n\n[log]\nlevel = "info"\n')


def evict(db: Path) -> None:
    """Drop the store's pages from the page cache (written back first): its first read comes from the disk."""
    for path in (db, Path(f"{db}-wal")):
        if path.exists():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def extension_figures(watch: StartWatch) -> dict:
    """The extensions before READY=1: how many, the longest gap between two (from launch for the first), the
    length they asked for, and the least time a deadline had left when a message came (StartWatch's)."""
    gaps, last, asked = [], 0.0, set()
    for at, fields in watch.messages:
        if "EXTEND_TIMEOUT_USEC" in fields:
            gaps.append(at - last)
            last = at
            asked.add(int(fields["EXTEND_TIMEOUT_USEC"]) / 1e6)
        if fields.get("READY") == "1":
            break
    least = watch.least_left
    return {"extensions": len(gaps), "longest_gap_s": round(max(gaps), 2) if gaps else None,
            "first_extension_s": round(gaps[0], 2) if gaps else None,
            "extension_s": sorted(asked), "least_slack_s": round(least, 2) if least is not None else None}


def status_summary(messages: list[tuple[float, dict[str, str]]]) -> list[dict]:
    """The STATUS= lines by what they say is read: when the first and the last came, and how far the last was."""
    stages: dict[str, dict] = {}
    for at, fields in messages:
        status = fields.get("STATUS")
        if status is None:
            continue
        m = LOADING.fullmatch(status)
        what = m.group(1) if m else status
        stage = stages.setdefault(what, {"status": what, "first_s": round(at, 1)})
        stage["last_s"] = round(at, 1)
        if m:
            stage["last"] = m.group(2) + (f"/{m.group(3)}" if m.group(3) else "")
    return list(stages.values())


def kill(proc: subprocess.Popen) -> None:
    """What systemd does to a start past its deadline (with KillMode=control-group): the daemon and its
    children, SIGKILL (it sends SIGTERM first; a load that does not move would not heed it either)."""
    for pid in child_pids(proc.pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.kill()
    proc.wait()


def cold_start(db: Path, run: Path, timeout: float, snapshot_wait: float) -> dict:
    figures: dict = {}
    listen, upstream = ("127.0.0.1", free_port()), ("127.0.0.1", free_port())
    config = run / "smppguard.toml"
    config.write_text(config_toml(listen, upstream, db))
    notify_path = run / "notify.sock"
    if len(bytes(notify_path)) > 100:  # sun_path holds 108 bytes
        notify_path = Path(tempfile.mkdtemp(prefix="smppguard-notify-")) / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify_path))
    env = {k: v for k, v in os.environ.items() if k not in ("SMPPGUARD_CONFIG", "WATCHDOG_USEC", "WATCHDOG_PID")}
    env["NOTIFY_SOCKET"] = str(notify_path)
    systemd = StartWatch(sock, timeout)
    launched = systemd.launched
    daemon = subprocess.Popen([*DIE_WITH_US, sys.executable, "-m", "smppguard", "run", "--config", str(config)],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              cwd=run, env=env)
    log = _Log(daemon.stdout, run / "daemon.log", launched)
    memory = _Memory(daemon.pid, snapshot.path_for(db), launched)
    try:
        while systemd.thread.is_alive() and daemon.poll() is None:
            systemd.thread.join(0.2)
        memory.ready = True
        since = lambda at: round(at - launched, 2) if at is not None else None  # noqa: E731
        figures.update(timeout_s=timeout, ready_s=since(systemd.ready_at), killed_s=since(systemd.killed_at),
                       start_peak_rss_mb=round(memory.start_kb / 1024))
        if systemd.killed_at is not None:
            kill(daemon)
            figures["exit_status"] = daemon.returncode
        elif systemd.ready_at is None:  # it ended before READY=1, by itself
            daemon.wait()
            figures["exit_status"] = daemon.returncode
        else:
            figures["ready_rss_mb"] = memory.now_mb()
            log.rolled.wait(snapshot_wait)
            rolled = log.first(ROLLED)
            failed = log.first(ROLL_FAILED)
            ready = systemd.ready_at - launched
            figures.update(snapshot_logged_after_ready_s=round(rolled[0] - ready, 2) if rolled else None,
                           snapshot_roll_s=float(ROLLED.search(rolled[1]).group(1)) if rolled else None,
                           snapshot_file_after_ready_s=(round(memory.file_at - ready, 2)
                                                        if memory.file_at is not None else None),
                           snapshot_failed=failed[1] if failed else None,
                           snapshot_mb=(round(snapshot.path_for(db).stat().st_size / 1e6)
                                        if snapshot.path_for(db).exists() else None))
            time.sleep(1.0)  # the memory after the roll forward settles
            figures["after_snapshot_rss_mb"] = memory.now_mb()
            stopping = time.monotonic()
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(120)
            except subprocess.TimeoutExpired:
                kill(daemon)
                figures["stop_timed_out"] = True
            figures.update(stop_s=round(time.monotonic() - stopping, 2), exit_status=daemon.returncode)
    finally:
        if daemon.poll() is None:
            kill(daemon)
        memory.stop.set()
        memory.thread.join()
        log.thread.join(10)
        sock.close()
        notify_path.unlink(missing_ok=True)
    loaded = log.first(r"store .*: \d+ blacklisted.*loaded in")
    figures.update(peak_rss_mb=round(memory.peak_kb / 1024), peak_rss_at_s=round(memory.peak_at, 1),
                   loaded_line=loaded[1].split(": ", 1)[-1] if loaded else None,
                   **extension_figures(systemd), stages=status_summary(systemd.messages),
                   messages=[{"at_s": round(at, 2), **fields} for at, fields in systemd.messages],
                   log=str(run / "daemon.log"))
    if systemd.ready_at is None or figures.get("exit_status") != 0:
        figures["log_tail"] = log.tail()
    return figures


def text(f: dict) -> str:
    out = ["notify messages (seconds since launch):"]
    out += [f"  {m['at_s']:8.2f}  " + "  ".join(f"{k}={v}" for k, v in m.items() if k != "at_s")
            for m in f["messages"]]
    out.append("load stages (STATUS=):")
    out += [f"  {s['status']}: {s['first_s']}-{s['last_s']} s" + (f", last {s['last']}" if "last" in s else "")
            for s in f["stages"]]
    if f.get("log_tail"):
        out += ["the daemon's last log lines:", *(f"  {line}" for line in f["log_tail"])]
    rows = [("store", f.get("store")), ("fill", f"{f['fill_s']} s" if f.get("fill_s") is not None else "(reused)"),
            ("TimeoutStartSec", f"{f['timeout_s']:g} s"),
            ("launch to READY=1", f"{f['ready_s']} s" if f["ready_s"] is not None else "never"),
            ("killed by systemd", f"yes, {f['killed_s']} s after launch" if f["killed_s"] is not None else "no"),
            ("extensions before READY", f"{f['extensions']} (the first at {f['first_extension_s']} s, each asking "
                                        f"{'/'.join(f'{x:g}' for x in f['extension_s'])} s)" if f["extensions"]
             else "0"),
            ("longest gap between them", f"{f['longest_gap_s']} s" if f["longest_gap_s"] is not None else "-"),
            ("least time left on a deadline", f"{f['least_slack_s']} s" if f["least_slack_s"] is not None else "-"),
            ("peak RSS until READY / overall", f"{f['start_peak_rss_mb']} / {f['peak_rss_mb']} MiB (overall peak "
                                               f"at {f['peak_rss_at_s']} s)"),
            ("RSS at READY / after the snapshot",
             f"{f.get('ready_rss_mb', '-')} / {f.get('after_snapshot_rss_mb', '-')} MiB"),
            ("snapshot logged after READY", f"{f['snapshot_logged_after_ready_s']} s (roll forward "
                                            f"{f['snapshot_roll_s']} s, {f['snapshot_mb']} MB)"
             if f.get("snapshot_logged_after_ready_s") is not None else f.get("snapshot_failed") or "not logged"),
            ("SIGTERM to exit", f"{f['stop_s']} s" if f.get("stop_s") is not None else "-"),
            ("exit status", f.get("exit_status")),
            ("the daemon's load", f.get("loaded_line")),
            ("log", f["log"])]
    width = max(len(k) for k, _ in rows)
    return "\n".join(out + [f"{k:<{width}}  {v}" for k, v in rows])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=20_000_000, help="blacklisted numbers")
    parser.add_argument("--optouts", type=int, default=5_000_000, help="sender-scoped opt-outs")
    parser.add_argument("--history", type=int, default=30_000_000, help="sends of the last 30 days")
    parser.add_argument("--recipients", type=int, default=10_000_000, help="the numbers those sends went to")
    parser.add_argument("--timeout", type=float, default=90.0, help="the unit's TimeoutStartSec, seconds")
    parser.add_argument("--dir", help="where the run's folder (the store, config, log) is made; the system's "
                                      "temporary folder by default")
    parser.add_argument("--keep", action="store_true", help="keep the run's folder (a store for --store)")
    parser.add_argument("--store", help="a store filled before (its snapshot file is deleted): no fill")
    parser.add_argument("--evict", action="store_true", help="drop the store's pages from the page cache first")
    parser.add_argument("--snapshot-wait", type=float, default=900.0,
                        help="seconds after READY=1 to wait for the snapshot's roll forward")
    parser.add_argument("--json", action="store_true", help="the figures as JSON")
    args = parser.parse_args()
    say = (lambda *a: print(*a, file=sys.stderr, flush=True)) if args.json else (lambda *a: print(*a, flush=True))
    with terminated_cleanly():
        run = Path(tempfile.mkdtemp(prefix="smppguard-cold-start-", dir=args.dir))
        try:
            figures: dict = {}
            if args.store:
                db = Path(args.store).resolve()
                if not db.exists():
                    parser.error(f"{db} does not exist")
            else:
                db = run / "smppguard.db"
                say(f"filling {db}: {args.entries:,} blacklisted, {args.optouts:,} opt-outs, {args.history:,} "
                    f"sends to {args.recipients:,} recipients")
                started = time.monotonic()
                fill_store(db, args.entries, history=args.history, recipients=args.recipients,
                           optouts=args.optouts)
                figures["fill_s"] = round(time.monotonic() - started, 1)
                say(f"filled in {figures['fill_s']} s ({db.stat().st_size / 1e9:.2f} GB)")
            figures["store"] = str(db)
            index = snapshot.path_for(db)
            if index.exists():
                index.unlink()
                say(f"deleted the snapshot file {index}")
            else:
                say(f"no snapshot file at {index}")
            if args.evict:
                evict(db)
                say("the store's pages dropped from the page cache")
            say(f"starting the daemon (TimeoutStartSec={args.timeout:g}, extensions of "
                f"{sdnotify.EXTEND_BY:g} s every {sdnotify.EXTEND_EVERY:g} s)")
            figures.update(cold_start(db, run, args.timeout, args.snapshot_wait))
        finally:
            if args.keep:
                say(f"kept {run}")
            else:
                shutil.rmtree(run, ignore_errors=True)
    if not args.keep:
        figures["log"] += " (removed)"
    print(json.dumps(figures, indent=2) if args.json else text(figures))
    return 0 if figures.get("killed_s") is None and figures.get("exit_status") == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
