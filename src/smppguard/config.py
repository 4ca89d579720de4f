"""Configuration: TOML (tomllib) into one frozen dataclass per table, checked once at load.

Rule 1: each option's default, parser and help text sit together in one `option()` call, so the commented
shipped config (config/smppguard.toml) can be checked against them by a test.
Rule 2: an unknown table or key, or a bad value, raises `ConfigError` naming the key and its line, with a
suggestion for near-miss names. Defaults make an empty file valid. The config object is passed down, never
global.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, NamedTuple

from .errors import ConfigError, ConfigErrors
from .inbound import keywords as kw
from .inbound import receipts as rc
from .policy import load_policy
from .smpp import text as smpp_text
from .values import address, boolean, choice, duration, integer, number, size, string, strings, upstream_address

__all__ = ["Config", "ConfigError", "load_config", "parse_config"]

DEFAULT_PATHS = (Path("/etc/smppguard/smppguard.toml"),)
ENV_CONFIG = "SMPPGUARD_CONFIG"


# --- value parsers: values.py (shared with the rules' settings); the ones below are config's own -----------

def codec(value: Any) -> str:
    try:
        smpp_text.check_codec(string(value))
    except LookupError:
        raise ValueError(f"unknown text codec {value!r} (for example \"gsm03.38\", \"latin-1\", \"ascii\")") \
            from None
    return value


def accounts(value: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ValueError("expected a table of system_id = \"password\"")
    return tuple(sorted(value.items()))


def strings_or_empty(value: Any) -> tuple[str, ...]:
    return () if value == [] else strings(value)


def networks(value: Any) -> tuple[str, ...]:
    import ipaddress

    listed = strings_or_empty(value)
    for n in listed:
        try:
            ipaddress.ip_network(n, strict=False)
        except ValueError:
            raise ValueError(f"{n!r} is not an address or network (\"10.0.0.0/8\", \"192.0.2.7\")") from None
    return listed


def option(default: Any, parse: Callable[[Any], Any], help: str) -> Any:
    """One option: its default, its parser and its help text, together."""
    return field(default=default, metadata={"parse": parse, "help": help})


# --- tables ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ListenConfig:
    address: tuple[str, int] = option(("127.0.0.1", 2775), address,
                                      "Where senders connect and bind, as \"host:port\".")
    max_connections: int = option(1000, integer(1), "Most concurrent sender connections.")
    max_connections_per_address: int = option(50, integer(1),
                                              "Most concurrent connections from one IP address, so that no one "
                                              "address can take every connection.")
    bind_timeout: float = option(15.0, duration,
                                 "A connection that has not sent a bind this long after it opened is closed "
                                 "(SMPP's session_init_timer).")
    allow_system_ids: tuple[str, ...] = option((), strings_or_empty,
                                               "The system_ids that may bind; [] = any. Others are refused 0x0F "
                                               "without reaching the SMSC.")
    allow_networks: tuple[str, ...] = option((), networks,
                                             "The addresses (CIDR) senders may bind from; [] = any. Others are "
                                             "refused 0x0D without reaching the SMSC.")
    max_binds_per_account: int = option(20, integer(0),
                                        "Most binds of one system_id at once; one more is refused 0x05. 0 = no cap.")
    tls_cert: str = option("", string, "PEM certificate (chain) for TLS on the listener; \"\" = plain SMPP.")
    tls_key: str = option("", string, "Its private key (PEM); \"\" = in tls_cert.")
    tls_client_ca: str = option("", string, "With TLS: senders must present a certificate signed by this CA (PEM); "
                                            "\"\" = no client certificates.")
    failed_binds: int = option(5, integer(1),
                               "Binds from one address that the SMSC refuses, in a row, before that address's "
                               "binds are refused here for bind_backoff (doubled after each further failure).")
    bind_backoff: float = option(60.0, duration, "How long binds from that address are refused here, at first.")


@dataclass(frozen=True)
class UpstreamConfig:
    address: tuple[str, int] | None = option(None, upstream_address,
                                             "The carrier SMSC as \"host:port\", or \"simulator\" for the "
                                             "built-in SMSC simulator.")
    window: int = option(10, integer(1, 10_000),
                         "Most outstanding requests per upstream bind; when full, the proxy stops reading from "
                         "that sender (back-pressure).")
    max_tps: float = option(0.0, number(0),
                            "Most submits per second per upstream bind (the carrier's limit); 0 = no limit. "
                            "Excess submits wait their turn.")
    connect_timeout: float = option(5.0, duration, "How long to wait for the SMSC's TCP connection.")
    bind_timeout: float = option(10.0, duration, "How long to wait for the SMSC's bind response.")
    tls: bool = option(False, boolean, "Connect to the SMSC over TLS.")
    tls_ca: str = option("", string, "With tls: the CA file (PEM) the SMSC's certificate must chain to; \"\" = the "
                                     "system's trusted CAs.")
    tls_verify: bool = option(True, boolean, "With tls: check the SMSC's certificate and name (leave on).")
    tls_server_name: str = option("", string, "With tls: the name the SMSC's certificate must carry; \"\" = the "
                                              "host of [upstream] address.")
    tls_cert: str = option("", string, "With tls: a client certificate (PEM) for SMSCs that ask for one.")
    tls_key: str = option("", string, "Its private key (PEM); \"\" = in tls_cert.")


@dataclass(frozen=True)
class SessionConfig:
    enquire_link_interval: float = option(30.0, duration,
                                          "Idle time after which each leg sends its own enquire_link.")
    response_timeout: float = option(30.0, duration,
                                     "How long a request waits for its response; then it is answered 0x08.")
    unbind_grace: float = option(5.0, duration,
                                 "At unbind or shutdown, how long to wait for in-flight responses.")


#: Send history must outlive the longest frequency period (a calendar month, store/index.py HISTORY_S).
MIN_RETENTION_S = 32 * 86400.0


def retention(value: Any) -> float:
    seconds = duration(value)
    if seconds < MIN_RETENTION_S:
        raise ValueError("must be at least 32d: the frequency rule reads a month of send history")
    return seconds


@dataclass(frozen=True)
class StoreConfig:
    path: str = option("smppguard.db", string,
                       "The SQLite database file; a relative path is relative to the config file's folder (with no "
                       "config file, to the working directory). Its folder must exist.")
    retention: float = option(400 * 86400.0, retention,
                              "How long send history and audit rows are kept (at least 32d); older rows are "
                              "deleted hourly. China's draft rules ask for logs kept at least 6 months.")
    max_unsaved: int = option(10_000, integer(1),
                              "Most rows (sends, audit rows) acknowledged but not yet saved. Past it, or past "
                              "max_unsaved_age, the proxy stops reading from senders until the store catches up; "
                              "a crash loses at most this many, plus one window per bind.")
    max_unsaved_age: float = option(2.0, duration,
                                    "Longest a row may wait to be saved (a store locked by another process, a "
                                    "slow disk) before the proxy stops reading from senders.")
    background_nice: int = option(10, integer(0, 19),
                                  "How much lower than the proxy's the CPU priority (nice) of the store's own "
                                  "threads is: the group commit, the change-log tail, the snapshot's roll "
                                  "forward. The kernel then gives a core to the relay first, so a commit does not "
                                  "delay the message in flight. 0 = the same priority. Linux only.")
    commit_idle: bool = option(True, boolean,
                               "The rows of each group commit (sends, audit rows) are saved by a process of its "
                               "own. true: in the idle scheduling class (SCHED_IDLE), so it runs only on a core "
                               "nothing else wants and never delays a message in flight; on a host kept busy by "
                               "other work, rows that wait for it more than 0.25 s are saved by the daemon's own "
                               "thread instead. false: at background_nice. Linux only.")


@dataclass(frozen=True)
class TextConfig:
    default_codec: str = option(smpp_text.GSM, codec,
                                "How data_coding 0 (SMSC default alphabet) is decoded: \"gsm03.38\", "
                                "\"latin-1\" or \"ascii\".")
    ia5_codec: str = option("ascii", codec, "How data_coding 1 (IA5) is decoded; some peers put GSM there.")


@dataclass(frozen=True)
class SimulatorConfig:
    accounts: tuple[tuple[str, str], ...] = option((), accounts,
                                      "system_id = \"password\" pairs the simulator accepts; empty = any.")
    system_id: str = option("smppguard-sim", string, "The system_id the simulator answers binds with.")
    receipt_delay: float = option(1.0, duration, "Delay before a requested delivery receipt is sent.")
    receipt_stat: str = option("DELIVRD", string, "The stat: of the receipts it sends (DELIVRD, UNDELIV, ...).")
    receipt_err: str = option("000", string, "The err: of the receipts it sends.")
    control: tuple[str, int] | None = option(("127.0.0.1", 8775), lambda v: None if v == "" else address(v),
                                             "HTTP control address for injecting MO messages; \"\" = off.")
    keep: int = option(10_000, integer(0), "How many of the latest accepted messages (and deliver_sm answers) the "
                                           "simulator keeps for GET /messages and query_sm; older ones are "
                                           "forgotten.")
    max_queued_mo: int = option(10_000, integer(0), "Most MO messages queued for a receiver that has not bound; "
                                                    "past it, POST /mo answers 503.")


@dataclass(frozen=True)
class AuditConfig:
    recipient: str = option("masked", choice("full", "masked", "hashed"),
                            "How audit rows keep the recipient: \"full\", \"masked\" (+86138****8000) or "
                            "\"hashed\" (SHA-256, keyed by [audit] salt).")
    salt: str = option("", string, "Secret mixed into hashed recipients, so hashes cannot be looked up.")
    fold: float = option(3600.0, duration,
                         "A refusal or hold that repeats the account, sender, recipient, rule and status within "
                         "this long of the first is counted in the first's row (count, first and last time) "
                         "instead of a row of its own; 0 = a row each.")
    max_size: int = option(1_000_000_000, size,
                           "Most disk space the audit log may take (\"1GB\"); past it the oldest rows are deleted, "
                           "with a warning in the log.")


def keywords(value: Any) -> tuple[str, ...]:
    words = strings(value)
    empty = [w for w in words if not kw.normalise(w)]
    if empty:
        raise ValueError(f"{empty[0]!r} is only spaces and punctuation: it could never match a reply")
    return words


@dataclass(frozen=True)
class InboundConfig:
    enabled: bool = option(True, boolean,
                           "Learn from what the SMSC sends back: replies that opt out, opt in or confirm consent, "
                           "receipts of dead and carrier-blacklisted numbers.")
    optout_keywords: tuple[str, ...] = option(kw.DEFAULT_OPTOUT, keywords,
                                              "Replies that opt the recipient out of the sender they reply to.")
    optin_keywords: tuple[str, ...] = option(kw.DEFAULT_OPTIN, keywords,
                                             "Replies that lift an opt-out made by a reply (never a blacklist "
                                             "entry).")
    confirm_keywords: tuple[str, ...] = option(kw.DEFAULT_CONFIRM, keywords,
                                               "Replies that confirm the number's pending consent (double opt-in).")
    match: str = option("exact", choice("exact", "contains"),
                        "\"exact\": the whole reply is the keyword; \"contains\": the keyword as a word in it.")
    confirm_within: float = option(72 * 3600.0, duration, "How long a pending consent waits for its confirmation.")
    sender_prefixes: tuple[str, ...] = option((), strings,
                                              "Sender addresses that carry a per-customer extension (CN 106... "
                                              "long codes): a reply to 1069012345678 is a reply to 1069012345 "
                                              "when that is listed.")
    reassembly_timeout: float = option(60.0, duration,
                                       "How long the parts of a concatenated reply are waited for; then it is "
                                       "judged on the parts that came.")
    dead_codes: tuple[str, ...] = option(rc.DEFAULT_DEAD, strings,
                                         "Receipt stat or err codes of a number that does not exist or is empty: "
                                         "dead at once.")
    suspended_codes: tuple[str, ...] = option(rc.DEFAULT_SUSPENDED, strings,
                                              "Receipt codes of a suspended number: dead after suspended_failures "
                                              "within suspended_within.")
    suspended_failures: int = option(3, integer(1), "Suspended receipts that make a number dead.")
    suspended_within: float = option(30 * 86400.0, duration, "The window those receipts are counted in.")
    blacklist_codes: tuple[str, ...] = option(rc.DEFAULT_BLACKLISTED, strings,
                                              "Receipt codes of a carrier blacklist: the number is blacklisted "
                                              "with source \"carrier\".")
    no_receiver: str = option("retry", choice("retry", "keep"),
                              "A reply or receipt for an account with no receiver bound: \"retry\" answers the "
                              "SMSC 0x64 so it delivers it again later; \"keep\" accepts it, keeps it in the "
                              "store and delivers it when a receiver of that account binds.")


@dataclass(frozen=True)
class HoldConfig:
    max_messages: int = option(1_000_000, integer(0),
                               "Most messages held at once; past it a message to hold is answered 0x14 (message "
                               "queue full: the sender retries later).")
    max_per_account: int = option(200_000, integer(0),
                                  "Most messages one account (system_id) may have held, so one sender cannot fill "
                                  "the queue for the others.")
    max_hold: float = option(24 * 3600.0, duration,
                             "How long a message is kept when its validity_period says nothing (or more); then it "
                             "expires, with a receipt stat EXPIRED if the sender asked for receipts.")
    release_rate: float = option(100.0, number(0.1),
                                 "Most held messages released per second, over all accounts (each bind's window "
                                 "and [upstream] max_tps apply too), so the morning release neither floods the "
                                 "SMSC nor starves live traffic.")
    map_ttl: float = option(72 * 3600.0, duration,
                            "How long the SMSC id of a released message is remembered, to give its receipts and "
                            "query_sm the id the sender knows.")
    accounts: tuple[tuple[str, str], ...] = option((), accounts,
                                                   "system_id = \"password\" of accounts whose held messages the "
                                                   "proxy may release through a transmitter bind of its own when "
                                                   "no sender of the account is bound; {} = wait for a sender.")
    max_owed: int = option(100_000, integer(0),
                           "Most deliveries kept for senders with no receiver bound (receipts the proxy makes, "
                           "replies kept by [inbound] no_receiver = \"keep\").")


def share(value: Any) -> float:
    v = number(0)(value)
    if v > 1:
        raise ValueError(f"expected a share from 0 to 1 (0.9 is 90%), got {value!r}")
    return v


@dataclass(frozen=True)
class ReviewConfig:
    enabled: bool = option(False, boolean,
                           "Watch each account's sending pattern over `window` against the thresholds below.")
    window: float = option(3600.0, duration, "The rolling window the figures are taken over.")
    min_sent: int = option(200, integer(1), "An account is judged once it has sent this many in the window.")
    action: str = option("alert", choice("alert", "hold"),
                         "\"alert\": an event, a metric and a log line; \"hold\": also hold the account's marketing "
                         "(the hold queue keeps it) until `smppguard account release`.")
    classes: tuple[str, ...] = option(("marketing",), strings, "The traffic classes whose messages are counted.")
    new_share: float = option(0.9, share,
                              "Trip when this share of the recipients had no send on record (a bought list); 0 = "
                              "off. Needs [rules.frequency], whose history says who was sent to.")
    refused_share: float = option(0.5, share, "Trip when this share of the account's messages is refused; 0 = off.")
    optouts_per_1000: float = option(10.0, number(0),
                                     "Trip at this many opt-out replies per 1000 sent (1%, ten times what a "
                                     "wanted campaign draws); 0 = off.")
    complaints_per_1000: float = option(1.0, number(0),
                                        "Trip at this many complaints (blacklist entries with source complaint) "
                                        "per 1000 sent, counted against each account that sent to the number "
                                        "within the window; carriers act at about 0.1%; 0 = off.")
    low_credit_share: float = option(0.3, share,
                                     "Trip when this share of the recipients is below the credit floor "
                                     "([rules.credit] enabled); 0 = off.")
    rate_factor: float = option(10.0, number(0),
                                "Trip when the account sends this many times its usual rate (its last 24 h, once "
                                "it has 6 h of history); 0 = off.")


def _texts(value: Any) -> tuple[str, ...]:
    return tuple(w for w in strings(value) if w)


@dataclass(frozen=True)
class RepliesConfig:
    enabled: bool = option(False, boolean,
                           "Answer a recipient's STOP (any opt-out keyword), HELP and START with one message, sent "
                           "through a live transmitter bind of the account the reply came back to.")
    system_ids: tuple[str, ...] = option((), strings_or_empty, "The accounts (system_id) that answer; [] = every one.")
    senders: tuple[str, ...] = option((), strings_or_empty,
                                      "The sender addresses (the address the recipient replied to, a source_addr of "
                                      "yours) that answer; [] = every one.")
    optout_text: str = option("You are unsubscribed and will receive no more messages. 您已退订。", string,
                              "The answer to an opt-out reply; \"\" = none.")
    help_text: str = option("Reply STOP to unsubscribe. 回复T退订。", string, "The answer to HELP; \"\" = none.")
    start_text: str = option("You are subscribed again. Reply STOP to unsubscribe.", string,
                             "The answer to START / YES (an opt-in); \"\" = none.")
    help_keywords: tuple[str, ...] = option(("HELP", "INFO", "帮助"), _texts,
                                            "Replies that ask for help (matched as [inbound] matches keywords).")
    once_per: float = option(86400.0, duration,
                             "At most one answer of each kind per number in this time, whatever it sends.")


@dataclass(frozen=True)
class MetricsConfig:
    address: tuple[str, int] | None = option(("127.0.0.1", 9775), lambda v: None if v == "" else address(v),
                                             "Where /metrics (Prometheus), /healthz and /status are served, "
                                             "\"host:port\"; \"\" = off.")


class HttpToken(NamedTuple):
    """One client of the console and API: its name (the actor of its changes), its secret and its access."""
    name: str
    token: str
    access: str  # "read" or "write"


#: The fewest characters a token may have: a guessable one would open the lists to anyone on the network.
MIN_TOKEN_CHARS = 16


def http_tokens(value: Any) -> tuple[HttpToken, ...]:
    """[{ name = "crm", token = "…", access = "write" }, …]: names and tokens unique, access "read" or "write"."""
    if value == []:
        return ()
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        raise ValueError('expected a list of tables: [{ name = "crm", token = "...", access = "read" }]')
    out: list[HttpToken] = []
    for t in value:
        extra = set(t) - {"name", "token", "access"}
        if extra:
            raise ValueError(f"unknown key {sorted(extra)[0]!r} in a token (name, token, access)")
        name, token, access = t.get("name"), t.get("token"), t.get("access", "read")
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.@-]{1,64}", name):
            raise ValueError(f"token name {name!r}: 1 to 64 letters, digits or _ . @ -")
        if not isinstance(token, str) or len(token) < MIN_TOKEN_CHARS or not token.isprintable() or " " in token:
            raise ValueError(f"token of {name!r}: at least {MIN_TOKEN_CHARS} printable characters, no spaces "
                             "(for example: python3 -c 'import secrets; print(secrets.token_urlsafe())')")
        if access not in ("read", "write"):
            raise ValueError(f"access of {name!r}: \"read\" or \"write\", got {access!r}")
        if any(o.name == name for o in out):
            raise ValueError(f"two tokens are named {name!r}")
        if any(o.token == token for o in out):
            raise ValueError(f"tokens {name!r} and another are the same secret")
        out.append(HttpToken(name, token, access))
    return tuple(out)


@dataclass(frozen=True)
class HttpConfig:
    tokens: tuple[HttpToken, ...] = option((), http_tokens,
                                           "Who may use the console (/console/) and the API (/api/v1/) on [metrics] "
                                           "address: [{ name = \"crm\", token = \"...\", access = \"write\" }]; "
                                           "access \"read\" or \"write\"; the name is the actor of its changes. "
                                           "Sent as Authorization: Bearer TOKEN. Without a token only loopback "
                                           "clients may read; on a listener that is not loopback, no tokens = no "
                                           "console and no API.")
    rate_limit: float = option(20.0, number(0.1),
                               "Most requests a second per token (and per address without one); past it, 429.")
    max_body: int = option(65_536, size, "Largest request body accepted (\"64KB\"); a larger one is refused 413.")
    tls_cert: str = option("", string, "PEM certificate (chain) for HTTPS on [metrics] address; \"\" = plain HTTP.")
    tls_key: str = option("", string, "Its private key (PEM); \"\" = in tls_cert.")


class Broker(NamedTuple):
    """An [mqtt] url, taken apart."""

    host: str
    port: int
    tls: bool
    username: str | None
    password: str | None


def broker_of(text: str) -> Broker:
    """mqtt://[user:password@]host[:port] or mqtts://…; ValueError says what is wrong."""
    from urllib.parse import unquote, urlsplit

    try:
        u = urlsplit(text)
        port = u.port
    except ValueError as e:
        raise ValueError(f"{text!r} is not a broker URL: {e}") from None
    if u.scheme not in ("mqtt", "mqtts") or not u.hostname or u.path not in ("", "/") or u.query:
        raise ValueError(f"{text!r} is not a broker URL: expected mqtt://host:1883 or mqtts://host:8883 "
                         "(user:password@ allowed)")
    tls = u.scheme == "mqtts"
    return Broker(u.hostname, port or (8883 if tls else 1883), tls, unquote(u.username) if u.username else None,
                  unquote(u.password) if u.password else None)


