"""SMPP 3.4 protocol, sans I/O: framing, PDUs, fields, bind states, text, concatenation, receipts."""

from .commands import CommandId
from .errors import PduError, SmppError
from .framing import MAX_PDU_LEN, NEED_DATA, PduBuffer
from .pdu import Pdu
from .status import Status

__all__ = ["CommandId", "MAX_PDU_LEN", "NEED_DATA", "Pdu", "PduBuffer", "PduError", "SmppError", "Status"]
