"""SenML payload codec: RFC 8428 vectors, CBOR equivalence, every truncation, round trips and
seeded fuzz (any bytes give a Pack or PayloadError; FUZZ_SEED pins the seed)."""

from __future__ import annotations

import contextlib
import json
import os
import random
from pathlib import Path

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloud.mqtt.errors import PayloadError
from cloud.mqtt.senml import event_json, parse_pack, to_event
from protocol.events import ClockSource, Event, Reading, Value

VECTORS = json.loads((Path(__file__).parents[1] / "vectors/senml/rfc8428.json").read_text())
_CBOR = {"bver": -1, "bn": -2, "bt": -3, "bu": -4, "n": 0, "u": 1, "v": 2, "vs": 3, "vb": 4}


def _as_cbor(text: str) -> bytes:
    return cbor2.dumps([{_CBOR[k]: v for k, v in r.items()} for r in json.loads(text)])


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=lambda v: v["name"])
@pytest.mark.parametrize("form", ["json", "cbor"])
def test_rfc8428_examples(vector: dict[str, object], form: str) -> None:
    text = str(vector["json"])
    payload = text.encode() if form == "json" else _as_cbor(text)
    pack = parse_pack(payload)
    assert [[r.name, r.unit, r.value] for r in pack.readings] == vector["readings"]
    assert pack.time_s == vector["time_s"]
    assert pack.relative is (vector["time_s"] is None)


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=lambda v: v["name"])
def test_every_truncation_is_refused(vector: dict[str, object]) -> None:
    for payload in (str(vector["json"]).encode(), _as_cbor(str(vector["json"]))):
        for cut in range(len(payload)):
            with pytest.raises(PayloadError):
                parse_pack(payload[:cut])


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{}", "not SenML"),
        (b"[]", "non-empty"),
        (b'[{"n":"a","v":1},{"n":"b","v":2,"t":5}]', "different times"),
        (b'[{"n":"a"}]', "exactly one of"),
        (b'[{"n":"a","v":1,"vs":"x"}]', "exactly one of"),
        (b'[{"n":"a","v":NaN}]', "malformed"),
        (b'[{"n":"a","v":1,"n":"b"}]', "malformed"),
        (b'[{"n":"a","v":1,"foo_":1}]', "unsupported field"),
        (b'[{"n":"a","vb":1}]', "vb must be"),
        (cbor2.dumps([{0: "a", 2: cbor2.CBORTag(9999, 5)}]), "tag"),
    ],
)
def test_refusals_say_why(payload: bytes, reason: str) -> None:
    with pytest.raises(PayloadError, match=reason):
        parse_pack(payload)


def test_link_codec_limits_apply() -> None:
    pack = parse_pack(json.dumps([{"n": "x" * 300, "v": 1}]).encode())
    with pytest.raises(PayloadError, match="not a valid reading"):
        to_event(
            pack,
            seq=1,
            device="d",
            boot_id=bytes(16),
            mono_ns=0,
            received_ns=0,
            clock=ClockSource.NTP,
        )


values = st.one_of(
    st.integers(-(2**53), 2**53),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.text(max_size=20),
    st.booleans(),
    st.binary(max_size=20),
)
names = st.text(alphabet="abcdefghij:/-_", min_size=1, max_size=20)


@given(
    st.lists(st.tuples(names, st.sampled_from(["", "Cel", "V"]), values), min_size=1, max_size=8)
)
def test_event_json_round_trip(readings: list[tuple[str, str, Value]]) -> None:
    event = Event(
        1,
        "dev",
        bytes(16),
        0,
        1_700_000_000 * 10**9,
        ClockSource.NTP,
        tuple(Reading(n, u, v) for n, u, v in readings),
    )
    pack = parse_pack(event_json("gw", event))
    assert pack.readings == tuple(Reading(f"gw/dev/{n}", u, v) for n, u, v in readings)
    assert pack.time_s == 1_700_000_000


def test_seeded_fuzz_gives_pack_or_payload_error() -> None:
    seed = int(os.environ.get("FUZZ_SEED", random.SystemRandom().randrange(2**32)))
    print(f"FUZZ_SEED={seed}")
    rng = random.Random(seed)
    seeds = [str(v["json"]).encode() for v in VECTORS["vectors"]]
    seeds += [_as_cbor(str(v["json"])) for v in VECTORS["vectors"]]
    for _ in range(3000):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 6)):
            position = rng.randrange(len(data))
            data[position] = rng.randrange(256)
        with contextlib.suppress(PayloadError):
            parse_pack(bytes(data))