def mqtt_url(value: Any) -> str:
    """An [mqtt] url (broker_of); "" = off."""
    text = string(value)
    if text:
        broker_of(text)
    return text


def node_name(value: Any) -> str:
    text = string(value)
    if not text or len(text) > 64 or any(c in text for c in "/+# \t\0"):
        raise ValueError(f"{text!r} is not a node name: 1 to 64 characters, none of / + # or spaces")
    return text


def _host_name() -> str:
    import socket

    return (socket.gethostname().split(".")[0] or "smppguard")[:64]


def event_kinds(value: Any) -> tuple[str, ...]:
    kinds = strings_or_empty(value)
    for k in kinds:
        if k not in EVENT_KINDS:
            raise ValueError(f"unknown event kind {k!r} (one of {', '.join(EVENT_KINDS)})")
    return kinds


EVENT_KINDS = ("refused", "held", "released", "learned", "review")


@dataclass(frozen=True)
class MqttConfig:
    url: str = option("", mqtt_url,
                      "The MQTT broker the sidecars share lists, sends and events through: \"mqtt://host:1883\", "
                      "\"mqtts://host:8883\" for TLS, user:password@ allowed; \"\" = off (one sidecar alone).")
    node: str = option("", lambda v: node_name(v) if v != "" else "",
                       "This sidecar's name, unique among the sidecars of one broker; \"\" = the host name.")
    prefix: str = option("smppguard", node_name, "The topic prefix: topics are <prefix>/changes/<node>, "
                         "<prefix>/sends/<node>, <prefix>/events/<kind>, …")
    ca: str = option("", string, "mqtts: the CA file that signed the broker's certificate (\"\" = the system's).")
    cert: str = option("", string, "mqtts: this node's client certificate (PEM), when the broker asks for one.")
    key: str = option("", string, "mqtts: the client certificate's private key (PEM).")
    peers: tuple[str, ...] = option((), strings_or_empty,
                                    "The node names whose changes this node accepts; [] = any node the broker "
                                    "lets publish. A row from another node is refused and logged.")
    events: tuple[str, ...] = option(EVENT_KINDS, event_kinds,
                                     "Which events go to <prefix>/events/<kind> for other systems: "
                                     "\"refused\", \"held\", \"released\", \"learned\", \"review\"; [] = none.")
    events_per_s: float = option(200.0, number(0.001),
                                 "Most events published a second; past it, and past 10,000 waiting, events are "
                                 "dropped (and counted), never slowing a message.")
    hello_interval: float = option(5.0, duration,
                                   "How often this node tells the others (retained) how far its changes go; a "
                                   "node that lacks rows asks for them then.")

    @property
    def node_or_host(self) -> str:
        return self.node or _host_name()

    @property
    def broker(self) -> Broker:
        return broker_of(self.url)


