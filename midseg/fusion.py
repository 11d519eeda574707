"""Information fusion of MIDeepSeg (Eq. 3-7): geodesic distances of clicks and margin
points fused with a probability map.

`fuse_probabilities` is the paper's fusion of all clicks with the CNN map ("ifgc-global",
"ifgc-paper"); `_local_fusion` the click-local fusion of one round ("ifgc");
`fuse_margin_points` / `fuse_margin_points_box` the stage-1 fusion of the margin points.
`midseg.refine` combines them with the graph cut (`midseg.graphcut`). This module must
not call the CNN.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage
from scipy.special import expit

from ._checks import as_points, as_spacing, channels_first, check_fraction, real_number
from .crop import Box, relaxed_bbox
from .errors import InvalidInputError
from .graphcut import _check_prob, _same_voxel, _window_normalise

__all__ = [
    "fuse_probabilities",
    "fuse_margin_points",
    "fuse_margin_points_box",
    "FUSION_WEIGHTINGS",
    "REFINE_LAMB",
    "DISTANCE_SCALE",
    "DISTANCE_SMOOTHING",
    "REFINE_ITERATIONS",
    "CLICK_REACH",
    "CLICK_DEPTH_MIN",
    "CLICK_BAND_REACH",
    "CLICK_BAND_GEODESIC",
    "THICK_SLICE_RATIO",
    "LOCAL_ZONE_ALPHA",
    "LOCAL_ITERATIONS",
    "LOCAL_SMOOTHING",
    "WINDOW_QUANTILES",
    "WINDOW_PAD",
    "WINDOW_MIN_FRACTION",
    "MARGIN_FUSION_FLOOR",
    "check_margin_floor",
    "check_click_depth_min",
    "check_band_reach",
    "check_thick_slice_ratio",
]


#: Fusion weightings of `fuse_probabilities`.
FUSION_WEIGHTINGS = ("certainty", "paper")


#: `lamb` of `midseg.geodesic.geodesic_distance` for the refinement distances Df and Db:
#: 1, the pure geodesic distance of the paper's Eq. 2, on the [0, 1]-normalised crop.
REFINE_LAMB = 1.0


#: Spatial scale of the refinement distances, in voxels of the smallest spacing: each of Df
#: and Db is the geodesic distance plus the Euclidean distance to the nearest seed divided
#: by this, so alpha = e^-min(Df, Db) falls at least e-fold every 20 voxels away from all
#: seeds even where the image is flat (see `refine`, Notes).
DISTANCE_SCALE = 20.0


#: Gaussian smoothing (standard deviation, in voxels of the smallest spacing) of the crop
#: before the refinement distances: it removes most of the cost of walking through noise
#: while an edge still costs its full intensity change (blurring does not change the total
#: change across it). See `refine`, Notes.
DISTANCE_SMOOTHING = 0.5


#: Raster-scan iterations of the refinement geodesics (GeodisTK's and MIDeepSeg's 2).
REFINE_ITERATIONS = 2


#: Click-local fusion (method "ifgc"): the reach of a click is CLICK_REACH times its depth r,
#: the distance (units of the smallest spacing) from the click to the nearest voxel the
#: previous mask already gives the click's class; see `refine`, Notes. Chosen on
#: ``dev_unseen`` together with `LOCAL_PAIRWISE` (``docs/decisions.md``).
CLICK_REACH = 2.5


#: Click-local fusion: the smallest depth r a click's reach is computed from, per
#: dimensionality (units of the smallest spacing): ``reach = CLICK_REACH * max(r,
#: CLICK_DEPTH_MIN[ndim])``. A click in a one- or two-voxel layer of error along the
#: boundary (a mask that overshoots an object all round) otherwise fixes little more than
#: its own voxel. 1 in 2D (no floor: more harmful clicks there), 2 in 3D; chosen on
#: ``dev_unseen`` (``docs/decisions.md``). Clicks files before version 6 replay with 1.
CLICK_DEPTH_MIN = {2: 1.0, 3: 2.0}


#: Click-local fusion, the boundary band: a click at depth r also relabels the voxels of
#: the label it corrects that lie within r + 1/2 of the nearest voxel of its own class (a
#: layer as thick as its own error), up to CLICK_BAND_REACH[ndim] times its reach away,
#: weighted by the image (`refine`, Notes, "The boundary band"). A mask that overshoots or
#: misses an object by a thin layer all along its boundary is then corrected along the
#: layer, not only around the click. 6 in 2D; 0 (off) in 3D, where the first background
#: click on the thalamus lost 3-29 points (``docs/decisions.md``). Clicks files before
#: version 7 replay with 0.
CLICK_BAND_REACH = {2: 6.0, 3: 0.0}

#: The boundary band's weight of the geodesic distance: a band voxel's weight is
#: ``exp(-(CLICK_BAND_GEODESIC * D_geo + (D_euc / (band_reach * reach))^2))``, so only
#: voxels that look like the click (within about a third of an SD along the way) follow it.
CLICK_BAND_GEODESIC = 3.0


#: Click-local fusion, thick slices: along an axis whose spacing is at least this many
#: times the smallest one, a click no deeper than a slice is thick reaches only its own
#: slice (`refine`, Notes, "Thick slices"). Neighbouring slices that far apart share little
#: but partial volume, and an error thinner than a slice says nothing about the next one:
#: on MR tumours of 6.5 mm slices (0.78 mm pixels) a background click in a slice stage 1
#: overshot took the object out of the next one. A deeper click (a large error, as a lobe
#: missed across slices) reaches across as before. 5 in 3D (0 = off; in 2D
#: there are no slices); chosen on ``dev_unseen`` (``docs/decisions.md``). Clicks files
#: before version 8 replay with 0.
THICK_SLICE_RATIO = {2: 0.0, 3: 5.0}


#: Click-local fusion: voxels where every new click's weight alpha is below this keep the
#: previous round's label (hard constraints of the graph cut).
LOCAL_ZONE_ALPHA = 0.01


#: Click-local fusion: raster-scan iterations of its geodesic distances (additive step cost):
#: at most 5 % of the maximum above the exact shortest path on 64x96x96 crops, 0.4 % in 2D
#: (``python benchmarks/geodesic.py --accuracy``).
LOCAL_ITERATIONS = 10


#: Click-local fusion: Gaussian smoothing (standard deviation, voxels of the smallest spacing)
#: of the crop before its geodesic distances: with the additive step cost, noise is what a
#: walk through a homogeneous region pays; at 0.5 a click claimed 53 % of a missed noisy cube
#: in one of two noise draws, at 1.0 over 99 % in both (`tests/test_refine.py`).
LOCAL_SMOOTHING = 1.0


#: Object-referenced intensity window of the click-local fusion (`refine`, Notes): the
#: 5th-95th percentile of the intensities in 3x3(x3) neighbourhoods of the foreground seeds,
#: widened on each side by WINDOW_PAD times that range, and by at least WINDOW_MIN_FRACTION
#: of the region's 0.5th-99.5th percentile range.
WINDOW_QUANTILES = (5.0, 95.0)


WINDOW_PAD = 1.0


WINDOW_MIN_FRACTION = 0.05


def _check_distance(d, shape, name) -> np.ndarray | None:
    if d is None:
        return None
    arr = np.asarray(d)
    if arr.dtype.kind not in "biuf":
        raise InvalidInputError(f"{name} must be numeric, got dtype {arr.dtype}")
    if arr.shape != tuple(shape):
        raise InvalidInputError(
            f"{name} must have the shape of prob {tuple(shape)}, got {arr.shape}"
        )
    if np.isnan(arr).any() or (arr < 0).any():
        raise InvalidInputError(
            f"{name} must hold distances >= 0 (+inf allowed), got NaN or negative values "
            f"(min {np.nanmin(arr) if not np.isnan(arr).all() else 'nan'})"
        )
    return arr


def fuse_probabilities(
    prob: np.ndarray,
    d_fg: np.ndarray | None,
    d_bg: np.ndarray | None,
    *,
    weighting: str = "certainty",
) -> np.ndarray:
    """Blend the CNN probability with click distances (MIDeepSeg Eq. 3-7).

    ``E_f = e^-Df / (e^-Df + e^-Db)`` and ``R_f = (1 - alpha) * P_f + alpha * E_f``
    with, by `weighting`:

    - ``"certainty"`` (default): ``alpha = e^-min(Df, Db) * |E_f - E_b|``,
      i.e. the paper's weight scaled by how decisively the clicks favour one
      class (``|E_f - E_b| = |2 E_f - 1|``);
    - ``"paper"``: ``alpha = e^-min(Df, Db)``, Eq. 7 as printed.

    The background map of the paper, ``R_b = (1 - alpha) * (1 - P_f) + alpha * E_b``,
    is exactly ``1 - R_f`` and is not returned.

    Parameters
    ----------
    prob : (Y, X) or (Z, Y, X) ndarray of float
        CNN foreground probability P_f, values in [0, 1]. Not modified.
    d_fg, d_bg : ndarray of the same shape, or None
        Geodesic distances Df to the foreground seeds (interior margin points
        and foreground clicks) and Db to the background clicks, >= 0, +inf
        allowed. ``None`` means there are no seeds of that class.
    weighting : {"certainty", "paper"}
        How ``alpha`` is computed (above; Notes).

    Returns
    -------
    ndarray of float32, same shape as `prob`
        The user-calibrated foreground probability R_f, in [0, 1].

    Raises
    ------
    InvalidInputError
        `prob` outside [0, 1] or not finite, a distance map of another shape,
        NaN or negative distances.

    Notes
    -----
    *Missing class.* The paper sets the distance of a class without clicks "to
    a constant value" without naming it. We use the constant ``+inf`` (what
    ``None`` stands for): no seeds of a class means no evidence for it, so
    ``E`` of the present class is 1, ``alpha = e^-D`` of the present class
    alone, and the result is the limit of any large constant. A finite
    constant ``c`` would instead pull every voxel with ``D > c`` towards the
    missing class with weight ``e^-c`` everywhere in the crop. Where both
    distances are infinite, ``alpha = 0`` and ``R_f = P_f``.

    *Certainty weighting.* Eq. 7 gives the click cue ``E`` full weight near
    any seed, also where ``E`` is about 0.5: where a leak has no edge, a
    voxel is about as near the foreground seeds as the background click,
    the clicks say nothing about it, and ``alpha ~ 1`` replaces a confident
    CNN probability by 0.5. Near a background click next to a small object
    the whole object turns lukewarm and the CRF (λ = 5) deletes it. With
    ``alpha`` scaled by ``|E_f - E_b|`` the fusion only moves a voxel as far
    as the clicks are decisive about it; with clicks of one class only
    (``E`` = 1 or 0) the two weightings are the same. Chosen on development
    data only (robot user, 10 clicks, mean Dice over clicks 1-10; paper ->
    certainty): 56 tumour-core slices of the held-out BraTS case pat0006
    0.904 -> 0.915 (masks collapsing below Dice 0.2: 4 -> 0); 24 synthetic
    2D scenes 0.910 -> 0.909; pat0006 in 3D with 4 sets of points 0.862
    -> 0.845; 4 synthetic volumes 0.801 -> 0.887 (collapses 1 -> 0); mean
    over the four sets 0.869 -> 0.889. An alpha from the corrective clicks
    alone, with and without the certainty factor, gave 0.888 and 0.880 and
    was not kept (the smaller departure from Eq. 7 won the near tie).

    *Stability.* ``E_f`` is evaluated as the logistic function of
    ``Db - Df``, which never overflows; ``inf - inf`` only occurs where
    ``alpha = 0`` and is set to 0.5 there, where it has no weight.

    Examples
    --------
    >>> import numpy as np
    >>> p = np.full((1, 3), 0.2)
    >>> fuse_probabilities(p, np.array([[0.0, 1.0, np.inf]]), None).round(3)
    array([[1.   , 0.494, 0.2  ]], dtype=float32)
    """
    p = _check_prob(prob)
    df = _check_distance(d_fg, p.shape, "d_fg")
    db = _check_distance(d_bg, p.shape, "d_bg")
    if weighting not in FUSION_WEIGHTINGS:
        raise InvalidInputError(f"weighting must be one of {FUSION_WEIGHTINGS}, got {weighting!r}")
    return _fuse(p, df, db, certainty=weighting == "certainty")


def _fuse(
    p: np.ndarray,
    df: np.ndarray | None,
    db: np.ndarray | None,
    *,
    certainty: bool = True,
    floor: float = 0.0,
) -> np.ndarray:
    """`fuse_probabilities` on checked input, in float32 (3x faster than float64 in 3D).

    `floor`: the smallest weight alpha of the geodesic evidence (0: Eq. 7 as is).
    """
    p = p.astype(np.float32, copy=False)
    if df is None and db is None:
        return p.copy()
    inf = np.full(p.shape, np.inf, dtype=np.float32)
    df = inf if df is None else df.astype(np.float32, copy=False)
    db = inf if db is None else db.astype(np.float32, copy=False)
    with np.errstate(invalid="ignore", under="ignore", over="ignore"):
        e_fg = expit(db - df)  # inf - inf = nan only where alpha = 0
        e_fg[np.isnan(e_fg)] = 0.5
        alpha = np.exp(-np.minimum(df, db))
        if certainty:
            alpha *= np.abs(2.0 * e_fg - 1.0)  # |E_f - E_b|
        if floor > 0:
            np.maximum(alpha, np.float32(floor), out=alpha)
        fused = p + alpha * (e_fg - p)  # (1 - alpha) P + alpha E
    return np.clip(fused, 0.0, 1.0, out=fused)


#: Stage-1 fusion (`fuse_margin_points`): the smallest weight of the margin points
#: geodesic evidence against the CNN map, per dimensionality (`midseg.Session`'s default
#: ``margin_floor``). Chosen on dev_unseen (16 objects, `docs/decisions.md`): in 3D, with
#: the stage-1 graph cut, 0.9 gives a stage-1 Dice of 81.4 % (mean of point seeds 0-4)
#: against 79.8 % at 0.8 (point seed 0 at 1, the CNN ignored: 76.9 %); in 2D, where the
#: network is stronger, floors 0.3-0.8 change nothing beyond noise.
MARGIN_FUSION_FLOOR = {2: 0.0, 3: 0.9}


def _euclidean_to_points(
    shape: tuple[int, ...], points: np.ndarray, unit_spacing: np.ndarray
) -> np.ndarray:
    """Exact Euclidean distance (units of the smallest spacing) from every voxel to `points`."""
    if len(points) > 16:  # many seeds: one exact transform beats a pass per seed
        free = np.ones(shape, dtype=bool)
        free[tuple(points.T)] = False
        return ndimage.distance_transform_edt(free, sampling=unit_spacing).astype(np.float32)
    axes = [np.arange(n, dtype=np.float32) * np.float32(s) for n, s in zip(shape, unit_spacing)]
    best: np.ndarray | None = None
    for pt in points:  # separable: one broadcast sum per seed, no loop over voxels
        r2: np.ndarray | None = None
        for ax, (coords, c) in enumerate(zip(axes, pt)):
            term = ((coords - coords[c]) ** 2).reshape(
                [-1 if a == ax else 1 for a in range(len(shape))]
            )
            r2 = term if r2 is None else r2 + term
        assert r2 is not None  # points have ndim >= 1 coordinates
        best = r2 if best is None else np.minimum(best, r2)
    if best is None:  # no seed: infinitely far everywhere
        return np.full(shape, np.inf, dtype=np.float32)
    return np.sqrt(np.broadcast_to(best, shape))


def _distance_image(
    norm_crop: np.ndarray, unit_spacing: np.ndarray, smoothing: float = DISTANCE_SMOOTHING
) -> np.ndarray:
    """The (C, ...) crop the refinement distances walk: smoothed, in SD units.

    Each channel is smoothed by a Gaussian of `DISTANCE_SMOOTHING` voxels of the
    smallest spacing, then divided by its standard deviation over the (unsmoothed)
    crop, so intensity differences are in the units of the z-scored crop of the
    paper and of stage 1's EGD cue. With C channels every channel is further
    divided by sqrt(C): the step cost, the Euclidean norm over channels, is then
    their root mean square, and C copies of one channel give that channel's
    distances. A constant channel becomes 0.
    """
    axes = tuple(range(1, norm_crop.ndim))
    sd = norm_crop.std(axis=axes, dtype=np.float64) * np.sqrt(norm_crop.shape[0])
    sigma = smoothing / np.asarray(unit_spacing, dtype=np.float64)
    out = np.empty(norm_crop.shape, dtype=np.float32)
    for c in range(norm_crop.shape[0]):
        ndimage.gaussian_filter(norm_crop[c], sigma, output=out[c], mode="nearest")
        out[c] *= np.float32(1.0 / sd[c]) if sd[c] > 1e-12 else np.float32(0.0)
    return out


def _geodesic(
    sd_crop: np.ndarray,
    seeds,
    unit_spacing: np.ndarray,
    backend: str,
    *,
    iterations: int,
    cost: str = "geodistk",
) -> np.ndarray:
    """`midseg.geodesic.geodesic_distance` (``lamb=REFINE_LAMB``) on a (C, ...) crop."""
    from .geodesic import geodesic_distance  # numba compiles on first use: keep imports light

    multi = sd_crop.shape[0] > 1
    return geodesic_distance(
        sd_crop if multi else sd_crop[0],
        seeds,
        spacing=unit_spacing,
        lamb=REFINE_LAMB,
        iterations=iterations,
        channel_axis=0 if multi else None,
        backend=backend,
        cost=cost,
    )


def _click_distance(
    sd_crop: np.ndarray, seeds: np.ndarray, unit_spacing: np.ndarray, backend: str
) -> np.ndarray | None:
    """Refinement distance to `seeds` ((N, ndim) crop indices), or None when there are none.

    Geodesic distance (``lamb=REFINE_LAMB``) on `sd_crop` (`_distance_image`) plus the
    Euclidean distance / `DISTANCE_SCALE`.
    """
    if len(seeds) == 0:
        return None
    geo = _geodesic(sd_crop, seeds, unit_spacing, backend, iterations=REFINE_ITERATIONS)
    euc = _euclidean_to_points(sd_crop.shape[1:], seeds, unit_spacing)
    return geo + euc / np.float32(DISTANCE_SCALE)


def _click_distances(norm_crop, fg_seeds, bg_seeds, unit_spacing, backend):
    """Df and Db on the [0, 1] crop measured in SD units, side by side (the kernels
    release the GIL)."""
    sd_crop = _distance_image(norm_crop, unit_spacing)
    if len(fg_seeds) and len(bg_seeds):
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=2) as pool:
            d_bg = pool.submit(_click_distance, sd_crop, bg_seeds, unit_spacing, backend)
            d_fg = _click_distance(sd_crop, fg_seeds, unit_spacing, backend)
            return d_fg, d_bg.result()
    return (
        _click_distance(sd_crop, fg_seeds, unit_spacing, backend),
        _click_distance(sd_crop, bg_seeds, unit_spacing, backend),
    )


def _object_window(
    region: np.ndarray, seeds: np.ndarray, spread: np.ndarray | None = None
) -> np.ndarray:
    """Per-channel intensity window (C, 2) of the click-local fusion, in image units.

    From the intensities in the 3x3(x3) neighbourhoods of `seeds` ((N, ndim) indices into
    `region`, a (C, ...) crop): their `WINDOW_QUANTILES` range [q_lo, q_hi], widened on
    each side by ``max(WINDOW_PAD * (q_hi - q_lo), WINDOW_MIN_FRACTION * spread)`` with
    ``spread`` the region's 0.5th-99.5th percentile range. Without seeds: that range.
    `spread`: those percentiles (C, 2) when the caller has them (`_region_spread`).
    """
    chans = region.shape[0]
    spatial = region.shape[1:]
    if spread is None:
        spread = _region_spread(region)
    out = np.empty((chans, 2))
    if not len(seeds):  # every margin point overridden, no foreground click
        out[:] = spread
        return out
    vals = [
        region[
            (slice(None),) + tuple(slice(max(0, c - 1), min(n, c + 2)) for c, n in zip(pt, spatial))
        ].reshape(chans, -1)
        for pt in seeds
    ]
    v = np.concatenate(vals, axis=1).astype(np.float64)
    for c in range(chans):
        q_lo, q_hi = np.percentile(v[c], WINDOW_QUANTILES)
        r_lo, r_hi = spread[c]
        pad = max(WINDOW_PAD * (q_hi - q_lo), WINDOW_MIN_FRACTION * (r_hi - r_lo))
        out[c] = q_lo - pad, q_hi + pad
    return out


def _region_spread(region: np.ndarray) -> np.ndarray:
    """The 0.5th and 99.5th percentiles (C, 2, float64) of each channel of a (C, ...) crop."""
    flat = region.reshape(region.shape[0], -1).astype(np.float64)
    return np.array([np.percentile(f, (0.5, 99.5)) for f in flat])


def _click_depth(
    prev_mask: np.ndarray, points: np.ndarray, cls: int, unit_spacing: np.ndarray
) -> float:
    """Largest distance from `points` to the nearest voxel of class `cls` in `prev_mask`.

    At least 1; the crop's diagonal when the crop holds no voxel of that class. Exact,
    searched in windows around each point that double in size until the nearest voxel
    found is nearer than the window's half-width (so no voxel outside can be nearer):
    the cost follows the distance, not the crop.
    """
    diag = float(np.sqrt(np.sum((np.asarray(prev_mask.shape) * unit_spacing) ** 2)))
    unit = np.asarray(unit_spacing, dtype=np.float64)
    shape = np.asarray(prev_mask.shape)
    deepest = 1.0
    for pt in np.atleast_2d(points):
        half = 8.0  # in units of the smallest spacing
        while True:
            r = np.ceil(half / unit).astype(np.int64)
            lo, hi = np.maximum(pt - r, 0), np.minimum(pt + r + 1, shape)
            window = prev_mask[tuple(slice(a, b) for a, b in zip(lo, hi))] == cls
            hit = np.argwhere(window)
            whole = np.all(lo == 0) and np.all(hi == shape)
            if len(hit):
                d = float(np.sqrt(np.min(np.sum(((hit + lo - pt) * unit) ** 2, axis=1))))
                if d <= half or whole:
                    break
            elif whole:
                return diag
            half *= 2
        deepest = max(deepest, d)
    return deepest


def _local_fusion(
    prev_mask: np.ndarray,
    sd_crop: np.ndarray,
    new_fg: np.ndarray,
    new_bg: np.ndarray,
    unit_spacing: np.ndarray,
    backend: str,
    min_depth: float,
    band_reach: float = 0.0,
    thick_slice_ratio: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Click-local information fusion of one round (crop coordinates; `refine`, Notes).

    `sd_crop`: the windowed crop as the distances walk it, ``_distance_image(norm,
    unit_spacing, LOCAL_SMOOTHING)``; `min_depth`: the smallest depth a reach is computed
    from (`CLICK_DEPTH_MIN`); `band_reach`: how many reaches away the boundary band is
    relabelled (`CLICK_BAND_REACH`, 0: off); `thick_slice_ratio`: the spacing ratio from
    which an axis's slices are kept apart (`THICK_SLICE_RATIO`, 0: off). Returns the fused
    probability (float32) and the zone the new clicks reach (bool).
    """
    fused = (prev_mask > 0).astype(np.float32)  # the prior is the previous mask
    zone = np.zeros(fused.shape, dtype=bool)
    for cls, pts in ((1, new_fg), (0, new_bg)):
        if not len(pts):
            continue
        depth = max(min_depth, _click_depth(prev_mask, pts, cls, unit_spacing))
        reach = CLICK_REACH * depth
        geo = _geodesic(
            sd_crop, pts, unit_spacing, backend, iterations=LOCAL_ITERATIONS, cost="additive"
        )
        dist = _slice_distance(fused.shape, pts, unit_spacing, thick_slice_ratio, depth)
        euc = dist / np.float32(reach)
        alpha = np.exp(-(geo + euc * euc))
        r_band = band_reach * reach  # below 1e-3 it reaches no voxel but the click's own
        # only a click in an error has a layer to follow: one that agrees with the mask at
        # its own voxel changes no more than its own reach does
        corrects = np.any((prev_mask[tuple(np.asarray(pts).T)] > 0) != bool(cls))
        if r_band >= 1e-3 and corrects:
            euc_band = dist * np.float32(1.0 / r_band)
            band_alpha = _band_alpha(prev_mask, cls, depth, geo, euc_band, unit_spacing)
            np.maximum(alpha, band_alpha, out=alpha)
        fused += alpha * (np.float32(cls) - fused)  # (1 - alpha) R + alpha E, E = class
        zone |= alpha > LOCAL_ZONE_ALPHA
    return np.clip(fused, 0.0, 1.0, out=fused), zone


