"""NMEA framer and GGA/RMC parsers against published vectors and framing edge cases."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from drivers.errors import DecodeError
from drivers.nmea import Gga, NmeaFramer, Rmc, Sentence, checksum, parse_sentence
from drivers.nmea.framing import MAX_SENTENCE_BYTES

VECTORS = Path(__file__).parent.parent / "vectors" / "nmea"


def _load(name: str) -> list[dict[str, object]]:
    data: list[dict[str, object]] = json.loads((VECTORS / name).read_text())
    return data


ALL = [
    pytest.param(v, id=str(v["id"])) for f in ("sentences.json", "refused.json") for v in _load(f)
]


def decode_all(chunks: list[bytes]) -> list[object]:
    """Feed chunks to one framer; parse sentences; errors (returned or raised) as values."""
    framer = NmeaFramer()
    out: list[object] = []
    for chunk in chunks:
        for item in framer.feed(chunk):
            try:
                out.append(item if isinstance(item, DecodeError) else parse_sentence(item))
            except DecodeError as error:
                out.append(error)
    return out


def check_expect(result: object, expect: dict[str, object]) -> None:
    if "error" in expect:
        assert isinstance(result, DecodeError)
        assert result.kind == expect["error"]
        return
    kind = expect["sentence"]
    if kind == "other":
        assert isinstance(result, Sentence)
        assert (result.talker, result.formatter) == (expect["talker"], expect["formatter"])
        return
    assert isinstance(result, Gga if kind == "GGA" else Rmc)
    for key, want in expect.items():
        if key == "sentence":
            continue
        got = getattr(result, key)
        if key == "date" and want is not None:
            assert got == dt.date.fromisoformat(str(want))
        elif isinstance(want, float):
            assert got == pytest.approx(want, abs=1e-9), key
        else:
            assert got == want, key


@pytest.mark.parametrize("vector", ALL)
def test_vector_whole(vector: dict[str, object]) -> None:
    results = decode_all([str(vector["text"]).encode()])
    assert len(results) == 1
    check_expect(results[0], vector["expect"])  # type: ignore[arg-type]


@pytest.mark.parametrize("vector", ALL)
def test_vector_byte_at_a_time(vector: dict[str, object]) -> None:
    data = str(vector["text"]).encode()
    assert decode_all([data[i : i + 1] for i in range(len(data))]) == decode_all([data])


@pytest.mark.parametrize("vector", ALL)
def test_vector_every_truncation_needs_more_data(vector: dict[str, object]) -> None:
    data = str(vector["text"]).encode()
    for cut in range(len(data)):
        framer = NmeaFramer()
        assert framer.feed(data[:cut]) == [], cut
        # ...and the rest completes exactly the same result.
        rest = framer.feed(data[cut:])
        assert rest == NmeaFramer().feed(data)


@pytest.mark.parametrize("vector", ALL)
def test_vector_after_noise_and_before_more(vector: dict[str, object]) -> None:
    data = str(vector["text"]).encode()
    framer = NmeaFramer()
    items = framer.feed(b"\x00\xff noise" + data + b"$GPGSV,1")
    assert items == NmeaFramer().feed(data)
    assert framer.skipped_bytes == 8


def test_start_character_inside_a_sentence_reports_truncation_and_resyncs() -> None:
    good = _load("sentences.json")[0]["text"]
    framer = NmeaFramer()
    items = framer.feed(b"$GPGGA,1235" + str(good).encode())
    assert isinstance(items[0], DecodeError)
    assert items[0].kind == "truncated"
    assert items[0].raw == b"$GPGGA,1235"
    assert isinstance(items[1], Sentence)


def test_overlong_line_is_refused_and_buffer_stays_bounded() -> None:
    framer = NmeaFramer()
    items = framer.feed(b"$GP" + b"A" * (MAX_SENTENCE_BYTES * 3) + b"\r\n")
    assert [e.kind for e in items if isinstance(e, DecodeError)] == ["too_long"]
    assert len(items) == 1
    error = items[0]
    assert isinstance(error, DecodeError)
    assert len(error.raw) == MAX_SENTENCE_BYTES  # never buffered more than the limit
    # The rest of the line, up to the CR/LF, is noise until the next start character.
    assert framer.skipped_bytes == MAX_SENTENCE_BYTES * 3 + 3 - MAX_SENTENCE_BYTES


@pytest.mark.parametrize(
    ("length", "accepted"), [(MAX_SENTENCE_BYTES, True), (MAX_SENTENCE_BYTES + 1, False)]
)
def test_length_limit_includes_cr_lf(length: int, accepted: bool) -> None:
    body = b"GPTXT," + b"x" * (length - 12)  # "$" + body + "*hh\r\n" = length bytes
    sentence = b"$" + body + b"*%02X\r\n" % checksum(body)
    assert len(sentence) == length
    items = NmeaFramer().feed(sentence)
    assert isinstance(items[0], Sentence) is accepted


def test_non_printable_byte_inside_sentence_is_refused() -> None:
    items = NmeaFramer().feed(b"$GPGGA,\x07,1*00\r\n")
    assert isinstance(items[0], DecodeError)
    assert items[0].kind == "bad_byte"


def test_cr_not_followed_by_lf_is_refused_and_next_sentence_survives() -> None:
    good = str(_load("sentences.json")[0]["text"]).encode()
    items = NmeaFramer().feed(b"$GPGGA,1\rX" + good)
    assert isinstance(items[0], DecodeError)
    assert items[0].kind == "syntax"
    assert isinstance(items[1], Sentence)


def test_reset_reports_a_pending_partial_sentence_once() -> None:
    framer = NmeaFramer()
    framer.feed(b"$GPRMC,12")
    assert [e.kind for e in framer.reset()] == ["truncated"]
    assert framer.reset() == []


def test_lowercase_checksum_and_bare_lf_are_accepted() -> None:
    text = str(_load("sentences.json")[1]["text"]).encode()  # ...*6A\r\n
    items = NmeaFramer().feed(text.replace(b"*6A\r\n", b"*6a\n"))
    assert isinstance(items[0], Sentence)
    assert items[0].formatter == "RMC"
