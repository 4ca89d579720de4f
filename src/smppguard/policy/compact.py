"""Compact containers for the Index's large tables: `CompactSet` (the blacklist, the opt-outs) and `CompactHistory`
(send times per frequency key). Pure: numpy arrays, no I/O.

Each holds a *base* built in bulk (numpy arrays: an open-addressing hash table of int64 keys) and small Python
*overlays* of the changes made since, so a lookup is a few set or dict probes and, when those miss, a probe of
the hash table. What a `set[int]` or a `dict[int, tuple[float, ...]]` given the same writes would hold, these
hold, whatever the base: the overlays record each write against what lies below them (Rule).

Why: a Python int in a set takes about 60 bytes, a recipient's tuple of send times in a dict about 250. For 20M
blacklisted numbers, 5M opt-outs and 10M recipients with recent sends that is over 4 GB and minutes of start-up.
Here a list entry takes one 8-byte table slot at a load of at most 0.6 (13 to 27 bytes), and a recipient 8 bytes
for its key, 8 for its offset, 4 per table slot and 8 per send; start-up reads them from a snapshot file
(store/snapshot.py).

The hash is Fibonacci hashing (the key times 2^64/phi, the top bits of the low 64), with linear probing.
`place()` builds a table in numpy, a round per probe step; `KeySlots.has` and `KeyTable.row` walk the same
sequence for one key in Python. Keys are non-negative and at most MAX_KEY; a larger key (an opt-out scope id past
8191, see model.scoped) stays in a Python set of its own.
"""

from __future__ import annotations

import operator
from bisect import bisect_left, bisect_right
from itertools import chain, repeat
from typing import Iterable, Iterator, NamedTuple

import numpy as np

from .sieve import Sieve

_MULT = 0x9E3779B97F4A7C15
MAX_KEY = (1 << 63) - 1
EMPTY = -1
#: Table slots per key at most 1/LOAD: with linear probing a miss then looks at 3.6 slots on average.
LOAD = 0.6
#: A batch of writes this large looks at the base in one vectorized pass instead of a probe per key.
VECTORIZE = 1_000


def table_bits(n: int) -> int:
    """The table size (a power of two, as bits) for `n` keys."""
    bits = 4
    while (1 << bits) * LOAD < n:
        bits += 1
    return bits


def _hash(keys: np.ndarray, bits: int) -> np.ndarray:
    h = keys.astype(np.uint64)  # in place from here: one array of the keys' size, not four
    h *= np.uint64(_MULT)  # wraps modulo 2^64, as KeySlots.has and KeyTable.row mask it
    h >>= np.uint64(64 - bits)
    return h.view(np.int64)


def place(keys: np.ndarray, bits: int) -> np.ndarray:
    """The table for `keys` (unique, 0 <= key <= MAX_KEY): for each of its 2^bits slots, the index in `keys` of
    the key there, or -1. In each round every unplaced key tries its current slot; of those that try a free slot
    one wins it, the others move one slot on. A key therefore sits after an unbroken run of taken slots from its
    hash, which is what `_probe` relies on."""
    size = 1 << bits
    mask = size - 1
    owner = np.full(size, -1, dtype=np.int32 if len(keys) < 2**31 else np.int64)
    pending = np.arange(len(keys), dtype=owner.dtype)
    pos = _hash(keys, bits)
    if bits < 31:  # slots fit in 32 bits: half the memory for the rounds' arrays (10M keys and more)
        pos = pos.astype(np.int32)
    while pending.size:
        free = owner[pos] < 0
        cand, cpos = pending[free], pos[free]
        owner[cpos] = cand
        placed = free  # of the keys that tried a free slot, those that won it
        placed[free] = owner[cpos] == cand
        del cand, cpos
        left = ~placed
        pending = pending[left]
        pos = pos[left]
        pos += 1
        pos &= mask
    return owner


