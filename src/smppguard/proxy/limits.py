"""Who may bind, and how often they may fail: the gate in front of every upstream bind. Pure: no sockets, the
clock passed in.

Rule 1: a bind the gate refuses never reaches the SMSC. A system_id outside `allow_system_ids` is refused 0x0F
(RINVSYSID), an address outside `allow_networks` 0x0D (RBINDFAIL); both lists are empty (anyone) by default.
Rule 2: a password guesser cannot turn into a stream of upstream binds. After `failed_binds` binds from one
address that the SMSC refused (0x0D, 0x0E, 0x0F) with no success between, that address's binds are refused here
(0x0D) for `backoff_s`, doubled after each further failure up to 16 times; a bind that succeeds clears it.
Rule 3: an account has at most `max_binds_per_account` binds at once; one more is refused 0x05 (RALYBND).
"""

from __future__ import annotations

import ipaddress
import time
from typing import Callable, Iterable

from ..smpp.status import Status

#: The SMSC's answers that say the credentials were wrong: they count as failures (Rule 2).
AUTH_FAILURES = frozenset({Status.RBINDFAIL, Status.RINVPASWD, Status.RINVSYSID})
MAX_BACKOFF_FACTOR = 16
MAX_TRACKED = 100_000  # addresses with failures remembered at most; past it the oldest are forgotten


def networks(names: Iterable[str]) -> tuple:
    """[listen] allow_networks: "10.1.2.3/16" is the network it is in, as people write it (host bits set)."""
    return tuple(ipaddress.ip_network(n, strict=False) for n in names)


class BindGate:
    def __init__(self, *, allow_system_ids: Iterable[str] = (), allow_networks: Iterable[str] = (),
                 max_binds_per_account: int = 0, failed_binds: int = 5, backoff_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic):
        self.allow_system_ids = frozenset(allow_system_ids)
        self.allow_networks = networks(allow_networks)
        self.max_binds_per_account = max_binds_per_account  # 0: no cap
        self.failed_binds = failed_binds
        self.backoff_s = backoff_s
        self.clock = clock
        self.binds: dict[str, int] = {}  # system_id -> binds up
        self._failures: dict[str, tuple[int, float]] = {}  # address -> (failures in a row, refused until)

    def check(self, host: str, system_id: str) -> tuple[int, str] | None:
        """(status, why) to refuse this bind with, or None to let it through to the SMSC."""
        if self.allow_networks and not self._allowed_host(host):
            return Status.RBINDFAIL, f"address {host} is not in [listen] allow_networks"
        if self.allow_system_ids and system_id not in self.allow_system_ids:
            return Status.RINVSYSID, "system_id is not in [listen] allow_system_ids"
        failures = self._failures.get(host)
        if failures is not None and self.clock() < failures[1]:
            return Status.RBINDFAIL, (f"{failures[0]} failed binds from {host}; refused here for "
                                      f"{failures[1] - self.clock():.0f} s more")
        if self.max_binds_per_account and self.binds.get(system_id, 0) >= self.max_binds_per_account:
            return Status.RALYBND, f"{self.max_binds_per_account} binds of this account are up already"
        return None

    def _allowed_host(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self.allow_networks)

    def failed(self, host: str) -> None:
        """The SMSC refused a bind from `host` for its credentials (Rule 2)."""
        count = self._failures.get(host, (0, 0.0))[0] + 1
        until = 0.0
        if count >= self.failed_binds:
            factor = min(2 ** (count - self.failed_binds), MAX_BACKOFF_FACTOR)
            until = self.clock() + self.backoff_s * factor
        self._failures.pop(host, None)  # re-inserted last: the dict's order is the order of last failure
        self._failures[host] = (count, until)
        if len(self._failures) > MAX_TRACKED:
            del self._failures[next(iter(self._failures))]

    def bound(self, host: str, system_id: str) -> None:
        self._failures.pop(host, None)
        self.binds[system_id] = self.binds.get(system_id, 0) + 1

    def unbound(self, system_id: str) -> None:
        left = self.binds.get(system_id, 0) - 1
        if left > 0:
            self.binds[system_id] = left
        else:
            self.binds.pop(system_id, None)
