"""Tests of midseg.crop: boxes, clipping at the borders, crop/resize round trips, z-score."""

from __future__ import annotations

import itertools
import subprocess
import sys

import numpy as np
import pytest
from scipy import ndimage as ndi

from midseg import crop
from midseg.crop import GRID_2D, GRID_3D, Box, CropTransform, relaxed_bbox, zscore
from midseg.errors import InvalidInputError


def _ramp(shape, coef=None):
    """An affine function of the voxel index (linear interpolation reproduces it exactly)."""
    coef = coef if coef is not None else np.arange(1, len(shape) + 1, dtype=float)
    grids = np.indices(shape, dtype=np.float64)
    return sum(c * g for c, g in zip(coef, grids)) + 3.0


def _blob(shape, sigma_frac=0.25):
    grids = np.indices(shape, dtype=np.float64)
    c = [(s - 1) / 2 for s in shape]
    s2 = sum(((g - ci) / (sigma_frac * s)) ** 2 for g, ci, s in zip(grids, c, shape))
    return np.exp(-0.5 * s2)


# ----------------------------------------------------------------------- Box


def test_box_properties():
    b = Box((2, 3, 4), (5, 9, 6))
    assert b.shape == (3, 6, 2)
    assert b.ndim == 3
    assert b.slices == (slice(2, 5), slice(3, 9), slice(4, 6))
    assert np.zeros((10, 10, 10))[b.slices].shape == b.shape
    assert b.contains([(2, 3, 4), (4, 8, 5)])
    assert not b.contains([(2, 3, 4), (5, 8, 5)])  # stop is exclusive
    assert b.contains((3, 3, 4))
    assert b.contains(np.zeros((0, 3)))  # vacuous
    assert b.union(Box((0, 5, 5), (3, 6, 10))) == Box((0, 3, 4), (5, 9, 10))
    assert isinstance(b.start[0], int) and hash(b) == hash(Box([2, 3, 4], [5, 9, 6]))


@pytest.mark.parametrize(
    "start, stop",
    [((0, 0), (0, 5)), ((3, 0), (2, 5)), ((-1, 0), (2, 5)), ((0, 0), (2, 5, 3)), ((), ())],
)
def test_box_rejects_bad_bounds(start, stop):
    with pytest.raises(InvalidInputError, match="Box"):
        Box(start, stop)


def test_box_union_needs_same_ndim():
    with pytest.raises(InvalidInputError, match="2D box with a 3D"):
        Box((0, 0), (2, 2)).union(Box((0, 0, 0), (2, 2, 2)))


# --------------------------------------------------------------- relaxed_bbox


def test_relaxed_bbox_interior():
    b = relaxed_bbox([(10, 20), (15, 12)], (50, 60), margin=3)
    assert b == Box((7, 9), (19, 24))


def test_relaxed_bbox_default_margin():
    b = relaxed_bbox([(20, 20, 20)], (50, 50, 50))
    m = crop.DEFAULT_MARGIN
    assert b == Box((20 - m,) * 3, (21 + m,) * 3)


def test_relaxed_bbox_per_axis_margin():
    b = relaxed_bbox([(10, 10, 10), (12, 14, 16)], (40, 40, 40), margin=(1, 2, 3))
    assert b == Box((9, 8, 7), (14, 17, 20))


