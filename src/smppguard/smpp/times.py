"""SMPP time fields (schedule_delivery_time, validity_period): SMPP 3.4 section 7.1.1.

Absolute "YYMMDDhhmmsstnnp": p is "+" or "-", nn the offset from UTC in quarter hours, t tenths of a second.
Relative "YYMMDDhhmmss000R": years, months, days, hours, minutes and seconds from now (a month taken as 30 days,
a year as 365, as SMSCs do). An empty field means "none" (the SMSC default).
"""

from __future__ import annotations

import calendar

from .errors import PduError
from .status import Status


def parse_time(value: str, now: float) -> float | None:
    """The instant a time field names (UTC epoch seconds), or None for an empty field. PduError (0x62, invalid
    expiry date) when it is neither form."""
    if not value:
        return None
    if len(value) != 16 or not value[:15].isdigit() or value[15] not in "+-R":
        raise PduError(f"time field {value!r} is not YYMMDDhhmmsstnnp", Status.RINVEXPIRY)
    yy, mo, dd, hh, mi, ss = (int(value[i:i + 2]) for i in range(0, 12, 2))
    if value[15] == "R":
        return now + ((yy * 365 + mo * 30 + dd) * 24 + hh) * 3600 + mi * 60 + ss
    tenths, quarters = int(value[12]), int(value[13:15])
    if not (1 <= mo <= 12 and 1 <= dd <= 31 and hh < 24 and mi < 60 and ss < 60 and quarters <= 48):
        raise PduError(f"time field {value!r} is not a valid date", Status.RINVEXPIRY)
    local = calendar.timegm((2000 + yy, mo, dd, hh, mi, ss, 0, 0, 0)) + tenths / 10
    offset = quarters * 900
    return local - offset if value[15] == "+" else local + offset
