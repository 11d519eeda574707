"""The window's widgets: actions, menus, toolbars, the status bar and the view grid.

`ActionsMixin` is a part of `midseg.gui.window.MainWindow`: it builds the actions and
their menus and toolbars, the parameter bar, the status bar and the grid of
`midseg.gui.views.SliceView` (each in a `_ViewPanel` with its slice slider), and holds
the slots of those widgets (overlay settings, window/level presets, slice stepping,
the value under the pointer).
"""

from __future__ import annotations

from PyQt5.QtCore import QSize, Qt
from PyQt5.QtGui import QKeySequence
from PyQt5.QtWidgets import (
    QAction,
    QActionGroup,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QLabel,
    QProgressBar,
    QSlider,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from midseg.refine import REFINE_METHODS

from .planes import WL_PRESETS, auto_window, full_window, planes_for
from .tools import TOOL_HELP
from .views import SliceView, ViewerState, ViewLink

__all__ = ["ActionsMixin"]


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


class ActionsMixin:
    """Actions, menus, toolbars, status bar and views of `MainWindow` (a mixin)."""

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
        self._build_file_actions()
        self._build_edit_actions()
        self._build_tool_actions()
        self._build_suggest_actions()
        self._build_menus()
        self._build_toolbar()
        self._build_parameter_bar(lam, sigma)

    def _build_file_actions(self) -> None:
        """The File menu's actions: images, masks, clicks and label maps."""
        a = self._action
        self.act_open = a(
            "&Open image...",
            lambda: self.open_image(),
            QKeySequence.Open,
            "Open a 2D image or a 3D volume (NIfTI, NRRD, MHA, DICOM folder, PNG...)",
        )
        self.act_open_dicom = a("Open &DICOM folder...", lambda: self.open_image(dicom=True))
        self.act_second = a(
            "Add second &modality...",
            lambda: self.open_second(),
            "Ctrl+Shift+O",
            "Open a co-registered image (e.g. CT for PET), shown side by side "
            "and given to the model as a second channel",
        )
        self.act_drop_second = a("Remove second modality", lambda: self.remove_second())
        self.act_save_mask = a(
            "&Save mask...",
            lambda: self.save_mask(),
            QKeySequence.Save,
            "Write the mask with the image's geometry",
        )
        self.act_save_clicks = a(
            "Save &clicks...",
            lambda: self.save_clicks(),
            "Ctrl+Shift+S",
            "Write the margin points and click rounds (JSON, replayable)",
        )
        self.act_load_clicks = a(
            "&Load clicks...",
            lambda: self.load_clicks(),
            "Ctrl+L",
            "Replay a clicks file on this image",
        )
        self.act_load_mask = a(
            "Load mask as &object...",
            lambda: self.load_mask(),
            None,
            "Add a binary mask (nonzero = object) as a new object, to refine "
            "with clicks or brushes",
        )
        self.act_load_labelmap = a(
            "Load label &map...",
            lambda: self.load_labelmap(),
            None,
            "Add every object of a label map (.seg.nrrd, NIfTI with "
            "segments sidecar, DICOM-SEG) with its name and colour",
        )
        self.act_save_labelmap = a(
            "Save label map...",
            lambda: self.save_labelmap(),
            "Ctrl+E",
            "Write all objects as one label map with names and colours "
            "(.seg.nrrd, NIfTI + sidecar, DICOM-SEG for a DICOM series)",
        )
        self.act_add_object = a(
            "&Add object",
            lambda: self.add_object(),
            "Ctrl+N",
            "Add a new object (structure) and make it current",
        )
        self.act_quit = a("&Quit", self.close, QKeySequence.Quit)

    def _build_edit_actions(self) -> None:
        """Segment, undo/redo, reset and the view actions."""
        a = self._action
        self.act_segment = a(
            "Segment",
            lambda: self.run_segment(),
            ["Return", "Enter"],
            "Run stage 1 (CNN) on the margin points (Enter)",
        )
        self.act_undo = a(
            "&Undo", lambda: self.undo(), QKeySequence.Undo, "Undo the last step (Ctrl+Z)"
        )
        self.act_redo = a(
            "&Redo", lambda: self.redo(), ["Ctrl+Shift+Z", "Ctrl+Y"], "Redo (Ctrl+Shift+Z)"
        )
        self.act_reset = a(
            "Rese&t", lambda: self.reset(), None, "Forget all points, clicks and history"
        )
        self.act_clear_points = a(
            "Clear margin points",
            lambda: self._escape(),
            "Escape",
            "Remove the margin points not yet segmented and hide the suggestion (Esc)",
        )
        self.act_fit = a("&Fit views", self._fit_views, "F", "Reset zoom and pan")
        self.act_slice_mode = a(
            "2D on the axial slice",
            lambda on: self._slice_mode_toggled(on),
            "Ctrl+2",
            "Volumes: margin points and clicks on one axial "
            "slice run the 2D model on that slice; the result is written "
            "into that slice of the current object (one undoable step)",
            checkable=True,
        )

    def _build_tool_actions(self) -> None:
        """One checkable action per tool, in one exclusive group; Navigate is checked."""
        a = self._action
        self.tool_group = QActionGroup(self)
        self.tool_actions = {}
        for tool, label, key in (
            ("navigate", "Navigate", "N"),
            ("margin", "Margin points", "M"),
            ("refine", "Refine clicks", "R"),
            ("scribble", "Scribble", "B"),
            ("paint", "Paint", "P"),
            ("erase", "Erase", "E"),
        ):
            act = a(label, None, key, TOOL_HELP[tool] + f"  [{key}]", checkable=True)
            act.triggered.connect(lambda _=False, t=tool: self.set_tool(t))
            self.tool_group.addAction(act)
            self.tool_actions[tool] = act
        self.tool_actions["navigate"].setChecked(True)

    def _build_menus(self) -> None:
        menu = self.menuBar()
        m = menu.addMenu("&File")
        for act in (
            self.act_open,
            self.act_open_dicom,
            self.act_second,
            self.act_drop_second,
            None,
            self.act_load_clicks,
            self.act_save_clicks,
            self.act_save_mask,
            None,
            self.act_load_mask,
            self.act_load_labelmap,
            self.act_save_labelmap,
            None,
            self.act_quit,
        ):
            m.addSeparator() if act is None else m.addAction(act)
        m = menu.addMenu("&Edit")
        for act in (
            self.act_undo,
            self.act_redo,
            None,
            self.act_segment,
            self.act_clear_points,
            self.act_reset,
            None,
            self.act_add_object,
        ):
            m.addSeparator() if act is None else m.addAction(act)
        m = menu.addMenu("&Tools")
        for act in self.tool_actions.values():
            m.addAction(act)
        m.addSeparator()
        m.addAction(self.act_slice_mode)
        m.addSeparator()
        for act in self.suggest_actions:
            m.addAction(act)
        m = menu.addMenu("&View")
        m.addAction(self.act_fit)

    def _build_toolbar(self) -> None:
        tb = QToolBar("Main", self)
        tb.setObjectName("toolbar_main")
        tb.setIconSize(QSize(16, 16))
        # short toolbar labels (the menus keep the full ones): the bar fits 1100 pixels
        self.act_save_labelmap.setIconText("Save labels")
        self.tool_actions["margin"].setIconText("Margin")
        self.tool_actions["refine"].setIconText("Refine")
        for act in (
            self.act_open,
            self.act_save_labelmap,
            None,
            *self.tool_actions.values(),
            None,
            self.act_segment,
            self.act_undo,
            self.act_redo,
            self.act_reset,
        ):
            tb.addSeparator() if act is None else tb.addAction(act)
        self.addToolBar(Qt.TopToolBarArea, tb)

    def _build_parameter_bar(self, lam: float, sigma: float) -> None:
        pb = QToolBar("Parameters", self)
        pb.setObjectName("toolbar_params")
        self.lam_box = QDoubleSpinBox()
        self.lam_box.setRange(0.0, 1000.0)
        self.lam_box.setDecimals(2)
        self.lam_box.setSingleStep(0.5)
        self.lam_box.setValue(lam)
        self.lam_box.setToolTip(
            "λ: weight of the smoothness term of the graph cut (used from the next round)"
        )
        self.sigma_box = QDoubleSpinBox()
        self.sigma_box.setRange(0.001, 100.0)
        self.sigma_box.setDecimals(3)
        self.sigma_box.setSingleStep(0.01)
        self.sigma_box.setValue(sigma)
        self.sigma_box.setToolTip(
            "σ: intensity scale of the smoothness term (used from the next round)"
        )
        self.method_box = QComboBox()
        self.method_box.addItems(list(REFINE_METHODS))
        self.method_box.setToolTip(
            "ifgc: information fusion + graph cut (MIDeepSeg, certainty-weighted "
            "fusion); ifgc-paper: the paper's Eq. 7 as printed; gc: plain graph cut"
        )
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
        self.brush_box.setToolTip(
            "Brush radius of scribble, paint and erase (voxels, in the "
            "slice drawn on; 0 = the voxels the stroke crosses)"
        )
        self.brush_box.valueChanged.connect(self._overlay_changed)
        self.wl_box = QComboBox()
        self.wl_box.addItem("Window/level...")
        self.wl_box.addItems(list(WL_PRESETS))
        self.wl_box.setToolTip(
            "Window/level preset for the image under the pointer "
            "(or Shift+drag / right-drag in Navigate)"
        )
        self.wl_box.activated.connect(self._preset_chosen)
        self.wl_box.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.wl_box.setMinimumContentsLength(16)
        for label, w in (
            ("λ", self.lam_box),
            ("σ", self.sigma_box),
            (None, self.method_box),
            ("  Opacity", self.opacity),
            (None, self.contour_box),
            (None, self.show_mask_box),
            ("  Brush", self.brush_box),
            ("  ", self.wl_box),
        ):
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
        sb.addPermanentWidget(self._build_suggest_label())
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
            here = [n for n in self._masked_objects() if self.labels.object(n).mask[tuple(voxel)]]
            if here:
                text += "   in " + ", ".join(here)
        self.hover_label.setText(text)
