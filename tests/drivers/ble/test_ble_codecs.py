"""BLE advert codecs: published vectors, every truncation and single-byte corruption,
hypothesis round trips and a seeded fuzz test (any input gives a value or DecodeError)."""

from __future__ import annotations

import json
import os
import random
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.ble import Advert, decode_advert
from drivers.ble.advert import uuid16
from drivers.ble.bthome import decode_bthome, encode_bthome
from drivers.ble.bthome_objects import OBJECTS
from drivers.ble.eddystone import (
    EddystoneTlm,
    EddystoneUid,
    EddystoneUrl,
    decode_eddystone,
    encode_eddystone,
)
from drivers.ble.ibeacon import IBeacon, decode_ibeacon, encode_ibeacon
from drivers.ble.ruuvi import STANDARD_GRAVITY, Ruuvi5, decode_ruuvi5, encode_ruuvi5
from drivers.errors import DecodeError

VECTORS = Path(__file__).parents[2] / "vectors"


def load(device: str) -> list[dict[str, Any]]:
    data = json.loads((VECTORS / device / "vectors.json").read_text())
    assert data["source"]
    vectors: list[dict[str, Any]] = data["vectors"]
    return vectors


def triples(readings: Any) -> list[tuple[str, str, object]]:
    return [(r.name, r.unit, r.value) for r in readings]


@pytest.mark.parametrize("vector", load("bthome"), ids=lambda v: v["name"])
def test_bthome_vectors(vector: dict[str, Any]) -> None:
    key = bytes.fromhex(vector["key"]) if "key" in vector else None
    mac = bytes.fromhex(vector["mac"]) if "mac" in vector else None
    packet = decode_bthome(bytes.fromhex(vector["hex"]), mac=mac, key=key)
    assert triples(packet.readings()) == [tuple(r) for r in vector["readings"]]
    assert packet.counter == vector.get("counter")


def test_bthome_encryption_matches_the_spec_example() -> None:
    vector = load("bthome")[2]
    sealed = encode_bthome(
        ((0x02, 2506), (0x03, 5055)),
        key=bytes.fromhex(vector["key"]),
        mac=bytes.fromhex(vector["mac"]),
        counter=vector["counter"],
    )
    assert sealed.hex() == vector["hex"]


def test_bthome_wrong_or_missing_key_is_refused() -> None:
    vector = load("bthome")[2]
    data, mac = bytes.fromhex(vector["hex"]), bytes.fromhex(vector["mac"])
    with pytest.raises(DecodeError) as missing:
        decode_bthome(data, mac=mac)
    assert missing.value.kind == "no_key"
    with pytest.raises(DecodeError) as wrong:
        decode_bthome(data, mac=mac, key=bytes(16))
    assert wrong.value.kind == "decrypt"


@pytest.mark.parametrize("vector", load("ruuvi"), ids=lambda v: v["name"])
def test_ruuvi_vectors(vector: dict[str, Any]) -> None:
    frame = decode_ruuvi5(bytes.fromhex(vector["hex"]))
    values = {r.name: r.value for r in frame.readings()}
    assert values.get("temperature") == vector["temperature"]
    assert values.get("humidity") == vector["humidity"]
    assert values.get("pressure") == vector["pressure"]
    for axis, g in zip("xyz", vector["acceleration_g"], strict=True):
        got = values.get(f"accel_{axis}")
        assert got == (None if g is None else pytest.approx(g * STANDARD_GRAVITY))
    assert values.get("voltage") == vector["voltage"]
    assert values.get("txpower") == vector["txpower"]
    assert values.get("movements") == vector["movements"]
    assert frame.sequence == vector["sequence"]
    assert encode_ruuvi5(frame).hex().upper() == vector["hex"].upper()


@pytest.mark.parametrize("vector", load("ibeacon"), ids=lambda v: v["name"])
def test_ibeacon_vectors(vector: dict[str, Any]) -> None:
    beacon = decode_ibeacon(bytes.fromhex(vector["hex"]))
    assert str(beacon.proximity_uuid) == vector["uuid"]
    assert (beacon.major, beacon.minor, beacon.measured_power) == (
        vector["major"],
        vector["minor"],
        vector["power"],
    )


@pytest.mark.parametrize("vector", load("eddystone"), ids=lambda v: v["name"])
def test_eddystone_vectors(vector: dict[str, Any]) -> None:
    frame = decode_eddystone(bytes.fromhex(vector["hex"]))
    assert triples(frame.readings()) == [tuple(r) for r in vector["readings"]]


def every_vector() -> list[tuple[str, bytes]]:
    out = [("bthome", bytes.fromhex(v["hex"])) for v in load("bthome")]
    out += [("ruuvi", bytes.fromhex(v["hex"])) for v in load("ruuvi")]
    out += [("ibeacon", bytes.fromhex(v["hex"])) for v in load("ibeacon")]
    out += [("eddystone", bytes.fromhex(v["hex"])) for v in load("eddystone")]
    return out


def advert_for(kind: str, data: bytes) -> Advert:
    address = "54:48:E6:8F:80:A5"
    if kind == "bthome":
        return Advert(address, service_data=((uuid16(0xFCD2), data),))
    if kind == "eddystone":
        return Advert(address, service_data=((uuid16(0xFEAA), data),))
    company = 0x0499 if kind == "ruuvi" else 0x004C
    return Advert(address, manufacturer_data=((company, data),))


KEYS = {"54:48:E6:8F:80:A5": bytes.fromhex("231d39c1d7cc1ab1aee224cd096db932")}


