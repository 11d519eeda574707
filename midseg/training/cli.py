"""``midseg train`` / ``python -m midseg.train``: options, reading the data, the run."""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
from pathlib import Path
from typing import Sequence

from ..errors import InvalidInputError
from .card import _pool_licence, _with_init_licence, case_licence
from .checkpoint import _load_checkpoint
from .config import AUGMENT_BACKENDS, TrainConfig, default_batch_size
from .loop import check_config, train
from .samples import _case_overlap, _cases, _labels, _pool_items, load_brats_items

#: The description of ``python -m midseg.train --help`` (the old module's docstring).
DESCRIPTION = """Training of the stage-1 network: (image, mask) pairs -> simulated points -> crop -> cue -> U-Net.

Fresh interior margin points are simulated for every sample of every epoch;
the input pipeline is `midseg.predict.prepare_input`, shared with inference.
Writes a state dict plus a JSON model card; resumable and deterministic under a seed.
"""


# ----------------------------------------------------------------------------------------
# Options
# ----------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``midseg train``."""
    _add_data_arguments(parser)
    _add_model_arguments(parser)
    _add_run_arguments(parser)


def _add_data_arguments(p: argparse.ArgumentParser) -> None:
    """The training data: dimension, registry sets or case folders, synthetic shapes."""
    p.add_argument(
        "--dims",
        type=int,
        choices=(2, 3),
        required=True,
        help="2: axial slices, 64x64 grid; 3: volumes, 64x96x96 grid",
    )
    _add_pool_arguments(p)
    _add_case_folder_arguments(p)
    _add_synthetic_arguments(p)


def _add_pool_arguments(p: argparse.ArgumentParser) -> None:
    """Registry sets (``--pool``): which sets, their targets and slices."""
    p.add_argument(
        "--pool",
        default=None,
        metavar="SET[:REPEAT],...",
        help="train on registry sets (midseg.datasets.REGISTRY, role 'pool'): "
        "their train split and default targets, validation on their "
        "validation split; REPEAT lists a set's items that many times per "
        "epoch (e.g. 'sts:2,fetal_brain_atlas,brats2013:2'). --data is then "
        "the data root (default ../shared/data)",
    )
    p.add_argument(
        "--pool-targets",
        action="append",
        default=[],
        metavar="SET=T1+T2",
        help="with --pool: train on these targets of SET instead of its default "
        "ones (e.g. sts=tumour_petct for the two-channel PET/CT model; "
        "repeatable)",
    )
    p.add_argument(
        "--slice-step",
        action="append",
        default=[],
        metavar="SET=N",
        help="with --pool in 2D: keep every N-th qualifying slice of SET, in its "
        "training and validation cases (repeatable)",
    )


#: The case-folder options' defaults (BraTS tumour core on T1c), set after the check that
#: --pool was not given them.
CASE_DEFAULTS = {
    "image_name": "T1c_subtrMeanDivStd.nii.gz",
    "label_name": "OTMultiClass.nii.gz",
    "labels": "1,3,4",
}


def _add_case_folder_arguments(p: argparse.ArgumentParser) -> None:
    """Case folders (``--data``): which cases, their files, labels and slices."""
    p.add_argument(
        "--data",
        default=None,
        help="folder of case folders, each holding the image and the label file "
        "(with --pool: the data root); test and development data of the registry are "
        "refused (README, 'midseg train')",
    )
    p.add_argument(
        "--train-cases",
        default=None,
        help="comma-separated case folder names to train on (without --pool)",
    )
    p.add_argument(
        "--val-cases",
        default="",
        help="comma-separated case folders for validation Dice (may overlap the "
        "training cases; the card then says so)",
    )
    p.add_argument(
        "--image-name",
        default=None,
        help=f"image file inside each case folder (default: {CASE_DEFAULTS['image_name']})",
    )
    p.add_argument(
        "--label-name",
        default=None,
        help=f"label file inside each case folder (default: {CASE_DEFAULTS['label_name']})",
    )
    p.add_argument(
        "--labels",
        default=None,
        help=f"labels forming the target (default: {CASE_DEFAULTS['labels']} = tumour core)",
    )
    p.add_argument(
        "--min-area",
        type=int,
        default=30,
        help="2D: skip slices whose target has fewer pixels (default: %(default)s)",
    )