def _slice_distance(
    shape: tuple[int, ...],
    pts: np.ndarray,
    unit_spacing: np.ndarray,
    ratio: float,
    depth: float = 0.0,
) -> np.ndarray:
    """The Euclidean distance (units of the smallest spacing, float32, `shape`) from each
    voxel to the nearest of the clicks `pts` that share its slices along every axis whose
    spacing is at least `ratio` times the smallest and at least the clicks' `depth`
    (same units; `refine`, Notes, "Thick slices"); inf where none does. With no such axis,
    or `ratio` 0, the plain distance to `pts`."""
    unit = np.asarray(unit_spacing, dtype=np.float64)
    m = unit.min()
    # thick: at least `ratio` times the smallest (float32 spacings within 1e-6) and larger
    # than it, so that a ratio just above 1 never makes the smallest axis a slice axis;
    # a click deeper than a slice is thick corrects an error that spans slices (a click in
    # an overshot slice wider than it is thick is exactly one slice deep: it stays)
    thick = np.flatnonzero(
        (unit >= ratio * m * (1 - 1e-6)) & (unit > m * (1 + 1e-6)) & (unit * (1 + 1e-6) >= depth)
    )
    if ratio <= 0 or len(thick) == 0:
        return _euclidean_to_points(shape, pts, unit_spacing)
    pts = np.asarray(pts, dtype=np.int64).reshape(-1, len(shape))
    out = np.full(shape, np.inf, dtype=np.float32)
    for key in np.unique(pts[:, thick], axis=0):  # the clicks of one slice (per thick axis)
        group = pts[np.all(pts[:, thick] == key, axis=1)]
        start = np.zeros(len(shape), dtype=np.int64)
        start[thick] = key
        sl = tuple(
            slice(int(a), int(a) + 1) if ax in thick else slice(None) for ax, a in enumerate(start)
        )
        sub = _euclidean_to_points(out[sl].shape, group - start, unit)
        np.minimum(out[sl], sub, out=out[sl])
    return out


