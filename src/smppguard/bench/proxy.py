"""The submit benchmark: the same submit_sm load straight to a sink SMSC and through the proxy, in one run.

`run_bench(messages, binds, window)` starts two child processes, a sink SMSC (``smppguard simulate --sink``)
and the proxy (``smppguard run`` with a temporary config pointing at the sink), and drives them from the load
generator (load.py) in this process:

1. direct: N submit_sm over B binds with W outstanding per bind, straight to the sink;
2. proxied: the same through the proxy, reading the proxy's CPU time (/proc/<pid>/stat) around it;
3. low load: 1 bind, window 1, a couple of thousand submit_sm each way, whose latency difference is the
   cleanest figure for the latency the proxy adds (under load most of the latency is queueing).

Each pass starts with an excluded warm-up. Both children are always terminated (SIGTERM, then SIGKILL after
5 s). `policy` (see POLICIES) chooses what the proxy screens; the default, "full", is the shipped rule set with a
new recipient per message.

Rates depend on what else the machine is doing (the figures include the load average); the proxy's CPU time
per message is the steadier figure.

``python -m smppguard.bench -n 200000 -b 4 -w 10 [--policy full|off] [--json]`` is ``smppguard bench`` too.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path
from typing import Any

from .fill import fill_store
from .load import (
    LOW_LOAD_MESSAGES,
    LOW_LOAD_WARMUP,
    WARMUP,
    Numbers,
    alternating,
    loop_name,
    run_loop,
    run_pass,
    timed_pass,
)
from .procs import START_TIMEOUT, BenchError, Rig, met, report, rig, rss_kb, start_proxy, start_sink, stop_child, tail
from .soak import format_soak, run_soak

#: Targets on the 2-core reference machine (4 binds, window 10), for the relay with every rule off ...
TARGET_RATE = 25_000
TARGET_CPU_US = 30.0
#: ... and with every rule on and 1M blacklist entries + 1M opt-outs loaded (`compare`): start-up with the lists.
#: The rules-on / off throughput ratio and the memory at the end are measured and printed, against no target:
#: the first targets (0.80, 300 MB) were retired, and the README gives the figures measured.
TARGET_STARTUP_S = 3.0
#: `compare`: rules-off and rules-on passes, back to back, this many times (the ratio is their median)
ROUNDS = 3

#: recipient for all: the relay plus the screening skeleton, the floor of the current bridge.
POLICIES = ("full", "off")
POLICY_TOML = {
    "full": (
        '[policy]\ndefault_region = "CN"\nfallback_zone = "Asia/Shanghai"\n\n'
        # quiet hours run in full for every message but fire one minute a day (the figures do not depend on
        # the time of day the benchmark runs; at night the shipped windows would schedule every message)
        '[rules.quiet_hours]\naction = "schedule"\nwindows = [{ start = "04:00", end = "04:01" }]\n'),
    "off": (
        '[policy]\ndefault_region = "CN"\nfallback_zone = "Asia/Shanghai"\nconfirmation_patterns = []\n\n'
        + "".join(f"[rules.{name}]\nenabled = false\n\n" for name in
                  ("invalid", "dead", "blacklist", "optout", "consent", "content", "frequency", "quiet_hours"))),
}

async def _bench(sink: tuple[str, int], proxy: tuple[str, int], proxy_pid: int, messages: int, binds: int,
                 window: int, warmup: int, low_load: int, policy: str,
                 numbers: Numbers | None = None) -> dict[str, Any]:
    numbers = numbers or Numbers()
    distinct = policy == "full"
    direct = await run_pass(sink, messages, binds, window, warmup, numbers, distinct)
    proxied = await run_pass(proxy, messages, binds, window, warmup, numbers, distinct, pid=proxy_pid)
    low_direct = low_proxied = None
    if low_load:
        low_warm = min(LOW_LOAD_WARMUP, low_load)
        low_direct = await run_pass(sink, low_load, 1, 1, low_warm, numbers, distinct)
        low_proxied = await run_pass(proxy, low_load, 1, 1, low_warm, numbers, distinct)
    cpu = proxied.pop("cpu_seconds")
    rss = proxied.pop("rss_kb")
    result: dict[str, Any] = {
        "messages": messages,
        "binds": binds,
        "window": window,
        "warmup": warmup,
        "policy": policy,
        "loop": loop_name(),
        "load_average": list(os.getloadavg()),  # other work on the machine skews the rates
        "direct": direct,
        "proxied": proxied,
        "ratio": proxied["rate"] / direct["rate"] if direct["rate"] else 0.0,
        "added_p50_us": proxied["p50_us"] - direct["p50_us"],
        "added_p99_us": proxied["p99_us"] - direct["p99_us"],
        "proxy_cpu_seconds": cpu,
        "proxy_cpu_us_per_msg": cpu / messages * 1e6 if messages else 0.0,
        "proxy_rss_kb": rss,
        "low_load": None,
        "targets": {"rate": TARGET_RATE, "cpu_us_per_msg": TARGET_CPU_US},
    }
    if low_direct is not None and low_proxied is not None:
        result["low_load"] = {
            "messages": low_load,
            "binds": 1,
            "window": 1,
            "direct": low_direct,
            "proxied": low_proxied,
            "added_p50_us": low_proxied["p50_us"] - low_direct["p50_us"],
            "added_p99_us": low_proxied["p99_us"] - low_direct["p99_us"],
        }
    return result


def run_bench(messages: int = 100_000, binds: int = 4, window: int = 10, *, warmup: int = WARMUP,
              low_load: int = LOW_LOAD_MESSAGES, policy: str = "full", lists: int = 0,
              history: int = 0, optouts: int | None = None, recipients: int = 0) -> dict[str, Any]:
    """Start a sink SMSC and the proxy as child processes, measure both ways, stop both; return the figures.
    `policy` is one of POLICIES (see there); `lists` pre-loads that many blacklist entries and as many opt-outs
    into the proxy's store, and the proxy's start-up time (launch to accepting binds) is reported."""
    check_sizes(messages, binds, window)
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {', '.join(POLICIES)}")
    with rig("bench", window, POLICY_TOML[policy]) as r:
        started = set_up(r, lists, history, optouts, recipients)
        result = run_loop(_bench(r.sink, r.proxy, started["proxy_pid"], messages, binds, window, warmup, low_load,
                                  policy))
        result.update(started)
        return result


def check_sizes(messages: int, binds: int, window: int) -> None:
    if messages < 1 or binds < 1 or window < 1:
        raise ValueError("messages, binds and window must be at least 1")


def set_up(r: Rig, lists: int, history: int, optouts: int | None, recipients: int) -> dict[str, Any]:
    """Fill the store of rig `r` (see fill_store) when asked, start its sink and its proxy; return their pids, what
    was loaded, the store's figures and the proxy's start-up (time and memory)."""
    filled = bool(lists or history or optouts)
    result_store: dict[str, Any] = {}
    if filled:
        started = time.monotonic()
        fill_store(r.db, lists, history=history, recipients=recipients, optouts=optouts)
        result_store["fill_s"] = time.monotonic() - started
    sink = r.start(start_sink(r.dir, r.sink))
    size = lists + (lists if optouts is None else optouts) + history
    if filled:  # the first start reads the tables and writes the snapshot file; the one measured reads that
        result_store.update(_first_start(r.dir, r.proxy, START_TIMEOUT + size / 50_000, size))
    launched = time.monotonic()
    proxy = r.start(start_proxy(r.dir, r.proxy, START_TIMEOUT + size / 50_000))
    startup_s = time.monotonic() - launched
    return {"sink_pid": sink.pid, "proxy_pid": proxy.pid, "lists": lists,
            "optouts": lists if optouts is None else optouts, "history": history, "store": result_store,
            "proxy_startup_s": startup_s, "proxy_startup_rss_kb": rss_kb(proxy.pid)}


def _format_store(s: dict[str, Any]) -> list[str]:
    if not s:
        return []
    first = f"first start (the tables)   {s['first_startup_s']:.2f} s, {s['first_startup_rss_kb'] / 1024:.0f} MiB; "
    if "snapshot_mb" in s:
        first += (f"snapshot file ({s['snapshot_mb']:.0f} MB) written {s['snapshot_written_after_s']:.1f} s after "
                  f"launch, {s['snapshot_peak_rss_kb'] / 1024:.0f} MiB at most meanwhile")
    else:
        first += "no snapshot file (too small a store to need one: each start reads the tables)"
    return [f"store filled in            {s['fill_s']:.1f} s", first]


def _first_start(tmpdir: Path, proxy_addr: tuple[str, int], timeout: float, size: int) -> dict[str, Any]:
    """Start the proxy on a store it has never opened, wait for the snapshot file it then writes (if the store's
    `size` entries are enough for one: app.SNAPSHOT_WORTH), stop it; return how long each took and its memory
    meanwhile."""
    from ..app import SNAPSHOT_WORTH
    from ..store import snapshot

    launched = time.monotonic()
    proxy = start_proxy(tmpdir, proxy_addr, timeout)
    try:
        first = {"first_startup_s": time.monotonic() - launched, "first_startup_rss_kb": rss_kb(proxy.pid)}
        if size < SNAPSHOT_WORTH:
            return first
        path = snapshot.path_for(tmpdir / "smppguard.db")
        peak = 0
        while not path.exists():
            if proxy.poll() is not None or time.monotonic() - launched > 10 * timeout:
                raise BenchError(f"the proxy wrote no snapshot file:\n{tail(tmpdir / 'proxy.log')}")
            peak = max(peak, rss_kb(proxy.pid))
            time.sleep(0.2)
        first["snapshot_written_after_s"] = time.monotonic() - launched
        first["snapshot_peak_rss_kb"] = peak
        first["snapshot_mb"] = path.stat().st_size / 1e6
    finally:
        stop_child(proxy)
    return first


# --- output -------------------------------------------------------------------------------------------------

def format_result(r: dict[str, Any]) -> str:
    d, p = r["direct"], r["proxied"]
    lines = [
        f"smppguard bench: {r['messages']:,} submit_sm over {r['binds']} binds, window {r['window']} "
        f"(warm-up {r['warmup']:,} excluded; policy {r.get('policy', 'full')}; load generator on {r['loop']})",
        "",
        f"{'':24}{'direct':>12}{'proxied':>12}{'proxy adds':>12}",
        f"{'rate (submit_sm/s)':24}{d['rate']:>12,.0f}{p['rate']:>12,.0f}{'':>12}",
        f"{'latency p50 (µs)':24}{d['p50_us']:>12,.0f}{p['p50_us']:>12,.0f}{r['added_p50_us']:>12,.0f}",
        f"{'latency p99 (µs)':24}{d['p99_us']:>12,.0f}{p['p99_us']:>12,.0f}{r['added_p99_us']:>12,.0f}",
        f"{'error responses':24}{d['errors']:>12,}{p['errors']:>12,}",
    ]
    low = r.get("low_load")
    if low:
        ld, lp = low["direct"], low["proxied"]
        lines += [
            "",
            f"low load: {low['messages']:,} submit_sm, 1 bind, window 1",
            f"{'latency p50 (µs)':24}{ld['p50_us']:>12,.0f}{lp['p50_us']:>12,.0f}{low['added_p50_us']:>12,.0f}",
            f"{'latency p99 (µs)':24}{ld['p99_us']:>12,.0f}{lp['p99_us']:>12,.0f}{low['added_p99_us']:>12,.0f}",
        ]
    lines += [
        "",
        f"proxied / direct rate    {r['ratio']:.2f}",
        f"proxy CPU per submit_sm  {r['proxy_cpu_us_per_msg']:.1f} µs  "
        f"({r['proxy_cpu_seconds']:.2f} s for {r['messages']:,}; submit_sm + its response)",
        f"proxy RSS                {r['proxy_rss_kb'] / 1024:.1f} MiB at the end, "
        f"{r.get('proxy_startup_rss_kb', 0) / 1024:.1f} MiB after start-up",
        f"proxy start-up           {r.get('proxy_startup_s', 0):.2f} s (launch to accepting binds; "
        f"{r.get('lists', 0):,} blacklist entries + {r.get('optouts', 0):,} opt-outs + {r.get('history', 0):,} "
        "sends of send history loaded)",
        *_format_store(r.get("store") or {}),
    ]
    if r.get("policy") == "off":  # the relay's own targets; with rules on, `compare` judges against the relay
        t = r.get("targets", {"rate": TARGET_RATE, "cpu_us_per_msg": TARGET_CPU_US})
        lines.append(f"targets (4 binds, window 10, 2 cores): >= {t['rate']:,} submit_sm/s proxied: "
                     f"{met(p['rate'] >= t['rate'])}; <= {t['cpu_us_per_msg']:.0f} µs proxy CPU per message: "
                     f"{met(r['proxy_cpu_us_per_msg'] <= t['cpu_us_per_msg'])}")
    if "load_average" in r:
        lines.append(f"load average at the end  {' '.join(f'{x:.2f}' for x in r['load_average'])} "
                     f"(on {os.cpu_count()} cores; other work skews the rates)")
    return "\n".join(lines)


def run_comparison(messages: int = 100_000, binds: int = 4, window: int = 10, *, lists: int = 0, history: int = 0,
                   warmup: int = WARMUP, low_load: int = LOW_LOAD_MESSAGES, optouts: int | None = None,
                   recipients: int = 0, rounds: int = ROUNDS) -> dict[str, Any]:
    """The relay with every rule off, and every rule on with `lists` entries loaded, in one run on one machine:
    what the policy costs, as the ratio of the two proxied rates.

    Both proxies run side by side, and their passes alternate, `rounds` times: off then on, on then off, and so
    on. Each round's ratio compares two passes run back to back, and the figure is their median: a shared host's
    speed drifts by a fifth within minutes, which a single pass of each (minutes apart) takes for the rules'
    cost. The first round also measures the direct rates and the low-load latency of each (the off proxy's
    low-load passes and the direct pass of the on proxy's sink come between its two proxied passes)."""
    check_sizes(messages, binds, window)
    if rounds < 1:
        raise ValueError("rounds must be at least 1")
    with rig("bench-off", window, POLICY_TOML["off"]) as r_off, \
            rig("bench-full", window, POLICY_TOML["full"]) as r_full:
        off_started = set_up(r_off, 0, 0, None, 0)
        full_started = set_up(r_full, lists, history, optouts, recipients)
        off, full, passes = run_loop(_compare(r_off, off_started["proxy_pid"], r_full, full_started["proxy_pid"],
                                               messages, binds, window, warmup, low_load, rounds))
        off.update(off_started)
        full.update(full_started)
    return {"off": off, "full": full, **rounds_figures(passes),
            "targets": {"startup_s": TARGET_STARTUP_S}}


def rounds_figures(passes: list[tuple[dict, dict]]) -> dict[str, Any]:
    """From each round's (off, full) passes (their rate and CPU per message): the rounds with their ratio, the
    median ratio and the median CPU per message of each side."""
    ratios = [f["rate"] / o["rate"] if o["rate"] else 0.0 for o, f in passes]
    return {"rounds": [{"off": o, "full": f, "ratio": x} for (o, f), x in zip(passes, ratios, strict=True)],
            "throughput_ratio": statistics.median(ratios),
            "cpu_us_per_msg": {"off": statistics.median(o["cpu_us_per_msg"] for o, _f in passes),
                               "full": statistics.median(f["cpu_us_per_msg"] for _o, f in passes)}}


async def _compare(r_off: Rig, off_pid: int, r_full: Rig, full_pid: int, messages: int, binds: int, window: int,
                   warmup: int, low_load: int, rounds: int) -> tuple[dict, dict, list[tuple[dict, dict]]]:
    """The first round (each proxy's whole _bench), then rounds of one proxied pass each, in alternating order.
    Returns the two _bench results and, per round, the (off, full) proxied passes: rate and CPU per message."""
    off_numbers, full_numbers = Numbers(), Numbers()
    off = await _bench(r_off.sink, r_off.proxy, off_pid, messages, binds, window, warmup, low_load, "off",
                       off_numbers)
    full = await _bench(r_full.sink, r_full.proxy, full_pid, messages, binds, window, warmup, low_load, "full",
                        full_numbers)
    passes = [({"rate": off["proxied"]["rate"], "cpu_us_per_msg": off["proxy_cpu_us_per_msg"]},
               {"rate": full["proxied"]["rate"], "cpu_us_per_msg": full["proxy_cpu_us_per_msg"]})]
    passes += await alternating(
        lambda: timed_pass(r_off.proxy, off_pid, off_numbers, False, messages, binds, window, warmup),
        lambda: timed_pass(r_full.proxy, full_pid, full_numbers, True, messages, binds, window, warmup),
        rounds, first_round=1)
    return off, full, passes


def format_comparison(c: dict[str, Any]) -> str:
    off, full, t = c["off"], c["full"], c["targets"]
    rss_mb = full["proxy_rss_kb"] * 1024 / 1e6
    cpu_off, cpu_full = c["cpu_us_per_msg"]["off"], c["cpu_us_per_msg"]["full"]
    rounds = c["rounds"]
    each = ", ".join(f"{r['ratio']:.2f}" for r in rounds)
    return "\n".join([
        format_result(off), "", format_result(full), "",
        f"what the rules cost ({full.get('lists', 0):,} blacklist entries + {full.get('optouts', 0):,} opt-outs, "
        f"a new recipient per message; {len(rounds)} round{'s' if len(rounds) > 1 else ''}: a pass of each, "
        "back to back, in alternating order)",
        f"proxied rate, rules on / off   {c['throughput_ratio']:.2f}"
        + (f"  (the median of {each})" if len(rounds) > 1 else ""),
        f"proxy CPU per submit_sm        {cpu_full:.1f} µs on, {cpu_off:.1f} µs off (+{cpu_full - cpu_off:.1f} µs)"
        + (", medians" if len(rounds) > 1 else ""),
        f"proxy RSS at the end           {rss_mb:.0f} MB",
        f"proxy start-up                 {full.get('proxy_startup_s', 0):.2f} s (target <= {t['startup_s']:.0f} s: "
        f"{met(full.get('proxy_startup_s', 0) <= t['startup_s'])})",
    ])


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m smppguard.bench",
                                     description="Measure the proxy: the same load straight to a sink SMSC "
                                                 "and through the proxy.")
    parser.add_argument("-n", "--messages", type=int, default=100_000, help="submit_sm per pass")
    parser.add_argument("-b", "--binds", type=int, default=4, help="concurrent transmitter binds")
    parser.add_argument("-w", "--window", type=int, default=10, help="outstanding requests per bind")
    parser.add_argument("--policy", choices=POLICIES + ("compare",), default="full",
                        help="full: the shipped rules, a new recipient per message (default); off: no rules; "
                             "compare: off, then full, and the ratio of the two")
    parser.add_argument("--lists", type=int, default=0,
                        help="pre-load this many blacklist entries and as many opt-outs into the store")
    parser.add_argument("--rounds", type=int, default=ROUNDS,
                        help="with --policy compare: the off and full passes, back to back, this many times")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--soak", type=int, metavar="REFUSALS",
                        help="instead: resend to --recipients numbers until this many are refused; report the store's "
                             "growth and check the audit's counts")
    parser.add_argument("--recipients", type=int, default=50_000, help="with --soak: how many recipients")
    args = parser.parse_args(argv)
    return run_command(args.messages, args.binds, args.window, args.policy, args.lists, args.json, args.soak,
                       args.recipients, rounds=args.rounds)


def run_command(messages: int, binds: int, window: int, policy: str, lists: int, as_json: bool,
                soak: int | None = None, recipients: int = 50_000, history: int = 0, *, optouts: int | None = None,
                history_recipients: int = 0, rounds: int = ROUNDS) -> int:
    """`smppguard bench` and `python -m smppguard.bench`: measure, print the figures (or one line saying what
    went wrong), return the exit status."""
    def measure() -> dict[str, Any]:
        if soak is not None:
            return run_soak(soak, recipients, binds, window)
        if policy == "compare":
            return run_comparison(messages, binds, window, lists=lists, history=history, optouts=optouts,
                                  recipients=history_recipients, rounds=rounds)
        return run_bench(messages=messages, binds=binds, window=window, policy=policy, lists=lists, history=history,
                         optouts=optouts, recipients=history_recipients)

    formatter = format_soak if soak is not None else format_comparison if policy == "compare" else format_result
    return report(measure, formatter, as_json)



