"""Where to click next: suggested corrective clicks from what a session knows, no ground truth.

`suggest_clicks` ranks the voxels next to the current mask's boundary by how much the image
contradicts the label the mask gives them, judged against the object's and the
background's own *local* intensities, and returns the most contradicted ones as clicks of
the other class. `midseg.Session.suggest` calls it on the session's current mask, margin
points and clicks; the GUI shows its first suggestion as a marker; the evaluation's
suggestion-following user (`midseg.evaluation.users`) clicks it.

Reasoning (evidence in ``docs/decisions.md``, 2026-11-30): after stage 1 and a few clicks
most errors are bands along the mask's boundary, one to a few voxels thick, so a
suggestion has to be at the boundary and on its wrong side. The fused probability's
uncertainty peaks *on* the boundary, where a voxel is about as often right as wrong (34-38 %
of its maxima lay in an error region on the ``dev_unseen`` objects); where the CNN map
disagrees with the mask, the fusion had mostly corrected it (4-34 %); a global intensity
model of object and background fails on heterogeneous objects (6-12 %). The intensity of
a voxel compared with the mean intensities of the object and of the background *around
it* (Gaussian-weighted means over the mask's and its complement's voxels, as in localized
region-based active contours, Lankton & Tannenbaum, IEEE TIP 2008) tells which side of a
misplaced boundary it belongs to, also inside heterogeneous objects. Taking the minimum
of that evidence over the voxel's same-label neighbours keeps single noisy voxels from
winning (56-65 % without, 65-72 % with it).

In 3D, stage 1 leans on the margin points' geodesic evidence (`MARGIN_FUSION_FLOOR`), so
the stage-1 CNN map is a second opinion the mask does not contain: where it *and* the
local intensities say the mask is wrong, it mostly is. Alone, the CNN's disagreement
points at its own errors (its deepest voxel lay in an error 5-7 of 80 times); added to the
intensity score as log-odds, it doubles the share (`SUGGEST_CNN_WEIGHT`). A click that
contradicts the CNN at its voxel says the CNN is wrong there, so its disagreement region
stops counting. In 2D the mask mostly is the CNN's and the term changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import ndimage

from ._checks import as_index_array, as_spacing, channels_first
from .crop import tight_slices
from .errors import InvalidInputError

__all__ = [
    "Suggestion",
    "suggest_clicks",
    "SUGGEST_SIGMA_MM",
    "SUGGEST_BAND",
    "SUGGEST_CLICK_RADIUS",
    "SUGGEST_SEPARATION",
    "SUGGEST_MAX_VOXELS",
    "SUGGEST_CNN_WEIGHT",
]

#: Standard deviation (mm) of the Gaussian window of the local object / background means.
SUGGEST_SIGMA_MM = 2.0
#: Candidates lie within this many voxels (of the smallest spacing) of the other label, in
#: a box of half-width ``int(SUGGEST_BAND * smallest spacing / spacing)`` >= 1 voxels per
#: axis: one voxel at 1.5 (40 against 34 % with 3 in 2D, 59 against 57 % in 3D,
#: ``docs/decisions.md``).
SUGGEST_BAND = 1.5
#: No suggestion within this distance (units of the smallest spacing) of a click or point.
SUGGEST_CLICK_RADIUS = 3.0
#: Crops (the mask's box grown by the band and the window) of more voxels are subsampled.
SUGGEST_MAX_VOXELS = 2**19
#: Weight, per dimensionality, of the stage-1 CNN's log-odds for the class the mask does not
#: give a voxel, added to its score when a CNN probability is given (`Session.suggest` gives
#: its stage-1 map). Chosen on dev_unseen (``docs/decisions.md``): in 3D, where stage 1
#: leans on the margin points' geodesic evidence, the CNN disagrees where the mask is wrong;
#: in 2D the mask mostly is the CNN's, and the term changed nothing. A `Session` on a
#: one-slice volume works in 2D, so its weight is the 2D one.
SUGGEST_CNN_WEIGHT = {2: 0.0, 3: 0.3}
#: Two suggestions of one call are at least this far apart (units of the smallest spacing).
SUGGEST_SEPARATION = 8.0


@dataclass(frozen=True)
class Suggestion:
    """One suggested click.

    Attributes
    ----------
    point : tuple of int
        Voxel index in array order (``(y, x)`` or ``(z, y, x)``).
    foreground : bool
        The class the click would probably be: the one the mask does not give the voxel.
    score : float
        How strongly the image contradicts the mask there, in units of the object's
        intensity standard deviation (raw intensity units when that is 0; larger: more
        likely an error, <= 0: the image supports the mask there); comparable within one
        image only.
    """

    point: tuple[int, ...]
    foreground: bool
    score: float


def _bbox(m: np.ndarray, pad: int, offset, shape) -> tuple[slice, ...] | None:
    """Box of `m`'s nonzero voxels grown by `pad`, shifted by `offset`, clipped to `shape`
    (None for an empty `m`)."""
    if not m.any():
        return None
    return tuple(
        slice(max(t.start + o - pad, 0), min(t.stop + o + pad, n))
        for t, o, n in zip(tight_slices(m), offset, shape)
    )


def _clear_ball(score: np.ndarray, centre: np.ndarray, radius: float, sp: np.ndarray) -> None:
    """Set `score` to -inf within `radius` (physical units) of voxel `centre` (may be outside)."""
    r = radius / sp
    lo = np.maximum(np.ceil(centre - r), 0).astype(int)
    hi = np.minimum(np.floor(centre + r) + 1, score.shape).astype(int)
    if np.any(lo >= hi):
        return
    win = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    nd = score.ndim
    d2 = sum(
        (((np.arange(lo[i], hi[i]) - centre[i]) * sp[i]) ** 2).reshape(
            [-1 if j == i else 1 for j in range(nd)]
        )
        for i in range(nd)
    )
    score[win][d2 <= radius**2] = -np.inf


def _evidence(chans: np.ndarray, m: np.ndarray, sp: np.ndarray) -> np.ndarray:
    """Evidence against the mask's label, summed over channels, in SD units per channel."""
    mf = m.astype(np.float32)
    s = (0.0,) + tuple(SUGGEST_SIGMA_MM / sp)
    ev = np.zeros(m.shape, np.float32)
    w_f = None
    for img in chans:
        top = float(np.abs(img).max()) if img.dtype == np.float64 else 0.0
        if top > 1e30:  # beyond float32: the evidence does not change with the scale
            img = img / top
        img = img.astype(np.float32, copy=False)
        fg = img * mf
        # one call filters the three maps (no smoothing across the stacked axis)
        stack = np.stack((mf, fg, img - fg) if w_f is None else (fg, img - fg))
        g = ndimage.gaussian_filter(stack, s, truncate=2.0)
        if w_f is None:
            w_f, g = g[0], g[1:]
        mu_f = g[0] / np.maximum(w_f, 1e-3)
        mu_b = g[1] / np.maximum(1 - w_f, 1e-3)
        looks_fg = np.abs(img - mu_b) - np.abs(img - mu_f)
        sd = float(img[m].std()) if m.any() else 0.0
        ev += np.where(m, -looks_fg, looks_fg) / (sd if sd > 0 else 1.0)
    return ev


