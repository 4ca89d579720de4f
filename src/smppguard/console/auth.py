"""Who is asking, and may they: tokens, the console's sessions and their CSRF tokens, and rate limits. No I/O.

Rule 1: the API takes a bearer token only (`Authorization: Bearer …`), never a cookie, so no other web site can
make a browser call it; the console's forms carry a session cookie (HttpOnly, SameSite=Strict) *and* a CSRF token
derived from that session with a secret made at start-up, and a POST whose Origin is another site is refused.
Rule 2: without a credential only a loopback client is anyone at all, and it may read, never write; and only when
it names this host (Host: 127.0.0.1, localhost, ::1 or the listener's own address), so a web page on another
site cannot reach it by DNS rebinding.
Rule 3: every identity (a token's name; an anonymous client's address) has its own token bucket.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import time
from dataclasses import dataclass
from typing import Callable, Iterable

from ..config import HttpToken
from .http import HttpError, Request

#: A console session lasts this long from its login.
SESSION_S = 12 * 3600.0
#: Most sessions kept; the oldest go first.
MAX_SESSIONS = 10_000
COOKIE = "smppguard_session"


@dataclass(frozen=True)
class Identity:
    name: str  # the token's name; "anonymous" for a loopback client without one
    access: str  # "read" or "write"
    session: str = ""  # the console session it came with, if any

    @property
    def may_write(self) -> bool:
        return self.access == "write"

    @property
    def anonymous(self) -> bool:
        return self.name == ANONYMOUS.name


ANONYMOUS = Identity("anonymous", "read")


def is_loopback(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address == "localhost"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def _host_name(host_header: str) -> str:
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class Gate:
    """The tokens of [http] tokens, the sessions the console's login made, and the CSRF tokens of those."""

    def __init__(self, tokens: Iterable[HttpToken], listener_host: str, clock: Callable[[], float] = time.monotonic):
        self.tokens = tuple(tokens)
        self.listener_host = listener_host
        self.clock = clock
        self._secret = secrets.token_bytes(32)
        self._sessions: dict[str, tuple[HttpToken, float]] = {}  # id -> (token, expires)

    def by_token(self, presented: str) -> HttpToken | None:
        """The token whose secret this is (compared in constant time, each one)."""
        found = None
        for t in self.tokens:
            if hmac.compare_digest(t.token.encode(), presented.encode()):
                found = t
        return found

    def identify(self, request: Request, *, cookies: bool) -> Identity:
        """Who sent the request. A bearer token that is not one of ours is 401, whoever sent it; a session cookie
        counts only where `cookies` (the console, Rule 1). Without either: anonymous for a loopback client that
        names this host, else 401."""
        auth = request.header("authorization")
        if auth:
            scheme, _, presented = auth.partition(" ")
            if scheme.lower() != "bearer" or not presented.strip():
                raise HttpError(401, "send the token as Authorization: Bearer TOKEN",
                                (("WWW-Authenticate", 'Bearer realm="smppguard"'),))
            token = self.by_token(presented.strip())
            if token is None:
                raise HttpError(401, "this token is not one of [http] tokens",
                                (("WWW-Authenticate", 'Bearer realm="smppguard", error="invalid_token"'),))
            return Identity(token.name, token.access)
        if cookies:
            sid = request.cookies().get(COOKIE, "")
            held = self._sessions.get(sid) if sid else None
            if held is not None:
                token, expires = held
                if self.clock() < expires and token in self.tokens:
                    return Identity(token.name, token.access, sid)
                del self._sessions[sid]
        if is_loopback(request.peer) and self._names_this_host(request):
            return ANONYMOUS
        raise HttpError(401, "a token is needed: Authorization: Bearer TOKEN (see [http] tokens)",
                        (("WWW-Authenticate", 'Bearer realm="smppguard"'),))

    def _names_this_host(self, request: Request) -> bool:
        host = _host_name(request.header("host"))
        return host in ("", "localhost", "127.0.0.1", "::1", self.listener_host.lower()) or (
            is_loopback(host) and host[:1].isdigit())

    # --- console sessions -----------------------------------------------------------------------------------

    def login(self, presented: str) -> str | None:
        """A new session id for a valid token; None for any other."""
        token = self.by_token(presented.strip())
        if token is None:
            return None
        if len(self._sessions) >= MAX_SESSIONS:
            for sid in list(self._sessions)[:MAX_SESSIONS // 10]:
                del self._sessions[sid]
        sid = secrets.token_urlsafe(32)
        self._sessions[sid] = (token, self.clock() + SESSION_S)
        return sid

    def logout(self, sid: str) -> None:
        self._sessions.pop(sid, None)

    def csrf(self, identity: Identity) -> str:
        """The CSRF token the console's forms carry: bound to the session (none without one)."""
        if not identity.session:
            return ""
        return hmac.new(self._secret, identity.session.encode(), hashlib.sha256).hexdigest()

    def check_form(self, request: Request, identity: Identity, form: dict[str, str]) -> None:
        """A console POST: from a session, from this site (Origin), with the session's CSRF token."""
        origin = request.header("origin")
        if origin and origin != "null" and _host_name(origin.split("://", 1)[-1]) != _host_name(request.header("host")):
            raise HttpError(403, "this form was sent from another site")
        expected = self.csrf(identity)
        if not expected or not hmac.compare_digest(expected, form.get("csrf", "")):
            raise HttpError(403, "the form's CSRF token is missing or stale: open the page again and resend")


class RateLimiter:
    """A token bucket per identity: `rate` requests a second, bursts of up to `rate` (at least 5)."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic, max_keys: int = 10_000):
        self.rate = rate
        self.burst = max(rate, 5.0)
        self.clock = clock
        self.max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)

    def take(self, key: str) -> None:
        """Spend one request of `key`'s; 429 with Retry-After when it has none left."""
        now = self.clock()
        tokens, at = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        if tokens < 1.0:
            wait = (1.0 - tokens) / self.rate
            self._buckets[key] = (tokens, now)
            raise HttpError(429, f"too many requests: at most {self.rate:g} a second ([http] rate_limit); retry in "
                                 f"{wait:.1f} s", (("Retry-After", str(max(1, round(wait + 0.5)))),))
        if key not in self._buckets and len(self._buckets) >= self.max_keys:
            for k in list(self._buckets)[:self.max_keys // 10]:
                del self._buckets[k]
        self._buckets[key] = (tokens - 1.0, now)
