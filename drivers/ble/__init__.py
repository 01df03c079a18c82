"""Bluetooth Low Energy: sans-IO advert codecs and the Trio drivers built on them.

Codecs (no I/O): :mod:`~drivers.ble.bthome` (BTHome v2, with encryption),
:mod:`~drivers.ble.ruuvi` (RuuviTag data format 5), :mod:`~drivers.ble.ibeacon`,
:mod:`~drivers.ble.eddystone` (UID, URL, TLM), routed by :mod:`~drivers.ble.formats`.
Drivers: :mod:`~drivers.ble.scanner` (kind ``ble-adverts``), which reaches bleak through
:mod:`~drivers.ble.bridge`. Importing this package does not import bleak.
"""

from __future__ import annotations

from drivers.ble.advert import Advert, Decoded
from drivers.ble.formats import FORMATS, decode_advert

__all__ = ["FORMATS", "Advert", "Decoded", "decode_advert"]
