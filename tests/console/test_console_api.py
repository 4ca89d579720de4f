"""The API over real HTTP against a running proxy and store: every endpoint with no token (a loopback client),
a read token and a write token; writes through the CLI's change path, audited with the token's name; hostile
input refused with a clear 4xx and nothing changed; an opt-out made through the API refusing the next marketing
submit through the proxy within a second."""

from __future__ import annotations

import time

import pytest
from console_helpers import MARKETING, NUMBER, READ_TOKEN, WRITE_TOKEN, Sender

from helpers import rows, send_submit, smpplib_client, wait_for
from smppguard.smpp.status import Status

N = 8613800138000

#: (method, path, body) of every endpoint, with what it needs: "read" or "write".
READS = [
    ("GET", "/api/v1", None),
    ("GET", "/api/v1/numbers/13800138000?account=acme&sender=ACME&text=hi", None),
    ("GET", "/api/v1/accounts", None),
    ("GET", "/api/v1/accounts/acme/report?since=7d", None),
    ("GET", "/api/v1/refusals?limit=10", None),
    ("GET", "/api/v1/queue", None),
    ("GET", "/api/v1/blacklist", None),
]
WRITES = [
    ("POST", "/api/v1/blacklist", {"number": "13800138000", "source": "complaint", "reason": "10086"}),
    ("POST", "/api/v1/optouts", {"number": "13800138000", "scope": "sender", "key": "ACME"}),
    ("POST", "/api/v1/consents", {"number": "13800138000", "source": "web form", "wording": "I agree",
                                  "confirmed": True}),
    ("DELETE", "/api/v1/blacklist/13800138000?reason=verified", None),
    ("DELETE", "/api/v1/optouts/13800138000?scope=sender&key=ACME", None),
    ("DELETE", "/api/v1/consents/13800138000", None),
    ("POST", "/api/v1/queue/0123456789abcdef/release", None),
    ("POST", "/api/v1/queue/0123456789abcdef/drop", None),
]


def changes(path) -> list[tuple]:
    return rows(path, "SELECT kind, op, number, actor FROM changelog ORDER BY id")


@pytest.mark.parametrize("method, target, body", READS)
def test_api_reads_answer_a_loopback_client_a_read_token_and_a_write_token(served, method, target, body):
    for token in (None, READ_TOKEN, WRITE_TOKEN):
        got = served.call(method, target, token=token, json_body=body)
        assert got.status == 200, (token, got)
        assert got.headers["content-type"] == "application/json"
        got.json()
    bad = served.call(method, target, token="not-a-token-of-ours-at-all")
    assert bad.status == 401 and "not one of [http] tokens" in bad.json()["error"]["message"]


@pytest.mark.parametrize("method, target, body", WRITES)
def test_api_writes_need_a_write_token(served, method, target, body):
    none = served.call(method, target, json_body=body)
    assert none.status == 401, none
    assert none.headers["www-authenticate"].startswith("Bearer")
    read = served.call(method, target, token=READ_TOKEN, json_body=body)
    assert read.status == 403 and "may read, not write" in read.json()["error"]["message"]
    assert changes(served.path) == []  # neither wrote anything
    assert rows(served.path, "SELECT COUNT(*) FROM audit") == [(0,)]


