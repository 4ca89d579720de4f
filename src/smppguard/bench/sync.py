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
to recipients they share, list changes on each node (the CLI), imports, "TD" replies injected through each
simulator and receipts that say a number does not exist (dead numbers). After a settle period every node must
hold the same lists and count the same sends per recipient and origin; it exits 1 on any difference.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import random
import shutil
import signal
import sqlite3
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable

from .load import WARMUP, Numbers, alternating, run_loop, timed_pass
from .procs import (
    BenchError,
    Rig,
    cpu_seconds,
    free_port,
    report,
    rig,
    start_proxy,
    stop_child,
    tail,
    terminated_cleanly,
    wait_accepting,
)
from .proxy import POLICY_TOML, ROUNDS, check_sizes, set_up

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
        self.port = port or free_port()
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
            wait_accepting(self.proc, ("127.0.0.1", self.port), "broker (mosquitto)", self.log)
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
        from .procs import proxy_toml

        self.dir = r.dir / "peer"
        self.dir.mkdir()
        self.address = ("127.0.0.1", free_port())
        (self.dir / "proxy.toml").write_text(proxy_toml(self.address, r.sink, window, self.dir / "smppguard.db",
                                                        POLICY_TOML["full"] + mqtt_toml(url, PEER, extra=extra)))
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
                             + "\n".join(tail(logs[n], 5) for n in waiting))
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
    check_sizes(messages, binds, window)
    if rounds < 1:
        raise ValueError("rounds must be at least 1")
    full = POLICY_TOML["full"]
    with terminated_cleanly(), tempfile.TemporaryDirectory(prefix="smppguard-bench-sync-") as tmp, \
            Broker(Path(tmp)) as broker, \
            rig("bench-sync-off", window, full) as r_off, \
            rig("bench-sync-on", window, full + mqtt_toml(broker.url, NODE)) as r_on:
        off_started = set_up(r_off, 0, 0, None, 0)
        on_started = set_up(r_on, 0, 0, None, 0)
        peer = _Peer(r_on, broker.url, window, peer_mqtt)
        node_metrics = metrics_address(r_on.dir / "proxy.toml")
        _wait_connected({NODE: node_metrics, PEER: peer.metrics}, broker,
                        {NODE: r_on.dir / "proxy.log", PEER: peer.dir / "proxy.log"})
        if before_passes is not None:
            before_passes({"broker": broker, "peer": peer.proc})
        off_pid, on_pid = off_started["proxy_pid"], on_started["proxy_pid"]
        off_numbers, on_numbers = Numbers(), Numbers()
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
            cpu0 = {"peer": cpu_seconds(peer.proc.pid), "broker": cpu_seconds(broker.pid or 0)}
            p = no_errors(await timed_pass(r_on.proxy, on_pid, on_numbers, True, messages, binds, window, warmup),
                          "sync-on")
            # off the clock: every send of the pass (its warm-up too) published by the node and counted by the peer
            waited = time.monotonic()
            s, a = _received(peer.metrics, node_metrics, on_numbers.next, settle + per_pass / 5000, broker)
            p["settle_s"] = time.monotonic() - waited
            p["peer_cpu_us_per_send"] = (cpu_seconds(peer.proc.pid) - cpu0["peer"]) / per_pass * 1e6
            p["broker_cpu_us_per_send"] = (cpu_seconds(broker.pid or 0) - cpu0["broker"]) / per_pass * 1e6
            p["delay_p50_s"], p["delay_p99_s"] = s["delay_p50_s"], s["delay_p99_s"]
            p["sends_received"] = s["counts"].get("sends_received", 0)
            p["node_counts"] = a["counts"]
            return p

        passes = run_loop(alternating(off_pass, on_pass, rounds))
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


# --- the soak: three nodes, one broker that dies ------------------------------------------------------------------

SOAK_NODES = ("a", "b", "c")
SOAK_SENDER = "10690000"
SOAK_ACCOUNT = "soak"
SOAK_POOL = 50_000  # recipients 8613700000000 .. + SOAK_POOL, shared by the three nodes' load
SOAK_FIRST = 8613700000000
SOAK_CAP = 10  # sends per recipient in 30 days: reached by some recipients over half an hour
SOAK_POLICY = ('[policy]\ndefault_region = "CN"\nfallback_zone = "Asia/Shanghai"\n\n'
               '[rules.quiet_hours]\nenabled = false\n\n'
               f'[rules.frequency]\nmax = {SOAK_CAP}\nperiod = "30d"\nmin_interval = "0s"\n')