@pytest.mark.parametrize("shape", [(30, 40), (12, 20, 25)])
@pytest.mark.parametrize("margin", [0, 5, 100])
def test_relaxed_bbox_clips_on_every_border_and_corner(shape, margin):
    # every combination of (first, middle, last) index per axis: all corners,
    # edges and faces of the image, each as a lone click
    choices = [(0, s // 2, s - 1) for s in shape]
    for p in itertools.product(*choices):
        b = relaxed_bbox([p], shape, margin=margin)
        for k, s in enumerate(shape):
            assert b.start[k] == max(p[k] - margin, 0)
            assert b.stop[k] == min(p[k] + 1 + margin, s)
        img = np.zeros(shape)
        assert img[b.slices].shape == b.shape  # valid, non-negative slices
        assert b.contains([p])


def test_relaxed_bbox_two_opposite_corners_give_whole_image():
    shape = (7, 9, 11)
    b = relaxed_bbox([(0, 0, 0), (6, 8, 10)], shape, margin=2)
    assert b == Box((0, 0, 0), shape)


@pytest.mark.parametrize(
    "points, shape, match",
    [
        ([(5, 40)], (30, 40), r"outside the image"),
        ([(-1, 3)], (30, 40), r"outside the image"),
        ([], (30, 40), "empty"),
        (np.zeros((0, 2)), (30, 40), "empty"),
        ([(1, 2, 3)], (30, 40), "2 coordinates"),
        ([(1,)], (30,), "2 or 3 axes"),
        ([(1, 1, 1, 1)], (5, 5, 5, 5), "2 or 3 axes"),
        ([(np.nan, 1)], (30, 40), "NaN"),
    ],
)
def test_relaxed_bbox_errors(points, shape, match):
    with pytest.raises(InvalidInputError, match=match):
        relaxed_bbox(points, shape)


@pytest.mark.parametrize("margin", [-1, (1, 2, 3), "2", 1.5])
def test_relaxed_bbox_bad_margin(margin):
    with pytest.raises(InvalidInputError, match="margin"):
        relaxed_bbox([(3, 3)], (10, 10), margin=margin)


# ------------------------------------------------------------- CropTransform


def test_grid_constants():
    assert GRID_2D == (64, 64) and GRID_3D == (64, 96, 96)


@pytest.mark.parametrize("order", [0, 1, 3])
def test_to_grid_is_exact_crop_when_grid_equals_box(order):
    img = np.random.default_rng(0).random((30, 40, 50)).astype(np.float32)
    box = Box((3, 5, 7), (23, 35, 40))
    t = CropTransform(box, box.shape)
    np.testing.assert_allclose(t.to_grid(img, order=order), img[box.slices], atol=1e-6)


def test_mask_round_trip_exact_when_grid_equals_box():
    mask = np.random.default_rng(1).random((25, 30)) > 0.6
    box = Box((2, 4), (20, 29))
    t = CropTransform(box, box.shape)
    g = t.to_grid(mask, order=0)
    assert g.dtype == bool
    np.testing.assert_array_equal(g, mask[box.slices])
    np.testing.assert_array_equal(t.from_grid(g, order=0), mask[box.slices])
    full = t.paste(g, mask.shape, fill=False, order=0)
    np.testing.assert_array_equal(full[box.slices], mask[box.slices])
    assert not full.sum() - full[box.slices].sum()


@pytest.mark.parametrize(
    "shape, box, grid",
    [
        ((40, 50), Box((5, 3), (35, 45)), (64, 64)),  # upsample
        ((200, 180), Box((10, 20), (190, 170)), (64, 64)),  # downsample
        ((30, 60, 70), Box((2, 4, 6), (28, 55, 66)), (16, 96, 40)),  # mixed
    ],
)
def test_linear_round_trip_is_exact_on_affine_images(shape, box, grid):
    # linear interpolation reproduces an affine function exactly, both ways
    img = _ramp(shape)
    t = CropTransform(box, grid)
    g = t.to_grid(img)
    assert g.shape == grid and g.dtype == np.float32
    # grid voxel g sits at box coordinate g * (Lb - 1) / (Lg - 1)
    coords = np.indices(grid, dtype=np.float64)
    expect = (
        sum(
            (k + 1) * (s + c * (lb - 1) / (lg - 1))
            for k, (c, s, lb, lg) in enumerate(zip(coords, box.start, box.shape, grid))
        )
        + 3
    )
    np.testing.assert_allclose(g, expect, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(t.from_grid(g), img[box.slices], rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("order", [1, 3])
def test_round_trip_close_on_smooth_images(order):
    img = _blob((60, 80, 90))
    box = Box((5, 10, 8), (55, 70, 85))
    t = CropTransform(box, (64, 96, 96))
    back = t.from_grid(t.to_grid(img, order=order), order=order)
    assert back.shape == box.shape
    assert np.abs(back - img[box.slices]).max() < 2e-3
    # downsampling: coarser, still close for a smooth image
    t2 = CropTransform(box, (24, 32, 32))
    back2 = t2.from_grid(t2.to_grid(img, order=order), order=order)
    assert np.abs(back2 - img[box.slices]).max() < 2e-2


@pytest.mark.parametrize("order", [0, 1, 2, 3])
def test_resize_matches_scipy_reference(order):
    rng = np.random.default_rng(3)
    img = rng.random((33, 47)).astype(np.float32)
    box = Box((4, 6), (29, 40))
    grid = (64, 21)
    t = CropTransform(box, grid)
    scale = [(b - 1) / (g - 1) for b, g in zip(box.shape, grid)]
    ref = ndi.affine_transform(
        img[box.slices], scale, output_shape=grid, order=order, mode="nearest"
    )
    np.testing.assert_allclose(t.to_grid(img, order=order), ref, atol=1e-5)


def test_length_one_axes():
    img = _ramp((5, 20))
    t = CropTransform(Box((2, 0), (3, 20)), (4, 1))  # box length 1, grid length 1
    g = t.to_grid(img)
    assert g.shape == (4, 1)
    np.testing.assert_allclose(g[:, 0], img[2, :].mean())  # box centre on axis 1 (x = 9.5)
    np.testing.assert_allclose(t.from_grid(g)[0], img[2, :].mean())
    np.testing.assert_array_equal(t.points_to_grid([(2, 0), (2, 19)]), [[2, 0], [2, 0]])


@pytest.mark.parametrize("order", [0, 1])
def test_channel_first_equals_per_channel(order):
    rng = np.random.default_rng(4)
    img = rng.random((2, 20, 30, 40)).astype(np.float32)
    t = CropTransform(Box((1, 2, 3), (19, 28, 37)), (12, 40, 30))
    g = t.to_grid(img, order=order)
    assert g.shape == (2, 12, 40, 30)
    for c in range(2):
        np.testing.assert_array_equal(g[c], t.to_grid(img[c], order=order))
    back = t.paste(g, img.shape[1:], fill=-1.0, order=order)
    assert back.shape == img.shape
    for c in range(2):
        np.testing.assert_array_equal(back[c], t.paste(g[c], img.shape[1:], fill=-1.0, order=order))


def test_order0_keeps_dtype_and_labels():
    labels = np.random.default_rng(5).integers(0, 4, (30, 30)).astype(np.uint8)
    t = CropTransform(Box((0, 0), (30, 30)), (17, 45))
    g = t.to_grid(labels, order=0)
    assert g.dtype == np.uint8 and set(np.unique(g)) <= set(range(4))
    p = t.paste(g, labels.shape, fill=0, order=0)
    assert p.dtype == np.uint8


@pytest.mark.parametrize("grid", [(64, 64), (40, 31)])
def test_points_to_grid_consistent_with_to_grid(grid):
    box = Box((7, 11), (37, 42))  # 30 x 31, grid >= box
    t = CropTransform(box, grid)
    rng = np.random.default_rng(6)
    pts = np.column_stack([rng.integers(a, b, 50) for a, b in zip(box.start, box.stop)])
    gp = t.points_to_grid(pts)
    assert gp.dtype == np.int64 and gp.shape == pts.shape
    for p, q in zip(pts, gp):
        one_hot = np.zeros((50, 60), np.uint8)
        one_hot[tuple(p)] = 1
        assert t.to_grid(one_hot, order=0)[tuple(q)] == 1
    # corners of the box land on corners of the grid
    np.testing.assert_array_equal(
        t.points_to_grid([box.start, np.asarray(box.stop) - 1]), [[0, 0], np.asarray(grid) - 1]
    )


def test_points_to_grid_value_on_smooth_image_when_downsampling():
    img = _ramp((300, 200))
    box = Box((20, 10), (280, 190))
    t = CropTransform(box, (64, 64))
    g = t.to_grid(img)
    pts = np.array([(20, 10), (100, 100), (279, 189), (150, 33)])
    gp = t.points_to_grid(pts)
    # a grid step is ~4 image voxels; the point's value is within half a step
    step = (np.asarray(box.shape) - 1) / 63
    tol = 0.5 * (1 * step[0] + 2 * step[1]) + 1e-3
    for p, q in zip(pts, gp):
        assert abs(g[tuple(q)] - img[tuple(p)]) <= tol


def test_points_to_grid_rejects_points_outside_box():
    t = CropTransform(Box((5, 5), (10, 10)), (8, 8))
    with pytest.raises(InvalidInputError, match=r"\(10, 7\) lies outside the crop box"):
        t.points_to_grid([(7, 7), (10, 7)])
    assert t.points_to_grid(np.zeros((0, 2))).shape == (0, 2)


@pytest.mark.parametrize("fill", [0.0, -5.0, np.nan])
def test_paste_places_values_in_box_and_fill_elsewhere(fill):
    shape = (20, 30, 40)
    box = Box((0, 10, 30), (8, 25, 40))  # touches two borders
    t = CropTransform(box, (16, 16, 16))
    grid = np.full(t.grid_shape, 7.0, np.float32)
    out = t.paste(grid, shape, fill=fill)
    assert out.shape == shape and out.dtype == np.float32
    inside = np.zeros(shape, bool)
    inside[box.slices] = True
    np.testing.assert_allclose(out[inside], 7.0)
    np.testing.assert_array_equal(out[~inside], np.float32(fill))


def test_paste_order0_fill_must_fit_dtype():
    t = CropTransform(Box((0, 0), (4, 4)), (4, 4))
    with pytest.raises(InvalidInputError, match="fill=0.5"):
        t.paste(np.ones((4, 4), np.uint8), (10, 10), fill=0.5, order=0)


def test_paste_of_to_grid_reproduces_image_inside_box():
    img = _blob((50, 60))
    box = relaxed_bbox([(10, 12), (40, 45)], img.shape, margin=4)
    t = CropTransform(box, GRID_2D)
    out = t.paste(t.to_grid(img), img.shape, fill=0.0)
    assert np.abs(out[box.slices] - img[box.slices]).max() < 2e-3


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda t: t.to_grid(np.zeros((10, 10, 10, 10, 10))), "dimensions"),
        (lambda t: t.to_grid(np.zeros((30, 30, 10))), "does not fit"),
        (lambda t: t.to_grid(np.zeros((30, 30, 30)), order=7), "order"),
        (lambda t: t.to_grid(np.zeros((30, 30, 30)), order=1.0), "order"),
        (lambda t: t.from_grid(np.zeros((8, 8, 9))), r"spatial shape \(8, 8, 8\)"),
        (lambda t: t.paste(np.zeros((8, 8, 8)), (12, 30, 30)), "does not fit"),
        (lambda t: t.paste(np.zeros((8, 8, 8)), (30, 30)), "image_shape"),
        (lambda t: t.to_grid(np.zeros((30, 30, 30), dtype=object)), "dtype"),
    ],
)
def test_crop_transform_errors(call, match):
    t = CropTransform(Box((5, 5, 5), (20, 20, 20)), (8, 8, 8))
    with pytest.raises(InvalidInputError, match=match):
        call(t)


def test_crop_transform_validates_grid():
    with pytest.raises(InvalidInputError, match="grid_shape"):
        CropTransform(Box((0, 0), (5, 5)), (64, 64, 64))
    with pytest.raises(InvalidInputError, match="grid_shape"):
        CropTransform(Box((0, 0), (5, 5)), (64, 0))
    with pytest.raises(InvalidInputError, match="Box"):
        CropTransform(((0, 0), (5, 5)), (64, 64))


def test_grid_spacing():
    t = CropTransform(Box((0, 0, 0), (33, 65, 129)), (17, 65, 65))
    np.testing.assert_allclose(t.grid_spacing((2.0, 1.0, 0.5)), [4.0, 1.0, 1.0])


# ---------------------------------------------------------------------- zscore


def test_zscore_scalar():
    x = np.random.default_rng(7).normal(100, 15, (20, 30)).astype(np.float64)
    z = zscore(x)
    assert z.dtype == np.float32 and z.shape == x.shape
    assert abs(float(z.mean())) < 1e-5 and abs(float(z.std()) - 1) < 1e-5


def test_zscore_per_channel():
    rng = np.random.default_rng(8)
    x = np.stack([rng.normal(5, 2, (10, 12, 14)), rng.normal(-300, 80, (10, 12, 14))])
    z = zscore(x, channel_axis=0)
    np.testing.assert_allclose(z.mean(axis=(1, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(z.std(axis=(1, 2, 3)), 1, atol=1e-5)
    zl = zscore(np.moveaxis(x, 0, -1), channel_axis=-1)
    np.testing.assert_allclose(np.moveaxis(zl, -1, 0), z, atol=1e-6)


@pytest.mark.parametrize("value", [0.0, 0.1, 1e6, 7])
def test_zscore_constant_gives_zeros(value):
    x = np.full((9, 11), value)
    z = zscore(x)
    assert z.dtype == np.float32 and np.all(z == 0)
    both = zscore(np.stack([x, np.arange(99.0).reshape(9, 11)]), channel_axis=0)
    assert np.all(both[0] == 0) and np.all(np.isfinite(both))


def test_zscore_errors():
    with pytest.raises(InvalidInputError, match="NaN"):
        zscore(np.array([[1.0, np.nan]]))
    with pytest.raises(InvalidInputError, match="NaN"):
        zscore(np.array([[[1.0, np.inf]]]), channel_axis=0)
    with pytest.raises(InvalidInputError, match="channel_axis"):
        zscore(np.zeros((2, 3, 4)), channel_axis=3)


def test_crop_does_not_import_torch():
    code = (
        "import sys, numpy as np; import midseg.crop as c, midseg.data_sim as d; "
        "t = c.CropTransform(c.Box((0, 0), (5, 5)), (8, 8)); t.to_grid(np.zeros((5, 5))); "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