def test_api_blacklist_add_and_remove_go_through_the_change_path_with_the_token_as_actor(served):
    got = served.call("POST", "/api/v1/blacklist", token=WRITE_TOKEN,
                      json_body={"number": "13800138000", "source": "complaint", "reason": "10086 complaint"})
    assert got.status == 201, got
    assert got.json() == {"number": NUMBER, "blacklisted": True, "source": "complaint", "reason": "10086 complaint",
                          "already_listed": False}
    assert rows(served.path, "SELECT number, source, reason, actor FROM blacklist") == [
        (N, "complaint", "10086 complaint", "crm")]
    assert changes(served.path) == [("blacklist", "add", N, "crm")]
    assert rows(served.path, "SELECT rule, action, actor FROM audit") == [("blacklist", "add", "crm")]
    again = served.call("POST", "/api/v1/blacklist", token=WRITE_TOKEN, json_body={"number": NUMBER})
    assert again.status == 200 and again.json()["already_listed"] is True

    removal = served.call("DELETE", "/api/v1/blacklist/13800138000", token=WRITE_TOKEN,
                          json_body={"reason": "verified consent", "observe": "5d"})
    assert removal.status == 202, removal
    body = removal.json()
    assert body["removal"] == "pending" and body["effective_at"].endswith("Z")
    (requested, effective, actor), = rows(served.path, "SELECT requested_at, effective_at, actor FROM pending_removal")
    assert (round(effective - requested), actor) == (5 * 86400, "crm")
    assert rows(served.path, "SELECT COUNT(*) FROM blacklist") == [(1,)]  # still listed: the observation period
    twice = served.call("DELETE", "/api/v1/blacklist/13800138000?reason=again", token=WRITE_TOKEN)
    assert twice.status == 409 and "already has a pending removal" in twice.json()["error"]["message"]
    unlisted = served.call("DELETE", "/api/v1/blacklist/13900000001?reason=x", token=WRITE_TOKEN)
    assert unlisted.status == 404 and "is not blacklisted" in unlisted.json()["error"]["message"]
    short = served.call("DELETE", "/api/v1/blacklist/13800138000?reason=x&observe=1d", token=WRITE_TOKEN)
    assert short.status == 400 and "3d to 7d" in short.json()["error"]["message"]


def test_api_optouts_and_consents_added_and_removed(served):
    got = served.call("POST", "/api/v1/optouts", token=WRITE_TOKEN,
                      json_body={"number": NUMBER, "scope": "sender", "key": "ACME", "keyword": "TD"})
    assert got.status == 201, got
    assert rows(served.path, "SELECT number, scope, scope_key, keyword FROM optout") == [(N, "sender", "ACME", "TD")]
    missing_key = served.call("POST", "/api/v1/optouts", token=WRITE_TOKEN, json_body={"number": NUMBER,
                                                                                      "scope": "account"})
    assert missing_key.status == 400 and "needs a key" in missing_key.json()["error"]["message"]
    gone = served.call("DELETE", "/api/v1/optouts/13800138000?scope=sender&key=ACME", token=WRITE_TOKEN)
    assert gone.status == 200 and gone.json()["opted_out"] is False
    assert rows(served.path, "SELECT COUNT(*) FROM optout") == [(0,)]
    again = served.call("DELETE", "/api/v1/optouts/13800138000?scope=sender&key=ACME", token=WRITE_TOKEN)
    assert again.status == 404

    consent = served.call("POST", "/api/v1/consents", token=WRITE_TOKEN,
                          json_body={"number": NUMBER, "source": "web form", "wording": "I agree to offers"})
    assert consent.status == 201 and consent.json()["status"] == "pending"
    assert rows(served.path, "SELECT number, status, source, wording FROM consent") == [
        (N, "pending", "web form", "I agree to offers")]
    looked = served.call("GET", "/api/v1/numbers/13800138000").json()
    assert [(c["status"], c["source"], c["wording"]) for c in looked["consent"]] == [
        ("pending", "web form", "I agree to offers")]
    assert looked["consent"][0]["granted_at"].endswith("Z")
    revoked = served.call("DELETE", "/api/v1/consents/13800138000", token=WRITE_TOKEN)
    assert revoked.status == 200
    assert rows(served.path, "SELECT COUNT(*) FROM consent") == [(0,)]
    assert [a for _, _, _, a in changes(served.path)] == ["crm"] * 4


def test_api_number_shows_lists_credit_refusals_and_the_live_verdict(served):
    served.call("POST", "/api/v1/blacklist", token=WRITE_TOKEN,
                json_body={"number": NUMBER, "source": "complaint", "reason": "10086 complaint"})
    wait_for(lambda: N in served.stack.store.screening.index.blacklist, what="the blacklist in the Index")
    got = served.call("GET", "/api/v1/numbers/%2B8613800138000?account=acme&sender=ACME").json()
    assert got["number"] == NUMBER and got["region"] == "CN"
    assert got["lists"]["blacklist"]["source"] == "complaint"
    assert got["lists"]["blacklist"]["added_at"].endswith("Z")
    v = got["verdict"]
    assert (v["action"], v["rule"], v["status_hex"]) == ("reject", "blacklist", "0x45")
    assert v["reason"] == "number is blacklisted"
    assert {r["rule"]: r["result"] for r in v["rules"]}["blacklist"] == "reject"
    assert got["credit"]["score"] < 100 and got["credit"]["parts"][0]["part"] == "complaint"
    assert [(a["rule"], a["action"], a["actor"]) for a in got["audit"]] == [("blacklist", "add", "crm")]


