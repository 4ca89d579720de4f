"""The console's pages over real HTTP: logging in, the session cookie, forms that are CSRF-safe, the hold queue's
release and drop through the API and the pages, what a read-only client sees, and pages that escape whatever
the request carried."""

from __future__ import annotations

import re
from datetime import datetime
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import pytest
from console_helpers import POLICY, READ_TOKEN, WRITE_TOKEN, Sender, console_config, serve, stop

from helpers import Stack, rows, wait_for
from smppguard.smpp.status import Status

NIGHT = datetime(2026, 11, 27, 23, 0, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()
HOLDING = POLICY.replace("[rules.quiet_hours]\nenabled = false", '[rules.quiet_hours]\naction = "hold"')
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture
def holding(tmp_path):
    """A stack at 23:00 in Shanghai with two held messages; no sender bound, so a released one stays in the store."""
    path = tmp_path / "guard.db"
    with Stack(console_config(tmp_path, HOLDING), store=True, clock=lambda: NIGHT) as stack:
        served = serve(stack, path)
        try:
            sender = Sender(stack)
            try:
                assert sender.submit("ACME", 8613700000001) == Status.ROK
                assert sender.submit("ACME", 8613700000002) == Status.ROK
            finally:
                sender.close()
            wait_for(lambda: len(rows(path, "SELECT id FROM held")) == 2, what="two held messages")
            yield served
        finally:
            stop(served)


def login(served, token: str = WRITE_TOKEN) -> tuple[str, str]:
    """(the session cookie, the CSRF token of its forms)."""
    got = served.call("POST", "/console/login", body=urlencode({"token": token}).encode(), headers=FORM)
    assert got.status == 303 and got.headers["location"] == "/console/"
    cookie = got.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/console" in cookie
    sid = re.match(r"smppguard_session=([^;]+);", cookie).group(1)
    page = served.call("GET", "/console/queue", headers={"Cookie": f"smppguard_session={sid}"})
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text).group(1)
    return sid, csrf


def held_ids(served) -> list[str]:
    return [i for (i,) in rows(served.path, "SELECT id FROM held ORDER BY seq")]


def test_console_release_needs_the_session_its_csrf_token_and_this_site(holding):
    first, second = held_ids(holding)
    sid, csrf = login(holding)
    cookie = {"Cookie": f"smppguard_session={sid}", **FORM}
    target = f"/console/queue/{first}/release"
    for headers, body, said in [
        (cookie, b"", "CSRF token is missing"),
        (cookie, b"csrf=" + b"0" * 64, "CSRF token is missing or stale"),
        ({**cookie, "Origin": "http://attacker.example"}, f"csrf={csrf}".encode(), "from another site"),
    ]:
        got = holding.call("POST", target, body=body, headers=headers)
        assert got.status == 403 and said in got.text, got
    no_session = holding.call("POST", target, body=f"csrf={csrf}".encode(), headers=FORM)
    assert no_session.status == 401  # a loopback client without a session may only read
    assert rows(holding.path, "SELECT forced FROM held ORDER BY seq") == [(0,), (0,)]  # nothing released

    confirm = holding.call("GET", target, headers=cookie)
    assert confirm.status == 200 and f"Release {first}" in confirm.text
    assert rows(holding.path, "SELECT forced FROM held ORDER BY seq") == [(0,), (0,)]  # a GET changes nothing
    done = holding.call("POST", target, body=f"csrf={csrf}".encode(),
                        headers={**cookie, "Origin": f"http://127.0.0.1:{holding.port}"})
    assert done.status == 200 and f"Released {first}" in done.text, done
    assert rows(holding.path, "SELECT id, forced FROM held ORDER BY seq") == [(first, 1), (second, 0)]

    dropped = holding.call("POST", f"/console/queue/{second}/drop", body=f"csrf={csrf}".encode(), headers=cookie)
    assert dropped.status == 200 and f"Dropped {second}" in dropped.text
    assert held_ids(holding) == [first]
    assert rows(holding.path, "SELECT rule, action, actor FROM audit WHERE actor = 'crm' ORDER BY id") == [
        ("hold", "release-asked", "crm"), ("hold", "dropped", "crm")]

    out = holding.call("POST", "/console/logout", body=f"csrf={csrf}".encode(), headers=cookie)
    assert out.status == 303 and "Max-Age=0" in out.headers["set-cookie"]
    after = holding.call("POST", f"/console/queue/{first}/drop", body=f"csrf={csrf}".encode(), headers=cookie)
    assert after.status == 401  # the session is gone
    assert held_ids(holding) == [first]


