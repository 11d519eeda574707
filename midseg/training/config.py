"""The configuration of a training run: items, hyper-parameters, the result, the lr schedule.

`TrainConfig` holds every setting of a run with its default and checks them on
construction; its `_cfg_key` is what a checkpoint records, so that a run is only
resumed with the configuration it was started with.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InvalidInputError

GRIDS = {2: (64, 64), 3: (64, 96, 96)}
#: Libraries the spatial/intensity augmentation can run on: TorchIO (default), or PyTorch
#: alone (`torch.nn.functional.affine_grid` / `grid_sample`) for machines without TorchIO
#: and SimpleITK, e.g. a GPU node. The same transforms and ranges; not the same samples.
AUGMENT_BACKENDS = ("torchio", "torch")


@dataclass(frozen=True)
class TrainItem:
    """One training example: an image, its binary target mask, the voxel spacing.

    ``image`` is (Y, X) / (Z, Y, X), or channel first (C, ...) ; ``mask`` has the
    spatial shape (nonzero = object); ``name`` identifies it in logs.
    """

    image: np.ndarray
    mask: np.ndarray
    spacing: tuple[float, ...] | None = None
    name: str = ""


@dataclass
class TrainConfig:
    """Hyper-parameters of one training run (all recorded in the model card).

    The defaults follow MIDeepSeg §2.5 (Dice loss, Adam, weight decay 1e-4,
    lr kept for the first half then halved every tenth of the run) except where
    noted in the card.
    """

    spatial_dims: int = 2
    grid_shape: tuple[int, ...] | None = None
    cue: str = "egd"
    cue_params: dict = field(default_factory=dict)
    base: int | None = None
    depth: int = 4
    out_channels: int = 2
    epochs: int = 100
    batch_size: int = 4
    lr: float = 1e-4
    weight_decay: float = 1e-4
    schedule: str = "step"
    loss: str = "dice+ce"
    augment: bool = True
    augment_backend: str = "torchio"
    intensity_flip: float = 0.3
    synthetic: int = 0
    synthetic_inclusions: float = 0.0
    synthetic_large: float = 0.0
    seed: int = 0
    margin: Any = None
    init: str | None = None
    val_every: int = 200
    val_point_sets: int = 1
    val_seed: int | None = None
    keep_best: bool = False
    checkpoint_minutes: float = 5.0
    max_minutes: float | None = None
    threads: int | None = None
    device: str | None = None
    workers: int = 0

    def __post_init__(self):
        if self.spatial_dims not in (2, 3):
            raise InvalidInputError(f"spatial_dims must be 2 or 3, got {self.spatial_dims!r}")
        self.grid_shape = tuple(int(g) for g in (self.grid_shape or GRIDS[self.spatial_dims]))
        if len(self.grid_shape) != self.spatial_dims:
            raise InvalidInputError(
                f"grid_shape {self.grid_shape} does not have {self.spatial_dims} axes"
            )
        if self.schedule not in ("step", "poly", "constant"):
            raise InvalidInputError(
                f"schedule must be 'step', 'poly' or 'constant', got {self.schedule!r}"
            )
        if self.augment_backend not in AUGMENT_BACKENDS:
            raise InvalidInputError(
                f"augment_backend must be one of {AUGMENT_BACKENDS}, got {self.augment_backend!r}"
            )
        if int(self.workers) < 0:
            raise InvalidInputError(f"workers must be >= 0, got {self.workers!r}")
        if self.loss not in ("dice", "dice+ce"):
            raise InvalidInputError(f"loss must be 'dice' or 'dice+ce', got {self.loss!r}")
        if int(self.synthetic) < 0:
            raise InvalidInputError(f"synthetic must be >= 0, got {self.synthetic!r}")
        for name in ("synthetic_inclusions", "synthetic_large"):
            _check_probability(name, getattr(self, name))
        if self.init is not None:
            self.init = os.fspath(self.init)
        for name in ("epochs", "batch_size", "val_every", "val_point_sets"):
            if int(getattr(self, name)) < 1:
                raise InvalidInputError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if not self.lr > 0:
            raise InvalidInputError(f"lr must be > 0, got {self.lr!r}")

    def torch_threads(self) -> int:
        """CPU threads for torch: ``threads``, else 2 (or fewer cores)."""
        return self.threads or min(2, os.cpu_count() or 1)

    def torch_device(self) -> str:
        """The torch device: ``device``, else cuda where available, else cpu."""
        import torch

        return self.device or ("cuda" if torch.cuda.is_available() else "cpu")


def default_batch_size(spatial_dims: int) -> int:
    """The command line's mini-batch size when none is given: 4 in 2D, 1 in 3D."""
    return 4 if spatial_dims == 2 else 1


@dataclass
class TrainResult:
    """What `train` returns: the trained network, its card, where files went."""

    net: Any
    card: dict
    weights_path: Path | None
    card_path: Path | None
    history: list = field(default_factory=list)


# ----------------------------------------------------------------------------------------
# Learning rate
# ----------------------------------------------------------------------------------------
def lr_at(iteration: int, total: int, base_lr: float, schedule: str) -> float:
    """Learning rate at `iteration` (0-based) of `total`.

    ``"step"``: MIDeepSeg's recipe scaled to the run length: `base_lr` for the
    first half, then halved every tenth of the run (5 halvings in all).
    ``"poly"``: ``base_lr * (1 - t/T) ** 0.9``. ``"constant"``: `base_lr`.
    """
    t = min(max(iteration, 0), total)
    if schedule == "constant":
        return base_lr
    if schedule == "poly":
        return base_lr * (1.0 - t / max(total, 1)) ** 0.9
    half = total / 2.0
    if t < half:
        return base_lr
    step = max(total / 10.0, 1.0)
    return base_lr * 0.5 ** (1 + int((t - half) // step))


def _check_probability(name: str, value) -> None:
    if not 0.0 <= float(value) <= 1.0:
        raise InvalidInputError(f"{name} must be a probability in [0, 1], got {value!r}")


# ----------------------------------------------------------------------------------------
# The configuration a checkpoint records
# ----------------------------------------------------------------------------------------
def _cfg_key(cfg: TrainConfig) -> dict:
    d = asdict(cfg)
    # Settings that may change between an interrupted run and its resumption.
    for k in ("checkpoint_minutes", "max_minutes", "threads", "device", "val_every", "workers"):
        d.pop(k, None)
    d["grid_shape"] = list(d["grid_shape"])
    return json.loads(json.dumps(d))


def _with_defaults(key: dict | None) -> dict | None:
    """A checkpoint's config key with fields added since it was written set to their defaults."""
    if not isinstance(key, dict):
        return key
    defaults = _cfg_key(TrainConfig(spatial_dims=int(key.get("spatial_dims", 2))))
    return {**{k: v for k, v in defaults.items() if k not in key}, **key}
