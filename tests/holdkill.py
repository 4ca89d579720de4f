"""kill -9 of a running `smppguard run` again and again while it holds and releases messages: what it
acknowledged is neither lost nor sent twice.

    .venv/bin/python tests/holdkill.py --kills 100

Quiet hours are every even minute (Asia/Shanghai time; CN recipients), so messages sent in an even minute are
held until it ends and released at the start of the odd one, while a sender submits to a new recipient per
message, without pause. The daemon is killed with SIGKILL at a random moment 0.3-2.5 s after each start, and
started again. At the end it runs until nothing is due any more, and the SMSC (`smppguard simulate`, a separate
process) is asked what it got. Every acknowledged message must have reached it exactly once, except those the
store marks "unknown": killed after the mark that comes before a release's submit and before the SMSC's answer,
they may or may not have reached it, and are never sent again by themselves (README, "Hold queue").
Prints the counts; exit status 1 if any acknowledged message was lost or sent twice.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import smpplib.client  # noqa: E402
import smpplib.smpp  # noqa: E402

from helpers import DIE_WITH_US, free_port  # noqa: E402

FIRST = 13800000000  # recipients: one new CN mobile per message


def even_minutes() -> str:
    """Quiet windows: every even minute of the day."""
    windows = []
    for m in range(0, 1440, 2):
        start, end = divmod(m, 60), divmod((m + 1) % 1440, 60)
        windows.append(f'{{ start = "{start[0]:02d}:{start[1]:02d}", end = "{end[0]:02d}:{end[1]:02d}" }}')
    return "[" + ", ".join(windows) + "]"


def wait_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise SystemExit(f"{what} did not start: {proc.communicate()}") from None
            time.sleep(0.02)


class Sender(threading.Thread):
    """Submits to a new recipient per message, reconnecting after each kill; records which ones got OK."""

    def __init__(self, port: int):
        super().__init__(daemon=True)
        self.port = port
        self.next = 0
        self.acked: set[int] = set()
        self.sent: set[int] = set()  # submitted, answered or not
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                client = smpplib.client.Client("127.0.0.1", self.port, timeout=3)
                client.connect()
                client.bind_transmitter(system_id="acme", password="pw")
            except Exception:
                time.sleep(0.05)
                continue
            try:
                while not self.stop.is_set():
                    n = FIRST + self.next
                    self.next += 1
                    pdu = smpplib.smpp.make_pdu("submit_sm", client=client, source_addr_ton=5, source_addr="ACME",
                                                dest_addr_ton=0, dest_addr_npi=1, destination_addr=str(n),
                                                short_message=b"Winter sale")
                    self.sent.add(n)
                    client.send_pdu(pdu)
                    resp = client.read_pdu()
                    while resp.sequence != pdu.sequence:
                        resp = client.read_pdu()
                    if resp.status == 0:
                        self.acked.add(n)
                    time.sleep(0.01)
            except Exception:  # killed under us: a new connection once it is back
                pass
            finally:
                try:
                    client._socket.close()
                except Exception:
                    pass


def this_minute() -> tuple[str, float]:
    """A quiet window of the rest of the current minute (Asia/Shanghai), and when it ends (epoch seconds); with
    less than 20 s of it left, of the next minute too, so that messages are held before it ends."""
    now = datetime.now(ZoneInfo("Asia/Shanghai"))
    start = now.replace(second=0, microsecond=0)
    end = start + timedelta(minutes=1 if now.second < 40 else 2)
    return f'[{{ start = "{start:%H:%M}", end = "{end:%H:%M}" }}]', end.timestamp()


def run(kills: int, seed: int, tmp: Path, *, short: bool = False) -> dict:
    """`short`: quiet only for the rest of the current minute; `kills` kills while it lasts, then two within a
    second of its end, while the held messages are being released (the CI version)."""
    rng = random.Random(seed)
    sim_port, control_port, port = free_port(), free_port(), free_port()
    (tmp / "sim.toml").write_text("[simulator]\nkeep = 10000000\n")
    sim = subprocess.Popen([*DIE_WITH_US, sys.executable, "-m", "smppguard", "simulate", "--config",
                            str(tmp / "sim.toml"), "--listen", f"127.0.0.1:{sim_port}",
                            "--control", f"127.0.0.1:{control_port}"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    db = tmp / "guard.db"
    config = tmp / "smppguard.toml"
    windows, boundary = this_minute() if short else (even_minutes(), 0.0)
    config.write_text(f"""[listen]
