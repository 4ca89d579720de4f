"""The protocol layer's one error family.

Rule: anything other than `SmppError` escaping the codec is a bug. A `PduError` carries the command_status
the peer should be told (the h11 ``error_status_hint`` idea) and the sequence number when the header could be
read, so the session can answer generic_nack to the right request.
"""

from __future__ import annotations

from .status import Status


class SmppError(Exception):
    """A protocol-level problem. ``status`` is the SMPP command_status to answer with."""

    def __init__(self, msg: str, status: int = Status.RSYSERR, sequence: int | None = None):
        super().__init__(msg)
        self.status = Status(status) if status in Status._value2member_map_ else status
        self.sequence = sequence


class PduError(SmppError):
    """The peer sent bytes that are not a valid PDU."""

    def __init__(self, msg: str, status: int = Status.RINVCMDLEN, sequence: int | None = None,
                 *, fatal: bool = False):
        super().__init__(msg, status, sequence)
        #: True when the byte stream cannot be resynchronised (bad command_length): answer, then close.
        self.fatal = fatal
