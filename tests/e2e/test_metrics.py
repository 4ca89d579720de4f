"""Metrics, health and status of a running `smppguard run`, scraped over HTTP as Prometheus and a load balancer
would: the series after traffic (a content refusal counted under its rule, no phone number anywhere), /healthz
200 and then 503 with the reason while another process write-locks the store past the bound, and `smppguard
status`."""

from __future__ import annotations

import json
import re
import socket
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from helpers import free_port, send_submit, smpplib_client, start_daemon, wait_for

pytestmark = pytest.mark.subprocess

RECIPIENT = "13800138000"


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def series(text: str, name: str) -> dict[str, float]:
    """{labels: value} of one metric in Prometheus text."""
    out = {}
    for line in text.splitlines():
        m = re.match(rf"{name}(\{{[^}}]*\}})? (\S+)$", line)
        if m:
            out[m.group(1) or ""] = float(m.group(2))
    return out



@pytest.fixture
def daemon(tmp_path):
    port = free_port()
    proc, address = start_daemon(tmp_path, f"""[store]
path = "{tmp_path / 'guard.db'}"
max_unsaved_age = "1s"
[metrics]
address = "127.0.0.1:{port}"
[policy]
default_region = "CN"
[rules.quiet_hours]
enabled = false
[rules.content]
forbidden = ["casino"]
""")
    wait_for(lambda: _listening(port), what="the metrics listener")  # it starts just after the SMPP listener
    try:
        yield proc, address, port, tmp_path
    finally:
        proc.terminate()
        proc.wait(30)


def test_metrics_count_verdicts_by_rule_with_no_number_in_any_label(daemon):
    proc, address, port, _tmp = daemon
    c = smpplib_client(address)
    c.bind_transceiver(system_id="acme", password="pw")
    assert send_submit(c, RECIPIENT, "Big casino night").status == 0x45
    assert send_submit(c, RECIPIENT, "Winter sale").status == 0
    assert send_submit(c, "12", "Winter sale").status != 0  # not a number: the invalid rule
    status, text = get(port, "/metrics")
    assert status == 200
    submits = series(text, "smppguard_submits_total")
    assert submits['{account="acme",rule="content",verdict="reject"}'] == 1.0
    assert submits['{account="acme",rule="",verdict="allow"}'] == 1.0
    assert submits['{account="acme",rule="invalid",verdict="reject"}'] == 1.0
    assert series(text, "smppguard_binds_up") == {'{account="acme",leg="downstream",state="bound_trx"}': 1.0,
                                                  '{account="acme",leg="upstream",state="bound_trx"}': 1.0}
    assert series(text, "smppguard_decision_seconds_count") == {"": 3.0}
    for name in ("smppguard_store_unsaved_rows", "smppguard_store_commits_total",
                 "smppguard_store_commits_by_writer_total",
                 "smppguard_changelog_tail_age_seconds", "smppguard_hold_queue_messages",
                 'smppguard_hold_ends_total', "smppguard_window_in_flight", "smppguard_up_seconds"):
        assert series(text, name), name
    assert RECIPIENT not in text and "8613800138000" not in text
    c.unbind()
    c.disconnect()


def test_healthz_is_503_with_the_reason_while_the_store_is_locked_past_the_bound(daemon):
    proc, address, port, tmp = daemon
    assert get(port, "/healthz") == (200, json.dumps({"status": "ok", "problems": []}) + "\n")
    c = smpplib_client(address)
    c.bind_transmitter(system_id="acme", password="pw")
    lock = sqlite3.connect(tmp / "guard.db", isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
    try:
        assert send_submit(c, RECIPIENT, "Winter sale").status == 0  # a send row the store now owes
        status, body = wait_for(lambda: (r := get(port, "/healthz"))[0] == 503 and r, what="503")
        problems = json.loads(body)["problems"]
        assert any(p.startswith("the store writer is behind") for p in problems), problems
        out = subprocess.run([sys.executable, "-m", "smppguard", "status", "--config", str(tmp / "smppguard.toml")],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 3 and out.stdout.startswith("UNHEALTHY"), out
        assert "the store writer is behind" in out.stdout
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    wait_for(lambda: get(port, "/healthz")[0] == 200, what="200 again")
    out = subprocess.run([sys.executable, "-m", "smppguard", "status", "--config", str(tmp / "smppguard.toml")],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out
    assert out.stdout.startswith("healthy")
    assert re.search(r"^  acme +127\.0\.0\.1:\d+ +bound_tx +upstream bound_tx +window 0/10$", out.stdout, re.M), out
    c.disconnect()


def test_status_says_when_no_daemon_answers(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text(f'[metrics]\naddress = "127.0.0.1:{free_port()}"\n')
    out = subprocess.run([sys.executable, "-m", "smppguard", "status", "--config", str(config)], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 1 and "no daemon answers at http://127.0.0.1:" in out.stderr


def test_the_grafana_dashboard_asks_only_for_series_the_daemon_serves():
    from pathlib import Path

    from smppguard.metrics import Collector, Metrics, State

    served = {f.name for f in Collector(State(Metrics())).collect()}
    dashboard = json.loads((Path(__file__).parents[2] / "config" / "grafana-dashboard.json").read_text())
    asked = {name for p in dashboard["panels"] for t in p["targets"]
             for name in re.findall(r"smppguard_[a-z_]+", t["expr"])}
    known = served | {f"{n}_total" for n in served} | {f"{n}_bucket" for n in served}
    # families built only when their source exists (a store, a hold queue) count as served too
    known |= {"smppguard_store_unsaved_rows", "smppguard_store_behind", "smppguard_store_commits_total",
              "smppguard_store_commit_failures_total", "smppguard_hold_queue_messages", "smppguard_owed_deliveries",
              "smppguard_hold_ends_total"}
    assert asked and asked <= known, asked - known
