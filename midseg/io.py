"""Reading and writing images and masks, and the `Image` value (array + geometry).

Everything goes through SimpleITK. Arrays are in SimpleITK array order
((y, x) / (z, y, x), channel axis first for multi-channel images) and so are
spacing, origin and direction: the (x, y, z) order of SimpleITK is converted
here, once. Nothing in this module resamples.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._checks import as_spacing
from .errors import GeometryMismatchError, ImageReadError, InvalidInputError

__all__ = ["Image", "read_image", "read_mask", "write_image", "write_mask", "resample_to",
           "MIN_OVERLAP"]

#: Weights used to convert RGB(A) pictures to grey (ITU-R BT.601 luma).
RGB_TO_GREY = (0.299, 0.587, 0.114)

_PICTURE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"}


def _as_tuple(values, ndim: int, name: str, default: float) -> tuple[float, ...]:
    if values is None:
        return (float(default),) * ndim
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if arr.shape != (ndim,) or not np.all(np.isfinite(arr)):
        raise InvalidInputError(
            f"{name} must be {ndim} finite values in array axis order, got {tuple(np.ravel(values))}")
    return tuple(float(v) for v in arr)


def _as_direction(direction, ndim: int) -> tuple[tuple[float, ...], ...]:
    if direction is None:
        return tuple(tuple(float(i == j) for j in range(ndim)) for i in range(ndim))
    mat = np.asarray(direction, dtype=np.float64)
    if mat.size != ndim * ndim:
        raise InvalidInputError(
            f"direction must be a {ndim}x{ndim} matrix (array axis order), got {mat.size} values")
    mat = mat.reshape(ndim, ndim)
    if not np.allclose(mat.T @ mat, np.eye(ndim), atol=1e-4):
        raise InvalidInputError(f"direction must be orthonormal, got {mat.tolist()}")
    return tuple(tuple(float(v) for v in row) for row in mat)


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
    spacing: tuple[float, ...] = None
    origin: tuple[float, ...] = None
    direction: tuple[tuple[float, ...], ...] = None
    multichannel: bool = None
    path: str | None = field(default=None)

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
                + ("" if multichannel else
                   " (pass multichannel=True if the first axis holds channels; 4D/time series are not supported)"))
        if multichannel and arr.shape[0] < 1:
            raise InvalidInputError(f"multi-channel image has no channels: shape {arr.shape}")
        if min(arr.shape) < 1:
            raise InvalidInputError(f"image is empty: shape {arr.shape}")
        if arr.dtype.kind == "f":
            bad = np.count_nonzero(~np.isfinite(arr))
            if bad:
                raise InvalidInputError(
                    f"image{' ' + self.path if self.path else ''} contains {bad} NaN or infinite "
                    f"pixel values; replace them (e.g. np.nan_to_num) before segmenting")
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
                f"indices must have {self.ndim} coordinates, got shape {idx.shape}")
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
                f"points must have {self.ndim} coordinates, got shape {pts.shape}")
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
        return Image(array, spacing=self.spacing, origin=self.origin,
                     direction=self.direction,
                     multichannel=self.multichannel if multichannel is None else multichannel)

    def __repr__(self) -> str:
        chans = f", channels={self.channels}" if self.multichannel else ""
        where = f", path={self.path!r}" if self.path else ""
        sp = ", ".join(f"{s:g}" for s in self.spacing)
        return (f"Image(shape={self.shape}{chans}, spacing=({sp}), "
                f"dtype={self.array.dtype}{where})")


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
            f"volumes: extract one 3D volume first")
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
    return Image(arr, spacing=spacing, origin=origin, direction=direction,
                 multichannel=multichannel, path=path)


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
    return Image(grey, spacing=image.spacing, origin=image.origin,
                 direction=image.direction, path=image.path)


def _read_sitk(p: Path):
    """The SimpleITK image of a file or a one-series DICOM directory (`read_image`)."""
    import SimpleITK as sitk

    if not p.exists():
        raise ImageReadError(f"no such file or directory: {str(p)!r}")
    try:
        if p.is_dir():
            reader = sitk.ImageSeriesReader()
            series = reader.GetGDCMSeriesIDs(str(p))
            if not series:
                raise ImageReadError(f"directory {str(p)!r} holds no DICOM series")
            if len(series) > 1:
                raise ImageReadError(
                    f"directory {str(p)!r} holds {len(series)} DICOM series ({', '.join(series)}); "
                    f"put each series in its own directory")
            reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(p), series[0]))
            return reader.Execute()
        return sitk.ReadImage(str(p))
    except RuntimeError as exc:  # SimpleITK reports every read failure as RuntimeError
        first = str(exc).strip().splitlines()
        detail = next((ln for ln in first if "ERROR" in ln or "Unable" in ln), first[-1] if first else "")
        raise ImageReadError(f"cannot read {str(p)!r} as an image: {detail.strip()}") from None


#: Least fraction of the first image's voxels a co-registered image must cover
#: (`read_image` with several paths); below it the pair is refused as not overlapping.
MIN_OVERLAP = 0.5


def _resample_onto(moving, reference, path: str):
    """`moving` (SimpleITK) resampled onto `reference`'s grid in physical coordinates.

    Identity transform, linear interpolation, 0 outside `moving`'s extent. Raises
    `GeometryMismatchError` when it covers less than `MIN_OVERLAP` of `reference`.
    """
    import SimpleITK as sitk

    if moving.GetDimension() != reference.GetDimension():
        raise GeometryMismatchError(
            f"{path} is {moving.GetDimension()}D, the first image "
            f"{reference.GetDimension()}D: they cannot be co-registered channels")
    ones = sitk.Image(moving.GetSize(), sitk.sitkUInt8) + 1
    ones.CopyInformation(moving)
    cover = sitk.GetArrayFromImage(sitk.Resample(
        ones, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8))
    fraction = float(np.mean(cover))
    if fraction < MIN_OVERLAP:
        raise GeometryMismatchError(
            f"{path} covers {100 * fraction:.0f} % of the first image's voxels in physical "
            f"space (at least {100 * MIN_OVERLAP:.0f} % needed): the two images do not "
            "overlap enough; are they of the same patient and session, in the same frame?")
    return sitk.Resample(moving, reference, sitk.Transform(), sitk.sitkLinear, 0.0,
                         sitk.sitkFloat32)


def resample_to(moving: Image, reference: Image) -> Image:
    """`moving` resampled onto `reference`'s grid in physical coordinates (co-registration).

    SimpleITK, identity transform, linear interpolation, 0 outside `moving`'s extent; the
    same rule as `read_image` with several paths.

    Parameters
    ----------
    moving : Image
        Single-channel image of the same patient in the same physical frame.
    reference : Image
        Its grid (shape, spacing, origin, direction) is the result's.

    Returns
    -------
    Image
        float32, `reference`'s geometry, one channel.

    Raises
    ------
    InvalidInputError
        `moving` has several channels.
    GeometryMismatchError
        Different dimensions, or `moving` covers less than `MIN_OVERLAP` of `reference`.
    """
    import SimpleITK as sitk

    if moving.multichannel:
        raise InvalidInputError(f"the co-registered image has {moving.channels} channels; "
                                "expected one")
    ref = _to_sitk(np.zeros(reference.shape, np.uint8), reference)
    res = _resample_onto(_to_sitk(np.asarray(moving.array, np.float32), moving), ref,
                         "the co-registered image" if moving.path is None else repr(moving.path))
    return Image(sitk.GetArrayFromImage(res), spacing=reference.spacing,
                 origin=reference.origin, direction=reference.direction, path=moving.path)


def read_image(path: str | os.PathLike, *co_registered: str | os.PathLike) -> Image:
    """Read an image file or a DICOM series directory, optionally with co-registered channels.

    Parameters
    ----------
    path : str or PathLike
        A file SimpleITK reads (NIfTI ``.nii``/``.nii.gz``, NRRD, MHA/MHD,
        PNG, JPEG, TIFF, ...) or a directory holding one DICOM series.
    *co_registered : str or PathLike
        Further images of the same patient in the same physical frame (a PET
        with its CT: ``read_image("ct.nii.gz", "pet.nii.gz")``; the first image
        sets the grid and channel 0, so give the CT first for the PET/CT
        models). Each is
        resampled onto the first image's grid with SimpleITK (identity
        transform, physical coordinates, linear interpolation, 0 outside its
        own extent) and appended as a channel: the result is (C, Z, Y, X) /
        (C, Y, X) float32 with the first image's geometry.

    Returns
    -------
    Image
        Array in array order with spacing/origin/direction converted to
        array order. Pictures (PNG/JPEG/TIFF/BMP) with 3 or 4 components are
        converted to one grey channel with the BT.601 weights
        ``0.299 R + 0.587 G + 0.114 B`` (alpha is dropped); other
        multi-component images (e.g. a vector NIfTI) keep their components as
        a leading channel axis.

    Raises
    ------
    ImageReadError
        Missing path, unreadable file, a directory without exactly one DICOM
        series, or a 4D image.
    GeometryMismatchError
        A co-registered image of another dimension, or one covering less than
        `MIN_OVERLAP` of the first image (they do not overlap).
    InvalidInputError
        NaN or infinite pixel values.
    """
    import SimpleITK as sitk

    p = Path(path)
    img = _read_sitk(p)
    image = _from_sitk(img, path=str(p))
    if image.multichannel and p.suffix.lower() in _PICTURE_SUFFIXES and image.channels in (3, 4):
        image = _to_grey(image)
    if not co_registered:
        return image
    channels = list(image.array.astype(np.float32)) if image.multichannel else \
        [image.array.astype(np.float32)]
    for other in co_registered:
        q = Path(other)
        moving = _read_sitk(q)
        if moving.GetNumberOfComponentsPerPixel() > 1:
            raise InvalidInputError(
                f"co-registered image {str(q)!r} has {moving.GetNumberOfComponentsPerPixel()} "
                "components; expected one")
        res = _resample_onto(moving, img, repr(str(q)))
        channels.append(sitk.GetArrayFromImage(res).astype(np.float32))
    return Image(np.stack(channels), spacing=image.spacing, origin=image.origin,
                 direction=image.direction, multichannel=True, path=image.path)


def read_mask(path: str | os.PathLike, *, like: Image | None = None) -> np.ndarray:
    """Read a label file as a uint8 binary mask (nonzero -> 1).

    If ``like`` is given the mask must have the same shape, spacing, origin
    and direction; a mismatch raises `GeometryMismatchError` naming it.
    """
    mask_img = read_image(path)
    if mask_img.multichannel:
        raise InvalidInputError(f"mask {str(path)!r} has {mask_img.channels} channels; expected one")
    if like is not None:
        diffs = like.same_geometry(mask_img)
        if diffs:
            raise GeometryMismatchError(
                f"mask {str(path)!r} does not match the image geometry: " + "; ".join(diffs))
    return (mask_img.array != 0).astype(np.uint8)


def _umask() -> int:
    """The process umask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_json_atomic(path: str | os.PathLike, data, indent: int = 1) -> None:
    """Write `data` as JSON indented by `indent` to `path` atomically (temporary file + rename).

    A reader never sees a half-written file, and an interrupted write leaves
    the previous file as it was. Creates the parent folder. The file gets the
    permissions of a plain ``open(path, "w")`` (0666 less the umask), not the
    0600 of a temporary file.
    """
    import json

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=indent)
            fh.write("\n")
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _atomic_write(sitk_img, path: Path, compress: bool = True) -> None:
    import SimpleITK as sitk

    path.parent.mkdir(parents=True, exist_ok=True)
    # keep the full suffix (.nii.gz) so SimpleITK picks the same writer
    suffix = "".join(path.suffixes) or path.suffix
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        sitk.WriteImage(sitk_img, tmp, compress)
        os.replace(tmp, path)
    except RuntimeError as exc:
        raise ImageReadError(f"cannot write {str(path)!r}: {str(exc).strip().splitlines()[-1]}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_image(path: str | os.PathLike, image: Image) -> None:
    """Write an `Image` (any format SimpleITK writes), atomically."""
    if not isinstance(image, Image):
        raise InvalidInputError(f"image must be a midseg.Image, got {type(image).__name__}")
    _atomic_write(_to_sitk(image.array, image, multichannel=image.multichannel), Path(path))


def write_mask(path: str | os.PathLike, mask: np.ndarray, *, like: Image) -> None:
    """Write a binary mask with exactly the geometry of ``like``, atomically.

    Parameters
    ----------
    path : str or PathLike
        Output file; the format follows the suffix (``.nii.gz``, ``.nrrd``,
        ``.mha``, ``.png``, ...). Written to a temporary file in the same
        directory and renamed, so a reader never sees a partial file.
    mask : (Y, X) or (Z, Y, X) ndarray
        Nonzero = foreground; stored as uint8 0/1 (0/255 for PNG/JPEG/BMP,
        so the picture is visible).
    like : Image
        The image the mask belongs to: its spatial shape must equal
        ``mask.shape`` and its spacing, origin and direction are copied.

    Raises
    ------
    InvalidInputError
        Shape mismatch, non-numeric mask.
    """
    if not isinstance(like, Image):
        raise InvalidInputError(f"like must be a midseg.Image, got {type(like).__name__}")
    m = np.asarray(mask)
    if m.dtype.kind not in "biuf":
        raise InvalidInputError(f"mask must be numeric or boolean, got dtype {m.dtype}")
    if m.shape != like.shape:
        raise InvalidInputError(
            f"mask and image must have the same spatial shape, got {m.shape} and {like.shape}")
    out = (m != 0).astype(np.uint8)
    p = Path(path)
    if p.suffix.lower() in {".png", ".jpg", ".jpeg", ".bmp"}:
        out = out * 255
    _atomic_write(_to_sitk(out, like), p)
