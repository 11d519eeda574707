"""Synthetic training shapes: random blobs in random textured scenes.

Mixed into training when asked (``TrainConfig.synthetic``; the card says so).
Every item is deterministic for its seed and index, whichever process makes it.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import InvalidInputError
from .config import TrainItem, _check_probability


def _smooth_noise(shape: tuple[int, ...], scale: float, rng: np.random.Generator) -> np.ndarray:
    """Zero-mean, unit-variance Gaussian-filtered noise with correlation length `scale` voxels."""
    from scipy import ndimage

    n = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), scale, mode="wrap")
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


def synthetic_item(
    shape: Sequence[int],
    rng: np.random.Generator | int | None = None,
    name: str = "synthetic",
    inclusions: float = 0.0,
) -> TrainItem:
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

    from .._checks import as_rng

    rng = as_rng(rng)
    shape = tuple(int(s) for s in shape)
    if len(shape) not in (2, 3) or min(shape) < 16:
        raise InvalidInputError(f"shape must be 2D or 3D with sides >= 16, got {shape}")
    _check_probability("inclusions", inclusions)
    mask = _random_shape(shape, rng)
    contrast = rng.uniform(0.4, 3.0) * rng.choice([-1.0, 1.0])
    image = (
        rng.uniform(0.2, 1.0) * _smooth_noise(shape, rng.uniform(1.0, 6.0), rng)
        + np.where(mask, contrast, 0.0).astype(np.float32)
        + rng.uniform(0.0, 0.8) * mask * _smooth_noise(shape, rng.uniform(1.0, 4.0), rng)
    )
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
        rim = (
            grown & ~mask
            if rng.random() < 0.6
            else mask & ~ndimage.binary_erosion(mask, iterations=width)
        )
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
    return synthetic_item(
        tuple(2 * s for s in shape) if big else shape,
        np.random.default_rng([seed, 104729, k]),
        f"synthetic:{k}",
        inclusions=inclusions,
    )


def synthetic_items(
    n: int,
    spatial_dims: int,
    seed: int = 0,
    inclusions: float = 0.0,
    large: float = 0.0,
    workers: int = 0,
) -> list[TrainItem]:
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
        with ProcessPoolExecutor(
            min(int(workers), len(jobs)), mp_context=multiprocessing.get_context(method)
        ) as ex:
            return list(ex.map(_synthetic_k, jobs))
    return [_synthetic_k(j) for j in jobs]
