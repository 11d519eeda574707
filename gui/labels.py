"""The label list: the objects of the window's `midseg.LabelSession`, one of them current.

`LabelPanel` shows each object with its colour, name, visibility box and voxel count,
and turns the user's edits into calls on the main window (`add_object`,
`set_current_object`, `rename_object`, `recolor_object`, `set_object_visible`,
`delete_object`). It holds no state of its own: `refresh` redraws it from the window.
"""

from __future__ import annotations

import numpy as np
from PyQt5.QtCore import Qt, QTimer
from PyQt5.QtGui import QColor, QIcon, QPixmap
from PyQt5.QtWidgets import (
    QAbstractItemView,
    QGridLayout,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

__all__ = ["LabelPanel", "rgb255"]

NAME_ROLE = Qt.UserRole


def rgb255(color) -> tuple[int, int, int]:
    """A colour of 3 floats in [0, 1] as 3 ints in 0..255."""
    return tuple(int(round(255 * float(c))) for c in color)


def _swatch(color) -> QIcon:
    pix = QPixmap(14, 14)
    pix.fill(QColor(*rgb255(color)))
    icon = QIcon(pix)
    icon.addPixmap(pix, QIcon.Selected)  # the true colour on the selected row too
    return icon


class LabelPanel(QWidget):
    """The list of objects (structures) and the buttons that edit it.

    Parameters
    ----------
    window : midseg.gui.window.MainWindow
        Whose ``labels`` (a `midseg.LabelSession`), ``current`` and ``hidden`` it shows.
    """

    def __init__(self, window):
        super().__init__()
        self.window = window
        self._updating = False
        lay = QVBoxLayout(self)
        lay.setContentsMargins(3, 3, 3, 3)
        self.list = QListWidget()
        self.list.setObjectName("label_list")
        self.list.setSelectionMode(QAbstractItemView.SingleSelection)
        self.list.setEditTriggers(
            QAbstractItemView.DoubleClicked | QAbstractItemView.EditKeyPressed
        )
        self.list.setToolTip(
            "Objects of this image: the selected one is the one margin points, "
            "clicks, brushes, undo and redo act on. Tick to show, double-click "
            "to rename"
        )
        self.list.currentItemChanged.connect(self._current_changed)
        self.list.itemChanged.connect(self._item_changed)
        lay.addWidget(self.list, 1)
        row = QGridLayout()  # 2 x 2: the panel stays narrow beside the views
        row.setSpacing(2)
        self.buttons = {}
        for key, text, tip, slot in (
            (
                "add",
                "Add",
                "Add an object and make it current (Ctrl+N)",
                lambda: window.add_object(),
            ),
            ("rename", "Rename", "Rename the current object (F2)", self._rename),
            (
                "color",
                "Colour",
                "Choose the current object's colour",
                lambda: window.recolor_object(window.current),
            ),
            (
                "delete",
                "Delete",
                "Delete the current object and its history",
                lambda: window.delete_object(window.current),
            ),
        ):
            b = QPushButton(text)
            b.setObjectName(f"label_{key}")
            b.setToolTip(tip)
            b.clicked.connect(slot)
            b.setFocusPolicy(Qt.NoFocus)
            row.addWidget(b, len(self.buttons) // 2, len(self.buttons) % 2)
            self.buttons[key] = b
        lay.addLayout(row)

    def _rename(self) -> None:
        item = self.list.currentItem()
        if item is not None:
            self.list.editItem(item)

    def refresh(self) -> None:
        """Redraw the list from the window's label session."""
        w = self.window
        self._updating = True
        try:
            self.list.clear()
            labels = w.labels
            names = labels.names if labels is not None else ()
            for name in names:
                seg, session = labels.segment_of(name), labels.object(name)
                item = QListWidgetItem(_swatch(seg.color), name)
                item.setData(NAME_ROLE, name)
                item.setFlags(item.flags() | Qt.ItemIsEditable | Qt.ItemIsUserCheckable)
                item.setCheckState(Qt.Unchecked if name in w.hidden else Qt.Checked)
                mask = session.mask
                n = 0 if mask is None else int(np.count_nonzero(mask))
                extra = "no mask yet" if mask is None else f"{n:,} voxels"
                if session.edits:
                    extra += f", {session.edits} brush edit(s)"
                item.setToolTip(f"{name}: label value {seg.value}, {extra}")
                self.list.addItem(item)
                if name == w.current:
                    self.list.setCurrentItem(item)
            busy = w.jobs.busy
            have = bool(names)
            self.list.setEnabled(not busy)
            self.buttons["add"].setEnabled(labels is not None and not busy)
            for key in ("rename", "color", "delete"):
                self.buttons[key].setEnabled(have and not busy)
        finally:
            self._updating = False

    # the list is rebuilt by `refresh`: never inside one of its own item signals
    def _current_changed(self, item, previous) -> None:
        if self._updating or item is None:
            return
        name = item.data(NAME_ROLE)
        QTimer.singleShot(0, lambda: self._choose(name))

    def _choose(self, name: str) -> None:
        if name != self.window.current and not self.window.set_current_object(name):
            self.refresh()  # refused (busy): show the real current object again

    def _item_changed(self, item) -> None:
        if self._updating:
            return
        name = item.data(NAME_ROLE)
        text = item.text().strip()
        if text != name:  # refreshes (back to the old name on error)
            QTimer.singleShot(0, lambda: self.window.rename_object(name, text))
            return
        visible = item.checkState() == Qt.Checked
        if visible == (name in self.window.hidden):
            QTimer.singleShot(0, lambda: self.window.set_object_visible(name, visible))