address = "127.0.0.1:{port}"
[upstream]
address = "127.0.0.1:{sim_port}"
[store]
path = "{db}"
[policy]
default_region = "CN"
fallback_zone = "Asia/Shanghai"
[rules.frequency]
enabled = false
[rules.quiet_hours]
action = "hold"
windows = {windows}
[hold]
release_rate = 1000
[metrics]
address = ""
[log]
level = "warning"
""")
    log = open(tmp / "daemon.log", "w")

    def start() -> subprocess.Popen:
        daemon = subprocess.Popen([*DIE_WITH_US, sys.executable, "-m", "smppguard", "run", "--config", str(config)],
                                  stdout=log, stderr=log)
        wait_port(port, daemon, "the daemon")
        return daemon

    started = time.monotonic()
    sender = Sender(port)
    try:
        wait_port(sim_port, sim, "the simulator")
        daemon = start()
        sender.start()
        waits = [rng.uniform(0.3, 2.5) for _ in range(kills)]
        if short:  # the kills fit in what is left of the minute, and two more come as its messages are released
            left = max(0.0, boundary - time.time() - 1.0)
            waits = [min(w, left / (kills + 1)) for w in waits] + [None, None]
        for i, wait in enumerate(waits):
            if wait is None:
                time.sleep(max(0.0, boundary - time.time()) + rng.uniform(0.05, 0.6))
                boundary = time.time()  # the second one soon after the first
            else:
                time.sleep(wait)
            daemon.send_signal(signal.SIGKILL)
            daemon.wait()
            print(f"kill {i + 1}/{len(waits)}: {len(sender.acked)} acknowledged so far", file=sys.stderr)
            daemon = start()
        # let the last quiet minute end and its messages go out (through the sender's bind, still up)
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            left = _rows(db, "SELECT COUNT(*) FROM held WHERE state IN ('held', 'sending')")[0][0]
            if not left:
                break
            time.sleep(0.5)
        sender.stop.set()
        sender.join(10)
        time.sleep(1.0)
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(30)
        with urllib.request.urlopen(f"http://127.0.0.1:{control_port}/messages", timeout=30) as resp:
            got = Counter(int(m["destination"]) for m in json.load(resp))
    finally:
        sender.stop.set()
        for proc in (locals().get("daemon"), sim):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
        log.close()
    unknown = {int(r[0]) for r in _rows(db, "SELECT recipient FROM held WHERE state = 'unknown'")}
    still_held = _rows(db, "SELECT COUNT(*) FROM held WHERE state != 'unknown'")[0][0]
    held_ever = _rows(db, "SELECT COUNT(*) FROM audit WHERE rule = 'quiet_hours'")[0][0]
    released = _rows(db, "SELECT COUNT(*) FROM audit WHERE action = 'released'")[0][0]
    acked = sender.acked
    lost = sorted(n for n in acked if got[n] == 0 and n not in unknown)
    twice = sorted(n for n, c in got.items() if c > 1)
    return {"kills": kills, "seconds": round(time.monotonic() - started, 1), "submitted": len(sender.sent),
            "acknowledged": len(acked), "held": held_ever, "released": released,
            "at_smsc_once": sum(1 for n in acked if got[n] == 1),
            "unknown": len(unknown), "unknown_at_smsc": sum(1 for n in unknown if got[n]),
            "not_acknowledged_but_sent": sum(1 for n in sender.sent - acked if got[n]),
            "still_held": still_held, "lost": len(lost), "sent_twice": len(twice),
            "examples": {"lost": lost[:5], "sent_twice": twice[:5]}}


def _rows(db: Path, sql: str) -> list:
    conn = sqlite3.connect(db, timeout=10)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--short", action="store_true",
                        help="quiet for the rest of this minute only; kills within it and as it ends (about a minute)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        result = run(args.kills, args.seed, Path(tmp), short=args.short)
    print(json.dumps(result, indent=2))
    return 1 if result["lost"] or result["sent_twice"] else 0


if __name__ == "__main__":
    sys.exit(main())


