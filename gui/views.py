"""The image widgets: `ViewerState` (what is shown) and `SliceView` (one plane of one channel).

Views draw the slice, the mask overlay, click markers and the linked cursor,
and turn mouse input into voxel indices with `midseg.gui.planes`. They never
call the session: they emit signals the main window acts on.
"""

from __future__ import annotations

import numpy as np
from PyQt5.QtCore import QObject, QPointF, QRectF, Qt, pyqtSignal
from PyQt5.QtGui import QColor, QFont, QImage, QPainter, QPainterPath, QPen
from PyQt5.QtWidgets import QSizePolicy, QWidget

from .planes import (
    Plane,
    ViewTransform,
    auto_window,
    boundary,
    clamp_voxel,
    orientation_letters,
    stroke_pixels,
    window_to_uint8,
)

__all__ = ["ViewerState", "ViewLink", "SliceView", "MARKER_COLORS", "TOOLS", "BRUSH_TOOLS"]

#: Interaction tools: what a left/right click on the image does.
TOOLS = ("navigate", "margin", "refine", "scribble", "paint", "erase")
#: Tools whose left/right drag is a brush stroke (`SliceView.stroke_finished`).
BRUSH_TOOLS = ("scribble", "paint", "erase")

MARKER_COLORS = {
    "margin": QColor(255, 215, 0),  # interior margin points (stage 1)
    "margin_pending": QColor(255, 215, 0),
    "fg": QColor(40, 220, 60),  # foreground clicks
    "bg": QColor(240, 40, 40),  # background clicks
    "fg_pending": QColor(40, 220, 60),
    "bg_pending": QColor(240, 40, 40),
    "suggest": QColor(255, 0, 220),  # the suggested next click (a hint): dashed ring, cross
}
MASK_COLOR = (0, 190, 255)
CURSOR_COLOR = QColor(255, 140, 0, 170)


def _draw_suggestion(p: QPainter, centre: QPointF, color: QColor) -> None:
    """The suggested click: a dashed ring (radius 9 px) around a small cross, outlined dark."""
    x, y = centre.x(), centre.y()
    p.setBrush(Qt.NoBrush)
    for ring, cross in (
        (QPen(QColor(0, 0, 0, 200), 3.5), QPen(QColor(0, 0, 0, 200), 3.5)),
        (QPen(color, 2.0, Qt.DashLine), QPen(color, 1.5)),
    ):
        p.setPen(ring)
        p.drawEllipse(centre, 9.0, 9.0)
        p.setPen(cross)
        p.drawLine(QPointF(x - 4, y - 4), QPointF(x + 4, y + 4))
        p.drawLine(QPointF(x - 4, y + 4), QPointF(x + 4, y - 4))


