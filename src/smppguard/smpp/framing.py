"""Splitting a byte stream into PDUs, sans I/O (the h11 receive-buffer pattern).

Use: ``buf.receive_data(chunk)`` as bytes arrive (``b""`` at EOF), then call ``buf.next_pdu()`` until it
returns ``NEED_DATA``. Rule: a command_length outside [16, limit] cannot be resynchronised, so it raises a
*fatal* `PduError` (answer generic_nack 0x02, then close; SMPP-NOTES, Framing). Nothing here does I/O.
"""

from __future__ import annotations

from typing import Final

from .errors import PduError
from .pdu import HEADER, HEADER_LEN, Pdu
from .status import Status

#: Largest PDU accepted, in octets. node-smpp caps at 16,384; message_payload may carry up to 64 KiB (SMPP 3.4
#: section 5.3.2.32), and a submit_multi to 255 destinations adds ~6 KiB of addresses, so the cap leaves room for
#: both while bounding what one peer can make us buffer.
MAX_PDU_LEN: Final = 72 * 1024
_new_tuple = tuple.__new__  # a NamedTuple from a tuple of all its fields, in C: two PDUs are read per message


class _NeedData:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Final = _NeedData()


class PduBuffer:
    """Bytes in, `Pdu` out."""

    __slots__ = ("_buf", "_eof", "max_pdu_len")

    def __init__(self, max_pdu_len: int = MAX_PDU_LEN):
        self._buf = bytearray()
        self._eof = False
        self.max_pdu_len = max_pdu_len

    def receive_data(self, data: bytes) -> None:
        if data:
            self._buf += data
        else:
            self._eof = True

    @property
    def buffered(self) -> int:
        return len(self._buf)

    @property
    def has_pdu(self) -> bool:
        """Whether the buffer holds a whole PDU (or a header that next_pdu will refuse)."""
        buf = self._buf
        return len(buf) >= HEADER_LEN and len(buf) >= HEADER.unpack_from(buf)[0]

    def next_pdu(self) -> Pdu | _NeedData:
        buf = self._buf
        if len(buf) < HEADER_LEN:
            if self._eof and buf:
                raise PduError(f"connection closed inside a PDU header ({len(buf)} octets)", fatal=True)
            return NEED_DATA
        length, command_id, status, sequence = HEADER.unpack_from(buf)
        if length < HEADER_LEN or length > self.max_pdu_len:
            raise PduError(
                f"command_length {length} outside [{HEADER_LEN}, {self.max_pdu_len}]",
                Status.RINVCMDLEN, sequence, fatal=True,
            )
        if len(buf) < length:
            if self._eof:
                raise PduError(f"connection closed inside a PDU ({len(buf)} of {length} octets)",
                               Status.RINVCMDLEN, sequence, fatal=True)
            return NEED_DATA
        raw = bytes(buf[:length])
        del buf[:length]  # prefix deletion is amortised O(1) on bytearray
        return _new_tuple(Pdu, (command_id, status, sequence, raw))
