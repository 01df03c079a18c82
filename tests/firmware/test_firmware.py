"""The node firmware on the real MicroPython interpreter, talking to the gateway's node driver
over ptys (simulators.node relays between them), and type-checked against the stubs."""

from __future__ import annotations

import json
import math
import os
import re
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from drivers.base import Sample
from drivers.node import Ack, decode_frame, encode_frame, encode_message
from drivers.node.driver import NodeSample, NodeSerialDriver
from gateway.clock import Stamper
from gateway.outbox import open_outbox
from simulators.node import FIRMWARE_DIR, find_micropython
from tests.support import require_program

ROOT = Path(__file__).resolve().parents[2]
VECTORS = ROOT / "tests" / "vectors" / "node"
#: Where `pip install --target` puts the MicroPython stubs (see docs/hil.md and .ci/run).
STUBS = Path(os.environ.get("MPY_STUBS", Path(sys.prefix) / "mpy-stubs"))
WAIT_S = 30
MYPY_ARGS = ("--config-file", str(FIRMWARE_DIR / "mypy.ini"), "--no-incremental")


def micropython() -> str:
    path = find_micropython()
    if path is None:
        require_program("micropython")  # skips locally, fails under CI
    assert path is not None
    return path


def expected_readings(index: int) -> list[tuple[str, str, float]]:
    # Independent of firmware/sensors.py: the documented formulas, rounded through float32
    # as a board's single-precision floats are.
    def f32(x: float) -> float:
        value: float = struct.unpack(">f", struct.pack(">f", x))[0]
        return value

    return [
        ("temp", "Cel", f32(20 + (index % 64) / 4)),
        ("rh", "%RH", f32(40 + (index % 32) / 2)),
        ("vbat", "V", f32(3 + (index % 16) / 16)),
    ]


