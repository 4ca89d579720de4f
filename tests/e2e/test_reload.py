"""SIGHUP re-reads the config without dropping a bind; an invalid file is refused and the old config stays; the
sd_notify messages systemd reads (READY, RELOADING, STOPPING); and one store for one config, whatever the
working directory."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys

import pytest

from helpers import send_submit, smpplib_client, start_daemon, wait_for

pytestmark = pytest.mark.subprocess

RULES = """[store]
path = "guard.db"
[policy]
default_region = "CN"
[rules.quiet_hours]
enabled = false
[rules.frequency]
enabled = false
[rules.content]
forbidden = ["{word}"]
"""



def rewrite(config, text: str) -> None:
    # as an editor or `install` does: the listen address the harness put first stays
    first = config.read_text().split("\n", 2)[:2]
    config.write_text("\n".join(first) + "\n" + text)


@pytest.fixture
def notify_socket(tmp_path):
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(10)
    yield path, sock
    sock.close()


def test_sighup_applies_a_new_policy_to_the_same_bind_and_refuses_an_invalid_file(tmp_path, notify_socket):
    path, sock = notify_socket
    log = tmp_path / "daemon.log"
    with open(log, "w") as err:
        proc, address = start_daemon(tmp_path, RULES.format(word="casino"), stderr=err,
                                     env={"NOTIFY_SOCKET": path})
    config = tmp_path / "smppguard.toml"
    try:
        assert sock.recv(4096).decode().split("\n")[0] == "READY=1"
        c = smpplib_client(address)
        c.bind_transmitter(system_id="acme", password="pw")
        assert send_submit(c, "13800138000", "casino night").status == 0x45
        assert send_submit(c, "13800138000", "lottery night").status == 0

        rewrite(config, RULES.format(word="lottery"))
        proc.send_signal(signal.SIGHUP)
        reloading = sock.recv(4096).decode().split("\n")
        assert reloading[0] == "RELOADING=1" and reloading[1].startswith("MONOTONIC_USEC=")
        assert sock.recv(4096).decode() == "READY=1"
        wait_for(lambda: "read again and in force" in log.read_text(), what="the reload in the log")
        assert send_submit(c, "13800138001", "casino night").status == 0  # the same bind, the new rules
        assert send_submit(c, "13800138001", "lottery night").status == 0x45

        rewrite(config, RULES.format(word="lottery") + "[rulez]\nx = 1\n")
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "is not valid; the config in force stays" in log.read_text(), what="the refusal")
        assert "smppguard.toml:13: rulez: unknown table" in log.read_text()
        assert send_submit(c, "13800138002", "lottery night").status == 0x45  # still the last good config

        rewrite(config, RULES.format(word="lottery").replace('path = "guard.db"', 'path = "other.db"'))
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "these need a restart to change: [store]" in log.read_text(), what="the restart note")
        c.unbind()
        c.disconnect()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    messages = []
    sock.settimeout(1)
    try:
        while True:
            messages.append(sock.recv(4096).decode())
    except socket.timeout:
        pass
    assert "STOPPING=1" in messages
    assert proc.returncode == 0
    assert (tmp_path / "guard.db").exists() and not (tmp_path / "other.db").exists()


def test_the_same_config_finds_the_same_store_from_any_working_directory(tmp_path):
    etc, a, b = tmp_path / "etc", tmp_path / "a", tmp_path / "b"
    for d in (etc, a, b):
        d.mkdir()
    config = etc / "smppguard.toml"
    config.write_text('[store]\npath = "guard.db"\n[policy]\ndefault_region = "CN"\n')

    def cli(cwd, *args):
        return subprocess.run([sys.executable, "-m", "smppguard", *args, "--config", str(config)], cwd=cwd,
                              capture_output=True, text=True, timeout=60)
    assert cli(a, "blacklist", "add", "13800138000").returncode == 0
    listed = cli(b, "blacklist", "list")
    assert listed.returncode == 0 and "+8613800138000" in listed.stdout
    assert (etc / "guard.db").exists() and not any(p.suffix == ".db" for d in (a, b) for p in d.iterdir())
    config.write_text(f'[store]\npath = "{tmp_path / "missing" / "guard.db"}"\n')
    out = cli(a, "blacklist", "list")
    assert out.returncode == 1 and f"its folder {tmp_path / 'missing'} does not exist" in out.stderr
    assert not (tmp_path / "missing").exists()


def test_the_watchdog_is_fed_at_half_the_interval_systemd_sets(tmp_path, notify_socket):
    path, sock = notify_socket
    proc, _address = start_daemon(tmp_path, '[store]\npath = "guard.db"\n',
                                  env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"})
    try:
        got = [sock.recv(4096).decode() for _ in range(4)]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert got[0].startswith("READY=1")
    assert got.count("WATCHDOG=1") >= 2


def test_sighup_compares_with_what_runs_names_every_error_and_sigterm_says_it_stopped(tmp_path):
    """a file that went back to the running [store] path still 'needed a restart'; an invalid file
    showed its first error only (check-config shows all); SIGTERM logged no final line."""
    log = tmp_path / "daemon.log"
    with open(log, "w") as err:
        proc, _address = start_daemon(tmp_path, RULES.format(word="casino"), stderr=err)
    config = tmp_path / "smppguard.toml"
    off = '[metrics]\naddress = ""\n[simulator]\ncontrol = ""\n'  # as start_daemon wrote them
    try:
        rewrite(config, RULES.format(word="casino").replace('path = "guard.db"', 'path = "other.db"') + off)
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "these need a restart to change: [store]" in log.read_text(), what="the restart note")
        rewrite(config, RULES.format(word="lottery") + off)  # the store as it runs again
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: log.read_text().count("read again and in force") == 2, what="the second reload")
        last = [line for line in log.read_text().splitlines() if "read again and in force" in line][-1]
        assert "restart" not in last, last
        rewrite(config, RULES.format(word="lottery") + off + "[rulez]\nx = 1\n[hold]\nmax_hold = \"soon\"\n")
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "is not valid; the config in force stays" in log.read_text(), what="the refusal")
        text = log.read_text()
        assert "rulez: unknown table" in text and "hold.max_hold: " in text
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert proc.returncode == 0
    assert log.read_text().splitlines()[-1].endswith(" INFO smppguard: stopped: the store is saved and closed")
