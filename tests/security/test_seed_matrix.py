"""docs/security.md's "seed item → test → status" table cannot rot: every test file and test
function it names exists, and every seed penetration-test case has a row."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "security.md"
#: The seed's penetration-test cases, in its words (abridged to a distinctive phrase).
SEED_CASES = (
    "session ends upon log off",
    "stored in readable files",
    "format string",
    "error pages",
    "directory browsing",
    "HTTPS",
    "password",
    "validation",
    "NoSQL",
    "DoS",
    "Brute",
    "open ports",
    "secured connection",
    "more data than required",
    "cookies",
    "locked",
    "URL manipulation",
    "generic",
    "special characters",
    "reset",
    "script injection",
    "XSS",
    "buffer overflow",
)
_REFERENCE = re.compile(r"`((?:[a-z_]+/)*test_[a-z0-9_]+\.py)(?:::([A-Za-z0-9_]+))?")


def seed_rows() -> list[str]:
    text = DOC.read_text()
    table = text[text.index("## Seed items → tests → status") :]
    table = table[: table.index("\n## ", 5)]
    return [line for line in table.splitlines() if line.startswith("| ") and "---" not in line][1:]


def _resolve(path: str) -> Path | None:
    """``path`` under tests/, or a bare file name found exactly once below it."""
    direct = ROOT / "tests" / path
    if direct.exists():
        return direct
    found = list((ROOT / "tests").rglob(path)) if "/" not in path else []
    return found[0] if len(found) == 1 else None


def test_every_referenced_test_exists() -> None:
    rows = seed_rows()
    assert rows, "the table is missing"
    missing = []
    for row in rows:
        for path, name in _REFERENCE.findall(row):
            file = _resolve(path)
            if file is None:
                missing.append(path)
                continue
            if name:
                tree = ast.parse(file.read_text())
                names = {
                    node.name
                    for node in ast.walk(tree)
                    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
                }
                if name not in names:
                    missing.append(f"{path}::{name}")
    assert missing == []


def test_every_seed_case_has_a_row_with_a_status() -> None:
    rows = seed_rows()
    for case in SEED_CASES:
        matching = [r for r in rows if case.lower() in r.split("|")[1].lower()]
        assert matching, f"no row for the seed case {case!r}"
        for row in matching:
            status = row.rstrip(" |").rsplit("|", 1)[1].strip()
            assert status, f"row without a status: {row}"