def _band_alpha(
    prev_mask: np.ndarray,
    cls: int,
    depth: float,
    geo: np.ndarray,
    euc: np.ndarray,
    unit_spacing: np.ndarray,
) -> np.ndarray:
    """The boundary band's weight of one class's clicks (`refine`, Notes, "The boundary
    band"): ``exp(-(CLICK_BAND_GEODESIC * geo + euc^2))`` on the voxels the previous mask
    does not give class `cls` that lie within `depth` + 1/2 (units of the smallest
    spacing) of one it does; 0 elsewhere. `geo` is the clicks' geodesic distance, `euc`
    their Euclidean distance already divided by the band's reach. Float32, `prev_mask`'s
    shape."""
    out = np.zeros(prev_mask.shape, dtype=np.float32)
    # only where a weight can pass LOCAL_ZONE_ALPHA, padded so that the nearest voxel of
    # class `cls` of every band voxel there lies inside the window
    near = euc * euc < -np.log(LOCAL_ZONE_ALPHA)
    if not near.any():
        return out
    unit = np.asarray(unit_spacing, dtype=np.float64)
    width = depth + 0.5
    pad = np.ceil(width / unit).astype(int) + 1
    idx = np.nonzero(near)
    win = tuple(
        slice(max(0, int(i.min()) - int(p)), min(n, int(i.max()) + 1 + int(p)))
        for i, p, n in zip(idx, pad, prev_mask.shape)
    )
    other = (prev_mask[win] > 0) != bool(cls)
    if other.all() or not other.any():  # no boundary in the window
        return out
    band = other & near[win]
    band &= ndimage.distance_transform_edt(other, sampling=unit) <= width
    w = out[win]
    w[band] = np.exp(-(CLICK_BAND_GEODESIC * geo[win][band] + euc[win][band] ** 2))
    return out


