"""Phone numbers: destination addresses to E.164, and E.164 numbers to candidate time zones. Pure.

Rule 1: one subscriber is one key. 13800138000, 8613800138000, +8613800138000 and 008613800138000 (default region
CN) all become the integer 8613800138000; an E.164 number fits 50 bits, so millions of them stay compact.
Rule 2: phonenumbers decides validity and zones; we only avoid its slow string parser on the hot path.
Strategy: a digit-level fast path finds the country code by the number's first 3 digits, strips the national
prefix for the default region, and replays phonenumbers' validity check with its own patterns, compiled into one
regex per region and length (~2 us for a new number instead of ~60 us through parse()); anything the fast path
does not understand goes through phonenumbers.parse. `locate` memoises the number with its zones.
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
_CACHE_SIZE = 4_096  # destinations `locate` remembers; a miss costs ~3 us, an entry ~250 bytes
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
def _region_prefixes(region: str) -> tuple[int, str, str, str, tuple[str, ...]]:
    """(country calling code, national prefix, international prefix, the calling code as digits, those of the
    three that are not empty: what a national number written without its trunk prefix starts with none of)."""
    md = PhoneMetadata.metadata_for_region(region)
    if md is None:
        raise ValueError(f"unknown region {region!r}")
    intl = "00" if md.international_prefix is None or not md.international_prefix.isdigit() else md.international_prefix
    national, cc = md.national_prefix or "", str(md.country_code)
    return md.country_code, national, intl, cc, tuple(p for p in (intl, cc, national) if p)


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


# The two tables below are built once, at import: mutation testing cannot change code that has already run, so it
# leaves them alone; test_locate_agrees_with_phonenumbers_on_every_region_and_type checks what they give.
def _zone_depths() -> dict[str, int]:  # pragma: no mutate block
    """For each 3-digit start, the longest TIMEZONE_DATA prefix beginning with it: a number's zone key needs
    no more digits than that (shorter prefixes are covered by its first 2 digits)."""
    depths: dict[str, int] = {}
    for key in TIMEZONE_DATA:
        if len(key) >= 3:
            depths[key[:3]] = max(depths.get(key[:3], 0), len(key))
    return depths


def _heads() -> dict[str, tuple[int, int, int, tuple[str, ...]]]:  # pragma: no mutate block
    """Every 3-digit start of an E.164 number -> (country calling code, its length, how many digits of a
    geographic number key its zones, the zones of a non-geographic number: its calling code's). Country codes
    are prefix-free (ITU-T E.164), so the first 3 digits settle the code: one lookup per number."""
    depths = _zone_depths()
    heads = {}
    for cc in COUNTRY_CODE_TO_REGION_CODE:
        code = str(cc)
        fill = 3 - len(code)
        for rest in range(10 ** fill):
            head = code + (f"{rest:0{fill}d}" if fill else "")
            heads[head] = (cc, len(code), max(depths.get(head, 0), 2), _zones_by_prefix(code))
    return heads


def _lookup(digits: str) -> tuple[str, tuple[str, ...]]:
    """(kind, candidate zones) of E.164 digits (no "+"). It runs for every new recipient, so it is one table
    lookup for the country code and one regex call per region (~1.5 us)."""
    head = _HEADS.get(digits[:3])
    if head is None:
        return INVALID
    cc, cc_len, zone_depth, cc_zones = head
    nsn = digits[cc_len:]
    plan = _plan(cc, len(nsn))
    kind = UNKNOWN
    for leading, pattern, kinds in plan:
        # phonenumbers' region_code_for_number: a region with leading digits takes the number if they
        # match; one without takes it if it is valid there.
        if leading is not None and not leading.match(nsn):
            continue
        if pattern is not None:
            m = pattern.fullmatch(nsn)
            if m is not None:
                kind = kinds[m.lastgroup]
        if kind is not UNKNOWN or leading is not None:
            break
    if kind is UNKNOWN:
        return INVALID
    # phonenumbers.timezone.time_zones_for_number, with the number's kind from our compiled patterns:
    # geographic numbers by their longest known prefix, the others by their country calling code.
    return kind, _zones_by_prefix(digits[:zone_depth]) if kind is GEOGRAPHIC else cc_zones


Located = tuple[int, tuple[str, ...]]  # (E.164 number, its candidate zones)


def locate_once(address: str, ton: int = 0, default_region: str | None = None) -> Located | None:
    """The E.164 number as an int and its candidate zones, or None when the address is not a valid phone
    number. The proxy's one call per destination: a new recipient costs one pass over its digits."""
    raw = address.strip()
    plus = raw[:1] == "+"
    digits = raw[1:] if plus else raw
    if digits.isdigit() and digits.isascii() and len(digits) <= _FAST_PATH_MAX_DIGITS:
        candidate = None
        if plus or ton == TON_INTERNATIONAL:
            candidate = digits
        elif default_region:
            cc, national_prefix, intl, scc, starts = _region_prefixes(default_region)
            if not digits.startswith(starts):  # most often: a national number without its trunk prefix
                candidate = scc + digits
                sole = _first_plan(cc, len(digits))
                if sole is not None and (m := sole[0].fullmatch(digits)) is not None:  # _lookup(candidate), inline
                    zone_key = candidate[:_HEADS[candidate[:3]][2]] if sole[1][m.lastgroup] is GEOGRAPHIC else scc
                    return int(candidate), _zones_by_prefix(zone_key)
            elif digits.startswith(intl):
                candidate = digits[len(intl):]
            elif digits.startswith(scc) and ton != TON_NATIONAL and (found := _lookup(digits)) is not INVALID:
                return int(digits), found[1]  # already international without a prefix (8613800138000)
            else:
                national = digits[len(national_prefix):] if national_prefix and digits.startswith(
                    national_prefix) else digits
                candidate = scc + national
        elif ton == 0:
            candidate = digits.removeprefix("00")
        if candidate:
            kind, zones = _lookup(candidate)
            if kind is not UNKNOWN:
                return int(candidate), zones
    # Formats the fast path does not take (spaces, dashes, letters, odd prefixes): the full parser.
    try:
        text = raw if plus or ton != TON_INTERNATIONAL else "+" + raw
        num = phonenumbers.parse(text, default_region)
    except NumberParseException:
        return None
    if not phonenumbers.is_valid_number(num):
        return None
    digits = phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164)[1:]
    return int(digits), _lookup(digits)[1]


