"""state.py: the ALLOWED table against an expectation written independently, in the shape of SMPP 3.4 table
2-1 (section 2.4: each PDU, who issues it, and the session states it needs), over every (role, state, command).

`Role.SMSC` is our side of the downstream leg, so the peer sending to us is an ESME; `Role.ESME` is our side
of the upstream leg, so the peer is an SMSC.
"""

from __future__ import annotations

import itertools

import pytest

from smppguard.smpp.commands import BINDS, CommandId
from smppguard.smpp.state import ALLOWED, BIND_TRANSITIONS, BOUND, RECEIVING, TRANSMITTING, BindState, Role, allowed

C = CommandId
OPEN, TX, RX, TRX, CLOSED = (BindState.OPEN, BindState.BOUND_TX, BindState.BOUND_RX, BindState.BOUND_TRX,
                             BindState.CLOSED)
ANY_BOUND = {TX, RX, TRX}
ESME, SMSC, BOTH = "esme", "smsc", "both"

#: (issuer, command, states in which the issuer may send it).
SPEC: list[tuple[str, CommandId, set[BindState]]] = [
    # Binding happens in OPEN: the ESME asks, the SMSC answers or, unbound, invites with outbind (4.1).
    (ESME, C.BIND_TRANSMITTER, {OPEN}),
    (ESME, C.BIND_RECEIVER, {OPEN}),
    (ESME, C.BIND_TRANSCEIVER, {OPEN}),
    (SMSC, C.BIND_TRANSMITTER_RESP, {OPEN}),
    (SMSC, C.BIND_RECEIVER_RESP, {OPEN}),
    (SMSC, C.BIND_TRANSCEIVER_RESP, {OPEN}),
    (SMSC, C.OUTBIND, {OPEN}),
    # Link management from either side in any bound state (4.2, 4.3, 4.11). SMPP 5.0 table 2-3 also allows
    # enquire_link(_resp) and generic_nack in OPEN; unbind in OPEN is accepted so the session can answer it.
    (BOTH, C.UNBIND, ANY_BOUND | {OPEN}),
    (BOTH, C.UNBIND_RESP, ANY_BOUND),
    (BOTH, C.ENQUIRE_LINK, ANY_BOUND | {OPEN}),
    (BOTH, C.ENQUIRE_LINK_RESP, ANY_BOUND | {OPEN}),
    (BOTH, C.GENERIC_NACK, ANY_BOUND | {OPEN}),
    # Submission: a transmitter-capable ESME asks, the SMSC answers (4.4, 4.5, 4.8-4.10).
    (ESME, C.SUBMIT_SM, {TX, TRX}),
    (ESME, C.SUBMIT_MULTI, {TX, TRX}),
    (ESME, C.QUERY_SM, {TX, TRX}),
    (ESME, C.CANCEL_SM, {TX, TRX}),
    (ESME, C.REPLACE_SM, {TX, TRX}),
    (SMSC, C.SUBMIT_SM_RESP, {TX, TRX}),
    (SMSC, C.SUBMIT_MULTI_RESP, {TX, TRX}),
    (SMSC, C.QUERY_SM_RESP, {TX, TRX}),
    (SMSC, C.CANCEL_SM_RESP, {TX, TRX}),
    (SMSC, C.REPLACE_SM_RESP, {TX, TRX}),
    # Delivery: the SMSC sends to a receiver-capable ESME, which answers (4.6, 4.12).
    (SMSC, C.DELIVER_SM, {RX, TRX}),
    (SMSC, C.ALERT_NOTIFICATION, {RX, TRX}),
    (ESME, C.DELIVER_SM_RESP, {RX, TRX}),
    # data_sm goes both ways (4.7): ESME -> SMSC as a submission, SMSC -> ESME as a delivery.
    (ESME, C.DATA_SM, {TX, TRX}),
    (SMSC, C.DATA_SM_RESP, {TX, TRX}),
    (SMSC, C.DATA_SM, {RX, TRX}),
    (ESME, C.DATA_SM_RESP, {RX, TRX}),
]

PEER = {Role.SMSC: ESME, Role.ESME: SMSC}


def expected(role: Role, state: BindState, command_id: CommandId) -> bool:
    return any(issuer in (PEER[role], BOTH) and command == command_id and state in states
               for issuer, command, states in SPEC)


def test_state_spec_names_every_command():
    assert {command for _, command, _ in SPEC} == set(CommandId)


TRIPLES = list(itertools.product(Role, BindState, CommandId))


@pytest.mark.parametrize("role,state,command_id", TRIPLES,
                         ids=[f"{r.value}-{s.value}-{c.name.lower()}" for r, s, c in TRIPLES])
def test_state_allowed(role: Role, state: BindState, command_id: CommandId):
    assert allowed(role, state, command_id) == expected(role, state, command_id)


def test_state_table_has_every_role_and_state():
    assert set(ALLOWED) == set(itertools.product(Role, BindState))


@pytest.mark.parametrize("role", list(Role))
def test_state_unknown_command_never_allowed(role: Role):
    for state in BindState:
        assert not allowed(role, state, 0x00000010)


def test_state_bind_transitions():
    assert BIND_TRANSITIONS == {C.BIND_TRANSMITTER: TX, C.BIND_RECEIVER: RX, C.BIND_TRANSCEIVER: TRX}
    assert set(BIND_TRANSITIONS) == BINDS


def test_state_groups():
    assert BOUND == {TX, RX, TRX}
    assert RECEIVING == {RX, TRX}
    assert TRANSMITTING == {TX, TRX}
