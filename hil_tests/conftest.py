"""Hardware-in-the-loop options: each test names the hardware it needs and is skipped,
with the option to pass, when that hardware was not given on the command line."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("hil", "hardware-in-the-loop")
    group.addoption(
        "--serial-port",
        help="serial device with an NMEA 0183 GPS receiver attached, e.g. /dev/ttyUSB0",
    )
    group.addoption("--baudrate", type=int, default=9600, help="its line speed (9600)")


@pytest.fixture
def serial_port(request: pytest.FixtureRequest) -> str:
    port: str | None = request.config.getoption("--serial-port")
    if not port:
        pytest.skip("no GPS receiver given: run with --serial-port /dev/ttyUSB0")
    return port
