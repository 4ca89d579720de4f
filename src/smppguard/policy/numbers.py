"""Phone numbers: destination addresses to E.164, and E.164 numbers to candidate time zones. Pure.

Rule 1: one subscriber is one key. 13800138000, 8613800138000, +8613800138000 and 008613800138000 (default region
CN) all become the integer 8613800138000; an E.164 number fits 50 bits, so millions of them stay compact.
Rule 2: phonenumbers decides validity and zones; we only avoid its slow string parser on the hot path.
Strategy: a digit-level fast path builds the PhoneNumber directly (country code by longest known prefix, national
prefix stripped for the default region) and asks phonenumbers whether it is valid (~10 us instead of ~60 us
through parse()); anything the fast path does not understand goes through phonenumbers.parse. Both are memoised.
TON (SMPP 3.4 section 5.2.5): 1 international, 2 national, 0 unknown (then the digits decide).
"""

from __future__ import annotations

import re
from functools import lru_cache

import phonenumbers
from phonenumbers import COUNTRY_CODE_TO_REGION_CODE, PhoneMetadata, PhoneNumber
from phonenumbers.phonenumberutil import (
    _GEO_MOBILE_COUNTRIES,  # what is_number_type_geographical reads
    NumberParseException,
)
from phonenumbers.tzdata import TIMEZONE_DATA, TIMEZONE_LONGEST_PREFIX

TON_INTERNATIONAL = 1
TON_NATIONAL = 2
UNKNOWN_ZONES: tuple[str, ...] = ()
_CACHE_SIZE = 65_536  # per cache; a miss costs ~10 us, an entry ~150 bytes
# E.164 has at most 15 digits; with an international prefix ("0011") a real address stays well under this.
# Longer digit strings skip the fast path (int() refuses > 4300 digits, and they are never valid anyway).
_FAST_PATH_MAX_DIGITS = 24


def e164(number: int) -> str:
    return f"+{number}"


def _number_from_international(digits: str) -> PhoneNumber | None:
    for cc_len in (1, 2, 3):
        cc = int(digits[:cc_len] or 0)
        if cc in COUNTRY_CODE_TO_REGION_CODE:
            national = digits[cc_len:]
            if not national:
                return None
            num = PhoneNumber(country_code=cc, national_number=int(national))
            zeros = len(national) - len(national.lstrip("0"))
            if zeros:
                num.italian_leading_zero = True
                num.number_of_leading_zeros = zeros
            return num
    return None


@lru_cache(maxsize=64)
def _region_prefixes(region: str) -> tuple[int, str, str]:
    md = PhoneMetadata.metadata_for_region(region)
    if md is None:
        raise ValueError(f"unknown region {region!r}")
    intl = "00" if md.international_prefix is None or not md.international_prefix.isdigit() else md.international_prefix
    return md.country_code, md.national_prefix or "", intl


def region_hint(address: str, default_region: str | None) -> str:
    """For an address that did not normalise: " (what is missing)" when it is digits with no country code
    (no "+" or "00") and no default region is configured, else "". Lets refusals say what to set."""
    address = address.strip()
    if default_region is None and address.isdigit() and not address.startswith("00"):
        return " (a number without a country code needs [policy] default_region)"
    return ""


def check_region(region: str) -> str:
    """Validate a configured default region (ISO 3166 code such as "CN")."""
    _region_prefixes(region.upper())
    return region.upper()


_CC_STRINGS = {str(cc): cc for cc in COUNTRY_CODE_TO_REGION_CODE}


def _split(digits: str) -> tuple[int, str] | None:
    """E.164 digits -> (country calling code, national significant number), by the longest known code."""
    for cc_len in (1, 2, 3):
        cc = _CC_STRINGS.get(digits[:cc_len])
        if cc is not None:
            nsn = digits[cc_len:]
            return (cc, nsn) if nsn else None
    return None


def _zone_depths() -> dict[str, int]:
    """For each 3-digit start, the longest TIMEZONE_DATA prefix beginning with it: a number's zone key needs
    no more digits than that (shorter prefixes are covered by its first 2 digits)."""
    depths: dict[str, int] = {}
    for key in TIMEZONE_DATA:
        if len(key) >= 3:
            depths[key[:3]] = max(depths.get(key[:3], 0), len(key))
    return depths


_ZONE_DEPTH = _zone_depths()


