"""HTTP for the console and the API, free of I/O: a request's head parsed, its body checked, routes matched, and
responses built. The daemon's listener (metrics.MetricsServer) moves the bytes; nothing here touches a socket.

Rule 1: anything a client sends that this cannot read is an `HttpError` with a status and a message the client
can act on (400, 404, 405, 411, 413, 415, 431); nothing else escapes.
Rule 2: a path is matched segment by segment after percent-decoding each one, and a segment that decodes to "/",
".", ".." or a control character is refused: no path reaches the store or the filesystem as a path.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import parse_qsl, unquote

#: Longest request head (request line and headers) read; a longer one is refused 431.
MAX_HEAD_BYTES = 16 * 1024

REASONS = {200: "OK", 201: "Created", 202: "Accepted", 303: "See Other", 400: "Bad Request", 401: "Unauthorized",
           403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 409: "Conflict", 411: "Length Required",
           413: "Content Too Large", 415: "Unsupported Media Type", 421: "Misdirected Request",
           429: "Too Many Requests", 431: "Request Header Fields Too Large", 500: "Internal Server Error",
           503: "Service Unavailable"}


class HttpError(Exception):
    """A request refused: `status` and a message for the client (JSON for the API, a page for the console)."""

    def __init__(self, status: int, message: str, headers: tuple[tuple[str, str], ...] = ()):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


@dataclass
class Request:
    method: str
    path: str  # as sent, percent-encoded
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names; a repeated header keeps its last value
    peer: str = ""  # the client's IP address
    body: bytes = b""
    segments: tuple[str, ...] = ()  # the path's segments, decoded (Rule 2)

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name.lower(), default)

    def content_length(self) -> int:
        raw = self.header("content-length")
        if not raw:
            return 0
        if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
            raise HttpError(400, f"Content-Length is not a number: {raw[:40]!r}")
        return int(raw)

    def json(self) -> dict[str, Any]:
        """The body as a JSON object; 415 for another type, 400 with where it went wrong for bad JSON."""
        ctype = self.header("content-type").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise HttpError(415, "send the body as JSON (Content-Type: application/json)")
        try:
            value = json.loads(self.body.decode("utf-8"))
        except UnicodeDecodeError:
            raise HttpError(400, "the body is not UTF-8") from None
        except json.JSONDecodeError as e:
            raise HttpError(400, f"the body is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") \
                from None
        except RecursionError:  # [[[[… within the body limit
            raise HttpError(400, "the body's JSON is nested too deep") from None
        if not isinstance(value, dict):
            raise HttpError(400, "the body must be a JSON object, e.g. {\"number\": \"+8613800138000\"}")
        return value

    def form(self) -> dict[str, str]:
        """An HTML form's fields (application/x-www-form-urlencoded)."""
        ctype = self.header("content-type").split(";")[0].strip().lower()
        if ctype != "application/x-www-form-urlencoded":
            raise HttpError(415, "expected a form (application/x-www-form-urlencoded)")
        try:
            return dict(parse_qsl(self.body.decode("utf-8"), keep_blank_values=True, strict_parsing=False))
        except (UnicodeDecodeError, ValueError):
            raise HttpError(400, "the form is not readable") from None

    def cookies(self) -> dict[str, str]:
        out = {}
        for part in self.header("cookie").split(";"):
            name, eq, value = part.strip().partition("=")
            if eq:
                out[name] = value
        return out


_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


def parse_head(head: bytes, peer: str = "") -> Request:
    """The request line and headers of one request (up to and with the blank line)."""
    if len(head) > MAX_HEAD_BYTES:
        raise HttpError(431, f"the request head is longer than {MAX_HEAD_BYTES} bytes")
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes any byte
        raise HttpError(400, "unreadable request") from None
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not _TOKEN.match(parts[0]) or not parts[2].startswith("HTTP/1."):
        raise HttpError(400, "not an HTTP/1 request line")
    method, target, _ = parts
    if not target.startswith("/"):
        raise HttpError(400, "the request target must be a path")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, colon, value = line.partition(":")
        if not colon or not _TOKEN.match(name):
            raise HttpError(400, "a header line is malformed")
        headers[name.lower()] = value.strip()
    path, _, query_text = target.partition("?")
    path = path.split("#", 1)[0]
    try:
        query = dict(parse_qsl(query_text, keep_blank_values=True))
    except ValueError:
        raise HttpError(400, "the query string is malformed") from None
    return Request(method, path, query, headers, peer, segments=segments_of(path))


