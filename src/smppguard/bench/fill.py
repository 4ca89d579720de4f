"""A store filled as a large sender's is: blacklist entries, opt-outs and a month of send history."""

from __future__ import annotations

import itertools
import time
from pathlib import Path


def fill_store(path: Path, entries: int, seed: int = 7, *, history: int = 0, recipients: int = 0,
               optouts: int | None = None, history_days: float = 30.0) -> None:
    """`entries` blacklisted numbers and `optouts` (`entries` when None) sender-scoped opt-outs over 50 senders,
    none of them a benchmark recipient (those are 86138...; these are other Chinese mobile ranges), written
    straight into the list tables in key order; and `history` accepted sends over the last 30 days to
    `recipients` distinct numbers (a third as many as sends when 0), as a month of a real sender's traffic
    leaves in send_history. Reproducible: the same seed, the same store (numpy's PCG64). 20M + 5M entries and
    30M sends take a few minutes."""
    import sqlite3

    import numpy as np

    from ..store.db import connect

    db = connect(path)
    db.close()
    rng = np.random.default_rng(seed)
    prefixes = np.array([86139, 86150, 86151, 86152, 86158, 86159, 86186, 86187, 86188], dtype=np.int64)

    def numbers(n: int) -> np.ndarray:
        return prefixes[rng.integers(0, len(prefixes), n)] * 10**8 + rng.integers(0, 10**8, n)

    db = sqlite3.connect(path)
    try:
        db.execute("PRAGMA synchronous = OFF")
        db.execute("PRAGMA cache_size = -262144")
        db.execute("BEGIN")
        now = time.time()
        black = np.unique(numbers(entries)).tolist()
        db.executemany("INSERT OR IGNORE INTO blacklist (number, source, reason, added_at) "
                       "VALUES (?, 'complaint', '', ?)", zip(black, itertools.repeat(now)))
        del black
        count = entries if optouts is None else optouts
        opt = numbers(count)
        sender = rng.integers(0, 50, count)
        order = np.lexsort((sender, opt))
        db.executemany("INSERT OR IGNORE INTO optout (number, scope, scope_key, source, added_at) "
                       "VALUES (?, 'sender', 'SENDER' || ?, 'import', ?)",
                       zip(opt[order].tolist(), sender[order].tolist(), itertools.repeat(now - 86400)))
        del opt, sender, order
        if history:  # in time order, as the daemon logs them: the index on sent_at grows at its end
            people = recipients or max(1, history // 3)
            times = np.sort(now - rng.random(history) * history_days * 86400)
            for start in range(0, history, 1_000_000):
                n = min(1_000_000, history - start)
                db.executemany("INSERT INTO send_history (number, account, sent_at) VALUES (?, 'bench', ?)",
                               zip((8613700000000 + rng.integers(0, people, n)).tolist(),
                                   times[start:start + n].tolist(), strict=True))
        db.execute("COMMIT")
    finally:
        db.close()

