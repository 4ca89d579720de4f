"""`smppguard run` refuses to start, or stops, with one clear line that says why."""

import socket
import sqlite3

import pytest
from click.testing import CliRunner

from helpers import start_daemon
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
    store = tmp_path / "guard.db"
    daemon, _address = start_daemon(tmp_path, f'[simulator]\ncontrol = ""\n[store]\npath = "{store}"\n'
                                              '[policy]\ndefault_region = "CN"\n')
    try:
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
