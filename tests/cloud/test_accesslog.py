"""The access log: one JSON object per line, UTC timestamps, and no secret ever written."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import trio

from cloud.accesslog import REDACTED, REDACTED_JWT, AccessLog, scrub_text
from cloud.errors import InvalidInput
from cloud.home import CoreHome, init_home
from cloud.principal import PrincipalKind
from cloud.tokens import Audience, TokenIssuer

FIXED = datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)


@pytest.fixture
def log(tmp_path: Path) -> Iterator[AccessLog]:
    with AccessLog(tmp_path / "access.jsonl", now=lambda: FIXED) as access_log:
        yield access_log


@pytest.fixture(scope="module")
def real_token(tmp_path_factory: pytest.TempPathFactory) -> str:
    home: CoreHome = init_home(tmp_path_factory.mktemp("log") / "core")
    token, _ = TokenIssuer(home).issue(
        audience=Audience.LINK,
        subject="gw-1",
        tenant="acme",
        kind=PrincipalKind.GATEWAY,
        lifetime_s=60,
    )
    return token


def _lines(log: AccessLog) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.path.read_text().splitlines()]


def test_one_json_object_per_line(log: AccessLog) -> None:
    log.record("link.open", peer="127.0.0.1:5000", principal="gw-1", status=101)
    log.record("link.closed", peer="127.0.0.1:5000", code=1000)
    assert _lines(log) == [
        {
            "ts": "2031-05-06T07:08:09.123Z",
            "event": "link.open",
            "peer": "127.0.0.1:5000",
            "principal": "gw-1",
            "status": 101,
        },
        {
            "ts": "2031-05-06T07:08:09.123Z",
            "event": "link.closed",
            "peer": "127.0.0.1:5000",
            "code": 1000,
        },
    ]


def test_timestamps_are_utc(tmp_path: Path) -> None:
    local = datetime(2031, 5, 6, 9, 8, 9, tzinfo=timezone(timedelta(hours=2)))
    with AccessLog(tmp_path / "a.jsonl", now=lambda: local) as log:
        log.record("x")
    assert _lines(log)[0]["ts"] == "2031-05-06T07:08:09.000Z"


def test_each_record_is_on_disk_when_record_returns(log: AccessLog) -> None:
    log.record("first")
    # Read through a separate file object: no buffer in this process may hold the line.
    assert log.path.read_text().count("\n") == 1


def test_appends_to_an_existing_log(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    with AccessLog(path) as first:
        first.record("one")
    with AccessLog(path) as second:
        second.record("two")
    assert [entry["event"] for entry in _lines(second)] == ["one", "two"]


def test_file_is_private(log: AccessLog) -> None:
    assert stat.S_IMODE(log.path.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    "name",
    ["token", "access_token", "Authorization", "password", "client_secret", "Cookie", "api_key"],
)
def test_sensitive_field_names_are_redacted(log: AccessLog, name: str) -> None:
    log.record("x", **{name: "hunter2-canary"})
    assert _lines(log)[0][name] == REDACTED
    assert "hunter2-canary" not in log.path.read_text()


def test_nested_sensitive_names_are_redacted(log: AccessLog) -> None:
    log.record("x", headers={"Authorization": "Bearer abc", "Host": "core"}, items=[{"pw": 1}])
    entry = _lines(log)[0]
    assert entry["headers"] == {"Authorization": REDACTED, "Host": "core"}
    assert entry["items"] == [{"pw": 1}]


def test_a_real_token_in_any_field_never_reaches_the_file(log: AccessLog, real_token: str) -> None:
    log.record(
        "oops",
        detail=f"bad request with {real_token} inside",
        path=f"/link?access={real_token}",
        nested={"list": [real_token], "inner": {"x": real_token}},
        as_tuple=(real_token,),
        raw=real_token.encode(),
    )
    text = log.path.read_text()
    assert real_token not in text
    assert real_token.split(".")[2] not in text  # not even the signature
    assert "eyJ" not in text
    entry = json.loads(text)
    assert entry["detail"] == f"bad request with {REDACTED_JWT} inside"
    assert entry["path"] == f"/link?access={REDACTED_JWT}"
    assert entry["nested"] == {"list": [REDACTED_JWT], "inner": {"x": REDACTED_JWT}}
    assert entry["raw"] == f"[{len(real_token)} bytes]"


def test_token_in_the_event_name_is_scrubbed(log: AccessLog, real_token: str) -> None:
    log.record(f"auth {real_token}")
    assert real_token not in log.path.read_text()


def test_truncated_and_unsigned_tokens_are_scrubbed(real_token: str) -> None:
    header, payload, _ = real_token.split(".")
    assert "eyJ" not in scrub_text(real_token[:24])
    assert header not in scrub_text(f"{header}.{payload}.")  # alg=none shape


def test_exceptions_and_objects_are_scrubbed(log: AccessLog, real_token: str) -> None:
    log.record("error", error=ValueError(f"could not parse {real_token}"))
    assert real_token not in log.path.read_text()
    assert _lines(log)[0]["error"] == f"could not parse {REDACTED_JWT}"


@pytest.mark.parametrize(
    "text",
    ["core.example.com", "gateway1.assetbook.local", "1.2.3", "v0.1.0", "a.b.c", "gw/gw-1/thermo"],
)
def test_ordinary_dotted_text_is_kept(text: str) -> None:
    assert scrub_text(text) == text


def test_non_json_values(log: AccessLog) -> None:
    log.record("x", latency=float("nan"), kind=PrincipalKind.GATEWAY, n=None, ok=True)
    assert _lines(log)[0] | {"ts": None} == {
        "ts": None,
        "event": "x",
        "latency": "nan",
        "kind": "gateway",
        "n": None,
        "ok": True,
    }


def test_reserved_names(log: AccessLog) -> None:
    with pytest.raises(InvalidInput):
        log.record("x", ts="forged")
    assert log.path.read_text() == ""


def test_closed_log_refuses(log: AccessLog) -> None:
    log.close()
    with pytest.raises(ValueError, match="closed"):
        log.record("x")


async def test_many_tasks_and_threads_write_whole_lines(log: AccessLog) -> None:
    go = trio.Event()

    async def task(i: int) -> None:
        await go.wait()
        log.record("task", n=i, padding="x" * 5000)

    async def thread(i: int) -> None:
        await go.wait()
        await trio.to_thread.run_sync(lambda: log.record("thread", n=i, padding="y" * 5000))

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            for i in range(30):
                nursery.start_soon(task, i)
                nursery.start_soon(thread, i)
            go.set()
    entries = _lines(log)  # every line parses: none was torn or interleaved
    assert sorted(e["n"] for e in entries if e["event"] == "task") == list(range(30))
    assert sorted(e["n"] for e in entries if e["event"] == "thread") == list(range(30))
