"""Learning, the observer of `delivered`: what a deliver_sm taught goes through the real writer thread into a real
store, is counted once it is saved, and reports the numbers whose credit score moved without a change-log row."""

from __future__ import annotations

import asyncio
import logging
import sqlite3

from smppguard.hooks import Delivered
from smppguard.inbound import DELIVERED_FACT, OPTOUT, Learner, LearnerSettings
from smppguard.inbound.receipts import SUSPENDED
from smppguard.smpp.commands import CommandId
from smppguard.smpp.fields import Tlv, TlvTag, encode_body
from smppguard.smpp.pdu import Pdu, build
from smppguard.store.db import connect
from smppguard.store.learning import GATHER_S, Learning, LearningTerms
from smppguard.store.recipients import masker
from smppguard.store.writer import StoreWriter

A, B = 8613800000001, 8613800000002
NOW = 1_800_000_000.0


def deliver(text: bytes, source: int = A, esm: int = 0, tlvs=()) -> Delivered:
    body = encode_body(CommandId.DELIVER_SM, source_addr_ton=1, source_addr_npi=1, source_addr=str(source),
                       dest_addr_ton=0, dest_addr_npi=0, destination_addr="10690000", esm_class=esm,
                       data_coding=0, short_message=text, tlvs=list(tlvs))
    return Delivered(NOW, "acme", Pdu(CommandId.DELIVER_SM, 0, 7, build(CommandId.DELIVER_SM, 7, body)))


def receipt(number: int, stat: str, err: str) -> Delivered:
    text = f"id:r{number} sub:001 dlvrd:000 submit date:2701011200 done date:2701011201 stat:{stat} err:{err} text:"
    return deliver(text.encode(), source=number, esm=0x04)


class Setup:
    def __init__(self, tmp_path, **settings):
        self.path = tmp_path / "store.db"
        connect(self.path).close()  # migrated
        self.writer = StoreWriter(str(self.path))
        self.touched: list[list[int]] = []
        self.learning = Learning(Learner(LearnerSettings(default_region="CN", **settings)), self.writer,
                                 LearningTerms(suspended_failures=2), lambda n, address: f"+{n}" if n else address,
                                 lambda: NOW, self.touched.append)

    def rows(self, sql: str) -> list[tuple]:
        conn = sqlite3.connect(self.path)  # another connection: sees only what was committed
        try:
            return conn.execute(sql).fetchall()
        finally:
            conn.close()


async def test_a_reply_is_saved_once_and_counted_once(tmp_path, caplog):
    s = Setup(tmp_path)
    await s.writer.start()
    try:
        caplog.set_level(logging.INFO, "smppguard.inbound")
        s.learning.delivered(deliver(b"TD"))
        s.learning.delivered(deliver(b"STOP", source=B))
        await s.learning.flush()
        assert s.rows("SELECT number, keyword FROM optout ORDER BY number") == [(A, "td"), (B, "stop")]
        assert (s.learning.learned, dict(s.learning.learned_by_kind)) == (2, {OPTOUT: 2})
        assert f"acme: +{A} opted out (sender 10690000): reply 'TD' to 10690000" in caplog.messages
        s.learning.delivered(deliver(b"T"))  # known already: saved as nothing, not counted
        await s.learning.flush()
        assert (s.learning.learned, s.rows("SELECT COUNT(*) FROM changelog")) == (2, [(2,)])
        assert s.touched == []  # opt-outs reach the Index through the change log, not this way
        assert not s.learning._pending  # what was saved is let go of
    finally:
        await s.writer.close()


async def test_facts_are_gathered_and_written_as_one_job(tmp_path):
    s = Setup(tmp_path)
    await s.writer.start()
    try:
        for n in range(5):
            s.learning.delivered(deliver(b"T", source=A + n))
        assert s.rows("SELECT COUNT(*) FROM optout") == [(0,)]  # gathered, not yet handed over
        jobs = s.writer.commits
        await asyncio.sleep(GATHER_S * 20)
        await s.learning.flush()
        assert s.rows("SELECT COUNT(*) FROM optout") == [(5,)]
        assert s.writer.commits == jobs + 1
    finally:
        await s.writer.close()


async def test_receipts_that_make_no_change_report_their_numbers_as_touched(tmp_path):
    s = Setup(tmp_path, count_deliveries=True)
    await s.writer.start()
    try:
        s.learning.delivered(receipt(A, "UNDELIV", "MK:0005"))  # suspended: one failure of the two it takes
        s.learning.delivered(receipt(B, "DELIVRD", "000"))  # counted for the credit score
        s.learning.delivered(deliver(b"T", source=A + 9))
        await s.learning.flush()
        assert s.touched == [[A, B]]
        assert s.rows("SELECT number FROM receipt_failure") == [(A,)]
        assert s.rows("SELECT number, count FROM delivery_ok") == [(B, 1)]
        assert (s.learning.learned, dict(s.learning.learned_by_kind)) == (1, {OPTOUT: 1})
        s.learning.delivered(receipt(A, "UNDELIV", "MK:0005"))  # the second: dead
        await s.learning.flush()
        assert s.touched == [[A, B], [A]]
        assert s.rows("SELECT number FROM dead") == [(A,)]
        assert dict(s.learning.learned_by_kind) == {OPTOUT: 1, SUSPENDED: 1}
    finally:
        await s.writer.close()
    assert DELIVERED_FACT not in s.learning.learned_by_kind


