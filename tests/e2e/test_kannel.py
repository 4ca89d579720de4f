"""A real Kannel (bearerbox + smsbox) as a legacy ESME bound through the proxy to the built-in simulator.

Kannel binds as a transceiver (`group = smsc`, `smsc = smpp`) to the proxy; messages go in through smsbox's
HTTP sendsms and must reach the simulator as Kannel sent them (GSM text, UDH-concatenated parts, UCS2). MO
messages injected at the simulator must reach Kannel through the proxy, be acknowledged with a
deliver_sm_resp of status 0, and reach the smsbox service (an HTTP get-url served by this module).

One Kannel serves the whole module (starting it costs a few seconds). Needs the Debian `kannel` package.
"""

from __future__ import annotations

import http.server
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from helpers import Stack

BEARERBOX = Path("/usr/sbin/bearerbox")
SMSBOX = Path("/usr/sbin/smsbox")

if not (BEARERBOX.exists() and SMSBOX.exists()):
    pytest.skip("Kannel is not installed (/usr/sbin/bearerbox, /usr/sbin/smsbox; Debian package `kannel`)",
                allow_module_level=True)

pytestmark = pytest.mark.kannel

SYSTEM_ID, PASSWORD = "kannel", "secret"
HTTP_USER, HTTP_PASS = "tester", "pw"
ADMIN_PASS = "admin"
SENDER = "12345"
DEADLINE = 20.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = DEADLINE, every: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


def kannel_conf(tmp: Path, proxy: tuple[str, int], ports: dict[str, int], mo_url: str) -> str:
    return f"""
group = core
admin-port = {ports["admin"]}
admin-password = {ADMIN_PASS}
status-password = {ADMIN_PASS}
admin-allow-ip = "127.0.0.1"
smsbox-port = {ports["smsbox"]}
box-allow-ip = "127.0.0.1"
log-file = "{tmp}/bearerbox.log"
log-level = 0
access-log = "{tmp}/access.log"
dlr-storage = internal

group = smsc
smsc = smpp
smsc-id = proxy
host = {proxy[0]}
port = {proxy[1]}
transceiver-mode = true
smsc-username = {SYSTEM_ID}
smsc-password = {PASSWORD}
system-type = ""
reconnect-delay = 1
enquire-link-interval = 30
log-file = "{tmp}/smsc.log"
log-level = 0

group = smsbox
bearerbox-host = 127.0.0.1
bearerbox-port = {ports["smsbox"]}
sendsms-port = {ports["sendsms"]}
log-file = "{tmp}/smsbox.log"
log-level = 0
access-log = "{tmp}/smsbox-access.log"

group = sendsms-user
username = {HTTP_USER}
password = {HTTP_PASS}
max-messages = 5
concatenation = true

group = sms-service
keyword = default
get-url = "{mo_url}?from=%p&to=%P&text=%a&coding=%c"
accept-x-kannel-headers = true
omit-empty = true
max-messages = 0
"""


class MoRecorder(http.server.BaseHTTPRequestHandler):
    """The smsbox service's get-url: records each MO's query and answers an empty body (no reply SMS)."""

    received: list[dict[str, str]] = []

    def do_GET(self) -> None:  # noqa: N802
        query = urllib.parse.urlsplit(self.path).query
        self.received.append(dict(urllib.parse.parse_qsl(query, keep_blank_values=True)))
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


class Kannel:
    def __init__(self, stack: Stack, tmp: Path):
        self.stack = stack
        self.tmp = tmp
        self.ports = {"admin": free_port(), "smsbox": free_port(), "sendsms": free_port()}
        self.procs: list[subprocess.Popen] = []
        self.mo_server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), MoRecorder)
        self.mo_thread = threading.Thread(target=self.mo_server.serve_forever, daemon=True)
        MoRecorder.received = []
        self.mo_received = MoRecorder.received

    def start(self) -> None:
        self.mo_thread.start()
        mo_url = f"http://127.0.0.1:{self.mo_server.server_address[1]}/mo"
        conf = self.tmp / "kannel.conf"
        conf.write_text(kannel_conf(self.tmp, self.stack.address, self.ports, mo_url))
        self._spawn("bearerbox", BEARERBOX, conf)
        wait_for(lambda: self._port_open(self.ports["smsbox"]), "bearerbox's smsbox port")
        self._spawn("smsbox", SMSBOX, conf)
        wait_for(lambda: self._port_open(self.ports["sendsms"]), "smsbox's sendsms port")
        wait_for(lambda: "online" in self._smsc_status(), "Kannel's SMSC connection to the proxy to be online")

    def _spawn(self, name: str, binary: Path, conf: Path) -> None:
        out = open(self.tmp / f"{name}.out", "wb")
        try:
            proc = subprocess.Popen([str(binary), "-v", "0", str(conf)], stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, cwd=self.tmp, start_new_session=True)
        finally:
            out.close()
        self.procs.append(proc)

    def _port_open(self, port: int) -> bool:
        for proc in self.procs:
            if proc.poll() is not None:
                raise AssertionError(f"{proc.args[0]} exited with {proc.returncode}\n{self.logs()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            return False

    def _smsc_status(self) -> str:
        """The SMSC line(s) of bearerbox's status.txt, e.g. 'proxy[proxy] SMPP:...(online 3s, ...)'."""
        self._port_open(self.ports["admin"])  # raises if a box died
        url = f"http://127.0.0.1:{self.ports['admin']}/status.txt?password={ADMIN_PASS}"
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                text = resp.read().decode("utf-8", "replace")
        except OSError:
            return ""
        _, _, smscs = text.partition("SMSC connections:")
        return smscs

    def sendsms(self, to: str, text: str, **extra: str) -> str:
        params = {"username": HTTP_USER, "password": HTTP_PASS, "from": SENDER, "to": to, "text": text,
                  "charset": "UTF-8", **extra}
        url = f"http://127.0.0.1:{self.ports['sendsms']}/cgi-bin/sendsms?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=10) as resp:
            body = resp.read().decode("utf-8", "replace")
            assert resp.status in (200, 202), f"sendsms answered {resp.status}: {body}"
        return body

    def logs(self) -> str:
        parts = []
        for path in sorted(self.tmp.glob("*.log")) + sorted(self.tmp.glob("*.out")):
            text = path.read_text(errors="replace")
            parts.append(f"----- {path.name} (last 4000 chars) -----\n{text[-4000:]}")
        return "\n".join(parts)

    def stop(self) -> None:
        for proc in reversed(self.procs):  # smsbox first, then bearerbox
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self.mo_server.shutdown()
        self.mo_server.server_close()


@pytest.fixture(scope="module")
def kannel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, Kannel]]:
    tmp = tmp_path_factory.mktemp("kannel")
    with Stack() as s:
        k = Kannel(s, tmp)
        try:
            k.start()
            yield s, k
        finally:
            k.stop()


