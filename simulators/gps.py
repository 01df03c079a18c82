"""A simulated NMEA 0183 GPS receiver on a pty, with fault injection and a record.

The receiver follows a closed route (waypoints, constant speed) and emits, per fix, an RMC
then a GGA sentence with GPS time advancing by ``step`` per fix, at ``rate`` fixes per
second of real time, for ``count`` fixes or forever.

Record: with ``--record FILE`` it writes one JSON object per line for every sample a
correct driver must produce (``{"type": "sample", "sentence", "time_ns", "readings":
[[name, unit, value], ...]}``; ``time_ns`` is null for a GGA sent before any intact RMC,
since GGA has no date) and one per injected fault (``{"type": "fault", "fault",
"bytes"}``). Values are rounded to what the wire carries before they are encoded, and the
record holds those rounded values converted to SenML units, so a driver's samples must equal
them up to floating-point rounding.

Faults (each every N fixes, counting from 1; the first fix is clean unless N is 1):

* ``garbage``: 1-16 noise bytes after the fix's sentences (never ``$``, ``!``, CR or LF,
  so a correct framer skips exactly those bytes);
* ``truncated``: the RMC is cut short before its checksum and the GGA follows at once;
* ``corrupt``: the GGA's checksum is wrong.

Faulty sentences produce no record sample, since a correct driver drops them.

Lifetime: after the last fix the simulator keeps the pty open until SIGINT/SIGTERM so a
reader can drain what is buffered. It holds the slave open itself, so writes never fail
for lack of a reader; unread output is buffered by the kernel and then writes wait.
pyserial discards buffered input when it opens a port, so start the reader first when every
fix matters.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import math
import os
import random
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

import trio

from drivers.nmea import FixQuality, Gga, Rmc, encode_gga, encode_rmc
from simulators.pty import link_stable_path, open_pty_pair

if TYPE_CHECKING:
    from typing import TextIO

NS_PER_DAY: Final = 86_400 * 10**9
WIRE_TIME_NS: Final = 10_000_000  # the encoder writes centiseconds
EARTH_RADIUS_M: Final = 6_371_008.8  # IUGG mean radius
METRES_PER_DEGREE: Final = EARTH_RADIUS_M * math.pi / 180
KNOT_MPS: Final = 1852 / 3600
# Noise alphabet: printable and control bytes, minus what would start or end a sentence.
_NOISE: Final = bytes(b for b in range(256) if b not in b"$!\r\n")
#: A loop around a city block in Munich (the classic GGA example sits nearby).
DEFAULT_ROUTE: Final = ((48.1173, 11.5167), (48.1190, 11.5167), (48.1190, 11.5200))


@dataclass(frozen=True, slots=True)
class Route:
    """A closed polyline walked at constant speed (legs are short: flat-earth geometry)."""

    waypoints: tuple[tuple[float, float], ...]
    speed_mps: float

    def __post_init__(self) -> None:
        if len(self.waypoints) < 2 or self.speed_mps < 0 or self._length() <= 0:
            raise ValueError("a route needs two distinct waypoints and a speed >= 0")

    def at(self, elapsed_s: float) -> tuple[float, float, float]:
        """Latitude, longitude and course (degrees) after ``elapsed_s`` seconds."""
        distance = (self.speed_mps * elapsed_s) % self._length()
        for start, end in self._legs():
            leg = _leg_length(start, end)
            if distance <= leg:
                t = distance / leg if leg else 0.0
                lat = start[0] + (end[0] - start[0]) * t
                lon = start[1] + (end[1] - start[1]) * t
                return lat, lon, _course(start, end)
            distance -= leg
        return *self.waypoints[0], 0.0  # unreachable but for float rounding

    def _legs(self) -> list[tuple[tuple[float, float], tuple[float, float]]]:
        points = self.waypoints
        return list(zip(points, points[1:] + points[:1], strict=True))

    def _length(self) -> float:
        return sum(_leg_length(a, b) for a, b in self._legs())


def _leg_xy(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float]:
    north = (b[0] - a[0]) * METRES_PER_DEGREE
    east = (b[1] - a[1]) * METRES_PER_DEGREE * math.cos(math.radians((a[0] + b[0]) / 2))
    return east, north


def _leg_length(a: tuple[float, float], b: tuple[float, float]) -> float:
    return math.hypot(*_leg_xy(a, b))


def _course(a: tuple[float, float], b: tuple[float, float]) -> float:
    east, north = _leg_xy(a, b)
    return math.degrees(math.atan2(east, north)) % 360.0


@dataclass(frozen=True, slots=True)
class Faults:
    """Fault injection periods in fixes (0 = never)."""

    garbage_every: int = 0
    truncate_every: int = 0
    corrupt_every: int = 0
    seed: int = 0


@dataclass(frozen=True, slots=True)
class FixOutput:
    """What one fix puts on the wire, and the record lines that describe it."""

    chunks: tuple[bytes, ...]
    records: tuple[dict[str, object], ...]


@dataclass(slots=True)
class GpsScript:
    """Deterministic source of fixes: :meth:`fix` gives the bytes and record of fix ``i``.

    Call :meth:`fix` with ``i`` = 0, 1, 2, ... in order (it remembers whether a date has
    been delivered yet).
    """

    route: Route
    start_ns: int
    step_ns: int
    faults: Faults = Faults()
    talker: str = "GP"
    altitude_m: float = 520.0
    _date_sent: bool = False
    _rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        if self.start_ns % WIRE_TIME_NS or self.step_ns % WIRE_TIME_NS or self.step_ns <= 0:
            raise ValueError("start and step must be positive multiples of 10 ms")
        self._rng = random.Random(self.faults.seed)  # noqa: S311 - test noise, not crypto

    def fix(self, i: int) -> FixOutput:
        """Bytes and record lines for fix number ``i`` (0-based)."""
        time_ns = self.start_ns + i * self.step_ns
        rmc, gga = self._sentences(i, time_ns)
        chunks: list[bytes] = []
        records: list[dict[str, object]] = []
        rmc_bytes = encode_rmc(rmc)
        if _due(self.faults.truncate_every, i):
            cut = self._rng.randint(1, len(rmc_bytes) - 5)  # always before "*hh\r\n"
            chunks.append(rmc_bytes[:cut])
            records.append({"type": "fault", "fault": "truncated", "bytes": cut})
        else:
            chunks.append(rmc_bytes)
            records.append(_record("RMC", time_ns, _rmc_readings(rmc)))
            self._date_sent = True
        gga_bytes = encode_gga(gga)
        if _due(self.faults.corrupt_every, i):
            chunks.append(_corrupt(gga_bytes))
            records.append({"type": "fault", "fault": "corrupt", "bytes": len(gga_bytes)})
        else:
            chunks.append(gga_bytes)
            gga_time = time_ns if self._date_sent else None
            records.append(_record("GGA", gga_time, _gga_readings(gga)))
        if _due(self.faults.garbage_every, i):
            noise = bytes(self._rng.choices(_NOISE, k=self._rng.randint(1, 16)))
            chunks.append(noise)
            records.append({"type": "fault", "fault": "garbage", "bytes": len(noise)})
        return FixOutput(tuple(chunks), tuple(records))

    def _sentences(self, i: int, time_ns: int) -> tuple[Rmc, Gga]:
        lat, lon, course = self.route.at((time_ns - self.start_ns) / 1e9)
        lat, lon = _wire_degrees(lat), _wire_degrees(lon)
        day, time_of_day = divmod(time_ns, NS_PER_DAY)
        rmc = Rmc(
            talker=self.talker,
            time_ns=time_of_day,
            valid=True,
            latitude=lat,
            longitude=lon,
            speed_knots=round(self.route.speed_mps / KNOT_MPS, 3),
            course_deg=round(course, 2) % 360.0,
            date=dt.date(1970, 1, 1) + dt.timedelta(days=day),
            magnetic_variation_deg=None,
            mode="A",
        )
        gga = Gga(
            talker=self.talker,
            time_ns=time_of_day,
            latitude=lat,
            longitude=lon,
            quality=FixQuality.GPS,
            satellites=6 + i % 6,
            hdop=round(0.8 + (i % 5) * 0.1, 2),
            altitude_m=round(self.altitude_m + (i % 10) * 0.1, 1),
            geoid_separation_m=46.9,
        )
        return rmc, gga


def _due(every: int, i: int) -> bool:
    return every > 0 and (i + 1) % every == 0


def _wire_degrees(value: float) -> float:
    # The encoder writes 1e-5 arc-minute; pre-round so the wire carries exactly this value.
    units = round(abs(value) * 60 * 10**5)
    return math.copysign(units / (60 * 10**5), value)


def _corrupt(sentence: bytes) -> bytes:
    star = sentence.rindex(b"*")
    wrong = int(sentence[star + 1 : star + 3], 16) ^ 0x5A
    return sentence[: star + 1] + b"%02X" % wrong + sentence[star + 3 :]


def _rmc_readings(rmc: Rmc) -> list[list[object]]:
    # Our own conversion (not the driver's), so the record checks the driver's units.
    assert rmc.speed_knots is not None
    assert rmc.course_deg is not None
    return [
        ["lat", "lat", rmc.latitude],
        ["lon", "lon", rmc.longitude],
        ["speed", "m/s", rmc.speed_knots * 1852 / 3600],
        ["course", "rad", rmc.course_deg * math.pi / 180],
    ]


def _gga_readings(gga: Gga) -> list[list[object]]:
    return [
        ["lat", "lat", gga.latitude],
        ["lon", "lon", gga.longitude],
        ["alt", "m", gga.altitude_m],
        ["sats", "count", gga.satellites],
        ["hdop", "/", gga.hdop],
        ["fix", "", int(gga.quality)],
    ]


def _record(sentence: str, time_ns: int | None, readings: list[list[object]]) -> dict[str, object]:
    return {"type": "sample", "sentence": sentence, "time_ns": time_ns, "readings": readings}


async def run_gps_simulator(
    stream: trio.abc.SendStream,
    script: GpsScript,
    *,
    rate_hz: float,
    count: int | None,
    record: TextIO | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Send ``count`` fixes (forever if ``None``) to ``stream`` at ``rate_hz`` per second.

    Each fix's record lines are written to ``record`` (and flushed) after its bytes are sent.
    """
    task_status.started()
    deadline = trio.current_time()
    indices = itertools.count() if count is None else range(count)
    for i in indices:
        output = script.fix(i)
        for chunk in output.chunks:
            await stream.send_all(chunk)
        if record is not None:
            for line in output.records:
                record.write(json.dumps(line) + "\n")
            record.flush()
        deadline += 1 / rate_hz
        await trio.sleep_until(deadline)


