"""Simulated interior margin points from a ground-truth mask (MIDeepSeg §2.1).

Lives here: `interior_margin_points` and its defaults (inward shift, extreme jitter).
Pure numpy/scipy on arrays: must not read files or import torch.
"""

from __future__ import annotations


import numpy as np
from scipy import ndimage as ndi

from midseg._checks import SpacingLike, as_rng, as_spacing, check_spatial
from midseg.crop import DEFAULT_MARGIN
from midseg.errors import InvalidInputError

__all__ = ["interior_margin_points", "DEFAULT_INWARD", "DEFAULT_EXTREME_JITTER", "DEFAULT_N_RANDOM"]

#: Largest inward move of a simulated point, in voxels along any axis.
DEFAULT_INWARD: int = 3
#: Extreme-adjacent points are boundary voxels at most this many voxels from
#: the object's extreme coordinate along their axis.
DEFAULT_EXTREME_JITTER: int = 1
#: Range (inclusive) of the number of extra random boundary points.
DEFAULT_N_RANDOM: tuple[int, int] = (0, 5)

# The coverage guarantee needs margin >= inward + jitter on every axis.
assert DEFAULT_INWARD + DEFAULT_EXTREME_JITTER <= DEFAULT_MARGIN


def interior_margin_points(
    mask,
    *,
    rng: np.random.Generator | int | None = None,
    spacing: SpacingLike | None = None,
    inward: int | tuple[int, int] = (1, DEFAULT_INWARD),
    extreme_jitter: int = DEFAULT_EXTREME_JITTER,
    n_random: int | tuple[int, int] = DEFAULT_N_RANDOM,
) -> np.ndarray:
    """Simulate a user's interior margin points for the object in `mask`.

    Follows MIDeepSeg §2.1: (1) for every axis and side, one boundary voxel
    near the object's extreme point (a voxel already chosen for another
    extreme is reused when it qualifies, so 2D objects get 2-4 and 3D objects
    3-6 such points, usually 4 and 6), plus ``n`` random other boundary voxels,
    ``n`` uniform in `n_random`; (2) every point is moved towards the inside
    of the object by a random 1..`inward` voxels.

    Parameters
    ----------
    mask : (Y, X) or (Z, Y, X) ndarray
        Ground truth; every non-zero voxel is the object (several connected
        components are one object: the points may fall on any of them and the
        relaxed box covers all of them).
    rng : numpy Generator, int seed or None
    spacing : sequence of float, optional
        Voxel size in array order. Only used to measure depth inside the
        object (where "inward" points) and to make the move neighbourhood an
        ellipsoid in physical units; shifts stay bounded in voxels.
    inward : int or (low, high), default (1, `DEFAULT_INWARD`)
        Inward move in voxels, drawn uniformly per point from ``low..high``;
        an int ``k`` means exactly ``k``. 0 keeps points on the boundary.
    extreme_jitter : int, default `DEFAULT_EXTREME_JITTER`
        An extreme-adjacent point is a boundary voxel whose coordinate is
        within this many voxels of the object's extreme on that axis.
    n_random : int or (low, high), default (0, 5)
        Number of extra random boundary points.

    Returns
    -------
    (N, ndim) ndarray of int64
        Distinct voxel indices in array order, all inside the object
        (``mask[tuple(p)] != 0``); the extreme-adjacent points come first.

    Raises
    ------
    InvalidInputError
        An empty mask, a mask that is not 2D/3D, bad ranges.

    Notes
    -----
    The move: a point ``p`` with drawn shift ``s`` goes to the voxel of the
    object, within the ellipsoid of radius ``s * min(spacing)`` (physical
    units) around ``p``, that lies deepest inside the object (Euclidean
    distance to the background, the image border counting as background);
    ties go to the voxel nearest to ``p``, then the first in C order. The
    point never leaves the object (thin objects keep it on their medial
    axis) and no coordinate changes by more than ``s`` voxels.

    Guarantee: each extreme of the object is within ``extreme_jitter + high``
    voxels of a returned point along its axis, so
    ``midseg.crop.relaxed_bbox(points, mask.shape, margin=m)`` contains every
    object voxel for any ``m >= extreme_jitter + high`` (4 with the defaults;
    ``DEFAULT_MARGIN`` is 8).

    References
    ----------
    Luo et al., MIDeepSeg, Medical Image Analysis 2021, §2.1.
    """
    m = check_spatial(mask, "mask") != 0
    ndim = m.ndim
    gen = as_rng(rng)
    sp = as_spacing(spacing, ndim)
    lo_in, hi_in = _as_range(inward, "inward")
    jitter = _as_count(extreme_jitter, "extreme_jitter")
    lo_n, hi_n = _as_range(n_random, "n_random")
    if not m.any():
        raise InvalidInputError("mask is empty; expected at least one object voxel")

    # Work on the object's box plus a background ring: the padding makes the
    # image border count as background for the depth map and the boundary.
    nz = np.nonzero(m)
    lo = np.array([a.min() for a in nz])
    hi = np.array([a.max() for a in nz]) + 1
    sub = np.pad(m[tuple(slice(a, b) for a, b in zip(lo, hi))], 1)
    depth = ndi.distance_transform_edt(sub, sampling=sp)
    boundary = sub & ~ndi.binary_erosion(sub, ndi.generate_binary_structure(ndim, 1))
    bpts = np.argwhere(boundary)  # padded-sub coordinates
    bmin = bpts.min(axis=0)
    bmax = bpts.max(axis=0)

    chosen: list[int] = []  # rows of bpts
    sides = [(k, side) for k in range(ndim) for side in (0, 1)]
    for i in gen.permutation(len(sides)):
        k, side = sides[i]
        ok = (bpts[:, k] <= bmin[k] + jitter) if side == 0 else (bpts[:, k] >= bmax[k] - jitter)
        if chosen and np.any(ok[chosen]):
            continue  # an earlier point serves this extreme too
        cand = np.flatnonzero(ok)
        chosen.append(int(cand[gen.integers(len(cand))]))
    n_extra = int(gen.integers(lo_n, hi_n + 1))
    rest = np.setdiff1d(np.arange(len(bpts)), chosen)
    if n_extra and rest.size:
        chosen.extend(int(v) for v in gen.choice(rest, size=min(n_extra, rest.size), replace=False))

    out = []
    for row in chosen:
        shift = int(gen.integers(lo_in, hi_in + 1))
        out.append(_move_inward(bpts[row], shift, sub, depth, sp))
    pts = np.asarray(out, dtype=np.int64) - 1 + lo  # back to image coordinates
    _, first = np.unique(pts, axis=0, return_index=True)
    return pts[np.sort(first)]