def _margin_not_clicked_bg(margin: np.ndarray, bg: np.ndarray) -> np.ndarray:
    """The margin points without those a background click has overridden (same voxel)."""
    if not len(margin) or not len(bg):
        return margin
    return margin[~_same_voxel(margin, bg).any(axis=1)]


def _image_and_prob(image, prob, channel_axis):
    """The image channel-first and the checked probability map of its spatial shape."""
    chans = channels_first(image, channel_axis)
    p = _check_prob(prob)
    if p.shape != chans.shape[1:]:
        raise InvalidInputError(
            f"prob must have the image's spatial shape {chans.shape[1:]}, got {p.shape}"
        )
    return chans, p


def fuse_margin_points(
    image: np.ndarray,
    prob: np.ndarray,
    margin_points,
    *,
    spacing: Sequence[float] | None = None,
    channel_axis: int | None = None,
    backend: str = "auto",
    floor: float | None = None,
) -> np.ndarray:
    """Stage-1 information fusion: the CNN map fused with the margin points' geodesic evidence.

    The interior margin points are foreground seeds and the faces of their relaxed bounding
    box (`midseg.crop.relaxed_bbox`, default margin) that lie inside the image are
    background seeds; ``Df`` and ``Db`` are geodesic distances to them (additive step
    cost, the literal Eq. 2, on the object-windowed crop of the click-local fusion, see
    `refine`, Notes), and the result is Eq. 3-7 of MIDeepSeg with
    alpha = max(e^-min(Df, Db), floor): ``R = (1 - alpha) P + alpha E_f``,
    ``E_f = e^-Df / (e^-Df + e^-Db)`` (the default floor, `MARGIN_FUSION_FLOOR`, is 0 in
    2D and 0.9 in 3D, where the network is weaker than the geodesic evidence on unseen
    objects). Outside the box it is `prob`.
    `midseg.Session` uses it as stage 1 of method ``"ifgc"``.

    Parameters
    ----------
    image : ndarray
        (Y, X) or (Z, Y, X), or channel-first with ``channel_axis=0``.
    prob : (Y, X) or (Z, Y, X) ndarray of float
        The CNN foreground probability in image space, values in [0, 1].
    margin_points : (N, ndim) int array or sequence of index tuples
        The interior margin points (array order), at least one.
    spacing : sequence of float, optional
        Voxel spacing in array order (default 1).
    channel_axis : int, optional
    backend : str, default "auto"
        Backend of `midseg.geodesic.geodesic_distance`.
    floor : float in [0, 1], optional
        Smallest weight alpha of the geodesic evidence; default
        ``MARGIN_FUSION_FLOOR[ndim]``.

    Returns
    -------
    ndarray of float32, image shape
        The fused foreground probability, in [0, 1].

    Raises
    ------
    InvalidInputError
        `prob` outside [0, 1] or of another shape, no margin points or one outside the
        image, bad spacing, a floor outside [0, 1].

    References
    ----------
    Luo et al., MIDeepSeg, Med. Image Anal. 2021, Eq. 2-7 (applied here to the margin
    points and the box border instead of corrective clicks).
    """
    chans, p = _image_and_prob(image, prob, channel_axis)
    shape = chans.shape[1:]
    sp = as_spacing(spacing, len(shape))
    pts = as_points(margin_points, shape, name="margin points")
    box = relaxed_bbox(pts, shape)
    out = p.astype(np.float32, copy=True)
    floor = check_margin_floor(floor, len(shape))
    out[box.slices] = fuse_margin_points_box(chans, p[box.slices], pts, box, sp, backend, floor)
    return out


