"""Seeded fuzzing of the decoder: random bytes and mutated valid vectors may be refused, but
only with the protocol's own errors (``docs/protocol.md`` §Errors). Any other exception is a
codec bug. The seed is printed; set ``FUZZ_SEED`` to replay a run.
"""

from __future__ import annotations

import contextlib
import os
import random

from protocol import codec
from protocol.errors import ProtocolError
from tests.protocol.protocol_support import VALID

ROUNDS = 3000


def _seed() -> int:
    pinned = os.environ.get("FUZZ_SEED")
    seed = int(pinned) if pinned else random.SystemRandom().randrange(2**32)
    print(f"FUZZ_SEED={seed}")
    return seed


def _mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        kind = rng.randrange(4)
        pos = rng.randrange(len(buf) + 1)
        if kind == 0 and buf:  # flip bits in one byte
            buf[pos % len(buf)] ^= 1 << rng.randrange(8)
        elif kind == 1 and buf:  # overwrite a byte, often with a CBOR head byte
            buf[pos % len(buf)] = rng.choice([0x18, 0x1B, 0x5F, 0x9F, 0xBF, 0xC2, 0xD8, 0xF9,
                                              0xFB, 0xFF, rng.randrange(256)])  # fmt: skip
        elif kind == 2:  # insert random bytes
            buf[pos:pos] = rng.randbytes(rng.randint(1, 3))
        else:  # delete a run
            del buf[pos : pos + rng.randint(1, 3)]
    return bytes(buf)


def _decode_or_refuse(data: bytes) -> None:
    # The only acceptable failure; anything else propagates and fails the test.
    with contextlib.suppress(ProtocolError):
        codec.decode(data)


def test_random_bytes_raise_only_protocol_errors() -> None:
    rng = random.Random(_seed())
    for _ in range(ROUNDS):
        _decode_or_refuse(rng.randbytes(rng.randint(0, 64)))


def test_mutated_vectors_raise_only_protocol_errors() -> None:
    rng = random.Random(_seed())
    decoded = 0
    for _ in range(ROUNDS):
        data = _mutate(rng, rng.choice(VALID).data)
        try:
            codec.decode(data)
            decoded += 1
        except ProtocolError:
            pass
    # Some mutations (a changed digit in a value) must still decode: the fuzzer reaches the
    # message layer rather than stopping at CBOR well-formedness every time.
    assert decoded > 0
