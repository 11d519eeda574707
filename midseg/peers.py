"""Classical interactive segmentation methods that midseg is compared with (no training).

Lives here: random walker, graph cut on intensity, region growing and geodesic seeded
segmentation, all as ``segment(image, fg_points, bg_points, *, spacing, box) -> mask``.
Used by `midseg.evaluate` only; must not import torch nor call the CNN.
"""
from __future__ import annotations

import warnings
from typing import Callable, Sequence

import numpy as np

from ._checks import as_points, as_spacing, check_spatial
from .errors import InvalidInputError

__all__ = ["PEERS", "PEER_CONFIG", "random_walker", "graph_cut", "region_growing",
           "geodesic", "seed_labels", "normalise_crop"]

#: Random walker: largest grid solved directly, per dimensionality; larger crops are
#: subsampled by an integer step first (a 3D sparse solve fills in badly: 35k voxels
#: already take ~10 s, and the iterative solvers are slower still without pyamg).
RW_MAX_VOXELS = {2: 300_000, 3: 20_000}

#: Exact configuration of every peer, quoted by the evaluation report.
PEER_CONFIG: dict[str, str] = {
    "random-walker": (
        "skimage.segmentation.random_walker(beta=130) on the crop normalised to [0, 1] "
        "(0.5th-99.5th percentile), spacing passed through; labels 1 = fg seeds, 2 = bg "
        "seeds; mask = label 1; mode='bf' (direct sparse solve) on a grid of at most 300k "
        "pixels (2D) / 20k voxels (3D): larger crops are subsampled by an integer step "
        "(every seed kept), the labels repeated back and the seeds re-imposed"),
    "graph-cut": (
        "Boykov-Jolly graph cut: unary = -log of a two-class Gaussian intensity model "
        "(mean/sd of the [0, 1]-normalised crop in 3x3(x3) neighbourhoods of the fg seeds "
        "and of the bg seeds, sd >= 0.05), pairwise = midseg.refine.graph_cut's "
        "lam*exp(-dI^2/2sigma^2)/dist with lam=5, sigma=0.1, 8-/6-connectivity; "
        "seeds are hard constraints (PyMaxflow)"),
    "region-growing": (
        "SimpleITK ConfidenceConnected(numberOfIterations=3, multiplier=2.5, "
        "initialNeighborhoodRadius=1, replaceValue=1) from the fg seeds on the crop; "
        "bg seeds become barriers (a ball of radius 2 voxels set outside every interval); "
        "fg seeds forced to 1"),
    "geodesic": (
        "midseg.geodesic.geodesic_distance(lamb=0.99, spacing in units of the smallest) "
        "to the fg seeds and to the bg seeds on the [0, 1]-normalised crop; "
        "a voxel is foreground when strictly nearer to the fg seeds"),
}


# ------------------------------------------------------------------------- helpers

def normalise_crop(crop: np.ndarray) -> np.ndarray:
    """Robust [0, 1] normalisation: clip to the 0.5th-99.5th percentile, then min-max.

    Parameters
    ----------
    crop : (Y, X) or (Z, Y, X) ndarray

    Returns
    -------
    ndarray of float64, same shape, values in [0, 1] (all 0 for a constant crop)
    """
    c = np.asarray(crop, dtype=np.float64)
    lo, hi = np.percentile(c, [0.5, 99.5])
    if hi <= lo:
        lo, hi = float(c.min()), float(c.max())
    if hi <= lo:
        return np.zeros(c.shape)
    return np.clip((c - lo) / (hi - lo), 0.0, 1.0)


def _box_of(points: np.ndarray, shape: tuple[int, ...], box):
    from .crop import Box, relaxed_bbox

    if box is None:
        return relaxed_bbox(points, shape)
    if not isinstance(box, Box):
        raise InvalidInputError(f"box must be a midseg.crop.Box or None, got {type(box).__name__}")
    if len(box.start) != len(shape) or any(b > n for b, n in zip(box.stop, shape)):
        raise InvalidInputError(f"box {box} does not fit in the image of shape {shape}")
    if not box.contains(points):
        box = box.union(relaxed_bbox(points, shape))
    return box


def seed_labels(box_shape: tuple[int, ...], fg: np.ndarray, bg: np.ndarray, *,
                open_faces: Sequence[tuple[bool, bool]] | None = None) -> np.ndarray:
    """Seed label map of a crop: 1 foreground seeds, 2 background seeds, 0 unlabelled.

    The outer one-voxel shell of the crop is background (the relaxed box holds
    the whole object, so its border is outside it), except on faces that lie
    on the image border (`open_faces` False there), where the object may touch
    the edge of the image. When no face is usable the whole shell is used.
    Foreground seeds win over the shell, explicit background seeds over both.

    Parameters
    ----------
    box_shape : tuple of int
    fg, bg : (N, ndim) int arrays, crop indices
    open_faces : per axis ``(low_side_inside_image, high_side_inside_image)``

    Returns
    -------
    ndarray of uint8, shape `box_shape`
    """
    ndim = len(box_shape)
    labels = np.zeros(box_shape, dtype=np.uint8)
    faces = open_faces if open_faces is not None else [(True, True)] * ndim
    if not any(any(f) for f in faces):
        faces = [(True, True)] * ndim
    for ax, (low, high) in enumerate(faces):
        if low:
            labels[(slice(None),) * ax + (0,)] = 2
        if high:
            labels[(slice(None),) * ax + (-1,)] = 2
    if len(fg):
        labels[tuple(fg.T)] = 1
    if len(bg):
        labels[tuple(bg.T)] = 2
    return labels