def check_margin_floor(floor, ndim: int, name: str = "floor") -> float:
    """`floor` as a float in [0, 1], or ``MARGIN_FUSION_FLOOR[ndim]`` for None.

    Raises InvalidInputError naming `name` for anything else.
    """
    if floor is None:
        return MARGIN_FUSION_FLOOR[ndim]
    return check_fraction(floor, name)


def check_click_depth_min(value, ndim: int, name: str = "min_click_depth") -> float:
    """`value` as a float >= 1 (units of the smallest spacing), or ``CLICK_DEPTH_MIN[ndim]``
    for None.

    Raises InvalidInputError naming `name` for anything but a real number (a bool or a
    string too), NaN, infinity or a value below 1.
    """
    if value is None:
        return CLICK_DEPTH_MIN[ndim]
    out, shown = real_number(value, name, "a number >= 1")
    if not 1.0 <= out < np.inf:  # NaN fails too
        raise InvalidInputError(f"{name} must be a finite number >= 1, got {shown}")
    return out


def check_thick_slice_ratio(value, ndim: int, name: str = "thick_slice_ratio") -> float:
    """`value` as a float: 0 (off) or a number > 1 (an axis whose spacing is at least that
    many times the smallest is a thick-slice axis), or ``THICK_SLICE_RATIO[ndim]`` for
    None.

    Raises InvalidInputError naming `name` for anything but a real number (a bool or a
    string too), NaN, infinity, a negative number or one in (0, 1], and for any number but
    0 in 2D (`ndim` 2: an image has no slices).
    """
    if value is None:
        return THICK_SLICE_RATIO[ndim]
    out, shown = real_number(value, name, "0 or a number > 1")
    if not (out == 0.0 or 1.0 < out < np.inf):  # NaN fails too
        raise InvalidInputError(f"{name} must be 0 (off) or a finite number > 1, got {shown}")
    if ndim == 2 and out != 0.0:
        raise InvalidInputError(
            f"{name} applies to 3D volumes (a 2D image has no slices); it must be 0 in 2D, "
            f"got {shown}"
        )
    return out + 0.0  # -0.0 as 0.0


