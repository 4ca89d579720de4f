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
