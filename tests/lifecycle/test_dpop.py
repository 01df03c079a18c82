"""DPoP proofs (RFC 9449) and JWK thumbprints (RFC 7638): vectors, checks, replay, fuzz."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import random
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from hypothesis import given
from hypothesis import strategies as st

from cloud.fleet.dpop import (
    MAX_AGE_S,
    ProofError,
    ReplayCache,
    make_proof,
    public_jwk,
    thumbprint,
    verify_proof,
)

VECTORS = Path(__file__).parent.parent / "vectors" / "dpop"
URL = "wss://core.example:8444/link"
NOW = 1_700_000_000


class Signer:
    def __init__(self, key: ed25519.Ed25519PrivateKey | None = None) -> None:
        self.key = key or ed25519.Ed25519PrivateKey.generate()

    def public_jwk(self) -> dict[str, str]:
        return public_jwk(self.key.public_key())

    def sign(self, data: bytes) -> bytes:
        return self.key.sign(data)


def proof(signer: Signer, jti: str = "jti-00000001", **overrides: object) -> str:
    args: dict[str, object] = {"method": "GET", "url": URL, "now": NOW, "jti": jti}
    args.update(overrides)
    return make_proof(signer, **args)  # type: ignore[arg-type]


def test_thumbprint_matches_rfc8037_appendix_a3() -> None:
    vector = json.loads((VECTORS / "rfc8037-a3.json").read_text())
    d = base64.urlsafe_b64decode(vector["jwk"]["d"] + "=")
    key = ed25519.Ed25519PrivateKey.from_private_bytes(d)
    assert public_jwk(key.public_key())["x"] == vector["jwk"]["x"]
    assert thumbprint(vector["jwk"]) == vector["thumbprint"]


def test_a_fresh_proof_verifies_and_names_its_key() -> None:
    signer = Signer()
    jkt = verify_proof(
        proof(signer, token="tok"),
        method="GET",
        url=URL,
        now=NOW,
        replay=ReplayCache(),
        token="tok",
    )
    assert jkt == thumbprint(signer.public_jwk())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"method": "POST"}, "htm"),
        ({"url": "wss://other.example:8444/link"}, "htu"),
        ({"now": NOW - MAX_AGE_S - 1}, "too old"),
        ({"now": NOW + 60}, "too old or from the future"),
        ({"token": "another-token"}, "not bound"),
    ],
)
def test_a_proof_for_another_request_is_refused(change: dict[str, object], message: str) -> None:
    made = proof(Signer(), **{**change, "token": change.get("token", "tok")})  # type: ignore[arg-type]
    with pytest.raises(ProofError, match=message):
        verify_proof(made, method="GET", url=URL, now=NOW, replay=ReplayCache(), token="tok")


def test_a_replayed_proof_is_refused() -> None:
    signer, cache = Signer(), ReplayCache()
    made = proof(signer)
    verify_proof(made, method="GET", url=URL, now=NOW, replay=cache)
    with pytest.raises(ProofError, match="replayed"):
        verify_proof(made, method="GET", url=URL, now=NOW + 1, replay=cache)


def test_a_proof_with_a_swapped_key_does_not_verify() -> None:
    real, other = Signer(), Signer()
    _header, claims, signature = proof(real).split(".")
    forged_header = json.dumps({"typ": "dpop+jwt", "alg": "EdDSA", "jwk": other.public_jwk()})
    encoded = base64.urlsafe_b64encode(forged_header.encode()).rstrip(b"=").decode()
    with pytest.raises(ProofError, match="signature"):
        verify_proof(
            f"{encoded}.{claims}.{signature}", method="GET", url=URL, now=NOW, replay=ReplayCache()
        )


def test_a_private_key_in_the_header_is_refused() -> None:
    signer = Signer()
    leaky = Signer(signer.key)
    leaky.public_jwk = lambda: {**signer.public_jwk(), "d": "secret"}  # type: ignore[method-assign]
    with pytest.raises(ProofError, match="private"):
        verify_proof(proof(leaky), method="GET", url=URL, now=NOW, replay=ReplayCache())


@given(st.text(max_size=300))
def test_any_text_gives_a_key_or_our_error(text: str) -> None:
    with contextlib.suppress(ProofError):
        verify_proof(text, method="GET", url=URL, now=NOW, replay=ReplayCache())


def test_seeded_mutations_of_a_valid_proof_never_escape() -> None:
    seed = int(os.environ.get("FUZZ_SEED", random.randrange(2**32)))
    print(f"FUZZ_SEED={seed}")
    rng = random.Random(seed)
    valid = proof(Signer())
    for _ in range(300):
        chars = list(valid)
        for _ in range(rng.randint(1, 4)):
            chars[rng.randrange(len(chars))] = rng.choice("AbZ09-_.=")
        mutated = "".join(chars)
        try:
            verify_proof(mutated, method="GET", url=URL, now=NOW, replay=ReplayCache())
        except ProofError:
            continue
        # Accepted only if the mutation left the decoded bytes equal (spare base64 bits).
        assert decoded(mutated) == decoded(valid), mutated


def decoded(compact: str) -> list[bytes]:
    return [base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)) for part in compact.split(".")]
