"""Which PDU a peer may send in which bind state: protocol fact kept as a table (SMPP 3.4 section 2.3, 5.0
table 2-3).

`ALLOWED[(role, state)]` is the set of command_ids the *peer* may send to us. ``Role.SMSC`` is our side of the
downstream leg (the sender is an ESME to us); ``Role.ESME`` our side of the upstream leg. enquire_link is
accepted in OPEN as SMPP 5.0 allows, since some 3.4 clients send it before binding. A request outside the
table is answered with RINVBNDSTS (0x04); session/ keeps the current state and consults this table.
"""

from __future__ import annotations

from enum import Enum

from .commands import CommandId as C


class Role(Enum):
    SMSC = "smsc"
    ESME = "esme"


class BindState(Enum):
    OPEN = "open"
    BOUND_TX = "bound_tx"
    BOUND_RX = "bound_rx"
    BOUND_TRX = "bound_trx"
    CLOSED = "closed"


_LINK = frozenset({C.ENQUIRE_LINK, C.ENQUIRE_LINK_RESP, C.UNBIND, C.UNBIND_RESP, C.GENERIC_NACK})
# What an ESME sends to a transmitter-capable bind, and the responses it gives to a receiver-capable one.
_ESME_TX = frozenset({C.SUBMIT_SM, C.DATA_SM, C.SUBMIT_MULTI, C.QUERY_SM, C.CANCEL_SM, C.REPLACE_SM})
_ESME_RX = frozenset({C.DELIVER_SM_RESP, C.DATA_SM_RESP})
_SMSC_TX = frozenset({C.SUBMIT_SM_RESP, C.DATA_SM_RESP, C.SUBMIT_MULTI_RESP, C.QUERY_SM_RESP,
                      C.CANCEL_SM_RESP, C.REPLACE_SM_RESP})
_SMSC_RX = frozenset({C.DELIVER_SM, C.DATA_SM, C.ALERT_NOTIFICATION})
_BIND_RESPS = frozenset({C.BIND_RECEIVER_RESP, C.BIND_TRANSMITTER_RESP, C.BIND_TRANSCEIVER_RESP})

ALLOWED: dict[tuple[Role, BindState], frozenset[int]] = {
    (Role.SMSC, BindState.OPEN): frozenset({C.BIND_RECEIVER, C.BIND_TRANSMITTER, C.BIND_TRANSCEIVER,
                                            C.ENQUIRE_LINK, C.ENQUIRE_LINK_RESP, C.UNBIND, C.GENERIC_NACK}),
    (Role.SMSC, BindState.BOUND_TX): _LINK | _ESME_TX,
    (Role.SMSC, BindState.BOUND_RX): _LINK | _ESME_RX,
    (Role.SMSC, BindState.BOUND_TRX): _LINK | _ESME_TX | _ESME_RX,
    (Role.SMSC, BindState.CLOSED): frozenset(),
    (Role.ESME, BindState.OPEN): _BIND_RESPS | frozenset({C.OUTBIND, C.ENQUIRE_LINK, C.ENQUIRE_LINK_RESP,
                                                          C.GENERIC_NACK, C.UNBIND}),
    (Role.ESME, BindState.BOUND_TX): _LINK | _SMSC_TX,
    (Role.ESME, BindState.BOUND_RX): _LINK | _SMSC_RX,
    (Role.ESME, BindState.BOUND_TRX): _LINK | _SMSC_TX | _SMSC_RX,
    (Role.ESME, BindState.CLOSED): frozenset(),
}

#: The state a successful bind leads to.
BIND_TRANSITIONS: dict[int, BindState] = {
    C.BIND_TRANSMITTER: BindState.BOUND_TX,
    C.BIND_RECEIVER: BindState.BOUND_RX,
    C.BIND_TRANSCEIVER: BindState.BOUND_TRX,
}

BOUND = frozenset({BindState.BOUND_TX, BindState.BOUND_RX, BindState.BOUND_TRX})
#: Bind states in which the SMSC may send deliver_sm to the ESME.
RECEIVING = frozenset({BindState.BOUND_RX, BindState.BOUND_TRX})
TRANSMITTING = frozenset({BindState.BOUND_TX, BindState.BOUND_TRX})


def allowed(role: Role, state: BindState, command_id: int) -> bool:
    return command_id in ALLOWED[(role, state)]
