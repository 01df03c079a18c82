"""Helpers for the HTTP-surface tests: a core with the plain-HTTP port and tunable limits."""

from __future__ import annotations

import tomllib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import tomli_w
import trio

from cloud.home import CoreHome
from tests.support import RunningCore, free_port


def configure(home: CoreHome, *, http: dict[str, int] | None = None) -> int:
    """Turn on the plain-HTTP port (a free one, returned) and set ``[http]`` limits."""
    data: dict[str, Any] = tomllib.loads(home.config_path.read_text())
    port = free_port()
    data["listen"]["http_port"] = port
    if http:
        data["http"] = http
    home.config_path.write_text(tomli_w.dumps(data))
    return port


@asynccontextmanager
async def running(home: CoreHome) -> AsyncIterator[RunningCore]:
    from cloud.app import serve_core

    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        endpoints = await nursery.start(serve_core, home, stop)
        try:
            yield RunningCore(home, endpoints.link_url, endpoints.rest_url, stop)
        finally:
            stop.set()


async def raw_exchange(port: int, request: bytes, *, host: str = "127.0.0.1") -> bytes:
    """Send ``request`` on a plain TCP connection and read until the server closes."""
    stream = await trio.open_tcp_stream(host, port)
    async with stream:
        await stream.send_all(request)
        chunks = []
        with trio.fail_after(10):
            while chunk := await stream.receive_some(65536):
                chunks.append(chunk)
    return b"".join(chunks)
