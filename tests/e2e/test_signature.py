"""The signature rule through the running proxy: smpplib sends UCS2 and GSM text, single and concatenated, and
what reaches an SMSC that shares no code with the proxy (tests/rawsmsc.py) is what the rule let through.

Signatures are registered the way an operator does it (`smppguard signature add`) while the daemon runs: the
change log carries them into its Index.
"""

from __future__ import annotations

import pytest
import smpplib.smpp
from click.testing import CliRunner

from helpers import CN_ANY_HOUR, Stack, make_config, rows, smpplib_client, wait_for
from rawsmsc import RawSmsc
from smppguard.cli import main
from smppguard.smpp.concat import build_udh
from smppguard.smpp.status import Status

POLICY = CN_ANY_HOUR + """
[rules.frequency]
enabled = false

[rules.signature]
enabled = true
where = "{where}"
status = "0x45"
{extra}
"""
MARKETING = "新品上市, 全场五折, 回T退订"
UCS2, GSM = 0x08, 0x00


def config(tmp_path, where="start", extra=""):
    return make_config(POLICY.format(where=where, extra=extra), store={"path": str(tmp_path / "guard.db")},
                       session={"response_timeout": 5.0, "enquire_link_interval": 30.0})


class Sender:
    def __init__(self, stack: Stack, account: str = "acme"):
        self.client = smpplib_client(stack.address)
        self.client.bind_transmitter(system_id=account, password="pw")
        self.ref = 0

    def submit(self, number: str, payload: bytes, data_coding: int = UCS2, esm_class: int = 0,
               source: str = "10690000") -> int:
        pdu = smpplib.smpp.make_pdu("submit_sm", client=self.client, source_addr_ton=0, source_addr=source,
                                    dest_addr_ton=1, dest_addr_npi=1, destination_addr=number,
                                    short_message=payload, data_coding=data_coding, esm_class=esm_class)
        self.client.send_pdu(pdu)
        while True:
            got = self.client.read_pdu()
            if got.command == "submit_sm_resp" and got.sequence == pdu.sequence:
                return got.status

    def text(self, number: str, text: str, **kw) -> int:
        return self.submit(number, text.encode("utf-16-be"), **kw)

    def parts(self, number: str, texts: list[str], order=None, **kw) -> list[int]:
        """A concatenated UCS2 message (UDH), its parts sent in `order` (seqnums, 1-based); their statuses."""
        self.ref += 1
        order = order or list(range(1, len(texts) + 1))
        return [self.submit(number, build_udh(self.ref, len(texts), i) + texts[i - 1].encode("utf-16-be"),
                            esm_class=0x40, **kw) for i in order]

    def close(self) -> None:
        self.client.disconnect()


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), prog_name="smppguard", catch_exceptions=False)


def register(stack: Stack, path, *args: str) -> None:
    r = invoke("signature", "add", *args, "--db", str(path))
    assert r.exit_code == 0, r.output
    (last,) = rows(path, "SELECT MAX(id) FROM changelog")[0]
    wait_for(lambda: stack.store.upkeep.index.change_id >= last, what="the Index has the signature")


def refusals(path, n: int = 1) -> list[str]:
    """The reasons of the signature rule's refusals in the audit log, once there are `n` (it is written in
    batches, a moment after the answer)."""
    def found():
        got = rows(path, "SELECT reason FROM audit WHERE rule = 'signature' AND action = 'reject' ORDER BY id")
        return got if len(got) >= n else None
    return [reason for (reason,) in wait_for(found, what=f"{n} refusals audited")]


def test_marketing_without_the_accounts_signature_is_refused_and_with_it_passes(tmp_path):
    path = tmp_path / "guard.db"
    with RawSmsc() as smsc, Stack(config(tmp_path), store=True, upstream=smsc.address) as stack:
        sender = Sender(stack)
        try:
            # nothing registered yet: refused, and the reason says why
            assert sender.text("8613800000001", "【ACME】" + MARKETING) == 0x45
            assert "acme has no signature registered" in refusals(path)[0]
            register(stack, path, "acme", "ACME", "--id", "91110000MA01")
            assert sender.text("8613800000002", "【ACME】" + MARKETING) == Status.ROK
            assert sender.text("8613800000003", MARKETING) == 0x45  # no signature
            assert sender.text("8613800000004", "【OTHER】" + MARKETING) == 0x45  # another company's
            assert sender.text("8613800000005", "[ACME]" + MARKETING) == 0x45  # half-width: not configured
            assert sender.text("8613800000006", MARKETING + "【ACME】") == 0x45  # at the end, not the start
            assert sender.text("8613800000007", " 【 ACME 】" + MARKETING) == Status.ROK  # spaces do not matter
            assert sender.submit("8613800000008", "【ACME】 sale".encode("utf-16-be"), UCS2) == Status.ROK
            # GSM 7-bit text: 【 is not in the GSM alphabet, so a GSM text cannot carry one
            assert sender.submit("8613800000009", b"ACME sale", GSM) == 0x45
            assert smsc.wait(lambda: len(smsc.received) == 3, what="three forwarded")
            assert sorted(d for r in smsc.received for d in r.destinations) == [
                "8613800000002", "8613800000007", "8613800000008"]
            reasons = refusals(path, 6)
            assert "【OTHER】 is not registered for account acme" in reasons[2]  # audited with what was found
            assert "no signature at the start" in reasons[1]
        finally:
            sender.close()