def _prepare(image, fg_points, bg_points, spacing, box):
    """Checked crop, crop-local seeds and seed labels shared by every peer."""
    img = check_spatial(image, "image")
    shape = img.shape
    sp = as_spacing(spacing, img.ndim)
    fg = as_points(fg_points, shape, name="foreground seeds")
    bg = as_points(bg_points, shape, name="background seeds", allow_empty=True)
    if len(bg):
        both = (fg[:, None, :] == bg[None, :, :]).all(axis=2)
        if both.any():
            p = tuple(int(v) for v in fg[int(np.argwhere(both)[0, 0])])
            raise InvalidInputError(f"voxel {p} is both a foreground and a background seed")
    b = _box_of(np.concatenate([fg, bg]), shape, box)
    origin = np.asarray(b.start)
    crop = normalise_crop(img[b.slices])
    faces = [(s > 0, e < n) for s, e, n in zip(b.start, b.stop, shape)]
    labels = seed_labels(crop.shape, fg - origin, bg - origin, open_faces=faces)
    return crop, labels, sp, b


def _paste(mask_crop: np.ndarray, shape, box) -> np.ndarray:
    out = np.zeros(shape, dtype=np.uint8)
    out[box.slices] = mask_crop.astype(np.uint8)
    return out


# --------------------------------------------------------------------------- peers

def random_walker(image: np.ndarray, fg_points, bg_points=(), *,
                  spacing: Sequence[float] | None = None, box=None) -> np.ndarray:
    """Random walker segmentation (Grady 2006) from seeds, on the relaxed-box crop.

    Parameters
    ----------
    image : (Y, X) or (Z, Y, X) ndarray
        Scalar image.
    fg_points, bg_points : (N, ndim) int array or sequence of index tuples
        Foreground seeds (at least one) and background seeds, array order.
    spacing : sequence of float, optional
        Voxel size in array order.
    box : midseg.crop.Box, optional
        Region to work in (default: `relaxed_bbox` of all seeds; grown to hold them).
        Its border, where inside the image, is a background seed.

    Returns
    -------
    ndarray of uint8, image shape
        1 where the walker reaches a foreground seed first (0 outside the box).
    """
    from skimage.segmentation import random_walker as _rw

    crop, labels, sp, b = _prepare(image, fg_points, bg_points, spacing, box)
    if crop.max() == crop.min():
        # a constant crop has no edges: the walker probabilities are undefined
        return _paste(labels == 1, np.shape(image), b)
    step, limit = 1, RW_MAX_VOXELS[crop.ndim]
    if crop.size > limit:
        # too large for a direct sparse solve in reasonable time: walk on a subsampled grid
        step = int(np.ceil((crop.size / limit) ** (1.0 / crop.ndim)))
    sub = crop[(slice(None, None, step),) * crop.ndim]
    lab = np.zeros(sub.shape, dtype=np.int32)
    # every seed survives subsampling: background first so foreground seeds win ties
    for value in (2, 1):
        idx = np.argwhere(labels == value) // step
        lab[tuple(idx.T)] = value
    with warnings.catch_warnings():
        # numerical round-off can leave probabilities a hair outside [0, 1]; labels unaffected
        warnings.filterwarnings("ignore", message="The probability range is outside")
        out = _rw(sub, lab, beta=130, mode="bf", spacing=sp * step,
                  return_full_prob=False)
    mask = out == 1
    if step > 1:
        for ax in range(mask.ndim):
            mask = np.repeat(mask, step, axis=ax)
        mask = mask[tuple(slice(0, n) for n in crop.shape)]
        mask[labels == 1] = True
        mask[labels == 2] = False
    return _paste(mask, np.shape(image), b)


def _neighbourhood_values(crop: np.ndarray, points: np.ndarray, radius: int = 1) -> np.ndarray:
    vals = []
    for p in points:
        sl = tuple(slice(max(0, c - radius), c + radius + 1) for c in p)
        vals.append(crop[sl].ravel())
    return np.concatenate(vals) if vals else np.zeros(0)