@pytest.mark.parametrize(("kind", "data"), every_vector())
def test_every_truncation_gives_a_value_or_our_error(kind: str, data: bytes) -> None:
    whole = decode_advert(advert_for(kind, data), KEYS)
    assert len(whole) == 1
    assert not isinstance(whole[0], DecodeError)
    refused = 0
    for cut in range(len(data)):
        (result,) = decode_advert(advert_for(kind, data[:cut]), KEYS)
        refused += isinstance(result, DecodeError)
    # Fixed-length formats refuse every cut; BTHome and Eddystone URL may end on an object
    # or character boundary, but never accept the empty payload.
    assert refused >= 1
    if kind in ("ruuvi", "ibeacon"):
        assert refused == len(data)


@pytest.mark.parametrize(("kind", "data"), every_vector())
def test_every_single_byte_corruption_gives_a_value_or_our_error(kind: str, data: bytes) -> None:
    for at in range(len(data)):
        for flip in (0x01, 0x80, 0xFF):
            damaged = data[:at] + bytes([data[at] ^ flip]) + data[at + 1 :]
            results = decode_advert(advert_for(kind, damaged), KEYS)
            assert len(results) == 1


def test_encrypted_bthome_detects_every_single_byte_corruption() -> None:
    data = bytes.fromhex(load("bthome")[2]["hex"])
    for at in range(1, len(data)):
        damaged = data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]
        (result,) = decode_advert(advert_for("bthome", damaged), KEYS)
        assert isinstance(result, DecodeError)
        assert result.kind == "decrypt"


NUMERIC = sorted(oid for oid, spec in OBJECTS.items() if spec.size and spec.kind != "event")


@st.composite
def bthome_objects(draw: st.DrawFn) -> tuple[tuple[int, int | str | bytes], ...]:
    objects: list[tuple[int, int | str | bytes]] = []
    for _ in range(draw(st.integers(0, 6))):
        oid = draw(st.sampled_from([*NUMERIC, 0x53, 0x54]))
        spec = OBJECTS[oid]
        if oid == 0x53:
            objects.append((oid, draw(st.text(max_size=10))))
        elif oid == 0x54:
            objects.append((oid, draw(st.binary(max_size=10))))
        else:
            bits = spec.size * 8
            low, high = (
                (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if spec.signed else (0, 2**bits - 1)
            )
            objects.append((oid, draw(st.integers(low, high))))
    return tuple(objects)


@given(bthome_objects(), st.binary(min_size=16, max_size=16) | st.none(), st.integers(0, 2**32 - 1))
def test_bthome_round_trip(objects: Any, key: bytes | None, counter: int) -> None:
    mac = bytes.fromhex("5448E68F80A5")
    packet = decode_bthome(
        encode_bthome(objects, key=key, mac=mac, counter=counter), mac=mac, key=key
    )
    assert packet.objects == objects
    assert packet.encrypted == (key is not None)


@given(
    st.builds(
        Ruuvi5,
        st.integers(-32767, 32767) | st.none(),
        st.integers(0, 65534) | st.none(),
        st.integers(0, 65534) | st.none(),
        st.tuples(*[st.integers(-32767, 32767) | st.none()] * 3),
        st.integers(0, 2046) | st.none(),
        st.integers(0, 30) | st.none(),
        st.integers(0, 254) | st.none(),
        st.integers(0, 65534) | st.none(),
        st.binary(min_size=6, max_size=6),
    )
)
def test_ruuvi_round_trip(frame: Ruuvi5) -> None:
    assert decode_ruuvi5(encode_ruuvi5(frame)) == frame


@given(st.uuids(), st.integers(0, 65535), st.integers(0, 65535), st.integers(-128, 127))
def test_ibeacon_round_trip(u: uuid.UUID, major: int, minor: int, power: int) -> None:
    beacon = IBeacon(u, major, minor, power)
    assert decode_ibeacon(encode_ibeacon(beacon)) == beacon


URL_TEXT = st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789-/"), max_size=8)


@given(
    st.integers(-128, 127),
    st.binary(min_size=10, max_size=10),
    st.binary(min_size=6, max_size=6),
    st.sampled_from(["http://", "https://www."]),
    URL_TEXT,
    st.integers(1, 65535) | st.none(),
    st.integers(-32767, 32767) | st.none(),
    st.integers(0, 2**32 - 1),
)
def test_eddystone_round_trip(
    tx: int, ns: bytes, inst: bytes, scheme: str, path: str, mv: int | None, t: int | None, n: int
) -> None:
    assert decode_eddystone(encode_eddystone(EddystoneUid(tx, ns, inst))) == EddystoneUid(
        tx, ns, inst
    )
    url = EddystoneUrl(tx, scheme + path)
    assert decode_eddystone(encode_eddystone(url)) == url
    tlm = EddystoneTlm(mv, t, n, n)
    assert decode_eddystone(encode_eddystone(tlm)) == tlm


def test_fuzz_any_payload_gives_a_value_or_our_error() -> None:
    seed = int(os.environ.get("FUZZ_SEED", random.randrange(2**32)))
    print(f"FUZZ_SEED={seed}")
    rng = random.Random(seed)
    seeds = [data for _, data in every_vector()]
    for _ in range(3000):
        kind = rng.choice(["bthome", "ruuvi", "ibeacon", "eddystone"])
        if rng.random() < 0.5:
            data = bytearray(rng.choice(seeds))
            for _ in range(rng.randint(1, 4)):
                if data:
                    data[rng.randrange(len(data))] = rng.randrange(256)
        else:
            data = bytearray(rng.randbytes(rng.randint(0, 40)))
        for result in decode_advert(advert_for(kind, bytes(data)), KEYS):
            assert isinstance(result, DecodeError) or result.readings is not None