# --- command line -------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} is not > 0")
    return value


def _utc_ns(text: str) -> int:
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 date-time") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    seconds = int(when.timestamp())
    ns = seconds * 10**9 + when.microsecond * 1000
    return ns - ns % WIRE_TIME_NS


def _step_ns(text: str) -> int:
    ticks = round(float(text) * 100)
    if ticks <= 0 or not math.isclose(ticks / 100, float(text), abs_tol=1e-9):
        raise argparse.ArgumentTypeError(f"{text} is not a positive multiple of 0.01 s")
    return ticks * WIRE_TIME_NS


def _waypoints(text: str) -> tuple[tuple[float, float], ...]:
    try:
        pairs = [p.split(",") for p in text.split(";") if p.strip()]
        return tuple((float(lat), float(lon)) for lat, lon in pairs)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not 'lat,lon;lat,lon;...'") from None


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m simulators.gps`` command-line parser."""
    parser = argparse.ArgumentParser(
        prog="python -m simulators.gps",
        description=(
            "Simulate an NMEA 0183 GPS receiver on a pseudo-terminal. Prints "
            "'GPS simulator on /dev/pts/N', then sends an RMC and a GGA sentence per fix "
            "until --count fixes are sent, and keeps the pty open until SIGINT/SIGTERM so "
            "a reader can drain it. Open the pty (or --link) before the first fix: "
            "pyserial discards input that arrived before it opened the port."
        ),
    )
    add = parser.add_argument
    add("--count", type=_positive_int, default=None, help="fixes to send (default: forever)")
    add("--rate", type=_positive_float, default=1.0, help="fixes per second of real time")
    add(
        "--start-time",
        type=_utc_ns,
        default=None,
        metavar="ISO8601",
        help="GPS time of the first fix, e.g. 2024-05-01T12:00:00Z (default: now)",
    )
    add(
        "--step",
        type=_step_ns,
        default=10**9,
        metavar="SECONDS",
        help="GPS time between fixes, a multiple of 0.01 s (default: 1)",
    )
    add("--speed", type=float, default=5.0, help="speed along the route in m/s (default: 5)")
    add(
        "--route",
        type=_waypoints,
        default=DEFAULT_ROUTE,
        metavar="LAT,LON;LAT,LON;...",
        help="closed route of waypoints in decimal degrees (default: a block in Munich)",
    )
    add(
        "--record",
        type=argparse.FileType("w", encoding="utf-8"),
        metavar="FILE",
        help="write a JSON line per expected sample and per injected fault",
    )
    add(
        "--garbage-every",
        type=_positive_int,
        default=0,
        metavar="N",
        help="send noise bytes after every Nth fix",
    )
    add(
        "--truncate-every",
        type=_positive_int,
        default=0,
        metavar="N",
        help="cut the RMC of every Nth fix short",
    )
    add(
        "--corrupt-every",
        type=_positive_int,
        default=0,
        metavar="N",
        help="send the GGA of every Nth fix with a wrong checksum",
    )
    add("--seed", type=int, default=0, help="seed for the noise bytes and cut positions")
    add(
        "--link",
        metavar="PATH",
        help="create a symlink PATH -> the pty, replaced atomically, removed on exit",
    )
    add(
        "--hold",
        action="store_true",
        help="wait for a line on standard input before the first fix, so a reader can open "
        "the port first (pyserial discards what arrived before it opened)",
    )
    return parser  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Run the simulator from the command line; returns the process exit status."""
    args = build_parser().parse_args(argv)
    start = args.start_time if args.start_time is not None else time.time_ns()
    try:
        script = GpsScript(
            route=Route(args.route, args.speed),
            start_ns=start - start % WIRE_TIME_NS,
            step_ns=args.step,
            faults=Faults(args.garbage_every, args.truncate_every, args.corrupt_every, args.seed),
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    pair = open_pty_pair()
    try:
        if args.link:
            link_stable_path(args.link, pair.slave_path)
        print(f"GPS simulator on {pair.slave_path}", flush=True)
        trio.run(_serve, pair.master_fd, script, args)
    finally:
        if args.link and os.path.islink(args.link):
            os.unlink(args.link)
        pair.close()
        if args.record is not None:
            args.record.close()
    return 0


async def _serve(master_fd: int, script: GpsScript, args: argparse.Namespace) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:

            async def run_then_idle() -> None:
                stream = trio.lowlevel.FdStream(os.dup(master_fd))
                async with stream:
                    if args.hold:
                        print("holding: press Enter to start sending fixes", flush=True)
                        await trio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)
                    await run_gps_simulator(
                        stream, script, rate_hz=args.rate, count=args.count, record=args.record
                    )
                    if args.count is not None:
                        print(f"sent {args.count} fixes", flush=True)
                    await trio.sleep_forever()  # keep the pty for the reader to drain

            nursery.start_soon(run_then_idle)
            async for _ in signals:
                nursery.cancel_scope.cancel()
                break


if __name__ == "__main__":
    raise SystemExit(main())
