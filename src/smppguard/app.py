"""Running the daemon: start the simulator if it is the upstream, serve, and shut down in order.

`run(config, shutdown_trigger=None)`: the trigger is an awaitable factory; by default SIGTERM / SIGINT.
Order at shutdown: stop accepting -> unbind both legs of every session within the grace period (answering
everything outstanding) -> stop the simulator.
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import gc
import logging
import os
import signal
import time
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from . import logs, sdnotify, tasks
from .config import Config
from .hooks import Hooks
from .inbound import Learner, LearnerSettings
from .inbound.keywords import Keywords
from .inbound.receipts import ReceiptCodes
from .metrics import Metrics, MetricsServer, State
from .proxy.holds import HoldQueue, HoldSettings
from .proxy.screening import Screening
from .proxy.server import ProxyServer
from .proxy.tls import TlsError
from .replies import RULE as REPLY_RULE
from .replies import KeywordReplies
from .review import Review
from .simulator import Simulator
from .store import replies as store_replies
from .store import review as store_review
from .store import snapshot
from .store.audit import AuditLog
from .store.db import StoreError, connect
from .store.holds import HeldRow, QueueStore
from .store.index import open_index
from .store.learning import Learning, LearningTerms
from .store.recipients import masker
from .store.upkeep import Upkeep
from .store.writer import StoreWriter

if TYPE_CHECKING:  # sync (and aiomqtt with it) is imported only by a daemon with [mqtt] url
    from .policy.model import Index
    from .sync import Sync

log = logging.getLogger("smppguard")


def configure_logging(level: str, fmt: str = "text") -> None:
    """One line per record, whatever a peer put in it (logs.SafeFormatter, logs.JsonFormatter)."""
    logs.configure(level, fmt)


async def _wait_for_signal() -> None:
    signals = _StopSignals()
    try:
        await signals.stop.wait()
    finally:
        signals.remove()


class StartupError(Exception):
    """The daemon cannot start: a port in use, an unreadable store. The message says which and why."""


class StoppedError(Exception):
    """The daemon had to stop while running (the store was upgraded under it). The message says why."""


class _StopSignals:
    """SIGTERM / SIGINT set `stop` from the moment the daemon starts: one that comes while it loads, or the moment
    it says READY (a supervisor may stop it then), stops it in order once it can, instead of killing it."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.stop = asyncio.Event()
        self.installed = False
        loop = asyncio.get_running_loop()
        try:
            for sig in self.SIGNALS:
                loop.add_signal_handler(sig, self.stop.set)
            self.installed = True
        except (ValueError, RuntimeError):  # not the main thread (an embedding program): no stop by signal
            pass

    def remove(self) -> None:
        if self.installed:
            loop = asyncio.get_running_loop()
            for sig in self.SIGNALS:
                loop.remove_signal_handler(sig)
            self.installed = False


