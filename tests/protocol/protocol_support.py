"""Shared helpers for the link-protocol tests: vector loading and hypothesis strategies.

``message_from_json`` rebuilds a :mod:`protocol.messages` value from the JSON description in
a vector file (the format is documented in ``docs/protocol.md`` §Test vectors). Nothing here
encodes or decodes: the tests compare the codec against these independent descriptions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from protocol import limits
from protocol.events import ClockSource, Event, Reading, Value
from protocol.messages import (
    Ack,
    Batch,
    Command,
    Deliver,
    Delivered,
    Error,
    ErrorCode,
    Flow,
    Hello,
    Message,
    Result,
    Scalar,
    Subscribe,
    Subscribed,
    Welcome,
)

REPO = Path(__file__).resolve().parents[2]
VECTOR_DIR = REPO / "tests" / "vectors" / "protocol"
SPEC = REPO / "docs" / "protocol.md"

Json = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Vector:
    """One entry of a vector file; ``message`` for valid vectors, ``error`` for invalid ones."""

    file: str
    name: str
    data: bytes
    message: Json | None
    error: str | None

    @property
    def id(self) -> str:
        return f"{self.file}:{self.name}"


def load_vectors() -> list[Vector]:
    vectors = []
    for path in sorted(VECTOR_DIR.glob("*.json")):
        for entry in json.loads(path.read_text()):
            vectors.append(
                Vector(
                    path.stem,
                    entry["name"],
                    bytes.fromhex(entry["hex"]),
                    entry.get("message"),
                    entry.get("error"),
                )
            )
    return vectors


ALL_VECTORS = load_vectors()
VALID = [v for v in ALL_VECTORS if v.message is not None]
INVALID = [v for v in ALL_VECTORS if v.error is not None]


# --- JSON description -> message ------------------------------------------------------------


def _scalar(value: Any) -> Scalar:
    if isinstance(value, dict):
        return bytes.fromhex(value["hex"])
    assert value is None or isinstance(value, str | int | float | bool)
    return value


def _reading(desc: Json) -> Reading:
    value: Value
    if "v" in desc:
        value = desc["v"]
    elif "vs" in desc:
        value = desc["vs"]
    elif "vb" in desc:
        value = desc["vb"]
    else:
        value = bytes.fromhex(desc["vd"])
    return Reading(desc["n"], desc.get("u", ""), value)


def event_from_json(desc: Json) -> Event:
    return Event(
        seq=desc["seq"],
        device=desc["device"],
        boot_id=bytes.fromhex(desc["boot_id"]),
        mono_ns=desc["mono_ns"],
        wall_ns=desc["wall_ns"],
        clock=ClockSource[desc["clock"].upper()],
        readings=tuple(_reading(r) for r in desc["readings"]),
    )


def _flow(desc: Json) -> Flow:
    return Flow(desc["max_inflight_events"], desc["max_events_per_s"])


def message_from_json(desc: Json) -> Message:
    match desc["type"]:
        case "hello":
            return Hello(
                desc["version"],
                desc["peer_id"],
                desc["software"],
                bytes.fromhex(desc["boot_id"]),
                desc["resume_from"],
            )
        case "welcome":
            return Welcome(
                desc["version"],
                desc["session_id"],
                desc["acked_seq"],
                desc["max_message_bytes"],
                desc["max_batch_events"],
                _flow(desc["flow"]),
            )
        case "batch":
            return Batch(tuple(event_from_json(e) for e in desc["events"]))
        case "ack":
            return Ack(desc["acked_seq"])
        case "command":
            args = {k: _scalar(v) for k, v in desc["args"].items()}
            return Command(desc["command_id"], desc["name"], args)
        case "result":
            detail = {k: _scalar(v) for k, v in desc["detail"].items()}
            return Result(desc["command_id"], desc["ok"], detail)
        case "flow":
            return _flow(desc)
        case "subscribe":
            return Subscribe(desc["request_id"], tuple(desc["patterns"]))
        case "subscribed":
            return Subscribed(desc["request_id"], tuple(desc["patterns"]))
        case "deliver":
            items = (Delivered(i["gateway"], event_from_json(i["event"])) for i in desc["items"])
            return Deliver(tuple(items))
        case "error":
            return Error(ErrorCode[desc["code"].upper()], desc["reason"], desc["request_id"])
    raise AssertionError(f"unknown vector type {desc['type']}")


# --- hypothesis strategies (values within the protocol's limits) ----------------------------

uints = st.integers(min_value=0, max_value=limits.MAX_UINT)
ints = st.integers(min_value=-limits.MAX_UINT, max_value=limits.MAX_UINT)
# Surrogates cannot be encoded as UTF-8, so they are not text on the wire.
_chars = st.characters(codec="utf-8")
# max_size counts code points; the byte limit is checked by filtering (4 bytes at most each).
texts = st.text(_chars, max_size=limits.MAX_TEXT_BYTES // 4)
names = st.text(_chars, min_size=1, max_size=limits.MAX_TEXT_BYTES // 4)
long_ascii = st.text(st.characters(max_codepoint=127), min_size=1, max_size=limits.MAX_TEXT_BYTES)
finite = st.floats(allow_nan=False, allow_infinity=False)
blobs = st.binary(max_size=64) | st.binary(min_size=limits.MAX_BLOB_BYTES, max_size=4096)
boot_ids = st.binary(min_size=limits.BOOT_ID_BYTES, max_size=limits.BOOT_ID_BYTES)

values: st.SearchStrategy[Value] = st.one_of(ints, finite, texts, st.booleans(), blobs)
readings = st.builds(Reading, name=names | long_ascii, unit=texts, value=values)


@st.composite
def events(draw: st.DrawFn, seq: int | None = None) -> Event:
    return Event(
        seq=draw(uints) if seq is None else seq,
        device=draw(names),
        boot_id=draw(boot_ids),
        mono_ns=draw(uints),
        wall_ns=draw(ints),
        clock=draw(st.sampled_from(ClockSource)),
        readings=tuple(draw(st.lists(readings, min_size=1, max_size=8))),
    )


@st.composite
def event_runs(draw: st.DrawFn, max_size: int = 6) -> tuple[Event, ...]:
    """Events with strictly increasing seq, as a batch requires."""
    seqs = draw(st.lists(uints, min_size=1, max_size=max_size, unique=True))
    return tuple(draw(events(seq)) for seq in sorted(seqs))


scalars: st.SearchStrategy[Scalar] = st.one_of(
    st.none(), st.booleans(), ints, finite, texts, st.binary(max_size=32)
)
scalar_maps = st.dictionaries(names, scalars, max_size=8)
patterns = st.lists(names, min_size=1, max_size=limits.MAX_TOPICS).map(tuple)
flows = st.builds(Flow, uints, uints)

messages: st.SearchStrategy[Message] = st.one_of(
    st.builds(Hello, uints, names, texts, boot_ids, uints),
    st.builds(Welcome, uints, names, uints, uints, uints, flows),
    event_runs().map(Batch),
    st.builds(Ack, uints),
    st.builds(Command, uints, names, scalar_maps),
    st.builds(Result, uints, st.booleans(), scalar_maps),
    flows,
    st.builds(Subscribe, uints, patterns),
    st.builds(Subscribed, uints, patterns),
    st.lists(st.builds(Delivered, names, events()), min_size=1, max_size=4).map(
        lambda items: Deliver(tuple(items))
    ),
    st.builds(Error, st.sampled_from(ErrorCode), texts, uints),
)
