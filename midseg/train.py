"""Training of the stage-1 network: (image, mask) pairs -> simulated points -> crop -> cue -> U-Net.

Fresh interior margin points are simulated for every sample of every epoch;
the input pipeline is `midseg.predict.prepare_input`, shared with inference.
Writes a state dict plus a JSON model card; resumable and deterministic under a seed.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .errors import InvalidInputError, MidsegError
from .io import file_sha256, write_json_atomic

__all__ = ["TrainConfig", "TrainItem", "TrainResult", "train", "make_sample",
           "load_brats_items", "synthetic_item", "synthetic_items", "lr_at", "add_arguments", "run", "main",
           "LICENCE_BRATS"]

#: Licence note every card of weights trained on the BraTS images carries.
LICENCE_BRATS = (
    "Weights derived from BraTS 2013 training images (Menze et al., IEEE TMI 2015) as "
    "redistributed with DeepMedic, licensed CC BY-NC-SA 3.0 CH: the weights are a derived "
    "work; use them for non-commercial purposes, with attribution, and share derivatives "
    "under the same licence.")

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
                f"grid_shape {self.grid_shape} does not have {self.spatial_dims} axes")
        if self.schedule not in ("step", "poly", "constant"):
            raise InvalidInputError(
                f"schedule must be 'step', 'poly' or 'constant', got {self.schedule!r}")
        if self.augment_backend not in AUGMENT_BACKENDS:
            raise InvalidInputError(f"augment_backend must be one of {AUGMENT_BACKENDS}, "
                                    f"got {self.augment_backend!r}")
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


# ----------------------------------------------------------------------------------------
# Samples: region -> augmentation -> simulated points -> crop -> cue
# ----------------------------------------------------------------------------------------
def _object_region(mask: np.ndarray, pad_frac: float, pad_min: int) -> tuple[slice, ...]:
    idx = np.nonzero(mask)
    sl = []
    for ax, n in enumerate(mask.shape):
        lo, hi = int(idx[ax].min()), int(idx[ax].max()) + 1
        pad = max(pad_min, int(math.ceil(pad_frac * (hi - lo))))
        sl.append(slice(max(lo - pad, 0), min(hi + pad, n)))
    return tuple(sl)


#: Spatial augmentation (TorchIO `RandomAffine`, physical space): rotation about the first
#: array axis (in-plane, the last two axes) and, in 3D, a smaller tilt about the others;
#: per-axis scaling. Intensity augmentation before the crop: a smooth multiplicative bias
#: field (MR-like shading) and a Gaussian blur (lower resolution), each with probability
#: AUG_INTENSITY_P.
AUG_DEGREES = {2: (0, 0, 0, 0, -15, 15), 3: (-15, 15, -5, 5, -5, 5)}
AUG_SCALES = (0.85, 1.15)
AUG_INTENSITY_P = 0.25


def _augment_region(image: np.ndarray, mask: np.ndarray, spacing, rng: np.random.Generator,
                    channel_first: bool) -> tuple[np.ndarray, np.ndarray]:
    """Random affine, bias field and blur of a region with TorchIO, seeded from `rng`.

    `image` is (*S) or (C, *S) float32, `mask` (*S) bool, `spacing` in array order (mm)
    or None (1). Returns the augmented pair, same shapes.
    """
    import torch
    import torchio as tio

    ndim = mask.ndim
    img = image if channel_first else image[None]
    msk = mask[None]
    if ndim == 2:      # TorchIO works on (C, W, H, D): a 2D image is one slice thick
        img, msk = img[..., None], msk[..., None]
    sp = tuple(float(s) for s in (spacing or (1.0,) * ndim)) + ((1.0,) if ndim == 2 else ())
    affine = np.diag(sp + (1.0,))
    scales = (AUG_SCALES * 2 + (1.0, 1.0)) if ndim == 2 else AUG_SCALES
    lo = float(img.min())
    subject = tio.Subject(
        image=tio.ScalarImage(tensor=torch.from_numpy(np.ascontiguousarray(img - lo)),
                              affine=affine),
        mask=tio.LabelMap(tensor=torch.from_numpy(np.ascontiguousarray(msk.astype(np.uint8))),
                          affine=affine))
    transform = tio.Compose([
        tio.RandomAffine(scales=scales, degrees=AUG_DEGREES[ndim], isotropic=False,
                         default_pad_value="minimum", image_interpolation="linear"),
        tio.RandomBiasField(coefficients=0.3, order=3, p=AUG_INTENSITY_P),
        tio.RandomBlur(std=(0.0, 1.0), p=AUG_INTENSITY_P),
    ])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(rng.integers(2 ** 31)))
        out = transform(subject)
    img_a = out["image"].data.numpy() + lo
    msk_a = out["mask"].data.numpy() != 0
    if ndim == 2:
        img_a, msk_a = img_a[..., 0], msk_a[..., 0]
    img_a = img_a if channel_first else img_a[0]
    return img_a.astype(np.float32, copy=False), msk_a[0]


def _rotation(ndim: int, degrees: Sequence[float]) -> np.ndarray:
    """Rotation matrix in array axes: about axis 0 (turning axes 1, 2), then 1, then 2."""
    if ndim == 2:
        a = math.radians(degrees[-1])
        return np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    r = np.eye(3)
    for axis, deg in enumerate(degrees):
        a = math.radians(deg)
        i, j = [k for k in range(3) if k != axis]
        m = np.eye(3)
        m[i, i] = m[j, j] = math.cos(a)
        m[i, j], m[j, i] = -math.sin(a), math.sin(a)
        r = m @ r
    return r


def _augment_region_torch(image: np.ndarray, mask: np.ndarray, spacing,
                          rng: np.random.Generator, channel_first: bool
                          ) -> tuple[np.ndarray, np.ndarray]:
    """`_augment_region` on PyTorch alone (``augment_backend="torch"``), seeded from `rng`.

    The same transforms and ranges as the TorchIO backend: a random affine in
    physical space about the region's centre (rotation and per-axis scaling from
    `AUG_DEGREES` / `AUG_SCALES`; `torch.nn.functional.grid_sample`, linear for the
    image with the region's minimum outside, nearest for the mask), then with
    probability `AUG_INTENSITY_P` each a multiplicative bias field
    exp(Σ c·x^i y^j z^k), i+j+k ≤ 3, c ~ U(-0.3, 0.3) on coordinates in [-1, 1]
    (TorchIO's `RandomBiasField`) and a Gaussian blur of σ ~ U(0, 1) mm per axis
    (`scipy.ndimage.gaussian_filter`). Shapes and dtypes as `_augment_region`.
    """
    import itertools

    import torch
    from scipy import ndimage
    from torch.nn import functional as F

    ndim = mask.ndim
    img = np.asarray(image if channel_first else image[None], dtype=np.float32)
    sp = np.asarray(spacing or (1.0,) * ndim, dtype=np.float64)
    lims = AUG_DEGREES[ndim]
    deg = [rng.uniform(lims[2 * k], lims[2 * k + 1]) for k in range(3)]
    scales = rng.uniform(*AUG_SCALES, size=ndim)
    # output index o -> input index i = c + D^-1 R S^-1 D (o - c), D = diag(spacing): in mm
    m = np.diag(1.0 / sp) @ _rotation(ndim, deg) @ np.diag(1.0 / scales) @ np.diag(sp)
    shape = mask.shape
    c = (np.asarray(shape, dtype=np.float64) - 1) / 2
    axes = [torch.arange(n, dtype=torch.float64) - cc for n, cc in zip(shape, c)]
    o = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)
    i = o @ torch.from_numpy(m.T) + torch.from_numpy(c)
    norm = 2 * i / torch.from_numpy(np.maximum(np.asarray(shape, dtype=np.float64) - 1, 1)) - 1
    grid = norm.flip(-1)[None].float()          # grid_sample wants (x, y[, z]) = reversed axes
    lo = float(img.min())
    t = torch.from_numpy(img - lo)[None]
    out = F.grid_sample(t, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    msk = F.grid_sample(torch.from_numpy(mask.astype(np.float32))[None, None], grid,
                        mode="nearest", padding_mode="zeros", align_corners=True)
    img_a = out[0].numpy()
    msk_a = msk[0, 0].numpy() >= 0.5
    if rng.random() < AUG_INTENSITY_P:          # bias field, order 3
        coords = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
        field = np.zeros(shape)
        for powers in itertools.product(range(4), repeat=ndim):
            if sum(powers) <= 3:
                term = rng.uniform(-0.3, 0.3)
                for x, pw in zip(coords, powers):
                    term = term * x ** pw
                field += term
        img_a = img_a * np.exp(field).astype(np.float32)
    if rng.random() < AUG_INTENSITY_P:          # blur, sigma in mm
        sigma = rng.uniform(0.0, 1.0, size=ndim) / sp
        img_a = np.stack([ndimage.gaussian_filter(ch, sigma) for ch in img_a])
    img_a = img_a + lo
    img_a = img_a if channel_first else img_a[0]
    return img_a.astype(np.float32, copy=False), msk_a


def make_sample(item: TrainItem, cfg: TrainConfig, rng: np.random.Generator,
                *, augment: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One training sample: network input and grid target.

    Steps: crop a region around the object; (augment) TorchIO random affine
    (rotation ±15° in the last two axes, ±5° about the others in 3D, each axis
    scaled by 0.85-1.15, in physical space), bias field and blur
    (`_augment_region`); simulate interior margin points
    (`midseg.data_sim.interior_margin_points`); crop their relaxed box, resize
    to the grid, z-score (`midseg.predict.crop_to_grid`); (augment) intensity
    sign flip, scale 0.9-1.1, shift ±0.1, Gaussian noise σ ≤ 0.1; cue map
    (`midseg.predict.add_cue`); (augment) random flip of every axis and swap
    of the last two axes.

    Returns
    -------
    x : (C, *grid) ndarray of float32
    target : (*grid) ndarray of float32 (0/1)
    """
    from . import data_sim
    from .predict import add_cue, crop_to_grid

    augment = cfg.augment if augment is None else augment
    mask = np.asarray(item.mask) != 0
    channel_first = np.asarray(item.image).ndim == mask.ndim + 1
    region = _object_region(mask, pad_frac=0.25, pad_min=12)
    img_sl = (slice(None),) + region if channel_first else region
    img = np.asarray(item.image, dtype=np.float32)[img_sl]
    msk = mask[region]
    if augment:
        fn = _augment_region if cfg.augment_backend == "torchio" else _augment_region_torch
        img_a, msk_a = fn(img, msk, item.spacing, rng, channel_first)
        if msk_a.sum() >= max(4, 0.5 * msk.sum()):
            img, msk = img_a, msk_a
    spacing = None if item.spacing is None else tuple(item.spacing)
    points = data_sim.interior_margin_points(msk, rng=rng, spacing=spacing)
    g = crop_to_grid(img, points, cfg.grid_shape, spacing=spacing,
                     channel_axis=0 if channel_first else None, margin=cfg.margin)
    target = g.transform.to_grid(msk.astype(np.float32), order=1) >= 0.5
    grid = g.image
    if augment:
        if rng.random() < cfg.intensity_flip:
            grid = -grid
        grid = grid * rng.uniform(0.9, 1.1) + rng.uniform(-0.1, 0.1)
        grid = grid + rng.normal(0.0, rng.uniform(0.0, 0.1), size=grid.shape)
        grid = grid.astype(np.float32)
    x = add_cue(grid, g.points, cfg.cue, spacing=g.cue_spacing, cue_params=cfg.cue_params)
    if augment:
        for ax in range(cfg.spatial_dims):
            if rng.random() < 0.5:
                x = np.flip(x, axis=ax + 1)
                target = np.flip(target, axis=ax)
        if cfg.grid_shape[-1] == cfg.grid_shape[-2] and rng.random() < 0.5:
            x = np.swapaxes(x, -1, -2)
            target = np.swapaxes(target, -1, -2)
    return np.ascontiguousarray(x, dtype=np.float32), np.ascontiguousarray(target, dtype=np.float32)


# ----------------------------------------------------------------------------------------
# Loss, validation
# ----------------------------------------------------------------------------------------
def _loss(net, logits, target, kind: str):
    import torch
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
    from . import data_sim
    from .predict import prepare_input

    out = []
    for k, item in enumerate(items):
        mask = np.asarray(item.mask) != 0
        channel_first = np.asarray(item.image).ndim == mask.ndim + 1
        for j in range(int(cfg.val_point_sets)):
            rng = np.random.default_rng([seed, 7919, k] if j == 0 else [seed, 7919, k, j])
            pts = data_sim.interior_margin_points(mask, rng=rng, spacing=item.spacing)
            x, g = prepare_input(item.image, pts, cfg.grid_shape, cfg.cue, spacing=item.spacing,
                                 channel_axis=0 if channel_first else None, margin=cfg.margin,
                                 cue_params=cfg.cue_params)
            out.append(_ValCase(x=x, transform=g.transform, mask=mask, name=item.name))
    return out


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
    from . import models as _models

    try:
        # not the per-process cache of load_model: the file may have been retrained since,
        # and the weights must be the ones whose sha256 the card records
        loaded = _models._load_uncached(_models.model_path(cfg.init), "cpu")
    except MidsegError as exc:
        raise InvalidInputError(f"init: {exc}") from exc
    pt, card = loaded.path, loaded.card
    want = {"architecture": dict(net.config), "grid_shape": list(cfg.grid_shape),
            "cue": cfg.cue, "in_channels": in_channels}
    have = {"architecture": dict(card.get("architecture", {})),
            "grid_shape": list(card.get("grid_shape", [])), "cue": card.get("cue"),
            "in_channels": card.get("in_channels")}
    cue_channels = 0 if cfg.cue == "none" else 1
    image_channels = in_channels - cue_channels
    expand = (card.get("image_channels") == 1 and image_channels > 1
              and have["in_channels"] == 1 + cue_channels)
    if expand:
        have = {**have, "in_channels": in_channels,
                "architecture": {**have["architecture"], "in_channels": in_channels}}
    diff = [k for k in want if want[k] != have[k]]
    if diff:
        raise InvalidInputError(
            f"init: model '{pt}' does not match this run in "
            + ", ".join(f"{k} ({have[k]} vs {want[k]})" for k in diff))
    state = loaded.net.state_dict()
    if expand:
        import torch

        first = next(k for k, v in state.items() if k.endswith("weight") and v.ndim >= 3)
        w = state[first]
        parts = [w[:, :1] / image_channels] * image_channels + [w[:, 1:]]
        state = {**state, first: torch.cat(parts, dim=1)}
    net.load_state_dict(state)
    tr = card.get("training", {})
    return {"model": cfg.init, "file": str(pt), "sha256": file_sha256(pt),
            "name": card.get("name"), "iterations": tr.get("weights_from_iteration",
                                                           tr.get("iterations")),
            "command": card.get("command"),
            "image_channels_expanded": (f"1 -> {image_channels}: first convolution's image "
                                        f"weights divided by {image_channels} per channel"
                                        if expand else None)}


def _validate(net, cases: list[_ValCase], device, batch: int) -> float:
    import torch

    if not cases:
        return float("nan")
    was_training = net.training
    net.eval()
    scores = []
    with torch.inference_mode():
        for i in range(0, len(cases), batch):
            chunk = cases[i:i + batch]
            x = torch.from_numpy(np.stack([c.x for c in chunk])).to(device)
            prob = net.foreground_probability(net(x)).float().cpu().numpy()
            for c, p in zip(chunk, prob):
                full = c.transform.paste(p, c.mask.shape, fill=0.0, order=1)
                scores.append(_dice_np(np.asarray(full) >= 0.5, c.mask))
    net.train(was_training)
    return float(np.mean(scores))


# ----------------------------------------------------------------------------------------
# Training loop
# ----------------------------------------------------------------------------------------
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


def _atomic_save(obj, path: Path) -> None:
    import torch

    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def train(items: Sequence[TrainItem], cfg: TrainConfig, out_dir: str | os.PathLike | None = None,
          *, val_items: Sequence[TrainItem] = (), name: str = "model", resume: str | os.PathLike |
          None = None, card_extra: dict | None = None, progress: bool = True,
          max_iterations: int | None = None) -> TrainResult:
    """Train a stage-1 U-Net and (if `out_dir`) write ``NAME.pt`` + ``NAME.json``.

    Parameters
    ----------
    items : sequence of TrainItem
        Training pairs; every mask must contain the object. ``cfg.synthetic``
        synthetic items (`synthetic_items`, seeded by ``cfg.seed``) are appended.
    cfg : TrainConfig
    out_dir : path, optional
        Run folder for ``checkpoint.pt``, ``NAME.pt``, ``NAME.json``. None:
        nothing is written (tests).
    val_items : sequence of TrainItem
        Validation pairs (fixed points, seeded); Dice in image space at 0.5.
    name : str
        Model name (file stem and card ``name``).
    resume : path, optional
        A ``checkpoint.pt`` written by an earlier run with the same config;
        training continues from it and ends with the same weights as an
        uninterrupted run.
    card_extra : dict, optional
        Extra card fields (data description, split, command, licence).
    progress : bool
        Show a tqdm bar with the loss and the last validation Dice.
    max_iterations : int, optional
        Stop after this iteration (the schedule still spans all epochs), with
        a validation there. Unlike ``cfg.max_minutes`` the same on every
        machine: a run cut short by time is repeated, sample for sample, by
        setting this to its card's ``iterations``.

    Returns
    -------
    TrainResult
    """
    import torch
    from tqdm import tqdm

    from .nets import UNet

    if not items:
        raise InvalidInputError("no training items given")
    if cfg.synthetic:
        # part of the config, so a checkpoint cannot be resumed with another mix
        items = list(items) + synthetic_items(cfg.synthetic, cfg.spatial_dims, seed=cfg.seed,
                                              inclusions=cfg.synthetic_inclusions,
                                              large=cfg.synthetic_large, workers=cfg.workers)
    for it in list(items) + list(val_items):
        m = np.asarray(it.mask)
        if m.ndim != cfg.spatial_dims:
            raise InvalidInputError(
                f"item {it.name!r}: mask has {m.ndim} dimensions, the config is {cfg.spatial_dims}D")
        if not np.any(m):
            raise InvalidInputError(f"item {it.name!r}: mask is empty")
    def _channels(it):
        im = np.asarray(it.image)
        return 1 if im.ndim == cfg.spatial_dims else int(im.shape[0])

    counts = {}
    for it in list(items) + list(val_items):
        counts.setdefault(_channels(it), it.name)
    if len(counts) > 1:
        raise InvalidInputError(
            "training items mix image channel counts: "
            + ", ".join(f"{c} (e.g. {n!r})" for c, n in sorted(counts.items()))
            + "; train one model per channel count")
    image_channels = _channels(items[0])
    in_channels = image_channels + (0 if cfg.cue == "none" else 1)

    threads = cfg.threads or min(2, os.cpu_count() or 1)
    torch.set_num_threads(threads)
    device = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(cfg.seed)
    net = UNet(cfg.spatial_dims, in_channels, cfg.out_channels, base=cfg.base, depth=cfg.depth)
    # A resumed run takes its weights (and what it started from) from the checkpoint: the
    # file named by cfg.init may have been replaced since.
    init_info = _init_from(net, cfg, in_channels) if cfg.init and resume is None else None
    net.to(device).train()
    # channels-last is ~25 % faster for 3D convolutions on CPU (oneDNN); same numbers.
    fmt = torch.channels_last_3d if cfg.spatial_dims == 3 else torch.contiguous_format
    net.to(memory_format=fmt)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    n = len(items)
    per_epoch = math.ceil(n / cfg.batch_size)
    total = cfg.epochs * per_epoch
    state = {"iteration": 0, "history": [], "elapsed": 0.0, "best": None}
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    if resume is not None:
        ck = _load_checkpoint(resume)
        if _with_defaults(ck.get("config")) != _cfg_key(cfg):
            raise MidsegError(
                f"checkpoint '{resume}' was written with a different configuration: "
                f"{ck.get('config')} vs {_cfg_key(cfg)}")
        net.load_state_dict(ck["net"])
        opt.load_state_dict(ck["opt"])
        state = ck["state"]
    else:
        state["init"] = init_info

    val_cases = (_make_val_cases(val_items, cfg, cfg.seed if cfg.val_seed is None
                                 else cfg.val_seed) if val_items else [])
    if state.get("init") is not None and val_cases and state["iteration"] == 0:
        # The starting weights are a candidate too: fine-tuning that never beats them on
        # validation leaves them as they were (with --keep-best).
        d0 = _validate(net, val_cases, device, max(cfg.batch_size, 4))
        state["init"]["val_dice"] = round(d0, 5)
        _remember_best(state, net, d0, cfg.keep_best)
        state["history"].append({"iteration": 0, "epoch": 0, "val_dice": round(d0, 5),
                                 "elapsed_s": 0.0})
        print(json.dumps(state["history"][-1]), flush=True)

    def checkpoint():
        if out is None:
            return
        _atomic_save({"net": net.state_dict(), "opt": opt.state_dict(), "state": state,
                      "config": _cfg_key(cfg)}, out / "checkpoint.pt")

    stop_at = total if max_iterations is None else min(total, int(max_iterations))
    t_start = time.perf_counter()
    elapsed0 = state["elapsed"]
    last_ck = time.perf_counter()
    bar = tqdm(total=total, initial=state["iteration"], disable=not progress,
               desc=f"train {name}", dynamic_ncols=True, mininterval=2.0)
    ema = None
    stopped_early = False
    loader = None
    if cfg.workers > 0 and state["iteration"] < stop_at:
        # The same samples as without workers (each is seeded by its place in the run),
        # made ahead in worker processes.
        loader = iter(torch.utils.data.DataLoader(
            _SampleStream(items, cfg, per_epoch, state["iteration"], stop_at),
            batch_size=None, shuffle=False, num_workers=cfg.workers, prefetch_factor=4,
            persistent_workers=False))
    last_val = state["history"][-1]["val_dice"] if state["history"] else float("nan")
    while state["iteration"] < stop_at:
        it = state["iteration"]
        epoch = it // per_epoch
        if loader is None:
            xb, yb = _SampleStream.batch(items, cfg, per_epoch, it)
        else:
            got, xb, yb = next(loader)
            if int(got) != it:
                raise MidsegError(f"sample workers returned iteration {int(got)}, expected {it}")
        lr = lr_at(it, total, cfg.lr, cfg.schedule)
        for grp in opt.param_groups:
            grp["lr"] = lr
        xb = torch.as_tensor(xb).to(device).contiguous(memory_format=fmt)
        yb = torch.as_tensor(yb).to(device)
        opt.zero_grad(set_to_none=True)
        loss = _loss(net, net(xb), yb, cfg.loss)
        loss.backward()
        opt.step()
        lv = float(loss.detach())
        ema = lv if ema is None else 0.95 * ema + 0.05 * lv
        state["iteration"] = it + 1
        state["elapsed"] = elapsed0 + time.perf_counter() - t_start
        done = state["iteration"] == stop_at
        if val_cases and (state["iteration"] % cfg.val_every == 0 or done):
            last_val = _validate(net, val_cases, device, max(cfg.batch_size, 4))
            _remember_best(state, net, last_val, cfg.keep_best)
        if state["iteration"] % cfg.val_every == 0 or done:
            state["history"].append({"iteration": state["iteration"], "epoch": epoch + 1,
                                     "lr": lr, "train_loss": round(lv, 5),
                                     "train_loss_ema": round(ema, 5),
                                     "val_dice": round(last_val, 5),
                                     "elapsed_s": round(state["elapsed"], 1)})
            if progress:
                bar.write(json.dumps(state["history"][-1]))
            else:
                print(json.dumps(state["history"][-1]), flush=True)
        bar.update(1)
        bar.set_postfix(loss=f"{ema:.4f}", val_dice=f"{last_val:.4f}", lr=f"{lr:.1e}",
                        refresh=False)
        if time.perf_counter() - last_ck > 60 * cfg.checkpoint_minutes:
            checkpoint()
            last_ck = time.perf_counter()
        if cfg.max_minutes is not None and state["elapsed"] > 60 * cfg.max_minutes and not done:
            stopped_early = True
            if val_cases:
                last_val = _validate(net, val_cases, device, max(cfg.batch_size, 4))
                _remember_best(state, net, last_val, cfg.keep_best)
            state["history"].append({"iteration": state["iteration"], "epoch": epoch + 1,
                                     "lr": lr, "train_loss_ema": round(ema, 5),
                                     "val_dice": round(last_val, 5),
                                     "elapsed_s": round(state["elapsed"], 1)})
            break
    bar.close()
    stopped_early = stopped_early or state["iteration"] < total
    checkpoint()
    if cfg.keep_best and state.get("best"):
        # Ship the weights with the best validation Dice (model choice on validation only).
        net.load_state_dict(state["best"]["net"])
        last_val = state["best"]["val_dice"]
    net.eval()

    card = _make_card(name, cfg, net, image_channels, in_channels, state, total, per_epoch,
                      n, val_items, last_val, device, threads, stopped_early, card_extra,
                      state.get("init"))
    weights_path = card_path = None
    if out is not None:
        weights_path = out / f"{name}.pt"
        card_path = out / f"{name}.json"
        sd = {k: v.detach().float().cpu().contiguous() for k, v in net.state_dict().items()}
        _atomic_save(sd, weights_path)
        card["weights"] = {"file": weights_path.name, "dtype": "float32",
                           "bytes": weights_path.stat().st_size,
                           "sha256": file_sha256(weights_path)}
        write_json_atomic(card_path, card, indent=2)  # cards keep their indent of 2
    return TrainResult(net=net, card=card, weights_path=weights_path, card_path=card_path,
                       history=state["history"])


class _SampleStream:
    """Map-style dataset of the run's mini-batches: index k is iteration ``start + k``.

    Sample j of iteration `it` is `make_sample` of item ``perm[pos * batch + j]``
    (``perm`` seeded ``[seed, epoch]``) with the generator seeded
    ``[seed, epoch, pos * batch + j]``, whoever computes it.
    """

    def __init__(self, items, cfg: TrainConfig, per_epoch: int, start: int, stop: int):
        self.items, self.cfg, self.per_epoch = items, cfg, per_epoch
        self.start, self.stop = int(start), int(stop)

    def __len__(self) -> int:
        return self.stop - self.start

    @staticmethod
    def batch(items, cfg: TrainConfig, per_epoch: int, it: int):
        """The stacked inputs and targets of iteration `it` (class notes)."""
        epoch, pos = divmod(it, per_epoch)
        first = pos * cfg.batch_size
        chosen = np.random.default_rng([cfg.seed, epoch]).permutation(len(items))[
            first:first + cfg.batch_size]
        xs, ys = zip(*(make_sample(items[int(k)], cfg,
                                   np.random.default_rng([cfg.seed, epoch, first + j]))
                       for j, k in enumerate(chosen)))
        return np.stack(xs), np.stack(ys)

    def __getitem__(self, k: int):
        import torch

        torch.set_num_threads(1)
        it = self.start + int(k)
        return (it, *self.batch(self.items, self.cfg, self.per_epoch, it))


def _load_checkpoint(path) -> dict:
    """A ``checkpoint.pt`` of `train`, loaded as weights and plain data only.

    ``torch.load(weights_only=True)``: tensors, numbers, strings, lists and dicts; a
    file that needs anything else (a pickled object, which could run code) is refused.

    Raises
    ------
    MidsegError
        Missing, unreadable or crafted file, or not a checkpoint of `train`.
    """
    from .models import load_weights_only

    p = Path(path)
    ck = load_weights_only(p, what="checkpoint")
    need = {"net": dict, "opt": dict, "state": dict, "config": dict}
    if not isinstance(ck, dict) or any(not isinstance(ck.get(k), t) for k, t in need.items()):
        raise MidsegError(f"'{p}' is not a checkpoint written by midseg train "
                          f"(expected a dict with {', '.join(need)})")
    if not isinstance(ck["state"].get("iteration"), int):
        raise MidsegError(f"checkpoint '{p}': state.iteration is missing or not an integer")
    return ck


def _remember_best(state: dict, net, dice: float, keep: bool) -> None:
    if not keep or not np.isfinite(dice):
        return
    best = state.get("best")
    if best is None or dice > best["val_dice"]:
        state["best"] = {"iteration": state["iteration"], "val_dice": float(dice),
                         "net": {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}}


def _resolved_margin(margin):
    """The box margin actually used, so a later change of the default cannot alter the model."""
    if margin is None:
        from .crop import DEFAULT_MARGIN

        return DEFAULT_MARGIN
    return list(margin) if isinstance(margin, (tuple, list)) else int(margin)


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


def _make_card(name, cfg, net, image_channels, in_channels, state, total, per_epoch, n,
               val_items, last_val, device, threads, stopped_early, extra,
               init_info=None) -> dict:
    import torch

    from . import __version__

    iterations = state["iteration"]
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
        "normalisation": ("input: crop of the relaxed box resized (linear) to the grid, "
                          "z-scored per channel; network: affine instance normalisation"),
        "output": ("2 logits, foreground = softmax channel 1" if net.out_channels == 2
                   else "1 logit, foreground = sigmoid"),
        "training": {
            "items": n,
            "epochs_planned": cfg.epochs,
            "epochs": round(iterations / per_epoch, 2),
            "iterations": iterations,
            "iterations_planned": total,
            "stopped_early": stopped_early,
            "weights_from_iteration": (state["best"]["iteration"]
                                       if cfg.keep_best and state.get("best") else iterations),
            "model_choice": ("the iteration with the best validation Dice"
                             if cfg.keep_best else "the last iteration"),
            "batch_size": cfg.batch_size,
            "optimizer": "Adam",
            "lr": cfg.lr,
            "weight_decay": cfg.weight_decay,
            "schedule": cfg.schedule,
            "loss": cfg.loss,
            "augmentation": (
                ("TorchIO RandomAffine" if cfg.augment_backend == "torchio" else
                 "affine (PyTorch grid_sample)")
                + " in physical space: rotation ±15° in the last two axes "
                "(±5° about the others in 3D), per-axis scaling 0.85-1.15; "
                + ("TorchIO " if cfg.augment_backend == "torchio" else "")
                + "bias field "
                f"(coefficients 0.3) and blur (σ≤1 mm), each p={AUG_INTENSITY_P}; random flip of "
                "every axis and swap of the last two, intensity sign flip "
                f"(p={cfg.intensity_flip}), scale 0.9-1.1, shift ±0.1, Gaussian noise σ≤0.1; "
                "fresh simulated interior margin points for every sample"
                if cfg.augment else "none (fresh simulated points only)"),
            "seed": cfg.seed,
            "initialised_from": init_info,
            "wall_time_s": round(state["elapsed"], 1),
            "hardware": _hardware(device, threads),
            "torch_version": torch.__version__,
            "midseg_version": __version__,
            "history": state["history"],
        },
        "validation": {
            "items": len(val_items),
            "metric": ("Dice at probability 0.5 in image space, "
                       + ("one fixed set" if cfg.val_point_sets == 1 else
                          f"mean over {cfg.val_point_sets} fixed sets")
                       + " of simulated points per item, seeded by "
                       + ("the training seed" if cfg.val_seed is None
                          else f"val_seed {cfg.val_seed}")),
            "dice": None if not val_items else round(float(last_val), 4),
        },
    }
    if extra:
        for k, v in extra.items():
            if isinstance(v, dict) and isinstance(card.get(k), dict):
                card[k].update(v)
            else:
                card[k] = v
    v = card["validation"]
    v["summary"] = ("no validation set" if v["dice"] is None else
                    f"mean Dice {v['dice']:.3f} over {v['items']} item(s)"
                    + (f" ({v['note']})" if v.get("note") else ""))
    return card