def test_api_hostile_input_gets_a_clear_4xx_and_changes_nothing(served):
    cases = [
        (dict(body=b'{"number": "13800138000",', headers={"Content-Type": "application/json"}), 400,
         "not valid JSON"),
        (dict(body=b'["13800138000"]', headers={"Content-Type": "application/json"}), 400, "JSON object"),
        (dict(body=b'\xff\xfe', headers={"Content-Type": "application/json"}), 400, "not UTF-8"),
        (dict(body=b'number=13800138000', headers={"Content-Type": "application/x-www-form-urlencoded"}), 415,
         "as JSON"),
        (dict(json_body={"number": "not a number"}), 400, "not a valid phone number"),
        (dict(json_body={"number": "12"}), 400, "not a valid phone number"),
        (dict(json_body={"number": "1" * 500}), 400, "longer than 40"),
        (dict(json_body={"number": ["13800138000"]}), 400, "'number' is required"),
        (dict(json_body={"number": NUMBER, "source": "friend"}), 400, "source must be one of"),
        (dict(json_body={"number": NUMBER, "reason": 7}), 400, "'reason' must be a string"),
        (dict(json_body={"number": NUMBER, "admin": True}), 400, "unknown field 'admin'"),
        (dict(body=b"x" * 70_000, headers={"Content-Type": "application/json"}), 413, "at most 65536"),
        (dict(body=b"[" * 60_000, headers={"Content-Type": "application/json"}), 400, "nested too deep"),
        (dict(body=b"{}", headers={"Content-Type": "application/json", "Content-Length": "\u00b2"}), 400,
         "Content-Length"),  # a digit to str.isdigit, not to int()
        (dict(body=b"{}", headers={"Content-Type": "application/json", "Content-Length": "abc"}), 400,
         "Content-Length"),
    ]
    for kwargs, status, said in cases:
        got = served.call("POST", "/api/v1/blacklist", token=WRITE_TOKEN, **kwargs)
        assert got.status == status, (kwargs, got)
        assert said in got.json()["error"]["message"], (kwargs, got)
    for target, status, said in [
        ("/api/v1/numbers/..%2F..%2Fetc%2Fpasswd", 400, "not allowed"),
        ("/api/v1/numbers/../../../etc/passwd", 400, "not allowed"),
        ("/api/v1/numbers/%2e%2e", 400, "not allowed"),
        ("/api/v1/numbers/abc", 400, "not a valid phone number"),
        ("/api/v1/numbers/13800138000?ton=9", 400, "ton must be"),
        ("/api/v1/refusals?limit=-1", 400, "limit must be"),
        ("/api/v1/refusals?limit=100000", 400, "limit must be"),
        ("/api/v1/refusals?cursor=x", 400, "cursor"),
        ("/api/v1/refusals?cursor=%C2%B2", 400, "cursor"),
        ("/api/v1/refusals?limit=%C2%B2", 400, "limit must be"),
        ("/api/v1/accounts/acme/report?since=yesterday", 400, "since must be"),
        ("/api/v1/nothing", 404, "no such page"),
    ]:
        got = served.call("GET", target, token=READ_TOKEN)
        assert got.status == status, (target, got)
        assert said in got.json()["error"]["message"], (target, got)
    wrong_method = served.call("PUT", "/api/v1/blacklist", token=WRITE_TOKEN, json_body={"number": NUMBER})
    assert wrong_method.status == 405 and wrong_method.headers["allow"] == "GET, POST"
    assert changes(served.path) == []
    assert rows(served.path, "SELECT COUNT(*) FROM blacklist") == [(0,)]


