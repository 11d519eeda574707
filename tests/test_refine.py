"""Tests for midseg.refine: information fusion (Eq. 3-7), graph-cut CRF (Eq. 8-11), rounds."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import ndimage
from scipy.special import expit

from midseg.errors import InvalidInputError
from midseg.metrics import dice as _dice
from midseg.fusion import _click_distance, _distance_image, _euclidean_to_points
from midseg.graphcut import _normalise01, _pairwise_weights
from midseg.refine import (
    CLICK_CLAIM_KEEP,
    DISTANCE_SCALE,
    PROB_EPS,
    RefineResult,
    fuse_probabilities,
    graph_cut,
    refine,
)


def _ball(shape, center, radius):
    grids = np.indices(shape, dtype=float)
    return sum((g - c) ** 2 for g, c in zip(grids, center)) <= radius**2


# -- fuse_probabilities ----------------------------------------------------------------------
@pytest.mark.parametrize("weighting", ["paper", "certainty"])
def test_fusion_matches_paper_equations(weighting):
    rng = np.random.default_rng(0)
    p = rng.random((6, 7))
    df, db = rng.uniform(0, 6, (2, 6, 7))
    e_f = np.exp(-df) / (np.exp(-df) + np.exp(-db))
    e_b = np.exp(-db) / (np.exp(-df) + np.exp(-db))
    alpha = np.exp(-np.minimum(df, db))  # Eq. 7
    if weighting == "certainty":
        alpha = alpha * np.abs(e_f - e_b)
    r_f = (1 - alpha) * p + alpha * e_f
    r_b = (1 - alpha) * (1 - p) + alpha * e_b
    fused = fuse_probabilities(p, df, db, weighting=weighting)
    if weighting == "certainty":
        np.testing.assert_array_equal(fused, fuse_probabilities(p, df, db))  # the default
    assert fused.dtype == np.float32 and fused.shape == p.shape
    np.testing.assert_allclose(fused, r_f, atol=1e-6)
    np.testing.assert_allclose(1 - fused, r_b, atol=1e-6)  # R_b is 1 - R_f


def test_fusion_at_a_click_is_the_cue_and_far_away_the_cnn():
    p = np.array([[0.2, 0.7, 0.9, 0.3]])
    df = np.array([[0.0, 3.0, 40.0, 50.0]])
    db = np.array([[2.0, 0.0, 45.0, 60.0]])
    fused = fuse_probabilities(p, df, db, weighting="paper")
    # alpha = 1 at a click: R equals E exactly
    assert fused[0, 0] == pytest.approx(expit(2.0), abs=1e-6)
    assert fused[0, 1] == pytest.approx(expit(-3.0), abs=1e-6)
    # alpha ~ e^-40: the CNN probability is kept
    np.testing.assert_allclose(fused[0, 2:], p[0, 2:], atol=1e-6)
    # certainty weighting: at a click alpha = |2E - 1|, R moves towards E by that much
    fused = fuse_probabilities(p, df, db)
    e = expit(2.0)
    assert fused[0, 0] == pytest.approx(0.2 + abs(2 * e - 1) * (e - 0.2), abs=1e-6)
    np.testing.assert_allclose(fused[0, 2:], p[0, 2:], atol=1e-6)


def test_certainty_fusion_keeps_the_cnn_where_the_clicks_are_neutral():
    """Near both click classes at once (Df = Db) the clicks say nothing: R = P.

    Eq. 7 as printed puts R near 0.5 there, whatever the CNN said."""
    p = np.array([[0.95, 0.05, 0.9]])
    d = np.array([[0.1, 0.1, 0.3]])
    np.testing.assert_allclose(fuse_probabilities(p, d, d), p, atol=1e-6)
    paper = fuse_probabilities(p, d, d, weighting="paper")
    assert np.all(np.abs(paper - 0.5) < np.abs(p - 0.5) - 0.2)
    # one class only: E = 1 (or 0) is decisive, both weightings agree
    np.testing.assert_array_equal(
        fuse_probabilities(p, d, None), fuse_probabilities(p, d, None, weighting="paper")
    )
    with pytest.raises(InvalidInputError, match="weighting"):
        fuse_probabilities(p, d, d, weighting="max")


@pytest.mark.parametrize("missing", ["bg", "fg"])
def test_fusion_missing_class_is_the_large_constant_limit(missing):
    rng = np.random.default_rng(1)
    p = rng.random((5, 5))
    d = rng.uniform(0, 8, (5, 5))
    args = (d, None) if missing == "bg" else (None, d)
    fused = fuse_probabilities(p, *args)
    inf_args = (d, np.full_like(d, np.inf)) if missing == "bg" else (np.full_like(d, np.inf), d)
    big_args = (d, np.full_like(d, 1e4)) if missing == "bg" else (np.full_like(d, 1e4), d)
    np.testing.assert_array_equal(fused, fuse_probabilities(p, *inf_args))
    np.testing.assert_allclose(fused, fuse_probabilities(p, *big_args), atol=1e-6)
    # E of the present class is 1; alpha depends on that class alone
    e_present = 1.0 if missing == "bg" else 0.0
    np.testing.assert_allclose(fused, (1 - np.exp(-d)) * p + np.exp(-d) * e_present, atol=1e-6)


def test_fusion_without_any_seeds_or_reachable_seeds_is_the_cnn():
    p = np.random.default_rng(2).random((4, 4))
    np.testing.assert_allclose(fuse_probabilities(p, None, None), p, atol=1e-7)
    inf = np.full((4, 4), np.inf)
    np.testing.assert_allclose(fuse_probabilities(p, inf, inf), p, atol=1e-7)


def test_fusion_is_stable_for_huge_distances_and_leaves_prob_alone():
    p = np.full((3, 3), 0.4)
    p.setflags(write=False)
    with np.errstate(all="raise"):
        fused = fuse_probabilities(p, np.full((3, 3), 1e6), np.full((3, 3), 2e6))
    np.testing.assert_allclose(fused, 0.4, atol=1e-7)
    assert np.all(p == 0.4)


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(prob=np.full((3, 3), 1.5)), r"\[0, 1\]"),
        (dict(prob=np.full((3, 3), np.nan)), "NaN"),
        (dict(d_fg=np.zeros((3, 4))), "shape"),
        (dict(d_bg=-np.ones((3, 3))), ">= 0"),
        (dict(d_fg=np.full((3, 3), np.nan)), "NaN"),
    ],
)
def test_fusion_rejects_bad_input(bad, match):
    args = dict(prob=np.full((3, 3), 0.5), d_fg=np.zeros((3, 3)), d_bg=None)
    args.update(bad)
    with pytest.raises(InvalidInputError, match=match):
        fuse_probabilities(args["prob"], args["d_fg"], args["d_bg"])


# -- graph_cut -------------------------------------------------------------------------------
def _all_energies(shape, p, img, lam, sigma, spacing, conn):
    """Energy of Eq. 8 for every labelling of a tiny grid, by enumeration."""
    n = int(np.prod(shape))
    ys = np.array(list(itertools.product((0, 1), repeat=n)), dtype=np.int8).reshape((-1,) + shape)
    r = np.clip(p, PROB_EPS, 1 - PROB_EPS)
    energy = np.where(ys == 1, -np.log(r), -np.log(1 - r)).reshape(len(ys), -1).sum(1)
    weights = _pairwise_weights(
        _normalise01(img[None].astype(float)),
        np.asarray(spacing, float),
        lam=lam,
        sigma=sigma,
        connectivity=conn,
    )
    for off, w in weights:
        src = tuple(slice(max(0, -o), s - max(0, o)) for o, s in zip(off, shape))
        dst = tuple(slice(a.start + o, a.stop + o) for a, o in zip(src, off))
        cut = ys[(slice(None),) + src] != ys[(slice(None),) + dst]
        energy += (cut * w[src]).reshape(len(ys), -1).sum(1)
    return ys, energy


@pytest.mark.parametrize(
    "shape, conn", [((3, 4), 4), ((3, 4), 8), ((2, 2, 3), 6), ((2, 2, 3), 18), ((2, 2, 3), 26)]
)
def test_graph_cut_finds_the_exact_minimum(shape, conn):
    rng = np.random.default_rng(sum(shape) + conn)
    for trial in range(6):
        p, img = rng.random(shape), rng.random(shape)
        lam, sp = rng.uniform(0, 3), rng.uniform(0.5, 2, len(shape))
        fg = [tuple(int(rng.integers(s)) for s in shape)] if trial % 2 else []
        ys, energy = _all_energies(shape, p, img, lam, 0.3, sp, conn)
        if fg:
            energy = np.where(ys[(slice(None),) + fg[0]] == 1, energy, np.inf)
        mask = graph_cut(p, img, lam=lam, sigma=0.3, spacing=sp, connectivity=conn, foreground=fg)
        assert mask.dtype == np.uint8 and mask.shape == shape
        got = energy[np.flatnonzero((ys == mask).reshape(len(ys), -1).all(1))[0]]
        assert got == pytest.approx(energy.min(), rel=1e-9, abs=1e-9)


def test_graph_cut_orientation_one_is_foreground():
    img = np.zeros((8, 9))
    assert graph_cut(np.full((8, 9), 0.9), img).all()
    assert not graph_cut(np.full((8, 9), 0.1), img).any()
    # lam = 0: the cut is the thresholded probability
    p = np.random.default_rng(3).uniform(0.01, 0.99, (8, 9))
    np.testing.assert_array_equal(graph_cut(p, img, lam=0.0), p > 0.5)


@pytest.mark.parametrize("shape", [(12, 14), (6, 8, 9)])
def test_graph_cut_clicks_are_hard_constraints_against_a_confident_map(shape):
    rng = np.random.default_rng(4)
    for _ in range(5):
        p = np.where(rng.random(shape) < 0.5, 0.0, 1.0)  # clamped to eps / 1 - eps
        img = rng.random(shape)
        pts = rng.permutation(np.indices(shape).reshape(len(shape), -1).T)[:6]
        fg, bg = pts[:3], pts[3:]
        mask = graph_cut(p, img, foreground=fg, background=bg, lam=20.0)
        assert mask[tuple(fg.T)].all() and not mask[tuple(bg.T)].any()


def test_graph_cut_follows_the_image_edge():
    # CNN map with a blurry, shifted boundary; the image has the true edge at x = 10
    img = np.zeros((20, 20))
    img[:, 10:] = 1.0
    xs = np.arange(20)[None, :].repeat(20, 0)
    p = expit((xs - 7.5) / 3.0)
    mask = graph_cut(p, img)
    truth = np.broadcast_to(xs >= 10, mask.shape)
    np.testing.assert_array_equal(mask, truth)
    # and is invariant to an affine intensity change (min-max normalisation)
    np.testing.assert_array_equal(graph_cut(p, img * 300.0 - 1000.0), mask)


def test_pairwise_weights_follow_spacing_intensity_and_channels():
    flat = np.zeros((1, 5, 6))
    w = dict(_pairwise_weights(flat, np.array([1.0, 1.0]), lam=5.0, sigma=0.1, connectivity=8))
    assert set(w) == {(0, 1), (1, 0), (1, 1), (1, -1)}
    assert w[(0, 1)][2, 2] == pytest.approx(5.0)
    assert w[(1, 1)][2, 2] == pytest.approx(5 / np.sqrt(2))
    # no edge leaves the grid
    assert np.all(w[(0, 1)][:, -1] == 0) and np.all(w[(1, -1)][:, 0] == 0)
    # anisotropic spacing: dist in units of the smallest spacing
    w_an = dict(_pairwise_weights(flat, np.array([3.0, 1.0]), lam=5.0, sigma=0.1, connectivity=8))
    assert w_an[(1, 0)][2, 2] == pytest.approx(5 / 3)
    assert w_an[(0, 1)][2, 2] == pytest.approx(5.0)
    assert w_an[(1, 1)][2, 2] == pytest.approx(5 / np.sqrt(10))
    # the unit does not matter, only the ratios
    w_mm = dict(_pairwise_weights(flat, np.array([6.0, 2.0]), lam=5.0, sigma=0.1, connectivity=8))
    for off in w_an:
        np.testing.assert_allclose(w_mm[off], w_an[off])
    # intensity: exp(-d^2 / 2 sigma^2); two channels use the squared norm of the difference
    two = np.zeros((2, 1, 2))
    two[0, 0, 1], two[1, 0, 1] = 0.1, 0.2
    ((off, w2),) = _pairwise_weights(two, np.ones(2), lam=1.0, sigma=0.1, connectivity=4)[:1]
    assert off == (0, 1) and w2[0, 0] == pytest.approx(np.exp(-(0.01 + 0.04) / 0.02))


@pytest.mark.parametrize("conn, lam", [(4, 1.0), (8, 0.5)])
def test_graph_cut_spacing_changes_the_result_as_expected(conn, lam):
    # Rows alternate between p = 0.7 and 0.3. Keeping the stripes cuts every edge between
    # rows; with isotropic voxels that costs more than flattening them, with rows 4x
    # further apart than columns those edges are 4x (or more) weaker and the stripes stay.
    p = np.where(np.arange(13)[:, None] % 2 == 0, 0.7, 0.3) * np.ones((13, 10))
    img = np.zeros_like(p)
    stripes = (p > 0.5).astype(np.uint8)
    iso = graph_cut(p, img, lam=lam, connectivity=conn)
    assert np.all(iso == 1)  # 7 rows prefer 1, 6 prefer 0
    np.testing.assert_array_equal(
        graph_cut(p, img, lam=lam, connectivity=conn, spacing=(4.0, 1.0)), stripes
    )
    np.testing.assert_array_equal(
        graph_cut(p, img, lam=lam, connectivity=conn, spacing=(1.0, 4.0)), iso
    )
    # only ratios matter
    np.testing.assert_array_equal(
        graph_cut(p, img, lam=lam, connectivity=conn, spacing=(2.0, 2.0)), iso
    )


def test_graph_cut_multichannel_uses_all_channels():
    # Edge only visible in the second channel at x = 10
    ch2 = np.zeros((20, 20))
    ch2[:, 10:] = 1.0
    image = np.stack([np.zeros((20, 20)), ch2])
    xs = np.arange(20)[None, :].repeat(20, 0)
    p = expit((xs - 7.5) / 3.0)
    mask = graph_cut(p, image, channel_axis=0)
    np.testing.assert_array_equal(mask, np.broadcast_to(xs >= 10, mask.shape))
    np.testing.assert_array_equal(graph_cut(p, np.moveaxis(image, 0, -1), channel_axis=-1), mask)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(prob=np.full((5, 5), -0.1)), r"\[0, 1\]"),
        (dict(image=np.zeros((5, 6))), "same spatial shape"),
        (dict(foreground=[(5, 0)]), "outside the image"),
        (dict(foreground=[(1, 1)], background=[(1, 1)]), "both"),
        (dict(lam=-1.0), "lam"),
        (dict(sigma=0.0), "sigma"),
        (dict(connectivity=6), "connectivity"),
        (dict(spacing=(1.0,)), "spacing"),
        (dict(image=np.full((5, 5), np.nan)), "NaN"),
    ],
)
def test_graph_cut_rejects_bad_input(kwargs, match):
    args = dict(prob=np.full((5, 5), 0.5), image=np.zeros((5, 5)))
    args.update(kwargs)
    with pytest.raises(InvalidInputError, match=match):
        graph_cut(args.pop("prob"), args.pop("image"), **args)


# -- refine ----------------------------------------------------------------------------------
def _scene(shape, rng):
    """A bright ball + lobe on a darker noisy background, and a CNN map missing the lobe."""
    ndim = len(shape)
    c = np.array(shape) / 2.0
    r = min(shape) / 4.0
    body = _ball(shape, c, r)
    lobe_c = c.copy()
    lobe_c[-1] += 1.6 * r
    lobe_mask = _ball(shape, lobe_c, 0.55 * r)
    gt = body | lobe_mask
    img = 100.0 + 60.0 * gt + rng.normal(0, 6.0, shape)
    sd = ndimage.distance_transform_edt(body) - ndimage.distance_transform_edt(~body)
    cnn = expit(sd / 1.5)
    # interior margin points: extremes of the body moved 2 voxels inwards
    margin = []
    for ax in range(ndim):
        for sgn in (-1, 1):
            pt = np.round(c).astype(int)
            pt[ax] = int(round(c[ax] + sgn * (r - 2)))
            margin.append(pt)
    return img, cnn, gt, np.array(margin), np.round(lobe_c).astype(int)


_SMALL_LOBE_3D = pytest.mark.xfail(
    strict=True,
    reason="known weakness of the click-local fusion: in a missed, noisy lobe "
    "of radius ~3 voxels the geodesic cost of the noise keeps the fused probability near "
    "0.25 and the CRF drops the lobe (docs/decisions.md: a noise allowance fixes this scene "
    "but not dev_unseen)",
)


@pytest.mark.parametrize(
    "shape, method, least",
    [
        ((60, 70), "ifgc", 0.93),
        ((60, 70), "ifgc-global", 0.93),
        pytest.param((24, 28, 32), "ifgc", 0.93, marks=_SMALL_LOBE_3D),
        ((24, 28, 32), "ifgc-global", 0.93),
    ],
)
def test_one_click_in_a_missed_lobe_recovers_it_and_beats_naive_graph_cut(shape, method, least):
    img, cnn, gt, margin, lobe_click = _scene(shape, np.random.default_rng(5))
    before = _dice(cnn >= 0.5, gt)
    res = refine(
        img, cnn, margin_points=margin, foreground=[lobe_click], background=[], method=method
    )
    naive = refine(
        img, cnn, margin_points=margin, foreground=[lobe_click], background=[], method="gc"
    )
    assert isinstance(res, RefineResult)
    assert res.mask.dtype == np.uint8 and res.mask.shape == shape
    assert res.probability.dtype == np.float32 and res.probability.shape == shape
    after, after_gc = _dice(res.mask, gt), _dice(naive.mask, gt)
    assert after > least > before
    assert after > after_gc + 0.05
    # the lobe itself is recovered, not just the clicked voxel
    lobe = gt & ~(cnn >= 0.5)
    assert res.mask[lobe].mean() > 0.85
    # the naive baseline returns the CNN probability unchanged
    np.testing.assert_array_equal(naive.probability, cnn.astype(np.float32))


@pytest.mark.parametrize("shape", [(30, 34), (12, 14, 16)])
@pytest.mark.parametrize("method", ["ifgc", "ifgc-paper", "gc"])
def test_every_click_keeps_its_label_random_maps(shape, method):
    rng = np.random.default_rng(6)
    for trial in range(6 if len(shape) == 2 else 4):
        img = ndimage.gaussian_filter(rng.random(shape), 1.0) * rng.uniform(1, 500)
        prob = np.clip(ndimage.gaussian_filter(rng.random(shape), 1.5) * 3 - 1, 0, 1)
        if trial % 2:  # a confident (binary) map: clicks must still win against it
            prob = (prob > 0.5).astype(np.float64)
        prob.setflags(write=False)
        before = prob.copy()
        coords = rng.permutation(np.indices(shape).reshape(len(shape), -1).T)
        margin = coords[:4]
        fg, bg = coords[4 : 4 + rng.integers(0, 5)], coords[10 : 10 + rng.integers(1, 5)]
        res = refine(
            img,
            prob,
            margin_points=margin,
            foreground=fg,
            background=bg,
            lam=float(rng.uniform(1, 20)),
            sigma=float(rng.uniform(0.05, 0.5)),
            method=method,
            spacing=rng.uniform(0.5, 3, len(shape)),
        )
        assert res.mask[tuple(fg.T)].all() if len(fg) else True
        assert not res.mask[tuple(bg.T)].any()
        assert res.box.contains(np.concatenate([margin, fg, bg]))
        np.testing.assert_array_equal(prob, before)
        assert not np.shares_memory(res.probability, prob)


def test_fused_map_is_the_cue_at_clicks_and_the_cnn_far_away():
    shape = (40, 200)
    rng = np.random.default_rng(7)
    img = rng.normal(0, 1.0, shape)
    prob = np.clip(ndimage.gaussian_filter(rng.random(shape), 2) * 2 - 0.5, 0, 1)
    margin = np.array([(20, 5), (18, 8)])
    fg, bg = np.array([(10, 10)]), np.array([(30, 12)])
    box = __import__("midseg.crop", fromlist=["Box"]).Box((0, 0), shape)
    res = refine(
        img, prob, margin_points=margin, foreground=fg, background=bg, box=box, method="ifgc-global"
    )
    # alpha = 1 at the clicks: R = E, with E_f = 1 / (1 + e^(Df - Db))
    assert res.probability[10, 10] > 0.5 and res.probability[30, 12] < 0.5
    # far from all seeds (alpha ~ 0) the fused map is the CNN map
    np.testing.assert_allclose(res.probability[:, 150:], prob[:, 150:], atol=1e-3)


def test_alpha_is_one_at_clicks_and_r_equals_e():
    shape = (30, 40)
    rng = np.random.default_rng(11)
    img = rng.random(shape)
    prob = np.full(shape, 0.3)
    margin, fg, bg = np.array([(5, 5), (6, 30)]), np.array([(15, 20)]), np.array([(25, 8)])
    res = refine(img, prob, margin_points=margin, foreground=fg, background=bg, method="ifgc-paper")
    sl, origin = res.box.slices, np.array(res.box.start)
    norm = _distance_image(_normalise01(img[sl][None]), np.ones(2))
    d_fg = _click_distance(norm, np.concatenate([margin, fg]) - origin, np.ones(2), "auto")
    d_bg = _click_distance(norm, bg - origin, np.ones(2), "auto")
    # at a foreground seed Df = 0: alpha = 1 and R = E_f = 1 / (1 + e^-Db)
    for pt in np.concatenate([margin, fg]):
        loc = tuple(pt - origin)
        assert res.probability[tuple(pt)] == pytest.approx(expit(d_bg[loc]), abs=1e-6)
    # at the background click Db = 0: R = E_f = 1 / (1 + e^Df) < 0.5
    loc = tuple(bg[0] - origin)
    assert res.probability[tuple(bg[0])] == pytest.approx(expit(-d_fg[loc]), abs=1e-6)
    # everywhere: the fused map is Eq. 3-7 of these distances
    np.testing.assert_allclose(
        res.probability[sl], fuse_probabilities(prob[sl], d_fg, d_bg, weighting="paper"), atol=1e-6
    )
    # "ifgc-global" fuses the same distances with certainty weighting
    res = refine(
        img, prob, margin_points=margin, foreground=fg, background=bg, method="ifgc-global"
    )
    np.testing.assert_allclose(
        res.probability[sl], fuse_probabilities(prob[sl], d_fg, d_bg), atol=1e-6
    )


@pytest.mark.parametrize("shape", [(21, 301), (5, 9, 161)])
def test_alpha_falls_with_distance_on_a_flat_image(shape):
    # A flat image has geodesic distance ~0 everywhere; without a spatial term alpha would be
    # 1 over the whole crop and E_f = 1 (no background clicks) would flood it.
    img = np.full(shape, 7.0)
    prob = np.full(shape, 0.2)
    seed = tuple(n // 2 for n in shape[:-1]) + (2,)
    from midseg.crop import Box

    res = refine(
        img,
        prob,
        margin_points=[seed],
        foreground=[],
        background=[],
        box=Box((0,) * len(shape), shape),
        lam=0.0,
        method="ifgc-global",
    )
    line = res.probability[seed[:-1]]
    alpha = (line - 0.2) / 0.8  # R = (1 - alpha) 0.2 + alpha * 1
    r = np.abs(np.arange(shape[-1]) - 2.0)
    np.testing.assert_allclose(alpha, np.exp(-r / DISTANCE_SCALE), rtol=1e-3, atol=1e-5)
    assert alpha[2] == pytest.approx(1.0) and alpha[-1] < 1e-3
    # lam = 0: the mask is R >= 0.5 (foreground within DISTANCE_SCALE * ln(8/3) voxels)
    assert res.mask[seed[:-1]].sum() == np.sum(np.exp(-r / DISTANCE_SCALE) * 0.8 + 0.2 > 0.5)


def test_an_edge_lowers_alpha_beyond_it():
    img = np.zeros((31, 61))
    img[:, 40:] = 1.0  # an edge 10 voxels right of the seed
    prob = np.full(img.shape, 0.2)
    from midseg.crop import Box

    res = refine(
        img,
        prob,
        margin_points=[(15, 30)],
        foreground=[],
        background=[],
        lam=0.0,
        box=Box((0, 0), img.shape),
        method="ifgc-global",
    )
    alpha = (res.probability - 0.2) / 0.8
    left, right = alpha[15, 30 - 15], alpha[15, 30 + 15]  # same Euclidean distance
    assert left == pytest.approx(np.exp(-15 / DISTANCE_SCALE), rel=1e-3)
    # the edge costs its contrast in units of the crop's standard deviation (the
    # smoothing blurs the edge but keeps the total change across it)
    assert right == pytest.approx(left * np.exp(-1.0 / img.std()), rel=1e-3)


@pytest.mark.parametrize("n_points", [3, 40])
def test_euclidean_term_is_exact_with_spacing(n_points):
    rng = np.random.default_rng(12)
    shape, unit = (9, 11, 13), np.array([2.5, 1.0, 1.25])
    pts = np.unique(rng.integers(0, 9, (n_points, 3)), axis=0)
    got = _euclidean_to_points(shape, pts, unit)
    grid = np.indices(shape).reshape(3, -1).T
    brute = np.sqrt((((grid[:, None, :] - pts[None]) * unit) ** 2).sum(-1)).min(1)
    np.testing.assert_allclose(got.ravel(), brute, rtol=1e-5, atol=1e-5)


def test_outside_the_box_mask_is_thresholded_prob_and_probability_is_prob():
    shape = (50, 60)
    prob = np.zeros(shape)
    prob[5:10, 45:55] = 0.8  # stage-1 foreground far from the clicks
    prob[20:30, 10:20] = 0.9
    prob.setflags(write=False)
    img = np.random.default_rng(8).random(shape)
    margin = [(21, 11), (28, 18), (21, 18), (28, 11)]
    res = refine(img, prob, margin_points=margin, foreground=[(25, 15)], background=[(34, 15)])
    inside = np.zeros(shape, bool)
    inside[res.box.slices] = True
    assert not inside[5:10, 45:55].any()
    np.testing.assert_array_equal(res.mask[~inside], (prob >= 0.5)[~inside])
    np.testing.assert_array_equal(res.probability[~inside], prob[~inside].astype(np.float32))
    assert prob[25, 15] == 0.9 and prob[0, 0] == 0.0  # untouched


def test_box_is_the_union_and_grows_for_clicks_outside_it():
    from midseg.crop import Box

    shape = (64, 64)
    prob = np.zeros(shape)
    prob[20:30, 20:30] = 1.0
    img = prob * 10
    stage1 = Box((15, 15), (35, 35))
    res = refine(
        img,
        prob,
        margin_points=[(21, 21), (28, 28)],
        foreground=[],
        background=[(60, 3)],
        box=stage1,
    )
    assert res.box.contains([(15, 15), (34, 34), (60, 3)])
    assert res.mask[60, 3] == 0 and res.mask[25, 25] == 1


@pytest.mark.parametrize("shape", [(20, 24), (8, 10, 12)])
def test_clicks_on_every_border(shape):
    prob = np.full(shape, 0.3)
    img = np.random.default_rng(9).random(shape)
    corners = np.array(list(itertools.product(*[(0, n - 1) for n in shape])))
    fg, bg = corners[::2], corners[1::2]
    res = refine(img, prob, margin_points=corners[:1], foreground=fg, background=bg)
    assert res.mask[tuple(fg.T)].all() and not res.mask[tuple(bg.T)].any()
    assert res.box.shape == shape


def test_refine_multichannel_and_rounds_accumulate():
    rng = np.random.default_rng(10)
    img, cnn, gt, margin, lobe_click = _scene((60, 70), rng)
    two = np.stack([img, -img + rng.normal(0, 3, img.shape)])
    res = refine(
        two,
        cnn,
        margin_points=margin,
        foreground=[lobe_click],
        background=[],
        channel_axis=0,
        method="ifgc-global",
    )
    assert _dice(res.mask, gt) > 0.93
    # a second round: all clicks passed again, the CNN map unchanged
    res2 = refine(
        two,
        cnn,
        margin_points=margin,
        foreground=[lobe_click],
        background=[(5, 5)],
        channel_axis=0,
        method="ifgc-global",
    )
    assert res2.mask[tuple(lobe_click)] == 1 and res2.mask[5, 5] == 0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(prob=np.full((20, 20), 1.2)), r"\[0, 1\]"),
        (dict(prob=np.full((20, 21), 0.5)), "spatial shape"),
        (dict(foreground=[(20, 3)]), "outside the image"),
        (dict(margin_points=[(-1, 3)]), "outside the image"),
        (dict(foreground=[(5, 5)], background=[(5, 5)]), "both"),
        (dict(method="grabcut"), "method"),
        (dict(margin_points=[], foreground=[], background=[]), "none"),
        (dict(spacing=(1, 2, 3)), "spacing"),
    ],
)
def test_refine_rejects_bad_input(kwargs, match):
    args = dict(
        image=np.zeros((20, 20)),
        prob=np.full((20, 20), 0.5),
        margin_points=[(5, 5), (10, 10)],
        foreground=[],
        background=[(15, 15)],
    )
    args.update(kwargs)
    with pytest.raises(InvalidInputError, match=match):
        refine(args.pop("image"), args.pop("prob"), **args)


def _low_contrast_scene(rng):
    """A small dim object in smooth texture with a few bright outliers that stretch the
    crop's [0, 1] range (as vessels do in MRI), and a CNN map that leaks to one side."""
    shape = (48, 48)
    gt = _ball(shape, np.array([24.0, 24.0]), 7.0)
    img = ndimage.gaussian_filter(rng.normal(0, 1, shape), 1.0) * 0.6 + 1.5 * gt
    img[rng.integers(0, 48, 6), rng.integers(0, 48, 6)] = 12.0  # outliers
    leak = _ball(shape, np.array([24.0, 33.0]), 5.0)
    sd = ndimage.distance_transform_edt(gt | leak) - ndimage.distance_transform_edt(~(gt | leak))
    cnn = expit(sd / 1.0)
    margin = np.array([(18, 24), (30, 24), (24, 18), (24, 30)])
    return img, cnn, gt, margin


