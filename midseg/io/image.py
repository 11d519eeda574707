"""The `Image` value (array + geometry, array axis order) and its SimpleITK conversion.

Arrays are in SimpleITK array order ((y, x) / (z, y, x), channel axis first for
multi-channel images) and so are spacing, origin and direction: the (x, y, z)
order of SimpleITK is converted here (`_from_sitk`, `_to_sitk`), once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .._checks import SpacingLike, as_spacing
from ..errors import ImageReadError, InvalidInputError
from .dicom import _dicom_window

if TYPE_CHECKING:
    import numpy.typing as npt

#: Weights used to convert RGB(A) pictures to grey (ITU-R BT.601 luma).
RGB_TO_GREY = (0.299, 0.587, 0.114)


def _as_tuple(values, ndim: int, name: str, default: float) -> tuple[float, ...]:
    if values is None:
        return (float(default),) * ndim
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if arr.shape != (ndim,) or not np.all(np.isfinite(arr)):
        raise InvalidInputError(
            f"{name} must be {ndim} finite values in array axis order, got {tuple(np.ravel(values).tolist())}"
        )
    return tuple(float(v) for v in arr)


def _as_direction(direction, ndim: int) -> tuple[tuple[float, ...], ...]:
    if direction is None:
        return tuple(tuple(float(i == j) for j in range(ndim)) for i in range(ndim))
    mat = np.asarray(direction, dtype=np.float64)
    if mat.size != ndim * ndim:
        raise InvalidInputError(
            f"direction must be a {ndim}x{ndim} matrix (array axis order), got {mat.size} values"
        )
    mat = mat.reshape(ndim, ndim)
    if not np.allclose(mat.T @ mat, np.eye(ndim), atol=1e-4):
        raise InvalidInputError(f"direction must be orthonormal, got {mat.tolist()}")
    return tuple(tuple(float(v) for v in row) for row in mat)


#: Default of the `Image` fields that ``__post_init__`` fills in: None at run time, typed
#: Any so that the fields keep the type they always have once an Image exists.
_NORMALISED: Any = None


@dataclass(frozen=True, eq=False)
class Image:
    """An image array with its physical geometry, all in array axis order.

    Parameters
    ----------
    array : (Y, X), (Z, Y, X), (C, Y, X) or (C, Z, Y, X) ndarray
        Pixel data, numeric and finite. A leading channel axis is present
        only when ``multichannel`` is true (or implied by ``spacing``).
    spacing : sequence of float, optional
        Voxel size along each spatial array axis, e.g. ``(dz, dy, dx)`` in mm.
        Defaults to 1. If it has one value fewer than ``array.ndim`` the first
        axis is taken as the channel axis.
    origin : sequence of float, optional
        Physical position of voxel 0, in array axis order. Defaults to 0.
    direction : (D, D) array_like, optional
        Direction cosines in array axis order: column ``j`` is the physical
        direction of array axis ``j``. Defaults to the identity.
    multichannel : bool, optional
        Whether the first axis is a channel axis (e.g. PET and CT).
    path : str, optional
        Where the image was read from, for messages and ``repr``.
    window : (level, width), optional
        The display window the file recommends (DICOM Window Center/Width), in the
        image's units; `read_image` fills it in, the GUI starts with it.

    Raises
    ------
    InvalidInputError
        Wrong number of dimensions, non-numeric or NaN/inf pixels, bad geometry.

    Examples
    --------
    >>> img = Image(np.zeros((4, 5, 6)), spacing=(3.0, 1.0, 1.0))
    >>> img.shape, img.spacing
    ((4, 5, 6), (3.0, 1.0, 1.0))
    """

    array: np.ndarray
    # Fields typed as __post_init__ leaves them; the constructor also takes None (the
    # default), sequences and arrays for them (its signature for type checkers below).
    spacing: tuple[float, ...] = _NORMALISED
    origin: tuple[float, ...] = _NORMALISED
    direction: tuple[tuple[float, ...], ...] = _NORMALISED
    multichannel: bool = _NORMALISED
    path: str | None = field(default=None)
    window: tuple[float, float] | None = field(default=None)

    if TYPE_CHECKING:  # the generated __init__, with the argument types it accepts

        def __init__(
            self,
            array: npt.ArrayLike,
            spacing: SpacingLike | None = None,
            origin: npt.ArrayLike | None = None,
            direction: npt.ArrayLike | None = None,
            multichannel: bool | None = None,
            path: str | None = None,
            window: tuple[float, float] | None = None,
        ) -> None: ...

    def __post_init__(self):
        arr = np.asarray(self.array)
        if arr.dtype.kind not in "biuf":
            raise InvalidInputError(f"image pixels must be numeric, got dtype {arr.dtype}")
        if arr.dtype.kind == "b":
            arr = arr.astype(np.uint8)
        multichannel = self.multichannel
        if multichannel is None:
            multichannel = self.spacing is not None and len(self.spacing) == arr.ndim - 1
        spatial = arr.ndim - (1 if multichannel else 0)
        if spatial not in (2, 3):
            what = "multi-channel " if multichannel else ""
            raise InvalidInputError(
                f"{what}image must have 2 or 3 spatial dimensions, got array shape {arr.shape}"
                + (
                    ""
                    if multichannel
                    else " (pass multichannel=True if the first axis holds channels; 4D/time series are not supported)"
                )
            )
        if multichannel and arr.shape[0] < 1:
            raise InvalidInputError(f"multi-channel image has no channels: shape {arr.shape}")
        if min(arr.shape) < 1:
            raise InvalidInputError(f"image is empty: shape {arr.shape}")
        if arr.dtype.kind == "f":
            bad = np.count_nonzero(~np.isfinite(arr))
            if bad:
                raise InvalidInputError(
                    f"image{' ' + self.path if self.path else ''} contains {bad} NaN or infinite "
                    f"pixel values; replace them (e.g. np.nan_to_num) before segmenting"
                )
        spacing = tuple(float(s) for s in as_spacing(self.spacing, spatial))
        object.__setattr__(self, "array", arr)
        object.__setattr__(self, "multichannel", bool(multichannel))
        object.__setattr__(self, "spacing", spacing)
        object.__setattr__(self, "origin", _as_tuple(self.origin, spatial, "origin", 0.0))
        object.__setattr__(self, "direction", _as_direction(self.direction, spatial))

    # -- shape ---------------------------------------------------------------
    @property
    def ndim(self) -> int:
        """Number of spatial dimensions (2 or 3)."""
        return len(self.spacing)

    @property
    def shape(self) -> tuple[int, ...]:
        """Spatial shape, array order (no channel axis)."""
        return tuple(self.array.shape[1:] if self.multichannel else self.array.shape)

    @property
    def channels(self) -> int:
        """Number of channels (1 for a scalar image)."""
        return int(self.array.shape[0]) if self.multichannel else 1

    def channels_first(self) -> np.ndarray:
        """The pixels as (C, *spatial): a view, no copy and no check (an Image is checked
        once, when it is made)."""
        return self.array if self.multichannel else self.array[None]

    @property
    def channel_axis(self) -> int | None:
        """0 for multi-channel images, None otherwise (the convention of midseg functions)."""
        return 0 if self.multichannel else None

    # -- geometry ------------------------------------------------------------
    def index_to_physical(self, index) -> np.ndarray:
        """Physical coordinates (mm, array axis order) of voxel indices.

        Parameters
        ----------
        index : (N, D) or (D,) array_like of float
            Indices in array order.

        Returns
        -------
        (N, D) or (D,) ndarray of float64
        """
        idx = np.asarray(index, dtype=np.float64)
        single = idx.ndim == 1
        idx = np.atleast_2d(idx)
        if idx.shape[1] != self.ndim:
            raise InvalidInputError(
                f"indices must have {self.ndim} coordinates, got shape {idx.shape}"
            )
        mat = np.asarray(self.direction) * np.asarray(self.spacing)[None, :]
        phys = idx @ mat.T + np.asarray(self.origin)
        return phys[0] if single else phys

    def physical_to_index(self, point) -> np.ndarray:
        """Continuous voxel indices (array order) of physical points (mm, array order)."""
        pts = np.asarray(point, dtype=np.float64)
        single = pts.ndim == 1
        pts = np.atleast_2d(pts)
        if pts.shape[1] != self.ndim:
            raise InvalidInputError(
                f"points must have {self.ndim} coordinates, got shape {pts.shape}"
            )
        mat = np.asarray(self.direction) * np.asarray(self.spacing)[None, :]
        idx = np.linalg.solve(mat, (pts - np.asarray(self.origin)).T).T
        return idx[0] if single else idx

    def same_geometry(self, other: "Image", *, atol: float = 1e-5) -> list[str]:
        """List what differs between the geometry of two images (empty if none)."""
        return geometry_differences(self.geometry(), other.geometry(), atol=atol)

    def geometry(self) -> dict:
        """Shape, spacing, origin and direction as a JSON-friendly dict (array order)."""
        return {
            "shape": list(self.shape),
            "spacing": list(self.spacing),
            "origin": list(self.origin),
            "direction": [list(r) for r in self.direction],
        }

    def with_array(self, array: np.ndarray, *, multichannel: bool | None = None) -> "Image":
        """A new Image with the same geometry and a different array."""
        return Image(
            array,
            spacing=self.spacing,
            origin=self.origin,
            direction=self.direction,
            multichannel=self.multichannel if multichannel is None else multichannel,
        )

    def __repr__(self) -> str:
        chans = f", channels={self.channels}" if self.multichannel else ""
        where = f", path={self.path!r}" if self.path else ""
        sp = ", ".join(f"{s:g}" for s in self.spacing)
        return f"Image(shape={self.shape}{chans}, spacing=({sp}), dtype={self.array.dtype}{where})"


def geometry_differences(a: dict, b: dict, *, atol: float = 1e-5) -> list[str]:
    """Human-readable differences between two geometry dicts (see `Image.geometry`)."""
    diffs = []
    if list(a["shape"]) != list(b["shape"]):
        diffs.append(f"shape {tuple(a['shape'])} vs {tuple(b['shape'])}")
        return diffs
    for key in ("spacing", "origin", "direction"):
        va, vb = np.asarray(a[key], float), np.asarray(b[key], float)
        if va.shape != vb.shape or not np.allclose(va, vb, atol=atol, rtol=1e-6):
            diffs.append(f"{key} {np.round(va, 6).tolist()} vs {np.round(vb, 6).tolist()}")
    return diffs


# ---------------------------------------------------------------------------
# SimpleITK conversion
# ---------------------------------------------------------------------------


def _from_sitk(img, path: str | None = None) -> Image:
    import SimpleITK as sitk

    dim = img.GetDimension()
    if dim == 4:
        raise ImageReadError(
            f"{path or 'image'} is 4D (size {img.GetSize()}); midseg segments 2D images and 3D "
            f"volumes: extract one 3D volume first"
        )
    if dim not in (2, 3):
        raise ImageReadError(f"{path or 'image'} has {dim} dimensions; expected 2 or 3")
    arr = sitk.GetArrayFromImage(img)
    ncomp = img.GetNumberOfComponentsPerPixel()
    multichannel = ncomp > 1
    if multichannel:
        # SimpleITK puts components last; midseg wants channels first.
        arr = np.moveaxis(arr, -1, 0)
    spacing = tuple(img.GetSpacing())[::-1]
    origin = tuple(img.GetOrigin())[::-1]
    direction = np.asarray(img.GetDirection(), dtype=np.float64).reshape(dim, dim)[::-1, ::-1]
    return Image(
        arr,
        spacing=spacing,
        origin=origin,
        direction=direction,
        multichannel=multichannel,
        path=path,
        window=_dicom_window(img),
    )


def _to_sitk(array: np.ndarray, like: Image, *, multichannel: bool = False):
    import SimpleITK as sitk

    arr = np.ascontiguousarray(np.moveaxis(array, 0, -1) if multichannel else array)
    img = sitk.GetImageFromArray(arr, isVector=multichannel)
    img.SetSpacing(tuple(like.spacing[::-1]))
    img.SetOrigin(tuple(like.origin[::-1]))
    img.SetDirection(tuple(np.asarray(like.direction)[::-1, ::-1].ravel()))
    return img


def _to_grey(image: Image) -> Image:
    """Convert a 2D RGB(A) picture to grey with `RGB_TO_GREY` weights (alpha dropped)."""
    rgb = image.array[:3].astype(np.float64)
    grey = np.tensordot(np.asarray(RGB_TO_GREY), rgb, axes=1).astype(np.float32)
    return Image(
        grey, spacing=image.spacing, origin=image.origin, direction=image.direction, path=image.path
    )
