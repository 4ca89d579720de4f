"""The policy's types: what is decided (`Submission`), on what (`Index`), the answer (`Verdict`), and what a rule
is (`Rule`). Pure.

Rule: the Index is the only state a rule reads, and it lives in memory, so `decide()` never waits on a
database. The store loads it at start-up and the change log keeps it current; the bridge alone records sends
and reservations into it. Numbers are E.164 integers (numbers.py); scoped keys pack a number and a small scope
id into one int (`scoped(number, scope_id)`), which keeps millions of entries to one int each. The scope id
goes above the number's digits, so a key's low bits are the number's and hash well: with the id in the low
bits, the keys of a million opt-outs crowded a few hash slots and every lookup took 2.5 times as long.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any, Callable, Mapping, NamedTuple

from .sieve import Sieve

if TYPE_CHECKING:  # numpy, which compact.py needs, costs a CLI command that never loads the Index 0.2 s
    from .compact import CompactHistory, CompactSet

SCOPE_STRIDE = 1 << 50  # above every E.164 number (15 digits at most)
MAX_SCOPES = 1 << 20
PRUNE_BUDGET = 5_000  # history keys looked at per prune call (10 ms on a busy 2-core machine: it stalls the loop)
GLOBAL = 0  # scope id of the global scope
MAX_SIGNED_CACHE = 10_000  # (account, source_addr) pairs whose signatures Index.signed keeps worked out
#: The source of list entries read from a file (`smppguard optout import`, `blacklist import`).
IMPORTED = "import"


def scoped(number: int, scope_id: int) -> int:
    """The key of a number in a scope (see the module's docstring): the number itself in the global scope."""
    return number + scope_id * SCOPE_STRIDE


class ScopedKeys:
    """A history key function (number, key) -> scoped(number, the scope id of `key` in `scope`), which also says
    the scope id alone: a store that reads sends by the million makes the keys of a whole column of numbers with
    one id an account (`scope_id`), not one call a row."""

    __slots__ = ("index", "scope")

    def __init__(self, index: Index, scope: str):
        self.index, self.scope = index, scope

    def __call__(self, number: int, key: str) -> int:
        return number + self.index.scope_id(self.scope, key) * SCOPE_STRIDE

    def scope_id(self, key: str) -> int:
        return self.index.scope_id(self.scope, key)


class Action(Enum):
    ALLOW = "allow"
    REJECT = "reject"
    HOLD = "hold"  # keep it and send when the quiet window ends
    SCHEDULE = "schedule"  # forward now with schedule_delivery_time = `until`


@dataclass(frozen=True, slots=True)
class Verdict:
    """What to do with one message for one recipient, which rule said so and why."""

    action: Action
    rule: str = ""
    status: int = 0
    reason: str = ""
    until: float | None = None  # HOLD / SCHEDULE: when the message may go (UTC epoch seconds)
    mark: int | None = None  # a one-time allowance this verdict uses up (Index.grace_used) once sent

    @property
    def allowed(self) -> bool:
        return self.action is Action.ALLOW


ALLOW = Verdict(Action.ALLOW)


@dataclass(slots=True)
class Submission:
    """One message to one recipient, as policy sees it; never changed once built (dataclasses.replace makes
    another). A class with slots, not a NamedTuple: the rules read its fields some 25 times a message, and
    Python 3.11 reads a slot at a small part of what a NamedTuple's field descriptor costs (make_submission
    builds one without the keyword handling of Submission(...))."""

    recipient: int | None  # E.164 as int; None = not a valid number
    address: str  # destination_addr as sent
    sender: str  # source_addr
    account: str  # system_id
    traffic_class: str = "marketing"
    service_type: str = ""
    text: str | None = None  # decoded text (None for binary content)
    concat: tuple[int, int, int] | None = None  # (reference, total, seqnum)
    zones: tuple[str, ...] | None = None  # the recipient's candidate zones from phonenumbers; None: look them up
    partial: bool = False  # `text` is the parts seen so far of a concatenated message, not all of it
    ton: int = 0  # dest_addr_ton as sent (1 international: the digits carry their country code)


@dataclass
class Index:
    """In-memory list state and send history. Mutated only through its methods."""

    # The large tables are a set / dict, or (as the store loads them) a CompactSet / CompactHistory: the same
    # contents in a tenth of the memory (compact.py)
    blacklist: set[int] | CompactSet = field(default_factory=set)
    optouts: set[int] | CompactSet = field(default_factory=set)  # scoped(number, scope id)
    optout_at: dict[int, float] = field(default_factory=dict)  # recent opt-outs (same keys), for the grace rule
    dead: dict[int, float] = field(default_factory=dict)  # number -> expires at
    low_credit: dict[int, int] = field(default_factory=dict)  # number -> credit score, only those below the floor
    consent: dict[int, str] = field(default_factory=dict)  # scoped(number, scope id) -> pending|confirmed
    tz: dict[int, str] = field(default_factory=dict)  # per-number time zone overrides
    # account -> {(source_addr or "", signature as signature.normal gives it): (time of its last change, present)}
    signatures: dict[str, dict[tuple[str, str], tuple[float, bool]]] = field(default_factory=dict)
    # account -> (time, state) of its sending-pattern review: "alert", "held" (its marketing held) or "released"
    reviews: dict[str, tuple[float, str]] = field(default_factory=dict)
    # frequency key -> sends, sorted: those the SMSC accepted, and those in flight (reserved) until it answers
    history: dict[int, tuple[float, ...]] | CompactHistory = field(default_factory=dict)
    # frequency key -> release times of held messages (the hold queue's): each counts as a send at its release
    held: dict[int, tuple[float, ...]] = field(default_factory=dict)
    grace_used: set[int] = field(default_factory=set)  # opt-out keys whose one confirmation was sent
    scope_ids: dict[str, int] = field(default_factory=lambda: {"": GLOBAL})
    change_id: int = 0  # the last change-log row applied
    history_mark: int = 0  # the last send row of the store that `history`'s base holds (store/snapshot.py)
    # numbers in no list, told by one bit (the store attaches one to its CompactSets): every bit set, unattached
    listed: Sieve = field(default_factory=Sieve.everything, repr=False, compare=False)
    _prune_pending: list[int] = field(default_factory=list, repr=False, compare=False)  # see prune_history
    _signed: dict[tuple[str, str], frozenset[str]] = field(default_factory=dict, repr=False, compare=False)

    # --- scopes --------------------------------------------------------------------------------------------

    def scope_id(self, scope: str, key: str) -> int:
        """Small int for a scope ("sender", "account", "global") and its key (source_addr, system_id)."""
        if scope == "global":
            return GLOBAL
        name = f"{scope[0]}:{key}"
        sid = self.scope_ids.get(name)
        if sid is None:
            sid = len(self.scope_ids)
            if sid >= MAX_SCOPES:
                raise OverflowError("too many opt-out scopes")
            self.scope_ids[name] = sid
        return sid

    def maybe_scope_id(self, scope: str, key: str) -> int | None:
        if scope == "global":
            return GLOBAL
        return self.scope_ids.get(f"{scope[0]}:{key}")

    def own_keys(self, number: int, sender: str, account: str) -> list[int]:
        """The number's keys in this sender's and this account's scopes, of the scopes the Index knows."""
        keys = []
        for scope, key in (("sender", sender), ("account", account)):
            sid = self.maybe_scope_id(scope, key)
            if sid is not None:
                keys.append(scoped(number, sid))
        return keys

    # --- reads (what rules call) ---------------------------------------------------------------------------

    def maybe_optout_key(self, number: int, sender: str, account: str) -> tuple[str, int] | None:
        """The scope and key of an opt-out that covers this recipient for this sender/account, if any."""
        optouts = self.optouts
        if number in optouts:  # scoped(number, GLOBAL)
            return "global", number
        ids = self.scope_ids  # maybe_scope_id's keys and scoped(), spelled out: this runs for every message
        sid = ids.get("s:" + sender)
        if sid is not None and number + sid * SCOPE_STRIDE in optouts:
            return "sender", number + sid * SCOPE_STRIDE
        sid = ids.get("a:" + account)
        if sid is not None and number + sid * SCOPE_STRIDE in optouts:
            return "account", number + sid * SCOPE_STRIDE
        return None

    def signed(self, account: str, sender: str) -> frozenset[str]:
        """The signatures `account` may use from `sender`: those registered for the account, and for that source
        address of it. Worked out once per (account, sender) until a signature changes."""
        key = (account, sender)
        found = self._signed.get(key)
        if found is None:
            entries = self.signatures.get(account, {})
            found = frozenset(sig for (source, sig), (_at, present) in entries.items()
                              if present and source in ("", sender))
            if len(self._signed) >= MAX_SIGNED_CACHE:  # a sender may use any number of source addresses
                self._signed.clear()
            self._signed[key] = found
        return found

    def set_signature(self, account: str, source: str, signature: str, at: float, present: bool) -> None:
        """A signature registered (present) or removed at `at`: the later change wins, an addition on a tie (the
        store applies the same rule, store/signatures.py)."""
        entries = self.signatures.setdefault(account, {})
        current = entries.get((source, signature))
        if current is None or at > current[0] or (at == current[0] and present):
            entries[(source, signature)] = (at, present)
            self._signed.clear()

    def set_review(self, account: str, at: float, state: str) -> None:
        """An account's review state as of `at`; the later change wins (store/review.py)."""
        current = self.reviews.get(account)
        if current is None or at >= current[0]:
            self.reviews[account] = (at, state)

    def sends_between(self, key: int, start: float, end: float) -> int:
        """Accepted sends plus in-flight reservations for `key` in [start, end]."""
        times = self.history.get(key)
        return bisect.bisect_right(times, end) - bisect.bisect_left(times, start) if times else 0

    def last_send(self, key: int) -> float | None:
        times = self.history.get(key)
        return times[-1] if times else None

    # --- writes (the bridge and the change log) ------------------------------------------------------------

    # Sends are tuples, not lists: tuples of floats are untracked by the cyclic GC, and with hundreds of
    # thousands of recipients per day tracked lists made every full collection walk them all.
    # A reservation is a send from the start, so that the rules count it while it is in flight, and an
    # accepted one needs nothing more here: only a refused one is taken back (`release`).

    def release(self, key: int, at: float) -> None:
        """The SMSC refused a reserved send: it no longer counts."""
        times = self.history.get(key)
        if times == (at,):  # the common case: the recipient's only send
            del self.history[key]
        elif times:
            i = bisect.bisect_left(times, at)
            if i < len(times) and times[i] == at:
                times = times[:i] + times[i + 1:]
            if times:
                self.history[key] = times
            else:
                del self.history[key]

    def record_send(self, key: int, at: float) -> None:
        history = self.history
        if type(history) is dict:
            _insert(history, key, at)
        else:
            history.insert(key, at)  # type: ignore[union-attr]

    reserve = record_send  # the same thing, said where the send is still in flight (see above)

    def hold_send(self, key: int, release_at: float) -> None:
        """A held message: it counts as a send at its release time from now on, until `unhold_send`."""
        _insert(self.held, key, release_at)

    def unhold_send(self, key: int, release_at: float) -> None:
        """The held message left the queue (released, cancelled, expired, dropped): its place is given back."""
        times = self.held.get(key)
        if times:
            i = bisect.bisect_left(times, release_at)
            if i < len(times) and times[i] == release_at:
                times = times[:i] + times[i + 1:]
            if times:
                self.held[key] = times
            else:
                del self.held[key]

    def prune_history(self, before: float, budget: int = PRUNE_BUDGET) -> None:
        """Forget sends older than `before` (older than the longest frequency period), `budget` recipients per
        call: a pass over millions of recipients would stall the event loop, and rules read only their own
        period, so an old entry left for a while costs memory, never a wrong verdict. A pass starts from a
        snapshot of the keys and resumes where the last call stopped."""
        pending = self._prune_pending
        if type(self.history) is not dict:  # a CompactHistory
            self.history.prune(before, pending, budget)  # type: ignore[union-attr]
            return
        if not pending:
            pending.extend(self.history)
        history = self.history
        for key in pending[-budget:]:
            times = history.get(key)
            if times is None or times[0] >= before:
                continue
            cut = bisect.bisect_left(times, before)
            if cut >= len(times):
                del history[key]
            else:
                history[key] = times[cut:]
        del pending[-budget:]


def _insert(table: dict, key: int, at: float) -> None:
    times = table.get(key)
    if times is None:
        table[key] = (at,)
    elif at >= times[-1]:
        table[key] = times + (at,)
    else:
        i = bisect.bisect_right(times, at)
        table[key] = times[:i] + (at,) + times[i:]


# --- what a rule is -----------------------------------------------------------------------------------------

class RuleContext(NamedTuple):
    """What a rule's settings may take from the [policy] table besides its own [rules.<name>] table."""

    default_region: str | None = None
    fallback_zone: str = "UTC"


NO_CONTEXT = RuleContext()  # no [policy] table: what the built-in defaults give


class History(NamedTuple):
    """Send history, owned by the rule that counts sends (frequency)."""

    #: (index, settings) -> a function (number, account) -> the Index.history key a send to `number` by
    #: `account` counts under, a ScopedKeys (the store makes a column of keys with it); or None when that key is
    #: the number itself (the common case, which a load of millions of rows can then skip)
    keys: Callable[[Index, Any], ScopedKeys | None]
    #: how far back the rule reads sends: the store loads this much history at start-up
    span_s: float


class OptoutTerms(NamedTuple):
    """How opt-outs are kept, owned by the rule that reads them (optout): the one confirmation a recipient may
    still get (the grace), and when opt-outs from several senders become global."""

    grace_s: Callable[[Any], float]  # settings -> how long after an opt-out its confirmation may go
    opens_grace: Callable[[str, str], bool]  # (scope, source) -> whether such an opt-out opens a grace
    #: (index, number, sender, account) -> whether a grace may be open for this recipient and sender, so a
    #: confirmation could pass: make_submission then matches the confirmation patterns
    maybe_in_grace: Callable[[Index, int, str, str], bool]
    correlation_threshold: Callable[[Any], int]  # settings -> senders whose opt-outs make a global one (0: never)
    scope: Callable[[Any], str]  # settings -> the scope of an opt-out learned from a reply: sender, account, global


def _never(_settings: Any) -> bool:
    return False


def _no_warnings(_settings: Any) -> tuple[str, ...]:
    return ()


@dataclass(frozen=True)
class Rule:
    """One compliance rule: all that the rest of smppguard knows of it (DESIGN, Seams). A rule module defines one,
    `RULE`, and policy/__init__.py lists it once in RULES; no other code names a rule. Adding a rule is one file
    and one line."""

    name: str
    #: ([rules.<name>] table, context) -> its Settings (a settings.Common); ConfigError names the bad key
    parse: Callable[[Mapping[str, Any], RuleContext], Any]
    #: (submission, index, now, settings) -> a Verdict, or None for no opinion
    check: Callable[[Submission, Index, float, Any], Verdict | None]
    #: judged again as each part of a concatenated message joins the text (policy.judge_text)
    reads_text: bool = False
    #: settings that leave the rule nothing to check: decide() leaves it out
    inactive: Callable[[Any], bool] = _never
    #: the rule reads only the lists (the blacklist, the opt-outs and what an opt-out opens): it has no verdict
    #: for a number in none of them, and decide() leaves it out for a number whose bit Index.listed has clear
    lists_only: bool = False
    #: idle work, every minute or so: (index, now, settings) -> forget Index entries the rule no longer needs
    tidy: Callable[[Index, float, Any], None] | None = None
    #: settings -> what the operator should hear at start-up (a setting that refuses more than it seems to)
    warnings: Callable[[Any], tuple[str, ...]] = _no_warnings
    # The Index entries the rule owns, and what the store and the proxy ask of them:
    history: History | None = None
    optouts: OptoutTerms | None = None
    #: settings -> how long a number learned dead (from a receipt) stays dead, for the rule that reads them
    dead_for: Callable[[Any], float] | None = None
    #: settings -> the credit score below which the Index keeps a number's score (Index.low_credit), and the
    #: points of each part of the score, for the rule that reads them
    credit_floor: Callable[[Any], int] | None = None
    credit_weights: Callable[[Any], tuple[tuple[str, int], ...]] | None = None
