"""`smppguard bench --sync`, tiny: the figures are there and sane, and a broker that dies or a second node that
does not receive ends the run in an error, not in figures."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from helpers import alive
from mosquitto import need_mosquitto
from smppguard.bench.procs import BenchError
from smppguard.bench.sync import format_sync, run_sync_comparison

pytestmark = pytest.mark.subprocess


@pytest.fixture(autouse=True)
def _mosquitto():
    need_mosquitto()


def test_the_sync_benchmark_prints_both_rates_the_ratio_the_cpu_and_the_delay():
    # 2,000 messages: the CPU is read in clock ticks (10 ms), and 300 messages (~8 ms of the proxy's) were 0 or 1
    done = subprocess.run([sys.executable, "-m", "smppguard", "bench", "--sync", "-n", "2000", "-b", "2", "-w", "5",
                           "--rounds", "1", "--json"], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    r = json.loads(done.stdout)
    assert len(r["rounds"]) == 1
    for side in ("off", "on"):
        assert r[side]["rate"] > 0 and r[side]["cpu_us_per_msg"] > 0
        assert not alive(r[side]["proxy_pid"]) and not alive(r[side]["sink_pid"])
    assert not alive(r["on"]["peer_pid"]) and not alive(r["on"]["broker_pid"])
    assert r["throughput_ratio"] == pytest.approx(r["on"]["rate"] / r["off"]["rate"])
    # every send the measured node accepted (its warm-up's too: 2,000 by default) counted once by the other node
    assert r["sends_accepted"] == r["sends_received"] == 2000 + 2000
    assert r["rounds"][0]["on"]["node_counts"]["sends_published"] == 4000
    assert 0 <= r["delay_p50_s"] <= r["delay_p99_s"] < 5
    assert r["on"]["peer_cpu_us_per_send"] > 0

    text = format_sync(r)
    for line in ("rate (submit_sm/s)", "proxy CPU per submit_sm", "rate, sync on / off", "propagation delay",
                 "sends counted by bench-b       4,000 of the 4,000"):
        assert line in text


def test_a_broker_that_dies_before_the_passes_is_an_error():
    with pytest.raises(BenchError, match=r"bench-b counted 0 of the 400 sends bench-a accepted.*NOT running"):
        run_sync_comparison(300, 2, 5, warmup=100, rounds=1, settle=3,
                            before_passes=lambda rig: rig["broker"].stop(kill=True))


def test_a_second_node_that_does_not_receive_is_an_error():
    # connected to the same broker, but it accepts rows only from a node that is not the measured one
    with pytest.raises(BenchError, match=r"bench-b counted 0 of the 400 sends bench-a accepted.*broker .* running"):
        run_sync_comparison(300, 2, 5, warmup=100, rounds=1, settle=3, peer_mqtt='peers = ["someone-else"]')


def test_a_second_node_that_dies_is_an_error():
    with pytest.raises(BenchError, match=r"no /status"):
        run_sync_comparison(300, 2, 5, warmup=100, rounds=1, settle=3,
                            before_passes=lambda rig: rig["peer"].kill())
