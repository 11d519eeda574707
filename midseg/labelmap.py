"""Label maps with named, coloured segments: 3D Slicer ``.seg.nrrd`` and NIfTI + sidecar.

A label map is an integer array (0 = background, one value per object) with an image's
geometry, plus one `Segment` per object (value, name, colour). `write_labelmap` writes

* ``.seg.nrrd``: 3D Slicer's segmentation file (``Segment0_Name``, ``Segment0_Color``,
  ``Segment0_LabelValue``... in the NRRD header, LPS geometry), through `slicerio`, the
  Slicer project's own reader/writer, so Slicer shows the names and colours;
* any format `midseg.io.write_mask` writes (``.nii.gz``, ``.nrrd``, ``.mha``...): the
  label values, and the segments in a sidecar ``<file>.segments.json`` (formats without
  room for them).

`read_labelmap` reads both back. 2D label maps are written as one-slice volumes in
``.seg.nrrd`` (Slicer's segmentations are 3D).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import ImageReadError, InvalidInputError
from .io import SIDECAR_SUFFIX, Image

__all__ = [
    "Segment",
    "write_labelmap",
    "read_labelmap",
    "on_image_grid",
    "SIDECAR_SUFFIX",
    "DEFAULT_COLORS",
]

#: Colours given to segments without one (r, g, b in [0, 1]); cycled.
DEFAULT_COLORS = (
    (0.90, 0.30, 0.25),
    (0.30, 0.65, 0.95),
    (0.35, 0.80, 0.35),
    (0.95, 0.80, 0.25),
    (0.70, 0.45, 0.85),
    (0.95, 0.55, 0.20),
)


@dataclass(frozen=True)
class Segment:
    """One object of a label map.

    Attributes
    ----------
    value : int
        Its voxel value in the label map (1..65535).
    name : str
    color : tuple of 3 float
        Display colour, r, g, b in [0, 1].
    """

    value: int
    name: str
    color: tuple[float, float, float] = DEFAULT_COLORS[0]

    def __post_init__(self):
        if (
            isinstance(self.value, bool)
            or not isinstance(self.value, (int, np.integer))
            or not 1 <= int(self.value) <= 65535
        ):
            raise InvalidInputError(
                f"a segment's value must be an integer in 1..65535, got {self.value!r}"
            )
        if (
            not isinstance(self.name, str)
            or not self.name.strip()
            or any(ord(ch) < 32 for ch in self.name)
            or self.name != self.name.strip()
        ):
            raise InvalidInputError(
                f"a segment's name must be one line of text without "
                f"control characters or surrounding spaces, got "
                f"{self.name!r}"
            )
        try:
            color = tuple(float(c) for c in self.color)
        except (TypeError, ValueError, OverflowError):
            color = ()
        if len(color) != 3 or not all(0.0 <= c <= 1.0 for c in color):
            raise InvalidInputError(
                f"a segment's colour must be 3 numbers in [0, 1], got {self.color!r}"
            )
        object.__setattr__(self, "value", int(self.value))
        object.__setattr__(self, "color", color)


def _check(labels, like: Image, segments: Sequence[Segment]) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.shape != tuple(like.shape):
        raise InvalidInputError(
            f"the label map must have the image's shape {like.shape}, got {arr.shape}"
        )
    if arr.dtype.kind not in "biu":
        raise InvalidInputError(f"a label map holds integers, got dtype {arr.dtype}")
    values = [s.value for s in segments]
    if len(set(values)) != len(values):
        raise InvalidInputError(f"two segments share a value: {sorted(values)}")
    present = set(np.unique(arr).tolist()) - {0}
    unnamed = sorted(present - set(values))
    if unnamed:
        raise InvalidInputError(f"the label map holds values without a segment: {unnamed}")
    if arr.size and (arr.min() < 0 or arr.max() > 65535):
        raise InvalidInputError("label values must lie in 0..65535")
    return arr.astype(np.uint8 if (not values or max(values) < 256) else np.uint16)


def _ijk_to_lps(like: Image) -> np.ndarray:
    """4x4 matrix from (i, j, k) = (x, y, z) voxel indices to LPS mm (NRRD's convention)."""
    nd = like.ndim
    direction = np.asarray(like.direction, dtype=np.float64)[::-1, ::-1]  # x, y[, z] order
    spacing = np.asarray(like.spacing, dtype=np.float64)[::-1]
    origin = np.asarray(like.origin, dtype=np.float64)[::-1]
    m = np.eye(4)
    m[:nd, :nd] = direction * spacing[None, :]
    m[:nd, 3] = origin
    return m


def write_labelmap(
    path: str | os.PathLike, labels, *, like: Image, segments: Sequence[Segment]
) -> None:
    """Write a label map with its segments (module notes), atomically.

    Parameters
    ----------
    path : path
        ``.seg.nrrd`` for 3D Slicer, or a file `midseg.io.write_mask` writes (then a
        sidecar ``path + SIDECAR_SUFFIX`` holds the segments).
    labels : (Y, X) or (Z, Y, X) integer array
        0 = background; every other value must be a segment's.
    like : midseg.Image
        The image whose geometry (spacing, origin, direction) the label map takes.
    segments : sequence of Segment

    Raises
    ------
    InvalidInputError
        Shape or values that do not fit, duplicate segment values, bad segments, an
        unsupported file ending.
    ImageReadError
        The file cannot be written.
    """
    from .io import check_output_path, write_file_atomic, write_json_atomic

    segments = list(segments)
    arr = _check(labels, like, segments)
    p = Path(path)
    doc = {
        "format": "midseg-segments",
        "version": 1,
        "segments": [{"value": s.value, "name": s.name, "color": list(s.color)} for s in segments],
    }
    if not p.name.lower().endswith(".seg.nrrd"):
        from .io import write_image

        check_output_path(p, like.ndim)
        write_image(
            p, Image(arr, spacing=like.spacing, origin=like.origin, direction=like.direction)
        )
        write_json_atomic(p.with_name(p.name + SIDECAR_SUFFIX), doc, indent=1)
        return
    import slicerio

    check_output_path(p.with_name(p.name[: -len(".seg.nrrd")] + ".nrrd"))
    odd = [s.name for s in segments if not s.name.isascii()]
    if odd:
        raise InvalidInputError(
            f"3D Slicer's .seg.nrrd header holds ASCII names only, got "
            f"{odd}; rename them, or write .nii.gz (names in a UTF-8 "
            "sidecar)"
        )
    ijk = _ijk_to_lps(like)
    vox = arr if like.ndim == 3 else arr[None]
    if like.ndim == 2:
        full = np.eye(4)
        full[:2, :2], full[:2, 3] = ijk[:2, :2], ijk[:2, 3]
        ijk = full
    # NRRD's (i, j, k) = (x, y, z) axis order, as Slicer and slicerio expect it (the
    # segments' extents are computed on that order)
    seg = {
        "voxels": np.ascontiguousarray(np.transpose(vox, (2, 1, 0))),
        "ijkToLPS": ijk,
        "encoding": "gzip",
        "masterRepresentation": "Binary labelmap",
        "containedRepresentationNames": ["Binary labelmap"],
        "segments": [
            {
                "id": f"Segment_{s.value}",
                "name": s.name,
                "color": list(s.color),
                "labelValue": s.value,
                "layer": 0,
            }
            for s in segments
        ],
    }
    try:
        write_file_atomic(p, lambda tmp: slicerio.write_segmentation(str(tmp), seg))
    except OSError as exc:
        raise ImageReadError(str(exc)) from None


def on_image_grid(labels: Image, like: Image, *, atol: float = 1e-3) -> np.ndarray | None:
    """A label map that covers part of `like`'s grid, pasted into an array of its shape.

    3D Slicer 4.11 saved ``.seg.nrrd`` files cropped to the segments' extent: the same
    voxel grid as the image (spacing, direction), a smaller box of it. Such a file is
    placed where it lies in physical space; background elsewhere.

    Returns
    -------
    ndarray or None
        `like`'s shape, the labels' dtype; None when the grids do not line up (another
        spacing or direction, an origin off the image's voxel centres) or a labelled
        voxel lies outside the image.
    """
    lab = np.asarray(labels.array)
    if lab.ndim != like.ndim or labels.multichannel or like.multichannel:
        return None
    sp_l, sp_i = np.asarray(labels.spacing, float), np.asarray(like.spacing, float)
    d_l, d_i = np.asarray(labels.direction, float), np.asarray(like.direction, float)
    if not (np.allclose(sp_l, sp_i, rtol=1e-4, atol=1e-6) and np.allclose(d_l, d_i, atol=1e-4)):
        return None
    shift = np.linalg.solve(
        d_i * sp_i[None, :], np.asarray(labels.origin, float) - np.asarray(like.origin, float)
    )
    offset = np.round(shift).astype(int)
    if not np.allclose(shift, offset, atol=atol):
        return None
    out = np.zeros(like.shape, lab.dtype)
    lo = np.maximum(offset, 0)
    hi = np.minimum(offset + np.asarray(lab.shape), np.asarray(like.shape))
    if np.any(hi <= lo):
        return None if lab.any() else out
    src = tuple(slice(a - o, b - o) for a, b, o in zip(lo, hi, offset))
    if np.count_nonzero(lab[src]) != np.count_nonzero(lab):
        return None  # labelled voxels outside the image
    out[tuple(slice(a, b) for a, b in zip(lo, hi))] = lab[src]
    return out


def _integer_labels(image: Image) -> Image:
    """A label image as integers: a float file (many NIfTI label maps) whose values are
    whole numbers is converted; other values are refused."""
    arr = np.asarray(image.array)
    if arr.dtype.kind == "f":
        if not np.array_equal(arr, np.round(arr)) or arr.min() < 0 or arr.max() > 65535:
            raise InvalidInputError(
                f"{image.path or 'label map'} holds values that are not "
                "label values (whole numbers in 0..65535)"
            )
        arr = arr.astype(np.uint16 if arr.max() > 255 else np.uint8)
        image = Image(
            arr,
            spacing=image.spacing,
            origin=image.origin,
            direction=image.direction,
            path=image.path,
        )
    return image


def read_labelmap(path: str | os.PathLike) -> tuple[Image, list[Segment]]:
    """Read a label map written by `write_labelmap` (or by 3D Slicer as ``.seg.nrrd``).

    Returns
    -------
    (Image, list of Segment)
        The label values as an integer image with the file's geometry (a one-slice
        ``.seg.nrrd``, as 2D label maps are written, comes back 2D; a float file of whole
        numbers is converted to integers), and the segments: from the
        ``.seg.nrrd`` header, or from the sidecar (values without one get a name
        ``"Segment N"``).

    Raises
    ------
    ImageReadError
        Missing or unreadable file.
    InvalidInputError
        A ``.seg.nrrd`` with overlapping segments (a 4D file), or a bad sidecar.
    """
    from .io import read_image

    p = Path(path)
    if p.name.lower().endswith(".dcm"):
        raise InvalidInputError(
            f"{str(p)!r}: read a DICOM-SEG with "
            "midseg.dicomseg.read_dicom_seg(path, source_dir=...)"
        )
    if not p.name.lower().endswith(".seg.nrrd"):
        image = _integer_labels(read_image(p))
        side = p.with_name(p.name + SIDECAR_SUFFIX)
        values = sorted(set(np.unique(image.array).tolist()) - {0})
        named = {}
        if side.is_file():
            try:
                doc = json.loads(side.read_text(encoding="utf-8"))
                listed = [
                    Segment(int(s["value"]), s["name"], tuple(s["color"])) for s in doc["segments"]
                ]
            except (ValueError, KeyError, TypeError) as exc:
                raise InvalidInputError(f"segments file {str(side)!r} is damaged: {exc}") from None
            named = {s.value: s for s in listed}
            if len(named) != len(listed):
                twice = sorted(
                    {s.value for s in listed if sum(t.value == s.value for t in listed) > 1}
                )
                raise InvalidInputError(
                    f"segments file {str(side)!r} is damaged: it names "
                    f"label value(s) {twice} more than once"
                )
        segs = [
            named.get(v, Segment(v, f"Segment {v}", DEFAULT_COLORS[i % 6]))
            for i, v in enumerate(values)
        ]
        extra = [s for v, s in named.items() if v not in values]
        return image, segs + extra
    import slicerio

    if not p.is_file():
        raise ImageReadError(f"no such file or directory: {str(p)!r}")
    try:
        seg = slicerio.read_segmentation(str(p))
    except Exception as exc:  # pynrrd and slicerio raise several types for bad files
        raise ImageReadError(f"cannot read {str(p)!r}: {exc}") from None
    vox = np.asarray(seg["voxels"])
    if vox.ndim == 4:
        raise InvalidInputError(
            f"{str(p)!r} holds overlapping segments (a 4D segmentation); "
            "export it from Slicer as a label map"
        )
    vox = np.ascontiguousarray(np.transpose(vox, (2, 1, 0)))  # (x, y, z) -> (z, y, x)
    ijk = np.asarray(seg["ijkToLPS"], dtype=np.float64)
    cols = ijk[:3, :3]
    spacing = np.linalg.norm(cols, axis=0)
    direction = cols / spacing[None, :]
    image = Image(
        vox,
        spacing=tuple(spacing[::-1]),
        origin=tuple(ijk[:3, 3][::-1]),
        direction=direction[::-1, ::-1],
        path=str(p),
    )
    if image.shape[0] == 1 and np.allclose(direction[:, 2], [0, 0, 1]):
        # a 2D label map (written as one slice, the third axis along z): back to 2D
        image = Image(
            vox[0],
            spacing=image.spacing[1:],
            origin=image.origin[1:],
            direction=np.asarray(image.direction)[1:, 1:],
            path=str(p),
        )
    segs = [
        Segment(
            int(s.get("labelValue", i + 1)),
            str(s.get("name") or s.get("id")),
            tuple(s.get("color", DEFAULT_COLORS[i % 6])),
        )
        for i, s in enumerate(seg.get("segments", []))
    ]
    return image, segs
