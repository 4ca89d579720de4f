"""What a legacy sender does with the proxy's answers: Kannel, bound through a proxy with its store and rules.

SMPP-NOTES: Kannel retries only "try later" (0x58, 0x14) and takes every other status as a permanent refusal.
The defaults rely on that, so it is tested against Kannel itself: a refusal (0x45) is reported to Kannel's
client as rejected (DLR type 16) and never sent again; a quiet-hours hold is answered OK with the proxy's id,
sent once when the recipient's window opens, and its receipt reaches Kannel matched to the message.
"""

from __future__ import annotations

import sqlite3
import time
from datetime import datetime
from typing import Iterator
from zoneinfo import ZoneInfo

import pytest

from helpers import Stack, make_config
from kannel import SENDER, SYSTEM_ID, Kannel, require_kannel, wait_for
from smppguard.store import changelog
from smppguard.store.db import connect

require_kannel()
pytestmark = pytest.mark.kannel

BLOCKED, FREE = "8613900000001", "8613800000002"
POLICY = """
[policy]
default_region = "CN"

[rules.quiet_hours]
action = "hold"

[rules.frequency]
enabled = false

[audit]
recipient = "full"
"""


def shanghai(hour: int) -> float:
    return datetime(2026, 11, 27, hour, 0, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()


class Clock:
    """The proxy's clock, set by the test."""

    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def kannel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, Kannel, Clock]]:
    tmp = tmp_path_factory.mktemp("kannel-policy")
    cfg = make_config(POLICY, store={"path": str(tmp / "guard.db")},
                      session={"response_timeout": 5.0, "enquire_link_interval": 30.0})
    db = connect(cfg.store.path)
    changelog.write(db, [changelog.Change("blacklist", "add", int(BLOCKED), data={"source": "complaint"})],
                    origin="test")
    db.close()
    clock = Clock(shanghai(12))
    with Stack(cfg, store=True, clock=clock) as s:
        k = Kannel(s, tmp)
        try:
            k.start()
            yield s, k, clock
        finally:
            k.stop()


def audited(s: Stack, recipient: str) -> list[tuple[str, int, int]]:
    """(rule, status, count) of the audit rows for `recipient`: each attempt Kannel made is counted."""
    s.run(s.store.writer.flush())
    db = sqlite3.connect(s.config.store.path)
    try:
        return db.execute("SELECT rule, status, count FROM audit WHERE recipient = ? ORDER BY id",
                          (f"+{recipient}",)).fetchall()
    finally:
        db.close()


def dlr_types(k: Kannel, to: str) -> list[str]:
    return [d["type"] for d in k.dlr_received if d.get("to") == to]


def test_kannel_takes_a_refusal_as_final_and_never_sends_it_again(kannel) -> None:
    s, k, clock = kannel
    clock.now = shanghai(12)
    k.sendsms(BLOCKED, "Weekend sale!", dlr=True)
    try:
        wait_for(lambda: "16" in dlr_types(k, BLOCKED), "Kannel's 'SMSC rejected' report (DLR type 16)")
    except AssertionError as e:
        raise AssertionError(f"{e}\n{k.logs()}") from None
    [reject] = [d for d in k.dlr_received if d.get("to") == BLOCKED]
    assert "0x00000045" in reject["reply"]  # NACK/0x00000045/...: Kannel saw the proxy's status
    # Kannel resends a "try later" after a second here (sms-resend-freq); three seconds bring no resend
    time.sleep(3.0)
    assert audited(s, BLOCKED) == [("blacklist", 0x45, 1)]
    assert dlr_types(k, BLOCKED) == ["16"]
    assert not [r for r in s.sim.received if r.fields["destination_addr"] == BLOCKED]


