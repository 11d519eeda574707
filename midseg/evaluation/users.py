"""Simulated users of the protocol: where the next click goes and which class it is.

- ``"robot"``: knows the ground truth and clicks the voxel deepest inside the largest error
  (`midseg.data_sim.corrective_click`, mode "deepest"); the default of `run_protocol`.
- ``"suggest"``: the suggestion-following user (issue 23). It clicks the method's top
  suggestion (`midseg.Session.suggest`, computed without ground truth) and labels it from
  the ground truth, as a person shown the spot would; a suggestion outside every error
  region is a click that agrees with the mask (wasted). No suggestion: no click.
- ``"random"``: clicks a voxel drawn uniformly from the stage-1 box (the method's
  ``box``), labelled from the ground truth; seeded per case and click.

`next_click` also says whether the click lies in an error region (the robot user's
definition: a voxel where the mask differs from the ground truth), the *precision* of a
suggestion, and how long the suggestion took.
"""

from __future__ import annotations

import time

import numpy as np

from ..errors import InvalidInputError

__all__ = ["USERS", "next_click"]

#: Names of the simulated users.
USERS = ("robot", "suggest", "random")


def next_click(
    user: str, gt: np.ndarray, mask: np.ndarray, method, *, spacing, rng: np.random.Generator
):
    """The next click of `user` on `method`'s current `mask`.

    Parameters
    ----------
    user : {"robot", "suggest", "random"}
    gt, mask : ndarray of uint8, same shape
        Ground truth and the method's current mask (0/1).
    method : `midseg.evaluation.methods.Method`
        ``"suggest"`` needs ``suggest(k)`` (a `SessionMethod`); ``"random"`` needs ``box``
        (the stage-1 crop box, `midseg.crop.Box`).
    spacing : sequence of float
        Voxel size in array order (mm).
    rng : numpy Generator
        Used by ``"random"`` only.

    Returns
    -------
    (Click or None, bool or None, float)
        The click (None: no click, the mask equals the ground truth or nothing is
        suggested), whether its voxel was an error of `mask` (None without a click), and
        the seconds the suggestion took (0 for the other users).

    Raises
    ------
    InvalidInputError
        An unknown user, or ``"suggest"`` for a method that cannot suggest.
    """
    from ..data_sim import Click, corrective_click

    if user not in USERS:
        raise InvalidInputError(f"user must be one of {USERS}, got {user!r}")
    if not (gt != mask).any():
        return None, None, 0.0
    if user == "robot":
        c = corrective_click(gt, mask, mode="deepest", spacing=spacing)
        return c, (None if c is None else True), 0.0
    seconds = 0.0
    if user == "suggest":
        if not hasattr(method, "suggest"):
            raise InvalidInputError(f"method {method.name!r} cannot suggest clicks (user suggest)")
        t0 = time.perf_counter()
        found = method.suggest(1)
        seconds = time.perf_counter() - t0
        if not found:
            return None, None, seconds
        p = tuple(int(v) for v in found[0].point)
    else:
        box = method.box
        p = tuple(int(rng.integers(a, b)) for a, b in zip(box.start, box.stop))
    return Click(p, bool(gt[p])), bool(gt[p] != mask[p]), seconds