#: The proxy's lookups repeat recipients: cached. An import's numbers are each seen once (`locate_once`: the
#: cache's upkeep made a new number cost 6.2 us instead of 3.9).
locate = lru_cache(maxsize=_CACHE_SIZE)(locate_once)


def normalise(address: str, ton: int = 0, default_region: str | None = None, *, once: bool = False) -> int | None:
    """The E.164 number as an int, or None when the address is not a valid phone number (`once`: not cached)."""
    located = (locate_once if once else locate)(address, ton, default_region)
    return None if located is None else located[0]


_NON_GEO_TYPES = ("premium_rate", "toll_free", "shared_cost", "voip", "personal_number", "pager", "uan",
                  "voicemail")
UNKNOWN, NON_GEOGRAPHIC, GEOGRAPHIC = "unknown", "non-geographic", "geographic"
INVALID: tuple[str, tuple[str, ...]] = (UNKNOWN, UNKNOWN_ZONES)


def _fits(desc, length: int) -> str | None:
    """The description's pattern if a number of `length` digits can match it (phonenumbers checks the possible
    lengths first), else None."""
    if desc is None or not desc.national_number_pattern:
        return None
    lengths = desc.possible_length or ()
    return None if lengths and length not in lengths else desc.national_number_pattern


def _region_plan(cc: int, region: str, length: int, geo_mobile: bool) -> tuple | None:
    """(leading digits, one pattern, group name -> kind) for national numbers of `length` digits in a region,
    or None when phonenumbers does not know the region.

    phonenumbers' _number_type_helper reduced to what we use, as one regex: the general description must
    match (a lookahead), then the first type that matches decides, in phonenumbers' order: the
    non-geographic types, then fixed line and mobile (mobile first where mobiles are geographic; it makes no
    difference to the answer there, and its pattern is usually far shorter). A full match of "(a)|(b)" is
    the first of a, b that matches whole, so the order holds."""
    md = (PhoneMetadata.metadata_for_nongeo_region(cc) if region == "001"
          else PhoneMetadata.metadata_for_region(region))
    if md is None:
        return None
    leading = re.compile(md.leading_digits) if md.leading_digits else None
    general = _fits(md.general_desc, length)
    mobile = None if md.same_mobile_and_fixed_line_pattern else _fits(md.mobile, length)
    fixed_line = _fits(md.fixed_line, length)
    branches = [(NON_GEOGRAPHIC, p) for p in (_fits(getattr(md, t), length) for t in _NON_GEO_TYPES) if p]
    if geo_mobile:
        branches += [(GEOGRAPHIC, mobile), (GEOGRAPHIC, fixed_line)]
    else:
        branches += [(GEOGRAPHIC, fixed_line), (NON_GEOGRAPHIC, mobile)]
    branches = [(kind, p) for kind, p in branches if p]
    if general is None or not branches:
        return leading, None, {}
    kinds = {f"k{i}": kind for i, (kind, _p) in enumerate(branches)}
    alternatives = "|".join(f"(?P<k{i}>{p})" for i, (_kind, p) in enumerate(branches))
    # "$", not "\\Z": the same end for digits (no newline to stop before), and the end of each line when
    # number_lines runs the pattern over many lines (MULTILINE)
    return leading, re.compile(f"(?=(?:{general})$)(?:{alternatives})"), kinds


