"""Keywords in a recipient's reply: normalised text, and the keyword sets it is matched against.

Rule 1: text is normalised before matching, the same way for the message and for the keywords: Unicode NFKC
(full-width "ＳＴＯＰ" becomes "STOP"), case folded, Cyrillic and Greek letters that look like Latin ones read
as Latin ("SТОР" with Cyrillic Т, О, Р is STOP), spaces and punctuation around the text removed, and every run
of spaces and punctuation inside it made one space ("opt-out" and "OPT  OUT" are "opt out").
Rule 2: `exact` (the default) matches a message that is the keyword and nothing else: "STOP" and "stop." opt
out, "STOP PLEASE" does not. `contains` matches the keyword as a whole word anywhere ("please stop it"); a
keyword in a script written without spaces (退订) matches anywhere in the text.
Rule 3: one reply may say several things: YES is both an opt-in and a consent confirmation. An opt-out wins over
everything else in the same reply (refusing one message too many is the safe mistake).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Iterable, NamedTuple

OPTOUT, OPTIN, CONFIRM = "optout", "optin", "confirm"
HELP = "help"  # a request for help: teaches the store nothing; [replies] answers it

#: Defaults: the seed's replies (T, TD, 退订), the carriers' and the FCC's 2025 revocation words.
DEFAULT_OPTOUT = ("T", "TD", "N", "R", "退订", "退定", "取消", "拒收", "STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL",
                  "END", "QUIT", "REVOKE", "OPTOUT", "OPT OUT")
DEFAULT_OPTIN = ("START", "UNSTOP", "YES")
DEFAULT_CONFIRM = ("YES", "Y", "是", "确认")

# Look-alikes, after case folding: Cyrillic and Greek small letters drawn like Latin ones.
_LOOKALIKE = str.maketrans({
    "а": "a", "в": "b", "е": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p", "с": "c", "т": "t",
    "у": "y", "х": "x", "і": "i", "ј": "j", "ѕ": "s", "ԁ": "d", "ԛ": "q", "ԝ": "w",
    "α": "a", "β": "b", "ε": "e", "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p", "τ": "t", "υ": "u",
    "χ": "x",
})


def _is_gap(ch: str) -> bool:
    """Spaces, punctuation and symbols: what separates words, and what is stripped around a keyword."""
    return ch.isspace() or unicodedata.category(ch)[0] in "PSZC"


_ASCII_GAPS = re.compile(r"[^a-z0-9]+")


def normalise(text: str) -> str:
    if text.isascii():  # most replies: NFKC and the look-alikes change nothing, case folding is lower()
        return _ASCII_GAPS.sub(" ", text.lower()).strip()
    return _normalise_unicode(text)


def _normalise_unicode(text: str) -> str:
    folded = unicodedata.normalize("NFKC", text).casefold().translate(_LOOKALIKE)
    out: list[str] = []
    gap = False
    for ch in folded:
        if _is_gap(ch):
            gap = True
            continue
        if gap and out:
            out.append(" ")
        gap = False
        out.append(ch)
    return "".join(out)


def _spaceless(word: str) -> bool:
    """A keyword of a script written without spaces between words (CJK, kana, Thai ...)."""
    return any(unicodedata.east_asian_width(ch) in "WF" or "\u0e00" <= ch <= "\u0eff" for ch in word)


class Keywords(NamedTuple):
    """Keyword sets, normalised, and how they match."""

    optout: frozenset[str]
    optin: frozenset[str]
    confirm: frozenset[str]
    contains: bool = False
    help: frozenset[str] = frozenset()  # empty unless [replies] answers HELP

    @classmethod
    def of(cls, optout: Iterable[str] = DEFAULT_OPTOUT, optin: Iterable[str] = DEFAULT_OPTIN,
           confirm: Iterable[str] = DEFAULT_CONFIRM, mode: str = "exact", help: Iterable[str] = ()) -> "Keywords":
        if mode not in ("exact", "contains"):
            raise ValueError(f"keyword match must be \"exact\" or \"contains\", not {mode!r}")

        def norm(words: Iterable[str]) -> frozenset[str]:
            return frozenset(n for n in (normalise(w) for w in words) if n)

        return cls(norm(optout), norm(optin), norm(confirm), mode == "contains", norm(help))

    def match(self, text: str) -> list[tuple[str, str]]:
        """What the reply says: [(intent, keyword)], an opt-out alone when there is one (Rule 3)."""
        said = normalise(text)
        if not said:
            return []
        found = []
        for intent, words in ((OPTOUT, self.optout), (CONFIRM, self.confirm), (OPTIN, self.optin),
                              (HELP, self.help)):
            word = self._find(said, words)
            if word is not None:
                if intent == OPTOUT:
                    return [(OPTOUT, word)]
                found.append((intent, word))
        return found

    def _find(self, said: str, words: frozenset[str]) -> str | None:
        if said in words:
            return said
        if not self.contains:
            return None
        padded = f" {said} "
        for word in sorted(words, key=len, reverse=True):  # the longest first: "opt out" before "t"
            if _spaceless(word):
                if word in said:
                    return word
            elif len(word) > 1 and f" {word} " in padded:  # a lone letter (T, N) only as the whole reply
                return word
        return None