def test_a_background_click_on_a_leak_of_a_small_dim_object_does_not_flood():
    # In [0, 1] units the object edge here costs ~0.1, alpha stays near 1 over the whole
    # crop and E (~0.5 where Df ~ Db) overrides the confident CNN: the mask used to
    # vanish or flood. Distances in SD units keep the fusion local.
    for seed in range(4):
        img, cnn, gt, margin = _low_contrast_scene(np.random.default_rng(seed))
        before = _dice(cnn >= 0.5, gt)
        res = refine(img, cnn, margin_points=margin, background=[(24, 35)])
        assert res.mask[24, 35] == 0
        assert _dice(res.mask, gt) > before
        assert res.mask[gt].mean() > 0.9  # the object itself is kept


def test_duplicated_channels_give_single_channel_distances():
    img, cnn, gt, margin, lobe_click = _scene((40, 50), np.random.default_rng(3))
    one = refine(img, cnn, margin_points=margin, foreground=[lobe_click], background=[(3, 3)])
    two = refine(
        np.stack([img, img, img]),
        cnn,
        margin_points=margin,
        foreground=[lobe_click],
        background=[(3, 3)],
        channel_axis=0,
    )
    np.testing.assert_allclose(two.probability, one.probability, atol=1e-5)


@pytest.mark.parametrize("method", ["ifgc", "ifgc-global", "ifgc-paper", "gc"])
def test_margin_points_are_hard_foreground_unless_clicked_background(method):
    shape = (30, 34)
    img = np.zeros(shape)
    prob = np.zeros(shape)  # the CNN saw nothing at all
    margin = np.array([(10, 10), (20, 25)])
    res = refine(img, prob, margin_points=margin, background=[(3, 3)], method=method)
    assert res.mask[10, 10] == 1 and res.mask[20, 25] == 1
    # the user's later background click on a margin point's voxel wins
    res = refine(img, prob, margin_points=margin, background=[(3, 3), (20, 25)], method=method)
    assert res.mask[10, 10] == 1 and res.mask[20, 25] == 0


