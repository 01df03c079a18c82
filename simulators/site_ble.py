"""BLE devices for a simulated site: any number of BTHome, Ruuvi, iBeacon and Eddystone
advertisers and GATT sensors, each at an address the scenario chooses, on the mock BlueZ of
a given D-Bus bus.

``python -m simulators.site_ble --bus ADDRESS [--period S] KIND=AA:BB:CC:DD:EE:FF ...``
starts the mock BlueZ (:mod:`simulators.ble.mock`) on that bus with the scanning adapter
``hci0`` plus one adapter per advertiser (the mock reports only the first advertisement of
an adapter), registers every advertisement the way a real BlueZ peripheral does, prints
``ready`` and advances every advertiser once per period until SIGINT/SIGTERM. A gateway
scanning ``hci0`` with ``DBUS_SYSTEM_BUS_ADDRESS`` set to the bus sees them through real
bleak. :mod:`simulators.ble` is the single-device-per-kind simulator with fault commands;
this one has no faults but as many devices as the site needs.

Values depend on the advertiser's position ``n`` (0, 1, ...) among those of its kind and on
the tick (0, 1, ...), so devices of one kind can be told apart:

* ``bthome``: temperature 20 + n + 0.25·(tick mod 4) Cel, humidity 40 + n %RH, battery 90 %
* ``ruuvi``: temperature 18 + n + 0.5·(tick mod 4) Cel, humidity 50 %RH,
  pressure 100 000 + 100·n Pa, sequence = tick
* ``ibeacon``: major 1, minor n + 1, measured power -59 dBm
* ``eddystone``: UID (instance n) on even ticks, TLM (3 V, 22 + n Cel) on odd ones
* ``gatt``: an Environmental Sensing + Battery sensor a central connects to
  (:mod:`simulators.ble.gatt_peripheral`; its values are ``values(tick, n)`` there),
  notifying new values every period

It does not simulate radio (RSSI is what the mock reports).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import uuid
from typing import TYPE_CHECKING, Final

from drivers.ble.advert import uuid16
from drivers.ble.bthome import BTHOME_UUID16, encode_bthome
from drivers.ble.eddystone import EDDYSTONE_UUID16, EddystoneTlm, EddystoneUid, encode_eddystone
from drivers.ble.ibeacon import APPLE_COMPANY_ID, IBeacon, encode_ibeacon
from drivers.ble.ruuvi import RUUVI_COMPANY_ID, Ruuvi5, encode_ruuvi5
from simulators.ble.mock import start_mock
from simulators.ble.peripherals import Advertisement, Payload, call, forget
from simulators.scenario import ADVERT_KINDS

if TYPE_CHECKING:
    from collections.abc import Sequence

    from dbus_fast.aio import MessageBus

SCANNER_ADDRESS: Final = "00:AB:00:00:00:00"
BEACON_UUID: Final = uuid.UUID("e2c56db5-dffb-48d2-b060-d0f5a71096e0")
EDDYSTONE_NAMESPACE: Final = bytes.fromhex("00010203040506070809")


def site_payload(kind: str, n: int, tick: int) -> Payload:
    """What the ``n``-th advertiser of ``kind`` sends at ``tick`` (module docstring)."""
    if kind == "bthome":
        objects = ((0x00, tick % 256), (0x01, 90), (0x02, 2000 + 100 * n + 25 * (tick % 4)),
                   (0x03, 4000 + 100 * n))  # fmt: skip
        return Payload({}, {uuid16(BTHOME_UUID16): encode_bthome(objects)})
    if kind == "ruuvi":
        frame = Ruuvi5(3600 + 200 * n + 100 * (tick % 4), 20000, 50000 + 100 * n, (0, 0, 1000),
                       1400, 22, 0, tick % 65535, bytes(6))  # fmt: skip
        return Payload({RUUVI_COMPANY_ID: encode_ruuvi5(frame)}, {})
    if kind == "ibeacon":
        return Payload({APPLE_COMPANY_ID: encode_ibeacon(IBeacon(BEACON_UUID, 1, n + 1, -59))}, {})
    frame_e: EddystoneUid | EddystoneTlm = (
        EddystoneUid(-20, EDDYSTONE_NAMESPACE, n.to_bytes(6, "big"))
        if tick % 2 == 0
        else EddystoneTlm(3000, (22 + n) * 256, tick, tick * 10)
    )
    return Payload({}, {uuid16(EDDYSTONE_UUID16): encode_eddystone(frame_e)})


class Advertiser:
    """One simulated advertiser on mock adapter ``hci{adapter}``."""

    def __init__(self, bus: MessageBus, kind: str, address: str, n: int, adapter: int) -> None:
        self.bus = bus
        self.kind = kind
        self.address = address
        self.n = n
        self.tick = 0
        self.adapter_path = f"/org/bluez/hci{adapter}"
        self.path = f"/org/assetbook/site/adv{adapter}"
        self.advert = Advertisement(site_payload(kind, n, 0))
        bus.export(self.path, self.advert)

    async def show(self) -> None:
        await call(self.bus, self.adapter_path, "org.bluez.LEAdvertisingManager1",
                   "RegisterAdvertisement", "oa{sv}", [self.path, {}])  # fmt: skip

    async def step(self) -> None:
        self.tick += 1
        self.advert.update(site_payload(self.kind, self.n, self.tick))
        # bluezoo reports a known device again only after it was forgotten (mock quirk 2).
        await forget(self.bus, self.address)


def parse_device(text: str) -> tuple[str, str]:
    """``KIND=ADDRESS`` → (kind, upper-case address)."""
    kind, sep, address = text.partition("=")
    if not sep or kind not in (*ADVERT_KINDS, "gatt"):
        kinds = ", ".join((*ADVERT_KINDS, "gatt"))
        raise argparse.ArgumentTypeError(f"{text!r} is not KIND=ADDRESS ({kinds})")
    return kind, address.upper()


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m simulators.site_ble`` command-line parser."""
    parser = argparse.ArgumentParser(
        prog="python -m simulators.site_ble",
        description="BLE advertisers (any number per kind) on a mock BlueZ on a given D-Bus.",
    )
    parser.add_argument("--bus", required=True, help="the D-Bus address to serve on")
    parser.add_argument("--period", type=float, default=1.0, help="advert period, s (1)")
    parser.add_argument("devices", nargs="+", type=parse_device, metavar="KIND=ADDRESS")
    return parser


