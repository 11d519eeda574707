"""Simulated scribbles as random ellipsoids (Hallitschke et al. 2023, Algorithm 1).

Lives here: `ellipsoid_scribble` (one foreground or background ellipsoid) and
`simulate_scribbles` (the paper's 1-3 foreground + 0-1 background). Pure numpy: no files, no torch.
"""

from __future__ import annotations

import numpy as np

from midseg._checks import as_rng, check_spatial
from midseg.errors import InvalidInputError

__all__ = [
    "ellipsoid_scribble",
    "simulate_scribbles",
    "DEFAULT_ALPHA",
    "DEFAULT_BETA",
    "DEFAULT_MIN_AXIS",
]

#: Axis scaling factor alpha: semi-axis = r * alpha * image length, r ~ U(0, 1).
DEFAULT_ALPHA: float = 0.05
#: Bounding-box scaling factor beta: background centres come from the ring
#: between the object's box and the box scaled by beta about its centre.
DEFAULT_BETA: float = 1.5
#: Minimum semi-axis m, in voxels.
DEFAULT_MIN_AXIS: float = 1.0


def ellipsoid_scribble(
    gt,
    pred=None,
    *,
    foreground: bool = True,
    rng: np.random.Generator | int | None = None,
    alpha: float = DEFAULT_ALPHA,
    beta: float = DEFAULT_BETA,
    min_axis: float = DEFAULT_MIN_AXIS,
    restrict: bool = True,
) -> np.ndarray:
    """One simulated scribble: a random ellipse/ellipsoid, as a bool mask.

    Algorithm 1 of Hallitschke et al. (2023): pick a centre ``p`` -- for a
    foreground scribble a random object voxel, for a background scribble a
    random voxel of the margin between the object's bounding box and that
    box scaled by `beta` (clipped to the image); draw ``r ~ U(0, 1)`` once and
    set the semi-axis along each array axis to ``max(m, r * alpha * L)``,
    ``L`` the image length on that axis; return the ellipsoid around ``p``.

    Parameters
    ----------
    gt : (Y, X) or (Z, Y, X) ndarray
        Ground truth; non-zero is the object.
    pred : ndarray of the same shape, optional
        Current segmentation. When given (a corrective scribble, our
        extension), the centre is drawn from the false negatives
        ``gt & ~pred`` (foreground) or false positives ``pred & ~gt``
        (background) instead.
    foreground : bool, default True
    rng : numpy Generator, int seed or None
    alpha, beta, min_axis : float
        Algorithm 1's constants (the paper gives no values; ours are
        `DEFAULT_ALPHA`, `DEFAULT_BETA`, `DEFAULT_MIN_AXIS`). ``beta >= 1``.
    restrict : bool, default True
        Keep only the voxels whose label the scribble claims: a foreground
        ellipsoid is cut to the object, a background one to its complement,
        so a scribble never mislabels a voxel. ``False`` returns the bare
        ellipsoid exactly as Algorithm 1 prints it (it may cross the border).

    Returns
    -------
    ndarray of bool, shape of `gt`
        The scribble; always contains its centre. All False when `pred` is
        given and has no error of the requested type.

    Raises
    ------
    InvalidInputError
        Empty `gt`; no background voxel for a background scribble; shapes
        differ; bad constants.

    Notes
    -----
    Semi-axes are in voxels (the paper scales them with the image size in
    voxels, so no spacing is involved). Without `pred`, a background centre
    comes from the margin ring, which lies outside the object's bounding box
    and so outside the object; when the box fills the whole image along every
    axis the ring is empty and any voxel outside the object is used.

    References
    ----------
    Hallitschke et al., Multimodal interactive lung lesion segmentation: a
    framework for annotating PET/CT images based on physiological and
    anatomical cues, ISBI 2023, Algorithm 1.
    """
    g = check_spatial(gt, "gt") != 0
    gen = as_rng(rng)
    alpha, beta, min_axis = _check_constants(alpha, beta, min_axis)
    if not g.any():
        raise InvalidInputError("gt is empty; expected at least one object voxel")
    if pred is not None:
        p = check_spatial(pred, "pred") != 0
        if p.shape != g.shape:
            raise InvalidInputError(
                f"gt and pred must have the same shape, got {g.shape} and {p.shape}"
            )
        allowed = (g & ~p) if foreground else (p & ~g)
        if not allowed.any():
            return np.zeros(g.shape, dtype=bool)
    elif foreground:
        allowed = g
    else:
        allowed = _margin_ring(g, beta)
        if not allowed.any():
            allowed = ~g
            if not allowed.any():
                raise InvalidInputError(
                    "gt covers the whole image; there is no background for a scribble"
                )
    cand = np.flatnonzero(allowed)
    centre = np.array(np.unravel_index(int(cand[gen.integers(cand.size)]), g.shape))

    r = gen.uniform(0.0, 1.0)
    axes = np.maximum(min_axis, r * alpha * np.asarray(g.shape, dtype=np.float64))
    out = _ellipsoid(g.shape, centre, axes)
    if restrict:
        out &= g if foreground else ~g
    return out