@pytest.mark.parametrize("shape", [(40, 46), (28, 30, 32)])
@pytest.mark.parametrize("method", ["ifgc-global", "gc"])
def test_refined_region_is_the_whole_image_crf_with_the_outside_fixed(shape, method):
    # The region's cut must be the minimum of the CRF on the whole image with every voxel
    # outside the region held at its outside label (prob >= 0.5): graph_cut on the whole
    # image with those voxels as hard constraints gives the same mask.
    rng = np.random.default_rng(len(shape) * 10 + len(method))
    prob = np.clip(ndimage.gaussian_filter(rng.random(shape), 2) * 3 - 1, 0, 1)
    img = ndimage.gaussian_filter(rng.random(shape), 1)
    centre = tuple(n // 2 for n in shape)
    margin = [
        tuple(c + d for c, d in zip(centre, off)) for off in ((1,) * len(shape), (-2,) * len(shape))
    ]
    fg, bg = [tuple(c - 1 for c in centre)], [tuple(c + 3 for c in centre)]
    img[margin[0]], img[margin[1]] = img.max() + 0.5, img.min() - 0.5  # same min-max
    res = refine(img, prob, margin_points=margin, foreground=fg, background=bg, method=method)
    inside = np.zeros(shape, bool)
    inside[res.box.slices] = True
    assert 0 < inside.sum() < inside.size  # the region does not fill the image
    out_fg = np.argwhere(~inside & (prob >= 0.5))
    out_bg = np.argwhere(~inside & (prob < 0.5))
    assert len(out_fg) and len(out_bg)  # both labels occur outside
    whole = graph_cut(
        res.probability,
        img,
        spacing=None,
        foreground=np.concatenate([np.array(margin + fg), out_fg]),
        background=np.concatenate([np.array(bg), out_bg]),
    )
    np.testing.assert_array_equal(res.mask, whole)


def test_a_foreground_click_at_a_weak_edge_does_not_run_to_the_region_border():
    # A bright disc with a dark inner part (so the crop's spread is large) on a flat
    # background only a little darker than the disc: a weak edge. The CNN misses a notch
    # at the bottom; one foreground click there. The fused foreground spreads a little
    # into the flat background, and if a boundary along the border of the refined region
    # were free, the mask would run out to it (Dice 0.88 without the ring); it must stop
    # at the disc.
    shape = (120, 120)
    yy, xx = np.indices(shape)
    gt = (yy - 60) ** 2 + (xx - 60) ** 2 <= 30**2
    img = np.where(gt, 1.0, 0.95)
    img[(yy - 55) ** 2 + (xx - 60) ** 2 <= 15**2] = 0.3
    cnn = np.where(gt & ~((yy > 82) & (abs(xx - 60) < 8)), 0.99, 0.01)
    margin = [(32, 60), (88, 60), (60, 32), (60, 88)]
    res = refine(img, cnn, margin_points=margin, foreground=[(89, 60)], background=[])
    start, stop = res.box.start, res.box.stop
    assert all(0 < a and b < n for a, b, n in zip(start, stop, shape))
    edges = [
        res.mask[start[0], :],
        res.mask[stop[0] - 1, :],
        res.mask[:, start[1]],
        res.mask[:, stop[1] - 1],
    ]
    assert not any(e.any() for e in edges)
    assert _dice(res.mask, gt) > 0.99


# -- click-local fusion (method "ifgc", the default) --------------------------------------


def _ct_like_scene(rng):
    """A CT-like volume in HU: air, soft tissue, a bone slab, and an object 50 HU above the
    soft tissue around it (as a kidney), with a CNN map that has the object about right."""
    shape = (40, 64, 64)
    img = np.full(shape, 40.0)
    img[:, :, :8] = -1000.0  # air
    img[:, 50:, :] = 700.0  # bone
    gt = _ball(shape, np.array([20.0, 24.0, 24.0]), 9.0)
    img[gt] = 90.0
    img += rng.normal(0, 8, shape)
    sd = ndimage.distance_transform_edt(gt) - ndimage.distance_transform_edt(~gt)
    cnn = expit((sd - 0.5) / 1.5)
    margin = np.array(
        [(20, 16, 24), (20, 32, 24), (20, 24, 16), (20, 24, 32), (12, 24, 24), (28, 24, 24)]
    )
    return img, cnn, gt, margin


@pytest.mark.parametrize("seed", range(3))
def test_a_no_op_background_click_on_ct_removes_no_object_voxels(seed):
    # A background click where the mask is already background (soft tissue, 20 voxels from
    # the object) must not take object voxels away: the air-to-bone range of the crop must
    # not flatten the 50 HU edge of the object, and the click's reach is its depth in the
    # error it corrects, here none.
    img, cnn, gt, margin = _ct_like_scene(np.random.default_rng(seed))
    before = cnn >= 0.5
    click = (20, 24, 46)
    assert not before[click] and not gt[click]
    res = refine(img, cnn, margin_points=margin, background=[click])
    lost = before & (res.mask == 0)
    far = np.sqrt(((np.argwhere(lost) - np.array(click)) ** 2).sum(1)) > 3
    assert not far.any()
    assert _dice(res.mask, gt) >= _dice(before, gt) - 1e-9


def test_foreground_then_background_on_one_voxel_gives_background_there():
    img, cnn, gt, margin = _ct_like_scene(np.random.default_rng(0))
    voxel = (20, 24, 40)  # outside the object
    first = refine(img, cnn, margin_points=margin, foreground=[voxel])
    assert first.mask[voxel] == 1
    second = refine(
        img, cnn, margin_points=margin, background=[voxel], previous=first, new_background=[voxel]
    )
    assert second.mask[voxel] == 0


@pytest.mark.parametrize("seed", range(2))
def test_a_foreground_click_in_a_missed_homogeneous_cube_recovers_most_of_it(seed):
    rng = np.random.default_rng(seed)
    shape = (48, 48, 48)
    gt = np.zeros(shape, bool)
    gt[8:40, 8:40, 8:40] = True  # a 32-voxel cube
    img = np.where(gt, 100.0, 20.0) + rng.normal(0, 5, shape)
    cnn = np.zeros(shape)
    cnn[8:20, 8:20, 8:20] = 0.9  # the CNN found one corner only
    margin = np.array(
        [(9, 9, 9), (38, 24, 24), (24, 38, 24), (24, 24, 38), (9, 20, 30), (30, 9, 20)]
    )  # the cube's extremes
    res = refine(img, cnn, margin_points=margin, foreground=[(28, 28, 28)])
    assert _dice(cnn >= 0.5, gt) < 0.11
    assert _dice(res.mask, gt) > 0.9
    assert not res.mask[~gt].any()  # and nothing outside it


def test_rounds_start_from_the_previous_result():
    img, cnn, gt, margin = _ct_like_scene(np.random.default_rng(1))
    first = refine(img, cnn, margin_points=margin, foreground=[(20, 24, 24)])
    # a round whose new click agrees with the previous mask at its voxel changes almost
    # nothing, and no voxel outside the click's reach
    again = refine(
        img,
        cnn,
        margin_points=margin,
        foreground=[(20, 24, 24), (20, 22, 24)],
        previous=first,
        new_foreground=[(20, 22, 24)],
    )
    assert (again.mask != first.mask).sum() <= 3


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(previous=(np.zeros((20, 20)), np.zeros((20, 20)))), "new_foreground"),
        (
            dict(previous=(np.zeros((20, 21)), np.zeros((20, 21))), new_background=[(15, 15)]),
            "spatial shape",
        ),
        (dict(previous="mask"), "pair"),
        (dict(new_foreground=[(3, 3)]), "in force"),
        (dict(method="gc", new_background=[(15, 15)]), "belong to method 'ifgc'"),
    ],
)
def test_refine_rejects_bad_previous_rounds(kwargs, match):
    args = dict(margin_points=[(5, 5), (10, 10)], foreground=[], background=[(15, 15)])
    args.update(kwargs)
    with pytest.raises(InvalidInputError, match=match):
        refine(np.zeros((20, 20)), np.full((20, 20), 0.5), **args)


