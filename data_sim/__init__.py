"""Simulated users for training and evaluation: margin points, corrective clicks, scribbles.

Everything works on numpy arrays (ground truth, prediction) and is deterministic
under `rng`; nothing here reads files or imports torch.
"""

from .margin_points import (
    DEFAULT_EXTREME_JITTER,
    DEFAULT_INWARD,
    DEFAULT_N_RANDOM,
    interior_margin_points,
)
from .robot import CLICK_MODES, Click, corrective_click
from .scribbles import ellipsoid_scribble, simulate_scribbles

__all__ = [
    "interior_margin_points",
    "DEFAULT_INWARD",
    "DEFAULT_EXTREME_JITTER",
    "DEFAULT_N_RANDOM",
    "Click",
    "corrective_click",
    "CLICK_MODES",
    "ellipsoid_scribble",
    "simulate_scribbles",
]
