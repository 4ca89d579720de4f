"""numbers.py: destination addresses to one E.164 int per subscriber, and numbers to candidate zones."""

from __future__ import annotations

import random

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from phonenumbers import timezone as phonenumbers_tz
from policy_helpers import AU_MOBILE, CN_MOBILE, NO_ZONE, US_NY, US_TOLL_FREE, at

from smppguard.policy import numbers
from smppguard.policy.numbers import (
    candidate_zones,
    check_region,
    check_zone,
    e164,
    locate,
    locate_once,
    normalise,
    number_lines,
    region_of,
    utc_offsets,
    zones_for,
)

TON_UNKNOWN, TON_INTERNATIONAL, TON_NATIONAL = 0, 1, 2


# --- normalise ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("address", ["13800138000", "8613800138000", "+8613800138000", "008613800138000",
                                     " 13800138000 ", "013800138000", "+86 138 0013 8000", "138-0013-8000"])
def test_normalise_cn_forms_are_one_int(address):
    assert normalise(address, TON_UNKNOWN, "CN") == CN_MOBILE


@pytest.mark.parametrize("address, ton, region, expected", [
    # TON 1 (international): the digits carry the country code, whatever the default region.
    ("8613800138000", TON_INTERNATIONAL, None, CN_MOBILE),
    ("8613800138000", TON_INTERNATIONAL, "US", CN_MOBILE),
    ("13800138000", TON_INTERNATIONAL, "CN", None),  # read as +1 380..., not a valid number
    ("2125550123", TON_INTERNATIONAL, "US", None),  # read as +212 (Morocco) ...
    # TON 0 (unknown): the digits decide, the default region fills in a missing country code.
    ("13800138000", TON_UNKNOWN, "CN", CN_MOBILE),
    ("8613800138000", TON_UNKNOWN, "CN", CN_MOBILE),
    ("8613800138000", TON_UNKNOWN, None, CN_MOBILE),
    ("13800138000", TON_UNKNOWN, None, None),  # national without a region: no country code to give it
    # TON 2 (national): needs the default region.
    ("13800138000", TON_NATIONAL, "CN", CN_MOBILE),
    ("2125550123", TON_NATIONAL, "US", US_NY),
    ("8613800138000", TON_NATIONAL, None, None),
])
def test_normalise_ton(address, ton, region, expected):
    assert normalise(address, ton, region) == expected


@pytest.mark.parametrize("address, region, expected", [
    ("2125550123", "US", US_NY),
    ("12125550123", "US", US_NY),
    ("(212) 555-0123", "US", US_NY),
    ("1 (212) 555-0123", "US", US_NY),
    ("+12125550123", None, US_NY),
    ("011442071234567", "US", 442071234567),  # US international prefix 011
    ("01161412345678", "US", AU_MOBILE),
    ("0061412345678", "CN", AU_MOBILE),
    ("+390612345678", None, 390612345678),  # Italian leading zero kept
])
def test_normalise_national_and_international_prefixes(address, region, expected):
    assert normalise(address, TON_UNKNOWN, region) == expected


@pytest.mark.parametrize("address", ["", " ", "+", "abc", "123", "+86", "1380013800", "+1380013800",
                                     "+861380013800099", "ACME", "+0013800138000", "138 0013 800",
                                     "1" * 5000, "+" + "9" * 40])
@pytest.mark.parametrize("ton", [TON_UNKNOWN, TON_INTERNATIONAL, TON_NATIONAL])
def test_normalise_invalid_is_none(address, ton):
    assert normalise(address, ton, "CN") is None


@settings(max_examples=300, deadline=None)
@given(address=st.one_of(st.text(max_size=40),
                         st.from_regex(r"\+?(00|011|0)?[0-9]{5,16}", fullmatch=True),
                         st.text(alphabet="0123456789+ -()", max_size=24)),
       ton=st.integers(0, 6), region=st.sampled_from([None, "CN", "US", "AU", "GB", "IT", "IN"]))
def test_normalise_never_raises_and_gives_valid_e164(address, ton, region):
    number = normalise(address, ton, region)
    assert number is None or (number > 0 and phonenumbers.is_valid_number(phonenumbers.parse(e164(number))))


# --- the fast path against phonenumbers itself --------------------------------------------------------------


def _example_numbers_and_neighbours(per_example: int = 12, seed: int = 7) -> list[str]:
    """E.164 digits: phonenumbers' example number of every region and type, and near misses of each (digits
    changed, one added, one dropped), which land on other types, other regions and invalid numbers."""
    rnd = random.Random(seed)
    types = [getattr(phonenumbers.PhoneNumberType, t) for t in (
        "FIXED_LINE", "MOBILE", "TOLL_FREE", "PREMIUM_RATE", "SHARED_COST", "VOIP", "PERSONAL_NUMBER", "PAGER", "UAN",
        "VOICEMAIL")]
    examples = [phonenumbers.example_number_for_type(r, t) for r in sorted(phonenumbers.SUPPORTED_REGIONS)
                for t in types]
    examples += [phonenumbers.example_number_for_non_geo_entity(cc)
                 for cc in sorted(phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS)]
    out = set()
    for example in examples:
        if example is None:
            continue
        digits = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)[1:]
        out.add(digits)
        for _ in range(per_example):
            d = list(digits)
            roll = rnd.random()
            if roll < 0.6:
                for _ in range(rnd.randint(1, 3)):
                    d[rnd.randrange(len(d))] = str(rnd.randrange(10))
            elif roll < 0.8:
                d.append(str(rnd.randrange(10)))
            else:
                d.pop()
            out.add("".join(d))
    return sorted(out)