# -- stage-1 fusion with the margin points ---------------------------------------------------


@pytest.mark.parametrize("shape", [(64, 64), (32, 48, 48)])
def test_margin_point_fusion_recovers_an_object_the_cnn_missed(shape):
    from midseg.refine import fuse_margin_points
    from midseg.crop import relaxed_bbox

    rng = np.random.default_rng(3)
    centre = np.array(shape) / 2.0
    gt = _ball(shape, centre, min(shape) / 4.0)
    img = np.where(gt, 80.0, 20.0) + rng.normal(0, 4, shape)
    cnn = np.full(shape, 0.3)  # the CNN is unsure everywhere
    margin = interior_points(gt)
    fused = fuse_margin_points(img, cnn, margin)
    assert fused.dtype == np.float32 and fused.shape == shape
    assert _dice(fused >= 0.5, gt) > 0.85  # from 0 (the CNN map alone)
    box = relaxed_bbox(margin, shape)
    outside = np.ones(shape, bool)
    outside[box.slices] = False
    np.testing.assert_array_equal(fused[outside], cnn[outside].astype(np.float32))
    assert (fused[tuple(margin.T)] > 0.5).all()  # alpha = 1 at a margin point


def interior_points(gt):
    """Two points just inside the object on every axis (its extremes, 2 voxels in)."""
    nz = np.argwhere(gt)
    c = np.round(nz.mean(0)).astype(int)
    pts = []
    for ax in range(gt.ndim):
        for end in (nz[:, ax].min() + 2, nz[:, ax].max() - 2):
            p = c.copy()
            p[ax] = end
            pts.append(p)
    return np.array(pts)


