"""Keywords: normalisation and the two match modes."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smppguard.inbound.keywords import CONFIRM, DEFAULT_OPTOUT, OPTIN, OPTOUT, Keywords, normalise

EXACT, CONTAINS = Keywords.of(), Keywords.of(mode="contains")


@pytest.mark.parametrize("reply, said", [
    ("ＳＴＯＰ", "stop"),  # full-width
    ("SТОР", "stop"),  # Cyrillic Т, О, Р
    ("  Opt-Out!! ", "opt out"),
    ("退订。", "退订"),
    ("T\n", "t"),
    ("STOP  please", "stop please"),
    ("", ""),
    ("...", ""),
])
def test_normalise(reply, said):
    assert normalise(reply) == said


@pytest.mark.parametrize("reply, expected", [
    ("TD", [(OPTOUT, "td")]),
    ("退订", [(OPTOUT, "退订")]),
    ("stop.", [(OPTOUT, "stop")]),
    ("opt out", [(OPTOUT, "opt out")]),
    ("STOP PLEASE", []),
    ("YES", [(CONFIRM, "yes"), (OPTIN, "yes")]),
    ("y", [(CONFIRM, "y")]),
    ("Start", [(OPTIN, "start")]),
    ("请回复退订", []),
    ("hello", []),
    ("", []),
])
def test_exact_mode_matches_the_whole_reply_only(reply, expected):
    assert EXACT.match(reply) == expected


@pytest.mark.parametrize("reply, expected", [
    ("STOP PLEASE", [(OPTOUT, "stop")]),
    ("please, stop it", [(OPTOUT, "stop")]),
    ("请退订谢谢", [(OPTOUT, "退订")]),
    ("stopwatch", []),  # a word, not a piece of one
    ("T-Mobile is great", []),  # a one-letter keyword only as the whole reply
    ("T", [(OPTOUT, "t")]),
    ("yes, but stop", [(OPTOUT, "stop")]),  # an opt-out wins over everything else in the reply
    ("I want to opt out now", [(OPTOUT, "opt out")]),
])
def test_contains_mode_matches_a_keyword_as_a_word(reply, expected):
    assert CONTAINS.match(reply) == expected


def test_configured_keywords_are_normalised_like_replies():
    k = Keywords.of(optout=["ＵＮＳＵＢ", "Stop-All"], optin=[], confirm=[])
    assert k.match("unsub") == [(OPTOUT, "unsub")]
    assert k.match("STOP ALL") == [(OPTOUT, "stop all")]


def test_a_bad_mode_is_refused():
    with pytest.raises(ValueError, match="exact"):
        Keywords.of(mode="fuzzy")


_gap = st.text(alphabet=" \t.,!?-。！，、", max_size=3)


@given(st.sampled_from(DEFAULT_OPTOUT), _gap, _gap, st.booleans(), st.booleans())
def test_every_default_opt_out_matches_with_any_case_width_and_punctuation_around_it(word, before, after, upper,
                                                                                    wide):
    reply = word.upper() if upper else word.lower()
    if wide:  # the full-width forms of ASCII letters
        reply = "".join(chr(ord(c) + 0xFEE0) if c in string.ascii_letters else c for c in reply)
    assert [intent for intent, _ in EXACT.match(before + reply + after)] == [OPTOUT]


@given(st.text(max_size=30))
def test_normalise_is_idempotent(text):
    assert normalise(normalise(text)) == normalise(text)


@given(st.sampled_from([w for w in DEFAULT_OPTOUT if w.isascii()]),
       st.text(alphabet=string.ascii_letters, min_size=1, max_size=8))
def test_exact_mode_never_matches_a_keyword_with_another_word(word, other):
    assert EXACT.match(f"{word} {other}") == [] or normalise(f"{word} {other}") in EXACT.optout


@given(st.text(alphabet=st.characters(max_codepoint=127), max_size=40))
def test_the_ascii_fast_path_normalises_as_the_unicode_one_does(text):
    from smppguard.inbound.keywords import _normalise_unicode

    assert normalise(text) == _normalise_unicode(text)


def test_contains_mode_is_chosen_by_the_mode_and_finds_two_letter_keywords():
    contains = Keywords.of(mode="contains")
    assert contains.contains and not Keywords.of(mode="exact").contains
    assert contains.match("reply TD now") == [(OPTOUT, "td")]


def test_contains_mode_reports_the_longest_keyword_that_matches():
    k = Keywords.of(optout=["OUT", "OPT OUT"], optin=[], confirm=[], mode="contains")
    assert k.match("please opt out of this") == [(OPTOUT, "opt out")]


def test_a_keyword_in_thai_matches_inside_a_thai_sentence_in_contains_mode():
    k = Keywords.of(optout=["ยกเลิก"], optin=[], confirm=[], mode="contains")  # "cancel", written without spaces
    assert k.match("กรุณายกเลิกครับ") == [(OPTOUT, "ยกเลิก")]