def test_locate_agrees_with_phonenumbers_on_every_region_and_type():
    """Validity, the E.164 form and the zones, for ~12,000 numbers: the fast path replays phonenumbers' own
    checks with its patterns compiled differently, so it must give phonenumbers' answers exactly."""
    differ = []
    for digits in _example_numbers_and_neighbours():
        try:
            num = phonenumbers.parse("+" + digits)
        except phonenumbers.NumberParseException:
            num = None
        if num is None or not phonenumbers.is_valid_number(num):
            expected = None
        else:
            zones = tuple(z for z in phonenumbers_tz.time_zones_for_number(num) if z != "Etc/Unknown")
            expected = (int(phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164)[1:]), zones)
        if locate("+" + digits) != expected:
            differ.append((digits, locate("+" + digits), expected))
    assert differ == []


def test_a_national_number_is_located_as_its_international_form_in_every_region():
    """A national number of the default region (no trunk or international prefix) that the calling code's first
    region finds valid takes a shorter way: the same number and zones as `_lookup` of its international form,
    for the example numbers of every region and their near misses. The others take the way they always took."""
    by_code: dict[str, list[str]] = {}
    for digits in _example_numbers_and_neighbours(per_example=4):
        by_code.setdefault(digits[:3], []).append(digits)
    shorter = 0
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        cc, _trunk, _intl, scc, starts = numbers._region_prefixes(region)
        for digits in (d for head, ds in by_code.items() if head.startswith(scc) for d in ds):
            nsn = digits[len(scc):]
            if not nsn or nsn.startswith(starts) or not digits.startswith(scc):
                continue
            first = numbers._first_plan(cc, len(nsn))
            if first is None or first[0].fullmatch(nsn) is None:
                continue
            kind, zones = numbers._lookup(digits)
            assert kind != numbers.UNKNOWN and locate_once(nsn, 0, region) == (int(digits), zones), (region, nsn)
            shorter += 1
    assert shorter > 3000, shorter


@pytest.mark.parametrize("address, ton, region", [
    ("13800138000", 0, "CN"), ("013800138000", 0, "CN"), ("008613800138000", 0, "CN"), ("8613800138000", 0, "CN"),
    ("+8613800138000", 0, None), ("8613800138000", 1, None), ("2125551234", 2, "US")])
def test_the_usual_forms_of_a_number_never_reach_phonenumbers_parser(monkeypatch, address, ton, region):
    """Every new recipient is looked up once: its usual forms (national, with the national or international
    prefix, international with or without "+") take the fast path, which costs a fraction of a parse."""
    expected = locate_once(address, ton, region)
    assert expected is not None

    def parse(*_args, **_kw):
        raise AssertionError("phonenumbers.parse called")

    monkeypatch.setattr(phonenumbers, "parse", parse)
    assert locate_once(address, ton, region) == expected


def test_number_lines_settles_only_what_normalise_finds_valid_and_most_of_it():
    """A file of numbers, line by line: what international_lines settles is what normalise gives; the example
    numbers of the calling codes with one region (and their near misses) that are valid as written are all settled."""
    digits = _example_numbers_and_neighbours()
    lines = ["+" + d for d in digits] + [" +" + d for d in digits[:50]] + ["+" + d + " " for d in digits[:50]]
    lines += ["+", "", "+86", "+8613800138000x", "+86１３８００１３８０００", "8613800138000", "+\n8613800138000"]
    settled = number_lines(lines)
    assert len(settled) == len(lines)
    wrong = [(line, got, normalise(line, TON_INTERNATIONAL)) for line, got in zip(lines, settled, strict=True)
             if got is not None and got != normalise(line, TON_INTERNATIONAL)]
    assert wrong == []
    one_region = {cc for cc, regions in phonenumbers.COUNTRY_CODE_TO_REGION_CODE.items() if len(regions) == 1}
    valid_there = [line for line in lines[:len(digits)] if normalise(line, TON_INTERNATIONAL) == int(line[1:])
                   and phonenumbers.parse(line).country_code in one_region]  # (not "+260 0800…": read as +260 800…)
    assert len(valid_there) > 2000
    missed = [line for line, got in zip(lines, settled, strict=True) if line in set(valid_there) and got is None]
    assert missed == []
    assert settled[-7:] == [None] * 7
    # a code's main region among several: settled too (US for +1, GB for +44); another region's number is not
    assert number_lines(["+12125551234", "+447400123456", "+14165550123"]) == [12125551234, 447400123456,
                                                                                        None]
    assert normalise("+14165550123", TON_INTERNATIONAL) == 14165550123  # Canada: read the usual way


