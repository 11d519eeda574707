"""Relaxed bounding boxes, crop + resize to the network grid and the exact inverse back.

Lives here: `Box`, `relaxed_bbox`, `tight_slices`, `CropTransform` (to_grid / points_to_grid /
from_grid / paste), `zscore`. Pure numpy/scipy: must not import torch, nor know about cues or nets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import ndimage as ndi

from ._checks import SpacingLike, as_index_array, as_points, check_spatial
from .errors import InvalidInputError

__all__ = [
    "Box",
    "relaxed_bbox",
    "tight_slices",
    "CropTransform",
    "zscore",
    "GRID_2D",
    "GRID_3D",
    "DEFAULT_MARGIN",
]

#: Network input size of the 2D model (paper §3.2.1), array order (y, x).
GRID_2D: tuple[int, int] = (64, 64)
#: Network input size of the 3D model (paper §3.3.1), array order (z, y, x).
GRID_3D: tuple[int, int, int] = (64, 96, 96)
#: Voxels added on every side of the tight box of the interior margin points.
#: Simulated points (`midseg.data_sim.interior_margin_points`) lie at most
#: ``DEFAULT_INWARD + DEFAULT_EXTREME_JITTER = 3 + 1`` voxels inside the object's
#: extent along any axis, so a margin of 8 covers the whole object with 4
#: voxels of background context to spare.
DEFAULT_MARGIN: int = 8


def tight_slices(mask: np.ndarray) -> tuple[slice, ...]:
    """The tight bounding box of a non-empty mask (any shape; nonzero = inside) as slices,
    array order. An empty mask raises IndexError: callers check ``mask.any()`` first."""
    out = []
    for ax in range(mask.ndim):
        hit = np.flatnonzero(np.any(mask, axis=tuple(a for a in range(mask.ndim) if a != ax)))
        out.append(slice(int(hit[0]), int(hit[-1]) + 1))
    return tuple(out)


# --------------------------------------------------------------------------- Box


@dataclass(frozen=True)
class Box:
    """An axis-aligned box of voxel indices, ``start <= index < stop`` per axis.

    Parameters
    ----------
    start, stop : tuple of int
        Array order (``(y, x)`` or ``(z, y, x)``); `stop` is exclusive and
        every axis must be non-empty (``0 <= start < stop``).
    """

    start: tuple[int, ...]
    stop: tuple[int, ...]

    def __post_init__(self):
        try:
            start = tuple(int(v) for v in self.start)
            stop = tuple(int(v) for v in self.stop)
            if start != tuple(self.start) or stop != tuple(self.stop):
                raise ValueError
        except (TypeError, ValueError):
            raise InvalidInputError(
                f"Box start and stop must be sequences of integers, got "
                f"{self.start!r} and {self.stop!r}"
            ) from None
        if len(start) != len(stop) or not start:
            raise InvalidInputError(
                f"Box start and stop must have the same non-zero length, got {start} and {stop}"
            )
        if any(a < 0 or b <= a for a, b in zip(start, stop)):
            raise InvalidInputError(
                f"Box needs 0 <= start < stop on every axis, got start={start}, stop={stop}"
            )
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "stop", stop)

    @property
    def ndim(self) -> int:
        """Number of spatial axes."""
        return len(self.start)

    @property
    def slices(self) -> tuple[slice, ...]:
        """Index with ``array[box.slices]`` (spatial axes only)."""
        return tuple(slice(a, b) for a, b in zip(self.start, self.stop))

    @property
    def shape(self) -> tuple[int, ...]:
        """Number of voxels along each axis."""
        return tuple(b - a for a, b in zip(self.start, self.stop))

    def contains(self, points) -> bool:
        """True when every point lies inside the box (vacuously True for no points).

        Parameters
        ----------
        points : (N, ndim) int array or sequence of index tuples, array order
        """
        pts = as_index_array(points, self.ndim, allow_empty=True)
        if pts.shape[0] == 0:
            return True
        return bool(np.all((pts >= np.asarray(self.start)) & (pts < np.asarray(self.stop))))

    def union(self, other: "Box") -> "Box":
        """Smallest box holding both boxes."""
        if not isinstance(other, Box):
            raise InvalidInputError(f"can only unite a Box with a Box, got {type(other).__name__}")
        if other.ndim != self.ndim:
            raise InvalidInputError(f"cannot unite a {self.ndim}D box with a {other.ndim}D box")
        return Box(tuple(map(min, self.start, other.start)), tuple(map(max, self.stop, other.stop)))

    def slices_in(self, outer: "Box") -> tuple[slice, ...]:
        """This box's slices in the coordinates of `outer` (which must hold it)."""
        if not all(
            o <= a and b <= p for a, b, o, p in zip(self.start, self.stop, outer.start, outer.stop)
        ):
            raise InvalidInputError(f"box {self} does not lie inside {outer}")
        return tuple(slice(a - o, b - o) for a, b, o in zip(self.start, self.stop, outer.start))


