"""Choose the gateway-to-core WebSocket library by measurement.

``python -m bench.ws_choice`` measures each candidate library against a TLS server (TLS 1.2+,
a self-signed certificate made for the run) that runs in a separate process on 127.0.0.1:

* ``stream``: binary messages of 40 KiB (a CBOR batch) sent as fast as a window of unacknowledged
  messages allows, the server answering each with a 16-byte ack. Reports messages/s, MB/s
  (10^6 bytes of payload) and CPU seconds per message in the server and in the client.
* ``echo``: one 100-byte message at a time, echoed back. Reports round trips/s, p50 and p99.
* ``idle``: N idle connections that carry a bearer token and the link subprotocol, each proven
  open by one hello/ack; reports the server's resident-set growth per connection.

Every case runs ``--runs`` times (interleaved across libraries, one fresh server process per run).
The raw figures go to ``bench/results/ws_choice.json``; a Markdown table of min-max goes to stdout,
progress to stderr.

What it does not do: it asserts nothing about speed, it does not speak the link protocol (messages
are opaque bytes), and it reads CPU time and RSS of the server from ``/proc``, so it runs on Linux
only. Compression is off on both sides (``compression=None`` for websockets; trio-websocket never
offers permessage-deflate), because the link carries CBOR that is already compact.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import http
import importlib.metadata
import ipaddress
import json
import os
import platform
import ssl
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import trio
import trio_websocket
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from websockets.exceptions import ConnectionClosed
from websockets.trio.client import ClientConnection
from websockets.trio.client import connect as ws_connect
from websockets.trio.server import ServerConnection
from websockets.trio.server import serve as ws_serve
from websockets.typing import Data, Subprotocol

from bench.stats import percentile

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator, Sequence

    from websockets.http11 import Request, Response

SCHEMA = "assetbook.bench.ws_choice/1"
HOST = "127.0.0.1"
SUBPROTOCOL = "assetbook.link.v1"
# A token of realistic length: handshake parsing and header storage cost scale with it.
BEARER = "Bearer " + "eyJhbGciOiJFZERTQSIsInR5cCI6IkpXVCJ9." + "x" * 220 + "." + "s" * 86
MAX_MESSAGE_SIZE_B = 2**20  # the link's ceiling for one CBOR batch
ACK = struct.Struct("!QQ")  # sequence number, size received: the 16-byte ack
LIBRARIES = ("websockets", "trio-websocket", "trio-websocket-64k")
CASES = ("stream", "echo", "idle")
# trio-websocket reads the socket in 4 KiB slices by default (its documented
# receive_buffer_size); the -64k variant checks whether that default is what costs it.
TW_RECEIVE_BUFFER_B = {"trio-websocket": 4 * 1024, "trio-websocket-64k": 64 * 1024}
OPEN_CONCURRENCY = 32  # idle case: handshakes in flight at once
WARMUP_CONNECTIONS = 8  # idle case: opened and closed before the baseline RSS sample
DRAIN_TIMEOUT_S = 30.0
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = REPO_ROOT / "bench" / "results" / "ws_choice.json"


class BenchError(Exception):
    """The benchmark could not measure: a server did not start or a peer broke the exchange."""


# --------------------------------------------------------------------------- values


@dataclass(frozen=True, slots=True)
class Settings:
    """What to measure and where to write it."""

    duration_s: float
    runs: int
    window: int
    message_size_b: int
    echo_size_b: int
    idle_connections: int
    libraries: tuple[str, ...]
    cases: tuple[str, ...]
    output: Path


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """A self-signed certificate for 127.0.0.1 and its private key, both PEM."""

    cert: Path
    key: Path


@dataclass(frozen=True, slots=True)
class ServerHandle:
    """A running benchmark server process."""

    pid: int
    port: int


@dataclass(frozen=True, slots=True)
class StreamResult:
    """One run of the pipelined one-way stream."""

    messages: int
    seconds: float
    messages_per_s: float
    mb_per_s: float
    server_cpu_s: float
    server_cpu_s_per_message: float
    client_cpu_s_per_message: float


@dataclass(frozen=True, slots=True)
class EchoResult:
    """One run of the one-at-a-time echo."""

    round_trips: int
    seconds: float
    round_trips_per_s: float
    p50_ms: float
    p99_ms: float


@dataclass(frozen=True, slots=True)
class IdleResult:
    """One run of the idle-connection memory case."""

    connections: int
    rss_before_b: int
    rss_after_b: int
    rss_per_connection_b: float


CaseResult = StreamResult | EchoResult | IdleResult


# --------------------------------------------------------------------------- pure helpers


def cpu_ticks_from_stat(stat_line: str) -> int:
    """utime + stime, in clock ticks, from one ``/proc/<pid>/stat`` line.

    proc(5): the command name (field 2) is in parentheses and may contain spaces, so fields are
    counted from the last ")". utime and stime are fields 14 and 15.

    Raises:
        ValueError: the line is not a stat line.
    """
    close = stat_line.rfind(")")
    fields = stat_line[close + 1 :].split()
    if close < 0 or len(fields) < 13:
        raise ValueError("not a /proc/<pid>/stat line")
    # fields[0] is field 3 (state), so field n is fields[n - 3].
    return int(fields[11]) + int(fields[12])


def summarise(cases: dict[str, dict[str, list[dict[str, float]]]]) -> dict[str, object]:
    """Min and max of every numeric field, per library and case."""
    summary: dict[str, object] = {}
    for library, by_case in cases.items():
        per_case: dict[str, dict[str, dict[str, float]]] = {}
        for case, runs in by_case.items():
            fields = runs[0].keys() if runs else ()
            per_case[case] = {
                field: {"min": min(r[field] for r in runs), "max": max(r[field] for r in runs)}
                for field in fields
            }
        summary[library] = per_case
    return summary


EN_DASH = "\u2013"  # ranges in the table, as in typeset tables
MISSING = "n/a"

# (case, field, row label, multiplier, decimals) for the Markdown table.
TABLE_ROWS = (
    ("stream", "messages_per_s", "stream: messages/s (40 KiB)", 1.0, 0),
    ("stream", "mb_per_s", "stream: MB/s", 1.0, 1),
    ("stream", "server_cpu_s_per_message", "stream: server CPU µs/message", 1e6, 1),
    ("stream", "client_cpu_s_per_message", "stream: client CPU µs/message", 1e6, 1),
    ("echo", "round_trips_per_s", "echo: round trips/s (100 B)", 1.0, 0),
    ("echo", "p50_ms", "echo: p50 latency ms", 1.0, 3),
    ("echo", "p99_ms", "echo: p99 latency ms", 1.0, 3),
    ("idle", "rss_per_connection_b", "idle: server RSS KiB/connection", 1 / 1024, 1),
)


def markdown_table(summary: dict[str, object], libraries: Sequence[str]) -> str:
    """A Markdown table with one column per library and ``min-max`` (en dash) in each cell."""
    lines = [
        "| metric | " + " | ".join(libraries) + " |",
        "| --- |" + " ---: |" * len(libraries),
    ]
    for case, field, label, scale, decimals in TABLE_ROWS:
        cells = []
        for library in libraries:
            by_case = summary.get(library, {})
            span = by_case.get(case, {}).get(field) if isinstance(by_case, dict) else None
            if span is None:
                cells.append(MISSING)
                continue
            low, high = span["min"] * scale, span["max"] * scale
            cells.append(f"{low:,.{decimals}f}{EN_DASH}{high:,.{decimals}f}")
        if any(cell != MISSING for cell in cells):
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def machine_info() -> dict[str, object]:
    """What the figures were measured on: CPU, Python, TLS library and package versions."""
    model = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    try:
        import websockets.speedups  # noqa: F401  (C framing/masking, if the wheel has it)

        speedups = True
    except ImportError:
        speedups = False
    packages = ("websockets", "trio-websocket", "wsproto", "trio", "cryptography")
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "platform": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "openssl": ssl.OPENSSL_VERSION,
        "versions": {name: importlib.metadata.version(name) for name in packages},
        "websockets_speedups": speedups,
    }


# --------------------------------------------------------------------------- TLS


def write_self_signed(directory: Path) -> TlsFiles:
    """Write a self-signed P-256 certificate for IP 127.0.0.1 (valid one day) and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "assetbook bench")])
    now = datetime.datetime.now(datetime.UTC)
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        # RFC 6125 §6.2 / RFC 5280 §4.2.1.6: an IP literal is matched against an iPAddress SAN.
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(HOST))]),
            critical=False,
        )
        # The certificate is its own trust anchor, so it must be a CA (RFC 5280 §4.2.1.9) with
        # key identifiers, which OpenSSL's strict verification mode requires.
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    files = TlsFiles(cert=directory / "cert.pem", key=directory / "key.pem")
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files


