"""The JSON API, /api/v1/: a number looked up, an account's report, refusals, the hold queue, and the list changes
a CRM or a web form makes (blacklist, opt-outs, consent).

Rule 1: a write is the CLI's own: the same functions of store/lists.py and store/holds.py, on a connection of
their own in a thread, audited with the token's name as the actor; a running daemon applies it within a second
(the change-log tail).
Rule 2: a body is strict: unknown keys, wrong types and bad numbers are 400 with what was wrong, and nothing is
written.
Rule 3: times are ISO 8601 (UTC); lists are pages: `limit` (1 to 1000) and the `next` cursor of the last page.
"""

from __future__ import annotations

from typing import Any

from ..store import holds as hold_store
from ..store import lists
from ..store.db import write_transaction
from ..values import duration
from . import data
from .auth import Identity
from .http import HttpError, Request, Response, json_response

MAX_LIMIT = 1000
MAX_TEXT = 1000  # characters of a reason, a wording, a source, a key


def limit_of(request: Request, default: int = 100) -> int:
    raw = request.query.get("limit", str(default))
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_LIMIT:
        raise HttpError(400, f"limit must be a whole number from 1 to {MAX_LIMIT}, got {raw[:20]!r}")
    return int(raw)


def cursor_of(request: Request) -> int | None:
    raw = request.query.get("cursor", "")
    if not raw:
        return None
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise HttpError(400, "cursor is not one this API gave (use the `next` of the last page)")
    return int(raw)


def since_of(text: str, now: float, what: str = "since") -> float:
    """An age (7d, 12h) before `now`, or an ISO date or time (UTC unless it says)."""
    from datetime import datetime, timezone

    try:
        return now - duration(text)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise HttpError(400, f"{what} must be an age such as 7d or an ISO date such as 2026-11-01, "
                             f"got {text[:40]!r}") from None
    return (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).timestamp()


def _text(body: dict, key: str, default: str | None = None, *, required: bool = False) -> str:
    value = body.get(key, default)
    if value is None:
        if required:
            raise HttpError(400, f"{key!r} is required")
        return ""
    if not isinstance(value, str):
        raise HttpError(400, f"{key!r} must be a string")
    if len(value) > MAX_TEXT:
        raise HttpError(400, f"{key!r} is longer than {MAX_TEXT} characters")
    if required and not value.strip():
        raise HttpError(400, f"{key!r} must not be empty")
    return value


def _only(body: dict, *keys: str) -> None:
    extra = sorted(set(body) - set(keys))
    if extra:
        raise HttpError(400, f"unknown field {extra[0]!r}; expected {', '.join(keys)}")


def _times(row: dict, *keys: str) -> dict:
    return {k: (data.iso(v) if k in keys else v) for k, v in row.items()}


def audit_row(r: dict) -> dict:
    out = _times(r, "first", "last")
    out["status"] = f"0x{r['status']:02X}"
    return out


