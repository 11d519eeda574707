"""The main window: menus, tools, parameters, the views and the label list.

The window drives one `midseg.LabelSession`: several named, coloured objects over one
image, each its own `midseg.Session` (margin points, click rounds, brush edits, undo and
redo). One object is current (`MainWindow.session`); the tools act on it. Every
segmentation step is a call on a session (segment, refine, paint, undo, redo, reset,
save_clicks, from_clicks), on the label session (add, remove, rename, write_labelmap) or
on `midseg.io`/`midseg.labelmap`; slow calls run on the worker of `midseg.gui.jobs`.
Nothing here computes a segmentation.

`MainWindow` composes its parts, each a mixin in its own module: `actions` (menus,
toolbars, status bar, views), `images` (opening images, starting the session),
`tools` (margin points, clicks, scribbles, brushes, slice mode, undo/redo),
`suggest` (the suggested next click), `objects` (the label list) and `files` (masks,
label maps, clicks, autosave).
"""

from __future__ import annotations

import time
import traceback

import numpy as np
from PyQt5.QtCore import Qt
from PyQt5.QtWidgets import (
    QApplication,
    QDockWidget,
    QGridLayout,
    QMainWindow,
    QMessageBox,
    QWidget,
)

from midseg._checks import DEFAULT_LAM, DEFAULT_SIGMA
from midseg.errors import MidsegError

from .actions import ActionsMixin
from .files import FilesMixin
from .images import IMAGE_FILTER, ImagesMixin, _has_physical_size
from .jobs import JobRunner
from .labels import LabelPanel, rgb255
from .objects import ObjectsMixin
from .suggest import SuggestMixin
from .tools import ToolsMixin
from .views import SliceView, ViewerState, ViewLink

__all__ = ["MainWindow", "IMAGE_FILTER"]


