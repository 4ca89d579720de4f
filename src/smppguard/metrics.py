"""Metrics, health and live status over HTTP on `[metrics] address`: `/metrics` (Prometheus text format),
`/healthz` (200, or 503 with the reasons as JSON) and `/status` (JSON, what `smppguard status` prints).

Rule 1: the hot path only increments a dict (an observer of the hooks' events, and the decision-time buckets);
prometheus-client's metric families are built when someone scrapes (a custom Collector), from those counts and
from the live state of the proxy, the store's writer, the upkeep and the hold queue; prometheus-client itself is
loaded at the first scrape.
Rule 2: no label carries a phone number: accounts (system_id), rules, verdicts, kinds, legs and states only.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import json
import logging
import time
from typing import Any, Awaitable, Callable

from .hooks import Bound, Decided, Delivered, Unbound
from .smpp.commands import CommandId
from .smpp.errors import SmppError
from .smpp.fields import parse_body, submit_view
from .smpp.receipt import is_receipt

log = logging.getLogger("smppguard.metrics")

#: Decision time buckets (seconds): screening one submit, from the PDU read to its verdict.
BUCKETS = (0.00001, 0.00002, 0.00005, 0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01)


class Metrics:
    """Counts what the proxy does: an observer of `decided`, `delivered`, `bound`, `unbound` (hooks.py). Allowed
    verdicts, most of the traffic, reach it as a count: the hooks add them up in `allowed` (given to Hooks)."""

    ignores_allows = True

    def __init__(self) -> None:
        self.verdicts: collections.Counter[tuple[str, str, str]] = collections.Counter()  # account, verdict, rule
        self.allowed: collections.Counter[str] = collections.Counter()  # account: the hooks count allowed verdicts
        self.deliveries: collections.Counter[tuple[str, str]] = collections.Counter()  # account, kind
        self.binds: collections.Counter[str] = collections.Counter()
        self.unbinds: collections.Counter[str] = collections.Counter()
        self.bind_failures: collections.Counter[str] = collections.Counter()  # why
        self.decision_buckets = [0] * (len(BUCKETS) + 1)
        self.decision_sum = 0.0

    # hooks

    def decided(self, e: Decided) -> None:
        v = e.verdict
        # _value_: the attribute `.value` reads through a descriptor, and an Enum hashes in Python (every message)
        self.verdicts[(e.account, v.action._value_, v.rule or "")] += 1

    def delivered(self, e: Delivered) -> None:
        pdu = e.pdu
        try:
            if pdu.command_id == CommandId.DELIVER_SM:
                esm_class = submit_view(pdu.body).esm_class
            else:
                esm_class = parse_body(pdu.command_id, pdu.body)["esm_class"]
        except SmppError:
            kind = "malformed"
        else:
            kind = "receipt" if is_receipt(esm_class) else "mo"
        self.deliveries[(e.account, kind if e.relayed else kind + "_unrelayed")] += 1

    def bound(self, e: Bound) -> None:
        self.binds[e.account] += 1

    def unbound(self, e: Unbound) -> None:
        self.unbinds[e.account] += 1

    # the bridge

    def decision_time(self, seconds: float) -> None:
        self.decision_buckets[bisect.bisect_left(BUCKETS, seconds)] += 1
        self.decision_sum += seconds

    def bind_failed(self, why: str) -> None:
        self.bind_failures[why] += 1


class State:
    """What the daemon is made of, read when scraped (any may be None: a proxy without a store)."""

    def __init__(self, metrics: Metrics, server: Any = None, store: Any = None, started: float | None = None):
        self.metrics = metrics
        self.server = server  # proxy.server.ProxyServer
        self.store = store  # app.OpenStore: writer, upkeep, holds, learning
        self.started = started if started is not None else time.time()

    def health(self) -> list[str]:
        """Why the daemon is not healthy; [] when it is."""
        why = []
        server = self.server
        if server is None or not server.listening:
            why.append("the SMPP listener is not up")
        writer = getattr(self.store, "writer", None)
        if writer is not None:
            if writer.failing:
                why.append(f"the store cannot be written: {writer.last_error}")
            if writer.behind:
                why.append(f"the store writer is behind: {writer.unsaved} rows not yet saved, the oldest for "
                           f"{writer.unsaved_age():.1f} s")
        upkeep = getattr(self.store, "upkeep", None)
        if upkeep is not None and upkeep.failed is not None and upkeep.failed.done():
            why.append(str(upkeep.failed.result()))
        return why

    def degraded(self) -> list[str]:
        """Why the daemon works but not in full (sync with the other sidecars is behind): screening goes on
        with what this node knows. /healthz answers 200, with these as warnings."""
        sync = getattr(self.store, "sync", None)
        return sync.behind() if sync is not None else []

    def status(self) -> dict[str, Any]:
        """Live binds per account, window occupancy, the writer, the hold queue, sync: `smppguard status`."""
        problems = self.health()
        out: dict[str, Any] = {"uptime_s": round(time.time() - self.started, 1), "healthy": not problems,
                               "problems": problems, "warnings": self.degraded(), "binds": [], "writer": None,
                               "hold": None, "sync": None}
        sync = getattr(self.store, "sync", None)
        if sync is not None:
            out["sync"] = sync.status()
        if self.server is not None:
            for b in sorted(self.server.bridges, key=lambda b: (b.downstream.system_id, b.downstream.peer)):
                down, up = b.downstream, b.upstream
                out["binds"].append({
                    "account": down.system_id, "peer": down.peer, "state": down.state.value,
                    "upstream": up.state.value if up is not None and up.is_open else "none",
                    "window_used": len(up.window) if up is not None else 0,
                    "window_size": up.window.size if up is not None else 0})
        writer = getattr(self.store, "writer", None)
        if writer is not None:
            out["writer"] = {"unsaved": writer.unsaved, "unsaved_age_s": round(writer.unsaved_age(), 3),
                             "behind": writer.behind, "commits": writer.commits, "failures": writer.failures,
                             "commits_by_writer": writer.commits_here}
        holds = getattr(self.store, "holds", None)
        if holds is not None:
            out["hold"] = {"held": len(holds), "oldest_age_s": holds.oldest_age(), "released": holds.released,
                           "dropped": holds.dropped, "expired": holds.expired, "owed": holds.owed}
        return out


class Collector:
    """prometheus-client's view of a State, built at each scrape."""

    def __init__(self, state: State):
        self.state = state

    def collect(self):  # noqa: C901 - one family after another
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        st, m = self.state, self.state.metrics
        c = CounterMetricFamily("smppguard_submits", "Verdicts on submit_sm, data_sm and submit_multi destinations",
                                labels=["account", "verdict", "rule"])
        verdicts = m.verdicts + collections.Counter({(a, "allow", ""): n for a, n in m.allowed.items()})
        for (account, verdict, rule), n in sorted(verdicts.items()):
            c.add_metric([account, verdict, rule], n)
        yield c
        c = CounterMetricFamily("smppguard_deliveries", "deliver_sm and data_sm from the SMSC, by kind (mo, receipt; "
                                "_unrelayed: no sender took it)", labels=["account", "kind"])
        for (account, kind), n in sorted(m.deliveries.items()):
            c.add_metric([account, kind], n)
        yield c
        learning = getattr(st.store, "learning", None)
        c = CounterMetricFamily("smppguard_learned", "Facts learned from replies and receipts and written to the "
                                "lists", labels=["kind"])
        if learning is not None:
            for kind, n in sorted(learning.learned_by_kind.items()):
                c.add_metric([kind], n)
        yield c
        c = CounterMetricFamily("smppguard_inbound_unread", "Replies and receipts that would have taught something "
                                "(by what) but came from no readable number: logged and audited (rule inbound)",
                                labels=["kind"])
        if learning is not None:
            for kind, n in sorted(learning.unread.items()):
                c.add_metric([kind], n)
        yield c
        yield from _review_families(getattr(st.store, "review", None), getattr(st.store, "replies", None))
        c = CounterMetricFamily("smppguard_binds", "Sender binds made through to the SMSC", labels=["account"])
        for account, n in sorted(m.binds.items()):
            c.add_metric([account], n)
        yield c
        c = CounterMetricFamily("smppguard_bind_failures", "Binds that failed, by why", labels=["why"])
        for why, n in sorted(m.bind_failures.items()):
            c.add_metric([why], n)
        yield c
        h = HistogramMetricFamily("smppguard_decision_seconds", "Time to screen one request (PDU read to verdict)")
        total, buckets = 0, []
        for bound, n in zip((*BUCKETS, float("inf")), m.decision_buckets, strict=True):
            total += n
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), total))
        h.add_metric([], buckets, m.decision_sum)
        yield h
        g = GaugeMetricFamily("smppguard_binds_up", "Binds up now", labels=["leg", "account", "state"])
        w = GaugeMetricFamily("smppguard_window_in_flight", "Requests waiting for the SMSC's answer, and the "
                              "windows' size", labels=["what"])
        if st.server is not None:
            up_counts: collections.Counter[tuple[str, str, str]] = collections.Counter()
            used = size = 0
            for b in list(st.server.bridges):
                down, up = b.downstream, b.upstream
                up_counts[("downstream", down.system_id, down.state.value)] += 1
                if up is not None and up.is_open:
                    up_counts[("upstream", down.system_id, up.state.value)] += 1
                    used += len(up.window)
                    size += up.window.size
            for key, n in sorted(up_counts.items()):
                g.add_metric(list(key), n)
            w.add_metric(["in_flight"], used)
            w.add_metric(["size"], size)
        yield g
        yield w
        writer = getattr(st.store, "writer", None)
        if writer is not None:
            yield GaugeMetricFamily("smppguard_store_unsaved_rows", "Rows acknowledged but not yet saved",
                                    value=writer.unsaved)
            yield GaugeMetricFamily("smppguard_store_unsaved_age_seconds", "How long the oldest unsaved row has "
                                    "waited", value=writer.unsaved_age())
            yield GaugeMetricFamily("smppguard_store_behind", "1 while senders are not read because the store is "
                                    "behind", value=int(writer.behind))
            yield CounterMetricFamily("smppguard_store_commits", "Group commits", value=writer.commits)
            yield CounterMetricFamily("smppguard_store_commits_by_writer", "Group commits of rows only that the "
                                      "writer made itself (the commit process lagging, or stopping)",
                                      value=writer.commits_here)
            yield CounterMetricFamily("smppguard_store_rows_written", "Rows written by group commits",
                                      value=writer.rows_written)
            yield GaugeMetricFamily("smppguard_store_batch_rows", "Rows per group commit, on average",
                                    value=writer.rows_written / writer.commits if writer.commits else 0.0)
            yield CounterMetricFamily("smppguard_store_commit_failures", "Group commits that failed (retried)",
                                      value=writer.failures)
        upkeep = getattr(st.store, "upkeep", None)
        if upkeep is not None:
            yield GaugeMetricFamily("smppguard_changelog_tail_age_seconds", "Seconds since the change-log tail last "
                                    "caught up", value=time.monotonic() - upkeep.last_tail)
        holds = getattr(st.store, "holds", None)
        if holds is not None:
            yield GaugeMetricFamily("smppguard_hold_queue_messages", "Messages held", value=len(holds))
            yield GaugeMetricFamily("smppguard_hold_queue_oldest_age_seconds", "Age of the oldest held message (as "
                                    "of the last minute's look)", value=holds.oldest_age())
            c = CounterMetricFamily("smppguard_hold_ends", "Held messages that left the queue, by how",
                                    labels=["how"])
            for how in ("released", "dropped", "expired"):
                c.add_metric([how], getattr(holds, how))
            yield c
            yield GaugeMetricFamily("smppguard_owed_deliveries", "Receipts and replies kept for senders with no "
                                    "receiver bound", value=holds.owed)
        sync = getattr(st.store, "sync", None)
        if sync is not None:
            yield from _sync_families(sync)
        yield GaugeMetricFamily("smppguard_up_seconds", "Seconds since the daemon started",
                                value=time.time() - st.started)


