"""Tests of midseg.cues: every kind in [0, 1] and 1 at the points, plus what each kind promises."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
from scipy import ndimage as ndi

from midseg import cues
from midseg.cues import (
    CUE_KINDS,
    adaptive_gaussian_map,
    bbox_map,
    cue_map,
    disk_map,
    egd_map,
    euclidean_map,
    gaussian_map,
    geodesic_map,
)
from midseg.errors import InvalidInputError
from midseg.geodesic import geodesic_distance

SHAPES = {2: (24, 30), 3: (10, 16, 18)}


def _image(shape, seed=0):
    rng = np.random.default_rng(seed)
    grids = np.indices(shape, dtype=np.float64)
    r2 = sum(((g - s / 2) / (0.3 * s)) ** 2 for g, s in zip(grids, shape))
    img = 2.0 * (r2 < 1) + ndi.gaussian_filter(rng.normal(size=shape), 1.5)
    return img.astype(np.float32)


def _points(shape):
    return np.array([tuple(s // 2 for s in shape), tuple(s // 4 for s in shape)])


# ----------------------------------------------------------------------- every kind


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("kind", CUE_KINDS)
def test_every_kind_is_float32_in_unit_range_and_one_at_the_points(kind, ndim):
    shape = SHAPES[ndim]
    pts = _points(shape)
    m = cue_map(kind, _image(shape), pts)
    assert m.dtype == np.float32 and m.shape == shape
    assert m.min() >= 0.0 and m.max() <= 1.0
    np.testing.assert_array_equal(m[tuple(pts.T)], 1.0)
    assert m.min() < 1.0  # not a constant map
    # the dispatcher is the per-kind function
    fn = getattr(cues, f"{kind}_map")
    np.testing.assert_array_equal(fn(_image(shape), pts), m)


@pytest.mark.parametrize("kind", CUE_KINDS)
def test_every_kind_takes_multichannel_images_and_spacing(kind):
    shape = SHAPES[3]
    img = np.stack([_image(shape, 1), _image(shape, 2)])
    pts = _points(shape)
    m = cue_map(kind, img, pts, channel_axis=0, spacing=(3.0, 1.0, 1.0))
    assert m.shape == shape and m.dtype == np.float32
    np.testing.assert_array_equal(m[tuple(pts.T)], 1.0)


@pytest.mark.parametrize("kind", CUE_KINDS)
def test_every_kind_has_the_common_signature(kind):
    params = list(inspect.signature(getattr(cues, f"{kind}_map")).parameters.values())
    assert [p.name for p in params[:4]] == ["image", "points", "spacing", "channel_axis"]
    assert all(p.kind is p.KEYWORD_ONLY for p in params[2:])
    assert all(p.default is not p.empty for p in params[2:])


@pytest.mark.parametrize("kind", CUE_KINDS)
def test_only_spacing_ratios_matter(kind):
    shape = SHAPES[2]
    img, pts = _image(shape), _points(shape)
    np.testing.assert_array_equal(
        cue_map(kind, img, pts, spacing=(2.0, 1.0)), cue_map(kind, img, pts, spacing=(4.0, 2.0))
    )


# ----------------------------------------------------------------------- EGD


@pytest.mark.parametrize("ndim", [2, 3])
def test_egd_is_exp_of_minus_geodesic_distance(ndim):
    shape = SHAPES[ndim]
    img, pts = _image(shape), _points(shape)
    np.testing.assert_allclose(egd_map(img, pts), np.exp(-geodesic_distance(img, pts)), rtol=1e-6)


@pytest.mark.parametrize("ndim", [2, 3])
def test_egd_decreases_along_a_ray_on_a_flat_ramp(ndim):
    shape = SHAPES[ndim]
    img = 0.3 * np.indices(shape)[-1].astype(np.float32)  # ramp along x
    seed = tuple(s // 2 for s in shape[:-1]) + (0,)
    m = egd_map(img, [seed])
    ray = m[seed[:-1]]
    assert ray[0] == 1.0 and np.all(np.diff(ray) < 0)
    np.testing.assert_allclose(ray, np.exp(-(0.3 + 1e-5) * np.arange(shape[-1])), rtol=1e-5)


def test_egd_falls_off_across_an_edge_but_not_along_it():
    img = np.zeros((20, 20), np.float32)
    img[:, 10:] = 5.0
    m = egd_map(img, [(10, 8)])
    assert m[2, 8] > 0.999  # 8 voxels along the edge
    assert m[10, 12] < 0.01  # 4 voxels, across it


# ----------------------------------------------------------------------- truncated distances


@pytest.mark.parametrize("ndim", [2, 3])
def test_euclidean_map_is_exact_and_truncated(ndim):
    shape = SHAPES[ndim]
    c = np.array([s // 2 for s in shape])
    spacing = (2.0,) + (1.0,) * (ndim - 1)
    m = euclidean_map(_image(shape), [tuple(c)], spacing=spacing, tau=8.0)
    p = c.copy()
    p[-1] += 3  # 3 voxels along x: d = 3
    assert m[tuple(p)] == pytest.approx(1 - 3 / 8)
    p = c.copy()
    p[0] += 2  # 2 voxels along axis 0: d = 4
    assert m[tuple(p)] == pytest.approx(1 - 4 / 8)
    p = c.copy()
    p[-1] += 1
    p[-2] += 1  # exact Euclidean, not chamfer
    assert m[tuple(p)] == pytest.approx(1 - np.sqrt(1 + spacing[-2] ** 2) / 8)
    d = np.sqrt(sum(((g - ci) * s) ** 2 for g, ci, s in zip(np.indices(shape), c, spacing)))
    np.testing.assert_allclose(m, np.clip(1 - d / 8, 0, 1), atol=1e-6)


@pytest.mark.parametrize("kind", ["euclidean", "geodesic"])
def test_default_truncation_cuts_the_largest_tenth_of_distances(kind):
    shape = SHAPES[2]
    m = cue_map(kind, _image(shape), _points(shape))
    zero = np.mean(m == 0)
    assert 0.05 <= zero <= 0.12  # ties at tau may add a few
    assert np.mean(cue_map(kind, _image(shape), _points(shape), theta=0.0) == 0) < 0.01


def test_geodesic_map_matches_the_geodesic_distance():
    shape = SHAPES[2]
    img, pts = _image(shape), _points(shape)
    d = geodesic_distance(img, pts)
    np.testing.assert_allclose(
        geodesic_map(img, pts, tau=2.0), 1 - np.minimum(d, 2.0) / 2.0, atol=1e-6
    )


# ----------------------------------------------------------------------- heatmaps, disks, box


@pytest.mark.parametrize("ndim", [2, 3])
def test_gaussian_is_the_max_over_points_of_gaussians(ndim):
    shape = SHAPES[ndim]
    pts = _points(shape)
    m = gaussian_map(_image(shape), pts, sigma=2.0)
    grids = np.indices(shape)
    each = [np.exp(-sum((g - c) ** 2.0 for g, c in zip(grids, p)) / (2 * 2.0**2)) for p in pts]
    np.testing.assert_allclose(m, np.max(each, axis=0), atol=1e-6)
    p = pts[0].copy()
    p[-1] += 2
    assert m[tuple(p)] == pytest.approx(np.exp(-0.5), rel=1e-6)  # one sigma away


@pytest.mark.parametrize("ndim", [2, 3])
def test_disk_covers_the_balls_of_the_radius(ndim):
    shape = SHAPES[ndim]
    pts = _points(shape)
    m = disk_map(_image(shape), pts, radius=2.0)
    grids = np.indices(shape)
    ball = np.any([sum((g - c) ** 2 for g, c in zip(grids, p)) <= 4 for p in pts], axis=0)
    np.testing.assert_array_equal(m, ball.astype(np.float32))
    assert disk_map(_image(shape), pts, radius=0).sum() == len(pts)


@pytest.mark.parametrize("ndim", [2, 3])
def test_bbox_is_one_exactly_inside_the_tight_box(ndim):
    shape = SHAPES[ndim]
    pts = _points(shape)
    m = bbox_map(_image(shape), pts)
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    assert m.sum() == np.prod(hi - lo + 1)
    assert np.all(m[tuple(slice(a, b + 1) for a, b in zip(lo, hi))] == 1)


# ----------------------------------------------------------------------- adaptive Gaussian


def _sigma_of(m, p, axis, sign):
    """Radius of a point's Gaussian read off the map: d^2 / (2 sigma^2) = -log m at d = 2."""
    q = list(p)
    q[axis] += 2 * sign
    return np.sqrt(4 / (-2 * np.log(m[tuple(q)])))