@dataclass(frozen=True)
class LogConfig:
    level: str = option("info", choice("debug", "info", "warning", "error"),
                        "Log level of smppguard's own lines (libraries stay at warning).")
    format: str = option("text", choice("text", "json"), "\"text\" lines, or \"json\": one object per line.")
    verdicts: str = option("info", choice("debug", "info", "warning", "off"),
                           "The level of the line logged for each refusal or hold (rule, account, recipient as "
                           "[audit] recipient keeps it, status), at most 20 a second; \"off\": none.")


@dataclass(frozen=True)
class Config:
    listen: ListenConfig = ListenConfig()
    upstream: UpstreamConfig = UpstreamConfig()
    session: SessionConfig = SessionConfig()
    store: StoreConfig = StoreConfig()
    text: TextConfig = TextConfig()
    simulator: SimulatorConfig = SimulatorConfig()
    audit: AuditConfig = AuditConfig()
    inbound: InboundConfig = InboundConfig()
    hold: HoldConfig = HoldConfig()
    review: ReviewConfig = ReviewConfig()
    replies: RepliesConfig = RepliesConfig()
    metrics: MetricsConfig = MetricsConfig()
    http: HttpConfig = HttpConfig()
    mqtt: MqttConfig = MqttConfig()
    log: LogConfig = LogConfig()
    #: The parsed [policy], [rules.*] and [[classes]] tables (smppguard.policy.Policy).
    policy: Any = field(default_factory=lambda: _load_policy({}, {}, []), compare=False)
    source: str = field(default="<defaults>", compare=False)


