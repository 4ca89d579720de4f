"""Smoke test of the benchmark: a sink and the proxy as child processes, tiny numbers, no timing assertions."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from helpers import alive
from smppguard.bench import load, procs
from smppguard.bench.proxy import format_comparison, format_result, rounds_figures, run_bench, run_comparison

pytestmark = pytest.mark.subprocess


def test_bench_smoke():
    r = run_bench(messages=2000, binds=2, window=5, warmup=200, low_load=200)

    for leg in ("direct", "proxied"):
        assert r[leg]["rate"] > 0
        assert r[leg]["errors"] == 0  # every submit_sm was accepted, straight and through the proxy
        for key in ("messages", "seconds", "p50_us", "p99_us"):
            assert key in r[leg]
    assert r["ratio"] > 0
    for key in ("messages", "binds", "window", "warmup", "loop", "added_p50_us", "added_p99_us",
                "proxy_cpu_seconds", "proxy_cpu_us_per_msg", "proxy_rss_kb", "targets"):
        assert key in r
    assert r["proxy_rss_kb"] > 0 and r["proxy_cpu_seconds"] > 0  # read off /proc for the proxy and its children
    low = r["low_load"]
    assert low["direct"]["errors"] == low["proxied"]["errors"] == 0
    assert "added_p50_us" in low and "added_p99_us" in low

    text = format_result(r)
    assert "proxied" in text and "proxy CPU per submit_sm" in text

    # both child processes were stopped
    assert not alive(r["sink_pid"]) and not alive(r["proxy_pid"])


def test_a_port_is_never_handed_out_twice(monkeypatch):
    """The kernel may give a just-closed port again: the sink and the proxy (and two rigs) must not share one."""
    given = iter([5001, 5001, 5002])

    class Socket:
        def __init__(self, *args):
            self.port = next(given)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def bind(self, address):
            pass

        def getsockname(self):
            return ("127.0.0.1", self.port)

    monkeypatch.setattr(procs.socket, "socket", Socket)
    assert [procs.free_port(), procs.free_port()] == [5001, 5002]


def test_a_pass_through_something_other_than_the_proxy_is_an_error(tmp_path):
    """A proxy that could not take its port exits and leaves another listener to answer: the pass says so rather
    than report the other listener's rate and a dead process's CPU time (none) as the proxy's."""
    address = ("127.0.0.1", procs.free_port())
    sink = procs.start_sink(tmp_path, address)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])  # ends at once, as a proxy whose port was taken
    try:
        deadline = time.monotonic() + 30
        while procs.running(gone.pid):  # not reaped: a zombie, as the benchmark's own child would be
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert os.path.exists(f"/proc/{gone.pid}")
        with pytest.raises(procs.BenchError, match="is not running"):
            load.run_loop(load.run_pass(address, 500, 1, 5, 0, load.Numbers(), False, pid=gone.pid))
        assert load.run_loop(load.run_pass(address, 500, 1, 5, 0, load.Numbers(), False, pid=sink.pid))
    finally:
        gone.wait()
        procs.stop_child(sink)


def test_bench_compare_alternates_rounds_of_the_relay_and_the_rules():
    c = run_comparison(messages=1000, binds=1, window=5, lists=1000, warmup=100, low_load=100, rounds=3)

    assert c["off"]["policy"] == "off" and c["full"]["policy"] == "full" and c["full"]["lists"] == 1000
    for r in (c["off"], c["full"]):
        assert r["proxied"]["errors"] == 0  # with every rule on, new recipients pass: nothing refused
        assert not alive(r["proxy_pid"]) and not alive(r["sink_pid"])
    rounds = c["rounds"]
    assert len(rounds) == 3
    # the first round is each proxy's whole run; the others one proxied pass each
    assert (rounds[0]["off"]["rate"], rounds[0]["full"]["rate"]) == (c["off"]["proxied"]["rate"],
                                                                     c["full"]["proxied"]["rate"])
    for r in rounds:
        assert r["off"]["rate"] > 0 and r["full"]["rate"] > 0 and r["full"]["cpu_us_per_msg"] > 0
        assert r["ratio"] == r["full"]["rate"] / r["off"]["rate"]
    assert len({r["full"]["rate"] for r in rounds}) == 3  # three passes, not one figure thrice
    assert rounds[1]["full"]["started"] < rounds[1]["off"]["started"]  # the order alternates
    assert rounds[2]["off"]["started"] < rounds[2]["full"]["started"]
    assert c["throughput_ratio"] == sorted(r["ratio"] for r in rounds)[1]  # the median
    text = format_comparison(c)
    assert "proxied rate, rules on / off" in text
    # the retired targets (a round's ratio may well be 0.80)
    assert not re.search(r"(≥|>=|target)\s*0\.80|300 MB", text), text
    each = ", ".join(f"{r['ratio']:.2f}" for r in rounds)
    assert f"{c['throughput_ratio']:.2f}  (the median of {each})\n" in text
    assert "25,000 submit_sm/s" in text  # the relay's own targets are judged on the rules-off pass only
    assert text.count("submit_sm/s proxied") == 1