@lru_cache(maxsize=4096)
def _plan(cc: int, length: int) -> tuple[tuple, ...]:
    """Per region of a country calling code, in phonenumbers' order: what `_lookup` matches for national
    numbers of `length` digits. Worked out once per code and length."""
    geo_mobile = cc in _GEO_MOBILE_COUNTRIES
    regions = COUNTRY_CODE_TO_REGION_CODE.get(cc, ())
    plans = [p for p in (_region_plan(cc, region, length, geo_mobile) for region in regions) if p is not None]
    if len(regions) == 1 and plans:  # the only region takes every number, leading digits or not
        plans[0] = (None,) + plans[0][1:]
    return tuple(plans)


@lru_cache(maxsize=256)
def _first_plan(cc: int, length: int) -> tuple[re.Pattern, dict[str, str]] | None:
    """The pattern and kinds of the first region of calling code `cc` for national numbers of `length` digits,
    when that region has no leading digits to match first (CN's, US's for +1): a number it finds valid is what
    `_lookup` finds, with no other region asked. None otherwise."""
    plans = _plan(cc, length)
    if not plans or plans[0][0] is not None or plans[0][1] is None:
        return None
    return plans[0][1], plans[0][2]


@lru_cache(maxsize=4096)
def _lines_pattern(cc: int, length: int, written: str) -> re.Pattern | None:
    """One regex over many lines: a line is `written` (a regex: "\\+86", or nothing) and a national number of
    `length` ASCII digits that the first region of calling code `cc` finds valid. `_lookup` tries that region
    first; when it has no leading digits (a code's only region, or its main one: US for +1, RU for +7, GB for
    +44), a number its pattern matches whole is valid there, whatever the other regions say. None when the
    first region has leading digits."""
    first = _first_plan(cc, length)
    return None if first is None else re.compile(f"^{written}(?:{first[0].pattern})$", re.MULTILINE | re.ASCII)


def number_lines(lines: list[str], default_region: str | None = None) -> list[int | None]:
    """For each line of a file of numbers, its number when the line is nothing but a valid number of its code's
    first region: "+" and the digits (as `normalise(line, 1)` reads it), or, with a default region, the national
    digits without a trunk or international prefix (as `normalise(line, 0, region)` reads "13800138000" in CN).
    None for the others: not settled here, read them as `normalise` would. The same numbers, at a few regex
    passes a country and length instead of a call per line (a list import of ten million numbers)."""
    out: list[int | None] = [None] * len(lines)
    groups: dict[tuple[str, int], list[int]] = {}
    home, not_national = "", ()
    if default_region:
        _cc, _trunk, _intl, home, not_national = _region_prefixes(default_region)
    for i, line in enumerate(lines):
        if line[:1] == "+":
            groups.setdefault((line[:4], len(line) - 1), []).append(i)
        elif home and line and not line.startswith(not_national):
            groups.setdefault(("", len(line)), []).append(i)
    for (start, length), at in groups.items():
        if start:  # "+" and a number: its first three digits settle its calling code
            head = _HEADS.get(start[1:])
            if head is None or length > _FAST_PATH_MAX_DIGITS:
                continue
            pattern = _lines_pattern(head[0], length - head[1], f"\\+{head[0]}")
        else:  # a national number of the default region
            if length > _FAST_PATH_MAX_DIGITS:
                continue
            pattern = _lines_pattern(int(home), length, "")
        if pattern is None:
            continue
        # the lines that match become empty; what is left of the others is not empty
        left = pattern.sub("", "\n".join([lines[i] for i in at])).split("\n")
        written = "" if start else home
        for i, rest in zip(at, left, strict=True):
            if not rest:
                out[i] = int(written + lines[i])
    return out


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


_HEADS = _heads()  # here: it takes each calling code's zones from _zones_by_prefix


def region_of(number: int) -> str | None:
    num = _number_from_international(str(number))
    return phonenumbers.region_code_for_number(num) if num is not None else None


def candidate_zones(number: int, override: str | None, fallback: str,
                    known: tuple[str, ...] | None = None) -> tuple[str, ...]:
    """The zones a recipient may be in: the per-number override, else phonenumbers' candidates (`known` when
    the caller has them already), else fallback."""
    if override:
        return (override,)
    return (zones_for(number) if known is None else known) or (fallback,)


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
