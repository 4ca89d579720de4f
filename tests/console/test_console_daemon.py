"""The console and the API as `smppguard run` serves them (app.py's wiring), in a child process: on the loopback
listener by default; off on a listener that is not loopback when [http] tokens is empty, with the reason in the
log and /metrics and /healthz still served; HTTPS with [http] tls_cert."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request

import pytest
from console_helpers import WRITE_TOKEN

from helpers import free_port, start_daemon, wait_for
from smppguard.config import parse_config
from smppguard.console import off_reason

pytestmark = pytest.mark.subprocess


def get(url: str, token: str | None = None, context=None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=5, context=context) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def healthy(url: str, context=None) -> bool:
    try:
        return get(url, context=context)[0] == 200
    except (urllib.error.URLError, ConnectionError):  # not listening yet
        return False


def test_console_off_reason():
    assert off_reason(parse_config('[metrics]\naddress = "127.0.0.1:9775"')) is None
    assert off_reason(parse_config('[metrics]\naddress = "[::1]:9775"')) is None
    why = off_reason(parse_config('[metrics]\naddress = "0.0.0.0:9775"'))
    assert why is not None and "not loopback" in why and "[http] tokens" in why
    assert off_reason(parse_config(f'[metrics]\naddress = "0.0.0.0:9775"\n[http]\ntokens = [{{ name = "crm", '
                                   f'token = "{WRITE_TOKEN}", access = "write" }}]')) is None
    assert off_reason(parse_config('[metrics]\naddress = ""')) == "[metrics] address is off"


def test_console_daemon_off_on_a_public_listener_without_tokens(tmp_path):
    port = free_port()
    proc, _ = start_daemon(tmp_path, f'[store]\npath = "{tmp_path / "guard.db"}"\n[metrics]\naddress = '
                                     f'"0.0.0.0:{port}"\n')
    try:
        wait_for(lambda: healthy(f"http://127.0.0.1:{port}/healthz"), what="/healthz")
        assert get(f"http://127.0.0.1:{port}/metrics")[0] == 200
        status, body = get(f"http://127.0.0.1:{port}/api/v1/numbers/8613800138000")
        assert status == 404 and b"the console and the API are off" in body
        assert get(f"http://127.0.0.1:{port}/console/")[0] == 404
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert "the console and the API are off: the listener 0.0.0.0:" in err
    assert "[http] tokens is empty" in err


def test_console_daemon_serves_the_api_over_https(tmp_path):
    from tlsca import make_pki  # the tests' own CA (openssl)

    pki_dir = tmp_path / "pki"
    pki_dir.mkdir()
    pki = make_pki(pki_dir)
    cert, key = pki.server_cert, pki.server_key
    port = free_port()
    proc, _ = start_daemon(tmp_path, f'[store]\npath = "{tmp_path / "guard.db"}"\n[metrics]\naddress = '
                                     f'"127.0.0.1:{port}"\n[http]\ntls_cert = "{cert}"\ntls_key = "{key}"\n'
                                     f'tokens = [{{ name = "crm", token = "{WRITE_TOKEN}", access = "write" }}]\n'
                                     '[policy]\ndefault_region = "CN"\n')
    try:
        context = ssl.create_default_context(cafile=str(pki.ca))
        wait_for(lambda: healthy(f"https://127.0.0.1:{port}/healthz", context), what="HTTPS /healthz")
        status, body = get(f"https://127.0.0.1:{port}/api/v1/numbers/13800138000", WRITE_TOKEN, context)
        assert status == 200 and json.loads(body)["number"] == "+8613800138000"
        with pytest.raises((urllib.error.URLError, ConnectionError)):  # plain HTTP is not spoken there
            get(f"http://127.0.0.1:{port}/healthz")
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert f"console on https://127.0.0.1:{port}/console/" in err


def test_console_daemon_sighup_puts_new_tokens_in_force(tmp_path):
    import signal

    from console_helpers import READ_TOKEN

    port = free_port()
    store = f'[store]\npath = "{tmp_path / "guard.db"}"\n[metrics]\naddress = "127.0.0.1:{port}"\n'
    old = f'[http]\ntokens = [{{ name = "crm", token = "{WRITE_TOKEN}", access = "write" }}]\n'
    new = f'[http]\ntokens = [{{ name = "desk", token = "{READ_TOKEN}", access = "read" }}]\nrate_limit = 50\n'
    log = tmp_path / "daemon.log"
    with open(log, "w") as err:
        proc, _ = start_daemon(tmp_path, store + old, stderr=err)
        try:
            url = f"http://127.0.0.1:{port}/api/v1"
            wait_for(lambda: healthy(f"http://127.0.0.1:{port}/healthz"), what="/healthz")
            assert get(url, WRITE_TOKEN)[0] == 200 and get(url, READ_TOKEN)[0] == 401
            config = tmp_path / "smppguard.toml"
            config.write_text(config.read_text().replace(old, new))
            proc.send_signal(signal.SIGHUP)
            wait_for(lambda: "read again and in force" in log.read_text(), what="the reload")
            assert "need a restart" not in log.read_text()
            assert get(url, WRITE_TOKEN)[0] == 401 and get(url, READ_TOKEN)[0] == 200
        finally:
            proc.terminate()
            proc.wait(30)
