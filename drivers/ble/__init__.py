"""Bluetooth Low Energy: sans-IO codecs and the Trio drivers built on them.

Codecs (no I/O): :mod:`~drivers.ble.bthome` (BTHome v2, with encryption),
:mod:`~drivers.ble.ruuvi` (RuuviTag data format 5), :mod:`~drivers.ble.ibeacon`,
:mod:`~drivers.ble.eddystone` (UID, URL, TLM), routed by :mod:`~drivers.ble.formats`;
:mod:`~drivers.ble.ess` (GATT Environmental Sensing and Battery characteristics).
Drivers: :mod:`~drivers.ble.scanner` (kind ``ble-adverts``) and :mod:`~drivers.ble.gatt`
(kind ``ble-gatt``, sans-IO parts in :mod:`~drivers.ble.gatt_session`), which reach bleak
through :mod:`~drivers.ble.bridge`. Importing this package does not import bleak.
"""

from __future__ import annotations

from drivers.ble.advert import Advert, Decoded
from drivers.ble.formats import FORMATS, decode_advert

__all__ = ["FORMATS", "Advert", "Decoded", "decode_advert"]