@lru_cache(maxsize=_CACHE_SIZE)
def _lookup(digits: str) -> tuple[str, tuple[str, ...]]:
    """(kind, candidate zones) of E.164 digits (no "+"), worked out once per number: the proxy asks once to
    normalise a destination and once more for its time zones."""
    split = _split(digits)
    kind = UNKNOWN if split is None else _kind_in_country(*split)
    if kind is UNKNOWN:
        return kind, UNKNOWN_ZONES
    # phonenumbers.timezone.time_zones_for_number, with the number's kind from our compiled patterns:
    # geographic numbers by their longest known prefix, the others by their country calling code.
    if kind is GEOGRAPHIC:
        key = digits[:max(_ZONE_DEPTH.get(digits[:3], 0), 2)]
    else:
        key = str(split[0])  # type: ignore[index]  # a known kind has a country code
    return kind, _zones_by_prefix(key)


def number_kind(digits: str) -> str:
    """UNKNOWN (invalid), NON_GEOGRAPHIC or GEOGRAPHIC for E.164 digits (no "+")."""
    return _lookup(digits)[0]


@lru_cache(maxsize=_CACHE_SIZE)
def normalise(address: str, ton: int = 0, default_region: str | None = None) -> int | None:
    """The E.164 number as an int, or None when the address is not a valid phone number."""
    raw = address.strip()
    plus = raw.startswith("+")
    digits = raw[1:] if plus else raw
    if digits.isdigit() and digits.isascii() and len(digits) <= _FAST_PATH_MAX_DIGITS:
        candidate = None
        if plus or ton == TON_INTERNATIONAL:
            candidate = digits
        elif default_region:
            cc, national_prefix, intl = _region_prefixes(default_region)
            scc = str(cc)
            if digits.startswith(intl):
                candidate = digits[len(intl):]
            elif digits.startswith(scc) and ton != TON_NATIONAL and number_kind(digits) is not UNKNOWN:
                candidate = digits  # already international without a prefix (8613800138000)
            else:
                national = digits[len(national_prefix):] if national_prefix and digits.startswith(
                    national_prefix) else digits
                candidate = scc + national
        elif ton == 0:
            candidate = digits.removeprefix("00")
        if candidate and number_kind(candidate) is not UNKNOWN:
            return int(candidate)
    # Formats the fast path does not take (spaces, dashes, letters, odd prefixes): the full parser.
    try:
        text = raw if plus or ton != TON_INTERNATIONAL else "+" + raw
        num = phonenumbers.parse(text, default_region)
    except NumberParseException:
        return None
    if not phonenumbers.is_valid_number(num):
        return None
    return int(phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164)[1:])


_NON_GEO_TYPES = ("premium_rate", "toll_free", "shared_cost", "voip", "personal_number", "pager", "uan",
                  "voicemail")
_Desc = tuple  # (frozenset of possible lengths, compiled pattern)
UNKNOWN, NON_GEOGRAPHIC, GEOGRAPHIC = "unknown", "non-geographic", "geographic"


def _compile_desc(desc) -> _Desc | None:
    if desc is None or not desc.national_number_pattern:
        return None
    return frozenset(desc.possible_length or ()), re.compile(desc.national_number_pattern)


@lru_cache(maxsize=512)
def _metadata(cc: int, region: str):
    """(general, non-geographic types, fixed_line, mobile, leading_digits) of a region, compiled once."""
    md = (PhoneMetadata.metadata_for_nongeo_region(cc) if region == "001"
          else PhoneMetadata.metadata_for_region(region))
    if md is None:
        return None
    others = tuple(d for d in (_compile_desc(getattr(md, t)) for t in _NON_GEO_TYPES) if d is not None)
    mobile = None if md.same_mobile_and_fixed_line_pattern else _compile_desc(md.mobile)
    leading = re.compile(md.leading_digits) if md.leading_digits else None
    return _compile_desc(md.general_desc), others, _compile_desc(md.fixed_line), mobile, leading


def _fits(desc: _Desc | None, length: int) -> re.Pattern | None:
    """The description's pattern if a number of `length` digits can match it (phonenumbers checks the possible
    lengths first), else None."""
    if desc is None:
        return None
    lengths, pattern = desc
    return None if lengths and length not in lengths else pattern


@lru_cache(maxsize=4096)
def _plan(cc: int, region: str, length: int) -> tuple | None:
    """What `_kind` matches for national numbers of `length` digits in a region: (general, the non-geographic
    types as one alternation, fixed line, mobile), each None when that length rules it out; None when the
    region is unknown or the general description rules the length out. Worked out once per region and length,
    so a number costs a few regex calls and no loop."""
    meta = _metadata(cc, region)
    if meta is None:
        return None
    general, others, fixed_line, mobile, _leading = meta
    general_p = _fits(general, length)
    if general_p is None:
        return None
    # A full match of "(?:a)|(?:b)" is a full match of a or of b: one call instead of one per type.
    other = [p.pattern for p in (_fits(d, length) for d in others) if p is not None]
    others_p = re.compile("|".join(f"(?:{p})" for p in other)) if other else None
    return general_p, others_p, _fits(fixed_line, length), _fits(mobile, length)