# ----------------------------------------------------------------------------------------
# Data: BraTS-style case folders
# ----------------------------------------------------------------------------------------
def _read(path: Path) -> tuple[np.ndarray, tuple[float, ...]]:
    from .io import read_image

    if not path.is_file():
        raise InvalidInputError(f"file '{path}' does not exist")
    img = read_image(path)
    return img.array, tuple(img.spacing)


def load_brats_items(root: str | os.PathLike, cases: Sequence[str], *, spatial_dims: int,
                     image_name: str = "T1c_subtrMeanDivStd.nii.gz",
                     label_name: str = "OTMultiClass.nii.gz",
                     labels: Sequence[int] = (1, 3, 4), min_area: int = 30) -> list[TrainItem]:
    """Training items from case folders ``root/CASE/{image_name,label_name}``.

    The target is the union of `labels` (default tumour core {1, 3, 4}). In 2D
    every axial slice whose target has at least `min_area` pixels is one item
    (smaller cross-sections are mostly partial-volume tips that no user would
    outline); in 3D every volume is one item.
    """
    root = Path(root)
    items = []
    for case in cases:
        img, spacing = _read(root / case / image_name)
        lab, _ = _read(root / case / label_name)
        if img.shape != lab.shape:
            raise InvalidInputError(
                f"case {case}: image {img.shape} and labels {lab.shape} differ in shape")
        mask = np.isin(lab, list(labels))
        img = img.astype(np.float32)
        if spatial_dims == 3:
            if mask.any():
                items.append(TrainItem(img, mask, spacing, case))
            continue
        for z in np.nonzero(mask.sum(axis=(1, 2)) >= min_area)[0]:
            items.append(TrainItem(np.ascontiguousarray(img[z]), np.ascontiguousarray(mask[z]),
                                   spacing[1:], f"{case}:z{int(z)}"))
    return items


