"""The retention benchmark: live traffic while the hourly retention delete runs on a large send history.

`run_prune(history, hours)` (``smppguard bench --prune 30000000``) fills a store with `history` sends spread over
`[store] retention` (32 days here) plus `hours` hours, so that the delete the daemon runs a minute after it
starts removes the `hours` oldest hours of sends, as every hour's delete does on a store that has run for a
while (1 hour of a 30M-send month is about 40,000 rows). It then sends the same load through the proxy three
times: before the delete, while it runs, and after it, and reports each pass's rate and latency, and when the
delete ran.
"""

from __future__ import annotations

import re
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from .fill import fill_store
from .load import Numbers, run_loop, run_pass
from .procs import START_TIMEOUT, report, rig, start_proxy, start_sink
from .proxy import POLICY_TOML

RETENTION_DAYS = 32  # the least [store] retention takes
EXPIRE_FIRST_S = 60.0  # Upkeep.expire_first: the first delete, this long after the store is open
_DELETED = re.compile(r"^(\S+ \S+) .*retention \d+ days: deleted (\d+) send-history and audit rows")


def run_prune(history: int = 30_000_000, hours: float = 1.0, messages: int = 50_000, binds: int = 4,
              window: int = 10) -> dict[str, Any]:
    if history < 1 or hours <= 0 or messages < 1:
        raise ValueError("history and messages must be at least 1, hours more than 0")
    from ..app import SNAPSHOT_WORTH

    with rig("prune", window, POLICY_TOML["full"], store=f'retention = "{RETENTION_DAYS}d"\n',
             log_level="info") as r:
        db = r.db
        started = time.monotonic()
        fill_store(db, 0, history=history, history_days=RETENTION_DAYS + hours / 24)
        result: dict[str, Any] = {"history": history, "hours": hours, "fill_s": time.monotonic() - started,
                                  "messages": messages, "binds": binds, "window": window}
        r.start(start_sink(r.dir, r.sink))
        r.start(start_proxy(r.dir, r.proxy, START_TIMEOUT + history / 50_000))
        opened = time.time()  # the store opened just before it accepted binds: the delete is due a minute on
        if history // 3 >= SNAPSHOT_WORTH:  # a third as many recipients (fill_store): enough for a snapshot soon
            _wait_snapshot(db, opened + EXPIRE_FIRST_S - 15)  # the first one is written meanwhile: not in a pass
        numbers = Numbers()
        result["before"] = run_loop(run_pass(r.proxy, messages, binds, window, 0, numbers, True))
        wait = opened + EXPIRE_FIRST_S - time.time()
        result["waited_s"] = max(0.0, wait)
        if wait > 0:
            time.sleep(wait)
        result["during"] = run_loop(run_pass(r.proxy, messages, binds, window, 0, numbers, True))
        during_end = time.time()
        deleted_at, deleted = _wait_deleted(r.dir / "proxy.log", 600)
        result["after"] = run_loop(run_pass(r.proxy, messages, binds, window, 0, numbers, True))
        result["deleted_rows"] = deleted
        result["delete_started_s"] = EXPIRE_FIRST_S
        result["delete_ended_s"] = deleted_at - opened
        result["during_pass_ended_s"] = during_end - opened
    return result


def _wait_snapshot(db: Path, deadline: float) -> None:
    from ..store import snapshot

    while not snapshot.path_for(db).exists():
        if time.time() > deadline:
            raise TimeoutError("the proxy wrote no snapshot before the retention delete was due")
        time.sleep(0.2)


def _wait_deleted(log: Path, timeout: float) -> tuple[float, int]:
    """When the proxy logged the end of its retention delete, and how many rows it deleted."""
    limit = time.monotonic() + timeout
    while time.monotonic() < limit:
        for line in log.read_text().splitlines():
            m = _DELETED.match(line)
            if m:
                at = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
                return at, int(m.group(2))
        time.sleep(0.5)
    raise TimeoutError("the proxy logged no retention delete")


def format_prune(r: dict[str, Any]) -> str:
    def line(name: str, p: dict[str, Any]) -> str:
        return f"{name:<8} {p['rate']:>9,.0f}/s   p50 {p['p50_us']:>7,.0f} µs   p99 {p['p99_us']:>8,.0f} µs   " \
               f"errors {p['errors']}"

    ratio = r["during"]["p99_us"] / r["before"]["p99_us"] if r["before"]["p99_us"] else 0.0
    inside = r["delete_ended_s"] <= r["during_pass_ended_s"]
    overlap = "the whole delete" if inside else f"its first {r['during_pass_ended_s'] - r['delete_started_s']:.1f} s"
    return "\n".join([
        f"smppguard bench --prune: {r['history']:,} sends over {RETENTION_DAYS} days + {r['hours']:g} h, "
        f"retention {RETENTION_DAYS} days; {r['messages']:,} submit_sm a pass over {r['binds']} binds, "
        f"window {r['window']} (rules on, a new recipient per message)",
        "",
        line("before", r["before"]),
        line("during", r["during"]),
        line("after", r["after"]),
        "",
        f"retention delete: {r['deleted_rows']:,} rows, from {r['delete_started_s']:.0f} s to "
        f"{r['delete_ended_s']:.1f} s after start-up; the 'during' pass ran from {r['delete_started_s']:.0f} s to "
        f"{r['during_pass_ended_s']:.1f} s ({overlap})",
        f"p99 during / before     {ratio:.2f}  (target < 2)",
    ])


def run_command(history: int, hours: float, messages: int, as_json: bool) -> int:
    return report(lambda: run_prune(history, hours, messages), format_prune, as_json)