def _add_synthetic_arguments(p: argparse.ArgumentParser) -> None:
    """Synthetic shapes mixed into the training items."""
    p.add_argument(
        "--synthetic",
        type=int,
        default=0,
        metavar="N",
        help="mix N synthetic shapes (midseg.train.synthetic_item, seeded by --seed) "
        "into the training items; the card says so (default: %(default)s)",
    )
    p.add_argument(
        "--synthetic-inclusions",
        type=float,
        default=0.0,
        metavar="P",
        help="probability that a synthetic shape has inner parts of another "
        "intensity (midseg.train.synthetic_item; default: %(default)s)",
    )
    p.add_argument(
        "--synthetic-large",
        type=float,
        default=0.0,
        metavar="P",
        help="probability that a synthetic shape is twice as large on every axis, "
        "so that its crop is shrunk to the grid (midseg.train.synthetic_items; "
        "default: %(default)s)",
    )


def _add_model_arguments(p: argparse.ArgumentParser) -> None:
    """The network, its input and its optimisation."""
    p.add_argument(
        "--cue",
        default="egd",
        help="cue map kind (midseg.cues.CUE_KINDS) or 'none' for the image only "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--cue-param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra keyword argument for the cue map (repeatable)",
    )
    p.add_argument(
        "--grid", default=None, help="network grid, e.g. 64,64 or 64,96,96 (default by --dims)"
    )
    p.add_argument(
        "--base", type=int, default=None, help="first-level width (default 16 in 2D, 8 in 3D)"
    )
    p.add_argument("--epochs", type=int, default=100, help="epochs (default: %(default)s)")
    p.add_argument(
        "--batch-size", type=int, default=None, help="mini-batch size (default 4 in 2D, 1 in 3D)"
    )
    p.add_argument(
        "--lr", type=float, default=1e-4, help="Adam learning rate (default: %(default)s)"
    )
    p.add_argument("--weight-decay", type=float, default=1e-4, help="(default: %(default)s)")
    p.add_argument(
        "--schedule",
        choices=("step", "poly", "constant"),
        default="step",
        help="lr schedule (default: %(default)s: halve every tenth after half the run)",
    )
    p.add_argument(
        "--loss", choices=("dice", "dice+ce"), default="dice+ce", help="(default: %(default)s)"
    )
    p.add_argument("--no-augment", action="store_true", help="switch augmentation off")
    p.add_argument(
        "--augment-backend",
        choices=AUGMENT_BACKENDS,
        default="torchio",
        help="library of the affine, bias-field and blur augmentation: torchio, or "
        "torch alone where TorchIO/SimpleITK are missing; the same ranges, not "
        "the same samples (default: %(default)s)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=0,
        metavar="N",
        help="make the samples in N worker processes (the same samples as with 0; "
        "for a GPU, whose speed the single-process sampling wastes; default: "
        "%(default)s)",
    )
    p.add_argument(
        "--cache",
        default=None,
        metavar="DIR",
        help="with --pool: keep the items read from the registry sets in DIR "
        "(.npz, cropped around each object) and read them from there on the "
        "next run, e.g. on a machine without the data or SimpleITK",
    )