SOAK_TEXT = b"smppguard soak: spring sale, 20% off everything this week"
#: A receipt, asked for by one submit_sm in SOAK_DEAD_EVERY, says the number does not exist: it becomes dead
#: (the deliver path learns it, as it learns a TD reply), on the node that sent it and then on the others.
SOAK_RECEIPTS = 'receipt_stat = "UNDELIV"\nreceipt_err = "MK:0001"\nreceipt_delay = "0.2s"\n'
SOAK_DEAD_EVERY = 500
#: What every node must hold the same of at the end (full rows).
SOAK_TABLES = {"blacklist": "SELECT number, source, reason, added_at FROM blacklist",
               "optout": "SELECT number, scope, scope_key, source, keyword, added_at FROM optout",
               "consent": "SELECT number, scope_key, status, source, wording, granted_at, confirmed_at FROM consent",
               "dead": "SELECT number, reason, marked_at, expires_at FROM dead"}


class _SoakNode:
    def __init__(self, name: str, root: Path, broker: Broker):
        self.name = name
        self.dir = root / name
        self.dir.mkdir()
        self.config = self.dir / "smppguard.toml"
        self.db = self.dir / "guard.db"
        self.log = self.dir / "daemon.log"
        self.smpp = ("127.0.0.1", free_port())
        self.control = ("127.0.0.1", free_port())
        self.metrics = ("127.0.0.1", free_port())
        self.config.write_text(
            f'[listen]\naddress = "127.0.0.1:{self.smpp[1]}"\n\n'
            f'[simulator]\ncontrol = "127.0.0.1:{self.control[1]}"\n{SOAK_RECEIPTS}\n'
            f'[metrics]\naddress = "127.0.0.1:{self.metrics[1]}"\n\n'
            f'[store]\npath = "{self.db}"\n\n[log]\nlevel = "info"\nverdicts = "off"\n\n'
            + SOAK_POLICY + mqtt_toml(broker.url, name))
        self.proc: subprocess.Popen | None = None
        self.statuses: collections.Counter[int] = collections.Counter()
        self.accepted: collections.Counter[int] = collections.Counter()  # per recipient, what this node accepted
        self.delivers = 0
        self.mo_sent = 0
        self.skipped = 0

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if k != "SMPPGUARD_CONFIG"}
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "smppguard", "run", "--config", str(self.config)],
                                         stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                         cwd=self.dir, env=env, start_new_session=True)
        wait_accepting(self.proc, self.smpp, f"node {self.name}", self.log, 30.0)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def cli(self, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "smppguard", *args[:2], "--config", str(self.config), *args[2:]],
                              input=stdin, capture_output=True, timeout=120,
                              env={k: v for k, v in os.environ.items() if k != "SMPPGUARD_CONFIG"})


_HDR = struct.Struct(">IIII")


