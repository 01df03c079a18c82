"""Regenerate the link-protocol test vectors (``docs/protocol.md`` §Test vectors).

Run ``python tests/vectors/protocol/make_vectors.py`` from the repository root. The JSON files
it writes are committed data: the tests read them and never call this script.

The wire form of each valid vector is built here from its JSON description by following the
specification, independently of ``protocol.codec``, and serialised with cbor2's canonical
mode. The tests then check that the codec decodes those bytes to the described message and
encodes the message back to the same bytes, so the codec and this reading of the spec must
agree. Invalid vectors are hand-built wire values or raw CBOR. This script does not touch the
network and draws no randomness: running it twice gives identical files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cbor2

from protocol import limits

HERE = Path(__file__).parent
SPEC = "docs/protocol.md"

MESSAGE_TYPES = {
    "hello": 1,
    "welcome": 2,
    "batch": 3,
    "ack": 4,
    "command": 5,
    "result": 6,
    "flow": 7,
    "subscribe": 8,
    "subscribed": 9,
    "deliver": 10,
    "error": 11,
}
CLOCKS = {"none": 0, "ntp": 1, "gps": 2, "rtc": 3}
ERROR_CODES = {
    "malformed": 1,
    "too_big": 2,
    "sequence": 3,
    "forbidden": 4,
    "unsupported": 5,
    "identity": 6,
    "internal": 7,
}
# RFC 8428 §6 integer labels; "u" is omitted from the wire when the unit is empty.
SENML = {"n": 0, "u": 1, "v": 2, "vs": 3, "vb": 4, "vd": 8}

BOOT = "8f1c2b3a4d5e6f708192a3b4c5d6e7f8"
BOOT2 = "00112233445566778899aabbccddeeff"

Json = dict[str, Any]


# --- JSON description -> wire value, written from the spec -----------------------------------


def _scalar(value: object) -> object:
    if isinstance(value, dict):
        return bytes.fromhex(value["hex"])
    return value


def _reading(desc: Json) -> dict[int, object]:
    record: dict[int, object] = {SENML["n"]: desc["n"]}
    if desc.get("u"):
        record[SENML["u"]] = desc["u"]
    for key in ("v", "vs", "vb"):
        if key in desc:
            record[SENML[key]] = desc[key]
    if "vd" in desc:
        record[SENML["vd"]] = bytes.fromhex(desc["vd"])
    return record


def _event(desc: Json) -> list[object]:
    return [
        desc["seq"],
        desc["device"],
        bytes.fromhex(desc["boot_id"]),
        desc["mono_ns"],
        desc["wall_ns"],
        CLOCKS[desc["clock"]],
        [_reading(r) for r in desc["readings"]],
    ]


def wire(desc: Json) -> list[object]:
    """The CBOR array the spec prescribes for a described message."""
    kind = desc["type"]
    head: list[object] = [MESSAGE_TYPES[kind]]
    match kind:
        case "hello":
            keys = ("version", "peer_id", "software")
            return [*head, *(desc[k] for k in keys), bytes.fromhex(desc["boot_id"]),
                    desc["resume_from"]]  # fmt: skip
        case "welcome":
            flow = desc["flow"]
            fields = ("version", "session_id", "acked_seq", "max_message_bytes",
                      "max_batch_events")  # fmt: skip
            return [*head, *(desc[k] for k in fields),
                    [flow["max_inflight_events"], flow["max_events_per_s"]]]  # fmt: skip
        case "batch":
            return [*head, [_event(e) for e in desc["events"]]]
        case "ack":
            return [*head, desc["acked_seq"]]
        case "command":
            args = {k: _scalar(v) for k, v in desc["args"].items()}
            return [*head, desc["command_id"], desc["name"], args]
        case "result":
            detail = {k: _scalar(v) for k, v in desc["detail"].items()}
            return [*head, desc["command_id"], desc["ok"], detail]
        case "flow":
            return [*head, desc["max_inflight_events"], desc["max_events_per_s"]]
        case "subscribe" | "subscribed":
            return [*head, desc["request_id"], list(desc["patterns"])]
        case "deliver":
            return [*head, [[i["gateway"], _event(i["event"])] for i in desc["items"]]]
        case "error":
            return [*head, ERROR_CODES[desc["code"]], desc["reason"], desc["request_id"]]
    raise ValueError(kind)


def dumps(value: object) -> str:
    return cbor2.dumps(value, canonical=True).hex()


# --- valid messages ---------------------------------------------------------------------------


def event(seq: int, *readings: Json, device: str = "th-1", clock: str = "ntp") -> Json:
    return {
        "seq": seq,
        "device": device,
        "boot_id": BOOT,
        "mono_ns": 12_345_678_901_234,
        "wall_ns": 1_735_689_600_123_456_789,
        "clock": clock,
        "readings": list(readings),
    }


TEMP = {"n": "temperature", "u": "Cel", "v": 21.5}
HUMIDITY = {"n": "humidity", "u": "%RH", "v": 48}

VALID: dict[str, list[tuple[str, str, Json]]] = {
    "hello": [
        (
            "hello",
            "§Hello",
            {
                "type": "hello",
                "version": 1,
                "peer_id": "gw-0001",
                "software": "assetbook-gateway/0.1.0",
                "boot_id": BOOT,
                "resume_from": 42,
            },
        ),
        (
            "hello-empty-outbox",
            "§Hello",
            {
                "type": "hello",
                "version": 1,
                "peer_id": "gw-0002",
                "software": "",
                "boot_id": BOOT2,
                "resume_from": 1,
            },
        ),
    ],
    "welcome": [
        (
            "welcome",
            "§Welcome",
            {
                "type": "welcome",
                "version": 1,
                "session_id": "s-7f3a",
                "acked_seq": 41,
                "max_message_bytes": 1_048_576,
                "max_batch_events": 2000,
                "flow": {"max_inflight_events": 20_000, "max_events_per_s": 0},
            },
        ),
    ],
    "batch": [
        ("batch-one-event", "§Batch and Ack", {"type": "batch", "events": [event(42, TEMP)]}),
        (
            "batch-value-kinds",
            "§Events and readings",
            {
                "type": "batch",
                "events": [
                    event(
                        43,
                        TEMP,
                        HUMIDITY,
                        {"n": "door", "u": "", "vb": True},
                        {"n": "firmware", "u": "", "vs": "1.4.2"},
                        {"n": "raw", "u": "", "vd": "0102feff"},
                        {"n": "lat", "u": "lat", "v": -33.8688},
                    ),
                    event(
                        45, {"n": "pressure", "u": "Pa", "v": 101325}, device="baro-2", clock="gps"
                    ),
                    event(
                        46,
                        {"n": "temperature", "u": "Cel", "v": -4.25},
                        device="th-9",
                        clock="none",
                    ),
                ],
            },
        ),
        (
            "batch-limits",
            "§Limits",
            {
                "type": "batch",
                "events": [
                    {
                        **event(
                            limits.MAX_UINT,
                            {"n": "x" * limits.MAX_TEXT_BYTES, "u": "", "v": 1},
                            device="d" * limits.MAX_TEXT_BYTES,
                            clock="rtc",
                        ),
                        "mono_ns": limits.MAX_UINT,
                        "wall_ns": -limits.MAX_UINT,
                    },
                ],
            },
        ),
    ],
    "ack": [
        ("ack", "§Batch and Ack", {"type": "ack", "acked_seq": 46}),
        ("ack-zero", "§Batch and Ack", {"type": "ack", "acked_seq": 0}),
    ],
    "command": [
        (
            "command",
            "§Commands",
            {
                "type": "command",
                "command_id": 7,
                "name": "set_interval",
                "args": {
                    "device": "th-1",
                    "seconds": 30,
                    "jitter": 0.5,
                    "persist": True,
                    "note": None,
                    "key": {"hex": "a1b2"},
                },
            },
        ),
        (
            "command-no-args",
            "§Commands",
            {"type": "command", "command_id": 8, "name": "reboot", "args": {}},
        ),
    ],
    "result": [
        (
            "result-ok",
            "§Commands",
            {"type": "result", "command_id": 7, "ok": True, "detail": {"applied_at_seq": 47}},
        ),
        (
            "result-failed",
            "§Commands",
            {
                "type": "result",
                "command_id": 8,
                "ok": False,
                "detail": {"error": "busy", "retry_after_s": -1},
            },
        ),
    ],
    "flow": [
        (
            "flow",
            "§Sessions",
            {"type": "flow", "max_inflight_events": 500, "max_events_per_s": 100},
        ),
    ],
    "subscribe": [
        (
            "subscribe",
            "§Subscriptions",
            {
                "type": "subscribe",
                "request_id": 1,
                "patterns": ["events/gw-0001/#", "events/+/gps-1"],
            },
        ),
    ],
    "subscribed": [
        (
            "subscribed",
            "§Subscriptions",
            {"type": "subscribed", "request_id": 1, "patterns": ["events/gw-0001/#"]},
        ),
    ],
    "deliver": [
        (
            "deliver",
            "§Subscriptions",
            {
                "type": "deliver",
                "items": [
                    {"gateway": "gw-0001", "event": event(42, TEMP)},
                    {"gateway": "gw-0002", "event": event(7, HUMIDITY, device="th-2")},
                ],
            },
        ),
    ],
    "error": [
        (
            "error-forbidden",
            "§Errors",
            {
                "type": "error",
                "code": "forbidden",
                "reason": "topic not permitted",
                "request_id": 2,
            },
        ),
        (
            "error-internal",
            "§Errors",
            {"type": "error", "code": "internal", "reason": "", "request_id": 0},
        ),
    ],
}


# --- invalid vectors ----------------------------------------------------------------------------


def _valid_wire(kind: str, index: int = 0) -> list[Any]:
    return wire(VALID[kind][index][2])


def _batch_with(**changes: object) -> list[Any]:
    """A one-event batch whose event fields are replaced (names as in the event array)."""
    fields = ["seq", "device", "boot_id", "mono_ns", "wall_ns", "clock", "readings"]
    message = _valid_wire("batch")
    for name, value in changes.items():
        message[1][0][fields.index(name)] = value
    return message


def _batch_reading(record: dict[Any, Any]) -> list[Any]:
    return _batch_with(readings=[record])


def _ack(value: object) -> str:
    return dumps([4, value])


def _invalid() -> dict[str, list[tuple[str, str, str, str]]]:
    """name, hex, error, why; grouped by file."""
    d, t = "DecodeError", "MessageTooBig"
    ok_ack = "8204" + "05"
    two_events = _valid_wire("batch", 1)
    backwards = [3, [two_events[1][1], two_events[1][0]]]
    repeated = [3, [two_events[1][0], two_events[1][0]]]
    hello = _valid_wire("hello")
    too_many_readings = [{0: f"r{i}", 2: i} for i in range(limits.MAX_READINGS_PER_EVENT + 1)]
    long_text = "x" * (limits.MAX_TEXT_BYTES + 1)
    # 129 two-byte characters: 129 code points but 258 UTF-8 bytes.
    long_utf8 = "\u00e9" * (limits.MAX_TEXT_BYTES // 2 + 1)
    return {
        "tags": [
            (
                "tag0-datetime-string",
                "c0" + dumps("2025-01-01T00:00:00Z"),
                d,
                "tag 0 (RFC 8949 §3.4.1) would decode to a datetime",
            ),
            ("tag1-epoch-time", "8204c11a677484c0", d, "tag 1 around the ack's seq"),
            (
                "tag2-positive-bignum",
                "8204c249010000000000000000",
                d,
                "tag 2 bignum would decode to an int over 2**64",
            ),
            ("tag2-small-bignum", "8204c24105", d, "even a bignum that fits is refused"),
            ("tag3-negative-bignum", "8204c34105", d, "tag 3 negative bignum"),
            ("tag4-decimal-fraction", "8204c482211903e8", d, "tag 4 would decode to a Decimal"),
            ("tag28-shared-value", "8204d81c05", d, "tag 28 marks a shareable value"),
            (
                "tag28-29-cycle",
                "d81c81d81d00",
                d,
                "an array that contains a reference to itself (tags 28/29): a cycle",
            ),
            (
                "tag258-set",
                "8308" + "01" + "d9010281" + dumps("a/#"),
                d,
                "tag 258 would decode to a set instead of an array",
            ),
            (
                "tag55799-self-describe",
                "d9d9f7" + ok_ack,
                d,
                "the self-describe prefix is a tag too",
            ),
            ("tag-unknown", "8204d9ffff05", d, "tag 65535, unassigned"),
            ("tag-64-bit", "8204dbffffffffffffffff05", d, "tag number 2**64-1"),
        ],
        "cbor": [
            ("empty-input", "", d, "no data item at all"),
            ("not-an-array", dumps({"type": 4}), d, "a message is an array"),
            ("empty-array", "80", d, "an array without a message type"),
            ("unknown-message-type", dumps([12, 1]), d, "type 12 is not defined"),
            ("message-type-zero", dumps([0]), d, "type 0 is not defined"),
            ("message-type-text", dumps(["ack", 5]), d, "the type is an integer"),
            ("message-type-bool", dumps([True, 5]), d, "true is not type 1"),
            ("trailing-byte", ok_ack + "00", d, "one data item per message (RFC 8949 §5.1)"),
            ("two-messages", ok_ack + ok_ack, d, "two data items in one message"),
            ("indefinite-array", "9f0405ff", d, "indefinite lengths are not accepted"),
            (
                "indefinite-text",
                "840507" + "7f63726562636f6f74ff" + "a0",
                d,
                "an indefinite-length text string (command name)",
            ),
            ("indefinite-map", "840607f5bf616101ff", d, "an indefinite-length map"),
            (
                "duplicate-map-key",
                "840507" + dumps("reboot") + "a2616101616102",
                d,
                "args with the key 'a' twice",
            ),
            ("truncated-array", "8304", d, "an array announcing 3 items with 1 present"),
            ("reserved-additional-info", "1c", d, "additional information 28 is reserved"),
            ("lone-break", "ff", d, "a break outside an indefinite item"),
            ("invalid-utf8", "840507" + "62c328" + "a0", d, "text that is not UTF-8"),
            (
                "huge-array-length",
                "9bffffffffffffffff",
                d,
                "an array claiming 2**64-1 items must not allocate",
            ),
            (
                "huge-bytes-length",
                "5bffffffffffffffff",
                d,
                "a byte string claiming 2**64-1 bytes must not allocate",
            ),
            ("too-deep", "81" * 12 + "04", d, "nesting deeper than any message"),
            ("undefined-value", "8204f7", d, "CBOR undefined where a uint is due"),
            ("simple-value", "8204e0", d, "simple value 0"),
        ],
        "ack": [
            ("ack-bool", _ack(True), d, "a boolean where an unsigned integer is due"),
            ("ack-float", _ack(5.0), d, "a float where an unsigned integer is due"),
            ("ack-negative", _ack(-1), d, "a negative seq"),
            ("ack-over-int64", _ack(2**63), d, "2**63 is over the limit of 2**63-1"),
            ("ack-uint64-max", _ack(2**64 - 1), d, "largest CBOR uint"),
            ("ack-null", _ack(None), d, "null"),
            ("ack-missing-field", dumps([4]), d, "ack has one field"),
            ("ack-extra-field", dumps([4, 5, 6]), d, "ack has one field"),
        ],
        "hello": [
            (
                "hello-boot-id-short",
                dumps([*hello[:4], bytes(15), hello[5]]),
                d,
                "boot id is 16 bytes",
            ),
            (
                "hello-boot-id-long",
                dumps([*hello[:4], bytes(17), hello[5]]),
                d,
                "boot id is 16 bytes",
            ),
            (
                "hello-boot-id-text",
                dumps([*hello[:4], BOOT, hello[5]]),
                d,
                "boot id is a byte string, not hex text",
            ),
            ("hello-empty-peer", dumps([1, 1, "", *hello[3:]]), d, "peer id must not be empty"),
            (
                "hello-peer-too-long",
                dumps([1, 1, long_text, *hello[3:]]),
                t,
                "text over MAX_TEXT_BYTES",
            ),
            (
                "hello-peer-too-long-utf8",
                dumps([1, 1, long_utf8, *hello[3:]]),
                t,
                "the limit counts UTF-8 bytes, not characters",
            ),
            ("hello-short", dumps(hello[:5]), d, "hello has five fields"),
        ],
        "welcome": [
            (
                "welcome-flow-short",
                dumps([*_valid_wire("welcome")[:6], [1]]),
                d,
                "flow has two fields",
            ),
            (
                "welcome-flow-map",
                dumps([*_valid_wire("welcome")[:6], {"a": 1}]),
                d,
                "flow is an array",
            ),
        ],
        "batch": [
            ("batch-empty", dumps([3, []]), d, "a batch has at least one event"),
            ("batch-seq-backwards", dumps(backwards), d, "seq must increase within a batch"),
            ("batch-seq-repeated", dumps(repeated), d, "seq must strictly increase"),
            ("batch-seq-bool", dumps(_batch_with(seq=True)), d, "bool where int"),
            ("batch-seq-negative", dumps(_batch_with(seq=-5)), d, "negative seq"),
            ("batch-seq-float", dumps(_batch_with(seq=42.0)), d, "float where int"),
            ("batch-seq-over-int64", dumps(_batch_with(seq=2**63)), d, "seq over 2**63-1"),
            ("batch-mono-negative", dumps(_batch_with(mono_ns=-1)), d, "mono_ns is unsigned"),
            (
                "batch-wall-over-int64",
                dumps(_batch_with(wall_ns=2**63)),
                d,
                "wall_ns within ±(2**63-1)",
            ),
            ("batch-boot-id-short", dumps(_batch_with(boot_id=bytes(8))), d, "boot id is 16 bytes"),
            ("batch-clock-unknown", dumps(_batch_with(clock=9)), d, "clock sources are 0..3"),
            ("batch-device-empty", dumps(_batch_with(device="")), d, "device id is not empty"),
            (
                "batch-device-too-long",
                dumps(_batch_with(device=long_text)),
                t,
                "text over MAX_TEXT_BYTES",
            ),
            (
                "batch-event-short",
                dumps([3, [_valid_wire("batch")[1][0][:6]]]),
                d,
                "an event has seven fields",
            ),
            (
                "batch-no-readings",
                dumps(_batch_with(readings=[])),
                d,
                "an event has at least one reading",
            ),
            (
                "batch-too-many-readings",
                dumps(_batch_with(readings=too_many_readings)),
                t,
                "over MAX_READINGS_PER_EVENT",
            ),
            (
                "reading-nan",
                dumps(_batch_reading({0: "t", 2: float("nan")})),
                d,
                "NaN is not a reading",
            ),
            (
                "reading-infinity",
                dumps(_batch_reading({0: "t", 2: float("inf")})),
                d,
                "infinity is not a reading",
            ),
            (
                "reading-negative-infinity",
                dumps(_batch_reading({0: "t", 2: float("-inf")})),
                d,
                "-infinity is not a reading",
            ),
            (
                "reading-two-values",
                dumps(_batch_reading({0: "t", 2: 1, 3: "x"})),
                d,
                "a record has exactly one value",
            ),
            (
                "reading-no-value",
                dumps(_batch_reading({0: "t", 1: "Cel"})),
                d,
                "a record has exactly one value",
            ),
            ("reading-no-name", dumps(_batch_reading({2: 1})), d, "a record has a name"),
            (
                "reading-unknown-label",
                dumps(_batch_reading({0: "t", 2: 1, 6: 0})),
                d,
                "label 6 (time) is not used: time is in the event",
            ),
            (
                "reading-text-label",
                dumps(_batch_reading({"n": "t", "v": 1})),
                d,
                "the CBOR form uses integer labels (RFC 8428 §6)",
            ),
            (
                "reading-float-label",
                dumps(_batch_reading({0.0: "t", 2: 1})),
                d,
                "label 0.0 is not label 0",
            ),
            (
                "reading-bool-label",
                dumps(_batch_reading({0: "t", True: "Cel", 2: 1})),
                d,
                "true is not label 1",
            ),
            (
                "reading-empty-unit",
                dumps(_batch_reading({0: "t", 1: "", 2: 1})),
                d,
                "no unit is written by leaving label 1 out",
            ),
            (
                "reading-value-text-as-v",
                dumps(_batch_reading({0: "t", 2: "1"})),
                d,
                "v is a number",
            ),
            ("reading-vb-int", dumps(_batch_reading({0: "t", 4: 1})), d, "vb is a boolean"),
            ("reading-vd-text", dumps(_batch_reading({0: "t", 8: "00"})), d, "vd is a byte string"),
            (
                "reading-vd-too-long",
                dumps(_batch_reading({0: "t", 8: bytes(4097)})),
                t,
                "data over MAX_BLOB_BYTES",
            ),
            (
                "reading-value-over-int64",
                dumps(_batch_reading({0: "t", 2: 2**63})),
                d,
                "an integer value within ±(2**63-1)",
            ),
            ("reading-not-a-map", dumps(_batch_with(readings=[["t", 1]])), d, "a record is a map"),
        ],
        "command": [
            ("command-args-array", dumps([5, 1, "reboot", []]), d, "args is a map"),
            ("command-args-int-key", dumps([5, 1, "reboot", {1: 2}]), d, "arg names are text"),
            (
                "command-args-nested",
                dumps([5, 1, "reboot", {"a": [1]}]),
                d,
                "arg values are scalars",
            ),
            ("command-empty-name", dumps([5, 1, "", {}]), d, "a command has a name"),
            ("command-id-negative", dumps([5, -1, "reboot", {}]), d, "ids are unsigned"),
        ],
        "result": [
            ("result-ok-int", dumps([6, 1, 1, {}]), d, "ok is a boolean"),
        ],
        "flow": [
            ("flow-negative", dumps([7, -1, 0]), d, "limits are unsigned"),
        ],
        "subscribe": [
            ("subscribe-no-patterns", dumps([8, 1, []]), d, "at least one pattern"),
            (
                "subscribe-too-many-patterns",
                dumps([8, 1, [f"t/{i}" for i in range(limits.MAX_TOPICS + 1)]]),
                t,
                "over MAX_TOPICS",
            ),
            ("subscribe-pattern-int", dumps([8, 1, [5]]), d, "patterns are text"),
        ],
        "deliver": [
            ("deliver-empty", dumps([10, []]), d, "at least one item"),
            ("deliver-item-short", dumps([10, [["gw-0001"]]]), d, "an item is gateway and event"),
        ],
        "error": [
            ("error-code-unknown", dumps([11, 99, "x", 0]), d, "error codes are 1..7"),
            ("error-short", dumps([11, 1, "x"]), d, "error has three fields"),
        ],
    }


def build() -> dict[str, list[Json]]:
    files: dict[str, list[Json]] = {}
    for kind, vectors in VALID.items():
        files[kind] = [
            {"name": name, "hex": dumps(wire(message)), "message": message,
             "source": f"{SPEC} {section}"}
            for name, section, message in vectors
        ]  # fmt: skip
    for group, invalid in _invalid().items():
        files.setdefault(group, []).extend(
            {"name": name, "hex": hex_, "error": error, "why": why}
            for name, hex_, error, why in invalid
        )
    return files


def main() -> None:
    for group, vectors in build().items():
        path = HERE / f"{group}.json"
        path.write_text(json.dumps(vectors, indent=2, ensure_ascii=False) + "\n")
        print(f"{path.name}: {len(vectors)} vectors")


if __name__ == "__main__":
    main()
