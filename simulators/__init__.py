"""Device simulators: real wire formats over real transports, with fault injection.

* :mod:`simulators.pty`: pseudo-terminal pairs, the serial transport of every serial
  simulator (the device side writes the master; the code under test opens the slave path
  with pyserial, exactly as it would a USB adapter).
* :mod:`simulators.gps`: an NMEA 0183 GPS receiver following a route
  (``python -m simulators.gps --help``).

Simulators build their bytes with the encoders in :mod:`drivers` and record what they sent
so tests can compare it with what arrived.
"""