def test_margin_point_fusion_rejects_bad_input():
    from midseg.refine import fuse_margin_points

    with pytest.raises(InvalidInputError, match="spatial shape"):
        fuse_margin_points(np.zeros((10, 10)), np.zeros((10, 11)), [(5, 5)])
    with pytest.raises(InvalidInputError, match="outside the image"):
        fuse_margin_points(np.zeros((10, 10)), np.zeros((10, 10)), [(5, 12)])
    with pytest.raises(InvalidInputError, match=r"\[0, 1\]"):
        fuse_margin_points(np.zeros((10, 10)), np.full((10, 10), 2.0), [(5, 5)])


def test_background_clicks_on_every_margin_point_still_refine():
    # no foreground seed is left: the intensity window falls back to the crop's range
    img, cnn, gt, margin = _ct_like_scene(np.random.default_rng(2))
    res = refine(img, cnn, margin_points=margin, background=[tuple(p) for p in margin])
    assert not res.mask[tuple(margin.T)].any()


@pytest.mark.parametrize(
    "shape, connectivity", [((30, 40), 8), ((12, 20, 18), 6), ((12, 20, 18), 26)]
)
def test_sparse_graph_cut_equals_the_grid_graph_with_fixed_voxels(shape, connectivity):
    """The free-voxel graph has the same minimum as the grid graph with hard constraints."""
    from scipy import ndimage as ndi

    from midseg.graphcut import _solve, _solve_sparse

    rng = np.random.default_rng(len(shape) + connectivity)
    prob = ndi.gaussian_filter(rng.random(shape), 2)
    prob = (prob - prob.min()) / np.ptp(prob)
    norm = ndi.gaussian_filter(rng.random(shape), 1)[None].astype(np.float32)
    free = ndi.gaussian_filter(rng.random(shape), 3) > 0.5
    labels = (rng.random(shape) > 0.5).astype(np.uint8)
    sp = np.asarray([2.0] + [1.0] * (len(shape) - 1))
    grid = _solve(
        prob,
        norm,
        np.argwhere(~free & (labels == 1)),
        np.argwhere(~free & (labels == 0)),
        lam=5.0,
        sigma=0.1,
        spacing=sp,
        connectivity=connectivity,
    )
    sparse = _solve_sparse(
        prob, norm, free, labels, lam=5.0, sigma=0.1, spacing=sp, connectivity=connectivity
    )
    np.testing.assert_array_equal(sparse, grid)


