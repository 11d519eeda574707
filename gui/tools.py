"""The tools: margin points, refine clicks, scribbles, paint/erase brushes, the per-slice
2D mode of volumes, and undo/redo/reset.

`ToolsMixin` is a part of `midseg.gui.window.MainWindow`; every step is a call on the
current object's `midseg.Session` (segment, refine, paint, undo, redo, reset), slow
ones in the worker.
"""

from __future__ import annotations

import numpy as np
from PyQt5.QtCore import Qt
from PyQt5.QtWidgets import QMessageBox

from midseg.errors import MidsegError

from .views import TOOLS

__all__ = ["ToolsMixin", "TOOL_HELP"]

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


class ToolsMixin:
    """Margin points, clicks, scribbles, brushes, slice mode and history of `MainWindow`
    (a mixin)."""

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
                self.show_error(
                    "No session", self.last_error or "no segmentation session: open an image first"
                )
            return False
        if not self.pending_margin:
            self.statusBar().showMessage(
                "place interior margin points first (Margin points tool, left clicks)", 5000
            )
            return False
        if self.slice_mode:
            return self._segment_slice()
        points = list(self.pending_margin)
        self.pending_margin = []  # new clicks made while stage 1 runs start a new set
        self._segmenting = points
        session = self.session

        def done(mask, error, seconds):
            self._segmenting = []
            if error is not None:
                self.pending_margin = points + self.pending_margin  # keep them to fix and retry
                self.show_error("Stage 1 failed", error)
                self._refresh()
                return
            self._show_time("stage 1", session, seconds)
            self._changed()
            if not self.pending_margin:
                self.set_tool("refine")
            self.statusBar().showMessage(
                f"stage 1 done ({len(points)} points): left click = foreground, right = background",
                6000,
            )
            self._show_session_warnings("Stage 1: check the mask")

        self.statusBar().showMessage(f"stage 1 on {len(points)} margin points...")
        work = self._then_suggest(session, lambda: session.segment(points))
        started = self._submit(work, done, "stage 1")
        self._refresh()
        return started

    def refine_click(self, voxel, foreground: bool = True) -> None:
        """A corrective click: queued, then sent as one refine round as soon as the worker is free."""
        if self.session is None or self.session.mask is None:
            self.statusBar().showMessage(
                "no segmentation yet: place margin points (M) and press Enter first", 5000
            )
            return
        self._add_pending([voxel], foreground)
        self._flush_refine()

    def _stroke_finished(self, voxels, button: int) -> None:
        tool = self.state.tool
        if tool in ("paint", "erase"):
            self.paint_stroke(voxels, 1 if tool == "paint" and button == Qt.LeftButton else 0)
            return
        if self.session is None or self.session.mask is None:
            self.statusBar().showMessage(
                "no segmentation yet: scribbles refine an existing mask", 5000
            )
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
                "busy: the stroke was not applied; paint again when the step has finished", 5000
            )
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
                    return False  # every voxel had the value already
        except MidsegError as exc:
            self.show_error("Cannot paint", exc)
            return False
        what = "painted" if value else "erased"
        self.statusBar().showMessage(
            f"{self.current}: {what} {len(vox)} voxel(s) (Ctrl+Z undoes the stroke)", 4000
        )
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
        for n in names[: names.index(self.current)]:
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
                "if they belong to " + self.current + ".",
            )

    def _add_pending(self, voxels, foreground: bool) -> None:
        """Queue clicks for the next round; on a voxel queued as the other class, the later wins.

        Crossing strokes of the two classes (or a left and a right click on one
        voxel) made while a round runs end up in one round, where a voxel may
        not be both: the earlier one is dropped from the shared voxels, as the
        session does for a later round.
        """
        pts = [tuple(int(v) for v in p) for p in voxels]
        mine, other = (
            (self.pending_fg, self.pending_bg) if foreground else (self.pending_bg, self.pending_fg)
        )
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
        lam, sigma, method = (
            self.lam_box.value(),
            self.sigma_box.value(),
            self.method_box.currentText(),
        )

        def done(mask, error, seconds):
            self._inflight = ([], [])
            if error is not None:
                self.show_error("Refinement failed", error)
                self._refresh()
                return
            self._show_time("refine", session, seconds)
            self.statusBar().showMessage(
                f"round {len(session.rounds)}: +{len(fg)} fg, +{len(bg)} bg", 4000
            )
            self._changed()

        self.statusBar().showMessage(f"refining ({len(fg)} fg, {len(bg)} bg clicks)...")
        work = self._then_suggest(
            session, lambda: session.refine(fg, bg, lam=lam, sigma=sigma, method=method)
        )
        self._submit(work, done, "refine")

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
            "2D on the axial slice: margin points on one axial slice, Enter runs the 2D model there"
            if on
            else "3D mode: stage 1 runs the 3D model on the volume",
            6000,
        )

    def _slice_axis(self) -> int:
        """The array axis normal to the axial view (its slices are the 2D images)."""
        view = self.views.get(("axial", 0))
        return 0 if view is None else int(view.plane.normal_axis)

    def _slice_image(self, index: int):
        from midseg.io import Image

        img, a = self.image, self._slice_axis()
        arr = np.take(np.asarray(img.array), index, axis=a + (1 if img.multichannel else 0))
        spacing = tuple(sp for k, sp in enumerate(img.spacing) if k != a)
        return Image(
            np.ascontiguousarray(arr), spacing=spacing, multichannel=img.multichannel, path=img.path
        )

    def _segment_slice(self) -> bool:
        """Stage 1 of the 2D model on the axial slice of the pending margin points."""
        from midseg.session import Session

        a = self._slice_axis()
        points = list(self.pending_margin)
        slices = sorted({p[a] for p in points})
        if len(slices) != 1:
            self.show_error(
                "2D slice mode",
                "in the 2D slice mode every margin point must lie on "
                f"one axial slice; these lie on slices {slices} (axis "
                f"{'zyx'[a]}). Remove the others (right click) or turn the mode "
                "off (Ctrl+2) for the 3D model",
            )
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
            s2 = Session(
                image2, model=model, lam=lam, sigma=sigma, method=method, device=self.device
            )
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
            if name not in self.labels.names:  # deleted meanwhile
                self._refresh()
                return
            self._slice = (name, index, s2)
            if self._write_slice(name, index, s2.mask):
                self.time_label.setText(f"2D stage 1 {s2.last_seconds:.2f} s")
                if not self.pending_margin:
                    self.set_tool("refine")
                self.statusBar().showMessage(
                    f"2D stage 1 on slice {index} ({len(points)} points) written into {name}; "
                    "clicks on this slice refine it",
                    6000,
                )
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
                np.take(s.mask, index, axis=a), s2.mask
            )
        if not ok:
            self.statusBar().showMessage(
                "2D slice mode: clicks refine the slice last segmented in 2D, unchanged since; "
                "place margin points on this slice and press Enter first",
                8000,
            )
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

        self._submit(
            lambda: s2.refine(f2, b2, lam=lam, sigma=sigma, method=method), done, "2D refine"
        )
        self._refresh()

    def _show_time(self, what: str, session, seconds: float) -> None:
        """The status bar's time of a finished step: session time, worker wall time as tip."""
        self.time_label.setText(f"{what} {session.last_seconds:.2f} s")
        self.time_label.setToolTip(
            f"session time {session.last_seconds:.3f} s, wall time in the worker {seconds:.3f} s"
        )

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
        if (
            confirm
            and self.session.mask is not None
            and self.ask(
                "Reset",
                "Forget all margin points, clicks and the undo history?",
                QMessageBox.Yes | QMessageBox.No,
                QMessageBox.No,
            )
            != QMessageBox.Yes
        ):
            return
        self.session.reset()
        self.pending_margin, self.pending_fg, self.pending_bg = [], [], []
        self._changed()
        self.set_tool("margin")
