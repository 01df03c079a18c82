"""Node protocol codec: COBS/CRC framing and CBOR messages against vectors, truncations,
byte-by-byte feeding, hypothesis round trips and a seeded fuzz."""

from __future__ import annotations

import json
import os
import random
import zlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.errors import DecodeError, InvalidValue
from drivers.node import (
    MAX_PAYLOAD,
    Ack,
    Hello,
    Message,
    NodeFramer,
    Readings,
    Record,
    decode_frame,
    decode_message,
    encode_frame,
    encode_message,
)
from drivers.node.framing import MAX_STUFFED, cobs_decode, cobs_encode, crc32

VECTORS = Path(__file__).parent.parent.parent / "vectors" / "node"


def load(name: str) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = json.loads((VECTORS / name).read_text())
    return data


def hexbytes(text: str) -> bytes:
    # "01..fe" in a vector means the bytes 0x01 to 0xFE in order (COBS example 8).
    text = text.replace("01..fe", bytes(range(1, 255)).hex())
    return bytes.fromhex(text)


def message_of(spec: dict[str, Any]) -> Message:
    kind = spec["type"]
    if kind == "ack":
        return Ack(spec["boot"], spec["seq"])
    if kind == "hello":
        return Hello(spec["node_id"], spec["boot"], spec["firmware"])
    records = tuple(Record(*r) for r in spec["records"])
    return Readings(spec["node_id"], spec["boot"], spec["now_ms"], spec["dropped"], records)


# --- CRC and COBS ---------------------------------------------------------------------------


def test_crc32_check_value() -> None:
    # CRC catalogue (reveng), CRC-32/ISO-HDLC: check = 0xCBF43926 over "123456789".
    assert crc32(b"123456789") == 0xCBF43926


@pytest.mark.parametrize("vector", load("cobs.json"), ids=lambda v: v["id"])
def test_cobs_vectors(vector: dict[str, Any]) -> None:
    data, stuffed = hexbytes(vector["data"]), hexbytes(vector["stuffed"])
    assert cobs_encode(data) == stuffed
    assert cobs_decode(stuffed) == data


@given(st.binary(max_size=1200))
def test_cobs_round_trip_has_no_zero(data: bytes) -> None:
    stuffed = cobs_encode(data)
    assert 0 not in stuffed
    assert len(stuffed) <= len(data) + len(data) // 254 + 1
    assert cobs_decode(stuffed) == data


# --- messages -------------------------------------------------------------------------------


@pytest.mark.parametrize("vector", load("messages.json"), ids=lambda v: v["id"])
def test_message_vectors(vector: dict[str, Any]) -> None:
    payload, message = hexbytes(vector["payload"]), message_of(vector["message"])
    assert decode_message(payload) == message
    if vector["canonical"]:
        assert encode_message(message) == payload
    else:
        assert decode_message(encode_message(message)) == message


@pytest.mark.parametrize("vector", load("refused.json"), ids=lambda v: v["id"])
def test_refused_vectors(vector: dict[str, Any]) -> None:
    payload = hexbytes(vector["payload"])
    with pytest.raises(DecodeError) as info:
        decode_message(payload)
    assert info.value.kind == vector["error"]
    assert info.value.raw == payload


@pytest.mark.parametrize("vector", load("messages.json"), ids=lambda v: v["id"])
def test_every_truncation_of_a_message_is_refused(vector: dict[str, Any]) -> None:
    payload = hexbytes(vector["payload"])
    for cut in range(len(payload)):
        with pytest.raises(DecodeError):
            decode_message(payload[:cut])


@pytest.mark.parametrize("vector", load("messages.json"), ids=lambda v: v["id"])
def test_frames_fed_whole_byte_by_byte_and_truncated(vector: dict[str, Any]) -> None:
    payload = hexbytes(vector["payload"])
    frame = encode_frame(payload)
    # The frame is COBS(payload + CRC-32 little-endian) + 0x00, computed here with zlib.
    body = payload + zlib.crc32(payload).to_bytes(4, "little")
    assert frame == cobs_encode(body) + b"\x00"
    assert NodeFramer().feed(frame) == [payload]
    framer = NodeFramer()
    got = [item for byte in frame for item in framer.feed(bytes([byte]))]
    assert got == [payload]
    for cut in range(1, len(frame) - 1):
        # A frame cut short and then ended by a delimiter is refused, never decoded.
        (item,) = NodeFramer().feed(frame[:cut] + b"\x00")
        assert isinstance(item, DecodeError)
        assert item.kind in {"cobs", "crc", "truncated"}


