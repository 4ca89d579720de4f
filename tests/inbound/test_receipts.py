"""Receipt codes: dead, suspended, carrier blacklist, nothing."""

from __future__ import annotations

import pytest

from smppguard.inbound.receipts import BLACKLISTED, DEAD, SUSPENDED, ReceiptCodes
from smppguard.smpp.receipt import Receipt

CODES = ReceiptCodes.of()


@pytest.mark.parametrize("stat, err, state, expected", [
    ("UNDELIV", "MK:0001", 5, (DEAD, "MK:0001")),
    ("MK:0001", "", None, (DEAD, "MK:0001")),
    ("mi:0210", "", None, (DEAD, "MI:0210")),  # any case
    ("UNDELIV", "DB:0102", 5, (SUSPENDED, "DB:0102")),
    ("MBBLACK", "000", None, (BLACKLISTED, "MBBLACK")),
    ("UNDELIV", "DBBLACK", 5, (BLACKLISTED, "DBBLACK")),
    ("UNDELIV", "NP:1243", 5, None),  # ported: no list
    ("DELIVRD", "000", 2, None),
    ("DELIVRD", "MK:0001", 2, None),  # a delivered receipt never says the number is dead
    ("EXPIRED", "", 3, None),
])
def test_classify(stat, err, state, expected):
    assert CODES.classify(Receipt("1", stat, err, state=state)) == expected


def test_codes_are_configurable():
    codes = ReceiptCodes.of(dead=["E:404 "], suspended=[], blacklisted=[])
    assert codes.classify(Receipt("1", "UNDELIV", "e:404", state=5)) == (DEAD, "E:404")
    assert codes.classify(Receipt("1", "UNDELIV", "MK:0001", state=5)) is None
