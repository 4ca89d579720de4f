"""Delivery receipts: the de-facto text format and the TLVs (SMPP-NOTES, Delivery receipts; 3.4 appendix B).

Rule: parsing is tolerant, because peers lost receipts over exactly these quirks: keys in any case, `text:`
optional or last, dates with or without seconds, ids in hex or decimal. A text that is not a receipt gives None.
TLVs receipted_message_id (0x001E) and message_state (0x0427) win over the text when both are present;
network_error_code (0x0423) gives `err` when the text has none.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from .commands import CommandId
from .fields import Tlv, TlvTag, encode_body, tlv_int, tlv_value

ESM_RECEIPT_MASK = 0x3C
ESM_SMSC_RECEIPT = 0x04

#: message_state values (SMPP 3.4 section 5.2.28) and the receipt "stat" word for each.
MESSAGE_STATES = {1: "ENROUTE", 2: "DELIVRD", 3: "EXPIRED", 4: "DELETED", 5: "UNDELIV", 6: "ACCEPTD",
                  7: "UNKNOWN", 8: "REJECTD"}
STATE_OF_STAT = {v: k for k, v in MESSAGE_STATES.items()}
STATE_OF_STAT.update({"DELIVERED": 2, "UNDELIVERABLE": 5, "ACCEPTED": 6, "REJECTED": 8})

_KEY = r"(id|sub|dlvrd|submit date|done date|stat|err|text)\s*:"
_PAIR = re.compile(_KEY, re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Receipt:
    message_id: str
    stat: str  # as written (DELIVRD, UNDELIV, or a carrier code such as MK:0001)
    err: str = ""
    submit_date: str = ""
    done_date: str = ""
    text: str = ""
    state: int | None = None  # message_state, when known

    @property
    def delivered(self) -> bool:
        return self.state == 2


def is_receipt(esm_class: int) -> bool:
    return esm_class & ESM_RECEIPT_MASK == ESM_SMSC_RECEIPT


def parse_text(text: str) -> dict[str, str] | None:
    """Split receipt text into its keys; None when it has no ``id:`` or no ``stat:``."""
    matches = list(_PAIR.finditer(text))
    if not matches:
        return None
    out: dict[str, str] = {}
    for i, m in enumerate(matches):
        key = m.group(1).lower()
        if key in out:
            continue
        end = matches[i + 1].start() if i + 1 < len(matches) and key != "text" else len(text)
        out[key] = text[m.end():end].strip()
    if "id" not in out or "stat" not in out:
        return None
    return out


def parse_receipt(short_message: bytes, tlvs=()) -> Receipt | None:
    text = short_message.decode("latin-1")
    fields = parse_text(text) or {}
    tlv_id = tlv_value(tlvs, TlvTag.RECEIPTED_MESSAGE_ID)
    tlv_state = tlv_int(tlvs, TlvTag.MESSAGE_STATE)
    message_id = tlv_id.rstrip(b"\0").decode("latin-1") if tlv_id else fields.get("id")
    if message_id is None:
        return None
    stat = fields.get("stat") or MESSAGE_STATES.get(tlv_state or 0, "UNKNOWN")
    state = tlv_state if tlv_state is not None else STATE_OF_STAT.get(stat.upper())
    err = fields.get("err", "")
    if not err:
        err = network_error(tlvs)
    return Receipt(message_id=message_id, stat=stat, err=err,
                   submit_date=fields.get("submit date", ""), done_date=fields.get("done date", ""),
                   text=fields.get("text", ""), state=state)


def network_error(tlvs) -> str:
    """The network_error_code TLV (SMPP 3.4 section 5.3.2.31: network type, then a 2-octet error code) as
    "<type>:<code>" in decimal ("3:1" is GSM error 1), or "" when there is none."""
    value = tlv_value(tlvs, TlvTag.NETWORK_ERROR_CODE)
    if value is None or len(value) != 3:
        return ""
    return f"{value[0]}:{int.from_bytes(value[1:], 'big')}"


def same_message_id(a: str, b: str) -> bool:
    """True when two message ids name one message, one written in hex and the other in decimal."""
    if a == b:
        return True
    for x, y in ((a, b), (b, a)):
        try:
            if int(x, 16) == int(y, 10):
                return True
        except ValueError:
            pass
    return a.lstrip("0").lower() == b.lstrip("0").lower() and a.lstrip("0") != ""


def format_receipt(message_id: str, stat: str, err: str = "000", submit_date: str = "", done_date: str = "",
                   text: str = "", sub: str = "001", dlvrd: str | None = None) -> bytes:
    dlvrd = dlvrd if dlvrd is not None else ("001" if stat == "DELIVRD" else "000")
    return (f"id:{message_id} sub:{sub} dlvrd:{dlvrd} submit date:{submit_date} done date:{done_date} "
            f"stat:{stat} err:{err} text:{text[:20]}").encode("latin-1", "replace")


def receipt_body(message_id: str, request: dict, stat: str, submitted: float, done: float, err: str = "000") -> bytes:
    """The body of a deliver_sm receipt for a message the SMSC never saw (one the sender's own gateway made:
    held and then dropped, expired, refused), from the fields of the request it answers (a submit_sm, data_sm, or
    a submit_multi to one address): text and TLVs both name `message_id`."""
    dests = request.get("dest_addresses")
    if dests:
        ton, npi, recipient = dests[0].ton, dests[0].npi, dests[0].address
    else:
        ton, npi, recipient = request.get("dest_addr_ton", 0), request.get("dest_addr_npi", 0), \
            request.get("destination_addr", "")
    sm = request.get("short_message", b"") or b""
    text = format_receipt(message_id, stat, err, time.strftime("%y%m%d%H%M", time.gmtime(submitted)),
                          time.strftime("%y%m%d%H%M", time.gmtime(done)), sm[:20].decode("latin-1", "replace"),
                          dlvrd="000")
    return encode_body(CommandId.DELIVER_SM, source_addr_ton=ton, source_addr_npi=npi, source_addr=recipient,
                       dest_addr_ton=request.get("source_addr_ton", 0), dest_addr_npi=request.get("source_addr_npi", 0),
                       destination_addr=request.get("source_addr", ""), esm_class=ESM_SMSC_RECEIPT,
                       short_message=text,
                       tlvs=[Tlv(TlvTag.RECEIPTED_MESSAGE_ID, message_id.encode("latin-1") + b"\0"),
                             Tlv(TlvTag.MESSAGE_STATE, bytes((STATE_OF_STAT[stat],)))])