# ----------------------------------------------------------------------------------------
# Data: synthetic shapes (mixed into training when asked; the card says so)
# ----------------------------------------------------------------------------------------
def _check_probability(name: str, value) -> None:
    if not 0.0 <= float(value) <= 1.0:
        raise InvalidInputError(f"{name} must be a probability in [0, 1], got {value!r}")


def _smooth_noise(shape: tuple[int, ...], scale: float, rng: np.random.Generator) -> np.ndarray:
    """Zero-mean, unit-variance Gaussian-filtered noise with correlation length `scale` voxels."""
    from scipy import ndimage

    n = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), scale,
                                mode="wrap")
    sd = float(n.std())
    return n / sd if sd > 0 else n


def _random_shape(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """One connected, hole-free blob: a randomly oriented ellipsoid whose radius is
    perturbed by smooth noise (lobes, dents, flattened sides)."""
    from scipy import ndimage

    ndim = len(shape)
    size = np.asarray(shape, dtype=np.float64)
    radii = rng.uniform(0.12, 0.38, size=ndim) * size.min()
    centre = size / 2 + rng.uniform(-0.12, 0.12, size=ndim) * size
    q, _ = np.linalg.qr(rng.standard_normal((ndim, ndim)))
    grids = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij")
    coords = np.stack([g - c for g, c in zip(grids, centre)], axis=-1) @ q.astype(np.float32)
    r = np.sqrt(np.sum((coords / radii.astype(np.float32)) ** 2, axis=-1))
    wobble = rng.uniform(0.0, 0.35) * _smooth_noise(shape, rng.uniform(4, 12), rng)
    mask = r + wobble < 1.0
    lab, n = ndimage.label(mask)
    if n > 1:
        sizes = ndimage.sum(mask, lab, index=np.arange(1, n + 1))
        mask = lab == 1 + int(np.argmax(sizes))
    return ndimage.binary_fill_holes(mask)


def synthetic_item(shape: Sequence[int], rng: np.random.Generator | int | None = None,
                   name: str = "synthetic", inclusions: float = 0.0) -> TrainItem:
    """A synthetic (image, mask) pair: a random blob in a random textured scene.

    The scene varies what a stage-1 network must not rely on for an unseen
    object: object and background intensity (either may be brighter, contrast
    from faint to strong), texture, a bright or dark rim on either side of the
    boundary, distractor blobs that may touch the object, blur, additive
    Gaussian or multiplicative (speckle-like) noise and a smooth bias field.
    Only the boundary of the object defines the target, which is what the cue
    map of interior margin points points at.

    With probability `inclusions` the object also gets parts unlike the rest
    of it (necrosis in a tumour, ventricles and sulci in a brain, vessels in a
    liver): one to three blobs, or a patchwork of smooth-noise islands, inside
    the object, each brighter or darker by 1 to 3, and still the object. Their
    edges are strong but are not its boundary, and they cut the geodesic cue
    short inside the object.

    Parameters
    ----------
    shape : sequence of int
        (Y, X) or (Z, Y, X) size of the image, e.g. (128, 128).
    rng : numpy Generator, int seed or None
    name : str
    inclusions : float in [0, 1], default 0
        Probability of inner parts. At 0 no random number is drawn for them, so
        items are the same as before the option existed.

    Returns
    -------
    TrainItem
        float32 image (not normalised: training z-scores the crop), bool mask.
    """
    from scipy import ndimage

    from ._checks import as_rng

    rng = as_rng(rng)
    shape = tuple(int(s) for s in shape)
    if len(shape) not in (2, 3) or min(shape) < 16:
        raise InvalidInputError(f"shape must be 2D or 3D with sides >= 16, got {shape}")
    _check_probability("inclusions", inclusions)
    mask = _random_shape(shape, rng)
    contrast = rng.uniform(0.4, 3.0) * rng.choice([-1.0, 1.0])
    image = (rng.uniform(0.2, 1.0) * _smooth_noise(shape, rng.uniform(1.0, 6.0), rng)
             + np.where(mask, contrast, 0.0).astype(np.float32)
             + rng.uniform(0.0, 0.8) * mask * _smooth_noise(shape, rng.uniform(1.0, 4.0), rng))
    if inclusions > 0 and rng.random() < inclusions:
        core = ndimage.binary_erosion(mask, iterations=2)
        if rng.random() < 0.5:
            parts = [_random_shape(shape, rng) & core for _ in range(int(rng.integers(1, 4)))]
        else:
            noise = _smooth_noise(shape, rng.uniform(2.0, 6.0), rng)
            parts = [core & (noise > rng.uniform(0.3, 1.2))]
        for part in parts:
            image = image + rng.uniform(1.0, 3.0) * rng.choice([-1.0, 1.0]) * part
    for _ in range(int(rng.integers(0, 4))):  # distractors, possibly touching the object
        other = _random_shape(shape, rng) & ~ndimage.binary_dilation(mask, iterations=1)
        image = image + rng.uniform(-3.0, 3.0) * other
    if rng.random() < 0.5:  # a rim (skull, capsule, wall) inside or outside the boundary
        width = int(rng.integers(1, 5))
        grown = ndimage.binary_dilation(mask, iterations=width)
        rim = grown & ~mask if rng.random() < 0.6 else mask & ~ndimage.binary_erosion(
            mask, iterations=width)
        image = image + rng.uniform(1.0, 4.0) * rng.choice([-1.0, 1.0]) * rim
    image = ndimage.gaussian_filter(image.astype(np.float32), rng.uniform(0.0, 1.5))
    if rng.random() < 0.5:
        image = image + rng.uniform(0.05, 0.8) * rng.standard_normal(shape)
    else:  # multiplicative, speckle-like: positive image times gamma-distributed noise
        image = (image - image.min() + 0.5) * rng.gamma(rng.uniform(2.0, 10.0), size=shape)
    if rng.random() < 0.5:
        image = image * np.exp(0.3 * _smooth_noise(shape, min(shape) / 3, rng))
    return TrainItem(image.astype(np.float32), mask, None, name)


def _synthetic_k(args) -> TrainItem:
    k, seed, spatial_dims, inclusions, large = args
    shape = (128, 128) if spatial_dims == 2 else (48, 96, 96)
    big = large > 0 and np.random.default_rng([seed, 104729, k, 1]).random() < large
    return synthetic_item(tuple(2 * s for s in shape) if big else shape,
                          np.random.default_rng([seed, 104729, k]), f"synthetic:{k}",
                          inclusions=inclusions)


def synthetic_items(n: int, spatial_dims: int, seed: int = 0, inclusions: float = 0.0,
                    large: float = 0.0, workers: int = 0) -> list[TrainItem]:
    """`n` deterministic synthetic items (128x128 in 2D, 48x96x96 in 3D) for seed `seed`.

    `inclusions` as in `synthetic_item`. With probability `large` an item is twice
    as large on every axis (256x256, 96x192x192): its object is then often larger
    than the network's grid, so its crop is shrunk rather than enlarged (a large organ
    rather than a lesion). At ``large=0`` no random number is drawn for it. With
    `workers` > 0 the items are made in that many processes (the same items).
    """
    _check_probability("large", large)
    jobs = [(k, seed, spatial_dims, inclusions, large) for k in range(int(n))]
    if workers > 0 and len(jobs) > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else None
        with ProcessPoolExecutor(min(int(workers), len(jobs)),
                                 mp_context=multiprocessing.get_context(method)) as ex:
            return list(ex.map(_synthetic_k, jobs))
    return [_synthetic_k(j) for j in jobs]


# ----------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``midseg train``."""
    p = parser
    p.add_argument("--dims", type=int, choices=(2, 3), required=True,
                   help="2: axial slices, 64x64 grid; 3: volumes, 64x96x96 grid")
    p.add_argument("--pool", default=None, metavar="SET[:REPEAT],...",
                   help="train on registry sets (midseg.datasets.REGISTRY, role 'pool'): "
                        "their train split and default targets, validation on their "
                        "validation split; REPEAT lists a set's items that many times per "
                        "epoch (e.g. 'sts:2,fetal_brain_atlas,brats2013:2'). --data is then "
                        "the data root (default ../shared/data)")
    p.add_argument("--pool-targets", action="append", default=[], metavar="SET=T1+T2",
                   help="with --pool: train on these targets of SET instead of its default "
                        "ones (e.g. sts=tumour_petct for the two-channel PET/CT model; "
                        "repeatable)")
    p.add_argument("--slice-step", action="append", default=[], metavar="SET=N",
                   help="with --pool in 2D: keep every N-th qualifying slice of SET, in its "
                        "training and validation cases (repeatable)")
    p.add_argument("--data", default=None,
                   help="folder of case folders, each holding the image and the label file "
                        "(with --pool: the data root)")
    p.add_argument("--train-cases", default=None,
                   help="comma-separated case folder names to train on (without --pool)")
    p.add_argument("--val-cases", default="",
                   help="comma-separated case folders for validation Dice (may overlap the "
                        "training cases; the card then says so)")
    p.add_argument("--image-name", default="T1c_subtrMeanDivStd.nii.gz",
                   help="image file inside each case folder (default: %(default)s)")
    p.add_argument("--label-name", default="OTMultiClass.nii.gz",
                   help="label file inside each case folder (default: %(default)s)")
    p.add_argument("--labels", default="1,3,4",
                   help="labels forming the target (default: %(default)s = tumour core)")
    p.add_argument("--min-area", type=int, default=30,
                   help="2D: skip slices whose target has fewer pixels (default: %(default)s)")
    p.add_argument("--synthetic", type=int, default=0, metavar="N",
                   help="mix N synthetic shapes (midseg.train.synthetic_item, seeded by --seed) "
                        "into the training items; the card says so (default: %(default)s)")
    p.add_argument("--synthetic-inclusions", type=float, default=0.0, metavar="P",
                   help="probability that a synthetic shape has inner parts of another "
                        "intensity (midseg.train.synthetic_item; default: %(default)s)")
    p.add_argument("--synthetic-large", type=float, default=0.0, metavar="P",
                   help="probability that a synthetic shape is twice as large on every axis, "
                        "so that its crop is shrunk to the grid (midseg.train.synthetic_items; "
                        "default: %(default)s)")
    p.add_argument("--cue", default="egd",
                   help="cue map kind (midseg.cues.CUE_KINDS) or 'none' for the image only "
                        "(default: %(default)s)")
    p.add_argument("--cue-param", action="append", default=[], metavar="KEY=VALUE",
                   help="extra keyword argument for the cue map (repeatable)")
    p.add_argument("--grid", default=None,
                   help="network grid, e.g. 64,64 or 64,96,96 (default by --dims)")
    p.add_argument("--base", type=int, default=None,
                   help="first-level width (default 16 in 2D, 8 in 3D)")
    p.add_argument("--epochs", type=int, default=100, help="epochs (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="mini-batch size (default 4 in 2D, 1 in 3D)")
    p.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate (default: %(default)s)")
    p.add_argument("--weight-decay", type=float, default=1e-4, help="(default: %(default)s)")
    p.add_argument("--schedule", choices=("step", "poly", "constant"), default="step",
                   help="lr schedule (default: %(default)s: halve every tenth after half the run)")
    p.add_argument("--loss", choices=("dice", "dice+ce"), default="dice+ce",
                   help="(default: %(default)s)")
    p.add_argument("--no-augment", action="store_true", help="switch augmentation off")
    p.add_argument("--augment-backend", choices=AUGMENT_BACKENDS, default="torchio",
                   help="library of the affine, bias-field and blur augmentation: torchio, or "
                        "torch alone where TorchIO/SimpleITK are missing; the same ranges, not "
                        "the same samples (default: %(default)s)")
    p.add_argument("--workers", type=int, default=0, metavar="N",
                   help="make the samples in N worker processes (the same samples as with 0; "
                        "for a GPU, whose speed the single-process sampling wastes; default: "
                        "%(default)s)")
    p.add_argument("--cache", default=None, metavar="DIR",
                   help="with --pool: keep the items read from the registry sets in DIR "
                        "(.npz, cropped around each object) and read them from there on the "
                        "next run, e.g. on a machine without the data or SimpleITK")
    p.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    p.add_argument("--out", required=True, help="run folder (checkpoint, weights, card)")
    p.add_argument("--name", default=None, help="model name (default: '2d' or '3d')")
    p.add_argument("--init", default=None, metavar="MODEL",
                   help="start from the weights of this model (shipped name or .pt with its "
                        "card; same architecture, grid and cue) instead of random ones: "
                        "fine-tuning; the card records it")
    p.add_argument("--resume", default=None, metavar="CHECKPOINT",
                   help="continue from a checkpoint.pt ('auto': OUT/checkpoint.pt if present)")
    p.add_argument("--val-every", type=int, default=200,
                   help="iterations between validations (default: %(default)s)")
    p.add_argument("--val-point-sets", type=int, default=1, metavar="K",
                   help="simulated point sets per validation item; the validation Dice is "
                        "their mean (default: %(default)s)")
    p.add_argument("--val-seed", type=int, default=None, metavar="S",
                   help="seed of the validation points (default: --seed); give two runs "
                        "the same one to compare their validation Dice")
    p.add_argument("--no-validation", action="store_true",
                   help="with --pool: read no validation split (validate the written model "
                        "elsewhere); --keep-best then has nothing to choose on")
    p.add_argument("--keep-best", action="store_true",
                   help="ship the weights of the validation with the best Dice, not the last")
    p.add_argument("--checkpoint-minutes", type=float, default=5.0,
                   help="minutes between checkpoints (default: %(default)s)")
    p.add_argument("--max-minutes", type=float, default=None,
                   help="stop (and write the model) after this much training time")
    p.add_argument("--max-iterations", type=int, default=None, metavar="N",
                   help="stop (and write the model) after N iterations; the lr schedule still "
                        "spans --epochs. Unlike --max-minutes the same on every machine: a run "
                        "cut short by time is repeated, sample for sample, with N = its card's "
                        "iterations")
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


def _cases(text: str) -> list[str]:
    return [c.strip() for c in text.split(",") if c.strip()]


def _with_init_licence(licence: str | None, init: str) -> str:
    """`licence` plus the licence of the starting model's weights (fine-tuned weights
    derive from them)."""
    from . import models as _models

    try:
        card = _models.read_card(_models.model_path(init))
    except MidsegError as exc:
        raise InvalidInputError(f"init: {exc}") from exc
    inherited = card.get("licence")
    if not inherited:
        return licence or ""
    return ((licence + " " if licence else "")
            + f"Initialised from the weights of model {card.get('name', init)!r}, which carry: "
            + inherited)


def _command_line(args: argparse.Namespace) -> str:
    """The command that started this run, for the card."""
    # Through the `midseg` console script sys.argv[1:] already starts with "train".
    return getattr(args, "command_line", None) or "midseg " + " ".join(
        shlex.quote(a) for a in sys.argv[1:])


def _pool_licence(sets: list[dict]) -> str:
    """The licence line of a card trained on registry `sets` (their licences, and the
    non-commercial terms when one of them has them)."""
    text = "; ".join(f"{s['set']}: {s['licence']}" for s in sets) + "."
    nc = [s["set"] for s in sets if s["non_commercial"]]
    if "brats2013" in nc:
        text += " " + LICENCE_BRATS
    elif nc:
        text += (f" Non-commercial because of {', '.join(nc)}: use the weights for "
                 "non-commercial purposes, with attribution.")
    return text


#: Padding of the cached crops: a fraction of the object's extent, at least this many voxels.
CACHE_PAD = (0.3, 16)


def _pool_items(cache: str | None, name: str, split: str, kw: dict) -> list[TrainItem]:
    """`midseg.datasets.training_items`, through the ``--cache`` folder when one is given.

    A cached file holds one copy of each image (a case's targets share it), integer-valued
    images as int16 (lossless), cropped around its objects' boxes padded by `CACHE_PAD`,
    more than training (`make_sample`, `_object_region` 25 % / 12 voxels) and validation
    (the relaxed box of points inside the object) look at: the samples are the same as
    from the whole images. The file name hashes the set, split and
    reading options; the data root is recorded inside, not checked.
    """
    import hashlib

    from . import datasets

    if cache is None:
        return datasets.training_items(name, split, **kw)
    key = {"set": name, "split": split, "dims": kw["dims"], "min_area": kw["min_area"],
           "slice_step": kw["slice_step"],
           "targets": None if kw.get("targets") is None else list(kw["targets"])}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    path = Path(cache) / f"{name}-{split}-{digest}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            images = {}
            out = []
            for k, n in enumerate(str(v) for v in z["names"]):
                j = int(z["which"][k])
                if j not in images:
                    images[j] = z[f"image{j}"].astype(np.float32, copy=False)
                box = z["boxes"][k]
                region = tuple(slice(int(a), int(b)) for a, b in box)
                img = images[j]
                out.append(TrainItem(img[(slice(None),) * (img.ndim - len(region)) + region],
                                     z[f"mask{k}"], tuple(float(v) for v in z[f"spacing{k}"]),
                                     n))
            return out
    items = datasets.training_items(name, split, **kw)
    # One copy of each image (the targets of a case share it), cropped to the union of its
    # items' regions; each item keeps its region inside that crop and its cropped mask.
    groups: dict[str, list[int]] = {}
    for k, it in enumerate(items):
        groups.setdefault(hashlib.sha256(np.ascontiguousarray(it.image).tobytes()).hexdigest(),
                          []).append(k)
    arrays = {"names": np.array([it.name for it in items]),
              "key": np.array(json.dumps(key)), "root": np.array(str(kw["data_root"]))}
    which = np.zeros(len(items), dtype=np.int64)
    boxes = np.zeros((len(items), kw["dims"], 2), dtype=np.int64)
    for j, members in enumerate(groups.values()):
        regions = {k: _object_region(np.asarray(items[k].mask) != 0, pad_frac=CACHE_PAD[0],
                                     pad_min=CACHE_PAD[1])
                   for k in members}
        lo = [min(regions[k][ax].start for k in members) for ax in range(kw["dims"])]
        hi = [max(regions[k][ax].stop for k in members) for ax in range(kw["dims"])]
        union = tuple(slice(a, b) for a, b in zip(lo, hi))
        image = np.asarray(items[members[0]].image, dtype=np.float32)
        image = image[(slice(None),) * (image.ndim - kw["dims"]) + union]
        whole = np.round(image)
        if (np.array_equal(whole, image) and whole.size
                and -32768 <= whole.min() and whole.max() <= 32767):
            image = whole.astype(np.int16)      # integer-valued (CT in HU, most MR): lossless
        arrays[f"image{j}"] = image
        for k in members:
            which[k] = j
            boxes[k] = [(r.start - a, r.stop - a) for r, a in zip(regions[k], lo)]
            arrays[f"mask{k}"] = (np.asarray(items[k].mask) != 0)[regions[k]]
            arrays[f"spacing{k}"] = np.asarray(items[k].spacing, dtype=np.float64)
    arrays["which"], arrays["boxes"] = which, boxes
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)
    return _pool_items(cache, name, split, kw)


def _pool_data(args: argparse.Namespace, cfg: TrainConfig):
    """Items, validation items, card fields and real-item count for ``--pool``."""
    from . import datasets

    root = Path(args.data) if args.data else datasets.data_root_default()
    steps = {}
    for pair in args.slice_step:
        k, _, v = pair.partition("=")
        if not v.isdigit() or int(v) < 1:
            raise InvalidInputError(f"--slice-step must be SET=N with N >= 1, got {pair!r}")
        steps[k.strip()] = int(v)
    if args.dims == 3 and args.slice_step:
        raise InvalidInputError("--slice-step applies to 2D training (--dims 2) only")
    chosen = {}
    for pair in args.pool_targets:
        k, _, v = pair.partition("=")
        names = tuple(t.strip() for t in v.split("+") if t.strip())
        if not names:
            raise InvalidInputError(f"--pool-targets must be SET=T1+T2, got {pair!r}")
        if k.strip() in chosen:
            raise InvalidInputError(
                f"--pool-targets names {k.strip()!r} twice; give its targets once as SET=T1+T2")
        if len(set(names)) != len(names):
            raise InvalidInputError(f"--pool-targets lists a target twice: {pair!r}")
        chosen[k.strip()] = names
    items, val_items, sets = [], [], []
    names = [part.partition(":")[0] for part in _cases(args.pool)]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise InvalidInputError(f"--pool names {twice} more than once; use SET:REPEAT to "
                                "weight a set")
    for part in _cases(args.pool):
        name, _, rep = part.partition(":")
        if rep and (not rep.isdigit() or int(rep) < 1):
            raise InvalidInputError(f"--pool repeat must be an integer >= 1, got {part!r}")
        repeat = int(rep or 1)
        kw = dict(dims=args.dims, data_root=root, min_area=args.min_area,
                  slice_step=steps.get(name, 1), targets=chosen.get(name))
        tr = _pool_items(args.cache, name, "train", kw)
        va = [] if args.no_validation else _pool_items(args.cache, name, "validation", kw)
        ds = datasets.REGISTRY[name]
        items += tr * repeat
        val_items += va
        excluded = [t for t in chosen.get(name, ()) if ds.target(t).role == "excluded"]
        if excluded:
            print(f"note: {name} target(s) {excluded} are left out of the default targets "
                  "(see midseg.datasets); the card records that they were named", flush=True)
        sets.append({"set": name, "licence": ds.licence, "non_commercial": ds.non_commercial,
                     "excluded_targets_named": excluded or None,
                     "train_cases": list(ds.splits["train"]),
                     "validation_cases": list(ds.splits["validation"]),
                     "targets": sorted({i.name.split("/")[2].split(":")[0] for i in tr}),
                     "items": len(tr), "repeat": repeat, "validation_items": len(va),
                     "slice_step": steps.get(name, 1) if args.dims == 2 else None})
    in_pool = {s["set"] for s in sets}
    for option, given in (("--slice-step", steps), ("--pool-targets", chosen)):
        unknown = set(given) - in_pool
        if unknown:
            raise InvalidInputError(f"{option} names sets not in --pool: {sorted(unknown)}")
    extra = {
        "data": {
            "description": ("registry sets (midseg.datasets.REGISTRY), one item per "
                            "(case, target)" + (f", axial slices with >= {args.min_area} "
                                                "target pixels" if args.dims == 2 else
                                                ", whole volumes")
                            + (f"; plus {args.synthetic} synthetic shapes" if args.synthetic
                               else "")),
            "root": str(root), "sets": sets,
            "training_items": len(items) + args.synthetic, "real_items": len(items),
            "synthetic_items": args.synthetic,
        },
        "split": {"train": [f"{s['set']}/{c}" for s in sets for c in s["train_cases"]],
                  "validation": [f"{s['set']}/{c}" for s in sets
                                 for c in s["validation_cases"]],
                  "validation_held_out": True},
        "command": _command_line(args),
        "validation": {"note": None},
        "licence": _pool_licence(sets),
    }
    return items, val_items, extra, len(items)


def run(args: argparse.Namespace) -> int:
    """Run ``midseg train`` from parsed arguments; returns the exit status."""
    if args.no_validation and (args.keep_best or not args.pool):
        raise InvalidInputError("--no-validation goes with --pool and without --keep-best "
                                "(nothing to choose the best weights on)")
    if args.cache and not args.pool:
        raise InvalidInputError("--cache goes with --pool")
    if args.max_iterations is not None and args.max_iterations < 1:
        raise InvalidInputError(f"--max-iterations must be >= 1, got {args.max_iterations}")
    if args.cue != "none":
        from . import cues

        if args.cue not in cues.CUE_KINDS:
            raise InvalidInputError(
                f"--cue must be one of {', '.join(cues.CUE_KINDS)} or 'none', got {args.cue!r}")
    grid = None if args.grid is None else tuple(int(g) for g in args.grid.split(","))
    cfg = TrainConfig(
        spatial_dims=args.dims, grid_shape=grid, cue=args.cue,
        cue_params=_parse_params(args.cue_param), base=args.base, epochs=args.epochs,
        batch_size=args.batch_size or (4 if args.dims == 2 else 1), lr=args.lr,
        weight_decay=args.weight_decay, schedule=args.schedule, loss=args.loss,
        augment=not args.no_augment, augment_backend=args.augment_backend,
        workers=args.workers, synthetic=args.synthetic,
        synthetic_inclusions=args.synthetic_inclusions,
        synthetic_large=args.synthetic_large, seed=args.seed,
        init=args.init, val_every=args.val_every, val_point_sets=args.val_point_sets,
        val_seed=args.val_seed,
        keep_best=args.keep_best,
        checkpoint_minutes=args.checkpoint_minutes, max_minutes=args.max_minutes,
        threads=args.threads, device=args.device)
    name = args.name or f"{args.dims}d"
    out = Path(args.out)
    resume = args.resume
    if resume == "auto":
        resume = out / "checkpoint.pt" if (out / "checkpoint.pt").is_file() else None
    if resume is not None:
        _load_checkpoint(resume)     # refuse a bad checkpoint before reading any data
    if args.pool:
        items, val_items, extra, n_real = _pool_data(args, cfg)
    else:
        if not args.data or not args.train_cases:
            raise InvalidInputError("give --pool, or --data and --train-cases")
        labels = [int(v) for v in args.labels.split(",")]
        train_cases, val_cases = _cases(args.train_cases), _cases(args.val_cases)
        kw = dict(spatial_dims=args.dims, image_name=args.image_name,
                  label_name=args.label_name, labels=labels, min_area=args.min_area)
        items = load_brats_items(args.data, train_cases, **kw)
        val_items = load_brats_items(args.data, val_cases, **kw) if val_cases else []
        n_real = len(items)
        overlap = sorted(set(train_cases) & set(val_cases))
        extra = {
            "data": {
                "description": (f"{args.image_name} of {len(train_cases)} case(s) from "
                                f"'{Path(args.data).name}', target = labels {labels}"
                                + (f", axial slices with >= {args.min_area} target pixels"
                                   if args.dims == 2 else ", whole volumes")
                                + (f"; plus {args.synthetic} synthetic shapes "
                                   "(midseg.train.synthetic_items, seed = --seed): random blobs "
                                   "in random textured scenes, no real image"
                                   + (f"; with probability {args.synthetic_inclusions:g} a shape "
                                      "has inner parts of another intensity"
                                      if args.synthetic_inclusions else "")
                                   + (f"; with probability {args.synthetic_large:g} a shape "
                                      "is twice as large on every axis"
                                      if args.synthetic_large else "")
                                   if args.synthetic else "")),
                "root": str(args.data),
                "image": args.image_name, "labels_file": args.label_name,
                "target_labels": labels,
                "min_area": args.min_area if args.dims == 2 else None,
                "training_items": n_real + args.synthetic,
                "real_items": n_real,
                "synthetic_items": args.synthetic,
            },
            "split": {"train": train_cases, "validation": val_cases,
                      "validation_held_out": not overlap},
            "command": _command_line(args),
            "validation": {"note": None if not overlap else
                           f"validation case(s) {overlap} were also used for training: this is "
                           "a fit check, not a held-out estimate"},
        }
        if "brats" in str(args.data).lower():
            extra["licence"] = LICENCE_BRATS
    print(f"training {name}: {n_real} + {cfg.synthetic} synthetic items, "
          f"{len(val_items)} validation items, {cfg.epochs} epochs of "
          f"{math.ceil((n_real + cfg.synthetic) / cfg.batch_size)} iterations",
          flush=True)
    if cfg.init:
        extra["licence"] = _with_init_licence(extra.get("licence"), cfg.init)
    result = train(items, cfg, out, val_items=val_items, name=name, resume=resume,
                   card_extra=extra, progress=not args.no_progress,
                   max_iterations=args.max_iterations)
    print(f"wrote {result.weights_path} and {result.card_path}; "
          f"{result.card['validation']['summary']}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m midseg.train ...``: same options as ``midseg train``."""
    parser = argparse.ArgumentParser(prog="midseg train", description=__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    args.command_line = "midseg train " + " ".join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    return run(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
