"""What sidecars say to each other over MQTT: topics and JSON payloads, free of I/O.

Topics, under the configured prefix P:
  P/changes/<node>   list changes made on <node>, one message per batch of its change-log rows (QoS 1)
  P/sends/<node>     sends <node> accepted, in batches every few milliseconds, numbered per node (QoS 1)
  P/hello/<node>     retained, every few seconds: <node>'s last change seq and send batch seq, its time
  P/replay/<node>    <node> asks for rows it lacks: an origin's change seq range, or its sends in a time range
  P/replays/<node>   answers to <node>'s requests, from any node holding the rows (sends: from their origin)
  P/events/<kind>    one JSON object per event for other systems (refused, held, released, learned)
A decoder raises WireError for anything it cannot use: the caller logs it (at most once a minute) and goes on.
"""

from __future__ import annotations

import json
import math
from typing import Any, NamedTuple

from ..store.changelog import KINDS, OPS, Change

#: a node name: what may stand in a topic level, and be compared as text
MAX_NODE = 64
MAX_BATCH_NUMBERS = 1_000_000


class WireError(ValueError):
    """A payload that is not what the topic carries."""


class Topics(NamedTuple):
    prefix: str

    def changes(self, node: str) -> str:
        return f"{self.prefix}/changes/{node}"

    def sends(self, node: str) -> str:
        return f"{self.prefix}/sends/{node}"

    def hello(self, node: str) -> str:
        return f"{self.prefix}/hello/{node}"

    def replay(self, node: str) -> str:
        return f"{self.prefix}/replay/{node}"

    def replays(self, node: str) -> str:
        return f"{self.prefix}/replays/{node}"

    def event(self, kind: str) -> str:
        return f"{self.prefix}/events/{kind}"

    def parse(self, topic: str) -> tuple[str, str]:
        """(what, name) of a topic under the prefix: ("changes", node), ("events", kind)…; WireError otherwise."""
        head, sep, rest = topic.partition(self.prefix + "/")
        if head or not sep:
            raise WireError(f"topic {topic!r} is not under {self.prefix!r}")
        what, sep, name = rest.partition("/")
        if not sep or not name or "/" in name:
            raise WireError(f"topic {topic!r} is not one of smppguard's")
        return what, name


def check_node(name: Any) -> str:
    if (not isinstance(name, str) or not name or len(name) > MAX_NODE or any(c in name for c in "/+#\0")
            or name != name.strip()):
        raise WireError(f"bad node name {name!r}")
    return name


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def _loads(payload: bytes) -> dict:
    try:
        obj = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as e:
        raise WireError(f"not JSON: {e}") from None
    if not isinstance(obj, dict):
        raise WireError("not a JSON object")
    return obj


def _int(obj: dict, key: str, low: int = 0) -> int:
    v = obj.get(key)
    if not isinstance(v, int) or isinstance(v, bool) or v < low:
        raise WireError(f"{key}: expected a whole number from {low}, got {v!r}")
    return v


def _float(obj: dict, key: str) -> float:
    v = obj.get(key)
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
        raise WireError(f"{key}: expected a time, got {v!r}")
    return float(v)


def _str(obj: dict, key: str, default: str | None = None) -> str:
    v = obj.get(key, default)
    if not isinstance(v, str):
        raise WireError(f"{key}: expected text, got {v!r}")
    return v


# --- changes ------------------------------------------------------------------------------------------------

def change_row(c: Change) -> dict:
    row = {"seq": c.seq, "at": c.at, "origin": c.origin, "kind": c.kind, "op": c.op, "scope": c.scope,
           "scope_key": c.scope_key, "data": c.data, "actor": c.actor}
    if c.numbers or not c.number:
        row["numbers"] = list(c.numbers)
    else:
        row["number"] = c.number
    return row


def encode_changes(node: str, changes: list[Change]) -> bytes:
    """One message of `node`'s rows (each change carries its seq; replayed rows may be of another origin)."""
    return _dumps({"node": node, "rows": [{**change_row(c), "node": c.node} for c in changes]})


def decode_changes(payload: bytes) -> tuple[str, list[Change]]:
    """(sender, rows): each row a Change with its origin node and seq."""
    return _changes_of(_loads(payload))


def _changes_of(obj: dict) -> tuple[str, list[Change]]:
    sender = check_node(obj.get("node"))
    rows = obj.get("rows")
    if not isinstance(rows, list):
        raise WireError("rows: expected a list")
    return sender, [_change(r) for r in rows]


def _change(r: Any) -> Change:
    if not isinstance(r, dict):
        raise WireError("a row: expected an object")
    kind, op = _str(r, "kind"), _str(r, "op")
    if kind not in KINDS or op not in OPS:
        raise WireError(f"unknown change {kind}/{op}")
    data = r.get("data", {})
    if not isinstance(data, dict):
        raise WireError("data: expected an object")
    numbers = r.get("numbers")
    number = 0
    if numbers is None:
        number = _int(r, "number", 1)
        numbers = ()
    elif (not isinstance(numbers, list) or len(numbers) > MAX_BATCH_NUMBERS
          or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in numbers)):
        raise WireError("numbers: expected a list of numbers")
    try:
        return Change(kind, op, number, _str(r, "scope", ""), _str(r, "scope_key", ""), data, _float(r, "at"),
                      _str(r, "origin", ""), _str(r, "actor", ""), 0, numbers, check_node(r.get("node")),
                      _int(r, "seq", 1))
    except ValueError as e:
        if isinstance(e, WireError):
            raise
        raise WireError(str(e)) from None


