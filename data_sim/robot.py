"""The robot user: one corrective click from a ground truth and a prediction.

Lives here: `Click` and `corrective_click` (deepest-point and Sakinis et al. 2019 sampling).
Pure numpy/scipy on arrays: must not read files or import torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from midseg._checks import SpacingLike, as_rng, as_spacing, check_spatial
from midseg.errors import InvalidInputError

__all__ = ["Click", "corrective_click", "CLICK_MODES"]

#: Names accepted by `corrective_click(mode=...)`.
CLICK_MODES: tuple[str, ...] = ("deepest", "probabilistic")


@dataclass(frozen=True)
class Click:
    """One simulated click.

    Parameters
    ----------
    point : tuple of int
        Voxel index in array order (``(y, x)`` or ``(z, y, x)``).
    foreground : bool
        True for a foreground click (in a false negative), False for a
        background click (in a false positive).
    """

    point: tuple[int, ...]
    foreground: bool


def _error_depth(region: np.ndarray, sp: np.ndarray) -> np.ndarray:
    """Euclidean distance (physical units) of each region voxel to the nearest
    non-region voxel, the image border counting as non-region; 0 outside."""
    out = np.zeros(region.shape, dtype=np.float64)
    nz = np.nonzero(region)
    if nz[0].size == 0:
        return out
    box = tuple(slice(int(a.min()), int(a.max()) + 1) for a in nz)
    out[box] = ndi.distance_transform_edt(np.pad(region[box], 1), sampling=sp)[
        (slice(1, -1),) * region.ndim
    ]
    return out


def _deepest_voxel(depth: np.ndarray) -> tuple[int, ...]:
    """Argmax of `depth`; among exact ties the one nearest their centroid, then C order."""
    top = np.argwhere(depth == depth.max())
    if len(top) > 1:
        d2 = ((top - top.mean(axis=0)) ** 2).sum(axis=1)
        top = top[[int(np.argmin(d2))]]
    return tuple(int(v) for v in top[0])


def corrective_click(
    gt,
    pred,
    *,
    rng: np.random.Generator | int | None = None,
    mode: str = "deepest",
    spacing: SpacingLike | None = None,
) -> Click | None:
    """Simulate the next corrective click of a user who knows the ground truth.

    Parameters
    ----------
    gt, pred : (Y, X) or (Z, Y, X) ndarray
        Ground truth and current segmentation, same shape; non-zero is foreground.
    rng : numpy Generator, int seed or None
        Only used by ``mode="probabilistic"``.
    mode : {"deepest", "probabilistic"}
        ``"deepest"``: the voxel deepest inside an error region (largest
        distance to the region's border over false negatives FN = gt & ~pred
        and false positives FP = pred & ~gt); a foreground click when the
        deepest FN voxel is deeper than the deepest FP voxel, a background
        click when shallower; on a tie the type with more error voxels wins,
        then foreground. Deterministic. ``"probabilistic"``: Sakinis et al.
        (2019): a background click when FP has more voxels than FN, else a
        foreground click, placed at a voxel of that error type sampled with
        probability proportional to ``exp(D) - 1``, D its distance to the
        region's border.
    spacing : sequence of float, optional
        Voxel size in array order; distances are in these units (voxels by default).

    Returns
    -------
    Click or None
        None when `pred` equals `gt` (no error to correct). Otherwise the
        click lies in FN when ``foreground`` is True and in FP when False.

    Raises
    ------
    InvalidInputError
        Shapes differ, not 2D/3D, an unknown mode.

    Notes
    -----
    Distances are Euclidean distance transforms of the error masks, where the
    image border counts as region border: a user clicks well inside an error,
    not on the edge of the image. Sampling weights are computed as
    ``exp(D - Dmax) * (1 - exp(-D))``, equal to ``(exp(D) - 1) / exp(Dmax)``
    without overflow for any D.

    References
    ----------
    Sakinis et al., Interactive segmentation of medical images through fully
    convolutional neural networks, arXiv:1903.08205, 2019, §III-B.
    """
    g = check_spatial(gt, "gt") != 0
    p = check_spatial(pred, "pred") != 0
    if g.shape != p.shape:
        raise InvalidInputError(
            f"gt and pred must have the same shape, got {g.shape} and {p.shape}"
        )
    if mode not in CLICK_MODES:
        raise InvalidInputError(f"mode must be one of {CLICK_MODES}, got {mode!r}")
    sp = as_spacing(spacing, g.ndim)
    gen = as_rng(rng)
    fn = g & ~p
    fp = p & ~g
    n_fn, n_fp = int(fn.sum()), int(fp.sum())
    if n_fn == 0 and n_fp == 0:
        return None

    if mode == "deepest":
        d_fn = _error_depth(fn, sp)
        d_fp = _error_depth(fp, sp)
        m_fn, m_fp = d_fn.max(), d_fp.max()
        if m_fn != m_fp:
            foreground = bool(m_fn > m_fp)
        else:
            foreground = n_fn >= n_fp
        return Click(_deepest_voxel(d_fn if foreground else d_fp), foreground)

    foreground = not n_fp > n_fn
    depth = _error_depth(fn if foreground else fp, sp)
    idx = np.flatnonzero(depth)  # exactly the region's voxels (depth > 0 there)
    d = depth.reshape(-1)[idx]
    # weights for voxels > 600 units shallower than the deepest are < 1e-260
    # either way; the floor only keeps exp() clear of underflow
    w = np.exp(np.maximum(d - d.max(), -600.0)) * -np.expm1(-d)
    flat = int(idx[gen.choice(idx.size, p=w / w.sum())])
    return Click(tuple(int(v) for v in np.unravel_index(flat, g.shape)), foreground)