class Api:
    """The endpoints, each `async (request, identity, **params) -> Response`; routes in Console.routes."""

    def __init__(self, console: Any):
        self.c = console

    # --- reads ------------------------------------------------------------------------------------------

    async def index(self, request: Request, who: Identity) -> Response:
        return json_response(200, {"api": "smppguard", "version": 1, "you": {"name": who.name, "access": who.access},
                                   "endpoints": [f"{r.method} /{'/'.join(r.pattern)}" for r in self.c.routes
                                                 if r.pattern[:1] == ("api",)]})

    async def number(self, request: Request, who: Identity, number: str) -> Response:
        return json_response(200, await self.c.number_view(number, request.query))

    async def report(self, request: Request, who: Identity, account: str) -> Response:
        now = self.c.clock()
        since = since_of(request.query.get("since", "7d"), now)
        until = since_of(request.query["until"], now, "until") if request.query.get("until") else now
        if since >= until:
            raise HttpError(400, "since must be before until")
        r = await self.c.read(data.report, account, since, until)
        return json_response(200, report_json(r))

    async def accounts(self, request: Request, who: Identity) -> Response:
        since = since_of(request.query.get("since", "30d"), self.c.clock())
        return json_response(200, {"accounts": await self.c.read(data.accounts, since)})

    async def refusals(self, request: Request, who: Identity) -> Response:
        limit, before = limit_of(request), cursor_of(request)
        rows = await self.c.read(data.refusals, before_id=before, limit=limit,
                                 account=request.query.get("account") or None, rule=request.query.get("rule") or None)
        return json_response(200, {"items": [audit_row(r) for r in rows],
                                   "next": str(rows[-1]["id"]) if len(rows) == limit else None})

    async def queue(self, request: Request, who: Identity) -> Response:
        limit, offset = limit_of(request), cursor_of(request) or 0
        rows = await self.c.read(self.c.queue_rows, request.query.get("account") or None, limit, offset, who)
        return json_response(200, {"items": [_times(r, "held_at", "release_at", "expires_at") for r in rows],
                                   "next": str(offset + limit) if len(rows) == limit else None})

    async def blacklist_list(self, request: Request, who: Identity) -> Response:
        limit, offset = limit_of(request), cursor_of(request) or 0

        def shown(number: int) -> str:  # a whole list's numbers in full only to a token that may change them
            return f"+{number}" if who.may_write else self.c.mask(number, "")

        def read(db):
            return [dict(zip(("number", "source", "reason", "added_at", "actor"), (shown(r[0]), *r[1:]), strict=True))
                    for r in db.execute("SELECT number, source, reason, added_at, actor FROM blacklist "
                                        "ORDER BY added_at, number LIMIT ? OFFSET ?", (limit, offset))]
        rows = await self.c.read(read)
        return json_response(200, {"items": [_times(r, "added_at") for r in rows],
                                   "next": str(offset + limit) if len(rows) == limit else None})

    # --- writes (Rule 1) --------------------------------------------------------------------------------

    async def blacklist_add(self, request: Request, who: Identity) -> Response:
        body = request.json()
        _only(body, "number", "source", "reason")
        n = self.c.number_of(body.get("number"))
        source = _text(body, "source", "manual")
        if source not in lists.BLACKLIST_SOURCES:
            raise HttpError(400, f"source must be one of {', '.join(lists.BLACKLIST_SOURCES)}")
        reason = _text(body, "reason", "")

        def write(db):
            already = db.execute("SELECT 1 FROM blacklist WHERE number = ?", (n,)).fetchone() is not None
            lists.add_blacklist(db, [n], source=source, reason=reason, actor=who.name)
            return already
        already = await self.c.write(write)
        return json_response(200 if already else 201, {"number": f"+{n}", "blacklisted": True, "source": source,
                                                       "reason": reason, "already_listed": already})

    async def blacklist_remove(self, request: Request, who: Identity, number: str) -> Response:
        body = request.json() if request.body else {}
        _only(body, "reason", "observe")
        fields = {**request.query, **body}
        n = self.c.number_of(number)
        reason = _text(fields, "reason", required=True)
        observe_text = _text(fields, "observe", "3d")
        try:
            observe = duration(observe_text)
        except ValueError:
            raise HttpError(400, f"observe must be a duration such as 3d, got {observe_text[:20]!r}") from None
        if not lists.MIN_OBSERVE_S <= observe <= lists.MAX_OBSERVE_S:
            raise HttpError(400, "observe must be from 3d to 7d: a blacklist removal waits that long")
        p = await self.c.write(lambda db: lists.request_removal(db, n, reason=reason, observe_s=observe,
                                                                actor=who.name, now=self.c.clock()))
        return json_response(202, {"number": f"+{n}", "removal": "pending", "requested_at": data.iso(p.requested_at),
                                   "effective_at": data.iso(p.effective_at),
                                   "note": "the number stays blacklisted until then; a new complaint, carrier "
                                           "listing or opt-out meanwhile cancels the removal"})

    async def optout_add(self, request: Request, who: Identity) -> Response:
        body = request.json()
        _only(body, "number", "scope", "key", "keyword")
        n = self.c.number_of(body.get("number"))
        scope, key = self._scope(body.get("scope", "sender"), body.get("key", ""))
        keyword = _text(body, "keyword", "")
        threshold = self.c.policy().correlation_threshold
        written = await self.c.write(lambda db: lists.add_optouts(
            db, [(n, scope, key)], keyword=keyword, actor=who.name, correlation_threshold=threshold))
        return json_response(201, {"number": f"+{n}", "scope": scope, "key": key, "opted_out": True,
                                   "now_global": written > 1})

    async def optout_remove(self, request: Request, who: Identity, number: str) -> Response:
        n = self.c.number_of(number)
        scope, key = self._scope(request.query.get("scope", "sender"), request.query.get("key", ""))
        await self.c.write(lambda db: lists.remove_optout(db, n, scope, key, actor=who.name))
        return json_response(200, {"number": f"+{n}", "scope": scope, "key": key, "opted_out": False})

    def _scope(self, scope: Any, key: Any) -> tuple[str, str]:
        if scope not in lists.OPTOUT_SCOPES:
            raise HttpError(400, f"scope must be one of {', '.join(lists.OPTOUT_SCOPES)}")
        if not isinstance(key, str) or len(key) > 64:
            raise HttpError(400, "key must be a string (the source_addr or system_id)")
        if scope != "global" and not key:
            what = "source_addr" if scope == "sender" else "system_id"
            raise HttpError(400, f"scope {scope} needs a key (the {what})")
        return scope, "" if scope == "global" else key

    async def consent_add(self, request: Request, who: Identity) -> Response:
        body = request.json()
        _only(body, "number", "source", "wording", "confirmed", "account")
        n = self.c.number_of(body.get("number"))
        source = _text(body, "source", required=True)
        wording = _text(body, "wording", "")
        account = _text(body, "account", "")
        confirmed = body.get("confirmed", False)
        if not isinstance(confirmed, bool):
            raise HttpError(400, "'confirmed' must be true or false")
        await self.c.write(lambda db: lists.grant_consent(db, n, source=source, wording=wording, account=account,
                                                          confirmed=confirmed, actor=who.name))
        return json_response(201, {"number": f"+{n}", "account": account or "*",
                                   "status": "confirmed" if confirmed else "pending"})

    async def consent_remove(self, request: Request, who: Identity, number: str) -> Response:
        n = self.c.number_of(number)
        account = request.query.get("account", "")
        await self.c.write(lambda db: lists.revoke_consent(db, n, account=account, actor=who.name))
        return json_response(200, {"number": f"+{n}", "account": account or "*", "consent": "revoked"})

    async def queue_release(self, request: Request, who: Identity, message_id: str) -> Response:
        n = await self.c.release(message_id, who)
        return json_response(200, {"id": message_id, "released": n})

    async def queue_drop(self, request: Request, who: Identity, message_id: str) -> Response:
        n = await self.c.drop(message_id, who)
        return json_response(200, {"id": message_id, "dropped": n})


def report_json(r: dict) -> dict:
    return {**r, "since": data.iso(r["since"]), "until": data.iso(r["until"])}


def release_now(db, message_id: str, now: float, actor: str, mask) -> int:
    """`queue release` with its audit row (who asked, and when), in one transaction. The daemon's own row follows
    when the message is sent, or dropped by a rule."""
    with write_transaction(db):
        n = hold_store.release_now(db, message_id, now)
        if n:
            for r in hold_store.by_id(db, message_id):
                db.execute("INSERT INTO audit (at, account, sender, recipient, rule, action, status, reason, actor) "
                           "VALUES (?, ?, ?, ?, 'hold', 'release-asked', 0, ?, ?)",
                           (now, r.account, r.sender, mask(r.number, r.recipient),
                            f"released by hand; proxy id {r.id}", actor))
        return n


__all__ = ["Api", "report_json", "release_now"]
