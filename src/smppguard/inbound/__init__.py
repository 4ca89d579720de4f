"""Learning from what the SMSC sends back (DESIGN, inbound/): a recipient's reply opts out, opts in again or
confirms consent; a receipt shows a dead, suspended or carrier-blacklisted number. Pure: a deliver_sm (or
data_sm) in, the facts it teaches out. The store writes them (store/learning.py).

Rule 1: an MO's source_addr is the recipient; its destination_addr is the address the recipient replied to,
which is the sender's source_addr: the same address (`sender_match = "exact"`), or for long codes that carry a
per-customer extension (CN 106... numbers) the configured prefix it starts with.
Rule 2: an MO is decoded by its data_coding (binary is never text), reassembled when concatenated
(reassembly.py), normalised and matched (keywords.py). A receipt is read TLVs first, text second
(smpp/receipt.py), and classified by its codes (receipts.py); its source_addr is the number it was for.
Rule 3: what cannot be read (binary text, a malformed body) teaches nothing and stops nothing: the deliver_sm is
relayed to the sender all the same. A reply with a keyword (or a receipt with a code) whose source_addr is no
phone number becomes an UNREAD fact: it is logged, audited and counted, since a lost opt-out must not go unseen.
Rule 4: a reply's source_addr is read the way SMSCs send it, not only the way SMPP says they should: a national
number marked international (TON 1), with or without its country code, "+" or "00" (`reply_numbers`). The TON
is tried first; when it gives no valid number, or a number other than the default region's reading of the same
digits (13012345678 is both +1 301 234 5678 and +86 130 1234 5678), the digits are read as the default region
would read them. An opt-out is learned for every number the address reads as (refusing one message too many is
the safe mistake); every other fact takes the first reading.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..policy.numbers import normalise as e164
from ..policy.numbers import region_hint
from ..smpp import text as smpp_text
from ..smpp.commands import CommandId
from ..smpp.concat import concat_info, split_udh
from ..smpp.errors import PduError
from ..smpp.fields import TlvTag, parse_body, submit_view, tlv_int, tlv_value
from ..smpp.pdu import Pdu
from ..smpp.receipt import is_receipt, parse_receipt
from .keywords import CONFIRM, HELP, OPTIN, OPTOUT, Keywords
from .reassembly import Reassembler
from .receipts import ReceiptCodes

__all__ = ["CONFIRM", "DELIVERED_FACT", "HELP", "Fact", "Learner", "LearnerSettings", "OPTIN", "OPTOUT", "UNREAD",
           "reply_numbers"]


@dataclass(frozen=True)
class LearnerSettings:
    keywords: Keywords = field(default_factory=Keywords.of)
    codes: ReceiptCodes = field(default_factory=ReceiptCodes.of)
    sender_prefixes: tuple[str, ...] = ()  # long codes that carry an extension (Rule 1)
    reassembly_timeout_s: float = 60.0
    default_region: str | None = None
    default_codec: str = smpp_text.GSM
    ia5_codec: str = "ascii"
    count_deliveries: bool = False  # a delivered receipt is a fact too (the credit score counts them)


@dataclass(frozen=True)
class Fact:
    """One thing learned: `kind` is optout / optin / confirm (from a reply) or dead / suspended / blacklisted /
    delivered (from a receipt); `evidence` is what it was learned from, kept with the change. An UNREAD fact
    (Rule 3) has number 0, what it would have been in `keyword`, and in `evidence` the address as it came
    ("address", "ton") and why it could not be read ("reason")."""

    kind: str
    number: int
    account: str
    sender: str  # the sender's address the reply was to; "" for a receipt
    keyword: str  # the keyword, or the receipt's code
    evidence: dict[str, Any]


class Learner:
    def __init__(self, settings: LearnerSettings = LearnerSettings()):
        self.settings = settings
        self.reassembly = Reassembler(settings.reassembly_timeout_s)
        # longest first, so 10690123 wins over 1069 for 10690123456
        self._prefixes = tuple(sorted(settings.sender_prefixes, key=len, reverse=True))

    def sender_of(self, replied_to: str) -> str:
        """The sender's source_addr for the address an MO was sent to (Rule 1)."""
        for prefix in self._prefixes:
            if replied_to.startswith(prefix):
                return prefix
        return replied_to

    def observe(self, account: str, pdu: Pdu, now: float) -> list[Fact]:
        """The facts a deliver_sm or data_sm teaches. Most teach nothing (a delivered receipt, a reply with no
        keyword), so the cheap tests come first and the number is located only for what teaches something."""
        try:
            if pdu.command_id == CommandId.DELIVER_SM:  # the layout of submit_sm: its fast reader
                v = submit_view(pdu.body, pdu.sequence)
                source, ton, to, esm_class = v.source_addr, v.source_addr_ton, v.destination_addr, v.esm_class
                data_coding, tlvs = v.data_coding, v.tlvs
                message = v.short_message or tlv_value(tlvs, TlvTag.MESSAGE_PAYLOAD) or b""
            elif pdu.command_id == CommandId.DATA_SM:
                body = parse_body(pdu.command_id, pdu.body, pdu.sequence)
                source, ton, to = body["source_addr"], body["source_addr_ton"], body["destination_addr"]
                esm_class, data_coding, tlvs = body["esm_class"], body["data_coding"], body["tlvs"]
                message = tlv_value(tlvs, TlvTag.MESSAGE_PAYLOAD) or b""
            else:
                return []
        except PduError:
            return []  # Rule 3
        if is_receipt(esm_class):
            return self._receipt(account, source, ton, tlvs, message)
        if esm_class & 0x3C:  # another kind of SMSC message (intermediate notification, manual ack ...)
            return []
        concat = concat_info(message, esm_class, tlvs)
        _udh, payload = split_udh(message, esm_class)
        if concat is None:
            return self._reply(account, (source, ton), to, payload, data_coding, True)
        facts = []
        for (acct, who, replied_to), joined, dc, complete in self.reassembly.add((account, (source, ton), to),
                                                                                concat, payload, data_coding, now):
            facts += self._reply(acct, who, replied_to, joined, dc, complete)
        return facts

    def expire(self, now: float) -> list[Fact]:
        """Judge the concatenated replies whose remaining parts never came, on the parts that did."""
        facts = []
        for (acct, who, replied_to), joined, data_coding, complete in self.reassembly.expire(now):
            facts += self._reply(acct, who, replied_to, joined, data_coding, complete)
        return facts

    def _numbers(self, source: str, ton: int) -> tuple[int, ...]:
        return reply_numbers(source, ton, self.settings.default_region)

    def _unread(self, account: str, sender: str, source: str, ton: int, kind: str, said: str,
                evidence: dict) -> Fact:
        region = self.settings.default_region
        # the address itself is not in the reason: it goes where the audit's recipient goes, masked
        reason = (f"source_addr is not a phone number (TON {ton}{', default region ' + region if region else ''})"
                  + region_hint(source, region))
        return Fact(UNREAD, 0, account, sender, said, {**evidence, "address": source, "ton": ton, "reason": reason,
                                                      "lost": kind})

    def _reply(self, account: str, who: tuple[str, int], replied_to: str, payload: bytes, data_coding: int,
               complete: bool) -> list[Fact]:
        s = self.settings
        text = smpp_text.decode(payload, data_coding, s.default_codec, s.ia5_codec)
        if text is None:
            return []
        said = s.keywords.match(text)
        if not said:
            return []
        numbers = self._numbers(*who)
        sender = self.sender_of(replied_to)
        evidence = {"text": text[:160], "to": replied_to, "account": account}
        if not complete:
            evidence["incomplete"] = True
        if not numbers:
            return [self._unread(account, sender, *who, *said[0], evidence)]
        # Rule 4: an opt-out for every reading, anything else for the first
        return [Fact(intent, number, account, sender, keyword, evidence) for intent, keyword in said
                for number in (numbers if intent == OPTOUT else numbers[:1])]

    def _receipt(self, account: str, source: str, ton: int, tlvs: list, message: bytes) -> list[Fact]:
        state = tlv_int(tlvs, TlvTag.MESSAGE_STATE)
        if state == DELIVERED or (state is None and _DELIVERED_TEXT in message):
            # the common case: a delivered receipt says nothing bad about the number (TLVs win)
            if not self.settings.count_deliveries:
                return []
            numbers = self._numbers(source, ton)
            return [Fact(DELIVERED_FACT, numbers[0], account, "", "DELIVRD", {})] if numbers else []
        receipt = parse_receipt(message, tlvs)
        if receipt is None:
            return []
        found = self.settings.codes.classify(receipt)
        if found is None:
            return []
        kind, code = found
        evidence = {"receipt": receipt.message_id, "stat": receipt.stat, "err": receipt.err, "account": account}
        numbers = self._numbers(source, ton)
        if not numbers:
            return [self._unread(account, "", source, ton, kind, code, evidence)]
        return [Fact(kind, numbers[0], account, "", code, evidence)]


def reply_numbers(address: str, ton: int, default_region: str | None) -> tuple[int, ...]:
    """The numbers an MO's or a receipt's source_addr can be read as, the TON's reading first (Rule 4); empty
    when it is no phone number at all. With a default region, the digits without a "+" are also read the way an
    address of TON 0 is (national, trunk prefix, country code, "00" and the country code): SMSCs mark national
    numbers international (TON 1), and some put a "+" or "00" before a number without its country code."""
    first = e164(address, ton, default_region)
    if default_region is None:
        return () if first is None else (first,)
    digits = address.strip().removeprefix("+")
    readings = [first, e164(digits, 0, default_region)]
    if digits.startswith("00"):  # "00" before a national number: an international prefix with no country code
        readings.append(e164(digits[2:], 0, default_region))
    return tuple(dict.fromkeys(n for n in readings if n is not None))


DELIVERED = 2  # message_state DELIVERED
DELIVERED_FACT = "delivered"
UNREAD = "unread"  # a reply or receipt that would teach something, from an address that is no phone number
_DELIVERED_TEXT = b"stat:DELIVRD"