def _move_inward(
    p: np.ndarray, shift: int, sub: np.ndarray, depth: np.ndarray, sp: np.ndarray
) -> np.ndarray:
    """Deepest object voxel within `shift` voxels (physical ellipsoid) of p."""
    if shift == 0:
        return p
    r = shift * sp.min()
    rad = np.floor(r / sp + 1e-9).astype(np.int64)  # <= shift voxels per axis
    lo = np.maximum(p - rad, 0)
    hi = np.minimum(p + rad + 1, sub.shape)
    win = tuple(slice(a, b) for a, b in zip(lo, hi))
    offs = np.indices(tuple(hi - lo)).reshape(len(p), -1).T + lo - p
    d2 = ((offs * sp) ** 2).sum(axis=1)
    ok = (d2 <= r * r + 1e-9) & sub[win].reshape(-1)
    dep = np.where(ok, depth[win].reshape(-1), -np.inf)
    best = np.flatnonzero(dep == dep.max())
    best = best[np.argmin(d2[best])]  # argmin takes the first (C order) tie
    return p + offs[best]


def _as_count(v, name: str) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
        raise InvalidInputError(f"{name} must be a non-negative integer, got {v!r}")
    return int(v)


def _as_range(v, name: str) -> tuple[int, int]:
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        lo = hi = v
    else:
        try:
            lo, hi = v
        except (TypeError, ValueError):
            raise InvalidInputError(
                f"{name} must be an integer or a (low, high) pair, got {v!r}"
            ) from None
    lo, hi = _as_count(lo, name), _as_count(hi, name)
    if lo > hi:
        raise InvalidInputError(f"{name} must have low <= high, got {v!r}")
    return lo, hi
