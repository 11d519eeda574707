"""Cue maps: user points turned into one float32 input channel in [0, 1] (1 at the points).

Lives here: `cue_map` (dispatch by name over `CUE_KINDS`) and one function per kind: EGD (ours),
truncated geodesic and Euclidean maps, Gaussian, disk, bounding-box-only and adaptive Gaussian.
Must not know about networks, crops or files: an image and points in, a map of the same grid out.

Lengths. Every cue measures length in voxels of the finest axis: ``physical / min(spacing)``.
Cues are computed on the network grid, whose physical voxel size changes from crop to crop;
this keeps a cue's footprint on the grid (and EGD parameter-free) whatever the crop's size in mm,
while still honouring anisotropic spacing. `sigma`, `radius` and `tau` are in these units.
"""

from __future__ import annotations

import inspect
import math

import numpy as np
from scipy import ndimage as ndi

from ._checks import SpacingLike, as_points, as_spacing
from .errors import InvalidInputError
from .geodesic import _check_image, geodesic_distance

__all__ = [
    "CUE_KINDS",
    "cue_map",
    "egd_map",
    "geodesic_map",
    "euclidean_map",
    "gaussian_map",
    "disk_map",
    "bbox_map",
    "adaptive_gaussian_map",
    "DEFAULT_GAUSSIAN_SIGMA",
    "DEFAULT_RADIUS",
    "DEFAULT_THETA",
    "ADAPTIVE_A",
    "ADAPTIVE_B",
]

#: Names accepted by `cue_map`.
CUE_KINDS: tuple[str, ...] = (
    "egd",
    "geodesic",
    "euclidean",
    "gaussian",
    "disk",
    "bbox",
    "adaptive_gaussian",
)

#: Width of the Gaussian cue, `gaussian_map`'s `sigma` (voxels of the finest axis). Marinov et
#: al. 2023 found radii <= 5 best; 5 is their best value for the distance-based signals. Not
#: the graph cut's `sigma` (`midseg.Session`; docs/decisions.md, "Names").
DEFAULT_GAUSSIAN_SIGMA: float = 5.0
#: Disk radius (voxels of the finest axis), same source.
DEFAULT_RADIUS: float = 5.0
#: Truncation of the distance maps when `tau` is not given: the largest `theta` fraction of the
#: distances of the image is cut (tau = the (1 - theta) quantile); 10 % is Marinov et al.'s best.
DEFAULT_THETA: float = 0.1
#: Adaptive Gaussian (Marinov et al. 2023, Eq. 6): largest radius `a` and decay `b`.
ADAPTIVE_A: float = 13.0
ADAPTIVE_B: float = 0.15


# ----------------------------------------------------------------------------- helpers


def _prepare(image, points, spacing, channel_axis):
    """Validated (C, *spatial) float32 image, (N, ndim) points, relative spacing (min 1)."""
    chans = _check_image(image, channel_axis)
    shape = chans.shape[1:]
    pts = as_points(points, shape, name="points")
    sp = as_spacing(spacing, len(shape))
    return chans, pts, sp / sp.min()


