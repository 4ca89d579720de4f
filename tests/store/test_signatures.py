"""Signatures in the store: registered and removed through the change log, the later change winning on every
node, whatever order the rows arrive in."""

from __future__ import annotations

import pytest

from smppguard.store import changelog, peers, signatures
from smppguard.store.db import connect


@pytest.fixture
def two(tmp_path):
    a, b = connect(tmp_path / "a.db"), connect(tmp_path / "b.db")
    yield a, b
    a.close()
    b.close()


def table(db):
    return db.execute("SELECT account, source_addr, signature, cert_id, removed FROM signature ORDER BY 1, 2, 3"
                      ).fetchall()


def rows_of(db, node):
    peers.stamp_local(db, node)
    return changelog.since(db, 0)


def test_a_signature_is_kept_normalised_and_without_brackets(two):
    a, _b = two
    assert signatures.add(a, "acme", "【 ＡＣＭＥ 】", cert_id="91110000MA01", now=1.0) == "ACME"
    assert table(a) == [("acme", "", "ACME", "91110000MA01", 0)]
    with pytest.raises(ValueError):
        signatures.add(a, "acme", "【】")
    with pytest.raises(ValueError):
        signatures.add(a, "acme", "A]B")
    assert signatures.remove(a, "acme", "【ACME】", now=2.0)
    assert not signatures.remove(a, "acme", "ACME", now=3.0)  # already removed
    assert table(a) == [("acme", "", "ACME", "91110000MA01", 1)]


@pytest.mark.parametrize("order", [(0, 1), (1, 0), (1, 0, 1, 0)])
def test_the_later_change_wins_on_another_node_in_any_order(two, order):
    a, b = two
    signatures.add(a, "acme", "ACME", now=10.0)
    signatures.remove(a, "acme", "ACME", now=20.0)
    signatures.add(a, "acme", "艾克美", source_addr="10690001", now=15.0)
    made = rows_of(a, "node-a")
    batches = [made[:1], made[1:]]
    with b:
        for i in order:
            peers.apply_remote(b, batches[i])
    assert table(b) == table(a) == [("acme", "", "ACME", "", 1), ("acme", "10690001", "艾克美", "", 0)]
    # each row once, in its origin's sequence
    assert b.execute("SELECT COUNT(*) FROM changelog WHERE node = 'node-a'").fetchone()[0] == 3
