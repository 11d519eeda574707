"""Where the GUI autosaves the clicks of an image, so a crash never loses work.

Beside the image (``<image>.midseg-autosave.clicks.json``) when that folder is
ours (owned by the user and writable), else in the user's data folder. Pure
paths and the small document of margin points placed before stage 1 ran; no
Qt.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Sequence

__all__ = [
    "AUTOSAVE_SUFFIX",
    "PENDING_FORMAT",
    "autosave_path",
    "default_data_dir",
    "pending_document",
    "read_pending",
]

#: ``format`` of an autosave that holds margin points placed before stage 1 ran.
PENDING_FORMAT = "midseg-pending-margin-points"

AUTOSAVE_SUFFIX = ".midseg-autosave.clicks.json"


def default_data_dir() -> Path:
    """``$XDG_DATA_HOME/midseg/autosave`` (``~/.local/share/midseg/autosave`` by default).

    User data, not a cache: nothing cleans it behind the user's back.
    """
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "midseg" / "autosave"


def _writable(folder: Path) -> bool:
    """The folder is the user's own (POSIX owner; any owner elsewhere) and writable."""
    if not (folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)):
        return False
    getuid = getattr(os, "getuid", None)
    return getuid is None or folder.stat().st_uid == getuid()


def autosave_path(
    image_path: str | os.PathLike,
    cache_dir: str | os.PathLike | None = None,
    *,
    with_images: Sequence[str] = (),
) -> Path:
    """The autosave file for the image at ``image_path`` (a file or a DICOM folder).

    Parameters
    ----------
    image_path : path
        Where the image was read from.
    cache_dir : path, optional
        Fallback folder when the image's folder is not the user's own or is
        read-only (default `default_data_dir`). There the name also carries a hash of the
        image's absolute path, so two ``image.nii.gz`` never collide.
    with_images : sequence of str
        File names of further modalities segmented together with it: a
        two-channel session gets its own file (``a.nii.gz+b.nii.gz...``), so
        it never overwrites the single-image one.
    """
    p = Path(image_path).expanduser().absolute()
    name = "+".join([p.name.rstrip("/") or "image", *(Path(w).name for w in with_images)])
    if _writable(p.parent):
        return p.parent / (name + AUTOSAVE_SUFFIX)
    digest = hashlib.sha1(str(p).encode("utf-8")).hexdigest()[:12]
    folder = Path(cache_dir) if cache_dir is not None else default_data_dir()
    return folder / f"{name}-{digest}{AUTOSAVE_SUFFIX}"


def pending_document(image, points) -> dict:
    """The autosave of margin points placed before stage 1 ran.

    Parameters
    ----------
    image : midseg.Image
        The image the points are on.
    points : sequence of index tuples (array order)

    Returns
    -------
    dict
        ``{"format": PENDING_FORMAT, "version": 1, "coordinates", "image", "margin_points"}``:
        the image's geometry and the points in physical mm, (x, y[, z]), as in clicks files.
    """
    from midseg.session import geometry_xyz

    pts = [list(map(float, image.index_to_physical(p)[::-1])) for p in points]
    return {
        "format": PENDING_FORMAT,
        "version": 1,
        "coordinates": "physical millimetres, (x, y[, z]) order as in SimpleITK/ITK (LPS)",
        "image": {**geometry_xyz(image), "channels": image.channels},
        "margin_points": [[round(v, 6) for v in p] for p in pts],
    }


def read_pending(path: str | os.PathLike, image):
    """The margin points of a `pending_document` file on `image`, or None for a clicks file.

    Returns
    -------
    (N, ndim) int64 ndarray or None
        Voxel indices (array order).

    Raises
    ------
    InvalidInputError
        Unreadable file, or points that are not on `image` (`GeometryMismatchError`).
    """
    import json

    import numpy as np

    from midseg._checks import as_points
    from midseg.errors import InvalidInputError
    from midseg.session import check_clicks_geometry

    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInputError(f"cannot read autosave '{path}': {exc}") from None
    if not isinstance(data, dict) or data.get("format") != PENDING_FORMAT:
        return None
    try:
        check_clicks_geometry(data, image)
        mm = np.asarray(data["margin_points"], dtype=np.float64).reshape(-1, image.ndim)
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, InvalidInputError):
            raise
        raise InvalidInputError(f"autosave '{path}' is damaged: {exc}") from None
    idx = np.rint(image.physical_to_index(mm[:, ::-1])) if len(mm) else mm
    return as_points(idx, image.shape, name="autosaved margin points", allow_empty=True)
