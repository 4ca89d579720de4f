"""The hold queue: a message that quiet hours hold is kept in the store, answered OK with a proxy message id once
it is saved, and submitted when the recipient's window ends, through a live bind of the same account.

Guarantees:
- Durable before OK: the sender's OK (with the proxy id) is sent only when the group commit that saved the PDU is
  done. Queue full (in all, or for the account) is answered 0x14 at once; a failed commit 0x08.
- Never twice: a message is marked "sending" in a commit before its bytes leave. After a crash it is "unknown"
  (it may have reached the SMSC) and is not sent again unless an operator says so (`queue release`). One the SMSC
  never answered is "unknown" too. So a held message reaches the SMSC at most once, and exactly once unless the
  daemon dies (or the SMSC goes silent) between that mark and the SMSC's answer; `queue list` shows those.
- Counted while held: a held message counts for the frequency cap from the moment it is held, as a send at its
  release time (Index.held); while it is screened again at release it does not count against itself, and one
  that leaves the queue unsent (cancelled, expired, dropped, by the CLI too) gives its place back.
- Still screened at release: the rules decide again (an opt-out, a blacklisting or the cap reached meanwhile
  drops it, with an audit row and, if the sender asked for receipts, a receipt stat REJECTD carrying the proxy
  id); quiet hours that still apply (a zone changed) hold it again. Expired (validity_period, else [hold]
  max_hold): dropped, receipt stat EXPIRED.
- The parts of a concatenated message are held under one group and released together in order, or dropped
  together.
- Released at `release_rate` per second over all accounts, each through a bind's window and max_tps like live
  traffic; with no bind of the account up, its messages wait (and expire on time).
- Ids: the SMSC's id of a released message maps to the proxy id (for `map_ttl`); its receipts reach the sender
  with the proxy id in receipted_message_id and in the text, and query_sm / cancel_sm / replace_sm with the proxy
  id are answered from the queue while it is held and translated after it is released.
- Deliveries the proxy owes a sender (the receipts it makes; replies kept by [inbound] no_receiver = "keep") are
  saved and delivered to a receiver of the account when one is bound, until the sender acknowledges them.
The queue's state lives in the store (store/holds.py); in memory only the ids, counts and id maps.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import secrets
import time
from typing import Any, Callable, Iterable, NamedTuple, Protocol

from .. import tasks
from ..logs import Throttle
from ..smpp.commands import CommandId
from ..smpp.errors import PduError
from ..smpp.fields import Tlv, TlvTag, UnsuccessSme, encode_body, parse_body, tlv_value
from ..smpp.pdu import Pdu, build
from ..smpp.receipt import receipt_body
from ..smpp.status import TEMPORARY, Status
from ..smpp.times import parse_time
from .hold_ids import IdMap, Translated
from .release_bind import ReleaseBind
from .screening import Answer, Forward, Hold, HoldMulti, Screening

log = logging.getLogger("smppguard.hold")

#: query_sm_resp message_state of a held message (SMPP 3.4 section 5.2.28: ENROUTE)
ENROUTE = 1


class HoldSettings(NamedTuple):
    max_messages: int = 1_000_000
    max_per_account: int = 200_000
    max_hold: float = 86400.0
    release_rate: float = 100.0
    map_ttl: float = 72 * 3600.0
    max_owed: int = 100_000
    retry_after: float = 60.0  # a release the SMSC answered "try later" waits this long
    tick: float = 0.2  # how often the queue looks for due messages and owed deliveries


DEFAULTS = HoldSettings()


class Released:
    """The context of a released message's submit: back to the queue with the SMSC's answer."""

    __slots__ = ("row", "inner", "sent")

    def __init__(self, row, inner: object):
        self.row, self.inner, self.sent = row, inner, False


class Owed:
    """The context of a delivery the proxy owes a sender."""

    __slots__ = ("seq",)

    def __init__(self, seq: int):
        self.seq = seq


CONTEXTS = (Released, Owed, Translated)


class QueueStore(Protocol):
    """The store's side (store.holds.QueueStore): each call returns a durability future."""

    def add(self, rows: list) -> asyncio.Future: ...
    def load(self, now: float) -> asyncio.Future: ...
    def due(self, now: float, accounts: list[str], limit: int, expired: bool) -> asyncio.Future: ...
    def round(self, mark, drop, later, owed) -> asyncio.Future: ...
    def sent(self, seq: int, account: str, proxy_id: str, smsc_id: str, map_until: float) -> asyncio.Future: ...
    def map_id(self, account: str, smsc_id: str, proxy_id: str, map_until: float) -> asyncio.Future: ...
    def finish(self, drop, later, unknown, owed) -> asyncio.Future: ...
    def by_id(self, proxy_id: str) -> asyncio.Future: ...
    def cancel(self, proxy_id: str, account: str) -> asyncio.Future: ...
    def replace(self, seq: int, pdu: bytes, expires_at: float | None, receipt: bool) -> asyncio.Future: ...
    def owe(self, account: str, body: bytes, kind: str, at: float) -> asyncio.Future: ...
    def owed_for(self, accounts: list[str], limit: int, skip: list[int]) -> asyncio.Future: ...
    def owed_done(self, seqs: list[int]) -> asyncio.Future: ...
    def due_accounts(self, now: float) -> asyncio.Future: ...
    def prune(self, now: float) -> asyncio.Future: ...
    def states(self, now: float) -> asyncio.Future: ...