#: Tables whose keys the rules define (parsed by smppguard.policy, not by an option table here).
POLICY_TABLES = ("policy", "rules", "classes")


def _load_policy(policy: dict, rules: dict, classes: list):
    return load_policy(policy, rules, classes)


#: The option tables by name. Each table's default is an instance of its class.
TABLES: dict[str, type] = {f.name: type(f.default) for f in dataclasses.fields(Config)
                           if f.name not in ("source", "policy")}


def _line_of(text: str, table: str | None, key: str) -> int | None:
    """Best-effort line of `key` in `table` (tomllib reports lines only for syntax errors)."""
    current = None
    header = re.compile(r"^\s*\[\s*([A-Za-z0-9_.-]+)\s*\]")
    assign = re.compile(r"^\s*\"?" + re.escape(key) + r"\"?\s*=")
    for number_, line in enumerate(text.splitlines(), 1):
        m = header.match(line)
        if m:
            current = m.group(1)
            if table is None and current == key:
                return number_
            continue
        if current == table and assign.match(line):
            return number_
    return None


def _suggest(name: str, options) -> str:
    close = difflib.get_close_matches(name, list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def parse_config(text: str, source: str = "<string>", *, all_errors: bool = False) -> Config:
    """The Config of a TOML text. ConfigError names the first bad key and its line; with `all_errors`, every one
    is looked for (ConfigErrors)."""
    found: list[ConfigError] = []

    def bad(e: ConfigError) -> None:
        if not all_errors:
            raise e
        found.append(e)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"line (\d+)", str(e))
        raise ConfigError(str(e), line=int(m.group(1)) if m else None, source=source) from None
    tables: dict[str, Any] = {}
    policy_raw = {name: raw.pop(name) for name in POLICY_TABLES if name in raw}
    for name, values in raw.items():
        if name not in TABLES:
            bad(ConfigError("unknown table" + _suggest(name, [*TABLES, *POLICY_TABLES]), key=name,
                            line=_line_of(text, None, name), source=source))
            continue
        if not isinstance(values, dict):
            bad(ConfigError("expected a table", key=name, line=_line_of(text, None, name), source=source))
            continue
        cls = TABLES[name]
        known = {f.name: f for f in dataclasses.fields(cls)}
        kwargs = {}
        for key, value in values.items():
            if key not in known:
                bad(ConfigError("unknown key" + _suggest(key, known), key=f"{name}.{key}",
                                line=_line_of(text, name, key), source=source))
                continue
            try:
                kwargs[key] = known[key].metadata["parse"](value)
            except ValueError as e:
                bad(ConfigError(str(e), key=f"{name}.{key}", line=_line_of(text, name, key), source=source))
        tables[name] = cls(**kwargs)
    policy = None
    try:
        policy = _load_policy(policy_raw.get("policy", {}), policy_raw.get("rules", {}),
                              policy_raw.get("classes", []))
    except ConfigError as e:
        bad(ConfigError(e.message, key=e.key, line=_line_of_dotted(text, e.key or ""), source=source))
    if found:
        found.sort(key=lambda e: e.line or 0)
        raise ConfigErrors(found)
    return Config(**tables, policy=policy, source=source)