class _SoakClient(asyncio.Protocol):
    """One transceiver bind into a node: submit_sm to pool recipients, answers every deliver_sm (the TD replies
    and receipts the proxy passes on) and enquire_link."""

    def __init__(self, node: _SoakNode):
        from ..smpp.commands import CommandId

        self.node = node
        self.ids = CommandId
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.seq = 0
        self.outstanding: dict[int, int] = {}
        self.bound: asyncio.Future | None = None
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.lost = True
        if self.bound is not None and not self.bound.done():
            self.bound.set_exception(ConnectionError(f"node {self.node.name}: connection lost"))

    def _write(self, command_id: int, body: bytes, seq: int | None = None) -> int:
        from ..smpp.pdu import build

        if seq is None:
            self.seq += 1
            seq = self.seq
        assert self.transport is not None
        self.transport.write(build(command_id, seq, body))
        return seq

    async def bind(self) -> None:
        from ..smpp.fields import encode_body

        self.bound = asyncio.get_running_loop().create_future()
        self._write(self.ids.BIND_TRANSCEIVER, encode_body(self.ids.BIND_TRANSCEIVER, system_id=SOAK_ACCOUNT,
                                                           password="soak", system_type="", interface_version=0x34))
        status = await asyncio.wait_for(self.bound, 10)
        if status:
            raise BenchError(f"node {self.node.name}: bind_transceiver refused with 0x{status:08X}")

    def submit(self, number: int, receipt: bool = False) -> None:
        from ..smpp.fields import encode_body

        seq = self._write(self.ids.SUBMIT_SM, encode_body(
            self.ids.SUBMIT_SM, source_addr_ton=0, source_addr_npi=0, source_addr=SOAK_SENDER, dest_addr_ton=1,
            dest_addr_npi=1, destination_addr=str(number), registered_delivery=int(receipt), data_coding=0,
            short_message=SOAK_TEXT))
        self.outstanding[seq] = number

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        while len(buf) >= 16:
            length, command_id, status, seq = _HDR.unpack_from(buf)
            if len(buf) < length:
                break
            del buf[:length]
            if command_id == self.ids.SUBMIT_SM_RESP:
                number = self.outstanding.pop(seq, None)
                self.node.statuses[status] += 1
                if status == 0 and number is not None:
                    self.node.accepted[number] += 1
            elif command_id == self.ids.DELIVER_SM:
                self.node.delivers += 1
                self._write(self.ids.DELIVER_SM_RESP, b"\x00", seq)
            elif command_id == self.ids.ENQUIRE_LINK:
                self._write(self.ids.ENQUIRE_LINK_RESP, b"", seq)
            elif command_id == self.ids.BIND_TRANSCEIVER_RESP and self.bound is not None and not self.bound.done():
                self.bound.set_result(status)
            elif command_id == self.ids.GENERIC_NACK:
                self.node.statuses[-1] += 1


def _pool_number(rng: random.Random) -> int:
    return SOAK_FIRST + rng.randrange(SOAK_POOL)


