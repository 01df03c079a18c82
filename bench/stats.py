"""Small statistics shared by the benchmarks; pure, standard library only (cheap to import in
the processes a benchmark measures)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence


def percentile(samples: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (the smallest sample with at least ``fraction`` of samples <= it).

    Raises:
        ValueError: ``samples`` is empty or ``fraction`` is outside (0, 1].
    """
    if not samples:
        raise ValueError("percentile of no samples")
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction {fraction} outside (0, 1]")
    ordered = sorted(samples)
    return ordered[math.ceil(fraction * len(ordered)) - 1]
