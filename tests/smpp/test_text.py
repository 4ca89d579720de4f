"""text.py: short_message text by data_coding (SMPP 3.4 section 5.2.19, GSM 03.38 coding groups); binary
never becomes text."""

from __future__ import annotations

import pytest

from smppguard.smpp.text import GSM, check_codec, codec_for, decode

UCS2_UNSUBSCRIBE = "退订".encode("utf-16-be")  # "unsubscribe", as Chinese carriers' users send it


@pytest.mark.parametrize("payload,data_coding,text", [
    (b"\x00", 0x00, "@"),  # GSM 03.38 0x00 is "@", not NUL
    (b"STOP", 0x00, "STOP"),
    (b"\x1b\x65", 0x00, "€"),  # GSM escape to the extension table
    (b"\x02\x11", 0x00, "$_"),
    (b"STOP", 0x01, "STOP"),  # IA5
    (b"caf\xe9", 0x03, "café"),  # Latin-1
    (UCS2_UNSUBSCRIBE, 0x08, "退订"),
    ("😀".encode("utf-16-be"), 0x08, "😀"),  # surrogate pair from a phone
    (b"\x00@", 0xF0, "@¡"),  # message class 0, GSM alphabet
    (b"STOP", 0xF1, "STOP"),
    (b"STOP", 0xF3, "STOP"),
    (b"STOP", 0x10, "STOP"),  # general data coding group, GSM alphabet, class 0
    (UCS2_UNSUBSCRIBE, 0x18, "退订"),  # general data coding group, UCS2 alphabet
    (b"STOP", 0x40, "STOP"),  # automatic deletion group, coded like 00xx: GSM
    (UCS2_UNSUBSCRIBE, 0x48, "退订"),  # automatic deletion group, UCS2
    (UCS2_UNSUBSCRIBE, 0x59, "退订"),  # automatic deletion group, class 1, UCS2
    (b"STOP", 0xC0, "STOP"),  # message waiting, discard: GSM
    (b"STOP", 0xD8, "STOP"),  # message waiting, store: GSM
    (UCS2_UNSUBSCRIBE, 0xE0, "退订"),  # message waiting, store: UCS2
], ids=lambda v: v.hex() if isinstance(v, bytes) else None)
def test_text_decode(payload: bytes, data_coding: int, text: str):
    assert decode(payload, data_coding) == text


@pytest.mark.parametrize("data_coding", [0x02, 0x04, 0x09, 0x14, 0x44, 0xF4, 0xF5, 0xF6, 0xF7, 0xFC, 0xFF, 0x0B,
                                         0x80, 0xBF])
def test_text_binary_is_none(data_coding: int):
    assert codec_for(data_coding) is None
    assert decode(b"STOP", data_coding) is None


@pytest.mark.parametrize("data_coding", [0x20, 0x28, 0x30, 0x3A, 0x60, 0x78])
def test_text_compressed_is_none(data_coding: int):
    # GSM 03.38 coding groups 00xx / 01xx: bit 5 set means compressed text, which nothing here decompresses.
    assert codec_for(data_coding) is None


def test_text_class_group_bit2_selects_binary():
    for dc in range(0xF0, 0x100):
        assert codec_for(dc) == (None if dc & 0x04 else GSM)


def test_text_data_coding_zero_is_configurable():
    assert decode(b"caf\xe9", 0x00, default_codec="latin-1") == "café"


def test_text_ia5_is_configurable_for_node_smpp():
    # node-smpp puts GSM bytes under data_coding 1 (SMPP-NOTES, Text).
    assert decode(b"\x00", 0x01, ia5_codec=GSM) == "@"


def test_text_undecodable_octets_become_replacement_character():
    assert decode(b"\x00S\x00", 0x08) == "S\ufffd"  # odd length UCS2
    assert decode(b"ST\xffOP", 0x01) == "ST\ufffdOP"


def test_text_check_codec():
    assert check_codec("latin1") == "iso8859-1"
    assert check_codec(GSM)
    with pytest.raises(LookupError):
        check_codec("no-such-codec")


@pytest.mark.parametrize("data_coding, codec", [(0x01, "ascii"), (0x7F, None), (0x7B, None), (0x78, None),
                                                (0x1C, None), (0x18, "utf-16-be"), (0xDF, GSM), (0xCF, GSM),
                                                (0xEF, "utf-16-be"), (0xE8, "utf-16-be"), (0xBF, None)])
def test_text_codec_at_the_edges_of_each_group(data_coding: int, codec: str | None):
    assert codec_for(data_coding) == codec


def test_text_ucs2_that_happens_to_be_ascii_octets_is_still_ucs2():
    assert decode(b"ST", 0x08) == "\u5354"
    assert decode(b"ST", 0x03) == "ST"
