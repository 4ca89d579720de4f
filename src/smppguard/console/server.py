"""The console's handler: a request parsed, its client told apart and limited, routed to the API or a page; the
store read and written on threads (the package's docstring says how)."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from ..config import Config
from ..policy import decide, explain, make_submission
from ..policy.credit import score
from ..policy.numbers import candidate_zones, e164, region_of
from ..store import holds as hold_store
from ..store.db import AlreadyExists, NotFound, StoreError, connect
from ..store.lists import maybe_number
from ..store.recipients import masker
from ..tasks import lower_priority
from . import data
from .api import Api, audit_row
from .auth import Gate, Identity, RateLimiter, is_loopback
from .http import HttpError, Response, Route, check_body_length, error_json, match, parse_head

log = logging.getLogger("smppguard.console")


def off_reason(config: Config) -> str | None:
    """Why the console and the API are off with this config (Rule 3); None when they are on."""
    address = config.metrics.address
    if address is None:
        return "[metrics] address is off"
    if not config.http.tokens and not is_loopback(address[0]):
        return (f"the listener {address[0]}:{address[1]} is not loopback and [http] tokens is empty: anyone who "
                "reaches it could read the lists; add tokens to turn them on (/metrics and /healthz are served)")
    return None


class Console:
    """The handler for /console and /api: `await console(head, reader, peer)` -> (response head, body)."""

    def __init__(self, config: Config, screening: Any = None, holds: Any = None,
                 clock: Callable[[], float] = time.time, store_path: str | None = None):
        self.config = config
        self.screening = screening  # proxy.screening.Screening: the live Index and policy (None: the store's)
        self.holds = holds
        self.clock = clock
        self.store_path = store_path or config.store.path
        host = config.metrics.address[0] if config.metrics.address else "127.0.0.1"
        self.gate = Gate(config.http.tokens, host)
        self.limiter = RateLimiter(config.http.rate_limit)
        self.mask = masker(config.audit.recipient, config.audit.salt)
        # Two threads at the store's background priority: however many requests come, the console neither takes
        # a core from the relay first nor opens more than two connections to the store at once.
        self._pool = ThreadPoolExecutor(2, thread_name_prefix="console", initializer=lower_priority,
                                        initargs=(config.store.background_nice,))
        self.api = Api(self)
        from .pages import Pages
        self.pages = Pages(self)
        a, p = self.api, self.pages
        self.routes = [
            Route("GET", ("api", "v1"), a.index, "read"),
            Route("GET", ("api", "v1", "numbers", "{number}"), a.number, "read"),
            Route("GET", ("api", "v1", "accounts"), a.accounts, "read"),
            Route("GET", ("api", "v1", "accounts", "{account}", "report"), a.report, "read"),
            Route("GET", ("api", "v1", "refusals"), a.refusals, "read"),
            Route("GET", ("api", "v1", "queue"), a.queue, "read"),
            Route("POST", ("api", "v1", "queue", "{message_id}", "release"), a.queue_release, "write"),
            Route("POST", ("api", "v1", "queue", "{message_id}", "drop"), a.queue_drop, "write"),
            Route("GET", ("api", "v1", "blacklist"), a.blacklist_list, "read"),
            Route("POST", ("api", "v1", "blacklist"), a.blacklist_add, "write"),
            Route("DELETE", ("api", "v1", "blacklist", "{number}"), a.blacklist_remove, "write"),
            Route("POST", ("api", "v1", "optouts"), a.optout_add, "write"),
            Route("DELETE", ("api", "v1", "optouts", "{number}"), a.optout_remove, "write"),
            Route("POST", ("api", "v1", "consents"), a.consent_add, "write"),
            Route("DELETE", ("api", "v1", "consents", "{number}"), a.consent_remove, "write"),
            *p.routes(),
        ]

    def apply_http(self, http) -> None:
        """[http] read again (SIGHUP): its tokens, rate limit and body limit in force from the next request."""
        import dataclasses

        self.config = dataclasses.replace(self.config, http=http)
        self.gate.tokens = tuple(http.tokens)
        self.limiter.rate, self.limiter.burst = http.rate_limit, max(http.rate_limit, 5.0)

    # --- the listener's side ------------------------------------------------------------------------------

    async def __call__(self, head: bytes, reader: asyncio.StreamReader, peer: str) -> tuple[bytes, bytes]:
        response = await self.respond(head, reader, peer)
        return response.head(), response.body

    async def respond(self, head: bytes, reader: asyncio.StreamReader | None, peer: str) -> Response:
        is_api = head.startswith((b"GET /api", b"POST /api", b"DELETE /api", b"HEAD /api", b"PUT /api",
                                  b"PATCH /api", b"OPTIONS /api"))
        request = None
        try:
            request = parse_head(head, peer)
            is_api = request.segments[:1] == ("api",)
            route, params = match(self.routes, request)
            try:
                who = self.gate.identify(request, cookies=not is_api)
            except HttpError:
                self.limiter.take(f"anonymous {peer}")  # a guessed token costs what a request does
                if route.access != "public":  # the login form and its POST: anyone may try a token
                    raise
                who = None
            self.limiter.take(who.name if who is not None and not who.anonymous else f"anonymous {peer}")
            n = check_body_length(request, self.config.http.max_body)
            if n:
                if reader is None:
                    raise HttpError(400, "no body")
                try:
                    request.body = await asyncio.wait_for(reader.readexactly(n), 10.0)
                except (asyncio.IncompleteReadError, asyncio.TimeoutError):
                    raise HttpError(400, f"the body ended before its Content-Length ({n} bytes)") from None
            if route.access == "write" and not who.may_write:  # type: ignore[union-attr]
                if who.anonymous:  # type: ignore[union-attr]
                    raise HttpError(401, "a write needs a token with access \"write\" (Authorization: Bearer TOKEN)",
                                    (("WWW-Authenticate", 'Bearer realm="smppguard"'),))
                raise HttpError(403, f"the token {who.name!r} may read, not write")  # type: ignore[union-attr]
            response = await route.handler(request, who, **params)
            if request.method == "HEAD":
                response.body = b""
            return response
        except HttpError as e:
            if is_api:
                return error_json(e)
            return self.pages.error(e, request)
        except Exception:
            log.exception("console request failed: %s", head.split(b"\r\n", 1)[0][:200].decode("latin-1"))
            e = HttpError(500, "internal error: the daemon's log has the details")
            return error_json(e) if is_api else self.pages.error(e, request)

    # --- the store: reads and writes on threads (Rules 1 and 2) ---------------------------------------------

    def _connect(self):
        try:
            return connect(self.store_path, create=False, audit=(self.config.audit.recipient, self.config.audit.salt))
        except StoreError as e:
            raise HttpError(503, f"the store cannot be opened: {e}") from None

    def _run(self, fn: Callable, *args: Any, **kwargs: Any) -> Any:
        db = self._connect()
        try:
            return fn(db, *args, **kwargs)
        finally:
            db.close()

    async def read(self, fn: Callable, *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(self._run, fn, *args, **kwargs))

    async def write(self, fn: Callable) -> Any:
        try:
            return await self.read(fn)
        except NotFound as e:
            raise HttpError(404, str(e)) from None
        except AlreadyExists as e:
            raise HttpError(409, str(e)) from None
        except ValueError as e:
            raise HttpError(400, str(e)) from None

    # --- what the API and the pages share ---------------------------------------------------------------------

    def policy(self):
        return self.screening.policy if self.screening is not None else self.config.policy

    def number_of(self, text: Any) -> int:
        if isinstance(text, int) and not isinstance(text, bool):
            text = str(text)
        if not isinstance(text, str) or not text.strip():
            raise HttpError(400, "'number' is required: a phone number such as +8613800138000")
        if len(text) > 40:
            raise HttpError(400, "not a phone number: longer than 40 characters")
        n = maybe_number(text, self.policy().default_region)
        if n is None:
            raise HttpError(400, f"not a valid phone number: {text[:40]!r}")
        return n

    async def number_view(self, number_text: str, query: dict[str, str]) -> dict[str, Any]:
        """A number's record (the store, on a thread) and the verdict `check` would give now (the live Index)."""
        n = self.number_of(number_text)
        now = self.clock()
        cfg = self.config
        record = await self.read(data.number_record, n, mask=self.mask, now=now,
                                 failures_within_s=cfg.inbound.suspended_within)
        policy = self.policy()
        account, sender = query.get("account", "")[:64], query.get("sender", "")[:64]
        text = query.get("text")
        text = text[:1000] if text else None
        ton_raw = query.get("ton", "1")
        if ton_raw not in ("0", "1", "2"):
            raise HttpError(400, "ton must be 0, 1 or 2")
        sub = make_submission(policy, f"+{n}", 1 if ton_raw == "1" else int(ton_raw), sender, account,
                              query.get("service_type", "")[:6], text)
        index = self.screening.index if self.screening is not None else await self.read(self._load_index, now)
        verdict = decide(sub, index, now, policy)
        rows = explain(sub, index, now, policy)
        zones = candidate_zones(n, index.tz.get(n), policy.fallback_zone)
        credit, parts = score(record["credit_parts"], policy.credit_weights)
        sends = index.history.get(n) or ()
        return {
            "number": e164(n), "region": region_of(n), "zones": list(zones), "class": sub.traffic_class,
            "lists": {
                "blacklist": _iso_deep(record["blacklist"]), "optouts": [_iso_deep(o) for o in record["optouts"]],
                "dead": _iso_deep(record["dead"]), "zone": _iso_deep(record["zone"]),
                "watched": _iso_deep(record["watched"])},
            "consent": [_iso_deep(c) for c in record["consent"]],
            "credit": {"score": credit, "floor": policy.credit_floor,
                       "parts": [{"part": p, "count": c, "points": pts} for p, c, pts in parts]},
            "sends": {"last_30_days": sum(1 for t in sends if t >= now - 30 * 86400),
                      "recent": [data.iso(t) for t in sorted(sends, reverse=True)[:20]]},
            "audit": [audit_row(r) for r in record["audit"]],
            "audit_recipient": record["audit_recipient"],
            "verdict": {"account": account, "sender": sender, "text": text, "at": data.iso(now),
                        "action": verdict.action.value, "rule": verdict.rule, "status": int(verdict.status),
                        "status_hex": f"0x{int(verdict.status):02X}", "reason": verdict.reason,
                        "until": data.iso(verdict.until) if verdict.until else None,
                        "rules": [{"rule": name, "applies": how == "applies",
                                   "result": (v.action.value if v else "pass") if how == "applies" else "skipped",
                                   "note": how, "reason": v.reason if v else ""} for name, how, v in rows]},
        }

    def _load_index(self, db, now: float):
        from ..store.index import load_index
        return load_index(db, self.config.policy, now, failures_within_s=self.config.inbound.suspended_within)

    def queue_rows(self, db, account: str | None, limit: int, offset: int, who: Identity) -> list[dict]:
        """Held messages, the next due first; recipients in full for a token that may write, else as the audit
        log keeps them."""
        out = []
        sql = ("SELECT id, account, sender, recipient, number, state, held_at, release_at, expires_at, part, parts, "
               "forced FROM held" + (" WHERE account = ?" if account else "") + " ORDER BY release_at, seq "
               "LIMIT ? OFFSET ?")
        args = ((account,) if account else ()) + (limit, offset)
        for mid, acc, sender, recipient, number, state, held_at, release_at, expires_at, part, parts, forced in \
                db.execute(sql, args):
            shown = (f"+{number}" if number is not None else recipient) if who.may_write else self.mask(number,
                                                                                                       recipient)
            out.append({"id": mid, "account": acc, "sender": sender, "recipient": shown,
                        "state": state, "released_by_hand": bool(forced), "held_at": held_at,
                        "release_at": release_at, "expires_at": expires_at,
                        "part": f"{part}/{parts}" if parts > 1 else ""})
        return out

    async def release(self, message_id: str, who: Identity) -> int:
        from .api import release_now
        _check_id(message_id)
        n = await self.write(lambda db: release_now(db, message_id, self.clock(), who.name, self.mask))
        if not n:
            raise HttpError(404, f"no held message {message_id} (it may have been sent or dropped already)")
        log.info("queue: %s released %s by hand (%d rows)", who.name, message_id, n)
        return n

    async def drop(self, message_id: str, who: Identity) -> int:
        from ..proxy.holds import held_receipt
        _check_id(message_id)
        now = self.clock()
        n = await self.write(lambda db: hold_store.drop(db, message_id, who.name, now, self.mask,
                                                        lambda r: held_receipt(r, "DELETED", now)))
        if not n:
            raise HttpError(404, f"no held message {message_id} (it may have been sent or dropped already)")
        log.info("queue: %s dropped %s by hand (%d rows)", who.name, message_id, n)
        return n


def _check_id(message_id: str) -> None:
    if not (1 <= len(message_id) <= 64 and all(c.isalnum() or c in "-_" for c in message_id)):
        raise HttpError(400, "not a message id")


def _iso_deep(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: (data.iso(v) if k.endswith("_at") and isinstance(v, (int, float)) else _iso_deep(v))
                for k, v in value.items()}
    return value


__all__ = ["Console", "off_reason"]