def _line_of_dotted(text: str, key: str) -> int | None:
    """The line of "rules.frequency.max" (key max in [rules.frequency]), or of a table."""
    parts = key.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        line = _line_of(text, ".".join(parts[:cut]), parts[cut])
        if line is not None:
            return line
    for cut in range(len(parts), 0, -1):
        line = _line_of(text, None, ".".join(parts[:cut]))
        if line is not None:
            return line
    return None


def load_config(path: str | os.PathLike | None = None, *, all_errors: bool = False) -> Config:
    """Load `path`; without one, $SMPPGUARD_CONFIG, then /etc/smppguard/smppguard.toml, then the defaults."""
    if path is None:
        env = os.environ.get(ENV_CONFIG)
        if env:
            path = env
        else:
            for candidate in DEFAULT_PATHS:
                if candidate.exists():
                    path = candidate
                    break
            else:
                return Config()
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("config file not found", source=str(p)) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read config file: {e}", source=str(p)) from None
    return relative_to(parse_config(text, source=str(p), all_errors=all_errors), p.parent)


#: (table, key) of the options that name files: a relative one is relative to the config file's folder.
FILE_OPTIONS = (("store", "path"), ("listen", "tls_cert"), ("listen", "tls_key"), ("listen", "tls_client_ca"),
                ("upstream", "tls_ca"), ("upstream", "tls_cert"), ("upstream", "tls_key"), ("mqtt", "ca"),
                ("mqtt", "cert"), ("mqtt", "key"), ("http", "tls_cert"), ("http", "tls_key"))


def relative_to(cfg: Config, folder: Path) -> Config:
    """The config with each relative file path made relative to `folder` (the config file's), so the daemon and
    every command given the same config use the same files, whatever their working directory."""
    for table, key in FILE_OPTIONS:
        section = getattr(cfg, table)
        value = getattr(section, key)
        if value and not Path(value).is_absolute():
            cfg = dataclasses.replace(cfg, **{table: dataclasses.replace(section, **{key: str(folder.absolute()
                                                                                           / value)})})
    return cfg


def options() -> list[tuple[str, str, Any, str]]:
    """Every option as (table, key, default, help), for docs and the shipped-config test."""
    out = []
    for table, cls in TABLES.items():
        for f in dataclasses.fields(cls):
            out.append((table, f.name, f.default, f.metadata["help"]))
    return out
