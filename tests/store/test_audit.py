"""How audit rows keep a recipient ([audit] recipient): in full, masked, or hashed with a secret salt."""

from __future__ import annotations

import hashlib
import sqlite3

import pytest

from helpers import Stack, make_config, smpplib_client
from helpers import send_submit as send
from smppguard.smpp.status import Status
from smppguard.store.audit import mask_recipient

N = 8613800138000


def test_mask_recipient_full_and_masked():
    assert mask_recipient(N, "13800138000", "full") == "+8613800138000"
    assert mask_recipient(N, "13800138000", "masked") == "+86138****8000"
    assert mask_recipient(None, "12345", "masked") == "*****"  # not a number: still not shown


def test_mask_recipient_hashed_is_keyed_by_the_salt_and_shows_no_digits():
    a = mask_recipient(N, "13800138000", "hashed", "s3cret")
    assert a == "sha256:" + hashlib.sha256(b"s3cret+8613800138000").hexdigest()[:24]
    assert a == mask_recipient(N, "+8613800138000", "hashed", "s3cret")  # the number, not the form sent
    assert a != mask_recipient(N, "13800138000", "hashed", "other")  # the salt changes it ...
    assert a != mask_recipient(N, "13800138000", "hashed", "")  # ... so an unsalted table cannot look it up
    assert "13800138000" not in a


@pytest.mark.parametrize("mode, stored", [
    ("hashed", "sha256:" + hashlib.sha256(b"pepper+8613900000001").hexdigest()[:24]),
    ("masked", "+86139****0001"),
    ("full", "+8613900000001"),
])
def test_the_proxy_audits_a_refusal_in_the_configured_form(tmp_path, mode, stored):
    from smppguard.store import changelog
    from smppguard.store.db import connect

    cfg = make_config('[policy]\ndefault_region = "CN"\n[rules.quiet_hours]\nenabled = false\n',
                      store={"path": str(tmp_path / "guard.db")}, audit={"recipient": mode, "salt": "pepper"})
    db = connect(cfg.store.path)
    changelog.write(db, [changelog.Change("blacklist", "add", 8613900000001)], origin="test")
    db.close()
    with Stack(cfg, store=True) as stack:
        client = smpplib_client(stack.address)
        try:
            client.bind_transmitter(system_id="acme", password="pw")
            assert send(client, "13900000001", "sale").status == Status.RSUBMITFAIL
        finally:
            client.disconnect()
    db = sqlite3.connect(cfg.store.path)
    try:
        assert db.execute("SELECT recipient, rule FROM audit").fetchall() == [(stored, "blacklist")]
    finally:
        db.close()


# --- folding repeats ----------------------------------------------------------------------------------------------

class Rows:
    """A writer that keeps what it is asked to write."""

    def __init__(self):
        self.rows, self.folds = [], []

    def audit(self, *row):
        self.rows.append(row)

    def audit_fold(self, *fold):
        self.folds.append(fold)


def refusal(at: float, number: int = N, rule: str = "frequency", status: int = 0x45, sender: str = "ACME",
            repeat: bool = False):
    from smppguard.hooks import Decided
    from smppguard.policy.model import Action, Submission, Verdict
    sub = Submission(number, f"+{number}", sender, "acme")
    return Decided(at, 4, "acme", sender, f"+{number}", sub, Verdict(Action.REJECT, rule, status, "why"), repeat)


def test_a_refusal_repeated_within_the_window_adds_to_the_first_ones_row():
    from smppguard.store.audit import AuditLog
    w = Rows()
    log = AuditLog(w, "full", fold=3600.0)
    for t in (1000.0, 1500.0, 4599.0):
        log.decided(refusal(t))
    log.decided(refusal(4600.0))  # an hour after the first: a row of its own
    log.decided(refusal(4700.0))
    assert [r[0] for r in w.rows] == [1000.0, 4600.0]
    assert w.rows[0] == (1000.0, "acme", "ACME", "+8613800138000", "frequency", "reject", 0x45, "why")
    assert w.folds == [(1000.0, "acme", "ACME", "+8613800138000", "frequency", 0x45, 2, 1500.0),
                       (1000.0, "acme", "ACME", "+8613800138000", "frequency", 0x45, 3, 4599.0),
                       (4600.0, "acme", "ACME", "+8613800138000", "frequency", 0x45, 2, 4700.0)]


def test_refusals_that_differ_in_sender_rule_status_or_recipient_are_rows_of_their_own():
    from smppguard.store.audit import AuditLog
    w = Rows()
    log = AuditLog(w, "full")
    for d in (refusal(1.0), refusal(2.0, sender="OTHER"), refusal(3.0, rule="blacklist"),
              refusal(4.0, status=0x401), refusal(5.0, number=N + 1)):
        log.decided(d)
    assert len(w.rows) == 5 and w.folds == []


def test_a_later_part_refused_with_its_first_is_counted_and_without_folding_each_is_a_row():
    from smppguard.store.audit import AuditLog
    w = Rows()
    log = AuditLog(w, "full")
    log.decided(refusal(1.0))
    log.decided(refusal(1.0, repeat=True))  # the second part of the same message: a second refusal received
    assert len(w.rows) == 1 and [f[-2] for f in w.folds] == [2]
    unfolded = Rows()
    log = AuditLog(unfolded, "full", fold=0)
    for t in (1.0, 2.0, 2.0):
        log.decided(refusal(t, repeat=t == 2.0))
    assert len(unfolded.rows) == 3 and unfolded.folds == []


def test_open_folds_are_bounded_and_close_when_their_window_passes():
    from smppguard.store.audit import AuditLog
    w = Rows()
    log = AuditLog(w, "full", fold=100.0, max_open=10)
    for i in range(25):
        log.decided(refusal(1.0 + i * 0.001, number=N + i))
    assert len(log._open) <= 10
    log.decided(refusal(500.0, number=N + 99))  # a minute on, past every window: the sweep closes them
    assert list(log._open) == [("acme", "ACME", f"+{N + 99}", "frequency", 0x45)]
