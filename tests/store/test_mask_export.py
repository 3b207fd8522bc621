"""COCO uncompressed RLE as pycocotools reads it: column-major runs, background first."""

import numpy as np
import pytest

from drrkit.store.mask_export import rle_counts, rle_decode


def test_rle_runs_are_column_major_and_start_with_background():
    mask = np.array([[1, 0, 0],
                     [1, 1, 0]], dtype=bool)  # Fortran order: 1 1 | 0 1 | 0 0
    assert rle_counts(mask) == [0, 2, 1, 1, 2]
    assert rle_counts(~mask) == [2, 1, 1, 2]
    assert rle_counts(np.zeros((2, 2), bool)) == [4]


def test_rle_round_trips_random_masks():
    rng = np.random.default_rng(0)
    for shape in [(1, 1), (5, 7), (48, 48)]:
        mask = rng.random(shape) < 0.3
        counts = rle_counts(mask)
        assert sum(counts) == mask.size
        np.testing.assert_array_equal(rle_decode(counts, *shape), mask)
    with pytest.raises(ValueError, match="covers 3 pixels"):
        rle_decode([1, 2], 2, 2)
