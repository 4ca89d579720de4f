"""`smppguard bench --against REV`, tiny: against this very revision, both sides are there with figures alike; the
revision is built once and found again; a table the revision does not know is left out of its config."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from smppguard.bench import against
from smppguard.bench.procs import BenchError

pytestmark = pytest.mark.subprocess

REPO = Path(__file__).resolve().parent.parent


def _bench(cache: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "smppguard", "bench", "--against", "HEAD", "-b", "1", "-w", "5",
                           "--json", *args], capture_output=True, text=True, timeout=300, cwd=REPO,
                          env={**os.environ, "XDG_CACHE_HOME": str(cache)})


@pytest.mark.skipif(not (REPO / ".git").exists(), reason="needs the git checkout")
def test_against_its_own_revision_both_sides_run_the_same_scenario_and_alike(tmp_path):
    done = _bench(tmp_path, "-n", "1500", "--rounds", "2")
    assert done.returncode == 0, done.stderr
    assert "building in" in done.stderr
    r = json.loads(done.stdout)
    assert r["scenario"] == "default" and len(r["rounds"]) == 2 and r["dropped"] == []
    # the order alternates: old first in the first round, new first in the second
    assert r["rounds"][0]["old"]["started"] < r["rounds"][0]["new"]["started"]
    assert r["rounds"][1]["new"]["started"] < r["rounds"][1]["old"]["started"]
    for p in r["rounds"]:
        for side in ("old", "new"):
            f = p[side]
            assert f["rate"] > 0 and f["cpu_us_per_msg"] > 0
            # the daemon and its commit process, both measured: at idle and at the peak of the load
            assert f["idle_daemon_kb"] > 0 and f["idle_children_kb"] > 0
            assert f["peak_total_kb"] >= f["peak_daemon_kb"] > 0 and f["peak_children_kb"] > 0
            # PSS counts the pages the two share once: less than their RSS together, more than the daemon's share
            assert f["peak_daemon_kb"] / 2 < f["peak_pss_kb"] < f["peak_total_kb"]
            assert 0 < f["idle_pss_kb"] < f["idle_total_kb"]
    # the same code on both sides: its memory is the same to a few MB, its CPU per message within a factor
    # (the rates of a host running two test processes are not compared)
    assert 0.85 < r["ratio"]["idle_total_kb"] < 1.15
    assert 0.85 < r["ratio"]["peak_total_kb"] < 1.15
    assert 1 / 3 < r["ratio"]["cpu_us_per_msg"] < 3
    assert r["ratio"]["rate"] == pytest.approx(statistics.median(p["new"]["rate"] / p["old"]["rate"]
                                                                 for p in r["rounds"]))
    text = against.format_against(r)
    for line in ("old 1     new 1     old 2     new 2", "new / old", "CPU per message (µs)",
                 "idle RSS, commit process (MB)", "peak PSS, daemon + children (MB)"):
        assert line in text

    # the lists scenario, on the revision built above (found again, not built anew)
    done = _bench(tmp_path, "-n", "1000", "--rounds", "1", "--lists", "3000")
    assert done.returncode == 0, done.stderr
    assert "built before" in done.stderr and "building in" not in done.stderr
    r = json.loads(done.stdout)
    assert r["scenario"] == "lists" and r["lists"] == 3000
    for side in ("old", "new"):
        f = r["rounds"][0][side]
        for key in ("import_s", "first_start_s", "rate", "restart_s", "restart_total_kb", "stop_s"):
            assert f[key] > 0, key
    text = against.format_against(r)
    assert "restart after the burst (s)" in text and "latency p99 under load (µs)" in text


def test_an_unknown_revision_is_an_error_and_builds_nothing(tmp_path):
    with pytest.raises(BenchError, match="no such revision"):
        against.build("no-such-revision-here", repo=REPO, cache=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_table_the_revision_does_not_know_is_left_out_of_its_config(tmp_path):
    """An older daemon rejects a table it does not have yet ([metrics], say): the run goes on without it."""
    fake = tmp_path / "python"  # stands for an installation whose check-config knows no [metrics]
    fake.write_text("#!/bin/sh\nif grep -q '^\\[metrics\\]' \"$5\"; then echo \"$5:12: metrics: unknown table\" >&2;"
                    " exit 1; fi\nexit 0\n")
    fake.chmod(0o755)
    config = tmp_path / "proxy.toml"
    config.write_text('[listen]\naddress = "127.0.0.1:1"\n\n[metrics]\naddress = "127.0.0.1:2"\n\n'
                      '[store]\npath = "x.db"\n\n[rules.quiet_hours]\naction = "schedule"\n')
    assert against.config_for(str(fake), config) == ["metrics"]
    assert config.read_text() == ('[listen]\naddress = "127.0.0.1:1"\n\n[store]\npath = "x.db"\n\n'
                                  '[rules.quiet_hours]\naction = "schedule"\n')
    fake.write_text("#!/bin/sh\necho 'bad config: store: path must be a file' >&2\nexit 1\n")
    with pytest.raises(BenchError, match="not accepted"):
        against.config_for(str(fake), config)


def test_the_ratios_are_medians_of_each_round_for_rate_and_cpu():
    rounds = [{"old": {"rate": 100.0, "cpu_us_per_msg": 50.0}, "new": {"rate": 90.0, "cpu_us_per_msg": 40.0}},
              {"old": {"rate": 50.0, "cpu_us_per_msg": 80.0}, "new": {"rate": 60.0, "cpu_us_per_msg": 80.0}},
              {"old": {"rate": 80.0, "cpu_us_per_msg": 60.0}, "new": {"rate": 40.0, "cpu_us_per_msg": 90.0}}]
    for p in rounds:
        for side in ("old", "new"):
            p[side].update({k: 1.0 for k, *_ in against.FIGURES["default"] if k not in p[side]})
    s = against.summary("default", rounds)
    assert s["ratio"]["rate"] == 0.9  # the median of 0.9, 1.2 and 0.5; not 60 / 80
    assert s["ratio"]["cpu_us_per_msg"] == 1.0  # of 0.8, 1.0, 1.5
    assert s["median"]["old"]["rate"] == 80.0 and s["median"]["new"]["rate"] == 60.0
    rounds[1]["old"]["idle_children_kb"] = 0  # a revision with no commit process: no ratio, not 0 or infinity
    assert against.summary("default", rounds)["ratio"]["idle_children_kb"] is None