def server_ssl_context(tls: TlsFiles) -> ssl.SSLContext:
    """Server context: TLS 1.2 or newer only."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(tls.cert, tls.key)
    return context


def client_ssl_context(tls: TlsFiles) -> ssl.SSLContext:
    """Client context that verifies the server against the run's certificate, TLS 1.2+."""
    context = ssl.create_default_context(cafile=str(tls.cert))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


# --------------------------------------------------------------------------- server process


def reply_for(path: str, sequence: int, message: bytes) -> bytes:
    """What the server answers: the message itself on /echo, else a 16-byte ack."""
    if path == "/echo":
        return message
    return ACK.pack(sequence, len(message))


def as_bytes(message: Data) -> bytes:
    """The payload of a binary message.

    Raises:
        BenchError: the peer sent a text message.
    """
    if isinstance(message, str):
        raise BenchError("expected a binary message, got text")
    return message


JSON_401 = '{"error": "missing_token"}\n'


async def serve_websockets(
    context: ssl.SSLContext, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
) -> None:
    """Serve with websockets' Trio server; report the bound port through ``task_status``."""

    def process_request(connection: ServerConnection, request: Request) -> Response | None:
        if not request.headers.get("Authorization", "").startswith("Bearer "):
            return connection.respond(http.HTTPStatus.UNAUTHORIZED, JSON_401)
        return None

    async def handler(connection: ServerConnection) -> None:
        path = connection.request.path if connection.request is not None else ""
        sequence = 0
        with contextlib.suppress(ConnectionClosed):
            async for message in connection:
                sequence += 1
                await connection.send(reply_for(path, sequence, as_bytes(message)))

    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            partial(
                ws_serve,
                handler,
                0,
                host=HOST,
                ssl=context,
                subprotocols=[Subprotocol(SUBPROTOCOL)],
                compression=None,
                process_request=process_request,
                max_size=MAX_MESSAGE_SIZE_B,
            )
        )
        task_status.started(server.listeners[0].socket.getsockname()[1])


