"""One sidecar's link to the others through an MQTT broker (aiomqtt): list changes, sends, events, catch-up.

The broker is a transport, not the memory. What this node owes the others lives in its store: its change-log rows
(stamped with this node's name and sequence, store/peers.py) and its sends (send_history); what it publishes is
read from there, so nothing is lost while the broker is down or restarts empty, and a node that was away asks
for what it lacks (its gaps in each origin's sequence, a time range of an origin's sends) and gets it from any
node that holds it.

Rule 1: the hot path never waits for MQTT. An accepted send is appended to a list (`tee`); an event to a bounded
deque; a remote change is applied through the store's writer, like the CLI's, and reaches the Index through the
change-log tail; a remote send is counted in the Index at once (a dict insert on the loop).
Rule 2: what comes from the network is checked (sync/wire.py) and what is wrong is logged at most once a minute
per kind of fault, counted, and skipped; a row whose origin is not among [mqtt] peers is refused.
Rule 3: a node publishes its own rows only on its own topics (changes/<node>, sends/<node>, hello/<node>), so a
broker ACL can hold each node to them; answers to catch-up requests go to the asker's replays topic.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
import sqlite3
import ssl
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, NamedTuple

from .. import tasks
from ..store import peers
from ..store.changelog import Change
from ..store.db import read_only
from ..store.learning import ACTOR as LEARNED_BY
from . import wire
from .events import EventFeed
from .wire import Hello, Request, Sends, Topics, WireError

log = logging.getLogger("smppguard.sync")

BACKOFF_S = (0.5, 30.0)  # first and longest wait before reconnecting (doubling, with jitter)
ROWS_PER_MESSAGE = 200  # change-log rows per message (a batch row of an import counts as one)
ANSWER_MESSAGES = 25  # messages of rows per answer to a catch-up request
#: numbers per message (and per writer job applying remote rows): an import's batch row holds up to 100,000, and
#: a message of 200 of them would be 300 MB; applying 100,000 takes the writer about 0.2 s
NUMBERS_PER_MESSAGE = 100_000


def _by_size(rows: list[Change]) -> list[list[Change]]:
    """Rows in runs of at most NUMBERS_PER_MESSAGE numbers (a row is never split), in order."""
    runs: list[list[Change]] = []
    size = NUMBERS_PER_MESSAGE
    for r in rows:
        n = max(1, len(r.numbers))
        if size + n > NUMBERS_PER_MESSAGE:
            runs.append([])
            size = 0
        runs[-1].append(r)
        size += n
    return runs
ASK_AGAIN_S = 3.0
TICK = 1e-6  # a gap still open this long after it was asked for is asked for again
_QUIET_S = 60.0


class SyncSettings(NamedTuple):
    host: str
    port: int
    node: str
    prefix: str = "smppguard"
    tls: bool = False
    username: str | None = None
    password: str | None = None
    ca: str = ""
    cert: str = ""
    key: str = ""
    peers: tuple[str, ...] = ()  # node names allowed to send rows; () = any
    hello_interval: float = 5.0
    sends_interval: float = 0.01
    events: tuple[str, ...] = ("refused", "held", "released", "learned")
    events_per_s: float = 200.0
    events_queue: int = 10_000
    max_unpublished_sends: int = 100_000
    behind_after: float = 30.0  # a gap or an unpublished backlog older than this makes /healthz say degraded


#: sends of one node remembered as counted here, so that one that arrives both live and in an answer to a
#: catch-up (their ranges can overlap while a batch is on its way) counts once
SEEN_SENDS = 100_000


class _Seen:
    """The last SEEN_SENDS sends of one node counted here, by the way they came (live, or in an answer), as a
    hash of number, account and time each. A send counts unless the other way brought the same one already: two
    sends alike that come the same way (two messages in one clock tick) both count."""

    __slots__ = ("order", "counts")

    def __init__(self) -> None:
        self.order: collections.deque[tuple[bool, int]] = collections.deque()
        self.counts: dict[tuple[bool, int], int] = {}

    def first_time(self, send: tuple[int, str, float], live: bool) -> bool:
        h = hash(send)
        other = (not live, h)
        if self.counts.get(other):
            self._take(other)
            return False
        key = (live, h)
        self.counts[key] = self.counts.get(key, 0) + 1
        self.order.append(key)
        if len(self.order) > SEEN_SENDS:
            self._take(self.order.popleft())
        return True

    def _take(self, key: tuple[bool, int]) -> None:
        n = self.counts.get(key, 0)
        if n > 1:
            self.counts[key] = n - 1
        elif n:
            del self.counts[key]


class _Origin:
    """What this node knows of another: its hello, what it last sent, its sends' numbering."""

    __slots__ = ("hello", "hello_seen", "last_received", "run", "next", "sends_until", "seen", "asked",
                 "behind_since")

    def __init__(self) -> None:
        self.hello: Hello | None = None
        self.hello_seen = 0.0  # monotonic
        self.last_received = 0.0  # wall clock of the last message from it
        self.run = 0.0  # its sends' run (its start time), and the number of the next of its sends to count
        self.next = 1
        # sends asked for and not all answered yet: the end of the range asked -> [how far answers came, when asked]
        self.asked: dict[float, list[float]] = {}
        self.behind_since: float | None = None  # when its hello first named sends that had not come
        self.sends_until: float | None = None  # time of the newest of its sends counted here
        self.seen = _Seen()