def test_api_a_script_in_a_text_field_is_shown_escaped_on_the_number_page(served):
    script = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    got = served.call("POST", "/api/v1/blacklist", token=WRITE_TOKEN,
                      json_body={"number": NUMBER, "source": "complaint", "reason": script})
    assert got.status == 201
    consent = served.call("POST", "/api/v1/consents", token=WRITE_TOKEN,
                          json_body={"number": NUMBER, "source": script, "wording": "\"'><svg onload=alert(2)>"})
    assert consent.status == 201
    page = served.call("GET", "/console/numbers/13800138000?text=%3Cscript%3Ealert(3)%3C/script%3E")
    assert page.status == 200 and page.headers["content-type"].startswith("text/html")
    assert "<script" not in page.text and "<img" not in page.text and "<svg onload" not in page.text
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page.text
    assert "&lt;svg onload=alert(2)&gt;" in page.text
    assert "script-src" not in page.headers["content-security-policy"]  # and no script would run anyway


def test_api_opt_out_refuses_the_next_marketing_submit_within_a_second(served):
    sender = Sender(served.stack)
    try:
        assert sender.submit("ACME", N, MARKETING) == Status.ROK
        got = served.call("POST", "/api/v1/optouts", token=WRITE_TOKEN,
                          json_body={"number": "13800138000", "scope": "sender", "key": "ACME", "keyword": "TD"})
        assert got.status == 201
        started = time.monotonic()
        while sender.submit("ACME", N, MARKETING) == Status.ROK:
            assert time.monotonic() - started < 1.0, "the API's opt-out did not refuse a submit within a second"
            time.sleep(0.05)
        assert sender.submit("ACME", N, MARKETING) == Status.RSUBMITFAIL  # 0x45, the opt-out rule's
        assert sender.submit("OTHER", N, MARKETING) == Status.ROK  # the opt-out was from ACME only
    finally:
        sender.close()
    audited = rows(served.path, "SELECT rule, action, actor FROM audit WHERE actor != '' ORDER BY id")
    assert audited == [("optout", "add", "crm")]


def test_api_refusals_are_paged_newest_first(served):
    client = smpplib_client(served.stack.address)
    client.bind_transceiver(system_id="acme", password="pw")
    try:
        for n in ("1100001", "2200002", "3300003", "4400004", "5500005"):
            assert send_submit(client, n).status == Status.RINVDSTADR  # not numbers: refused by `invalid`
    finally:
        client.unbind()
        client.disconnect()
    wait_for(lambda: rows(served.path, "SELECT COUNT(*) FROM audit WHERE rule = 'invalid'")[0][0] == 5,
             what="five audit rows")
    seen, cursor = [], None
    while True:
        got = served.call("GET", "/api/v1/refusals?limit=2&rule=invalid" + (f"&cursor={cursor}" if cursor else ""))
        page = got.json()
        assert len(page["items"]) <= 2
        seen += page["items"]
        cursor = page["next"]
        if cursor is None:
            break
    assert len(seen) == 5 and len({r["id"] for r in seen}) == 5
    assert [r["id"] for r in seen] == sorted((r["id"] for r in seen), reverse=True)
    assert {r["status"] for r in seen} == {"0x0B"} and all(r["first"].endswith("Z") for r in seen)


@pytest.fixture
def counting(tmp_path):
    """A stack whose frequency rule is on: accepted sends are kept in the send history, which `sent` counts."""
    from console_helpers import POLICY, console_config, serve, stop

    from helpers import Stack

    with Stack(console_config(tmp_path, POLICY.replace("[rules.frequency]\nenabled = false", "")), store=True) as st:
        s = serve(st, tmp_path / "guard.db")
        try:
            yield s
        finally:
            stop(s)


