"""The running core's garbage collector settings (see ``cloud.app.serve_core``)."""

from __future__ import annotations

import gc

from cloud.app import FULL_COLLECTION_THRESHOLD
from tests.support import RunningCore


async def test_running_core_collects_its_oldest_generation_less_often(
    core: RunningCore,
) -> None:
    young, middle, oldest = gc.get_threshold()
    assert oldest == FULL_COLLECTION_THRESHOLD > 10  # CPython's default is 10
    assert young > 0 and middle > 0  # the younger generations are still collected
    assert gc.isenabled()