class MainWindow(
    ActionsMixin, ImagesMixin, ToolsMixin, SuggestMixin, ObjectsMixin, FilesMixin, QMainWindow
):
    """The midseg application window.

    Parameters
    ----------
    model : str, path or loaded model, optional
        Passed to `midseg.Session` (default: the shipped model matching the
        image's dimensionality).
    autosave : bool
        Write the clicks after every step to the sidecar file of
        `midseg.gui.sidecar.autosave_path` and offer them back on reopening.
    autosave_dir : path, optional
        Fallback folder for autosaves when the image's folder is read-only.
    lam, sigma : float
        Initial λ and σ of the refinement (each round uses the current values).
    device : str, optional
        Torch device for stage 1.

    Attributes
    ----------
    labels : midseg.LabelSession or None
        The objects of the image (None until the model has loaded).
    current : str or None
        The name of the current object, the one the tools, undo and redo act on.
    session : midseg.Session or None
        The current object's session (read-only property).
    hidden : set of str
        Names of the objects the overlay does not show.
    state : ViewerState
    views : dict
        ``(plane name, channel) -> SliceView``.
    jobs : JobRunner
    last_error : str or None
        Text of the last error shown to the user.
    last_warning : str or None
        Text of the last warning shown to the user (`midseg.Session.warnings`).
    """

    def __init__(
        self,
        model=None,
        *,
        autosave: bool = True,
        autosave_dir=None,
        lam: float = DEFAULT_LAM,
        sigma: float = DEFAULT_SIGMA,
        device: str | None = None,
    ):
        super().__init__()
        self.model_spec = model
        self.autosave_enabled = autosave
        self.autosave_dir = autosave_dir
        self.device = device
        self.labels = None  # midseg.LabelSession: one Session per object
        self.current: str | None = None
        self.hidden: set[str] = set()
        self._pending_by_object: dict[str, list] = {}  # margin points of other objects
        self.image = None  # the midseg.Image the session segments
        self.image_path: str | None = None
        self.modalities: list = []  # midseg.Image per opened file
        self.pending_margin: list[tuple[int, ...]] = []
        self.pending_fg: list[tuple[int, ...]] = []
        self.pending_bg: list[tuple[int, ...]] = []
        self._inflight: tuple[list, list] = ([], [])
        self._segmenting: list[tuple[int, ...]] = []
        self.views: dict[tuple[str, int], SliceView] = {}
        self.links: dict[str, ViewLink] = {}
        self.last_error: str | None = None
        self._error_box: QMessageBox | None = None
        self.last_warning: str | None = None
        self._warning_box: QMessageBox | None = None
        self._revision = 0
        self._saved_revision = 0
        self._active_channel = 0
        self._close_when_idle = False
        self._last_mask_path: str | None = None
        #: 2D model of the per-slice mode (None: the shipped one matching the channels)
        self.slice_model_spec = None
        self._slice_model = None  # loaded once, on first use
        self._slice = None  # (object name, slice index, 2D Session) of slice mode

        self.state = ViewerState(self)
        self.jobs = JobRunner(self)
        self.jobs.busy_changed.connect(self._busy_changed)

        self.setWindowTitle("midseg")
        self.setAcceptDrops(True)
        self.resize(1280, 800)
        self._build_actions(lam, sigma)
        self._build_statusbar()
        self._central = QWidget()
        self._grid = QGridLayout(self._central)
        self._grid.setContentsMargins(2, 2, 2, 2)
        self._grid.setSpacing(3)
        self.setCentralWidget(self._central)
        self._rebuild_views()
        self.label_panel = LabelPanel(self)
        dock = QDockWidget("Objects", self)
        dock.setObjectName("dock_labels")
        dock.setWidget(self.label_panel)
        dock.setFeatures(QDockWidget.DockWidgetMovable | QDockWidget.DockWidgetFloatable)
        self.addDockWidget(Qt.RightDockWidgetArea, dock)
        self.resizeDocks([dock], [190], Qt.Horizontal)
        self.label_dock = dock
        self._update_actions()

    @property
    def session(self):
        """The current object's `midseg.Session` (None before the model has loaded)."""
        if self.labels is None or self.current is None:
            return None
        return self.labels.object(self.current)

    # =====================================================================
    # dialogs (tests replace `ask`; errors never block)
    # =====================================================================
    def ask(self, title: str, text: str, buttons, default):
        """Ask a question; returns the `QMessageBox.StandardButton` chosen."""
        return QMessageBox.question(self, title, text, buttons, default)

    def show_error(self, title: str, error) -> None:
        """Show an error in a window-modal box that does not block the caller."""
        if isinstance(error, BaseException):
            text = str(error).strip() or type(error).__name__
            if not isinstance(error, (MidsegError, ValueError, OSError)):
                text = f"{type(error).__name__}: {text}"
            detail = getattr(error, "__midseg_traceback__", None) or "".join(
                traceback.format_exception(type(error), error, error.__traceback__)
            )
        else:
            text, detail = str(error), None
        self.last_error = text
        self.statusBar().showMessage(f"{title}: {text.splitlines()[0]}", 8000)
        if self._error_box is not None:
            self._error_box.close()  # one error at a time; the newest is what matters
        box = QMessageBox(QMessageBox.Critical, title, text, QMessageBox.Ok, self)
        if detail:
            box.setDetailedText(detail)
        box.setWindowModality(Qt.WindowModal)
        box.open()
        self._error_box = box

    def show_warning(self, title: str, text: str) -> None:
        """Show a warning about a result in a window-modal box that does not block the caller.

        The status bar alone would not do: hovering the image clears it.
        """
        self.last_warning = text
        self.statusBar().showMessage(f"{title}: {text.splitlines()[0]}", 15000)
        if self._warning_box is not None:
            self._warning_box.close()
        box = QMessageBox(QMessageBox.Warning, title, text, QMessageBox.Ok, self)
        box.setWindowModality(Qt.WindowModal)
        box.open()
        self._warning_box = box

    def _show_session_warnings(self, title: str) -> None:
        """Show the warnings the session attached to its current state, if any."""
        notes = [] if self.session is None else [str(w) for w in self.session.warnings]
        if notes:
            self.show_warning(title, "\n\n".join(notes))

    def _submit(self, work, done, label: str) -> bool:
        """Run ``work`` in the worker; ``done`` on the UI thread, its own bugs shown, not fatal."""

        def guarded(result, error, seconds):
            try:
                done(result, error, seconds)
            except Exception as exc:  # a slot must never take the application down
                self.show_error("Internal error", exc)
                self._refresh()

        return self.jobs.submit(work, guarded, label)

    # =====================================================================
    # state bookkeeping
    # =====================================================================
    def _changed(self) -> None:
        """After every session step: bump the revision, autosave, redraw."""
        self._revision += 1
        self._autosave()
        self._update_suggestion()
        self._refresh()

    def _refresh(self) -> None:
        st, s = self.state, self.session
        st.mask = None if s is None else s.mask
        layers = []
        if self.labels is not None:
            for name in self.labels.names:
                m = self.labels.object(name).mask
                if m is not None and name not in self.hidden:
                    layers.append(
                        (m, rgb255(self.labels.segment_of(name).color), name == self.current)
                    )
            if self.current is not None:
                st.paint_color = rgb255(self.labels.segment_of(self.current).color)
        st.layers = layers
        markers = []
        if s is not None and s.mask is not None:
            markers += [(tuple(p), "margin") for p in s.margin_points]
            fg, bg = s.clicks_in_force  # an overridden click is no longer shown
            markers += [(tuple(p), "fg") for p in fg]
            markers += [(tuple(p), "bg") for p in bg]
        markers += [(p, "margin_pending") for p in self._segmenting + self.pending_margin]
        markers += [(p, "fg_pending") for p in self.pending_fg + self._inflight[0]]
        markers += [(p, "bg_pending") for p in self.pending_bg + self._inflight[1]]
        markers += self._suggestion_markers()
        st.markers = markers
        if s is None:
            info = "no session" if self.image is not None else ""
        elif s.mask is None:
            info = (
                f"stage 1 on {len(self._segmenting)} margin points..."
                if self._segmenting
                else f"{len(self.pending_margin)} margin point(s) placed"
            )
        else:
            n = int(np.count_nonzero(s.mask))
            if _has_physical_size(self.image):
                vol = n * float(np.prod(self.image.spacing))
                size = f"{vol:,.0f} {'mm³' if self.image.ndim == 3 else 'mm²'}"
            else:  # a picture has no pixel size: count pixels
                size = f"{n:,} {'voxels' if self.image.ndim == 3 else 'pixels'}"
            info = f"{len(s.margin_points)} points, {len(s.rounds)} rounds, {size}"
            if s.edits:
                info += f", {s.edits} brush edit(s)"
            if self.pending_margin:
                info += f"; {len(self.pending_margin)} new margin pt(s)"
        if self.current is not None and len(self.labels.names) > 1:
            info = f"{self.current}: {info}"
        self.info_label.setText(info)
        self._update_actions()
        self.label_panel.refresh()
        st.touch()

    def _update_actions(self) -> None:
        busy = self.jobs.busy
        have_img = self.image is not None
        s = self.session
        has_mask = s is not None and s.mask is not None
        self.act_open.setEnabled(not busy)
        self.act_open_dicom.setEnabled(not busy)
        self.act_second.setEnabled(have_img and not busy)
        self.act_drop_second.setEnabled(len(self.modalities) > 1 and not busy)
        self.act_segment.setEnabled(s is not None and not busy and bool(self.pending_margin))
        self.act_undo.setEnabled(s is not None and not busy and s.can_undo)
        self.act_redo.setEnabled(s is not None and not busy and s.can_redo)
        self.act_reset.setEnabled(s is not None and not busy and (has_mask or s.can_redo))
        self.act_save_mask.setEnabled(has_mask and not busy)
        any_mask = self._any_mask()
        self.act_save_clicks.setEnabled(any_mask and not busy)
        self.act_save_labelmap.setEnabled(any_mask and not busy)
        self.act_load_mask.setEnabled(self.labels is not None and not busy)
        self.act_load_labelmap.setEnabled(self.labels is not None and not busy)
        self.act_add_object.setEnabled(self.labels is not None and not busy)
        self.act_slice_mode.setEnabled(self.state.ndim == 3 and not busy)
        self.act_load_clicks.setEnabled(have_img and not busy)
        self.act_clear_points.setEnabled(bool(self.pending_margin))
        self._update_suggest_actions()

    def _busy_changed(self, busy: bool) -> None:
        self.progress.setVisible(busy)
        if busy:
            self.progress.setFormat(self.jobs.label)
        self._update_actions()
        self.label_panel.refresh()
        if not busy:
            if self.pending_fg or self.pending_bg:
                self._flush_refine()  # clicks made while the last round ran
            elif self._close_when_idle:
                self.close()

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """Process events until no job runs (scripts); True if idle within ``timeout`` s."""
        end = time.monotonic() + timeout
        while self.jobs.busy or self.pending_fg or self.pending_bg:
            QApplication.processEvents()
            if time.monotonic() > end:
                return False
            time.sleep(0.005)
        QApplication.processEvents()
        return True

    # =====================================================================
    # drag and drop, closing
    # =====================================================================
    def dragEnterEvent(self, event) -> None:  # noqa: N802
        if event.mimeData().hasUrls() and any(u.isLocalFile() for u in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:  # noqa: N802
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if not paths:
            return
        event.acceptProposedAction()
        if len(paths) >= 2:
            self.open_image(paths[0], second=paths[1])
        elif self.image is not None and event.keyboardModifiers() & Qt.ShiftModifier:
            self.open_second(paths[0])  # Shift+drop: add as second modality
        else:
            self.open_image(paths[0])

    def closeEvent(self, event) -> None:  # noqa: N802
        if self.jobs.busy:
            self._close_when_idle = True
            self.statusBar().showMessage("closing when the running step has finished...")
            event.ignore()
            return
        self._close_when_idle = False
        if not self._maybe_keep_work("Quit midseg"):
            event.ignore()
            return
        if not self.dirty:
            self._discard_autosave()
        event.accept()
