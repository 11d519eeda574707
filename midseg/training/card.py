"""The model card: what is written beside the weights (``NAME.json``).

Architecture, grid, cue and input normalisation (what inference needs), the
training run (data, schedule, augmentation, history, hardware), the validation
Dice and the licence of the weights.
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InvalidInputError, MidsegError
from .augment import AUG_INTENSITY_P
from .config import TrainConfig

if TYPE_CHECKING:  # pragma: no cover
    from .loop import TrainState

#: Licence note every card of weights trained on the BraTS images carries.
LICENCE_BRATS = (
    "Weights derived from BraTS 2013 training images (Menze et al., IEEE TMI 2015) as "
    "redistributed with DeepMedic, licensed CC BY-NC-SA 3.0 CH: the weights are a derived "
    "work; use them for non-commercial purposes, with attribution, and share derivatives "
    "under the same licence."
)


def _hardware(device: str, threads: int) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    if device.startswith("cuda"):
        import torch

        return f"GPU {torch.cuda.get_device_name(0)} (+ CPU {cpu})"
    return f"CPU {cpu}, {threads} torch thread(s)"


def _resolved_margin(margin):
    """The box margin actually used, so a later change of the default cannot alter the model."""
    if margin is None:
        from ..crop import DEFAULT_MARGIN

        return DEFAULT_MARGIN
    return list(margin) if isinstance(margin, (tuple, list)) else int(margin)


def _make_card(
    name,
    cfg: TrainConfig,
    net,
    image_channels,
    in_channels,
    state: TrainState,
    total,
    per_epoch,
    n,
    val_items,
    last_val,
    device,
    threads,
    stopped_early,
    extra,
    init_info=None,
) -> dict:
    """The card of a run that stopped at ``state.iteration`` (`extra` merged in)."""
    assert cfg.grid_shape is not None  # TrainConfig.__post_init__ filled it in
    card: dict[str, Any] = {
        "format": "midseg-model-card",
        "format_version": 1,
        "name": name,
        "task": "stage-1 initial segmentation from interior margin points",
        "architecture": dict(net.config),
        "spatial_dims": cfg.spatial_dims,
        "grid_shape": list(cfg.grid_shape),
        "cue": cfg.cue,
        "cue_params": dict(cfg.cue_params),
        "image_channels": image_channels,
        "in_channels": in_channels,
        "base": net.base,
        "margin": _resolved_margin(cfg.margin),
        "normalisation": (
            "input: crop of the relaxed box resized (linear) to the grid, "
            "z-scored per channel; network: affine instance normalisation"
        ),
        "output": (
            "2 logits, foreground = softmax channel 1"
            if net.out_channels == 2
            else "1 logit, foreground = sigmoid"
        ),
        "training": _training_section(
            cfg, state, total, per_epoch, n, device, threads, stopped_early, init_info
        ),
        "validation": _validation_section(cfg, val_items, last_val),
    }
    if extra:
        for k, v in extra.items():
            if isinstance(v, dict) and isinstance(card.get(k), dict):
                card[k].update(v)
            else:
                card[k] = v
    v = card["validation"]
    v["summary"] = (
        "no validation set"
        if v["dice"] is None
        else f"mean Dice {v['dice']:.3f} over {v['items']} item(s)"
        + (f" ({v['note']})" if v.get("note") else "")
    )
    return card


def _training_section(
    cfg: TrainConfig,
    state: TrainState,
    total,
    per_epoch,
    n,
    device,
    threads,
    stopped_early,
    init_info,
) -> dict:
    """The card's ``training``: length, optimiser, augmentation, history, hardware."""
    import torch

    from .. import __version__

    iterations = state.iteration
    return {
        "items": n,
        "epochs_planned": cfg.epochs,
        "epochs": round(iterations / per_epoch, 2),
        "iterations": iterations,
        "iterations_planned": total,
        "stopped_early": stopped_early,
        "weights_from_iteration": (
            state.best["iteration"] if cfg.keep_best and state.best else iterations
        ),
        "model_choice": (
            "the iteration with the best validation Dice" if cfg.keep_best else "the last iteration"
        ),
        "batch_size": cfg.batch_size,
        "optimizer": "Adam",
        "lr": cfg.lr,
        "weight_decay": cfg.weight_decay,
        "schedule": cfg.schedule,
        "loss": cfg.loss,
        "augmentation": _augmentation_text(cfg),
        "seed": cfg.seed,
        "initialised_from": init_info,
        "wall_time_s": round(state.elapsed, 1),
        "hardware": _hardware(device, threads),
        "torch_version": torch.__version__,
        "midseg_version": __version__,
        "history": state.history,
    }