class ViewerState(QObject):
    """Everything the views show, in one place; ``changed`` asks them to repaint.

    Attributes
    ----------
    channels : list of ndarray
        One spatial array per modality/channel, shape `shape`.
    names : list of str
    shape, spacing, direction : image geometry in array order
    cursor : tuple of int
        The linked cursor voxel (array order); its coordinates choose the slices.
    windows : list of (level, width), one per channel
    mask : ndarray of uint8 or None
        The current object's mask.
    layers : list of (mask, (r, g, b) ints 0-255, is_current)
        The visible objects' masks in drawing order, each in its colour; the overlay
        shows these (the current object with its outline too). When None (no label
        session), `mask` is shown in `MASK_COLOR`.
    markers : list of (voxel tuple, kind) with kind a key of `MARKER_COLORS`
    opacity : float in [0, 1]; contour : bool (outline instead of fill)
    tool : one of `TOOLS`; brush_radius : float (voxels in the slice drawn on; brush tools)
    paint_color : (r, g, b) ints, the current object's colour (the paint brush's)
    """

    changed = pyqtSignal()

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.channels: list[np.ndarray] = []
        self.names: list[str] = []
        self.shape: tuple[int, ...] = ()
        self.spacing: tuple[float, ...] = ()
        self.direction = None
        self.cursor: tuple[int, ...] = ()
        self.windows: list[tuple[float, float]] = []
        self.mask: np.ndarray | None = None
        self.layers: list | None = None
        self.paint_color = MASK_COLOR
        self.markers: list[tuple[tuple[int, ...], str]] = []
        self.opacity = 0.4
        self.contour = False
        self.show_mask = True
        self.tool = "navigate"
        self.brush_radius = 1.0
        self.revision = 0  # bumped when pixel data change (drops slice caches)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def set_channels(self, channels, names, spacing, direction, windows=None) -> None:
        self.channels = [np.asarray(c) for c in channels]
        self.names = list(names)
        self.shape = tuple(self.channels[0].shape)
        self.spacing = tuple(float(s) for s in spacing)
        self.direction = direction
        self.cursor = tuple(s // 2 for s in self.shape)
        given = list(windows or [])
        self.windows = [
            given[k] if k < len(given) and given[k] is not None else auto_window(c)
            for k, c in enumerate(self.channels)
        ]
        self.mask = None
        self.layers = None
        self.markers = []
        self.revision += 1
        self.changed.emit()

    def set_cursor(self, voxel) -> None:
        voxel = clamp_voxel(voxel, self.shape)
        if voxel != self.cursor:
            self.cursor = voxel
            self.changed.emit()

    def value_at(self, voxel) -> list[float]:
        return [float(c[tuple(voxel)]) for c in self.channels]

    def touch(self) -> None:
        self.changed.emit()


class ViewLink(QObject):
    """Zoom and pan shared by the views of one plane (one per modality)."""

    changed = pyqtSignal()

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.zoom = 1.0
        self.center: tuple[float, float] | None = None

    def set(self, zoom: float, center) -> None:
        self.zoom, self.center = zoom, center
        self.changed.emit()

    def reset(self) -> None:
        self.set(1.0, None)


class SliceView(QWidget):
    """One plane (axial/coronal/sagittal or 2D) of one channel.

    Mouse: wheel zooms about the pointer, Shift+wheel (or Up/Down, PgUp/PgDn)
    moves through slices, middle-drag or Ctrl+left-drag pans, Shift+left-drag
    (or right-drag with the navigate tool) changes window (horizontal) and
    level (vertical). Other clicks are reported by signal for the current tool.

    Signals
    -------
    voxel_clicked(voxel, button)
        Left/right press on the image (navigate, margin, refine tools).
    cursor_dragged(voxel)
        Left-drag with the navigate tool.
    stroke_finished(voxels, button)
        Brush tools (`BRUSH_TOOLS`): (N, ndim) int array of the voxels the brush
        covered, in the slice of this view.
    hovered(voxel or None)
    slice_step(int)
    """

    voxel_clicked = pyqtSignal(object, int)
    cursor_dragged = pyqtSignal(object)
    stroke_finished = pyqtSignal(object, int)
    hovered = pyqtSignal(object)
    slice_step = pyqtSignal(int)
    activated = pyqtSignal(int)  # channel index, when the pointer enters or presses

    def __init__(
        self,
        state: ViewerState,
        plane: Plane,
        channel: int,
        link: ViewLink,
        parent: QWidget | None = None,
    ):
        super().__init__(parent)
        self.state, self.plane, self.channel, self.link = state, plane, channel, link
        self.setMouseTracking(True)
        self.setFocusPolicy(Qt.StrongFocus)
        self.setMinimumSize(120, 120)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)
        self.setAttribute(Qt.WA_OpaquePaintEvent)
        self._drag = None  # ("pan"|"window"|"stroke"|"cursor", start pos, extra)
        self._stroke: list[tuple[float, float]] = []
        self._stroke_button = 0
        self._cache_key = None
        self._cache_img: QImage | None = None
        self._hover: QPointF | None = None  # pointer position, for the brush outline
        state.changed.connect(self.update)
        link.changed.connect(self.update)
        self.setObjectName(f"view_{plane.name}_{channel}")

    # -- geometry ------------------------------------------------------------
    @property
    def slice_index(self) -> int:
        if self.plane.normal_axis is None or not self.state.cursor:
            return 0
        return int(self.state.cursor[self.plane.normal_axis])

    def transform(self) -> ViewTransform:
        """The current widget <-> display-image mapping of this view."""
        return ViewTransform(
            self.plane.size(self.state.shape),
            self.plane.pixel_size(self.state.spacing),
            (self.width(), self.height()),
            self.link.zoom,
            self.link.center,
        )

    def voxel_at(self, x: float, y: float) -> tuple[int, ...] | None:
        """Voxel index (array order) under widget point (x, y), None outside the image."""
        if not self.state.shape:
            return None
        pix = self.transform().pixel_at(x, y)
        if pix is None:
            return None
        return self.plane.to_voxel(pix[0], pix[1], self.slice_index, self.state.shape)

    def widget_pos(self, voxel) -> QPointF:
        """Widget point at the centre of ``voxel`` (its in-plane position)."""
        r, c, _ = self.plane.from_voxel(voxel, self.state.shape)
        x, y = self.transform().image_to_widget(r + 0.5, c + 0.5)
        return QPointF(x, y)

    # -- painting ------------------------------------------------------------
    def _slice_image(self) -> QImage:
        level, width = self.state.windows[self.channel]
        key = (self.state.revision, self.slice_index, level, width)
        if key != self._cache_key:
            arr = self.plane.slice_of(self.state.channels[self.channel], self.slice_index)
            grey = window_to_uint8(arr, level, width)
            h, w = grey.shape
            self._cache_img = QImage(grey.data, w, h, w, QImage.Format_Grayscale8).copy()
            self._cache_key = key
        return self._cache_img

    def _mask_image(self) -> QImage | None:
        st = self.state
        if not st.show_mask or st.opacity <= 0:
            return None
        layers = (
            st.layers
            if st.layers is not None
            else ([] if st.mask is None else [(st.mask, MASK_COLOR, True)])
        )
        if st.contour:
            alpha = int(round(255 * min(1.0, 0.35 + st.opacity)))
        else:
            alpha = int(round(255 * st.opacity))
        rgba = None
        # the earliest object drawn last: where masks overlap the overlay shows what the
        # saved label map holds (`LabelSession.labelmap`, overlap "keep")
        for mask, color, current in reversed(layers):
            m = self.plane.slice_of(mask, self.slice_index) != 0
            if not m.any():
                continue
            if rgba is None:
                rgba = np.zeros(m.shape + (4,), np.uint8)
            edge = boundary(m)
            if st.contour:
                rgba[edge] = (*color, alpha)
                continue
            rgba[m] = (*color, alpha)
            if current and len(layers) > 1:  # which object the tools act on
                rgba[edge] = (*color, min(255, alpha + 110))
        if rgba is None:
            return None
        h, w = rgba.shape[:2]
        return QImage(np.ascontiguousarray(rgba).data, w, h, 4 * w, QImage.Format_RGBA8888).copy()

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt API)
        p = QPainter(self)
        p.fillRect(self.rect(), Qt.black)
        st = self.state
        if not st.channels:
            p.setPen(QColor(160, 160, 160))
            p.drawText(
                self.rect(), Qt.AlignCenter, "Open an image (File > Open, or drop a file here)"
            )
            p.end()
            return
        tf = self.transform()
        rows, cols = tf.image_size
        x0, y0 = tf.image_to_widget(0, 0)
        x1, y1 = tf.image_to_widget(rows, cols)
        target = QRectF(x0, y0, x1 - x0, y1 - y0)
        p.setRenderHint(QPainter.SmoothPixmapTransform, False)
        p.drawImage(target, self._slice_image())
        overlay = self._mask_image()
        if overlay is not None:
            p.drawImage(target, overlay)
        p.setRenderHint(QPainter.Antialiasing, True)
        if st.ndim == 3 or len(st.channels) > 1:  # the linked cursor (side-by-side 2D too)
            self._draw_cursor(p, tf)
        self._draw_markers(p, tf)
        self._draw_stroke(p, tf)
        self._draw_brush(p, tf)
        self._draw_label(p)
        p.end()

    def _draw_cursor(self, p: QPainter, tf: ViewTransform) -> None:
        r, c, _ = self.plane.from_voxel(self.state.cursor, self.state.shape)
        x, y = tf.image_to_widget(r + 0.5, c + 0.5)
        gap = 6.0
        pen = QPen(CURSOR_COLOR, 1.0, Qt.DashLine)
        p.setPen(pen)
        w, h = self.width(), self.height()
        p.drawLine(QPointF(0, y), QPointF(x - gap, y))
        p.drawLine(QPointF(x + gap, y), QPointF(w, y))
        p.drawLine(QPointF(x, 0), QPointF(x, y - gap))
        p.drawLine(QPointF(x, y + gap), QPointF(x, h))

    def _draw_markers(self, p: QPainter, tf: ViewTransform) -> None:
        idx = self.slice_index
        for voxel, kind in self.state.markers:
            r, c, s = self.plane.from_voxel(voxel, self.state.shape)
            dist = 0.0 if s is None else abs(s - idx)
            if dist > 3 or (kind == "suggest" and dist >= 0.5):
                continue  # the suggestion only on the slices that contain it
            x, y = tf.image_to_widget(r + 0.5, c + 0.5)
            color = MARKER_COLORS[kind]
            centre = QPointF(x, y)
            if kind == "suggest":
                _draw_suggestion(p, centre, color)
                continue
            if dist >= 0.5:  # nearby slice: small hollow ring, so the user sees it is close
                p.setPen(QPen(color, 1.0))
                p.setBrush(Qt.NoBrush)
                p.drawEllipse(centre, 3.0, 3.0)
                continue
            if kind == "margin_pending":
                p.setPen(QPen(QColor(0, 0, 0), 4.0))
                p.drawLine(QPointF(x - 6, y), QPointF(x + 6, y))
                p.drawLine(QPointF(x, y - 6), QPointF(x, y + 6))
                p.setPen(QPen(color, 2.0))
                p.drawLine(QPointF(x - 6, y), QPointF(x + 6, y))
                p.drawLine(QPointF(x, y - 6), QPointF(x, y + 6))
            elif kind.endswith("_pending"):
                p.setPen(QPen(color, 2.0))
                p.setBrush(Qt.NoBrush)
                p.drawEllipse(centre, 5.0, 5.0)
            else:
                p.setPen(QPen(QColor(0, 0, 0), 1.5))
                p.setBrush(color)
                p.drawEllipse(centre, 4.5, 4.5)

    def _stroke_color(self, button) -> QColor:
        tool = self.state.tool
        if tool == "scribble":
            return MARKER_COLORS["fg" if button == Qt.LeftButton else "bg"]
        if tool == "paint" and button == Qt.LeftButton:
            color = QColor(*self.state.paint_color)
            color.setAlpha(170)
            return color
        return QColor(235, 235, 235, 150)  # erasing

    def _draw_brush(self, p: QPainter, tf: ViewTransform) -> None:
        """The brush's outline under the pointer (paint and erase tools)."""
        if self._hover is None or self.state.tool not in ("paint", "erase"):
            return
        sx, _ = tf.scale
        r = max(2.0, (self.state.brush_radius + 0.5) * sx)
        p.setBrush(Qt.NoBrush)
        p.setPen(QPen(QColor(0, 0, 0, 170), 3.0))  # visible on bright and dark voxels
        p.drawEllipse(self._hover, r, r)
        p.setPen(QPen(QColor(255, 255, 255, 230), 1.2))
        p.drawEllipse(self._hover, r, r)

    def _draw_stroke(self, p: QPainter, tf: ViewTransform) -> None:
        if self._drag is None or self._drag[0] != "stroke" or not self._stroke:
            return
        color = self._stroke_color(self._stroke_button)
        sx, _ = tf.scale
        pen = QPen(color, max(2.0, (2 * self.state.brush_radius + 1) * sx))
        pen.setCapStyle(Qt.RoundCap)
        pen.setJoinStyle(Qt.RoundJoin)
        p.setPen(pen)
        p.setBrush(Qt.NoBrush)
        path = QPainterPath()
        for i, (r, c) in enumerate(self._stroke):
            x, y = tf.image_to_widget(r, c)
            path.moveTo(x, y) if i == 0 else path.lineTo(x, y)
        if len(self._stroke) == 1:
            path.lineTo(path.currentPosition() + QPointF(0.1, 0))
        p.drawPath(path)

    def _draw_label(self, p: QPainter) -> None:
        st = self.state
        text = st.names[self.channel] if self.channel < len(st.names) else ""
        if self.plane.normal_axis is not None:
            # 0-based like the coordinates in the status bar and in midseg's API
            last = self.plane.n_slices(st.shape) - 1
            axis = "zyx"[self.plane.normal_axis]
            text = f"{self.plane.name}  {axis} {self.slice_index}/{last}   {text}"
        p.setFont(QFont(self.font().family(), 9))
        p.setPen(QColor(0, 0, 0))
        p.drawText(QPointF(7, 16), text)
        p.setPen(QColor(230, 230, 230))
        p.drawText(QPointF(6, 15), text)
        letters = orientation_letters(self.plane, st.direction) if st.ndim == 3 else None
        if letters:  # patient directions at the view's edges
            p.setPen(QColor(255, 210, 90))
            r = self.rect()
            for where, flags in (
                ("top", Qt.AlignHCenter | Qt.AlignTop),
                ("bottom", Qt.AlignHCenter | Qt.AlignBottom),
                ("left", Qt.AlignVCenter | Qt.AlignLeft),
                ("right", Qt.AlignVCenter | Qt.AlignRight),
            ):
                p.drawText(r.adjusted(4, 20, -4, -4), flags, letters[where])

    # -- mouse ---------------------------------------------------------------
    def _image_point(self, pos) -> tuple[float, float]:
        return self.transform().widget_to_image(pos.x(), pos.y())

    def mousePressEvent(self, event) -> None:  # noqa: N802
        if not self.state.channels:
            return
        self.activated.emit(self.channel)
        pos, button, mods = event.pos(), event.button(), event.modifiers()
        tool = self.state.tool
        if button == Qt.MiddleButton or (button == Qt.LeftButton and mods & Qt.ControlModifier):
            self._drag = ("pan", pos, None)
            self.setCursor(Qt.ClosedHandCursor)
            return
        if (button == Qt.LeftButton and mods & Qt.ShiftModifier) or (
            button == Qt.RightButton and tool == "navigate"
        ):
            self._drag = ("window", pos, self.state.windows[self.channel])
            return
        if button not in (Qt.LeftButton, Qt.RightButton):
            return
        if tool in BRUSH_TOOLS:
            self._drag = ("stroke", pos, None)
            self._stroke = [self._image_point(pos)]
            self._stroke_button = button
            self.update()
            return
        voxel = self.voxel_at(pos.x(), pos.y())
        if voxel is None:
            return
        if tool == "navigate" and button == Qt.LeftButton:
            self._drag = ("cursor", pos, None)
        self.voxel_clicked.emit(voxel, int(button))

    def mouseMoveEvent(self, event) -> None:  # noqa: N802
        pos = event.pos()
        self.hovered.emit(self.voxel_at(pos.x(), pos.y()))
        if self.state.tool in ("paint", "erase"):
            self._hover = QPointF(pos)
            if self._drag is None:
                self.update()
        if self._drag is None:
            return
        kind, start, extra = self._drag
        if kind == "pan":
            d = pos - start
            tf = self.transform().panned(d.x(), d.y())
            self._drag = ("pan", pos, None)
            self.link.set(tf.zoom, tf.center)
        elif kind == "window":
            level, width = extra
            d = pos - start
            # one widget width of drag changes the width by its own size
            width = max(width * (1.0 + 2.0 * d.x() / max(self.width(), 1)), 1e-6)
            level = level - extra[1] * d.y() / max(self.height(), 1)
            self.state.windows[self.channel] = (level, width)
            self.state.touch()
        elif kind == "stroke":
            self._stroke.append(self._image_point(pos))
            self.update()
        elif kind == "cursor":
            voxel = self.voxel_at(pos.x(), pos.y())
            if voxel is not None:
                self.cursor_dragged.emit(voxel)

    def mouseReleaseEvent(self, event) -> None:  # noqa: N802
        drag, self._drag = self._drag, None
        self.unsetCursor()
        if drag is None or drag[0] != "stroke":
            return
        pix = stroke_pixels(
            self._stroke, self.state.brush_radius, self.plane.size(self.state.shape)
        )
        self._stroke = []
        self.update()
        if len(pix) == 0:
            return
        voxels = np.array(
            [self.plane.to_voxel(r, c, self.slice_index, self.state.shape) for r, c in pix],
            dtype=np.int64,
        )
        self.stroke_finished.emit(voxels, int(self._stroke_button))

    def leaveEvent(self, event) -> None:  # noqa: N802
        self._hover = None
        self.update()
        self.hovered.emit(None)

    def enterEvent(self, event) -> None:  # noqa: N802
        if self.state.channels:
            self.activated.emit(self.channel)

    def wheelEvent(self, event) -> None:  # noqa: N802
        if not self.state.channels:
            return
        delta = event.angleDelta().y() or event.angleDelta().x()
        if delta == 0:
            return
        # the wheel moves through slices, Ctrl+wheel zooms (as 3D Slicer and ITK-SNAP do);
        # a 2D image has no slices: its wheel zooms
        if self.plane.normal_axis is not None and not event.modifiers() & Qt.ControlModifier:
            self.slice_step.emit(1 if delta > 0 else -1)
            return
        pos = event.pos()
        tf = self.transform().zoomed(1.15 ** (delta / 120.0), about=(pos.x(), pos.y()))
        self.link.set(tf.zoom, tf.center)

    def keyPressEvent(self, event) -> None:  # noqa: N802
        key = event.key()
        if key in (Qt.Key_Up, Qt.Key_PageUp):
            self.slice_step.emit(1)
        elif key in (Qt.Key_Down, Qt.Key_PageDown):
            self.slice_step.emit(-1)
        else:
            super().keyPressEvent(event)

    def mouseDoubleClickEvent(self, event) -> None:  # noqa: N802
        if event.button() == Qt.MiddleButton:
            self.link.reset()  # middle double-click: fit the slice to the view again
        else:
            self.mousePressEvent(event)  # a fast second click is still a click
