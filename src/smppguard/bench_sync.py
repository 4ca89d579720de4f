"""What sharing with other sidecars costs the hot path, and a soak of three sidecars through a broker that dies.

`run_sync_comparison` (``smppguard bench --sync``): the same full policy as ``smppguard bench`` (a new recipient
per message), through two proxies side by side: one alone ([mqtt] off) and one with [mqtt] url pointing at a
Mosquitto started here on a free port of 127.0.0.1, with a second node subscribed to it, so every send the
measured proxy accepts is published and received. Their passes alternate (`--rounds`), as ``--policy compare``
does, and the figure is the median of the rounds' rate ratios (on / off). After each of the sync-on proxy's
passes, off the clock, the second node must have counted every send the measured one accepted (its /status),
within a bounded wait: a dead broker, or a node that does not receive, ends the run in an error instead of
figures that would flatter the sync. The propagation delay (p50, p99) is the second node's own figure.

Both proxies, the second node and the broker share the machine's cores with the load generator: on one host the
second node's work (which on a real deployment runs on another host) comes out of the sync-on passes' rate. Its
CPU time and the broker's are reported per send, so the two costs can be told apart.

`run_soak` (``scripts/soak-sync``): three `smppguard run` daemons (nodes a, b, c, each its own store and built-in
simulator) through one Mosquitto that is killed at random moments and started again empty, under submit_sm load
to recipients they share, list changes on each node (the CLI), imports, and "TD" replies injected through each
simulator. After a settle period every node must hold the same lists and count the same sends per recipient and
origin; it exits 1 on any difference.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
import tomllib
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable

from .bench import (
    _POLICY_TOML,
    ROUNDS,
    WARMUP,
    BenchError,
    Rig,
    _check,
    _cpu_seconds,
    _free_port,
    _Numbers,
    _run_loop,
    _set_up,
    _tail,
    _terminated_cleanly,
    _wait_accepting,
    alternating,
    report,
    rig,
    start_proxy,
    timed_pass,
)

#: The target: the sync-on proxy's rate at least this share of the sync-off proxy's (median of the rounds).
TARGET_SYNC_RATIO = 0.90
#: How long the second node may take, after a pass, to count every send of it (plus a second per 5,000 sends).
SETTLE_S = 30.0
CONNECT_TIMEOUT = 15.0
NODE, PEER = "bench-a", "bench-b"


# --- a broker of our own ------------------------------------------------------------------------------------

def mosquitto_binary() -> str:
    for candidate in (shutil.which("mosquitto"), "/usr/sbin/mosquitto"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise BenchError("mosquitto is not installed (apt-get install mosquitto): the sync benchmark needs a broker")


class Broker:
    """Mosquitto on a free port of 127.0.0.1, no persistence: `restart()` kills it and starts it again with no
    memory of sessions, queued or retained messages, as a broker that crashed without a disk does."""

    def __init__(self, folder: Path, port: int | None = None):
        self.binary = mosquitto_binary()
        self.port = port or _free_port()
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.conf = folder / "mosquitto.conf"
        self.log = folder / "mosquitto.log"
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                             "log_dest stderr\nlog_type error\nlog_type warning\n")
        self.proc: subprocess.Popen | None = None
        self.restarts = 0

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([self.binary, "-c", str(self.conf)], stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=log)
        try:
            _wait_accepting(self.proc, ("127.0.0.1", self.port), "broker (mosquitto)", self.log)
        except BaseException:
            self.stop(kill=True)
            raise

    def stop(self, kill: bool = False) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self, down_for: float = 0.0) -> None:
        self.stop(kill=True)
        time.sleep(down_for)
        self.start()
        self.restarts += 1

    def __enter__(self) -> "Broker":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


# --- a node's /status -----------------------------------------------------------------------------------------

def metrics_address(config: Path) -> tuple[str, int]:
    host, _, port = tomllib.loads(config.read_text())["metrics"]["address"].rpartition(":")
    return host, int(port)


def status(address: tuple[str, int], timeout: float = 5.0) -> dict[str, Any]:
    """A daemon's /status (JSON); BenchError when it does not answer."""
    try:
        with urllib.request.urlopen(f"http://{address[0]}:{address[1]}/status", timeout=timeout) as resp:
            return json.loads(resp.read())
    except (OSError, ValueError) as e:
        raise BenchError(f"no /status from {address[0]}:{address[1]}: {e}") from None


def sync_status(address: tuple[str, int]) -> dict[str, Any]:
    s = status(address).get("sync")
    if not s:
        raise BenchError(f"the daemon on {address[0]}:{address[1]} has no sync ([mqtt] url is empty?)")
    return s


def mqtt_toml(url: str, node: str, hello_interval: str = "1s", extra: str = "") -> str:
    return f'\n[mqtt]\nurl = "{url}"\nnode = "{node}"\nhello_interval = "{hello_interval}"\n{extra}\n'


# --- the benchmark ----------------------------------------------------------------------------------------------

