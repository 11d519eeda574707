"""The objects of the label session: add, select, rename, recolour, show/hide, delete.

`ObjectsMixin` is a part of `midseg.gui.window.MainWindow`; the objects panel
(`midseg.gui.labels.LabelPanel`) calls these methods.
"""

from __future__ import annotations

from PyQt5.QtGui import QColor
from PyQt5.QtWidgets import QColorDialog, QMessageBox

from midseg.errors import MidsegError

from .labels import rgb255

__all__ = ["ObjectsMixin", "OBJECT_COLORS"]

#: Colours of new objects (r, g, b in [0, 1]); none is the green or red of the click markers.
OBJECT_COLORS = tuple(
    tuple(round(c / 255, 4) for c in rgb)
    for rgb in (
        (0, 190, 255),
        (255, 170, 40),
        (190, 110, 255),
        (255, 110, 200),
        (250, 235, 70),
        (120, 200, 255),
        (255, 140, 100),
        (80, 215, 190),
    )
)


class ObjectsMixin:
    """The objects (label list) of `MainWindow` (a mixin)."""

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
                "busy: switch objects when the running step has finished", 4000
            )
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
        if (
            confirm
            and self.labels.object(name).mask is not None
            and self.ask(
                "Delete object",
                f"Delete {name} with its mask, clicks and undo history?",
                QMessageBox.Yes | QMessageBox.No,
                QMessageBox.No,
            )
            != QMessageBox.Yes
        ):
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
