"""The decoder refuses every CBOR tag number, 0 to 2**64 - 1, wherever the tag appears.

The refusal comes from a semantic_decoders mapping that answers every key (no table), so
these tests draw tag numbers from the whole range, including the ones cbor2 decodes by
itself (datetimes, bignums, shared references, sets, the self-describe tag 55799).
"""

from __future__ import annotations

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import codec
from protocol.errors import DecodeError
from protocol.messages import Ack

_TAG_NUMBERS = st.one_of(
    st.sampled_from([0, 1, 2, 3, 4, 5, 24, 25, 28, 29, 30, 35, 36, 256, 258, 260, 55799]),
    st.integers(min_value=0, max_value=65535),
    st.integers(min_value=65536, max_value=2**64 - 1),
)
_CONTENTS = st.one_of(
    st.integers(min_value=0, max_value=2**64 - 1),
    st.binary(max_size=16),
    st.text(max_size=16),
    st.lists(st.integers(min_value=0, max_value=255), max_size=4),
)


def _ack(seq_item: bytes) -> bytes:
    # [4, acked_seq]: an Ack around the given encoded item (tags.json uses the same frame).
    return b"\x82\x04" + seq_item


def test_frame_without_tag_decodes() -> None:
    # The frame the tagged tests use is valid, so their refusal comes from the tag alone.
    assert codec.decode(_ack(cbor2.dumps(5))) == Ack(acked_seq=5)


@given(tag=_TAG_NUMBERS, content=_CONTENTS)
def test_tag_inside_a_message_is_refused(tag: int, content: object) -> None:
    with pytest.raises(DecodeError, match="malformed CBOR"):
        codec.decode(_ack(cbor2.dumps(cbor2.CBORTag(tag, content))))


@given(tag=_TAG_NUMBERS)
def test_tag_around_a_whole_message_is_refused(tag: int) -> None:
    with pytest.raises(DecodeError, match="malformed CBOR"):
        codec.decode(cbor2.dumps(cbor2.CBORTag(tag, [4, 5])))
