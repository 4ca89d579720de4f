"""`smppguard run` refuses to start with one clear line when its port is taken."""

import socket

from click.testing import CliRunner

from smppguard.cli import main


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
