"""The committed test vectors against the codec (``docs/protocol.md`` §Test vectors).

Valid vectors must decode to exactly the described message and encode back byte for byte;
invalid ones must raise exactly the named error; no prefix of a valid vector is a message.
"""

from __future__ import annotations

import cbor2
import pytest

from protocol import codec, limits
from protocol.errors import DecodeError, MessageTooBig
from protocol.events import ClockSource, Event, Reading
from protocol.messages import Batch, Command, MessageType, Subscribe
from tests.protocol.protocol_support import INVALID, VALID, Vector, message_from_json

ERRORS: dict[str, type[Exception]] = {"DecodeError": DecodeError, "MessageTooBig": MessageTooBig}


def _desc(vector: Vector) -> dict[str, object]:
    assert vector.message is not None
    return vector.message


def test_every_message_type_has_a_valid_vector() -> None:
    covered = {_desc(v)["type"] for v in VALID}
    assert covered == {t.name.lower() for t in MessageType}


@pytest.mark.parametrize("vector", VALID, ids=lambda v: v.id)
def test_valid_vector_decodes_to_described_message(vector: Vector) -> None:
    assert codec.decode(vector.data) == message_from_json(_desc(vector))


@pytest.mark.parametrize("vector", VALID, ids=lambda v: v.id)
def test_valid_vector_is_canonical_encoding(vector: Vector) -> None:
    assert codec.encode(message_from_json(_desc(vector))) == vector.data


@pytest.mark.parametrize("vector", INVALID, ids=lambda v: v.id)
def test_invalid_vector_raises_its_error(vector: Vector) -> None:
    assert vector.error is not None
    with pytest.raises(ERRORS[vector.error]) as caught:
        codec.decode(vector.data)
    assert type(caught.value) is ERRORS[vector.error]


@pytest.mark.parametrize("vector", VALID, ids=lambda v: v.id)
def test_every_truncation_is_a_decode_error(vector: Vector) -> None:
    for end in range(len(vector.data)):
        with pytest.raises(DecodeError) as caught:
            codec.decode(vector.data[:end])
        assert type(caught.value) is DecodeError, end


def test_size_limit_is_checked_before_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    def parse(data: bytes) -> object:
        raise AssertionError("parsed an oversized message")

    monkeypatch.setattr(codec, "_loads", parse)
    with pytest.raises(MessageTooBig):
        codec.decode(b"\x80" * (limits.MAX_MESSAGE_BYTES + 1))


def test_message_at_the_size_limit_is_parsed() -> None:
    # One byte-string ack field padded to exactly MAX_MESSAGE_BYTES: parsed, then refused
    # for its shape (DecodeError), not for its size.
    head = cbor2.dumps([4, b""])
    payload = bytes(limits.MAX_MESSAGE_BYTES - len(head) - 4)
    data = cbor2.dumps([4, payload])
    assert len(data) == limits.MAX_MESSAGE_BYTES
    with pytest.raises(DecodeError):
        codec.decode(data)


def _minimal_event(seq: int) -> list[object]:
    return [seq, "d", bytes(16), 0, 0, 0, [{0: "t", 2: 1}]]


def test_batch_over_event_limit_is_too_big() -> None:
    count = limits.MAX_BATCH_EVENTS + 1
    data = cbor2.dumps([3, [_minimal_event(seq) for seq in range(1, count + 1)]])
    with pytest.raises(MessageTooBig):
        codec.decode(data)


def test_deliver_over_event_limit_is_too_big() -> None:
    count = limits.MAX_BATCH_EVENTS + 1
    items = [["gw", _minimal_event(seq)] for seq in range(1, count + 1)]
    with pytest.raises(MessageTooBig):
        codec.decode(cbor2.dumps([10, items]))


def _event(*readings: Reading, device: str = "d") -> Event:
    return Event(1, device, bytes(16), 0, 0, ClockSource.NTP, readings)


@pytest.mark.parametrize(
    ("message", "error"),
    [
        (Batch(()), DecodeError),
        (Batch((_event(Reading("t", "", float("nan"))),)), DecodeError),
        (Batch((_event(Reading("t", "", 1), device="x" * 257),)), MessageTooBig),
        (Batch((_event(Reading("t", "", 2**63)),)), DecodeError),
        (Batch((_event(Reading("t", "", 1), device="\udc80"),)), DecodeError),
        (Subscribe(1, ()), DecodeError),
        (Command(1, "run", {"a": 2**64}), DecodeError),
    ],
)
def test_encoder_refuses_what_the_decoder_refuses(
    message: Batch | Subscribe | Command, error: type[Exception]
) -> None:
    with pytest.raises(error) as caught:
        codec.encode(message)
    assert type(caught.value) is error


def test_equal_messages_encode_to_equal_bytes() -> None:
    forward = Command(1, "set", {"a": 1, "b": 2.5, "c": "x"})
    backward = Command(1, "set", {"c": "x", "b": 2.5, "a": 1})
    assert forward == backward
    assert codec.encode(forward) == codec.encode(backward)
