"""Training of the stage-1 network: (image, mask) pairs -> simulated points -> crop -> cue -> U-Net.

Fresh interior margin points are simulated for every sample of every epoch;
the input pipeline is `midseg.predict.prepare_input`, shared with inference.
Writes a state dict plus a JSON model card; resumable and deterministic under a seed.

The code lives in the package `midseg.training`; this module re-exports it so
that ``from midseg.train import ...``, ``python -m midseg.train`` and
``midseg train`` keep working. Names are bound once at import: to patch one in a
test, patch it in the `midseg.training` module that uses it.
"""

# ruff: noqa: F401  (a module of re-exports)
from __future__ import annotations

import sys

from ._package import exit_if_shadowed

exit_if_shadowed("midseg train")  # a one-line error, not a broken import below
from .training.augment import (  # noqa: E402
    AUG_DEGREES,
    AUG_INTENSITY_P,
    AUG_SCALES,
    _augment_region,
    _augment_region_torch,
    _rotation,
)
from .training.card import (
    LICENCE_BRATS,
    _hardware,
    _make_card,
    _pool_licence,
    _resolved_margin,
    _with_init_licence,
)
from .training.checkpoint import _atomic_save, _init_from, _load_checkpoint
from .training.cli import (
    DESCRIPTION,
    _cases,
    _command_line,
    _parse_params,
    _pool_data,
    add_arguments,
    config_from_args,
    main,
    run,
)
from .training.config import (
    AUGMENT_BACKENDS,
    GRIDS,
    TrainConfig,
    TrainItem,
    TrainResult,
    _cfg_key,
    _check_probability,
    _with_defaults,
    default_batch_size,
    lr_at,
)
from .training.loop import TrainState, train
from .training.samples import (
    CACHE_PAD,
    _object_region,
    _pool_items,
    _read,
    _SampleStream,
    load_brats_items,
    make_sample,
)
from .training.synthetic import (
    _random_shape,
    _smooth_noise,
    _synthetic_k,
    synthetic_item,
    synthetic_items,
)
from .training.validation import _dice_np, _loss, _make_val_cases, _validate, _ValCase

__all__ = [
    "TrainConfig",
    "TrainItem",
    "TrainResult",
    "train",
    "make_sample",
    "load_brats_items",
    "synthetic_item",
    "synthetic_items",
    "lr_at",
    "add_arguments",
    "run",
    "main",
    "LICENCE_BRATS",
]

if __name__ == "__main__":  # pragma: no cover
    # the common error path of the entry points (midseg.cli.run_entry); main() itself raises
    import argparse

    from .cli import run_entry

    _argv = [a for a in sys.argv[1:] if a != "--debug"]
    sys.exit(
        run_entry(
            "midseg train",
            lambda _args: main(_argv),
            argparse.Namespace(debug="--debug" in sys.argv[1:]),
        )
    )
