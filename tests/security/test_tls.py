"""TLS configuration checked with sslyze (checklist item 57): on the link and REST ports only
TLS 1.2 and 1.3 are accepted, and only AEAD cipher suites. sslyze runs as its own program
(it pins a cryptography release older than the one the product needs), so it is found on
PATH like mosquitto: skipped locally when absent, a failure under CI."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import trio

from tests.support import RunningCore, require_program

pytestmark = pytest.mark.slow

AEAD = re.compile(r"(GCM|CHACHA20|CCM)")


async def test_only_tls12_and_13_with_aead_suites(core: RunningCore, tmp_path: Path) -> None:
    sslyze = require_program("sslyze")
    targets = [core.rest_url.split("//")[1], core.link_url.split("//")[1].split("/")[0]]
    out = tmp_path / "sslyze.json"
    await trio.run_process(
        [
            sslyze,
            "--json_out",
            str(out),
            "--sslv2",
            "--sslv3",
            "--tlsv1",
            "--tlsv1_1",
            "--tlsv1_2",
            "--tlsv1_3",
            *targets,
        ],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    report = json.loads(out.read_text())
    results = report["server_scan_results"]
    assert len(results) == 2
    for server in results:
        assert server["scan_status"] == "COMPLETED", server
        scans = server["scan_result"]
        for old in ("ssl_2_0", "ssl_3_0", "tls_1_0", "tls_1_1"):
            assert scans[f"{old}_cipher_suites"]["result"]["accepted_cipher_suites"] == []
        accepted = [
            suite["cipher_suite"]["name"]
            for version in ("tls_1_2", "tls_1_3")
            for suite in scans[f"{version}_cipher_suites"]["result"]["accepted_cipher_suites"]
        ]
        assert scans["tls_1_3_cipher_suites"]["result"]["accepted_cipher_suites"]
        assert accepted
        assert [name for name in accepted if not AEAD.search(name)] == []
