"""Stage-2 refinement of MIDeepSeg: one round of information fusion (Eq. 3-7) + graph cut (Eq. 8-11).

`refine` turns the previous mask and a round's new clicks (method "ifgc", click-local), or
the untouched CNN probability plus all clicks so far (the other methods), into a refined
mask; `refine_region` is its work on one region, for `midseg.Session`. The fusion lives in
`midseg.fusion` (`fuse_probabilities`, the click-local fusion, `fuse_margin_points`, the
stage-1 fusion of "ifgc") and the CRF in `midseg.graphcut` (`graph_cut`); both are
re-exported here. `cut_margin_points_box` is the stage-1 graph cut of "ifgc" in 3D. This
module must not call the CNN.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ._checks import (
    DEFAULT_LAM,
    DEFAULT_SIGMA,
    as_points,
    as_spacing,
    check_fraction,
    check_lam_sigma,
    computing_ndim,
)
from .crop import Box, relaxed_bbox
from .errors import InvalidInputError
from . import fusion as _fusion
from .fusion import (
    CLICK_REACH,
    DISTANCE_SCALE,
    DISTANCE_SMOOTHING,
    FUSION_WEIGHTINGS,
    LOCAL_ITERATIONS,
    LOCAL_SMOOTHING,
    LOCAL_ZONE_ALPHA,
    REFINE_ITERATIONS,
    REFINE_LAMB,
    WINDOW_MIN_FRACTION,
    WINDOW_PAD,
    WINDOW_QUANTILES,
    _click_distances,
    _fuse,
    _image_and_prob,
    _local_fusion,
    _margin_not_clicked_bg,
    _distance_image,
    _object_window,
    _region_spread,
    check_band_reach,
    check_click_depth_min,
    check_thick_slice_ratio,
    fuse_margin_points,
    fuse_margin_points_box,
    fuse_probabilities,
)
from .graphcut import (
    DEFAULT_CONNECTIVITY,
    PROB_EPS,
    _check_clicks,
    _check_prob,
    _normalise01,
    _offsets,
    _same_voxel,
    _solve_in_band,
    _solve_sparse,
    _window_normalise,
    graph_cut,
)

__all__ = [
    "RefineResult",
    "fuse_probabilities",
    "fuse_margin_points",
    "fuse_margin_points_box",
    "cut_margin_points_box",
    "CLICK_CLAIM_KEEP",
    "graph_cut",
    "refine",
    "refine_region",
    "refine_region_box",
    "REFINE_METHODS",
    "FUSION_WEIGHTINGS",
    "PROB_EPS",
    "REFINE_LAMB",
    "DISTANCE_SCALE",
    "DISTANCE_SMOOTHING",
    "REFINE_ITERATIONS",
    "DEFAULT_CONNECTIVITY",
    "CLICK_REACH",
    "LOCAL_ZONE_ALPHA",
    "LOCAL_ITERATIONS",
    "LOCAL_SMOOTHING",
    "WINDOW_QUANTILES",
    "WINDOW_PAD",
    "WINDOW_MIN_FRACTION",
]

#: Refinement methods: click-local information fusion + graph cut (the default, see
#: `refine`, Notes), information fusion of all clicks with certainty-weighted alpha
#: ("ifgc-global", the default of clicks-file version 2, see `fuse_probabilities`), the same
#: with the paper's Eq. 7 taken literally, and the naive graph cut baseline (BIFSeg-style:
#: CNN probability, clicks as hard constraints).
REFINE_METHODS = ("ifgc", "ifgc-global", "ifgc-paper", "gc")


#: Click-local rounds: the graph cut's pairwise term is LOCAL_PAIRWISE * lam (Eq. 11), so a
#: fused probability that a click makes moderately confident over a region is not undone by
#: the surface cost of claiming it (a 3D blob of radius r pays about 3 lam / r per voxel).
#: Chosen on ``dev_unseen`` (``docs/decisions.md``); stage 1 and the other methods use lam.
LOCAL_PAIRWISE = 0.5


#: Stage 1 (method "ifgc"): the fused map of the margin points is cut by the graph cut with
#: the pairwise term at MARGIN_PAIRWISE[ndim] * lam (0: no cut, the mask is fused >= 0.5),
#: and the cut is kept only if it keeps at least MARGIN_CUT_KEEP of the fused mask's voxels.
#: Chosen on ``dev_unseen`` (``docs/decisions.md``): in 3D the cut aligns the geodesic
#: evidence's soft boundary to image edges; in 2D it gained nothing.
MARGIN_PAIRWISE = {2: 0.0, 3: 0.1}
MARGIN_CUT_KEEP = 0.5


#: Click-local rounds with new foreground clicks: when the graph cut adds fewer than
#: CLICK_CLAIM_KEEP times the voxels the fused map's 0.5 threshold adds in the zone, the
#: round takes those voxels too (`refine`, Notes, "A foreground click's claim").
#: 0 turns this off (clicks files before version 5). Chosen on ``dev_unseen``
#: (``docs/decisions.md``).
CLICK_CLAIM_KEEP = 0.1


@dataclass(frozen=True)
class RefineResult:
    """What one refinement round returns.

    Attributes
    ----------
    mask : (Y, X) or (Z, Y, X) ndarray of uint8
        Refined mask (0/1) of the image's spatial shape.
    probability : (Y, X) or (Z, Y, X) ndarray of float32
        Fused foreground probability R_f inside `box` (the CNN probability
        itself for ``method="gc"``), equal to the input ``prob`` (for
        ``"ifgc"``: the previous round's probability) outside it.
    box : midseg.crop.Box
        The region that was refined (array order, stop exclusive).
    """

    mask: np.ndarray
    probability: np.ndarray
    box: Box


# -- information fusion ---------------------------------------------------------------


#: A click-local round whose zone holds more free voxels than this solves its graph cut in
#: a narrow band: the free voxels within `BAND_WIDTH` voxels of the fused map's 0.5
#: boundary; the others take the label of the fused map (`refine`, Notes).
BAND_MIN_VOXELS = 400_000


# -- refinement round ---------------------------------------------------------------------


def refine(
    image: np.ndarray,
    prob: np.ndarray,
    *,
    margin_points,
    foreground=(),
    background=(),
    spacing: Sequence[float] | None = None,
    lam: float = DEFAULT_LAM,
    sigma: float = DEFAULT_SIGMA,
    method: str = "ifgc",
    channel_axis: int | None = None,
    box=None,
    connectivity: int | None = None,
    backend: str = "auto",
    previous=None,
    new_foreground=None,
    new_background=None,
    claim_keep: float = CLICK_CLAIM_KEEP,
    min_click_depth: float | None = None,
    band_reach: float | None = None,
    thick_slice_ratio: float | None = None,
) -> RefineResult:
    """One refinement round of MIDeepSeg stage 2: information fusion + graph cut.

    Parameters
    ----------
    image : ndarray
        The whole image: (Y, X) or (Z, Y, X), or channel-first (C, Y, X) /
        (C, Z, Y, X) with ``channel_axis=0``.
    prob : (Y, X) or (Z, Y, X) ndarray of float
        The untouched stage-1 CNN foreground probability in image space,
        values in [0, 1]. Never modified: keep passing the same map every
        round, not the previous round's output.
    margin_points : (N, ndim) int array or sequence of index tuples
        The interior margin points of stage 1 (array order): foreground
        seeds of Df and, being points the user put inside the object, hard
        foreground constraints of the graph cut (both methods). A background
        click on the very voxel of a margin point overrides it (the later
        correction wins).
    foreground, background : (N, ndim) int array or sequence of index tuples
        ALL corrective clicks so far (rounds accumulate: the caller keeps
        them and passes them all every round). Each is a hard constraint of
        the graph cut. A voxel may not be in both.
    spacing : sequence of float, optional
        Voxel spacing in array order (default 1); used by the geodesic
        distances and the pairwise term, both in units of the smallest
        spacing.
    lam, sigma : float
        λ (>= 0) and σ (> 0, normalised intensity units) of the CRF, Eq. 8
        and 11; defaults are the paper's 5 and 0.1. ``"ifgc"`` weights its
        pairwise term ``LOCAL_PAIRWISE * λ``.
    method : {"ifgc", "ifgc-global", "ifgc-paper", "gc"}
        ``"ifgc"`` (default): click-local information fusion, then graph cut;
        each round starts from `previous` (Notes, "Click-local fusion").
        ``"ifgc-global"``: the paper's information fusion of all clicks with
        the CNN map, certainty-weighted ``alpha`` (`fuse_probabilities`).
        ``"ifgc-paper"``: the same with Eq. 7 as printed (``alpha =
        e^-min(Df, Db)``). ``"gc"``: the naive baseline, graph cut on the CNN
        probability with the clicks as hard constraints (BIFSeg-style).
    channel_axis : int, optional
        Channel axis of a multi-channel `image` (midseg uses 0), None otherwise.
    box : midseg.crop.Box, optional
        The stage-1 crop box; the refined region is its union with the
        relaxed bounding box of all points and clicks (so it grows when a
        click falls outside it).
    connectivity : int, optional
        Graph-cut neighbourhood (see `graph_cut`): 8 in 2D, 6 in 3D by default (18 for a
        volume one voxel thick: the 8 in-plane neighbours of its 2D image).
    backend : str, default "auto"
        Backend of `midseg.geodesic.geodesic_distance` for Df and Db.
    previous : RefineResult or (probability, mask) pair, optional
        ``"ifgc"`` only: the previous round's fused probability (float, [0, 1];
        returned unchanged outside the region) and mask (the prior of the
        fusion), image shape. Default: stage 1, ``prob`` and ``prob >= 0.5``.
    new_foreground, new_background : (N, ndim) int array or sequence of index tuples
        ``"ifgc"`` only: the clicks made in this round (each also among
        `foreground` / `background`). Required with `previous`; without it,
        all clicks are new.
    claim_keep : float in [0, 1], default `CLICK_CLAIM_KEEP`
        ``"ifgc"`` only: see Notes, "A foreground click's claim"; 0 turns it off.
    min_click_depth : float >= 1, optional
        ``"ifgc"`` only: the smallest depth ``r`` (units of the smallest spacing) a
        click's reach is computed from (Notes, "Click-local fusion"); default
        `midseg.fusion.CLICK_DEPTH_MIN` of the image's dimensionality (1 in 2D, 2 in
        3D; a volume one voxel thick counts as 2D, as in `midseg.Session`); 1 is the
        rule of clicks files before version 6.
    band_reach : float >= 0, optional
        ``"ifgc"`` only: how many times its reach away a click relabels the boundary
        band it lies in (Notes, "The boundary band"); default
        `midseg.fusion.CLICK_BAND_REACH` of the image's dimensionality (6 in 2D, 0 in
        3D); 0 turns it off, the rule of clicks files before version 7.
    thick_slice_ratio : float, 0 or > 1, optional
        ``"ifgc"`` only: along an axis whose spacing is at least this many times the
        smallest, a click no deeper than a slice reaches only its own slice (Notes,
        "Thick slices"); default
        `midseg.fusion.THICK_SLICE_RATIO` of the image's dimensionality (5 in 3D, 0 in
        2D); 0 turns it off, the rule of clicks files before version 8.

    Returns
    -------
    RefineResult
        ``mask`` (uint8, image shape), ``probability`` (float32, image shape:
        the fused R_f inside the box, `prob` outside it; `prob` itself for
        ``"gc"``) and ``box``.

    Raises
    ------
    InvalidInputError
        Shape mismatches between image and prob, `prob` outside [0, 1],
        NaN values, a point or click outside the image, a voxel clicked as
        both classes, no points at all (and no box), bad parameters.

    Notes
    -----
    *Click-local fusion* (``"ifgc"``). A round changes the previous result
    only where its new clicks reach, so a click fixes what it points at and
    leaves the rest: for each class with new clicks, ``r`` is the click's
    depth in the error it corrects, the distance (units of the smallest
    spacing) to the nearest voxel the previous mask already gives that class
    (0 when the click agrees with the mask there; the largest over the
    round's clicks of that class, at least `min_click_depth`). Its weight is

        alpha = exp(-(D_geo + (D_euc / (CLICK_REACH * r))^2))

    with ``D_geo`` the geodesic distance to the new clicks (additive step
    cost, the literal Eq. 2, on the crop smoothed by `LOCAL_SMOOTHING` in
    units of its standard deviation, `LOCAL_ITERATIONS` raster scans) and
    ``D_euc`` the Euclidean one. The fused map is the paper's Eq. 6 with
    the previous mask ``M`` in place of the CNN map and the click's class as
    ``E``: ``R = (1 - alpha) M + alpha * E`` (the first round's ``M`` is
    stage 1's mask; `midseg.Session` makes that the CNN map fused with the
    margin points, `fuse_margin_points`). The graph cut (Eq. 8-11, σ, with the
    pairwise term weighted ``LOCAL_PAIRWISE * λ``) then labels
    the voxels with ``alpha > LOCAL_ZONE_ALPHA``; all others keep the
    previous label, and every click in force and every margin point (unless
    a background click is on it) is a hard constraint (the boundary band
    below adds to the zone). The intensities the
    pairwise term and the distances see are mapped to [0, 1] by a window
    referenced to the object, not the crop's range (`WINDOW_QUANTILES`:
    the 5th-95th percentile at the foreground seeds' 3x3(x3)
    neighbourhoods, widened by that range on each side, by at least 5 % of
    the crop's 0.5th-99.5th percentile range): on CT in HU, air and bone
    saturate instead of squeezing soft-tissue edges; the same rule serves
    MR, PET and ultrasound. Chosen on ``dev_unseen`` only
    (``docs/decisions.md``). The other methods keep the min-max crop
    normalisation below, so clicks files of version 2 replay exactly.

    *A foreground click's claim* (``"ifgc"``). Where a new foreground click
    reaches into a missed homogeneous region, the fused map there is lukewarm
    (``alpha`` falls off with distance) and the pairwise term can undo nearly
    all of it: the cut then adds the click's voxel and little else. When the
    round has new foreground clicks and the cut adds fewer than ``claim_keep``
    times the voxels that ``fused >= 0.5`` adds inside the zone, the round
    also takes those voxels (every click and margin point stays at its
    class). Only additions are counted and taken: what the cut removes for a
    background click of the same round stays removed, and background clicks
    themselves are not guarded (a cut that removes less than their threshold
    keeps the object). Chosen on ``dev_unseen`` (``docs/decisions.md``).

    *The boundary band* (``"ifgc"``, `band_reach` > 0). Where stage 1 misses
    or overshoots an object by a thin layer all along its boundary (a
    partial-volume rim, a neighbour of the same intensity), a click lies in
    that layer at a small depth ``r`` and its reach covers a few voxels of a
    layer that may run the whole perimeter. Each class's new clicks
    therefore also weigh the voxels of the label they correct that lie
    within ``r + 1/2`` of the nearest voxel of their own class (a layer as
    thick as the click is deep) by

        alpha_band = exp(-(CLICK_BAND_GEODESIC * D_geo + (D_euc / R_band)^2)),
        R_band = band_reach * CLICK_REACH * r,

    and a voxel's weight is the larger of ``alpha`` and ``alpha_band``: the
    correction follows the layer as far as the image along it looks like the
    click (a third of an SD of geodesic distance weighs as much as a whole
    SD does for ``alpha``), and never deeper than ``r``. As for the reach,
    ``r`` is the largest depth among the round's clicks of that class. The
    band is part of the zone the graph cut labels, and of the claim of the
    next paragraph. A round whose clicks of a class all agree with the
    previous mask at their own voxels (no error there) has no band.
    On in 2D only (``CLICK_BAND_REACH``; ``docs/decisions.md``).

    *Thick slices* (``"ifgc"``, `thick_slice_ratio` > 0). Along an axis
    whose spacing is at least `thick_slice_ratio` times the smallest (5 by
    default in 3D: 5 mm slices of 1 mm pixels) and at least the round's
    depth ``r`` of that class (the largest over its clicks of that class), ``D_euc`` is the distance to the nearest of
    the round's clicks in the voxel's own slice, infinite in a slice that
    holds none, so the click relabels its own slice only: an error thinner
    than a slice says nothing about the next slice, which shares little with
    this one but partial volume. A click deeper than a slice is thick (a
    large error, such as a lobe missed across slices) reaches across as
    before. Each class's clicks are grouped by their slice; with two thick
    axes that both pass, a click relabels its own row of voxels. 0 in 2D (a nonzero value is refused
    there).

    *Region.* Everything happens on the crop ``box`` at native resolution:
    the relaxed bounding box (`midseg.crop.relaxed_bbox`, default margin) of
    the margin points and all clicks, united with the stage-1 `box` when
    given. Outside it the mask is ``prob >= 0.5``, the stage-1 rule, so
    `mask` and `probability` agree everywhere; with a stage-1 probability
    pasted with zeros outside its crop this is 0 there.

    *Border of the region.* The graph cut runs on the region plus a ring one
    voxel wide around it (where the image goes on), whose voxels are hard
    constraints at their outside label, ``prob >= 0.5``; its intensities are
    normalised like the region's, clipped to [0, 1]. The cut is then the
    minimum of the whole-image CRF with the labels outside the region held
    fixed, and a boundary along the region's border costs what it costs
    anywhere else.

    *Normalisation of "ifgc-global", "ifgc-paper" and "gc".* The crop is
    min-max normalised to [0, 1] per channel; the pairwise term compares those
    values (σ = 0.1 is meant for them). The geodesic distances walk the same
    crop smoothed by a Gaussian of `DISTANCE_SMOOTHING` voxels and counted in
    units of its standard deviation per channel (the z-scored crop the paper's
    Eq. 2 integrates and stage 1's EGD cue sees).

    *Distances.* ``Df`` is measured from the margin points and the
    foreground clicks, ``Db`` from the background clicks (None, i.e. the
    constant +inf of `fuse_probabilities`, when there are none). Each is

        D = D_geo + D_euc / DISTANCE_SCALE

    with ``D_geo`` from `midseg.geodesic.geodesic_distance` on that crop
    (``lamb=REFINE_LAMB = 1``, the paper's Eq. 2,
    ``iterations=REFINE_ITERATIONS``) and ``D_euc`` the exact Euclidean
    distance to the nearest seed, both with spacing in units of the smallest
    spacing. So ``alpha = 1`` at a seed, ``alpha <= e^(-r / 20)`` at ``r``
    voxels from every seed, and an image edge of contrast ``c`` (in crop
    standard deviations) crossed on the way divides ``alpha`` by about
    ``e^c`` more. The two maps are computed in two threads (the geodesic
    kernels release the GIL).

    *Margin points are hard constraints* (all methods): inside the object by
    definition, they anchor a small object whose fused map is lukewarm.

    The evidence for the ring, the units, the Euclidean term and the margin
    constraints is in ``docs/decisions.md`` ("Refinement details: the
    evidence formerly in refine's docstring").

    References
    ----------
    Luo et al., MIDeepSeg, Med. Image Anal. 2021, §2.4, Eq. 3-11.
    Wang et al., BIFSeg, IEEE TMI 2018 (the "gc" baseline).
    """
    chans, p = _image_and_prob(image, prob, channel_axis)
    shape = chans.shape[1:]
    if method not in REFINE_METHODS:
        raise InvalidInputError(f"method must be one of {REFINE_METHODS}, got {method!r}")
    lam, sigma = check_lam_sigma(lam, sigma)
    sp = as_spacing(spacing, len(shape))
    margin = as_points(margin_points, shape, name="margin points", allow_empty=True)
    fg, bg = _check_clicks(foreground, background, shape)
    if box is not None and not isinstance(box, Box):
        raise InvalidInputError(f"box must be a midseg.crop.Box or None, got {type(box).__name__}")
    if box is not None and (
        len(box.start) != len(shape)
        or any(a < 0 or b > n or a >= b for a, b, n in zip(box.start, box.stop, shape))
    ):
        raise InvalidInputError(f"box {box} does not fit inside the image of shape {shape}")

    region = refine_region_box(np.concatenate([margin, fg, bg]), shape, box)
    local = method == "ifgc"
    if local:
        prev_prob, prev_mask, new_fg, new_bg = _check_previous(
            previous, p, fg, bg, new_foreground, new_background, shape
        )
    elif previous is not None or new_foreground is not None or new_background is not None:
        raise InvalidInputError(
            f"previous, new_foreground and new_background belong to method 'ifgc'; "
            f"method {method!r} works from the CNN probability and all clicks"
        )

    res = refine_region(
        chans,
        p,
        region,
        margin,
        fg,
        bg,
        sp,
        lam=lam,
        sigma=sigma,
        method=method,
        connectivity=connectivity,
        backend=backend,
        prev_mask=prev_mask if local else None,
        new_fg=new_fg if local else None,
        new_bg=new_bg if local else None,
        claim_keep=check_fraction(claim_keep, "claim_keep"),
        min_click_depth=check_click_depth_min(min_click_depth, computing_ndim(shape)),
        band_reach=check_band_reach(band_reach, computing_ndim(shape)),
        thick_slice_ratio=check_thick_slice_ratio(thick_slice_ratio, computing_ndim(shape)),
    )
    mask = prev_mask.copy() if local else (p >= 0.5).astype(np.uint8)
    mask[region.slices] = res.mask
    probability = (prev_prob if local else p).astype(np.float32, copy=True)
    probability[region.slices] = res.probability
    return RefineResult(mask=mask, probability=probability, box=region)


def refine_region_box(points: np.ndarray, shape: Sequence[int], box: Box | None) -> Box:
    """The region a refinement round works on: the relaxed box of `points` and `box`.

    `points` (N, ndim) int: margin points and clicks; `box`: the stage-1 box (or None).
    The relaxed box is `midseg.crop.relaxed_bbox` (default margin).

    Raises
    ------
    InvalidInputError
        Neither points nor a box.
    """
    if len(points):
        region = relaxed_bbox(points, shape)
        return region if box is None else region.union(box)
    if box is not None:
        return box
    raise InvalidInputError(
        "refine needs margin points, clicks or a box to know where to work; got none"
    )


def refine_region(
    chans: np.ndarray,
    p: np.ndarray | None,
    region: Box,
    margin: np.ndarray,
    fg: np.ndarray,
    bg: np.ndarray,
    sp: np.ndarray,
    *,
    lam: float,
    sigma: float,
    method: str,
    connectivity: int | None,
    backend: str,
    prev_mask: np.ndarray | None,
    new_fg: np.ndarray | None,
    new_bg: np.ndarray | None,
    claim_keep: float = CLICK_CLAIM_KEEP,
    min_click_depth: float = 1.0,
    band_reach: float = 0.0,
    thick_slice_ratio: float = 0.0,
    cache: dict | None = None,
) -> RefineResult:
    """The work of `refine` on checked input, touching only `region` and a ring around it.

    For callers that hold the maps already checked (`midseg.Session`): per round it costs
    what the region costs, whatever the image's size. `min_click_depth`: as `refine`'s,
    already checked (callers pass it; the default 1 is the rule before clicks-file
    version 6); `band_reach` and `thick_slice_ratio` likewise (the default 0 is the rule
    before versions 7 and 8).
    `cache`: a dict the caller keeps between rounds on the same `chans` ("ifgc"): the
    region's windowed intensities and their smoothed copy are reused while the region and
    the object window stay the same (background-only rounds), with identical results.

    `chans` (C, *S) and `p` are the whole image and CNN map (read only, never copied or
    scanned; "ifgc" does not read `p`, which may be None); `prev_mask` the previous mask
    ("ifgc"). Returns a `RefineResult` whose
    ``mask`` and ``probability`` are `region`'s (``box``) arrays: outside it nothing
    changes ("ifgc"), or the stage-1 rule ``p >= 0.5`` holds (the other methods).
    """
    local = method == "ifgc"
    shape = chans.shape[1:]
    sl = region.slices
    origin = np.asarray(region.start, dtype=np.int64)
    # The CRF is solved on the region plus a one-voxel ring around it (inside the image)
    # whose labels are fixed to the outside labels (Notes, "Border of the region").
    outer = Box(
        tuple(max(0, a - 1) for a in region.start),
        tuple(min(n, b + 1) for b, n in zip(region.stop, shape)),
    )
    inner = region.slices_in(outer)
    hard_fg = np.concatenate([_margin_not_clicked_bg(margin, bg), fg]) - origin
    unit = sp / sp.min()
    if local:
        norm_outer, sd_crop = _local_intensities(chans, region, outer, hard_fg, unit, cache)
    else:
        norm_outer = _region_intensities(chans, region, outer)
    norm = norm_outer[(slice(None),) + inner]
    zone = None
    # outside labels: the previous mask ("ifgc"), else the stage-1 rule p >= 0.5
    if local:
        assert prev_mask is not None and new_fg is not None and new_bg is not None
        fg_bg = (new_fg - origin, new_bg - origin)
        settings = (min_click_depth, band_reach, thick_slice_ratio)
        fused, zone = _local_fusion(prev_mask[sl], sd_crop, *fg_bg, unit, backend, *settings)
        outside = prev_mask[outer.slices] != 0
    else:
        if p is None:
            raise InvalidInputError(f"method {method!r} needs the CNN probability map")
        fused = _global_fused_map(
            p[sl], norm, margin - origin, fg - origin, bg - origin, unit, method, backend
        )
        outside = p[outer.slices] >= 0.5
    shift = origin - np.asarray(outer.start, dtype=np.int64)
    prob_outer, labels, free = _region_graph(
        outside, inner, fused, zone, hard_fg + shift, bg - origin + shift
    )
    # The graph holds the free voxels only (for "ifgc" the zone a click reaches, usually a
    # small part of the region): a fixed neighbour adds its edge to a free voxel's terminal
    # capacity, so the minimum is that of the whole region with those voxels fixed.
    pairwise = lam * LOCAL_PAIRWISE if local else lam
    band = local and np.count_nonzero(free) > BAND_MIN_VOXELS
    solve = _solve_in_band if band else _solve_sparse
    mask_outer = solve(
        prob_outer,
        norm_outer,
        free,
        labels,
        lam=pairwise,
        sigma=sigma,
        spacing=sp,
        connectivity=connectivity,
    )
    mask = mask_outer[inner]
    if local and claim_keep > 0 and new_fg is not None and len(new_fg):
        assert zone is not None and prev_mask is not None
        mask = _keep_claim(mask, fused, zone, prev_mask[sl], claim_keep, hard_fg, bg - origin)
    return RefineResult(mask=mask, probability=np.asarray(fused, np.float32), box=region)


def _keep_claim(
    cut: np.ndarray,
    fused: np.ndarray,
    zone: np.ndarray,
    prev: np.ndarray,
    keep: float,
    hard_fg: np.ndarray,
    hard_bg: np.ndarray,
) -> np.ndarray:
    """The round's region mask: `cut`, plus the voxels ``fused >= 0.5`` adds in `zone`
    when the cut adds fewer than `keep` times as many (`refine`, Notes, "A foreground
    click's claim"). Only additions are counted and taken, so the cut's removals (a
    background click of the same round) stay as they are. `hard_fg`, `hard_bg`: region
    indices of the constraints."""
    before = prev != 0
    claim = zone & (fused >= 0.5) & ~before
    n_claim = np.count_nonzero(claim)
    if n_claim == 0 or np.count_nonzero((cut != 0) & ~before) >= keep * n_claim:
        return cut
    out = cut.astype(np.uint8, copy=True)
    out[claim] = 1
    out[tuple(np.asarray(hard_fg, np.int64).reshape(-1, out.ndim).T)] = 1
    out[tuple(np.asarray(hard_bg, np.int64).reshape(-1, out.ndim).T)] = 0
    return out


def _region_intensities(chans: np.ndarray, region: Box, outer: Box) -> np.ndarray:
    """The global methods' image on `outer` (the region and its ring) mapped to [0, 1] by
    the region's range, (C, *outer) float (click-local rounds: `_local_intensities`)."""
    chans_outer = chans[(slice(None),) + outer.slices]
    chans_region = chans[(slice(None),) + region.slices]
    return _normalise01(chans_outer, like=chans_region)


def _local_intensities(
    chans: np.ndarray,
    region: Box,
    outer: Box,
    hard_fg: np.ndarray,
    unit: np.ndarray,
    cache: dict | None,
) -> tuple[np.ndarray, np.ndarray]:
    """A click-local round's intensities, read-only: the image on `outer` (the region and its
    ring) mapped to [0, 1] by the object window of the hard foreground points `hard_fg`
    (region coordinates; `_object_window`), and the region's smoothed copy the distances
    walk (`_distance_image`).

    With a `cache` dict they are kept there and reused while the boxes, the window (the
    hard foreground points' intensities), the spacing and `LOCAL_SMOOTHING` are the same.
    """
    chans_region = chans[(slice(None),) + region.slices]
    cache = {} if cache is None else cache
    smoothing = _fusion.LOCAL_SMOOTHING  # read at call time (experiments set it)
    boxes = (region.start, region.stop, outer.start, outer.stop, tuple(unit), smoothing)
    if cache.get("boxes") != boxes:
        cache.clear()
        cache.update(boxes=boxes, spread=_region_spread(chans_region))
    window = _object_window(chans_region, hard_fg, cache["spread"])
    if "window" not in cache or not np.array_equal(cache["window"], window):
        for key in ("window", "norm", "sd"):  # not held twice while the new ones are built
            cache.pop(key, None)
        norm_outer = _window_normalise(chans[(slice(None),) + outer.slices], window)
        inner = region.slices_in(outer)
        sd_crop = _distance_image(norm_outer[(slice(None),) + inner], unit, smoothing)
        for a in (norm_outer, sd_crop):
            a.setflags(write=False)
        cache.update(window=window, norm=norm_outer, sd=sd_crop)
    return cache["norm"], cache["sd"]


def _global_fused_map(
    p_region: np.ndarray,
    norm: np.ndarray,
    margin: np.ndarray,
    fg: np.ndarray,
    bg: np.ndarray,
    unit: np.ndarray,
    method: str,
    backend: str,
) -> np.ndarray:
    """The region's foreground probability of a global method, float32 (region shape).

    "ifgc-global" / "ifgc-paper": the CNN map `p_region` fused with the geodesic distances
    to the clicks and margin points (region coordinates; `_fuse`, certainty-weighted or
    Eq. 7 as printed); "gc": `p_region` itself.
    """
    if method in ("ifgc-global", "ifgc-paper"):
        d_fg, d_bg = _click_distances(norm, np.concatenate([margin, fg]), bg, unit, backend)
        return _fuse(p_region, d_fg, d_bg, certainty=method == "ifgc-global")
    return p_region.astype(np.float32)


def _region_graph(
    outside: np.ndarray,
    inner: tuple[slice, ...],
    fused: np.ndarray,
    zone: np.ndarray | None,
    hard_fg: np.ndarray,
    hard_bg: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The graph cut's unary map, labels and free voxels on the region and its ring.

    `outside` (the outer box's outside labels) fixes the ring and, for a click-local
    round, the region's voxels outside `zone`; `fused` is the region's (`inner`)
    probability; the hard points `hard_fg`, `hard_bg` (outer-box coordinates) are labelled
    by their class and kept out of the graph. Returns ``(prob_outer, labels, free)``.
    """
    fixed = np.ones(outside.shape, dtype=bool)  # ring (and, for "ifgc", outside the zone)
    fixed[inner] = ~zone if zone is not None else False
    fixed[tuple(hard_fg.T)] = False  # clicks and margin points are constraints
    fixed[tuple(hard_bg.T)] = False  # of their own class, wherever they are
    prob_outer = outside.astype(np.float32)  # values at fixed voxels are never read
    prob_outer[inner] = fused
    labels = outside.astype(np.uint8)
    labels[tuple(hard_fg.T)] = 1  # clicks and margin points: their own class
    labels[tuple(hard_bg.T)] = 0
    free = ~fixed
    free[tuple(hard_fg.T)] = False
    free[tuple(hard_bg.T)] = False
    return prob_outer, labels, free


def cut_margin_points_box(
    chans: np.ndarray,
    fused_box: np.ndarray,
    pts: np.ndarray,
    box: Box,
    sp: np.ndarray,
    *,
    lam: float = DEFAULT_LAM,
    sigma: float = DEFAULT_SIGMA,
) -> np.ndarray:
    """Stage-1 mask inside the margin points' box: the graph cut of their fused map.

    Minimises the CRF of `graph_cut` (MIDeepSeg Eq. 8-11) over the box, unary from
    `fused_box` (the output of `fuse_margin_points_box`), pairwise weight
    ``MARGIN_PAIRWISE[ndim] * lam`` on the crop mapped to [0, 1] by the object window of the
    margin points (the click rounds' intensities, `refine`, Notes), every margin point a
    foreground constraint, solved by max-flow (`midseg.graphcut`).

    Only voxels whose unary cost difference ``|log(r / (1 - r))|`` is below the bound of
    their pairwise weights (2 x the sum over the neighbourhood's offsets of
    ``weight / dist``) enter the graph: every other voxel takes its label ``r >= 0.5`` in a
    minimum (flipping it costs more unary than the pairwise terms it touches can give
    back), so the result is the full solve's while the graph holds the uncertain voxels
    only. When more than `BAND_MIN_VOXELS` are uncertain (an organ-sized box), the graph is
    first built in a narrow band around the cut of ``fused_box >= 0.5`` and widened while
    the cut reaches its edge (``_solve_in_band``): the full solve's result wherever the cut
    stays inside the band.

    Returns ``fused_box >= 0.5`` instead when MARGIN_PAIRWISE is 0 for this
    dimensionality, or when the cut would keep fewer than `MARGIN_CUT_KEEP` of its voxels
    (where the fused map is lukewarm, about 0.5, over the whole object, a pairwise term
    large enough to matter can remove it all). The weights were chosen on ``dev_unseen``
    (``docs/decisions.md``, 3D stage 1).

    Parameters
    ----------
    chans : (C, *S) ndarray
        The whole image, channel-first (read, never copied).
    fused_box : ndarray of float, shape of ``box``
        The fused foreground probability inside the box, in [0, 1].
    pts : (N, ndim) int ndarray
        Margin points in image coordinates, all inside `box`.
    box : midseg.crop.Box
        ``relaxed_bbox(pts, S)``.
    sp : (ndim,) float ndarray
        Spacing in array order.
    lam, sigma : float
        The session's λ and σ (Eq. 11).

    Returns
    -------
    ndarray of uint8, shape of ``box``
        1 = foreground.
    """
    ndim = fused_box.ndim
    sure = (fused_box >= 0.5).astype(np.uint8)
    weight = MARGIN_PAIRWISE.get(ndim, 0.0) * lam
    if weight <= 0 or not sure.any():
        return sure
    crop = chans[(slice(None),) + box.slices]
    local = np.asarray(pts, dtype=np.int64) - np.asarray(box.start)
    norm = _window_normalise(crop, _object_window(crop, local))
    unit = np.asarray(sp, np.float64) / np.min(sp)
    bound = 2.0 * sum(
        weight / float(np.sqrt(np.sum((np.asarray(o) * unit) ** 2)))
        for o in _offsets(fused_box.shape, None)
    )
    r = np.clip(fused_box, PROB_EPS, 1.0 - PROB_EPS)
    free = np.abs(np.log(r) - np.log1p(-r)) < bound  # the uncertain voxels
    labels = sure.copy()
    labels[tuple(local.T)] = 1
    free[tuple(local.T)] = False
    spacing = np.asarray(sp, np.float64)
    solver = _solve_in_band if np.count_nonzero(free) > BAND_MIN_VOXELS else _solve_sparse
    cut = solver(  # large objects: a narrow band first
        fused_box, norm, free, labels, lam=weight, sigma=sigma, spacing=spacing, connectivity=None
    )
    if np.count_nonzero(cut) < MARGIN_CUT_KEEP * np.count_nonzero(sure):
        return sure
    return cut


def _check_previous(previous, p, fg, bg, new_foreground, new_background, shape):
    """The previous round's (probability, mask) and this round's new clicks, checked.

    Without `previous` the round starts from stage 1 (``p`` and ``p >= 0.5``) and all
    clicks are new.
    """
    if previous is None:
        prev_prob, prev_mask = p, (p >= 0.5).astype(np.uint8)
    else:
        if isinstance(previous, RefineResult):
            previous = (previous.probability, previous.mask)
        try:
            prev_prob, prev_mask = previous
        except (TypeError, ValueError):
            raise InvalidInputError(
                "previous must be a RefineResult or a (probability, mask) pair"
            ) from None
        prev_prob = _check_prob(prev_prob, "previous probability")
        prev_mask = np.asarray(prev_mask)
        if prev_prob.shape != shape or prev_mask.shape != shape:
            raise InvalidInputError(
                f"previous probability and mask must have the image's spatial shape {shape}, "
                f"got {prev_prob.shape} and {prev_mask.shape}"
            )
        prev_mask = (prev_mask != 0).astype(np.uint8)
    if new_foreground is None and new_background is None:
        if previous is not None:
            raise InvalidInputError(
                "with previous, give this round's clicks as new_foreground/new_background"
            )
        return prev_prob, prev_mask, fg, bg
    new_fg = as_points(
        () if new_foreground is None else new_foreground,
        shape,
        name="new foreground clicks",
        allow_empty=True,
    )
    new_bg = as_points(
        () if new_background is None else new_background,
        shape,
        name="new background clicks",
        allow_empty=True,
    )
    for new, every, name in ((new_fg, fg, "foreground"), (new_bg, bg, "background")):
        if len(new) and (not len(every) or not _same_voxel(new, every).any(axis=1).all()):
            raise InvalidInputError(
                f"every new {name} click must also be among the {name} clicks in force"
            )
    return prev_prob, prev_mask, new_fg, new_bg