def new_id() -> str:
    """A proxy message id: 16 hex digits, random (an SMSC's ids and ours never meet in one sender's view)."""
    return secrets.token_hex(8)


class HoldQueue:
    def __init__(self, store: QueueStore, screening: Screening, *, settings: HoldSettings = DEFAULTS,
                 forced: Screening | None = None, clock: Callable[[], float] = time.time,
                 audit: Callable[..., None] | None = None, row_type: Callable[..., Any] | None = None):
        self.store = store
        self.screening = screening
        self._log = Throttle(log)  # the queue's own: another queue in the process (a test's) says its warnings too
        self.forced = forced or screening  # the rules without quiet hours: `queue release`
        self.s = settings
        self.clock = clock
        self.audit = audit  # (at, account, sender, number, address, rule, action, status, reason)
        self.row_type = row_type  # store.holds.HeldRow
        self.bridges: Callable[[], Iterable[Any]] = lambda: ()  # the server's bridges (ProxyServer.bridges)
        self._ids: dict[str, list] = {}  # proxy id -> [account, rows in the queue]
        self._per_account: collections.Counter[str] = collections.Counter()
        self._count = 0  # rows in the queue
        self.ids = IdMap()  # SMSC id <-> proxy id of released messages
        self._groups: dict[tuple, tuple[str, float]] = {}  # a concatenated message's key -> its group, until when
        # proxy id -> [number, history key (None: its class is not counted), release time it counts at (None: not
        # counting now), when it was held (in holds), account] of each held row (a concatenated message's first
        # part only)
        self._counted: dict[str, list[list]] = {}
        #: told whenever a held row starts or stops counting, or moves: (proxy id, number, account, the release
        #: time it counts at, None: no longer), for other sidecars to count it too (sync/)
        self.on_counted: Callable[[str, int, str, float | None], None] | None = None
        self._holds = 0  # holds so far: a recount does not forget rows held while it read the store
        self._owed = 0
        self._owed_inflight: set[int] = set()
        self._pending = 0  # holds and cancels waiting for their commit
        self._tokens = 0.0
        self._last_round: float | None = None
        self._task: asyncio.Task | None = None
        self._next_states = 0.0
        self._next_prune = 0.0
        self._went = False  # the last round released messages (the next comes sooner)
        self._next_expiry = 0.0
        self._stopping = False
        self.own_accounts: dict[str, str] = {}  # [hold] accounts: system_id -> password for binds of our own
        self.config: Any = None  # the daemon's Config, for those binds' window, timeouts and max_tps
        self.connect: Callable[..., Any] | None = None  # opens the upstream leg (the server's)
        self._own: dict[str, ReleaseBind] = {}
        self._own_retry: dict[str, float] = {}
        self._next_own = 0.0
        self._oldest = 0.0  # held_at of the oldest held message, at the last look
        self.released = self.dropped = self.expired = 0

    # --- start and stop ------------------------------------------------------------------------------------

    async def start(self) -> None:
        now = self.clock()
        unknown, ids, maps, owed = await self.store.load(now)
        if unknown:
            log.warning("hold queue: %d released messages may or may not have reached the SMSC before the last "
                        "stop; they are kept as \"unknown\" and not sent again (smppguard queue list)", unknown)
        self._load_ids(ids)
        for account, smsc_id, proxy_id, expires in sorted(maps, key=lambda m: m[3]):
            self.ids.remember(account, smsc_id, proxy_id, expires)
        self._owed = owed
        if self._count:
            log.info("hold queue: %d messages held", self._count)
        self._task = tasks.spawn(self._run(), name="hold queue")

    def _load_ids(self, ids: Iterable[tuple], holds_before: float = float("inf")) -> None:
        """The queue's rows as the store has them; `holds_before`: the holds made before the store was read (the
        rows of later ones may be missing from `ids`, and stay counted)."""
        self._ids.clear()
        self._per_account.clear()
        held: dict[str, list[tuple]] = {}
        for proxy_id, account, state, number, release_at, part in ids:
            entry = self._ids.setdefault(proxy_id, [account, 0])
            entry[1] += 1
            self._per_account[account] += 1
            if state == "held" and number is not None and part <= 1:
                held.setdefault(proxy_id, []).append((account, number, release_at))
        self._count = sum(self._per_account.values())
        # the store is the truth: rows the CLI dropped or released give their place back; rows held before a
        # restart count again (their class is not kept: counted as the counting rule's key for the number)
        for proxy_id in [p for p, entries in self._counted.items()
                         if p not in held and all(e[3] < holds_before for e in entries)]:
            self._uncount_held(proxy_id)
        policy, index = self.screening.policy, self.screening.index
        for proxy_id, rows in held.items():
            if proxy_id not in self._counted:
                for account, number, release_at in rows:
                    key = policy.history_key(number, account, index)
                    self._counted.setdefault(proxy_id, []).append([number, key, None, -1, account])
                    self._count_at(proxy_id, number, release_at)

    def _counts_held(self, rows: list, keys: list) -> None:
        """Held rows count for the frequency cap from now, each as a send at its release time. A row of a class
        no rule counts (key None) is remembered too, so the next recount does not take it for one held before a
        restart and count it."""
        self._holds += 1
        for r, key in zip(rows, keys, strict=True):
            if r.number is not None and r.part <= 1:
                self._counted.setdefault(r.id, []).append([r.number, key, None, self._holds, r.account])
                self._count_at(r.id, r.number, r.release_at)

    def _count_at(self, proxy_id: str, number: int | None, at: float | None) -> None:
        """The held row of this proxy id and number counts as a send at `at` from now (None: not at all)."""
        index = self.screening.index
        for entry in self._counted.get(proxy_id, ()):
            if entry[0] == number and entry[1] is not None:
                if entry[2] is not None:
                    index.unhold_send(entry[1], entry[2])
                moved = entry[2] != at
                entry[2] = at
                if at is not None:
                    index.hold_send(entry[1], at)
                if moved and self.on_counted is not None:
                    self.on_counted(proxy_id, entry[0], entry[4], at)

    def counted_now(self) -> list[tuple[str, int, str, float]]:
        """Every held row counting now: (proxy id, number, account, the release time it counts at)."""
        return [(proxy_id, e[0], e[4], e[2]) for proxy_id, entries in self._counted.items() for e in entries
                if e[1] is not None and e[2] is not None]

    def _uncount_held(self, proxy_id: str, number: int | None = None) -> None:
        """The held row (every row of the proxy id, without a number) left the queue: its place is given back."""
        entries = self._counted.get(proxy_id)
        if entries is None:
            return
        for entry in [e for e in entries if number is None or e[0] == number]:
            self._count_at(proxy_id, entry[0], None)
            entries.remove(entry)
        if not entries:
            del self._counted[proxy_id]

    async def close(self, timeout: float = 5.0) -> None:
        """Stop after the round in progress: cancelled between its mark and its sends, the marked messages
        would be "unknown" without having left."""
        if self._task is not None:
            self._stopping = True
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout)
            except asyncio.TimeoutError:
                self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        for own in list(self._own.values()):
            await own.close()
        self._own.clear()

    @property
    def owed(self) -> int:
        """Deliveries kept for senders (receipts made here, replies kept), as last counted."""
        return self._owed

    def oldest_age(self) -> float:
        """Age of the oldest held message, as of the last look at the queue (once a minute) and the holds since;
        0 when empty."""
        return max(0.0, self.clock() - self._oldest) if self._count and self._oldest else 0.0

    @property
    def busy(self) -> bool:
        """Holds or cancels still waiting for their commit (shutdown waits for their answers)."""
        return self._pending > 0

    def __len__(self) -> int:
        return self._count

    # --- holding -------------------------------------------------------------------------------------------

    def hold(self, session, pdu: Pdu, outcome: Hold) -> None:
        """Keep a submit_sm or data_sm; answer OK with the proxy id once saved. PduError: malformed."""
        account = session.system_id
        now = self.clock()
        f = parse_body(pdu.command_id, pdu.body, pdu.sequence)
        grp, part, parts = "", 1, 1
        if outcome.group is not None:  # screening's key of the concatenated message this part belongs to
            key, part, parts = outcome.group
            found = self._groups.get(key)
            if found is None or found[1] < now:
                if len(self._groups) > 10_000:
                    self._groups = {k: g for k, g in self._groups.items() if g[1] >= now}
                found = self._groups[key] = (new_id(), now + 600.0)
            grp = found[0]
        row = self._row(new_id(), account, f, pdu.command_id, pdu.raw, outcome.until, outcome.number, now,
                        grp, part, parts)
        self._keep(session, pdu, [row], lambda: _message_id_body(pdu.command_id, row.id), [outcome.key])

    def hold_multi(self, session, pdu: Pdu, held: list, refused: list, forwarded: bool) -> tuple[str, Any] | None:
        """submit_multi: each held destination kept as its own row (a submit_multi to that one address), all
        under one proxy id. `forwarded`: the other destinations go to the SMSC now, and the answer waits for
        both (answer_multi); otherwise the sender is answered here. Returns (proxy id, future) when forwarded."""
        account = session.system_id
        now = self.clock()
        f = parse_body(pdu.command_id, pdu.body, pdu.sequence)
        proxy_id = new_id()
        rows, keys = [], []
        for dest, until, number, key in held:
            keys.append(key)
            one = dict(f, dest_addresses=[dest])
            raw = build(pdu.command_id, 0, encode_body(pdu.command_id, one))
            rows.append(self._row(proxy_id, account, dict(f, destination_addr=dest.address), pdu.command_id, raw,
                                  until, number, now, "", 1, 1))
        if forwarded:
            if not self._room(account, len(rows)):
                return None
            return proxy_id, self._save(rows, keys)
        body = lambda: encode_body(CommandId.SUBMIT_MULTI_RESP, message_id=proxy_id,  # noqa: E731
                                   unsuccess_sme=refused)
        self._keep(session, pdu, rows, body, keys)
        return None

    def _row(self, proxy_id: str, account: str, f: dict, command_id: int, raw: bytes, until: float,
             number: int | None, now: float, grp: str, part: int, parts: int):
        expires = now + self.s.max_hold
        try:
            validity = parse_time(f.get("validity_period", ""), now)
        except PduError:
            validity = None
        if validity is not None:
            expires = min(expires, validity)
        assert self.row_type is not None
        return self.row_type(0, proxy_id, account, f["source_addr"], f["destination_addr"], number, command_id,
                             raw, grp, part, parts, now, until, expires, bool(f["registered_delivery"] & 0x03))

    def _room(self, account: str, n: int) -> bool:
        if self._count + n > self.s.max_messages or self._per_account[account] + n > self.s.max_per_account:
            self._log.log(logging.WARNING, ("full", account), "hold queue full (%d held, %d of account %s; [hold] "
                          "max_messages, max_per_account): answered 0x14", self._count, self._per_account[account],
                          account)
            return False
        return True

    def _save(self, rows: list, keys: list) -> asyncio.Future:
        """Count the rows in now (the bound holds while their commit is pending, and the frequency cap counts
        them), save them."""
        self._counts_held(rows, keys)
        if rows and (not self._count or not self._oldest):  # the queue was empty at the last count (or is now)
            self._oldest = min(r.held_at for r in rows)
        for r in rows:
            entry = self._ids.setdefault(r.id, [r.account, 0])
            entry[1] += 1
            self._per_account[r.account] += 1
            self._count += 1
        self._pending += 1
        future = self.store.add(rows)

        def done(f: asyncio.Future) -> None:
            self._pending -= 1
            if f.cancelled() or f.exception() is not None:
                self._forget(rows)
                log.error("hold queue: saving %d held messages failed (%s); the sender was answered 0x08",
                          len(rows), None if f.cancelled() else f.exception())
        future.add_done_callback(done)
        return future

    def _keep(self, session, pdu: Pdu, rows: list, body: Callable[[], bytes], keys: list) -> None:
        if not self._room(session.system_id, len(rows)):
            session.respond(pdu, Status.RMSGQFUL)
            return
        future = self._save(rows, keys)

        def answer(f: asyncio.Future) -> None:
            if f.cancelled() or f.exception() is not None:
                session.respond(pdu, Status.RSYSERR)
            else:
                session.respond(pdu, Status.ROK, body())
        future.add_done_callback(answer)

    def answer_multi(self, proxy_id: str, future: asyncio.Future, held: list, response: Pdu, merged: bytes,
                     send: Callable[[bytes], None]) -> None:
        """The SMSC answered the forwarded part of a submit_multi whose other destinations are held: the sender
        gets one answer, with the proxy id, once the held part is saved (its destinations listed as failed if it
        could not be). If the SMSC refused the whole request, the held part is dropped too: the sender was told
        it failed, and would send it again."""
        def finish(_f: asyncio.Future | None = None) -> None:
            ok = not future.cancelled() and future.exception() is None
            if response.status != Status.ROK:
                if ok:
                    self.cancel_all(proxy_id)
                send(merged)
                return
            try:
                fields = parse_body(CommandId.SUBMIT_MULTI_RESP, merged[16:])
            except PduError:  # the SMSC's answer cannot be read: relayed as it came, the held part stays held
                send(merged)
                return
            smsc_id = fields["message_id"]
            account = self._ids.get(proxy_id, ["", 0])[0]
            if smsc_id and ok and account:
                until = self.clock() + self.s.map_ttl
                self.ids.remember(account, smsc_id, proxy_id, until)
                self.store.map_id(account, smsc_id, proxy_id, until)
            fields["message_id"] = proxy_id if ok else smsc_id
            if not ok:
                fields["unsuccess_sme"] = list(fields.get("unsuccess_sme", [])) + [
                    UnsuccessSme(d.ton, d.npi, d.address, Status.RSYSERR) for d, *_ in held]
            send(build(response.command_id, response.sequence, encode_body(response.command_id, fields),
                       response.status))
        if future.done():
            finish()
        else:
            future.add_done_callback(finish)

    def cancel_all(self, proxy_id: str) -> None:
        """Drop every row of this proxy id (the sender was told its submit failed)."""
        entry = self._ids.get(proxy_id)
        if entry is not None:
            self.store.cancel(proxy_id, entry[0]).add_done_callback(lambda f: self._forget_id(proxy_id, f))

    def _forget(self, rows: Iterable) -> None:
        for r in rows:
            self._uncount(r.id, r.account, 1)
            self._uncount_held(r.id, r.number)

    def _forget_id(self, proxy_id: str, f: asyncio.Future) -> None:
        """Every row of this proxy id left the store (the future of that delete: how many)."""
        if f.cancelled() or f.exception() is not None:
            return
        entry = self._ids.get(proxy_id)
        if entry is not None:
            deleted = f.result()
            self._uncount(proxy_id, entry[0], deleted if isinstance(deleted, int) else entry[1])
        self._uncount_held(proxy_id)

    def _uncount(self, proxy_id: str, account: str, n: int) -> None:
        """n rows of this proxy id and account are no longer in the queue."""
        entry = self._ids.get(proxy_id)
        if entry is not None:
            entry[1] -= n
            if entry[1] <= 0:
                del self._ids[proxy_id]
        self._per_account[account] -= n
        if self._per_account[account] <= 0:
            del self._per_account[account]
        self._count -= n

    # --- query_sm, cancel_sm, replace_sm of a held or released message -------------------------------------

    def owner(self, message_id: str) -> str | None:
        """The account of a held message with this proxy id, or of a released one; None if not ours."""
        entry = self._ids.get(message_id)
        if entry is not None:
            return entry[0]
        return None

    def answer_request(self, session, pdu: Pdu, fields: dict) -> None:
        """query_sm / cancel_sm / replace_sm naming a message held for this session's account (the caller asked
        owner()): answered here. A released one is left to translate()."""
        message_id = fields["message_id"]
        command_id = pdu.command_id
        if command_id == CommandId.QUERY_SM:
            session.respond(pdu, Status.ROK, encode_body(CommandId.QUERY_SM_RESP, message_id=message_id,
                                                         final_date="", message_state=ENROUTE, error_code=0))
            return
        self._pending += 1
        if command_id == CommandId.CANCEL_SM:
            future = self.store.cancel(message_id, session.system_id)

            def cancelled(f: asyncio.Future) -> None:
                self._pending -= 1
                ok = not f.cancelled() and f.exception() is None and f.result() > 0
                if ok:
                    self._forget_id(message_id, f)
                    self._audit_cancel(message_id, session.system_id)
                session.respond(pdu, Status.ROK if ok else Status.RCANCELFAIL)
            future.add_done_callback(cancelled)
            return
        # replace_sm: the new text (already screened by the rules that read text) into the held request
        future = self.store.by_id(message_id)

        def found(f: asyncio.Future) -> None:
            rows = [] if f.cancelled() or f.exception() is not None else [r for r in f.result() if r.state == "held"]
            if len(rows) != 1 or rows[0].command_id != CommandId.SUBMIT_SM:
                self._pending -= 1
                session.respond(pdu, Status.RREPLACEFAIL)
                return
            row = rows[0]
            try:
                new, expires = _replaced(row.pdu, fields, self.clock())
            except (PduError, ValueError) as e:  # a text too long for short_message, say
                self._pending -= 1
                log.info("replace_sm of held message %s refused: %s", message_id, e)
                session.respond(pdu, Status.RREPLACEFAIL)
                return
            receipt = bool(fields["registered_delivery"] & 0x03) if fields["registered_delivery"] else row.receipt
            self.store.replace(row.seq, new, expires, receipt).add_done_callback(replaced)

        def replaced(f: asyncio.Future) -> None:
            self._pending -= 1
            ok = not f.cancelled() and f.exception() is None and f.result()
            session.respond(pdu, Status.ROK if ok else Status.RREPLACEFAIL)
        future.add_done_callback(found)

    # --- ids of released messages (proxy/hold_ids.py) -------------------------------------------------------

    def translate(self, pdu: Pdu, fields: dict, account: str) -> tuple[bytes, Translated] | None:
        return self.ids.translate(pdu, fields, account)

    @property
    def maps_ids(self) -> bool:
        return bool(self.ids)

    def rewrite_receipt(self, pdu: Pdu, account: str) -> Pdu:
        return self.ids.rewrite_receipt(pdu, account)

    # --- deliveries owed to a sender -----------------------------------------------------------------------

    def keep(self, account: str, pdu: Pdu) -> asyncio.Future | None:
        """[inbound] no_receiver = "keep": a deliver_sm or data_sm for an account with no receiver bound, saved
        to be delivered when one binds. None when too many are kept already (the SMSC gets 0x64)."""
        if self._owed >= self.s.max_owed:
            self._log.log(logging.WARNING, "owed", "%d deliveries kept for senders with no receiver bound "
                          "([hold] max_owed): the SMSC is answered 0x64", self._owed)
            return None
        self._owed += 1
        body = pdu.body if pdu.command_id == CommandId.DELIVER_SM else _as_deliver_sm(pdu)
        return self.store.owe(account, body, "mo", self.clock())

    def _receipt(self, row, stat: str, err: str, now: float) -> tuple[str, bytes, str, float] | None:
        """A receipt the proxy makes for a held message it did not send, if the sender asked for one."""
        if not row.receipt or self._owed >= self.s.max_owed:
            return None
        self._owed += 1
        return (row.account, held_receipt(row, stat, now, err), "receipt", now)

    # --- the release loop ----------------------------------------------------------------------------------

    async def _run(self) -> None:
        while not self._stopping:
            # while messages are going out, the next batch follows as soon as the window has room again
            await asyncio.sleep(0.002 if self._went else self.s.tick)
            try:
                await self.round()
            except Exception:
                log.exception("hold queue: a release round failed; trying again")
                await asyncio.sleep(1.0)

    def _senders(self) -> dict[str, list]:
        """Bridges a held message can go through, by account, and the binds the proxy opened itself."""
        return _by_account(b for b in (*self.bridges(), *self._own.values()) if b.can_release())

    async def _own_binds(self, now: float) -> None:
        """[hold] accounts: open a transmitter bind for an account with due messages and no sender bound; close
        it once nothing of that account is due or on its way."""
        due = await self.store.due_accounts(now)
        senders = {b.account for b in self.bridges() if b.can_release()}
        for account, password in self.own_accounts.items():
            own = self._own.get(account)
            if due.get(account) and account not in senders and own is None and self.connect is not None:
                if time.monotonic() >= self._own_retry.get(account, 0.0):
                    self._own[account] = pending = ReleaseBind(self.config, account, password, self.settled,
                                                               self.unanswered)
                    if not await pending.open(self.connect):
                        del self._own[account]
                        self._own_retry[account] = time.monotonic() + 30.0
            elif own is not None and (not own.can_release() or (not due.get(account) and not own.release_load())):
                del self._own[account]
                await own.close()

    def _receivers(self) -> dict[str, list]:
        """Bridges a delivery owed to a sender can go through, by account."""
        return _by_account(b for b in self.bridges() if b.can_receive())

    async def round(self) -> None:
        """One look at the queue: release what is due (at release_rate), drop what expired, deliver what is
        owed."""
        now = self.clock()
        self.ids.forget(now)
        if now >= self._next_states:  # the CLI may have dropped or released rows: recount now and then
            if now >= self._next_prune:  # and, hourly, forget the id maps past map_ttl in the store too
                self._next_prune = now + 3600.0
                self.store.prune(now)
            self._next_states = now + 60.0
            holds_before = self._holds + 1  # the holds up to now are in what the store returns
            ids, self._owed, due, self._oldest = await self.store.states(now)
            self._load_ids(ids, holds_before)
            senders = self._senders()
            for account, n in due.items():
                if account not in senders:
                    self._log.log(logging.WARNING, ("waiting", account), "hold queue: %d messages of account %s "
                                  "are due and wait for a transmitter or transceiver bind of it", n, account)
        if self.own_accounts and (self._count or self._own) and time.monotonic() >= self._next_own:
            self._next_own = time.monotonic() + 2.0
            await self._own_binds(now)
        if self._count:
            await self._release(now)
        if self._owed:
            await self._deliver_owed()

    async def _release(self, now: float) -> None:
        loop_now = time.monotonic()
        last = self._last_round if self._last_round is not None else loop_now - self.s.tick
        self._last_round = loop_now
        rate = self.s.release_rate
        self._tokens = min(max(rate * self.s.tick * 2, 1.0), self._tokens + rate * (loop_now - last))
        senders = self._senders()
        # No more are marked "sending" than the windows can take now: after a crash, at most a window per bind
        # of released messages is in doubt ("unknown").
        budget = min(int(self._tokens), sum(b.release_room() for bs in senders.values() for b in bs))
        self._went = False
        expired = now >= self._next_expiry  # expired messages of every account, once a second
        if expired:
            self._next_expiry = now + 1.0
        if not budget and not expired:
            return
        rows = await self.store.due(now, list(senders) if budget else [], max(budget, 1), expired)
        if not rows:
            return
        go: list[tuple[Any, Forward]] = []
        drop: list[int] = []
        later: list[tuple[int, float]] = []
        owed: list = []
        for group in _groups(rows):
            first = group[0]
            if any(r.expires_at <= now for r in group):
                drop += [r.seq for r in group]
                owed += [o for r in group if (o := self._receipt(r, "EXPIRED", "000", now)) is not None]
                self._audit(first, "expired", Status.ROK, "held message expired before its release", now, len(group))
                self.expired += len(group)
                continue
            if first.account not in senders:
                continue  # due, but no bind of its account is up: it waits (and expires on time)
            for r in group:  # screened again: it must not count against itself (it counts again if it stays)
                self._count_at(r.id, r.number, None)
            outcomes = []
            for r in group:
                screening = self.forced if r.forced else self.screening
                try:
                    outcomes.append(screening.screen(Pdu(r.command_id, 0, 0, r.pdu), r.account))
                except PduError as e:
                    outcomes.append(Answer(e.status))
            refused = next((o for o in outcomes if type(o) is Answer), None)
            held = next((o for o in outcomes if type(o) is Hold or type(o) is HoldMulti), None)
            if refused is not None or held is not None:
                for o in outcomes:  # a part that would have gone gives its reservation back
                    if type(o) is Forward and o.context is not None:
                        self.screening.failed(o.context)
            if refused is not None:
                drop += [r.seq for r in group]
                owed += [o for r in group if (o := self._receipt(r, "REJECTD", "000", now)) is not None]
                self._audit(first, "dropped", refused.status, "held message refused at its release", now, len(group))
                self.dropped += len(group)
            elif held is not None:
                until = held.until if type(held) is Hold else held.held[0][1]
                later += [(r.seq, until) for r in group]
                for r in group:
                    self._count_at(r.id, r.number, until)
            else:
                go += list(zip(group, outcomes, strict=True))
        self._tokens -= len(go)
        self._went = bool(go)
        if not (go or drop or later or owed):
            return
        marked = await self.store.round([r.seq for r, _o in go], drop, later, owed)
        dropping = set(drop)
        dropped = [r for r in rows if r.seq in dropping]
        self._forget(dropped)
        unsent = []
        for r, outcome in go:
            if r.seq not in marked:  # dropped or released by the CLI meanwhile
                if outcome.context is not None:
                    self.screening.failed(outcome.context)
                self._count_at(r.id, r.number, r.release_at)  # still held, if the CLI's change left it so
                continue
            bridges = [b for b in senders.get(r.account, ()) if b.can_release()]
            if not bridges:
                unsent.append(r)
                if outcome.context is not None:
                    self.screening.failed(outcome.context)
                continue
            bridge = min(bridges, key=lambda b: b.release_load())
            context = Released(r, outcome.context)
            bridge.release(outcome.raw, context)
        if unsent:  # the bind went while the marks were saved: nothing left, so they are simply held again
            for r in unsent:
                self._count_at(r.id, r.number, r.release_at)
            await self.store.finish([], [(r.seq, r.release_at) for r in unsent], [], [])

    def settled(self, context: Released, response: Pdu) -> None:
        """The SMSC answered a released message."""
        row = context.row
        accepted = response.status == Status.ROK
        if accepted and response.command_id == CommandId.SUBMIT_MULTI_RESP:
            try:
                failed = parse_body(response.command_id, response.body).get("unsuccess_sme", [])
            except PduError:
                failed = []
            if failed:
                accepted = False
                response = Pdu(response.command_id, failed[0].status, response.sequence, response.raw)
        if context.inner is not None:
            self.screening.settle(context.inner, response) if accepted else self.screening.failed(context.inner)
        now = self.clock()
        if accepted:
            end = response.body.find(b"\0")
            smsc_id = (response.body[:end] if end >= 0 else response.body).decode("latin-1")
            until = now + self.s.map_ttl
            if smsc_id:
                self.ids.remember(row.account, smsc_id, row.id, until)
            self.store.sent(row.seq, row.account, row.id, smsc_id, until)
            self._forget([row])
            self._audit(row, "released", Status.ROK, f"held message released (SMSC id {smsc_id})", now, 1)
            self.released += 1
        elif response.status in TEMPORARY:
            self._count_at(row.id, row.number, now + self.s.retry_after)
            self.store.finish([], [(row.seq, now + self.s.retry_after)], [], [])
        else:
            receipt = self._receipt(row, "REJECTD", "000", now)
            self.store.finish([row.seq], [], [], [receipt] if receipt else [])
            self._forget([row])
            self._audit(row, "dropped", response.status, f"the SMSC refused the released message with "
                        f"0x{response.status:02X}", now, 1)
            self.dropped += 1

    def unanswered(self, context: Released, sent: bool) -> None:
        """A released message got no answer: sent (the SMSC may have it) it becomes "unknown"; never sent (the
        bind went while it waited for the window or max_tps), it is held again."""
        row = context.row
        if context.inner is not None:
            self.screening.failed(context.inner)
        if sent:
            self._log.log(logging.WARNING, "unknown", "hold queue: the SMSC did not answer released message %s; kept "
                          "as \"unknown\", not sent again (smppguard queue list)", row.id)
            self.store.finish([], [], [row.seq], [])
        else:
            self._count_at(row.id, row.number, row.release_at)
            self.store.finish([], [(row.seq, row.release_at)], [], [])

    async def _deliver_owed(self) -> None:
        receivers = self._receivers()
        if not receivers:
            return
        room = sum(b.deliver_room() for bs in receivers.values() for b in bs)
        if room <= 0:
            return
        rows = await self.store.owed_for(list(receivers), room, list(self._owed_inflight))
        for seq, account, body in rows:
            bridges = [b for b in receivers.get(account, ()) if b.can_receive() and b.deliver_room() > 0]
            if not bridges:
                continue
            self._owed_inflight.add(seq)
            bridges[0].deliver(build(CommandId.DELIVER_SM, 0, body), Owed(seq))

    def delivered(self, context: Owed, response: Pdu | None) -> None:
        """The sender answered (or did not answer: None) a delivery the proxy owed it."""
        if response is not None and response.status == Status.ROK:
            future = self.store.owed_done([context.seq])
            self._owed = max(0, self._owed - 1)
            future.add_done_callback(lambda _f: self._owed_inflight.discard(context.seq))
        else:
            self._owed_inflight.discard(context.seq)

    # --- audit -----------------------------------------------------------------------------------------------

    def _audit(self, row, action: str, status: int, reason: str, now: float, parts: int) -> None:
        if self.audit is not None:
            more = f" ({parts} parts)" if parts > 1 else ""
            self.audit(now, row.account, row.sender, row.number, row.recipient, "hold", action, int(status),
                       f"{reason}{more}; proxy id {row.id}")

    def _audit_cancel(self, proxy_id: str, account: str) -> None:
        """A cancel_sm took a held message (every row of its proxy id) out of the queue."""
        if self.audit is not None:
            self.audit(self.clock(), account, "", None, "", "hold", "cancelled", 0,
                       f"held message cancelled by the sender; proxy id {proxy_id}")


