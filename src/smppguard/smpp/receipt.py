"""Delivery receipts: the de-facto text format and the TLVs (SMPP-NOTES, Delivery receipts; 3.4 appendix B).

Rule: parsing is tolerant, because peers lost receipts over exactly these quirks: keys in any case, `text:`
optional or last, dates with or without seconds, ids in hex or decimal. A text that is not a receipt gives None.
TLVs receipted_message_id (0x001E) and message_state (0x0427) win over the text when both are present;
network_error_code (0x0423) gives `err` when the text has none.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .fields import TlvTag, tlv_int, tlv_value

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