def segments_of(path: str) -> tuple[str, ...]:
    """The decoded segments of a path (Rule 2): "/api/v1/numbers/%2B86138" -> ("api", "v1", "numbers", "+86138")."""
    out = []
    raw = path.strip("/").split("/") if path.strip("/") else []
    for seg in raw:
        if seg == "":
            raise HttpError(400, "the path has an empty segment (//)")
        try:
            decoded = unquote(seg, errors="strict")
        except UnicodeDecodeError:
            raise HttpError(400, "the path is not UTF-8") from None
        if decoded in (".", "..") or "/" in decoded or "\\" in decoded or any(ord(c) < 32 or c == "\x7f"
                                                                               for c in decoded):
            raise HttpError(400, f"the path segment {decoded[:40]!r} is not allowed")
        out.append(decoded)
    return tuple(out)


def check_body_length(request: Request, max_body: int) -> int:
    """How many body bytes to read: 413 past `max_body` (before reading any), 411 for a POST without a length."""
    if "transfer-encoding" in request.headers:
        raise HttpError(411, "send the body with a Content-Length (no chunked encoding)")
    n = request.content_length()
    if n > max_body:
        raise HttpError(413, f"the body is {n} bytes; at most {max_body} are accepted ([http] max_body)")
    if request.method == "POST" and "content-length" not in request.headers:
        raise HttpError(411, "a POST needs a Content-Length")
    return n


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)

    def head(self) -> bytes:
        lines = [f"HTTP/1.0 {self.status} {REASONS.get(self.status, '')}",
                 f"Content-Type: {self.content_type}", f"Content-Length: {len(self.body)}", "Connection: close",
                 "Cache-Control: no-store", "X-Content-Type-Options: nosniff", "Referrer-Policy: no-referrer"]
        if self.content_type.startswith("text/html"):
            # the pages carry their own CSS and SVG; no script, no frame, no form posts elsewhere
            lines += ["Content-Security-Policy: default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
                      "form-action 'self'; frame-ancestors 'none'; base-uri 'none'", "X-Frame-Options: DENY"]
        lines += [f"{name}: {value}" for name, value in self.headers]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def json_response(status: int, value: Any, headers: list[tuple[str, str]] | None = None) -> Response:
    return Response(status, json.dumps(value, ensure_ascii=False, indent=1).encode() + b"\n", "application/json",
                    headers or [])


def error_json(e: HttpError) -> Response:
    return json_response(e.status, {"error": {"status": e.status, "message": e.message}}, list(e.headers))


@dataclass(frozen=True)
class Route:
    method: str
    pattern: tuple[str, ...]  # literal segments, or "{name}" for one decoded segment
    handler: Callable
    access: str  # "read" or "write"


def match(routes: list[Route], request: Request) -> tuple[Route, dict[str, str]]:
    """The route for the request and its path parameters; 404 for no path, 405 naming the methods allowed."""
    allowed = []
    for route in routes:
        params = _match_one(route.pattern, request.segments)
        if params is None:
            continue
        if route.method == request.method or (route.method == "GET" and request.method == "HEAD"):
            return route, params
        allowed.append(route.method)
    if allowed:
        raise HttpError(405, f"{request.method} is not allowed here; use {', '.join(sorted(set(allowed)))}",
                        (("Allow", ", ".join(sorted(set(allowed)))),))
    raise HttpError(404, f"no such page or endpoint: {request.path[:200]}")


def _match_one(pattern: tuple[str, ...], segments: tuple[str, ...]) -> dict[str, str] | None:
    if len(pattern) != len(segments):
        return None
    params = {}
    for p, s in zip(pattern, segments, strict=True):
        if p.startswith("{"):
            params[p[1:-1]] = s
        elif p != s:
            return None
    return params