def _by_account(binds: Iterable[Any]) -> dict[str, list]:
    out: dict[str, list] = {}
    for b in binds:
        out.setdefault(b.account, []).append(b)
    return out


def _groups(rows: list) -> list[list]:
    """Rows in order, the parts of a concatenated message together."""
    out: list[list] = []
    by_grp: dict[str, list] = {}
    for r in rows:
        if not r.grp:
            out.append([r])
        elif r.grp in by_grp:
            by_grp[r.grp].append(r)
        else:
            by_grp[r.grp] = [r]
            out.append(by_grp[r.grp])
    for g in out:
        g.sort(key=lambda r: (r.part, r.seq))
    return out


def _tlv(tag: int, value: bytes) -> Tlv:
    return Tlv(tag, value)


def _message_id_body(command_id: int, proxy_id: str) -> bytes:
    if command_id == CommandId.DATA_SM:
        return encode_body(CommandId.DATA_SM_RESP, message_id=proxy_id)
    return encode_body(CommandId.SUBMIT_SM_RESP, message_id=proxy_id)


def _replaced(raw: bytes, replace: dict, now: float) -> tuple[bytes, float | None]:
    """A held submit_sm with what a replace_sm changes: the text (short_message or message_payload),
    registered_delivery when set, validity_period when set (its new expiry)."""
    f = parse_body(CommandId.SUBMIT_SM, raw[16:])
    payload = tlv_value(replace["tlvs"], TlvTag.MESSAGE_PAYLOAD)
    if payload is not None:
        f["short_message"] = b""
        f["tlvs"] = [t for t in f["tlvs"] if t[0] != TlvTag.MESSAGE_PAYLOAD] + [_tlv(TlvTag.MESSAGE_PAYLOAD, payload)]
    else:
        f["short_message"] = replace["short_message"]
        f["tlvs"] = [t for t in f["tlvs"] if t[0] != TlvTag.MESSAGE_PAYLOAD]
    if replace["registered_delivery"]:
        f["registered_delivery"] = replace["registered_delivery"]
    if replace["sm_default_msg_id"]:
        f["sm_default_msg_id"] = replace["sm_default_msg_id"]
    expires = None
    if replace["validity_period"]:
        f["validity_period"] = replace["validity_period"]
        try:
            expires = parse_time(replace["validity_period"], now)
        except PduError:
            expires = None
    return build(CommandId.SUBMIT_SM, 0, encode_body(CommandId.SUBMIT_SM, f)), expires