class KeyTable:
    """A hash table of int64 keys, built once: `rows[slot]` is the index of the key in `keys`, or -1."""

    __slots__ = ("keys", "rows", "bits", "_shift", "_mask", "_rows", "_keys")

    def __init__(self, keys: np.ndarray, rows: np.ndarray | None = None):
        self.keys = np.ascontiguousarray(keys, dtype=np.int64)
        self.bits = table_bits(len(self.keys))
        if rows is None or len(rows) != 1 << self.bits:
            rows = place(self.keys, self.bits)
        self.rows = rows
        self._shift = 64 - self.bits
        self._mask = (1 << self.bits) - 1
        # memoryviews: indexing one gives a Python int at C speed, a numpy array's item costs four times as much
        self._rows = memoryview(rows)
        self._keys = memoryview(self.keys)

    def rows_many(self, keys: np.ndarray) -> np.ndarray:
        """`row()` of each of `keys` (int64), vectorized: a round per probe step, as place() built the table."""
        found = np.full(len(keys), -1, dtype=np.int64)
        idx = np.arange(len(keys))
        pos = _hash(keys, self.bits)
        while idx.size:
            r = self.rows[pos]
            taken = r >= 0
            hit = taken.copy()
            hit[taken] = self.keys[r[taken]] == keys[idx[taken]]
            found[idx[hit]] = r[hit]
            more = taken & ~hit
            idx, pos = idx[more], (pos[more] + 1) & self._mask
        return found

    def row(self, key: int) -> int:
        """The index of `key` in `keys`, or -1 (a key past int64 included: its probe finds no equal key)."""
        rows, keys, mask = self._rows, self._keys, self._mask
        h = (key * _MULT >> self._shift) & mask  # the top bits of the low 64 of the product
        while True:
            r = rows[h]
            if r < 0:
                return -1
            if keys[r] == key:
                return r
            h = (h + 1) & mask


class KeySlots:
    """A hash set of int64 keys, built once: `slots[slot]` is the key there, or EMPTY. One memory read a probe,
    where KeyTable needs two, and 8 bytes a slot (13 a key at the table's load) where it needs 4 and 8 a key."""

    __slots__ = ("slots", "bits", "count", "_shift", "_mask", "_slots")

    def __init__(self, slots: np.ndarray, count: int | None = None):
        self.slots = np.ascontiguousarray(slots, dtype=np.int64)
        self.bits = len(self.slots).bit_length() - 1
        if len(self.slots) != 1 << self.bits or len(self.slots) < 16:
            raise ValueError(f"a key table has 2^n slots (n >= 4), not {len(self.slots)}")
        self.count = int((self.slots >= 0).sum()) if count is None else count
        self._shift = 64 - self.bits
        self._mask = (1 << self.bits) - 1
        self._slots = memoryview(self.slots)

    @classmethod
    def of(cls, keys: np.ndarray) -> KeySlots:
        """The table of `keys` (unique, 0 <= key <= MAX_KEY)."""
        keys = np.ascontiguousarray(keys, dtype=np.int64)
        bits = table_bits(len(keys))
        owner = place(keys, bits)
        slots = np.full(1 << bits, EMPTY, dtype=np.int64)
        taken = owner >= 0
        slots[taken] = keys[owner[taken]]
        return cls(slots, len(keys))

    @property
    def keys(self) -> np.ndarray:
        """The keys, sorted (a sort of all of them: for a rebuild, not for a lookup)."""
        return np.sort(self.slots[self.slots >= 0])

    def __len__(self) -> int:
        return self.count

    def has_many(self, keys: np.ndarray) -> np.ndarray:
        """`has()` of each of `keys` (int64), vectorized: a round per probe step, as place() built the table."""
        found = np.zeros(len(keys), dtype=bool)
        idx = np.arange(len(keys))
        pos = _hash(keys, self.bits)
        while idx.size:
            at = self.slots[pos]
            hit = at == keys[idx]
            found[idx[hit]] = True
            more = (at >= 0) & ~hit
            idx, pos = idx[more], (pos[more] + 1) & self._mask
        return found

    def has(self, key: int) -> bool:
        slots, mask = self._slots, self._mask
        h = (key * _MULT >> self._shift) & mask
        while True:
            k = slots[h]
            if k == key:
                return True
            if k < 0:
                return False
            h = (h + 1) & mask


_NO_KEYS = np.zeros(0, dtype=np.int64)


def sieve_of(*keys: np.ndarray, extra: int = 0) -> Sieve:
    """The sieve (sieve.Sieve) of these keys (int64 arrays; negative ones, a table's EMPTY slots, are left out),
    sized for them and `extra` more: about 8 bits a key (a tenth of the bits set), 2^16 to 2^28 bits, so 32 MiB
    for 25M keys and more (a fifth of the bits set at 60M keys). Built in a bool array of a byte a bit (256 MiB
    at most, for a moment): one fancy-index pass, where numpy's bitwise_or.at takes 25 times as long."""
    size = 16
    while (1 << size) < 8 * (sum(len(k) for k in keys) + extra) and size < 28:
        size += 1
    sieve = Sieve(size)
    flags = np.zeros(sieve.mask + 1, dtype=bool)
    for some in keys:
        for start in range(0, len(some), 1 << 20):  # the low bits of a million keys at a time
            chunk = some[start:start + (1 << 20)]
            flags[chunk[chunk >= 0] & sieve.mask] = True
    sieve.bits[:] = np.packbits(flags, bitorder="little").tobytes()
    return sieve


