"""The console's pieces that do no I/O: request heads parsed (any bytes give a Request or an HttpError, nothing
else), path segments checked, routes matched, who is asking (tokens, loopback, Host), rate limits with a clock
the test sets, CSRF tokens, and the SVG charts escaping what they draw."""

from __future__ import annotations

import pytest
from console_helpers import READ_TOKEN, TOKENS, WRITE_TOKEN
from hypothesis import given
from hypothesis import strategies as st

from smppguard.config import ConfigError, parse_config
from smppguard.console import charts
from smppguard.console.auth import ANONYMOUS, Gate, RateLimiter, is_loopback
from smppguard.console.http import HttpError, Request, Route, check_body_length, match, parse_head, segments_of


def head(line: str, *headers: str) -> bytes:
    return ("\r\n".join((line, *headers)) + "\r\n\r\n").encode("latin-1")


def test_http_parse_head_reads_method_path_query_and_headers():
    r = parse_head(head("GET /api/v1/numbers/%2B8613800138000?account=acme&text=a%20b HTTP/1.1", "Host: x",
                        "Authorization: Bearer abc"), "127.0.0.1")
    assert (r.method, r.path, r.segments) == ("GET", "/api/v1/numbers/%2B8613800138000",
                                               ("api", "v1", "numbers", "+8613800138000"))
    assert r.query == {"account": "acme", "text": "a b"}
    assert r.header("AUTHORIZATION") == "Bearer abc" and r.peer == "127.0.0.1"


@pytest.mark.parametrize("raw, status", [
    (b"GARBAGE\r\n\r\n", 400),
    (b"GET /x\r\n\r\n", 400),
    (b"GET http://evil/ HTTP/1.1\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nNo colon here\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nX-Long: " + b"a" * 20_000 + b"\r\n\r\n", 431),
    (b"GET /api/v1/numbers/%ff HTTP/1.1\r\n\r\n", 400),
    (b"GET /api//v1 HTTP/1.1\r\n\r\n", 400),
])
def test_http_parse_head_refuses_what_it_cannot_read(raw, status):
    with pytest.raises(HttpError) as e:
        parse_head(raw)
    assert e.value.status == status and e.value.message


@given(st.binary(max_size=300))
def test_http_parse_head_any_bytes_give_a_request_or_an_http_error(raw):
    try:
        r = parse_head(raw + b"\r\n\r\n")
    except HttpError as e:
        assert 400 <= e.status < 500
    else:
        assert all(s not in (".", "..") and "/" not in s for s in r.segments)


@given(st.lists(st.text(max_size=8), max_size=5))
def test_http_segments_never_let_a_traversal_through(parts):
    from urllib.parse import quote

    path = "/" + "/".join(quote(p, safe="") for p in parts)
    try:
        segs = segments_of(path)
    except HttpError:
        return
    assert all(s not in ("", ".", "..") and "/" not in s and "\\" not in s for s in segs)


def test_http_body_length_checked_before_reading():
    r = Request("POST", "/api/v1/blacklist", {}, {"content-length": "70000"})
    with pytest.raises(HttpError) as e:
        check_body_length(r, 65536)
    assert e.value.status == 413
    with pytest.raises(HttpError) as e:
        check_body_length(Request("POST", "/", {}, {}), 65536)
    assert e.value.status == 411
    with pytest.raises(HttpError) as e:
        check_body_length(Request("POST", "/", {}, {"transfer-encoding": "chunked", "content-length": "1"}), 65536)
    assert e.value.status == 411
    assert check_body_length(Request("POST", "/", {}, {"content-length": "65536"}), 65536) == 65536
    assert check_body_length(Request("GET", "/", {}, {}), 65536) == 0


def test_http_match_routes_with_parameters_and_methods():
    routes = [Route("GET", ("api", "{x}"), lambda: None, "read"), Route("POST", ("api", "{x}"), lambda: None, "write")]
    route, params = match(routes, Request("POST", "/api/ab", {}, {}, segments=("api", "ab")))
    assert route.method == "POST" and params == {"x": "ab"}
    head_request = Request("HEAD", "/api/ab", {}, {}, segments=("api", "ab"))
    assert match(routes, head_request)[0].method == "GET"
    with pytest.raises(HttpError) as e:
        match(routes, Request("DELETE", "/api/ab", {}, {}, segments=("api", "ab")))
    assert e.value.status == 405 and dict(e.value.headers)["Allow"] == "GET, POST"
    with pytest.raises(HttpError) as e:
        match(routes, Request("GET", "/api", {}, {}, segments=("api",)))
    assert e.value.status == 404


def request(peer: str, *headers: tuple[str, str]) -> Request:
    return Request("GET", "/api/v1", {}, {k.lower(): v for k, v in headers}, peer)