def _add_run_arguments(p: argparse.ArgumentParser) -> None:
    """Seed, output, starting weights, validation, stopping, hardware."""
    p.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    p.add_argument("--out", required=True, help="run folder (checkpoint, weights, card)")
    p.add_argument("--name", default=None, help="model name (default: '2d' or '3d')")
    p.add_argument(
        "--init",
        default=None,
        metavar="MODEL",
        help="start from the weights of this model (shipped name or .pt with its "
        "card, not an ensemble such as 2d: one of its members, e.g. 2d_egd; same "
        "architecture, grid and cue) instead of random ones: "
        "fine-tuning; the card records it",
    )
    p.add_argument(
        "--resume",
        default=None,
        metavar="CHECKPOINT",
        help="continue from a checkpoint.pt ('auto': OUT/checkpoint.pt if present)",
    )
    p.add_argument(
        "--val-every",
        type=int,
        default=200,
        help="iterations between validations (default: %(default)s)",
    )
    p.add_argument(
        "--val-point-sets",
        type=int,
        default=1,
        metavar="K",
        help="simulated point sets per validation item; the validation Dice is "
        "their mean (default: %(default)s)",
    )
    p.add_argument(
        "--val-seed",
        type=int,
        default=None,
        metavar="S",
        help="seed of the validation points (default: --seed); give two runs "
        "the same one to compare their validation Dice",
    )
    p.add_argument(
        "--no-validation",
        action="store_true",
        help="with --pool: read no validation split (validate the written model "
        "elsewhere); --keep-best then has nothing to choose on",
    )
    p.add_argument(
        "--keep-best",
        action="store_true",
        help="ship the weights of the validation with the best Dice, not the last",
    )
    p.add_argument(
        "--checkpoint-minutes",
        type=float,
        default=5.0,
        help="minutes between checkpoints (default: %(default)s)",
    )
    p.add_argument(
        "--max-minutes",
        type=float,
        default=None,
        help="stop (and write the model) after this much training time",
    )
    p.add_argument(
        "--max-iterations",
        type=int,
        default=None,
        metavar="N",
        help="stop (and write the model) after N iterations; the lr schedule still "
        "spans --epochs. Unlike --max-minutes the same on every machine: a run "
        "cut short by time is repeated, sample for sample, with N = its card's "
        "iterations",
    )
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default 2)")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _parse_params(pairs: Sequence[str]) -> dict:
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise InvalidInputError(f"--cue-param must be KEY=VALUE, got {pair!r}")
        k, v = pair.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def _command_line(args: argparse.Namespace) -> str:
    """The command that started this run, for the card."""
    # Through the `midseg` console script sys.argv[1:] already starts with "train".
    return getattr(args, "command_line", None) or "midseg " + " ".join(
        shlex.quote(a) for a in sys.argv[1:]
    )


# ----------------------------------------------------------------------------------------
# Data: registry sets (--pool)
# ----------------------------------------------------------------------------------------
def _pool_data(args: argparse.Namespace, cfg: TrainConfig):
    """Items, validation items, card fields and real-item count for ``--pool``."""
    from .. import datasets

    root = Path(args.data) if args.data else datasets.data_root_default()
    steps = _slice_steps(args)
    chosen = _pool_targets(args)
    items, val_items, sets = [], [], []
    names = [part.partition(":")[0] for part in _cases(args.pool)]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise InvalidInputError(
            f"--pool names {twice} more than once; use SET:REPEAT to weight a set"
        )
    for part in _cases(args.pool):
        name, _, rep = part.partition(":")
        if rep and (not rep.isdigit() or int(rep) < 1):
            raise InvalidInputError(f"--pool repeat must be an integer >= 1, got {part!r}")
        repeat = int(rep or 1)
        kw = dict(
            dims=args.dims,
            data_root=root,
            min_area=args.min_area,
            slice_step=steps.get(name, 1),
            targets=chosen.get(name),
        )
        tr = _pool_items(args.cache, name, "train", kw)
        va = [] if args.no_validation else _pool_items(args.cache, name, "validation", kw)
        items += tr * repeat
        val_items += va
        sets.append(_pool_set(args, name, tr, va, repeat, steps, chosen))
    in_pool = {s["set"] for s in sets}
    for option, given in (("--slice-step", steps), ("--pool-targets", chosen)):
        unknown = set(given) - in_pool
        if unknown:
            raise InvalidInputError(f"{option} names sets not in --pool: {sorted(unknown)}")
    return items, val_items, _pool_extra(args, root, sets, len(items)), len(items)


