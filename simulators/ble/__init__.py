"""BLE simulator: a private D-Bus, a mock BlueZ with several adapters, simulated peripherals.

``main(argv)`` (wired as ``assetbook sim ble``) starts a private ``dbus-daemon`` (or uses
``--bus ADDRESS``), the mock BlueZ (:mod:`simulators.ble.mock`) with the scanning adapter
``hci0`` plus one adapter per peripheral, and the peripherals of
:mod:`simulators.ble.peripherals`. It prints ``DBUS_SYSTEM_BUS_ADDRESS=<address>`` and then
``ready`` on stdout; point a gateway at that bus (set the variable) to scan ``hci0``.

Fault injection, one command per line on stdin (also ``--stall-after S``):
``stall`` (the scanning adapter stops reporting), ``hide KIND`` / ``show KIND`` (a device
disappears / comes back), ``corrupt KIND N`` (its next N adverts are damaged). Runs until
stdin closes (when reading commands) or it is interrupted.
"""

from __future__ import annotations

from simulators.ble.cli import main

__all__ = ["main"]