class _Peer:
    """The sync-on rig's second node: its own store and listener, the same sink upstream."""

    def __init__(self, r: Rig, url: str, window: int, extra: str):
        from .bench import proxy_toml

        self.dir = r.dir / "peer"
        self.dir.mkdir()
        self.address = ("127.0.0.1", _free_port())
        (self.dir / "proxy.toml").write_text(proxy_toml(self.address, r.sink, window, self.dir / "smppguard.db",
                                                        _POLICY_TOML["full"] + mqtt_toml(url, PEER, extra=extra)))
        self.metrics = metrics_address(self.dir / "proxy.toml")
        self.proc = r.start(start_proxy(self.dir, self.address))


def _wait_connected(named: dict[str, tuple[str, int]], broker: Broker, logs: dict[str, Path]) -> None:
    deadline = time.monotonic() + CONNECT_TIMEOUT
    while True:
        waiting = [n for n, a in named.items() if not sync_status(a)["connected"]]
        if not waiting:
            return
        if time.monotonic() > deadline:
            raise BenchError(f"node {', '.join(waiting)} did not connect to the broker {broker.url} within "
                             f"{CONNECT_TIMEOUT:.0f} s (broker {'running' if broker.alive() else 'NOT running'}):\n"
                             + "\n".join(_tail(logs[n], 5) for n in waiting))
        time.sleep(0.1)


def _received(peer: tuple[str, int], node: tuple[str, int], expected: int, timeout: float,
              broker: Broker) -> tuple[dict, dict]:
    """Wait until the second node has counted `expected` sends of the measured one; BenchError when it has not
    within `timeout`, or counted more (a send counted twice would overrun the frequency cap as surely as a lost
    one lets it be exceeded)."""
    deadline = time.monotonic() + timeout
    while True:
        p = sync_status(peer)
        got = p["counts"].get("sends_received", 0)
        if got == expected:
            return p, sync_status(node)
        if got > expected or time.monotonic() > deadline:
            a = sync_status(node)
            raise BenchError(
                f"{PEER} counted {got:,} of the {expected:,} sends {NODE} accepted"
                + (" (some twice)" if got > expected else f" within {timeout:.0f} s of the pass's end")
                + f": broker {broker.url} {'running' if broker.alive() else 'NOT running'}; {NODE} connected "
                  f"{a['connected']}, published {a['counts'].get('sends_published', 0):,}, waiting "
                  f"{a['sends_waiting']:,}; {PEER} connected {p['connected']}, knows of nodes "
                  f"{[n['node'] for n in p['nodes']] or 'none'}")
        time.sleep(0.1)


