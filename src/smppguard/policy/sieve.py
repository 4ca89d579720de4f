"""`Sieve`: which numbers may be in one of the Index's lists, one bit each. Pure, no numpy (compact.sieve_of
builds one from arrays).
"""

from __future__ import annotations

from typing import Iterable


class Sieve:
    """Which numbers may be in a list: one bit per value of a key's low bits, set for every key a list holds or has
    held since the sieve was built (Index.listed; compact.sieve_of builds one). A clear bit says the number is in
    no list, in any scope: a scoped key's low bits are its number's (model.scoped), so one probe answers for the
    blacklist and every opt-out scope, and decide() leaves out the rules that read nothing else
    (Rule.lists_only). A set bit says nothing: the lists are asked. Bits are never cleared: a number taken off a
    list keeps its bit until the sieve is built again (the roll forward), which costs a lookup, never a verdict."""

    __slots__ = ("bits", "mask")

    def __init__(self, size: int):
        self.bits = bytearray(1 << max(size - 3, 0))
        self.mask = (len(self.bits) << 3) - 1

    @classmethod
    def of_bits(cls, bits) -> Sieve:
        """A sieve of these bits (a bytes-like object of 2^n bytes, as `bits` holds them), copied."""
        size = len(bits).bit_length() + 2
        if len(bits) != 1 << (size - 3):
            raise ValueError(f"a sieve has 2^n bytes, not {len(bits)}")
        sieve = cls(size)
        sieve.bits[:] = memoryview(bits)  # a numpy array (mapped) is a buffer, but not to bytearray itself
        return sieve

    @classmethod
    def everything(cls) -> Sieve:
        """A sieve whose every bit is set: any number may be listed (a plain Index: its sets are always asked)."""
        sieve = cls(3)
        sieve.bits[0] = 0xFF
        return sieve

    def add(self, key: int) -> None:
        k = key & self.mask
        self.bits[k >> 3] |= 1 << (k & 7)

    def update(self, keys: Iterable[int]) -> None:
        bits, mask = self.bits, self.mask
        for key in keys:
            k = key & mask
            bits[k >> 3] |= 1 << (k & 7)

    def __contains__(self, key: int) -> bool:
        """Whether `key`'s number may be in a list (decide() spells this out)."""
        k = key & self.mask
        return bool(self.bits[k >> 3] >> (k & 7) & 1)

    def __repr__(self) -> str:
        return f"Sieve({self.mask + 1} bits)"
