"""Decoding short_message text by data_coding (SMPP 3.4 section 5.2.19, GSM 03.38 coding groups).

Rule: binary data never becomes text (None), so keyword matching cannot fire on it. data_coding 0 is
"SMSC default", which carriers define (usually GSM 03.38, one septet per octet, unpacked), so the codec for 0
is configurable; so is 1, which node-smpp fills with GSM bytes (SMPP-NOTES, Text). The GSM codec comes from
the `gsm0338` package, which registers "gsm03.38" with the codecs module.
"""

from __future__ import annotations

import codecs

import gsm0338  # noqa: F401  (registers the "gsm03.38" codec)

GSM = "gsm03.38"

_FIXED: dict[int, str | None] = {
    0x02: None,  # 8-bit binary
    0x03: "latin-1",
    0x04: None,  # 8-bit binary
    0x05: "shift_jis",
    0x06: "iso8859-5",
    0x07: "iso8859-8",
    0x08: "utf-16-be",  # UCS2; UTF-16 also decodes surrogate pairs that phones send
    0x09: None,  # pictogram
    0x0A: "iso2022_jp",
    0x0D: "euc_jp",  # JIS X 0212
    0x0E: "euc_kr",  # KS C 5601
}


def codec_for(data_coding: int, default_codec: str = GSM, ia5_codec: str = "ascii") -> str | None:
    """The Python codec for a data_coding value, or None when the content is binary."""
    if data_coding == 0x00:
        return default_codec
    if data_coding == 0x01:
        return ia5_codec
    if data_coding in _FIXED:
        return _FIXED[data_coding]
    if 0x10 <= data_coding <= 0x7F:
        # GSM 03.38 general data coding (00xx) and automatic deletion (01xx, "coded exactly the same") groups:
        # bit 5 marks compressed text, which no codec here undoes; the alphabet lives in bits 3-2.
        if data_coding & 0x20:
            return None
        alphabet = (data_coding >> 2) & 0x03
        return {0: GSM, 1: None, 2: "utf-16-be", 3: None}[alphabet]
    if 0xC0 <= data_coding <= 0xDF:  # message waiting groups, discard / store: GSM alphabet
        return GSM
    if 0xE0 <= data_coding <= 0xEF:  # message waiting group, store: UCS2
        return "utf-16-be"
    if data_coding >= 0xF0:  # data coding / message class: bit 2 selects 8-bit data over the GSM alphabet
        return None if data_coding & 0x04 else GSM
    return None


# Octets whose GSM 03.38 character is the ASCII one: LF, CR, space to "z" except $ @ [ \\ ] ^ _ ` (which are
# other letters in GSM). A text made only of these decodes as ASCII, in C, instead of one character at a time.
_GSM_AS_ASCII = bytes([0x0A, 0x0D]) + bytes(b for b in range(0x20, 0x7B) if b not in b"$@[\\]^_`")


def decode(payload: bytes, data_coding: int, default_codec: str = GSM, ia5_codec: str = "ascii") -> str | None:
    """Decode message text; undecodable octets become U+FFFD rather than raising."""
    codec = codec_for(data_coding, default_codec, ia5_codec)
    if codec is None:
        return None
    if codec == GSM and not payload.translate(None, _GSM_AS_ASCII):
        return payload.decode("ascii")
    return codecs.decode(payload, codec, errors="replace")


def check_codec(name: str) -> str:
    """Validate a configured codec name (raises LookupError for an unknown one)."""
    return codecs.lookup(name).name
