"""Segmentation metrics in physical units: Dice, ASSD, HD95; click metrics (NoC, AUC).

Masks are 2D (Y, X) or 3D (Z, Y, X) arrays (nonzero = foreground); spacing
is in the same axis order. Empty masks have a fixed, documented answer.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage

from ._checks import SpacingLike, as_spacing
from .errors import InvalidInputError

__all__ = [
    "dice",
    "assd",
    "hd95",
    "surface_distances",
    "clicks_to_reach",
    "noc",
    "auc",
    "consistent_improvement",
]


def _pair(a, b) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a)
    b = np.asarray(b)
    if a.shape != b.shape:
        raise InvalidInputError(
            f"prediction and reference must have the same shape, got {a.shape} and {b.shape}"
        )
    if a.ndim not in (2, 3):
        raise InvalidInputError(f"masks must be 2D or 3D, got shape {a.shape}")
    return a != 0, b != 0


def dice(pred: np.ndarray, ref: np.ndarray) -> float:
    """Dice similarity coefficient 2|A∩B| / (|A| + |B|).

    Parameters
    ----------
    pred, ref : (Y, X) or (Z, Y, X) ndarray
        Binary masks (nonzero = foreground) of the same shape.

    Returns
    -------
    float
        In [0, 1]. Both masks empty: 1.0 (perfect agreement on "nothing").
        Exactly one empty: 0.0.
    """
    a, b = _pair(pred, ref)
    total = int(a.sum()) + int(b.sum())
    if total == 0:
        return 1.0
    return 2.0 * int(np.logical_and(a, b).sum()) / total


def _surface(mask: np.ndarray) -> np.ndarray:
    # Surface voxels: foreground voxels with a background face-neighbour.
    # Outside the image counts as background, so objects touching the border
    # have a surface there.
    structure = ndimage.generate_binary_structure(mask.ndim, 1)
    eroded = ndimage.binary_erosion(mask, structure=structure, border_value=0)
    return mask & ~eroded


def surface_distances(
    pred: np.ndarray, ref: np.ndarray, spacing: SpacingLike | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Distances (physical units) from each surface voxel of one mask to the other's surface.

    Returns
    -------
    d_pred_to_ref, d_ref_to_pred : 1D ndarray of float64
        For every surface voxel of ``pred`` the distance to the nearest surface
        voxel of ``ref``, and the reverse. Both masks must be non-empty.
    """
    a, b = _pair(pred, ref)
    if not a.any() or not b.any():
        raise InvalidInputError("surface distances need two non-empty masks")
    sp = as_spacing(spacing, a.ndim)
    sa, sb = _surface(a), _surface(b)
    dt_b = ndimage.distance_transform_edt(~sb, sampling=sp)
    dt_a = ndimage.distance_transform_edt(~sa, sampling=sp)
    return dt_b[sa], dt_a[sb]


def _empty_case(a: np.ndarray, b: np.ndarray) -> float | None:
    ea, eb = not a.any(), not b.any()
    if ea and eb:
        return 0.0
    if ea or eb:
        return float("inf")
    return None


def assd(pred: np.ndarray, ref: np.ndarray, spacing: SpacingLike | None = None) -> float:
    """Average symmetric surface distance, in the units of ``spacing`` (mm).

    The mean of the two directed average surface distances,
    ``(mean(d(A→B)) + mean(d(B→A))) / 2`` (the MedPy definition).

    Returns
    -------
    float
        Both masks empty: 0.0. Exactly one empty: ``inf``.
    """
    a, b = _pair(pred, ref)
    special = _empty_case(a, b)
    if special is not None:
        return special
    dab, dba = surface_distances(a, b, spacing)
    return float((dab.mean() + dba.mean()) / 2.0)


