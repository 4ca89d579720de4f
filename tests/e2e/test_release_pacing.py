"""The morning release is paced: when the quiet window opens, the whole night's held marketing is due at once, and
`[hold] release_rate` is what keeps it from reaching the carrier's bind as one burst (carriers throttle or suspend a
bind that bursts past its agreed rate), and from starving the senders' own traffic.

Measured where it matters, at an SMSC that shares no code with the proxy (tests/rawsmsc.py): the moment each
submit arrives there. The proxy's clock is the test's (23:00 in Shanghai holds marketing, 09:30 releases it); the
pacing itself runs on the wall clock.

The queue looks for due messages every 0.2 s and keeps at most max(2 * 0.2 s of the rate, 1) tokens, so a rate of
2.5/s is one message every two looks: no burst, and the spacing is the rate's own, 0.4 s.
"""

from __future__ import annotations

import itertools
import time
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import smpplib.smpp

from helpers import Stack, make_config, rows, smpplib_client, wait_for
from rawsmsc import RawSmsc
from smppguard.smpp.status import Status

pytestmark = pytest.mark.waits

POLICY = """
[policy]
default_region = "CN"
fallback_zone = "Asia/Shanghai"

[rules.quiet_hours]
action = "hold"
"""

RATE = 2.5  # [hold] release_rate: one message every 0.4 s, over all accounts
GAP = 1 / RATE
#: How much closer than 1/rate two arrivals may be: the release round's own work (a commit) and the SMSC's reader
#: thread may delay one message more than the next. An unpaced release puts them milliseconds apart.
TOLERANCE = 0.12