def test_narrow_band_equals_the_full_solve_when_the_band_holds_the_boundary(monkeypatch):
    """A click whose zone exceeds BAND_MIN_VOXELS: the band solve gives the full solve's mask
    when the cut lies within BAND_WIDTH of the fused map's boundary."""
    import midseg.graphcut as gcut
    import midseg.refine as rf

    shape = (40, 90, 90)
    zz, yy, xx = np.indices(shape)
    ball = ((zz - 20) / 15) ** 2 + ((yy - 45) / 35) ** 2 + ((xx - 45) / 35) ** 2 < 1
    rng = np.random.default_rng(0)
    image = (ball * 100.0 + rng.normal(0, 5, shape)).astype(np.float32)
    prob = np.where(ball & (xx < 45), 0.9, 0.1).astype(np.float32)  # half of it missed
    margin = [(20, 45, 12), (20, 45, 78), (20, 12, 45), (20, 78, 45), (7, 45, 45), (33, 45, 45)]
    prev = (prob, (prob >= 0.5).astype(np.uint8))
    kw = dict(
        margin_points=margin,
        foreground=[(20, 45, 65)],
        spacing=(1.0, 1.0, 1.0),
        previous=prev,
        new_foreground=[(20, 45, 65)],
        new_background=[],
    )
    monkeypatch.setattr(rf, "BAND_MIN_VOXELS", 1000)
    calls = []
    real_band = gcut._boundary_distance
    monkeypatch.setattr(gcut, "_boundary_distance", lambda *a: calls.append(1) or real_band(*a))
    banded = rf.refine(image, prob, **kw)
    assert calls  # the band was used
    monkeypatch.setattr(rf, "BAND_MIN_VOXELS", 10**12)
    full = rf.refine(image, prob, **kw)
    zone_free = np.count_nonzero(full.mask != prev[1])
    assert zone_free > 1000  # the click claimed the missed half
    np.testing.assert_array_equal(banded.mask, full.mask)


def test_click_depth_equals_the_distance_transform():
    """The windowed search gives the exact Euclidean distance a full EDT gives."""
    from scipy import ndimage as ndi

    from midseg.fusion import _click_depth

    rng = np.random.default_rng(0)
    for _ in range(100):
        shape = tuple(int(n) for n in rng.integers(5, 40, size=rng.integers(2, 4)))
        m = (ndi.gaussian_filter(rng.random(shape), 2) > 0.5).astype(np.uint8)
        unit = rng.uniform(1, 3, size=len(shape))
        unit /= unit.min()
        pts = np.stack([rng.integers(0, n, size=2) for n in shape], 1)
        cls = int(rng.integers(0, 2))
        agree = m == cls
        if agree.any():
            edt = ndi.distance_transform_edt(~agree, sampling=unit)
            want = max(1.0, float(edt[tuple(pts.T)].max()))
        else:
            want = float(np.sqrt(np.sum((np.asarray(shape) * unit) ** 2)))
        assert _click_depth(m, pts, cls, unit) == pytest.approx(want, abs=1e-9)


def _cube_scene(seed=0):
    """A 30^3 image with a bright 12^3 cube in noise, its 6 margin points, and a fused
    map whose 0.5-level is the cube grown by 1 voxel: confident (0.9) in the cube, lukewarm
    (0.55) in the 1-voxel shell around it, as the geodesic evidence is where Df ~ Db."""
    rng = np.random.default_rng(seed)
    img = rng.normal(0.0, 0.05, (30, 30, 30)).astype(np.float32)
    cube = np.zeros(img.shape, bool)
    cube[9:21, 9:21, 9:21] = True
    img[cube] += 1.0
    pts = np.array(
        [(10, 15, 15), (19, 15, 15), (15, 10, 15), (15, 19, 15), (15, 15, 10), (15, 15, 19)]
    )
    grown = np.zeros(img.shape, bool)
    grown[8:22, 8:22, 8:22] = True
    fused = np.where(cube, 0.9, np.where(grown, 0.55, 0.1)).astype(np.float32)
    return img, cube, pts, fused


def test_stage1_cut_snaps_the_fused_boundary_to_the_image_edge():
    from midseg.crop import relaxed_bbox
    from midseg.metrics import dice
    from midseg.refine import cut_margin_points_box

    img, cube, pts, fused = _cube_scene()
    box = relaxed_bbox(pts, img.shape)
    cut = cut_margin_points_box(img[None], fused[box.slices], pts, box, np.ones(3))
    full = np.zeros(img.shape, np.uint8)
    full[box.slices] = cut
    assert dice(fused >= 0.5, cube) < 0.8  # the fused mask is 1 voxel too large
    assert dice(full, cube) > 0.95
    assert np.all(full[tuple(pts.T)] == 1)  # margin points are foreground constraints


def test_stage1_cut_is_the_threshold_in_2d_and_never_deletes_a_lukewarm_object():
    from midseg.crop import relaxed_bbox
    from midseg.refine import MARGIN_CUT_KEEP, cut_margin_points_box

    img, cube, pts, fused = _cube_scene()
    sl = img[15]
    pts2 = np.unique(pts[:, 1:], axis=0)
    box2 = relaxed_bbox(pts2, sl.shape)
    f2 = fused[15][box2.slices]
    np.testing.assert_array_equal(
        cut_margin_points_box(sl[None], f2, pts2, box2, np.ones(2)), (f2 >= 0.5).astype(np.uint8)
    )
    # 3D, fused map barely above 0.5 on a flat image: a pairwise weight of 100 would keep
    # only the margin points; the stage-1 mask falls back to the fused mask instead
    box = relaxed_bbox(pts, img.shape)
    flat = np.zeros_like(img)
    lukewarm = np.where(cube, 0.51, 0.2).astype(np.float32)[box.slices]
    out = cut_margin_points_box(flat[None], lukewarm, pts, box, np.ones(3), lam=1000.0)
    assert MARGIN_CUT_KEEP > 0
    np.testing.assert_array_equal(out, (lukewarm >= 0.5).astype(np.uint8))


def test_stage1_cut_equals_the_full_grid_solve():
    # only uncertain voxels enter the graph; the others are fixed by persistency (their
    # unary difference exceeds every pairwise weight they touch): the minimum is the same
    from midseg.crop import relaxed_bbox
    from midseg.fusion import _object_window
    from midseg.graphcut import _solve_sparse, _window_normalise
    from midseg.refine import cut_margin_points_box

    img, cube, pts, fused = _cube_scene()
    noisy = np.random.default_rng(1).normal(0, 0.2, fused.shape)
    fused = np.clip(fused + noisy, 0, 1).astype(np.float32)
    box = relaxed_bbox(pts, img.shape)
    sp = np.array([2.0, 1.0, 1.0])
    crop = img[None][(slice(None),) + box.slices]
    loc = pts - np.asarray(box.start)
    norm = _window_normalise(crop, _object_window(crop, loc))
    for lam in (2.0, 5.0, 10.0):
        got = cut_margin_points_box(img[None], fused[box.slices], pts, box, sp, lam=lam)
        free = np.ones(got.shape, bool)
        free[tuple(loc.T)] = False
        labels = (fused[box.slices] >= 0.5).astype(np.uint8)
        labels[tuple(loc.T)] = 1
        full = _solve_sparse(
            fused[box.slices],
            norm,
            free,
            labels,
            lam=lam * 0.1,
            sigma=0.1,
            spacing=sp,
            connectivity=None,
        )
        np.testing.assert_array_equal(got, full)


def _missed_blob_round(claim_keep, **clicks):
    """One click-local round on one homogeneous noisy tissue (no edge anywhere): the
    previous mask is a ball at x = 10, the click 8 voxels from it; λ = 20 makes the
    pairwise term strong enough to undo the click's fused claim."""
    n = 40
    z, y, x = np.mgrid[:n, :n, :n]
    image = np.random.default_rng(0).normal(0.0, 1.0, (n, n, n))
    kept = ((z - 20) ** 2 + (y - 20) ** 2 + (x - 10) ** 2) <= 36
    prob = kept.astype(np.float32)
    margin = [(20, 20, 5), (15, 20, 10), (25, 20, 10), (20, 15, 10)]
    fg, bg = clicks.get("foreground", []), clicks.get("background", [])
    res = refine(
        image, prob, margin_points=margin, foreground=fg, background=bg, lam=20.0,
        previous=(prob, kept.astype(np.uint8)), new_foreground=fg, new_background=bg,
        claim_keep=claim_keep,
    )  # fmt: skip
    return res, kept


def test_a_foreground_click_keeps_its_claim_when_the_cut_would_undo_it():
    """Issue 17: a foreground click deep in a missed homogeneous region claims it, also
    where the pairwise term alone would keep little more than the click's voxel."""
    click = (20, 20, 24)
    off, kept = _missed_blob_round(0.0, foreground=[click])
    on, _ = _missed_blob_round(CLICK_CLAIM_KEEP, foreground=[click])
    claimed = (on.probability >= 0.5) & ~kept
    cut_added = off.mask.astype(bool) & ~kept
    assert np.count_nonzero(cut_added) < 0.05 * claimed.sum()
    gained = on.mask.astype(bool) & ~kept
    assert claimed.sum() > 5000 and on.mask[click] == 1
    assert np.array_equal(gained, claimed | cut_added)  # the claim is added to the cut
    assert np.array_equal(on.mask[kept], off.mask[kept])  # only additions are taken
    with pytest.raises(InvalidInputError, match="claim_keep"):
        _missed_blob_round(1.5, foreground=[click])


