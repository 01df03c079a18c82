"""The CDDL in ``docs/protocol.md`` against the vectors, so the spec and the code cannot drift.

Every valid vector must match the rule for its message type; every invalid vector must be
refused by that rule (or, for encoding-level vectors, by every message rule), except the
listed ones whose defect CDDL does not express or the validator does not check. Each rule is
validated on its own because the validator mishandles choices between array types.
"""

from __future__ import annotations

import re

import pytest

from protocol.messages import MessageType
from tests.protocol.protocol_support import INVALID, SPEC, VALID, Vector

pycddl = pytest.importorskip("pycddl")

RULES = [t.name.lower() for t in MessageType]

# Not refused by the CDDL, with the reason; the codec refuses all of them (test_protocol_vectors).
PROSE_ONLY = {
    # CDDL constrains values, not their encoding (RFC 8610 §1): §Encoding is prose.
    "trailing-byte": "encoding rule",
    "two-messages": "encoding rule",
    "indefinite-array": "encoding rule",
    "indefinite-text": "encoding rule",
    "indefinite-map": "encoding rule",
    "duplicate-map-key": "encoding rule",
    "tag2-small-bignum": "validator treats a bignum as an integer",
    # Ordering and float classes are outside CDDL.
    "batch-seq-backwards": "ordering",
    "batch-seq-repeated": "ordering",
    "reading-nan": "finite floats",
    "reading-infinity": "finite floats",
    "reading-negative-infinity": "finite floats",
    # Negative ranges and .size on map keys are not supported by the validator, so the
    # CDDL writes int and tstr there and the prose gives the bounds.
    "batch-wall-over-int64": "int63 bound",
    "reading-value-over-int64": "int63 bound",
    # The validator accepts any member for a group choice inside a map.
    "reading-two-values": "validator",
    "reading-unknown-label": "validator",
    "reading-bool-label": "validator",
    "reading-value-text-as-v": "validator",
    "reading-vb-int": "validator",
    "reading-vd-text": "validator",
    "reading-vd-too-long": "validator",
    # The validator accepts these although the CDDL excludes them.
    "command-args-array": "validator",
    "command-args-nested": "validator",
    "subscribe-pattern-int": "validator",
}


def _spec_cddl() -> str:
    blocks = re.findall(r"```cddl\n(.*?)```", SPEC.read_text(), flags=re.DOTALL)
    assert len(blocks) == 1, "docs/protocol.md has exactly one cddl block"
    return str(blocks[0])


CDDL = _spec_cddl()
SCHEMAS = {rule: pycddl.Schema(f"root = {rule}\n{CDDL}") for rule in RULES}


def _matches(rule: str, data: bytes) -> bool:
    try:
        SCHEMAS[rule].validate_cbor(data)
    except pycddl.ValidationError:
        return False
    return True


def test_spec_defines_every_message_type() -> None:
    for rule in RULES:
        assert re.search(rf"^{rule} = \[{MessageType[rule.upper()].value},", CDDL, re.M), rule


@pytest.mark.parametrize("vector", VALID, ids=lambda v: v.id)
def test_valid_vector_matches_spec(vector: Vector) -> None:
    assert vector.message is not None
    assert _matches(str(vector.message["type"]), vector.data)


@pytest.mark.parametrize(
    "vector", [v for v in INVALID if v.name not in PROSE_ONLY], ids=lambda v: v.id
)
def test_invalid_vector_refused_by_spec(vector: Vector) -> None:
    rules = [vector.file] if vector.file in SCHEMAS else RULES
    assert not [rule for rule in rules if _matches(rule, vector.data)]


def test_prose_only_list_names_real_vectors() -> None:
    assert set(PROSE_ONLY) <= {v.name for v in INVALID}
