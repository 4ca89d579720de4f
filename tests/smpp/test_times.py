"""SMPP time fields: absolute with a quarter-hour offset either way, relative, empty, and what is neither."""

from __future__ import annotations

import calendar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smppguard.proxy.screening import smpp_time
from smppguard.smpp.errors import PduError
from smppguard.smpp.status import Status
from smppguard.smpp.times import parse_time

NOW = calendar.timegm((2026, 11, 27, 15, 0, 0))


def test_absolute_times_name_one_instant_whatever_the_offset():
    utc = parse_time("261127150000000+", NOW)
    assert utc == NOW
    assert parse_time("261127230000032+", NOW) == NOW  # 23:00 at +08:00 (32 quarter hours)
    assert parse_time("261127100000020-", NOW) == NOW  # 10:00 at -05:00
    assert parse_time("261127150000500+", NOW) == NOW + 0.5  # tenths of a second


def test_relative_times_count_from_now():
    assert parse_time("000000020000000R", NOW) == NOW + 2 * 3600
    assert parse_time("000001000000000R", NOW) == NOW + 86400
    assert parse_time("000100000030000R", NOW) == NOW + 30 * 86400 + 30
    assert parse_time("010000000000000R", NOW) == NOW + 365 * 86400


def test_each_field_at_its_largest_is_a_valid_time():
    assert parse_time("261231235959948+", NOW) == calendar.timegm((2026, 12, 31, 23, 59, 59)) + 0.9 - 48 * 900


def test_an_empty_field_is_none():
    assert parse_time("", NOW) is None


@pytest.mark.parametrize("bad", ["2611271500", "261127150000000X", "261327150000000+", "261127250000000+",
                                 "26112715000000a+", "261127150000049+",
                                 # each field one past its largest, or below its smallest
                                 "261132150000000+", "261127240000000+", "261127156000000+", "261127150060000+",
                                 "260027150000000+", "261100150000000+"])
def test_anything_else_is_an_invalid_expiry(bad):
    with pytest.raises(PduError) as e:
        parse_time(bad, NOW)
    assert e.value.status == Status.RINVEXPIRY


@given(st.integers(min_value=calendar.timegm((2000, 1, 1, 0, 0, 0)),
                   max_value=calendar.timegm((2099, 12, 31, 23, 59, 59))))
def test_what_the_proxy_writes_reads_back_to_the_same_second(epoch):
    assert parse_time(smpp_time(epoch), NOW) == epoch