def graph_cut(image: np.ndarray, fg_points, bg_points=(), *,
              spacing: Sequence[float] | None = None, box=None,
              lam: float = 5.0, sigma: float = 0.1) -> np.ndarray:
    """Interactive graph cut on intensity (Boykov & Jolly 2001), on the relaxed-box crop.

    The unary term is the two-class Gaussian intensity model fitted to the
    seeds' neighbourhoods; the pairwise term and the solver are midseg's own
    CRF (`midseg.refine.graph_cut`), so this peer differs from midseg's
    refinement only by its unary term. Parameters as `random_walker`, plus
    ``lam`` and ``sigma`` of the CRF.

    Returns
    -------
    ndarray of uint8, image shape
    """
    from .refine import graph_cut as _gc

    crop, labels, sp, b = _prepare(image, fg_points, bg_points, spacing, box)
    fg = np.argwhere(labels == 1)
    bg = np.argwhere(labels == 2)
    vf = _neighbourhood_values(crop, fg)
    vb = crop[labels == 2]
    mf, sf = float(vf.mean()), max(float(vf.std()), 0.05)
    mb, sb = float(vb.mean()), max(float(vb.std()), 0.05)
    # log-likelihood ratio -> posterior with equal priors, computed stably
    lf = -0.5 * ((crop - mf) / sf) ** 2 - np.log(sf)
    lb = -0.5 * ((crop - mb) / sb) ** 2 - np.log(sb)
    prob = 1.0 / (1.0 + np.exp(np.clip(lb - lf, -50.0, 50.0)))
    mask = _gc(prob, crop, foreground=fg, background=bg, lam=lam, sigma=sigma, spacing=sp)
    return _paste(mask, np.shape(image), b)


def region_growing(image: np.ndarray, fg_points, bg_points=(), *,
                   spacing: Sequence[float] | None = None, box=None) -> np.ndarray:
    """Confidence-connected region growing (SimpleITK) from the foreground seeds.

    Background seeds cannot be expressed in region growing directly; each
    becomes a barrier (a ball of radius 2 voxels whose intensity is set far
    outside every interval), so the region cannot grow through it. Works on
    the relaxed-box crop, whose border stops the growth. Parameters as
    `random_walker`.

    Returns
    -------
    ndarray of uint8, image shape
    """
    import SimpleITK as sitk
    from scipy import ndimage as ndi

    crop, labels, sp, b = _prepare(image, fg_points, bg_points, spacing, box)
    work = crop.astype(np.float32).copy()
    barrier = np.zeros(crop.shape, dtype=bool)
    explicit_bg = np.argwhere(labels == 2)
    # only explicit background clicks (not the shell) become balls
    shell = np.zeros(crop.shape, dtype=bool)
    for ax in range(crop.ndim):
        shell[(slice(None),) * ax + (0,)] = True
        shell[(slice(None),) * ax + (-1,)] = True
    clicks = explicit_bg[~shell[tuple(explicit_bg.T)]] if len(explicit_bg) else explicit_bg
    if len(clicks):
        barrier[tuple(clicks.T)] = True
        barrier = ndi.binary_dilation(barrier, ndi.generate_binary_structure(crop.ndim, 1),
                                      iterations=2)
    fg = np.argwhere(labels == 1)
    barrier[tuple(fg.T)] = False
    work[barrier] = -1e6
    img = sitk.GetImageFromArray(work)
    img.SetSpacing(tuple(float(s) for s in sp[::-1]))
    seeds = [tuple(int(v) for v in p[::-1]) for p in fg]
    out = sitk.ConfidenceConnected(img, seedList=seeds, numberOfIterations=3, multiplier=2.5,
                                   initialNeighborhoodRadius=1, replaceValue=1)
    mask = sitk.GetArrayFromImage(out).astype(bool)
    mask[barrier] = False
    mask[tuple(fg.T)] = True
    return _paste(mask, np.shape(image), b)


def geodesic(image: np.ndarray, fg_points, bg_points=(), *,
             spacing: Sequence[float] | None = None, box=None) -> np.ndarray:
    """Geodesic seeded segmentation: each voxel takes the label of its geodesically nearer seeds.

    Distances are `midseg.geodesic.geodesic_distance` (``lamb=0.99``) on the
    normalised relaxed-box crop. Parameters as `random_walker`.

    Returns
    -------
    ndarray of uint8, image shape
    """
    from .geodesic import geodesic_distance

    crop, labels, sp, b = _prepare(image, fg_points, bg_points, spacing, box)
    unit = sp / sp.min()
    d_f = geodesic_distance(crop, labels == 1, spacing=unit, lamb=0.99)
    d_b = geodesic_distance(crop, labels == 2, spacing=unit, lamb=0.99)
    mask = np.asarray(d_f) < np.asarray(d_b)
    mask[labels == 1] = True
    mask[labels == 2] = False
    return _paste(mask, np.shape(image), b)


#: Name -> function, all with the signature ``f(image, fg, bg, *, spacing, box) -> mask``.
PEERS: dict[str, Callable[..., np.ndarray]] = {
    "random-walker": random_walker,
    "graph-cut": graph_cut,
    "region-growing": region_growing,
    "geodesic": geodesic,
}
