"""The garbage-collector tuning every service applies once it has started."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from services.common.runner import GC_GEN0_THRESHOLD, tune_garbage_collector


@pytest.fixture
def restored_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restored_gc")
def test_start_up_objects_are_frozen_and_generation_0_is_collected_less_often() -> None:
    gc.unfreeze()
    _, gen1, gen2 = gc.get_threshold()
    long_lived = [{"service": "router"} for _ in range(1000)]

    tune_garbage_collector()

    assert gc.get_freeze_count() >= len(long_lived)
    assert gc.get_threshold() == (GC_GEN0_THRESHOLD, gen1, gen2)
    assert gc.isenabled()