def _augmentation_text(cfg: TrainConfig) -> str:
    """The card's description of the augmentation of `cfg`."""
    if not cfg.augment:
        return "none (fresh simulated points only)"
    return (
        (
            "TorchIO RandomAffine"
            if cfg.augment_backend == "torchio"
            else "affine (PyTorch grid_sample)"
        )
        + " in physical space: rotation ±15° in the last two axes "
        "(±5° about the others in 3D), per-axis scaling 0.85-1.15; "
        + ("TorchIO " if cfg.augment_backend == "torchio" else "")
        + "bias field "
        f"(coefficients 0.3) and blur (σ≤1 mm), each p={AUG_INTENSITY_P}; random flip of "
        "every axis and swap of the last two, intensity sign flip "
        f"(p={cfg.intensity_flip}), scale 0.9-1.1, shift ±0.1, Gaussian noise σ≤0.1; "
        "fresh simulated interior margin points for every sample"
    )


def _validation_section(cfg: TrainConfig, val_items, last_val) -> dict:
    """The card's ``validation``: item count, metric, Dice (the summary comes later)."""
    return {
        "items": len(val_items),
        "metric": (
            "Dice at probability 0.5 in image space, "
            + (
                "one fixed set"
                if cfg.val_point_sets == 1
                else f"mean over {cfg.val_point_sets} fixed sets"
            )
            + " of simulated points per item, seeded by "
            + ("the training seed" if cfg.val_seed is None else f"val_seed {cfg.val_seed}")
        ),
        "dice": None if not val_items else round(float(last_val), 4),
    }


def _with_init_licence(licence: str | None, init: str) -> str:
    """`licence` plus the licence of the starting model's weights (fine-tuned weights
    derive from them)."""
    from .. import models as _models

    try:
        card = _models.read_card(_models.model_path(init))
    except MidsegError as exc:
        raise InvalidInputError(f"init: {exc}") from exc
    inherited = card.get("licence")
    if not inherited:
        return licence or ""
    return (
        (licence + " " if licence else "")
        + f"Initialised from the weights of model {card.get('name', init)!r}, which carry: "
        + inherited
    )


def _pool_licence(sets: list[dict]) -> str:
    """The licence line of a card trained on registry `sets` (their licences, and the
    non-commercial terms when one of them has them)."""
    text = "; ".join(f"{s['set']}: {s['licence']}" for s in sets) + "."
    nc = [s["set"] for s in sets if s["non_commercial"]]
    if "brats2013" in nc:
        text += " " + LICENCE_BRATS
    elif nc:
        text += (
            f" Non-commercial because of {', '.join(nc)}: use the weights for "
            "non-commercial purposes, with attribution."
        )
    return text


def case_licence(
    data, cases: list[str], image_name: str, label_name: str, labels: list[int]
) -> str:
    """The card's licence of a ``--data`` run on case folders `cases` of folder `data` (image
    `image_name`, label file `label_name`, values `labels`), from the registry sets their
    image and label files are in (`midseg.datasets.registry_case` on each file, resolved,
    links followed: what is read, not how it is named). Raises InvalidInputError for what
    the registry says is never trained on (`midseg.datasets.check_case_training`) and for
    a missing `data` folder."""
    from .. import datasets

    sets: dict[str, dict] = {}
    unknown = []
    for case in dict.fromkeys(cases):  # each once (a training case may validate too)
        img = datasets.registry_case(Path(data) / case / image_name)
        lab = datasets.registry_case(Path(data) / case / label_name)
        if img is None and lab is None:
            unknown.append(case)
            continue
        for hit in {(h[0].name, h[1]): h for h in (img, lab) if h is not None}.values():
            ds = hit[0]
            same = lab is not None and lab[0] is ds and lab[1] == hit[1]
            # the files' own names inside the registry case: what the targets name
            image = img[2] if img is not None and img[0] is ds else image_name
            label = lab[2] if same and lab is not None else ""
            target = datasets.check_case_training(ds, [hit[1]], image, label, labels)
            if target is None and ds.name not in sets:
                known = [
                    f"{t.name} ({t.image}, {t.label} {list(t.values)})"
                    for t in ds.targets
                    if t.role != "report"
                ]
                print(
                    f"note: {image_name} with labels {labels} of {label_name} is no registry "
                    f"target of {ds.name!r} (its training targets: {'; '.join(known)})",
                    flush=True,
                )
            sets[ds.name] = {
                "set": ds.name,
                "licence": ds.licence,
                "non_commercial": ds.non_commercial,
            }
    if not Path(data).is_dir():  # after the refusals: they need no files
        raise InvalidInputError(f"--data folder '{data}' does not exist")
    text = _pool_licence(list(sets.values())) if sets else ""
    if unknown:
        print(
            f"note: case folder(s) {unknown} are in no registry set (midseg.datasets.REGISTRY): "
            "the card cannot state their licence; write it into the card's 'licence' field "
            "before sharing the weights",
            flush=True,
        )
        text += (" " if text else "") + (
            f"Not stated for {unknown}: no registry set; the weights carry the licence of "
            "their training data."
        )
    return text