async def _run(devices: list[tuple[str, str]], period: float) -> None:
    from dbus_fast import BusType
    from dbus_fast.aio import MessageBus

    await start_mock([SCANNER_ADDRESS] + [address for _, address in devices], 1)
    bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
    seen: dict[str, int] = {}
    advertisers = []
    sensors: list[asyncio.Task[None]] = []  # held: asyncio keeps only weak task references
    for adapter, (kind, address) in enumerate(devices, start=1):
        n = seen.get(kind, 0)
        seen[kind] = n + 1
        if kind == "gatt":
            sensors.append(await _start_gatt(bus, address, adapter, n, period))
        else:
            advertisers.append(Advertiser(bus, kind, address, n, adapter))
    for advertiser in advertisers:
        await advertiser.show()
    print("ready", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), period)
        if not stop.is_set():
            for advertiser in advertisers:
                await advertiser.step()


async def _start_gatt(
    bus: MessageBus, address: str, adapter: int, n: int, period: float
) -> asyncio.Task[None]:
    """Start GATT sensor ``n`` (values: simulators.ble.gatt_peripheral.values with index n)
    and return its task once it is registered with the mock."""
    from simulators.ble.gatt import run_gatt_peripheral

    registered = asyncio.Event()
    sensor = run_gatt_peripheral(
        bus, address, adapter, index=n, period_s=period, on_ready=lambda _: registered.set()
    )
    task = asyncio.create_task(sensor)
    waiter = asyncio.create_task(registered.wait())
    await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    if task.done():
        task.result()  # it failed before it was registered: raise its error
    return task


def main(argv: Sequence[str] | None = None) -> int:
    """Run until SIGINT/SIGTERM; returns 0."""
    args = build_parser().parse_args(argv)
    os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = args.bus  # the mock and dbus-fast use the system bus
    asyncio.run(_run(args.devices, args.period))
    return 0


if __name__ == "__main__":
    sys.exit(main())