def _slice_steps(args: argparse.Namespace) -> dict[str, int]:
    """``--slice-step SET=N`` as {set: N}."""
    steps = {}
    for pair in args.slice_step:
        k, _, v = pair.partition("=")
        if not v.isdigit() or int(v) < 1:
            raise InvalidInputError(f"--slice-step must be SET=N with N >= 1, got {pair!r}")
        steps[k.strip()] = int(v)
    if args.dims == 3 and args.slice_step:
        raise InvalidInputError("--slice-step applies to 2D training (--dims 2) only")
    return steps


def _pool_targets(args: argparse.Namespace) -> dict[str, tuple[str, ...]]:
    """``--pool-targets SET=T1+T2`` as {set: (T1, T2)}."""
    chosen = {}
    for pair in args.pool_targets:
        k, _, v = pair.partition("=")
        names = tuple(t.strip() for t in v.split("+") if t.strip())
        if not names:
            raise InvalidInputError(f"--pool-targets must be SET=T1+T2, got {pair!r}")
        if k.strip() in chosen:
            raise InvalidInputError(
                f"--pool-targets names {k.strip()!r} twice; give its targets once as SET=T1+T2"
            )
        if len(set(names)) != len(names):
            raise InvalidInputError(f"--pool-targets lists a target twice: {pair!r}")
        chosen[k.strip()] = names
    return chosen


def _pool_set(
    args: argparse.Namespace, name: str, tr: list, va: list, repeat: int, steps: dict, chosen: dict
) -> dict:
    """What the card's ``data.sets`` records about one registry set of the pool."""
    from .. import datasets

    ds = datasets.REGISTRY[name]
    excluded = [t for t in chosen.get(name, ()) if ds.target(t).role == "excluded"]
    if excluded:
        print(
            f"note: {name} target(s) {excluded} are left out of the default targets "
            "(see midseg.datasets); the card records that they were named",
            flush=True,
        )
    return {
        "set": name,
        "licence": ds.licence,
        "non_commercial": ds.non_commercial,
        "excluded_targets_named": excluded or None,
        "train_cases": list(ds.splits["train"]),
        "validation_cases": list(ds.splits["validation"]),
        "targets": sorted({i.name.split("/")[2].split(":")[0] for i in tr}),
        "items": len(tr),
        "repeat": repeat,
        "validation_items": len(va),
        "slice_step": steps.get(name, 1) if args.dims == 2 else None,
    }


def _pool_extra(args: argparse.Namespace, root: Path, sets: list[dict], n_real: int) -> dict:
    """The card fields of a ``--pool`` run: data, split, command, licence."""
    return {
        "data": {
            "description": (
                "registry sets (midseg.datasets.REGISTRY), one item per "
                "(case, target)"
                + (
                    f", axial slices with >= {args.min_area} target pixels"
                    if args.dims == 2
                    else ", whole volumes"
                )
                + (f"; plus {args.synthetic} synthetic shapes" if args.synthetic else "")
            ),
            "root": str(root),
            "sets": sets,
            "training_items": n_real + args.synthetic,
            "real_items": n_real,
            "synthetic_items": args.synthetic,
        },
        "split": {
            "train": [f"{s['set']}/{c}" for s in sets for c in s["train_cases"]],
            "validation": [f"{s['set']}/{c}" for s in sets for c in s["validation_cases"]],
            "validation_held_out": True,
        },
        "command": _command_line(args),
        "validation": {"note": None},
        "licence": _pool_licence(sets),
    }