def _shift_reduce(a: np.ndarray, half: Sequence[int], op) -> np.ndarray:
    """`op` (np.minimum or np.maximum) over the box of half-widths `half` around each voxel
    (clipped at the array's edges), by repeated one-voxel shifts along each axis. Equals
    `scipy.ndimage.minimum_filter` / `maximum_filter` of that box size with their default
    mode (reflect), and is several times faster for these small boxes."""
    out = a.copy()
    for ax, h in enumerate(half):
        lo = (slice(None),) * ax + (slice(0, -1),)
        hi = (slice(None),) * ax + (slice(1, None),)
        for _ in range(h):
            prev = out.copy()
            op(out[hi], prev[lo], out=out[hi])
            op(out[lo], prev[hi], out=out[lo])
    return out


def _score(ev: np.ndarray, m: np.ndarray, sp: np.ndarray, unit: float) -> np.ndarray:
    """Minimum evidence over same-label neighbours, -inf outside the band (see Notes)."""
    half = [max(1, int(SUGGEST_BAND * unit / v)) for v in sp]
    two = np.stack((~m, m))  # near[0]: a background voxel in the box; near[1]: an object one
    lab = np.stack((np.where(m, ev, np.inf), np.where(m, np.inf, ev)))
    near = _shift_reduce(two, [0] + half, np.maximum)
    lo = _shift_reduce(lab, [0] + [1] * m.ndim, np.minimum)
    return np.where(np.where(m, near[0], near[1]), np.where(m, lo[0], lo[1]), -np.inf)