def check_band_reach(value, ndim: int, name: str = "band_reach") -> float:
    """`value` as a float >= 0 (multiples of a click's reach; 0 turns the boundary band
    off), or ``CLICK_BAND_REACH[ndim]`` for None.

    Raises InvalidInputError naming `name` for anything but a real number (a bool or a
    string too), NaN, infinity or a negative value.
    """
    if value is None:
        return CLICK_BAND_REACH[ndim]
    out, shown = real_number(value, name, "a number >= 0")
    if not 0.0 <= out < np.inf:  # NaN fails too
        raise InvalidInputError(f"{name} must be a finite number >= 0, got {shown}")
    return out + 0.0  # -0.0 as 0.0


def fuse_margin_points_box(
    chans: np.ndarray,
    prob_box: np.ndarray,
    pts: np.ndarray,
    box: Box,
    sp: np.ndarray,
    backend: str = "auto",
    floor: float | None = None,
) -> np.ndarray:
    """`fuse_margin_points` inside its box only, on checked input.

    `chans` (C, *S) the whole image (read, never copied), `prob_box` the CNN map inside
    ``box = relaxed_bbox(pts, S)``, `pts` (N, ndim) margin points, `sp` the spacing,
    `floor` the smallest alpha (None: ``MARGIN_FUSION_FLOOR[ndim]``). Returns the fused
    map inside the box (float32, a new array).
    """
    shape = chans.shape[1:]
    crop = chans[(slice(None),) + box.slices]
    local = pts - np.asarray(box.start)
    unit = sp / sp.min()
    sd_crop = _distance_image(
        _window_normalise(crop, _object_window(crop, local)), unit, LOCAL_SMOOTHING
    )
    border = np.zeros(crop.shape[1:], dtype=bool)
    for ax, (a, b, n) in enumerate(zip(box.start, box.stop, shape)):
        lo: list[slice | int] = [slice(None)] * len(shape)
        if a > 0:
            lo[ax] = 0
            border[tuple(lo)] = True
        if b < n:
            lo[ax] = -1
            border[tuple(lo)] = True
    if not border.any():  # the box is the whole image: no background evidence
        return prob_box.astype(np.float32, copy=True)
    border[tuple(local.T)] = False
    d_fg = _geodesic(sd_crop, local, unit, backend, iterations=LOCAL_ITERATIONS, cost="additive")
    d_bg = _geodesic(sd_crop, border, unit, backend, iterations=LOCAL_ITERATIONS, cost="additive")
    floor = check_margin_floor(floor, len(shape))
    return _fuse(prob_box, d_fg, d_bg, certainty=False, floor=floor)
