"""The deliver path's learning, written down: the observer of `delivered` that hands each deliver_sm to the
inbound Learner and writes what it learned through the store's writer.

Rule 1: a learned fact is a list change like any other (changelog.write: the list table and the change log in
one transaction), made on the writer's thread in the next group commit, so it reaches the Index through the
upkeep's tail within a second, and the MQTT sync later. The change keeps its evidence (the reply's text, the
address it was sent to, the account it came on; or the receipt's id, stat and err), and an audit row says what
was learned (actor "deliver_sm", the recipient kept as [audit] recipient says).
Rule 2: what is already known is not written again: a second STOP from the same person to the same sender, a
receipt for a number already dead or blacklisted, makes no change-log row (an MO flood cannot grow the log).
Rule 3: an opt-in (START) lifts only opt-outs that came from a reply, for the sender it was sent to (or the
account, or a global one made from a reply): never a blacklist entry, an imported or a typed opt-out, nor a
global one made from several senders' opt-outs. A consent confirmation (YES) confirms a pending consent of that
number (global or for that account) granted less than `confirm_within` ago.
Rule 4: a suspended number is dead after `suspended_failures` such receipts within `suspended_within`.
Rule 5: a reply or receipt that would have taught something but came from no readable number (inbound, Rule 3)
is logged as a warning, audited (rule "inbound", action "unread", the address kept as [audit] recipient says)
and counted by what it would have been (`unread`, the metric smppguard_inbound_unread).
Rule 6: learning never stops traffic: the deliver_sm has been relayed before the observer sees it, and a fact
that cannot be written is logged (the SMSC's next receipt or the person's next reply teaches it again).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import sqlite3
import time
from dataclasses import dataclass
from typing import Callable

from .. import tasks
from ..hooks import Delivered
from ..inbound import CONFIRM, DELIVERED_FACT, HELP, OPTIN, OPTOUT, UNREAD, Fact, Learner
from ..inbound.receipts import BLACKLISTED, DEAD, SUSPENDED
from . import changelog
from .changelog import Change
from .credit import DELIVERED_WINDOW_S
from .db import node_id
from .writer import StoreWriter

log = logging.getLogger("smppguard.inbound")

REPLY = "reply"  # the opt-out's source: the recipient's own reply
ACTOR = "deliver_sm"


@dataclass(frozen=True)
class LearningTerms:
    """What the rules and [inbound] say about writing what was learned."""

    optout_scope: str = "sender"
    correlation_threshold: int = 3
    dead_for_s: float = 90 * 86400.0
    confirm_within_s: float = 72 * 3600.0
    suspended_failures: int = 3
    suspended_within_s: float = 30 * 86400.0


def _optout_key(fact: Fact, scope: str) -> tuple[str, str]:
    if scope == "sender" and fact.sender:
        return "sender", fact.sender
    if scope in ("sender", "account"):  # a reply to no address at all: the account it came on
        return "account", fact.account
    return "global", ""


_AUDIT = ("INSERT INTO audit (at, account, sender, recipient, rule, action, status, reason, actor) "
          "VALUES (?, ?, ?, ?, ?, 'learned', 0, ?, ?)")
_AUDIT_AS = _AUDIT.replace("'learned'", "?")  # with the action as a parameter
UNREAD_RULE = "inbound"  # the audit's rule of a reply or receipt that taught nothing for want of a number


def _audit(db: sqlite3.Connection, now: float, fact: Fact, recipient: str, rule: str, reason: str,
           action: str = "learned") -> None:
    db.execute(_AUDIT_AS, (now, fact.account, fact.sender, recipient, rule, action, reason, ACTOR))


def _said(fact: Fact) -> str:
    if "receipt" in fact.evidence:
        return f"receipt {fact.evidence['receipt']} said {fact.keyword}"
    return f"reply {fact.keyword.upper()!r} to {fact.evidence.get('to', '')}"


def _unread(fact: Fact) -> str:
    return f"not learned ({fact.evidence['lost']}): {fact.evidence['reason']}: {_said(fact)}"


def apply_facts(db: sqlite3.Connection, facts: list[tuple[Fact, float, str]], terms: LearningTerms) -> list:
    """Apply (fact, when, recipient as kept) in order, inside the caller's transaction; returns, for each, what
    was done, None, or the exception that fact raised (its writes undone, the others kept).

    A run of opt-outs of distinct numbers (a flood of STOPs) is written as one change-log write: they cannot
    affect each other, and one write is one correlation query and one statement per table for all of them.
    Everything else, and a run that fails, is applied fact by fact, in order."""
    origin = node_id(db)
    out: list = []
    i = 0
    while i < len(facts):
        run = _optout_run(facts, i)
        if len(run) > 1:
            db.execute("SAVEPOINT facts")
            try:
                out += _apply_optouts(db, run, terms, origin)
                db.execute("RELEASE facts")
                i += len(run)
                continue
            except Exception:  # fact by fact below, so only the bad one is lost
                db.execute("ROLLBACK TO facts")
                db.execute("RELEASE facts")
        fact, now, recipient = facts[i]
        db.execute("SAVEPOINT fact")
        try:
            out.append(apply_fact(db, fact, now, terms, recipient, origin))
        except Exception as e:  # one bad fact must not lose the others
            db.execute("ROLLBACK TO fact")
            out.append(e)
        db.execute("RELEASE fact")
        i += 1
    return out


def _optout_run(facts: list[tuple[Fact, float, str]], start: int) -> list[tuple[Fact, float, str]]:
    seen: set[int] = set()
    run = []
    for item in facts[start:]:
        fact = item[0]
        if fact.kind != OPTOUT or fact.number in seen:
            break
        seen.add(fact.number)
        run.append(item)
    return run


def _apply_optouts(db: sqlite3.Connection, run: list[tuple[Fact, float, str]], terms: LearningTerms,
                   origin: str) -> list[str | None]:
    out: list[str | None] = []
    changes, audits = [], []
    for fact, now, recipient in run:
        scope, key = _optout_key(fact, terms.optout_scope)
        if db.execute("SELECT 1 FROM optout WHERE number = ? AND scope = ? AND scope_key = ?",
                      (fact.number, scope, key)).fetchone():
            out.append(None)
            continue
        changes.append(Change("optout", "add", fact.number, scope, key,
                              {"source": REPLY, "keyword": fact.keyword, **fact.evidence}, at=now))
        done = f"opted out ({scope}{' ' + key if key else ''})"
        audits.append((now, fact.account, fact.sender, recipient, "optout", f"{done}: {_said(fact)}", ACTOR))
        out.append(done)
    if changes:
        changelog.write(db, changes, origin=origin, actor=ACTOR, correlation_threshold=terms.correlation_threshold,
                        in_transaction=True)  # each change carries its reply's time
        db.executemany(_AUDIT, audits)
    return out


def apply_fact(db: sqlite3.Connection, fact: Fact, now: float, terms: LearningTerms, recipient: str,
               origin: str | None = None) -> str | None:
    """Write what `fact` teaches, inside the caller's transaction; returns what was done (for the log), or None
    when it was known already or teaches nothing here."""
    n = fact.number
    origin = origin or node_id(db)

    def write(changes: list[Change]) -> None:
        changelog.write(db, changes, origin=origin, actor=ACTOR, now=now, in_transaction=True)

    if fact.kind == OPTOUT:  # a run of one
        return _apply_optouts(db, [(fact, now, recipient)], terms, origin)[0]
    if fact.kind == OPTIN:
        rows = db.execute(
            "SELECT scope, scope_key FROM optout WHERE number = ? AND source = ? AND ("
            "(scope = 'sender' AND scope_key = ?) OR (scope = 'account' AND scope_key = ?) OR scope = 'global')",
            (n, REPLY, fact.sender, fact.account)).fetchall()
        if not rows:
            return None
        write([Change("optout", "remove", n, scope, key) for scope, key in rows])
        done = "opted in again (" + ", ".join(f"{s}{' ' + k if k else ''}" for s, k in rows) + ")"
        _audit(db, now, fact, recipient, "optout", f"{done}: {_said(fact)}")
        return done
    if fact.kind == CONFIRM:
        rows = db.execute(
            "SELECT scope_key, source, wording, granted_at FROM consent WHERE number = ? AND status = 'pending' "
            "AND scope_key IN ('', ?) AND granted_at >= ?", (n, fact.account, now - terms.confirm_within_s)).fetchall()
        if not rows:
            return None
        write([Change("consent", "add", n, "account" if key else "", key,
                      {"status": "confirmed", "source": source, "wording": wording, "granted_at": granted,
                       "confirmed_by": fact.keyword, **fact.evidence})
               for key, source, wording, granted in rows])
        done = "consent confirmed"
        _audit(db, now, fact, recipient, "consent", f"{done}: {_said(fact)}")
        return done
    if fact.kind == UNREAD:
        _audit(db, now, fact, recipient, UNREAD_RULE, _unread(fact), action="unread")
        return None
    if fact.kind == SUSPENDED:
        db.execute("DELETE FROM receipt_failure WHERE number = ? AND at < ?", (n, now - terms.suspended_within_s))
        db.execute("INSERT INTO receipt_failure (number, at, code, account) VALUES (?, ?, ?, ?)",
                   (n, now, fact.keyword, fact.account))
        (failures,) = db.execute("SELECT COUNT(*) FROM receipt_failure WHERE number = ?", (n,)).fetchone()
        if failures < terms.suspended_failures:
            return None
        reason = f"suspended: {failures} receipts within {terms.suspended_within_s / 86400:g} days ({fact.keyword})"
        return _dead(db, fact, now, terms, recipient, reason, write)
    if fact.kind == DELIVERED_FACT:  # counted for the credit score; not a change, not audited
        db.execute("INSERT INTO delivery_ok (number, count, since) VALUES (?, 1, ?) ON CONFLICT (number) DO UPDATE "
                   "SET count = CASE WHEN since > ? THEN count + 1 ELSE 1 END, "
                   "since = CASE WHEN since > ? THEN since ELSE excluded.since END",
                   (n, now, now - DELIVERED_WINDOW_S, now - DELIVERED_WINDOW_S))
        return None
    if fact.kind == DEAD:
        return _dead(db, fact, now, terms, recipient, f"empty or nonexistent ({fact.keyword})", write)
    if fact.kind == BLACKLISTED:
        if db.execute("SELECT 1 FROM blacklist WHERE number = ?", (n,)).fetchone():
            return None
        write([Change("blacklist", "add", n, data={"source": "carrier", "reason": _said(fact), **fact.evidence})])
        done = "blacklisted (carrier)"
        _audit(db, now, fact, recipient, "blacklist", f"{done}: {_said(fact)}")
        return done
    raise ValueError(f"unknown fact {fact.kind!r}")


def _dead(db: sqlite3.Connection, fact: Fact, now: float, terms: LearningTerms, recipient: str, reason: str,
          write: Callable) -> str | None:
    if db.execute("SELECT 1 FROM dead WHERE number = ? AND expires_at > ?", (fact.number, now)).fetchone():
        return None
    write([Change("dead", "add", fact.number, data={"reason": reason, "expires_at": now + terms.dead_for_s,
                                                    **fact.evidence})])
    db.execute("DELETE FROM receipt_failure WHERE number = ?", (fact.number,))
    done = "marked dead"
    _audit(db, now, fact, recipient, "dead", f"{done}, {reason}: {_said(fact)}")
    return done


#: Facts are gathered this long and written as one job of the writer (Rule 1): a flood of replies costs one
#: savepoint and one look-up of the store's identity per batch, not per reply.
GATHER_S = 0.01


class Learning:
    """Observes `delivered` (hooks): every deliver_sm and data_sm the SMSC sends, relayed or not."""

    def __init__(self, learner: Learner, writer: StoreWriter, terms: LearningTerms,
                 recipient: Callable[[int | None, str], str], clock: Callable[[], float] = time.time,
                 touched: Callable[[list[int]], None] | None = None):
        self.learner = learner
        self.touched = touched  # numbers whose credit score a fact with no change-log row may have moved
        self.writer = writer
        self.terms = terms
        self.recipient = recipient  # (number, address as sent) -> as the audit log and the log keep it
        self.clock = clock
        self.learned = 0  # facts written (not those known already)
        self.learned_by_kind: collections.Counter[str] = collections.Counter()
        self.unread: collections.Counter[str] = collections.Counter()  # what was lost for want of a number (Rule 5)
        self._gathered: list[tuple[Fact, float, str]] = []
        self._task: asyncio.Task | None = None
        self._pending: set[asyncio.Future] = set()
        #: called with the facts of each reply or receipt as they are learned (the review, keyword replies)
        self.listeners: list[Callable[[list[Fact]], None]] = []

    def delivered(self, e: Delivered) -> None:
        facts = self.learner.observe(e.account, e.pdu, e.at)
        if facts:
            self._save(facts, e.at)

    def _save(self, facts: list[Fact], now: float) -> None:
        for listener in self.listeners:
            try:
                listener(facts)
            except Exception:
                log.exception("a listener of learned facts failed; the facts are saved all the same")
        facts = [f for f in facts if f.kind != HELP]  # a request for help teaches the store nothing
        if not facts:
            return
        if not self._gathered:
            asyncio.get_running_loop().call_later(GATHER_S, self._write)
        for fact in facts:
            if fact.kind == UNREAD:
                self.unread[fact.evidence["lost"]] += 1
                self._gathered.append((fact, now, self.recipient(None, fact.evidence["address"])))
                log.warning("%s: %s %s", fact.account, self._gathered[-1][2], _unread(fact))
            else:
                self._gathered.append((fact, now, self.recipient(fact.number, "")))

    def _write(self) -> None:
        if not self._gathered:  # written already (flush, close)
            return
        batch, self._gathered = self._gathered, []
        future = self.writer.submit(lambda db: apply_facts(db, batch, self.terms))
        self._pending.add(future)
        future.add_done_callback(lambda f: self._saved(f, batch))

    def _saved(self, future: asyncio.Future, batch: list[tuple[Fact, float, str]]) -> None:
        self._pending.discard(future)
        if future.cancelled():
            return
        e = future.exception()
        results = [e] * len(batch) if e is not None else future.result()
        if self.touched is not None:
            unlogged = [fact.number for fact, _now, _r in batch if fact.kind in (SUSPENDED, DELIVERED_FACT)]
            if unlogged:
                self.touched(unlogged)
        for (fact, _now, recipient), done in zip(batch, results, strict=True):
            if isinstance(done, BaseException):
                log.error("%s: could not save what a deliver_sm taught (%s %s): %s", fact.account, fact.kind,
                          recipient, done)
            elif done:
                self.learned += 1
                self.learned_by_kind[fact.kind] += 1
                log.info("%s: %s %s: %s", fact.account, recipient, done, _said(fact))

    async def flush(self) -> None:
        """Write what is gathered now, and wait until everything handed to the writer is durable."""
        if self._gathered:
            self._write()
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)

    # --- concatenated replies whose last parts never came ---------------------------------------------------

    def start(self) -> None:
        self._task = tasks.spawn(self._expire_loop(), name="inbound reassembly")

    async def close(self) -> None:
        """Stop judging incomplete replies; what was gathered goes to the writer, which saves it as it closes."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._gathered:
            self._write()

    async def _expire_loop(self) -> None:
        period = max(0.05, min(1.0, self.learner.reassembly.timeout_s / 4))
        while True:
            await asyncio.sleep(period)
            now = self.clock()
            facts = self.learner.expire(now)
            if facts:
                self._save(facts, now)