@given(st.lists(st.sampled_from(["+86138", "+86139", "+861", "+8610", "+44", "+1212", "+49", "+91", "+7", "+",
                                 "138", "139", "1", "0", "00", "86", "8613", "2", "7", "212", "020", "44", ""]),
                min_size=1, max_size=30),
       st.sampled_from([None, "CN", "US", "GB", "DE", "RU", "IN"]), st.randoms(use_true_random=False))
def test_number_lines_agrees_with_normalise_on_any_lines(heads, region, rnd):
    """International lines as normalise reads them with TON 1; the others (national numbers in the default
    region, or not) as it reads them with TON 0."""
    lines = [head + "".join(rnd.choice("0123456789") for _ in range(rnd.randint(0, 11))) for head in heads]
    for line, got in zip(lines, number_lines(lines, region), strict=True):
        ton = TON_INTERNATIONAL if line.startswith("+") else TON_UNKNOWN
        assert got is None or got == normalise(line, ton, region), (line, region)


def test_national_lines_of_the_default_region_are_settled():
    lines = ["13800138000", "013800138000", "8613800138000", "008613800138000", "1380013800", "02012345678",
             "2012345678"]
    assert number_lines(lines, "CN") == [8613800138000, None, None, None, None, None, 862012345678]
    assert [normalise(line, TON_UNKNOWN, "CN") for line in lines[:4]] == [8613800138000] * 4  # the slow way
    assert number_lines(lines, None) == [None] * len(lines)  # without a region: not national numbers
    assert number_lines(["2125551234", "4165550123"], "US") == [12125551234, None]  # NANPA: US's own pattern
    # digits that start with the region's own code are read as international first, when that is valid
    assert normalise("4357054", TON_UNKNOWN, "AT") == 4357054 and number_lines(["4357054"], "AT") == [None]


# --- zones -------------------------------------------------------------------------------------------------------


def test_zones_for_cn_mobile_is_shanghai():
    assert zones_for(CN_MOBILE) == ("Asia/Shanghai",)


def test_zones_for_au_mobile_gives_eight_zones():
    zones = zones_for(AU_MOBILE)
    assert len(zones) == 8
    assert {"Australia/Perth", "Australia/Sydney", "Australia/Lord_Howe"} <= set(zones)


def test_zones_for_us_toll_free_gives_many_zones():
    zones = zones_for(US_TOLL_FREE)
    assert len(zones) == 42
    assert {"America/New_York", "America/Los_Angeles", "Pacific/Honolulu"} <= set(zones)


def test_zones_for_unknown_is_empty():
    assert zones_for(NO_ZONE) == ()
    assert "Etc/Unknown" not in zones_for(US_TOLL_FREE)


@pytest.mark.parametrize("number, override, fallback, expected", [
    (CN_MOBILE, None, "UTC", ("Asia/Shanghai",)),
    (CN_MOBILE, "Europe/Paris", "UTC", ("Europe/Paris",)),  # the per-number override wins
    (AU_MOBILE, "Australia/Perth", "UTC", ("Australia/Perth",)),
    (NO_ZONE, None, "Asia/Shanghai", ("Asia/Shanghai",)),  # no zone known: the fallback
])
def test_candidate_zones(number, override, fallback, expected):
    assert candidate_zones(number, override, fallback) == expected


def test_utc_offsets_are_distinct_and_follow_dst():
    zones = ("Australia/Sydney", "Australia/Melbourne", "Australia/Perth")
    assert utc_offsets(zones, at(2025, 1, 15, 12, zone="UTC")) == (8 * 3600, 11 * 3600)  # Sydney = Melbourne
    assert utc_offsets(zones, at(2025, 7, 15, 12, zone="UTC")) == (8 * 3600, 10 * 3600)


def test_region_of():
    assert region_of(CN_MOBILE) == "CN"
    assert region_of(AU_MOBILE) == "AU"
    assert region_of(US_NY) == "US"


def test_check_region_and_zone():
    assert check_region("cn") == "CN"
    with pytest.raises(ValueError):
        check_region("XX")
    assert check_zone("Asia/Shanghai") == "Asia/Shanghai"
    for bad in ("Mars/Base", "../etc", ""):
        with pytest.raises(ValueError):
            check_zone(bad)


@pytest.mark.parametrize("number, region", [(971501234567, "AE"), (390612345678, "IT"), (3906698123456, "VA"),
                                            (12025550123, "US"), (80012345678, "001")])
def test_region_of_three_digit_codes_and_leading_zeros(number, region):
    assert region_of(number) == region  # Italy keeps the 0 of 06 (phonenumbers' italian_leading_zero)
