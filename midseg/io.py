"""Reading and writing images and masks, and the `Image` value (array + geometry).

Everything goes through SimpleITK. Arrays are in SimpleITK array order
((y, x) / (z, y, x), channel axis first for multi-channel images) and so are
spacing, origin and direction: the (x, y, z) order of SimpleITK is converted
here, once. Nothing in this module resamples.
"""
from __future__ import annotations

import contextlib
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ._checks import SpacingLike, as_spacing
from .errors import (GeometryLossWarning, GeometryMismatchError, ImageReadError,
                     InvalidInputError, MidsegWarning)

if TYPE_CHECKING:
    import numpy.typing as npt

__all__ = ["Image", "read_image", "read_mask", "write_image", "write_mask", "resample_to",
           "check_output_path", "write_json_atomic", "write_bytes_atomic", "write_file_atomic",
           "file_sha256", "SIDECAR_SUFFIX",
           "MIN_OVERLAP",
           "WRITE_SUFFIXES", "MASK_SUFFIXES"]

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
        def __init__(self, array: npt.ArrayLike, spacing: SpacingLike | None = None,
                     origin: npt.ArrayLike | None = None, direction: npt.ArrayLike | None = None,
                     multichannel: bool | None = None, path: str | None = None,
                     window: tuple[float, float] | None = None) -> None: ...

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
                 multichannel=multichannel, path=path, window=_dicom_window(img))


def _dicom_window(img) -> tuple[float, float] | None:
    """(level, width) from DICOM's Window Center/Width (the first pair), if the file has it."""
    try:
        values = [img.GetMetaData(t).split("\\")[0].strip() for t in ("0028|1050", "0028|1051")]
        level, width = float(values[0]), float(values[1])
    except (RuntimeError, ValueError, IndexError):
        return None
    return (level, width) if np.isfinite(level) and np.isfinite(width) and width > 0 else None


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


# ---------------------------------------------------------------------------
# File integrity: what SimpleITK does not check
# ---------------------------------------------------------------------------
# ITK zero-fills the tail of a truncated .nii.gz or .nii, reads a damaged
# compressed .mha without a word and turns NaN/inf voxels of NIfTI files into 0.
# These checks read the file once more, in chunks of `_CHUNK` bytes (memory stays
# bounded), before SimpleITK reads it.

_CHUNK = 1 << 20
_GZIP_MAGIC = b"\x1f\x8b"
#: NIfTI datatype code -> numpy dtype name, for the types that can hold NaN/inf
_NIFTI_FLOATS = {16: "f4", 64: "f8"}
#: MetaImage element type -> bytes per component (the unambiguous ones)
_MET_SIZES = {"MET_UCHAR": 1, "MET_CHAR": 1, "MET_USHORT": 2, "MET_SHORT": 2, "MET_UINT": 4,
              "MET_INT": 4, "MET_FLOAT": 4, "MET_DOUBLE": 8, "MET_LONG_LONG": 8,
              "MET_ULONG_LONG": 8}
_REEXPORT = "copy or export it again"


def _damaged(path: Path, detail: str) -> ImageReadError:
    return ImageReadError(f"cannot read {str(path)!r}: {detail}; {_REEXPORT}")


def _file_chunks(fh):
    """The bytes of an open binary file from its current position, in chunks."""
    while True:
        chunk = fh.read(_CHUNK)
        if not chunk:
            return
        yield chunk


def _gzip_chunks(fh, path: Path):
    """The decompressed bytes of the gzip stream(s) of `fh`, in chunks.

    Python's gzip module checks each member's CRC-32 and length at its end.
    Raises `ImageReadError` for a stream that ends early or is damaged.
    """
    import gzip
    import zlib

    with gzip.GzipFile(fileobj=fh, mode="rb") as gz:
        while True:
            try:
                chunk = gz.read(_CHUNK)
            except EOFError:
                raise _damaged(path, "the file is truncated (its compressed data ends before the "
                                     "end-of-stream marker)") from None
            except (gzip.BadGzipFile, zlib.error) as exc:
                raise _damaged(path, f"the file is corrupt (its compressed data fails the "
                                     f"gzip check: {exc})") from None
            if not chunk:
                return
            yield chunk


def _zlib_chunks(fh, path: Path):
    """The decompressed bytes of the zlib stream of `fh` (compressed MetaImage), in chunks.

    zlib checks the stream's Adler-32 at its end. Raises `ImageReadError` for a
    stream that ends early or is damaged.
    """
    import zlib

    dec = zlib.decompressobj()
    for data in _file_chunks(fh):
        while True:  # at most _CHUNK bytes out per call; a full one may leave more pending
            try:
                out = dec.decompress(data, _CHUNK)
            except zlib.error as exc:
                raise _damaged(path, f"the file is corrupt (its compressed data fails the "
                                     f"zlib check: {exc})") from None
            if out:
                yield out
            if dec.eof:
                return
            data = dec.unconsumed_tail
            if not data and len(out) < _CHUNK:
                break
    if not dec.eof:
        raise _damaged(path, "the file is truncated (its compressed data ends before the "
                             "end-of-stream marker)")