def hd95(pred: np.ndarray, ref: np.ndarray, spacing: SpacingLike | None = None) -> float:
    """95th-percentile Hausdorff distance, in the units of ``spacing`` (mm).

    ``max(P95(d(A→B)), P95(d(B→A)))`` over surface voxels (the MedPy
    definition; percentiles by linear interpolation).

    Returns
    -------
    float
        Both masks empty: 0.0. Exactly one empty: ``inf``.
    """
    a, b = _pair(pred, ref)
    special = _empty_case(a, b)
    if special is not None:
        return special
    dab, dba = surface_distances(a, b, spacing)
    return float(max(np.percentile(dab, 95), np.percentile(dba, 95)))


def clicks_to_reach(dices: Sequence[float], target: float, *, cap: int = 20) -> int:
    """Number of clicks (NoC) needed to reach a Dice of at least ``target``.

    Parameters
    ----------
    dices : sequence of float
        Dice after each click: ``dices[0]`` after stage 1 (zero corrective
        clicks), ``dices[k]`` after ``k`` clicks.
    target : float
        Dice to reach, e.g. 0.85 or 0.9.
    cap : int
        Returned when the target is never reached (the usual NoC@x convention).

    Returns
    -------
    int
        The first ``k`` with ``dices[k] >= target``, else ``cap``.
    """
    if not 0.0 <= target <= 1.0:
        raise InvalidInputError(f"target Dice must be in [0, 1], got {target}")
    for k, d in enumerate(dices):
        if k > cap:
            break
        if d >= target:
            return k
    return cap


def noc(dices: Sequence[float], target: float, *, cap: int = 20) -> int:
    """Number of clicks (NoC@target) a Dice-per-click curve needs to reach `target`.

    Parameters
    ----------
    dices : sequence of float
        ``dices[0]`` after stage 1, ``dices[k]`` after ``k`` corrective clicks.
    target : float
        Dice to reach, in [0, 1] (0.85 for NoC@85, 0.9 for NoC@90).
    cap : int
        Returned when the target is never reached within the curve (or within
        `cap` clicks); the evaluation uses 20 (`midseg.evaluation.NOC_CAP`).

    Returns
    -------
    int
        The first ``k`` with ``dices[k] >= target``, else `cap`.

    Raises
    ------
    InvalidInputError
        `target` outside [0, 1].
    """
    return clicks_to_reach(list(dices), target, cap=cap)


def auc(dices: Sequence[float], clicks: int = 10) -> float:
    """Mean Dice over clicks 0..`clicks` (normalised area under the Dice-vs-clicks curve).

    Parameters
    ----------
    dices : sequence of float
        Dice after stage 1, then after each click. A sequence shorter than
        ``clicks + 1`` is padded with its last value (the robot stops clicking
        once the mask is perfect); a longer one is cut after ``clicks + 1`` values.
    clicks : int
        K, the corrective clicks the area covers (the evaluation's default, 10).

    Returns
    -------
    float
        The mean of the ``clicks + 1`` values, in [0, 1] for Dice values.

    Raises
    ------
    InvalidInputError
        `dices` is empty.
    """
    d = [float(v) for v in dices]
    if not d:
        raise InvalidInputError("auc needs at least one Dice value")
    d = (d + [d[-1]] * (clicks + 1 - len(d)))[: clicks + 1]
    return float(np.mean(d))


def consistent_improvement(
    dices: Sequence[float], made: Sequence[bool] | None = None
) -> tuple[int, int]:
    """Clicks that raised Dice, and clicks made, over ``dices[1:]``.

    Parameters
    ----------
    dices : sequence of float
        Dice after stage 1, then after each click.
    made : sequence of bool, optional
        ``made[k]`` tells whether click ``k + 1`` was actually made (a robot
        that found a perfect mask makes none); default: all were made.

    Returns
    -------
    (int, int)
        Clicks made that raised Dice strictly above the previous step, and the
        number of clicks made; their ratio is the consistent improvement.
    """
    d = [float(v) for v in dices]
    flags = list(made) if made is not None else [True] * (len(d) - 1)
    up = sum(1 for k in range(1, len(d)) if flags[k - 1] and d[k] > d[k - 1])
    return up, sum(bool(f) for f in flags[: len(d) - 1])
