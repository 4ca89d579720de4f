"""The console's pages: server-rendered HTML, one small stylesheet inline, charts as inline SVG, no script.

Rule 1: every value from the store, the request or the config is escaped (`e()`), in text and in attributes.
Rule 2: a page that changes something is two steps: a GET shows what will happen and a form to confirm; the POST
carries the session's CSRF token (auth.Gate.check_form) and answers with a page that says what was done.
Rule 3: the pages read what the API reads (Console.number_view, data.report, …): one answer, two forms.
"""

from __future__ import annotations

from html import escape
from typing import Any
from urllib.parse import quote, urlencode

from . import charts, data
from .api import audit_row, cursor_of, limit_of, report_json, since_of
from .auth import COOKIE, SESSION_S, Identity
from .http import HttpError, Request, Response, Route


def e(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def human(iso_text: Any) -> Any:
    """An ISO 8601 time as a person reads it: 2026-11-28T01:00:00.123Z -> 2026-11-28 01:00:00 UTC."""
    if not isinstance(iso_text, str) or "T" not in iso_text:
        return iso_text
    return iso_text.replace("T", " ", 1).split(".", 1)[0].rstrip("Z") + " UTC"


def t(iso_text: Any) -> str:
    return e(human(iso_text))


def path(*segments: str, **query: str) -> str:
    """A console URL: each segment percent-encoded (a number's "+" too), the query encoded."""
    url = "/console/" + "/".join(quote(s, safe="") for s in segments)
    q = {k: v for k, v in query.items() if v}
    return url + ("?" + urlencode(q) if q else "")


STYLE = """
*{box-sizing:border-box}body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;
color:#1d1d1f;background:#f6f7f9}header{background:#22303c;color:#fff;padding:.6em 1em;display:flex;flex-wrap:wrap;
gap:.4em 1.2em;align-items:center}header a{color:#fff;text-decoration:none}header .who{margin-left:auto;
font-size:.85em;opacity:.85}main{max-width:980px;margin:0 auto;padding:1em}h1{font-size:1.35em;margin:.4em 0}
h2{font-size:1.1em;margin:1.4em 0 .5em}section{background:#fff;border:1px solid #e1e4e8;border-radius:6px;
padding:.8em 1em;margin:.8em 0}table{border-collapse:collapse;width:100%;font-size:.92em}th,td{text-align:left;
padding:.3em .5em;border-bottom:1px solid #eee;vertical-align:top}th{color:#555;font-weight:600}
.scroll{overflow-x:auto}.verdict{font-size:1.15em;padding:.6em .8em;border-radius:6px;margin:.4em 0}
.v-allow{background:#e6f4ea}.v-reject{background:#fce8e6}.v-hold,.v-schedule{background:#fef3e0}
.muted{color:#666;font-size:.9em}form.inline{display:inline}input,select,button{font:inherit;padding:.35em .5em;
border:1px solid #bbb;border-radius:4px;max-width:100%}button{background:#22303c;color:#fff;border:0;
cursor:pointer}button.danger{background:#b2182b}.grid{display:grid;grid-template-columns:repeat(auto-fit,
minmax(140px,1fr));gap:.6em}.figure{background:#f0f2f5;border-radius:6px;padding:.5em .7em}.figure b{display:block;
font-size:1.4em}svg.chart{width:100%;height:auto;max-width:100%}.error{background:#fce8e6;border-color:#f5c2c0}
@media (max-width:600px){body{font-size:14px}th,td{padding:.25em .3em}main{padding:.5em}}
"""


class Pages:
    def __init__(self, console: Any):
        self.c = console

    def routes(self) -> list[Route]:
        return [
            Route("GET", ("console",), self.home, "read"),
            Route("GET", ("console", "search"), self.search, "read"),
            Route("GET", ("console", "numbers", "{number}"), self.number, "read"),
            Route("GET", ("console", "accounts", "{account}"), self.report, "read"),
            Route("POST", ("console", "numbers", "{number}", "{change}"), self.change, "write"),
            Route("GET", ("console", "refusals"), self.refusals, "read"),
            Route("GET", ("console", "queue"), self.queue, "read"),
            Route("GET", ("console", "queue", "{message_id}", "{action}"), self.confirm, "write"),
            Route("POST", ("console", "queue", "{message_id}", "{action}"), self.act, "write"),
            Route("GET", ("console", "login"), self.login_form, "public"),
            Route("POST", ("console", "login"), self.login, "public"),
            Route("POST", ("console", "logout"), self.logout, "public"),
        ]

    # --- the frame ----------------------------------------------------------------------------------------

    def page(self, title: str, body: str, who: Identity | None, status: int = 200,
             headers: list[tuple[str, str]] | None = None) -> Response:
        if who is None or who.anonymous:
            account = (f'<span class="who">{"read-only (this host)" if who else ""} '
                       '<a href="/console/login">log in</a></span>')
        else:
            account = (f'<span class="who">{e(who.name)} ({e(who.access)}) <form class="inline" method="post" '
                       f'action="/console/logout"><input type="hidden" name="csrf" value="{e(self.c.gate.csrf(who))}">'
                       f'<button>log out</button></form></span>')
        html = (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" '
                f'content="width=device-width, initial-scale=1"><title>{e(title)} · smppguard</title>'
                f'<style>{STYLE}</style></head><body><header><a href="/console/"><b>smppguard</b></a>'
                f'<a href="/console/refusals">Refusals</a><a href="/console/queue">Hold queue</a>'
                f'<form class="inline" method="get" action="/console/search"><input name="q" size="16" '
                f'placeholder="number or account" aria-label="search"></form>{account}</header>'
                f'<main><h1>{e(title)}</h1>{body}</main></body></html>')
        return Response(status, html.encode(), "text/html; charset=utf-8", headers or [])

    def error(self, err: HttpError, request: Request | None) -> Response:
        hint = ' <a href="/console/login">Log in with a token</a>.' if err.status in (401, 403) else ""
        return self.page(f"{err.status} {err.message[:80]}", f'<section class="error"><p>{e(err.message)}.{hint}</p>'
                         f'<p><a href="/console/">Back to the console</a></p></section>', None, err.status,
                         list(err.headers))

    @staticmethod
    def redirect(to: str, headers: list[tuple[str, str]] | None = None) -> Response:
        return Response(303, b"", "text/plain", [("Location", to), *(headers or [])])

    # --- pages ----------------------------------------------------------------------------------------------

    async def home(self, request: Request, who: Identity) -> Response:
        since = self.c.clock() - 30 * 86400
        accounts = await self.c.read(data.accounts, since)
        recent = await self.c.read(data.refusals, before_id=None, limit=10)
        body = ('<section><h2>Look a number up</h2><form method="get" action="/console/search">'
                '<input name="q" placeholder="+8613800138000" required> <button>Look up</button></form>'
                '<p class="muted">Every list the number is on, its consent and credit, and the verdict a message '
                'would get now, with each rule\'s reasoning.</p></section>')
        body += '<section><h2>Accounts (the last 30 days)</h2>'
        body += ("<ul>" + "".join(f'<li><a href="{e(path("accounts", a))}">{e(a)}</a></li>' for a in accounts)
                 + "</ul>") if accounts else '<p class="muted">No traffic yet.</p>'
        body += "</section>"
        body += f'<section><h2>Recent refusals</h2>{self._audit_table(recent)}' \
                f'<p><a href="/console/refusals">More</a></p></section>'
        return self.page(Any, body, who)

    async def search(self, request: Request, who: Identity) -> Response:
        q = request.query.get("q", "").strip()
        if not q:
            return self.redirect("/console/")
        from ..store.lists import maybe_number
        if any(c.isdigit() for c in q) and maybe_number(q, self.c.policy().default_region) is not None:
            return self.redirect(path("numbers", q))
        accounts = await self.c.read(data.accounts, self.c.clock() - 400 * 86400)
        found = [a for a in accounts if q.lower() in a.lower()]
        if len(found) == 1:
            return self.redirect(path("accounts", found[0]))
        body = (f'<section><p>{e(q)!s} is not a valid phone number' + (", nor an account with traffic." if not found
                else "; accounts that match:") + "</p>")
        body += "<ul>" + "".join(f'<li><a href="{e(path("accounts", a))}">{e(a)}</a></li>' for a in found) + "</ul>"
        return self.page("Search", body + "</section>", who, 200 if found else 404)

    async def number(self, request: Request, who: Identity, number: str) -> Response:
        v = await self.c.number_view(number, request.query)
        verdict = v["verdict"]
        action = verdict["action"]
        said = f"by {e(verdict['rule'])}: {e(verdict['reason'])}" if verdict["rule"] else "no rule objects"
        status = f' (status {e(verdict["status_hex"])})' if verdict["status"] else ""
        q = request.query
        body = (f'<section><p class="muted">region {e(v["region"] or "?")} · zones {e(", ".join(v["zones"][:3]))}'
                f'{" …" if len(v["zones"]) > 3 else ""} · class {e(v["class"])}</p>'
                f'<div class="verdict v-{e(action)}" id="verdict"><b>{e(action.upper())}</b> {said}{status}</div>'
                f'<p class="muted">A message now from account {e(verdict["account"] or "(any)")}, sender '
                f'{e(verdict["sender"] or "(any)")}{", text " + e(repr(verdict["text"])) if verdict["text"] else ""}'
                f'. Try another:</p><form method="get" class="grid">'
                f'<input name="account" placeholder="account (system_id)" value="{e(q.get("account", ""))}">'
                f'<input name="sender" placeholder="sender (source_addr)" value="{e(q.get("sender", ""))}">'
                f'<input name="text" placeholder="text" value="{e(q.get("text", ""))}"><button>Check</button></form>'
                '<h2>Each rule</h2><div class="scroll"><table id="rules"><tr><th>rule</th><th>result</th>'
                '<th>reason</th></tr>')
        for r in verdict["rules"]:
            result = r["result"] if r["applies"] else f"skipped ({r['note']})"
            body += (f'<tr class="r-{e(r["result"])}"><td>{e(r["rule"])}</td><td>{e(result)}</td>'
                     f'<td>{e(r["reason"])}</td></tr>')
        body += "</table></div></section>"
        lists = v["lists"]
        body += '<section><h2>Lists</h2><table id="lists">'
        b = lists["blacklist"]
        body += ("<tr><th>blacklist</th><td>" + (
            f'{e(b["source"])}: {e(b["reason"]) or "—"} <span class="muted">since {t(b["added_at"])} by '
            f'{e(b["actor"])}</span>' + (f'<br>removal pending until {t(b["removal"]["effective_at"])}: '
                                         f'{e(b["removal"]["reason"])}' if b["removal"] else "")
            if b else "not listed") + "</td></tr>")
        body += "<tr><th>opt-outs</th><td>" + ("<br>".join(
            f'{e(o["scope"])} {e(o["key"])} <span class="muted">({e(o["source"])}'
            f'{", " + e(o["keyword"]) if o["keyword"] else ""}'
            f', {t(o["added_at"])})</span>' for o in lists["optouts"]) or "none") + "</td></tr>"
        d = lists["dead"]
        body += "<tr><th>dead</th><td>" + (f'{e(d["reason"])} <span class="muted">until {t(d["expires_at"])}</span>'
                                           if d else "no") + "</td></tr>"
        z = lists["zone"]
        body += ("<tr><th>time zone</th><td>" + (e(z["zone"]) + " (set by hand)" if z else "from the number")
                 + "</td></tr>")
        if lists["watched"]:
            body += f'<tr><th>watched</th><td>removed from the blacklist {t(lists["watched"]["removed_at"])}</td></tr>'
        body += "</table></section>"
        body += '<section><h2>Consent</h2>' + (self._table(
            v["consent"], ("account", "status", "source", "wording", "granted_at", "confirmed_at"), "consent")
            if v["consent"] else "<p>none on record</p>") + "</section>"
        c = v["credit"]
        floor = f" (the credit rule refuses marketing below {c['floor']})" if c["floor"] is not None else \
            " (the credit rule is off)"
        body += (f'<section><h2>Credit: {e(c["score"])}</h2><p class="muted">100, less points for what is on record, '
                 f'more for recent deliveries{e(floor)}</p>' + (self._table(c["parts"], ("part", "count", "points"),
                                                                            "credit") if c["parts"] else
                                                               "<p>nothing on record</p>") + "</section>")
        s = v["sends"]
        body += (f'<section><h2>Sends</h2><p>{e(s["last_30_days"])} in the last 30 days (every account, as the '
                 f'frequency rule counts them)</p>' + ("<p class=\"muted\">" + e(", ".join(s["recent"][:10])) + "</p>"
                                                       if s["recent"] else "") + "</section>")
        body += (f'<section><h2>Refusals, holds and list changes</h2><p class="muted">as the audit log keeps the '
                 f'number: {e(v["audit_recipient"])}</p>{self._audit_table(v["audit"])}</section>')
        if who.may_write and who.session:
            body += self._change_forms(v["number"], who, v["lists"]["blacklist"])
        return self.page(v["number"], body, who)

    def _change_forms(self, number: str, who: Identity, blacklisted: dict | None) -> str:
        csrf = f'<input type="hidden" name="csrf" value="{e(self.c.gate.csrf(who))}">'

        def form(change: str, fields: str, button: str) -> str:
            return (f'<form method="post" class="grid" action="{e(path("numbers", number, change))}">{csrf}{fields}'
                    f'<button id="{e(change)}">{e(button)}</button></form>')
        from ..store.lists import BLACKLIST_SOURCES
        sources = "".join(f'<option value="{s}">{s}</option>' for s in BLACKLIST_SOURCES)
        return ('<section><h2>Change</h2><p class="muted">Audited with your token\'s name; the proxy applies it '
                'within a second.</p><h3>Opt out</h3>' + form(
                    "optout", '<select name="scope" aria-label="scope"><option value="sender">sender</option>'
                    '<option value="account">account</option><option value="global">global</option></select>'
                    '<input name="key" placeholder="sender or account"><input name="keyword" placeholder="keyword '
                    '(STOP, TD …)">', "Opt out") +
                ('<h3>Blacklist</h3>' + form(
                    "blacklist", f'<select name="source" aria-label="source">{sources}</select>'
                    '<input name="reason" placeholder="reason">', "Blacklist") if not blacklisted else
                 '<h3>Remove from the blacklist</h3><p class="muted">It stays listed for the observation period; a '
                 'new complaint, carrier listing or opt-out meanwhile cancels the removal.</p>' + form(
                     "unblacklist", '<input name="reason" placeholder="why (verified consent …)" required>'
                     '<select name="observe" aria-label="observation period">' + "".join(
                         f'<option value="{d}d">observe {d} days</option>' for d in range(3, 8)) + "</select>",
                     "Ask to remove") if not blacklisted["removal"] else "") +
                '<h3>Consent</h3>' + form(
                    "consent", '<input name="source" placeholder="how (web form, call …)" required>'
                    '<input name="wording" placeholder="the wording agreed to"><label><input type="checkbox" '
                    'name="confirmed" value="1"> confirmed</label>', "Record consent") + '</section>')

    async def change(self, request: Request, who: Identity, number: str, change: str) -> Response:
        """A list change from the number's page: the API's, from a form (Rule 2)."""
        from ..store import lists

        if change not in ("optout", "blacklist", "unblacklist", "consent"):
            raise HttpError(404, "no such change: optout, blacklist, unblacklist or consent")
        fields = request.form()
        self.c.gate.check_form(request, who, fields)
        n = self.c.number_of(number)
        text = {k: v[:1000] for k, v in fields.items()}
        if change == "optout":
            scope, key = self.c.api._scope(text.get("scope", "sender"), text.get("key", "").strip())
            threshold = self.c.policy().correlation_threshold
            await self.c.write(lambda db: lists.add_optouts(db, [(n, scope, key)], keyword=text.get("keyword", ""),
                                                            actor=who.name, correlation_threshold=threshold))
            said = f"+{n} opted out ({scope}{' ' + key if key else ''})."
        elif change == "blacklist":
            source = text.get("source", "manual")
            if source not in lists.BLACKLIST_SOURCES:
                raise HttpError(400, f"source must be one of {', '.join(lists.BLACKLIST_SOURCES)}")
            await self.c.write(lambda db: lists.add_blacklist(db, [n], source=source, reason=text.get("reason", ""),
                                                              actor=who.name))
            said = f"+{n} blacklisted ({source})."
        elif change == "unblacklist":
            from ..values import duration
            observe = text.get("observe", "3d")
            try:
                observe_s = duration(observe)
            except ValueError:
                raise HttpError(400, "the observation period must be 3d to 7d") from None
            if not lists.MIN_OBSERVE_S <= observe_s <= lists.MAX_OBSERVE_S:
                raise HttpError(400, "the observation period must be 3d to 7d")
            reason = text.get("reason", "").strip()
            p = await self.c.write(lambda db: lists.request_removal(db, n, reason=reason, observe_s=observe_s,
                                                                    actor=who.name, now=self.c.clock()))
            said = f"+{n} will be removed at {human(data.iso(p.effective_at))} unless a new complaint or opt-out " \
                   "comes first."
        else:
            if not text.get("source", "").strip():
                raise HttpError(400, "say how consent was given (source)")
            confirmed = text.get("confirmed") == "1"
            await self.c.write(lambda db: lists.grant_consent(db, n, source=text["source"],
                                                              wording=text.get("wording", ""), confirmed=confirmed,
                                                              actor=who.name))
            said = f"Consent for +{n} recorded ({'confirmed' if confirmed else 'pending'})."
        if change != "unblacklist":
            said += " The proxy applies it within a second."
        return self.page("Done", f'<section><p id="done">{e(said)}</p>'
                                 f'<p><a href="{e(path("numbers", f"+{n}"))}">Back to +{e(n)}</a></p></section>', who)

    async def report(self, request: Request, who: Identity, account: str) -> Response:
        now = self.c.clock()
        since_text = request.query.get("since", "7d")
        r = report_json(await self.c.read(data.report, account, since_of(since_text, now), now))
        body = ('<form method="get"><label>Period <select name="since">' + "".join(
            f'<option value="{p}"{" selected" if p == since_text else ""}>last {p}</option>'
            for p in ("1d", "7d", "30d", "90d")) + '</select></label> <button>Show</button></form>')
        body += report_sections(r)
        return self.page(f"Account {account}", body, who)

    async def refusals(self, request: Request, who: Identity) -> Response:
        limit, before = limit_of(request, 50), cursor_of(request)
        account = request.query.get("account", "")[:64] or None
        rule = request.query.get("rule", "")[:64] or None
        rows = await self.c.read(data.refusals, before_id=before, limit=limit, account=account, rule=rule)
        more = (f'<p><a href="{e(path("refusals", cursor=str(rows[-1]["id"]), account=account or "", rule=rule or ""))}'
                '">Older</a></p>' if len(rows) == limit else "")
        rules = ["", *(r.name for r, _ in self.c.policy().rules), "hold"]
        filters = ('<form method="get" class="grid"><input name="account" placeholder="account" '
                   f'value="{e(account or "")}"><select name="rule" aria-label="rule">' + "".join(
                       f'<option value="{e(r)}"{" selected" if r == (rule or "") else ""}>{e(r or "every rule")}'
                       '</option>' for r in rules) + '</select><button>Filter</button></form>')
        return self.page("Recent refusals and holds", f"<section>{filters}{self._audit_table(rows)}{more}</section>",
                         who)

    async def queue(self, request: Request, who: Identity) -> Response:
        limit, offset = limit_of(request, 50), cursor_of(request) or 0
        rows = await self.c.read(self.c.queue_rows, request.query.get("account") or None, limit, offset, who)
        if not rows:
            return self.page("Hold queue", "<section><p>No held messages.</p></section>", who)
        body = '<section><div class="scroll"><table id="queue"><tr><th>id</th><th>account</th><th>sender</th>' \
               '<th>recipient</th><th>state</th><th>release at</th><th>expires</th><th></th></tr>'
        for r in rows:
            actions = ""
            if who.may_write:
                actions = (f'<a href="{e(path("queue", r["id"], "release"))}">release</a> · '
                           f'<a href="{e(path("queue", r["id"], "drop"))}">drop</a>')
            body += (f'<tr data-id="{e(r["id"])}"><td>{e(r["id"])}</td><td>{e(r["account"])}</td><td>{e(r["sender"])}'
                     f'</td><td>{e(r["recipient"])}</td><td>{e(r["state"])}'
                     f'{" (by hand)" if r["released_by_hand"] else ""}'
                     f'</td><td>{t(data.iso(r["release_at"]))}</td><td>{t(data.iso(r["expires_at"]))}</td>'
                     f'<td>{actions}</td></tr>')
        body += "</table></div>"
        if len(rows) == limit:
            body += f'<p><a href="{e(path("queue", cursor=str(offset + limit)))}">More</a></p>'
        if not who.may_write:
            body += '<p class="muted">Log in with a token that may write to release or drop messages.</p>'
        return self.page("Hold queue", body + "</section>", who)

    async def confirm(self, request: Request, who: Identity, message_id: str, action: str) -> Response:
        if action not in ("release", "drop"):
            raise HttpError(404, "no such action: release or drop")
        rows = [r for r in await self.c.read(self.c.queue_rows, None, 1000, 0, who) if r["id"] == message_id]
        if not rows:
            raise HttpError(404, f"no held message {message_id}")
        r = rows[0]
        what = ("Send it now, whatever the quiet hours say; the other rules still decide (an opted-out or "
                "blacklisted recipient's message is dropped)." if action == "release" else
                "Remove it: it is never sent, and a sender that asked for a receipt gets one with stat DELETED.")
        body = (f'<section><p>Message <b>{e(message_id)}</b> of {e(r["account"])} to {e(r["recipient"])}, held until '
                f'{t(data.iso(r["release_at"]))}.</p><p>{e(what)}</p><form method="post" action="'
                f'{e(path("queue", message_id, action))}"><input type="hidden" name="csrf" '
                f'value="{e(self.c.gate.csrf(who))}"><button id="confirm" '
                f'class="{"danger" if action == "drop" else ""}">'
                f'{e(action.capitalize())} {e(message_id)}</button> <a href="/console/queue">Cancel</a></form>'
                '</section>')
        return self.page(f"{action.capitalize()} a held message?", body, who)

    async def act(self, request: Request, who: Identity, message_id: str, action: str) -> Response:
        if action not in ("release", "drop"):
            raise HttpError(404, "no such action: release or drop")
        self.c.gate.check_form(request, who, request.form())
        if action == "release":
            n = await self.c.release(message_id, who)
            said = f"Released {message_id} ({n} part{'s' if n != 1 else ''}): the daemon sends it within a second " \
                   "through a bind of its account."
        else:
            n = await self.c.drop(message_id, who)
            said = f"Dropped {message_id} ({n} part{'s' if n != 1 else ''}): it will not be sent."
        return self.page("Done", f'<section><p id="done">{e(said)}</p><p><a href="/console/queue">Back to the hold '
                                 f'queue</a></p></section>', who)

    # --- logging in -----------------------------------------------------------------------------------------

    async def login_form(self, request: Request, who: Identity | None) -> Response:
        body = ('<section><form method="post" action="/console/login"><p><label>Token <input type="password" '
                'name="token" id="token" autocomplete="current-password" required></label></p><p><button id="login">'
                'Log in</button></p></form><p class="muted">A token of [http] tokens. The console keeps a session '
                f'for {int(SESSION_S // 3600)} hours in a cookie only this site can read.</p></section>')
        return self.page("Log in", body, who)

    async def login(self, request: Request, who: Identity | None) -> Response:
        origin = request.header("origin")
        if origin and origin != "null" and origin.split("://", 1)[-1] != request.header("host"):
            raise HttpError(403, "this form was sent from another site")
        sid = self.c.gate.login(request.form().get("token", ""))
        if sid is None:
            raise HttpError(401, "that token is not one of [http] tokens")
        secure = "; Secure" if self.c.config.http.tls_cert else ""
        return self.redirect("/console/", [("Set-Cookie", f"{COOKIE}={sid}; Path=/console; HttpOnly; "
                                                          f"SameSite=Strict; Max-Age={int(SESSION_S)}{secure}")])

    async def logout(self, request: Request, who: Identity | None) -> Response:
        if who is not None and who.session:
            self.c.gate.check_form(request, who, request.form())
            self.c.gate.logout(who.session)
        return self.redirect("/console/", [("Set-Cookie", f"{COOKIE}=; Path=/console; HttpOnly; SameSite=Strict; "
                                                          "Max-Age=0")])

    # --- pieces ---------------------------------------------------------------------------------------------

    @staticmethod
    def _table(rows: list[dict], columns: tuple[str, ...], ident: str) -> str:
        out = f'<table id="{e(ident)}"><tr>' + "".join(f"<th>{e(c)}</th>" for c in columns) + "</tr>"
        for r in rows:
            out += "<tr>" + "".join(f"<td>{t(r.get(c)) if c.endswith('_at') else e(r.get(c))}</td>"
                                    for c in columns) + "</tr>"
        return out + "</table>"

    def _audit_table(self, rows: list[dict]) -> str:
        if not rows:
            return "<p>none</p>"
        shown = [r if "status" in r and isinstance(r["status"], str) else audit_row(r) for r in rows]
        return '<div class="scroll">' + self._table(
            [{**r, "when": human(r["first"]) + (f" … {human(r['last'])} ×{r['count']}" if r["count"] > 1 else "")}
             for r in shown],
            ("when", "rule", "action", "status", "recipient", "account", "sender", "reason"), "audit") + "</div>"


def report_sections(r: dict) -> str:
    """An account's report (data.report, times as ISO) as HTML: the figures, the two charts, the days."""
    totals = r["totals"]
    rate = f"{100 * r['refusal_rate']:.1f}%" if r["refusal_rate"] is not None else "—"
    figures = [("sent", totals["sent"]), ("held", totals["held"]), ("refused", totals["refused"]),
               ("refusal rate", rate),
               ("opt-outs learned", r["optouts_learned"]), ("complaints", r["complaints"])]
    body = f'<p class="muted">{t(r["since"])} to {t(r["until"])} (by UTC day)</p>'
    body += '<section><div class="grid" id="figures">' + "".join(
        f'<div class="figure">{e(k)}<b>{e(v)}</b></div>' for k, v in figures) + "</div></section>"
    body += f'<section><h2>Messages per day by outcome</h2>{charts.stacked_days(r["days"])}</section>'
    body += f'<section><h2>Refusals by rule</h2>{charts.bars(r["refused_by_rule"])}</section>'
    h = r["held_outcomes"]
    body += '<section><h2>Held messages</h2><p>' + ", ".join(f"{e(v)} {e(k)}" for k, v in h.items()) + '</p></section>'
    body += '<section><h2>By day</h2><div class="scroll">' + Pages._table(
        r["days"], ("day", "sent", "held", "refused"), "days") + "</div></section>"
    return body


def standalone(title: str, body: str) -> str:
    """A page of its own, with nothing to fetch: `smppguard report --html` writes one an operator can send on."""
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" '
            f'content="width=device-width, initial-scale=1"><title>{e(title)}</title><style>{STYLE}</style></head>'
            f'<body><main><h1>{e(title)}</h1>{body}</main></body></html>')
