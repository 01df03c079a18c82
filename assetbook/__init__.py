"""AssetBook: the ``assetbook`` command that runs and administers the core, gateways and
simulators."""

__version__ = "0.1.0"
