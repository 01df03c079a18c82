"""The access log is tamper-evident: an HMAC-SHA-256 chain that ``assetbook access-log verify``
checks, through rotation, and across processes writing the same file."""

from __future__ import annotations

import itertools
import json
import os
import secrets
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from assetbook.cli import main
from cloud import auditchain
from cloud.accesslog import AccessLog, load_chain_key, open_access_log, verify_log
from cloud.auditchain import GENESIS, ChainBroken, ChainHead
from cloud.home import CoreHome

KEY = bytes(range(32))


def _write(home: CoreHome, count: int) -> None:
    with open_access_log(home) as log:
        for n in range(count):
            log.record("http.request", n=n, path=f"/api/v1/x/{n}")


def _verify(home: CoreHome, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    status = main(["access-log", "verify", "--home", str(home.root)])
    return status, capsys.readouterr().out


def test_an_intact_log_verifies(core_home: CoreHome, capsys: pytest.CaptureFixture[str]) -> None:
    _write(core_home, 5)
    status, out = _verify(core_home, capsys)
    assert status == 0
    assert "5 records" in out
    lines = [json.loads(line) for line in core_home.access_log.read_text().splitlines()]
    assert [r["seq"] for r in lines] == [1, 2, 3, 4, 5]
    assert lines[0]["prev"] == GENESIS
    assert all(b["prev"] == a["mac"] for a, b in itertools.pairwise(lines))
    key_file = core_home.keys_dir / "access-log.key"
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    assert key_file.read_text().strip() not in core_home.access_log.read_text()


@pytest.mark.parametrize("tamper", ["edit", "delete", "insert", "swap", "cut_tail"])
def test_any_change_is_reported_with_its_line(
    core_home: CoreHome, capsys: pytest.CaptureFixture[str], tamper: str
) -> None:
    _write(core_home, 6)
    lines = core_home.access_log.read_bytes().splitlines(keepends=True)
    if tamper == "edit":
        lines[2] = lines[2].replace(b"/api/v1/x/2", b"/api/v1/x/9")
    elif tamper == "delete":
        del lines[2]
    elif tamper == "insert":
        lines.insert(2, lines[1])
    elif tamper == "swap":
        lines[2], lines[3] = lines[3], lines[2]
    else:
        del lines[-2:]
    core_home.access_log.write_bytes(b"".join(lines))
    status, out = _verify(core_home, capsys)
    assert status == 1
    expected = "access.jsonl.head" if tamper == "cut_tail" else "access.jsonl:3"
    assert f"BROKEN at {expected}" in out


def test_rotation_by_rename_keeps_one_chain(
    core_home: CoreHome, capsys: pytest.CaptureFixture[str]
) -> None:
    with open_access_log(core_home) as log:
        log.record("a")
        os.rename(core_home.access_log, core_home.logs_dir / "access.jsonl.2")
        log.record("b")  # reopens a new file at the path
        os.rename(core_home.access_log, core_home.logs_dir / "access.jsonl.1")
        log.record("c")
    status, out = _verify(core_home, capsys)
    assert (status, "3 records" in out) == (0, True)
    # Removing the middle file breaks the chain where the next file begins.
    (core_home.logs_dir / "access.jsonl.1").unlink()
    status, out = _verify(core_home, capsys)
    assert status == 1
    assert "access.jsonl:1" in out


def test_two_writers_on_one_file_keep_one_chain(core_home: CoreHome) -> None:
    # The core and a CLI command append to the same log from separate processes.
    with open_access_log(core_home) as core, open_access_log(core_home) as cli:
        for n in range(10):
            (core if n % 3 else cli).record("step", n=n)
    report = verify_log(core_home.access_log, load_chain_key(core_home))
    assert (report.records, report.last.seq) == (10, 10)


def test_an_old_unchained_log_is_set_aside(core_home: CoreHome) -> None:
    with AccessLog(core_home.access_log) as old:
        old.record("from.an.older.version")
    _write(core_home, 1)
    aside = list(core_home.logs_dir.glob("access-unchained-*.jsonl"))
    assert len(aside) == 1
    assert "from.an.older.version" in aside[0].read_text()
    assert verify_log(core_home.access_log, load_chain_key(core_home)).records == 2


def test_verify_needs_the_key_from_outside_the_log(
    core_home: CoreHome, capsys: pytest.CaptureFixture[str]
) -> None:
    _write(core_home, 2)
    # Someone who rewrites the log without the key cannot make a chain that verifies.
    forged, _ = auditchain.seal(secrets.token_bytes(32), b'{"event":"x"}', ChainHead(2, "0" * 64))
    with core_home.access_log.open("ab") as stream:
        stream.write(forged)
    status, out = _verify(core_home, capsys)
    assert status == 1
    assert "access.jsonl:3" in out


records = st.dictionaries(
    st.text(min_size=1, max_size=8).filter(lambda k: k not in ("seq", "prev", "mac")),
    st.one_of(st.text(max_size=20), st.integers(), st.booleans(), st.none()),
    max_size=5,
)


@given(st.lists(records, max_size=8))
def test_seal_then_check_round_trips(items: list[dict[str, object]]) -> None:
    head = ChainHead(0, GENESIS)
    lines = []
    for item in items:
        body = json.dumps(item, separators=(",", ":"), ensure_ascii=False).encode()
        line, head = auditchain.seal(KEY, body, head)
        assert json.loads(line)["seq"] == head.seq
        lines.append((f"l{head.seq}", line))
    report = auditchain.check_lines(KEY, lines)
    assert (report.records, report.last) == (len(items), head)


def test_every_truncation_of_a_line_is_refused() -> None:
    line, _ = auditchain.seal(KEY, b'{"event":"x","peer":"1.2.3.4:5"}', ChainHead(0, GENESIS))
    for cut in range(len(line) - 1):  # only the trailing newline may go
        with pytest.raises(ChainBroken):
            auditchain.check_lines(KEY, [("l1", line[:cut])])


def test_a_missing_key_is_a_one_line_error(tmp_path: Path) -> None:
    from cloud.home import init_home

    home = init_home(tmp_path / "core")
    assert main(["access-log", "verify", "--home", str(home.root)]) == 2
