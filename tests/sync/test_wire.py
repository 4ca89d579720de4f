"""What sidecars say to each other (sync/wire.py): what is encoded decodes to the same, and anything else a
broker may carry (garbage, a wrong shape, a hostile value) raises only WireError."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smppguard.store.changelog import Change
from smppguard.sync import wire
from smppguard.sync.wire import Hello, Request, Sends, Topics, WireError

nodes = st.text(st.characters(codec="utf-8", exclude_characters="/+#\0", exclude_categories=("Cs", "Zs", "Cc")),
                min_size=1, max_size=20)
numbers = st.integers(1, 10 ** 15)
times = st.floats(0, 4e9, allow_nan=False)
texts = st.text(max_size=20)


@st.composite
def changes(draw):
    kind = draw(st.sampled_from(["blacklist", "optout", "dead", "consent", "tz"]))
    scope, key = "", ""
    if kind == "optout":
        scope = draw(st.sampled_from(["sender", "account", "global"]))
        key = "" if scope == "global" else draw(texts.filter(bool))
    elif kind == "consent":
        key = draw(texts)
    data = draw(st.dictionaries(st.sampled_from(["source", "reason", "keyword", "zone"]), texts, max_size=3))
    if kind == "tz":
        data["zone"] = "Asia/Shanghai"
    batch = draw(st.booleans())
    return Change(kind, draw(st.sampled_from(["add", "remove"])), 0 if batch else draw(numbers), scope, key, data,
                  draw(times), draw(texts), draw(texts), 0, draw(st.lists(numbers, min_size=1, max_size=5)) if batch
                  else (), draw(nodes), draw(st.integers(1, 2 ** 40)))


@given(nodes, st.lists(changes(), max_size=5))
def test_changes_decode_to_what_was_encoded(sender, rows):
    got_sender, got = wire.decode_changes(wire.encode_changes(sender, rows))
    assert got_sender == sender and got == rows


@given(nodes, st.integers(1, 10 ** 6), st.lists(st.tuples(numbers, texts, times), max_size=5), times)
def test_sends_decode_to_what_was_encoded(node, batch, sends, run):
    s = Sends(node, batch, [list(x) for x in sends], run=run)
    got = wire.decode_sends(wire.encode_sends(s))
    assert got == Sends(node, batch, [tuple(x) for x in sends], run=run)
    answer = Sends(node, 0, [list(x) for x in sends], 1.0, 2.0)
    assert wire.decode_answer(wire.encode_sends(answer)) == answer._replace(sends=[tuple(x) for x in sends])


@given(nodes, st.integers(0, 10 ** 9), st.integers(0, 10 ** 9), times, times)
def test_hellos_and_requests_decode_to_what_was_encoded(node, seq, batch, at, until):
    h = Hello(node, seq, batch, at, until)
    assert wire.decode_hello(wire.encode_hello(h)) == h
    r = Request(node, "changes", node, min(seq, batch), max(seq, batch))
    assert wire.decode_request(wire.encode_request(r)) == r
    r = Request(node, "sends", node, since=min(at, until), until=max(at, until))
    assert wire.decode_request(wire.encode_request(r)) == r


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                        max_size=4), max_leaves=12)


@given(st.one_of(st.binary(max_size=200), json_values.map(lambda v: json.dumps(v).encode())))
def test_anything_else_raises_only_wire_error(payload):
    for decode in (wire.decode_changes, wire.decode_sends, wire.decode_hello, wire.decode_request,
                   wire.decode_answer):
        try:
            decode(payload)
        except WireError:
            pass


@given(st.dictionaries(st.sampled_from(["seq", "at", "kind", "op", "number", "numbers", "scope", "scope_key", "data",
                                        "node", "origin", "actor"]), json_values, max_size=12))
def test_a_row_of_any_shape_raises_only_wire_error(row):
    try:
        wire.decode_changes(json.dumps({"node": "a", "rows": [row]}).encode())
    except WireError:
        pass


@pytest.mark.parametrize("row, why", [
    ({"seq": 0, "at": 1, "kind": "blacklist", "op": "add", "number": 1, "node": "a"}, "seq"),
    ({"seq": 1, "at": 1, "kind": "blacklist", "op": "add", "number": True, "node": "a"}, "number"),
    ({"seq": 1, "at": float("inf"), "kind": "blacklist", "op": "add", "number": 1, "node": "a"}, "at"),
    ({"seq": 1, "at": 1, "kind": "blacklist", "op": "add", "numbers": [1, -2], "node": "a"}, "numbers"),
    ({"seq": 1, "at": 1, "kind": "blacklist", "op": "add", "number": 1, "node": "a/b"}, "node"),
    ({"seq": 1, "at": 1, "kind": "optout", "op": "add", "number": 1, "scope": "sender", "node": "a"}, "sender"),
    ({"seq": 1, "at": 1, "kind": "drop table", "op": "add", "number": 1, "node": "a"}, "unknown change"),
])
def test_a_bad_row_is_refused_with_what_is_wrong(row, why):
    with pytest.raises(WireError, match=why):
        wire.decode_changes(json.dumps({"node": "a", "rows": [row]}, allow_nan=True).encode())


def test_topics_are_parsed_under_the_prefix_only():
    t = Topics("smppguard")
    assert t.parse(t.changes("a")) == ("changes", "a")
    assert t.parse(t.event("refused")) == ("events", "refused")
    for bad in ("other/changes/a", "smppguard/changes", "smppguard/changes/a/b", "smppguardx/changes/a"):
        with pytest.raises(WireError):
            t.parse(bad)


@given(nodes, st.lists(st.tuples(texts, numbers, texts, st.one_of(st.none(), times)), max_size=4), st.booleans())
def test_held_messages_travel_with_the_sends_and_a_full_set_says_so(node, held, full):
    s = Sends(node, 3, [], run=1.0, held=tuple(held), full=full)
    got = wire.decode_sends(wire.encode_sends(s))
    assert got.held == tuple(held) and got.full is full
    answer = Sends(node, 0, [], held=tuple(held), full=True)
    assert wire.decode_answer(wire.encode_sends(answer)) == answer


@pytest.mark.parametrize("held", [
    [["p1", 1, "acme"]], [[1, 1, "acme", 2.0]], [["p1", 0, "acme", 2.0]], [["p1", True, "acme", 2.0]],
    [["p1", 1, 7, 2.0]], [["p1", 1, "acme", "soon"]], [["p1", 1, "acme", float("nan")]], {"p1": 1},
])
def test_a_bad_held_message_is_refused(held):
    payload = json.dumps({"node": "a", "batch": 1, "run": 1.0, "sends": [], "held": held}).encode()
    with pytest.raises(WireError, match="held|expected a list"):
        wire.decode_sends(payload)


@pytest.mark.parametrize("request_, why", [
    ({"node": "a", "kind": "changes", "origin": "b", "after": 5, "upto": 4}, "upto is before after"),
    ({"node": "a", "kind": "sends", "origin": "b", "since": 5.0, "until": 4.0}, "until is before since"),
    ({"node": "a", "kind": "everything", "origin": "b"}, "unknown request kind"),
    ({"node": "a", "kind": "changes", "origin": "b/c", "after": 1, "upto": 2}, "bad node name"),
])
def test_a_bad_request_is_refused_with_what_is_wrong(request_, why):
    with pytest.raises(WireError, match=why):
        wire.decode_request(json.dumps(request_).encode())