async def serve_trio_websocket(
    context: ssl.SSLContext,
    receive_buffer_b: int,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve with trio-websocket, doing the same checks as :func:`serve_websockets`."""

    async def handler(request: trio_websocket.WebSocketRequest) -> None:
        # h11 lower-cases header names (RFC 9110 §5.1: they are case-insensitive).
        headers = dict(request.headers)
        if not headers.get(b"authorization", b"").startswith(b"Bearer "):
            await request.reject(
                http.HTTPStatus.UNAUTHORIZED,
                extra_headers=[(b"content-type", b"application/json")],
                body=JSON_401.encode(),
            )
            return
        if SUBPROTOCOL not in request.proposed_subprotocols:
            await request.reject(http.HTTPStatus.BAD_REQUEST, body=b"missing subprotocol\n")
            return
        connection = await request.accept(subprotocol=SUBPROTOCOL)
        sequence = 0
        with contextlib.suppress(trio_websocket.ConnectionClosed):
            while True:
                message = await connection.get_message()
                sequence += 1
                await connection.send_message(reply_for(request.path, sequence, as_bytes(message)))

    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            partial(
                trio_websocket.serve_websocket,
                handler,
                HOST,
                0,
                context,
                max_message_size=MAX_MESSAGE_SIZE_B,
                receive_buffer_size=receive_buffer_b,
            )
        )
        task_status.started(server.port)


async def wait_stdin_closed() -> None:
    """Return when stdin reaches EOF, i.e. when the parent closed its end or died."""
    async with trio.lowlevel.FdStream(os.dup(sys.stdin.fileno())) as stdin:
        while await stdin.receive_some():
            pass


async def server_main(library: str, tls: TlsFiles) -> None:
    """Serve until stdin closes; announce ``READY <port>`` on stdout once listening."""
    context = server_ssl_context(tls)
    async with trio.open_nursery() as nursery:
        if library == "websockets":
            port = await nursery.start(serve_websockets, context)
        else:
            port = await nursery.start(serve_trio_websocket, context, TW_RECEIVE_BUFFER_B[library])
        print(f"READY {port}", flush=True)
        # A parent killed without cleanup still closes the pipe, so no server outlives it.
        await wait_stdin_closed()
        nursery.cancel_scope.cancel()


@contextlib.contextmanager
def running_server(library: str, tls: TlsFiles) -> Iterator[ServerHandle]:
    """Start the server for ``library`` in a child process; stop it on exit.

    Raises:
        BenchError: the child did not report a listening port.
    """
    command = [sys.executable, "-m", "bench.ws_choice", "--serve", library]
    command += ["--cert", str(tls.cert), "--key", str(tls.key)]
    process = subprocess.Popen(
        command, cwd=REPO_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert process.stdin is not None
    assert process.stdout is not None
    try:
        line = process.stdout.readline()
        if not line.startswith("READY "):
            raise BenchError(f"{library} server did not start (said {line!r})")
        yield ServerHandle(pid=process.pid, port=int(line.split()[1]))
    finally:
        process.terminate()  # quicker than a graceful close of whatever is still open
        process.wait(timeout=10)
        process.stdin.close()
        process.stdout.close()


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds consumed so far by process ``pid``."""
    stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    return cpu_ticks_from_stat(stat) / os.sysconf("SC_CLK_TCK")


def process_rss_b(pid: int) -> int:
    """Resident set size of process ``pid`` in bytes (proc(5) statm, field 2, in pages)."""
    pages = int(Path(f"/proc/{pid}/statm").read_text(encoding="ascii").split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


# --------------------------------------------------------------------------- client side


class Link(Protocol):
    """The two operations the cases need, whatever the library."""

    async def send(self, data: bytes) -> None: ...

    async def recv(self) -> bytes: ...


class WebsocketsLink:
    """:class:`Link` over a websockets Trio client connection."""

    def __init__(self, connection: ClientConnection) -> None:
        self._connection = connection

    async def send(self, data: bytes) -> None:
        await self._connection.send(data)

    async def recv(self) -> bytes:
        return as_bytes(await self._connection.recv())


class TrioWebsocketLink:
    """:class:`Link` over a trio-websocket client connection."""

    def __init__(self, connection: trio_websocket.WebSocketConnection) -> None:
        self._connection = connection

    async def send(self, data: bytes) -> None:
        await self._connection.send_message(data)

    async def recv(self) -> bytes:
        return as_bytes(await self._connection.get_message())


@contextlib.asynccontextmanager
async def open_link(
    library: str, port: int, path: str, context: ssl.SSLContext
) -> AsyncIterator[Link]:
    """Open an authenticated-looking client connection (bearer token, link subprotocol)."""
    url = f"wss://{HOST}:{port}{path}"
    if library == "websockets":
        async with ws_connect(
            url,
            ssl=context,
            subprotocols=[Subprotocol(SUBPROTOCOL)],
            additional_headers={"Authorization": BEARER},
            compression=None,
            max_size=MAX_MESSAGE_SIZE_B,
            proxy=None,  # never route the loopback benchmark through an environment proxy
        ) as connection:
            yield WebsocketsLink(connection)
    else:
        async with trio_websocket.open_websocket_url(
            url,
            context,
            subprotocols=[SUBPROTOCOL],
            extra_headers=[(b"authorization", BEARER.encode())],
            max_message_size=MAX_MESSAGE_SIZE_B,
            receive_buffer_size=TW_RECEIVE_BUFFER_B[library],
        ) as connection:
            yield TrioWebsocketLink(connection)


async def measure_stream(link: Link, settings: Settings, server_pid: int) -> StreamResult:
    """Send for ``duration_s`` with at most ``window`` unacked messages, then drain the acks."""
    payload = os.urandom(settings.message_size_b)
    credits = trio.Semaphore(settings.window)
    sent = 0

    async def receive_acks() -> None:
        while True:
            ack = await link.recv()
            if len(ack) != ACK.size:
                raise BenchError(f"ack of {len(ack)} bytes")
            credits.release()

    server_cpu0, client_cpu0 = process_cpu_s(server_pid), time.process_time()
    start = time.perf_counter()
    deadline = trio.current_time() + settings.duration_s
    async with trio.open_nursery() as nursery:
        nursery.start_soon(receive_acks)
        # Stop between sends, never inside one: cancelling a send midway would break the stream.
        while trio.current_time() < deadline:
            await credits.acquire()
            await link.send(payload)
            sent += 1
        with trio.fail_after(DRAIN_TIMEOUT_S):
            for _ in range(settings.window):  # holding every credit means every ack arrived
                await credits.acquire()
        nursery.cancel_scope.cancel()
    seconds = time.perf_counter() - start
    server_cpu = process_cpu_s(server_pid) - server_cpu0
    client_cpu = time.process_time() - client_cpu0
    return StreamResult(
        messages=sent,
        seconds=seconds,
        messages_per_s=sent / seconds,
        mb_per_s=sent * settings.message_size_b / seconds / 1e6,
        server_cpu_s=server_cpu,
        server_cpu_s_per_message=server_cpu / sent,
        client_cpu_s_per_message=client_cpu / sent,
    )


async def measure_echo(link: Link, settings: Settings) -> EchoResult:
    """Send one message, wait for its echo, repeat for ``duration_s``."""
    payload = os.urandom(settings.echo_size_b)
    latencies_ms: list[float] = []
    start = time.perf_counter()
    deadline = trio.current_time() + settings.duration_s
    while trio.current_time() < deadline:
        sent_at = time.perf_counter_ns()
        await link.send(payload)
        if await link.recv() != payload:
            raise BenchError("echo differs from what was sent")
        latencies_ms.append((time.perf_counter_ns() - sent_at) / 1e6)
    seconds = time.perf_counter() - start
    return EchoResult(
        round_trips=len(latencies_ms),
        seconds=seconds,
        round_trips_per_s=len(latencies_ms) / seconds,
        p50_ms=percentile(latencies_ms, 0.50),
        p99_ms=percentile(latencies_ms, 0.99),
    )


async def hold_connections(
    opener: Callable[[], contextlib.AbstractAsyncContextManager[Link]],
    count: int,
    on_all_open: Callable[[], None],
) -> None:
    """Open ``count`` connections, each proven by a hello/ack, call ``on_all_open``, close all."""
    limiter = trio.CapacityLimiter(OPEN_CONCURRENCY)
    all_open, release = trio.Event(), trio.Event()
    opened = 0

    async def hold_one() -> None:
        nonlocal opened
        async with contextlib.AsyncExitStack() as stack:
            async with limiter:
                link = await stack.enter_async_context(opener())
                await link.send(b"hello")
                await link.recv()
            opened += 1
            if opened == count:
                all_open.set()
            await release.wait()

    async with trio.open_nursery() as nursery:
        for _ in range(count):
            nursery.start_soon(hold_one)
        await all_open.wait()
        on_all_open()
        release.set()


async def measure_idle(
    library: str, server: ServerHandle, context: ssl.SSLContext, count: int
) -> IdleResult:
    """Server RSS growth per idle connection, against a baseline taken after a warm-up."""
    opener = partial(open_link, library, server.port, "/idle", context)
    # The first connections pay for lazy imports and allocator arenas; keep that out of the slope.
    await hold_connections(opener, WARMUP_CONNECTIONS, lambda: None)
    before = process_rss_b(server.pid)
    after: list[int] = []
    await hold_connections(opener, count, lambda: after.append(process_rss_b(server.pid)))
    return IdleResult(
        connections=count,
        rss_before_b=before,
        rss_after_b=after[0],
        rss_per_connection_b=(after[0] - before) / count,
    )


async def client_case(
    settings: Settings, library: str, case: str, server: ServerHandle, tls: TlsFiles
) -> CaseResult:
    """Run one case as the client against ``server``."""
    context = client_ssl_context(tls)
    if case == "idle":
        return await measure_idle(library, server, context, settings.idle_connections)
    async with open_link(library, server.port, f"/{case}", context) as link:
        if case == "stream":
            return await measure_stream(link, settings, server.pid)
        return await measure_echo(link, settings)


# --------------------------------------------------------------------------- orchestration


def describe(result: CaseResult) -> str:
    """One progress line for a finished run."""
    if isinstance(result, StreamResult):
        return f"{result.messages_per_s:,.0f} msg/s, {result.mb_per_s:,.1f} MB/s"
    if isinstance(result, EchoResult):
        return f"{result.round_trips_per_s:,.0f} rt/s, p99 {result.p99_ms:.3f} ms"
    return f"{result.rss_per_connection_b / 1024:,.1f} KiB/connection"


def run_all(settings: Settings, tls: TlsFiles) -> dict[str, dict[str, list[dict[str, float]]]]:
    """Every run of every case for every library, interleaved so drift hits all alike."""
    cases: dict[str, dict[str, list[dict[str, float]]]] = {
        library: {case: [] for case in settings.cases} for library in settings.libraries
    }
    for run in range(1, settings.runs + 1):
        for library in settings.libraries:
            for case in settings.cases:
                print(f"[{run}/{settings.runs}] {library} {case} ...", end="", file=sys.stderr)
                sys.stderr.flush()
                with running_server(library, tls) as server:
                    result = trio.run(client_case, settings, library, case, server, tls)
                print(" " + describe(result), file=sys.stderr)
                cases[library][case].append(asdict(result))
    return cases


def report(settings: Settings, cases: dict[str, dict[str, list[dict[str, float]]]]) -> str:
    """Write the JSON results file and return the Markdown table."""
    summary = summarise(cases)
    document = {
        "schema": SCHEMA,
        "machine": machine_info(),
        "parameters": {
            "duration_s": settings.duration_s,
            "runs": settings.runs,
            "window": settings.window,
            "message_size_b": settings.message_size_b,
            "ack_size_b": ACK.size,
            "echo_size_b": settings.echo_size_b,
            "idle_connections": settings.idle_connections,
            "tls": "TLS 1.2+ (negotiates 1.3), ECDSA P-256, loopback",
            "compression": None,
        },
        "cases": cases,
        "summary": summary,
    }
    settings.output.parent.mkdir(parents=True, exist_ok=True)
    settings.output.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return markdown_table(summary, settings.libraries)


# --------------------------------------------------------------------------- command line


def _positive(kind: Callable[[str], float]) -> Callable[[str], float]:
    def parse(text: str) -> float:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value

    return parse


def _choices(allowed: Sequence[str]) -> Callable[[str], tuple[str, ...]]:
    def parse(text: str) -> tuple[str, ...]:
        chosen = tuple(item.strip() for item in text.split(",") if item.strip())
        unknown = [item for item in chosen if item not in allowed]
        if unknown or not chosen:
            raise argparse.ArgumentTypeError(f"choose from {', '.join(allowed)}")
        return chosen

    return parse


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface (``--serve`` is internal: the child server process)."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.ws_choice",
        description=(
            "Compare WebSocket libraries for the gateway-core link over TLS on loopback: "
            "pipelined 40 KiB stream, 100-byte echo, memory per idle connection."
        ),
    )
    add = parser.add_argument
    lib_help = "comma-separated, default all: " + ",".join(LIBRARIES)
    output_help = "results JSON (default bench/results/ws_choice.json)"
    add("--duration", type=_positive(float), default=5.0, metavar="S", help="seconds per run (5)")
    add("--runs", type=_positive(int), default=3, metavar="N", help="runs per case (3)")
    add("--window", type=_positive(int), default=16, metavar="N", help="unacked messages (16)")
    add(
        "--message-size",
        type=_positive(int),
        default=40 * 1024,
        metavar="B",
        help="stream message bytes (40960)",
    )
    add("--echo-size", type=_positive(int), default=100, metavar="B", help="echo bytes (100)")
    add(
        "--idle-connections",
        type=_positive(int),
        default=500,
        metavar="N",
        help="idle connections (500)",
    )
    add("--libraries", type=_choices(LIBRARIES), default=LIBRARIES, metavar="L,...", help=lib_help)
    add("--cases", type=_choices(CASES), default=CASES, metavar="C,...", help=",".join(CASES))
    add("--output", type=Path, default=DEFAULT_OUTPUT, metavar="PATH", help=output_help)
    add("--serve", choices=LIBRARIES, help=argparse.SUPPRESS)
    add("--cert", type=Path, help=argparse.SUPPRESS)
    add("--key", type=Path, help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.serve is not None:
        if args.cert is None or args.key is None:
            parser.error("--serve needs --cert and --key")
        trio.run(server_main, args.serve, TlsFiles(cert=args.cert, key=args.key))
        return 0
    if max(args.message_size, args.echo_size) > MAX_MESSAGE_SIZE_B:
        parser.error(f"message sizes must be <= {MAX_MESSAGE_SIZE_B}")
    settings = Settings(
        duration_s=args.duration,
        runs=int(args.runs),
        window=int(args.window),
        message_size_b=int(args.message_size),
        echo_size_b=int(args.echo_size),
        idle_connections=int(args.idle_connections),
        libraries=args.libraries,
        cases=args.cases,
        output=args.output,
    )
    with tempfile.TemporaryDirectory(prefix="ws-choice-") as directory:
        cases = run_all(settings, write_self_signed(Path(directory)))
    print(report(settings, cases))
    print(f"results written to {settings.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
