"""TLS on the listener (optionally with client certificates) and to the SMSC, with a throwaway CA
(tests/tlsca.py): senders bind over TLS, the proxy verifies the SMSC's certificate, and one it cannot verify is
an SMSC it does not bind to."""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys

import pytest

from helpers import Stack, make_config
from rawsmsc import RawSmsc
from smppguard.smpp.commands import CommandId
from smppguard.smpp.fields import encode_body
from smppguard.smpp.pdu import build
from tlsca import make_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


def tls_client(address, pki, cert: bool = False) -> ssl.SSLSocket:
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    if cert:
        ctx.load_cert_chain(str(pki.client_cert), str(pki.client_key))
    sock = socket.create_connection(address, timeout=5)
    return ctx.wrap_socket(sock, server_hostname="localhost")


def bind(sock, system_id: str = "acme") -> int:
    sock.sendall(build(CommandId.BIND_TRANSCEIVER, 1, encode_body(CommandId.BIND_TRANSCEIVER, system_id=system_id,
                                                                  password="pw")))
    head = b""
    while len(head) < 16:
        chunk = sock.recv(16 - len(head))
        if not chunk:
            raise ConnectionError("closed")
        head += chunk
    length, command_id, status, _seq = int.from_bytes(head[:4], "big"), int.from_bytes(head[4:8], "big"), \
        int.from_bytes(head[8:12], "big"), int.from_bytes(head[12:16], "big")
    sock.recv(length - 16)
    assert command_id == CommandId.BIND_TRANSCEIVER_RESP
    return status


def test_senders_bind_over_tls_and_a_plain_client_gets_no_smpp(pki):
    cfg = make_config(listen={"tls_cert": str(pki.server_cert), "tls_key": str(pki.server_key)})
    with Stack(cfg) as stack:
        with tls_client(stack.address, pki) as sock:
            assert bind(sock) == 0
        plain = socket.create_connection(stack.address, timeout=5)
        try:
            with pytest.raises((ConnectionError, OSError, AssertionError)):
                bind(plain)
        finally:
            plain.close()


def test_with_a_client_ca_only_senders_with_a_certificate_it_signed_get_in(pki):
    cfg = make_config(listen={"tls_cert": str(pki.server_cert), "tls_key": str(pki.server_key),
                              "tls_client_ca": str(pki.ca)})
    with Stack(cfg) as stack:
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            with tls_client(stack.address, pki) as sock:  # no certificate
                bind(sock)
        with tls_client(stack.address, pki, cert=True) as sock:
            assert bind(sock) == 0


def smsc_context(pki) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(pki.server_cert), str(pki.server_key))
    return ctx


@pytest.mark.parametrize("ca, verify, bound", [("ca", True, True), ("other_ca", True, False),
                                                ("other_ca", False, True)])
def test_the_smscs_certificate_is_verified_and_one_that_does_not_verify_is_not_bound_to(pki, ca, verify, bound):
    with RawSmsc(tls=smsc_context(pki)) as smsc:
        cfg = make_config(upstream={"tls": True, "tls_ca": str(getattr(pki, ca)), "tls_verify": verify,
                                    "tls_server_name": "localhost"})
        with Stack(cfg, upstream=smsc.address) as stack:
            sock = socket.create_connection(stack.address, timeout=10)
            try:
                assert bind(sock) == (0 if bound else 0x08)
            finally:
                sock.close()
        assert smsc.binds == (1 if bound else 0)


@pytest.mark.subprocess
def test_a_tls_file_that_cannot_be_loaded_stops_the_daemon_naming_the_key(tmp_path):
    config = tmp_path / "tls.toml"
    config.write_text(f'[listen]\naddress = "127.0.0.1:0"\ntls_cert = "{tmp_path / "missing.pem"}"\n'
                      f'[store]\npath = "{tmp_path / "guard.db"}"\n')
    r = subprocess.run([sys.executable, "-m", "smppguard", "run", "--config", str(config)], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 1
    assert f"[listen] tls_cert / tls_key: cannot load {tmp_path / 'missing.pem'}" in r.stderr


def test_each_tls_file_that_cannot_be_loaded_is_named_with_its_key_and_why(tmp_path, pki):
    """In-process, the messages `smppguard run` stops with (above): the key, the file, the reason."""
    from smppguard.proxy.tls import TlsError, listener_context, upstream_context

    missing = tmp_path / "missing.pem"
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    listen = make_config(listen={"tls_cert": str(missing), "tls_key": str(pki.server_key)}).listen
    with pytest.raises(TlsError) as e:
        listener_context(listen)
    assert str(e.value) == (f"[listen] tls_cert / tls_key: cannot load {missing} and {pki.server_key}: "
                            "No such file or directory")
    listen = make_config(listen={"tls_cert": str(pki.server_cert), "tls_key": str(pki.server_key),
                                 "tls_client_ca": str(garbage)}).listen
    with pytest.raises(TlsError, match=rf"^\[listen\] tls_client_ca: cannot load {garbage}: "):
        listener_context(listen)
    upstream = make_config(upstream={"tls": True, "tls_ca": str(missing)}).upstream
    with pytest.raises(TlsError) as e:
        upstream_context(upstream)
    assert str(e.value) == f"[upstream] tls_ca: cannot load {missing}: No such file or directory"
    upstream = make_config(upstream={"tls": True, "tls_ca": str(pki.ca), "tls_cert": str(garbage)}).upstream
    with pytest.raises(TlsError, match=rf"^\[upstream\] tls_cert / tls_key: cannot load {garbage}: "):
        upstream_context(upstream)
    # what loads: a listener that asks senders for certificates; an SMSC connection that verifies, or not
    ctx = listener_context(make_config(listen={"tls_cert": str(pki.server_cert), "tls_key": str(pki.server_key),
                                               "tls_client_ca": str(pki.ca)}).listen)
    assert (ctx.verify_mode, ctx.minimum_version) == (ssl.CERT_REQUIRED, ssl.TLSVersion.TLSv1_2)
    ctx = upstream_context(make_config(upstream={"tls": True, "tls_ca": str(pki.ca)}).upstream)
    assert (ctx.verify_mode, ctx.check_hostname) == (ssl.CERT_REQUIRED, True)
    ctx = upstream_context(make_config(upstream={"tls": True, "tls_verify": False}).upstream)
    assert (ctx.verify_mode, ctx.check_hostname) == (ssl.CERT_NONE, False)
    assert listener_context(make_config().listen) is None and upstream_context(make_config().upstream) is None
