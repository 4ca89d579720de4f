"""A token bucket for the carrier's per-bind rate limit (max_tps), pure.

Submits over the limit wait for their turn instead of drawing 0x58 from the SMSC. Burst is one second's worth
(at least 1), so a sender that was idle does not exceed the limit by more than the carrier tolerates in a second.
"""

from __future__ import annotations


class TokenBucket:
    __slots__ = ("rate", "burst", "_tokens", "_stamp")

    def __init__(self, rate: float, now: float, burst: float | None = None):
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate)
        self._tokens = self.burst
        self._stamp = now

    def take(self, now: float) -> float:
        """Take one token: 0.0 if granted, else the seconds to wait before asking again."""
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self.rate
