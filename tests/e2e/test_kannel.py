"""A real Kannel (bearerbox + smsbox) as a legacy ESME bound through the proxy to the built-in simulator.

Messages go in through smsbox's HTTP sendsms and must reach the simulator as Kannel sent them (GSM text,
UDH-concatenated parts, UCS2). MO messages injected at the simulator must reach Kannel through the proxy, be
acknowledged with a deliver_sm_resp of status 0, and reach the smsbox service.

One Kannel serves the whole module (starting it costs a few seconds). Needs the Debian `kannel` package.
"""

from __future__ import annotations

from typing import Iterator

import pytest

from helpers import Stack
from kannel import SENDER, SYSTEM_ID, Kannel, require_kannel, wait_for

require_kannel()
pytestmark = pytest.mark.kannel


@pytest.fixture(scope="module")
def kannel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, Kannel]]:
    tmp = tmp_path_factory.mktemp("kannel")
    with Stack() as s:
        k = Kannel(s, tmp)
        try:
            k.start()
            yield s, k
        finally:
            k.stop()


def received_for(s: Stack, destination: str) -> list:
    return [r for r in s.sim.received if r.fields["destination_addr"] == destination]


def wait_received(s: Stack, k: Kannel, destination: str, count: int = 1) -> list:
    try:
        return wait_for(lambda: len(received_for(s, destination)) >= count and received_for(s, destination),
                        f"{count} submit_sm to {destination} at the simulator")
    except AssertionError as e:
        raise AssertionError(f"{e}\n{k.logs()}") from None


def split_udh(short_message: bytes) -> tuple[bytes, bytes]:
    udhl = short_message[0]
    return short_message[:udhl + 1], short_message[udhl + 1:]


def concat_ie(udh: bytes) -> tuple[int, int, int]:
    """(reference, total, seqnum) from the 8-bit concatenation IE (IEI 0x00); fails if there is none."""
    pos = 1
    while pos + 2 <= len(udh):
        iei, iel = udh[pos], udh[pos + 1]
        if iei == 0x00 and iel == 3:
            ref, total, seq = udh[pos + 2:pos + 5]
            return ref, total, seq
        pos += 2 + iel
    raise AssertionError(f"no IEI 0x00 concatenation element in UDH {udh.hex()}")


def test_kannel_short_gsm_text_reaches_simulator(kannel: tuple[Stack, Kannel]) -> None:
    s, k = kannel
    text = "Hello from Kannel 123"
    k.sendsms("4915550001", text)
    [r] = wait_received(s, k, "4915550001")
    f = r.fields
    assert r.system_id == SYSTEM_ID
    assert f["data_coding"] == 0
    assert f["esm_class"] == 0x03  # Kannel's store-and-forward default, unchanged by the proxy
    assert f["short_message"].decode("gsm03.38") == text
    assert f["source_addr"] == SENDER


def test_kannel_long_text_arrives_as_udh_parts(kannel: tuple[Stack, Kannel]) -> None:
    s, k = kannel
    text = "".join(f"{i:03d}abcdefg " for i in range(30))[:300]
    assert len(text) == 300
    k.sendsms("4915550002", text)
    first = wait_received(s, k, "4915550002")[0].fields
    assert first["esm_class"] & 0x40, f"first part without UDHI: esm_class=0x{first['esm_class']:02X}"
    _, total, _ = concat_ie(split_udh(first["short_message"])[0])
    assert total >= 2
    parts = wait_received(s, k, "4915550002", count=total)
    infos, payloads = [], {}
    for r in parts:
        f = r.fields
        assert f["esm_class"] == 0x43, f"part with esm_class=0x{f['esm_class']:02X}, not UDHI | 0x03"
        udh, payload = split_udh(f["short_message"])
        ref, total, seq = concat_ie(udh)
        infos.append((ref, total, seq))
        payloads[seq] = payload
    refs = {ref for ref, _, _ in infos}
    totals = {total for _, total, _ in infos}
    assert len(refs) == 1, f"parts carry different references: {infos}"
    assert totals == {len(parts)}, f"total in UDH {totals} != parts received {len(parts)}"
    assert sorted(payloads) == list(range(1, len(parts) + 1))
    joined = b"".join(payloads[i] for i in sorted(payloads)).decode("gsm03.38")
    assert joined == text


def test_kannel_ucs2_text_arrives_with_data_coding_8(kannel: tuple[Stack, Kannel]) -> None:
    s, k = kannel
    text = "您好，退订回T"
    k.sendsms("8613800000001", text, coding="2")
    [r] = wait_received(s, k, "8613800000001")
    f = r.fields
    assert f["data_coding"] == 8
    assert f["short_message"].decode("utf-16-be") == text


def test_kannel_mo_is_acknowledged_and_reaches_smsbox(kannel: tuple[Stack, Kannel]) -> None:
    s, k = kannel
    before = len(s.sim.delivered)
    s.call(lambda: s.sim.inject_mo("491700000009", "5555", "STOP please"))
    try:
        wait_for(lambda: len(s.sim.delivered) > before, "Kannel's deliver_sm_resp at the simulator")
        wait_for(lambda: any(m.get("text") == "STOP please" for m in k.mo_received),
                 "the MO at smsbox's get-url")
    except AssertionError as e:
        raise AssertionError(f"{e}\n{k.logs()}") from None
    _entry, resp = s.sim.delivered[before]
    assert resp.command_id == 0x80000005  # deliver_sm_resp
    assert resp.status == 0
    [mo] = [m for m in k.mo_received if m.get("text") == "STOP please"]
    assert mo["from"].endswith("491700000009")
    assert mo["to"] == "5555"