def run_sync_comparison(messages: int = 100_000, binds: int = 4, window: int = 10, *, warmup: int = WARMUP,
                        rounds: int = ROUNDS, settle: float = SETTLE_S, peer_mqtt: str = "",
                        before_passes: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """The full policy with [mqtt] off and on, alternating passes `rounds` times; see the module's text.
    `peer_mqtt` adds lines to the second node's [mqtt] table, and `before_passes` is called with the broker and
    the second node's process once all is up (both for the tests: a node that does not receive, a dead broker)."""
    _check(messages, binds, window)
    if rounds < 1:
        raise ValueError("rounds must be at least 1")
    full = _POLICY_TOML["full"]
    with _terminated_cleanly(), tempfile.TemporaryDirectory(prefix="smppguard-bench-sync-") as tmp, \
            Broker(Path(tmp)) as broker, \
            rig("bench-sync-off", window, full) as r_off, \
            rig("bench-sync-on", window, full + mqtt_toml(broker.url, NODE)) as r_on:
        off_started = _set_up(r_off, 0, 0, None, 0)
        on_started = _set_up(r_on, 0, 0, None, 0)
        peer = _Peer(r_on, broker.url, window, peer_mqtt)
        node_metrics = metrics_address(r_on.dir / "proxy.toml")
        _wait_connected({NODE: node_metrics, PEER: peer.metrics}, broker,
                        {NODE: r_on.dir / "proxy.log", PEER: peer.dir / "proxy.log"})
        if before_passes is not None:
            before_passes({"broker": broker, "peer": peer.proc})
        off_pid, on_pid = off_started["proxy_pid"], on_started["proxy_pid"]
        off_numbers, on_numbers = _Numbers(), _Numbers()
        per_pass = messages + (max(warmup, binds) if warmup else 0)

        def no_errors(p: dict, which: str) -> dict:
            if p["errors"]:
                raise BenchError(f"{p['errors']:,} of {messages:,} submit_sm refused through the {which} proxy: "
                                 "with a new recipient per message, every one should be accepted")
            return p

        async def off_pass() -> dict:
            return no_errors(await timed_pass(r_off.proxy, off_pid, off_numbers, True, messages, binds, window,
                                              warmup), "sync-off")

        async def on_pass() -> dict:
            cpu0 = {"peer": _cpu_seconds(peer.proc.pid), "broker": _cpu_seconds(broker.pid or 0)}
            p = no_errors(await timed_pass(r_on.proxy, on_pid, on_numbers, True, messages, binds, window, warmup),
                          "sync-on")
            # off the clock: every send of the pass (its warm-up too) published by the node and counted by the peer
            waited = time.monotonic()
            s, a = _received(peer.metrics, node_metrics, on_numbers.next, settle + per_pass / 5000, broker)
            p["settle_s"] = time.monotonic() - waited
            p["peer_cpu_us_per_send"] = (_cpu_seconds(peer.proc.pid) - cpu0["peer"]) / per_pass * 1e6
            p["broker_cpu_us_per_send"] = (_cpu_seconds(broker.pid or 0) - cpu0["broker"]) / per_pass * 1e6
            p["delay_p50_s"], p["delay_p99_s"] = s["delay_p50_s"], s["delay_p99_s"]
            p["sends_received"] = s["counts"].get("sends_received", 0)
            p["node_counts"] = a["counts"]
            return p

        passes = _run_loop(alternating(off_pass, on_pass, rounds))
        last = sync_status(peer.metrics)
        result = {
            "messages": messages, "binds": binds, "window": window, "warmup": warmup, "policy": "full",
            "rounds": [{"off": o, "on": n, "ratio": n["rate"] / o["rate"] if o["rate"] else 0.0} for o, n in passes],
            "broker": broker.url, "mosquitto": broker.binary, "node": NODE, "peer": PEER,
            "off": {**off_started, "rate": statistics.median(o["rate"] for o, _ in passes),
                    "cpu_us_per_msg": statistics.median(o["cpu_us_per_msg"] for o, _ in passes)},
            "on": {**on_started, "peer_pid": peer.proc.pid, "broker_pid": broker.pid,
                   "rate": statistics.median(n["rate"] for _, n in passes),
                   "cpu_us_per_msg": statistics.median(n["cpu_us_per_msg"] for _, n in passes),
                   "peer_cpu_us_per_send": statistics.median(n["peer_cpu_us_per_send"] for _, n in passes),
                   "broker_cpu_us_per_send": statistics.median(n["broker_cpu_us_per_send"] for _, n in passes)},
            "sends_accepted": on_numbers.next, "sends_received": last["counts"].get("sends_received", 0),
            "delay_p50_s": last["delay_p50_s"], "delay_p99_s": last["delay_p99_s"],
            "load_average": list(os.getloadavg()),
            "targets": {"sync_ratio": TARGET_SYNC_RATIO},
        }
        result["throughput_ratio"] = statistics.median(r["ratio"] for r in result["rounds"])
        return result


def format_sync(r: dict[str, Any]) -> str:
    off, on, rounds = r["off"], r["on"], r["rounds"]
    each = ", ".join(f"{x['ratio']:.2f}" for x in rounds)
    med = " (medians)" if len(rounds) > 1 else ""

    def ms(v: float | None) -> str:
        return "-" if v is None else f"{v * 1000:,.1f} ms"

    return "\n".join([
        f"smppguard bench --sync: {r['messages']:,} submit_sm per pass over {r['binds']} binds, window "
        f"{r['window']} (warm-up {r['warmup']:,} excluded; policy full, a new recipient per message); "
        f"{len(rounds)} round{'s' if len(rounds) > 1 else ''}: a pass of each, back to back, in alternating order",
        f"sync on: [mqtt] url {r['broker']} (Mosquitto started for the run), node {r['node']} measured, node "
        f"{r['peer']} subscribed and counting every send",
        "",
        f"{'':28}{'sync off':>12}{'sync on':>12}",
        f"{'rate (submit_sm/s)':28}{off['rate']:>12,.0f}{on['rate']:>12,.0f}{med}",
        f"{'proxy CPU per submit_sm (µs)':28}{off['cpu_us_per_msg']:>12.1f}{on['cpu_us_per_msg']:>12.1f}"
        f"  (+{on['cpu_us_per_msg'] - off['cpu_us_per_msg']:.1f} µs){med}",
        "",
        f"rate, sync on / off            {r['throughput_ratio']:.2f}  "
        + (f"(the median of {each}; " if len(rounds) > 1 else "(")
        + f"target >= {r['targets']['sync_ratio']:.2f}: "
          f"{'met' if r['throughput_ratio'] >= r['targets']['sync_ratio'] else 'NOT met'})",
        f"sends counted by {r['peer']}       {r['sends_received']:,} of the {r['sends_accepted']:,} {r['node']} "
        "accepted (warm-ups included)",
        f"propagation delay              p50 {ms(r['delay_p50_s'])}, p99 {ms(r['delay_p99_s'])} "
        f"({r['peer']}'s /status: its last 4,096 send batches)",
        f"CPU per send elsewhere         {r['peer']} {on['peer_cpu_us_per_send']:.1f} µs, broker "
        f"{on['broker_cpu_us_per_send']:.1f} µs (on the same cores as the measured proxy){med}",
        f"load average at the end        {' '.join(f'{x:.2f}' for x in r['load_average'])} (on {os.cpu_count()} "
        "cores; other work skews the rates)",
    ])


def run_command(messages: int, binds: int, window: int, rounds: int, as_json: bool) -> int:
    """`smppguard bench --sync`: measure, print the figures (or what went wrong), return the exit status."""
    return report(lambda: run_sync_comparison(messages, binds, window, rounds=rounds), format_sync, as_json)