# ----------------------------------------------------------------------------------------
# Data: case folders (--data, --train-cases)
# ----------------------------------------------------------------------------------------
def _case_data(args: argparse.Namespace):
    """Items, validation items, card fields and real-item count for ``--train-cases``."""
    if not args.data or not args.train_cases:
        raise InvalidInputError("give --pool, or --data and --train-cases")
    labels = _labels(args.labels)
    train_cases, val_cases = _cases(args.train_cases), _cases(args.val_cases)
    licence = case_licence(  # refuses before reading
        args.data, train_cases + val_cases, args.image_name, args.label_name, labels
    )
    kw = dict(
        spatial_dims=args.dims,
        image_name=args.image_name,
        label_name=args.label_name,
        labels=labels,
        min_area=args.min_area,
    )

    overlap = _case_overlap(args.data, args.image_name, train_cases, val_cases)
    items = load_brats_items(args.data, train_cases, **kw)
    val_items = load_brats_items(args.data, val_cases, **kw) if val_cases else []
    n_real = len(items)
    if not items:
        raise InvalidInputError(
            f"no training items: no {'slice' if args.dims == 2 else 'volume'} of the cases "
            f"holds labels {labels} of {args.label_name}"
            + (f" on at least --min-area {args.min_area} pixels" if args.dims == 2 else "")
        )
    extra = {
        "data": {
            "description": _case_description(args, train_cases, labels),
            "root": str(args.data),
            "image": args.image_name,
            "labels_file": args.label_name,
            "target_labels": labels,
            "min_area": args.min_area if args.dims == 2 else None,
            "training_items": n_real + args.synthetic,
            "real_items": n_real,
            "synthetic_items": args.synthetic,
        },
        "split": {
            "train": train_cases,
            "validation": val_cases,
            "validation_held_out": not overlap,
        },
        "command": _command_line(args),
        "validation": {
            "note": None
            if not overlap
            else f"validation case(s) {overlap} were also used for training: this is "
            "a fit check, not a held-out estimate"
        },
    }
    extra["licence"] = licence
    return items, val_items, extra, n_real


def _case_description(args: argparse.Namespace, train_cases: list[str], labels: list[int]) -> str:
    """The card's ``data.description`` of a case-folder run."""
    return (
        f"{args.image_name} of {len(train_cases)} case(s) from "
        f"'{Path(args.data).name}', target = labels {labels}"
        + (
            f", axial slices with >= {args.min_area} target pixels"
            if args.dims == 2
            else ", whole volumes"
        )
        + (
            f"; plus {args.synthetic} synthetic shapes "
            "(midseg.train.synthetic_items, seed = --seed): random blobs "
            "in random textured scenes, no real image"
            + (
                f"; with probability {args.synthetic_inclusions:g} a shape "
                "has inner parts of another intensity"
                if args.synthetic_inclusions
                else ""
            )
            + (
                f"; with probability {args.synthetic_large:g} a shape "
                "is twice as large on every axis"
                if args.synthetic_large
                else ""
            )
            if args.synthetic
            else ""
        )
    )