def test_console_login_with_a_wrong_token_or_a_read_token(holding):
    bad = holding.call("POST", "/console/login", body=b"token=guess-guess-guess-guess", headers=FORM)
    assert bad.status == 401 and "set-cookie" not in bad.headers
    sid, csrf = login(holding, READ_TOKEN)
    cookie = {"Cookie": f"smppguard_session={sid}", **FORM}
    page = holding.call("GET", "/console/queue", headers=cookie)
    assert "desk (read)" in page.text and ">release<" not in page.text
    refused = holding.call("POST", f"/console/queue/{held_ids(holding)[0]}/release", body=f"csrf={csrf}".encode(),
                           headers=cookie)
    assert refused.status == 403 and "may read, not write" in refused.text
    assert rows(holding.path, "SELECT forced FROM held") == [(0,), (0,)]


def test_console_queue_shows_numbers_in_full_to_a_write_token_only(holding):
    read = holding.call("GET", "/api/v1/queue", token=READ_TOKEN).json()["items"]
    write = holding.call("GET", "/api/v1/queue", token=WRITE_TOKEN).json()["items"]
    assert [r["recipient"] for r in read] == ["+86137****0001", "+86137****0002"]
    assert [r["recipient"] for r in write] == ["+8613700000001", "+8613700000002"]
    assert read[0]["release_at"].endswith("Z") and read[0]["state"] == "held"
    page = holding.call("GET", "/console/queue").text  # a loopback client without a token
    assert "+86137****0001" in page and "+8613700000001" not in page


def test_api_queue_release_and_drop(holding):
    first, second = held_ids(holding)
    got = holding.call("POST", f"/api/v1/queue/{first}/release", token=WRITE_TOKEN)
    assert got.status == 200 and got.json() == {"id": first, "released": 1}
    assert rows(holding.path, "SELECT forced, release_at FROM held WHERE id = ?", first) == [(1, NIGHT)]
    assert rows(holding.path, "SELECT rule, action, recipient, actor FROM audit WHERE actor != ''") == [
        ("hold", "release-asked", "+86137****0001", "crm")]
    got = holding.call("POST", f"/api/v1/queue/{second}/drop", token=WRITE_TOKEN)
    assert got.status == 200 and got.json() == {"id": second, "dropped": 1}
    assert held_ids(holding) == [first]
    assert holding.call("POST", f"/api/v1/queue/{second}/drop", token=WRITE_TOKEN).status == 404
    bad = holding.call("POST", "/api/v1/queue/x'%20OR%201=1/drop", token=WRITE_TOKEN)
    assert bad.status == 400 and bad.json()["error"]["message"] == "not a message id"
    assert held_ids(holding) == [first]