def _as_shape(shape, name: str = "shape", ndims: tuple[int, ...] = (2, 3)) -> tuple[int, ...]:
    try:
        out = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{name} must be a sequence of integers, got {shape!r}") from None
    if len(out) not in ndims:
        raise InvalidInputError(f"{name} must have {' or '.join(map(str, ndims))} axes, got {out}")
    if any(s < 1 for s in out):
        raise InvalidInputError(f"{name} must be positive on every axis, got {out}")
    return out


def relaxed_bbox(
    points, shape: Sequence[int], *, margin: int | Sequence[int] = DEFAULT_MARGIN
) -> Box:
    """Tight box of the points grown by `margin` voxels, clipped to the image.

    Parameters
    ----------
    points : (N, ndim) int array or sequence of index tuples
        Interior margin points, voxel indices in array order; all must lie in
        the image.
    shape : tuple of int
        Spatial shape of the image, ``(Y, X)`` or ``(Z, Y, X)``.
    margin : int or sequence of int, default `DEFAULT_MARGIN`
        Voxels added before the first and after the last point on every axis;
        one value for all axes or one per axis (array order).

    Returns
    -------
    Box
        ``start = max(min(points) - margin, 0)``,
        ``stop = min(max(points) + 1 + margin, shape)`` per axis, so it always
        holds valid slice indices, also for clicks on the image border.

    Raises
    ------
    InvalidInputError
        No points, a point outside the image, a shape that is not 2D/3D, a
        negative or non-integer margin.

    Examples
    --------
    >>> relaxed_bbox([(2, 30), (10, 35)], (40, 40), margin=4)
    Box(start=(0, 26), stop=(15, 40))
    """
    shp = _as_shape(shape)
    ndim = len(shp)
    pts = as_points(points, shp)
    m = np.asarray(margin)
    if m.ndim == 0:
        m = np.full(ndim, m)
    if m.shape != (ndim,):
        raise InvalidInputError(
            f"margin must be one integer or {ndim} integers (one per axis), got {margin!r}"
        )
    if m.dtype.kind not in "iu" and not (m.dtype.kind == "f" and np.all(m == np.round(m))):
        raise InvalidInputError(f"margin must be integers (voxels), got {margin!r}")
    m = m.astype(np.int64)
    if np.any(m < 0):
        raise InvalidInputError(f"margin must be >= 0 voxels, got {margin!r}")
    start = np.maximum(pts.min(axis=0) - m, 0)
    stop = np.minimum(pts.max(axis=0) + 1 + m, np.asarray(shp))
    return Box(tuple(start.tolist()), tuple(stop.tolist()))


# ------------------------------------------------------------------ resampling
#
# Coordinate convention ("align corners"): along an axis, grid index g of a
# grid of length Lg sits at box coordinate  c = g * (Lb - 1) / (Lg - 1),  so
# the first and last grid voxels sit on the first and last box voxels. A grid
# of length 1 sits at the box centre (Lb - 1) / 2; a box of length 1 is seen
# by every grid voxel (coordinate 0). The inverse maps box coordinate b to
# grid coordinate b * (Lg - 1) / (Lb - 1) (the grid centre when Lb == 1).
# Order 0 rounds half up, like scipy.ndimage.


def _axis_coords(n_in: int, n_out: int) -> np.ndarray:
    """Input coordinates (float64) of the n_out output samples along one axis."""
    if n_out == 1:
        return np.array([(n_in - 1) / 2.0])
    return np.arange(n_out, dtype=np.float64) * ((n_in - 1) / (n_out - 1))