@pytest.mark.parametrize("ndim", [2, 3])
def test_adaptive_gaussian_is_wide_in_flat_regions_and_narrow_at_edges(ndim):
    shape = (24, 40) if ndim == 2 else (12, 16, 40)
    img = np.zeros(shape, np.float32)
    img[..., 20:] = 10.0  # a strong edge at x = 20
    flat = tuple(s // 2 for s in shape[:-1]) + (6,)
    edge = tuple(s // 2 for s in shape[:-1]) + (19,)  # next to the edge
    m = adaptive_gaussian_map(img, [flat, edge])
    assert _sigma_of(m, flat, 0, 1) == pytest.approx(13.0, rel=1e-3)  # full radius a
    # the edge point: x = mean geodesic distance over its window, sigma = floor(13 e^-0.15x)
    d = geodesic_distance(img, [flat, edge])
    x = d[tuple(slice(c - 1, c + 2) for c in edge)].mean()
    want = np.floor(13 * np.exp(-0.15 * x))
    assert 1 <= want < 13
    assert _sigma_of(m, edge, 0, 1) == pytest.approx(want, rel=1e-3)


def test_adaptive_gaussian_radius_zero_marks_the_point_only():
    img = np.zeros((20, 20), np.float32)
    img[:, 10:] = 100.0
    m = adaptive_gaussian_map(img, [(10, 9)])  # x is huge next to this edge
    assert m[10, 9] == 1.0 and m.sum() == 1.0
    assert np.all(adaptive_gaussian_map(img, [(10, 9)], b=0.0) > 0)  # b = 0: always a


# ----------------------------------------------------------------------- bad input


def test_unknown_kind_names_the_valid_kinds():
    with pytest.raises(InvalidInputError, match="egd, geodesic, euclidean, gaussian, disk"):
        cue_map("heatmap", _image((8, 8)), [(1, 1)])
    with pytest.raises(InvalidInputError, match="unknown cue kind"):
        cue_map(None, _image((8, 8)), [(1, 1)])


def test_unknown_parameter_names_the_accepted_ones():
    with pytest.raises(InvalidInputError, match="parameters sigma; got unexpected radius"):
        cue_map("gaussian", _image((8, 8)), [(1, 1)], radius=3)
    with pytest.raises(InvalidInputError, match=r"\(none\)"):
        cue_map("egd", _image((8, 8)), [(1, 1)], sigma=3)


@pytest.mark.parametrize(
    "kind, params, match",
    [
        ("gaussian", {"sigma": 0}, "sigma"),
        ("gaussian", {"sigma": float("nan")}, "sigma"),
        ("disk", {"radius": -1}, "radius"),
        ("euclidean", {"tau": 0}, "tau"),
        ("geodesic", {"theta": 1.0}, "theta"),
        ("adaptive_gaussian", {"a": 0}, "a must"),
        ("geodesic", {"lamb": 2}, "lamb"),
    ],
)
def test_bad_parameters_are_refused(kind, params, match):
    with pytest.raises(InvalidInputError, match=match):
        cue_map(kind, _image((8, 8)), [(1, 1)], **params)


@pytest.mark.parametrize("kind", CUE_KINDS)
def test_bad_points_and_images_are_refused(kind):
    img = _image((8, 9))
    with pytest.raises(InvalidInputError, match="empty"):
        cue_map(kind, img, [])
    with pytest.raises(InvalidInputError, match="outside the image"):
        cue_map(kind, img, [(8, 0)])
    bad = img.copy()
    bad[0, 0] = np.nan
    with pytest.raises(InvalidInputError, match="NaN"):
        cue_map(kind, bad, [(1, 1)])
    with pytest.raises(InvalidInputError, match="spacing"):
        cue_map(kind, img, [(1, 1)], spacing=(1.0,))
