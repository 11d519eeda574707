"""Tests of midseg.data_sim: interior margin points, the robot user, ellipsoid scribbles."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from midseg import crop
from midseg.data_sim import (
    DEFAULT_EXTREME_JITTER,
    DEFAULT_INWARD,
    Click,
    corrective_click,
    ellipsoid_scribble,
    interior_margin_points,
    simulate_scribbles,
)
from midseg.errors import InvalidInputError


# ------------------------------------------------------------- random shapes


def _ellipsoid(shape, rng, centre_range=(0.0, 1.0), axes_range=(1.0, 0.45)):
    """A randomly rotated ellipse/ellipsoid; the centre may sit on the image border."""
    ndim = len(shape)
    s = np.asarray(shape, float)
    centre = rng.uniform(*centre_range, ndim) * (s - 1)
    axes = rng.uniform(axes_range[0], np.maximum(axes_range[0] + 0.5, axes_range[1] * s))
    rot, _ = np.linalg.qr(rng.normal(size=(ndim, ndim)))
    coords = np.indices(shape, dtype=float).reshape(ndim, -1).T - centre
    q = ((coords @ rot) / axes) ** 2
    return (q.sum(axis=1) <= 1).reshape(shape)


def _blob(shape, rng):
    noise = ndi.gaussian_filter(rng.normal(size=shape), sigma=rng.uniform(1.5, 4))
    return noise > np.quantile(noise, rng.uniform(0.6, 0.95))


def _thin(shape, rng):
    m = np.zeros(shape, bool)
    axis = rng.integers(len(shape))
    width = rng.integers(1, 3)
    idx = [slice(None)] * len(shape)
    for k in range(len(shape)):
        if k == axis:
            a = rng.integers(0, shape[k] // 2)
            idx[k] = slice(a, rng.integers(a + 1, shape[k] + 1))
        else:
            a = rng.integers(0, shape[k] - width + 1)
            idx[k] = slice(a, a + width)
    m[tuple(idx)] = True
    return m


def _tiny(shape, rng):
    m = np.zeros(shape, bool)
    p = tuple(rng.integers(0, s) for s in shape)
    m[p] = True
    if rng.random() < 0.5:  # sometimes a 2-voxel object
        q = list(p)
        k = rng.integers(len(shape))
        q[k] = min(q[k] + 1, shape[k] - 1)
        m[tuple(q)] = True
    return m


def random_shape(shape, rng) -> np.ndarray:
    """Ellipses/ellipsoids, blobs, unions, thin bars, tiny objects, objects cut by the border."""
    kind = rng.integers(7)
    if kind == 0:
        m = _ellipsoid(shape, rng, centre_range=(0.2, 0.8))
    elif kind == 1:
        m = _ellipsoid(shape, rng)  # may be cut by the border
    elif kind == 2:
        m = _blob(shape, rng)  # usually several components
    elif kind == 3:
        m = _ellipsoid(shape, rng) | _ellipsoid(shape, rng) | _thin(shape, rng)
    elif kind == 4:
        m = _thin(shape, rng)
    elif kind == 5:
        m = _tiny(shape, rng)
    else:
        m = _ellipsoid(shape, rng, axes_range=(0.5, 0.08))  # small, possibly on the edge
    if not m.any():
        m = _tiny(shape, rng)
    return m


def _covers(box: crop.Box, mask: np.ndarray) -> bool:
    return int(mask[box.slices].sum()) == int(mask.sum())


# --------------------------------------------------------- interior margin points

MIN_MARGIN = DEFAULT_INWARD + DEFAULT_EXTREME_JITTER


def _check_points(mask, pts, ndim):
    assert pts.dtype == np.int64 and pts.ndim == 2 and pts.shape[1] == ndim
    assert len(np.unique(pts, axis=0)) == len(pts)
    assert np.all(mask[tuple(pts.T)]), "a point left the object"
    assert _covers(crop.relaxed_bbox(pts, mask.shape), mask)
    # the guarantee holds with the smallest margin it promises, not just the default
    assert _covers(crop.relaxed_bbox(pts, mask.shape, margin=MIN_MARGIN), mask)


@pytest.mark.parametrize("ndim, n_shapes", [(2, 300), (3, 200)])
def test_margin_points_inside_and_box_covers_object(ndim, n_shapes):
    rng = np.random.default_rng(1000 + ndim)
    counts = []
    for i in range(n_shapes):
        shape = tuple(rng.integers(12, 40, ndim)) if ndim == 2 else tuple(rng.integers(8, 26, 3))
        mask = random_shape(shape, rng)
        spacing = None if i % 3 else tuple(rng.uniform(0.3, 3.0, ndim))
        pts = interior_margin_points(mask, rng=rng, spacing=spacing)
        _check_points(mask, pts, ndim)
        counts.append(len(pts))
    assert max(counts) <= 2 * ndim + 5
    assert min(counts) >= 1


@pytest.mark.parametrize("ndim", [2, 3])
def test_margin_points_coverage_with_largest_shift(ndim):
    # every point moved by the full DEFAULT_INWARD: coverage must still hold
    rng = np.random.default_rng(7 + ndim)
    for _ in range(60):
        shape = (30, 34) if ndim == 2 else (16, 20, 22)
        mask = random_shape(shape, rng)
        pts = interior_margin_points(mask, rng=rng, inward=DEFAULT_INWARD, n_random=0)
        _check_points(mask, pts, ndim)


def test_margin_points_count_and_extremes_on_a_disc():
    yy, xx = np.indices((60, 60))
    mask = (yy - 30) ** 2 + (xx - 29) ** 2 <= 15**2
    pts = interior_margin_points(mask, rng=0, inward=0, n_random=0, extreme_jitter=0)
    # on the boundary, one per extreme: top, bottom, left, right
    assert len(pts) == 4
    assert sorted(map(tuple, pts)) == sorted([(15, 29), (45, 29), (30, 14), (30, 44)])


def test_margin_points_move_inward_on_a_disc():
    yy, xx = np.indices((80, 80))
    mask = (yy - 40) ** 2 + (xx - 40) ** 2 <= 25**2
    depth = ndi.distance_transform_edt(mask)
    on_boundary = interior_margin_points(mask, rng=3, inward=0, n_random=5)
    assert np.all(depth[tuple(on_boundary.T)] < 1.5)
    moved = interior_margin_points(mask, rng=3, inward=3, n_random=5)
    d = depth[tuple(moved.T)]
    assert np.all(d >= 3.0) and np.all(d <= 4.5)  # 3 voxels in from the boundary


def test_margin_points_count_ranges_3d():
    mask = np.zeros((30, 30, 30), bool)
    zz, yy, xx = np.indices(mask.shape)
    mask[(zz - 15) ** 2 / 64 + (yy - 14) ** 2 / 100 + (xx - 16) ** 2 / 49 <= 1] = True
    seen = set()
    for seed in range(40):
        pts = interior_margin_points(mask, rng=seed)
        seen.add(len(pts))
        assert 5 <= len(pts) <= 11
    assert len(seen) > 3  # n_random varies


def test_margin_points_thin_and_border_objects_stay_inside():
    m = np.zeros((20, 30), bool)
    m[0, :] = True  # one-voxel line along the border
    pts = interior_margin_points(m, rng=0)
    assert np.all(pts[:, 0] == 0)
    assert _covers(crop.relaxed_bbox(pts, m.shape), m)
    single = np.zeros((5, 6, 7), np.uint8)
    single[4, 5, 6] = 3  # a one-voxel object in a corner
    np.testing.assert_array_equal(interior_margin_points(single, rng=1), [[4, 5, 6]])


def test_margin_points_multiple_components_all_covered():
    m = np.zeros((50, 50), bool)
    m[2:8, 3:9] = True
    m[40:47, 35:49] = True
    pts = interior_margin_points(m, rng=2, n_random=0)
    assert _covers(crop.relaxed_bbox(pts, m.shape), m)


def test_margin_points_deterministic():
    rng = np.random.default_rng(0)
    mask = random_shape((20, 24, 28), rng)
    a = interior_margin_points(mask, rng=42)
    b = interior_margin_points(mask, rng=np.random.default_rng(42))
    np.testing.assert_array_equal(a, b)


def test_margin_points_errors():
    with pytest.raises(InvalidInputError, match="empty"):
        interior_margin_points(np.zeros((10, 10)))
    with pytest.raises(InvalidInputError, match="dimensions"):
        interior_margin_points(np.ones(10))
    with pytest.raises(InvalidInputError, match="inward"):
        interior_margin_points(np.ones((5, 5)), inward=(3, 1))
    with pytest.raises(InvalidInputError, match="n_random"):
        interior_margin_points(np.ones((5, 5)), n_random=-1)
    with pytest.raises(InvalidInputError, match="spacing"):
        interior_margin_points(np.ones((5, 5)), spacing=(1, 0))


def test_default_margin_is_consistent_with_inward_shift():
    assert crop.DEFAULT_MARGIN >= DEFAULT_INWARD + DEFAULT_EXTREME_JITTER


# ------------------------------------------------------------------ robot user


def _pad_edt(region, spacing=None):
    d = ndi.distance_transform_edt(np.pad(region, 1), sampling=spacing)
    return d[(slice(1, -1),) * region.ndim]


def _random_pair(shape, rng):
    gt = random_shape(shape, rng)
    kind = rng.integers(4)
    if kind == 0:
        pred = np.roll(gt, rng.integers(-4, 5, len(shape)), axis=tuple(range(len(shape))))
    elif kind == 1:
        pred = ndi.binary_dilation(gt, iterations=int(rng.integers(1, 4)))
    elif kind == 2:
        pred = ndi.binary_erosion(gt, iterations=int(rng.integers(1, 3)))
    else:
        pred = random_shape(shape, rng)
    return gt, pred


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("mode", ["deepest", "probabilistic"])
def test_click_lands_in_error_of_its_type(ndim, mode):
    rng = np.random.default_rng(50 + ndim)
    n_checked = 0
    for i in range(150):
        shape = (32, 36) if ndim == 2 else (14, 18, 20)
        gt, pred = _random_pair(shape, rng)
        spacing = None if i % 2 else tuple(rng.uniform(0.5, 2.5, ndim))
        click = corrective_click(gt, pred, rng=rng, mode=mode, spacing=spacing)
        fn, fp = gt & ~pred, pred & ~gt
        if not fn.any() and not fp.any():
            assert click is None
            continue
        n_checked += 1
        assert isinstance(click, Click) and len(click.point) == ndim
        assert all(isinstance(v, int) for v in click.point)
        region = fn if click.foreground else fp
        assert region[click.point], "click outside the error region of its type"
        if mode == "deepest":
            d_fn, d_fp = _pad_edt(fn, spacing), _pad_edt(fp, spacing)
            if d_fn.max() != d_fp.max():
                assert click.foreground == (d_fn.max() > d_fp.max())
            d = d_fn if click.foreground else d_fp
            assert d[click.point] == d.max()
        else:
            assert click.foreground == (fp.sum() <= fn.sum())
    assert n_checked > 120


def test_deepest_click_centre_of_missed_square():
    gt = np.zeros((40, 40), bool)
    gt[10:31, 5:26] = True  # 21 x 21 square, centre (20, 15)
    assert corrective_click(gt, np.zeros_like(gt)) == Click((20, 15), True)
    pred = gt.copy()
    pred[2:9, 30:37] = True  # a 7 x 7 false positive, centre (5, 33)
    assert corrective_click(gt, pred) == Click((5, 33), False)


def test_deepest_click_treats_image_border_as_boundary():
    gt = np.zeros((20, 40), bool)
    gt[:, :10] = True  # error touching three image borders
    click = corrective_click(gt, np.zeros_like(gt))
    assert click.foreground and click.point[1] not in (0, 9)
    assert 0 < click.point[0] < 19


def test_deepest_tie_goes_to_larger_error():
    gt = np.zeros((30, 30), bool)
    gt[2:7, 2:7] = True  # 5 x 5 FN
    pred = np.zeros_like(gt)
    pred[20:25, 10:25] = True  # 5 x 15 FP: same depth, larger
    click = corrective_click(gt, pred)
    assert not click.foreground and click.point == (22, 17)


def test_click_none_when_prediction_is_perfect():
    gt = np.zeros((6, 7, 8), np.uint8)
    gt[2:4, 2:5, 3:6] = 1
    assert corrective_click(gt, gt.astype(bool)) is None
    assert corrective_click(gt, gt, mode="probabilistic") is None


def test_probabilistic_click_prefers_deep_voxels_and_is_stable():
    gt = np.zeros((60, 60), bool)
    gt[5:55, 5:55] = True
    pred = np.zeros_like(gt)
    depth = _pad_edt(gt)
    rng = np.random.default_rng(11)
    clicks = [corrective_click(gt, pred, rng=rng, mode="probabilistic") for _ in range(300)]
    d = np.array([depth[c.point] for c in clicks])
    assert all(c.foreground and gt[c.point] for c in clicks)
    assert d.mean() > 0.8 * depth.max()  # far deeper than the region's mean depth
    assert depth[gt].mean() < 0.5 * depth.max()
    # huge distances (spacing 100: exp(D) would overflow) still sample inside
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        big = corrective_click(gt, pred, rng=1, mode="probabilistic", spacing=(100.0, 100.0))
    assert gt[big.point] and depth[big.point] >= depth.max() - 1


def test_clicks_deterministic_under_seed():
    rng = np.random.default_rng(5)
    gt, pred = _random_pair((20, 22, 24), rng)
    a = corrective_click(gt, pred, rng=9, mode="probabilistic")
    b = corrective_click(gt, pred, rng=np.random.default_rng(9), mode="probabilistic")
    assert a == b
    assert corrective_click(gt, pred) == corrective_click(gt, pred)


def test_click_errors():
    with pytest.raises(InvalidInputError, match="same shape"):
        corrective_click(np.ones((4, 4)), np.ones((4, 5)))
    with pytest.raises(InvalidInputError, match="mode"):
        corrective_click(np.ones((4, 4)), np.zeros((4, 4)), mode="random")
    with pytest.raises(InvalidInputError, match="dimensions"):
        corrective_click(np.ones(4), np.zeros(4))


# ------------------------------------------------------------------ scribbles


def _bbox(mask):
    nz = np.nonzero(mask)
    return np.array([a.min() for a in nz]), np.array([a.max() for a in nz]) + 1


@pytest.mark.parametrize("ndim", [2, 3])
def test_scribbles_stay_on_their_side(ndim):
    rng = np.random.default_rng(70 + ndim)
    for _ in range(80):
        shape = (40, 44) if ndim == 2 else (18, 22, 24)
        gt = random_shape(shape, rng)
        fg = ellipsoid_scribble(gt, rng=rng, foreground=True)
        assert fg.dtype == bool and fg.shape == gt.shape
        assert fg.any() and not np.any(fg & ~gt)
        if gt.all():
            continue
        bg = ellipsoid_scribble(gt, rng=rng, foreground=False)
        assert bg.any() and not np.any(bg & gt)


def test_unrestricted_scribble_follows_algorithm_1():
    # min_axis 0.5 and alpha 0: the ellipse is its centre voxel alone, so the
    # centre sampling of Algorithm 1 can be checked exactly
    gt = np.zeros((100, 80), bool)
    gt[40:60, 30:50] = True
    lo, hi = _bbox(gt)  # (40, 30) .. (60, 50)
    big_lo, big_hi = lo - 10, hi + 10  # beta = 2 doubles the box about its centre
    for seed in range(40):
        fg = ellipsoid_scribble(gt, rng=seed, restrict=False, alpha=0.0, min_axis=0.5)
        assert fg.sum() == 1 and gt[fg].all()
        bg = ellipsoid_scribble(
            gt, rng=seed, foreground=False, restrict=False, alpha=0.0, min_axis=0.5, beta=2.0
        )
        assert bg.sum() == 1
        c = np.argwhere(bg)[0]
        assert np.all(c >= big_lo) and np.all(c < big_hi)  # inside the beta box
        assert not (np.all(c >= lo) and np.all(c < hi))  # outside the object box


def test_scribble_axes_follow_image_size():
    gt = np.zeros((200, 100), bool)
    gt[50:150, 20:80] = True
    # semi-axes max(1, r * 0.1 * (200, 100)) with one r: the extents along y
    # are twice those along x (up to flooring), and never beyond 2 * alpha * L
    for seed in range(20):
        s = ellipsoid_scribble(gt, rng=seed, restrict=False, alpha=0.1)
        rows, cols = np.nonzero(s)
        ext = np.array([rows.max() - rows.min(), cols.max() - cols.min()])
        assert ext[0] <= 40 and ext[1] <= 20
        if ext[1] >= 2:
            assert abs(ext[0] - 2 * ext[1]) <= 2
    # alpha = 0: every semi-axis is the minimum m = 1 -> a 5-voxel cross
    cross = ellipsoid_scribble(gt, rng=0, alpha=0.0, restrict=False)
    c = tuple(np.argwhere(cross).mean(axis=0).astype(int))
    expect = np.zeros_like(gt)
    expect[c] = True
    expect[c[0] - 1 : c[0] + 2, c[1]] = True
    expect[c[0], c[1] - 1 : c[1] + 2] = True
    np.testing.assert_array_equal(cross, expect)


def test_corrective_scribble_centres_in_error_region():
    gt = np.zeros((40, 40, 40), bool)
    gt[10:30, 10:30, 10:30] = True
    pred = np.zeros_like(gt)
    pred[10:30, 10:30, 10:20] = True  # under-segmented half
    pred[0:5, 0:5, 0:5] = True  # a false positive
    for seed in range(10):
        fg = ellipsoid_scribble(gt, pred, rng=seed, alpha=0.0)
        assert fg.any() and np.all(gt[fg])
        centre = tuple(np.argwhere(fg).mean(axis=0).round().astype(int))
        assert gt[centre] and not pred[centre]
        bg = ellipsoid_scribble(gt, pred, rng=seed, foreground=False, alpha=0.0)
        assert bg.any() and not np.any(bg & gt)
        assert np.any(bg & pred & ~gt)
    none = ellipsoid_scribble(gt, gt, rng=0)
    assert none.dtype == bool and not none.any()


def test_scribble_background_fallback_and_errors():
    gt = np.ones((10, 12), bool)
    gt[0, 0] = False  # box = whole image, one background voxel
    bg = ellipsoid_scribble(gt, rng=0, foreground=False)
    assert bg[0, 0] and bg.sum() == 1
    with pytest.raises(InvalidInputError, match="no background"):
        ellipsoid_scribble(np.ones((5, 5)), foreground=False)
    with pytest.raises(InvalidInputError, match="empty"):
        ellipsoid_scribble(np.zeros((5, 5)))
    with pytest.raises(InvalidInputError, match="beta"):
        ellipsoid_scribble(gt, beta=0.5)
    with pytest.raises(InvalidInputError, match="same shape"):
        ellipsoid_scribble(gt, np.zeros((3, 3)))


def test_scribbles_deterministic_and_simulate_counts():
    rng = np.random.default_rng(2)
    gt = random_shape((20, 24, 28), rng)
    a = ellipsoid_scribble(gt, rng=4)
    b = ellipsoid_scribble(gt, rng=np.random.default_rng(4))
    np.testing.assert_array_equal(a, b)
    gt2 = np.zeros((40, 40), bool)
    gt2[10:30, 10:30] = True
    for seed in range(10):
        fg, bg = simulate_scribbles(gt2, rng=seed)
        assert fg.any() and not np.any(fg & ~gt2) and not np.any(bg & gt2)