async def test_a_fact_that_cannot_be_saved_is_logged_and_not_counted(tmp_path, caplog):
    s = Setup(tmp_path)
    s.rows("SELECT 1")
    conn = sqlite3.connect(s.path)
    conn.execute("DROP TABLE receipt_failure")  # a store that cannot take a suspended receipt
    conn.commit()
    conn.close()
    await s.writer.start()
    try:
        s.learning.delivered(receipt(A, "UNDELIV", "MK:0005"))
        s.learning.delivered(deliver(b"T", source=B))
        await s.learning.flush()
        assert s.rows("SELECT number FROM optout") == [(B,)]  # the other fact is kept
        assert (s.learning.learned, dict(s.learning.learned_by_kind)) == (1, {OPTOUT: 1})
        (error,) = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert error.getMessage() == (f"acme: could not save what a deliver_sm taught (suspended +{A}): "
                                      "no such table: receipt_failure")
    finally:
        await s.writer.close()


async def test_a_job_that_fails_loses_its_facts_with_an_error_each(tmp_path, caplog):
    s = Setup(tmp_path)
    conn = sqlite3.connect(s.path)
    conn.execute("DROP TABLE meta")  # no store identity: the whole job fails before any fact
    conn.commit()
    conn.close()
    await s.writer.start()
    try:
        s.learning.delivered(deliver(b"T"))
        s.learning.delivered(deliver(b"T", source=B))
        await s.learning.flush()
        assert s.learning.learned == 0
        errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR and "deliver_sm" in
                  r.getMessage()]
        assert len(errors) == 2 and f"optout +{B}" in errors[1]
    finally:
        await s.writer.close()


def reassembly_tasks() -> list[asyncio.Task]:
    return [t for t in asyncio.all_tasks() if t.get_name() == "inbound reassembly"]


async def test_close_hands_what_is_gathered_to_the_writer_before_it_closes(tmp_path):
    s = Setup(tmp_path)
    await s.writer.start()
    s.learning.start()
    [task] = reassembly_tasks()  # named, for a task dump
    s.learning.delivered(deliver(b"T"))
    await s.learning.close()  # before the gathering time is up
    assert task.cancelled() and reassembly_tasks() == []  # stopped, and waited for
    await s.learning.close()  # a second close does nothing more
    await s.writer.close()
    assert s.rows("SELECT number FROM optout") == [(A,)]


async def test_an_incomplete_reply_is_judged_and_saved_when_its_time_is_up(tmp_path):
    s = Setup(tmp_path, reassembly_timeout_s=0.2)
    s.learning.clock = lambda: NOW + 1.0  # past the reassembly timeout of a part received at NOW
    sar = [Tlv(TlvTag.SAR_MSG_REF_NUM, (5).to_bytes(2, "big")), Tlv(TlvTag.SAR_TOTAL_SEGMENTS, bytes((2,))),
           Tlv(TlvTag.SAR_SEGMENT_SEQNUM, bytes((1,)))]
    await s.writer.start()
    s.learning.start()
    try:
        s.learning.delivered(deliver(b"STOP", tlvs=sar))  # part 1 of 2; part 2 never comes
        for _ in range(100):
            await asyncio.sleep(0.02)
            await s.learning.flush()
            if s.learning.learned:
                break
        assert s.rows("SELECT number, keyword FROM optout") == [(A, "stop")]
    finally:
        await s.learning.close()
        await s.writer.close()


async def test_a_reply_from_no_readable_number_is_logged_audited_masked_and_counted(tmp_path, caplog):
    s = Setup(tmp_path)
    s.learning.recipient = masker("masked")  # as the daemon keeps recipients by default
    await s.writer.start()
    try:
        caplog.set_level(logging.INFO, "smppguard.inbound")
        s.learning.delivered(deliver(b"TD", source="1380013807x"))  # type: ignore[arg-type]
        s.learning.delivered(deliver(b"hello", source="1380013807x"))  # type: ignore[arg-type]  # nothing to lose
        await s.learning.flush()
        assert s.rows("SELECT recipient, rule, action, status, reason, actor FROM audit") == [
            ("138****807x", "inbound", "unread", 0, "not learned (optout): source_addr is not a phone number "
             "(TON 1, default region CN): reply 'TD' to 10690000", "deliver_sm")]
        assert dict(s.learning.unread) == {OPTOUT: 1}
        assert (s.learning.learned, s.rows("SELECT COUNT(*) FROM changelog")) == (0, [(0,)])
        (record,) = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert record.getMessage() == ("acme: 138****807x not learned (optout): source_addr is not a phone number "
                                       "(TON 1, default region CN): reply 'TD' to 10690000")
        assert "1380013807" not in caplog.text
    finally:
        await s.writer.close()