def test_the_claim_guard_leaves_background_rounds_alone():
    bg_click = (20, 20, 12)
    off, _ = _missed_blob_round(0.0, background=[bg_click])
    on, _ = _missed_blob_round(1.0, background=[bg_click])
    assert np.array_equal(off.mask, on.mask)


def test_the_claim_guard_in_a_round_with_both_classes_takes_only_the_claim():
    """A foreground and a background click in one round (as `markups import` writes
    them): the foreground claim is taken, what the cut removes for the background click
    stays removed."""
    kw = {"foreground": [(20, 20, 24)], "background": [(20, 20, 12)]}
    off, kept = _missed_blob_round(0.0, **kw)
    on, _ = _missed_blob_round(CLICK_CLAIM_KEEP, **kw)
    removed_off = kept & ~off.mask.astype(bool)
    assert removed_off.sum() > 0 and on.mask[20, 20, 12] == 0
    assert np.array_equal(on.mask[kept], off.mask[kept])  # the background fix is kept
    gained_on = np.count_nonzero(on.mask.astype(bool) & ~kept)
    assert gained_on > 20 * np.count_nonzero(off.mask.astype(bool) & ~kept)


def _shell_round(min_click_depth):
    """A 3D mask that overshoots a bright cube by a 2-voxel shell of background tissue
    all round; one background click in the shell."""
    n = 40
    rng = np.random.default_rng(1)
    image = rng.normal(0.0, 0.05, (n, n, n))
    obj = np.zeros((n, n, n), bool)
    obj[12:28, 12:28, 12:28] = True
    image[obj] += 1.0
    prev = np.zeros_like(obj)
    prev[10:30, 10:30, 10:30] = True  # the object dilated by 2 voxels
    margin = [(20, 20, 13), (20, 20, 26), (13, 20, 20), (26, 20, 20), (20, 13, 20)]
    click = (20, 20, 10)  # in the shell, on its outer face
    res = refine(
        image, prev.astype(np.float32), margin_points=margin, background=[click],
        previous=(prev.astype(np.float32), prev.astype(np.uint8)), new_foreground=[],
        new_background=[click], min_click_depth=min_click_depth,
    )  # fmt: skip
    return res.mask.astype(bool), prev, obj


def test_a_click_in_a_thin_layer_of_error_reaches_at_least_min_click_depth():
    """Issue 17: a background click in a one- or two-voxel layer of error (depth 1) fixes
    a patch of the layer, not only its own voxel, with the 3D default depth floor; the
    object stays whole."""
    one, prev, obj = _shell_round(1.0)
    two, _, _ = _shell_round(2.0)
    removed_one = np.count_nonzero(prev & ~one)
    removed_two = np.count_nonzero(prev & ~two)
    assert removed_two > 2 * removed_one > 0
    assert np.all(two[obj]) and np.all(one[obj])  # only the shell goes
    default, _, _ = _shell_round(None)  # None: CLICK_DEPTH_MIN[3] = 2
    assert np.array_equal(default, two)
    for bad in (0.5, float("nan"), True, "2"):
        with pytest.raises(InvalidInputError, match="min_click_depth"):
            _shell_round(bad)


def test_min_click_depth_defaults_to_2d_for_a_volume_one_voxel_thick():
    """A (1, Y, X) volume is a 2D image (as `midseg.Session` computes it): depth floor 1."""
    n = 40
    image = np.random.default_rng(2).normal(0.0, 0.05, (1, n, n))
    obj = np.zeros((1, n, n), bool)
    obj[0, 12:28, 12:28] = True
    image[obj] += 1.0
    prev = np.zeros_like(obj)
    prev[0, 10:30, 10:30] = True
    margin = [(0, 20, 13), (0, 20, 26), (0, 13, 20)]
    kw = dict(
        margin_points=margin, background=[(0, 20, 10)], new_foreground=[],
        new_background=[(0, 20, 10)], previous=(prev.astype(np.float32), prev.astype(np.uint8)),
    )  # fmt: skip
    default = refine(image, prev.astype(np.float32), **kw).mask
    one = refine(image, prev.astype(np.float32), min_click_depth=1, **kw).mask
    two = refine(image, prev.astype(np.float32), min_click_depth=2, **kw).mask
    assert np.array_equal(default, one) and not np.array_equal(one, two)
    with pytest.raises(InvalidInputError, match="min_click_depth"):
        refine(image, prev.astype(np.float32), min_click_depth=10**400, **kw)


def _rim_round(band_reach, cls):
    """A 2D mask that overshoots (cls 0) or misses (cls 1) a bright square by a rim one
    voxel wide all round; one click of class `cls` in the rim on the square's left side."""
    n = 60
    image = np.random.default_rng(3).normal(0.0, 0.05, (n, n))
    obj = np.zeros((n, n), bool)
    obj[20:40, 20:40] = True
    image[obj] += 1.0
    prev = np.zeros_like(obj)
    if cls == 0:
        prev[19:41, 19:41] = True
        click = (30, 19)
    else:
        prev[21:39, 21:39] = True
        click = (30, 20)
    margin = [(30, 22), (30, 37), (22, 30), (37, 30)]
    fg, bg = ([click], []) if cls else ([], [click])
    res = refine(
        image, prev.astype(np.float32), margin_points=margin, foreground=fg, background=bg,
        previous=(prev.astype(np.float32), prev.astype(np.uint8)), new_foreground=fg,
        new_background=bg, band_reach=band_reach,
    )  # fmt: skip
    return res.mask.astype(bool), prev, obj


@pytest.mark.parametrize("cls", [0, 1])
def test_a_click_in_a_thin_rim_of_error_relabels_the_rim_along_the_boundary(cls):
    """Issue 17: with the boundary band (the 2D default) a click in a rim of error one
    voxel wide relabels the rim along the square's side, far beyond its own reach, and
    never crosses the true boundary; without it (band_reach 0) only a patch around the
    click changes."""
    off, prev, obj = _rim_round(0.0, cls)
    on, _, _ = _rim_round(None, cls)  # None: CLICK_BAND_REACH[2] = 6
    rim = prev & ~obj if cls == 0 else obj & ~prev
    fixed_off = np.count_nonzero(rim & (off == obj))
    fixed_on = np.count_nonzero(rim & (on == obj))
    assert fixed_on > 3 * fixed_off > 0
    assert fixed_on >= 20  # most of the left side (20 voxels) and more
    assert np.array_equal(on[~rim], prev[~rim])  # nothing beyond the rim changes
    explicit, _, _ = _rim_round(6.0, cls)
    assert np.array_equal(explicit, on)
    for bad in (-0.5, float("nan"), True, "2"):
        with pytest.raises(InvalidInputError, match="band_reach"):
            _rim_round(bad, cls)


def _band_round(image, prev, click, cls):
    """One 2D round with the default boundary band from `prev`; margin points inside the
    square of `_rim_round`."""
    margin = [(30, 22), (30, 37), (22, 30), (37, 30)]
    fg, bg = ([click], []) if cls else ([], [click])
    res = refine(
        image, prev.astype(np.float32), margin_points=margin, foreground=fg, background=bg,
        previous=(prev.astype(np.float32), prev.astype(np.uint8)), new_foreground=fg,
        new_background=bg,
    )  # fmt: skip
    return res.mask.astype(bool)


def test_the_boundary_band_goes_no_deeper_than_the_click():
    """A foreground click in a missed rim one voxel wide, beside a strip that looks like the
    object just outside it: the band takes the rim along the side, and of the strip only
    what the click's own reach takes next to it (a band 2 voxels deeper took 13)."""
    image = np.random.default_rng(4).normal(0.0, 0.05, (60, 60))
    obj = np.zeros((60, 60), bool)
    obj[20:40, 20:40] = True
    image[obj] += 1.0
    image[20:40, 16:20] += 1.0  # like the object, outside it
    prev = np.zeros_like(obj)
    prev[21:39, 21:39] = True
    click = (30, 20)
    mask = _band_round(image, prev, click, 1)
    strip = np.zeros_like(obj)
    strip[20:40, 16:20] = True
    taken = np.argwhere(mask & strip)
    assert len(taken) <= 3 and np.all(np.hypot(*(taken - click).T) <= 1.5)
    assert np.count_nonzero(mask[20:40, 20]) >= 10  # of the rim along the side, 20 voxels


