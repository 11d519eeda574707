"""The main window: menus, tools, parameters, the views and the label list.

The window drives one `midseg.LabelSession`: several named, coloured objects over one
image, each its own `midseg.Session` (margin points, click rounds, brush edits, undo and
redo). One object is current (`MainWindow.session`); the tools act on it. Every
segmentation step is a call on a session (segment, refine, paint, undo, redo, reset,
save_clicks, from_clicks), on the label session (add, remove, rename, write_labelmap) or
on `midseg.io`/`midseg.labelmap`; slow calls run on the worker of `midseg.gui.jobs`.
Nothing here computes a segmentation.
"""
from __future__ import annotations

import os
import time
import traceback
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from PyQt5.QtCore import QSize, Qt
from PyQt5.QtGui import QKeySequence
from PyQt5.QtGui import QColor
from PyQt5.QtWidgets import (QAction, QActionGroup, QApplication, QCheckBox, QColorDialog,
                             QComboBox, QDockWidget, QDoubleSpinBox, QFileDialog, QGridLayout,
                             QLabel, QMainWindow, QMessageBox, QProgressBar, QSlider, QToolBar,
                             QVBoxLayout, QWidget)

from midseg._checks import DEFAULT_LAM, DEFAULT_SIGMA
from midseg.errors import MidsegError
from midseg.io import write_json_atomic
from midseg.refine import REFINE_METHODS

from .jobs import JobRunner
from .labels import LabelPanel, rgb255
from .planes import WL_PRESETS, auto_window, full_window, planes_for
from .sidecar import autosave_path, pending_document, read_pending
from .views import TOOLS, SliceView, ViewerState, ViewLink

__all__ = ["MainWindow", "IMAGE_FILTER"]

IMAGE_FILTER = ("Images (*.nii *.nii.gz *.nrrd *.nhdr *.mha *.mhd *.dcm *.png *.jpg *.jpeg "
                "*.tif *.tiff *.bmp);;All files (*)")
MASK_FILTER = "NIfTI (*.nii.gz *.nii);;NRRD (*.nrrd);;MetaImage (*.mha);;PNG (*.png);;All files (*)"
CLICKS_FILTER = "midseg clicks (*.clicks.json *.json);;All files (*)"
LABELMAP_FILTER = ("Label maps (*.seg.nrrd *.nii.gz *.nii *.nrrd *.mha *.dcm);;"
                   "3D Slicer segmentation (*.seg.nrrd);;NIfTI (*.nii.gz *.nii);;"
                   "DICOM-SEG (*.dcm);;All files (*)")
LABELMAP_SAVE_FILTER = "3D Slicer segmentation (*.seg.nrrd);;NIfTI + segments sidecar (*.nii.gz)"
DICOM_SEG_FILTER = ";;DICOM-SEG of the opened series (*.dcm)"

#: Colours of new objects (r, g, b in [0, 1]); none is the green or red of the click markers.
OBJECT_COLORS = tuple(tuple(round(c / 255, 4) for c in rgb) for rgb in (
    (0, 190, 255), (255, 170, 40), (190, 110, 255), (255, 110, 200), (250, 235, 70),
    (120, 200, 255), (255, 140, 100), (80, 215, 190)))

TOOL_HELP = {
    "navigate": "Navigate: left click/drag moves the cursor, right-drag changes window/level",
    "margin": "Margin points: left click adds an interior margin point on the object's edge, "
              "right click removes the nearest; Enter runs stage 1",
    "refine": "Refine: left click = foreground (missed object), right click = background (leak)",
    "scribble": "Scribble: left-drag paints foreground, right-drag background; each stroke is one round",
    "paint": "Paint: left-drag adds the brush's voxels to the current object, right-drag erases; "
             "each stroke is one undoable step (brush radius in voxels, in the slice drawn on)",
    "erase": "Erase: left- or right-drag removes the brush's voxels from the current object; "
             "each stroke is one undoable step",
}


def _has_physical_size(image) -> bool:
    """False for a picture (PNG, JPEG, BMP...), whose pixel size is unknown (unit spacing)."""
    path = str(getattr(image, "path", "") or "").lower()
    return not path.endswith((".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"))


