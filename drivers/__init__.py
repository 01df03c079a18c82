"""Sensor drivers: sans-IO codecs (bytes in, values or a typed error out) and thin Trio
adapters that move bytes between a transport (serial port, BLE) and a codec.

Codecs in this package import neither ``trio`` nor any I/O library; adapters live in modules
named ``*_io.py`` or in ``drivers.serial_port``. ``drivers.base`` holds the interface the
gateway runs drivers through.
"""