def test_the_boundary_band_stops_where_the_layer_stops_looking_like_the_click():
    """A background click in an overshooting rim whose lower half on the left is brighter:
    the band removes the rim's dark upper half and keeps most of the brighter half (without
    the geodesic term it removed all of it, with a third of its weight 8 of 10)."""
    image = np.random.default_rng(5).normal(0.0, 0.05, (60, 60))
    obj = np.zeros((60, 60), bool)
    obj[20:40, 20:40] = True
    image[obj] += 1.0
    image[31:41, 19] += 0.8
    prev = np.zeros_like(obj)
    prev[19:41, 19:41] = True
    mask = _band_round(image, prev, (22, 19), 0)
    assert not mask[19:31, 19].any()  # the dark upper half, up to 9 voxels from the click
    assert np.count_nonzero(~mask[31:41, 19]) <= 5
    assert mask[obj].all()


@pytest.mark.parametrize("seed", range(3))
def test_a_no_op_background_click_in_2d_has_no_boundary_band(seed):
    """The 2D slice of the CT-like scene with a weak edge (the object 10 HU above its
    surround): a background click where the mask is already background, near the object,
    removes no object voxel farther than 3 voxels from it (with the band it took up to 6)."""
    img, cnn, gt, margin = _ct_like_scene(np.random.default_rng(seed))
    img2, cnn2, gt2 = img[20].copy(), cnn[20], gt[20]
    img2[gt2] -= 40.0
    margin2 = np.array([p[1:] for p in margin if p[0] == 20])
    before = cnn2 >= 0.5
    for click in [(12, 24), (30, 32), (24, 37)]:
        assert not before[click] and not gt2[click]
        res = refine(img2, cnn2, margin_points=margin2, background=[click])  # band_reach 6
        lost = np.argwhere(before & (res.mask == 0))
        assert not np.any(np.hypot(*(lost - np.array(click)).T) > 3), (click, lost)


def _thick_slice_round(ratio, spacing=7.5, lo=12, hi=28):
    """An MR-like volume of `spacing` mm slices (0.78 mm pixels): a bright object in slices
    3-6 (rows and columns lo:hi) and a mask that also covers slice 7 (stage 1 overshot a
    whole slice, where partial volume makes it look like the object); one background click
    in slice 7."""
    shape = (12, 40, 40)
    image = np.random.default_rng(6).normal(0.0, 0.05, shape)
    obj = np.zeros(shape, bool)
    obj[3:7, lo:hi, lo:hi] = True
    image[obj] += 1.0
    image[7, lo:hi, lo:hi] += 1.0  # like the object, outside it
    prev = obj.copy()
    prev[7, lo:hi, lo:hi] = True
    click = (7, 20, 20)
    margin = [(4, 20, 14), (4, 20, 26), (5, 14, 20), (5, 26, 20), (3, 20, 20), (6, 20, 20)]
    res = refine(
        image, prev.astype(np.float32), margin_points=margin, background=[click],
        spacing=(spacing, 0.78, 0.78), previous=(prev.astype(np.float32), prev.astype(np.uint8)),
        new_foreground=[], new_background=[click], thick_slice_ratio=ratio,
    )  # fmt: skip
    return res.mask.astype(bool), prev, obj


def test_a_click_in_a_thick_slice_relabels_only_its_own_slice():
    """Issue 17: with the 3D default (slices at least 5 times the pixel) the background
    click takes the overshot slice's patch and leaves the object's slices as they were;
    without the rule (ratio 0) it also takes the object out of the slice next to it."""
    on, prev, obj = _thick_slice_round(None)  # None: THICK_SLICE_RATIO[3] = 5
    off, _, _ = _thick_slice_round(0.0)
    assert np.array_equal(on[:7], prev[:7]) and np.array_equal(on[8:], prev[8:])
    assert np.count_nonzero(prev[7] & ~on[7]) > 50  # the click's patch of slice 7
    assert np.count_nonzero(obj & ~off) > 50  # ... which the rule keeps from slice 6
    explicit, _, _ = _thick_slice_round(5.0)
    assert np.array_equal(explicit, on)
    assert np.array_equal(_thick_slice_round(10.0)[0], off)  # 7.5 / 0.78 = 9.6 < 10
    for bad in (-1.0, 0.5, 1.0, float("nan"), float("inf"), True, "5"):
        with pytest.raises(InvalidInputError, match="thick_slice_ratio"):
            _thick_slice_round(bad)


def test_a_click_in_an_overshot_slice_wider_than_thick_stays_in_it():
    """6.5 mm slices, an overshot slice 36 pixels wide: the click's nearest correct voxel
    is straight across in the next slice, so its depth is exactly one slice. It still
    corrects a one-slice error and stays in its slice (with ratio 0 the object loses
    hundreds of voxels)."""
    on, prev, obj = _thick_slice_round(None, spacing=6.5, lo=2, hi=38)
    off, _, _ = _thick_slice_round(0.0, spacing=6.5, lo=2, hi=38)
    assert np.array_equal(on[:7], prev[:7]) and not on[7, 20, 20]
    assert np.count_nonzero(obj & ~off) > 100


def test_a_click_deeper_than_a_thick_slice_reaches_across_slices():
    """A lobe missed across all its slices (5 mm slices, 0.8 mm pixels): a foreground
    click 10 pixels deep in it corrects an error thicker than a slice, so it reaches the
    neighbouring slices as without the thick-slice rule."""
    shape = (12, 40, 40)
    image = np.random.default_rng(7).normal(0.0, 0.05, shape)
    obj = np.zeros(shape, bool)
    obj[2:10, 6:34, 6:34] = True
    image[obj] += 1.0
    prev = obj.copy()
    prev[:, :, 16:] = False  # the lobe x >= 16 is missed in every slice
    click = (5, 20, 25)
    margin = [(5, 20, 8), (5, 8, 10), (5, 32, 10), (3, 20, 10), (8, 20, 10)]
    masks = {}
    for ratio in (None, 0.0):
        masks[ratio] = refine(
            image, prev.astype(np.float32), margin_points=margin, foreground=[click],
            spacing=(5.0, 0.8, 0.8), previous=(prev.astype(np.float32), prev.astype(np.uint8)),
            new_foreground=[click], new_background=[], thick_slice_ratio=ratio,
        ).mask.astype(bool)  # fmt: skip
    assert np.array_equal(masks[None], masks[0.0])
    assert np.count_nonzero(masks[None][4] & ~prev[4]) > 50  # the next slice gains too


def test_thick_slice_distances_keep_each_click_to_its_own_slice():
    """Two clicks in neighbouring thick slices: a voxel of one slice is as far as the
    nearest click of that slice, however near the other slice's click lies across."""
    from midseg.fusion import _slice_distance

    unit = np.array([6.5 / 0.78, 1.0, 1.0])
    pts = np.array([(7, 5, 5), (8, 30, 30)])
    d = _slice_distance((12, 40, 40), pts, unit, 5.0)
    assert d[7, 30, 30] == pytest.approx(np.hypot(25, 25), rel=1e-6)
    assert d[8, 30, 30] == 0 and d[7, 5, 5] == 0
    assert np.all(np.isinf(d[:7])) and np.all(np.isinf(d[9:]))
    plain = _slice_distance((12, 40, 40), pts, unit, 0.0)
    assert plain[7, 30, 30] == pytest.approx(unit[0], rel=1e-6)  # the other click, across
    assert np.array_equal(_slice_distance((12, 40, 40), pts, unit, 9.0), plain)  # 8.3 < 9


def test_a_ratio_just_above_one_makes_no_isotropic_axis_a_slice_axis():
    """On an isotropic volume no axis is thicker than another: any ratio leaves the plain
    distance (a ratio of 1 + 1e-7 once froze every click to its own voxel)."""
    from midseg.fusion import _slice_distance

    pts = np.array([(3, 4, 5)])
    plain = _slice_distance((8, 9, 10), pts, np.ones(3), 0.0)
    for ratio in (1.0000001, 1.5, 5.0):
        assert np.array_equal(_slice_distance((8, 9, 10), pts, np.ones(3), ratio), plain)


@pytest.mark.parametrize("method", ["ifgc", "gc", "ifgc-global", "ifgc-paper"])
def test_a_volume_one_voxel_thick_is_refined_as_its_2d_image(method):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:60, :70]
    obj = ((yy - 30) ** 2 / 300 + (xx - 35) ** 2 / 500) < 1
    img = (obj * 1.0 + rng.normal(0, 0.3, obj.shape)).astype(np.float32)
    prob = np.clip(obj * 0.7 + 0.15 + rng.normal(0, 0.05, obj.shape), 0, 1).astype(np.float32)
    mp = np.array([[30, 14], [30, 56], [14, 35], [46, 35]])
    flat = refine(
        img, prob, margin_points=mp, foreground=[(30, 10)], background=[(10, 10)], method=method
    )
    for ax in range(3):  # the same mask and map, whichever axis is the thin one
        got = refine(
            np.expand_dims(img, ax),
            np.expand_dims(prob, ax),
            margin_points=np.insert(mp, ax, 0, axis=1),
            foreground=[tuple(np.insert([30, 10], ax, 0))],
            background=[tuple(np.insert([10, 10], ax, 0))],
            method=method,
        )
        np.testing.assert_array_equal(np.squeeze(got.mask, ax), flat.mask)
        np.testing.assert_array_equal(np.squeeze(got.probability, ax), flat.probability)
