"""Credit scores from the store: the parts on record for a number (policy/credit.py weighs them), and the
numbers whose score is below the credit rule's floor, which the Index keeps (Index.low_credit).

Rule 1: blacklisted numbers are left out of Index.low_credit (the blacklist rule refuses their marketing
already, and a carrier's list of 20 million would fill memory for nothing); `smppguard check` shows their score.
Rule 2: at start-up only numbers whose events on record could put them below the floor are scored: the negative
points are summed in one SQL pass and the rest skipped (recent deliveries only add points).
Rule 3: after start-up, the upkeep rescores the numbers a change touched (opt-outs, blacklist, dead numbers) and
those the deliver path counted a receipt for.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Iterable

from ..policy import Policy
from ..policy.credit import CreditParts, score

DELIVERED_WINDOW_S = 30 * 86400.0  # deliveries older than this add nothing
CHUNK = 5000

_PARTS = """
SELECT n.value,
  (SELECT source FROM blacklist b WHERE b.number = n.value),
  EXISTS (SELECT 1 FROM watched w WHERE w.number = n.value),
  (SELECT COUNT(*) FROM optout o WHERE o.number = n.value AND o.scope != 'global'),
  EXISTS (SELECT 1 FROM optout o WHERE o.number = n.value AND o.scope = 'global'),
  EXISTS (SELECT 1 FROM dead d WHERE d.number = n.value AND d.expires_at > ?),
  (SELECT COUNT(*) FROM receipt_failure f WHERE f.number = n.value AND f.at > ?),
  COALESCE((SELECT count FROM delivery_ok k WHERE k.number = n.value AND k.since > ?), 0)
FROM json_each(?) n
"""

_CANDIDATES = """
SELECT number FROM (
  SELECT number, MIN(CASE WHEN scope = 'global' THEN ? ELSE ? END, 0) AS w FROM optout
  UNION ALL SELECT number, MIN(?, 0) FROM dead WHERE expires_at > ?
  UNION ALL SELECT number, MIN(?, 0) FROM receipt_failure WHERE at > ?
  UNION ALL SELECT number, MIN(?, 0) FROM watched
) WHERE number NOT IN (SELECT number FROM blacklist) GROUP BY number HAVING 100 + SUM(w) < ?
"""


def parts_of(db: sqlite3.Connection, numbers: Iterable[int], now: float,
             failures_within_s: float) -> dict[int, CreditParts]:
    out = {}
    numbers = list(numbers)
    for i in range(0, len(numbers), CHUNK):
        args = (now, now - failures_within_s, now - DELIVERED_WINDOW_S, json.dumps(numbers[i:i + CHUNK]))
        for number, source, watched, optouts, global_optout, dead, failures, delivered in db.execute(_PARTS, args):
            out[number] = CreditParts(int(source == "complaint"), int(source is not None and source != "complaint"),
                                      int(watched), optouts, int(global_optout), int(dead), failures, delivered)
    return out


def low_scores(db: sqlite3.Connection, numbers: Iterable[int], policy: Policy, now: float,
               failures_within_s: float) -> dict[int, int | None]:
    """Each number's score if the Index keeps it (below the floor, not blacklisted), else None."""
    floor = policy.credit_floor
    out: dict[int, int | None] = {}
    for number, parts in parts_of(db, numbers, now, failures_within_s).items():
        value, _ = score(parts, policy.credit_weights)
        out[number] = value if floor is not None and value < floor and not (parts.complaint or parts.listed) \
            else None
    return out


def load_low_credit(db: sqlite3.Connection, policy: Policy, now: float, failures_within_s: float) -> dict[int, int]:
    """Index.low_credit at start-up (Rule 2); {} when no enabled rule reads it."""
    floor = policy.credit_floor
    if floor is None:
        return {}
    w = {part: 0 for part in CreditParts._fields} | dict(policy.credit_weights)
    candidates = [n for (n,) in db.execute(_CANDIDATES, (
        w["global_optout"], w["optout"], w["dead"], now, w["suspended"], now - failures_within_s, w["watched"],
        floor))]
    return {n: s for n, s in low_scores(db, candidates, policy, now, failures_within_s).items() if s is not None}


def apply_low_scores(low_credit: dict[int, int], scores: dict[int, int | None]) -> None:
    for number, value in scores.items():
        if value is None:
            low_credit.pop(number, None)
        else:
            low_credit[number] = value
