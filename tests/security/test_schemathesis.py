"""Schemathesis against the core's OpenAPI document, over HTTPS, with no server errors.

The core runs in this test's Trio run (``core_home`` + ``serve_core``) and the
``schemathesis`` command line runs as a child process against
``https://localhost:<port>/api/v1/openapi.json``, trusting the core's CA. The real
process boundary is on purpose: the suite's requests go through Hypercorn, TLS, the
rate limiter and the access-log layer exactly as a client's would, and Schemathesis'
requests-based engine stays out of the Trio run. (Schemathesis 4 can also call an
ASGI app in process, but it drives it through Starlette's TestClient on asyncio,
while the core's app runs on Trio.)

Checks: Schemathesis' defaults (including ``ignored_auth``, which resends requests
without the token and expects a refusal) except ``positive_data_acceptance`` (see
``_config``). Authentication: a platform admin's access token on every request; an API
token with ``mqtt:admin``/``fleet:*`` for the MQTT and fleet routes; a viewer's session
for logout and password change, so they do not end the admin's. The enrolment and bundle
routes need DPoP proofs and are exercised only up to their refusal. The pass condition
is a clean Schemathesis exit, every operation of the document tested, and no request in
the core's access log answered with a 5xx (503 only where no MQTT broker is set up).

Not done here: the stateful (link-following) phase; each operation is fuzzed alone.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import tomli_w
import trio

from cloud.home import CoreHome
from cloud.identity.roles import Role
from cloud.identity.runtime import Identity
from tests.security.conftest import add_user, client, tokens
from tests.security.surface import running

#: Test cases per operation and phase: enough to reach every field's edge cases
#: (Schemathesis' coverage phase is deterministic and runs whole regardless) while
#: keeping the run near 30 s on a 2-core machine.
MAX_EXAMPLES = 8
ADMIN = "sch-admin@example.test"
ANSWERS = ["2xx", "3xx", "4xx"]  # not server errors (the check's default)
DESTRUCTIVE = (
    "DELETE /api/v1/api-tokens/{jti}",
    "POST /api/v1/users/{user_id}/disable",
    "PUT /api/v1/users/{user_id}/role",
)
SPARE = "sch-spare@example.test"  # the session that logout and password change end


def _limits_off(home: CoreHome) -> None:
    # The per-address and per-token buckets would answer most of the run with 429; that
    # path has its own tests (test_http_surface.py), here every request should reach a route.
    data = tomllib.loads(home.config_path.read_text())
    data["http"] = {
        "rate_per_address": 100_000,
        "burst_per_address": 100_000,
        "rate_per_token": 100_000,
        "burst_per_token": 100_000,
    }
    home.config_path.write_text(tomli_w.dumps(data))


def _config(admin: str, throwaway: str, devices: str, seed: int, junit: Path) -> dict[str, Any]:
    """``schemathesis.toml`` for the run (Schemathesis 4 configuration reference)."""
    return {
        "seed": seed,
        # One worker: with two, Schemathesis' threads hit a CPython 3.11 compile race
        # ("SystemError: AST constructor recursion depth mismatch") in its own code.
        "workers": 1,
        "color": False,
        "headers": {"Authorization": f"Bearer {admin}"},
        "generation": {"max-examples": MAX_EXAMPLES, "database": "none"},
        "phases": {"stateful": {"enabled": False}},
        "checks": {
            # Schema-valid is not always valid here, by design: an opaque cursor must be one
            # the core signed, and JSON keys shaped like query operators are refused
            # (docs/security.md, "Query-operator shapes"). Every other default check runs.
            "positive_data_acceptance": {"enabled": False},
        },
        "reports": {"junit": {"enabled": True, "path": str(junit)}},
        "operations": [
            # Logging out or changing the password ends a session: a session of its own
            # keeps the admin's token valid for the rest of the run.
            {"include-path": path, "headers": {"Authorization": f"Bearer {throwaway}"}}
            for path in ("/api/v1/auth/logout", "/api/v1/auth/password")
        ]
        + [
            # MQTT credentials and the fleet are managed with API tokens, not by user roles.
            {
                "include-path-regex": "^/api/v1/fleet/",
                "headers": {"Authorization": f"Bearer {devices}"},
            },
            {
                "include-path-regex": "^/api/v1/mqtt/",
                "headers": {"Authorization": f"Bearer {devices}"},
                # No broker is set up in this home: the documented answer is 503.
                "checks": {"not_a_server_error": {"expected-statuses": [*ANSWERS, "503"]}},
            },
        ]
        + [
            # Ids taken from earlier answers would let these revoke the run's own tokens
            # (the admin's user, the API token above): here they get generated ids only.
            {
                "include-name": name,
                "phases": {
                    phase: {"extra-data-sources": {"responses": False}}
                    for phase in ("examples", "coverage", "fuzzing")
                },
            }
            for name in DESTRUCTIVE
        ]
        + [
            # ``GET /users/lookup`` is ``GET /users/{user_id}`` for a user named "lookup"
            # (an answer, not a 405): the two path templates overlap.
            {
                "include-name": "POST /api/v1/users/lookup",
                "checks": {"unsupported_method": {"enabled": False}},
            }
        ],
    }


def _operations(document: dict[str, Any]) -> set[str]:
    return {f"{method.upper()} {path}" for path, ops in document["paths"].items() for method in ops}


async def test_no_server_errors(core_home: CoreHome, identity: Identity, tmp_path: Path) -> None:
    seed = int(os.environ.get("FUZZ_SEED", secrets.randbelow(2**32)))
    print(f"schemathesis seed {seed} (FUZZ_SEED={seed} to repeat)")
    add_user(identity, ADMIN, Role.PLATFORM_ADMIN)
    add_user(identity, SPARE, Role.VIEWER)
    _limits_off(core_home)
    junit = tmp_path / "junit.xml"
    config = tmp_path / "schemathesis.toml"
    async with running(core_home) as core:
        async with client(core) as http:
            admin = (await tokens(http, ADMIN))["access_token"]
            spare = (await tokens(http, SPARE))["access_token"]
            document = (await http.get("/api/v1/openapi.json")).json()
        devices = core.api_token(("mqtt:admin", "fleet:read", "fleet:write"))
        config.write_text(tomli_w.dumps(_config(admin, spare, devices, seed, junit)))
        result = await trio.run_process(
            [
                *(sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "run"),
                *("--tls-verify", str(core_home.ca_cert), f"{core.rest_url}/api/v1/openapi.json"),
            ],
            capture_stdout=True,
            stderr=subprocess.STDOUT,
            check=False,
            cwd=tmp_path,
        )
    output = result.stdout.decode(errors="replace")
    print(output)
    assert result.returncode == 0, "schemathesis found failures (output above)"
    # Every operation of the document was run, with no failure or error recorded.
    cases = ElementTree.parse(junit).getroot().iter("testcase")
    tested = {case.get("name") for case in cases if case.find("skipped") is None}
    assert tested == _operations(document)
    # And from the core's side: no request of the run ended in 500 (a crash), and 503 only
    # where no broker is set up. Split on "\n", not splitlines(): fuzzed paths hold U+2028.
    log = (core_home.logs_dir / "access.jsonl").read_text().split("\n")[:-1]
    requests = [r for r in map(json.loads, log) if r["event"] == "http.request"]
    assert len(requests) > 10 * len(tested)
    failed = {(r["path"], r["status"], r.get("error")) for r in requests if r["status"] >= 500}
    assert all(s == 503 and p.startswith("/api/v1/mqtt/") for p, s, _ in failed), failed