def _post_mo(control: tuple[str, int], number: int) -> None:
    req = urllib.request.Request(f"http://{control[0]}:{control[1]}/mo", method="POST",
                                 data=json.dumps({"from": f"+{number}", "to": SOAK_SENDER, "text": "TD"}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        resp.read()


def _read_only(db: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    conn.execute("PRAGMA busy_timeout = 10000")
    return conn


def soak_state(nodes: list[_SoakNode]) -> dict[str, Any]:
    """Per node: the rows of each list table, and per origin the sends per recipient it counts."""
    out: dict[str, Any] = {}
    for n in nodes:
        conn = _read_only(n.db)
        try:
            lists = {t: set(conn.execute(q).fetchall()) for t, q in SOAK_TABLES.items()}
            sends: dict[str, dict[int, int]] = {}
            for origin in (m.name for m in nodes):
                where = "node IS NULL" if origin == n.name else "node = ?"
                args = () if origin == n.name else (origin,)
                sends[origin] = dict(conn.execute(f"SELECT number, COUNT(*) FROM send_history WHERE {where} "
                                                  "GROUP BY number", args).fetchall())
        finally:
            conn.close()
        out[n.name] = {"lists": lists, "sends": sends}
    return out


def _keys(table: str, rows: set[tuple]) -> set:
    width = {"optout": 3, "consent": 2}.get(table, 1)
    return {r[:width] for r in rows}


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v * 1000:,.1f} ms"


def soak_differences(state: dict[str, Any]) -> list[str]:
    """What is not the same on every node (empty: all the same)."""
    names = sorted(state)
    first = names[0]
    diffs = []
    for table in SOAK_TABLES:
        for other in names[1:]:
            x, y = state[first]["lists"][table], state[other]["lists"][table]
            if x != y:
                diffs.append(f"{table}: {first} has {len(x):,} rows, {other} {len(y):,}; {len(x - y):,} only on "
                             f"{first} (e.g. {sorted(x - y)[:2]}), {len(y - x):,} only on {other} (e.g. "
                             f"{sorted(y - x)[:2]}); by key {len(_keys(table, x) ^ _keys(table, y)):,} differ")
    for origin in names:
        base = state[origin]["sends"][origin]
        for other in names:
            if other == origin:
                continue
            seen = state[other]["sends"][origin]
            if seen != base:
                wrong = [k for k in set(base) | set(seen) if base.get(k, 0) != seen.get(k, 0)]
                diffs.append(f"sends of {origin}: {origin} counts {sum(base.values()):,}, {other} "
                             f"{sum(seen.values()):,}; {len(wrong):,} recipients differ (e.g. "
                             + ", ".join(f"{k}: {base.get(k, 0)} vs {seen.get(k, 0)}" for k in sorted(wrong)[:3])
                             + ")")
    return diffs


async def _soak(nodes: list[_SoakNode], broker: Broker, minutes: float, rate: float, settle: float,
                seed: int, say: Callable[[str], None]) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    rng = random.Random(seed)
    end = time.monotonic() + minutes * 60
    clients: dict[str, _SoakClient] = {}
    cli_results: collections.Counter[str] = collections.Counter()
    cli_failures: list[str] = []
    kills: list[tuple[float, float]] = []
    optouts_made: list[int] = []
    started = time.monotonic()

    async def connect(n: _SoakNode) -> _SoakClient:
        _, c = await loop.create_connection(lambda: _SoakClient(n), *n.smpp)
        await c.bind()
        return c

    for n in nodes:
        clients[n.name] = await connect(n)

    async def load(n: _SoakNode) -> None:
        tick = 0.1
        per_tick = rate * tick
        owed = 0.0
        while time.monotonic() < end:
            await asyncio.sleep(tick)
            c = clients[n.name]
            if c.lost:
                if not n.alive():
                    raise BenchError(f"node {n.name} exited ({n.proc.returncode if n.proc else '?'}):\n"
                                     f"{tail(n.log)}")
                clients[n.name] = c = await connect(n)
            owed += per_tick
            k = int(owed)
            owed -= k
            for _ in range(k):
                if len(c.outstanding) >= 200:
                    n.skipped += 1
                    continue
                c.submit(_pool_number(rng), rng.randrange(SOAK_DEAD_EVERY) == 0)

    async def cli(n: _SoakNode, *args: str, ok: tuple[int, ...] = (0,), stdin: bytes | None = None) -> None:
        done = await asyncio.to_thread(n.cli, *args, stdin=stdin)
        what = " ".join(args[:2])
        cli_results[what] += 1
        if done.returncode not in ok:
            cli_failures.append(f"{n.name}: smppguard {' '.join(args)} -> {done.returncode}: "
                                f"{(done.stderr or done.stdout).decode(errors='replace').strip()[-300:]}")

    async def changes(n: _SoakNode, import_at: float) -> None:
        imported = False
        while time.monotonic() < end:
            await asyncio.sleep(rng.uniform(5, 15))
            if time.monotonic() >= end:
                return
            if not imported and time.monotonic() >= import_at:
                imported = True  # a few thousand numbers: some of the shared pool, the rest new
                numbers = rng.sample(range(SOAK_POOL), 1000)
                rows = [f"+{SOAK_FIRST + x},carrier,soak import {n.name}" for x in numbers]
                rows += [f"+86139{rng.randrange(10**8):08d},complaint,soak import {n.name}" for _ in range(3000)]
                await cli(n, "blacklist", "import", "--silent", "-", stdin=("\n".join(rows) + "\n").encode())
                continue
            number = _pool_number(rng)
            kind = rng.choices(["black", "optout", "unoptout", "consent", "revoke", "unblack"],
                               [4, 4, 2, 2, 1, 1])[0]
            if kind == "black":
                await cli(n, "blacklist", "add", f"+{number}", "--source", rng.choice(["complaint", "manual"]),
                          "--reason", f"soak on {n.name}")
            elif kind == "optout":
                optouts_made.append(number)
                await cli(n, "optout", "add", f"+{number}", "--scope", "sender", "--key", SOAK_SENDER,
                          "--keyword", "TD")
            elif kind == "unoptout" and optouts_made:  # one made on any node: the removal races its add
                await cli(n, "optout", "remove", f"+{rng.choice(optouts_made)}", "--scope", "sender", "--key",
                          SOAK_SENDER, ok=(0, 1))
            elif kind == "consent":
                await cli(n, "consent", "grant", f"+{number}", "--source", f"soak {n.name}", "--confirmed")
            elif kind == "revoke":
                await cli(n, "consent", "revoke", f"+{number}", ok=(0, 1))
            elif kind == "unblack":
                await cli(n, "blacklist", "remove", f"+{number}", "--reason", "soak", ok=(0, 1))

    async def replies(n: _SoakNode) -> None:
        while time.monotonic() < end:
            await asyncio.sleep(rng.uniform(2, 6))
            try:
                await asyncio.to_thread(_post_mo, n.control, _pool_number(rng))
                n.mo_sent += 1
            except (OSError, ValueError) as e:
                cli_failures.append(f"{n.name}: POST /mo: {e}")

    async def killer() -> None:
        while True:
            await asyncio.sleep(rng.uniform(45, 180))
            if time.monotonic() >= end - 30:
                return
            down = rng.uniform(0, 8)
            await asyncio.to_thread(broker.restart, down)
            kills.append((round(time.monotonic() - started, 1), round(down, 1)))
            say(f"[{time.monotonic() - started:7.0f} s] broker killed, started again empty after {down:.1f} s "
                f"(restart {broker.restarts})")

    async def progress() -> None:
        while time.monotonic() < end:
            await asyncio.sleep(60)
            sent = sum(sum(n.statuses.values()) for n in nodes)
            say(f"[{time.monotonic() - started:7.0f} s] {sent:,} submit_sm answered, "
                f"{sum(n.mo_sent for n in nodes)} TD replies, {sum(cli_results.values())} list changes, "
                f"{broker.restarts} broker restarts")
            for n in nodes:
                if not n.alive():
                    raise BenchError(f"node {n.name} exited:\n{tail(n.log)}")

    span = minutes * 60
    work = [load(n) for n in nodes] + [replies(n) for n in nodes] + [killer(), progress()]
    work += [changes(n, started + span * (0.2 + 0.25 * i)) for i, n in enumerate(nodes)]
    tasks_ = [asyncio.ensure_future(w) for w in work]
    try:
        done, _ = await asyncio.wait(tasks_, return_when=asyncio.FIRST_EXCEPTION)
        for t in done:
            t.result()
    finally:
        for t in tasks_:
            t.cancel()
        await asyncio.gather(*tasks_, return_exceptions=True)
    # the load's last answers, then the settle period: no new change; the nodes catch up with each other
    await asyncio.sleep(2)
    for c in clients.values():
        if c.transport is not None:
            c.transport.close()
    say(f"[{time.monotonic() - started:7.0f} s] load and changes stopped; settling (up to {settle:.0f} s)")
    settled_at = time.monotonic()
    state = diffs = None
    while True:
        await asyncio.sleep(10)
        state = await asyncio.to_thread(soak_state, nodes)
        diffs = soak_differences(state)
        if not diffs and time.monotonic() - settled_at >= 20 or time.monotonic() - settled_at >= settle:
            break
    statuses = {n.name: sync_status(n.metrics) for n in nodes}
    return {"state": state, "differences": diffs, "settle_s": time.monotonic() - settled_at, "kills": kills,
            "cli": dict(cli_results), "cli_failures": cli_failures, "statuses": statuses}


def run_soak(minutes: float = 30.0, rate: float = 100.0, settle: float = 180.0, seed: int | None = None,
             say: Callable[[str], None] = print) -> int:
    """scripts/soak-sync: the soak (see the module's text); prints what it did and found; 0 when every node ends
    with the same lists and the same sends, 1 otherwise."""
    seed = seed if seed is not None else random.randrange(2**31)
    root = Path(tempfile.mkdtemp(prefix="smppguard-soak-sync-"))
    broker = Broker(root / "broker")
    nodes = [_SoakNode(name, root, broker) for name in SOAK_NODES]
    say(f"soak-sync: {minutes:g} min, {rate:g} submit_sm/s into each of nodes {', '.join(SOAK_NODES)}, "
        f"{SOAK_POOL:,} shared recipients, seed {seed}; folder {root}")
    failed = True
    try:
        broker.start()
        for n in nodes:
            n.start()
        say(f"broker {broker.url}; nodes " + ", ".join(f"{n.name} smpp {n.smpp[1]} control {n.control[1]} "
                                                      f"metrics {n.metrics[1]}" for n in nodes))
        deadline = time.monotonic() + CONNECT_TIMEOUT
        while not all(sync_status(n.metrics)["connected"] for n in nodes):
            if time.monotonic() > deadline:
                raise BenchError("the nodes did not all connect to the broker")
            time.sleep(0.2)
        limit = minutes * 60 + settle + 300

        async def main() -> dict[str, Any]:
            task = asyncio.current_task()
            assert task is not None
            for sig in (signal.SIGINT, signal.SIGTERM):
                asyncio.get_running_loop().add_signal_handler(sig, task.cancel)
            return await asyncio.wait_for(_soak(nodes, broker, minutes, rate, settle, seed, say), limit)

        try:
            r = asyncio.run(main())
        except asyncio.CancelledError:
            say("interrupted: stopping everything")
            return 130
        except TimeoutError:
            say(f"error: the soak did not end within {limit:.0f} s")
            return 1
        failed = _soak_report(r, nodes, broker, say)
        return 1 if failed else 0
    except BenchError as e:
        say(f"error: {e}")
        return 1
    finally:
        for n in nodes:
            if n.proc is not None:
                stop_child(n.proc)
        broker.stop()
        if failed:
            say(f"logs and stores kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def _soak_report(r: dict[str, Any], nodes: list[_SoakNode], broker: Broker, say: Callable[[str], None]) -> bool:
    state = r["state"]
    say("")
    say(f"broker restarts (killed, started again empty): {broker.restarts}  at s (down s): "
        + ", ".join(f"{at:.0f} ({down:.1f})" for at, down in r["kills"]))
    say("list changes through the CLI: " + ", ".join(f"{k} {v}" for k, v in sorted(r["cli"].items())))
    for n in nodes:
        s = r["statuses"][n.name]
        answered = sum(n.statuses.values())
        refused = {f"0x{k:02X}" if k >= 0 else "nack": v for k, v in sorted(n.statuses.items()) if k}
        local = sum(state[n.name]["sends"][n.name].values())
        say(f"node {n.name}: {answered:,} submit_sm answered, {n.statuses[0]:,} accepted (in its store: {local:,}), "
            f"refused {refused}, {n.skipped:,} not sent (window full); {n.mo_sent} TD replies injected, "
            f"{n.delivers} deliver_sm passed on (replies and receipts)")
        say(f"        sync delay p50 {_ms(s['delay_p50_s'])}, p99 {_ms(s['delay_p99_s'])}; connects "
            f"{s['counts'].get('connects', 0)}, asked changes {s['counts'].get('asked_changes', 0)}, asked sends "
            f"{s['counts'].get('asked_sends', 0)}, lag " + ", ".join(f"{x['node']} {x['lag_changes']}"
                                                                      for x in s["nodes"])
            + (f"; behind: {s['behind']}" if s["behind"] else ""))
    first = state[nodes[0].name]["lists"]
    say("lists (rows on each node): " + ", ".join(
        f"{t} " + "/".join(f"{len(state[n.name]['lists'][t]):,}" for n in nodes) for t in first))
    totals = collections.Counter()
    for origin in (n.name for n in nodes):
        for number, count in state[origin]["sends"][origin].items():
            totals[number] += count
    over = [c - SOAK_CAP for c in totals.values() if c > SOAK_CAP]
    say(f"sends: {sum(totals.values()):,} to {len(totals):,} recipients; the cap ({SOAK_CAP}) overrun for "
        f"{len(over)} recipients" + (f", by at most {max(over)}" if over else ""))
    problems = list(r["differences"])
    for n in nodes:
        if n.statuses[0] != sum(state[n.name]["sends"][n.name].values()):
            problems.append(f"node {n.name} accepted {n.statuses[0]:,} submit_sm but holds "
                            f"{sum(state[n.name]['sends'][n.name].values()):,} sends of its own")
    for f in r["cli_failures"]:
        problems.append(f"failed: {f}")
    if problems:
        say(f"\nFAILED after {r['settle_s']:.0f} s of settling:")
        for p in problems:
            say(f"  - {p}")
        return True
    say(f"\nOK: every node holds the same blacklist, opt-outs, consent and dead numbers, and counts the same sends "
        f"per recipient of each origin (settled in {r['settle_s']:.0f} s)")
    return False


def soak_main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="scripts/soak-sync", description=(
        "Three sidecars (nodes a, b, c) through one Mosquitto that is killed at random moments and started again "
        "empty, under load, list changes and TD replies on every node; exits 1 unless all end the same."))
    parser.add_argument("--minutes", type=float, default=30.0, help="how long the load runs (default 30)")
    parser.add_argument("--rate", type=float, default=100.0, help="submit_sm a second into each node (default 100)")
    parser.add_argument("--settle", type=float, default=180.0,
                        help="at most this long after the load for the nodes to agree (default 180 s)")
    parser.add_argument("--seed", type=int, help="the random choices' seed (default: a new one, printed)")
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.rate <= 0 or args.settle < 20:
        parser.error("--minutes and --rate must be positive, --settle at least 20")
    return run_soak(args.minutes, args.rate, args.settle, args.seed, say=lambda s: print(s, flush=True))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(soak_main())
