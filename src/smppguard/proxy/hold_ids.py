"""The ids of released held messages: the SMSC's id of each maps to the proxy id the sender got, so that its
receipts reach the sender with the proxy id (in receipted_message_id and in the text's id:), and a query_sm,
cancel_sm or replace_sm with the proxy id reaches the SMSC with its own id (and a query_sm_resp comes back with
ours). Pure: no I/O; the hold queue keeps the maps in the store and gives them here.

Rule: bounded in memory (MAX_MAPPED, the oldest forgotten first) and in time (each map's `until`); a receipt of
a message forgotten here passes unchanged, with the SMSC's id.
"""

from __future__ import annotations

import collections
import re

from ..smpp.commands import CommandId
from ..smpp.errors import PduError
from ..smpp.fields import Tlv, TlvTag, encode_body, parse_body, tlv_value
from ..smpp.pdu import Pdu, build
from ..smpp.receipt import is_receipt

#: Most maps kept in memory (about 300 bytes each); past it the oldest go first.
MAX_MAPPED = 1_000_000
_ID_IN_TEXT = re.compile(rb"(id:\s*)(\S+)", re.IGNORECASE)


class Translated:
    """A query_sm / cancel_sm / replace_sm of a released message, sent with the SMSC's id; the answer gets the
    proxy id back."""

    __slots__ = ("proxy_id",)

    def __init__(self, proxy_id: str):
        self.proxy_id = proxy_id


class IdMap:
    def __init__(self) -> None:
        self._by_smsc: dict[tuple[str, str], str] = {}  # (account, SMSC id) -> proxy id
        self._by_proxy: dict[tuple[str, str], str] = {}  # (account, proxy id) -> SMSC id
        self._expiry: collections.deque[tuple[float, str, str, str]] = collections.deque()

    def __bool__(self) -> bool:
        return bool(self._by_smsc)

    def __len__(self) -> int:
        return len(self._by_smsc)

    def translate(self, pdu: Pdu, fields: dict, account: str) -> tuple[bytes, Translated] | None:
        """A query_sm / cancel_sm / replace_sm naming a released message by its proxy id: the request with the
        SMSC's id, and the context that gives the answer the proxy id back."""
        if not self._by_proxy:
            return None
        proxy_id = fields["message_id"]
        smsc_id = self._by_proxy.get((account, proxy_id))
        if smsc_id is None:
            return None
        new = encode_body(pdu.command_id, dict(fields, message_id=smsc_id))
        return build(pdu.command_id, pdu.sequence, new), Translated(proxy_id)

    @staticmethod
    def untranslate(context: Translated, response: Pdu) -> bytes:
        if response.command_id != CommandId.QUERY_SM_RESP or not response.body:
            return response.raw
        end = response.body.find(b"\0")
        if end < 0:
            return response.raw
        body = context.proxy_id.encode("latin-1") + response.body[end:]
        return build(response.command_id, response.sequence, body, response.status)

    # --- receipts of released messages ---------------------------------------------------------------------

    def rewrite_receipt(self, pdu: Pdu, account: str) -> Pdu:
        """A receipt of a released message, with the proxy id in receipted_message_id and in the text's id:;
        anything else unchanged (the same Pdu)."""
        try:
            f = parse_body(pdu.command_id, pdu.body, pdu.sequence)
        except PduError:
            return pdu
        if not is_receipt(f["esm_class"]):
            return pdu
        tlv = tlv_value(f["tlvs"], TlvTag.RECEIPTED_MESSAGE_ID)
        text = f.get("short_message", b"") or tlv_value(f["tlvs"], TlvTag.MESSAGE_PAYLOAD) or b""
        m = _ID_IN_TEXT.search(text)
        proxy_id = None
        for candidate in ((tlv.rstrip(b"\0").decode("latin-1") if tlv else None),
                          (m.group(2).decode("latin-1") if m else None)):
            if candidate:
                proxy_id = self._find(account, candidate)
                if proxy_id is not None:
                    break
        if proxy_id is None:
            return pdu
        pid = proxy_id.encode("latin-1")
        if tlv is not None:
            f["tlvs"] = [_tlv(t[0], pid + b"\0") if t[0] == TlvTag.RECEIPTED_MESSAGE_ID else t for t in f["tlvs"]]
        if m is not None:
            new_text = text[:m.start(2)] + pid + text[m.end(2):]
            if f.get("short_message"):
                f["short_message"] = new_text
            else:
                f["tlvs"] = [_tlv(t[0], new_text) if t[0] == TlvTag.MESSAGE_PAYLOAD else t for t in f["tlvs"]]
        raw = build(pdu.command_id, pdu.sequence, encode_body(pdu.command_id, f), pdu.status)
        return Pdu(pdu.command_id, pdu.status, pdu.sequence, raw)

    def _find(self, account: str, smsc_id: str) -> str | None:
        found = self._by_smsc.get((account, smsc_id))
        if found is not None:
            return found
        for alt in _id_forms(smsc_id):  # hex in one place, decimal in the other (SMPP-NOTES)
            found = self._by_smsc.get((account, alt))
            if found is not None:
                return found
        return None

    def remember(self, account: str, smsc_id: str, proxy_id: str, until: float) -> None:
        self._by_smsc[(account, smsc_id)] = proxy_id
        self._by_proxy[(account, proxy_id)] = smsc_id
        self._expiry.append((until, account, smsc_id, proxy_id))
        if len(self._expiry) > MAX_MAPPED:  # memory stays bounded: the oldest are forgotten first
            self.forget(self._expiry[0][0])

    def forget(self, now: float) -> None:
        expiry = self._expiry
        while expiry and expiry[0][0] <= now:
            _t, account, smsc_id, proxy_id = expiry.popleft()
            if self._by_smsc.get((account, smsc_id)) == proxy_id:
                del self._by_smsc[(account, smsc_id)]
            if self._by_proxy.get((account, proxy_id)) == smsc_id:
                del self._by_proxy[(account, proxy_id)]



def _id_forms(message_id: str) -> list[str]:
    """The same id written the other way: hex as decimal, decimal as hex (SMPP-NOTES, receipts)."""
    out = []
    try:
        out.append(str(int(message_id, 16)))
    except ValueError:
        pass
    if message_id.isdigit():
        n = int(message_id)
        out += [format(n, "x"), format(n, "X")]
    return out


def _tlv(tag: int, value: bytes) -> Tlv:
    return Tlv(tag, value)
