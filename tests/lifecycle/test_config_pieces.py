"""Configurations larger than one command argument travel in pieces through the real codec."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from cloud.fleet.agent import config_chunks
from cloud.fleet.store import MAX_CONFIG_BYTES
from gateway.remote_config import _joined_chunks, fit
from protocol import codec
from protocol.limits import MAX_TEXT_BYTES
from protocol.messages import Command


@settings(max_examples=10, deadline=None)
@given(st.binary(max_size=MAX_CONFIG_BYTES))
def test_pieces_survive_the_wire_and_join_to_the_original(data: bytes) -> None:
    args = {"version": 3, **config_chunks(data)}
    decoded = codec.decode(codec.encode(Command(7, "configure", args)))
    assert isinstance(decoded, Command)
    assert _joined_chunks(decoded.args) == (data or None)


def test_the_largest_allowed_configuration_fits_one_command() -> None:
    document = {"sensors": [{"kind": "x", "name": "s", "pad": "y" * (MAX_CONFIG_BYTES - 100)}]}
    data = json.dumps(document).encode()[:MAX_CONFIG_BYTES]
    codec.encode(Command(1, "configure", {"version": 1, **config_chunks(data)}))


@given(st.text(max_size=400))
def test_fitted_text_is_a_valid_prefix_within_the_limit(text: str) -> None:
    fitted = fit(text)
    assert len(fitted.encode("utf-8")) <= MAX_TEXT_BYTES
    assert text.startswith(fitted)
