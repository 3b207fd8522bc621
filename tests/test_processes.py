"""drrkit/processes.py: spawned maps keep input order and raise what a process raised."""

import os

import pytest

from drrkit.processes import MAX_JOBS, cores, spawn_map


def _power(base, exponent):
    if base < 0:
        raise ValueError(f"negative base {base}")
    return base ** exponent


def test_cores_is_bounded():
    assert cores() == max(1, min(MAX_JOBS, os.cpu_count() or 1))
    assert cores(1) == 1 and cores(0) == 1 and cores(10_000) == (os.cpu_count() or 1)


@pytest.mark.timeout(120)
def test_spawn_map_keeps_order_and_raises_process_errors():
    bases, exponents = list(range(40)), [2] * 40
    assert spawn_map(_power, bases, exponents, jobs=2, chunksize=3) == [b * b for b in bases]
    with pytest.raises(ValueError, match="negative base -1"):
        spawn_map(_power, [1, -1, 2], [1, 1, 1], jobs=2)