def _sync_families(sync: Any):
    """The MQTT sync's state (sync/node.py): connection, backlog, each origin's lag and silence, delays."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    st = sync.status()
    yield GaugeMetricFamily("smppguard_sync_connected", "1 while connected to the MQTT broker",
                            value=int(st["connected"]))
    yield GaugeMetricFamily("smppguard_sync_unpublished_changes", "This node's list changes not yet acknowledged by "
                            "the broker (they wait in the store)", value=st["unpublished"])
    yield GaugeMetricFamily("smppguard_sync_unpublished_sends", "Accepted sends waiting to be published",
                            value=st["sends_waiting"])
    lag = GaugeMetricFamily("smppguard_sync_lag_changes", "Changes another node said it made that this node does "
                            "not hold yet", labels=["node"])
    silent = GaugeMetricFamily("smppguard_sync_last_received_seconds", "Seconds since anything was received from "
                               "a node", labels=["node"])
    for n in st["nodes"]:
        lag.add_metric([n["node"]], n["lag_changes"])
        if n["last_received_s"] is not None:
            silent.add_metric([n["node"]], n["last_received_s"])
    yield lag
    yield silent
    q = sync.delay_quantiles()
    d = GaugeMetricFamily("smppguard_sync_delay_seconds", "Propagation delay of received changes and sends (made "
                          "there to counted here), over the last 4096", labels=["quantile"])
    if q is not None:
        d.add_metric(["0.5"], q[0])
        d.add_metric(["0.99"], q[1])
    yield d
    c = CounterMetricFamily("smppguard_sync_messages", "What sync did, by what (rows_published, rows_applied, "
                            "rows_duplicate, sends_published, sends_received, events_published, events_dropped, "
                            "malformed, asked_changes, asked_sends, connects, …)", labels=["what"])
    for what, n in sorted(st["counts"].items()):
        c.add_metric([what], n)
    yield c
    r = CounterMetricFamily("smppguard_sync_refused_rows", "Rows refused: their node is not among [mqtt] peers",
                            labels=["node"])
    for node, n in sorted(sync.refused_nodes.items()):
        r.add_metric([node], n)
    yield r


#: What serves the paths of APP_PREFIXES: (the request head, the reader for its body, the client's address) ->
#: (the response head, its body). The daemon (app.py) passes the console's; this module knows nothing of it.
App = Callable[[bytes, asyncio.StreamReader, str], Awaitable[tuple[bytes, bytes]]]
APP_PREFIXES = ("/api", "/console")


class MetricsServer:
    """/metrics, /healthz and /status on one address: a tiny HTTP/1.0 server on the daemon's loop. Requests for
    /api and /console go to `app` when there is one."""

    def __init__(self, state: State, app: App | None = None, app_off: str = ""):
        self.state = state
        self.app = app
        self.app_off = app_off  # why there is no app, for a client that asks for one
        self._registry: Any = None  # prometheus-client's, made at the first scrape (see registry)
        self._server: asyncio.base_events.Server | None = None
        self._handlers: set[asyncio.Task] = set()

    @property
    def registry(self) -> Any:
        """prometheus-client's registry of the Collector. It and prometheus-client (with the HTTP and e-mail
        modules of the standard library it brings) are loaded at the first scrape, not by a daemon nobody scrapes."""
        if self._registry is None:
            from prometheus_client import CollectorRegistry

            self._registry = CollectorRegistry(auto_describe=False)
            self._registry.register(Collector(self.state))  # type: ignore[arg-type]
        return self._registry

    async def start(self, host: str, port: int, ssl: Any = None) -> None:
        self._server = await asyncio.start_server(self._handle, host, port, reuse_address=True, ssl=ssl)

    @property
    def address(self) -> tuple[str, int]:
        assert self._server is not None
        return self._server.sockets[0].getsockname()[:2]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._handlers):  # a browser keeps idle connections open, waiting for its next request
                task.cancel()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        try:
            await self._serve_one(reader, writer)
        except asyncio.CancelledError:
            writer.close()
        finally:
            self._handlers.discard(task)  # type: ignore[arg-type]

    async def _serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5.0)
            method, _, rest = request.decode("latin-1").partition(" ")
            path = rest.split(" ", 1)[0].split("?", 1)[0]
            if self.app is not None and path.startswith(APP_PREFIXES):
                peer = (writer.get_extra_info("peername") or ("",))[0]
                head, body = await self.app(request, reader, peer)
                await self._send(writer, head + body)
                return
            status, ctype, body = self.respond(method, path)
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            writer.close()
            return
        except Exception:
            log.exception("metrics request failed")
            status, ctype, body = 500, "text/plain", b"internal error\n"
        head = (f"HTTP/1.0 {status} {_REASONS.get(status, '')}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
        await self._send(writer, head + (body if method != "HEAD" else b""))

    @staticmethod
    async def _send(writer: asyncio.StreamWriter, data: bytes) -> None:
        try:
            writer.write(data)
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    def respond(self, method: str, path: str) -> tuple[int, str, bytes]:
        if method not in ("GET", "HEAD"):
            return 405, "text/plain", b"GET only\n"
        if path == "/metrics":
            from prometheus_client import generate_latest

            return 200, "text/plain; version=0.0.4; charset=utf-8", generate_latest(self.registry)
        if path == "/healthz":
            why, warnings = self.state.health(), self.state.degraded()
            answer: dict[str, Any] = {"status": "unhealthy" if why else "degraded" if warnings else "ok",
                                      "problems": why}
            if warnings:  # sync behind: screening goes on with what this node knows, so still 200
                answer["warnings"] = warnings
            body = json.dumps(answer).encode() + b"\n"
            return (200 if not why else 503), "application/json", body
        if path == "/status":
            return 200, "application/json", json.dumps(self.state.status(), indent=2).encode() + b"\n"
        if path.startswith(APP_PREFIXES) and self.app_off:
            return 404, "text/plain", f"not found: the console and the API are off: {self.app_off}\n".encode()
        return 404, "text/plain", b"not found: /metrics, /healthz, /status\n"


_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 500: "Internal Server Error",
            503: "Service Unavailable"}


def timer(metrics: Metrics | None) -> Callable[[float], None] | None:
    return metrics.decision_time if metrics is not None else None


_FIGURES = ("sent", "new_share", "refused_share", "optouts_per_1000", "complaints_per_1000", "low_credit_share",
            "rate_vs_usual")


def _review_families(review: Any, replies: Any):
    """The sending-pattern review ([review]) and the keyword replies ([replies]), when they run."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    if review is not None:
        c = CounterMetricFamily("smppguard_review_tripped", "Times an account tripped the sending-pattern review",
                                labels=["account"])
        for account, n in sorted(review.tripped.items()):
            c.add_metric([account], n)
        yield c
        g = GaugeMetricFamily("smppguard_review_figure", "Each account's figures over the review's window",
                              labels=["account", "figure"])
        for account, f in sorted(review.last.items()):
            for name in _FIGURES:
                if name in f:
                    g.add_metric([account, name], f[name])
        yield g
    if replies is not None:
        c = CounterMetricFamily("smppguard_replies", "Answers to STOP, HELP and START, sent or not (why: audit rule "
                                "reply)", labels=["result", "kind"])
        for kind, n in sorted(replies.sent_by_kind.items()):
            c.add_metric(["sent", kind], n)
        for kind, n in sorted(replies.skipped.items()):
            c.add_metric(["not_sent", kind], n)
        yield c
