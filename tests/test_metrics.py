"""Metrics against exact values and an independent brute-force computation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from midseg.errors import InvalidInputError
from midseg.metrics import assd, auc, clicks_to_reach, consistent_improvement, dice, hd95, noc


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


def test_noc_first_click_reaching_target_or_cap():
    d = [0.5, 0.8, 0.86, 0.88, 0.91, 0.95]
    assert noc(d, 0.85) == 2
    assert noc(d, 0.90) == 4
    assert noc(d, 0.5) == 0  # stage 1 already there
    assert noc(d, 0.99) == 20  # never reached: the cap
    assert noc(d, 0.99, cap=7) == 7
    assert noc((x for x in d), 0.9) == 4  # any iterable of floats
    with pytest.raises(InvalidInputError, match="target Dice"):
        noc(d, 85)


def test_auc_pads_with_the_last_value_and_cuts_after_k():
    assert auc([0.5, 1.0], clicks=3) == pytest.approx((0.5 + 1 + 1 + 1) / 4)
    assert auc([0.2, 0.4, 0.6, 0.8], clicks=1) == pytest.approx(0.3)
    assert auc([0.7]) == pytest.approx(0.7)  # K = 10 by default: 11 equal values
    assert auc([0.0] + [1.0] * 10) == pytest.approx(10 / 11)
    with pytest.raises(InvalidInputError, match="at least one"):
        auc([])


def test_consistent_improvement_counts_only_clicks_made():
    assert consistent_improvement([0.5, 0.6, 0.6, 0.55, 0.7]) == (2, 4)
    assert consistent_improvement([0.5, 0.6, 0.6], made=[True, False]) == (1, 1)
    assert consistent_improvement([0.5, 0.6, 0.7], made=[False, False]) == (0, 0)
    assert consistent_improvement([0.9]) == (0, 0)
    assert consistent_improvement([0.9, 0.8, 0.7]) == (0, 2)