def shanghai(hour: int, minute: int = 0, day: int = 27) -> float:
    return datetime(2026, 11, day, hour, minute, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()


NIGHT = shanghai(23)
MORNING = shanghai(9, 30, day=28)


class Clock:
    """The proxy's clock (what the rules and the queue call now), set by the test."""

    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


def config(tmp_path, **tables):
    tables.setdefault("session", {"response_timeout": 5.0, "enquire_link_interval": 30.0})
    return make_config(POLICY, store={"path": str(tmp_path / "guard.db")},
                       hold=dict({"release_rate": RATE}, **tables.pop("hold", {})), **tables)


class Sender:
    """A transceiver bind of one account through the proxy."""

    def __init__(self, stack: Stack, system_id: str):
        self.client = smpplib_client(stack.address)
        self.client.bind_transceiver(system_id=system_id, password="pw")

    def submit(self, dest: str, text: bytes = b"Winter sale: 20% off"):
        pdu = smpplib.smpp.make_pdu("submit_sm", client=self.client, source_addr_ton=5, source_addr="ACME",
                                    dest_addr_ton=0, dest_addr_npi=1, destination_addr=dest, short_message=text)
        self.client.send_pdu(pdu)
        while True:
            got = self.client.read_pdu()
            if got.command == "enquire_link":
                self.client._enquire_link_received(got)
            elif got.sequence == pdu.sequence:
                return got

    def close(self) -> None:
        self.client.disconnect()


def hold(sender: Sender, numbers: list[str]) -> None:
    """Each number a marketing message at night: answered OK, held (nothing reaches the SMSC)."""
    for n in numbers:
        resp = sender.submit(n)
        assert resp.status == Status.ROK and len(resp.message_id) == 16, (n, resp.status)


def numbers(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i:04d}" for i in range(n)]


def gaps(times: list[float]) -> list[float]:
    return [round(b - a, 3) for a, b in itertools.pairwise(times)]


def test_the_morning_release_reaches_the_smsc_at_release_rate_shared_over_all_accounts(tmp_path):
    """Ten messages of two accounts due at one moment (09:00): at release_rate = 2.5/s they reach the SMSC one at
    a time, no two closer than 0.4 s (less a small tolerance), over about 9 x 0.4 s in all. The rate is one for
    all accounts: each account's bind has room for all of its messages at once, and two accounts do not get
    twice the rate. Each message goes through a bind of its own account, once."""
    clock = Clock(NIGHT)
    n = 10
    acme, beta = numbers("1380013", n // 2), numbers("1390013", n // 2)
    with RawSmsc() as smsc, Stack(config(tmp_path), store=True, clock=clock, upstream=smsc.address) as stack:
        senders = [Sender(stack, "acme"), Sender(stack, "beta")]
        for a, b in zip(acme, beta, strict=True):  # held in turn: the queue's order alternates between the binds
            hold(senders[0], [a])
            hold(senders[1], [b])
        path = stack.config.store.path
        assert rows(path, "SELECT account, COUNT(*) FROM held WHERE state = 'held' GROUP BY account ORDER BY 1") == [
            ("acme", n // 2), ("beta", n // 2)]
        time.sleep(0.5)  # rounds of the queue at night: nothing is due
        assert smsc.received == []
        # all ten were due at 09:00 (one moment); the proxy's clock now says 09:30
        assert {r for (r,) in rows(path, "SELECT DISTINCT release_at FROM held")} == {shanghai(9, day=28)}
        clock.now = MORNING
        got = smsc.wait(lambda: smsc.received if len(smsc.received) >= n else None, timeout=n * GAP + 5,
                        what=f"{n} releases")
        time.sleep(GAP + 0.2)  # the time one more would take: none does
        assert len(smsc.received) == n
        by_account = {a: sorted(d for r in got if r.conn.system_id == a for d in r.destinations)
                      for a in ("acme", "beta")}
        assert by_account == {"acme": acme, "beta": beta}  # each once, through its own account's bind
        times = [r.at for r in got]
        spacing = gaps(times)
        assert min(spacing) >= GAP - TOLERANCE, spacing
        # about n/rate in all: the first leaves when the window opens, then one every 1/rate (the queue's look
        # every 0.2 s may make a gap a little longer, never shorter)
        total = times[-1] - times[0]
        assert (n - 1) * GAP - TOLERANCE <= total <= (n - 1) * GAP + 1.5, (total, spacing)
        # the spacing above was between the two binds: they took turns, so the rate is over both accounts
        assert [r.conn.system_id for r in got] == ["acme", "beta"] * (n // 2)
        wait_for(lambda: rows(path, "SELECT COUNT(*) FROM held") == [(0,)], what="the queue empty")
        for s in senders:
            s.close()


def test_a_senders_own_traffic_is_not_slowed_by_the_release_through_its_bind(tmp_path):
    """The carrier allows 5 submits a second on the bind ([upstream] max_tps); the release takes 2.5 of them
    (release_rate), so while twelve held messages go out through the sender's own bind, the sender's live
    submits (two a second) pass straight through: each is answered at once, and reaches the SMSC between the
    released ones, not after them. An unpaced release would fill the bind's max_tps queue and the live
    traffic would wait behind the whole night's batch."""
    clock = Clock(NIGHT)
    held = numbers("1380013", 12)
    live = numbers("1370013", 6)
    cfg = config(tmp_path, upstream={"max_tps": 5.0})
    with RawSmsc() as smsc, Stack(cfg, store=True, clock=clock, upstream=smsc.address) as stack:
        s = Sender(stack, "acme")
        hold(s, held)
        time.sleep(0.5)  # rounds of the queue at night: nothing is due
        assert smsc.received == []
        clock.now = MORNING  # 09:30: the held messages are due, and live marketing goes at once
        smsc.wait(lambda: smsc.received, what="the release under way")
        latencies = []
        for dest in live:
            started = time.monotonic()
            resp = s.submit(dest, b"Today only")
            latencies.append(round(time.monotonic() - started, 3))
            assert resp.status == Status.ROK and resp.message_id.startswith(b"raw"), (resp.status, resp.message_id)
            time.sleep(max(0.0, 0.5 - latencies[-1]))
        # answered by the SMSC itself (its ids say "raw"), each at once: no wait behind the released messages
        assert max(latencies) < 0.3, latencies
        released_meanwhile = [r for r in smsc.received if r.destinations[0] in held]
        assert len(released_meanwhile) < len(held), "the release had ended before the live traffic went"
        got = smsc.wait(lambda: smsc.received if len(smsc.received) == len(held) + len(live) else None,
                        timeout=len(held) * GAP + 5, what="every message at the SMSC")
        order = [r.destinations[0] for r in got]
        assert sorted(d for d in order if d in live) == live
        assert sorted(d for d in order if d in held) == held
        assert order.index(live[-1]) < order.index(held[-1])  # the live traffic did not wait for the release
        # and the release kept its pace beside the live traffic
        released_at = [r.at for r in got if r.destinations[0] in held]
        assert min(gaps(released_at)) >= GAP - TOLERANCE, gaps(released_at)
        s.close()
