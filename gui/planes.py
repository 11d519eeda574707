"""Pure view geometry of the GUI: planes, slice extraction, widget <-> voxel mapping.

Also window/level to 8-bit grey and brush strokes to pixels. Nothing here
imports Qt or midseg's numerics, so every mapping a click goes through is
unit-tested without a display.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np

__all__ = [
    "Plane",
    "PLANES_3D",
    "plane_for",
    "planes_for",
    "orientation_letters",
    "ViewTransform",
    "window_to_uint8",
    "auto_window",
    "full_window",
    "WL_PRESETS",
    "stroke_pixels",
    "boundary",
    "clamp_voxel",
]

#: The three orthogonal views of a volume, in display order.
PLANES_3D = ("axial", "coronal", "sagittal")

# name -> (row axis, column axis, normal axis) in (z, y, x) array order
_AXES = {
    "axial": (1, 2, 0),
    "coronal": (0, 2, 1),
    "sagittal": (0, 1, 2),
    "2d": (0, 1, None),
}

# Display convention (radiological, as ITK-SNAP / 3D Slicer): in LPS physical
# space, rows run towards +y (posterior, axial) or -z (inferior, coronal and
# sagittal); columns run towards +x (patient left) or +y (sagittal: anterior
# on the left). Entry: (physical axis in array order, wanted sign) per display axis.
_WANT = {
    "axial": ((1, +1), (2, +1)),
    "coronal": ((0, -1), (2, +1)),
    "sagittal": ((0, -1), (1, +1)),
}


@dataclass(frozen=True)
class Plane:
    """One display plane of an image: which array axes are rows, columns and slices.

    Attributes
    ----------
    name : str
        ``"axial"``, ``"coronal"``, ``"sagittal"`` or ``"2d"``.
    row_axis, col_axis : int
        Array axes shown top-to-bottom and left-to-right.
    normal_axis : int or None
        Array axis the slice index runs along (None for a 2D image).
    flip_rows, flip_cols : bool
        Whether display row/column 0 is the *last* index of that axis.
    """

    name: str
    row_axis: int
    col_axis: int
    normal_axis: int | None
    flip_rows: bool = False
    flip_cols: bool = False

    def size(self, shape: Sequence[int]) -> tuple[int, int]:
        """(rows, columns) of a slice of an image of spatial ``shape``."""
        return int(shape[self.row_axis]), int(shape[self.col_axis])

    def pixel_size(self, spacing: Sequence[float]) -> tuple[float, float]:
        """Physical (height, width) of one displayed pixel, from array-order spacing."""
        return float(spacing[self.row_axis]), float(spacing[self.col_axis])

    def to_voxel(
        self, row: int, col: int, slice_index: int, shape: Sequence[int]
    ) -> tuple[int, ...]:
        """Voxel index (array order) of display pixel (row, col) on slice ``slice_index``."""
        rows, cols = self.size(shape)
        r = rows - 1 - row if self.flip_rows else row
        c = cols - 1 - col if self.flip_cols else col
        voxel = [0] * len(shape)
        voxel[self.row_axis] = int(r)
        voxel[self.col_axis] = int(c)
        if self.normal_axis is not None:
            voxel[self.normal_axis] = int(slice_index)
        return tuple(voxel)

    def from_voxel(
        self, voxel: Sequence[float], shape: Sequence[int]
    ) -> tuple[float, float, float | None]:
        """Display (row, col) and slice index of a voxel; inverse of `to_voxel`.

        Works on continuous coordinates too (a marker at a voxel centre is at
        ``row + 0.5`` in display space either way round).
        """
        rows, cols = self.size(shape)
        r, c = float(voxel[self.row_axis]), float(voxel[self.col_axis])
        row = rows - 1 - r if self.flip_rows else r
        col = cols - 1 - c if self.flip_cols else c
        s = None if self.normal_axis is None else float(voxel[self.normal_axis])
        return row, col, s

    def slice_of(self, array: np.ndarray, slice_index: int | None) -> np.ndarray:
        """The 2D display array of slice ``slice_index`` (spatial axes only), oriented for display."""
        if self.normal_axis is None:
            sl = array
        else:
            if slice_index is None:
                raise ValueError("a slice index is needed for a view with a normal axis")
            sl = np.take(array, int(slice_index), axis=self.normal_axis)
        # after taking the normal axis out, the remaining axes keep their order
        remaining = [a for a in range(array.ndim) if a != self.normal_axis]
        if remaining.index(self.row_axis) > remaining.index(self.col_axis):
            sl = sl.T
        if self.flip_rows:
            sl = sl[::-1, :]
        if self.flip_cols:
            sl = sl[:, ::-1]
        return sl

    def n_slices(self, shape: Sequence[int]) -> int:
        return 1 if self.normal_axis is None else int(shape[self.normal_axis])


def plane_for(name: str, direction=None) -> Plane:
    """The `Plane` called ``name``, oriented by the image's direction cosines.

    Parameters
    ----------
    name : {"axial", "coronal", "sagittal", "2d"}
    direction : (3, 3) array_like, optional
        Direction cosines in array order (`midseg.Image.direction`: column j
        is the physical direction of array axis j). The plane's axes are the
        array axes nearest its physical axes (axial: normal to head-foot,
        rows posterior, columns patient left), whatever the acquisition order;
        an axis whose physical direction points against the display convention
        is flipped. Ignored for ``"2d"`` (pictures are shown as stored).
        Default: identity.
    """
    if name not in _AXES:
        raise ValueError(f"plane must be one of {tuple(_AXES)}, got {name!r}")
    row_axis, col_axis, normal = _AXES[name]
    if name == "2d":
        return Plane(name, row_axis, col_axis, normal)
    d = np.eye(3) if direction is None else np.asarray(direction, dtype=float)
    if d.shape != (3, 3):
        raise ValueError(f"direction must be a 3x3 matrix for a volume, got shape {d.shape}")
    # The array axis nearest each physical axis (rows of d: S, P, L in array order), so that
    # "axial" is normal to head-foot whatever the acquisition (a sagittal series too).
    nearest = np.argmax(np.abs(d), axis=1)
    if sorted(nearest.tolist()) == [0, 1, 2]:
        phys_normal = {"axial": 0, "coronal": 1, "sagittal": 2}[name]
        (phys_r, _), (phys_c, _) = _WANT[name]
        row_axis, col_axis, normal = (
            int(nearest[phys_r]),
            int(nearest[phys_c]),
            int(nearest[phys_normal]),
        )
    (phys_r, sign_r), (phys_c, sign_c) = _WANT[name]
    flip_rows = d[phys_r, row_axis] * sign_r < 0
    flip_cols = d[phys_c, col_axis] * sign_c < 0
    return Plane(name, row_axis, col_axis, normal, bool(flip_rows), bool(flip_cols))


_LETTERS = (("I", "S"), ("A", "P"), ("R", "L"))  # physical axes in array order: z, y, x (LPS)


def orientation_letters(plane: Plane, direction=None) -> dict[str, str] | None:
    """The patient directions at a view's edges: ``{"top", "bottom", "left", "right"}``.

    LPS letters (R/L, A/P, I/S) of the physical axis nearest each display direction
    (increasing rows point to the bottom, increasing columns to the right, flips applied).
    None for a 2D picture, which has no patient orientation.
    """
    if plane.normal_axis is None:
        return None
    d = np.eye(3) if direction is None else np.asarray(direction, dtype=float)

    def letter(axis: int, sign: float) -> str:
        v = d[:, axis] * sign
        k = int(np.argmax(np.abs(v)))
        return _LETTERS[k][1 if v[k] > 0 else 0]

    down = -1.0 if plane.flip_rows else 1.0
    right = -1.0 if plane.flip_cols else 1.0
    return {
        "bottom": letter(plane.row_axis, down),
        "top": letter(plane.row_axis, -down),
        "right": letter(plane.col_axis, right),
        "left": letter(plane.col_axis, -right),
    }


def planes_for(ndim: int, direction=None) -> tuple[Plane, ...]:
    """The planes a 2D image (one) or a 3D volume (axial, coronal, sagittal) is shown in."""
    if ndim == 2:
        return (plane_for("2d"),)
    if ndim == 3:
        return tuple(plane_for(n, direction) for n in PLANES_3D)
    raise ValueError(f"images must have 2 or 3 spatial dimensions, got {ndim}")


@dataclass(frozen=True)
class ViewTransform:
    """Maps widget pixels to continuous display-image coordinates and back.

    Display pixel (row r, col c) covers ``[c, c+1) x [r, r+1)``. At zoom 1
    the whole slice fits the widget, keeping the physical aspect ratio
    (``pixel_size`` may differ between rows and columns for anisotropic
    spacing). ``center`` is the image point shown at the widget centre.

    Attributes
    ----------
    image_size : (rows, cols)
    pixel_size : (height, width) of one pixel, physical units
    widget_size : (width, height) in widget pixels
    zoom : float
    center : (row, col) continuous image coordinates, or None for the image centre
    """

    image_size: tuple[int, int]
    pixel_size: tuple[float, float] = (1.0, 1.0)
    widget_size: tuple[int, int] = (1, 1)
    zoom: float = 1.0
    center: tuple[float, float] | None = None

    @property
    def centre(self) -> tuple[float, float]:
        if self.center is None:
            return self.image_size[0] / 2.0, self.image_size[1] / 2.0
        return self.center

    @property
    def scale(self) -> tuple[float, float]:
        """Widget pixels per image column (x) and per image row (y)."""
        rows, cols = self.image_size
        h, w = self.pixel_size
        wid, hei = max(self.widget_size[0], 1), max(self.widget_size[1], 1)
        fit = min(wid / (cols * w), hei / (rows * h))  # widget px per physical unit
        s = fit * self.zoom
        return s * w, s * h

    def image_to_widget(self, row: float, col: float) -> tuple[float, float]:
        """Widget (x, y) of continuous image coordinates (row, col)."""
        sx, sy = self.scale
        cr, cc = self.centre
        return (
            self.widget_size[0] / 2.0 + (col - cc) * sx,
            self.widget_size[1] / 2.0 + (row - cr) * sy,
        )

    def widget_to_image(self, x: float, y: float) -> tuple[float, float]:
        """Continuous image (row, col) under widget point (x, y)."""
        sx, sy = self.scale
        cr, cc = self.centre
        return (
            cr + (y - self.widget_size[1] / 2.0) / sy,
            cc + (x - self.widget_size[0] / 2.0) / sx,
        )

    def pixel_at(self, x: float, y: float) -> tuple[int, int] | None:
        """Display pixel (row, col) under widget point (x, y), or None outside the image."""
        r, c = self.widget_to_image(x, y)
        ri, ci = math.floor(r), math.floor(c)
        if 0 <= ri < self.image_size[0] and 0 <= ci < self.image_size[1]:
            return ri, ci
        return None

    def zoomed(
        self,
        factor: float,
        about: tuple[float, float] | None = None,
        limits: tuple[float, float] = (0.25, 64.0),
    ) -> "ViewTransform":
        """Zoom by ``factor`` keeping the image point under widget point ``about`` fixed."""
        new_zoom = float(np.clip(self.zoom * factor, *limits))
        if about is None:
            return replace(self, zoom=new_zoom)
        r, c = self.widget_to_image(*about)
        tmp = replace(self, zoom=new_zoom)
        r2, c2 = tmp.widget_to_image(*about)
        cr, cc = self.centre
        return replace(tmp, center=(cr + r - r2, cc + c - c2))

    def panned(self, dx: float, dy: float) -> "ViewTransform":
        """Move the image by (dx, dy) widget pixels."""
        sx, sy = self.scale
        cr, cc = self.centre
        return replace(self, center=(cr - dy / sy, cc - dx / sx))


#: Window/level presets: name -> (level, width), ``None`` for the 1-99 percentiles
#: of the image, ``"full"`` for its minimum..maximum.
WL_PRESETS: dict[str, tuple[float, float] | str | None] = {
    "Auto (1-99 %)": None,
    "Full range": "full",
    "CT soft tissue (40/400)": (40.0, 400.0),
    "CT lung (-600/1500)": (-600.0, 1500.0),
    "CT bone (400/1800)": (400.0, 1800.0),
    "CT brain (40/80)": (40.0, 80.0),
    "PET SUV (0-10)": (5.0, 10.0),
    "z-score (-3..3)": (0.0, 6.0),
}


def auto_window(array: np.ndarray, lo: float = 1.0, hi: float = 99.0) -> tuple[float, float]:
    """(level, width) spanning the ``lo``..``hi`` percentiles of ``array``.

    For a volume the percentiles are those of a subsample, which is plenty
    for a display window and keeps opening a 240^3 volume instant.
    """
    a = np.asarray(array)
    if a.size > 2_000_000:
        a = a.ravel()[:: a.size // 1_000_000]
    p_lo, p_hi = np.percentile(a, [lo, hi]).astype(float)
    if not p_hi > p_lo:
        p_lo, p_hi = float(a.min()), float(a.max())
    if not p_hi > p_lo:
        p_hi = p_lo + 1.0
    return (p_lo + p_hi) / 2.0, p_hi - p_lo


def full_window(array: np.ndarray) -> tuple[float, float]:
    lo, hi = float(np.min(array)), float(np.max(array))
    if not hi > lo:
        hi = lo + 1.0
    return (lo + hi) / 2.0, hi - lo


def window_to_uint8(array: np.ndarray, level: float, width: float) -> np.ndarray:
    """Map ``level - width/2 .. level + width/2`` linearly to 0..255 (clipped), C-contiguous uint8."""
    width = max(float(width), 1e-12)
    lo = float(level) - width / 2.0
    out = (np.asarray(array, dtype=np.float32) - lo) * (255.0 / width)
    return np.ascontiguousarray(np.clip(out, 0, 255).astype(np.uint8))


def stroke_pixels(
    path: Sequence[Sequence[float]], radius: float, size: tuple[int, int]
) -> np.ndarray:
    """Pixels a brush of ``radius`` covers along a polyline, in a slice of ``size``.

    Parameters
    ----------
    path : sequence of (row, col)
        Brush centres in continuous display coordinates, in drawing order.
    radius : float
        Brush radius in pixels; 0 paints only the pixels the path crosses.
    size : (rows, cols)

    Returns
    -------
    (N, 2) ndarray of int64
        Unique (row, col) pixels inside the slice, sorted.
    """
    pts = np.asarray(path, dtype=float).reshape(-1, 2)
    if len(pts) == 0:
        return np.zeros((0, 2), np.int64)
    dense = [pts[:1]]
    for a, b in zip(pts[:-1], pts[1:]):
        n = int(np.ceil(np.max(np.abs(b - a)) * 2)) + 1
        t = np.linspace(0.0, 1.0, n + 1)[1:, None]
        dense.append(a + t * (b - a))
    centres = np.concatenate(dense)
    r = max(float(radius), 0.0)
    k = int(np.ceil(r))
    offs = np.array(
        [
            (dr, dc)
            for dr in range(-k, k + 1)
            for dc in range(-k, k + 1)
            if dr * dr + dc * dc <= r * r + 1e-9
        ],
        dtype=np.int64,
    )
    base = np.floor(centres).astype(np.int64)
    pix = (base[:, None, :] + offs[None, :, :]).reshape(-1, 2)
    inside = (pix[:, 0] >= 0) & (pix[:, 0] < size[0]) & (pix[:, 1] >= 0) & (pix[:, 1] < size[1])
    return np.unique(pix[inside], axis=0)


def boundary(mask2d: np.ndarray) -> np.ndarray:
    """Pixels of a 2D mask with a 4-neighbour outside it (the outline drawn in contour mode)."""
    m = np.asarray(mask2d) != 0
    p = np.pad(m, 1, constant_values=False)
    interior = p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    return m & ~interior


def clamp_voxel(voxel: Sequence[int], shape: Sequence[int]) -> tuple[int, ...]:
    """``voxel`` with every index clipped into ``shape``."""
    return tuple(int(min(max(int(v), 0), int(s) - 1)) for v, s in zip(voxel, shape))
