"""``assetbook`` as a benchmark process: the real CLI plus a bench-only synthetic sensor.

``python -m bench.soak_process gateway run --config FILE`` is ``assetbook gateway run
--config FILE`` with one more driver kind registered, ``bench-synthetic``
(:class:`SyntheticLoadDriver`), so a real gateway process (driver → outbox → uplink) can be
fed at a rate the benchmark chooses while it runs. The kind exists only in this process: it
is not in :data:`drivers.registry.DRIVER_MODULES` of a product gateway, and a product config
naming it is refused.

A ``bench-synthetic`` sensor table::

    [[sensors]]
    kind = "bench-synthetic"
    name = "synthetic-0"
    device = "synthetic-0"
    rate_file = "/path/to/rate"   # read every 0.5 s

The rate file holds ``max`` (send as fast as the gateway takes samples), ``pause`` or a
number of samples per second; the driver re-reads it every ``CONTROL_POLL_S``. Each sample
carries a temperature and a humidity reading.

With ``ASSETBOOK_TRACEMALLOC=FILE`` in the environment the process runs under
:mod:`tracemalloc` and, when it exits, writes to ``FILE`` the 40 source lines whose memory grew
most since a snapshot taken after ``ASSETBOOK_TRACEMALLOC_WARMUP_S`` seconds (60): a leak hunt
for ``bench.soak``. Any ``assetbook`` command works (``core run`` too). It is slow; use it to
find a leak, not to measure.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import tracemalloc
from pathlib import Path
from typing import TYPE_CHECKING, Final

import trio

from drivers.base import DriverHealth, Sample
from drivers.errors import ConfigError
from protocol.events import Reading

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

KIND: Final = "bench-synthetic"
CONTROL_POLL_S: Final = 0.5
#: Paced sending wakes up this often and sends what is due, instead of sleeping per sample.
TICK_S: Final = 0.01
TRACEMALLOC_ENV: Final = "ASSETBOOK_TRACEMALLOC"
TRACEMALLOC_WARMUP_ENV: Final = "ASSETBOOK_TRACEMALLOC_WARMUP_S"
TRACEMALLOC_TOP: Final = 40


def parse_rate(text: str) -> float | None:
    """``max`` → 0.0 (unpaced), ``pause`` → None, a number → that many samples/s.

    Raises:
        ValueError: anything else, or a negative number.
    """
    text = text.strip()
    if text == "max":
        return 0.0
    if text in ("pause", ""):
        return None
    rate = float(text)
    if rate < 0:
        raise ValueError(f"a rate cannot be negative: {rate}")
    return rate


class SyntheticLoadDriver:
    """Produces samples at the rate its rate file names (implements ``drivers.base.Driver``)."""

    def __init__(self, name: str, device: str, rate_file: Path) -> None:
        self.name = name
        self.device = device
        self.rate_file = rate_file
        self.health = DriverHealth()
        self._n = 0
        self._schedule: tuple[float, float, int] | None = None  # (rate, started, sent)

    async def run(
        self,
        send: trio.MemorySendChannel[Sample],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        task_status.started()
        while True:
            rate = self._read_rate()
            until = trio.current_time() + CONTROL_POLL_S
            if rate is None:
                self._schedule = None
                await trio.sleep_until(until)
            elif rate == 0:
                self._schedule = None
                while trio.current_time() < until:
                    await self._send(send)
            else:
                await self._paced(send, rate, until)

    async def _paced(self, send: trio.MemorySendChannel[Sample], rate: float, until: float) -> None:
        # One schedule for as long as the rate stays the same, so the offered rate is exact
        # over time: a sample late now (the gateway pushed back) is sent in the next tick.
        if self._schedule is None or self._schedule[0] != rate:
            self._schedule = (rate, trio.current_time(), 0)
        _, started, sent = self._schedule
        while (now := trio.current_time()) < until:
            due = int((now - started) * rate) - sent
            for _ in range(due):
                await self._send(send)
            sent += max(due, 0)
            await trio.sleep(TICK_S)
        self._schedule = (rate, started, sent)

    async def _send(self, send: trio.MemorySendChannel[Sample]) -> None:
        self._n += 1
        temperature = Reading("temperature", "Cel", 20 + self._n % 100 / 10)
        await send.send(Sample(self.device, (temperature, Reading("humidity", "%RH", 40.5))))
        self.health.samples += 1
        self.health.frames += 1

    def _read_rate(self) -> float | None:
        # A read of a few bytes of a local file, twice a second: cheaper than a thread hand-off,
        # and it keeps the driver deterministic under a virtual clock in tests.
        try:
            return parse_rate(self.rate_file.read_text())
        except (OSError, ValueError) as exc:
            # A missing or half-written file pauses the sensor rather than stopping it.
            self.health.count_error("rate_file", str(exc))
            return None


def make_driver(cfg: Mapping[str, object]) -> SyntheticLoadDriver:
    """Build a driver from a ``bench-synthetic`` sensor table.

    Raises:
        ConfigError: a missing or ill-typed key, or an unknown one.
    """
    unknown = sorted(set(cfg) - {"kind", "name", "device", "rate_file"})
    if unknown:
        raise ConfigError(key=unknown[0], reason=f"unknown key for a {KIND} driver")
    values: dict[str, str] = {}
    for key in ("name", "device", "rate_file"):
        value = cfg.get(key)
        if not isinstance(value, str) or not value:
            raise ConfigError(key=key, reason=f"must be a non-empty string, got {value!r}")
        values[key] = value
    return SyntheticLoadDriver(values["name"], values["device"], Path(values["rate_file"]))


def _start_tracemalloc(report: Path, warmup_s: float) -> None:
    tracemalloc.start()
    # Compared against a snapshot taken after warm-up, so caches filled at start-up do not
    # hide what grows afterwards; a process that ends sooner is compared with its start.
    baseline = [tracemalloc.take_snapshot()]
    timer = threading.Timer(warmup_s, lambda: baseline.append(tracemalloc.take_snapshot()))
    timer.daemon = True
    timer.start()

    def dump() -> None:
        stats = tracemalloc.take_snapshot().compare_to(baseline[-1], "lineno")
        lines = [str(stat) for stat in stats[:TRACEMALLOC_TOP]]
        report.write_text("\n".join(lines) + "\n")

    atexit.register(dump)


def main(argv: Sequence[str] | None = None) -> int:
    from assetbook.cli import main as assetbook_main
    from drivers.registry import DRIVER_MODULES

    DRIVER_MODULES[KIND] = "bench.soak_process"
    report = os.environ.get(TRACEMALLOC_ENV)
    if report:
        _start_tracemalloc(Path(report), float(os.environ.get(TRACEMALLOC_WARMUP_ENV, "60")))
    return assetbook_main(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    raise SystemExit(main())
