"""The training loss and the validation Dice (fixed simulated points, image space)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .config import TrainConfig, TrainItem


def _loss(net, logits, target, kind: str):
    from torch.nn import functional as F

    prob = net.foreground_probability(logits)
    dims = tuple(range(1, prob.ndim))
    inter = (prob * target).sum(dims)
    denom = prob.sum(dims) + target.sum(dims)
    dice = 1.0 - (2.0 * inter + 1e-5) / (denom + 1e-5)
    loss = dice.mean()
    if kind == "dice+ce":
        if net.out_channels == 2:
            loss = loss + F.cross_entropy(logits, target.long())
        else:
            loss = loss + F.binary_cross_entropy_with_logits(logits[:, 0], target)
    return loss


def _dice_np(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a != 0, b != 0
    s = int(a.sum()) + int(b.sum())
    return 1.0 if s == 0 else 2.0 * int((a & b).sum()) / s


@dataclass
class _ValCase:
    x: np.ndarray
    transform: Any
    mask: np.ndarray
    name: str


def _make_val_cases(items: Sequence[TrainItem], cfg: TrainConfig, seed: int) -> list[_ValCase]:
    """Fixed validation inputs: ``cfg.val_point_sets`` sets of simulated points per item.

    Set 0 of item k is seeded ``[seed, 7919, k]`` (as before the option existed),
    set j > 0 ``[seed, 7919, k, j]``. With few validation items (3D) several
    sets make the Dice that picks the kept weights less a matter of one draw.
    """
    from .. import data_sim
    from ..predict import prepare_input

    assert cfg.grid_shape is not None  # TrainConfig.__post_init__ filled it in
    out = []
    for k, item in enumerate(items):
        mask = np.asarray(item.mask) != 0
        channel_first = np.asarray(item.image).ndim == mask.ndim + 1
        for j in range(int(cfg.val_point_sets)):
            rng = np.random.default_rng([seed, 7919, k] if j == 0 else [seed, 7919, k, j])
            pts = data_sim.interior_margin_points(mask, rng=rng, spacing=item.spacing)
            x, g = prepare_input(
                item.image,
                pts,
                cfg.grid_shape,
                cfg.cue,
                spacing=item.spacing,
                channel_axis=0 if channel_first else None,
                margin=cfg.margin,
                cue_params=cfg.cue_params,
            )
            out.append(_ValCase(x=x, transform=g.transform, mask=mask, name=item.name))
    return out


def _validate(net, cases: list[_ValCase], device, batch: int) -> float:
    import torch

    if not cases:
        return float("nan")
    was_training = net.training
    net.eval()
    scores = []
    with torch.inference_mode():
        for i in range(0, len(cases), batch):
            chunk = cases[i : i + batch]
            x = torch.from_numpy(np.stack([c.x for c in chunk])).to(device)
            prob = net.foreground_probability(net(x)).float().cpu().numpy()
            for c, p in zip(chunk, prob):
                full = c.transform.paste(p, c.mask.shape, fill=0.0, order=1)
                scores.append(_dice_np(np.asarray(full) >= 0.5, c.mask))
    net.train(was_training)
    return float(np.mean(scores))
