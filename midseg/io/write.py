"""Writing: `write_image` and `write_mask` (format from the file ending), the output-path
check, and atomic file writes (temporary beside the output, fsync, rename) that other
modules use for their own files too.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from ..errors import GeometryLossWarning, ImageReadError, InvalidInputError, MidsegWarning
from .dicom import _keep_locale
from .image import Image, _to_sitk

#: File name endings `write_image` and `write_mask` write (lower case); the
#: format follows the ending. ``.mhd``, ``.nhdr`` and ``.hdr`` write a second
#: (data) file beside the header.
#: Sidecar of segment names and colours beside a label map (`midseg.labelmap`); writing
#: another image or mask to that path removes it.
SIDECAR_SUFFIX = ".segments.json"
WRITE_SUFFIXES = (
    ".nii.gz",
    ".nii",
    ".nrrd",
    ".nhdr",
    ".mha",
    ".mhd",
    ".hdr",
    ".png",
    ".tif",
    ".tiff",
    ".bmp",
    ".jpg",
    ".jpeg",
    ".vtk",
    ".gipl",
    ".gipl.gz",
)
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
        return errno.EACCES, (
            f"cannot write {str(p)!r}: no permission to {made} in {str(ancestor)!r}"
        )
    return None


def check_output_path(
    path: str | os.PathLike, ndim: int | None = None, *, mask: bool = False
) -> Path:
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
        what = (
            f"file extension {ext!r} is not a format midseg writes"
            if ext
            else "the name has no file extension"
        )
        raise InvalidInputError(
            f"cannot write {str(p)!r}: {what}; use one of " + ", ".join(WRITE_SUFFIXES)
        )
    if suffix in (".nii", ".nii.gz") and not p.name.endswith(suffix):
        raise InvalidInputError(
            f"cannot write {str(p)!r}: write the ending in lower case ({suffix}); ITK's NIfTI "
            "writer does not recognise it otherwise"
        )
    if ndim == 3 and suffix in _FLAT_SUFFIXES:
        raise InvalidInputError(
            f"cannot write {str(p)!r}: a {suffix} picture holds one 2D slice and this is a 3D "
            f"volume; write .nii.gz, .nrrd or .mha instead"
        )
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
        raise error(
            exc.errno,
            f"cannot write {str(path)!r}: cannot create its folder "
            f"{str(path.parent)!r} ({exc.strerror or exc})",
        ) from None
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
    tolerance = {
        "spacing": (1e-4, 1e-6),
        "origin": (1e-6, 1e-3),  # (rtol, atol)
        "direction": (0.0, 1e-3),
    }
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
        raise ImageReadError(
            f"cannot write {str(path)!r}: cannot create files in {where!r} ({exc.strerror or exc})"
        ) from None
    finally:
        if tmp is not None and os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    if lost:
        warnings.warn(
            f"{str(path)!r}: the {_write_suffix(path)} format does not hold this image's "
            f"geometry: {'; '.join(lost)} (array order); write .nii.gz, .nrrd or .mha to keep it",
            GeometryLossWarning,
            stacklevel=3,
        )


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
            f"mask and image must have the same spatial shape, got {m.shape} and {like.shape}"
        )
    if m.dtype.kind == "f":
        bad = m.size - int(np.count_nonzero(np.isfinite(m)))
        if bad:
            raise InvalidInputError(
                f"mask contains {bad} NaN or infinite values; a mask is 0 (background) or "
                f"nonzero (foreground): threshold or np.nan_to_num it first"
            )
    p = check_output_path(path, m.ndim, mask=True)
    suffix = _write_suffix(p) or p.suffix.lower()
    out = (m != 0).astype(np.uint8)
    if p.name.lower().endswith(".seg.nrrd"):  # 3D Slicer's segmentation file
        from ..labelmap import Segment, write_labelmap

        write_labelmap(p, out, like=like, segments=[Segment(1, "Segment_1")])
        return
    if suffix == ".dcm":  # DICOM-SEG referencing the source series
        from ..dicomseg import write_dicom_seg
        from ..labelmap import Segment

        if like.ndim != 3 or not like.path or not Path(like.path).is_dir():
            raise InvalidInputError(
                f"cannot write {str(p)!r}: a .dcm mask is a DICOM Segmentation of the DICOM "
                "series it was made on, and this image was not read from a DICOM series "
                "folder; write .nii.gz, .nrrd or .seg.nrrd"
            )
        write_dicom_seg(
            p, out, source_dir=like.path, segments=[Segment(1, "Segment_1")], spacing=like.spacing
        )
        return
    if suffix in _FLAT_SUFFIXES:
        out = out * 255
    if suffix in (".jpg", ".jpeg"):
        warnings.warn(
            f"{str(p)!r}: JPEG is lossy, so the mask's edges do not read back "
            f"exactly (stray foreground pixels); write .png instead",
            MidsegWarning,
            stacklevel=2,
        )
    _atomic_write(_to_sitk(out, like), p, like)