def _kind(nsn: str, cc: int, region: str, geo_mobile: bool) -> str:
    """phonenumbers' _number_type_helper reduced to what we use: invalid, or whether phonenumbers places the
    number geographically (fixed line; mobile too in countries whose mobiles are geographic)."""
    plan = _plan(cc, region, len(nsn))
    if plan is None:
        return UNKNOWN
    general, others, fixed_line, mobile = plan
    if general.fullmatch(nsn) is None:
        return UNKNOWN
    if others is not None and others.fullmatch(nsn) is not None:
        return NON_GEOGRAPHIC
    if geo_mobile:  # fixed line or mobile makes no difference: try the (usually far shorter) mobile pattern first
        if mobile is not None and mobile.fullmatch(nsn) is not None:
            return GEOGRAPHIC
        return GEOGRAPHIC if fixed_line is not None and fixed_line.fullmatch(nsn) is not None else UNKNOWN
    if fixed_line is not None and fixed_line.fullmatch(nsn) is not None:
        return GEOGRAPHIC
    return NON_GEOGRAPHIC if mobile is not None and mobile.fullmatch(nsn) is not None else UNKNOWN


def _kind_in_country(cc: int, nsn: str) -> str:
    """The kind of number in the region phonenumbers would attribute it to (region_code_for_number:
    leading digits first, else the first region where it is valid)."""
    regions = COUNTRY_CODE_TO_REGION_CODE.get(cc)
    if not regions:
        return UNKNOWN
    geo_mobile = cc in _GEO_MOBILE_COUNTRIES
    if len(regions) == 1:
        return _kind(nsn, cc, regions[0], geo_mobile)
    for region in regions:
        meta = _metadata(cc, region)
        if meta is None:
            continue
        if meta[4] is not None:
            if meta[4].match(nsn):
                return _kind(nsn, cc, region, geo_mobile)
        else:
            kind = _kind(nsn, cc, region, geo_mobile)
            if kind is not UNKNOWN:
                return kind
    return UNKNOWN


def is_valid(num: PhoneNumber) -> bool:
    """phonenumbers.is_valid_number with its patterns compiled once: the same steps, several times faster.
    Tests compare the two on many numbers."""
    nsn = ("0" * num.number_of_leading_zeros if num.italian_leading_zero else "") + str(num.national_number)
    return _kind_in_country(num.country_code, nsn) is not UNKNOWN


def zones_for(number: int) -> tuple[str, ...]:
    """Candidate IANA zones of a valid E.164 number (several for AU/RU mobiles, US toll-free, ...).
    Empty when phonenumbers knows none."""
    return _lookup(str(number))[1]


@lru_cache(maxsize=65_536)
def _zones_by_prefix(key: str) -> tuple[str, ...]:
    """The zones of the longest prefix of `key` that phonenumbers' data knows."""
    for length in range(min(TIMEZONE_LONGEST_PREFIX, len(key)), 0, -1):
        zones = TIMEZONE_DATA.get(key[:length])
        if zones is not None:
            return tuple(z for z in zones if z != "Etc/Unknown")
    return UNKNOWN_ZONES


def region_of(number: int) -> str | None:
    num = _number_from_international(str(number))
    return phonenumbers.region_code_for_number(num) if num is not None else None


def candidate_zones(number: int, override: str | None, fallback: str) -> tuple[str, ...]:
    """The zones a recipient may be in: the per-number override, else phonenumbers' candidates, else fallback."""
    if override:
        return (override,)
    return zones_for(number) or (fallback,)


@lru_cache(maxsize=4096)
def _zoneinfo(name: str):
    from zoneinfo import ZoneInfo
    return ZoneInfo(name)


@lru_cache(maxsize=8192)
def _offsets_in_minute(zones: tuple[str, ...], minute: int) -> tuple[int, ...]:
    from datetime import datetime, timezone
    at = datetime.fromtimestamp(minute * 60, timezone.utc)
    return tuple(sorted({int(at.astimezone(_zoneinfo(z)).utcoffset().total_seconds()) for z in zones}))


def utc_offsets(zones: tuple[str, ...], now: float) -> tuple[int, ...]:
    """Distinct UTC offsets (seconds) of `zones` at `now`: zones that share an offset are judged once
    (COMPLIANCE-NOTES: compare UTC offsets, not zone names). Offsets change only on the minute."""
    return _offsets_in_minute(zones, int(now // 60))


def check_zone(name: str) -> str:
    try:
        _zoneinfo(name)
    except Exception:  # ZoneInfoNotFoundError, ValueError for malformed keys
        raise ValueError(f"unknown time zone {name!r} (an IANA name such as \"Asia/Shanghai\")") from None
    return name
