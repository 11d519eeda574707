"""Training of the stage-1 network: (image, mask) pairs -> simulated points -> crop -> cue -> U-Net.

Fresh interior margin points are simulated for every sample of every epoch;
the input pipeline is `midseg.predict.prepare_input`, shared with inference.
Writes a state dict plus a JSON model card; resumable and deterministic under a seed.

Modules, by responsibility:

- `config`: `TrainConfig` (settings, defaults, checks), `TrainItem`, `TrainResult`,
  the learning-rate schedule `lr_at`;
- `samples`: reading items (case folders, registry sets, the ``--cache`` folder),
  `make_sample` (region, augmentation, simulated points, crop, cue), mini-batches;
- `augment`: random affine, bias field and blur (TorchIO or PyTorch alone);
- `synthetic`: synthetic shapes;
- `validation`: the loss and the validation Dice;
- `checkpoint`: starting weights (fine-tuning) and checkpoints;
- `card`: the model card and the licence of the weights;
- `loop`: `train`, in small steps over a `TrainState`;
- `cli`: ``midseg train`` options, `run`, `main`.

`midseg.train` re-exports all of it for older imports and ``python -m midseg.train``.
"""

from __future__ import annotations

from .card import LICENCE_BRATS
from .cli import add_arguments, config_from_args, main, run
from .config import (
    AUGMENT_BACKENDS,
    GRIDS,
    TrainConfig,
    TrainItem,
    TrainResult,
    default_batch_size,
    lr_at,
)
from .loop import TrainState, train
from .samples import load_brats_items, make_sample
from .synthetic import synthetic_item, synthetic_items

__all__ = [
    "TrainConfig",
    "TrainItem",
    "TrainResult",
    "TrainState",
    "train",
    "make_sample",
    "load_brats_items",
    "synthetic_item",
    "synthetic_items",
    "lr_at",
    "add_arguments",
    "run",
    "main",
    "config_from_args",
    "default_batch_size",
    "LICENCE_BRATS",
    "GRIDS",
    "AUGMENT_BACKENDS",
]
