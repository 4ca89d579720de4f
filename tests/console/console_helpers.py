"""The console and the API over real HTTP: a Stack (simulator, proxy, store) with the daemon's HTTP listener
(metrics.MetricsServer handing /api and /console to console.Console, as app.py wires it) on 127.0.0.1:0."""

from __future__ import annotations

import http.client
import json
from typing import Any

import smpplib.smpp

from helpers import CN_ANY_HOUR, Stack, make_config, smpplib_client
from smppguard.config import HttpToken
from smppguard.console import Console
from smppguard.metrics import Metrics, MetricsServer, State

READ_TOKEN = "read-token-0123456789abcdef"
WRITE_TOKEN = "write-token-0123456789abcdef"
TOKENS = (HttpToken("desk", READ_TOKEN, "read"), HttpToken("crm", WRITE_TOKEN, "write"))

POLICY = CN_ANY_HOUR + """
[rules.frequency]
enabled = false
"""

NUMBER = "+8613800138000"


def console_config(tmp_path, policy: str = POLICY, http: dict | None = None, **tables):
    return make_config(policy, store={"path": str(tmp_path / "guard.db")},
                       session={"response_timeout": 5.0, "enquire_link_interval": 30.0},
                       http={"tokens": TOKENS, **(http or {})}, **tables)


class Answer:
    def __init__(self, status: int, headers: dict[str, str], body: bytes):
        self.status, self.headers, self.body = status, headers, body

    @property
    def text(self) -> str:
        return self.body.decode()

    def json(self) -> Any:
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"<{self.status} {self.body[:300]!r}>"


class Served:
    """A running stack with its HTTP listener; `call()` sends one request over a real connection."""

    def __init__(self, stack: Stack, server: MetricsServer, console: Console, path):
        self.stack, self.server, self.console, self.path = stack, server, console, path
        self.host, self.port = server.address

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def call(self, method: str, target: str, *, token: str | None = None, json_body: Any = None,
             body: bytes | None = None, headers: dict[str, str] | None = None) -> Answer:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        h = dict(headers or {})
        if token is not None:
            h["Authorization"] = f"Bearer {token}"
        if json_body is not None:
            body = json.dumps(json_body).encode()
            h.setdefault("Content-Type", "application/json")
        try:
            conn.request(method, target, body=body, headers=h)
            resp = conn.getresponse()
            return Answer(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
        finally:
            conn.close()


def serve(stack: Stack, path) -> Served:
    """Start the listener on the stack's loop, with the console as the daemon wires it."""
    async def start():
        console = Console(stack.config, screening=stack.store.screening, holds=stack.store.holds,
                          clock=stack.store.screening.clock)
        server = MetricsServer(State(Metrics(), stack.proxy, stack.store), app=console)
        await server.start("127.0.0.1", 0)
        return server, console
    server, console = stack.run(start())
    return Served(stack, server, console, path)


def stop(served: Served) -> None:
    served.stack.run(served.server.stop())


MARKETING = "新品上市, 回T退订"


class Sender:
    """A transceiver bind of account acme through the proxy (smpplib), answering what it is delivered."""

    def __init__(self, stack: Stack):
        self.client = smpplib_client(stack.address)
        self.client.bind_transceiver(system_id="acme", password="pw")

    def submit(self, source: str, number: int, text: str = MARKETING) -> int:
        """A submit_sm from `source` to `number`; returns its status."""
        pdu = smpplib.smpp.make_pdu("submit_sm", client=self.client, source_addr_ton=0, source_addr=source,
                                    dest_addr_ton=1, dest_addr_npi=1, destination_addr=str(number),
                                    short_message=text.encode("utf-16-be"), data_coding=8)
        self.client.send_pdu(pdu)
        while True:
            got = self.client.read_pdu()
            if got.command == "deliver_sm":
                self.client._message_received(got)
            elif got.command == "enquire_link":
                self.client._enquire_link_received(got)
            elif got.command == "submit_sm_resp" and got.sequence == pdu.sequence:
                return got.status

    def close(self) -> None:
        self.client.disconnect()