def simulate_scribbles(
    gt,
    pred=None,
    *,
    rng: np.random.Generator | int | None = None,
    n_foreground: tuple[int, int] = (1, 3),
    n_background: tuple[int, int] = (0, 1),
    **kwargs,
) -> tuple[np.ndarray, np.ndarray]:
    """Foreground and background scribble masks as in Hallitschke et al. §3.1.

    Draws ``n_foreground`` (default 1-3) foreground and ``n_background``
    (default 0-1) background ellipsoids with `ellipsoid_scribble`.

    Parameters
    ----------
    gt, pred, rng : as in `ellipsoid_scribble`
    n_foreground, n_background : (low, high), inclusive
    **kwargs : passed to `ellipsoid_scribble` (alpha, beta, min_axis, restrict)

    Returns
    -------
    (foreground, background) : two bool ndarrays of the shape of `gt`
    """
    gen = as_rng(rng)
    g = check_spatial(gt, "gt")
    counts = []
    for name, rg in (("n_foreground", n_foreground), ("n_background", n_background)):
        try:
            lo, hi = (int(v) for v in rg)
        except (TypeError, ValueError):
            raise InvalidInputError(f"{name} must be a (low, high) pair, got {rg!r}") from None
        if not 0 <= lo <= hi:
            raise InvalidInputError(f"{name} must have 0 <= low <= high, got {rg!r}")
        counts.append(int(gen.integers(lo, hi + 1)))
    fg = np.zeros(g.shape, dtype=bool)
    bg = np.zeros(g.shape, dtype=bool)
    for _ in range(counts[0]):
        fg |= ellipsoid_scribble(g, pred, foreground=True, rng=gen, **kwargs)
    for _ in range(counts[1]):
        bg |= ellipsoid_scribble(g, pred, foreground=False, rng=gen, **kwargs)
    return fg, bg


def _check_constants(alpha, beta, min_axis) -> tuple[float, float, float]:
    vals = {"alpha": alpha, "beta": beta, "min_axis": min_axis}
    for name, v in vals.items():
        if (
            isinstance(v, bool)
            or not isinstance(v, (int, float, np.integer, np.floating))
            or not np.isfinite(v)
        ):
            raise InvalidInputError(f"{name} must be a finite number, got {v!r}")
    if alpha < 0:
        raise InvalidInputError(f"alpha must be >= 0, got {alpha!r}")
    if beta < 1:
        raise InvalidInputError(f"beta must be >= 1 (the box is enlarged), got {beta!r}")
    if min_axis <= 0:
        raise InvalidInputError(f"min_axis must be > 0 voxels, got {min_axis!r}")
    return float(alpha), float(beta), float(min_axis)


def _margin_ring(g: np.ndarray, beta: float) -> np.ndarray:
    """Voxels of the beta-scaled object box (clipped to the image) outside the object box."""
    nz = np.nonzero(g)
    lo = np.array([a.min() for a in nz])
    hi = np.array([a.max() for a in nz]) + 1
    # grow by at least one voxel per side so the ring exists unless the image ends
    grow = np.maximum(1, np.ceil((beta - 1.0) * (hi - lo) / 2.0)).astype(np.int64)
    big_lo = np.maximum(lo - grow, 0)
    big_hi = np.minimum(hi + grow, g.shape)
    ring = np.zeros(g.shape, dtype=bool)
    ring[tuple(slice(a, b) for a, b in zip(big_lo, big_hi))] = True
    ring[tuple(slice(a, b) for a, b in zip(lo, hi))] = False
    return ring


def _ellipsoid(shape: tuple[int, ...], centre: np.ndarray, axes: np.ndarray) -> np.ndarray:
    """Bool mask of sum(((x - centre) / axes)^2) <= 1, computed in its bounding window."""
    out = np.zeros(shape, dtype=bool)
    ext = np.floor(axes).astype(np.int64)
    lo = np.maximum(centre - ext, 0)
    hi = np.minimum(centre + ext + 1, shape)
    grids = np.ogrid[tuple(slice(a, b) for a, b in zip(lo, hi))]
    q = sum(((gr - c) / a) ** 2 for gr, c, a in zip(grids, centre, axes))
    out[tuple(slice(a, b) for a, b in zip(lo, hi))] = q <= 1.0
    return out
