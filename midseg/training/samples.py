"""Training samples: reading items, simulated margin points, network inputs, the item cache.

A sample is made from one `TrainItem` with a generator seeded by its place in the
run (`_SampleStream`): region around the object -> augmentation -> simulated
interior margin points -> crop to the grid -> cue map (`make_sample`). Items come
from BraTS-style case folders (`load_brats_items`) or the dataset registry
(`midseg.datasets`, through the ``--cache`` folder: `_pool_items`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import InvalidInputError
from .augment import _augment_region, _augment_region_torch
from .config import TrainConfig, TrainItem


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


def make_sample(
    item: TrainItem, cfg: TrainConfig, rng: np.random.Generator, *, augment: bool | None = None
) -> tuple[np.ndarray, np.ndarray]:
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
    from .. import data_sim
    from ..predict import add_cue, crop_to_grid

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
    assert cfg.grid_shape is not None  # TrainConfig.__post_init__ filled it in
    g = crop_to_grid(
        img,
        points,
        cfg.grid_shape,
        spacing=spacing,
        channel_axis=0 if channel_first else None,
        margin=cfg.margin,
    )
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
# Mini-batches of a run
# ----------------------------------------------------------------------------------------
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
            first : first + cfg.batch_size
        ]
        xs, ys = zip(
            *(
                make_sample(items[int(k)], cfg, np.random.default_rng([cfg.seed, epoch, first + j]))
                for j, k in enumerate(chosen)
            )
        )
        return np.stack(xs), np.stack(ys)

    def __getitem__(self, k: int):
        import torch

        torch.set_num_threads(1)
        it = self.start + int(k)
        return (it, *self.batch(self.items, self.cfg, self.per_epoch, it))


# ----------------------------------------------------------------------------------------
# Data: BraTS-style case folders
# ----------------------------------------------------------------------------------------
def _read(path: Path) -> tuple[np.ndarray, tuple[float, ...]]:
    from ..io import read_image

    if not path.is_file():
        raise InvalidInputError(f"file '{path}' does not exist")
    img = read_image(path)
    return img.array, tuple(img.spacing)


def load_brats_items(
    root: str | os.PathLike,
    cases: Sequence[str],
    *,
    spatial_dims: int,
    image_name: str = "T1c_subtrMeanDivStd.nii.gz",
    label_name: str = "OTMultiClass.nii.gz",
    labels: Sequence[int] = (1, 3, 4),
    min_area: int = 30,
) -> list[TrainItem]:
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
                f"case {case}: image {img.shape} and labels {lab.shape} differ in shape"
            )
        mask = np.isin(lab, list(labels))
        img = img.astype(np.float32)
        if spatial_dims == 3:
            if mask.any():
                items.append(TrainItem(img, mask, spacing, case))
            continue
        for z in np.nonzero(mask.sum(axis=(1, 2)) >= min_area)[0]:
            items.append(
                TrainItem(
                    np.ascontiguousarray(img[z]),
                    np.ascontiguousarray(mask[z]),
                    spacing[1:],
                    f"{case}:z{int(z)}",
                )
            )
    return items


# ----------------------------------------------------------------------------------------
# Data: registry sets, through the item cache
# ----------------------------------------------------------------------------------------
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
    from .. import datasets

    if cache is None:
        return datasets.training_items(name, split, **kw)
    key = {
        "set": name,
        "split": split,
        "dims": kw["dims"],
        "min_area": kw["min_area"],
        "slice_step": kw["slice_step"],
        "targets": None if kw.get("targets") is None else list(kw["targets"]),
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    path = Path(cache) / f"{name}-{split}-{digest}.npz"
    if path.is_file():
        return _read_cache(path)
    items = datasets.training_items(name, split, **kw)
    _write_cache(path, items, key, kw)
    return _pool_items(cache, name, split, kw)


def _read_cache(path: Path) -> list[TrainItem]:
    """The items of a cache file written by `_write_cache`."""
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
            out.append(
                TrainItem(
                    img[(slice(None),) * (img.ndim - len(region)) + region],
                    z[f"mask{k}"],
                    tuple(float(v) for v in z[f"spacing{k}"]),
                    n,
                )
            )
        return out


def _write_cache(path: Path, items: list[TrainItem], key: dict, kw: dict) -> None:
    """Write `items` to the cache file `path` (`_pool_items`)."""
    # One copy of each image (the targets of a case share it), cropped to the union of its
    # items' regions; each item keeps its region inside that crop and its cropped mask.
    groups: dict[str, list[int]] = {}
    for k, it in enumerate(items):
        groups.setdefault(
            hashlib.sha256(np.ascontiguousarray(it.image).tobytes()).hexdigest(), []
        ).append(k)
    arrays = {
        "names": np.array([it.name for it in items]),
        "key": np.array(json.dumps(key)),
        "root": np.array(str(kw["data_root"])),
    }
    which = np.zeros(len(items), dtype=np.int64)
    boxes = np.zeros((len(items), kw["dims"], 2), dtype=np.int64)
    for j, members in enumerate(groups.values()):
        regions = {
            k: _object_region(
                np.asarray(items[k].mask) != 0, pad_frac=CACHE_PAD[0], pad_min=CACHE_PAD[1]
            )
            for k in members
        }
        lo = [min(regions[k][ax].start for k in members) for ax in range(kw["dims"])]
        hi = [max(regions[k][ax].stop for k in members) for ax in range(kw["dims"])]
        union = tuple(slice(a, b) for a, b in zip(lo, hi))
        image = np.asarray(items[members[0]].image, dtype=np.float32)
        image = image[(slice(None),) * (image.ndim - kw["dims"]) + union]
        whole = np.round(image)
        if (
            np.array_equal(whole, image)
            and whole.size
            and -32768 <= whole.min()
            and whole.max() <= 32767
        ):
            image = whole.astype(np.int16)  # integer-valued (CT in HU, most MR): lossless
        arrays[f"image{j}"] = image
        for k in members:
            which[k] = j
            boxes[k] = [(r.start - a, r.stop - a) for r, a in zip(regions[k], lo)]
            arrays[f"mask{k}"] = (np.asarray(items[k].mask) != 0)[regions[k]]
            arrays[f"spacing{k}"] = np.asarray(items[k].spacing, dtype=np.float64)
    arrays["which"], arrays["boxes"] = which, boxes
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    # allow_pickle: numpy's default, named so that mypy does not match **arrays to it
    np.savez_compressed(tmp, allow_pickle=True, **arrays)
    os.replace(tmp, path)


def _labels(text: str) -> list[int]:
    """``--labels``: comma-separated integers, each once, sorted."""
    parts = [v.strip() for v in text.split(",") if v.strip()]
    plain = all(v.isascii() and v.lstrip("-").isdigit() for v in parts)  # not "1_0", not "٤"
    values = sorted({int(v) for v in parts}) if plain else []
    if not values:
        raise InvalidInputError(f"--labels must be comma-separated integers, got {text!r}")
    return values


def _cases(text: str) -> list[str]:
    return [c.strip() for c in text.split(",") if c.strip()]


def _case_overlap(data, image_name: str, train: list[str], val: list[str]) -> list[str]:
    """The validation cases that are training cases: a case is its image file, wherever
    links lead (``./case/``, a linked folder or file). Raises InvalidInputError for two
    training cases of one image file."""

    def image_of(case: str) -> Path:
        return (Path(data) / case / image_name).resolve()

    seen: dict[Path, str] = {}
    for c in train:
        if image_of(c) in seen:
            raise InvalidInputError(
                f"training cases {seen[image_of(c)]!r} and {c!r} are the same image file"
            )
        seen[image_of(c)] = c
    return sorted(c for c in val if image_of(c) in seen)