def _nifti_layout(head: bytes):
    """(vox_offset, data bytes, float dtype or None, single file) of a NIfTI-1/2 header.

    None when `head` is not a NIfTI header this check understands.
    """
    import struct

    if len(head) < 348:
        return None
    for e in "<>":
        size = struct.unpack(e + "i", head[:4])[0]
        if size == 348 and head[344:348] in (b"n+1\0", b"ni1\0"):
            dim = struct.unpack(e + "8h", head[40:56])
            datatype, bitpix = struct.unpack(e + "hh", head[70:74])
            offset = struct.unpack(e + "f", head[108:112])[0]
            single = head[344:348] == b"n+1\0"
            break
        if size == 540 and len(head) >= 540 and head[4:8] in (b"n+2\0", b"ni2\0"):
            datatype, bitpix = struct.unpack(e + "hh", head[12:16])
            dim = struct.unpack(e + "8q", head[16:80])
            offset = struct.unpack(e + "q", head[168:176])[0]
            single = head[4:8] == b"n+2\0"
            break
    else:
        return None
    ndim = dim[0]
    if not 1 <= ndim <= 7 or min(dim[1:ndim + 1]) < 1 or bitpix < 8 or bitpix % 8:
        return None
    if not np.isfinite(offset) or offset < (size if single else 0):
        return None
    nbytes = int(np.prod(np.asarray(dim[1:ndim + 1], dtype=np.int64))) * (bitpix // 8)
    floating = _NIFTI_FLOATS.get(datatype)
    if floating is not None and int(floating[1]) * 8 != bitpix:
        floating = None
    dtype = np.dtype(e + floating) if floating else None
    return int(offset), nbytes, dtype, single


def _scan(chunks, path: Path, start: int, nbytes: int, dtype, what: str) -> None:
    """Consume `chunks`; refuse data shorter than `start + nbytes`, or NaN/inf `dtype` values.

    Raises `ImageReadError` (truncated) or `InvalidInputError` (NaN or infinite values).
    """
    pos = 0
    bad = 0
    carry = b""
    for chunk in chunks:
        lo, hi = max(start - pos, 0), min(start + nbytes - pos, len(chunk))
        pos += len(chunk)
        if dtype is None or hi <= lo:
            continue
        data = carry + chunk[lo:hi]
        usable = len(data) - len(data) % dtype.itemsize
        values = np.frombuffer(data, dtype=dtype, count=usable // dtype.itemsize)
        bad += values.size - int(np.count_nonzero(np.isfinite(values)))
        carry = data[usable:]
    if pos < start + nbytes:
        have = max(pos - start, 0)
        raise _damaged(path, f"the file is truncated: it holds {have} bytes of voxel data where "
                             f"its {what} header announces {nbytes}")
    if bad:
        raise InvalidInputError(
            f"image {path} contains {bad} NaN or infinite pixel values; replace them "
            f"(e.g. np.nan_to_num) before segmenting")


def _peek(chunks, size: int):
    """(first >= `size` bytes or all of them, an iterator over all the bytes again)."""
    import itertools

    head = b""
    taken = []
    for chunk in chunks:
        taken.append(chunk)
        head += chunk
        if len(head) >= size:
            break
    return head, itertools.chain(taken, chunks)


def _nifti_pair(p: Path):
    """(header file, data file) of a NIfTI/Analyze pair given either of them, else None."""
    name = p.name.lower()
    for hdr_suffix, data_suffixes in ((".hdr", (".img", ".img.gz")),
                                      (".hdr.gz", (".img.gz", ".img"))):
        if name.endswith(hdr_suffix):
            stem = p.name[: -len(hdr_suffix)]
            for s in data_suffixes:
                for cand in (p.with_name(stem + s), p.with_name(stem + s.upper())):
                    if cand.is_file():
                        return p, cand
            return None
    for data_suffix in (".img", ".img.gz"):
        if name.endswith(data_suffix):
            stem = p.name[: -len(data_suffix)]
            for s in (".hdr", ".hdr.gz", ".HDR"):
                if p.with_name(stem + s).is_file():
                    return p.with_name(stem + s), p
    return None


def _open_stream(fh, path: Path):
    """The decompressed bytes of a file that may be gzip-compressed, in chunks."""
    magic = fh.read(2)
    fh.seek(0)
    return _gzip_chunks(fh, path) if magic == _GZIP_MAGIC else _file_chunks(fh)


def _text_header(fh, end_marker, limit: int = 1 << 16):
    """(header lines, data offset) of a text header ended by `end_marker(line)`, else None."""
    fh.seek(0)
    offset = 0
    lines = []
    for raw in iter(lambda: fh.readline(limit), b""):
        offset += len(raw)
        if offset > limit:
            return None
        line = raw.decode("latin-1").rstrip("\r\n")
        lines.append(line)
        if end_marker(line):
            return lines, offset
    return None


def _verify_nrrd(fh, path: Path) -> None:
    """Check the attached gzip data of a ``.nrrd`` file (ITK's own messages are cryptic)."""
    found = _text_header(fh, lambda line: line == "")
    if found is None:
        return
    fields = {}
    for line in found[0][1:]:
        if ":" in line and not line.startswith("#"):
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.lstrip("=").strip().lower()
    detached = {"data file", "datafile", "line skip", "lineskip", "byte skip", "byteskip"}
    if fields.get("encoding") in ("gzip", "gz") and not detached & set(fields):
        fh.seek(found[1])
        for _ in _gzip_chunks(fh, path):
            pass


def _verify_mha(fh, path: Path) -> None:
    """Check a MetaImage ``.mha`` with its data in the file: length, zlib stream."""
    found = _text_header(fh, lambda line: line.split("=")[0].strip() == "ElementDataFile")
    if found is None:
        return
    fields = {}
    for line in found[0]:
        key, _, value = line.partition("=")
        fields[key.strip()] = value.strip()
    if fields.get("ElementDataFile") != "LOCAL" or "HeaderSize" in fields:
        return
    try:
        count = int(np.prod([int(v) for v in fields["DimSize"].split()], dtype=np.int64))
        count *= int(fields.get("ElementNumberOfChannels", "1"))
        size = _MET_SIZES.get(fields["ElementType"])
    except (KeyError, ValueError):
        return
    nbytes = None if size is None else count * size
    fh.seek(found[1])
    if fields.get("CompressedData", "False").lower() == "true":
        chunks = _zlib_chunks(fh, path)
    elif nbytes is not None:
        have = os.fstat(fh.fileno()).st_size - found[1]
        if have < nbytes:
            raise _damaged(path, f"the file is truncated: it holds {have} bytes of voxel data "
                                 f"where its MetaImage header announces {nbytes}")
        return
    else:
        return
    _scan(chunks, path, 0, nbytes or 0, None, "MetaImage")


@contextlib.contextmanager
def _keep_locale():
    """Restore the process locale after a SimpleITK call: its DICOM library (GDCM) can set
    the C locale, after which Python reads and writes text files as ASCII."""
    import locale

    saved = locale.setlocale(locale.LC_ALL)
    try:
        yield
    finally:
        if locale.setlocale(locale.LC_ALL) != saved:
            locale.setlocale(locale.LC_ALL, saved)


def _as_input_path(path) -> Path:
    """`path` as a Path, refusing what cannot name a file (a number, None, an empty name)."""
    if isinstance(path, bytes) or not isinstance(path, (str, os.PathLike)):
        raise InvalidInputError(f"an image path must be a str or os.PathLike, got "
                                f"{type(path).__name__} {path!r}"[:200])
    if not os.fspath(path):
        raise InvalidInputError("the image path is empty")
    return Path(path)


def _verify_jpeg(p: Path) -> None:
    """Refuse a JPEG without its end-of-image marker (libjpeg reads a truncated one as
    grey, with only a warning on its own output)."""
    size = p.stat().st_size
    with open(p, "rb") as fh:
        fh.seek(max(0, size - 4096))
        tail = fh.read().rstrip(b"\x00\r\n \t")
    if not tail.endswith(b"\xff\xd9"):
        raise ImageReadError(f"cannot read {str(p)!r}: the JPEG file is truncated (it has no "
                             "end-of-image marker); copy or export it again")


def _verify_file(p: Path) -> None:
    """Refuse a truncated or damaged image file, or a NIfTI file with NaN/inf voxels.

    Checks (each reads the file in chunks, memory stays bounded):

    - any gzip-compressed file (``.nii.gz``, ``.img.gz``, ...): the whole stream
      decompresses and its CRC-32 and length match;
    - NIfTI-1/2 (``.nii``, ``.nii.gz``, ``.hdr``/``.img`` pairs): the data holds
      ``prod(dim) * bitpix / 8`` bytes after ``vox_offset``, and float32/float64
      voxels are finite (ITK's NIfTI reader turns NaN and inf into 0);
    - ``.nrrd`` with attached gzip data and ``.mha`` with data in the file: the
      compressed stream is whole (zlib checks Adler-32) or the raw data long enough.

    Raises `ImageReadError` (truncated or corrupt) or `InvalidInputError` (NaN/inf).
    """
    name = p.name.lower()
    if name.endswith((".jpg", ".jpeg")):
        _verify_jpeg(p)
        return
    pair = _nifti_pair(p)
    if pair is not None:
        hdr, data = pair
        with open(hdr, "rb") as fh:
            head, _ = _peek(_open_stream(fh, hdr), 540)
        layout = _nifti_layout(head)
        if layout is None or layout[3]:
            return
        offset, nbytes, dtype, _ = layout
        with open(data, "rb") as fh:
            _scan(_open_stream(fh, data), data, offset, nbytes, dtype, "NIfTI")
        return
    with open(p, "rb") as fh:
        magic = fh.read(4)
        fh.seek(0)
        if magic[:2] == _GZIP_MAGIC:
            head, chunks = _peek(_gzip_chunks(fh, p), 540)
            layout = _nifti_layout(head)
            if layout is not None and layout[3]:
                offset, nbytes, dtype, _ = layout
                _scan(chunks, p, offset, nbytes, dtype, "NIfTI")
            else:
                for _ in chunks:  # the gzip check alone
                    pass
        elif name.endswith(".nii"):
            layout = _nifti_layout(fh.read(540))
            fh.seek(0)
            if layout is None or not layout[3]:
                return
            offset, nbytes, dtype, _ = layout
            if dtype is None:  # no NaN possible: the length is enough
                have = os.fstat(fh.fileno()).st_size - offset
                if have < nbytes:
                    raise _damaged(p, f"the file is truncated: it holds {max(have, 0)} bytes of "
                                      f"voxel data where its NIfTI header announces {nbytes}")
                return
            _scan(_file_chunks(fh), p, offset, nbytes, dtype, "NIfTI")
        elif magic == b"NRRD":
            _verify_nrrd(fh, p)
        elif name.endswith(".mha"):
            _verify_mha(fh, p)


# ---------------------------------------------------------------------------
# Grey + alpha PNG (SimpleITK: "Unknown PixelType")
# ---------------------------------------------------------------------------

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_chunks(data: bytes):
    """(type, payload) of each chunk of a PNG file's bytes; None if it is not a PNG."""
    import struct

    if not data.startswith(_PNG_SIGNATURE):
        return None
    chunks = []
    pos = len(_PNG_SIGNATURE)
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunks.append((kind, data[pos + 8:pos + 8 + length]))
        pos += 12 + length
        if kind == b"IEND":
            break
    return chunks


def _is_grey_alpha_png(p: Path) -> bool:
    """Whether `p` is a PNG of colour type 4 (grey + alpha), from its IHDR chunk."""
    with open(p, "rb") as fh:
        head = fh.read(33)
    return (head.startswith(_PNG_SIGNATURE) and head[12:16] == b"IHDR" and len(head) >= 26
            and head[25] == 4)


def _read_grey_alpha_png(p: Path):
    """The grey channel of a grey + alpha PNG as a SimpleITK image (alpha dropped).

    SimpleITK cannot read 2-component PNGs. The pixel bytes of grey + alpha at
    8 bits are laid out (and filtered) exactly like 16-bit grey, and at 16 bits
    exactly like 8-bit RGBA, so the file is relabelled in memory (IHDR changed;
    ancillary chunks dropped but pHYs and sCAL, the spacing), read by SimpleITK
    from a temporary copy, and the grey bytes are taken back out: uint8 or
    uint16, as the file stores them.
    """
    import struct
    import zlib

    import SimpleITK as sitk

    chunks = _png_chunks(p.read_bytes())
    width, height, depth, _, comp, filt, interlace = struct.unpack(">IIBBBBB", chunks[0][1][:13])
    if depth not in (8, 16):
        raise ImageReadError(f"cannot read {str(p)!r}: grey + alpha PNG of bit depth {depth}")
    new_depth, new_type = (16, 0) if depth == 8 else (8, 6)
    ihdr = struct.pack(">IIBBBBB", width, height, new_depth, new_type, comp, filt, interlace)

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (struct.pack(">I", len(payload)) + kind + payload
                + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF))

    out = [_PNG_SIGNATURE, chunk(b"IHDR", ihdr)]
    out += [chunk(kind, payload) for kind, payload in chunks[1:]
            if kind in (b"pHYs", b"sCAL", b"IDAT")]
    out.append(chunk(b"IEND", b""))
    with tempfile.TemporaryDirectory(prefix="midseg-png-") as tmp:
        copy = Path(tmp) / "grey.png"
        copy.write_bytes(b"".join(out))
        try:
            relabelled = sitk.ReadImage(str(copy))
        except RuntimeError as exc:
            detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else ""
            raise ImageReadError(f"cannot read {str(p)!r} as an image: {detail}") from None
    arr = sitk.GetArrayFromImage(relabelled)
    if depth == 8:
        grey = (arr.astype(np.uint16) >> 8).astype(np.uint8)   # grey byte, then alpha byte
    else:
        grey = (arr[..., 0].astype(np.uint16) << 8) | arr[..., 1]  # grey hi, grey lo, alpha
    img = sitk.GetImageFromArray(np.ascontiguousarray(grey))
    img.CopyInformation(relabelled)
    return img


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
            reader.MetaDataDictionaryArrayUpdateOn()
            with _keep_locale():         # GDCM may set the C locale for the whole process
                img = reader.Execute()
            for tag in ("0028|1050", "0028|1051"):      # window centre / width of slice 0
                if reader.HasMetaDataKey(0, tag):
                    img.SetMetaData(tag, reader.GetMetaData(0, tag))
            return img
        try:
            _verify_file(p)
        except (ImageReadError, InvalidInputError):
            raise
        except OSError as exc:
            raise ImageReadError(f"cannot read {str(p)!r}: {exc.strerror or exc}") from None
        if p.suffix.lower() == ".png" and _is_grey_alpha_png(p):
            return _read_grey_alpha_png(p)
        img = sitk.ReadImage(str(p))
        if img.HasMetaDataKey("0008|0016") and \
                img.GetMetaData("0008|0016").strip("\x00 ") == "1.2.840.10008.5.1.4.1.1.66.4":
            raise InvalidInputError(f"{str(p)!r} is a DICOM Segmentation (SEG), not an image: "
                                    "read it with midseg.dicomseg.read_dicom_seg(path, "
                                    "source_dir=its series folder)")
        return img
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
        ``0.299 R + 0.587 G + 0.114 B`` (alpha is dropped); a grey + alpha
        PNG is read as its grey channel (uint8 or uint16, alpha dropped); other
        multi-component images (e.g. a vector NIfTI) keep their components as
        a leading channel axis.

    Raises
    ------
    ImageReadError
        Missing path, unreadable file, a directory without exactly one DICOM
        series, or a 4D image. A truncated or corrupt file: every gzip-compressed
        file (``.nii.gz``, ...) is decompressed once in full, in chunks, and its
        CRC-32 and length checked; NIfTI files must hold the voxel bytes their
        header announces; ``.nrrd`` (attached gzip data) and ``.mha`` (data in
        the file, zlib-compressed or raw) are checked likewise. Damage to
        uncompressed voxel data cannot be detected.
    GeometryMismatchError
        A co-registered image of another dimension, or one covering less than
        `MIN_OVERLAP` of the first image (they do not overlap).
    InvalidInputError
        NaN or infinite pixel values, in every format (NIfTI float32/float64
        voxels are checked in the file itself: SimpleITK reads them as 0).
    """
    import SimpleITK as sitk

    p = _as_input_path(path)
    img = _read_sitk(p)
    image = _from_sitk(img, path=str(p))
    if image.multichannel and p.suffix.lower() in _PICTURE_SUFFIXES and image.channels in (3, 4):
        image = _to_grey(image)
    if not co_registered:
        return image
    channels = list(image.array.astype(np.float32)) if image.multichannel else \
        [image.array.astype(np.float32)]
    for other in co_registered:
        q = _as_input_path(other)
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


# ---------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------

#: File name endings `write_image` and `write_mask` write (lower case); the
#: format follows the ending. ``.mhd``, ``.nhdr`` and ``.hdr`` write a second
#: (data) file beside the header.
#: Sidecar of segment names and colours beside a label map (`midseg.labelmap`); writing
#: another image or mask to that path removes it.
SIDECAR_SUFFIX = ".segments.json"
WRITE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".hdr", ".png", ".tif",
                  ".tiff", ".bmp", ".jpg", ".jpeg", ".vtk", ".gipl", ".gipl.gz")
#: Endings only masks are written to: ``.dcm`` is a DICOM Segmentation (`midseg.dicomseg`)
#: of the series the image was read from (images are not written as DICOM).
MASK_SUFFIXES = (".dcm",)
#: Picture formats that hold one 2D slice only.
_FLAT_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
#: Temporaries of `_atomic_write` (folders) and `write_json_atomic` (files):
#: ``.<name>.~midseg-<12 hex>.tmp`` in the output's folder.
_TMP_RE = re.compile(r"^\..+\.~midseg-[0-9a-f]{12}\.tmp$")
#: Temporaries older than this (seconds) are left-overs of a killed write and removed.
STALE_TEMPORARY_AGE = 3600.0
_swept: set[str] = set()


def _write_suffix(p: Path) -> str | None:
    """The entry of `WRITE_SUFFIXES` that `p`'s name ends with, else None."""
    name = p.name.lower()
    return next((s for s in WRITE_SUFFIXES if name.endswith(s) and len(name) > len(s)), None)


def _folder_problem(p: Path) -> tuple[int, str] | None:
    """(errno, one line naming `p`) of why no file can be created at `p`; None if it looks fine."""
    import errno

    if p.is_dir():
        return errno.EISDIR, f"cannot write {str(p)!r}: it is a folder"
    ancestor = p.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if ancestor.exists() and not ancestor.is_dir():
        return errno.ENOTDIR, f"cannot write {str(p)!r}: {str(ancestor)!r} is a file, not a folder"
    if ancestor.is_dir() and not os.access(ancestor, os.W_OK | os.X_OK):
        made = "create files" if ancestor == p.parent else "create folders"
        return errno.EACCES, (f"cannot write {str(p)!r}: no permission to {made} in "
                              f"{str(ancestor)!r}")
    return None


def check_output_path(path: str | os.PathLike, ndim: int | None = None, *,
                      mask: bool = False) -> Path:
    """Check, before any work, that `write_image`/`write_mask` can write an image to `path`.

    Creates nothing. Meant for callers (command line, batch runs) that compute
    for a while before writing: a bad output path is refused at once, with the
    message the write itself would give.

    Parameters
    ----------
    path : str or PathLike
        The output file; its ending must be one of `WRITE_SUFFIXES`.
    ndim : {2, 3}, optional
        Spatial dimensions of the image or mask to be written. 3 refuses the
        single-slice picture formats (``.png``, ``.jpg``, ``.jpeg``, ``.bmp``).
    mask : bool
        A mask is to be written (`write_mask`): `MASK_SUFFIXES` are accepted too.

    Returns
    -------
    Path
        `path` as a `Path`.

    Raises
    ------
    InvalidInputError
        Unsupported file ending, or a 3D image for a single-slice picture format.
    ImageReadError
        `path` is a folder, a part of its folder path is a file, or the nearest
        existing folder cannot be written to (by this user).
    """
    p = Path(path)
    if p.is_dir():
        raise ImageReadError(f"cannot write {str(p)!r}: it is a folder")
    suffix = _write_suffix(p)
    if suffix is None and mask and p.name.lower().endswith(MASK_SUFFIXES):
        problem = _folder_problem(p)
        if problem:
            raise ImageReadError(problem[1])
        return p
    if suffix is None:
        ext = "".join(p.suffixes[-2:]) if p.suffix.lower() == ".gz" else p.suffix
        what = (f"file extension {ext!r} is not a format midseg writes" if ext
                else "the name has no file extension")
        raise InvalidInputError(
            f"cannot write {str(p)!r}: {what}; use one of " + ", ".join(WRITE_SUFFIXES))
    if suffix in (".nii", ".nii.gz") and not p.name.endswith(suffix):
        raise InvalidInputError(
            f"cannot write {str(p)!r}: write the ending in lower case ({suffix}); ITK's NIfTI "
            "writer does not recognise it otherwise")
    if ndim == 3 and suffix in _FLAT_SUFFIXES:
        raise InvalidInputError(
            f"cannot write {str(p)!r}: a {suffix} picture holds one 2D slice and this is a 3D "
            f"volume; write .nii.gz, .nrrd or .mha instead")
    problem = _folder_problem(p)
    if problem:
        raise ImageReadError(problem[1])
    return p


def _sweep_stale_temporaries(folder: Path) -> None:
    """Remove this user's temporaries of `_TMP_RE` older than `STALE_TEMPORARY_AGE` in `folder`.

    Once per folder and process; only entries of that exact pattern, owned by
    this user; a temporary folder only if it holds plain files alone. Errors are ignored.
    """
    import stat
    import time

    key = str(folder.resolve()) if folder.exists() else str(folder)
    if key in _swept:
        return
    _swept.add(key)
    uid = os.getuid() if hasattr(os, "getuid") else None
    cutoff = time.time() - STALE_TEMPORARY_AGE
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        if not _TMP_RE.match(entry.name):
            continue
        try:
            st = entry.stat(follow_symlinks=False)
            if (uid is not None and st.st_uid != uid) or st.st_mtime > cutoff:
                continue
            if stat.S_ISREG(st.st_mode):
                os.unlink(entry.path)
            elif stat.S_ISDIR(st.st_mode):
                inner = list(os.scandir(entry.path))
                if all(i.is_file(follow_symlinks=False) for i in inner):
                    for i in inner:
                        os.unlink(i.path)
                    os.rmdir(entry.path)
        except OSError:
            continue


def _fsync(path, directory: bool = False) -> None:
    """Flush `path` (a file, or a folder's entries) to disk; best effort for folders."""
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        if directory:
            return
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not directory:
            raise
    finally:
        os.close(fd)


def _temporary_name(path: Path) -> Path:
    import secrets

    return path.with_name(f".{path.name}.~midseg-{secrets.token_hex(6)}.tmp")


def _prepare_folder(path: Path, error) -> None:
    """Create `path`'s folder; raise `error(errno, message)` naming `path` if it cannot be."""
    problem = _folder_problem(path)
    if problem:
        raise error(*problem)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise error(exc.errno, f"cannot write {str(path)!r}: cannot create its folder "
                               f"{str(path.parent)!r} ({exc.strerror or exc})") from None
    _sweep_stale_temporaries(path.parent)


def _create_temporary(path: Path, create) -> Path:
    """A new temporary beside `path` (`_TMP_RE`), made by `create(name)` (exclusive)."""
    for _ in range(100):
        tmp = _temporary_name(path)
        try:
            create(tmp)
            return tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {str(path)!r}")


def write_json_atomic(path: str | os.PathLike, data, indent: int = 1) -> None:
    """Write `data` as JSON indented by `indent` to `path` atomically (temporary file + rename).

    A reader never sees a half-written file, and an interrupted write leaves
    the previous file as it was: the data goes to a temporary folder ``.<name>.~midseg-<hex>.tmp``
    beside `path`, is flushed to disk (fsync) and renamed over `path`. Creates
    the parent folder. The file gets the permissions of a newly created file
    (0666 less the umask). This user's temporaries of that pattern older than
    `STALE_TEMPORARY_AGE` in the folder (left by a killed process) are removed.

    Raises
    ------
    OSError
        The file cannot be written; the message names `path` (never the temporary).
    """
    import json

    write_bytes_atomic(path, (json.dumps(data, indent=indent) + "\n").encode("utf-8"))


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically, as `write_json_atomic` does (same guarantees).

    Raises
    ------
    OSError
        The file cannot be written; the message names `path` (never the temporary).
    """
    write_file_atomic(path, lambda tmp: tmp.write_bytes(data))


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 (hex) of a file's bytes, read in 1 MiB chunks."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_file_atomic(path: str | os.PathLike, write) -> None:
    """Let ``write(tmp_path)`` make a file, then move it to `path` atomically.

    For writers that only take a file name (slicerio, highdicom): `write` writes
    ``<temporary folder beside path>/<name>``; the file is flushed to disk and renamed over
    `path`, as `write_json_atomic` does (same guarantees; the parent folder is created).

    Raises
    ------
    OSError
        The file cannot be written; the message names `path` (never the temporary).
    """
    import shutil

    path = Path(path)
    _prepare_folder(path, OSError)
    tmp = None
    try:
        tmp = _create_temporary(path, lambda name: os.mkdir(name, 0o700))
        target = tmp / path.name
        write(target)
        _fsync(target)
        os.replace(target, path)
        _fsync(path.parent, directory=True)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot write {str(path)!r}: {exc.strerror or exc}") from None
    finally:
        if tmp is not None and os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)


def _geometry_lost(written: Path, like: Image) -> list[str]:
    """What of `like`'s spacing, origin and direction the file `written` lost (empty if none)."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(written))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return []
    dim = reader.GetDimension()
    if dim != like.ndim:
        return [f"dimensions {like.ndim} -> {dim}"]
    got = {
        "spacing": np.asarray(reader.GetSpacing(), float)[::-1],
        "origin": np.asarray(reader.GetOrigin(), float)[::-1],
        "direction": np.asarray(reader.GetDirection(), float).reshape(dim, dim)[::-1, ::-1],
    }
    want = {k: np.asarray(getattr(like, k), float) for k in got}
    tolerance = {"spacing": (1e-4, 1e-6), "origin": (1e-6, 1e-3),  # (rtol, atol)
                 "direction": (0.0, 1e-3)}
    lost = []
    for key, value in got.items():
        rtol, atol = tolerance[key]
        if not np.allclose(value, want[key], rtol=rtol, atol=atol):
            lost.append(f"{key} {np.round(want[key], 6).tolist()} -> {np.round(value, 6).tolist()}")
    return lost


def _atomic_write(sitk_img, path: Path, like: Image, compress: bool = True) -> None:
    """Write `sitk_img` to `path` through a temporary folder beside it, then rename.

    SimpleITK writes ``<tmp folder>/<name>`` (and any data file of a two-file
    format); each file is flushed to disk, the data files are renamed into
    place and the named file last. Warns `GeometryLossWarning` when the written
    file does not hold `like`'s spacing, origin or direction.
    """
    import shutil
    import warnings

    import SimpleITK as sitk

    _prepare_folder(path, lambda _errno, msg: ImageReadError(msg))
    tmp = None
    try:
        tmp = _create_temporary(path, lambda name: os.mkdir(name, 0o700))
        target = tmp / path.name
        try:
            with _keep_locale():
                sitk.WriteImage(sitk_img, str(target), compress)
        except RuntimeError as exc:
            lines = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
            detail = (lines[-1] if lines else "").replace(str(target), str(path))
            raise ImageReadError(f"cannot write {str(path)!r}: {detail.strip()}") from None
        lost = _geometry_lost(target, like)
        files = sorted(os.listdir(tmp), key=lambda n: n == path.name)  # the named file last
        for name in files:
            _fsync(tmp / name)
        for name in files:
            os.replace(tmp / name, path.with_name(name))
        _fsync(path.parent, directory=True)
        # segment names of an earlier label map at this path describe another file now
        path.with_name(path.name + SIDECAR_SUFFIX).unlink(missing_ok=True)
    except OSError as exc:
        if isinstance(exc, ImageReadError):
            raise
        where = str(path.parent) if tmp is None or not tmp.exists() else str(path)
        raise ImageReadError(f"cannot write {str(path)!r}: cannot create files in "
                             f"{where!r} ({exc.strerror or exc})") from None
    finally:
        if tmp is not None and os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    if lost:
        warnings.warn(
            f"{str(path)!r}: the {_write_suffix(path)} format does not hold this image's "
            f"geometry: {'; '.join(lost)} (array order); write .nii.gz, .nrrd or .mha to keep it",
            GeometryLossWarning, stacklevel=3)


def write_image(path: str | os.PathLike, image: Image) -> None:
    """Write an `Image`, atomically; the format follows the file ending (`WRITE_SUFFIXES`).

    Written through a temporary folder beside `path` and renamed, so a reader
    never sees a partial file; the file gets the permissions of a newly created
    file (0666 less the umask).

    Raises
    ------
    InvalidInputError
        `image` is not an `Image`; unsupported file ending; a 3D image for
        ``.png``/``.jpg``/``.jpeg``/``.bmp`` (checked before writing, see
        `check_output_path`).
    ImageReadError
        The file cannot be written (the message names `path`).

    Warns
    -----
    GeometryLossWarning
        The format does not hold the image's spacing, origin or direction (e.g.
        TIFF and PNG keep no origin or direction, TIFF no slice spacing); the
        message names what is lost.
    """
    if not isinstance(image, Image):
        raise InvalidInputError(f"image must be a midseg.Image, got {type(image).__name__}")
    path = check_output_path(path, image.ndim)
    _atomic_write(_to_sitk(image.array, image, multichannel=image.multichannel), path, image)


def write_mask(path: str | os.PathLike, mask: np.ndarray, *, like: Image) -> None:
    """Write a binary mask with exactly the geometry of ``like``, atomically.

    Parameters
    ----------
    path : str or PathLike
        Output file; the format follows the ending (`WRITE_SUFFIXES`:
        ``.nii.gz``, ``.nrrd``, ``.mha``, ``.png``, ...; ``.seg.nrrd`` is 3D Slicer's
        segmentation file with one segment, `midseg.labelmap`; ``.dcm`` a DICOM-SEG
        referencing the series ``like`` was read from, `midseg.dicomseg`). Written through a
        temporary folder beside it and renamed, so a reader never sees a
        partial file; the file gets the permissions of a newly created file
        (0666 less the umask).
    mask : (Y, X) or (Z, Y, X) ndarray
        Nonzero = foreground; stored as uint8 0/1 (0/255 for PNG/JPEG/BMP,
        so the picture is visible).
    like : Image
        The image the mask belongs to: its spatial shape must equal
        ``mask.shape`` and its spacing, origin and direction are copied.

    Raises
    ------
    InvalidInputError
        Shape mismatch, non-numeric mask, NaN or infinite values, unsupported
        file ending, a 3D mask for ``.png``/``.jpg``/``.jpeg``/``.bmp`` (all
        checked before writing, see `check_output_path`).
    ImageReadError
        The file cannot be written (the message names `path`).

    Warns
    -----
    GeometryLossWarning
        The format does not hold ``like``'s spacing, origin or direction
        (TIFF, PNG, ...); the message names what is lost.
    MidsegWarning
        JPEG: lossy compression blurs the mask's edges, so it does not read
        back exactly; write ``.png``.
    """
    import warnings

    if not isinstance(like, Image):
        raise InvalidInputError(f"like must be a midseg.Image, got {type(like).__name__}")
    m = np.asarray(mask)
    if m.dtype.kind not in "biuf":
        raise InvalidInputError(f"mask must be numeric or boolean, got dtype {m.dtype}")
    if m.shape != like.shape:
        raise InvalidInputError(
            f"mask and image must have the same spatial shape, got {m.shape} and {like.shape}")
    if m.dtype.kind == "f":
        bad = m.size - int(np.count_nonzero(np.isfinite(m)))
        if bad:
            raise InvalidInputError(
                f"mask contains {bad} NaN or infinite values; a mask is 0 (background) or "
                f"nonzero (foreground): threshold or np.nan_to_num it first")
    p = check_output_path(path, m.ndim, mask=True)
    suffix = _write_suffix(p) or p.suffix.lower()
    out = (m != 0).astype(np.uint8)
    if p.name.lower().endswith(".seg.nrrd"):      # 3D Slicer's segmentation file
        from .labelmap import Segment, write_labelmap

        write_labelmap(p, out, like=like, segments=[Segment(1, "Segment_1")])
        return
    if suffix == ".dcm":                          # DICOM-SEG referencing the source series
        from .dicomseg import write_dicom_seg
        from .labelmap import Segment

        if like.ndim != 3 or not like.path or not Path(like.path).is_dir():
            raise InvalidInputError(
                f"cannot write {str(p)!r}: a .dcm mask is a DICOM Segmentation of the DICOM "
                "series it was made on, and this image was not read from a DICOM series "
                "folder; write .nii.gz, .nrrd or .seg.nrrd")
        write_dicom_seg(p, out, source_dir=like.path, segments=[Segment(1, "Segment_1")],
                        spacing=like.spacing)
        return
    if suffix in _FLAT_SUFFIXES:
        out = out * 255
    if suffix in (".jpg", ".jpeg"):
        warnings.warn(f"{str(p)!r}: JPEG is lossy, so the mask's edges do not read back "
                      f"exactly (stray foreground pixels); write .png instead",
                      MidsegWarning, stacklevel=2)
    _atomic_write(_to_sitk(out, like), p, like)