def test_api_report_counts_an_accounts_sends_and_refusals(counting):
    served = counting
    sender = Sender(served.stack)
    try:
        for i in range(3):
            assert sender.submit("ACME", 8613800138000 + i, "hello") == Status.ROK
    finally:
        sender.close()
    served.call("POST", "/api/v1/blacklist", token=WRITE_TOKEN, json_body={"number": "13800138001",
                                                                           "source": "complaint"})
    wait_for(lambda: 8613800138001 in served.stack.store.screening.index.blacklist, what="the blacklist")
    sender = Sender(served.stack)
    try:
        assert sender.submit("ACME", 8613800138001, "hello") == Status.RSUBMITFAIL
    finally:
        sender.close()
    wait_for(lambda: rows(served.path, "SELECT COUNT(*) FROM send_history")[0][0] == 3
             and rows(served.path, "SELECT COUNT(*) FROM audit WHERE actor = ''")[0][0] == 1, what="rows saved")
    got = served.call("GET", "/api/v1/accounts/acme/report?since=1d", token=READ_TOKEN).json()
    assert got["totals"] == {"sent": 3, "held": 0, "refused": 1}
    assert got["refused_by_rule"] == {"blacklist": 1}
    assert got["complaints"] == 1  # a number acme sent to was blacklisted after a complaint
    assert got["refusal_rate"] == 0.25
    assert sum(d["sent"] for d in got["days"]) == 3 and got["since"].endswith("Z")
    other = served.call("GET", "/api/v1/accounts/other/report?since=1d").json()
    assert other["totals"] == {"sent": 0, "held": 0, "refused": 0}


def test_api_rate_limit_per_token(tmp_path):
    from console_helpers import console_config, serve, stop

    from helpers import Stack

    with Stack(console_config(tmp_path, http={"rate_limit": 1.0}), store=True) as stack:
        s = serve(stack, tmp_path / "guard.db")
        try:
            statuses = [s.call("GET", "/api/v1", token=READ_TOKEN).status for _ in range(7)]
            assert statuses[:5] == [200] * 5 and statuses[-1] == 429, statuses
            limited = s.call("GET", "/api/v1", token=READ_TOKEN)
            assert limited.status == 429 and int(limited.headers["retry-after"]) >= 1
            assert "rate_limit" in limited.json()["error"]["message"]
            assert s.call("GET", "/api/v1", token=WRITE_TOKEN).status == 200  # each token its own bucket
            guesses = [s.call("GET", "/api/v1", token=f"guess-{i:012d}-guess").status for i in range(7)]
            assert guesses[:5] == [401] * 5 and guesses[-1] == 429, guesses  # guessing tokens is limited too
        finally:
            stop(s)


def test_api_anonymous_reads_need_a_host_header_naming_this_host(served):
    assert served.call("GET", "/api/v1", headers={"Host": f"127.0.0.1:{served.port}"}).status == 200
    assert served.call("GET", "/api/v1", headers={"Host": f"localhost:{served.port}"}).status == 200
    rebound = served.call("GET", "/api/v1", headers={"Host": "attacker.example"})
    assert rebound.status == 401
    assert served.call("GET", "/api/v1", token=READ_TOKEN, headers={"Host": "smppguard.example"}).status == 200


def test_api_ignores_the_console_session_cookie(served):
    """A cookie is the console's: a page on another site could make a browser send it, never a bearer token."""
    sid = served.console.gate.login(WRITE_TOKEN)
    got = served.call("POST", "/api/v1/blacklist", json_body={"number": NUMBER},
                      headers={"Cookie": f"smppguard_session={sid}"})
    assert got.status == 401
    assert changes(served.path) == []


def test_api_blacklist_is_paged_with_a_cursor(served):
    for n in ("13800138001", "13800138002", "13800138003"):
        assert served.call("POST", "/api/v1/blacklist", token=WRITE_TOKEN, json_body={"number": n}).status == 201
    first = served.call("GET", "/api/v1/blacklist?limit=2", token=WRITE_TOKEN).json()
    assert [r["number"] for r in first["items"]] == ["+8613800138001", "+8613800138002"]
    assert first["next"] == "2" and first["items"][0]["actor"] == "crm"
    second = served.call("GET", f"/api/v1/blacklist?limit=2&cursor={first['next']}", token=WRITE_TOKEN).json()
    assert [r["number"] for r in second["items"]] == ["+8613800138003"] and second["next"] is None
    for token in (READ_TOKEN, None):  # the whole list in full only to a token that may change it
        masked = served.call("GET", "/api/v1/blacklist", token=token).json()["items"]
        assert [r["number"] for r in masked] == ["+86138****8001", "+86138****8002", "+86138****8003"]