#: What a CompactSet not attached to a sieve adds to: every bit is set already.
_NO_SIEVE = Sieve.everything()


class _Frozen(NamedTuple):
    """The overlay as it was when a new base began to be built from it (CompactSet.pending)."""

    added: set[int]
    removed: set[int]
    added_keys: np.ndarray  # the same, sorted, for vectorized lookups
    removed_keys: np.ndarray


class CompactSet:
    """A set of non-negative ints: a base table, the keys added to it and taken from it since it was built
    (`_added`: not below; `_removed`: below), and, while a new base is being built from them, the overlay as it
    was then (`_frozen`, itself an overlay of the base). A write states each key against what lies below the
    overlay, so the count stays exact; installing the new base (which holds the frozen overlay) is then O(1).
    Every key added is also added to the set's sieve (`attach`), which the Index shares between its lists."""

    __slots__ = ("_base", "_added", "_removed", "_frozen", "_big", "_n", "_sieve")

    def __init__(self, keys: Iterable[int] | np.ndarray = (), *, table: KeySlots | None = None):
        self._added: set[int] = set()
        self._removed: set[int] = set()
        self._frozen: _Frozen | None = None
        self._big: set[int] = set()  # keys above MAX_KEY, never in a base
        self._sieve = _NO_SIEVE
        if table is None:
            if not isinstance(keys, np.ndarray):
                keys = np.fromiter((k for k in keys if self._small(k)), dtype=np.int64)
            table = KeySlots.of(unique_keys(keys))
        self._base = table
        self._n = len(table)  # the keys below the overlay: the base's, and the frozen overlay's changes to it

    def _small(self, key: int) -> bool:
        if key > MAX_KEY:
            self._big.add(key)
            return False
        return True

    @property
    def base(self) -> KeySlots:
        return self._base

    @property
    def overlay_size(self) -> int:
        frozen = self._frozen
        return len(self._added) + len(self._removed) + (len(frozen.added) + len(frozen.removed) if frozen else 0)

    def _below(self, key: int) -> bool:
        """Whether `key` is in the set under the overlay (the frozen overlay, then the base)."""
        frozen = self._frozen
        if frozen is not None:
            if key in frozen.added:
                return True
            if key in frozen.removed:
                return False
        return self._base.has(key)

    def _below_many(self, keys: np.ndarray) -> np.ndarray:
        found = self._base.has_many(keys)
        frozen = self._frozen
        if frozen is not None:
            found &= ~np.isin(keys, frozen.removed_keys)
            found |= np.isin(keys, frozen.added_keys)
        return found

    def __contains__(self, key: object) -> bool:
        if key in self._added:
            return True
        if key in self._removed:
            return False
        if self._frozen is not None:  # a new base is being built
            return self._below(key) or key in self._big  # type: ignore[arg-type]
        # KeySlots.has spelled out, without its frame or _below's: this runs for every message (a key past
        # MAX_KEY is never in the base, and its probe finds no equal key)
        base = self._base
        slots, mask = base._slots, base._mask
        h = (key * _MULT >> base._shift) & mask  # type: ignore[operator]
        while True:
            k = slots[h]
            if k == key:
                return True
            if k < 0:
                return key in self._big
            h = (h + 1) & mask

    def __len__(self) -> int:
        return self._n + len(self._added) - len(self._removed) + len(self._big)

    def __iter__(self) -> Iterator[int]:
        for key in self._base.slots[self._base.slots >= 0].tolist():
            if key in self:
                yield key
        below = self._base.has
        frozen = self._frozen
        for key in (*(frozen.added if frozen else ()), *self._added):
            if not below(key) and key in self:
                yield key
        yield from self._big

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (set, frozenset, CompactSet)):
            return len(self) == len(other) and all(k in self for k in other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"CompactSet({len(self)} keys, {self.overlay_size} in the overlay)"

    def add(self, key: int) -> None:
        self._sieve.add(key)
        if key > MAX_KEY:
            self._big.add(key)
        elif self._below(key):
            self._removed.discard(key)
        else:
            self._added.add(key)

    def discard(self, key: int) -> None:
        if key > MAX_KEY:
            self._big.discard(key)
        elif self._below(key):
            self._removed.add(key)
        else:
            self._added.discard(key)

    def update(self, keys: Iterable[int]) -> None:
        """add() each key; a batch (an import's change-log row) with one vectorized look at the base."""
        keys = list(keys)
        if len(keys) < VECTORIZE:
            for key in keys:
                self.add(key)
            return
        self._sieve.update(keys)
        arr = np.array([k for k in keys if self._small(k)], dtype=np.int64)
        below = self._below_many(arr)
        self._removed.difference_update(arr[below].tolist())
        self._added.update(arr[~below].tolist())

    def difference_update(self, keys: Iterable[int]) -> None:
        keys = list(keys)
        if len(keys) < VECTORIZE:
            for key in keys:
                self.discard(key)
            return
        self._big.difference_update(keys)
        arr = np.array([k for k in keys if k <= MAX_KEY], dtype=np.int64)
        below = self._below_many(arr)
        self._removed.update(arr[below].tolist())
        self._added.difference_update(arr[~below].tolist())

    def pending(self) -> tuple[np.ndarray, np.ndarray]:
        """Freeze the overlay and return it as sorted arrays (added, removed): `merged_keys(base.keys, added,
        removed)` (in another thread: the base never changes in place) is then this set as of now. Writes from
        now on go to a new overlay over the frozen one, until `install` or `abandon`."""
        if self._frozen is not None:
            raise RuntimeError("a new base is already being built")
        added = np.array(sorted(self._added), dtype=np.int64)
        removed = np.array(sorted(self._removed), dtype=np.int64)
        self._frozen = _Frozen(self._added, self._removed, added, removed)
        self._n += len(self._added) - len(self._removed)
        self._added, self._removed = set(), set()
        return added, removed

    def install(self, table: KeySlots) -> None:
        """Take `table`, built from the base and `pending()`'s arrays, as the base: the frozen overlay is in it,
        and the writes made since were stated against the same keys."""
        if self._frozen is None:
            raise RuntimeError("install() without pending()")
        self._base, self._frozen = table, None

    def attach(self, sieve: Sieve) -> None:
        """Add to `sieve` from now on, and now the keys outside the base (`sieve_of(base.slots)` holds those):
        the keys added since the base was built, and those past int64."""
        frozen = self._frozen
        sieve.update((*(frozen.added if frozen else ()), *self._added, *self._big))
        self._sieve = sieve

    def abandon(self) -> None:
        """No new base after all: the frozen overlay and the writes since become one overlay again."""
        frozen = self._frozen
        if frozen is None:
            return
        top_added, top_removed = self._added, self._removed
        self._frozen = None
        self._n -= len(frozen.added) - len(frozen.removed)
        self._added, self._removed = set(frozen.added), set(frozen.removed)
        for key in top_added:
            self.add(key)
        for key in top_removed:
            self.discard(key)


def attach_sieve(blacklist: CompactSet, optouts: CompactSet, sieve: Sieve | None = None) -> Sieve:
    """Both lists' sieve (Index.listed), attached to them: `sieve` if given (built from their bases), else one
    built now."""
    if sieve is None:
        sieve = sieve_of(blacklist.base.slots, optouts.base.slots,
                         extra=blacklist.overlay_size + optouts.overlay_size)
    blacklist.attach(sieve)
    optouts.attach(sieve)
    return sieve


def unique_keys(keys: np.ndarray) -> np.ndarray:
    """The distinct keys, sorted. Keys read from a list table come sorted and distinct already: that is checked in
    one pass and they are taken as they are; otherwise sorted and deduplicated. np.unique (and np.union1d) hash
    the keys in numpy 2: 1.5 s for 2M keys, 6.6 s to join 1M to 5M, where a stable sort (a merge of sorted runs)
    takes a tenth of that, or a hundredth for two sorted runs."""
    keys = np.ascontiguousarray(keys, dtype=np.int64)
    if len(keys) < 2 or bool((keys[1:] > keys[:-1]).all()):
        return keys
    keys = np.sort(keys, kind="stable")
    distinct = np.empty(len(keys), dtype=bool)
    distinct[0] = True
    np.not_equal(keys[1:], keys[:-1], out=distinct[1:])
    return keys[distinct]


def merged_keys(base: np.ndarray, added: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """The sorted unique keys of `base` (sorted, unique) less `removed`, plus `added`."""
    keys = base
    if removed.size:
        keys = keys[~np.isin(keys, removed)]
    if added.size:
        keys = unique_keys(np.concatenate((keys, added)))
    return keys


def _runs(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The positions of runs laid end to end: `counts[i]` positions from `starts[i]` on, for each i."""
    pos = np.arange(int(counts.sum()), dtype=np.int64)
    pos -= np.repeat(np.cumsum(counts) - counts, counts)
    pos += np.repeat(starts, counts)
    return pos


class HistoryArrays(NamedTuple):
    """Send times by key, in bulk: `keys` sorted and unique, the times of keys[i] are times[offs[i]:offs[i+1]],
    sorted, never none."""

    keys: np.ndarray  # int64
    offs: np.ndarray  # int64, len(keys) + 1
    times: np.ndarray  # float64

    @classmethod
    def empty(cls) -> HistoryArrays:
        return cls(_NO_KEYS, np.zeros(1, dtype=np.int64), np.zeros(0, dtype=np.float64))

    @classmethod
    def from_rows(cls, keys: np.ndarray, times: np.ndarray, *, by_time: bool = False) -> HistoryArrays:
        """From one (key, time) pair per send, in any order, or in time order (`by_time`: one stable sort by key
        then does, 6 times as fast for 30M sends as sorting by both)."""
        order = np.argsort(keys, kind="stable") if by_time else np.lexsort((times, keys))
        return cls._grouped(keys[order], times[order])

    @classmethod
    def from_chunks(cls, keys: list[np.ndarray], times: list[np.ndarray]) -> HistoryArrays:
        """`from_rows(by_time=True)` of the chunks joined (each a chunk of keys and of times, in time order), which
        it empties as it goes: every array it no longer needs goes before the next is made, so a month of sends
        (30M: 240 MB an array) peaks at four arrays' size instead of seven."""
        k = np.concatenate(keys) if keys else _NO_KEYS
        keys.clear()
        t = np.concatenate(times) if times else np.zeros(0, dtype=np.float64)
        times.clear()  # the chunks go (a chunk of keys may be a view of the same rows as one of times)
        order = np.argsort(k, kind="stable")
        k = k[order]
        t = t[order]
        del order
        return cls._grouped(k, t)

    @classmethod
    def _grouped(cls, keys: np.ndarray, times: np.ndarray) -> HistoryArrays:
        """From pairs sorted by key, then time."""
        if not len(keys):
            return cls.empty()
        first = np.empty(len(keys), dtype=bool)
        first[0] = True
        np.not_equal(keys[1:], keys[:-1], out=first[1:])
        starts = np.flatnonzero(first)
        return cls(keys[starts], np.append(starts, len(keys)).astype(np.int64), times)

    def sends_to(self, keys: np.ndarray, times: np.ndarray) -> tuple[HistoryArrays, int]:
        """The keys of the given sends (any order), each with all of its times: those these arrays hold and the
        given ones; and how many of those keys these arrays lack. What replaying the sends one by one onto these
        arrays would give those keys, in bulk: one sort of the given sends, into which the sends these arrays hold
        of the same keys go in one pass (before a key's given ones, as they are older; else all is sorted)."""
        sent = HistoryArrays.from_rows(keys, times)
        at = np.searchsorted(self.keys, sent.keys)  # sorted both: a walk over both, not a probe a key
        known = at < len(self.keys)
        known[known] = self.keys[at[known]] == sent.keys[known]
        fresh = len(sent.keys) - int(known.sum())
        if fresh == len(sent.keys):  # a burst to new recipients
            return sent, fresh
        rows = at[known]
        starts = np.asarray(self.offs[rows])
        counts = np.asarray(self.offs[rows + 1]) - starts
        old = np.asarray(self.times[_runs(starts, counts)])  # the known keys' sends here
        added = np.zeros(len(sent.keys) + 1, dtype=np.int64)
        added[1:][known] = counts
        offs = sent.offs + np.cumsum(added)
        all_times = np.insert(sent.times, np.repeat(sent.offs[:-1][known], counts), old)
        inside = np.ones(len(all_times), dtype=bool)
        inside[offs[:-1]] = False  # a key's first send: no order with the one before it
        if (all_times[1:][inside[1:]] < all_times[:-1][inside[1:]]).any():  # a send here later than a given one
            return HistoryArrays.from_rows(np.concatenate((np.repeat(sent.keys[known], counts), keys)),
                                           np.concatenate((old, times))), fresh
        return HistoryArrays(sent.keys, offs, all_times), fresh

    def merged(self, keys: np.ndarray, times: np.ndarray, after: float) -> HistoryArrays:
        """These sends and the given ones (any order), less every send at or before `after`. Linear in the sends
        kept, plus a sort of the given ones (a roll forward adds an hour of sends to a month of them), and it
        never expands the keys to one per send."""
        order = np.lexsort((times, keys))
        keys, times = keys[order], times[order]
        recent = times > after
        keys, times = keys[recent], times[recent]
        n = len(self.keys)
        kept = self.times > after
        counts = np.diff(self.offs)  # each key's sends kept, once those dropped are taken off
        if kept.all():
            old_times = self.times
        else:  # an hour of a month's sends drops out: count them by key, not every send kept as an int64
            np.subtract.at(counts, np.searchsorted(self.offs, np.flatnonzero(~kept), side="right") - 1, 1)
            old_times = self.times[kept]
        del kept
        # a month of sends is hundreds of MB: no array here is a copy of another one kept alive for nothing
        ends = np.cumsum(counts)
        at = np.searchsorted(self.keys, keys)
        present = at < n
        pos = np.full(len(keys), len(old_times), dtype=np.int64)  # a key past the last starts at the end
        pos[present] = ends[at[present]] - counts[at[present]]  # an absent key starts where the next one does
        present[present] = self.keys[at[present]] == keys[present]
        pos[present] = ends[at[present]]  # after its key's kept sends
        known = present.copy()
        known[present] = counts[at[present]] > 0
        # a send logged after a later one to the same key (rare): sort it all
        if (times[known] < old_times[ends[at[known]] - 1]).any():
            rows = np.repeat(np.arange(n), counts)
            return HistoryArrays.from_rows(np.concatenate((self.keys[rows], keys)),
                                           np.concatenate((old_times, times)))
        del ends, known
        all_times = np.insert(old_times, pos, times)
        del old_times, pos
        uk, first, ucount = np.unique(keys, return_index=True, return_counts=True)
        uat, upresent = at[first], present[first]
        counts[uat[upresent]] += ucount[upresent]
        fresh = ~upresent
        all_keys = np.insert(self.keys, uat[fresh], uk[fresh])
        all_counts = np.insert(counts, uat[fresh], ucount[fresh])
        del counts
        some = all_counts > 0
        if not some.all():  # keys whose every send is past the longest period
            all_keys, all_counts = all_keys[some], all_counts[some]
        offs = np.empty(len(all_counts) + 1, dtype=np.int64)
        offs[0] = 0
        np.cumsum(all_counts, out=offs[1:])
        return HistoryArrays(all_keys, offs, all_times)


#: An overlay entry: a key's send times, a float for a key with one send (24 bytes, not 72 with its tuple: most
#: recipients of a campaign get one message), `()` for a key whose sends are gone (see CompactHistory).
Times = float | tuple[float, ...]


def _times(value: Times) -> tuple[float, ...]:
    return (value,) if type(value) is float else value  # type: ignore[return-value]


def _int64_keys(keys: Iterable[int], n: int) -> np.ndarray:
    """`n` keys as int64, -1 for a key past int64 (an account's scope past 8191): keys are never negative, so no
    base holds it. At C speed when all fit (fromiter: 17 ms for a burst's 1M keys); a Python pass otherwise."""
    try:
        return np.fromiter(keys, dtype=np.int64, count=n)
    except OverflowError:
        return np.fromiter((k if k <= MAX_KEY else -1 for k in list(keys)), dtype=np.int64, count=n)


def _overlay_count(overlay: dict[int, Times], base: np.ndarray) -> int:
    """How many keys the overlay adds to the base's (sorted `base`), less those it deletes: vectorized, as a new
    base is installed on the event loop (a probe per key took 100 ms for 100,000 keys). The keys and whether each
    has sends are read at C speed (`_int64_keys`, and a map of ==: 55 ms for a burst's 1M keys, where a Python
    pass over them took 0.3 s of the loop)."""
    n = len(overlay)
    keys = _int64_keys(overlay, n)
    present = ~np.fromiter(map(operator.eq, overlay.values(), repeat(())), dtype=bool, count=n)
    at = np.searchsorted(base, keys)
    in_base = at < len(base)
    in_base[in_base] = base[at[in_base]] == keys[in_base]
    # keys past int64 are never in a base: each with sends adds one, as any key the base lacks
    return int((present & ~in_base).sum()) - int((~present & in_base).sum())


class CompactHistory:
    """Send times by key, as `dict[int, tuple[float, ...]]` does it: a base (`HistoryArrays` and a table of its
    keys), after a restart a *tail* over it (the same, for the keys of the sends logged after the base, each with
    all of its times: `add_tail`), and an overlay of the keys written since, each with all of its times (a float
    for a single send, `()`: none any more). A lookup asks the overlay, then the tail, then the base; the tail
    stays until a new base, which holds its sends, is installed."""

    __slots__ = ("_arrays", "_table", "_offs", "_times", "_tail", "_overlay", "_n", "_absent")

    def __init__(self, arrays: HistoryArrays | None = None, rows: np.ndarray | None = None):
        self._overlay: dict[int, Times] = {}
        self._tail: _Tail | None = None
        self._set_base(arrays or HistoryArrays.empty(), rows)

    def _set_base(self, arrays: HistoryArrays, rows: np.ndarray | None = None) -> None:
        # The last key a lookup found absent from the base: the frequency rule asks for a new recipient, then
        # its send is inserted, and the insert need not probe the base again. It holds until the base changes.
        self._absent = -1
        self._arrays = arrays
        self._table = KeyTable(arrays.keys, rows)
        self._offs = memoryview(arrays.offs)
        self._times = memoryview(arrays.times)
        self._tail = None  # the new base holds its sends
        self._n = len(arrays.keys) + _overlay_count(self._overlay, arrays.keys)

    @property
    def base(self) -> HistoryArrays:
        return self._arrays

    @property
    def table(self) -> KeyTable:
        return self._table

    @property
    def overlay_size(self) -> int:
        return len(self._overlay)

    @property
    def tail_size(self) -> int:
        """The keys of the tail (see `add_tail`)."""
        return 0 if self._tail is None else len(self._tail.arrays.keys)

    def add_tail(self, keys: np.ndarray, times: np.ndarray) -> None:
        """These sends (int64 keys at most MAX_KEY, float64 times, any order) on top of the base, as `insert` of
        each would add them, but in arrays: a restart replays the sends logged after its snapshot's base so (a
        Python tuple per key costs 2.5 µs and 180 bytes a send). Before any other write: the overlay is empty."""
        if self._overlay or self._tail is not None:
            raise RuntimeError("a tail goes on the base alone, before any other write")
        if not len(keys):
            return
        arrays, fresh = self._arrays.sends_to(keys, times)
        self._tail = _Tail(arrays, KeyTable(arrays.keys))
        self._n += fresh

    def _base_get(self, key: int) -> tuple[float, ...] | None:
        """The key's times below the overlay: the tail's, else the base's."""
        tail = self._tail
        if tail is not None:
            r = tail.table.row(key)
            if r >= 0:
                offs = tail.offs
                return tuple(tail.times[offs[r]:offs[r + 1]])
        r = self._table.row(key)
        if r < 0:
            return None
        offs = self._offs
        return tuple(self._times[offs[r]:offs[r + 1]])

    def _below(self, key: int) -> bool:
        """Whether the tail or the base holds the key."""
        tail = self._tail
        return self._table.row(key) >= 0 or (tail is not None and tail.table.row(key) >= 0)

    def get(self, key: int, default: tuple[float, ...] | None = None) -> tuple[float, ...] | None:
        times = self._overlay.get(key)
        if times is not None:
            if type(times) is float:
                return (times,)
            return times or default  # type: ignore[return-value]
        times = self._base_get(key)
        return default if times is None else times

    def __contains__(self, key: object) -> bool:
        times = self._overlay.get(key)  # type: ignore[call-overload]
        if times is not None:
            return times != ()
        if self._tail is not None and self._tail.table.row(key) >= 0:  # type: ignore[arg-type]
            return True
        # KeyTable.row spelled out, without its frame: the frequency rule asks this for every message
        table = self._table
        rows, keys, mask = table._rows, table._keys, table._mask
        h = (key * _MULT >> table._shift) & mask  # type: ignore[operator]
        while True:
            r = rows[h]
            if r < 0:
                self._absent = key  # type: ignore[assignment]
                return False
            if keys[r] == key:
                return True
            h = (h + 1) & mask

    def __getitem__(self, key: int) -> tuple[float, ...]:
        times = self.get(key)
        if times is None:
            raise KeyError(key)
        return times

    def insert(self, key: int, at: float) -> None:
        """One more send to `key` (what Index.record_send does to a dict), with one look at the base at most."""
        times = self._overlay.get(key)
        if times is None and key != self._absent:
            times = self._base_get(key)
        if times is None or times == ():
            self._overlay[key] = float(at)
            self._n += 1
            return
        if type(times) is float:
            times = (times,)
        if at >= times[-1]:  # type: ignore[index]
            self._overlay[key] = times + (at,)
        else:
            i = bisect_right(times, at)
            self._overlay[key] = times[:i] + (at,) + times[i:]

    def __setitem__(self, key: int, times: tuple[float, ...]) -> None:
        if not times:
            raise ValueError("a key's send times are never empty: delete the key")
        if key not in self:
            self._n += 1
        self._overlay[key] = times

    def __delitem__(self, key: int) -> None:
        if key not in self:
            raise KeyError(key)
        self._n -= 1
        if self._below(key):
            self._overlay[key] = ()
        else:
            del self._overlay[key]

    def __len__(self) -> int:
        return self._n

    def __iter__(self) -> Iterator[int]:
        overlay = self._overlay
        for key in self._arrays.keys.tolist():
            if overlay.get(key, True) != ():
                yield key
        row = self._table.row
        tail = self._tail
        if tail is not None:
            for key in tail.arrays.keys.tolist():
                if row(key) < 0 and overlay.get(key, True) != ():
                    yield key
        below = self._below
        for key, times in list(overlay.items()):
            if times != () and not below(key):
                yield key

    def keys(self) -> Iterator[int]:
        return iter(self)

    def items(self) -> Iterator[tuple[int, tuple[float, ...]]]:
        for key in self:
            yield key, self[key]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (dict, CompactHistory)):
            return len(self) == len(other) and all(self.get(k) == v for k, v in other.items())
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"CompactHistory({len(self)} keys, {self.tail_size} in the tail, {len(self._overlay)} in the overlay)"

    def prune(self, before: float, pending: list[int], budget: int) -> None:
        """Index.prune_history for the overlay (`pending`: the overlay keys still to look at in this pass): forget
        sends older than `before`, and drop a key whose times the base (or the tail) holds as well, sends before
        `before` aside (a roll forward has taken them into it). The base's and the tail's old sends go at the
        next roll forward."""
        overlay = self._overlay
        if not pending:
            pending.extend(overlay)
        for key in pending[-budget:]:
            value = overlay.get(key)
            if value is None:
                continue
            times = _times(value)
            cut = times[bisect_left(times, before):]
            base = self._base_get(key)
            if base is not None and bool(cut) and base[bisect_left(base, before):] == cut:
                del overlay[key]  # the base has it (and it stays present)
            elif cut or base is not None:
                if len(cut) != len(times):  # else left as it is: `forget` knows an entry by its identity
                    overlay[key] = float(cut[0]) if len(cut) == 1 else cut
                self._n += bool(cut) - bool(times)
            else:
                del overlay[key]
                self._n -= bool(times)
        del pending[-budget:]

    def overlay_items(self) -> tuple[list[int], list[Times]]:
        """The overlay's keys and their times as of now (a copy of the two lists, at C speed), for `caught_up`."""
        return list(self._overlay), list(self._overlay.values())

    def caught_up(self, keys: list[int], values: list[Times], after: float) -> np.ndarray:
        """The positions of the overlay entries (`overlay_items`) the base holds as they are, sends at or before `after`
        aside: those `forget` may drop, as `prune` would one by one (a roll forward has taken them into the base).
        Vectorized, and pure: work for a thread, whatever the loop writes meanwhile."""
        n = len(keys)
        values = [_times(v) for v in values]
        counts = np.fromiter(map(len, values), dtype=np.int64, count=n)
        times = np.fromiter(chain.from_iterable(values), dtype=np.float64, count=int(counts.sum()))
        rows = self._table.rows_many(_int64_keys(keys, n))
        owner = np.repeat(np.arange(n), counts)  # the entry of each of the overlay's sends
        kept = times > after
        mine = np.bincount(owner[kept], minlength=n)  # each entry's sends kept
        base = self._arrays
        known = np.flatnonzero(rows >= 0)
        starts = np.asarray(base.offs[rows[known]])
        base_counts = np.asarray(base.offs[rows[known] + 1]) - starts
        # the base's sends of those keys, kept as the overlay's are (a new base holds none at or before `after`)
        base_times = np.asarray(base.times[_runs(starts, base_counts)])
        base_owner = np.repeat(known, base_counts)
        base_kept = base_times > after
        theirs = np.bincount(base_owner[base_kept], minlength=n)
        same = (rows >= 0) & (mine > 0) & (mine == theirs)
        # where the counts agree, the kept sends pair off in order: any pair that differs rules its entry out
        ours = same[owner] & kept
        others = same[base_owner] & base_kept
        differ = times[ours] != base_times[others]
        same[np.unique(owner[ours][differ])] = False
        return np.flatnonzero(same)

    def forget(self, keys: list[int], values: list[Times], which: np.ndarray) -> int:
        """Drop the overlay entries `caught_up` found the base holds (`which`: some of their positions), those
        not written since; the count stays, each key being in the base with sends. Returns how many went."""
        overlay = self._overlay
        gone = 0
        for i in which.tolist():
            key = keys[i]
            if overlay.get(key) is values[i]:
                del overlay[key]
                gone += 1
        return gone

    def install(self, arrays: HistoryArrays, rows: np.ndarray | None = None) -> None:
        """Take `arrays` as the base (a roll forward: the store's sends up to some row, at or past the tail's last
        one, so the tail goes). The overlay keeps every key written since the process started, until `prune`
        finds the base has caught up with it."""
        self._set_base(arrays, rows)


class _Tail:
    """CompactHistory's tail: its arrays, their table, and memoryviews of them (a lookup reads those)."""

    __slots__ = ("arrays", "table", "offs", "times")

    def __init__(self, arrays: HistoryArrays, table: KeyTable):
        self.arrays, self.table = arrays, table
        self.offs = memoryview(arrays.offs)
        self.times = memoryview(arrays.times)
