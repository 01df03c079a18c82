"""The AssetBook gateway: reads sensors, stamps their samples into events, keeps them in a
durable outbox and sends them to the core.

Modules:

* :mod:`gateway.config`: the gateway's TOML configuration.
* :mod:`gateway.clock`: boot id, clocks and the :class:`~gateway.clock.Stamper`.
* :mod:`gateway.outbox`: the durable, bounded, SQLite-backed outbox.
* :mod:`gateway.errors`: the gateway's error tree.

This package module imports nothing itself, so importing one submodule does not pull in the
others (or Trio).
"""