def received_for(s: Stack, destination: str) -> list:
    return [r for r in s.sim.received if r.fields["destination_addr"] == destination]


def wait_received(s: Stack, k: Kannel, destination: str, count: int = 1) -> list:
    try:
        return wait_for(lambda: len(received_for(s, destination)) >= count and received_for(s, destination),
                        f"{count} submit_sm to {destination} at the simulator")
    except AssertionError as e:
        raise AssertionError(f"{e}\n{k.logs()}") from None


def split_udh(short_message: bytes) -> tuple[bytes, bytes]:
    udhl = short_message[0]
    return short_message[:udhl + 1], short_message[udhl + 1:]


def concat_ie(udh: bytes) -> tuple[int, int, int]:
    """(reference, total, seqnum) from the 8-bit concatenation IE (IEI 0x00); fails if there is none."""
    pos = 1
    while pos + 2 <= len(udh):
        iei, iel = udh[pos], udh[pos + 1]
        if iei == 0x00 and iel == 3:
            ref, total, seq = udh[pos + 2:pos + 5]
            return ref, total, seq
        pos += 2 + iel
    raise AssertionError(f"no IEI 0x00 concatenation element in UDH {udh.hex()}")


def test_kannel_short_gsm_text_reaches_simulator(kannel: tuple[Stack, Kannel]) -> None:
    s, k = kannel
    text = "Hello from Kannel 123"
    k.sendsms("4915550001", text)
    [r] = wait_received(s, k, "4915550001")
    f = r.fields
    assert r.system_id == SYSTEM_ID
    assert f["data_coding"] == 0
    assert f["esm_class"] == 0x03  # Kannel's store-and-forward default, unchanged by the proxy
    assert f["short_message"].decode("gsm03.38") == text
    assert f["source_addr"] == SENDER


def test_kannel_long_text_arrives_as_udh_parts(kannel: tuple[Stack, Kannel]) -> None:
    s, k = kannel
    text = "".join(f"{i:03d}abcdefg " for i in range(30))[:300]
    assert len(text) == 300
    k.sendsms("4915550002", text)
    first = wait_received(s, k, "4915550002")[0].fields
    assert first["esm_class"] & 0x40, f"first part without UDHI: esm_class=0x{first['esm_class']:02X}"
    _, total, _ = concat_ie(split_udh(first["short_message"])[0])
    assert total >= 2
    parts = wait_received(s, k, "4915550002", count=total)
    infos, payloads = [], {}
    for r in parts:
        f = r.fields
        assert f["esm_class"] == 0x43, f"part with esm_class=0x{f['esm_class']:02X}, not UDHI | 0x03"
        udh, payload = split_udh(f["short_message"])
        ref, total, seq = concat_ie(udh)
        infos.append((ref, total, seq))
        payloads[seq] = payload
    refs = {ref for ref, _, _ in infos}
    totals = {total for _, total, _ in infos}
    assert len(refs) == 1, f"parts carry different references: {infos}"
    assert totals == {len(parts)}, f"total in UDH {totals} != parts received {len(parts)}"
    assert sorted(payloads) == list(range(1, len(parts) + 1))
    joined = b"".join(payloads[i] for i in sorted(payloads)).decode("gsm03.38")
    assert joined == text


def test_kannel_ucs2_text_arrives_with_data_coding_8(kannel: tuple[Stack, Kannel]) -> None:
    s, k = kannel
    text = "您好，退订回T"
    k.sendsms("8613800000001", text, coding="2")
    [r] = wait_received(s, k, "8613800000001")
    f = r.fields
    assert f["data_coding"] == 8
    assert f["short_message"].decode("utf-16-be") == text


def test_kannel_mo_is_acknowledged_and_reaches_smsbox(kannel: tuple[Stack, Kannel]) -> None:
    s, k = kannel
    before = len(s.sim.delivered)
    s.call(lambda: s.sim.inject_mo("491700000009", "5555", "STOP please"))
    try:
        wait_for(lambda: len(s.sim.delivered) > before, "Kannel's deliver_sm_resp at the simulator")
        wait_for(lambda: any(m.get("text") == "STOP please" for m in k.mo_received),
                 "the MO at smsbox's get-url")
    except AssertionError as e:
        raise AssertionError(f"{e}\n{k.logs()}") from None
    _entry, resp = s.sim.delivered[before]
    assert resp.command_id == 0x80000005  # deliver_sm_resp
    assert resp.status == 0
    [mo] = [m for m in k.mo_received if m.get("text") == "STOP please"]
    assert mo["from"].endswith("491700000009")
    assert mo["to"] == "5555"