def test_firmware_type_checks_against_the_micropython_stubs() -> None:
    if not (STUBS / "stdlib").is_dir():
        message = f"MicroPython stubs not installed in {STUBS} (pip install --target)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    env = {**os.environ, "MYPYPATH": f"{STUBS}{os.pathsep}{FIRMWARE_DIR}"}
    files = sorted(str(p) for p in FIRMWARE_DIR.glob("*.py"))
    result = subprocess.run(
        [sys.executable, "-m", "mypy", *MYPY_ARGS, "--custom-typeshed-dir", str(STUBS), *files],
        capture_output=True,
        text=True,
        env=env,
        cwd=FIRMWARE_DIR,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"no issues found in {len(files)} source files" in result.stdout


def test_firmware_codec_agrees_with_the_gateway() -> None:
    # Two independent implementations of docs/node-protocol.md: the firmware's frames must
    # decode in the gateway, and the gateway's acks must parse in the firmware.
    script = """
import sys
sys.path.insert(0, sys.argv[1])
import nodeproto
print(nodeproto.frame(nodeproto.hello("node-1", 1, "fw")).hex())
print(nodeproto.frame(nodeproto.readings("n1", 1, 1000, 0, [(1, 900, "temp", "Cel", 21.5)])).hex())
d = nodeproto.Deframer()
for p in d.feed(bytes.fromhex(sys.argv[2])):
    print(nodeproto.parse_ack(p))
print(nodeproto.parse_ack(bytes.fromhex("830301")), d.bad)
"""
    ack_frames = encode_frame(encode_message(Ack(7, 300))) + b"\x05junk\x00"
    ack_frames += encode_frame(encode_message(Ack(65536, 10_000_000)))
    result = subprocess.run(
        [micropython(), "-c", script, str(FIRMWARE_DIR), ack_frames.hex()],
        capture_output=True,
        text=True,
        check=True,
        timeout=WAIT_S,
    )
    lines = result.stdout.split()
    vectors = {v["id"]: v for v in json.loads((VECTORS / "messages.json").read_text())}
    for line, vector_id in ((lines[0], "hello"), (lines[1], "readings-float32")):
        frame = bytes.fromhex(line)
        payload = bytes.fromhex(vectors[vector_id]["payload"].replace(" ", ""))
        assert decode_frame(frame[:-1]) == payload  # byte-identical to the vector
    assert result.stdout.splitlines()[2:] == ["(7, 300)", "(65536, 10000000)", "None 1"]


class Gateway:
    """The parts of the gateway a node sample passes through: the driver, then the real
    outbox, then the store notification that lets the driver ack (gateway/app.py order)."""

    def __init__(self, link: str, outbox_path: Path) -> None:
        self.link = link
        self.outbox_path = outbox_path
        self.stored = 0

    async def run(self, *, task_status: trio.TaskStatus[NodeSerialDriver]) -> None:
        driver = NodeSerialDriver("node", self.link, store_timeout_s=5, backoff_s=0.05)
        send, receive = trio.open_memory_channel[Sample](math.inf)
        async with (
            open_outbox(self.outbox_path, Stamper.system()) as outbox,
            trio.open_nursery() as n,
        ):
            await n.start(driver.run, send)
            task_status.started(driver)
            async for sample in receive:
                await outbox.append([sample])
                self.stored += 1
                assert isinstance(sample, NodeSample)
                sample.mark_stored()


def stored_readings(outbox_path: Path) -> list[tuple[tuple[str, str, Any], ...]]:
    from gateway.outbox import Outbox

    with Outbox(outbox_path, Stamper.system()) as outbox:
        events = outbox.read_after(0, 100_000)
    return [tuple((r.name, r.unit, r.value) for r in e.readings) for e in events]


async def start_node(tmp_path: Path, *extra: str) -> trio.Process:
    micropython()
    args = ["--link", str(tmp_path / "node-link"), "--state", str(tmp_path / "boot")]
    return await trio.lowlevel.open_process(
        [sys.executable, "-m", "simulators.node", *args, *extra],
        stdout=subprocess.PIPE,
        cwd=ROOT,
    )


async def wait_acked(process: trio.Process, minimum: int, seen: bytearray) -> None:
    """Wait for an ``acked N`` line with N >= minimum (acks move in batch-sized steps)."""
    assert process.stdout is not None
    with trio.fail_after(WAIT_S):
        while not any(int(n) >= minimum for n in re.findall(rb"acked (\d+)", seen)):
            chunk = await process.stdout.receive_some()
            if not chunk:
                raise AssertionError(f"no ack up to {minimum}: {seen.decode()}")
            seen += chunk


async def wait_line(process: trio.Process, text: str, seen: bytearray) -> None:
    assert process.stdout is not None
    with trio.fail_after(WAIT_S):
        while text.encode() not in seen:
            chunk = await process.stdout.receive_some()
            if not chunk:
                raise AssertionError(f"{text!r} never came: {seen.decode()}")
            seen += chunk


@pytest.mark.slow
async def test_firmware_readings_arrive_exactly_with_faults(tmp_path: Path) -> None:
    count = 30
    node = await start_node(
        tmp_path, "--count", str(count), "--period-ms", "20", "--resend-ms", "200",
        "--capacity", "120", "--noise-every", "3", "--corrupt-every", "5",
    )  # fmt: skip
    seen = bytearray()
    try:
        await wait_line(node, "ready", seen)
        gateway = Gateway(str(tmp_path / "node-link"), tmp_path / "outbox.sqlite")
        async with trio.open_nursery() as nursery:
            driver = await nursery.start(gateway.run)
            await wait_line(node, "all acked", seen)
            nursery.cancel_scope.cancel()
    finally:
        node.kill()
        await node.wait()
    stored = stored_readings(tmp_path / "outbox.sqlite")
    assert stored == [tuple(expected_readings(i)) for i in range(count)]
    assert driver.health.bad_frames > 0  # the injected faults were seen and refused
    assert driver.statistics()["stored_seq"] == 3 * count


@pytest.mark.slow
async def test_gateway_restarted_mid_stream_loses_no_reading(tmp_path: Path) -> None:
    count = 40
    node = await start_node(
        tmp_path, "--count", str(count), "--period-ms", "25", "--resend-ms", "150",
        "--capacity", "150",
    )  # fmt: skip
    seen = bytearray()
    outbox = tmp_path / "outbox.sqlite"
    try:
        await wait_line(node, "ready", seen)
        first = Gateway(str(tmp_path / "node-link"), outbox)
        async with trio.open_nursery() as nursery:
            await nursery.start(first.run)
            await wait_acked(node, 24, seen)  # mid-stream: some stored and acked
            nursery.cancel_scope.cancel()  # the gateway dies: nothing more stored or acked
        second = Gateway(str(tmp_path / "node-link"), outbox)
        async with trio.open_nursery() as nursery:
            await nursery.start(second.run)
            await wait_line(node, "all acked", seen)
            nursery.cancel_scope.cancel()
    finally:
        node.kill()
        await node.wait()
    stored = stored_readings(outbox)
    expected = [tuple(expected_readings(i)) for i in range(count)]
    # Every reading is there, in order of first storage; a sample stored by the first
    # gateway whose ack it never sent may be stored again by the second (at-least-once).
    first_seen = list(dict.fromkeys(stored))
    assert first_seen == expected
    assert len(stored) - len(expected) <= 4  # at most one batch (12 readings) twice