def test_a_signature_for_one_source_address_and_the_half_width_form_when_configured(tmp_path):
    path = tmp_path / "guard.db"
    with RawSmsc() as smsc, Stack(config(tmp_path, extra='brackets = ["【】", "[]"]'), store=True,
                                  upstream=smsc.address) as stack:
        sender = Sender(stack)
        try:
            register(stack, path, "acme", "艾克美", "--source-addr", "10690001")
            assert sender.text("8613800000001", "[艾克美]" + MARKETING, source="10690001") == Status.ROK
            assert sender.text("8613800000002", "【艾克美】" + MARKETING, source="10690001") == Status.ROK
            assert sender.text("8613800000003", "【艾克美】" + MARKETING, source="10690002") == 0x45  # other source
            assert smsc.wait(lambda: len(smsc.received) == 2, what="two forwarded")
        finally:
            sender.close()


@pytest.mark.parametrize("where, texts, order, expected", [
    # start: judged on the first part, before anything goes out
    pytest.param("start", ["【ACME】新品上市,", "全场五折, 回T退订"], [1, 2], [0, 0], id="start-signed"),
    pytest.param("start", ["新品上市,", "全场五折, 回T退订"], [1, 2], [0x45, 0x45], id="start-unsigned"),
    # the first part arrives last: judged when the whole text is there
    pytest.param("start", ["【ACME】新品上市,", "全场五折, 回T退订"], [2, 1], [0, 0], id="start-signed-reversed"),
    pytest.param("start", ["新品上市,【ACME】", "全场五折"], [2, 1], [0, 0x45], id="start-unsigned-reversed"),
    # end: judged on the whole text
    pytest.param("end", ["新品上市,", "全场五折【ACME】"], [1, 2], [0, 0], id="end-signed"),
    pytest.param("end", ["【ACME】新品上市,", "全场五折"], [1, 2], [0, 0x45], id="end-unsigned"),
])
def test_a_concatenated_message_is_judged_as_a_whole(tmp_path, where, texts, order, expected):
    path = tmp_path / "guard.db"
    with RawSmsc() as smsc, Stack(config(tmp_path, where), store=True, upstream=smsc.address) as stack:
        sender = Sender(stack)
        try:
            register(stack, path, "acme", "ACME")
            assert sender.parts("8613800000001", texts, order) == expected
            assert smsc.wait(lambda: len(smsc.received) == expected.count(0), what="forwarded parts")
        finally:
            sender.close()


def test_signatures_can_be_listed_and_removed_and_a_removed_one_refuses_again(tmp_path):
    path = tmp_path / "guard.db"
    with RawSmsc() as smsc, Stack(config(tmp_path, "either"), store=True, upstream=smsc.address) as stack:
        sender = Sender(stack)
        try:
            register(stack, path, "acme", "【ACME】")
            assert sender.text("8613800000001", MARKETING + "【ACME】") == Status.ROK
            listed = invoke("signature", "list", "acme", "--json", "--db", str(path))
            assert listed.exit_code == 0 and '"signature": "【ACME】"' in listed.output
            assert invoke("signature", "remove", "acme", "ACME", "--db", str(path)).exit_code == 0
            assert invoke("signature", "remove", "acme", "ACME", "--db", str(path)).exit_code == 1
            (last,) = rows(path, "SELECT MAX(id) FROM changelog")[0]
            wait_for(lambda: stack.store.upkeep.index.change_id >= last, what="the Index without it")
            assert sender.text("8613800000002", MARKETING + "【ACME】") == 0x45
            assert invoke("signature", "list", "acme", "--db", str(path)).exit_code == 1
            audited = rows(path, "SELECT action, actor FROM audit WHERE rule = 'signature' AND action != 'reject' "
                                 "ORDER BY id")
            assert [a for a, _who in audited] == ["add", "remove"] and all(who for _a, who in audited)
        finally:
            sender.close()