def _point_mask(pts: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[tuple(pts.T)] = True
    return mask


def _edt(pts: np.ndarray, shape: tuple[int, ...], rel_sp: np.ndarray) -> np.ndarray:
    """Exact Euclidean distance (float64) from every voxel to the nearest point."""
    return ndi.distance_transform_edt(~_point_mask(pts, shape), sampling=rel_sp)


def _positive(value, name: str, *, allow_zero: bool = False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{name} must be a number, got {value!r}") from None
    ok = v >= 0 if allow_zero else v > 0
    if not (math.isfinite(v) and ok):
        need = "finite and >= 0" if allow_zero else "finite and > 0"
        raise InvalidInputError(f"{name} must be {need}, got {value!r}")
    return v


def _truncated(dist: np.ndarray, tau, theta) -> np.ndarray:
    """1 - min(D, tau) / tau as float32; tau None: the (1 - theta) quantile of D."""
    if tau is None:
        th = _positive(theta, "theta", allow_zero=True)
        if th >= 1:
            raise InvalidInputError(f"theta must be in [0, 1), got {theta!r}")
        t = float(np.quantile(dist, 1.0 - th))
    else:
        t = _positive(tau, "tau")
    if t <= 0:  # (1 - theta) of the voxels are points: only they are highlighted
        return (dist <= 0).astype(np.float32)
    return (1.0 - np.minimum(dist, t) / t).astype(np.float32)


def _sq_dist_to(point: np.ndarray, shape: tuple[int, ...], rel_sp: np.ndarray) -> np.ndarray:
    """Squared distance (float64) from every voxel to one point, by broadcasting 1D terms."""
    out = np.zeros((1,) * len(shape))
    for ax, (n, c, s) in enumerate(zip(shape, point, rel_sp)):
        d = ((np.arange(n) - c) * s) ** 2
        out = out + d.reshape((1,) * ax + (n,) + (1,) * (len(shape) - ax - 1))
    return out


# ----------------------------------------------------------------------------- cue kinds


def egd_map(
    image, points, *, spacing: SpacingLike | None = None, channel_axis: int | None = None
) -> np.ndarray:
    """Exponentialised geodesic distance (MIDeepSeg Eq. 1): ``exp(-D_geo)``, parameter-free.

    Parameters
    ----------
    image : (Y, X) or (Z, Y, X) ndarray, or channel-first with `channel_axis`
        Normalised intensities (the pipeline passes a z-scored crop); the geodesic distance
        is computed on them as given.
    points : (N, ndim) int array or sequence of index tuples (array order)
    spacing : sequence of float, optional
        Voxel size in array order; only its ratios matter (see the module docstring).
    channel_axis : int, optional
        Channel axis of a multi-channel image (intensity change = norm over channels).

    Returns
    -------
    (Y, X) or (Z, Y, X) ndarray of float32
        In (0, 1]; exactly 1 at the points, decreasing with geodesic distance
        (`midseg.geodesic.geodesic_distance` with ``lamb=1``, 2 iterations).

    Raises
    ------
    InvalidInputError
        Bad image (shape, NaN), no points or points outside the image, bad spacing.
    """
    chans, pts, rel = _prepare(image, points, spacing, channel_axis)
    d = geodesic_distance(chans, pts, spacing=rel, lamb=1.0, channel_axis=0)
    return np.exp(-d, dtype=np.float32)


def geodesic_map(
    image,
    points,
    *,
    spacing: SpacingLike | None = None,
    channel_axis: int | None = None,
    tau: float | None = None,
    theta: float = DEFAULT_THETA,
    lamb: float = 1.0,
) -> np.ndarray:
    """Truncated geodesic distance, inverted: ``1 - min(D, tau) / tau``.

    Parameters
    ----------
    image, points, spacing, channel_axis
        As for `egd_map`.
    tau : float, optional
        Truncation distance (geodesic units: intensity x voxels of the finest axis at
        ``lamb=1``). None (default): the (1 - `theta`) quantile of the image's distances,
        i.e. the largest `theta` fraction is cut, computed per image (Marinov et al. 2023, H2).
    theta : float
        Fraction in [0, 1) used when `tau` is None (default 0.1).
    lamb : float
        Geodesic/Euclidean blend of `midseg.geodesic.geodesic_distance` (default 1, pure
        geodesic).

    Returns
    -------
    ndarray of float32, spatial shape, in [0, 1]; 1 at the points, 0 beyond `tau`.
    """
    chans, pts, rel = _prepare(image, points, spacing, channel_axis)
    d = geodesic_distance(chans, pts, spacing=rel, lamb=lamb, channel_axis=0)
    return _truncated(d.astype(np.float64), tau, theta)


def euclidean_map(
    image,
    points,
    *,
    spacing: SpacingLike | None = None,
    channel_axis: int | None = None,
    tau: float | None = None,
    theta: float = DEFAULT_THETA,
) -> np.ndarray:
    """Truncated exact Euclidean distance, inverted: ``1 - min(D, tau) / tau``.

    Parameters
    ----------
    image : ndarray
        Only its spatial shape is used (validated as for `egd_map`).
    points, spacing, channel_axis
        As for `egd_map`. Distances are exact (``scipy.ndimage.distance_transform_edt``),
        anisotropy honoured, in voxels of the finest axis.
    tau : float, optional
        Truncation distance; None: the per-image (1 - `theta`) quantile (see `geodesic_map`).
    theta : float
        Fraction in [0, 1) used when `tau` is None (default 0.1).

    Returns
    -------
    ndarray of float32, spatial shape, in [0, 1]; 1 at the points, 0 beyond `tau`.
    """
    chans, pts, rel = _prepare(image, points, spacing, channel_axis)
    return _truncated(_edt(pts, chans.shape[1:], rel), tau, theta)


def gaussian_map(
    image,
    points,
    *,
    spacing: SpacingLike | None = None,
    channel_axis: int | None = None,
    sigma: float = DEFAULT_GAUSSIAN_SIGMA,
) -> np.ndarray:
    """Gaussian heatmap, the maximum over points of ``exp(-d^2 / (2 sigma^2))``.

    Parameters
    ----------
    image, points, spacing, channel_axis
        As for `euclidean_map` (the image gives only the shape).
    sigma : float
        Standard deviation in voxels of the finest axis (default 5).

    Returns
    -------
    ndarray of float32, spatial shape, in (0, 1]; 1 at the points.
    """
    chans, pts, rel = _prepare(image, points, spacing, channel_axis)
    s = _positive(sigma, "sigma")
    d = _edt(pts, chans.shape[1:], rel)
    return np.exp(-(d * d) / (2.0 * s * s)).astype(np.float32)


def disk_map(
    image,
    points,
    *,
    spacing: SpacingLike | None = None,
    channel_axis: int | None = None,
    radius: float = DEFAULT_RADIUS,
) -> np.ndarray:
    """Binary disks (balls in 3D) of `radius` around the points (Marinov et al. Eq. 1).

    Parameters
    ----------
    image, points, spacing, channel_axis
        As for `euclidean_map` (the image gives only the shape).
    radius : float
        In voxels of the finest axis, >= 0 (0: the point voxels only; default 5).

    Returns
    -------
    ndarray of float32, spatial shape: 1 within `radius` of a point, 0 elsewhere.
    """
    chans, pts, rel = _prepare(image, points, spacing, channel_axis)
    r = _positive(radius, "radius", allow_zero=True)
    return (_edt(pts, chans.shape[1:], rel) <= r).astype(np.float32)


def bbox_map(
    image, points, *, spacing: SpacingLike | None = None, channel_axis: int | None = None
) -> np.ndarray:
    """The "box only" baseline: 1 inside the tight bounding box of the points, 0 outside.

    Parameters
    ----------
    image, points, spacing, channel_axis
        As for `euclidean_map` (the image gives only the shape; spacing is not used).

    Returns
    -------
    ndarray of float32, spatial shape: 1 on ``min(points) <= index <= max(points)`` per axis.
    """
    chans, pts, _ = _prepare(image, points, spacing, channel_axis)
    out = np.zeros(chans.shape[1:], dtype=np.float32)
    out[tuple(slice(lo, hi + 1) for lo, hi in zip(pts.min(axis=0), pts.max(axis=0)))] = 1.0
    return out


def adaptive_gaussian_map(
    image,
    points,
    *,
    spacing: SpacingLike | None = None,
    channel_axis: int | None = None,
    a: float = ADAPTIVE_A,
    b: float = ADAPTIVE_B,
) -> np.ndarray:
    """Adaptive Gaussian heatmaps (Marinov et al. 2023, "Guiding the Guidance", Eq. 6).

    Each point ``c_i`` gets its own radius ``sigma_i = floor(a * exp(-b * x_i))``, where
    ``x_i`` is the mean geodesic distance to the point set over the 3x3 (2D) or 3x3x3 (3D)
    window around ``c_i`` (clipped at the image border): large Gaussians in homogeneous
    regions, small ones near edges. The map is the maximum over points of
    ``exp(-d_i^2 / (2 sigma_i^2))``; a point with ``sigma_i = 0`` marks its voxel only.

    Parameters
    ----------
    image, points, spacing, channel_axis
        As for `egd_map`; the geodesic distance is ``lamb=1`` on the image as given.
    a : float
        Largest radius, in voxels of the finest axis (paper: 13).
    b : float
        Decay per unit of mean geodesic distance (paper: 0.15). ``x_i`` is in intensity x
        voxel units, so `b` depends on the intensity normalisation: on z-scored crops
        ``x_i`` is small in flat regions (radius near `a`) and grows with the contrast of
        edges next to the point.

    Returns
    -------
    ndarray of float32, spatial shape, in [0, 1]; 1 at the points.

    Notes
    -----
    Our reading of the paper: "9-neighborhood" is the 3x3 window around the click in 2D,
    and its 3x3x3 analogue in 3D; GDT is computed from all clicks at once (Eq. 6 writes
    ``GDT(v, C)``); Eq. 2's exponent ``||v - c||`` is read as the squared distance of a
    Gaussian (the text calls the signal a Gaussian filter). The authors' released code
    differs from the paper (it min-max normalises the GDT, averages it over an 18-voxel
    window and maps it to a radius through a fixed lookup table); we implement the paper.
    """
    chans, pts, rel = _prepare(image, points, spacing, channel_axis)
    a_ = _positive(a, "a")
    b_ = _positive(b, "b", allow_zero=True)
    shape = chans.shape[1:]
    d = geodesic_distance(chans, pts, spacing=rel, lamb=1.0, channel_axis=0)
    out = np.zeros(shape, dtype=np.float64)
    for p in pts:
        window = tuple(slice(max(c - 1, 0), min(c + 2, n)) for c, n in zip(p, shape))
        x = float(np.mean(d[window], dtype=np.float64))
        # + 1e-4: in a flat region x is only the EPS tie-breaker of the step cost (~1e-5),
        # which must not floor the full radius a down to a - 1
        sigma = math.floor(a_ * math.exp(-b_ * x) + 1e-4)
        if sigma <= 0:
            out[tuple(p)] = 1.0
            continue
        np.maximum(out, np.exp(-_sq_dist_to(p, shape, rel) / (2.0 * sigma * sigma)), out=out)
    return out.astype(np.float32)


# ----------------------------------------------------------------------------- dispatch

_FUNCTIONS = {
    "egd": egd_map,
    "geodesic": geodesic_map,
    "euclidean": euclidean_map,
    "gaussian": gaussian_map,
    "disk": disk_map,
    "bbox": bbox_map,
    "adaptive_gaussian": adaptive_gaussian_map,
}
_COMMON = {"image", "points", "spacing", "channel_axis"}


def cue_map(
    kind: str,
    image,
    points,
    *,
    spacing: SpacingLike | None = None,
    channel_axis: int | None = None,
    **params,
) -> np.ndarray:
    """Cue map of `kind` for the points: dispatches to the ``<kind>_map`` function.

    Parameters
    ----------
    kind : str
        One of `CUE_KINDS`: "egd", "geodesic", "euclidean", "gaussian", "disk", "bbox",
        "adaptive_gaussian".
    image : (Y, X) or (Z, Y, X) ndarray, or channel-first with `channel_axis`
    points : (N, ndim) int array or sequence of index tuples (array order)
    spacing : sequence of float, optional
        Voxel size in array order (only its ratios matter; see the module docstring).
    channel_axis : int, optional
    **params
        Parameters of that kind (`sigma` for "gaussian", `radius` for "disk", `tau` / `theta`
        for "geodesic" and "euclidean", ...); see the per-kind functions.

    Returns
    -------
    ndarray of float32, spatial shape, values in [0, 1], 1 at the points.

    Raises
    ------
    InvalidInputError
        Unknown kind (the message lists `CUE_KINDS`), a parameter the kind does not take,
        or bad input.
    """
    fn = _FUNCTIONS.get(kind) if isinstance(kind, str) else None
    if fn is None:
        raise InvalidInputError(
            f"unknown cue kind {kind!r}; expected one of {', '.join(CUE_KINDS)}"
        )
    accepted = [n for n in inspect.signature(fn).parameters if n not in _COMMON]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise InvalidInputError(
            f"cue kind {kind!r} takes the parameters "
            f"{', '.join(accepted) if accepted else '(none)'}; got unexpected "
            f"{', '.join(unknown)}"
        )
    return fn(image, points, spacing=spacing, channel_axis=channel_axis, **params)
