"""Environmental Sensing / Battery characteristic values: GSS-derived vectors, every
truncation and byte-by-byte arrival, hypothesis round trips against a test-side encoder, and
a seeded fuzz test (any input gives readings or DecodeError)."""

from __future__ import annotations

import json
import os
import random
import struct
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.ble.advert import uuid16
from drivers.ble.ess import (
    BATTERY_LEVEL,
    BY_UUID,
    CHARACTERISTICS,
    HUMIDITY,
    PRESSURE,
    TEMPERATURE,
    decode_value,
    encode_value,
)
from drivers.errors import DecodeError, InvalidValue

VECTORS = json.loads((Path(__file__).parents[2] / "vectors" / "ess" / "vectors.json").read_text())
# The test's own encoder: struct formats written from the GSS types, not from drivers.ble.ess.
FORMATS = {TEMPERATURE: "<h", HUMIDITY: "<H", PRESSURE: "<I", BATTERY_LEVEL: "<B"}
SCALE = {TEMPERATURE: 100, HUMIDITY: 100, PRESSURE: 10, BATTERY_LEVEL: 1}


def triples(readings: Any) -> list[list[object]]:
    return [[r.name, r.unit, r.value] for r in readings]


def test_vectors_name_their_source() -> None:
    assert "GATT Specification Supplement" in VECTORS["source"]
    assert all(v["gss"] for v in VECTORS["vectors"])


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=lambda v: v["name"])
def test_vector_whole(vector: dict[str, Any]) -> None:
    uuid, data = int(vector["uuid"], 16), bytes.fromhex(vector["hex"])
    if "error" in vector:
        with pytest.raises(DecodeError) as refused:
            decode_value(uuid, data)
        assert refused.value.kind == vector["error"]
        assert refused.value.raw == data
    else:
        assert triples(decode_value(uuid, data)) == vector["readings"]


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=lambda v: v["name"])
def test_vector_every_truncation_and_byte_by_byte(vector: dict[str, Any]) -> None:
    """Bytes arriving one at a time: every proper prefix is ``truncated``, the whole value
    decodes as in the vector, and one byte more is ``too_long``."""
    uuid, data = int(vector["uuid"], 16), bytes.fromhex(vector["hex"])
    received = b""
    for byte in data[:-1]:
        received += bytes([byte])
        with pytest.raises(DecodeError) as short:
            decode_value(uuid, received)
        assert short.value.kind == "truncated"
    received += data[-1:]
    if "error" not in vector:
        assert triples(decode_value(uuid, received)) == vector["readings"]
    with pytest.raises(DecodeError) as long:
        decode_value(uuid, received + b"\x00")
    assert long.value.kind == "too_long"


def test_empty_value_is_truncated_for_every_characteristic() -> None:
    for uuid in CHARACTERISTICS:
        with pytest.raises(DecodeError) as short:
            decode_value(uuid, b"")
        assert short.value.kind == "truncated"


def test_unknown_characteristic_is_refused() -> None:
    with pytest.raises(DecodeError) as refused:
        decode_value(0x2A1C, b"\x00\x00\x00\x00\x00")  # Temperature Measurement: not decoded
    assert refused.value.kind == "unknown_characteristic"


def test_bluez_uuid_strings_map_to_the_table() -> None:
    assert BY_UUID[uuid16(TEMPERATURE)] == TEMPERATURE
    assert BY_UUID["00002a19-0000-1000-8000-00805f9b34fb"] == BATTERY_LEVEL
    assert set(BY_UUID.values()) == set(CHARACTERISTICS)


RAW_RANGES = {
    TEMPERATURE: st.integers(-27315, 32767),
    HUMIDITY: st.integers(0, 10000),
    PRESSURE: st.integers(0, 2**32 - 1),
    BATTERY_LEVEL: st.integers(0, 100),
}


@given(st.sampled_from(sorted(RAW_RANGES)).flatmap(lambda u: st.tuples(st.just(u), RAW_RANGES[u])))
def test_round_trip_with_the_test_encoder(case: tuple[int, int]) -> None:
    uuid, raw = case
    (reading,) = decode_value(uuid, struct.pack(FORMATS[uuid], raw))
    assert reading.value == pytest.approx(raw / SCALE[uuid], abs=1e-9)
    assert encode_value(uuid, float(reading.value)) == struct.pack(FORMATS[uuid], raw)


@given(st.binary(max_size=8), st.sampled_from([*sorted(CHARACTERISTICS), 0x2A1C, 0]))
def test_any_bytes_give_readings_or_decode_error(data: bytes, uuid: int) -> None:
    try:
        readings = decode_value(uuid, data)
    except DecodeError as exc:
        assert exc.kind in {"truncated", "too_long", "range", "unknown_characteristic"}
    else:
        assert len(readings) <= 1


def test_seeded_fuzz() -> None:
    seed = int(os.environ.get("FUZZ_SEED", random.randrange(2**32)))
    print(f"FUZZ_SEED={seed}")
    rng = random.Random(seed)
    uuids = [*CHARACTERISTICS, 0x2A1C]
    outcomes = {"readings": 0, "unknown": 0, "error": 0}
    for _ in range(5000):
        data = rng.randbytes(rng.choice([0, 1, 2, 3, 4, 5, rng.randrange(64)]))
        try:
            readings = decode_value(rng.choice(uuids), data)
        except DecodeError:
            outcomes["error"] += 1
        else:
            outcomes["readings" if readings else "unknown"] += 1
    assert outcomes["readings"] and outcomes["error"]


def test_encoder_writes_value_not_known() -> None:
    assert encode_value(TEMPERATURE, None) == b"\x00\x80"
    assert encode_value(HUMIDITY, None) == b"\xff\xff"


@pytest.mark.parametrize(
    ("uuid", "value"),
    [
        (TEMPERATURE, -273.16),
        (HUMIDITY, 100.01),
        (BATTERY_LEVEL, 101),
        (PRESSURE, -0.1),
        (PRESSURE, None),
        (BATTERY_LEVEL, None),
        (0x2A1C, 1.0),
    ],
)
def test_encoder_refuses_what_the_characteristic_cannot_carry(
    uuid: int, value: float | None
) -> None:
    with pytest.raises(InvalidValue):
        encode_value(uuid, value)
