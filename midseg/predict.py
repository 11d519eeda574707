"""Stage 1 inference: interior margin points -> crop -> z-score -> cue -> U-Net -> probability.

`prepare_input` builds the network input exactly as `midseg.train` does, so the
two cannot drift apart. This module loads no files: it takes a loaded model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ._checks import SpacingLike, as_points, as_spacing, check_spatial
from .errors import InvalidInputError, ModelError

__all__ = [
    "Stage1Result",
    "GridInput",
    "predict_probability",
    "prepare_input",
    "crop_to_grid",
    "add_cue",
    "CUE_NONE",
]

#: Cue name meaning "no cue channel": the network sees the cropped image only
#: (the paper's "BBox" baseline).
CUE_NONE = "none"


@dataclass(frozen=True)
class Stage1Result:
    """Result of `predict_probability`; unpacks as ``(probability, box)``.

    Attributes
    ----------
    probability : (Y, X) or (Z, Y, X) ndarray of float32
        Foreground probability in image space, 0 outside `box`.
    box : midseg.crop.Box
        The relaxed bounding box of the points that the network saw.
    grid_probability : ndarray of float32
        The probability on the network grid (``model.grid_shape``).
    """

    probability: np.ndarray
    box: Any
    grid_probability: np.ndarray

    def __iter__(self):
        return iter((self.probability, self.box))


@dataclass(frozen=True)
class GridInput:
    """The cropped, resized, normalised image and the points on the grid.

    Attributes
    ----------
    image : (C, *grid_shape) ndarray of float32
        z-scored crop, channel first (C = 1 for a scalar image).
    points : (N, ndim) ndarray of int64
        The points as indices on the grid.
    transform : midseg.crop.CropTransform
        Maps between image space and the grid.
    spacing : (ndim,) ndarray of float64
        Physical size of one grid voxel (`midseg.crop.CropTransform.grid_spacing`).
    """

    image: np.ndarray
    points: np.ndarray
    transform: Any
    spacing: np.ndarray

    @property
    def cue_spacing(self) -> np.ndarray:
        """Grid spacing divided by its smallest value: the spacing cue maps are computed with.

        Keeping only the anisotropy makes the cue independent of the object's
        size: a geodesic distance on the z-scored grid then sums intensity
        changes along a path whatever the box size, as in training, where boxes
        are tumour-sized; physical units would make the EGD of a large unseen
        object (a fetal head) decay several times faster than anything seen
        in training.
        """
        return self.spacing / self.spacing.min()


def _split_channels(image, channel_axis) -> tuple[np.ndarray, tuple[int, ...]]:
    arr = np.asarray(image)
    if channel_axis is None:
        check_spatial(arr)
        return arr, arr.shape
    if channel_axis not in (0, -arr.ndim):
        raise InvalidInputError(
            f"channel_axis must be None or 0 (channel first), got {channel_axis!r}"
        )
    if arr.ndim not in (3, 4):
        raise InvalidInputError(
            f"a channel-first image must have shape (C, Y, X) or (C, Z, Y, X), got {arr.shape}"
        )
    check_spatial(arr[0])
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise InvalidInputError("image contains NaN or infinite values")
    return arr, arr.shape[1:]


def crop_to_grid(
    image: np.ndarray,
    points,
    grid_shape: Sequence[int],
    *,
    spacing: SpacingLike | None = None,
    channel_axis: int | None = None,
    margin=None,
) -> GridInput:
    """Crop the relaxed bounding box of `points`, resize it to the grid and z-score it.

    Parameters
    ----------
    image : (Y, X) or (Z, Y, X) ndarray, or channel first with ``channel_axis=0``
    points : (N, ndim) int array or sequence of index tuples (array order)
    grid_shape : tuple of int
        Network input size, e.g. ``(64, 64)`` or ``(64, 96, 96)``.
    spacing : sequence of float, optional
        Voxel size in array order (default 1).
    channel_axis : None or 0
    margin : int or sequence of int, optional
        Box margin in voxels (default `midseg.crop.DEFAULT_MARGIN`).

    Returns
    -------
    GridInput
    """
    from . import crop

    arr, shape = _split_channels(image, channel_axis)
    ndim = len(shape)
    grid_shape = tuple(int(g) for g in grid_shape)
    if len(grid_shape) != ndim:
        raise InvalidInputError(
            f"a {len(grid_shape)}D grid {grid_shape} cannot be used with a {ndim}D image "
            f"of shape {shape}"
        )
    sp = as_spacing(spacing, ndim)
    pts = as_points(points, shape, name="margin points")
    kwargs = {} if margin is None else {"margin": margin}
    box = crop.relaxed_bbox(pts, shape, **kwargs)
    transform = crop.CropTransform(box, grid_shape)
    grid = transform.to_grid(arr.astype(np.float32, copy=False), order=1)
    if channel_axis is None:
        grid = crop.zscore(grid)[None]
    else:
        grid = crop.zscore(grid, channel_axis=0)
    grid_pts = np.asarray(transform.points_to_grid(pts), dtype=np.int64)
    grid_spacing = transform.grid_spacing(sp)
    return GridInput(
        image=np.ascontiguousarray(grid, dtype=np.float32),
        points=grid_pts,
        transform=transform,
        spacing=grid_spacing,
    )


def add_cue(
    grid_image: np.ndarray,
    grid_points: np.ndarray,
    cue: str,
    *,
    spacing: SpacingLike | None = None,
    cue_params: dict | None = None,
) -> np.ndarray:
    """Append the cue map of the points to the channel-first grid image.

    Parameters
    ----------
    grid_image : (C, *grid) ndarray of float32
    grid_points : (N, ndim) int array, indices on the grid
    cue : str
        A `midseg.cues.CUE_KINDS` name, or ``"none"`` (returns the image unchanged).
    spacing : sequence of float, optional
        Grid voxel size for the cue (array order): `GridInput.cue_spacing`.
    cue_params : dict, optional
        Extra keyword arguments for `midseg.cues.cue_map`.

    Returns
    -------
    (C + 1, *grid) ndarray of float32, or (C, *grid) for ``cue="none"``
    """
    if cue == CUE_NONE:
        return np.ascontiguousarray(grid_image, dtype=np.float32)
    from . import cues

    c = grid_image.shape[0]
    img = grid_image[0] if c == 1 else grid_image
    cmap = cues.cue_map(
        cue,
        img,
        grid_points,
        spacing=spacing,
        channel_axis=None if c == 1 else 0,
        **(cue_params or {}),
    )
    out = np.concatenate([grid_image, np.asarray(cmap, dtype=np.float32)[None]], axis=0)
    return np.ascontiguousarray(out, dtype=np.float32)


def prepare_input(
    image: np.ndarray,
    points,
    grid_shape: Sequence[int],
    cue: str,
    *,
    spacing=None,
    channel_axis=None,
    margin=None,
    cue_params: dict | None = None,
) -> tuple[np.ndarray, GridInput]:
    """Network input (channels first, float32) and the `GridInput` it came from."""
    g = crop_to_grid(
        image, points, grid_shape, spacing=spacing, channel_axis=channel_axis, margin=margin
    )
    return add_cue(g.image, g.points, cue, spacing=g.cue_spacing, cue_params=cue_params), g


def _check_model(model) -> None:
    for attr in ("net", "grid_shape", "cue", "spatial_dims", "in_channels"):
        # the class first: LoadedModel.net is a property that may read the weights
        if not (hasattr(type(model), attr) or hasattr(model, attr)):
            raise ModelError(
                f"model must be a loaded model (midseg.models.load_model), lacks {attr!r}"
            )


def predict_probability(
    image: np.ndarray,
    points,
    model,
    *,
    spacing=None,
    channel_axis: int | None = None,
    device: str | None = None,
    box_only: bool = False,
) -> Stage1Result:
    """Stage 1: foreground probability of the object marked by interior margin points.

    The relaxed bounding box of the points is cropped, resized to the model's
    grid, z-scored, given the model's cue channel, passed through the network,
    and the foreground probability is resized back and pasted into image space.

    Parameters
    ----------
    image : (Y, X) or (Z, Y, X) ndarray, or (C, Y, X) / (C, Z, Y, X) with ``channel_axis=0``
    points : (N, ndim) int array or sequence of index tuples
        Interior margin points in array order.
    model : midseg.models.LoadedModel or midseg.models.EnsembleModel
        A loaded model (this function reads no files). An ensemble crops the box once,
        runs each member on it with the member's own cue map and returns the mean of
        their grid probabilities, resized back once.
    spacing : sequence of float, optional
        Voxel size in array order (default 1).
    channel_axis : None or 0
    device : str, optional
        Torch device for the forward pass (default: the model's own device).
    box_only : bool, default False
        Return the probability inside the box only (shape of ``box``), without
        building the image-sized map: what a large volume needs.

    Returns
    -------
    Stage1Result
        ``probability`` (float32, image spatial shape, 0 outside the box; with
        `box_only` the box's shape), ``box``, ``grid_probability``. Unpacks as
        ``(probability, box)``.

    Raises
    ------
    InvalidInputError
        Bad image or points, or dimensionality / channels not matching the model.
    ModelError
        `model` is not a loaded model.
    """
    _check_model(model)
    arr, shape = _split_channels(image, channel_axis)
    if len(shape) != model.spatial_dims:
        raise InvalidInputError(
            f"model {getattr(model, 'name', '?')!r} is {model.spatial_dims}D but the image has "
            f"spatial shape {shape}"
        )
    channels = 1 if channel_axis is None else arr.shape[0]
    want = getattr(model, "image_channels", None)
    if want is not None and want != channels:
        raise InvalidInputError(
            f"model {getattr(model, 'name', '?')!r} expects {want} image channel(s), got {channels}"
        )
    # an ensemble (midseg.models.EnsembleModel): its members share the grid and the margin,
    # so the crop is made once, each member adds its own cue, and the mean of their grid
    # maps is resized back once (linear interpolation commutes with the mean)
    nets = getattr(model, "members", None) or (model,)
    g = crop_to_grid(
        arr,
        points,
        model.grid_shape,
        spacing=spacing,
        channel_axis=channel_axis,
        margin=getattr(model, "margin", None),
    )
    if device is not None:
        import torch

        want_dev = torch.device(device)
        for net in nets:
            dev = next(net.net.parameters()).device
            if want_dev.type != dev.type or (
                want_dev.index is not None and want_dev.index != dev.index
            ):
                # Moving the cached network here would silently change it for every caller.
                raise InvalidInputError(
                    f"model {getattr(net, 'name', '?')!r} lives on {dev}, not on {want_dev}; "
                    f"load it with midseg.models.load_model(..., device={str(want_dev)!r})"
                )
    probs = []
    for net in nets:
        x = add_cue(
            g.image,
            g.points,
            net.cue,
            spacing=g.cue_spacing,
            cue_params=getattr(net, "cue_params", None),
        )
        if callable(getattr(net, "forward", None)):  # a LoadedModel: its runtime decides
            p = net.forward(x)
        else:
            from .models import net_forward

            p = net_forward(net.net, x)
        probs.append(np.clip(p, 0.0, 1.0))
    prob = (probs[0] if len(probs) == 1 else np.mean(probs, axis=0)).astype(np.float32)
    inner = np.asarray(g.transform.from_grid(prob, order=1), dtype=np.float32)
    np.clip(inner, 0.0, 1.0, out=inner)
    if box_only:
        return Stage1Result(probability=inner, box=g.transform.box, grid_probability=prob)
    full = np.zeros(shape, np.float32)
    full[g.transform.box.slices] = inner
    return Stage1Result(probability=full, box=g.transform.box, grid_probability=prob)