def test_the_comparison_takes_the_median_of_the_rounds():
    passes = [({"rate": 100.0, "cpu_us_per_msg": 30.0}, {"rate": 70.0, "cpu_us_per_msg": 45.0}),
              ({"rate": 100.0, "cpu_us_per_msg": 20.0}, {"rate": 40.0, "cpu_us_per_msg": 80.0}),
              ({"rate": 80.0, "cpu_us_per_msg": 25.0}, {"rate": 40.0, "cpu_us_per_msg": 60.0})]
    f = rounds_figures(passes)
    assert [r["ratio"] for r in f["rounds"]] == [0.7, 0.4, 0.5]
    assert f["throughput_ratio"] == 0.5  # neither the first round's, nor the mean, nor the ratio of the medians
    assert f["cpu_us_per_msg"] == {"off": 25.0, "full": 60.0}
    assert f["rounds"][1]["off"] is passes[1][0]


def test_bench_compare_of_one_round_is_one_pass_of_each():
    c = run_comparison(messages=500, binds=1, window=5, lists=0, warmup=50, low_load=0, rounds=1)

    assert len(c["rounds"]) == 1
    assert c["throughput_ratio"] == c["full"]["proxied"]["rate"] / c["off"]["proxied"]["rate"]
    assert "the median" not in format_comparison(c)
    with pytest.raises(ValueError, match="rounds"):
        run_comparison(messages=500, rounds=0)


@pytest.mark.parametrize("command", [["smppguard.bench"], ["smppguard", "bench"]], ids=["module", "cli"])
def test_bench_compare_takes_its_rounds_from_the_command_line(command):
    out = subprocess.run([sys.executable, "-m", *command, "-n", "300", "-b", "1", "-w", "5", "--policy", "compare",
                          "--rounds", "2", "--json"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    c = json.loads(out.stdout)
    assert len(c["rounds"]) == 2 and c["throughput_ratio"] > 0


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(entry))
            except (FileNotFoundError, ProcessLookupError):
                pass
    return out


@pytest.mark.parametrize("command", [["smppguard.bench"], ["smppguard", "bench"]], ids=["module", "cli"])
@pytest.mark.parametrize("after_s", [0.0, 1.0])  # while starting the children; during a pass
def test_bench_stops_its_children_on_sigterm(command, after_s):
    bench = subprocess.Popen([sys.executable, "-m", *command, "-n", "10000000", "--policy", "off"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while len(children := _children(bench.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(children) == 2  # the sink and the proxy
        time.sleep(after_s)
        bench.send_signal(signal.SIGTERM)
        assert bench.wait(timeout=20) == 128 + signal.SIGTERM
        assert bench.stderr.read().decode().strip() == "terminated: the child processes stopped"
        assert not any(alive(pid) for pid in children)
    finally:
        if bench.poll() is None:
            bench.kill()
            bench.wait()


def test_soak_counts_every_refusal_once_folded_and_grows_the_store_little():
    """The short version of `smppguard bench --soak 2500000 --recipients 50000`."""
    from smppguard.bench.soak import format_soak, run_soak

    r = run_soak(refusals=20_000, recipients=500, binds=2, window=10)
    assert r["refusals_received"] == 20_000
    assert (r["audit_rows"], r["audit_count"]) == (500, 20_000)  # a row per recipient, every refusal counted
    assert r["audit_matches_per_recipient"] and r["stats_refusals"] == 20_000
    assert r["store_growth_bytes"] < 1_000_000  # a row per refusal would be about 2.5 MB
    assert "per recipient             every count = the refusals it got: yes" in format_soak(r)


def test_the_deliver_bench_counts_what_learning_learned_and_only_with_learning_on():
    """The short version of `smppguard bench --deliver 60000`."""
    from smppguard.bench.deliver import format_deliver, run_deliver

    r = run_deliver(messages=600, window=10)
    assert (r["off"]["messages"], r["on"]["messages"]) == (600, 600)
    assert (r["off"]["not_ok"], r["on"]["not_ok"]) == (0, 0)  # every deliver_sm answered OK by the receiver
    assert (r["off"]["opt_outs_learned"], r["on"]["opt_outs_learned"]) == (0, 200)  # one per "TD"
    assert "learning on / off:" in format_deliver(r)


def test_the_sink_answers_each_submit_with_a_message_id_of_its_own(tmp_path):
    """As a real SMSC does: the proxy remembers which account got each id, and that memory is part of the figures."""
    from helpers import send_submit, smpplib_client

    address = ("127.0.0.1", procs.free_port())
    sink = procs.start_sink(tmp_path, address)
    try:
        client = smpplib_client(address)
        client.bind_transmitter(system_id="acme", password="pw")
        ids = [send_submit(client, "8613800000001").message_id for _ in range(3)]
        client.unbind()
        client.disconnect()
    finally:
        procs.stop_child(sink)
    assert len(set(ids)) == 3 and all(ids), ids
