"""The shipped systemd unit: notify type, reload by SIGHUP, the check before start, hardening that
`systemd-analyze security` rates 2.5 or better, and a system call filter the daemon runs under."""

from __future__ import annotations

import ctypes.util
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import children, proc_stat, send_submit, smpplib_client, start_daemon, wait_for
from smppguard.bench.systemd import StartWatch

UNIT = Path(__file__).parents[1] / "systemd" / "smppguard.service"
SECCOMP = Path(__file__).parent / "seccomp.py"
SLOWLOAD = Path(__file__).parent / "slowload.py"


def settings() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key, []).append(value)
    return out


def test_the_unit_is_a_notify_service_that_reloads_by_sighup_and_checks_its_config_first():
    s = settings()
    assert s["Type"] == ["notify"] and s["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert s["ExecStartPre"][0].endswith("check-config --config /etc/smppguard/smppguard.toml")
    assert s["Restart"] == ["on-failure"] and s["UMask"] == ["0077"] and s["StateDirectory"] == ["smppguard"]
    assert "WatchdogSec" in s


def test_the_start_timeout_outlasts_the_daemons_first_extension_and_each_extension_outlasts_the_next_message():
    """The daemon's first EXTEND_TIMEOUT_USEC comes EXTEND_EVERY after its load began: the unit's TimeoutStartSec
    must wait longer than that, and each extension must reach past the next message."""
    from smppguard import sdnotify

    (timeout,) = settings()["TimeoutStartSec"]
    assert float(timeout) >= 90 > 2 * sdnotify.EXTEND_EVERY
    assert sdnotify.EXTEND_BY >= 2 * sdnotify.EXTEND_EVERY
    assert sdnotify.STALL > sdnotify.EXTEND_BY


def systemd_analyze() -> str:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        if os.environ.get("SMPPGUARD_REQUIRE_KANNEL"):  # scripts/run-tests installs it with the rest
            pytest.fail("systemd-analyze is missing (Debian package systemd)")
        pytest.skip("systemd-analyze is not installed")
    return analyze


def test_systemd_analyze_rates_the_unit_2_5_or_better():
    analyze = systemd_analyze()
    out = subprocess.run([analyze, "security", "--offline=true", "--no-pager", str(UNIT)], capture_output=True,
                         text=True, timeout=60)
    m = re.search(r"Overall exposure level for smppguard\.service: (\d+\.\d+)", out.stdout + out.stderr)
    assert m, out
    assert float(m.group(1)) <= 2.5, out.stdout


def _nice_values(pid: int) -> dict[int, int]:
    """Each thread's nice value."""
    return {int(tid): int(proc_stat(pid, int(tid))[16]) for tid in os.listdir(f"/proc/{pid}/task")}


@pytest.mark.subprocess
@pytest.mark.skipif(sys.platform != "linux", reason="seccomp is Linux's")
def test_the_daemon_runs_under_the_units_system_call_filter_and_lowers_its_threads_priority(tmp_path):
    """The unit's SystemCallFilter= kills a process at the first call it does not allow, unless
    SystemCallErrorNumber= makes the call fail instead: a library's optional call (numpy's mbind) must not kill
    the daemon, and the calls that lower the priority of its store threads and commit process ([store]
    background_nice, commit_idle) must be let through. Here the daemon runs under the very filter the unit
    describes, and relays a message."""
    systemd_analyze()
    if ctypes.util.find_library("seccomp") is None:
        if os.environ.get("SMPPGUARD_REQUIRE_KANNEL"):
            pytest.fail("libseccomp is missing (Debian package libseccomp2, a dependency of systemd)")
        pytest.skip("libseccomp is not installed")
    daemon, address = start_daemon(tmp_path, '[store]\npath = "guard.db"\n[policy]\ndefault_region = "CN"\n'
                                              '[rules.quiet_hours]\nenabled = false\n',
                                   wrapper=(sys.executable, str(SECCOMP), str(UNIT), "--"))
    try:
        client = smpplib_client(address)
        try:
            client.bind_transmitter(system_id="acme", password="pw")
            assert send_submit(client, "8613800138000").status == 0
        finally:
            client.disconnect()
        # the store's threads run 10 below the loop (the default [store] background_nice), and its commit process
        # in the idle scheduling class ([store] commit_idle)
        # (relative to the loop's own: under `nice -n 5 pytest` the loop runs at 5 and the store's threads at 15)
        loop_nice = _nice_values(daemon.pid)[daemon.pid]
        assert loop_nice == os.getpriority(os.PRIO_PROCESS, 0)  # the loop keeps the priority it was started with
        below = min(19, loop_nice + 10)
        assert wait_for(lambda: below in _nice_values(daemon.pid).values(), what=f"a thread at nice {below}")
        wait_for(lambda: sqlite3.connect(tmp_path / "guard.db").execute(
            "SELECT count(*) FROM send_history").fetchone()[0] == 1, what="the send saved")
        (child,) = children(daemon.pid)
        assert proc_stat(child)[38] == "5"  # SCHED_IDLE
    finally:
        daemon.send_signal(signal.SIGTERM)
        _out, err = daemon.communicate(timeout=30)
    assert daemon.returncode == 0, err


@pytest.mark.subprocess
def test_a_start_longer_than_the_start_timeout_is_never_killed_while_its_load_moves(tmp_path):
    """A store whose lists are read from the tables (no snapshot) at a pace that takes the load well past the
    start timeout, with systemd's intervals scaled down alike (tests/slowload.py): a 3 s start timeout, the daemon
    asking for 2 s more every 0.5 s, a load of 21 steps of 0.3 s each. Before each deadline an extension comes,
    each STATUS= says how many of the blacklist's numbers are read, and READY=1 comes at the end."""
    from smppguard.store import lists
    from smppguard.store.db import connect

    db = connect(str(tmp_path / "guard.db"))
    lists.add_blacklist(db, range(8613900000000, 8613900020000), source="carrier")
    db.close()
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    systemd = StartWatch(sock, timeout=3.0)
    daemon, _address = start_daemon(tmp_path, '[store]\npath = "guard.db"\n', env={"NOTIFY_SOCKET": path},
                                    wrapper=(sys.executable, str(SLOWLOAD), "0.3", "1000", "0.5", "2", "--"))
    try:
        systemd.thread.join(timeout=30)
    finally:
        daemon.send_signal(signal.SIGTERM)
        _out, err = daemon.communicate(timeout=30)
        sock.close()
    assert daemon.returncode == 0, err
    assert systemd.killed_at is None, (f"systemd would have killed it {systemd.killed_at - systemd.launched:.1f} s "
                                       f"after launch: {systemd.messages}")
    assert 0 < systemd.least_left < systemd.timeout  # every message came before its deadline, some near one
    assert systemd.ready_at is not None and systemd.ready_at - systemd.launched > systemd.timeout + 1, \
        "the load was not slow enough to need an extension"
    extensions = [fields for _at, fields in systemd.messages if "EXTEND_TIMEOUT_USEC" in fields]
    assert len(extensions) >= 6 and all(f["EXTEND_TIMEOUT_USEC"] == "2000000" for f in extensions)
    read = [int(m.group(1)) * (1000 if m.group(2) else 1) for f in extensions
            if (m := re.fullmatch(r"loading blacklist (\d+)(k?)/20k", f.get("STATUS", "")))]
    assert len(read) >= 3 and read == sorted(read) and read[0] < read[-1], extensions
    assert "loading blacklist" in err  # the log says how far it is too
