"""The pyserial Trio adapter on a real pty: both directions, closing, and error mapping."""

from __future__ import annotations

import os

import pytest
import trio
import trio.testing

from drivers.errors import SerialBroken
from drivers.serial_port import open_serial_port
from simulators.pty import open_pty_pair


async def test_bytes_flow_both_ways_and_unplug_is_serial_broken() -> None:
    pair = open_pty_pair()
    try:
        with trio.fail_after(5):
            async with open_serial_port(pair.slave_path, 115200) as port:
                os.write(pair.master_fd, b"hello")
                received = b""
                while len(received) < 5:
                    received += await port.receive_some(3)
                assert received == b"hello"

                await port.send_all(b"x" * 1000)
                sent = b""
                while len(sent) < 1000:
                    await trio.lowlevel.wait_readable(pair.master_fd)
                    sent += os.read(pair.master_fd, 4096)
                assert sent == b"x" * 1000

                pair.close()  # unplug
                with pytest.raises(SerialBroken) as info:
                    await port.receive_some()
                assert info.value.__cause__ is not None
    finally:
        pair.close()


async def test_closed_port_raises_closed_resource_error() -> None:
    pair = open_pty_pair()
    try:
        async with open_serial_port(pair.slave_path) as port:
            await port.aclose()
            with pytest.raises(trio.ClosedResourceError):
                await port.receive_some()
            with pytest.raises(trio.ClosedResourceError):
                await port.send_all(b"x")
    finally:
        pair.close()


async def test_blocked_reader_is_woken_by_close() -> None:
    pair = open_pty_pair()
    try:
        with trio.fail_after(5):
            async with open_serial_port(pair.slave_path) as port, trio.open_nursery() as nursery:
                failed = trio.Event()

                async def reader() -> None:
                    with pytest.raises(trio.ClosedResourceError):
                        await port.receive_some()
                    failed.set()

                nursery.start_soon(reader)
                await trio.testing.wait_all_tasks_blocked()
                await port.aclose()
                await failed.wait()
    finally:
        pair.close()


async def test_missing_device_is_serial_broken() -> None:
    with pytest.raises(SerialBroken, match="cannot open"):
        async with open_serial_port("/dev/nonexistent-assetbook-tty"):
            pass  # pragma: no cover