def test_console_pages_escape_what_the_request_carried(served):
    evil = "<script>alert(1)</script>"
    import socket

    with socket.create_connection((served.host, served.port), timeout=5) as raw:  # the path as sent, unencoded
        raw.sendall(b"GET /console/<script>alert(1)<script> HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        answer = b""
        while chunk := raw.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.0 404 ")
    assert b"&lt;script&gt;" in answer and b"<script" not in answer
    for target in (f"/console/accounts/{evil.replace('/', '')}", f"/console/search?q={evil}",
                   f"/console/numbers/{evil.replace('/', '')}",
                   f"/console/numbers/13800138000?account={evil}&sender=%22%3E{evil}"):
        got = served.call("GET", target.replace("<", "%3C").replace(">", "%3E").replace(" ", "%20"))
        assert got.headers["content-type"].startswith("text/html"), target
        assert "<script" not in got.text, (target, got.text[-500:])
        assert "&lt;script&gt;" in got.text, target
    assert served.call("GET", "/console/numbers/abc").status == 400


def test_console_search_goes_to_a_number_or_an_account(served):
    got = served.call("GET", "/console/search?q=138+0013+8000")
    assert got.status == 303 and got.headers["location"] == "/console/numbers/138%200013%208000"
    assert served.call("GET", got.headers["location"]).status == 200
    sender = Sender(served.stack)
    try:
        assert sender.submit("ACME", 8613800138000, "hello") == Status.ROK
        assert sender.submit("ACME", 12345, "hello") == Status.RINVDSTADR  # an audit row for acme
    finally:
        sender.close()
    wait_for(lambda: rows(served.path, "SELECT COUNT(*) FROM audit")[0][0] == 1, what="the refusal audited")
    found = served.call("GET", "/console/search?q=acm")
    assert found.status == 303 and found.headers["location"] == "/console/accounts/acme"
    assert served.call("GET", "/console/search?q=nobody").status == 404


def test_console_refusals_page_and_its_older_link(served):
    sender = Sender(served.stack)
    try:
        for n in ("1100001", "2200002", "3300003"):
            assert sender.submit("ACME", int(n), "hello") == Status.RINVDSTADR
    finally:
        sender.close()
    wait_for(lambda: rows(served.path, "SELECT COUNT(*) FROM audit")[0][0] == 3, what="three refusals")
    first = served.call("GET", "/console/refusals?limit=2")
    assert first.status == 200 and first.text.count("not a valid phone number") == 2
    older = re.search(r'href="(/console/refusals\?cursor=\d+)"', first.text).group(1)
    second = served.call("GET", older)
    assert second.text.count("not a valid phone number") == 1 and "Older" not in second.text


def test_console_number_page_changes_the_lists_from_its_forms(served):
    sid, csrf = login(served)
    cookie = {"Cookie": f"smppguard_session={sid}", **FORM}
    page = served.call("GET", "/console/numbers/13800138000", headers=cookie)
    assert 'id="optout"' in page.text and 'id="blacklist"' in page.text
    assert 'id="optout"' not in served.call("GET", "/console/numbers/13800138000").text  # read-only: no forms
    target = "/console/numbers/%2B8613800138000/optout"
    form = urlencode({"csrf": csrf, "scope": "sender", "key": "ACME", "keyword": "STOP"}).encode()
    assert served.call("POST", target, body=form, headers={"Cookie": cookie["Cookie"], **FORM,
                                                           "Origin": "http://attacker.example"}).status == 403
    assert served.call("POST", target, body=form.replace(csrf.encode(), b"0" * 64), headers=cookie).status == 403
    assert rows(served.path, "SELECT COUNT(*) FROM optout") == [(0,)]
    done = served.call("POST", target, body=form, headers=cookie)
    assert done.status == 200 and "+8613800138000 opted out (sender ACME)" in done.text
    assert rows(served.path, "SELECT scope, scope_key, keyword FROM optout") == [("sender", "ACME", "STOP")]
    blacklisted = served.call("POST", "/console/numbers/13800138000/blacklist", headers=cookie,
                              body=urlencode({"csrf": csrf, "source": "complaint", "reason": "<b>called</b>"}).encode())
    assert blacklisted.status == 200
    consent = served.call("POST", "/console/numbers/13800138000/consent", headers=cookie,
                          body=urlencode({"csrf": csrf, "source": "call", "confirmed": "1"}).encode())
    assert consent.status == 200 and "(confirmed)" in consent.text
    assert rows(served.path, "SELECT kind, actor FROM changelog ORDER BY id") == [
        ("optout", "crm"), ("blacklist", "crm"), ("consent", "crm")]
    shown = served.call("GET", "/console/numbers/13800138000", headers=cookie).text
    assert "&lt;b&gt;called&lt;/b&gt;" in shown and "<b>called" not in shown
    bad = served.call("POST", "/console/numbers/13800138000/blacklist", headers=cookie,
                      body=urlencode({"csrf": csrf, "source": "friend"}).encode())
    assert bad.status == 400 and rows(served.path, "SELECT COUNT(*) FROM changelog") == [(3,)]


def test_console_number_page_asks_for_a_blacklist_removal_with_its_observation_period(served):
    sid, csrf = login(served)
    cookie = {"Cookie": f"smppguard_session={sid}", **FORM}
    listed = served.call("POST", "/api/v1/blacklist", token=WRITE_TOKEN, json_body={"number": "13800138000"})
    assert listed.status == 201
    page = served.call("GET", "/console/numbers/13800138000", headers=cookie).text
    assert 'id="unblacklist"' in page and 'id="blacklist"' not in page
    target = "/console/numbers/13800138000/unblacklist"
    short = served.call("POST", target, headers=cookie,
                        body=urlencode({"csrf": csrf, "reason": "verified", "observe": "1d"}).encode())
    assert short.status == 400 and rows(served.path, "SELECT COUNT(*) FROM pending_removal") == [(0,)]
    asked = served.call("POST", target, headers=cookie,
                        body=urlencode({"csrf": csrf, "reason": "customer verified", "observe": "5d"}).encode())
    assert asked.status == 200 and "will be removed at" in asked.text
    (requested, effective, actor), = rows(served.path, "SELECT requested_at, effective_at, actor FROM pending_removal")
    assert (round(effective - requested), actor) == (5 * 86400, "crm")
    assert rows(served.path, "SELECT COUNT(*) FROM blacklist") == [(1,)]  # still listed
    after = served.call("GET", "/console/numbers/13800138000", headers=cookie).text
    assert "removal pending until" in after and 'id="unblacklist"' not in after
    again = served.call("POST", target, headers=cookie, body=urlencode({"csrf": csrf, "reason": "x"}).encode())
    assert again.status == 409


def test_console_refusals_filtered_by_account_and_rule(served):
    sender = Sender(served.stack)
    try:
        assert sender.submit("ACME", 1100001, "hello") == Status.RINVDSTADR
    finally:
        sender.close()
    wait_for(lambda: rows(served.path, "SELECT COUNT(*) FROM audit")[0][0] == 1, what="the refusal")
    assert "not a valid phone number" in served.call("GET", "/console/refusals?account=acme&rule=invalid").text
    assert "not a valid phone number" not in served.call("GET", "/console/refusals?account=other").text
    assert "not a valid phone number" not in served.call("GET", "/console/refusals?rule=blacklist").text
    page = served.call("GET", "/console/refusals?rule=invalid").text
    assert '<option value="invalid" selected>' in page
