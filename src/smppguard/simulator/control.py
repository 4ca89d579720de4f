"""The simulator's control interface: a few HTTP endpoints on localhost, standard library only.

  POST /mo        {"from": "+8613800138000", "to": "10690000", "text": "T", "system_id": "optional"}
  GET  /messages  what the simulator accepted (system_id, message_id, source, destination)
  GET  /health    "ok"
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Protocol

log = logging.getLogger("smppguard.simulator")
MAX_BODY = 64 * 1024


class Controlled(Protocol):
    """What the control interface needs of the simulator (smsc.py), which starts it: imports go one way."""

    received: list[Any]

    def inject_mo(self, source: str, destination: str, text: str, system_id: str | None = None) -> bool: ...


async def start_control(sim: Controlled, host: str, port: int) -> asyncio.base_events.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            status, payload = await _serve_one(sim, reader)
        except (asyncio.IncompleteReadError, ConnectionError, ValueError) as e:
            status, payload = 400, {"error": str(e)}
        body = json.dumps(payload).encode()
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 503: "Service Unavailable"}.get(status, "OK")
        writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
        try:
            await writer.drain()
        finally:
            writer.close()

    return await asyncio.start_server(handle, host, port, reuse_address=True)


async def _serve_one(sim: Controlled, reader: asyncio.StreamReader) -> tuple[int, object]:
    request_line = (await reader.readline()).decode("latin-1").split()
    if len(request_line) < 2:
        raise ValueError("bad request line")
    method, path = request_line[0], request_line[1]
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    if length > MAX_BODY:
        raise ValueError("body too large")
    body = await reader.readexactly(length) if length else b""
    if method == "GET" and path == "/health":
        return 200, "ok"
    if method == "GET" and path == "/messages":
        return 200, [{"system_id": r.system_id, "message_id": r.message_id,
                      "source": r.fields.get("source_addr"), "destination": r.fields.get("destination_addr")}
                     for r in sim.received]
    if method == "POST" and path == "/mo":
        data = json.loads(body or b"{}")
        if not isinstance(data, dict) or not all(isinstance(data.get(k), str) for k in ("from", "to", "text")):
            raise ValueError('expected JSON {"from": ..., "to": ..., "text": ...}')
        try:
            delivered = sim.inject_mo(data["from"], data["to"], data["text"], data.get("system_id"))
        except OverflowError as e:
            return 503, {"error": str(e)}
        return 200, {"delivered": delivered, "queued": not delivered}
    return 404, {"error": f"no such endpoint: {method} {path}"}