def test_api_reads_the_store_on_two_threads_at_the_stores_background_priority(served):
    import os
    import threading

    from helpers import proc_stat

    for _ in range(4):
        assert served.call("GET", "/api/v1/numbers/13800138000").status == 200
    threads = [t for t in threading.enumerate() if t.name.startswith("console")]
    assert 1 <= len(threads) <= 2
    loop_nice = int(proc_stat(os.getpid())[16])
    assert {int(proc_stat(os.getpid(), t.native_id)[16]) for t in threads} == {min(19, loop_nice + 10)}


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
def test_api_no_request_makes_a_500(served, method):
    """Arbitrary paths, queries and bodies against every route's shape: a 2xx, 3xx or 4xx, never a 500."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    prefixes = sorted({"/" + "/".join("x" if p.startswith("{") else p for p in r.pattern)
                       for r in served.console.routes})
    piece = st.text(st.sampled_from("ab1+%2F.-_<>'\"=&?#;:é²０ \\"), max_size=12)

    @settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.sampled_from(prefixes), piece, piece, st.binary(max_size=40),
           st.sampled_from(["application/json", "application/x-www-form-urlencoded", ""]))
    def one(prefix, segment, query, body, ctype):
        target = prefix.replace("/x", "/" + (segment.replace(" ", "%20").replace("#", "%23") or "x"))
        head = (f"{method} {target}?{query.replace(' ', '+').replace('#', '%23')} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Authorization: Bearer {WRITE_TOKEN}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode("utf-8")

        async def go():
            reader = __import__("asyncio").StreamReader()
            reader.feed_data(body)
            reader.feed_eof()
            return await served.console.respond(head, reader, "127.0.0.1")
        response = served.stack.run(go())
        assert response.status < 500, (head, body, response.body[:300])

    served.console.limiter.rate = served.console.limiter.burst = 1e9  # this test sends hundreds
    one()


def test_api_report_counts_opt_outs_learned_from_replies_to_the_account(served):
    """A STOP through the simulator, relayed to acme's transceiver and learned: one opt-out in acme's report; a
    START that lifts it is an opt-in, not a second opt-out."""
    sender = Sender(served.stack)
    try:
        assert served.stack.call(lambda: served.stack.sim.inject_mo("+8613800138000", "ACME", "STOP", "acme"))
        sender.client.read_once()  # the deliver_sm, answered
        wait_for(lambda: rows(served.path, "SELECT COUNT(*) FROM optout")[0][0] == 1, what="the opt-out learned")
        got = served.call("GET", "/api/v1/accounts/acme/report?since=1d").json()
        assert (got["optouts_learned"], got["optins_learned"]) == (1, 0)
        assert served.stack.call(lambda: served.stack.sim.inject_mo("+8613800138000", "ACME", "START", "acme"))
        sender.client.read_once()
        wait_for(lambda: rows(served.path, "SELECT COUNT(*) FROM optout")[0][0] == 0, what="the opt-out lifted")
    finally:
        sender.close()
    got = served.call("GET", "/api/v1/accounts/acme/report?since=1d").json()
    assert (got["optouts_learned"], got["optins_learned"]) == (1, 1)
    assert served.call("GET", "/api/v1/accounts/other/report?since=1d").json()["optouts_learned"] == 0


def test_api_double_opt_in_a_form_records_consent_and_the_reply_yes_confirms_it(served):
    got = served.call("POST", "/api/v1/consents", token=WRITE_TOKEN,
                      json_body={"number": NUMBER, "source": "web form", "wording": "Offers by SMS, reply YES"})
    assert got.status == 201 and got.json()["status"] == "pending"
    sender = Sender(served.stack)
    try:
        assert served.stack.call(lambda: served.stack.sim.inject_mo(NUMBER, "ACME", "YES", "acme"))
        sender.client.read_once()  # the deliver_sm, answered
        wait_for(lambda: rows(served.path, "SELECT status FROM consent") == [("confirmed",)], what="the YES learned")
    finally:
        sender.close()
    consent = served.call("GET", "/api/v1/numbers/13800138000", token=READ_TOKEN).json()["consent"]
    assert [(c["status"], c["source"], c["wording"]) for c in consent] == [
        ("confirmed", "web form", "Offers by SMS, reply YES")]
    assert consent[0]["confirmed_at"].endswith("Z")
    report = served.call("GET", "/api/v1/accounts/acme/report?since=1d").json()
    assert report["consents_confirmed"] == 1
