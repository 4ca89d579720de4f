"""Shared by the policy/ tests: a fake clock, a few numbers with known zones, and Submission builders.

The clock is plain epoch seconds built from a local wall-clock time in a named zone (`at(...)`), so every
test says which local time it means and no test reads the wall clock. Numbers are E.164 ints (numbers.py).
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from smppguard.policy.model import Submission

SHANGHAI = "Asia/Shanghai"
NEW_YORK = "America/New_York"
SYDNEY = "Australia/Sydney"
PERTH = "Australia/Perth"
UTC = "UTC"

CN_MOBILE = 8613800138000  # +86 138: one zone, Asia/Shanghai
CN_OTHER = 8613900139000
US_NY = 12125550123  # +1 212: America/New_York
AU_MOBILE = 61412345678  # +61 4xx: 8 candidate zones, Perth (and Cocos) to Lord_Howe
US_TOLL_FREE = 18002345678  # +1 800: 42 candidate zones, Pago Pago to Guam
NO_ZONE = 80012345678  # +800 international freephone: valid, phonenumbers knows no zone

MINUTE = 60.0
HOUR = 3600.0
DAY = 86400.0


def at(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0,
       zone: str = SHANGHAI) -> float:
    """Epoch seconds of a local wall-clock time in `zone`."""
    return datetime(year, month, day, hour, minute, second, tzinfo=ZoneInfo(zone)).timestamp()


def local(ts: float, zone: str) -> datetime:
    return datetime.fromtimestamp(ts, ZoneInfo(zone))


def sub(recipient: int | None = CN_MOBILE, *, sender: str = "ACME", account: str = "acme",
        traffic_class: str = "marketing", text: str | None = None, address: str | None = None) -> Submission:
    address = address if address is not None else (f"+{recipient}" if recipient is not None else "bogus")
    return Submission(recipient, address, sender, account, traffic_class, "", text)
