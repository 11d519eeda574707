"""Metrics against exact values and an independent brute-force computation."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from midseg.errors import InvalidInputError
from midseg.metrics import assd, clicks_to_reach, dice, hd95


def _brute_surface_points(mask, spacing):
    """Surface voxels by explicit neighbour checks (outside = background), in mm."""
    pts = []
    for idx in zip(*np.nonzero(mask)):
        for axis in range(mask.ndim):
            for step in (-1, 1):
                n = list(idx)
                n[axis] += step
                if n[axis] < 0 or n[axis] >= mask.shape[axis] or not mask[tuple(n)]:
                    pts.append(idx)
                    break
            else:
                continue
            break
    return np.asarray(pts, float) * np.asarray(spacing)


def _brute(a, b, spacing):
    pa, pb = _brute_surface_points(a, spacing), _brute_surface_points(b, spacing)
    d = cdist(pa, pb)
    dab, dba = d.min(axis=1), d.min(axis=0)
    return (dab.mean() + dba.mean()) / 2, max(np.percentile(dab, 95), np.percentile(dba, 95))


def test_dice_exact_boxes():
    a = np.zeros((20, 20), bool)
    b = np.zeros((20, 20), bool)
    a[5:15, 5:15] = True
    b[5:15, 7:17] = True
    assert dice(a, b) == pytest.approx(2 * 80 / 200)
    assert dice(a, a) == 1.0


@pytest.mark.parametrize("ndim", [2, 3])
def test_surface_metrics_match_brute_force(ndim):
    rng = np.random.default_rng(ndim)
    shape = (12, 14, 10)[:ndim]
    spacing = (2.5, 0.7, 1.3)[:ndim]
    for _ in range(5):
        a = rng.random(shape) < 0.3
        b = rng.random(shape) < 0.3
        a[(slice(2, 6),) * ndim] = True
        ref_assd, ref_hd = _brute(a, b, spacing)
        assert assd(a, b, spacing) == pytest.approx(ref_assd, rel=1e-9)
        assert hd95(a, b, spacing) == pytest.approx(ref_hd, rel=1e-9)


def test_spacing_scales_distances():
    a = np.zeros((30, 30), bool)
    b = np.zeros((30, 30), bool)
    a[10:20, 10:20] = True
    b[10:20, 13:23] = True  # shifted 3 voxels along x
    assert hd95(a, b, (1.0, 1.0)) == pytest.approx(3.0)
    assert hd95(a, b, (1.0, 2.0)) == pytest.approx(6.0)
    assert hd95(a, b, (5.0, 1.0)) == pytest.approx(3.0)
    assert assd(a, b, (2.0, 2.0)) == pytest.approx(2 * assd(a, b))
    assert assd(a, b, (1.0, 2.0)) > assd(a, b)


def test_identical_masks_zero_distance():
    a = np.zeros((8, 9, 10), bool)
    a[2:6, 3:7, 1:9] = True
    assert assd(a, a) == 0.0 and hd95(a, a) == 0.0


def test_empty_masks_documented_values():
    z = np.zeros((5, 5), bool)
    o = z.copy()
    o[2, 2] = True
    assert dice(z, z) == 1.0 and assd(z, z) == 0.0 and hd95(z, z) == 0.0
    assert dice(z, o) == 0.0 and dice(o, z) == 0.0
    assert assd(z, o) == float("inf") and hd95(o, z) == float("inf")


def test_shape_mismatch_message():
    with pytest.raises(InvalidInputError, match=r"same shape, got \(3, 3\) and \(3, 4\)"):
        dice(np.zeros((3, 3)), np.zeros((3, 4)))
    with pytest.raises(InvalidInputError, match="spacing must have 2 values"):
        assd(np.ones((3, 3)), np.ones((3, 3)), spacing=(1, 1, 1))


def test_clicks_to_reach():
    assert clicks_to_reach([0.5, 0.8, 0.91, 0.95], 0.9) == 2
    assert clicks_to_reach([0.95], 0.9) == 0
    assert clicks_to_reach([0.1, 0.2], 0.9, cap=20) == 20
