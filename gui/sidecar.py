"""Where the GUI autosaves the clicks of an image, so a crash never loses work.

Beside the image (``<image>.midseg-autosave.clicks.json``) when that folder is
writable, else in a per-user cache folder. Pure paths; no Qt, no I/O besides
the writability probe.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Sequence

__all__ = ["AUTOSAVE_SUFFIX", "autosave_path", "default_cache_dir"]

AUTOSAVE_SUFFIX = ".midseg-autosave.clicks.json"


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/midseg/autosave`` (``~/.cache/midseg/autosave`` by default)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "midseg" / "autosave"


def _writable(folder: Path) -> bool:
    return folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)


def autosave_path(image_path: str | os.PathLike, cache_dir: str | os.PathLike | None = None,
                  *, with_images: Sequence[str] = ()) -> Path:
    """The autosave file for the image at ``image_path`` (a file or a DICOM folder).

    Parameters
    ----------
    image_path : path
        Where the image was read from.
    cache_dir : path, optional
        Fallback folder when the image's folder is read-only (default
        `default_cache_dir`). There the name also carries a hash of the
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
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return folder / f"{name}-{digest}{AUTOSAVE_SUFFIX}"
