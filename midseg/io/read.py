"""Reading images and masks: `read_image` (files, DICOM series, co-registered channels),
`read_mask` and `resample_to`. Everything goes through SimpleITK; nothing resamples but
the co-registration of further channels onto the first image's grid.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from ..errors import GeometryMismatchError, ImageReadError, InvalidInputError
from .checks import _verify_file
from .dicom import _read_dicom_series
from .image import Image, _from_sitk, _to_grey, _to_sitk

_PICTURE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"}


def _as_input_path(path) -> Path:
    """`path` as a Path, refusing what cannot name a file (a number, None, an empty name)."""
    if isinstance(path, bytes) or not isinstance(path, (str, os.PathLike)):
        raise InvalidInputError(
            f"an image path must be a str or os.PathLike, got {type(path).__name__} {path!r}"[:200]
        )
    if not os.fspath(path):
        raise InvalidInputError("the image path is empty")
    return Path(path)


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
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        chunks.append((kind, data[pos + 8 : pos + 8 + length]))
        pos += 12 + length
        if kind == b"IEND":
            break
    return chunks


def _is_grey_alpha_png(p: Path) -> bool:
    """Whether `p` is a PNG of colour type 4 (grey + alpha), from its IHDR chunk."""
    with open(p, "rb") as fh:
        head = fh.read(33)
    return (
        head.startswith(_PNG_SIGNATURE)
        and head[12:16] == b"IHDR"
        and len(head) >= 26
        and head[25] == 4
    )


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
        return (
            struct.pack(">I", len(payload))
            + kind
            + payload
            + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)
        )

    out = [_PNG_SIGNATURE, chunk(b"IHDR", ihdr)]
    out += [
        chunk(kind, payload) for kind, payload in chunks[1:] if kind in (b"pHYs", b"sCAL", b"IDAT")
    ]
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
        grey = (arr.astype(np.uint16) >> 8).astype(np.uint8)  # grey byte, then alpha byte
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
            return _read_dicom_series(p)
        try:
            _verify_file(p)
        except (ImageReadError, InvalidInputError):
            raise
        except OSError as exc:
            raise ImageReadError(f"cannot read {str(p)!r}: {exc.strerror or exc}") from None
        if p.suffix.lower() == ".png" and _is_grey_alpha_png(p):
            return _read_grey_alpha_png(p)
        img = sitk.ReadImage(str(p))
        if (
            img.HasMetaDataKey("0008|0016")
            and img.GetMetaData("0008|0016").strip("\x00 ") == "1.2.840.10008.5.1.4.1.1.66.4"
        ):
            raise InvalidInputError(
                f"{str(p)!r} is a DICOM Segmentation (SEG), not an image: "
                "read it with midseg.dicomseg.read_dicom_seg(path, "
                "source_dir=its series folder)"
            )
        return img
    except RuntimeError as exc:  # SimpleITK reports every read failure as RuntimeError
        first = str(exc).strip().splitlines()
        detail = next(
            (ln for ln in first if "ERROR" in ln or "Unable" in ln), first[-1] if first else ""
        )
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
            f"{reference.GetDimension()}D: they cannot be co-registered channels"
        )
    ones = sitk.Image(moving.GetSize(), sitk.sitkUInt8) + 1
    ones.CopyInformation(moving)
    cover = sitk.GetArrayFromImage(
        sitk.Resample(
            ones, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8
        )
    )
    fraction = float(np.mean(cover))
    if fraction < MIN_OVERLAP:
        raise GeometryMismatchError(
            f"{path} covers {100 * fraction:.0f} % of the first image's voxels in physical "
            f"space (at least {100 * MIN_OVERLAP:.0f} % needed): the two images do not "
            "overlap enough; are they of the same patient and session, in the same frame?"
        )
    return sitk.Resample(
        moving, reference, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32
    )


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
        raise InvalidInputError(
            f"the co-registered image has {moving.channels} channels; expected one"
        )
    ref = _to_sitk(np.zeros(reference.shape, np.uint8), reference)
    res = _resample_onto(
        _to_sitk(np.asarray(moving.array, np.float32), moving),
        ref,
        "the co-registered image" if moving.path is None else repr(moving.path),
    )
    return Image(
        sitk.GetArrayFromImage(res),
        spacing=reference.spacing,
        origin=reference.origin,
        direction=reference.direction,
        path=moving.path,
    )


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
    channels = (
        list(image.array.astype(np.float32))
        if image.multichannel
        else [image.array.astype(np.float32)]
    )
    for other in co_registered:
        q = _as_input_path(other)
        moving = _read_sitk(q)
        if moving.GetNumberOfComponentsPerPixel() > 1:
            raise InvalidInputError(
                f"co-registered image {str(q)!r} has {moving.GetNumberOfComponentsPerPixel()} "
                "components; expected one"
            )
        bad = int(np.size(view := sitk.GetArrayViewFromImage(moving))) - int(
            np.count_nonzero(np.isfinite(view))
        )
        if bad:  # named here: resampling would spread them, under the first image's name
            raise InvalidInputError(
                f"image {q} contains {bad} NaN or infinite pixel values; replace them "
                "(e.g. np.nan_to_num) before segmenting"
            )
        res = _resample_onto(moving, img, repr(str(q)))
        channels.append(sitk.GetArrayFromImage(res).astype(np.float32))
    return Image(
        np.stack(channels),
        spacing=image.spacing,
        origin=image.origin,
        direction=image.direction,
        multichannel=True,
        path=image.path,
    )


def read_mask(path: str | os.PathLike, *, like: Image | None = None) -> np.ndarray:
    """Read a label file as a uint8 binary mask (nonzero -> 1).

    If ``like`` is given the mask must have the same shape, spacing, origin
    and direction; a mismatch raises `GeometryMismatchError` naming it.
    """
    mask_img = read_image(path)
    if mask_img.multichannel:
        raise InvalidInputError(
            f"mask {str(path)!r} has {mask_img.channels} channels; expected one"
        )
    if like is not None:
        diffs = like.same_geometry(mask_img)
        if diffs:
            raise GeometryMismatchError(
                f"mask {str(path)!r} does not match the image geometry: " + "; ".join(diffs)
            )
    return (mask_img.array != 0).astype(np.uint8)