def _in_crop(cnn, sl: tuple[slice, ...], shape: tuple[int, ...], fill=0.0) -> np.ndarray:
    """The crop `sl` (strided slices) of a map given as ``(box_slices, values)``, `fill`
    outside the box, without building the map."""
    box, values = cnn
    out = np.full(shape, fill, np.float32)
    dst, src = [], []
    for s, b, n in zip(sl, box, shape):
        j0 = max(0, -(-(b.start - s.start) // s.step))
        j1 = min(n, -(-(b.stop - s.start) // s.step))
        if j1 <= j0:
            return out
        dst.append(slice(j0, j1))
        first = s.start + j0 * s.step - b.start
        src.append(slice(first, first + (j1 - j0 - 1) * s.step + 1, s.step))
    out[tuple(dst)] = values[tuple(src)]
    return out


def _cnn_term(p: np.ndarray, m: np.ndarray, pts, fg, origin, stride: int) -> np.ndarray:
    """Log-odds of the CNN map `p` (crop) for the class the mask `m` does not give a voxel,
    0 in the regions of its disagreement with the mask that a click has contradicted."""
    p = np.clip(p, 1e-3, 1 - 1e-3)
    logit = np.log(p / (1 - p))
    term = np.where(m, -logit, logit)
    if pts is None or fg is None:
        return term
    seeds = []
    for c, f in zip(pts, fg):
        q = np.round((c - origin) / stride).astype(int)
        if np.all((q >= 0) & (q < m.shape)) and (p[tuple(q)] >= 0.5) != bool(f):
            seeds.append(q)  # the user's click says the CNN is wrong there
    if seeds:
        lab, _ = ndimage.label(term > 0)
        ids: set[int] = set()
        for q in seeds:  # the disagreement at or beside the click (2 voxels)
            win = tuple(slice(max(a - 2, 0), a + 3) for a in q)
            ids.update(int(i) for i in np.unique(lab[win]) if i)
        term[np.isin(lab, list(ids))] = 0
    return term


def _suggest(
    chans, mask, sp, pts, k: int, extent=None, cnn=None, fg=None, keep=()
) -> list[Suggestion]:
    """`suggest_clicks` on checked input: `chans` (C, *S), `mask` of shape S (read only
    inside `extent`, a tuple of slices known to hold all its nonzero voxels; None: all),
    `sp` the spacing (ndarray), `pts` (N, ndim) int clicks or None, `cnn` None or
    ``(box_slices, probability inside the box)``, `fg` the clicks' classes or None, `keep`
    ``(box_slices, bool array)`` pairs of voxels never suggested (brush edits)."""
    shape = chans.shape[1:]
    extent = tuple(slice(0, n) for n in shape) if extent is None else extent
    unit = float(sp.min())
    pad = int(np.ceil(SUGGEST_BAND + 2 * SUGGEST_SIGMA_MM / unit)) + 2
    sub = np.asarray(mask[extent]) != 0
    sl = _bbox(sub, pad, [x.start for x in extent], shape)
    if sl is None or (sub.size == int(np.prod(shape)) and sub.all()):
        return []
    # large crops are subsampled with one stride on every axis: the chosen voxel is a voxel
    # of the full grid all the same (its mask value is the subsampled one)
    n = np.prod([x.stop - x.start for x in sl])
    stride = max(1, int(np.ceil((n / SUGGEST_MAX_VOXELS) ** (1 / len(sl)))))
    sl = tuple(slice(x.start, x.stop, stride) for x in sl)
    sp = sp * stride
    m = np.asarray(mask[sl]) != 0
    score = _score(_evidence(chans[(slice(None),) + sl], m, sp), m, sp, unit)
    origin = np.array([s.start for s in sl])
    weight = SUGGEST_CNN_WEIGHT.get(m.ndim, 0.0)
    if cnn is not None and weight:  # -inf (outside the band) stays -inf
        score += np.float32(weight) * _cnn_term(  # no say outside the CNN's box: p = 0.5
            _in_crop(cnn, sl, m.shape, fill=0.5), m, pts, fg, origin, stride
        )
    for c in pts if pts is not None else ():
        _clear_ball(score, (c - origin) / stride, SUGGEST_CLICK_RADIUS * unit, sp)
    for region in keep:
        score[_in_crop(region, sl, m.shape) > 0] = -np.inf
    out: list[Suggestion] = []
    while len(out) < k:
        i = int(np.argmax(score))
        best = float(score.flat[i])
        if not np.isfinite(best):
            break
        p = np.unravel_index(i, m.shape)
        full = tuple(int(a * stride + o) for a, o in zip(p, origin))
        out.append(Suggestion(full, not bool(m[p]), best))
        if len(out) < k:
            _clear_ball(score, np.array(p), SUGGEST_SEPARATION * unit, sp)
    return out


def suggest_clicks(
    image,
    mask,
    *,
    spacing: Sequence[float] | None = None,
    clicks=(),
    k: int = 1,
    channel_axis: int | None = None,
    probability=None,
    click_foreground=None,
) -> list[Suggestion]:
    """Up to `k` suggested corrective clicks for `mask` on `image`, best first.

    Parameters
    ----------
    image : (Y, X) or (Z, Y, X) ndarray, or channel-first (C, ...) with ``channel_axis=0``
        Numeric, finite; intensities in any units (each channel is compared with its own
        local means and scaled by its SD inside the mask).
    mask : ndarray of the image's spatial shape
        The current segmentation; nonzero = object.
    spacing : sequence of float, optional
        Voxel size in array order, mm (default 1 per axis).
    clicks : (N, ndim) int array or sequence of index tuples
        Clicks already made (both classes): no suggestion lies within
        `SUGGEST_CLICK_RADIUS` of one. `Session.suggest` passes its clicks in force, not
        its margin points (excluding those lowered the precision, ``docs/decisions.md``).
    k : int
        Most suggestions returned (>= 1); successive ones are at least
        `SUGGEST_SEPARATION` apart.
    channel_axis : int, optional
        Axis of `image` holding channels; None for a scalar image.
    probability : ndarray of the image's spatial shape, optional
        A foreground probability in [0, 1] made without the mask's corrections, such as
        the stage-1 CNN's (`Session.suggest` passes its stage-1 map, 0.5 outside the stage-1 box);
        its log-odds for the class the mask does not give a voxel, times
        ``SUGGEST_CNN_WEIGHT[ndim]``, is added to the voxel's score.
    click_foreground : sequence of bool, optional
        The class of each of `clicks` (True: foreground). With `probability`, a click of
        the class the probability does not give its voxel contradicts it: the term is
        dropped in the connected region where the probability disagrees with the mask
        at or beside that click.

    Returns
    -------
    list of Suggestion
        Best first; empty when the mask is empty or covers the whole image, or no
        candidate voxel is left. Deterministic: ties go to the first voxel in C order.

    Raises
    ------
    InvalidInputError
        Bad image, a mask of another shape, k < 1, a click of the wrong dimension.

    Notes
    -----
    For every voxel within `SUGGEST_BAND` of the mask's boundary (on either side) the
    evidence against its current label is ``|I - mu_b| - |I - mu_f|`` for a background
    voxel and the negative for an object voxel, where ``mu_f`` and ``mu_b`` are the
    Gaussian-weighted (`SUGGEST_SIGMA_MM`) means of the intensity over the mask's and the
    background's voxels around it, divided by the intensity SD inside the mask. The score
    is the minimum of that evidence over the voxel and its same-label neighbours (3x3 or
    3x3x3): a click needs a small patch that looks like the other class, not one noisy
    voxel. With `probability` (p, clipped to [0.001, 0.999]) the score gains
    ``w * log(q / (1 - q))``, q the probability of the other class (``p`` for a background
    voxel, ``1 - p`` for an object voxel), ``w = SUGGEST_CNN_WEIGHT[ndim]`` (0 in 2D).
    Work is done on the mask's bounding box grown by the band and the window,
    subsampled with one stride on all axes when it holds more than `SUGGEST_MAX_VOXELS`
    voxels (the band is then as many mm wide). The band is a box (Chebyshev distance).
    See the module docstring and ``docs/decisions.md`` for the reasoning and the evidence.
    """
    chans = channels_first(image, channel_axis)
    spatial = chans.shape[1:]
    m_all = np.asarray(mask)
    if m_all.shape != spatial:
        raise InvalidInputError(
            f"mask must have the image's spatial shape {spatial}, got {m_all.shape}"
        )
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InvalidInputError(f"k must be an integer >= 1, got {k!r}")
    sp = as_spacing(spacing, len(spatial))
    given = as_index_array(clicks, len(spatial), name="clicks", allow_empty=True)
    pts = given if len(given) else None
    cnn = None
    if probability is not None:
        try:
            prob = np.asarray(probability, dtype=np.float32)
        except (TypeError, ValueError):
            prob = np.full((0,), np.nan, np.float32)
        if prob.shape != spatial or not np.all((prob >= 0) & (prob <= 1)):
            raise InvalidInputError(
                f"probability must be an array of the image's spatial shape {spatial} with "
                f"values in [0, 1], got shape {prob.shape}"
            )
        cnn = (tuple(slice(0, n) for n in spatial), prob)
    fg = None
    if click_foreground is not None:
        raw = np.asarray(click_foreground, dtype=object).ravel()
        if not all(isinstance(v, (bool, np.bool_)) or v in (0, 1) for v in raw):
            raise InvalidInputError(
                f"click_foreground must hold True / False (or 1 / 0), got {click_foreground!r}"
            )
        fg = raw.astype(bool)
        if np.ndim(click_foreground) != 1 or fg.size != (0 if pts is None else len(pts)):
            raise InvalidInputError(
                f"click_foreground must give one class per click ({0 if pts is None else len(pts)}),"
                f" got {fg.size}"
            )
    return _suggest(chans, m_all, sp, pts, int(k), cnn=cnn, fg=fg)
