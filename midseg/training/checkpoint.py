"""Weights on disk: the starting model of a fine-tuning run, checkpoints to resume from."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import InvalidInputError, MidsegError
from ..io import file_sha256
from .config import TrainConfig


def _init_from(net, cfg: TrainConfig, in_channels: int) -> dict:
    """Load the weights of the model ``cfg.init`` (name or ``.pt`` path) into `net`.

    The model must have the same architecture, grid and cue as the run, and the
    same input channels, or one image channel where the run has several (a
    single-modality model starting a PET/CT one): its first convolution's
    image-channel weights are then shared out equally over the run's image
    channels (``w / C`` each, so a constant image gives the same response),
    the cue channel's weights kept. Returns what the card records about it
    (path, sha256, its card's name and training length, the expansion).
    """
    from .. import models as _models

    assert cfg.init is not None  # only called for a run with init
    assert cfg.grid_shape is not None  # TrainConfig.__post_init__ filled it in
    try:
        # not the per-process cache of load_model: the file may have been retrained since,
        # and the weights must be the ones whose sha256 the card records
        loaded = _models._load_uncached(_models.model_path(cfg.init), "cpu")
    except MidsegError as exc:
        raise InvalidInputError(f"init: {exc}") from exc
    pt, card = loaded.path, loaded.card
    want: dict[str, Any] = {
        "architecture": dict(net.config),
        "grid_shape": list(cfg.grid_shape),
        "cue": cfg.cue,
        "in_channels": in_channels,
    }
    have: dict[str, Any] = {
        "architecture": dict(card.get("architecture", {})),
        "grid_shape": list(card.get("grid_shape", [])),
        "cue": card.get("cue"),
        "in_channels": card.get("in_channels"),
    }
    cue_channels = 0 if cfg.cue == "none" else 1
    image_channels = in_channels - cue_channels
    expand = (
        card.get("image_channels") == 1
        and image_channels > 1
        and have["in_channels"] == 1 + cue_channels
    )
    if expand:
        have = {
            **have,
            "in_channels": in_channels,
            "architecture": {**have["architecture"], "in_channels": in_channels},
        }
    diff = [k for k in want if want[k] != have[k]]
    if diff:
        raise InvalidInputError(
            f"init: model '{pt}' does not match this run in "
            + ", ".join(f"{k} ({have[k]} vs {want[k]})" for k in diff)
        )
    state = loaded.net.state_dict()
    if expand:
        import torch

        first = next(k for k, v in state.items() if k.endswith("weight") and v.ndim >= 3)
        w = state[first]
        parts = [w[:, :1] / image_channels] * image_channels + [w[:, 1:]]
        state = {**state, first: torch.cat(parts, dim=1)}
    net.load_state_dict(state)
    tr = card.get("training", {})
    return {
        "model": cfg.init,
        "file": str(pt),
        "sha256": file_sha256(pt),
        "name": card.get("name"),
        "iterations": tr.get("weights_from_iteration", tr.get("iterations")),
        "command": card.get("command"),
        "image_channels_expanded": (
            f"1 -> {image_channels}: first convolution's image "
            f"weights divided by {image_channels} per channel"
            if expand
            else None
        ),
    }


def _atomic_save(obj, path: Path) -> None:
    import torch

    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _load_checkpoint(path) -> dict:
    """A ``checkpoint.pt`` of `train`, loaded as weights and plain data only.

    ``torch.load(weights_only=True)``: tensors, numbers, strings, lists and dicts; a
    file that needs anything else (a pickled object, which could run code) is refused.

    Raises
    ------
    MidsegError
        Missing, unreadable or crafted file, or not a checkpoint of `train`.
    """
    from ..models import load_weights_only

    p = Path(path)
    ck = load_weights_only(p, what="checkpoint")
    need = {"net": dict, "opt": dict, "state": dict, "config": dict}
    if not isinstance(ck, dict) or any(not isinstance(ck.get(k), t) for k, t in need.items()):
        raise MidsegError(
            f"'{p}' is not a checkpoint written by midseg train "
            f"(expected a dict with {', '.join(need)})"
        )
    if not isinstance(ck["state"].get("iteration"), int):
        raise MidsegError(f"checkpoint '{p}': state.iteration is missing or not an integer")
    return ck
