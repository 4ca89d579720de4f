"""The PDU as bytes: header, the `Pdu` value, builders and renumbering.

Rule 1: a `Pdu` keeps the exact bytes it was read from; forwarding sends those bytes, never a re-encoding.
Rule 2: renumbering patches the four sequence bytes (offset 12) and touches nothing else.
Strategy: the header is four big-endian uint32 (SMPP 3.4 section 3.2); everything after offset 16 is the body,
which `fields.py` parses only when someone needs a field.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from .commands import RESPONSE_BIT, CommandId, response_id
from .status import Status

HEADER = struct.Struct(">IIII")
HEADER_LEN = 16
MAX_SEQUENCE = 0x7FFFFFFF  # SMPP 3.4 section 3.2: 0x00000001 - 0x7FFFFFFF
_SEQ = struct.Struct(">I")


class Pdu(NamedTuple):
    """One complete PDU as it came off the wire. Immutable.

    A NamedTuple rather than a frozen dataclass: two are built per relayed message, and a frozen dataclass
    costs about 1.2 us more each (its __init__ goes through object.__setattr__ per field)."""

    command_id: int
    status: int
    sequence: int
    raw: bytes

    @property
    def is_response(self) -> bool:
        return bool(self.command_id & RESPONSE_BIT)

    @property
    def body(self) -> bytes:
        return self.raw[HEADER_LEN:]

    def renumbered(self, sequence: int) -> bytes:
        return renumber(self.raw, sequence)


def from_bytes(raw: bytes) -> Pdu:
    """Wrap one framed PDU (the framing layer has checked its length)."""
    _length, command_id, status, sequence = HEADER.unpack_from(raw)
    return Pdu(command_id, status, sequence, raw)


def renumber(raw: bytes, sequence: int) -> bytes:
    return b"".join((raw[:12], _SEQ.pack(sequence), raw[16:]))


def build(command_id: int, sequence: int, body: bytes = b"", status: int = Status.ROK) -> bytes:
    return HEADER.pack(HEADER_LEN + len(body), command_id, status, sequence) + body


def response_to(request: Pdu, status: int = Status.ROK, body: bytes = b"") -> bytes:
    """The response to `request`. An error response has no body (SMPP 3.4 section 3.3): pass none."""
    return build(response_id(request.command_id), request.sequence, body, status)


def generic_nack(sequence: int, status: int) -> bytes:
    return build(CommandId.GENERIC_NACK, sequence, b"", status)
