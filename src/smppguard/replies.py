"""Keyword replies ([replies]): a recipient who replies STOP (any opt-out keyword), HELP or START gets one answer.

US carriers (CTIA) require an answer to STOP and HELP; one confirmation of an opt-out is allowed (TCPA, FCC 2025).
The answer goes from the address the recipient replied to, through a live transmitter (or transceiver) bind of
the account the reply came back to, as a submit_sm of the proxy's own (the SMSC's answer goes to no sender).

Rule 1: at most one answer of each kind per number every `once_per` (24 h), whatever the recipient sends; the
time of the last one is kept in the store (keyword_reply), so a restart does not answer again.
Rule 2: an answer is transactional: no marketing rule holds it back (the recipient just wrote to us), but a
number blacklisted or dead gets none, and the recipient's own opt-out is what the answer confirms.
Rule 3: every answer, sent or not, is audited (rule "reply"), with why when it was not sent: no bind of the
account up, blacklisted, dead, already answered today.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

from .inbound import HELP, OPTIN, OPTOUT
from .policy.model import Index
from .smpp.commands import CommandId
from .smpp.fields import Tlv, TlvTag, encode_body
from .smpp.pdu import build
from .smpp.text import GSM

log = logging.getLogger("smppguard.replies")

#: what each reply intent is answered with: the [replies] key of its text
ANSWERS = {OPTOUT: "optout_text", HELP: "help_text", OPTIN: "start_text"}
RULE = "reply"


def submit_sm(source: str, number: int, text: str) -> bytes:
    """The body of one answer: GSM 7-bit when the text allows, UCS2 otherwise; message_payload past one part."""
    try:
        payload, coding = text.encode(GSM), 0x00
    except (UnicodeEncodeError, LookupError):
        payload, coding = text.encode("utf-16-be"), 0x08
    long = len(payload) > 140
    # the address the recipient wrote to, as digits of unknown type (a long code such as 1069... is national,
    # not international) or, for a name, alphanumeric
    digits = source.isdigit()
    return encode_body(CommandId.SUBMIT_SM, source_addr_ton=0 if digits else 5, source_addr_npi=1 if digits else 0,
                       source_addr=source, dest_addr_ton=1, dest_addr_npi=1,
                       destination_addr=str(number), data_coding=coding,
                       short_message=b"" if long else payload,
                       tlvs=[Tlv(TlvTag.MESSAGE_PAYLOAD, payload)] if long else [])


class KeywordReplies:
    """A listener of the facts learned from replies (store.learning.Learning.listeners)."""

    def __init__(self, cfg: Any, bridges: Callable[[], list], index: Callable[[], Index],
                 record: Callable[[int, str, str, float], Any],
                 audit: Callable[[float, str, str, int, str, str], None],
                 sent: dict[tuple[int, str], float] | None = None, clock: Callable[[], float] = time.time):
        self.cfg = cfg
        self.bridges = bridges  # the proxy's bridges (ProxyServer.bridges), set once it runs
        self.index = index
        self.record = record  # (number, kind, account, at): the store's keyword_reply row
        self.audit = audit  # (at, account, source, number, action, reason)
        self.sent = sent if sent is not None else {}  # (number, kind) -> when last answered
        self.clock = clock
        self.sent_by_kind: dict[str, int] = {}
        self.skipped: dict[str, int] = {}

    def facts(self, facts: list) -> None:
        for fact in facts:
            key = ANSWERS.get(fact.kind)
            if key is None or not fact.number:
                continue
            if self.cfg.system_ids and fact.account not in self.cfg.system_ids:
                continue
            if self.cfg.senders and fact.sender not in self.cfg.senders:
                continue
            text = getattr(self.cfg, key)
            if text:
                self._answer(fact.kind, fact.number, fact.account, fact.evidence.get("to", ""), text)

    def _answer(self, kind: str, number: int, account: str, source: str, text: str) -> None:
        now = self.clock()
        last = self.sent.get((number, kind))
        index = self.index()
        why = None
        if last is not None and now - last < self.cfg.once_per:
            why = f"answered already at {time.strftime('%Y-%m-%d %H:%M:%SZ', time.gmtime(last))}"
        elif number in index.blacklist:
            why = "the number is blacklisted"
        elif number in index.dead:
            why = "the number is dead"
        bridges = [] if why else [b for b in self.bridges() if b.account == account and b.can_release()]
        if why is None and not bridges:
            why = f"no transmitter bind of {account} is up"
        if why is not None:
            self.skipped[kind] = self.skipped.get(kind, 0) + 1
            self.audit(now, account, source, number, "not sent", f"{kind} answer not sent: {why}")
            return
        bridge = min(bridges, key=lambda b: b.release_load())
        bridge.release(build(CommandId.SUBMIT_SM, 0, submit_sm(source, number, text)), None)
        self.sent[(number, kind)] = now
        if len(self.sent) > 1_000_000:  # the store keeps them all; memory keeps the latest million
            for k in list(self.sent)[:100_000]:
                del self.sent[k]
        self.sent_by_kind[kind] = self.sent_by_kind.get(kind, 0) + 1
        self.record(number, kind, account, now)
        self.audit(now, account, source, number, "sent", f"{kind} answer sent")
        log.info("%s: answered a %s reply", account, kind)