def _axis_nearest(n_in: int, n_out: int) -> np.ndarray:
    """Nearest input index of each output sample, in exact integer arithmetic."""
    g = np.arange(n_out, dtype=np.int64)
    if n_out == 1:
        return np.array([n_in // 2], dtype=np.int64)  # round-half-up of (n_in-1)/2
    # floor(g * (n_in - 1) / (n_out - 1) + 1/2)
    return (2 * g * (n_in - 1) + (n_out - 1)) // (2 * (n_out - 1))


def _resize(arr: np.ndarray, out_shape: tuple[int, ...], order: int) -> np.ndarray:
    """Resample the trailing len(out_shape) axes of `arr` to `out_shape`.

    Order 0 is an exact gather (keeps the dtype), order 1 separable linear
    interpolation in float32 (identical to ``scipy.ndimage.affine_transform``
    with ``order=1`` and 3x faster), order >= 2 B-splines through
    ``scipy.ndimage.affine_transform`` (float32 out).
    """
    nsp = len(out_shape)
    lead = arr.ndim - nsp
    in_shape = arr.shape[lead:]
    if order == 0:
        idx = [np.arange(n) for n in arr.shape[:lead]]
        idx += [_axis_nearest(a, b) for a, b in zip(in_shape, out_shape)]
        return arr[np.ix_(*idx)]
    out = arr.astype(np.float32, copy=False)
    if order == 1:
        for k, (n_in, n_out) in enumerate(zip(in_shape, out_shape)):
            if n_in == n_out:
                continue
            axis = lead + k
            c = _axis_coords(n_in, n_out)
            i0 = np.clip(np.floor(c).astype(np.intp), 0, n_in - 1)
            i1 = np.minimum(i0 + 1, n_in - 1)
            w = (
                (c - i0)
                .astype(np.float32)
                .reshape([-1 if d == axis else 1 for d in range(out.ndim)])
            )
            a0 = np.take(out, i0, axis=axis)
            out = a0 + (np.take(out, i1, axis=axis) - a0) * w
        return np.ascontiguousarray(out, dtype=np.float32)
    scale, offset = [], []
    for n_in, n_out in zip(in_shape, out_shape):
        c = _axis_coords(n_in, n_out)
        scale.append(0.0 if n_out == 1 else (n_in - 1) / (n_out - 1))
        offset.append(float(c[0]))
    flat = out.reshape((-1,) + tuple(in_shape))  # one spline per channel (lead 0: one)
    res = np.stack(
        [
            ndi.affine_transform(
                ch,
                scale,
                offset=offset,
                output_shape=out_shape,
                order=order,
                mode="nearest",
                output=np.float32,
            )
            for ch in flat
        ]
    )
    return res.reshape(arr.shape[:lead] + tuple(out_shape))


def _check_order(order) -> int:
    if not isinstance(order, (int, np.integer)) or isinstance(order, bool) or not 0 <= order <= 5:
        raise InvalidInputError(f"order must be an integer in 0..5, got {order!r}")
    return int(order)


# ------------------------------------------------------------- CropTransform


@dataclass(frozen=True)
class CropTransform:
    """Crop a box out of an image and resize it to the network grid, and back.

    Parameters
    ----------
    box : Box
        The crop in image voxel indices (usually from `relaxed_bbox`).
    grid_shape : tuple of int
        Network input size in array order, e.g. `GRID_2D` or `GRID_3D`.

    Notes
    -----
    Resizing uses the "align corners" convention: along each axis grid index
    ``g`` sits at box coordinate ``g * (Lbox - 1) / (Lgrid - 1)`` (a grid of
    length 1 at the box centre; a box of length 1 everywhere at 0), so the
    corner voxels of box and grid coincide and ``from_grid(to_grid(x))``
    reproduces smooth inputs. ``order`` is the interpolation order: 0 nearest
    (exact gather, keeps the dtype: use it for masks and labels), 1 linear,
    2-5 B-splines (float32 out). Arrays are either spatial (``(Y, X)`` /
    ``(Z, Y, X)``) or channel-first with one extra leading axis.

    Examples
    --------
    >>> t = CropTransform(Box((10, 20), (50, 60)), (64, 64))
    >>> t.to_grid(np.zeros((100, 100))).shape
    (64, 64)
    """

    box: Box
    grid_shape: tuple[int, ...]

    def __post_init__(self):
        if not isinstance(self.box, Box):
            raise InvalidInputError(f"box must be a midseg.crop.Box, got {type(self.box).__name__}")
        grid = _as_shape(self.grid_shape, "grid_shape", ndims=(self.box.ndim,))
        object.__setattr__(self, "grid_shape", grid)

    @property
    def ndim(self) -> int:
        """Number of spatial axes."""
        return self.box.ndim

    def _split(self, array, name: str, spatial: tuple[int, ...] | None) -> np.ndarray:
        arr = np.asarray(array)
        if arr.ndim not in (self.ndim, self.ndim + 1):
            raise InvalidInputError(
                f"{name} must have {self.ndim} (spatial) or {self.ndim + 1} (channel-first) "
                f"dimensions for a {self.ndim}D box, got shape {arr.shape}"
            )
        if arr.dtype.kind not in "biuf":
            raise InvalidInputError(f"{name} must be numeric or bool, got dtype {arr.dtype}")
        sp = arr.shape[arr.ndim - self.ndim :]
        if spatial is not None and sp != spatial:
            raise InvalidInputError(
                f"{name} must have the spatial shape {spatial}, got {sp} (array shape {arr.shape})"
            )
        return arr

    def _check_fits(self, spatial: tuple[int, ...], name: str) -> None:
        if any(b > s for b, s in zip(self.box.stop, spatial)):
            raise InvalidInputError(
                f"box {self.box.start}..{self.box.stop} does not fit in the {name} "
                f"of spatial shape {spatial}"
            )

    def to_grid(self, array, *, order: int = 1) -> np.ndarray:
        """Crop the box out of an image-space array and resize it to the grid.

        Parameters
        ----------
        array : (Y, X) / (Z, Y, X) ndarray, or (C, Y, X) / (C, Z, Y, X)
            Image-space array (spatial or channel-first); the box must fit in it.
        order : int, default 1
            Interpolation order; 0 for masks.

        Returns
        -------
        ndarray of shape ``grid_shape`` or ``(C, *grid_shape)``
            float32 for ``order >= 1``, the input dtype for ``order = 0``.
        """
        order = _check_order(order)
        arr = self._split(array, "array", None)
        self._check_fits(arr.shape[arr.ndim - self.ndim :], "array")
        crop = arr[(Ellipsis,) + self.box.slices]
        return _resize(crop, self.grid_shape, order)

    def points_to_grid(self, points) -> np.ndarray:
        """Map image voxel indices inside the box to the nearest grid indices.

        Parameters
        ----------
        points : (N, ndim) int array or sequence of index tuples, image array order

        Returns
        -------
        (N, ndim) ndarray of int64
            ``round_half_up((p - start) * (Lgrid - 1) / (Lbox - 1))`` per axis
            (the grid centre when the box has length 1), in exact integer
            arithmetic. When the grid is at least as large as the box along an
            axis, ``to_grid(..., order=0)`` puts the point's voxel value on
            this grid index.

        Raises
        ------
        InvalidInputError
            A point outside the box, or malformed points.
        """
        pts = as_index_array(points, self.ndim, allow_empty=True)
        if pts.shape[0] == 0:
            return pts
        local = pts - np.asarray(self.box.start)
        outside = np.any((local < 0) | (local >= np.asarray(self.box.shape)), axis=1)
        if np.any(outside):
            first = tuple(int(v) for v in pts[np.argmax(outside)])
            raise InvalidInputError(
                f"point {first} lies outside the crop box {self.box.start}..{self.box.stop}"
            )
        out = np.empty_like(local)
        for k, (lb, lg) in enumerate(zip(self.box.shape, self.grid_shape)):
            if lb == 1:
                out[:, k] = lg // 2
            else:
                out[:, k] = (2 * local[:, k] * (lg - 1) + (lb - 1)) // (2 * (lb - 1))
        return out

    def from_grid(self, grid_array, *, order: int = 1) -> np.ndarray:
        """Resize a grid array back to the box at native resolution.

        Parameters
        ----------
        grid_array : ndarray of shape ``grid_shape`` or ``(C, *grid_shape)``
        order : int, default 1

        Returns
        -------
        ndarray of shape ``box.shape`` or ``(C, *box.shape)``
            float32 for ``order >= 1``, the input dtype for ``order = 0``.
        """
        order = _check_order(order)
        arr = self._split(grid_array, "grid_array", self.grid_shape)
        return _resize(arr, self.box.shape, order)

    def paste(
        self, grid_array, image_shape: Sequence[int], *, fill: float = 0.0, order: int = 1
    ) -> np.ndarray:
        """Resize a grid array back and place it in a full image of `fill`.

        Parameters
        ----------
        grid_array : ndarray of shape ``grid_shape`` or ``(C, *grid_shape)``
        image_shape : tuple of int
            Spatial shape of the image; the box must fit in it.
        fill : float, default 0.0
            Value outside the box. With ``order=0`` it must be representable
            in the grid array's dtype.
        order : int, default 1

        Returns
        -------
        ndarray of shape ``image_shape`` or ``(C, *image_shape)``
            float32 for ``order >= 1``, the grid dtype for ``order = 0``.
        """
        order = _check_order(order)
        shp = _as_shape(image_shape, "image_shape", ndims=(self.ndim,))
        self._check_fits(shp, "image")
        inner = self.from_grid(grid_array, order=order)
        lead = inner.shape[: inner.ndim - self.ndim]
        if order == 0:
            fill_arr = np.asarray(fill)
            cast = fill_arr.astype(inner.dtype)
            if not np.all(cast == fill_arr):
                raise InvalidInputError(
                    f"fill={fill!r} cannot be stored in the grid dtype {inner.dtype}"
                )
            out = np.full(lead + shp, cast, dtype=inner.dtype)
        else:
            out = np.full(lead + shp, fill, dtype=np.float32)
        out[(Ellipsis,) + self.box.slices] = inner
        return out

    def grid_spacing(self, spacing: SpacingLike | None = None) -> np.ndarray:
        """Physical size of a grid voxel (float64, array order) under this transform.

        ``spacing * (Lbox - 1) / (Lgrid - 1)`` per axis (``spacing * Lbox /
        Lgrid`` where either length is 1), consistent with the align-corners
        convention.
        """
        sp = np.ones(self.ndim) if spacing is None else np.asarray(spacing, dtype=np.float64)
        if sp.shape != (self.ndim,) or not np.all(np.isfinite(sp)) or np.any(sp <= 0):
            raise InvalidInputError(
                f"spacing must be {self.ndim} finite positive values, got {spacing!r}"
            )
        lb = np.asarray(self.box.shape, dtype=np.float64)
        lg = np.asarray(self.grid_shape, dtype=np.float64)
        ok = (lb > 1) & (lg > 1)
        ratio = np.where(ok, (lb - 1) / np.maximum(lg - 1, 1), lb / lg)
        return sp * ratio


# --------------------------------------------------------------- normalisation


def zscore(array, *, channel_axis: int | None = None) -> np.ndarray:
    """Z-score normalisation of a crop, per channel.

    Parameters
    ----------
    array : (Y, X) / (Z, Y, X) ndarray, or with a channel axis
    channel_axis : int or None
        Axis holding channels (normalised independently); None for a scalar image.

    Returns
    -------
    ndarray of float32, same shape
        ``(x - mean) / std`` per channel (statistics in float64). A constant
        channel becomes all zeros (never NaN).

    Raises
    ------
    InvalidInputError
        Non-numeric input, NaN/inf values, or a bad channel axis.
    """
    arr = np.asarray(array)
    if arr.dtype.kind not in "biuf":
        raise InvalidInputError(f"array must be numeric, got dtype {arr.dtype}")
    if arr.size == 0:
        raise InvalidInputError(f"array is empty (shape {arr.shape})")
    if channel_axis is None:
        check_spatial(arr, "array", ndims=tuple(range(1, 6)))
        return _zscore_one(arr)
    if not isinstance(channel_axis, (int, np.integer)) or not -arr.ndim <= channel_axis < arr.ndim:
        raise InvalidInputError(
            f"channel_axis must be an axis of an array of shape {arr.shape}, got {channel_axis!r}"
        )
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise InvalidInputError("array contains NaN or infinite values")
    moved = np.moveaxis(arr, channel_axis, 0)
    out = np.stack([_zscore_one(ch) for ch in moved])
    return np.moveaxis(out, 0, channel_axis)


def _zscore_one(x: np.ndarray) -> np.ndarray:
    x64 = x.astype(np.float64, copy=False)
    if x64.max() == x64.min():
        return np.zeros(x.shape, dtype=np.float32)
    mean = x64.mean()
    std = x64.std()
    return ((x64 - mean) / std).astype(np.float32)
