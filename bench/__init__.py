"""Benchmarks: they measure and write results; they never assert speed.

Each module is a command (``python -m bench.<name> --help``) that writes its raw figures under
``bench/results/``. Targets and the figures that matter live in ``docs/``, not here.
"""