def test_resync_after_garbage_and_corruption() -> None:
    good = encode_frame(encode_message(Ack(1, 7)))
    corrupt = bytearray(good)
    corrupt[2] ^= 0x10
    stream = b"\x17\x42garbage\x00" + bytes(corrupt) + b"\x00" + good
    items = NodeFramer().feed(stream)
    assert [type(i) for i in items] == [DecodeError, DecodeError, bytes]
    assert items[-1] == encode_message(Ack(1, 7))


def test_over_long_frame_is_refused_once_and_skipped() -> None:
    framer = NodeFramer()
    junk = b"\x01" * (MAX_STUFFED + 100)
    items = framer.feed(junk) + framer.feed(b"\x00" + encode_frame(b"\x80"))
    assert [i.kind for i in items if isinstance(i, DecodeError)] == ["too_long"]
    assert items[-1] == b"\x80"
    assert framer.skipped_bytes == len(junk)


def test_encoder_refuses_what_the_wire_cannot_carry() -> None:
    with pytest.raises(InvalidValue):
        encode_frame(b"")
    with pytest.raises(InvalidValue):
        encode_frame(b"x" * (MAX_PAYLOAD + 1))
    with pytest.raises(InvalidValue):
        encode_message(Ack(2**32, 1))
    with pytest.raises(InvalidValue):
        encode_message(Readings("n", 1, 0, 0, (Record(1, 0, "t", "", True),)))
    with pytest.raises(InvalidValue):
        encode_message(Readings("n", 1, 0, 0, (Record(1, 0, "t", "", float("nan")),)))


# --- hypothesis round trips -----------------------------------------------------------------

u32 = st.integers(0, 2**32 - 1)
names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,15}", fullmatch=True)
units = st.sampled_from(["", "Cel", "%RH", "V", "m/s", "count"])
values = st.one_of(
    st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False, allow_infinity=False)
)


@st.composite
def readings(draw: st.DrawFn) -> Readings:
    first = draw(st.integers(1, 2**32 - 17))
    count = draw(st.integers(1, 8))
    records = tuple(
        Record(first + i, draw(u32), draw(names), draw(units), draw(values)) for i in range(count)
    )
    return Readings(draw(names), draw(u32), draw(u32), draw(u32), records)


messages = st.one_of(
    st.builds(Ack, u32, u32),
    st.builds(Hello, names, u32, st.text(max_size=32)),
    readings(),
)


@given(messages)
def test_message_round_trip_through_a_frame(message: Message) -> None:
    payload = encode_message(message)
    assert decode_message(decode_frame(encode_frame(payload)[:-1])) == message


# --- fuzz -----------------------------------------------------------------------------------


def test_fuzz_any_bytes_give_frames_or_our_errors() -> None:
    seed = int(os.environ.get("FUZZ_SEED", random.SystemRandom().randrange(2**32)))
    print(f"FUZZ_SEED={seed}")  # pin a failure with: FUZZ_SEED=<seed> pytest ...
    rng = random.Random(seed)
    seeds = [hexbytes(v["payload"]) for v in load("messages.json")]
    for _ in range(400):
        base = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(0, 4)):
            if base:
                base[rng.randrange(len(base))] = rng.randrange(256)
        blob = bytes(base) if rng.random() < 0.5 else rng.randbytes(rng.randint(0, 80))
        try:
            message = decode_message(blob)
        except DecodeError as error:
            assert error.raw == blob, seed
        else:
            assert decode_message(encode_message(message)) == message, seed
        whole = NodeFramer().feed(blob + b"\x00" + encode_frame(blob or b"\x00"))
        chunked = NodeFramer()
        got: list[bytes | DecodeError] = []
        stream = blob + b"\x00" + encode_frame(blob or b"\x00")
        pos = 0
        while pos < len(stream):
            step = rng.randint(1, 9)
            got.extend(chunked.feed(stream[pos : pos + step]))
            pos += step
        assert got == whole, seed
        assert whole[-1] == (blob or b"\x00"), seed
