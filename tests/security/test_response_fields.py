"""The API never answers with more than the caller needs: no response model in the OpenAPI
document has a field that would carry a stored secret or a personal identity number
(seed: "Verify if the application is returning more data than it is required").

The document is the running core's own, generated from the same models the routes answer
with, so a field added to any response shows up here.
"""

from __future__ import annotations

import re
from typing import Any

import httpx

from cloud.pki import client_ssl_context
from tests.support import RunningCore

#: Field names that would expose what the core stores only hashed, sealed or not at all.
FORBIDDEN = re.compile(
    r"(^|_)(password|passwd|pnr|personnummer|ssn|pin|private_key|otp_secret)$"
    r"|hash|salt|pepper|sealed",
    re.IGNORECASE,
)


def _schemas(node: Any, components: dict[str, Any], seen: set[str]) -> list[dict[str, Any]]:
    """Every object schema reachable from ``node``, following ``$ref`` once each."""
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            name = ref.rsplit("/", 1)[1]
            if name not in seen:
                seen.add(name)
                found += _schemas(components[name], components, seen)
            return found
        if "properties" in node:
            found.append(node)
        for value in node.values():
            found += _schemas(value, components, seen)
    elif isinstance(node, list):
        for item in node:
            found += _schemas(item, components, seen)
    return found


async def test_no_response_carries_a_stored_secret_or_identity_number(core: RunningCore) -> None:
    async with httpx.AsyncClient(
        base_url=core.rest_url, verify=client_ssl_context(core.home.ca_cert)
    ) as client:
        document = (await client.get("/api/v1/openapi.json")).json()
    components = document.get("components", {}).get("schemas", {})
    offending = []
    operations = 0
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            operations += 1
            for status, response in operation.get("responses", {}).items():
                for schema in _schemas(response, components, set()):
                    offending += [
                        f"{method.upper()} {path} {status}: {field}"
                        for field in schema["properties"]
                        # ``has_<x>`` flags say whether a value is set, never what it is.
                        if FORBIDDEN.search(field) and not field.startswith("has_")
                    ]
    assert operations > 20  # the whole API was read, not an empty document
    assert offending == []
