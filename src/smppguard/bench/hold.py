"""The hold-queue benchmark: many messages held, then released all at once, with live traffic beside them.

`run_hold(messages, live)` (``smppguard bench --hold 100000``) starts a sink SMSC and the proxy as child
processes, as the submit benchmark does, with quiet hours all day for account "bench" (marketing) and account
"live" screened as transactional (not held):

1. hold: `messages` submit_sm from "bench" (4 binds, window 10), each held and answered OK once saved: the rate,
   the store's size and the proxy's memory after it;
2. live alone: `live` submit_sm from "live" (1 bind, window 10): rate and latency with nothing being released;
3. release: every held message is made due at once (as `smppguard queue release` does, or the morning's end of
   the quiet window), one bind of "bench" is left up to send them through, and `live` submit_sm run again while
   they go: the release rate, and the live traffic's rate and latency during it.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

from ..smpp.commands import CommandId
from ..smpp.fields import encode_body
from .load import Client, Numbers, run_loop, run_pass
from .procs import cpu_seconds, report, rig, rss_kb, start_proxy, start_sink, store_bytes

HOLD_TOML = """[policy]
default_region = "CN"
fallback_zone = "Asia/Shanghai"

[rules.quiet_hours]
action = "hold"
windows = [{ start = "00:00", end = "23:59" }]

[rules.frequency]
enabled = false

[[classes]]
name = "transactional"
system_id = ["live"]

[hold]
max_messages = 10000000
max_per_account = 10000000
release_rate = %(rate)s
"""
LIVE_BIND = encode_body(CommandId.BIND_TRANSMITTER, system_id="live", password="live", system_type="",
                        interface_version=0x34)


def _count(db: Path, sql: str) -> int:
    conn = sqlite3.connect(db, timeout=30)
    try:
        return conn.execute(sql).fetchone()[0]
    finally:
        conn.close()


async def _live_pass(proxy: tuple[str, int], total: int) -> dict[str, Any]:
    return await run_pass(proxy, total, 1, 10, 0, Numbers(), True, bind_body=LIVE_BIND)


async def _hold_bench(proxy: tuple[str, int], pid: int, db: Path, messages: int, live: int) -> dict[str, Any]:
    numbers = Numbers()
    cpu0 = cpu_seconds(pid)
    held = await run_pass(proxy, messages, 4, 10, 0, numbers, True)
    hold_cpu = cpu_seconds(pid) - cpu0
    rss_held = rss_kb(pid)
    await asyncio.sleep(1.0)  # the last commits
    size = store_bytes(db)
    in_queue = _count(db, "SELECT COUNT(*) FROM held")
    alone = await _live_pass(proxy, live)
    loop = asyncio.get_running_loop()
    _, keeper = await loop.create_connection(lambda: Client(10, True), *proxy)  # the bind releases go through
    try:
        await keeper.bind()
        conn = sqlite3.connect(db, timeout=30)
        try:
            conn.execute("UPDATE held SET forced = 1, release_at = 0")
            conn.commit()
        finally:
            conn.close()
        started = time.perf_counter()
        cpu0 = cpu_seconds(pid)
        during = await _live_pass(proxy, live)
        left_after_live = _count(db, "SELECT COUNT(*) FROM held")
        while _count(db, "SELECT COUNT(*) FROM held WHERE state IN ('held', 'sending')"):
            if time.perf_counter() - started > 60 + 2 * messages / 50:
                break
            await asyncio.sleep(0.2)
        release_s = time.perf_counter() - started
        release_cpu = cpu_seconds(pid) - cpu0
    finally:
        await keeper.close()
    released = in_queue - _count(db, "SELECT COUNT(*) FROM held")
    return {"messages": messages, "held": in_queue, "hold_rate": held["rate"], "hold_errors": held["errors"],
            "hold_p99_us": held["p99_us"], "hold_cpu_us_per_msg": hold_cpu / messages * 1e6,
            "store_bytes": size, "store_bytes_per_held": size / max(in_queue, 1),
            "rss_after_hold_kb": rss_held, "rss_after_release_kb": rss_kb(pid),
            "released": released, "release_seconds": release_s, "release_rate": released / release_s,
            "release_cpu_us_per_msg": release_cpu / max(released, 1) * 1e6,
            "left_when_live_ended": left_after_live,
            "live_alone": {k: alone[k] for k in ("messages", "rate", "p50_us", "p99_us", "errors")},
            "live_during_release": {k: during[k] for k in ("messages", "rate", "p50_us", "p99_us", "errors")}}


def run_hold(messages: int = 100_000, live: int = 20_000, release_rate: float = 1000.0) -> dict[str, Any]:
    if messages < 1 or live < 1:
        raise ValueError("messages and live must be at least 1")
    with rig("hold", 10, HOLD_TOML % {"rate": release_rate}) as r:
        r.start(start_sink(r.dir, r.sink))
        proxy = r.start(start_proxy(r.dir, r.proxy))
        result = run_loop(_hold_bench(r.proxy, proxy.pid, r.db, messages, live))
        result["release_rate_setting"] = release_rate
        return result


def format_hold(r: dict[str, Any]) -> str:
    a, d = r["live_alone"], r["live_during_release"]
    return "\n".join([
        f"held:     {r['held']:,} of {r['messages']:,} submit_sm at {r['hold_rate']:,.0f}/s "
        f"(p99 {r['hold_p99_us'] / 1000:.1f} ms, {r['hold_cpu_us_per_msg']:.0f} us proxy CPU each, "
        f"{r['hold_errors']} not OK)",
        f"store:    {r['store_bytes'] / 1e6:.1f} MB ({r['store_bytes_per_held']:.0f} bytes per held message); "
        f"proxy RSS {r['rss_after_hold_kb'] / 1024:.0f} MB after holding, "
        f"{r['rss_after_release_kb'] / 1024:.0f} MB after the release",
        f"release:  {r['released']:,} in {r['release_seconds']:.1f} s = {r['release_rate']:,.0f}/s "
        f"([hold] release_rate {r['release_rate_setting']:g}), {r['release_cpu_us_per_msg']:.0f} us proxy CPU each",
        f"live:     alone {a['rate']:,.0f}/s p50 {a['p50_us'] / 1000:.2f} ms p99 {a['p99_us'] / 1000:.2f} ms; "
        f"during the release {d['rate']:,.0f}/s p50 {d['p50_us'] / 1000:.2f} ms p99 {d['p99_us'] / 1000:.2f} ms "
        f"({r['left_when_live_ended']:,} still held when it ended)",
    ])


def run_command(messages: int, live: int, release_rate: float, as_json: bool) -> int:
    return report(lambda: run_hold(messages, live, release_rate), format_hold, as_json)