class Sync:
    """Publishes this node's changes, sends and events (`events`, an observer of the hooks); applies the others';
    fills gaps."""

    def __init__(self, settings: SyncSettings, writer: Any, index: Any, policy: Callable[[], Any], *,
                 path: str, mask: Callable[[int | None, str], str],
                 correlation_threshold: Callable[[], int] = lambda: 0, clock: Callable[[], float] = time.time):
        self.s = settings
        self.node = settings.node
        self.topics = Topics(settings.prefix)
        self.writer = writer
        self.index = index
        self.policy = policy  # the policy in force (a reload may change it)
        self.path = path
        self.correlation_threshold = correlation_threshold
        self.clock = clock
        self.run = time.time()  # this run's identity (its start), numbering its send batches: the real clock
        self.connected = False
        self.disconnected_since: float | None = time.monotonic()
        self.origins: dict[str, _Origin] = collections.defaultdict(_Origin)
        self.published = 0  # the last seq of this node's rows published (and acknowledged by the broker)
        self.head = 0  # the last seq stamped on this node's rows
        self.unstamped = 0
        self.own_floor = 0  # the broker remembers this node up to this seq: rows to recover before stamping
        self.holdings: dict[str, peers.Holding] = {}
        self.asked: dict[tuple, float] = {}
        self.unpublished_since: float | None = None
        self.twin_seen: float | None = None  # when another sidecar last said it has this node's name
        self.delays: collections.deque[float] = collections.deque(maxlen=4096)  # propagation, seconds
        self.counts: collections.Counter[str] = collections.Counter()
        self.refused_nodes: collections.Counter[str] = collections.Counter()
        self.sends_out: list[tuple[int, str, float]] = []
        # held messages of this node's hold queue that started or stopped counting, to publish with the sends
        self.held_out: list[tuple[str, int, str, float | None]] = []
        self.counted_now: Callable[[], list[tuple[str, int, str, float]]] = lambda: []  # the hold queue's
        # per node: its held messages counting here, (proxy id, number) -> (history key, release time)
        self.remote_held: dict[str, dict[tuple[str, int], tuple[int, float]]] = {}
        self.sends_published = 0  # sends of this run published: the next is number sends_published + 1
        self.sends_until = 0.0  # the time of the newest send published
        self.events = EventFeed(self.node, settings.events, mask, per_s=settings.events_per_s,
                                max_queued=settings.events_queue)
        self._remote: list[Change] = []
        self._remote_sends: dict[str, list[tuple[int, str, float]]] = collections.defaultdict(list)
        self._client: Any = None
        self._wake = asyncio.Event()
        self._dirty = True  # holdings to read again
        self._quiet: dict[str, float] = {}
        self._thread: ThreadPoolExecutor | None = None
        self._db: sqlite3.Connection | None = None
        self._tasks: list[asyncio.Task] = []

    # --- the hot path's side ------------------------------------------------------------------------------

    def held(self, proxy_id: str, number: int, account: str, at: float | None) -> None:
        """The hold queue's `on_counted`: a held message counts as a send at `at` (None: no longer), here and,
        once published, on the other nodes."""
        self.held_out.append((proxy_id, number, account, at))

    def tee(self, record_send: Callable[[int, str, float], None]) -> Callable[[int, str, float], None]:
        """`record_send` that also queues the send for the other nodes (Rule 1)."""
        out = self.sends_out

        def both(number: int, account: str, at: float) -> None:
            record_send(number, account, at)
            out.append((number, account, at))
        return both

    # --- running ------------------------------------------------------------------------------------------

    async def start(self) -> None:
        self._thread = tasks.background_thread("sync-reads", 0)
        self._db = await self._read(read_only, self.path)
        self.published = await self._read(peers.published, self._db, self.node)
        self.head = await self._read(peers.head, self._db, self.node)
        for node, until in (await self._read(peers.sends_marks, self._db)).items():
            self.origins[node].sends_until = until
        self._tasks = [tasks.spawn(self._connection_loop(), name="mqtt connection"),
                       tasks.spawn(self._apply_loop(), name="mqtt apply")]

    async def close(self) -> None:
        # Cancelled again until done: on Python 3.11 asyncio.wait_for (which aiomqtt awaits) can swallow a
        # cancellation that arrives as its future completes, and the task would go on as if never cancelled.
        await _stop(self._tasks)
        self._tasks = []
        await self._flush_remote()
        if self._db is not None:
            db, self._db = self._db, None
            await self._read(db.close)
        if self._thread is not None:
            self._thread.shutdown(wait=False)

    async def _read(self, fn, *args):
        assert self._thread is not None
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    def _client_for(self) -> Any:
        import aiomqtt

        s = self.s
        tls = None
        if s.tls:
            tls = ssl.create_default_context(cafile=s.ca or None)
            if s.cert:
                tls.load_cert_chain(s.cert, s.key or None)
        return aiomqtt.Client(s.host, s.port, username=s.username, password=s.password,
                              identifier=f"smppguard-{self.node}", clean_session=False, keepalive=20, timeout=10,
                              tls_context=tls, max_inflight_messages=100, max_queued_incoming_messages=20_000)

    async def _connection_loop(self) -> None:
        import aiomqtt

        wait = BACKOFF_S[0]
        while True:
            client, entered = self._client_for(), False
            try:
                async with client:
                    entered = True
                    self._client = client
                    await self._on_connect(client)
                    wait = BACKOFF_S[0]
                    workers = [tasks.spawn(self._publish_changes(), name="mqtt publish changes"),
                               tasks.spawn(self._publish_sends(), name="mqtt publish sends"),
                               tasks.spawn(self.events.publish_loop(client, self.topics), name="mqtt events"),
                               tasks.spawn(self._hello_loop(), name="mqtt hello"),
                               tasks.spawn(self._gap_loop(), name="mqtt gaps")]
                    try:
                        reader = tasks.spawn(self._read_messages(client), name="mqtt read")
                        done, _ = await asyncio.wait([reader, *workers], return_when=asyncio.FIRST_COMPLETED)
                        for t in done:
                            t.result()  # the one that ended says why
                    finally:
                        await _stop([reader, *workers])
            except (aiomqtt.MqttError, OSError, ssl.SSLError) as e:
                self._quietly("connection", logging.WARNING, "MQTT broker %s:%d: %s; reconnecting in %.1f s",
                              self.s.host, self.s.port, e, wait)
            except Exception:  # a fault of ours must not end sync for good: logged, and the link starts again
                self._quietly("fault", logging.ERROR, "MQTT: sync failed; reconnecting in %.1f s", wait,
                              exc_info=True)
            except asyncio.CancelledError:
                if not entered:  # the connect's thread may still be opening the socket: its callbacks come later
                    for _ in range(5):
                        _abandon(client)
                        await asyncio.sleep(0.01)
                raise
            finally:
                if self.connected:
                    self.disconnected_since = time.monotonic()
                self.connected = False
                self._client = None
            await asyncio.sleep(wait * random.uniform(0.5, 1.0))
            wait = min(wait * 2, BACKOFF_S[1])

    async def _on_connect(self, client: Any) -> None:
        t, p = self.topics, self.s.prefix
        for topic in (f"{p}/changes/+", f"{p}/sends/+", f"{p}/hello/+", f"{p}/replay/+", t.replays(self.node)):
            await client.subscribe(topic, qos=1)
        self.connected = True
        self.disconnected_since = None
        self.counts["connects"] += 1
        log.info("MQTT: node %s connected to %s:%d (topics under %s/)", self.node, self.s.host, self.s.port, p)
        self._wake.set()

    async def _read_messages(self, client: Any) -> None:
        async for message in client.messages:
            try:
                self._dispatch(str(message.topic), bytes(message.payload or b""), bool(message.retain))
            except WireError as e:
                self.counts["malformed"] += 1
                self._quietly("malformed", logging.WARNING, "MQTT: skipped a malformed message on %s: %s (logged "
                              "at most once a minute)", message.topic, e)
            except Exception:
                self.counts["malformed"] += 1
                self._quietly("unusable", logging.ERROR, "MQTT: skipped a message on %s that could not be used "
                              "(logged at most once a minute)", message.topic, exc_info=True)

    def _dispatch(self, topic: str, payload: bytes, retained: bool) -> None:
        what, name = self.topics.parse(topic)
        if what == "hello":
            if payload:
                self._on_hello(wire.decode_hello(payload), retained)
        elif what == "changes":
            if name == self.node:
                return
            sender, rows = wire.decode_changes(payload)
            if sender != name or any(r.node != name for r in rows):
                raise WireError(f"rows of another node on {topic}")
            self._on_changes(sender, rows, live=True)
        elif what == "sends":
            if name == self.node:
                return
            s = wire.decode_sends(payload)
            if s.node != name or not s.batch:
                raise WireError(f"sends of another node on {topic}")
            self._on_sends(s)
        elif what == "replay":
            if name == self.node:
                return
            r = wire.decode_request(payload)
            if r.node != name:
                raise WireError(f"a request of another node on {topic}")
            tasks.spawn(self._answer(r), name="mqtt replay answer")
        elif what == "replays" and name == self.node:
            answer = wire.decode_answer(payload)
            if isinstance(answer, Sends):
                self._on_sends(answer)
            else:
                self._on_changes(*answer)

    def _allowed(self, node: str) -> bool:
        if not self.s.peers or node in self.s.peers or node == self.node:
            return True
        self.refused_nodes[node] += 1
        self._quietly(f"refused {node}", logging.WARNING, "MQTT: refused rows of node %r: not among [mqtt] peers "
                      "(logged at most once a minute per node)", node)
        return False

    # --- changes ------------------------------------------------------------------------------------------

    def _on_changes(self, sender: str, rows: list[Change], live: bool = False) -> None:
        """Rows to apply: `live` as their origin published them (their delay is the propagation delay), or an
        answer to a catch-up request."""
        now = self.clock()
        if not self._allowed(sender):
            return
        for r in rows:
            if not self._allowed(r.node):
                continue
            if r.node == self.node and r.seq <= self.head:
                continue  # ours, and held
            o = self.origins[r.node]
            o.last_received = now
            if live:
                self.delays.append(max(0.0, now - r.at))
            self._remote.append(r)
        self.counts["rows_received"] += len(rows)

    async def _apply_loop(self) -> None:
        """Remote rows go to the store in one writer job every few milliseconds (a burst of rows, one commit)."""
        while True:
            await asyncio.sleep(0.02)
            if self._remote or self._remote_sends:
                await self._flush_remote()

    async def _flush_remote(self) -> None:
        rows, self._remote = self._remote, []
        sends, self._remote_sends = self._remote_sends, collections.defaultdict(list)
        threshold = self.correlation_threshold()
        for run in _by_size(rows):
            try:
                applied = await self.writer.submit(lambda db, run=run: peers.apply_remote(
                    db, run, correlation_threshold=threshold))
            except (sqlite3.Error, ValueError):
                log.exception("MQTT: %d remote change rows could not be written; they will be asked for again",
                              len(run))
            else:
                self.counts["rows_applied"] += applied.written
                self.counts["rows_duplicate"] += applied.duplicates
                self.counts["numbers_lost"] += applied.lost
                if any(r.node == self.node for r in run):  # its own rows, recovered from the others
                    self.head = await self._read(peers.head, self._db, self.node)
                if applied.restored:
                    log.warning("MQTT: %d numbers back on the blacklist: a complaint or opt-out made on another "
                                "node during their observation period cancelled their removal", applied.restored)
        if rows:
            self._dirty = True
            self._wake.set()
        for node, batch in sends.items():
            until = self.origins[node].sends_until or max(t for _, _, t in batch)  # an answer's may be older
            try:
                await self.writer.submit(lambda db, node=node, batch=batch, until=until:
                                         peers.record_remote_sends(db, node, batch, until))
            except sqlite3.Error:
                log.exception("MQTT: %d sends of node %s could not be saved (they count until a restart)",
                              len(batch), node)

    async def _publish_changes(self) -> None:
        """Stamp this node's new rows and publish what the broker has not acknowledged yet (Rule: the store is
        the memory; a publish that fails is tried again from the same seq)."""
        client = self._client
        await asyncio.sleep(min(1.0, self.s.hello_interval))  # the retained hellos first: this node's own floor
        while True:
            self._wake.clear()
            db = self._db
            assert db is not None
            self.unstamped = await self._read(peers.unstamped, db)
            if self.unstamped:
                if self.own_floor > self.head:
                    self._quietly("floor", logging.WARNING, "MQTT: the broker knows this node (%s) up to change "
                                  "%d, its store only up to %d: recovering those rows from the other nodes before "
                                  "publishing new ones", self.node, self.own_floor, self.head)
                else:
                    await self.writer.submit(lambda db: peers.stamp_local(db, self.node))
                    self.head = await self._read(peers.head, db, self.node)
                    self.unstamped = 0
            if self.head > self.published:
                if self.unpublished_since is None:
                    self.unpublished_since = time.monotonic()
                rows = await self._read(peers.rows_of, db, self.node, self.published, None, ROWS_PER_MESSAGE)
                if rows:
                    rows = _by_size(rows)[0]
                    await client.publish(self.topics.changes(self.node), wire.encode_changes(self.node, rows), qos=1)
                    self.published = rows[-1].seq
                    self.counts["rows_published"] += len(rows)
                    for r in rows:
                        if r.actor == LEARNED_BY and r.op == "add":
                            self.events.learned(r)
                    saved = self.writer.submit(lambda db, seq=self.published: peers.set_published(db, self.node, seq))
                    saved.add_done_callback(_ignore)  # lost: the next publish saves a later mark
                    continue
            self.unpublished_since = None
            try:
                await asyncio.wait_for(self._wake.wait(), 0.2)
            except asyncio.TimeoutError:
                pass

    # --- sends --------------------------------------------------------------------------------------------

    async def _publish_sends(self) -> None:
        client = self._client
        while True:
            await asyncio.sleep(self.s.sends_interval)
            out, held = self.sends_out, self.held_out
            if not out and not held:
                continue
            if len(out) > self.s.max_unpublished_sends:  # a gap in the numbers: the others ask for them by time
                drop = len(out) - self.s.max_unpublished_sends
                del out[:drop]
                self.sends_published += drop
                self.counts["sends_unpublished"] += drop
            batch, moved = out[:5000], held[:5000]
            # numbered from the last acknowledged: a publish that failed (perhaps after the broker had it) is tried
            # again with the same numbers, and a receiver counts each send once
            payload = wire.encode_sends(Sends(self.node, self.sends_published + 1, batch, run=self.run,
                                              held=tuple(moved)))
            await client.publish(self.topics.sends(self.node), payload, qos=1)
            self.sends_published += len(batch)
            del out[:len(batch)]
            del held[:len(moved)]
            if batch:
                self.sends_until = max(self.sends_until, max(t for _, _, t in batch))
            self.counts["sends_published"] += len(batch)

    def _on_sends(self, s: Sends) -> None:
        if not self._allowed(s.node) or s.node == self.node:
            return
        o = self.origins[s.node]
        now = self.clock()
        o.last_received = now
        sends = s.sends
        if s.batch:  # live: each send counted once by its number; a gap in the numbers is asked for by time
            if s.run != o.run or s.batch > o.next:
                first = min((t for _, _, t in sends), default=now)
                self._ask_sends(o, s.node, o.sends_until if o.sends_until is not None else now - self._span(), first)
                if s.run != o.run:
                    self._ask(Request(self.node, "held", s.node))  # and what is held there, all of it
                    o.run = s.run
                o.next = s.batch
            sends = sends[o.next - s.batch:]  # those it counted already (a publish tried again, a duplicate)
            o.next = max(o.next, s.batch + len(s.sends))
            if sends:
                self.delays.append(max(0.0, now - max(t for _, _, t in sends)))
        else:  # an answer: only what is still asked for, past what earlier answers brought (none twice)
            asked = o.asked.get(s.until)
            if asked is None:
                sends = []  # an answer again, or late: its request was answered in full already
            else:
                sends = [x for x in sends if max(s.since, asked[0]) < x[2] < s.until]
                asked[0] = max([asked[0], *(t for _, _, t in sends)])
                if s.last:
                    del o.asked[s.until]
        if s.held or s.full:
            self._count_held(s.node, s.held, s.full)
        seen, live = o.seen.first_time, bool(s.batch)
        sends = [x for x in sends if seen(x, live)]
        self._count_sends(s.node, sends)
        newest = max((t for _, _, t in sends), default=None)
        if newest is not None and (o.sends_until is None or newest > o.sends_until):
            o.sends_until = newest

    def _ask_sends(self, o: _Origin, node: str, since: float, until: float) -> None:
        """Ask `node` for its sends in (since, until), and again from where its answers stopped until the last one
        has come (the node may be away, or the answer lost)."""
        if until <= since:
            return
        o.asked[until] = [since, time.monotonic()]
        self._ask(Request(self.node, "sends", node, since=since, until=until))

    def _ask_again(self) -> None:
        now = time.monotonic()
        for node, o in self.origins.items():
            for until, asked in o.asked.items():
                if now - asked[1] >= 2 * ASK_AGAIN_S:
                    asked[1] = now
                    self._ask(Request(self.node, "sends", node, since=asked[0], until=until))

    def _span(self) -> float:
        return self.policy().history_span_s

    def _count_sends(self, node: str, sends: list[tuple[int, str, float]]) -> None:
        if not sends:
            return
        index = self.index
        key_of = self.policy().history_keys(index)
        after = self.clock() - self._span()
        for number, account, at in sends:
            if at > after:
                index.record_send(number if key_of is None else key_of(number, account), at)
        self._remote_sends[node].extend(sends)
        self.counts["sends_received"] += len(sends)

    def _count_held(self, node: str, held: tuple, full: bool) -> None:
        """Another node's held messages count here as they count there: each as a send at its release time."""
        index, policy = self.index, self.policy()
        mine = self.remote_held.setdefault(node, {})
        kept = set()
        for proxy_id, number, account, at in held:
            old = mine.pop((proxy_id, number), None)
            if old is not None:
                index.unhold_send(*old)
            key = policy.history_key(number, account, index) if at is not None else None
            if key is not None:
                index.hold_send(key, at)
                mine[(proxy_id, number)] = (key, at)
                kept.add((proxy_id, number))
        if full:  # the whole set: what it does not name no longer counts there
            for gone in [k for k in mine if k not in kept]:
                index.unhold_send(*mine.pop(gone))

    def _forget_stale_held(self) -> None:
        """A held message whose release time is an hour gone, and of which its node said nothing since (a node
        that went away for good), no longer counts."""
        before = self.clock() - 3600.0
        for mine in self.remote_held.values():
            for k in [k for k, (_, at) in mine.items() if at < before]:
                self.index.unhold_send(*mine.pop(k))

    # --- hello, gaps, answers -----------------------------------------------------------------------------

    async def _hello_loop(self) -> None:
        client = self._client
        while True:
            hello = Hello(self.node, self.published, self.sends_published, self.run, self.sends_until, time.time())
            await client.publish(self.topics.hello(self.node), wire.encode_hello(hello), qos=1, retain=True)
            await asyncio.sleep(self.s.hello_interval)

    def _on_hello(self, h: Hello, retained: bool) -> None:
        if h.node == self.node:
            if h.at != self.run and h.sent > self.run:  # said since this run began: a second sidecar of this name
                self.twin_seen = time.monotonic()
                self._quietly("twin", logging.ERROR, "MQTT: another sidecar calls itself %r too; give each a "
                              "[mqtt] node of its own (their changes are lost to each other)", self.node)
            elif retained and h.at != self.run:  # this node's last run: how far it went
                self.own_floor = max(self.own_floor, h.seq)
                if h.seq > self.head:
                    self._dirty = True
                    self._wake.set()
            return
        if not self._allowed(h.node):
            return
        o = self.origins[h.node]
        # A run not seen yet, or sends it published that did not come by its next hello (one hello is not enough:
        # the batch may be on its way): asked for by time, and those in flight then come in the answer only.
        behind = o.run == h.at and h.batch >= o.next
        if o.run != h.at or (behind and o.behind_since is not None
                             and time.monotonic() - o.behind_since >= self.s.hello_interval * 0.9):
            since = o.sends_until if o.sends_until is not None else self.clock() - self._span()
            # a run not seen yet: the sends of its earlier runs (all made before it began) may be missing too
            until = max(h.sends_until + TICK, h.at if o.run != h.at else 0.0)
            if until > since:
                self._ask_sends(o, h.node, since, until)
                o.sends_until = max(since, h.sends_until)
            if o.run != h.at:
                self._ask(Request(self.node, "held", h.node))  # what is held there, all of it
                o.run = h.at
            o.next = h.batch + 1
            behind = False
        o.behind_since = (o.behind_since or time.monotonic()) if behind else None
        o.hello, o.hello_seen = h, time.monotonic()
        self._dirty = True

    async def _gap_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self._forget_stale_held()
            self._ask_again()
            if self._dirty and self._db is not None:
                self._dirty = False
                self.holdings = await self._read(peers.holdings, self._db)
            for node, want in self._wanted().items():
                held = self.holdings.get(node, peers.Holding(0, ()))
                gaps = list(held.missing)
                if want > held.top:
                    gaps.append((held.top + 1, want))
                for first, last in gaps[:4]:
                    self._ask(Request(self.node, "changes", node, first - 1, last))

    def _wanted(self) -> dict[str, int]:
        """Per origin, the seq this node should hold up to: the origin's hello, or the highest row seen."""
        want = {node: o.hello.seq for node, o in self.origins.items() if o.hello is not None}
        for node, held in self.holdings.items():
            want[node] = max(want.get(node, 0), held.top)
        if self.own_floor > self.head:
            want[self.node] = self.own_floor
        else:
            want.pop(self.node, None)
        return want

    def _ask(self, r: Request) -> None:
        key = (r.kind, r.origin, r.after, r.upto, r.since, r.until)
        now = time.monotonic()
        if now - self.asked.get(key, -ASK_AGAIN_S) < ASK_AGAIN_S or self._client is None:
            return
        self.asked[key] = now
        what = f"changes {r.after + 1}-{r.upto}" if r.kind == "changes" else "sends"
        self._quietly(f"ask {r.origin}", logging.INFO, "MQTT: asking for %s of node %s, which this node lacks "
                      "(logged at most once a minute per node)", what, r.origin)
        if len(self.asked) > 10_000:
            self.asked = {k: t for k, t in self.asked.items() if now - t < ASK_AGAIN_S}
        self.counts[f"asked_{r.kind}"] += 1
        tasks.spawn(self._publish_quietly(self.topics.replay(self.node), wire.encode_request(r)), name="mqtt ask")

    async def _publish_quietly(self, topic: str, payload: bytes, qos: int = 1) -> None:
        import aiomqtt

        client = self._client
        if client is None:
            return
        try:
            await client.publish(topic, payload, qos=qos)
        except aiomqtt.MqttError as e:
            self._quietly("publish", logging.WARNING, "MQTT: could not publish on %s: %s", topic, e)

    async def _answer(self, r: Request) -> None:
        db = self._db
        if db is None or not self._allowed(r.node):
            return
        to = self.topics.replays(r.node)
        if r.kind == "changes":
            origin = self.origins.get(r.origin)
            fresh = origin is not None and time.monotonic() - origin.hello_seen < 3 * self.s.hello_interval
            if r.origin != self.node and fresh and r.origin != r.node:
                return  # the origin is up and answers for itself
            after = r.after
            for _ in range(ANSWER_MESSAGES):  # up to this many messages an answer; the asker asks for the rest
                rows = await self._read(peers.rows_of, db, r.origin, after, r.upto, ROWS_PER_MESSAGE)
                if not rows:
                    return
                rows = _by_size(rows)[0]
                self.counts["answered_changes"] += len(rows)
                await self._publish_quietly(to, wire.encode_changes(self.node, rows))
                after = rows[-1].seq
        elif r.kind == "held" and r.origin == self.node:
            held = tuple(self.counted_now())
            self.counts["answered_held"] += len(held)
            await self._publish_quietly(to, wire.encode_sends(Sends(self.node, 0, [], held=held, full=True)))
        elif r.kind == "sends" and r.origin == self.node:
            await self.writer.flush()  # the sends accepted so far are in the store: none is left out of the answer
            since = r.since
            while True:  # in answers of 5,000 at most; the last says so (an empty one when there are none)
                rows = await self._read(peers.own_sends_since, db, since, 5000)
                more = len(rows) == 5000
                rows = [x for x in rows if x[2] < r.until]
                last = not more or len(rows) < 5000
                await self._publish_quietly(to, wire.encode_sends(Sends(self.node, 0, [list(x) for x in rows],
                                                                        since, r.until, last=last)))
                self.counts["answered_sends"] += len(rows)
                if last:
                    return
                since = rows[-1][2]

    # --- what it shows ------------------------------------------------------------------------------------

    def delay_quantiles(self) -> tuple[float, float] | None:
        if not self.delays:
            return None
        d = sorted(self.delays)
        return d[len(d) // 2], d[min(len(d) - 1, int(len(d) * 0.99))]

    def behind(self) -> list[str]:
        """Why sync is behind (/healthz: degraded, screening goes on locally); [] when it is not."""
        why, now, limit = [], time.monotonic(), self.s.behind_after
        if not self.connected and self.disconnected_since is not None and now - self.disconnected_since > limit:
            why.append(f"sync: not connected to the MQTT broker {self.s.host}:{self.s.port} for "
                       f"{now - self.disconnected_since:.0f} s")
        if self.unpublished_since is not None and now - self.unpublished_since > limit:
            why.append(f"sync: {self.head - self.published} changes not yet published for "
                       f"{now - self.unpublished_since:.0f} s")
        if self.twin_seen is not None and now - self.twin_seen < 3 * self.s.hello_interval + limit:
            why.append(f"sync: another sidecar uses this node's name {self.node!r}")
        lagging = [node for node, want in self._wanted().items()
                   if want > self.holdings.get(node, peers.Holding(0, ())).contiguous]
        if lagging:
            why.append(f"sync: changes of {', '.join(sorted(lagging))} not all held yet")
        return why

    def status(self) -> dict:
        now, mono = self.clock(), time.monotonic()
        nodes = []
        for node in sorted(set(self.origins) | set(self.holdings)):
            if node == self.node:
                continue
            o = self.origins.get(node) or _Origin()
            held = self.holdings.get(node, peers.Holding(0, ()))
            told = o.hello.seq if o.hello is not None else held.top
            nodes.append({"node": node, "changes_held": held.contiguous, "changes_told": told,
                          "lag_changes": max(0, told - held.contiguous),
                          "last_received_s": round(now - o.last_received, 1) if o.last_received else None,
                          "hello_s": round(mono - o.hello_seen, 1) if o.hello_seen else None})
        q = self.delay_quantiles()
        return {"node": self.node, "broker": f"{self.s.host}:{self.s.port}", "connected": self.connected,
                "published": self.published, "stamped": self.head, "unstamped": self.unstamped,
                "unpublished": self.head - self.published + self.unstamped,
                "sends_waiting": len(self.sends_out), "events_waiting": len(self.events.queue),
                "delay_p50_s": round(q[0], 4) if q else None, "delay_p99_s": round(q[1], 4) if q else None,
                "nodes": nodes, "counts": {**self.counts, "events_published": self.events.published,
                                           "events_dropped": self.events.dropped}, "behind": self.behind()}

    def _quietly(self, key: str, level: int, msg: str, *args: Any, exc_info: bool = False) -> None:
        now = time.monotonic()
        if now - self._quiet.get(key, -_QUIET_S) >= _QUIET_S:
            self._quiet[key] = now
            log.log(level, msg, *args, exc_info=exc_info)


# --- stopping -------------------------------------------------------------------------------------------------

async def _stop(running: list[asyncio.Task]) -> None:
    """Cancel the tasks, again until they are done: on Python 3.11 asyncio.wait_for (which aiomqtt awaits) can
    swallow a cancellation that arrives as its future completes, and the task would go on as if never cancelled."""
    pending = set(running)
    for _ in range(20):
        if not pending:
            return
        for t in pending:
            t.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.5)
    log.error("MQTT: %d sync tasks did not stop", len(pending))


def _abandon(client: Any) -> None:
    """Stopped between the TCP connection and the broker's answer: aiomqtt runs its clean-up (__aexit__) only
    after a whole __aenter__, and would leave its socket's reader and its housekeeping task on the loop. Closing
    the socket the way paho does calls aiomqtt's own on_socket_close, which removes both."""
    paho = getattr(client, "_client", None)
    with contextlib.suppress(Exception):
        if paho is not None and paho.socket() is not None:
            paho._sock_close()
    task = getattr(client, "_misc_task", None)
    if task is not None:
        task.cancel()


def _ignore(future: asyncio.Future) -> None:
    if not future.cancelled():
        future.exception()


