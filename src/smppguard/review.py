"""The sending-pattern review: each account's figures over a rolling window, against the thresholds of [review].

Carriers and regulators screen the pattern of a sender's traffic, not only each message: a burst to numbers never
sent to before (a bought list), many refusals, many opt-out replies, a rate far above the account's usual one,
recipients of low credit. An observer of the hooks (`decided`) and of what the replies teach (`facts`) counts, per
account and per minute, what was sent (allowed or scheduled), how many of those recipients had no send on record,
how many had a credit score below the floor, what was refused and by which rule, and the opt-out replies. Once a
second each account that has moved is judged over the last `window`.

Rule 1: an account is judged only once it has sent `min_sent` messages in the window: a handful of messages is no
pattern. Rule 2: a tripped account is marked once (store/review.py, a change-log row, so every sidecar sees it)
with the figures that tripped it; with `action = "hold"` its marketing is then held (policy/review.py) until an
operator releases it, and its figures start again from nothing. Rule 3: nothing here stalls or changes traffic
(hooks, Rule 1): what it writes goes through the store's writer.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from . import tasks
from .hooks import Decided
from .policy.model import Action, Index

log = logging.getLogger("smppguard.review")

MINUTE = 60.0
USUAL_SPAN = 24 * 3600.0  # the account's usual rate is its rate over this span, before the window
USUAL_AFTER = 6 * 3600.0  # ... once it has at least this much history
MAX_ACCOUNTS = 10_000  # accounts followed at once (system_ids are the SMSC's to grant, so few in practice)


@dataclass
class Minute:
    sent: int = 0
    new: int = 0  # of those sent, to a recipient with no send on record
    low_credit: int = 0  # of those sent, to a recipient below the credit floor
    refused: collections.Counter = field(default_factory=collections.Counter)  # by rule
    optouts: int = 0
    complaints: int = 0  # recipients of this account's that complained (a blacklist entry with source complaint)


@dataclass
class Tally:
    """One account's minutes, by minute number (epoch seconds // 60)."""

    minutes: dict[int, Minute] = field(default_factory=dict)
    first: float = 0.0  # when this account was first seen (or released)

    def at(self, now: float) -> Minute:
        m = int(now // MINUTE)
        minute = self.minutes.get(m)
        if minute is None:
            minute = self.minutes[m] = Minute()
            for old in [k for k in self.minutes if k < m - USUAL_SPAN // MINUTE - 1]:
                del self.minutes[old]
        return minute


def figures(tally: Tally, now: float, window: float) -> dict[str, Any]:
    """The account's figures over the last `window` seconds, and its usual rate before that."""
    start = int((now - window) // MINUTE)
    recent = [m for k, m in tally.minutes.items() if k > start]
    sent = sum(m.sent for m in recent)
    refused: collections.Counter = collections.Counter()
    for m in recent:
        refused.update(m.refused)
    judged = sent + sum(refused.values())
    out: dict[str, Any] = {
        "window_s": window, "sent": sent, "refused": sum(refused.values()),
        "refused_by_rule": dict(sorted(refused.items())),
        "new_share": round(sum(m.new for m in recent) / sent, 4) if sent else 0.0,
        "refused_share": round(sum(refused.values()) / judged, 4) if judged else 0.0,
        "optouts_per_1000": round(1000 * sum(m.optouts for m in recent) / sent, 2) if sent else 0.0,
        "complaints": sum(m.complaints for m in recent),
        "complaints_per_1000": round(1000 * sum(m.complaints for m in recent) / sent, 2) if sent else 0.0,
        "low_credit_share": round(sum(m.low_credit for m in recent) / sent, 4) if sent else 0.0,
    }
    history = now - window - tally.first
    if history >= USUAL_AFTER:
        older = sum(m.sent for k, m in tally.minutes.items() if k <= start)
        span = min(history, USUAL_SPAN)
        usual = older * window / span  # sends per window, as usual
        out["usual_per_window"] = round(usual, 1)
        out["rate_vs_usual"] = round(sent / max(usual, 1.0), 2)
    return out


def over(f: dict[str, Any], cfg: Any) -> list[str]:
    """The thresholds of [review] (`cfg`) that the figures pass, as a person reads them."""
    if f["sent"] < cfg.min_sent:
        return []
    out = []
    if cfg.new_share and f["new_share"] >= cfg.new_share:
        out.append(f"new recipients {f['new_share']:.0%} of {f['sent']} sent (threshold {cfg.new_share:.0%})")
    if cfg.refused_share and f["refused_share"] >= cfg.refused_share:
        out.append(f"refused {f['refused_share']:.0%} (threshold {cfg.refused_share:.0%}): "
                   + ", ".join(f"{rule} {n}" for rule, n in f["refused_by_rule"].items()))
    if cfg.optouts_per_1000 and f["optouts_per_1000"] >= cfg.optouts_per_1000:
        out.append(f"opt-out replies {f['optouts_per_1000']} per 1000 sent (threshold {cfg.optouts_per_1000})")
    if cfg.complaints_per_1000 and f["complaints_per_1000"] >= cfg.complaints_per_1000:
        out.append(f"complaints {f['complaints']} ({f['complaints_per_1000']} per 1000 sent; threshold "
                   f"{cfg.complaints_per_1000})")
    if cfg.low_credit_share and f["low_credit_share"] >= cfg.low_credit_share:
        out.append(f"recipients below the credit floor {f['low_credit_share']:.0%} (threshold "
                   f"{cfg.low_credit_share:.0%})")
    if cfg.rate_factor and f.get("rate_vs_usual", 0) >= cfg.rate_factor:
        out.append(f"rate {f['rate_vs_usual']}x its usual (threshold {cfg.rate_factor}x)")
    return out


class Review:
    """Observes `decided` (every verdict, allows too) and the facts learned from replies; judges once a second."""

    def __init__(self, cfg: Any, index: Callable[[], Index], policy: Callable[[], Any], mark: Callable[..., Any],
                 clock: Callable[[], float] = time.time,
                 announce: Callable[[str, dict], None] | None = None):
        self.cfg = cfg
        self.index = index  # the Index in force (the history says whether a recipient is new)
        self.policy = policy
        self.mark = mark  # (account, state, reason, figures, at) -> an awaitable: the store's change
        self.clock = clock
        self.announce = announce  # (account, event fields) -> MQTT events/review, when sync runs
        self.classes = frozenset(cfg.classes)
        self.tallies: dict[str, Tally] = {}
        self.tripped: collections.Counter[str] = collections.Counter()  # by account, for /metrics
        self.last: dict[str, dict] = {}  # each account's last figures, for /metrics and status
        self._moved: set[str] = set()
        self._task: asyncio.Task | None = None

    def _tally(self, account: str, now: float) -> Tally | None:
        tally = self.tallies.get(account)
        if tally is None:
            if len(self.tallies) >= MAX_ACCOUNTS:
                return None
            tally = self.tallies[account] = Tally(first=now)
        self._moved.add(account)
        return tally

    def decided(self, e: Decided) -> None:
        sub = e.sub
        if e.repeat or sub is None or sub.traffic_class not in self.classes:
            return
        tally = self._tally(e.account, e.at)
        if tally is None:
            return
        minute = tally.at(e.at)
        action = e.verdict.action
        if action is Action.ALLOW or action is Action.SCHEDULE:
            minute.sent += 1
            number = sub.recipient
            if number is not None:
                index = self.index()
                key = self.policy().history_key(number, sub.account, index)
                if key is not None:
                    times = index.history.get(key)
                    if not times or len(times) <= 1:  # only the send being made
                        minute.new += 1
                if number in index.low_credit:
                    minute.low_credit += 1
        elif action is Action.REJECT:
            minute.refused[e.verdict.rule] += 1

    def facts(self, facts: list) -> None:
        """What replies taught (inbound Facts): an opt-out counts against the account it came back to."""
        now = self.clock()
        for fact in facts:
            if fact.kind == "optout" and fact.account:
                tally = self._tally(fact.account, now)
                if tally is not None:
                    tally.at(now).optouts += 1

    def complaints(self, accounts: dict[str, int]) -> None:
        """Complaints (store/upkeep.py: blacklist entries with source complaint) against the accounts that had
        sent to the numbers within the window."""
        now = self.clock()
        for account, n in accounts.items():
            tally = self._tally(account, now)
            if tally is not None:
                tally.at(now).complaints += n

    # --- judging -------------------------------------------------------------------------------------------

    def start(self) -> None:
        self._task = tasks.spawn(self._loop(), name="sending-pattern review")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            try:
                await self.judge(self.clock())
            except Exception:
                log.exception("sending-pattern review failed; trying again in a second")

    async def judge(self, now: float) -> list[str]:
        """Judge the accounts that moved since the last call; returns those that tripped now."""
        moved, self._moved = self._moved, set()
        reviews = self.index().reviews
        out = []
        for account in moved:
            tally = self.tallies.get(account)
            if tally is None:
                continue
            state = reviews.get(account)
            if state is not None and state[1] == "released" and tally.first < state[0]:
                tally.minutes.clear()  # released: its figures start again (Rule 2)
                tally.first = now
                continue
            f = self.last[account] = figures(tally, now, self.cfg.window)
            if state is not None and state[1] in ("held", "alert"):
                continue  # tripped already, until released
            why = over(f, self.cfg)
            if not why:
                continue
            what = "held" if self.cfg.action == "hold" else "alert"
            reason = "; ".join(why)
            self.tripped[account] += 1
            log.warning("account %s tripped the sending-pattern review (%s): %s", account,
                        "its marketing is held until `smppguard account release`" if what == "held"
                        else "reported only, [review] action = \"alert\"", reason)
            self.index().set_review(account, now, what)  # at once, before the store's row comes back
            if self.announce is not None:
                self.announce(account, {"at": now, "account": account, "state": what, "reason": reason,
                                        "figures": f})
            await self.mark(account, what, reason, f, now)
            out.append(account)
        return out
