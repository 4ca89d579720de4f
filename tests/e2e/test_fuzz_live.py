"""The short version of `scripts/fuzz` (100,000 cases): mutated PDUs into a live `smppguard run`."""

from __future__ import annotations

import pytest

from fuzz import corpus, framed, mutate, run

pytestmark = pytest.mark.subprocess


def test_two_thousand_mutated_pdus_hang_no_session_and_crash_nothing():
    r = run(cases=2000, seed=11, connections=4)
    assert r["hung"] == 0
    assert r["proxy_exited"] is None and r["stop_status"] == 0 and r["tracebacks_in_log"] == 0
    assert r["answered"] + r["closed"] == 2000
    assert r["answered"] > 1000 and r["closed"] > 0  # the mutations reach both kinds of answer


def test_the_corpus_is_real_pdus_and_mutations_keep_the_header():
    import random
    import struct

    pdus = corpus()
    assert len(pdus) >= 19 and all(struct.unpack_from(">I", p)[0] == len(p) for p in pdus)
    rng = random.Random(1)
    assert all(len(mutate(rng, p)) >= 16 for p in pdus for _ in range(50))


def test_framed_pads_a_pdu_that_claims_more_and_stops_at_a_length_the_proxy_refuses():
    import struct

    short = struct.pack(">IIII", 40, 0x15, 0, 1) + b"x" * 4
    assert len(framed(short)) == 40
    refused = struct.pack(">IIII", 5, 0x15, 0, 1)
    assert framed(refused) == refused
    tail = struct.pack(">IIII", 16, 0x15, 0, 1) + struct.pack(">I", 30)  # 4 bytes of a next header
    assert len(framed(tail)) == 16 + 30
