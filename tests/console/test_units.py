"""Unit tests of the console's pure parts: views, security helpers, session tables, the
live-event filter, the audit reader, and passkey refusals (no browser needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloud.console import views
from cloud.console.admin import read_audit
from cloud.console.fleet import live_filter
from cloud.console.security import CSP, cookie_header, origin_allowed, origin_of, same_secret
from cloud.console.sessions import TICKET_LIFETIME_S, ConsoleSessions
from cloud.storage.base import StoredEvent
from protocol.events import ClockSource, Event, Reading


def stored(device: str, wall_s: int, *readings: Reading, gateway: str = "gw") -> StoredEvent:
    event = Event(wall_s, device, bytes(16), 0, wall_s * 10**9, ClockSource.NTP, readings)
    return StoredEvent("acme", gateway, event, 0)


def test_track_is_scaled_to_its_bounding_box_north_up() -> None:
    # Three fixes on the equator and one 0.01 degrees north: a 0.02 x 0.01 degree box.
    fixes = [(0.0, 0.0), (0.0, 0.01), (0.0, 0.02), (0.01, 0.02)]
    events = [stored("g", i, Reading("lat", "lat", la), Reading("lon", "lon", lo))
              for i, (la, lo) in enumerate(fixes)]  # fmt: skip
    points = [tuple(map(float, p.split(","))) for p in views.track_points(events).split()]
    # Longest side (longitude, 0.02) spans 10..390; north (higher lat) is up (smaller y).
    assert points == [(10.0, 200.0), (200.0, 200.0), (390.0, 200.0), (390.0, 10.0)]


def test_track_without_fixes_is_empty_and_ignores_non_finite() -> None:
    assert views.track_points([stored("g", 1, Reading("temperature", "Cel", 3.0))]) == ""
    nan = stored("g", 2, Reading("lat", "lat", float("nan")), Reading("lon", "lon", 1.0))
    assert views.track_points([nan]) == ""


def test_one_fix_is_a_point_in_the_corner() -> None:
    one = stored("g", 1, Reading("lat", "lat", 59.0), Reading("lon", "lon", 18.0))
    assert views.track_points([one]) == "10.0,10.0"


def test_latest_by_device_skips_health_and_keeps_newest() -> None:
    rows = views.latest_by_device([
        stored("t", 5, Reading("temperature", "Cel", 1.5)),
        stored("t", 9, Reading("temperature", "Cel", 2.5)),
        stored("_health", 10, Reading("interval", "s", 30.0)),
        stored("b", 1, Reading("raw", "", b"\x01\xff")),
    ])  # fmt: skip
    assert [(r.device, r.readings) for r in rows] == [
        ("b", (("raw", "01ff", ""),)),
        ("t", (("temperature", "2.5", "Cel"),)),
    ]


def test_numeric_series_aligns_columns_and_leaves_gaps() -> None:
    series = views.numeric_series([
        stored("t", 2, Reading("humidity", "%RH", 40)),
        stored("t", 1, Reading("temperature", "Cel", 20.5), Reading("flag", "", True)),
    ])  # fmt: skip
    expected = {"temperature": [20.5, None], "humidity": [None, 40.0]}
    assert series == {"t": [1.0, 2.0], "series": expected}


def test_csp_forbids_inline_code_and_framing() -> None:
    directives = dict(d.split(" ", 1) for d in CSP.split("; "))
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == "'self'" and directives["style-src"] == "'self'"
    assert directives["connect-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'" and directives["base-uri"] == "'none'"
    assert directives["form-action"] == "'self'"
    assert "unsafe" not in CSP and "nonce" not in CSP


def test_cookies_are_host_prefixed_and_locked_down() -> None:
    header = cookie_header("__Host-x", "v", 60)
    assert header == "__Host-x=v; Path=/; Max-Age=60; Secure; HttpOnly; SameSite=Strict"
    with pytest.raises(ValueError, match="__Host-"):
        cookie_header("session", "v", 60)


def test_origin_and_secret_checks() -> None:
    assert origin_of("https://core.example:8443/console/x?y") == "https://core.example:8443"
    assert origin_allowed("https://a:1", "https://a:1")
    assert not origin_allowed("https://a:1", None)
    assert not origin_allowed("https://a:1", "null")
    assert not same_secret("abc", None) and not same_secret("", "") and same_secret("ab", "ab")


def test_tickets_are_single_use_bound_and_short_lived() -> None:
    clock = [1000.0]
    table = ConsoleSessions(now=lambda: clock[0])
    session = table.open("acme", "u-1", "s-1", "access", "refresh", 600)
    ticket = table.ticket(session.sid)
    assert table.redeem(ticket, "another-sid") is None  # spent by the failed attempt too
    ticket = table.ticket(session.sid)
    assert table.redeem(ticket, session.sid) == table.get(session.sid)
    assert table.redeem(ticket, session.sid) is None
    late = table.ticket(session.sid)
    clock[0] += TICKET_LIFETIME_S + 1
    assert table.redeem(late, session.sid) is None
    table.close(session.sid)
    assert table.get(session.sid) is None and not table.alive(session.sid)


def test_ending_an_identity_session_closes_its_console_sessions() -> None:
    table = ConsoleSessions()
    first = table.open("acme", "u-1", "s-1", "a", "r", 600)
    second = table.open("acme", "u-1", "s-2", "a", "r", 600)
    table.close_identity_sessions({"s-1"})
    assert table.get(first.sid) is None and table.get(second.sid) is not None


@pytest.mark.parametrize(
    ("message", "pattern"),
    [
        ('{"ticket": "t"}', "gw/+/+"),
        ('{"ticket": "t", "gateway": "gw-1"}', "gw/gw-1/+"),
        ('{"ticket": "t", "device": "gps-1"}', "gw/+/gps-1"),
        ('{"ticket": "t", "topic": "gw/#"}', "gw/#"),
        ('{"ticket": "t", "topic": "cmd/gw-1/#"}', None),  # outside the event topics
        ('{"ticket": "t", "topic": "gw/#/x"}', None),  # not a valid pattern
        ('{"gateway": "gw-1"}', None),
        ("[1, 2]", None),
        ("not json", None),
    ],
)
def test_live_filter(message: str, pattern: str | None) -> None:
    parsed = live_filter(message)
    assert (parsed[1] if parsed else None) == pattern


@given(st.text(max_size=200))
def test_live_filter_takes_any_text(message: str) -> None:
    parsed = live_filter(message)
    assert parsed is None or parsed[1].startswith("gw/")


def test_audit_reader_filters_by_tenant_event_and_text(tmp_path: Path) -> None:
    log = tmp_path / "access.jsonl"
    records = [
        {"ts": "1", "event": "http.request", "tenant": "acme", "principal": "u-1", "path": "/a"},
        {"ts": "2", "event": "http.request", "tenant": "globex", "principal": "u-2", "path": "/a"},
        {"ts": "3", "event": "link.accepted", "tenant": "acme", "principal": "gw-1"},
    ]
    log.write_text("\n".join(json.dumps(r) for r in records) + "\nnot json\n")
    found = read_audit(log, "acme", {"event": "http.", "principal": "", "text": "/a"})
    assert [r["ts"] for r in found] == ["1"]
    assert [r["ts"] for r in read_audit(log, "acme", {})] == ["3", "1"]  # newest first
    assert [r["ts"] for r in read_audit(log, None, {"principal": "u-2"})] == ["2"]
    assert read_audit(tmp_path / "missing.jsonl", "acme", {}) == []