def _as_deliver_sm(pdu: Pdu) -> bytes:
    """A data_sm from the SMSC kept for a sender: delivered as it came would need data_sm support on the sender's
    side; it is kept as a deliver_sm carrying the same addresses, esm_class, coding and payload."""
    f = parse_body(pdu.command_id, pdu.body, pdu.sequence)
    payload = tlv_value(f["tlvs"], TlvTag.MESSAGE_PAYLOAD) or b""
    tlvs = [t for t in f["tlvs"] if t[0] != TlvTag.MESSAGE_PAYLOAD]
    sm, extra = (payload, []) if len(payload) <= 254 else (b"", [_tlv(TlvTag.MESSAGE_PAYLOAD, payload)])
    return encode_body(CommandId.DELIVER_SM, service_type=f["service_type"], source_addr_ton=f["source_addr_ton"],
                       source_addr_npi=f["source_addr_npi"], source_addr=f["source_addr"],
                       dest_addr_ton=f["dest_addr_ton"], dest_addr_npi=f["dest_addr_npi"],
                       destination_addr=f["destination_addr"], esm_class=f["esm_class"],
                       registered_delivery=f["registered_delivery"], data_coding=f["data_coding"],
                       short_message=sm, tlvs=tlvs + extra)


def held_receipt(row, stat: str, now: float, err: str = "000") -> bytes:
    """The receipt body for a held message (a store.holds.HeldRow) that was not sent."""
    try:
        request = parse_body(row.command_id, row.pdu[16:])
    except PduError:
        request = {"source_addr": row.sender, "destination_addr": row.recipient}
    return receipt_body(row.id, request, stat, row.held_at, now, err)