def test_auth_identify_by_token_loopback_and_host():
    gate = Gate(TOKENS, "127.0.0.1")
    assert gate.identify(request("192.0.2.7", ("Authorization", f"Bearer {WRITE_TOKEN}")), cookies=False).name == "crm"
    assert gate.identify(request("192.0.2.7", ("Authorization", f"bearer {READ_TOKEN}")),
                         cookies=False).access == "read"
    assert gate.identify(request("127.0.0.1", ("Host", "127.0.0.1:9775")), cookies=False) == ANONYMOUS
    assert gate.identify(request("::ffff:127.0.0.1", ("Host", "[::1]:9775")), cookies=False) == ANONYMOUS
    for peer, headers in [("192.0.2.7", ()), ("127.0.0.1", (("Host", "attacker.example"),)),
                          ("127.0.0.1", (("Authorization", "Basic dXNlcjpwdw=="),)),
                          ("127.0.0.1", (("Authorization", f"Bearer {WRITE_TOKEN}x"),))]:
        with pytest.raises(HttpError) as e:
            gate.identify(request(peer, *headers), cookies=False)
        assert e.value.status == 401, (peer, headers)
    assert is_loopback("127.8.9.10") and is_loopback("::1") and not is_loopback("10.0.0.1")


def test_auth_sessions_and_their_csrf_tokens():
    now = [1000.0]
    gate = Gate(TOKENS, "127.0.0.1", clock=lambda: now[0])
    assert gate.login("wrong") is None
    sid = gate.login(WRITE_TOKEN)
    cookie = Request("GET", "/console/", {}, {"cookie": f"a=b; smppguard_session={sid}"}, "192.0.2.7")
    who = gate.identify(cookie, cookies=True)
    assert (who.name, who.session) == ("crm", sid)
    with pytest.raises(HttpError):
        gate.identify(cookie, cookies=False)  # the API takes no cookie
    csrf = gate.csrf(who)
    assert len(csrf) == 64 and gate.csrf(ANONYMOUS) == ""
    gate.check_form(cookie, who, {"csrf": csrf})
    other = Gate(TOKENS, "127.0.0.1")  # another start of the daemon: another secret
    assert other.csrf(who) != csrf
    now[0] += 13 * 3600  # past the session's 12 hours
    with pytest.raises(HttpError):
        gate.identify(cookie, cookies=True)


def test_auth_rate_limit_refills_with_time():
    now = [0.0]
    limiter = RateLimiter(2.0, clock=lambda: now[0])
    for _ in range(5):  # the burst: at least 5
        limiter.take("crm")
    with pytest.raises(HttpError) as e:
        limiter.take("crm")
    assert e.value.status == 429 and dict(e.value.headers)["Retry-After"] == "1"
    limiter.take("desk")  # its own bucket
    now[0] += 0.5  # one more request's worth at 2 a second
    limiter.take("crm")
    with pytest.raises(HttpError):
        limiter.take("crm")


def test_http_tokens_config_is_checked():
    cfg = parse_config(f'[http]\ntokens = [{{ name = "crm", token = "{WRITE_TOKEN}", access = "write" }}]')
    assert cfg.http.tokens[0].name == "crm"
    for tokens, said in [
        ('[{ name = "crm", token = "short", access = "write" }]', "at least 16"),
        (f'[{{ name = "crm", token = "{WRITE_TOKEN}", access = "admin" }}]', "\"read\" or \"write\""),
        (f'[{{ name = "a b", token = "{WRITE_TOKEN}" }}]', "token name"),
        (f'[{{ name = "a", token = "{WRITE_TOKEN}" }}, {{ name = "a", token = "{READ_TOKEN}" }}]', "two tokens"),
        (f'[{{ name = "a", token = "{WRITE_TOKEN}" }}, {{ name = "b", token = "{WRITE_TOKEN}" }}]', "same secret"),
        (f'[{{ name = "a", token = "{WRITE_TOKEN}", role = "x" }}]', "unknown key"),
        ('"crm"', "list of tables"),
    ]:
        with pytest.raises(ConfigError, match=said):
            parse_config(f"[http]\ntokens = {tokens}")


def test_charts_escape_and_scale():
    days = [{"day": "2026-11-27", "sent": 7, "held": 2, "refused": 1}, {"day": "2026-<x>", "sent": 0, "held": 0,
                                                                        "refused": 0}]
    svg = charts.stacked_days(days)
    assert svg.count('class="bar-') == 3 and "<x>" not in svg and "&lt;x&gt;" in svg
    assert ">10<" in svg  # the axis's top: 10 for a peak of 10
    bars = charts.bars({"<script>": 3, "optout": 5})
    assert "<script>" not in bars and bars.index("optout") < bars.index("&lt;script&gt;")
    assert charts._nice(0.5) == 1 and charts._nice(11) == 20 and charts._nice(4999) == 5000
