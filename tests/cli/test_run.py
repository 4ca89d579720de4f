"""`smppguard run` refuses to start, or stops, with one clear line that says why."""

import socket
import sqlite3
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from smppguard.cli import main
from smppguard.store.migrations import MIGRATIONS


def test_run_port_in_use_names_the_setting(tmp_path):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    cfg = tmp_path / "smppguard.toml"
    cfg.write_text(f'[listen]\naddress = "127.0.0.1:{port}"\n[upstream]\naddress = "127.0.0.1:9"\n'
                   f'[store]\npath = "{tmp_path / "guard.db"}"\n')
    try:
        result = CliRunner().invoke(main, ["run", "--config", str(cfg)])
    finally:
        taken.close()
    assert result.exit_code == 1
    assert f"cannot listen on 127.0.0.1:{port} ([listen] address)" in result.output
    assert "Traceback" not in result.output


@pytest.mark.subprocess
def test_run_exits_with_an_error_when_a_newer_smppguard_migrates_the_store(tmp_path):
    """A non-zero exit is what makes systemd (Restart=on-failure) start the upgraded daemon."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store = tmp_path / "guard.db"
    cfg = tmp_path / "smppguard.toml"
    cfg.write_text(f'[listen]\naddress = "127.0.0.1:{port}"\n[simulator]\ncontrol = ""\n'
                   f'[store]\npath = "{store}"\n[policy]\ndefault_region = "CN"\n')
    daemon = subprocess.Popen([sys.executable, "-m", "smppguard", "run", "--config", str(cfg)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert daemon.poll() is None and time.monotonic() < deadline, "the daemon did not start"
                time.sleep(0.05)
        with sqlite3.connect(store) as db:
            db.execute("INSERT INTO schema_migrations VALUES (?, 'm_from_a_newer_version', 0)",
                       (len(MIGRATIONS) + 1,))
        _out, err = daemon.communicate(timeout=20)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.communicate()
    assert daemon.returncode == 1
    assert "migrated by a newer smppguard while this one ran" in err
    assert "Traceback" not in err
