"""Smoke test of the WebSocket library benchmark: it runs end to end and writes its results file.

It runs ``python -m bench.ws_choice`` for a fraction of a second per case against real TLS servers
in child processes, then checks the shape of the JSON document and that messages really flowed.
It never asserts speed. The pure helpers (percentile, /proc parsing, the table) get small checks.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
# bench/ is a checkout folder, not an installed package; `python -m pytest` finds it through the
# working directory, a bare `pytest` through this.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
LIBRARIES = ("websockets", "trio-websocket")
IDLE_CONNECTIONS = 6
STREAM_FIELDS = {
    "messages",
    "seconds",
    "messages_per_s",
    "mb_per_s",
    "server_cpu_s",
    "server_cpu_s_per_message",
    "client_cpu_s_per_message",
}
ECHO_FIELDS = {"round_trips", "seconds", "round_trips_per_s", "p50_ms", "p99_ms"}
IDLE_FIELDS = {"connections", "rss_before_b", "rss_after_b", "rss_per_connection_b"}

# Six short runs, each against a freshly started server process: about 3.5 s in all.
end_to_end = pytest.mark.slow


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, object], str]:
    """Run the benchmark once for the module; return the JSON document and stdout."""
    output = tmp_path_factory.mktemp("ws_choice") / "ws_choice.json"
    command = [sys.executable, "-m", "bench.ws_choice", "--duration", "0.15", "--runs", "1"]
    command += ["--idle-connections", str(IDLE_CONNECTIONS), "--window", "4"]
    command += ["--libraries", ",".join(LIBRARIES), "--output", str(output)]

    # A sync module fixture, so a subprocess timeout plays the part of trio.fail_after.
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(output.read_text(encoding="utf-8")), done.stdout


@end_to_end
def test_results_have_expected_shape(bench_run: tuple[dict[str, object], str]) -> None:
    document, _ = bench_run
    assert document["schema"] == "assetbook.bench.ws_choice/1"
    machine = document["machine"]
    assert isinstance(machine, dict)
    assert {"nproc", "cpu_model", "python", "versions", "date"} <= machine.keys()
    assert {"websockets", "trio-websocket", "wsproto"} <= machine["versions"].keys()
    cases = document["cases"]
    assert isinstance(cases, dict)
    assert set(cases) == set(LIBRARIES)
    for library in LIBRARIES:
        assert set(cases[library]) == {"stream", "echo", "idle"}
        assert set(cases[library]["stream"][0]) == STREAM_FIELDS
        assert set(cases[library]["echo"][0]) == ECHO_FIELDS
        assert set(cases[library]["idle"][0]) == IDLE_FIELDS


@end_to_end
def test_messages_really_flowed(bench_run: tuple[dict[str, object], str]) -> None:
    document, _ = bench_run
    cases = document["cases"]
    assert isinstance(cases, dict)
    for library in LIBRARIES:
        stream = cases[library]["stream"][0]
        echo = cases[library]["echo"][0]
        idle = cases[library]["idle"][0]
        assert stream["messages"] > 0, library
        assert stream["messages_per_s"] == pytest.approx(stream["messages"] / stream["seconds"])
        assert echo["round_trips"] > 0, library
        assert 0 < echo["p50_ms"] <= echo["p99_ms"], library
        assert idle["connections"] == IDLE_CONNECTIONS
        assert idle["rss_before_b"] > 0
        assert idle["rss_after_b"] > 0


@end_to_end
def test_summary_spans_runs_and_table_lists_libraries(
    bench_run: tuple[dict[str, object], str],
) -> None:
    document, stdout = bench_run
    summary = document["summary"]
    cases = document["cases"]
    assert isinstance(summary, dict)
    assert isinstance(cases, dict)
    for library in LIBRARIES:
        span = summary[library]["stream"]["messages"]
        assert span["min"] == span["max"] == cases[library]["stream"][0]["messages"]
    header = stdout.splitlines()[0]
    assert header == "| metric | websockets | trio-websocket |"
    assert "stream: messages/s" in stdout
    assert "idle: server RSS" in stdout


def test_percentile_is_nearest_rank() -> None:
    from bench.stats import percentile

    samples = [float(n) for n in range(1, 101)]  # 1..100: the p-th percentile is p itself
    assert percentile(samples, 0.50) == 50.0
    assert percentile(samples, 0.99) == 99.0
    assert percentile(list(reversed(samples)), 1.0) == 100.0
    with pytest.raises(ValueError, match="no samples"):
        percentile([], 0.5)


def test_cpu_ticks_survive_spaces_in_command_name() -> None:
    from bench.ws_choice import cpu_ticks_from_stat

    # proc(5) layout: pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt
    # majflt cmajflt utime stime ...; the command name here contains ") (" on purpose.
    line = "42 (py ) (x) S 1 42 42 0 -1 4194304 10 0 0 0 700 55 0 0 20 0 1 0"
    assert cpu_ticks_from_stat(line) == 755
    with pytest.raises(ValueError, match="stat"):
        cpu_ticks_from_stat("garbage")
