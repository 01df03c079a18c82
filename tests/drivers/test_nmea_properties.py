"""Hypothesis round trips (encode → frame → parse) and a seeded fuzz of the NMEA codec."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.errors import DecodeError
from drivers.nmea import (
    FixQuality,
    Gga,
    NmeaFramer,
    Rmc,
    Sentence,
    encode_gga,
    encode_rmc,
    parse_sentence,
)

# Half a unit of the encoder's last printed digit (see encode_gga / encode_rmc docs).
POSITION_TOL = 0.5e-5 / 60 + 1e-12
talkers = st.sampled_from(["GP", "GN", "GL", "GA"])
times = st.integers(0, 86_399_999_999_999)
lats = st.floats(-90, 90, allow_nan=False)
lons = st.floats(-180, 180, allow_nan=False)


def optional(strategy: st.SearchStrategy[float]) -> st.SearchStrategy[float | None]:
    return st.none() | strategy


ggas = st.builds(
    Gga,
    talker=talkers,
    time_ns=st.none() | times,
    latitude=optional(lats),
    longitude=optional(lons),
    quality=st.sampled_from(FixQuality),
    satellites=st.none() | st.integers(0, 99),
    hdop=optional(st.floats(0, 99.99)),
    altitude_m=optional(st.floats(-1000, 99_999)),
    geoid_separation_m=optional(st.floats(-200, 200)),
)
rmcs = st.builds(
    Rmc,
    talker=talkers,
    time_ns=st.none() | times,
    valid=st.booleans(),
    latitude=optional(lats),
    longitude=optional(lons),
    speed_knots=optional(st.floats(0, 9999)),
    course_deg=optional(st.floats(0, 360, exclude_max=True)),
    date=st.none() | st.dates(dt.date(1980, 1, 1), dt.date(2079, 12, 31)),
    magnetic_variation_deg=optional(st.floats(-180, 180)),
    mode=st.none() | st.sampled_from("ADEMS"),
)


def decode_one(data: bytes) -> Gga | Rmc | Sentence:
    (item,) = NmeaFramer().feed(data)
    assert isinstance(item, Sentence)
    message = parse_sentence(item)
    return message


def close(got: float | None, want: float | None, tol: float) -> bool:
    if want is None:
        return got is None
    return got is not None and abs(got - want) <= tol


def same_time(got: int | None, want: int | None) -> bool:
    # The encoder truncates to centiseconds.
    return got == (None if want is None else want - want % 10_000_000)


@given(ggas)
def test_gga_round_trip(gga: Gga) -> None:
    back = decode_one(encode_gga(gga))
    assert isinstance(back, Gga)
    assert (back.talker, back.quality, back.satellites) == (gga.talker, gga.quality, gga.satellites)
    assert same_time(back.time_ns, gga.time_ns)
    assert close(back.latitude, gga.latitude, POSITION_TOL)
    assert close(back.longitude, gga.longitude, POSITION_TOL)
    assert close(back.hdop, gga.hdop, 0.005 + 1e-9)
    assert close(back.altitude_m, gga.altitude_m, 0.05 + 1e-9)
    assert close(back.geoid_separation_m, gga.geoid_separation_m, 0.05 + 1e-9)


@given(rmcs)
def test_rmc_round_trip(rmc: Rmc) -> None:
    back = decode_one(encode_rmc(rmc))
    assert isinstance(back, Rmc)
    assert (back.talker, back.valid, back.date, back.mode) == (
        rmc.talker,
        rmc.valid,
        rmc.date,
        rmc.mode,
    )
    assert same_time(back.time_ns, rmc.time_ns)
    assert close(back.latitude, rmc.latitude, POSITION_TOL)
    assert close(back.longitude, rmc.longitude, POSITION_TOL)
    assert close(back.speed_knots, rmc.speed_knots, 0.0005 + 1e-9)
    assert close(back.magnetic_variation_deg, rmc.magnetic_variation_deg, 0.005 + 1e-9)
    if rmc.course_deg is not None:
        assert back.course_deg is not None
        # Courses are circular: 359.999° is written as 0.00°.
        diff = abs(back.course_deg - rmc.course_deg) % 360
        assert min(diff, 360 - diff) <= 0.005 + 1e-9
    else:
        assert back.course_deg is None


@given(st.lists(ggas | rmcs, max_size=5), st.data())
def test_stream_of_sentences_in_random_chunks(
    messages: list[Gga | Rmc], data: st.DataObject
) -> None:
    stream = b"".join(encode_gga(m) if isinstance(m, Gga) else encode_rmc(m) for m in messages)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    framer = NmeaFramer()
    items = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        items.extend(framer.feed(stream[start:end]))
    assert [type(parse_sentence(i)) for i in items if isinstance(i, Sentence)] == [
        type(m) for m in messages
    ]
    assert len(items) == len(messages)
    assert framer.skipped_bytes == 0


# Bytes that matter to the framer, weighted so the fuzzer builds near-sentences.
ALPHABET = b"$!*,.\r\n0123456789ABCDEFGPNSEWMV" + bytes(range(0, 256, 7))


def test_fuzz_any_input_gives_sentences_or_decode_errors() -> None:
    seed = int(os.environ.get("FUZZ_SEED", random.SystemRandom().randrange(2**32)))
    print(f"FUZZ_SEED={seed}")  # pin a failure with: FUZZ_SEED=<seed> pytest ...
    rng = random.Random(seed)
    prefixes = [b"$GPGGA,", b"$GPRMC,", b"$GNRMC,1,A,", b"!AIVDM,", b""]
    for _ in range(300):
        blob = rng.choice(prefixes) + bytes(rng.choices(ALPHABET, k=rng.randint(0, 300)))
        whole = NmeaFramer()
        expected = whole.feed(blob)
        chunked = NmeaFramer()
        got: list[Sentence | DecodeError] = []
        pos = 0
        while pos < len(blob):
            step = rng.randint(1, 40)
            got.extend(chunked.feed(blob[pos : pos + step]))
            pos += step
        assert got == expected, seed
        assert chunked.skipped_bytes == whole.skipped_bytes, seed
        for item in got:
            assert isinstance(item, Sentence | DecodeError), seed
            if isinstance(item, Sentence):
                with contextlib.suppress(DecodeError):  # the only exception allowed
                    parse_sentence(item)


@pytest.mark.parametrize("formatter", ["GGA", "RMC"])
def test_fuzz_fields_of_checksummed_sentences(formatter: str) -> None:
    # Valid framing and checksum, random fields: exercises the field parsers, not the framer.
    seed = int(os.environ.get("FUZZ_SEED", random.SystemRandom().randrange(2**32)))
    print(f"FUZZ_SEED={seed}")
    rng = random.Random(seed)
    field_alphabet = "0123456789.-NSEWAVMxyz"
    for _ in range(500):
        fields = [
            "".join(rng.choices(field_alphabet, k=rng.randint(0, 10)))
            for _ in range(rng.randint(0, 16))
        ]
        sentence = Sentence("GP", formatter, tuple(fields), b"$GP" + formatter.encode())
        try:
            result = parse_sentence(sentence)
        except DecodeError as error:
            assert error.kind == "field", seed
            assert error.raw == sentence.raw
        else:
            assert isinstance(result, Gga | Rmc), seed
