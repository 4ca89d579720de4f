"""A real Kannel (bearerbox + smsbox) as a legacy ESME, bound through the proxy: shared by the Kannel tests.

Kannel binds as a transceiver (`group = smsc`, `smsc = smpp`) to the proxy; messages go in through smsbox's
HTTP sendsms. MO messages reach the smsbox service (an HTTP get-url served here, `mo_received`), and delivery
reports asked for with `dlr=True` reach the dlr-url served here too (`dlr_received`: type 1 delivered, 8 SMSC
accepted, 16 SMSC rejected).

Needs the Debian `kannel` package. Where Kannel is missing the Kannel tests are skipped, unless
$SMPPGUARD_REQUIRE_KANNEL is set (scripts/run-tests sets it, since it installs Kannel): then they fail, so a
machine that should test against Kannel never passes without doing so.
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
from typing import Any, Callable

import pytest

from helpers import Stack, free_port

BEARERBOX = Path("/usr/sbin/bearerbox")
SMSBOX = Path("/usr/sbin/smsbox")

REQUIRE = "SMPPGUARD_REQUIRE_KANNEL"


def require_kannel() -> None:
    """Skip the calling test module where Kannel is not installed; fail it where it must be."""
    if BEARERBOX.exists() and SMSBOX.exists():
        return
    why = "Kannel is not installed (/usr/sbin/bearerbox, /usr/sbin/smsbox; Debian package `kannel`)"
    if os.environ.get(REQUIRE):
        pytest.fail(f"{why}, and ${REQUIRE} says this machine must test against it", pytrace=False)
    pytest.skip(why, allow_module_level=True)


SYSTEM_ID, PASSWORD = "kannel", "secret"
HTTP_USER, HTTP_PASS = "tester", "pw"
ADMIN_PASS = "admin"
SENDER = "12345"
DEADLINE = 20.0


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
# a message refused "try later" (0x58, 0x14) is sent again after a second, not the default minute
sms-resend-freq = 1
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
    """The smsbox service's get-url (/mo) and the delivery reports' dlr-url (/dlr): records each query and
    answers an empty body (no reply SMS)."""

    received: list[dict[str, str]] = []
    dlrs: list[dict[str, str]] = []

    def do_GET(self) -> None:  # noqa: N802
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        (self.dlrs if url.path == "/dlr" else self.received).append(query)
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
        MoRecorder.received, MoRecorder.dlrs = [], []
        self.mo_received = MoRecorder.received
        self.dlr_received = MoRecorder.dlrs

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

    def sendsms(self, to: str, text: str, dlr: bool = False, **extra: str) -> str:
        params = {"username": HTTP_USER, "password": HTTP_PASS, "from": SENDER, "to": to, "text": text,
                  "charset": "UTF-8", **extra}
        if dlr:  # every report: delivered 1, failed 2, buffered 4, SMSC accepted 8, SMSC rejected 16
            params["dlr-mask"] = "31"
            params["dlr-url"] = (f"http://127.0.0.1:{self.mo_server.server_address[1]}/dlr"
                                 f"?to={urllib.parse.quote(to)}&type=%d&reply=%A&id=%F")
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