# --- sends --------------------------------------------------------------------------------------------------

class Sends(NamedTuple):
    node: str
    #: live: the number of its first send in the node's run (sends are numbered from 1 in each run, and keep their
    #: numbers when a publish is tried again), so a receiver counts each once; 0 in an answer to a request
    batch: int
    sends: list[tuple[int, str, float]]  # number, account, time
    since: float = 0.0  # a replay answer: the range it answers, (since, until)
    until: float = 0.0
    run: float = 0.0  # live: the node's run (its start time): its batches are numbered from 1 in each run
    #: held messages that started or stopped counting (proxy id, number, account, release time or None); `full`:
    #: all that count now (an answer), every other one of that node no longer counts
    held: tuple = ()
    full: bool = False
    last: bool = False  # an answer: the last of the answers to its request (one is sent, empty, when none)


def encode_sends(s: Sends) -> bytes:
    obj: dict[str, Any] = {"node": s.node, "batch": s.batch, "sends": s.sends}
    if s.held or s.full:
        obj["held"] = list(s.held)
    if s.full:
        obj["full"] = True
    if s.last:
        obj["last"] = True
    if s.batch:
        obj["run"] = s.run
    else:
        obj.update(since=s.since, until=s.until)
    return _dumps(obj)


def decode_sends(payload: bytes) -> Sends:
    return _sends_of(_loads(payload))


def decode_answer(payload: bytes) -> tuple[str, list[Change]] | Sends:
    """A replay answer: change rows (sender, rows) or a node's sends in a time range."""
    obj = _loads(payload)
    if "rows" in obj:
        return _changes_of(obj)
    if "sends" in obj:
        return _sends_of(obj)
    raise WireError("an answer has rows or sends")


def _sends_of(obj: dict) -> Sends:
    node = check_node(obj.get("node"))
    batch = _int(obj, "batch")
    rows = obj.get("sends")
    if not isinstance(rows, list):
        raise WireError("sends: expected a list")
    out = []
    for r in rows:
        if (not isinstance(r, list) or len(r) != 3 or not isinstance(r[0], int) or isinstance(r[0], bool)
                or r[0] <= 0 or not isinstance(r[1], str) or not isinstance(r[2], (int, float))
                or isinstance(r[2], bool) or not math.isfinite(r[2])):
            raise WireError("a send: expected [number, account, time]")
        out.append((r[0], r[1], float(r[2])))
    held = tuple(_held(h) for h in _list(obj, "held"))
    full = obj.get("full", False) is True
    if batch:
        return Sends(node, batch, out, run=_float(obj, "run"), held=held, full=full)
    return Sends(node, 0, out, _float(obj, "since"), _float(obj, "until"), held=held, full=full,
                 last=obj.get("last", False) is True)


def _list(obj: dict, key: str) -> list:
    v = obj.get(key, [])
    if not isinstance(v, list):
        raise WireError(f"{key}: expected a list")
    return v


def _held(h: Any) -> tuple[str, int, str, float | None]:
    if (not isinstance(h, list) or len(h) != 4 or not isinstance(h[0], str) or not isinstance(h[1], int)
            or isinstance(h[1], bool) or h[1] <= 0 or not isinstance(h[2], str)
            or not (h[3] is None or (isinstance(h[3], (int, float)) and not isinstance(h[3], bool)
                                     and math.isfinite(h[3])))):
        raise WireError("a held message: expected [proxy id, number, account, release time or null]")
    return h[0], h[1], h[2], None if h[3] is None else float(h[3])


# --- hello, replay requests ---------------------------------------------------------------------------------

class Hello(NamedTuple):
    node: str
    seq: int  # the last change seq it published
    batch: int  # how many sends it published in this run
    at: float  # its run: when it started (its send batches are numbered from 1 in each run)
    sends_until: float = 0.0  # the time of the newest send in that batch
    sent: float = 0.0  # when it said so (the real clock)


def encode_hello(h: Hello) -> bytes:
    return _dumps(h._asdict())


def decode_hello(payload: bytes) -> Hello:
    obj = _loads(payload)
    return Hello(check_node(obj.get("node")), _int(obj, "seq"), _int(obj, "batch"), _float(obj, "at"),
                 _float(obj, "sends_until") if "sends_until" in obj else 0.0,
                 _float(obj, "sent") if "sent" in obj else 0.0)


class Request(NamedTuple):
    """A node asks for what it lacks: `origin`'s change rows with seq in (after, upto], or (kind "sends") the
    sends `origin` accepted in the time range (since, until), or (kind "held") the held messages that count
    there now."""

    node: str  # who asks (answers go to its replays topic)
    kind: str  # "changes" or "sends"
    origin: str
    after: int = 0
    upto: int = 0
    since: float = 0.0
    until: float = 0.0


def encode_request(r: Request) -> bytes:
    return _dumps(r._asdict())


def decode_request(payload: bytes) -> Request:
    obj = _loads(payload)
    kind = _str(obj, "kind")
    node, origin = check_node(obj.get("node")), check_node(obj.get("origin"))
    if kind == "changes":
        after, upto = _int(obj, "after"), _int(obj, "upto")
        if upto < after:
            raise WireError("upto is before after")
        return Request(node, kind, origin, after, upto)
    if kind == "sends":
        since, until = _float(obj, "since"), _float(obj, "until")
        if until < since:
            raise WireError("until is before since")
        return Request(node, kind, origin, since=since, until=until)
    if kind == "held":
        return Request(node, kind, origin)
    raise WireError(f"unknown request kind {kind!r}")


def encode_event(event: dict) -> bytes:
    return _dumps(event)
