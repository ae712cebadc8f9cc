"""The synthetic radiographs that tests, sample data and the tiny test models are made of."""

import numpy as np
import pytest

from cxr_edge.testing.synthetic import lesion_locations, synthetic_xray


def test_same_seed_same_picture_and_requested_size():
    a = synthetic_xray(7, size=(96, 80))
    assert a.mode == "L" and a.size == (96, 80)
    assert np.array_equal(np.asarray(a), np.asarray(synthetic_xray(7, size=(96, 80))))
    assert not np.array_equal(np.asarray(a), np.asarray(synthetic_xray(8, size=(96, 80))))


def test_looks_like_a_radiograph_dark_lungs_bright_spine():
    px = np.asarray(synthetic_xray(1), dtype=float)
    left_lung, spine = px[90:120, 40:60].mean(), px[90:120, 108:116].mean()
    assert spine > left_lung + 60


@pytest.mark.parametrize("n", [1, 2, 3])
def test_lesions_only_add_bright_blobs_where_lesion_locations_says(n):
    with_blobs = np.asarray(synthetic_xray(3, lesion=True, n_lesions=n), dtype=float)
    diff = with_blobs - np.asarray(synthetic_xray(3), dtype=float)
    mask = np.zeros(diff.shape, bool)
    for blob in lesion_locations(3, n_lesions=n):
        left, top, right, bottom = blob.box()
        assert diff[int(blob.y), int(blob.x)] > 40
        mask[max(top, 0) : bottom + 1, max(left, 0) : right + 1] = True
    assert np.abs(diff[~mask]).max() <= 12  # outside the boxes only the blobs' faint tails


def test_lesion_count_is_checked():
    with pytest.raises(ValueError, match="n_lesions"):
        synthetic_xray(0, lesion=True, n_lesions=9)