# ----------------------------------------------------------------------------------------
# The run
# ----------------------------------------------------------------------------------------
def _check_args(args: argparse.Namespace) -> None:
    """Refuse option combinations that cannot work, before anything is read."""
    if args.no_validation and (args.keep_best or not args.pool):
        raise InvalidInputError(
            "--no-validation goes with --pool and without --keep-best "
            "(nothing to choose the best weights on)"
        )
    if args.cache and not args.pool:
        raise InvalidInputError("--cache goes with --pool")
    case_options = ("train_cases", "val_cases", "image_name", "label_name", "labels")
    given = [k for k in case_options if getattr(args, k) not in (None, "")]
    given += [k for k in case_options if getattr(args, k) == "" and k != "val_cases"]
    if args.pool and given:
        raise InvalidInputError(
            f"{', '.join('--' + k.replace('_', '-') for k in given)}: "
            f"{'goes' if len(given) == 1 else 'go'} with --data case folders, not --pool (the registry gives a pool's cases, files and labels; pick "
            "targets with --pool-targets)"
        )
    pool_only = [
        o
        for o, v in (("--slice-step", args.slice_step), ("--pool-targets", args.pool_targets))
        if v
    ]
    if not args.pool and pool_only:
        raise InvalidInputError(
            f"{', '.join(pool_only)}: {'goes' if len(pool_only) == 1 else 'go'} with --pool, "
            "not --data case folders"
        )
    for k, v in CASE_DEFAULTS.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if args.max_iterations is not None and args.max_iterations < 1:
        raise InvalidInputError(f"--max-iterations must be >= 1, got {args.max_iterations}")
    if args.cue != "none":
        from .. import cues

        if args.cue not in cues.CUE_KINDS:
            raise InvalidInputError(
                f"--cue must be one of {', '.join(cues.CUE_KINDS)} or 'none', got {args.cue!r}"
            )


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The `TrainConfig` of parsed ``midseg train`` options."""
    grid = None if args.grid is None else tuple(int(g) for g in args.grid.split(","))
    return TrainConfig(
        spatial_dims=args.dims,
        grid_shape=grid,
        cue=args.cue,
        cue_params=_parse_params(args.cue_param),
        base=args.base,
        epochs=args.epochs,
        batch_size=args.batch_size or default_batch_size(args.dims),
        lr=args.lr,
        weight_decay=args.weight_decay,
        schedule=args.schedule,
        loss=args.loss,
        augment=not args.no_augment,
        augment_backend=args.augment_backend,
        workers=args.workers,
        synthetic=args.synthetic,
        synthetic_inclusions=args.synthetic_inclusions,
        synthetic_large=args.synthetic_large,
        seed=args.seed,
        init=args.init,
        val_every=args.val_every,
        val_point_sets=args.val_point_sets,
        val_seed=args.val_seed,
        keep_best=args.keep_best,
        checkpoint_minutes=args.checkpoint_minutes,
        max_minutes=args.max_minutes,
        threads=args.threads,
        device=args.device,
    )


def run(args: argparse.Namespace) -> int:
    """Run ``midseg train`` from parsed arguments; returns the exit status."""
    _check_args(args)
    cfg = config_from_args(args)
    name = args.name or f"{args.dims}d"
    out = Path(args.out)
    resume = args.resume
    if resume == "auto":
        resume = out / "checkpoint.pt" if (out / "checkpoint.pt").is_file() else None
    if resume is not None:  # refuse a bad checkpoint or another config before reading data
        check_config(_load_checkpoint(resume), cfg, resume)
    if args.pool:
        items, val_items, extra, n_real = _pool_data(args, cfg)
    else:
        items, val_items, extra, n_real = _case_data(args)
    print(
        f"training {name}: {n_real} + {cfg.synthetic} synthetic items, "
        f"{len(val_items)} validation items, {cfg.epochs} epochs of "
        f"{math.ceil((n_real + cfg.synthetic) / cfg.batch_size)} iterations",
        flush=True,
    )
    if cfg.init:
        extra["licence"] = _with_init_licence(extra.get("licence"), cfg.init)
    result = train(
        items,
        cfg,
        out,
        val_items=val_items,
        name=name,
        resume=resume,
        card_extra=extra,
        progress=not args.no_progress,
        max_iterations=args.max_iterations,
    )
    print(
        f"wrote {result.weights_path} and {result.card_path}; "
        f"{result.card['validation']['summary']}",
        flush=True,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m midseg.train ...``: same options as ``midseg train``."""
    parser = argparse.ArgumentParser(prog="midseg train", description=DESCRIPTION)
    add_arguments(parser)
    args = parser.parse_args(argv)
    args.command_line = "midseg train " + " ".join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)
    )
    return run(args)
