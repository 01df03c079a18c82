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
    group.addoption("--ble-adapter", help="BlueZ adapter to scan with, e.g. hci0")
    group.addoption(
        "--ble-gatt-address",
        help="address of a BLE sensor offering the Environmental Sensing service, e.g. "
        "AA:BB:CC:DD:EE:FF (uses --ble-adapter, default hci0)",
    )
    group.addoption(
        "--modbus-port",
        help="RS-485 adapter with a Modbus RTU slave attached, e.g. /dev/ttyUSB1",
    )
    group.addoption("--modbus-baudrate", type=int, default=9600, help="its line speed (9600)")
    group.addoption("--modbus-parity", default="E", help="E, N or O (E)")
    group.addoption("--modbus-slave", type=int, default=1, help="slave id to read (1)")
    group.addoption(
        "--modbus-register",
        default="3:0",
        help="FUNCTION:ADDRESS of one uint16 register the slave answers (3:0)",
    )
    group.addoption(
        "--node-port",
        help="UART of a board running firmware/ (node protocol), e.g. /dev/ttyACM0",
    )
    group.addoption("--node-baudrate", type=int, default=115200, help="its speed (115200)")


@pytest.fixture
def serial_port(request: pytest.FixtureRequest) -> str:
    port: str | None = request.config.getoption("--serial-port")
    if not port:
        pytest.skip("no GPS receiver given: run with --serial-port /dev/ttyUSB0")
    return port


@pytest.fixture
def ble_adapter(request: pytest.FixtureRequest) -> str:
    adapter: str | None = request.config.getoption("--ble-adapter")
    if not adapter:
        pytest.skip("no Bluetooth adapter given: run with --ble-adapter hci0")
    return adapter


@pytest.fixture
def modbus_port(request: pytest.FixtureRequest) -> str:
    port: str | None = request.config.getoption("--modbus-port")
    if not port:
        pytest.skip("no Modbus RTU slave given: run with --modbus-port /dev/ttyUSB1")
    return port


@pytest.fixture
def node_port(request: pytest.FixtureRequest) -> str:
    port: str | None = request.config.getoption("--node-port")
    if not port:
        pytest.skip("no node board given: run with --node-port /dev/ttyACM0")
    return port


@pytest.fixture
def ble_gatt_address(request: pytest.FixtureRequest) -> str:
    address: str | None = request.config.getoption("--ble-gatt-address")
    if not address:
        pytest.skip("no GATT sensor given: run with --ble-gatt-address AA:BB:CC:DD:EE:FF")
    return address.upper()
