"""Modbus RTU: register maps (``registers``), the master codec on pymodbus's PDU layer
(``rtu``), the single owner of an RS-485 port (``bus``, Trio) and the polling driver
(``driver``). Why pymodbus is used this way: ``docs/decisions/modbus.md``.
"""