def _image_name(image, fallback: str = "image") -> str:
    path = getattr(image, "path", None)
    if not path:
        return fallback
    name = Path(path).name
    for suffix in (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd", ".png", ".jpg", ".tif", ".tiff"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _clicks_beside(mask_path: str) -> str:
    """``case_mask.nii.gz`` -> ``case_mask.clicks.json`` (where the close dialog saves clicks)."""
    for suffix in (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd", ".png", ".jpg", ".tif", ".tiff"):
        if mask_path.lower().endswith(suffix):
            return mask_path[: -len(suffix)] + ".clicks.json"
    return mask_path + ".clicks.json"



def _replayable(session) -> bool:
    """A clicks file rebuilds this object's mask: no brush edits, not started from a mask."""
    if session.edits:
        return False
    try:
        return "initial_mask" not in session.clicks_dict()
    except MidsegError:
        return False


def _dicom_series_folder(path: str) -> str | None:
    """The folder of ``path``'s DICOM series when ``path`` is a ``.dcm`` file of a series
    of several files that is the only series in its folder, else None."""
    p = Path(path)
    if not (p.suffix.lower() == ".dcm" and p.is_file()):
        return None
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    try:
        ids = reader.GetGDCMSeriesIDs(str(p.parent))
        if len(ids) != 1:
            return None
        files = reader.GetGDCMSeriesFileNames(str(p.parent), ids[0])
        if len(files) > 1 and any(os.path.samefile(f, p) for f in files):
            return str(p.parent)
    except (RuntimeError, OSError):
        pass
    return None


def _onto(image, first):
    """`image` on `first`'s grid: unchanged when the grids agree, else resampled (physical)."""
    from midseg.io import resample_to

    if tuple(image.shape) == tuple(first.shape) and not first.same_geometry(image):
        return image
    if image.multichannel:
        return image          # _install explains why it cannot be used
    return resample_to(image, first)

class _ViewPanel(QWidget):
    """A `SliceView` with a slice slider under it (volumes only)."""

    def __init__(self, view: SliceView, state: ViewerState):
        super().__init__()
        self.view, self.state = view, state
        lay = QVBoxLayout(self)
        lay.setContentsMargins(1, 1, 1, 1)
        lay.setSpacing(2)
        lay.addWidget(view, 1)
        self.slider = None
        if view.plane.normal_axis is not None:
            self.slider = QSlider(Qt.Horizontal)
            self.slider.setRange(0, view.plane.n_slices(state.shape) - 1)
            self.slider.setObjectName(f"slider_{view.plane.name}_{view.channel}")
            self.slider.valueChanged.connect(self._slider_moved)
            state.changed.connect(self._sync)
            lay.addWidget(self.slider)
            self._sync()

    def _slider_moved(self, value: int) -> None:
        cur = list(self.state.cursor)
        cur[self.view.plane.normal_axis] = value
        self.state.set_cursor(cur)

    def _sync(self) -> None:
        if self.slider is not None and self.state.cursor:
            self.slider.blockSignals(True)
            self.slider.setValue(self.state.cursor[self.view.plane.normal_axis])
            self.slider.blockSignals(False)


class MainWindow(QMainWindow):
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

    def __init__(self, model=None, *, autosave: bool = True, autosave_dir=None,
                 lam: float = DEFAULT_LAM, sigma: float = DEFAULT_SIGMA, device: str | None = None):
        super().__init__()
        self.model_spec = model
        self.autosave_enabled = autosave
        self.autosave_dir = autosave_dir
        self.device = device
        self.labels = None           # midseg.LabelSession: one Session per object
        self.current: str | None = None
        self.hidden: set[str] = set()
        self._pending_by_object: dict[str, list] = {}   # margin points of other objects
        self.image = None            # the midseg.Image the session segments
        self.image_path: str | None = None
        self.modalities: list = []   # midseg.Image per opened file
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
        self._slice_model = None     # loaded once, on first use
        self._slice = None           # (object name, slice index, 2D Session) of slice mode

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
    # construction
    # =====================================================================
    def _action(self, text, slot, shortcut=None, tip=None, checkable=False) -> QAction:
        act = QAction(text, self)
        if shortcut is not None:
            shortcuts = shortcut if isinstance(shortcut, list) else [shortcut]
            act.setShortcuts([QKeySequence(s) for s in shortcuts])
        if tip:
            act.setStatusTip(tip)
            act.setToolTip(tip)
        act.setCheckable(checkable)
        if slot is not None:
            act.triggered.connect(slot)
        return act

    def _build_actions(self, lam: float, sigma: float) -> None:
        a = self._action
        self.act_open = a("&Open image...", lambda: self.open_image(), QKeySequence.Open,
                          "Open a 2D image or a 3D volume (NIfTI, NRRD, MHA, DICOM folder, PNG...)")
        self.act_open_dicom = a("Open &DICOM folder...", lambda: self.open_image(dicom=True))
        self.act_second = a("Add second &modality...", lambda: self.open_second(), "Ctrl+Shift+O",
                            "Open a co-registered image (e.g. CT for PET), shown side by side "
                            "and given to the model as a second channel")
        self.act_drop_second = a("Remove second modality", lambda: self.remove_second())
        self.act_save_mask = a("&Save mask...", lambda: self.save_mask(), QKeySequence.Save,
                               "Write the mask with the image's geometry")
        self.act_save_clicks = a("Save &clicks...", lambda: self.save_clicks(), "Ctrl+Shift+S",
                                 "Write the margin points and click rounds (JSON, replayable)")
        self.act_load_clicks = a("&Load clicks...", lambda: self.load_clicks(), "Ctrl+L",
                                 "Replay a clicks file on this image")
        self.act_load_mask = a("Load mask as &object...", lambda: self.load_mask(), None,
                               "Add a binary mask (nonzero = object) as a new object, to refine "
                               "with clicks or brushes")
        self.act_load_labelmap = a("Load label &map...", lambda: self.load_labelmap(), None,
                                   "Add every object of a label map (.seg.nrrd, NIfTI with "
                                   "segments sidecar, DICOM-SEG) with its name and colour")
        self.act_save_labelmap = a("Save label map...", lambda: self.save_labelmap(), "Ctrl+E",
                                   "Write all objects as one label map with names and colours "
                                   "(.seg.nrrd, NIfTI + sidecar, DICOM-SEG for a DICOM series)")
        self.act_add_object = a("&Add object", lambda: self.add_object(), "Ctrl+N",
                                "Add a new object (structure) and make it current")
        self.act_quit = a("&Quit", self.close, QKeySequence.Quit)
        self.act_segment = a("Segment", lambda: self.run_segment(), ["Return", "Enter"],
                             "Run stage 1 (CNN) on the margin points (Enter)")
        self.act_undo = a("&Undo", lambda: self.undo(), QKeySequence.Undo, "Undo the last step (Ctrl+Z)")
        self.act_redo = a("&Redo", lambda: self.redo(), ["Ctrl+Shift+Z", "Ctrl+Y"],
                          "Redo (Ctrl+Shift+Z)")
        self.act_reset = a("Rese&t", lambda: self.reset(), None, "Forget all points, clicks and history")
        self.act_clear_points = a("Clear margin points", lambda: self.clear_pending(), "Escape",
                                  "Remove the margin points not yet segmented (Esc)")
        self.act_fit = a("&Fit views", self._fit_views, "F", "Reset zoom and pan")
        self.act_slice_mode = a("2D on the axial slice", lambda on: self._slice_mode_toggled(on),
                                "Ctrl+2", "Volumes: margin points and clicks on one axial "
                                "slice run the 2D model on that slice; the result is written "
                                "into that slice of the current object (one undoable step)",
                                checkable=True)

        self.tool_group = QActionGroup(self)
        self.tool_actions = {}
        for tool, label, key in (("navigate", "Navigate", "N"), ("margin", "Margin points", "M"),
                                 ("refine", "Refine clicks", "R"), ("scribble", "Scribble", "B"),
                                 ("paint", "Paint", "P"), ("erase", "Erase", "E")):
            act = a(label, None, key, TOOL_HELP[tool] + f"  [{key}]", checkable=True)
            act.triggered.connect(lambda _=False, t=tool: self.set_tool(t))
            self.tool_group.addAction(act)
            self.tool_actions[tool] = act
        self.tool_actions["navigate"].setChecked(True)

        menu = self.menuBar()
        m = menu.addMenu("&File")
        for act in (self.act_open, self.act_open_dicom, self.act_second, self.act_drop_second, None,
                    self.act_load_clicks, self.act_save_clicks, self.act_save_mask, None,
                    self.act_load_mask, self.act_load_labelmap, self.act_save_labelmap, None,
                    self.act_quit):
            m.addSeparator() if act is None else m.addAction(act)
        m = menu.addMenu("&Edit")
        for act in (self.act_undo, self.act_redo, None, self.act_segment, self.act_clear_points,
                    self.act_reset, None, self.act_add_object):
            m.addSeparator() if act is None else m.addAction(act)
        m = menu.addMenu("&Tools")
        for act in self.tool_actions.values():
            m.addAction(act)
        m.addSeparator()
        m.addAction(self.act_slice_mode)
        m = menu.addMenu("&View")
        m.addAction(self.act_fit)

        tb = QToolBar("Main", self)
        tb.setObjectName("toolbar_main")
        tb.setIconSize(QSize(16, 16))
        # short toolbar labels (the menus keep the full ones): the bar fits 1100 pixels
        self.act_save_labelmap.setIconText("Save labels")
        self.tool_actions["margin"].setIconText("Margin")
        self.tool_actions["refine"].setIconText("Refine")
        for act in (self.act_open, self.act_save_labelmap, None, *self.tool_actions.values(),
                    None, self.act_segment, self.act_undo, self.act_redo, self.act_reset):
            tb.addSeparator() if act is None else tb.addAction(act)
        self.addToolBar(Qt.TopToolBarArea, tb)

        pb = QToolBar("Parameters", self)
        pb.setObjectName("toolbar_params")
        self.lam_box = QDoubleSpinBox()
        self.lam_box.setRange(0.0, 1000.0)
        self.lam_box.setDecimals(2)
        self.lam_box.setSingleStep(0.5)
        self.lam_box.setValue(lam)
        self.lam_box.setToolTip("λ: weight of the smoothness term of the graph cut (used from the next round)")
        self.sigma_box = QDoubleSpinBox()
        self.sigma_box.setRange(0.001, 100.0)
        self.sigma_box.setDecimals(3)
        self.sigma_box.setSingleStep(0.01)
        self.sigma_box.setValue(sigma)
        self.sigma_box.setToolTip("σ: intensity scale of the smoothness term (used from the next round)")
        self.method_box = QComboBox()
        self.method_box.addItems(list(REFINE_METHODS))
        self.method_box.setToolTip("ifgc: information fusion + graph cut (MIDeepSeg, certainty-weighted "
                                   "fusion); ifgc-paper: the paper's Eq. 7 as printed; gc: plain graph cut")
        self.opacity = QSlider(Qt.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(int(self.state.opacity * 100))
        self.opacity.setFixedWidth(90)
        self.opacity.setToolTip("Mask opacity")
        self.opacity.valueChanged.connect(self._overlay_changed)
        self.contour_box = QCheckBox("Contour")
        self.contour_box.setToolTip("Draw the mask outline instead of a filled overlay")
        self.contour_box.toggled.connect(self._overlay_changed)
        self.show_mask_box = QCheckBox("Mask")
        self.show_mask_box.setChecked(True)
        self.show_mask_box.toggled.connect(self._overlay_changed)
        self.brush_box = QDoubleSpinBox()
        self.brush_box.setRange(0.0, 50.0)
        self.brush_box.setDecimals(1)
        self.brush_box.setValue(self.state.brush_radius)
        self.brush_box.setToolTip("Brush radius of scribble, paint and erase (voxels, in the "
                                  "slice drawn on; 0 = the voxels the stroke crosses)")
        self.brush_box.valueChanged.connect(self._overlay_changed)
        self.wl_box = QComboBox()
        self.wl_box.addItem("Window/level...")
        self.wl_box.addItems(list(WL_PRESETS))
        self.wl_box.setToolTip("Window/level preset for the image under the pointer "
                               "(or Shift+drag / right-drag in Navigate)")
        self.wl_box.activated.connect(self._preset_chosen)
        self.wl_box.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.wl_box.setMinimumContentsLength(16)
        for label, w in (("λ", self.lam_box), ("σ", self.sigma_box), (None, self.method_box),
                         ("  Opacity", self.opacity), (None, self.contour_box),
                         (None, self.show_mask_box), ("  Brush", self.brush_box),
                         ("  ", self.wl_box)):
            if label:
                pb.addWidget(QLabel(label + " "))
            pb.addWidget(w)
        self.addToolBarBreak(Qt.TopToolBarArea)
        self.addToolBar(Qt.TopToolBarArea, pb)

    def _build_statusbar(self) -> None:
        sb = self.statusBar()
        self.hover_label = QLabel("")
        self.hover_label.setObjectName("hover_label")
        self.hover_label.setMinimumWidth(300)
        self.info_label = QLabel("")
        self.time_label = QLabel("")
        self.time_label.setObjectName("time_label")
        self.progress = QProgressBar()
        self.progress.setRange(0, 0)
        self.progress.setMaximumWidth(110)
        self.progress.setMaximumHeight(14)
        self.progress.hide()
        sb.addWidget(self.hover_label, 1)
        sb.addPermanentWidget(self.info_label)
        sb.addPermanentWidget(self.time_label)
        sb.addPermanentWidget(self.progress)

    def _rebuild_views(self) -> None:
        while self._grid.count():
            item = self._grid.takeAt(0)
            if item.widget() is not None:
                item.widget().deleteLater()
        self.views.clear()
        st = self.state
        if not st.channels:
            empty = SliceView(st, planes_for(2)[0], 0, ViewLink(self))
            self._grid.addWidget(empty, 0, 0)
            return
        planes = planes_for(st.ndim, st.direction)
        self.links = {p.name: self.links.get(p.name) or ViewLink(self) for p in planes}
        for ch in range(len(st.channels)):
            for i, plane in enumerate(planes):
                view = SliceView(st, plane, ch, self.links[plane.name])
                view.voxel_clicked.connect(self._voxel_clicked)
                view.cursor_dragged.connect(st.set_cursor)
                view.stroke_finished.connect(self._stroke_finished)
                view.hovered.connect(lambda v, view=view: self._hovered(view, v))
                view.slice_step.connect(lambda d, view=view: self._step_slice(view, d))
                view.activated.connect(self._activate_channel)
                self.views[(plane.name, ch)] = view
                row, col = (ch, i) if st.ndim == 3 else (0, ch)
                self._grid.addWidget(_ViewPanel(view, st), row, col)
        first = self.views.get((planes[0].name, 0))
        if first is not None:
            first.setFocus()  # keys (Enter, Up/Down) go to the image, not to a spin box

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
                traceback.format_exception(type(error), error, error.__traceback__))
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

    def _get_open_path(self, title: str, filt: str) -> str | None:
        path, _ = QFileDialog.getOpenFileName(self, title, self._start_dir(), filt)
        return path or None

    def _get_save_path(self, title: str, suggestion: str, filt: str) -> str | None:
        path, _ = QFileDialog.getSaveFileName(self, title, suggestion, filt)
        return path or None

    def _start_dir(self) -> str:
        return str(Path(self.image_path).parent) if self.image_path else os.getcwd()

    # =====================================================================
    # opening images
    # =====================================================================
    def open_image(self, path: str | os.PathLike | None = None, *, second=None, clicks=None,
                   dicom: bool = False) -> bool:
        """Open an image (file dialog when ``path`` is None); reading runs in the worker.

        ``second`` opens a co-registered second modality with it (resampled
        onto the first image's grid in physical coordinates when its grid
        differs, `midseg.io.resample_to`); ``clicks`` replays a clicks file
        once the image is shown. Returns False if
        nothing was started (cancelled, busy, or unsaved work kept).
        """
        if self.jobs.busy:
            self.statusBar().showMessage("busy: wait for the running step to finish", 4000)
            return False
        if not self._maybe_keep_work("Open another image"):
            return False
        if path is None:
            if dicom:
                path = QFileDialog.getExistingDirectory(self, "Open DICOM folder", self._start_dir())
            else:
                path = self._get_open_path("Open image", IMAGE_FILTER)
            if not path:
                return False
        from midseg.io import read_image

        paths = [str(path)] + ([str(second)] if second else [])

        def work():
            # one file of a DICOM series stands for the series (as in DICOM viewers), not
            # for a one-slice image that cannot be saved as a DICOM-SEG of its series
            paths[0] = _dicom_series_folder(paths[0]) or paths[0]
            images = [read_image(p) for p in paths]
            return images[:1] + [_onto(im, images[0]) for im in images[1:]]

        def done(images, error, seconds):
            if error is not None:
                self.show_error("Cannot open image", error)
                return
            self._install(images[0], images[1:], clicks=clicks)

        self.statusBar().showMessage(f"reading {paths[0]}...")
        return self._submit(work, done, "reading")

    def set_image(self, image, second=None, *, clicks=None) -> None:
        """Show ``image`` (a `midseg.Image`) and start a session on it (scripts, tests)."""
        self._install(image, [second] if second is not None else [], clicks=clicks)

    def open_second(self, path: str | os.PathLike | None = None) -> bool:
        """Add a co-registered second modality, shown beside the first and fed as channel 2.

        A second image on another grid (a PET beside its CT) is resampled onto the first
        image's grid in physical coordinates (`midseg.io.resample_to`); one that does not
        overlap it is refused with an error.
        """
        if self.image is None or self.jobs.busy:
            return False
        if self.session is not None and self.session.mask is not None and not \
                self._maybe_keep_work("Add a second modality (starts a new session)"):
            return False
        if path is None:
            path = self._get_open_path("Open second modality", IMAGE_FILTER)
            if not path:
                return False
        from midseg.io import read_image

        def done(image, error, seconds):
            if error is not None:
                self.show_error("Cannot open second modality", error)
                return
            self._install(self.modalities[0], [*self.modalities[1:], image], keep_view=True)

        first = self.modalities[0]
        return self._submit(lambda: _onto(read_image(str(path)), first), done, "reading")

    def remove_second(self) -> None:
        if len(self.modalities) > 1 and not self.jobs.busy and self._maybe_keep_work(
                "Remove the second modality (starts a new session)"):
            self._install(self.modalities[0], [], keep_view=True)

    def _compose(self, first, others):
        """The session image: the first image, or all modalities stacked as channels."""
        from midseg.io import Image

        if not others:
            return first
        for other in others:
            if tuple(other.shape) != tuple(first.shape):
                raise MidsegError(
                    f"the second modality has shape {tuple(other.shape)} but the image has "
                    f"{tuple(first.shape)}; resample it onto the first image's grid (co-register) first")
        chans = []
        for im in (first, *others):
            arr = im.array.astype(np.float32)
            chans.extend(list(arr) if im.multichannel else [arr])
        return Image(np.stack(chans), spacing=first.spacing, origin=first.origin,
                     direction=first.direction, multichannel=True, path=first.path)

    def _install(self, first, others, *, clicks=None, keep_view: bool = False) -> None:
        others = [o for o in others if o is not None]
        for other in others:
            diffs = first.same_geometry(other) if tuple(other.shape) == tuple(first.shape) else []
            if diffs and self.ask(
                    "Geometry differs",
                    "The second modality's geometry differs from the first image's:\n  "
                    + "\n  ".join(diffs) + "\n\nShow and segment them together anyway "
                    "(the voxel grids are assumed to be co-registered)?",
                    QMessageBox.Yes | QMessageBox.No, QMessageBox.No) != QMessageBox.Yes:
                return
        try:
            image = self._compose(first, others)
        except MidsegError as exc:
            self.show_error("Cannot use the second modality", exc)
            return
        old_cursor = self.state.cursor if keep_view else None
        self.modalities = [first, *others]
        self.image = image
        self.image_path = first.path
        self.labels, self.current = None, None
        self.hidden, self._pending_by_object = set(), {}
        self._slice, self._slice_model = None, None
        self.pending_margin, self.pending_fg, self.pending_bg = [], [], []
        self._revision = self._saved_revision = 0
        names, channels = [], []
        for k, im in enumerate(self.modalities):
            base = _image_name(im, f"image {k + 1}")
            if im.multichannel:
                channels.extend(list(im.array))
                names.extend(f"{base} [{c}]" for c in range(im.channels))
            else:
                channels.append(im.array)
                names.append(base)
        if not keep_view:
            self.links = {}
        # a DICOM series' own window (Window Center/Width) is the first view of it
        windows = []
        for im in self.modalities:
            windows.extend([getattr(im, "window", None)] * im.channels)
        self.state.set_channels(channels, names, image.spacing, image.direction, windows)
        if old_cursor and len(old_cursor) == self.state.ndim:
            self.state.set_cursor(old_cursor)
        self._rebuild_views()
        title = f"midseg - {Path(first.path).name if first.path else names[0]}"
        self.setWindowTitle(title + (f" + {names[-1]}" if len(names) > 1 else ""))
        self.set_tool("margin")
        self._refresh()
        self._start_session(clicks)

    def _start_session(self, clicks=None) -> None:
        """Create the label session (loads the model) in the worker, with one empty object;
        or replay a clicks or labels file, or an autosave."""
        from midseg.label_session import LabelSession

        image, model = self.image, self.model_spec
        restore = None
        if clicks is not None:
            restore = str(clicks)
        else:
            auto = self._autosave_file()
            if auto is not None and auto.is_file():
                when = time.strftime("%Y-%m-%d %H:%M", time.localtime(auto.stat().st_mtime))
                if self.ask("Restore autosaved session?",
                            f"Clicks autosaved on {when} exist for this image:\n{auto}\n\n"
                            "Restore them (replays stage 1 and every click round)?",
                            QMessageBox.Yes | QMessageBox.No, QMessageBox.Yes) == QMessageBox.Yes:
                    restore = str(auto)

        lam, sigma, device = self.lam_box.value(), self.sigma_box.value(), self.device
        from_autosave = restore is not None and clicks is None
        pending = None
        if from_autosave:
            try:
                pending = read_pending(restore, image)
            except MidsegError as exc:
                self.show_error(f"Cannot restore {Path(restore).name}", exc)
                restore = from_autosave = None
            else:
                if pending is not None:
                    restore = None       # no clicks to replay: the points come back as placed

        def work():  # worker thread: touch no widget here
            # compile (or load from numba's cache) the geodesic kernels here, off the UI
            # thread, while the model loads: the first Enter or click does not wait for them
            import midseg._preload  # noqa: F401

            def fresh():
                labels = LabelSession(image, model=model, lam=lam, sigma=sigma, device=device)
                labels.add("Segment_1", color=OBJECT_COLORS[0])
                return labels
            if restore is None:
                return fresh(), None
            try:
                return LabelSession.load(restore, image, model=model, device=device), None
            except Exception as exc:  # replay failed: still give the user a session
                exc.__midseg_traceback__ = traceback.format_exc()
                return fresh(), exc

        def done(result, error, seconds):
            if image is not self.image:  # another image was opened meanwhile
                return
            if error is not None:
                self.show_error("Cannot start a segmentation session", error)
                self.statusBar().showMessage("no session: the model does not fit this image", 8000)
                return
            labels, replay_error = result
            self.labels, self.current = labels, labels.names[0]
            if pending is not None:
                self.pending_margin = [tuple(int(v) for v in p) for p in pending]
            if replay_error is not None:
                self.show_error(f"Cannot replay {Path(restore).name}", replay_error)
            if self._any_mask():
                # a replayed clicks file is saved work; a restored autosave is not
                self._revision = 1
                self._saved_revision = 0 if from_autosave else 1
                self.set_tool("refine")
                self.time_label.setText(f"replayed in {seconds:.2f} s")
            self.statusBar().showMessage("ready: " + TOOL_HELP[self.state.tool], 6000)
            self._refresh()
            if restore is not None and replay_error is None:
                self._show_session_warnings(f"Replayed {Path(restore).name}")

        self.statusBar().showMessage("loading the model...")
        self._submit(work, done, "session")

    # =====================================================================
    # tools and clicks
    # =====================================================================
    def set_tool(self, tool: str) -> None:
        if tool not in TOOLS:
            raise ValueError(f"tool must be one of {TOOLS}, got {tool!r}")
        self.state.tool = tool
        self.tool_actions[tool].setChecked(True)
        self.statusBar().showMessage(TOOL_HELP[tool], 5000)
        self.state.touch()

    def _voxel_clicked(self, voxel, button: int) -> None:
        voxel = tuple(int(v) for v in voxel)
        tool = self.state.tool
        if tool == "navigate":
            self.state.set_cursor(voxel)
            return
        if tool == "margin":
            if button == Qt.LeftButton:
                self.add_margin_point(voxel)
            else:
                self._remove_nearest_pending(voxel)
        elif tool == "refine":
            self.refine_click(voxel, foreground=(button == Qt.LeftButton))
        self.state.set_cursor(voxel)

    def add_margin_point(self, voxel) -> None:
        """Add one interior margin point (kept in the autosave until `run_segment`)."""
        self.pending_margin.append(tuple(int(v) for v in voxel))
        self._autosave()
        self._refresh()

    def _remove_nearest_pending(self, voxel) -> None:
        if not self.pending_margin:
            return
        d = [np.sum((np.subtract(p, voxel) * self.state.spacing) ** 2) for p in self.pending_margin]
        self.pending_margin.pop(int(np.argmin(d)))
        self._autosave()
        self._refresh()

    def clear_pending(self) -> None:
        self.pending_margin = []
        self._autosave()
        self._refresh()

    def run_segment(self) -> bool:
        """Stage 1 on the pending margin points, in the worker (Enter)."""
        if self.session is None or self.jobs.busy:
            if self.session is None and not self.jobs.busy:
                self.show_error("No session", self.last_error or
                                "no segmentation session: open an image first")
            return False
        if not self.pending_margin:
            self.statusBar().showMessage(
                "place interior margin points first (Margin points tool, left clicks)", 5000)
            return False
        if self.slice_mode:
            return self._segment_slice()
        points = list(self.pending_margin)
        self.pending_margin = []          # new clicks made while stage 1 runs start a new set
        self._segmenting = points
        session = self.session

        def done(mask, error, seconds):
            self._segmenting = []
            if error is not None:
                self.pending_margin = points + self.pending_margin  # keep them to fix and retry
                self.show_error("Stage 1 failed", error)
                self._refresh()
                return
            self.time_label.setText(f"stage 1 {session.last_seconds:.2f} s")
            self.time_label.setToolTip(f"session time {session.last_seconds:.3f} s, "
                                       f"wall time in the worker {seconds:.3f} s")
            self._changed()
            if not self.pending_margin:
                self.set_tool("refine")
            self.statusBar().showMessage(
                f"stage 1 done ({len(points)} points): left click = foreground, right = background", 6000)
            self._show_session_warnings("Stage 1: check the mask")

        self.statusBar().showMessage(f"stage 1 on {len(points)} margin points...")
        started = self._submit(lambda: session.segment(points), done, "stage 1")
        self._refresh()
        return started

    def refine_click(self, voxel, foreground: bool = True) -> None:
        """A corrective click: queued, then sent as one refine round as soon as the worker is free."""
        if self.session is None or self.session.mask is None:
            self.statusBar().showMessage(
                "no segmentation yet: place margin points (M) and press Enter first", 5000)
            return
        self._add_pending([voxel], foreground)
        self._flush_refine()

    def _stroke_finished(self, voxels, button: int) -> None:
        tool = self.state.tool
        if tool in ("paint", "erase"):
            self.paint_stroke(voxels, 1 if tool == "paint" and button == Qt.LeftButton else 0)
            return
        if self.session is None or self.session.mask is None:
            self.statusBar().showMessage("no segmentation yet: scribbles refine an existing mask", 5000)
            return
        self._add_pending(np.asarray(voxels), button == Qt.LeftButton)
        self._flush_refine()

    def paint_stroke(self, voxels, value: int = 1) -> bool:
        """Paint (``value`` 1) or erase (0) ``voxels`` in the current object: one undoable step.

        ``voxels``: (N, ndim) int array (array order). Painting an object without a mask
        starts it from the painted voxels (`midseg.Session.start_from_mask`); otherwise
        `midseg.Session.paint`. Returns False when nothing changed (busy, no session,
        nothing to erase, or every voxel had ``value`` already).
        """
        s = self.session
        if s is None:
            return False
        if self.jobs.busy:
            self.statusBar().showMessage(
                "busy: the stroke was not applied; paint again when the step has finished", 5000)
            return False
        vox = np.asarray(voxels, dtype=np.int64).reshape(-1, len(self.state.shape))
        try:
            if s.mask is None:
                if not value:
                    self.statusBar().showMessage(f"{self.current} has no mask to erase yet", 4000)
                    return False
                start = np.zeros(self.state.shape, np.uint8)
                start[tuple(vox.T)] = 1
                s.start_from_mask(start)
            else:
                steps = (s.can_undo, len(s.rounds), s.edits)
                s.paint(vox, value)
                if (s.can_undo, len(s.rounds), s.edits) == steps:
                    return False             # every voxel had the value already
        except MidsegError as exc:
            self.show_error("Cannot paint", exc)
            return False
        what = "painted" if value else "erased"
        self.statusBar().showMessage(f"{self.current}: {what} {len(vox)} voxel(s) (Ctrl+Z undoes "
                                     "the stroke)", 4000)
        self._changed()
        if value:
            self._note_voxels_held_by_earlier(vox)
        return True

    def _note_voxels_held_by_earlier(self, vox) -> None:
        """Say so when painted voxels belong to an object listed earlier: the label map
        (``overlap="keep"``) and the overlay keep them that object's, so the stroke shows
        nothing there."""
        names = list(self.labels.names)
        where = tuple(np.asarray(vox).T)
        held = {}
        for n in names[:names.index(self.current)]:
            m = self.labels.object(n).mask
            if m is not None:
                k = int(np.count_nonzero(m[where]))
                if k:
                    held[n] = k
        if held:
            self.show_warning(
                "Painted over another object",
                f"{sum(held.values())} of the voxels painted into {self.current} belong to "
                + ", ".join(f"{n} ({k})" for n, k in held.items())
                + ", listed earlier: the overlay and the saved label map keep them there "
                "(an object never takes another's voxels). Erase them in that object first "
                "if they belong to " + self.current + ".")

    def _add_pending(self, voxels, foreground: bool) -> None:
        """Queue clicks for the next round; on a voxel queued as the other class, the later wins.

        Crossing strokes of the two classes (or a left and a right click on one
        voxel) made while a round runs end up in one round, where a voxel may
        not be both: the earlier one is dropped from the shared voxels, as the
        session does for a later round.
        """
        pts = [tuple(int(v) for v in p) for p in voxels]
        mine, other = ((self.pending_fg, self.pending_bg) if foreground
                       else (self.pending_bg, self.pending_fg))
        new = set(pts)
        other[:] = [p for p in other if p not in new]
        mine.extend(pts)

    def _flush_refine(self) -> None:
        self._refresh()
        if self.jobs.busy or not (self.pending_fg or self.pending_bg):
            return
        fg = list(dict.fromkeys(self.pending_fg))
        bg = list(dict.fromkeys(self.pending_bg))
        self.pending_fg, self.pending_bg = [], []
        if self.slice_mode:
            self._refine_slice(fg, bg)
            return
        self._inflight = (fg, bg)
        session = self.session
        lam, sigma, method = self.lam_box.value(), self.sigma_box.value(), self.method_box.currentText()

        def done(mask, error, seconds):
            self._inflight = ([], [])
            if error is not None:
                self.show_error("Refinement failed", error)
                self._refresh()
                return
            self.time_label.setText(f"refine {session.last_seconds:.2f} s")
            self.time_label.setToolTip(f"session time {session.last_seconds:.3f} s, "
                                       f"wall time in the worker {seconds:.3f} s")
            self.statusBar().showMessage(f"round {len(session.rounds)}: +{len(fg)} fg, +{len(bg)} bg", 4000)
            self._changed()

        self.statusBar().showMessage(f"refining ({len(fg)} fg, {len(bg)} bg clicks)...")
        self._submit(lambda: session.refine(fg, bg, lam=lam, sigma=sigma, method=method),
                     done, "refine")

    # =====================================================================
    # per-slice 2D mode (volumes)
    # =====================================================================
    @property
    def slice_mode(self) -> bool:
        """True when margin points and clicks run the 2D model on one axial slice."""
        return self.act_slice_mode.isChecked() and self.state.ndim == 3

    def set_slice_mode(self, on: bool) -> None:
        """Turn the per-slice 2D mode on or off (volumes only)."""
        self.act_slice_mode.setChecked(bool(on))
        self._slice_mode_toggled(bool(on))

    def _slice_mode_toggled(self, on: bool) -> None:
        self._slice = None
        if on and self.state.ndim != 3:
            self.act_slice_mode.setChecked(False)
            self.statusBar().showMessage("the 2D slice mode is for volumes", 4000)
            return
        self.statusBar().showMessage(
            "2D on the axial slice: margin points on one axial slice, Enter runs the 2D model "
            "there" if on else "3D mode: stage 1 runs the 3D model on the volume", 6000)

    def _slice_axis(self) -> int:
        """The array axis normal to the axial view (its slices are the 2D images)."""
        view = self.views.get(("axial", 0))
        return 0 if view is None else int(view.plane.normal_axis)

    def _slice_image(self, index: int):
        from midseg.io import Image

        img, a = self.image, self._slice_axis()
        arr = np.take(np.asarray(img.array), index, axis=a + (1 if img.multichannel else 0))
        spacing = tuple(sp for k, sp in enumerate(img.spacing) if k != a)
        return Image(np.ascontiguousarray(arr), spacing=spacing, multichannel=img.multichannel,
                     path=img.path)

    def _segment_slice(self) -> bool:
        """Stage 1 of the 2D model on the axial slice of the pending margin points."""
        from midseg.session import Session

        a = self._slice_axis()
        points = list(self.pending_margin)
        slices = sorted({p[a] for p in points})
        if len(slices) != 1:
            self.show_error("2D slice mode", "in the 2D slice mode every margin point must lie on "
                            f"one axial slice; these lie on slices {slices} (axis "
                            f"{'zyx'[a]}). Remove the others (right click) or turn the mode "
                            "off (Ctrl+2) for the 3D model")
            return False
        index = slices[0]
        pts2 = [tuple(v for k, v in enumerate(p) if k != a) for p in points]
        self.pending_margin = []
        self._segmenting = points
        name, image2 = self.current, self._slice_image(index)
        model = self._slice_model or self.slice_model_spec
        lam, sigma = self.lam_box.value(), self.sigma_box.value()
        method = self.method_box.currentText()

        def work():
            s2 = Session(image2, model=model, lam=lam, sigma=sigma, method=method,
                         device=self.device)
            s2.segment(pts2)
            return s2

        def done(s2, error, seconds):
            self._segmenting = []
            if error is not None:
                self.pending_margin = points + self.pending_margin
                self.show_error("2D stage 1 failed", error)
                self._refresh()
                return
            self._slice_model = s2.model
            if name not in self.labels.names:        # deleted meanwhile
                self._refresh()
                return
            self._slice = (name, index, s2)
            if self._write_slice(name, index, s2.mask):
                self.time_label.setText(f"2D stage 1 {s2.last_seconds:.2f} s")
                if not self.pending_margin:
                    self.set_tool("refine")
                self.statusBar().showMessage(
                    f"2D stage 1 on slice {index} ({len(points)} points) written into {name}; "
                    "clicks on this slice refine it", 6000)
                self._show_session_warnings("Stage 1: check the mask")

        self.statusBar().showMessage(f"2D stage 1 on slice {index}...")
        started = self._submit(work, done, "2D stage 1")
        self._refresh()
        return started

    def _refine_slice(self, fg, bg) -> None:
        """A click round of the slice's 2D session; the result replaces the slice again."""
        a = self._slice_axis()
        s = self.session
        ok = self._slice is not None and self._slice[0] == self.current and s.mask is not None
        if ok:
            name, index, s2 = self._slice
            # the slice must still hold what the 2D session made (no undo or brush since)
            ok = all(p[a] == index for p in fg + bg) and np.array_equal(
                np.take(s.mask, index, axis=a), s2.mask)
        if not ok:
            self.statusBar().showMessage(
                "2D slice mode: clicks refine the slice last segmented in 2D, unchanged since; "
                "place margin points on this slice and press Enter first", 8000)
            self._refresh()
            return
        f2 = [tuple(v for k, v in enumerate(p) if k != a) for p in fg]
        b2 = [tuple(v for k, v in enumerate(p) if k != a) for p in bg]
        self._inflight = (fg, bg)
        lam, sigma = self.lam_box.value(), self.sigma_box.value()
        method = self.method_box.currentText()

        def done(mask, error, seconds):
            self._inflight = ([], [])
            if error is not None:
                self.show_error("Refinement failed", error)
                self._refresh()
                return
            if name in self.labels.names and self._write_slice(name, index, s2.mask):
                self.time_label.setText(f"2D refine {s2.last_seconds:.2f} s")

        self._submit(lambda: s2.refine(f2, b2, lam=lam, sigma=sigma, method=method), done,
                     "2D refine")
        self._refresh()

    def _write_slice(self, name: str, index: int, mask2d) -> bool:
        """Write a 2D mask into slice ``index`` of object ``name``: one undoable step."""
        a = self._slice_axis()
        s = self.labels.object(name)
        mask2d = np.asarray(mask2d, np.uint8)
        try:
            if s.mask is None:
                if not mask2d.any():
                    self.show_error("2D stage 1", "the 2D result is empty: nothing to write")
                    return False
                start = np.zeros(self.state.shape, np.uint8)
                np.moveaxis(start, a, 0)[index] = mask2d
                s.start_from_mask(start)
            else:
                diff = np.argwhere(np.take(s.mask, index, axis=a) != mask2d)
                if len(diff):
                    s.paint(np.insert(diff, a, index, axis=1), mask2d[tuple(diff.T)])
        except MidsegError as exc:
            self.show_error("Cannot write the slice", exc)
            return False
        self._changed()
        return True

    # =====================================================================
    # objects (the label list)
    # =====================================================================
    def _next_name(self) -> str:
        used = set(self.labels.names)
        return next(f"Segment_{k}" for k in range(1, len(used) + 2) if f"Segment_{k}" not in used)

    def _next_color(self):
        used = {self.labels.segment_of(n).color for n in self.labels.names}
        free = [c for c in OBJECT_COLORS if c not in used]
        if free:
            return free[0]
        # the palette is used up: further hues a golden angle apart, each one unused, none
        # near the red and green of the click markers (one colour for all would hide which
        # object a voxel belongs to)
        import colorsys

        c = OBJECT_COLORS[0]
        for k in range(len(used) + 64):
            h = (0.07 + k * 0.6180339887) % 1.0
            if min(abs(h - 1 / 3), h, 1 - h) < 0.05:
                continue
            sat, val = ((0.7, 1.0), (0.5, 0.85), (0.9, 0.75))[k % 3]
            c = tuple(round(x, 4) for x in colorsys.hsv_to_rgb(h, sat, val))
            if c not in used:
                break
        return c

    def add_object(self, name: str | None = None, color=None) -> str | None:
        """Add an object and make it current; returns its name (None if refused).

        ``name``: default ``Segment_N``; ``color``: 3 floats in [0, 1] (default: the next
        unused of `OBJECT_COLORS`).
        """
        if self.labels is None or self.jobs.busy:
            self.statusBar().showMessage("no session yet, or busy: cannot add an object now", 4000)
            return None
        name = self._next_name() if name is None else name
        try:
            self.labels.add(name, color=self._next_color() if color is None else color)
        except MidsegError as exc:
            self.show_error("Cannot add the object", exc)
            return None
        self._changed()
        self.set_current_object(name)
        return name

    def set_current_object(self, name: str) -> bool:
        """Make object ``name`` current: the tools, undo and redo act on it from now on.

        Refused (False) while a step runs or refine clicks wait, which belong to the
        current object. Margin points placed and not yet segmented stay with their object.
        """
        if self.labels is None or name not in self.labels.names:
            return False
        if name == self.current:
            return True
        if self.jobs.busy or self.pending_fg or self.pending_bg:
            self.statusBar().showMessage(
                "busy: switch objects when the running step has finished", 4000)
            return False
        if self.current is not None:
            self._pending_by_object[self.current] = self.pending_margin
        self.pending_margin = self._pending_by_object.pop(name, [])
        self.current = name
        s = self.session
        if s.mask is None and self.state.tool in ("refine", "scribble"):
            self.set_tool("margin")
        elif s.mask is not None and self.state.tool == "margin" and not self.pending_margin:
            self.set_tool("refine")
        self.statusBar().showMessage(f"current object: {name}", 4000)
        self._refresh()
        return True

    def rename_object(self, name: str, new_name: str) -> bool:
        """Rename object ``name`` (errors in a box: a name in use, an empty name)."""
        if self.labels is None:
            return False
        try:
            self.labels.rename(name, new_name)
        except MidsegError as exc:
            self.show_error("Cannot rename the object", exc)
            self._refresh()
            return False
        if name in self.hidden:
            self.hidden.discard(name)
            self.hidden.add(new_name)
        if name in self._pending_by_object:
            self._pending_by_object[new_name] = self._pending_by_object.pop(name)
        if self.current == name:
            self.current = new_name
        self._changed()
        return True

    def recolor_object(self, name: str | None, color=None) -> bool:
        """Set object ``name``'s colour: 3 floats in [0, 1], a QColor, or None to ask."""
        if self.labels is None or name not in self.labels.names:
            return False
        if color is None:
            old = QColor(*rgb255(self.labels.segment_of(name).color))
            color = QColorDialog.getColor(old, self, f"Colour of {name}")
            if not color.isValid():
                return False
        if isinstance(color, QColor):
            color = (color.redF(), color.greenF(), color.blueF())
        try:
            self.labels.set_color(name, color)
        except MidsegError as exc:
            self.show_error("Cannot set the colour", exc)
            return False
        self._changed()
        return True

    def set_object_visible(self, name: str, visible: bool) -> None:
        """Show or hide object ``name`` in the overlay (it stays in the label map)."""
        if visible:
            self.hidden.discard(name)
        else:
            self.hidden.add(name)
        self._refresh()

    def delete_object(self, name: str | None, *, confirm: bool = True) -> bool:
        """Delete object ``name`` and its history (asks first when it has a mask).

        The last object is replaced by a new empty one: there is always a current object.
        """
        if self.labels is None or name not in self.labels.names or self.jobs.busy:
            return False
        if confirm and self.labels.object(name).mask is not None and self.ask(
                "Delete object", f"Delete {name} with its mask, clicks and undo history?",
                QMessageBox.Yes | QMessageBox.No, QMessageBox.No) != QMessageBox.Yes:
            return False
        if name == self.current and (self.pending_fg or self.pending_bg):
            return False
        names = list(self.labels.names)
        self.labels.remove(name)
        self.hidden.discard(name)
        self._pending_by_object.pop(name, None)
        if name == self.current:
            self.pending_margin = []
            rest = [n for n in names if n != name]
            if not rest:
                self.labels.add(self._next_name(), color=self._next_color())
                rest = list(self.labels.names)
            self.current = None
            nxt = rest[min(names.index(name), len(rest) - 1)]
            self.current = nxt
            self.pending_margin = self._pending_by_object.pop(nxt, [])
        self._changed()
        return True

    def load_mask(self, path: str | os.PathLike | None = None) -> bool:
        """Add a binary mask file (nonzero = object) as a new object, named after the file.

        Read in the worker; the object starts from the mask
        (`midseg.Session.start_from_mask`), to refine with clicks and brushes.
        """
        if self.labels is None or self.jobs.busy:
            return False
        if path is None:
            path = self._get_open_path("Load mask as object", MASK_FILTER)
            if not path:
                return False
        from midseg.io import read_image
        from midseg.labelmap import Segment

        name = _image_name(SimpleNamespace(path=str(path)), "mask")

        def done(image, error, seconds):
            if error is not None:
                self.show_error(f"Cannot load {Path(path).name}", error)
                return
            arr = (np.asarray(image.array) != 0).astype(np.uint8)
            self._add_objects(arr, [Segment(1, name, self._next_color())], image, path)

        return self._submit(lambda: read_image(str(path)), done, "reading")

    def load_labelmap(self, path: str | os.PathLike | None = None) -> bool:
        """Add every object of a label map, with its name and colour, started from its voxels.

        ``.seg.nrrd`` (3D Slicer), NIfTI/NRRD/MHA with a ``.segments.json`` sidecar
        (`midseg.labelmap.read_labelmap`), or ``.dcm`` DICOM-SEG of the opened DICOM series
        (`midseg.dicomseg.read_dicom_seg`). Read in the worker. A label map of another
        shape than the image is refused; another geometry is asked about.
        """
        if self.labels is None or self.jobs.busy:
            return False
        if path is None:
            path = self._get_open_path("Load label map", LABELMAP_FILTER)
            if not path:
                return False
        source = self.image_path

        def work():
            if str(path).lower().endswith(".dcm"):
                from midseg.dicomseg import read_dicom_seg

                if not source or not Path(source).is_dir():
                    raise MidsegError("a DICOM-SEG is read on the series it segments: open "
                                      "that DICOM series folder as the image first")
                labels, segments = read_dicom_seg(str(path), source_dir=source)
                return np.asarray(labels), segments, None
            from midseg.labelmap import read_labelmap

            image, segments = read_labelmap(str(path))
            return np.asarray(image.array), segments, image

        def done(result, error, seconds):
            if error is not None:
                self.show_error(f"Cannot load {Path(path).name}", error)
                return
            self._add_objects(*result, path)

        return self._submit(work, done, "reading")

    def _add_objects(self, arr, segments, geometry, path) -> bool:
        """Objects from ``arr == segment.value`` for each segment (names kept unique)."""
        shape = tuple(self.state.shape)
        where_from = Path(str(path)).name
        if tuple(arr.shape) != shape and geometry is not None and \
                where_from.lower().endswith(".seg.nrrd"):
            from midseg.labelmap import on_image_grid

            # 3D Slicer 4.11 cropped a segmentation to its segments when saving it
            placed = on_image_grid(geometry, self.modalities[0])
            if placed is not None:
                arr, geometry = placed, None
        if tuple(arr.shape) != shape:
            self.show_error(f"Cannot load {where_from}",
                            f"{where_from} has shape {tuple(arr.shape)} (array order) but the "
                            f"image has {shape}: it was not drawn on this image (resample it "
                            "onto the image's grid first)")
            return False
        if geometry is not None and _has_physical_size(geometry):
            diffs = self.modalities[0].same_geometry(geometry)
            if diffs and self.ask(
                    "Geometry differs",
                    f"{where_from} has the image's shape, but its geometry differs:\n  "
                    + "\n  ".join(diffs) + "\n\nLoad it anyway (voxel for voxel)?",
                    QMessageBox.Yes | QMessageBox.No, QMessageBox.No) != QMessageBox.Yes:
                return False
        labels = self.labels
        only = labels.names[0] if len(labels.names) == 1 else None
        placeholder = (only is not None and labels.object(only).mask is None
                       and not labels.object(only).can_redo and not self.pending_margin)
        held = None
        if placeholder:
            # the empty object a new image starts with goes first, so that it does not hold
            # label value 1 (the file's values are kept wherever they are free)
            held = labels.segment_of(only)
            labels.remove(only)
        added, empty, failed = [], [], False
        for seg in segments:
            where = arr == seg.value
            if not where.any():
                empty.append(seg.name)
                continue
            name, k = seg.name, 2
            while name in labels.names:
                name, k = f"{seg.name} {k}", k + 1
            used = {labels.segment_of(n).value for n in labels.names}
            try:
                session = labels.add(name, color=seg.color,
                                     value=None if seg.value in used else seg.value)
                session.start_from_mask(where)
            except MidsegError as exc:
                self.show_error(f"Cannot load {where_from}", exc)
                failed = True
                break
            added.append(name)
        if not added:
            if held is not None:         # nothing loaded: the empty start object comes back
                labels.add(held.name, color=held.color, value=held.value)
            if not failed:
                self.show_error(f"Nothing to load from {where_from}",
                                "it holds no labelled voxel" + (
                                    f" (empty segments: {', '.join(empty)})" if empty else ""))
            return False
        if placeholder:
            self.hidden.discard(only)
        self.current = None
        self.pending_margin = []
        self.current = added[0]
        self._changed()
        self.set_tool("refine")
        note = f"; empty, not added: {', '.join(empty)}" if empty else ""
        self.statusBar().showMessage(f"loaded {len(added)} object(s) from {where_from}{note}", 8000)
        return True

    def save_labelmap(self, path: str | os.PathLike | None = None) -> bool:
        """Write every object with a mask as one label map with names and colours.

        ``.seg.nrrd`` (3D Slicer), ``.nii.gz`` etc. with a ``.segments.json`` sidecar, or
        ``.dcm`` (DICOM-SEG; only for an image opened from a DICOM series folder), through
        `midseg.LabelSession.write_labelmap`. Overlaps: an object keeps the voxels an
        earlier object holds (``overlap="keep"``).
        """
        if not self._any_mask():
            self.show_error("Nothing to save", "no object has a mask yet: segment first")
            return False
        if path is None:
            dicom = bool(self.image_path) and Path(self.image_path).is_dir()
            path = self._get_save_path(
                "Save label map", self._default_out("_labels.seg.nrrd"),
                LABELMAP_SAVE_FILTER + (DICOM_SEG_FILTER if dicom else ""))
            if not path:
                return False
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.labels.write_labelmap(path)
        except Exception as exc:
            self.show_error("Cannot save the label map", exc)
            return False
        self._saved_revision = self._revision
        self.statusBar().showMessage(
            f"label map of {len(self._masked_objects())} object(s) saved to {path}", 6000)
        return True

    # =====================================================================
    # history
    # =====================================================================
    def undo(self) -> None:
        if self.session is not None and not self.jobs.busy and self.session.can_undo:
            self.session.undo()
            self._changed()
            if self.session.mask is None:
                self.set_tool("margin")

    def redo(self) -> None:
        if self.session is not None and not self.jobs.busy and self.session.can_redo:
            self.session.redo()
            self._changed()

    def reset(self, *, confirm: bool = True) -> None:
        if self.session is None or self.jobs.busy:
            return
        if confirm and self.session.mask is not None and self.ask(
                "Reset", "Forget all margin points, clicks and the undo history?",
                QMessageBox.Yes | QMessageBox.No, QMessageBox.No) != QMessageBox.Yes:
            return
        self.session.reset()
        self.pending_margin, self.pending_fg, self.pending_bg = [], [], []
        self._changed()
        self.set_tool("margin")

    # =====================================================================
    # saving
    # =====================================================================
    def _default_out(self, suffix: str) -> str:
        base = _image_name(self.modalities[0]) if self.modalities else "image"
        return str(Path(self._start_dir()) / f"{base}{suffix}")

    def save_mask(self, path: str | os.PathLike | None = None) -> bool:
        """Write the current mask with the image's geometry (`midseg.write_mask`)."""
        if self.session is None or self.session.mask is None:
            self.show_error("Nothing to save", "there is no mask yet: segment first")
            return False
        if path is None:
            path = self._get_save_path("Save mask", self._default_out("_mask.nii.gz"), MASK_FILTER)
            if not path:
                return False
        from midseg.io import write_mask

        try:
            write_mask(path, self.session.mask, like=self.modalities[0])
        except Exception as exc:
            self.show_error("Cannot save the mask", exc)
            return False
        self._saved_revision = self._revision
        self._last_mask_path = str(path)
        self.statusBar().showMessage(f"mask saved to {path}", 6000)
        return True

    def save_clicks(self, path: str | os.PathLike | None = None) -> bool:
        """Write the points and rounds: `Session.save_clicks` when one object has a mask,
        else every object's in one labels file (`midseg.LabelSession.save`).

        Brush edits cannot go into a clicks file: an object holding any is refused with an
        error that says so (save the label map instead).
        """
        done = self._masked_objects()
        if not done:
            self.show_error("Nothing to save", "there are no clicks yet: segment first")
            return False
        if path is None:
            path = self._get_save_path("Save clicks", self._default_out(".clicks.json"), CLICKS_FILTER)
            if not path:
                return False
        try:
            if len(done) == 1:
                self.labels.object(done[0]).save_clicks(path)
            else:
                self.labels.save(path)
        except Exception as exc:
            self.show_error("Cannot save the clicks", exc)
            return False
        self._saved_revision = self._revision
        self.statusBar().showMessage(f"clicks saved to {path}", 6000)
        return True

    def load_clicks(self, path: str | os.PathLike | None = None) -> bool:
        """Replay a clicks file (one object) or a labels file (`midseg.LabelSession.save`,
        several) on the current image, in the worker; replaces every object."""
        if self.image is None or self.jobs.busy:
            return False
        if not self._maybe_keep_work("Load clicks (replaces the current session)"):
            return False
        if path is None:
            path = self._get_open_path("Load clicks", CLICKS_FILTER)
            if not path:
                return False
        from midseg.label_session import LabelSession

        image, model = self.image, self.model_spec

        def done(labels, error, seconds):
            if error is not None:
                self.show_error(f"Cannot replay {Path(path).name}", error)
                return
            self.labels, self.current = labels, labels.names[0]
            self.hidden, self._pending_by_object = set(), {}
            session = self.session
            self.pending_margin, self.pending_fg, self.pending_bg = [], [], []
            self.time_label.setText(f"replayed in {seconds:.2f} s")
            self._changed()
            self._saved_revision = self._revision
            self.set_tool("refine" if session.mask is not None else "margin")
            self._show_session_warnings(f"Replayed {Path(path).name}")

        self.statusBar().showMessage(f"replaying {path}...")
        return self._submit(
            lambda: LabelSession.load(str(path), image, model=model, device=self.device),
            done, "replay")

    # =====================================================================
    # state bookkeeping
    # =====================================================================
    @property
    def dirty(self) -> bool:
        """True when the session has a result not yet saved (mask or clicks)."""
        return self._any_mask() and self._revision != self._saved_revision

    def _masked_objects(self) -> list[str]:
        """Names of the objects that have a mask, in label order."""
        if self.labels is None:
            return []
        return [n for n in self.labels.names if self.labels.object(n).mask is not None]

    def _any_mask(self) -> bool:
        return bool(self._masked_objects())

    def _autosave_file(self) -> Path | None:
        if not self.autosave_enabled or not self.image_path:
            return None
        others = [m.path or f"image{k + 2}" for k, m in enumerate(self.modalities[1:])]
        return autosave_path(self.image_path, self.autosave_dir, with_images=others)

    def _autosave(self) -> None:
        target = self._autosave_file()
        if target is None or self.labels is None:
            return
        try:
            done = self._masked_objects()
            if not done and self.pending_margin:
                target.parent.mkdir(parents=True, exist_ok=True)
                write_json_atomic(target, pending_document(self.image, self.pending_margin))
                return
            if not done:
                target.unlink(missing_ok=True)
                return
            # what a replay rebuilds: objects with brush edits, or started from a loaded
            # mask, are left out (the status bar says so: save the label map to keep them)
            keep = [n for n in done if _replayable(self.labels.object(n))]
            left = [n for n in done if n not in keep]
            if keep:
                target.parent.mkdir(parents=True, exist_ok=True)
                if len(done) == 1:
                    self.labels.object(keep[0]).save_clicks(target)   # a plain clicks file
                else:
                    write_json_atomic(target, self.labels.to_dict(keep))
            if left:
                self.statusBar().showMessage(
                    f"autosave leaves out {', '.join(left)} (brush edits or a loaded mask "
                    "cannot be replayed from clicks): save the label map (Ctrl+E) to keep "
                    "them", 8000)
        except Exception as exc:  # never lose the session over a failed autosave
            self.statusBar().showMessage(f"autosave failed: {exc}", 8000)

    def _changed(self) -> None:
        """After every session step: bump the revision, autosave, redraw."""
        self._revision += 1
        self._autosave()
        self._refresh()

    def _refresh(self) -> None:
        st, s = self.state, self.session
        st.mask = None if s is None else s.mask
        layers = []
        if self.labels is not None:
            for name in self.labels.names:
                m = self.labels.object(name).mask
                if m is not None and name not in self.hidden:
                    layers.append((m, rgb255(self.labels.segment_of(name).color),
                                   name == self.current))
            if self.current is not None:
                st.paint_color = rgb255(self.labels.segment_of(self.current).color)
        st.layers = layers
        markers = []
        if s is not None and s.mask is not None:
            markers += [(tuple(p), "margin") for p in s.margin_points]
            fg, bg = s.clicks_in_force          # an overridden click is no longer shown
            markers += [(tuple(p), "fg") for p in fg]
            markers += [(tuple(p), "bg") for p in bg]
        markers += [(p, "margin_pending") for p in self._segmenting + self.pending_margin]
        markers += [(p, "fg_pending") for p in self.pending_fg + self._inflight[0]]
        markers += [(p, "bg_pending") for p in self.pending_bg + self._inflight[1]]
        st.markers = markers
        if s is None:
            info = "no session" if self.image is not None else ""
        elif s.mask is None:
            info = (f"stage 1 on {len(self._segmenting)} margin points..." if self._segmenting
                    else f"{len(self.pending_margin)} margin point(s) placed")
        else:
            n = int(np.count_nonzero(s.mask))
            if _has_physical_size(self.image):
                vol = n * float(np.prod(self.image.spacing))
                size = f"{vol:,.0f} {'mm³' if self.image.ndim == 3 else 'mm²'}"
            else:                       # a picture has no pixel size: count pixels
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
    # view helpers
    # =====================================================================
    def _overlay_changed(self, *_) -> None:
        st = self.state
        st.opacity = self.opacity.value() / 100.0
        st.contour = self.contour_box.isChecked()
        st.show_mask = self.show_mask_box.isChecked()
        st.brush_radius = self.brush_box.value()
        st.touch()

    def _activate_channel(self, channel: int) -> None:
        self._active_channel = channel

    def _preset_chosen(self, index: int) -> None:
        if index <= 0 or not self.state.channels:
            return
        name = self.wl_box.itemText(index)
        ch = min(self._active_channel, len(self.state.channels) - 1)
        self.apply_window_preset(name, ch)
        self.wl_box.setCurrentIndex(0)

    def apply_window_preset(self, name: str, channel: int = 0) -> None:
        preset = WL_PRESETS[name]
        arr = self.state.channels[channel]
        if preset is None:
            self.state.windows[channel] = auto_window(arr)
        elif preset == "full":
            self.state.windows[channel] = full_window(arr)
        else:
            self.state.windows[channel] = preset
        self.state.touch()

    def _fit_views(self) -> None:
        for link in self.links.values():
            link.reset()

    def _step_slice(self, view: SliceView, delta: int) -> None:
        axis = view.plane.normal_axis
        if axis is None:
            return
        cur = list(self.state.cursor)
        cur[axis] += delta
        self.state.set_cursor(cur)

    def _hovered(self, view: SliceView, voxel) -> None:
        if voxel is None:
            self.hover_label.setText("")
            return
        self.statusBar().clearMessage()  # the pointer is on the image: its value matters more now
        names = self.state.names
        vals = self.state.value_at(voxel)
        coords = ", ".join(str(v) for v in voxel)
        axes = "z, y, x" if len(voxel) == 3 else "y, x"
        if len(vals) == 1:
            values = f"value {vals[0]:.4g}"
        else:
            values = "   ".join(f"{n}: {v:.4g}" for n, v in zip(names, vals))
        text = f"{view.plane.name} ({axes}) = ({coords})   {values}"
        if self.state.mask is not None:
            text += f"   mask {int(self.state.mask[tuple(voxel)])}"
        if self.labels is not None and len(self.labels.names) > 1:
            here = [n for n in self._masked_objects()
                    if self.labels.object(n).mask[tuple(voxel)]]
            if here:
                text += "   in " + ", ".join(here)
        self.hover_label.setText(text)

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

    def _maybe_keep_work(self, what: str) -> bool:
        """Ask about unsaved work; True when it is fine to go on (saved or discarded)."""
        if not self.dirty:
            return True
        answer = self.ask(
            what, "The segmentation has unsaved changes. Save the mask and clicks (the label "
                  "map, with several objects) first?",
            QMessageBox.Save | QMessageBox.Discard | QMessageBox.Cancel, QMessageBox.Save)
        if answer == QMessageBox.Cancel:
            return False
        if answer == QMessageBox.Save:
            done = self._masked_objects()
            if len(done) > 1:       # several objects: one label map holds them all
                return self.save_labelmap()
            if not self.save_mask():
                return False
            if self.session is not None and self.session.edits:
                return True         # brush edits: the mask is the record, no clicks file
            self.save_clicks(_clicks_beside(self._last_mask_path))
            return True
        self._discard_autosave()
        return True

    def _discard_autosave(self) -> None:
        target = self._autosave_file()
        if target is not None:
            target.unlink(missing_ok=True)

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
