"""Tests of midseg.geodesic: a ramp, an edge, a wall; spacing, channels, roi, both step costs
against an exact shortest path (Dijkstra), GeodisTK."""

from __future__ import annotations

import importlib.util
import itertools

import numpy as np
import pytest
from scipy import ndimage as ndi
from scipy.sparse import csr_array
from scipy.sparse.csgraph import dijkstra

from midseg.errors import InvalidInputError
from midseg.geodesic import EPS, available_backends, geodesic_distance

SHAPES = {2: (24, 30), 3: (10, 12, 14)}
HAS_GEODISTK = importlib.util.find_spec("GeodisTK") is not None
HAS_FASTGEODIS = importlib.util.find_spec("FastGeodis") is not None


def _noisy(shape, seed=0):
    """A smooth blob plus texture and noise: many distinct minimal paths."""
    rng = np.random.default_rng(seed)
    grids = np.indices(shape, dtype=np.float64)
    r2 = sum(((g - s / 2) / (0.3 * s)) ** 2 for g, s in zip(grids, shape))
    img = (
        2.0 * (r2 < 1)
        + ndi.gaussian_filter(rng.normal(size=shape), 1.5)
        + rng.normal(0, 0.1, shape)
    )
    return img.astype(np.float32)


def _centre(shape):
    return tuple(s // 2 for s in shape)


def _rel_diff(a, b):
    return float(np.max(np.abs(a.astype(np.float64) - b)) / np.max(b))


def _maze(shape, seed=0):
    """Noisy floor (about 0) with nested square walls (100) around the centre of the last two
    axes, each with one gap in a corner, on alternating sides (and in 3D, where the walls run
    through all slices, alternately in the first and last slice): the cheap paths wind back
    and forth, so a raster scan needs many passes. Returns the image and the centre."""
    rng = np.random.default_rng(seed)
    ny, nx = shape[-2:]
    cy, cx = ny // 2, nx // 2
    y, x = np.indices((ny, nx))
    ring = np.maximum(np.abs(y - cy), np.abs(x - cx))  # Chebyshev radius
    wall = np.zeros(shape, bool)
    for k, r in enumerate(range(2, min(cy, cx), 3)):
        gap = (x == cx + r * (-1) ** k) & (y == cy + (r - 1) * (-1) ** k)
        wall |= ring == r
        wall[(-(k % 2),) * (len(shape) - 2)] &= ~gap
    img = 100.0 * wall + rng.normal(0, 0.3, shape)
    return img.astype(np.float32), tuple(s // 2 for s in shape)


def _exact(image, seeds, *, spacing=None, lamb=1.0, cost="geodistk", channel_axis=None, roi=None):
    """Exact minimal path costs (scipy's Dijkstra) on the 8- / 26-neighbourhood graph with the
    step costs of the module docstring, in float64; paths restricted to `roi`."""
    chans = np.asarray(image, np.float64)
    chans = chans[None] if channel_axis is None else np.moveaxis(chans, channel_axis, 0)
    shape = chans.shape[1:]
    sp = np.ones(len(shape)) if spacing is None else np.asarray(spacing, np.float64)
    inside = np.ones(shape, bool) if roi is None else roi
    index = np.arange(inside.size).reshape(shape)
    rows, cols, weights = [], [], []
    for off in itertools.product((-1, 0, 1), repeat=len(shape)):
        if off <= (0,) * len(shape):  # each undirected edge once
            continue
        p = tuple(slice(max(0, -o), n - max(0, o)) for o, n in zip(off, shape))
        q = tuple(slice(max(0, o), n - max(0, -o)) for o, n in zip(off, shape))
        length = np.linalg.norm(np.asarray(off) * sp)
        g = np.sqrt(np.sum((chans[(slice(None),) + q] - chans[(slice(None),) + p]) ** 2, 0))
        if cost == "additive":
            c = (1 - lamb) * length + lamb * g
        else:
            c = length * (g + EPS) / ((1 - lamb) * (g + EPS) + lamb)
        keep = inside[p] & inside[q]
        rows.append(index[p][keep])
        cols.append(index[q][keep])
        weights.append(c[keep])
    graph = csr_array(
        (np.concatenate(weights), (np.concatenate(rows), np.concatenate(cols))),
        shape=(inside.size, inside.size),
    )
    mask = np.zeros(shape, bool)
    mask[tuple(np.asarray(seeds).T)] = True
    d = dijkstra(graph, directed=False, indices=np.flatnonzero(mask & inside), min_only=True)
    return d.reshape(shape)


# ----------------------------------------------------------------------- basic properties


@pytest.mark.parametrize("ndim", [2, 3])
def test_zero_at_seeds_positive_elsewhere(ndim):
    shape = SHAPES[ndim]
    img = _noisy(shape)
    seeds = [(1,) * ndim, _centre(shape)]
    d = geodesic_distance(img, seeds)
    assert d.dtype == np.float32 and d.shape == shape
    mask = np.zeros(shape, bool)
    mask[tuple(np.array(seeds).T)] = True
    assert np.all(d[mask] == 0)
    assert np.all(d[~mask] > 0) and np.all(np.isfinite(d))


@pytest.mark.parametrize("ndim", [2, 3])
def test_points_and_mask_seeds_agree_and_result_is_deterministic(ndim):
    shape = SHAPES[ndim]
    img = _noisy(shape, seed=1)
    pts = np.array([(0,) * ndim, tuple(s - 1 for s in shape)])
    mask = np.zeros(shape, bool)
    mask[tuple(pts.T)] = True
    a = geodesic_distance(img, pts)
    b = geodesic_distance(img, mask)
    c = geodesic_distance(img, [tuple(p) for p in pts])
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)


@pytest.mark.parametrize("ndim", [2, 3])
def test_flat_ramp_distance_grows_linearly_along_the_ramp(ndim):
    shape = SHAPES[ndim]
    x = np.indices(shape)[-1].astype(np.float32)
    img = 0.5 * x  # intensity step 0.5 per voxel along x
    seed = tuple(s // 2 for s in shape[:-1]) + (0,)
    d = geodesic_distance(img, [seed])
    ray = d[seed[:-1]]  # the row through the seed, along x
    assert np.all(np.diff(ray) > 0)
    # lamb=1: each x step costs L * (|dI| + EPS) = 1 * (0.5 + 1e-5)
    np.testing.assert_allclose(ray, np.arange(shape[-1]) * (0.5 + 1e-5), rtol=1e-5)


@pytest.mark.parametrize("ndim", [2, 3])
def test_crossing_an_edge_costs_more_than_a_flat_path_of_the_same_length(ndim):
    shape = SHAPES[ndim]
    img = np.zeros(shape, np.float32)
    img[..., shape[-1] // 2 :] = 10.0  # a strong edge across x
    seed = tuple(s // 2 for s in shape[:-1]) + (shape[-1] // 2 - 3,)
    across = list(seed)
    across[-1] += 6  # 6 voxels along x, over the edge
    along = list(seed)
    along[-2] -= 6  # 6 voxels along y, in the flat region
    d = geodesic_distance(img, [seed])
    assert d[tuple(across)] >= 10.0  # at least one step over the edge
    assert d[tuple(along)] < 1e-3
    assert d[tuple(across)] > 1000 * d[tuple(along)]


@pytest.mark.parametrize("ndim", [2, 3])
def test_more_iterations_never_lengthen_distances(ndim):
    shape = SHAPES[ndim]
    img = _noisy(shape, seed=2)
    seeds = [_centre(shape)]
    d1, d2, d5 = (geodesic_distance(img, seeds, iterations=k) for k in (1, 2, 5))
    assert np.all(d2 <= d1) and np.all(d5 <= d2)


# ----------------------------------------------------------------------- spacing, lamb


@pytest.mark.parametrize("ndim", [2, 3])
def test_lamb0_is_exact_euclidean_along_axes_and_diagonals(ndim):
    shape = SHAPES[ndim]
    spacing = (2.0, 0.5) if ndim == 2 else (3.0, 1.0, 0.7)
    sp = np.asarray(spacing)
    c = np.asarray(_centre(shape))
    d = geodesic_distance(_noisy(shape), [tuple(c)], spacing=spacing, lamb=0.0)
    k = np.arange(1, 5)
    for ax in range(ndim):  # along each axis: k * spacing
        idx = np.tile(c, (len(k), 1))
        idx[:, ax] += k
        np.testing.assert_allclose(d[tuple(idx.T)], k * sp[ax], rtol=1e-6)
    idx = c + k[:, None]  # index diagonal: k * |spacing|
    np.testing.assert_allclose(d[tuple(idx.T)], k * np.linalg.norm(sp), rtol=1e-6)
    exact = np.sqrt(sum(((g - ci) * s) ** 2 for g, ci, s in zip(np.indices(shape), c, sp)))
    assert np.all(d >= exact * (1 - 1e-6))  # a chamfer distance never undercuts


@pytest.mark.parametrize("ndim, bound", [(2, 1.0824), (3, 1.128)])
def test_lamb0_isotropic_chamfer_error_is_bounded(ndim, bound):
    shape = (31,) * ndim if ndim == 2 else (15,) * 3
    c = _centre(shape)
    d = geodesic_distance(np.zeros(shape, np.float32), [c], lamb=0.0)
    exact = np.sqrt(sum((g - ci) ** 2.0 for g, ci in zip(np.indices(shape), c)))
    ratio = d[exact > 0] / exact[exact > 0]
    assert ratio.min() >= 1 - 1e-6 and ratio.max() <= bound


@pytest.mark.parametrize("ndim", [2, 3])
def test_spacing_scales_geodesic_distances(ndim):
    shape = SHAPES[ndim]
    img = _noisy(shape, seed=3)
    seeds = [_centre(shape)]
    d1 = geodesic_distance(img, seeds, lamb=1.0)
    d2 = geodesic_distance(img, seeds, lamb=1.0, spacing=(2.0,) * ndim)
    np.testing.assert_allclose(d2, 2 * d1, rtol=1e-5)  # cost is L * |dI|: linear in L
    # doubling the first axis only lengthens paths that move along it
    aniso = geodesic_distance(img, seeds, lamb=1.0, spacing=(2.0,) + (1.0,) * (ndim - 1))
    assert np.all(aniso >= d1 * (1 - 1e-6)) and np.all(aniso <= 2 * d1 * (1 + 1e-6))
    assert np.any(aniso > d1 * 1.1)


@pytest.mark.parametrize("ndim", [2, 3])
def test_lamb_moves_the_step_cost_between_length_and_intensity_change(ndim):
    shape = SHAPES[ndim]
    seed = _centre(shape)
    lambs = (0.0, 0.25, 0.5, 0.75, 1.0)
    # the step cost L * g / ((1 - lamb) g + lamb) grows with lamb where every step changes
    # the intensity by g > 1, and shrinks with lamb where the image is flat (g = EPS)
    steep = sum(c * g for c, g in zip((2.0, 5.0, 11.0), np.indices(shape)[::-1]))
    flat = np.zeros(shape, np.float32)
    off = np.ones(shape, bool)
    off[seed] = False
    for img, sign in ((steep.astype(np.float32), 1), (flat, -1)):
        d = [geodesic_distance(img, [seed], lamb=lam)[off] for lam in lambs]
        for a, b in zip(d, d[1:]):
            assert np.all(sign * (b - a) > 0)
    # one step along x from the seed: the formula itself
    nb = seed[:-1] + (seed[-1] + 1,)
    for lam in lambs:
        g = 2.0 + 1e-5
        want = g / ((1 - lam) * g + lam)
        assert geodesic_distance(steep.astype(np.float32), [seed], lamb=lam)[nb] == pytest.approx(
            want, rel=1e-6
        )


# ----------------------------------------------------------------------- exact minimal paths

CONVERGED = 40  # raster-scan iterations that reach the exact distances on the test images
SPACINGS = {2: (1.0, 0.5), 3: (2.5, 1.0, 0.7)}


@pytest.mark.parametrize("cost", ["geodistk", "additive"])
@pytest.mark.parametrize("lamb", [1.0, 0.6])
@pytest.mark.parametrize("ndim", [2, 3])
def test_raster_scan_converges_to_dijkstra_on_blobs_and_noise(ndim, lamb, cost):
    shape = SHAPES[ndim]
    img = 3 * _noisy(shape, seed=20)
    seeds = [(1,) * ndim, _centre(shape), tuple(s - 2 for s in shape)]
    kw = dict(spacing=SPACINGS[ndim], lamb=lamb, cost=cost)
    exact = _exact(img, seeds, **kw)
    assert _rel_diff(geodesic_distance(img, seeds, iterations=CONVERGED, **kw), exact) < 1e-4
    # the default 2 iterations overestimate, never underestimate
    two = geodesic_distance(img, seeds, **kw)
    assert np.all(two >= exact * (1 - 1e-5) - 1e-6)


@pytest.mark.parametrize("cost", ["geodistk", "additive"])
@pytest.mark.parametrize("ndim", [2, 3])
def test_raster_scan_converges_to_dijkstra_in_a_maze(ndim, cost):
    shape = (24, 24) if ndim == 2 else (12, 14, 16)
    img, centre = _maze(shape)
    kw = dict(spacing=SPACINGS[ndim], cost=cost)
    exact = _exact(img, [centre], **kw)
    assert _rel_diff(geodesic_distance(img, [centre], iterations=CONVERGED, **kw), exact) < 1e-4
    # the winding paths are what the test is about: two iterations are far from exact
    assert _rel_diff(geodesic_distance(img, [centre], **kw), exact) > 0.05


@pytest.mark.parametrize("cost", ["geodistk", "additive"])
@pytest.mark.parametrize("ndim", [2, 3])
def test_multichannel_raster_scan_converges_to_dijkstra(ndim, cost):
    shape = SHAPES[ndim]
    img = np.stack([_noisy(shape, seed=21), 2 * _noisy(shape, seed=22)])
    seeds = [_centre(shape), (0,) * ndim]
    kw = dict(spacing=SPACINGS[ndim], lamb=0.8, cost=cost, channel_axis=0)
    exact = _exact(img, seeds, **kw)
    assert _rel_diff(geodesic_distance(img, seeds, iterations=CONVERGED, **kw), exact) < 1e-4


@pytest.mark.parametrize("ndim", [2, 3])
def test_additive_raster_scan_in_a_roi_converges_to_dijkstra_inside_it(ndim):
    shape = SHAPES[ndim]
    img = 3 * _noisy(shape, seed=23)
    c = _centre(shape)
    grids = np.indices(shape)
    cube = np.max([np.abs(g - ci) for g, ci in zip(grids, c)], axis=0) <= 4
    wall = (grids[-1] == c[-1] + 1) & (grids[-2] > c[-2] - 4)  # open in the cube's first row
    roi = (cube & ~wall) | (grids[-1] < 2)  # + a slab no path reaches
    seeds = [c]
    kw = dict(spacing=SPACINGS[ndim], cost="additive")
    got = geodesic_distance(img, seeds, roi=roi, iterations=CONVERGED, **kw)
    exact = _exact(img, seeds, roi=roi, **kw)
    assert np.array_equal(np.isinf(got), np.isinf(exact))
    assert _rel_diff(got[np.isfinite(got)], exact[np.isfinite(exact)]) < 1e-4


# ----------------------------------------------------------------------- the additive cost


@pytest.mark.parametrize("ndim", [2, 3])
def test_additive_edge_costs_its_jump_whichever_axis_crosses_it(ndim):
    # MIDeepSeg Eq. 2 at lamb = 1: the distance across an edge is the intensity jump, however
    # long the voxels are along the axis (or diagonal) that crosses it; GeodisTK's cost is
    # the jump times the step length.
    shape = (12, 12) if ndim == 2 else (12, 12, 12)
    spacing = SPACINGS[ndim]
    grids = np.indices(shape)
    edges = [grids[ax] >= 6 for ax in range(ndim)] + [grids.sum(0) >= 6 * ndim]  # + diagonal
    for edge in edges:
        img = np.where(edge, 10.0, 0.0).astype(np.float32)
        d = geodesic_distance(img, [(0,) * ndim], spacing=spacing, cost="additive")
        np.testing.assert_array_equal(d[~edge], 0.0)
        np.testing.assert_allclose(d[edge], 10.0, rtol=1e-6)
    for ax in range(ndim):
        img = np.where(edges[ax], 10.0, 0.0).astype(np.float32)
        d = geodesic_distance(img, [(0,) * ndim], spacing=spacing)
        far = (slice(None),) * ax + (-1,)
        np.testing.assert_allclose(d[far], 10 * spacing[ax], rtol=1e-3)  # not the same


@pytest.mark.parametrize("ndim", [2, 3])
def test_additive_spacing_enters_only_the_spatial_term(ndim):
    shape = SHAPES[ndim]
    img = _noisy(shape, seed=24)
    seeds = [_centre(shape)]
    base = dict(cost="additive", iterations=CONVERGED)
    # lamb = 1: spacing changes nothing
    np.testing.assert_array_equal(
        geodesic_distance(img, seeds, lamb=1.0, spacing=SPACINGS[ndim], **base),
        geodesic_distance(img, seeds, lamb=1.0, **base),
    )
    # 0 < lamb < 1: doubling the spacing doubles the spatial term only, so D grows, but by
    # less than a factor 2 (the intensity term of every path stays)
    d1 = geodesic_distance(img, seeds, lamb=0.5, **base)
    d2 = geodesic_distance(img, seeds, lamb=0.5, spacing=(2.0,) * ndim, **base)
    off = d1 > 0
    assert np.all(d2[off] > d1[off]) and np.all(d2[off] < 2 * d1[off])


@pytest.mark.parametrize("ndim", [2, 3])
def test_additive_cost_step_by_step(ndim):
    shape = SHAPES[ndim]
    seed = _centre(shape)
    steep = sum(c * g for c, g in zip((2.0, 5.0, 11.0), np.indices(shape)[::-1]))
    spacing = SPACINGS[ndim]
    for lam in (0.0, 0.25, 1.0):
        d = geodesic_distance(
            steep.astype(np.float32), [seed], lamb=lam, spacing=spacing, cost="additive"
        )
        nb = seed[:-1] + (seed[-1] + 1,)  # one step along x: dI = 2
        assert d[nb] == pytest.approx((1 - lam) * spacing[-1] + lam * 2.0, rel=1e-6)
        nb = tuple(c + 1 for c in seed)  # one index diagonal
        want = (1 - lam) * np.linalg.norm(spacing) + lam * (2.0 + 5.0 + 11.0 * (ndim == 3))
        assert d[nb] == pytest.approx(want, rel=1e-6)


def test_additive_multichannel_is_the_norm_over_channels():
    img = _noisy(SHAPES[2], seed=25)
    seeds = [(3, 4)]
    kw = dict(cost="additive", iterations=CONVERGED)
    twin = geodesic_distance(np.stack([img, img]), seeds, channel_axis=0, **kw)
    np.testing.assert_allclose(twin, np.sqrt(2) * geodesic_distance(img, seeds, **kw), rtol=1e-5)


@pytest.mark.parametrize("ndim", [2, 3])
def test_both_costs_are_the_chamfer_distance_at_lamb0(ndim):
    shape = SHAPES[ndim]
    img = _noisy(shape, seed=26)
    kw = dict(lamb=0.0, spacing=SPACINGS[ndim])
    np.testing.assert_array_equal(
        geodesic_distance(img, [(1,) * ndim], cost="additive", **kw),
        geodesic_distance(img, [(1,) * ndim], **kw),
    )


def test_default_cost_is_geodistk():
    img = _noisy((16, 18))
    np.testing.assert_array_equal(
        geodesic_distance(img, [(3, 4)], cost="geodistk"), geodesic_distance(img, [(3, 4)])
    )


# ----------------------------------------------------------------------- channels


@pytest.mark.parametrize("ndim", [2, 3])
def test_multichannel_is_the_norm_over_channels(ndim):
    shape = SHAPES[ndim]
    img = _noisy(shape, seed=5)
    seeds = [_centre(shape), (0,) * ndim]
    scalar = geodesic_distance(img, seeds)
    # two identical channels: |dI| becomes sqrt(2) |dI|, so lamb=1 distances scale by
    # sqrt(2) (up to the EPS term, which is not scaled)
    twin = geodesic_distance(np.stack([img, img]), seeds, channel_axis=0)
    np.testing.assert_allclose(twin, np.sqrt(2) * scalar, rtol=1e-4, atol=1e-4)
    # a constant extra channel changes nothing; channel last works too
    flat = np.stack([img, np.full(shape, 7.0, np.float32)], axis=-1)
    np.testing.assert_allclose(geodesic_distance(flat, seeds, channel_axis=-1), scalar, rtol=1e-6)


# ----------------------------------------------------------------------- roi


@pytest.mark.parametrize("ndim", [2, 3])
def test_roi_equals_unrestricted_inside_a_box_roi(ndim):
    shape = SHAPES[ndim]
    img = _noisy(shape, seed=6)
    seed = _centre(shape)
    roi = np.zeros(shape, bool)
    box = tuple(slice(2, s - 3) for s in shape)
    roi[box] = True
    # lamb=0: chamfer paths stay in the bounding box of their ends, so inside a box roi
    d_full = geodesic_distance(img, [seed], lamb=0.0)
    d_roi = geodesic_distance(img, [seed], lamb=0.0, roi=roi)
    np.testing.assert_array_equal(d_roi[roi], d_full[roi])
    assert np.all(np.isinf(d_roi[~roi]))
    # lamb=1 on an image whose minimal paths stay inside the roi (outside is very bright)
    img2 = np.where(roi, img, 1e4).astype(np.float32)
    np.testing.assert_allclose(
        geodesic_distance(img2, [seed], roi=roi)[roi],
        geodesic_distance(img2, [seed])[roi],
        rtol=1e-6,
    )


@pytest.mark.parametrize("ndim", [2, 3])
def test_roi_paths_stay_inside_the_roi(ndim):
    shape = SHAPES[ndim]
    img = np.zeros(shape, np.float32)
    roi = np.ones(shape, bool)
    wall = shape[-1] // 2
    roi[..., wall] = False
    roi[(0,) * (ndim - 1) + (wall,)] = True  # one gap, in a corner
    seed = tuple(s - 1 for s in shape[:-1]) + (0,)
    target = tuple(s - 1 for s in shape[:-1]) + (shape[-1] - 1,)
    free = geodesic_distance(img, [seed], lamb=0.0)
    walled = geodesic_distance(img, [seed], lamb=0.0, roi=roi, iterations=4)
    assert walled[target] > free[target] * 1.5  # the detour through the gap
    assert np.all(np.isinf(walled[~roi]))
    assert np.all(walled[roi] >= free[roi] * (1 - 1e-6))


def test_roi_ignores_seeds_outside_it():
    img = _noisy((20, 20))
    roi = np.zeros((20, 20), bool)
    roi[:10] = True
    both = geodesic_distance(img, [(2, 2), (15, 15)], roi=roi)
    inside = geodesic_distance(img, [(2, 2)], roi=roi)
    np.testing.assert_array_equal(both, inside)


# ----------------------------------------------------------------------- backends


def test_available_backends_lists_the_builtin_first():
    names = available_backends()
    assert names[0] == "numba"
    assert ("geodistk" in names) == HAS_GEODISTK
    assert ("fastgeodis" in names) == HAS_FASTGEODIS


def test_auto_is_the_builtin_backend():
    img = _noisy((16, 18))
    np.testing.assert_array_equal(
        geodesic_distance(img, [(3, 4)], backend="auto"),
        geodesic_distance(img, [(3, 4)], backend="numba"),
    )


@pytest.mark.skipif(not HAS_GEODISTK, reason="GeodisTK is not installed")
@pytest.mark.parametrize("spacing", [(1.0, 1.0), (2.0, 0.7)])
@pytest.mark.parametrize("lamb", [1.0, 0.5, 0.0])
def test_agrees_with_geodistk_in_2d(lamb, spacing):
    img = _noisy((40, 50), seed=7)
    seeds = [(3, 4), (20, 25), (35, 10), (10, 45), (38, 48)]
    ours = geodesic_distance(img, seeds, lamb=lamb, spacing=spacing)
    ref = geodesic_distance(img, seeds, lamb=lamb, spacing=spacing, backend="geodistk")
    assert _rel_diff(ours, ref) < 1e-5


@pytest.mark.skipif(not HAS_GEODISTK, reason="GeodisTK is not installed")
def test_agrees_with_geodistk_for_two_channels():
    img = np.stack([_noisy((30, 32), seed=8), _noisy((30, 32), seed=9)])
    seeds = [(3, 4), (20, 25)]
    ours = geodesic_distance(img, seeds, channel_axis=0)
    ref = geodesic_distance(img, seeds, channel_axis=0, backend="geodistk")
    assert _rel_diff(ours, ref) < 1e-5


@pytest.mark.skipif(not HAS_GEODISTK, reason="GeodisTK is not installed")
@pytest.mark.parametrize("lamb", [1.0, 0.5, 0.0])
def test_agrees_with_geodistk_in_3d_once_converged(lamb):
    # GeodisTK's 3D forward pass reads the next slice (see the module docstring), so the
    # two agree once both have converged; at 2 iterations ours is the closer one.
    img = _noisy((10, 12, 14), seed=10)
    seeds = [(2, 3, 4), (7, 9, 10)]
    sp = (2.5, 1.0, 0.7)
    ours = geodesic_distance(img, seeds, lamb=lamb, spacing=sp, iterations=20)
    ref = geodesic_distance(img, seeds, lamb=lamb, spacing=sp, iterations=20, backend="geodistk")
    assert _rel_diff(ours, ref) < 1e-5
    ours2 = geodesic_distance(img, seeds, lamb=lamb, spacing=sp)
    ref2 = geodesic_distance(img, seeds, lamb=lamb, spacing=sp, backend="geodistk")
    assert np.max(np.abs(ours2 - ours)) <= np.max(np.abs(ref2 - ours))


@pytest.mark.skipif(not HAS_GEODISTK, reason="GeodisTK is not installed")
def test_geodistk_backend_honours_roi_and_seed_masks():
    img = _noisy((30, 30), seed=11)
    roi = np.zeros((30, 30), bool)
    roi[5:25, 3:28] = True
    d = geodesic_distance(img, [(10, 10)], roi=roi, backend="geodistk")
    assert np.all(np.isinf(d[~roi])) and d[10, 10] == 0
    assert _rel_diff(d[roi], geodesic_distance(img, [(10, 10)], roi=roi)[roi]) < 1e-5


@pytest.mark.skipif(not HAS_FASTGEODIS, reason="FastGeodis is not installed")
@pytest.mark.parametrize("lamb", [1.0, 0.5])
def test_fastgeodis_backend_computes_the_additive_cost(lamb):
    # FastGeodis' own cost equals ours for a scalar 2D image with unit spacing
    img = 3 * _noisy((20, 24), seed=12)
    d = geodesic_distance(
        img, [(5, 6)], lamb=lamb, iterations=CONVERGED, backend="fastgeodis", cost="additive"
    )
    assert d.shape == (20, 24) and d[5, 6] == 0
    assert _rel_diff(d, _exact(img, [(5, 6)], lamb=lamb, cost="additive")) < 1e-4


# ----------------------------------------------------------------------- bad input


def test_bad_input_raises_with_a_useful_message():
    img = _noisy((10, 12))
    with pytest.raises(InvalidInputError, match="NaN"):
        bad = img.copy()
        bad[2, 3] = np.nan
        geodesic_distance(bad, [(1, 1)])
    with pytest.raises(InvalidInputError, match="dimensions"):
        geodesic_distance(np.zeros(5), [(1,)])
    with pytest.raises(InvalidInputError, match="empty"):
        geodesic_distance(img, [])
    with pytest.raises(InvalidInputError, match="empty"):
        geodesic_distance(img, np.zeros((10, 12), bool))
    with pytest.raises(InvalidInputError, match=r"spatial shape \(10, 12\)"):
        geodesic_distance(img, np.ones((10, 11), bool))
    with pytest.raises(InvalidInputError, match="dtype bool"):
        geodesic_distance(img, np.ones((10, 12), np.uint8))
    with pytest.raises(InvalidInputError, match="outside the image"):
        geodesic_distance(img, [(10, 0)])
    with pytest.raises(InvalidInputError, match="2 coordinates"):
        geodesic_distance(img, [(1, 2, 3)])
    roi = np.zeros((10, 12), bool)
    roi[5:, 5:] = True
    with pytest.raises(InvalidInputError, match="roi contains none"):
        geodesic_distance(img, [(1, 1)], roi=roi)
    with pytest.raises(InvalidInputError, match="bool"):
        geodesic_distance(img, [(1, 1)], roi=roi.astype(int))
    with pytest.raises(InvalidInputError, match="lamb"):
        geodesic_distance(img, [(1, 1)], lamb=1.5)
    with pytest.raises(InvalidInputError, match="lamb"):
        geodesic_distance(img, [(1, 1)], lamb=float("nan"))
    with pytest.raises(InvalidInputError, match="iterations"):
        geodesic_distance(img, [(1, 1)], iterations=0)
    with pytest.raises(InvalidInputError, match="spacing"):
        geodesic_distance(img, [(1, 1)], spacing=(1.0, -1.0))
    with pytest.raises(InvalidInputError, match="backend must be one of"):
        geodesic_distance(img, [(1, 1)], backend="scipy")
    with pytest.raises(InvalidInputError, match="channel_axis"):
        geodesic_distance(np.stack([img, img]), [(1, 1)], channel_axis=3)
    with pytest.raises(InvalidInputError, match="cost must be one of 'geodistk', 'additive'"):
        geodesic_distance(img, [(1, 1)], cost="euclidean")
    with pytest.raises(InvalidInputError, match="cost must be one of"):
        geodesic_distance(img, [(1, 1)], cost=None)
    # refused whether or not the package is installed: the backend cannot compute that cost
    with pytest.raises(InvalidInputError, match="'geodistk' cannot compute cost='additive'"):
        geodesic_distance(img, [(1, 1)], cost="additive", backend="geodistk")
    with pytest.raises(InvalidInputError, match="'fastgeodis' cannot compute cost='geodistk'"):
        geodesic_distance(img, [(1, 1)], backend="fastgeodis")


@pytest.mark.skipif(HAS_FASTGEODIS, reason="FastGeodis is installed")
def test_unavailable_backend_is_refused_by_name():
    with pytest.raises(InvalidInputError, match="FastGeodis is not installed"):
        geodesic_distance(_noisy((8, 8)), [(1, 1)], backend="fastgeodis", cost="additive")


def test_importing_geodesic_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, midseg.geodesic, midseg.cues; sys.exit(1 if 'torch' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


# -- the NumPy twin of the kernel, while the kernel compiles in another process -----------


def _scan_pair(shape, channels, cost, lamb, roi, seed=0):
    import midseg.geodesic as g

    rng = np.random.default_rng(seed)
    img = np.stack([_noisy(shape, seed + c) for c in range(channels)])
    seeds = np.zeros(shape, bool)
    seeds[_centre(shape)] = True
    seeds[tuple(rng.integers(0, s) for s in shape)] = True
    domain = ((rng.random(shape) > 0.25) | seeds) if roi else None
    spacing = rng.uniform(0.5, 2.0, len(shape))
    return [g._padded(img, seeds, domain, spacing, lamb, cost)[0] for _ in range(2)]


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("cost", ["geodistk", "additive"])
@pytest.mark.parametrize("lamb", [0.0, 0.4, 1.0])
@pytest.mark.parametrize("roi", [False, True])
def test_numpy_twin_gives_the_kernels_distances_bit_for_bit(ndim, channels, cost, lamb, roi):
    """Same float32 sums, exact minima: equal, not close (masks must not depend on which
    of the two ran)."""
    import midseg.geodesic as g

    for iterations in (1, 2, 30):
        a, b = _scan_pair(SHAPES[ndim], channels, cost, lamb, roi)
        g._raster_scan(*a[:12], iterations, *a[12:])
        assert g._scan_numpy(b, iterations) == iterations
        assert np.array_equal(a.dist, b.dist), iterations


@pytest.mark.parametrize("ndim", [2, 3])
def test_numpy_twin_hands_the_remaining_iterations_to_the_kernel(ndim):
    import midseg.geodesic as g

    a, b = _scan_pair(SHAPES[ndim], 1, "additive", 1.0, False, seed=3)
    g._raster_scan(*a[:12], 10, *a[12:])
    done = g._scan_numpy(b, 10, stop=lambda: True)
    assert done == 1
    g._raster_scan(*b[:12], 10 - done, *b[12:])
    assert np.array_equal(a.dist, b.dist)


class _FakeProcess:
    def __init__(self):
        self.running = True
        self.waited = False

    def poll(self):
        return None if self.running else 0

    def wait(self):
        self.waited = True
        self.running = False
        return 0


@pytest.fixture
def cold_kernels(monkeypatch):
    """A process whose kernel is not compiled and not in numba's cache."""
    import midseg.geodesic as g

    started = []

    def start():
        started.append(_FakeProcess())
        return started[-1]

    monkeypatch.setattr(g._Kernels, "ready", False)
    monkeypatch.setattr(g._Kernels, "process", None)
    monkeypatch.setattr(g, "_CACHING", True)
    monkeypatch.setattr(g, "_in_cache", lambda scan: False)
    monkeypatch.setattr(g, "_start_compile_process", start)
    return g, started


def test_a_cold_cache_compiles_elsewhere_while_numpy_scans_small_images(cold_kernels, monkeypatch):
    g, started = cold_kernels
    img, seed = _noisy(SHAPES[2]), [_centre(SHAPES[2])]
    g._Kernels.ready = True
    want = geodesic_distance(img, seed, iterations=5, cost="additive")  # the kernel's
    g._Kernels.ready = False
    calls = []
    real = g._scan_numpy
    monkeypatch.setattr(g, "_scan_numpy", lambda *a, **k: calls.append(1) or real(*a, **k))
    for _ in range(2):  # one compile process; NumPy while it runs
        assert np.array_equal(geodesic_distance(img, seed, iterations=5, cost="additive"), want)
    assert len(started) == 1 and len(calls) == 2 and not g._Kernels.ready
    started[0].running = False  # compiled (into numba's cache)
    assert np.array_equal(geodesic_distance(img, seed, iterations=5, cost="additive"), want)
    assert len(calls) == 2 and g._Kernels.ready


def test_a_large_job_waits_for_the_compile_process(cold_kernels, monkeypatch):
    g, started = cold_kernels
    img = _noisy(SHAPES[3])
    geodesic_distance(img, [_centre(img.shape)])  # small: starts the process
    monkeypatch.setattr(g, "_NUMPY_MAX_VOXELS", 10)
    geodesic_distance(img, [_centre(img.shape)])
    assert len(started) == 1 and started[0].waited and g._Kernels.ready


def test_a_large_first_job_or_no_disk_cache_compiles_here(cold_kernels, monkeypatch):
    g, started = cold_kernels
    img = _noisy(SHAPES[2])
    monkeypatch.setattr(g, "_CACHING", False)  # numba found no writable cache folder
    geodesic_distance(img, [_centre(img.shape)])
    assert not started and g._Kernels.ready
    monkeypatch.setattr(g._Kernels, "ready", False)
    monkeypatch.setattr(g, "_CACHING", True)
    monkeypatch.setattr(g, "_NUMPY_MAX_WORK", 10)
    geodesic_distance(img, [_centre(img.shape)])
    assert not started and g._Kernels.ready


def test_a_new_process_with_an_empty_cache_gets_its_first_distances_in_numpy(tmp_path):
    """For real: no compile in the process; another process fills numba's cache."""
    import subprocess
    import sys
    import time

    code = (
        "import numpy as np, midseg.geodesic as g\n"
        "img = np.random.default_rng(0).random((40, 50)).astype(np.float32)\n"
        "d = g.geodesic_distance(img, [(20, 25)], cost='additive', iterations=4)\n"
        "print(g._Kernels.process is not None, g._Kernels.ready)\n"
        "np.save(r'%s', d)\n"
    )
    env = {**__import__("os").environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba")}
    out = subprocess.run(
        [sys.executable, "-c", code % (tmp_path / "cold.npy")],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    assert out.stdout.split() == ["True", "False"]  # NumPy, a compile process started
    for _ in range(600):  # that process fills the cache (seconds); the index comes last
        if list((tmp_path / "numba").rglob("*_raster_scan*.nbi")):
            break
        time.sleep(0.2)
    out = subprocess.run(
        [sys.executable, "-c", code % (tmp_path / "warm.npy")],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    assert out.stdout.split() == ["False", "True"]  # loaded from the cache at once
    assert np.array_equal(np.load(tmp_path / "cold.npy"), np.load(tmp_path / "warm.npy"))
