"""Augmentation of a training region: random affine, bias field and blur.

Two backends with the same transforms and ranges (not the same samples): TorchIO
(`_augment_region`, the default) and PyTorch alone (`_augment_region_torch`) for
machines without TorchIO and SimpleITK. Both are seeded from the sample's generator.
"""

from __future__ import annotations

import math
from typing import Sequence, cast

import numpy as np

#: Spatial augmentation (TorchIO `RandomAffine`, physical space): rotation about the first
#: array axis (in-plane, the last two axes) and, in 3D, a smaller tilt about the others;
#: per-axis scaling. Intensity augmentation before the crop: a smooth multiplicative bias
#: field (MR-like shading) and a Gaussian blur (lower resolution), each with probability
#: AUG_INTENSITY_P.
AUG_DEGREES = {2: (0, 0, 0, 0, -15, 15), 3: (-15, 15, -5, 5, -5, 5)}
AUG_SCALES = (0.85, 1.15)
AUG_INTENSITY_P = 0.25


def _augment_region(
    image: np.ndarray, mask: np.ndarray, spacing, rng: np.random.Generator, channel_first: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Random affine, bias field and blur of a region with TorchIO, seeded from `rng`.

    `image` is (*S) or (C, *S) float32, `mask` (*S) bool, `spacing` in array order (mm)
    or None (1). Returns the augmented pair, same shapes.
    """
    import torch
    import torchio as tio

    ndim = mask.ndim
    img = image if channel_first else image[None]
    msk = mask[None]
    if ndim == 2:  # TorchIO works on (C, W, H, D): a 2D image is one slice thick
        img, msk = img[..., None], msk[..., None]
    sp = tuple(float(s) for s in (spacing or (1.0,) * ndim)) + ((1.0,) if ndim == 2 else ())
    affine = np.diag(sp + (1.0,))
    scales = (AUG_SCALES * 2 + (1.0, 1.0)) if ndim == 2 else AUG_SCALES
    lo = float(img.min())
    subject = tio.Subject(
        image=tio.ScalarImage(
            tensor=torch.from_numpy(np.ascontiguousarray(img - lo)), affine=affine
        ),
        mask=tio.LabelMap(
            tensor=torch.from_numpy(np.ascontiguousarray(msk.astype(np.uint8))), affine=affine
        ),
    )
    transform = tio.Compose(
        [
            tio.RandomAffine(
                scales=scales,
                degrees=AUG_DEGREES[ndim],
                isotropic=False,
                default_pad_value="minimum",
                image_interpolation="linear",
            ),
            tio.RandomBiasField(coefficients=0.3, order=3, p=AUG_INTENSITY_P),
            tio.RandomBlur(std=(0.0, 1.0), p=AUG_INTENSITY_P),
        ]
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(rng.integers(2**31)))
        out = transform(subject)
    # a Subject maps names to objects (to type checkers): these two are the images above
    img_a = cast(tio.Image, out["image"]).data.numpy() + lo
    msk_a = cast(tio.Image, out["mask"]).data.numpy() != 0
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


def _augment_region_torch(
    image: np.ndarray, mask: np.ndarray, spacing, rng: np.random.Generator, channel_first: bool
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
    grid = norm.flip(-1)[None].float()  # grid_sample wants (x, y[, z]) = reversed axes
    lo = float(img.min())
    t = torch.from_numpy(img - lo)[None]
    out = F.grid_sample(t, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    msk = F.grid_sample(
        torch.from_numpy(mask.astype(np.float32))[None, None],
        grid,
        mode="nearest",
        padding_mode="zeros",
        align_corners=True,
    )
    img_a = out[0].numpy()
    msk_a = msk[0, 0].numpy() >= 0.5
    if rng.random() < AUG_INTENSITY_P:  # bias field, order 3
        coords = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
        field = np.zeros(shape)
        for powers in itertools.product(range(4), repeat=ndim):
            if sum(powers) <= 3:
                term: float | np.ndarray = rng.uniform(-0.3, 0.3)
                for x, pw in zip(coords, powers):
                    term = term * x**pw
                field += term
        img_a = img_a * np.exp(field).astype(np.float32)
    if rng.random() < AUG_INTENSITY_P:  # blur, sigma in mm
        sigma = rng.uniform(0.0, 1.0, size=ndim) / sp
        img_a = np.stack([ndimage.gaussian_filter(ch, sigma) for ch in img_a])
    img_a = img_a + lo
    img_a = img_a if channel_first else img_a[0]
    return img_a.astype(np.float32, copy=False), msk_a