async def serve(config: Config, shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
                ready: Callable[[ProxyServer], None] | None = None) -> None:
    simulator = store = proxy = metrics_server = None
    signals = _StopSignals() if shutdown_trigger is None else None
    try:
        upstream = config.upstream.address
        if upstream is None:
            simulator = Simulator(config.simulator, response_timeout=config.session.response_timeout,
                                  enquire_link_interval=config.session.enquire_link_interval)
            try:
                await simulator.start("127.0.0.1", 0, control=config.simulator.control)
            except OSError as e:
                where = _where(config.simulator.control)
                raise StartupError(f"cannot start the built-in simulator's control interface on {where} "
                                   f"([simulator] control): {e.strerror or e}") from None
            upstream = simulator.address
            log.info("built-in SMSC simulator on %s:%d%s", *upstream,
                     f", control http://{simulator.control_address[0]}:{simulator.control_address[1]}"
                     if simulator.control_address else "")
        try:
            store = await open_store(config)
        except StoreError as e:
            raise StartupError(f"{e} ([store] path)") from None
        m = store.metrics
        proxy = ProxyServer(config, upstream, store.screening, store.hooks, holds=store.holds,
                            timing=m.decision_time if m is not None else None,
                            bind_failed=m.bind_failed if m is not None else None)
        store.writer.on_behind = proxy.hold_senders  # the bound on what is acknowledged but not yet saved
        if m is not None and config.metrics.address is not None:
            # listening before the SMPP listener is: whoever sees binds accepted can ask /healthz at once
            metrics_server = _metrics_server(config, State(m, proxy, store), store)
        if metrics_server is not None:
            try:
                tls = http_tls_context(config.http)
                await metrics_server.start(*config.metrics.address, ssl=tls)
            except TlsError as e:
                raise StartupError(str(e)) from None
            except OSError as e:
                raise StartupError(f"cannot serve metrics on {_where(config.metrics.address)} ([metrics] address): "
                                   f"{e.strerror or e}") from None
            scheme = "https" if tls is not None else "http"
            log.info("metrics on %s://%s:%d/metrics%s", scheme, *metrics_server.address,
                     f", console on {scheme}://{_where(metrics_server.address)}/console/" if metrics_server.app else
                     "")
        try:
            await proxy.start()
        except TlsError as e:
            raise StartupError(str(e)) from None
        except OSError as e:
            raise StartupError(f"cannot listen on {_where(config.listen.address)} ([listen] address): "
                               f"{e.strerror or e}") from None
        log.info("listening on %s:%d, upstream %s:%d", *proxy.address, *upstream)
        for warning in config.policy.warnings():
            log.warning("%s", warning)
        if ready is not None:
            ready(proxy)
        _release_freed_memory()  # what the start freed after the load (the listeners', the console's): 1.3 MB
        sdnotify.notify("READY=1", f"STATUS=listening on {_where(proxy.address)}")
        trigger = asyncio.ensure_future(signals.stop.wait() if signals is not None else shutdown_trigger())
        failed = store.upkeep.failed
        reloader = Reloader(config, store, proxy)
        reloader.console = metrics_server.app if metrics_server is not None else None
        loop = asyncio.get_running_loop()
        try:
            loop.add_signal_handler(signal.SIGHUP, reloader.request)
        except (ValueError, RuntimeError):  # not the main thread (an embedding program): no reload by signal
            pass
        watchdog = tasks.spawn(_watchdog(), name="systemd watchdog") if sdnotify.watchdog_interval() else None
        try:
            await asyncio.wait({trigger, failed} if failed is not None else {trigger},
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            trigger.cancel()
            try:
                loop.remove_signal_handler(signal.SIGHUP)
            except (ValueError, RuntimeError):
                pass
            if watchdog is not None:
                watchdog.cancel()
            sdnotify.notify("STOPPING=1")
        if trigger.done() and not trigger.cancelled():
            trigger.result()  # a trigger that failed says so
        if failed is not None and failed.done():
            log.info("shutting down: the store cannot be used any longer")
            raise StoppedError(failed.result())
        log.info("shutting down")
    finally:
        if signals is not None:
            signals.remove()
        if metrics_server is not None:
            await metrics_server.stop()
        if proxy is not None:
            await proxy.stop()
        if store is not None:
            await store.close()
        if simulator is not None:
            await simulator.stop()
        log.info("stopped" + (": the store is saved and closed" if store is not None else ""))


def _metrics_server(config: Config, state: State, store: "OpenStore") -> MetricsServer:
    """The HTTP listener: /metrics, /healthz, /status, and the console and API when they may be on
    (console.off_reason; the log says why not)."""
    from .console import Console, off_reason

    why = off_reason(config)
    if why is not None:
        log.warning("the console and the API are off: %s", why)
        return MetricsServer(state, app_off=why)
    console = Console(config, screening=store.screening, holds=store.holds, clock=store.screening.clock)
    return MetricsServer(state, app=console)


def http_tls_context(http):
    """HTTPS on [metrics] address with [http] tls_cert / tls_key; None for plain HTTP."""
    import ssl

    if not http.tls_cert:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(http.tls_cert, http.tls_key or None)
    except (OSError, ssl.SSLError) as e:
        raise TlsError(f"cannot load [http] tls_cert / tls_key ({http.tls_cert}): "
                       f"{getattr(e, 'strerror', None) or e}") from None
    return ctx


async def _watchdog() -> None:
    interval = sdnotify.watchdog_interval() or 10.0
    while True:
        sdnotify.notify("WATCHDOG=1")
        await asyncio.sleep(interval)


class Reloader:
    """SIGHUP: re-read the config file and apply what can change without dropping a bind (the rules, classes and
    presets, the deliver path's keywords and codes, logging, the listener's limits, the hold queue's settings,
    audit folding). An invalid file is refused, with the same message as at start-up, and the config in force
    stays. What needs a restart (the listen and upstream addresses, TLS, the store, metrics, the simulator, how
    audit rows keep recipients) is named in the log."""

    def __init__(self, config: Config, store: "OpenStore", proxy: ProxyServer):
        self.config = config
        self.started = config  # what the settings that need a restart still are, whatever was read since
        self.store = store
        self.proxy = proxy
        self.console = None  # console.Console, when the HTTP listener serves it: [http] tokens and limits reload
        self._running: asyncio.Task | None = None

    def request(self) -> None:
        if self._running is None or self._running.done():
            self._running = tasks.spawn(self.reload(), name="reload")

    async def reload(self) -> bool:
        """True when the new config is in force."""
        from .config import ConfigError, load_config

        old = self.config
        if not old.source or old.source.startswith("<"):
            log.warning("SIGHUP: the daemon runs on built-in defaults; there is no config file to read again")
            return False
        sdnotify.reloading()
        try:
            try:
                new = await asyncio.get_running_loop().run_in_executor(  # every error, as check-config says them
                    None, functools.partial(load_config, old.source, all_errors=True))
            except ConfigError as e:
                log.error("SIGHUP: %s is not valid; the config in force stays: %s", old.source, e)
                return False
            except OSError as e:
                log.error("SIGHUP: cannot read %s (%s); the config in force stays", old.source, e.strerror or e)
                return False
            restart = self.apply(new)
            self.config = new
            log.info("SIGHUP: %s read again and in force%s", old.source,
                     f"; these need a restart to change: {', '.join(restart)}" if restart else "")
            return True
        finally:
            sdnotify.notify("READY=1")

    def _console_stays(self, new: Config) -> bool:
        """Whether the console and the API would be on (or off) with `new` as they are now."""
        from .console import off_reason

        return (self.console is not None) == (off_reason(new) is None)

    def apply(self, new: Config) -> list[str]:
        # against what runs: a file that went back to the running value needs no restart, whatever came between
        running, store, proxy = self.started, self.store, self.proxy
        restart = [what for what, same in (
            ("[listen] address", running.listen.address == new.listen.address),
            ("[listen] tls_*", (running.listen.tls_cert, running.listen.tls_key, running.listen.tls_client_ca)
             == (new.listen.tls_cert, new.listen.tls_key, new.listen.tls_client_ca)),
            ("[upstream]", running.upstream == new.upstream),
            ("[store]", running.store == new.store),
            ("[metrics] address", running.metrics == new.metrics),
            ("[http] tls_*", (running.http.tls_cert, running.http.tls_key) == (new.http.tls_cert, new.http.tls_key)),
            ("[http] tokens (the console and the API on or off)", self._console_stays(new)),
            ("[simulator]", running.simulator == new.simulator),
            ("[audit] recipient / salt",
             (running.audit.recipient, running.audit.salt) == (new.audit.recipient, new.audit.salt)),
            ("[text]", running.text == new.text),
            ("[mqtt]", running.mqtt == new.mqtt),
        ) if not same]
        policy = new.policy
        if policy.history_span_s > self.config.policy.history_span_s:
            restart.append("a longer [rules.frequency] period (sends older than the old one are counted after a "
                           "restart)")
        if self.console is not None and self._console_stays(new):
            self.console.apply_http(new.http)  # new tokens in force; a session of a token that went ends
        store.screening.policy = policy
        if store.holds is not None:
            store.holds.forced.policy = policy.without("quiet_hours")
            old_s = store.holds.s  # [hold]'s keys from the new file; the rest as they run
            store.holds.s = hold_settings(new)._replace(retry_after=old_s.retry_after, tick=old_s.tick)
        store.upkeep.policy = policy
        if store.learning is not None and new.inbound.enabled:
            fresh = _learning(new, store.writer, store.upkeep, store.screening.clock)
            fresh.learner.reassembly = store.learning.learner.reassembly  # replies half-way through stay
            store.learning.learner, store.learning.terms = fresh.learner, fresh.terms
        elif store.learning is not None or new.inbound.enabled:
            restart.append("[inbound] enabled")
        for observer in store.hooks.observers:
            if isinstance(observer, AuditLog):
                observer.fold = new.audit.fold
            elif isinstance(observer, logs.VerdictLog) and new.log.verdicts != "off":
                observer.level = logging.getLevelName(new.log.verdicts.upper())
        logging_verdicts = any(isinstance(o, logs.VerdictLog) for o in store.hooks.observers)
        if logging_verdicts != (new.log.verdicts != "off"):
            restart.append("[log] verdicts on or off")
        logs.configure(new.log.level, new.log.format)
        proxy.apply_limits(new)
        if store.holds is not None:
            store.holds.own_accounts = dict(new.hold.accounts)
            store.holds.config = proxy.config
        return restart


def _where(address: tuple[str, int] | None) -> str:
    return f"{address[0]}:{address[1]}" if address else "-"


class OpenStore:
    """The daemon's store: the Index loaded from SQLite, the one write path (the writer) and the background
    work beside it (the upkeep), the screening that reads the one and writes through the other, and the hooks
    with the audit log among their observers."""

    def __init__(self, screening: Screening, writer: StoreWriter, upkeep: Upkeep, hooks: Hooks,
                 learning: Learning | None = None, holds: HoldQueue | None = None, metrics: Metrics | None = None,
                 sync: Sync | None = None, review: Review | None = None, replies: KeywordReplies | None = None):
        self.screening = screening
        self.writer = writer
        self.upkeep = upkeep
        self.hooks = hooks
        self.learning = learning
        self.holds = holds
        self.metrics = metrics  # counts for /metrics ([metrics] address), an observer of the hooks
        self.sync = sync  # the other sidecars, through [mqtt] url
        self.review = review  # the sending-pattern review ([review] enabled)
        self.replies = replies  # answers to STOP, HELP, START ([replies] enabled)
        self.snapshot_lock: int | None = None  # the right to write the snapshot file, held while it runs

    async def close(self) -> None:
        if self.review is not None:
            await self.review.close()
        if self.sync is not None:
            await self.sync.close()
        if self.holds is not None:
            await self.holds.close()
        if self.learning is not None:
            await self.learning.close()
        await self.upkeep.close()
        await self.writer.close()
        if self.snapshot_lock is not None:
            lock, self.snapshot_lock = self.snapshot_lock, None
            os.close(lock)


#: Without a current snapshot file the Index was read from the tables: write one this soon after start-up...
SNAPSHOT_SOON = 10.0
#: ... if it read this many list entries and recipients or more: fewer are read from the tables again in a fraction
#: of a second, and a roll forward soon after start-up would only cost the traffic of a new store its memory and
#: CPU (the sends it merges, as rows). The roll after a burst (upkeep.ROLL_SENDS), a large import and the hourly
#: one still come.
SNAPSHOT_WORTH = 100_000
#: How long start-up waits for a command that writes the snapshot (a list import just done) to finish.
SNAPSHOT_LOCK_WAIT = 60.0


def _snapshot_lock(path: str, step: Callable[..., None]) -> int | None:
    """The snapshot file's lock (store/snapshot.py), held while the daemon runs, so a list import leaves the file
    to it. A command that writes the file holds the lock for seconds: waited for, up to SNAPSHOT_LOCK_WAIT;
    past that (another daemon on this store) the daemon goes on without it, and says so."""
    if not snapshot.store_path_of(path):
        return None
    waited = time.monotonic()
    while (lock := snapshot.take_lock(path)) is None:
        if time.monotonic() - waited > SNAPSHOT_LOCK_WAIT:
            log.warning("%s is held by another process (another daemon on this store?) for more than %.0f s: "
                        "starting without it", snapshot.lock_path(path), SNAPSHOT_LOCK_WAIT)
            return None
        step("the store: waiting for the command writing its snapshot, seconds", int(time.monotonic() - waited))
        time.sleep(0.2)
    return lock


def _loaded(index: Index) -> int:
    """The list entries and recipients with sends the Index holds."""
    return len(index.blacklist) + len(index.optouts) + len(index.dead) + len(index.history)


async def open_store(config: Config, clock: Callable[[], float] = time.time) -> OpenStore:
    """Migrate the store, load the Index, start the writer and the change-log tail.

    The Index is loaded on the event loop's own thread: nothing is served yet, and what another thread
    allocates stays in that thread's malloc arena, which glibc gives back to the OS less well (30 MiB more
    resident for 1M blacklist entries and 1M opt-outs)."""
    started = time.monotonic()
    # systemd hears how far the load is, and waits for it while it moves (sdnotify.Loading)
    with sdnotify.Loading() as loading:
        db = connect(config.store.path)
        lock = None
        try:
            lock = _snapshot_lock(config.store.path, loading.step)
            index, current = open_index(db, config.policy, clock(), failures_within_s=config.inbound.suspended_within,
                                        progress=loading.step)
            answered = (store_replies.answered_since(db, clock() - config.replies.once_per)
                        if config.replies.enabled else {})
        except BaseException:
            if lock is not None:
                os.close(lock)
            raise
        finally:
            db.close()
    # Millions of list entries are loaded once and live for the process: keep the cyclic GC from walking them
    # on every full collection.
    gc.collect()
    gc.freeze()
    _release_freed_memory()
    writer = StoreWriter(config.store.path, max_unsaved=config.store.max_unsaved,
                         max_unsaved_age=config.store.max_unsaved_age,
                         audit=(config.audit.recipient, config.audit.salt), nice=config.store.background_nice,
                         commit_idle=config.store.commit_idle)
    await writer.start()
    upkeep = Upkeep(config.store.path, index, config.policy, writer, retention=config.store.retention,
                    audit_max_size=config.audit.max_size, failures_within_s=config.inbound.suspended_within,
                    snapshot_first=None if current or _loaded(index) < SNAPSHOT_WORTH else SNAPSHOT_SOON,
                    nice=config.store.background_nice)
    await upkeep.start()
    log.info("store %s: %d blacklisted, %d opt-outs, %d dead, %d numbers with recent sends; loaded in %.2fs",
             config.store.path, len(index.blacklist), len(index.optouts), len(index.dead), len(index.history),
             time.monotonic() - started)
    audit = AuditLog(writer, config.audit.recipient, config.audit.salt, config.audit.fold)
    learning = _learning(config, writer, upkeep, clock) if config.inbound.enabled else None
    metrics = Metrics() if config.metrics.address is not None else None
    mask = masker(config.audit.recipient, config.audit.salt)
    verdicts = None
    if config.log.verdicts != "off":
        verdicts = logs.VerdictLog(logging.getLevelName(config.log.verdicts.upper()), mask)
    # the screening's policy, as a reload leaves it (the screening is made below, with the sync's tee)
    sync = _sync(config, writer, index, lambda: screening.policy, clock) if config.mqtt.url else None
    review = _review(config, writer, index, lambda: screening.policy, clock, sync) if config.review.enabled else None
    hooks = Hooks([audit] + [o for o in (learning, metrics, verdicts, sync and sync.events, review) if o is not None],
                  allowed=metrics.allowed if metrics is not None else None)
    codecs = (config.text.default_codec, config.text.ia5_codec)
    record_send = writer.record_send if sync is None else sync.tee(writer.record_send)
    screening = Screening(config.policy, index, record_send=record_send, hooks=hooks, clock=clock,
                          text_codecs=codecs, holding=True)
    # `queue release`: the rules without quiet hours (the operator says "now"); everything else still decides
    forced = Screening(config.policy.without("quiet_hours"), index, record_send=record_send, hooks=hooks,
                       clock=clock, text_codecs=codecs, holding=True)

    def audit_hold(at, account, sender, number, address, rule, action, status, reason):
        writer.audit(at, account, sender, mask(number, address), rule, action, status, reason)
        if sync is not None and action == "released":
            sync.events.released(at, account, sender, number, address, status, reason)

    holds = HoldQueue(QueueStore(writer), screening, forced=forced, clock=clock, row_type=HeldRow,
                      settings=hold_settings(config), audit=audit_hold)
    if sync is not None:  # a held message counts on every node, as it does on this one
        holds.on_counted = sync.held
        sync.counted_now = holds.counted_now
    await holds.start()
    replies = (_replies(config, writer, index, answered, mask, clock, lambda: holds.bridges())
               if config.replies.enabled else None)
    if learning is not None:
        learning.listeners += [x.facts for x in (review, replies) if x is not None]
        learning.start()
    if review is not None:
        upkeep.on_complaints = review.complaints
        upkeep.complaints_within_s = config.review.window
        review.start()
    store = OpenStore(screening, writer, upkeep, hooks, learning, holds, metrics, sync, review, replies)
    store.snapshot_lock = lock
    if sync is not None:
        await sync.start()
    return store


def _sync(config: Config, writer: StoreWriter, index, policy: Callable[[], Any], clock: Callable[[], float]) -> Sync:
    """This sidecar's link to the others, as [mqtt] configures it; `policy`: the policy in force (a reload may
    change it)."""
    from .sync import Sync, SyncSettings

    m = config.mqtt
    b = m.broker
    settings = SyncSettings(
        host=b.host, port=b.port, node=m.node_or_host, prefix=m.prefix, tls=b.tls, username=b.username,
        password=b.password, ca=m.ca, cert=m.cert, key=m.key, peers=m.peers, hello_interval=m.hello_interval,
        events=m.events, events_per_s=m.events_per_s)
    return Sync(settings, writer, index, policy, path=config.store.path,
                mask=masker(config.audit.recipient, config.audit.salt),
                correlation_threshold=lambda: policy().correlation_threshold, clock=clock)


def hold_settings(config: Config) -> HoldSettings:
    """The hold queue's settings from [hold] (at start, and again at a reload)."""
    h = config.hold
    return HoldSettings(max_messages=h.max_messages, max_per_account=h.max_per_account, max_hold=h.max_hold,
                        release_rate=h.release_rate, map_ttl=h.map_ttl, max_owed=h.max_owed)


def _review(config: Config, writer: StoreWriter, index: Index, policy: Callable[[], Any],
            clock: Callable[[], float], sync: Sync | None) -> Review:
    """The sending-pattern review, as [review] sets it: its marks go through the writer into the change log."""
    def mark(account: str, state: str, reason: str, figures: dict, at: float):
        return writer.submit(lambda db: store_review.mark(db, account, state, reason, figures, now=at,
                                                          in_transaction=True))

    announce = None
    if sync is not None:
        def announce(account: str, fields: dict) -> None:
            sync.events.add("review", fields)
    return Review(config.review, lambda: index, policy, mark, clock, announce)


def _replies(config: Config, writer: StoreWriter, index: Index, answered: dict, mask: Callable,
             clock: Callable[[], float], bridges: Callable[[], list]) -> KeywordReplies:
    """Answers to STOP, HELP and START ([replies]), through the senders' binds the proxy gives the hold queue."""
    def record(number: int, kind: str, account: str, at: float) -> None:
        writer.submit(lambda db: store_replies.record(db, number, kind, account, at))

    def audit(at: float, account: str, source: str, number: int, action: str, reason: str) -> None:
        writer.audit(at, account, source, mask(number, ""), REPLY_RULE, action, 0, reason)

    return KeywordReplies(config.replies, bridges, lambda: index, record, audit, answered, clock)


def _learning(config: Config, writer: StoreWriter, upkeep: Upkeep, clock: Callable[[], float]) -> Learning:
    """The deliver path's learning, as [inbound] and the rules configure it."""
    i, policy = config.inbound, config.policy
    learner = Learner(LearnerSettings(
        keywords=Keywords.of(i.optout_keywords, i.optin_keywords, i.confirm_keywords, i.match,
                             help=config.replies.help_keywords if config.replies.enabled else ()),
        codes=ReceiptCodes.of(i.dead_codes, i.suspended_codes, i.blacklist_codes),
        sender_prefixes=i.sender_prefixes, reassembly_timeout_s=i.reassembly_timeout,
        default_region=policy.default_region, default_codec=config.text.default_codec,
        ia5_codec=config.text.ia5_codec, count_deliveries=policy.credit_floor is not None))
    terms = LearningTerms(optout_scope=policy.optout_scope, correlation_threshold=policy.correlation_threshold,
                          dead_for_s=policy.dead_for_s, confirm_within_s=i.confirm_within,
                          suspended_failures=i.suspended_failures, suspended_within_s=i.suspended_within)
    mask = masker(config.audit.recipient, config.audit.salt)
    return Learning(learner, writer, terms, mask, clock, upkeep.touch)


def _release_freed_memory() -> None:
    """Give the memory freed after loading (SQLite's page cache, the rows read) back to the OS. glibc keeps
    freed heap memory mapped and counted in RSS: about 80 MiB after loading 2M list entries. No-op elsewhere."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def run_loop(main: Awaitable) -> None:
    """uvloop when it is installed, asyncio otherwise."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency, but not on every platform
        asyncio.run(main)  # type: ignore[arg-type]
    else:
        uvloop.run(main)  # type: ignore[arg-type]


def run(config: Config, shutdown_trigger: Callable[[], Awaitable[None]] | None = None) -> None:
    configure_logging(config.log.level, config.log.format)
    run_loop(serve(config, shutdown_trigger))


def run_simulator(config: Config, host: str, port: int, control: tuple[str, int] | None, sink: bool) -> None:
    async def main() -> None:
        sim = Simulator(config.simulator, sink=sink, window=max(100, config.upstream.window),
                        response_timeout=config.session.response_timeout,
                        enquire_link_interval=config.session.enquire_link_interval)
        await sim.start(host, port, control=control)
        log.info("SMSC simulator on %s:%d%s", *sim.address,
                 f", control http://{sim.control_address[0]}:{sim.control_address[1]}"
                 if sim.control_address else "")
        try:
            await _wait_for_signal()
        finally:
            await sim.stop()

    run_loop(main())