def test_kannel_gets_ok_for_a_held_message_and_its_delivery_report_when_it_is_released(kannel) -> None:
    """Quiet hours hold Kannel's message: Kannel is told OK (the proxy id) and never sends it again; in the
    morning the proxy sends it once, and the SMSC's receipt, rewritten to the proxy id, is matched by Kannel to
    the message it sent (its dlr-url is called with "delivered")."""
    s, k, clock = kannel
    clock.now = shanghai(23)  # night in Shanghai: marketing is held
    k.sendsms(FREE, "Night owl offer", dlr=True)
    try:
        [accepted] = wait_for(lambda: [d for d in k.dlr_received if d.get("to") == FREE and d["type"] == "8"],
                              "Kannel's 'SMSC accepted' report (DLR type 8)")
    except AssertionError as e:
        raise AssertionError(f"{e}\n{k.logs()}") from None
    proxy_id = accepted["id"]
    assert len(proxy_id) == 16
    time.sleep(2.0)  # Kannel would resend a "try later" after a second: it has nothing to resend
    assert {(rule, status) for rule, status, _count in audited(s, FREE)} == {("quiet_hours", 0x58)}
    assert not [r for r in s.sim.received if r.fields["destination_addr"] == FREE]
    clock.now = shanghai(23) + 10.5 * 3600  # 09:30 the next morning: released
    try:
        [got] = wait_for(lambda: [r for r in s.sim.received if r.fields["destination_addr"] == FREE],
                         "the held message at the SMSC")
        [delivered] = wait_for(lambda: [d for d in k.dlr_received if d.get("to") == FREE and d["type"] == "1"],
                               "Kannel's 'delivered' report (DLR type 1), matched to its message")
    except AssertionError as e:
        raise AssertionError(f"{e}\n{k.logs()}") from None
    assert got.fields["short_message"].decode("gsm03.38") == "Night owl offer"
    assert delivered["id"] == proxy_id != got.message_id
    time.sleep(1.0)
    assert len([r for r in s.sim.received if r.fields["destination_addr"] == FREE]) == 1
    assert "16" not in dlr_types(k, FREE)


def test_a_td_reply_reaches_kannels_service_and_opts_the_number_out_of_kannels_sender(kannel) -> None:
    """The deliver path with a legacy sender: the reply reaches Kannel's sms-service as it always did, and the
    number is opted out of the sender it replied to, so Kannel's next message from that sender is refused."""
    s, k, clock = kannel
    clock.now = shanghai(12)
    replier = "8613800000077"
    s.call(lambda: s.sim.inject_mo(replier, SENDER, "TD", SYSTEM_ID))
    try:
        [mo] = wait_for(lambda: [m for m in k.mo_received if m.get("text") == "TD"], "the reply at smsbox's get-url")
    except AssertionError as e:
        raise AssertionError(f"{e}\n{k.logs()}") from None
    assert mo["from"].endswith(replier) and mo["to"] == SENDER

    def opted_out() -> list[tuple]:
        db = sqlite3.connect(s.config.store.path)
        try:
            return db.execute("SELECT scope, scope_key, source, keyword FROM optout WHERE number = ?",
                              (int(replier),)).fetchall()
        finally:
            db.close()

    assert wait_for(opted_out, "the opt-out") == [("sender", SENDER, "reply", "td")]
    db = sqlite3.connect(s.config.store.path)
    try:
        (last,) = db.execute("SELECT MAX(id) FROM changelog").fetchone()
    finally:
        db.close()
    wait_for(lambda: s.store.upkeep.index.change_id >= last, "the daemon's Index to apply the opt-out")
    k.sendsms(replier, "Weekend sale!", dlr=True)
    try:
        wait_for(lambda: "16" in dlr_types(k, replier), "Kannel's 'SMSC rejected' report (DLR type 16)")
    except AssertionError as e:
        raise AssertionError(f"{e}\n{k.logs()}") from None
    assert ("optout", 0x45, 1) in audited(s, replier)
    assert not [r for r in s.sim.received if r.fields["destination_addr"] == replier]
