"""The PyQt5 GUI (midseg.gui): real mouse clicks on the views drive a real midseg.Session.

Stage 1 is a fast stand-in (monkeypatched `midseg.predict.predict_probability`)
except in the tests marked for the shipped weights; refinement, undo/redo,
clicks files and mask files are the real library code.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("PyQt5")
pytest.importorskip("pytestqt")

from PyQt5.QtCore import QEvent, QPoint, QPointF, Qt, QTimer  # noqa: E402
from PyQt5.QtGui import QMouseEvent, QWheelEvent  # noqa: E402
from PyQt5.QtWidgets import QApplication, QMessageBox  # noqa: E402

import midseg  # noqa: E402
import midseg.predict  # noqa: E402
from midseg.crop import relaxed_bbox  # noqa: E402
from midseg.gui.sidecar import autosave_path  # noqa: E402
from midseg.gui.window import MainWindow  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

#: Refinement needs the geodesic module (engineer A); skip those tests cleanly without it.
needs_refine = pytest.mark.skipif(
    importlib.util.find_spec("midseg.geodesic") is None, reason="midseg.geodesic is not available"
)

# -- fixtures ------------------------------------------------------------------


class FakeModel:
    """What Session needs of a model object: its name, dimensionality and channels."""

    def __init__(self, dims, channels=1):
        self.name, self.spatial_dims, self.image_channels = f"fake{dims}d", dims, channels


def fake_predict(
    image, points, model, *, spacing=None, channel_axis=None, device=None, box_only=False
):
    """Stage-1 stand-in: the (0..1) image intensity inside the relaxed box of the points."""
    arr = np.asarray(image, dtype=np.float32)
    if channel_axis == 0:
        arr = arr[0]
    box = relaxed_bbox(points, arr.shape)
    prob = np.zeros(arr.shape, np.float32)
    prob[box.slices] = np.clip(arr[box.slices], 0.02, 0.98)
    return SimpleNamespace(probability=prob[box.slices] if box_only else prob, box=box)


@pytest.fixture
def stage1(monkeypatch):
    monkeypatch.setattr(midseg.predict, "predict_probability", fake_predict)
    return fake_predict


def phantom(shape, center, radii, seed=0):
    """A bright ellipse/ellipsoid (1) on a dark background (0) with mild noise, and its mask."""
    g = np.indices(shape, dtype=float)
    truth = (sum(((gi - c) / r) ** 2 for gi, c, r in zip(g, center, radii)) <= 1).astype(np.uint8)
    noise = np.random.default_rng(seed).normal(scale=0.05, size=shape)
    return (truth + noise).astype(np.float32), truth


def write(tmp_path, name, array, spacing):
    path = tmp_path / name
    midseg.write_image(path, midseg.Image(array, spacing=spacing))
    return path


class Answers:
    """Replaces MainWindow.ask: records questions, answers from a script (default: Yes/Discard/No)."""

    def __init__(self):
        self.asked, self.script = [], []

    def __call__(self, title, text, buttons, default):
        self.asked.append(title)
        if self.script:
            return self.script.pop(0)
        for b in (QMessageBox.Discard, QMessageBox.No):
            if buttons & b:
                return b
        return default


@pytest.fixture
def make_window(qtbot, tmp_path):
    def make(model, size=(1000, 620), **kw):
        kw.setdefault("autosave_dir", tmp_path / "cache")
        w = MainWindow(model=model, **kw)
        w.ask = Answers()
        qtbot.addWidget(w)
        w.resize(*size)
        w.show()
        qtbot.waitExposed(w)
        w.activateWindow()
        return w

    return make


def wait_session(qtbot, w, timeout=10_000):
    qtbot.waitUntil(lambda: not w.jobs.busy and w.session is not None, timeout=timeout)


def wait_idle(qtbot, w, timeout=10_000):
    qtbot.waitUntil(
        lambda: not w.jobs.busy and not w.pending_fg and not w.pending_bg, timeout=timeout
    )


def click(qtbot, view, voxel, button=Qt.LeftButton):
    """A real mouse click on the widget point showing ``voxel``."""
    p = view.widget_pos(voxel)
    qtbot.mouseClick(view, button, Qt.NoModifier, QPoint(int(p.x()), int(p.y())))


def dismiss(qtbot, w):
    """The user closes the error box; the window is active again (no window manager offscreen)."""
    w._error_box.close()
    w.last_error = None
    w.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is w)


def move(view, point, buttons=Qt.LeftButton, modifiers=Qt.NoModifier):
    """A mouse-move event with buttons held (QTest.mouseMove cannot hold buttons in Qt 5)."""
    ev = QMouseEvent(QEvent.MouseMove, QPointF(point), Qt.NoButton, buttons, modifiers)
    QApplication.sendEvent(view, ev)


DISC_2D = dict(shape=(40, 50), center=(20, 25), radii=(10, 12))
MARGIN_2D = [(11, 25), (29, 25), (20, 14), (20, 36)]


@pytest.fixture
def window_2d(stage1, make_window, tmp_path, qtbot):
    arr, truth = phantom(**DISC_2D)
    path = write(tmp_path, "disc.nii.gz", arr, (1.0, 1.0))
    w = make_window(FakeModel(2))
    assert w.open_image(path)
    wait_session(qtbot, w)
    assert w.last_error is None
    return w, path, truth


def segment_2d(qtbot, w):
    view = w.views[("2d", 0)]
    for p in MARGIN_2D:
        click(qtbot, view, p)
    qtbot.keyClick(view, Qt.Key_Return)
    wait_idle(qtbot, w)
    return view


# -- 2D workflow -----------------------------------------------------------------


@needs_refine
def test_2d_margin_points_segment_refine_undo_redo(window_2d, qtbot):
    w, path, truth = window_2d
    view = w.views[("2d", 0)]
    assert w.state.tool == "margin" and w.session.mask is None
    for p in MARGIN_2D:
        click(qtbot, view, p)
    assert w.pending_margin == MARGIN_2D  # markers placed, nothing computed yet
    assert {m for m, kind in w.state.markers if kind == "margin_pending"} == set(MARGIN_2D)
    qtbot.keyClick(view, Qt.Key_Return)  # Enter runs stage 1
    wait_idle(qtbot, w)
    s = w.session
    assert sorted(map(tuple, s.margin_points.tolist())) == sorted(MARGIN_2D)
    mask0 = s.mask.copy()
    assert mask0[20, 25] == 1 and mask0[2, 2] == 0
    assert w.state.tool == "refine" and w.pending_margin == []
    assert np.array_equal(w.state.mask, mask0)  # the overlay shows the session's mask
    assert "stage 1" in w.time_label.text()

    click(qtbot, view, (3, 3), Qt.LeftButton)  # foreground click in the background
    wait_idle(qtbot, w)
    assert len(s.rounds) == 1 and s.rounds[0].foreground.tolist() == [[3, 3]]
    assert s.rounds[0].lam == w.lam_box.value() and s.rounds[0].sigma == w.sigma_box.value()
    mask1 = s.mask.copy()
    assert mask1[3, 3] == 1  # the clicked pixel keeps its label
    w.lam_box.setValue(2.0)
    w.sigma_box.setValue(0.2)
    click(qtbot, view, (20, 25), Qt.RightButton)  # background click inside the object
    wait_idle(qtbot, w)
    assert len(s.rounds) == 2 and s.rounds[1].background.tolist() == [[20, 25]]
    assert (s.rounds[1].lam, s.rounds[1].sigma) == (2.0, 0.2)  # λ, σ go with each round
    assert s.mask[20, 25] == 0 and s.mask[3, 3] == 1  # earlier clicks stay in force
    assert "refine" in w.time_label.text()

    qtbot.keyClick(view, Qt.Key_Z, Qt.ControlModifier)  # Ctrl+Z
    assert len(s.rounds) == 1 and np.array_equal(w.state.mask, mask1)
    qtbot.keyClick(view, Qt.Key_Z, Qt.ControlModifier)
    assert len(s.rounds) == 0 and np.array_equal(w.state.mask, mask0)
    qtbot.keyClick(view, Qt.Key_Z, Qt.ControlModifier | Qt.ShiftModifier)  # Ctrl+Shift+Z
    assert len(s.rounds) == 1 and np.array_equal(w.state.mask, mask1)


@needs_refine
def test_scribble_is_one_round_of_many_points(window_2d, qtbot):
    w, path, truth = window_2d
    view = segment_2d(qtbot, w)
    w.set_tool("scribble")
    w.brush_box.setValue(0.0)
    a, b = view.widget_pos((2, 5)), view.widget_pos((2, 40))
    qtbot.mousePress(view, Qt.LeftButton, Qt.NoModifier, a.toPoint())
    for t in np.linspace(0, 1, 8)[1:]:
        move(view, (a + (b - a) * t).toPoint())
    qtbot.mouseRelease(view, Qt.LeftButton, Qt.NoModifier, b.toPoint())
    wait_idle(qtbot, w)
    s = w.session
    assert len(s.rounds) == 1
    fg = s.rounds[0].foreground
    assert len(fg) >= 30 and set(fg[:, 0].tolist()) == {2}  # the whole stroke, row 2
    assert set(range(5, 41)) <= set(fg[:, 1].tolist())
    assert s.mask[2, 5:41].all()


@needs_refine
def test_refine_clicks_made_while_busy_are_queued_not_lost(window_2d, qtbot):
    w, path, truth = window_2d
    view = segment_2d(qtbot, w)
    click(qtbot, view, (3, 3), Qt.LeftButton)
    click(qtbot, view, (36, 46), Qt.LeftButton)  # arrives while the first round may run
    click(qtbot, view, (20, 25), Qt.RightButton)
    wait_idle(qtbot, w)
    s = w.session
    fg = np.concatenate([r.foreground for r in s.rounds]).tolist()
    bg = np.concatenate([r.background for r in s.rounds]).tolist()
    assert sorted(fg) == [[3, 3], [36, 46]] and bg == [[20, 25]]
    assert s.mask[3, 3] == 1 and s.mask[36, 46] == 1 and s.mask[20, 25] == 0


def stroke(qtbot, view, start, end, button):
    """A real brush stroke from voxel ``start`` to voxel ``end`` (press, moves, release)."""
    a, b = view.widget_pos(start), view.widget_pos(end)
    qtbot.mousePress(view, button, Qt.NoModifier, a.toPoint())
    for t in np.linspace(0, 1, 12)[1:]:
        move(view, (a + (b - a) * t).toPoint(), buttons=button)
    qtbot.mouseRelease(view, button, Qt.NoModifier, b.toPoint())


def hold_worker(w):
    """Keep the worker busy (as a slow refine round would) until the returned event is set."""
    import threading

    gate = threading.Event()
    assert w.jobs.submit(lambda: gate.wait(10), lambda *a: None, "test: busy")
    return gate


@needs_refine
def test_crossing_scribbles_in_one_round_the_later_stroke_wins(window_2d, qtbot):
    w, path, truth = window_2d
    view = segment_2d(qtbot, w)
    w.set_tool("scribble")
    w.brush_box.setValue(0.0)
    gate = hold_worker(w)  # both strokes land in one round
    stroke(qtbot, view, (20, 5), (20, 40), Qt.LeftButton)  # foreground, row 20
    stroke(qtbot, view, (8, 25), (32, 25), Qt.RightButton)  # background, column 25, later
    assert (20, 25) in w.pending_bg and (20, 25) not in w.pending_fg
    gate.set()
    wait_idle(qtbot, w)
    assert w.last_error is None
    s = w.session
    assert len(s.rounds) == 1
    fg = set(map(tuple, s.rounds[0].foreground.tolist()))
    bg = set(map(tuple, s.rounds[0].background.tolist()))
    assert not fg & bg and (20, 25) in bg and {(20, 24), (20, 26)} <= fg
    assert s.mask[20, 25] == 0 and s.mask[20, 5:25].all() and s.mask[20, 26:41].all()
    # a left then a right click on one pixel in one round: the right click wins
    gate = hold_worker(w)
    w.set_tool("refine")
    click(qtbot, view, (3, 3), Qt.LeftButton)
    click(qtbot, view, (3, 3), Qt.RightButton)
    gate.set()
    wait_idle(qtbot, w)
    assert w.last_error is None and s.rounds[-1].background.tolist() == [[3, 3]]
    assert s.rounds[-1].foreground.shape == (0, 2) and s.mask[3, 3] == 0


@needs_refine
def test_a_later_round_overrides_an_earlier_click_of_the_other_class(window_2d, qtbot):
    w, path, truth = window_2d
    view = segment_2d(qtbot, w)
    click(qtbot, view, (3, 3), Qt.LeftButton)
    wait_idle(qtbot, w)
    assert w.session.mask[3, 3] == 1
    click(qtbot, view, (3, 3), Qt.RightButton)  # changed my mind: background after all
    wait_idle(qtbot, w)
    assert w.last_error is None and len(w.session.rounds) == 2
    assert w.session.mask[3, 3] == 0
    kinds = [kind for voxel, kind in w.state.markers if voxel == (3, 3)]
    assert kinds == ["bg"]  # the overridden marker is gone
    qtbot.keyClick(view, Qt.Key_Z, Qt.ControlModifier)
    assert w.session.mask[3, 3] == 1
    assert [kind for voxel, kind in w.state.markers if voxel == (3, 3)] == ["fg"]


def test_window_level_drag_zoom_and_status(window_2d, qtbot):
    w, path, truth = window_2d
    view = w.views[("2d", 0)]
    level, width = w.state.windows[0]
    centre = view.widget_pos((20, 25)).toPoint()
    qtbot.mousePress(view, Qt.LeftButton, Qt.ShiftModifier, centre)  # Shift+drag = W/L
    move(view, centre + QPoint(40, 30), modifiers=Qt.ShiftModifier)
    qtbot.mouseRelease(view, Qt.LeftButton, Qt.ShiftModifier, centre + QPoint(40, 30))
    new_level, new_width = w.state.windows[0]
    assert new_width > width and new_level < level
    assert w.pending_margin == []  # a W/L drag is not a click
    w.apply_window_preset("CT soft tissue (40/400)")
    assert w.state.windows[0] == (40.0, 400.0)
    # hovering reports coordinates and the pixel value
    move(view, view.widget_pos((20, 25)).toPoint(), buttons=Qt.NoButton)
    arr = midseg.read_image(path).array
    assert "(20, 25)" in w.hover_label.text() and f"{arr[20, 25]:.4g}" in w.hover_label.text()
    # wheel zoom about the pointer keeps that voxel under it
    pos = view.widget_pos((12, 30))
    ev = QWheelEvent(
        pos,
        view.mapToGlobal(pos.toPoint()),
        QPoint(),
        QPoint(0, 240),
        Qt.NoButton,
        Qt.NoModifier,
        Qt.NoScrollPhase,
        False,
    )
    QApplication.sendEvent(view, ev)
    assert w.links["2d"].zoom > 1.3
    assert view.voxel_at(pos.x(), pos.y()) == (12, 30)
    # Ctrl+drag pans: the voxel moves with the pointer, no point is placed
    start = view.widget_pos((20, 25)).toPoint()
    qtbot.mousePress(view, Qt.LeftButton, Qt.ControlModifier, start)
    move(view, start + QPoint(30, -20), modifiers=Qt.ControlModifier)
    qtbot.mouseRelease(view, Qt.LeftButton, Qt.ControlModifier, start + QPoint(30, -20))
    moved = view.widget_pos((20, 25))
    assert (moved.x() - start.x(), moved.y() - start.y()) == pytest.approx((30, -20), abs=1)
    assert w.pending_margin == []


def test_margin_tool_right_click_removes_the_nearest_point(window_2d, qtbot):
    w, path, truth = window_2d
    view = w.views[("2d", 0)]
    for p in MARGIN_2D:
        click(qtbot, view, p)
    click(qtbot, view, (28, 26), Qt.RightButton)
    assert w.pending_margin == [p for p in MARGIN_2D if p != (29, 25)]
    qtbot.keyClick(view, Qt.Key_Escape)
    assert w.pending_margin == []


def test_drop_a_file_opens_it(stage1, make_window, tmp_path, qtbot):
    from PyQt5.QtCore import QMimeData, QUrl
    from PyQt5.QtGui import QDropEvent

    arr, truth = phantom(**DISC_2D)
    path = write(tmp_path, "dropped.nii.gz", arr, (0.5, 0.8))
    w = make_window(FakeModel(2))
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    w.dropEvent(QDropEvent(QPointF(50, 50), Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier))
    wait_session(qtbot, w)
    assert w.image_path == str(path) and w.session.image.spacing == pytest.approx((0.5, 0.8))
    assert np.array_equal(w.state.channels[0], arr)


# -- 3D: clicks in all three views --------------------------------------------------


@needs_refine
def test_3d_clicks_map_to_voxels_in_all_three_views(stage1, make_window, tmp_path, qtbot):
    """Hand-computed widget positions -> (z, y, x), anisotropic spacing (2, 1, 1)."""
    shape = (8, 20, 30)
    arr, truth = phantom(shape, (4, 10, 15), (3, 7, 10))
    path = write(tmp_path, "vol.nii.gz", arr, (2.0, 1.0, 1.0))
    w = make_window(FakeModel(3), size=(1100, 560))
    w.open_image(path)
    wait_session(qtbot, w)
    views = {name: w.views[(name, 0)] for name in ("axial", "coronal", "sagittal")}
    for v in views.values():
        v.setFixedSize(300, 300)
    qtbot.waitUntil(lambda: all(v.width() == 300 and v.height() == 300 for v in views.values()))
    assert w.state.cursor == (4, 10, 15)
    # axial: 20x30 pixels of 1x1 mm -> 10 px/pixel, image spans y 50..250
    # coronal: 8 rows of 2 mm (z, superior up) x 30 columns -> 10 px wide, 20 px tall, y 70..230
    # sagittal: 8 rows of 2 mm x 20 columns of y -> 15 px wide, 30 px tall, y 30..270
    clicks = [  # view, widget (x, y), expected (z, y, x); each click also moves the linked cursor
        ("axial", (5, 55), (4, 0, 0)),
        ("coronal", (5, 80), (7, 0, 0)),  # top row of the coronal view is the last z
        ("sagittal", (292, 255), (0, 19, 0)),
        ("axial", (295, 245), (0, 19, 29)),
        ("coronal", (155, 135), (4, 19, 15)),
        ("sagittal", (7, 40), (7, 0, 15)),
    ]
    got = []
    for name, (x, y), expected in clicks:
        qtbot.mouseClick(views[name], Qt.LeftButton, Qt.NoModifier, QPoint(x, y))
        got.append(w.pending_margin[-1])
        assert w.state.cursor == expected  # linked cursor follows the click
        assert views["axial"].slice_index == expected[0]  # and the other views' slices
        assert views["coronal"].slice_index == expected[1]
        assert views["sagittal"].slice_index == expected[2]
    assert got == [c[2] for c in clicks]
    # the session receives exactly these voxels
    qtbot.keyClick(views["axial"], Qt.Key_Return)
    wait_idle(qtbot, w)
    assert w.last_error is None and w.last_warning is None  # points spread in 3D
    assert w.session.margin_points.tolist() == [list(c[2]) for c in clicks]
    # a click in the coronal view refines at the voxel it shows
    qtbot.mouseClick(views["coronal"], Qt.RightButton, Qt.NoModifier, QPoint(155, 135))
    wait_idle(qtbot, w)
    assert w.session.rounds[-1].background.tolist() == [[4, 0, 15]]
    assert w.session.mask[4, 0, 15] == 0


@pytest.mark.filterwarnings("ignore::midseg.errors.CoplanarPointsWarning")  # shown, not printed
def test_3d_margin_points_all_on_one_slice_show_a_warning(stage1, make_window, tmp_path, qtbot):
    shape = (16, 20, 30)
    arr, truth = phantom(shape, (8, 10, 15), (6, 7, 10))
    path = write(tmp_path, "vol.nii.gz", arr, (2.0, 1.0, 1.0))
    w = make_window(FakeModel(3), size=(1100, 560))
    w.open_image(path)
    wait_session(qtbot, w)
    axial = w.views[("axial", 0)]
    assert axial.slice_index == 8
    for voxel in [(8, 4, 15), (8, 16, 15), (8, 10, 6), (8, 10, 24)]:
        click(qtbot, axial, voxel)
    qtbot.keyClick(axial, Qt.Key_Return)
    wait_idle(qtbot, w)
    assert w.last_error is None and w.session.mask is not None  # the mask is made, ...
    assert "lie in the plane z = 8" in w.last_warning  # ... with the session's warning
    assert "slices above and below" in w.last_warning
    assert w._warning_box.isVisible() and w._warning_box.icon() == QMessageBox.Warning
    assert w._warning_box.text() == w.last_warning
    assert "lie in the plane z = 8" in w.statusBar().currentMessage()
    # the user adds the top and bottom: no warning any more
    w._warning_box.close()
    w.last_warning = None
    w.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is w)
    w.set_tool("margin")
    for voxel in [(8, 4, 15), (8, 16, 15), (8, 10, 6), (8, 10, 24), (3, 10, 15), (13, 10, 15)]:
        w.add_margin_point(voxel)
    assert w.run_segment()
    wait_idle(qtbot, w)
    assert w.last_error is None and w.last_warning is None and w.session.warnings == ()


def test_3d_slice_scrolling_and_two_modalities_linked(make_window, stage1, tmp_path, qtbot):
    shape = (10, 24, 28)
    a, truth = phantom(shape, (5, 12, 14), (3, 6, 8), seed=1)
    b = (1.0 - a).astype(np.float32)
    pa = write(tmp_path, "pet.nii.gz", a, (2.5, 1.0, 1.0))
    pb = write(tmp_path, "ct.nii.gz", b, (2.5, 1.0, 1.0))
    w = make_window(FakeModel(3, channels=2), size=(1100, 700))
    w.open_image(pa, second=pb)
    wait_session(qtbot, w)
    assert w.last_error is None and w.session.image.channels == 2
    assert set(w.views) == {(p, c) for p in ("axial", "coronal", "sagittal") for c in (0, 1)}
    assert np.array_equal(w.session.image.array[1], b)
    ax0, ax1 = w.views[("axial", 0)], w.views[("axial", 1)]
    z0 = w.state.cursor[0]
    qtbot.keyClick(ax1, Qt.Key_Up)  # slice scrolling in either view
    assert w.state.cursor[0] == z0 + 1 and ax0.slice_index == ax1.slice_index == z0 + 1
    # the wheel moves through slices (as in 3D Slicer and ITK-SNAP); Ctrl+wheel zooms
    pos = ax0.widget_pos((z0 + 1, 12, 14))
    for mods in (Qt.NoModifier, Qt.ControlModifier):
        QApplication.sendEvent(
            ax0,
            QWheelEvent(
                pos,
                ax0.mapToGlobal(pos.toPoint()),
                QPoint(),
                QPoint(0, 120),
                Qt.NoButton,
                mods,
                Qt.NoScrollPhase,
                False,
            ),
        )
    assert w.state.cursor[0] == z0 + 2 and w.links["axial"].zoom > 1.1
    qtbot.keyClick(ax1, Qt.Key_Down)
    w.links["axial"].set(2.0, (12.0, 14.0))  # zoom/pan is shared per plane
    for view in (ax0, ax1):
        assert (view.transform().zoom, view.transform().center) == (2.0, (12.0, 14.0))
    assert w.views[("coronal", 0)].transform().zoom == 1.0
    click(qtbot, ax1, (z0 + 1, 9, 10))  # a click in the second modality
    assert w.pending_margin == [(z0 + 1, 9, 10)]
    assert w.state.cursor == (z0 + 1, 9, 10)


def test_second_modality_on_another_grid_is_resampled_onto_the_first(
    make_window, stage1, tmp_path, qtbot
):
    """A PET on a coarser grid than its CT: read onto the CT grid in physical coordinates."""
    arr, truth = phantom(**DISC_2D)
    ct = write(tmp_path, "ct.nii.gz", arr, (1.0, 1.0))
    coarse = midseg.Image(arr[::2, ::2].copy(), spacing=(2.0, 2.0), origin=(0.5, 0.5))
    midseg.write_image(tmp_path / "pet.nii.gz", coarse)
    w = make_window(FakeModel(2, channels=2))
    w.open_image(ct, second=tmp_path / "pet.nii.gz")
    wait_session(qtbot, w)
    assert w.last_error is None and w.session.image.channels == 2
    pet = w.session.image.array[1]
    assert pet.shape == arr.shape and w.session.image.spacing == (1.0, 1.0)
    inside = pet[2:-2, 2:-2] > 0.5
    assert (inside == (arr[2:-2, 2:-2] > 0.5)).mean() > 0.95  # the disc stays in place
    w.remove_second()  # the 2-channel model refuses one channel
    qtbot.waitUntil(lambda: not w.jobs.busy and w.last_error is not None)
    assert "expects 2" in w.last_error
    dismiss(qtbot, w)
    assert w.open_second(tmp_path / "pet.nii.gz")
    wait_session(qtbot, w)
    assert w.last_error is None and np.array_equal(w.session.image.array[1], pet)


def test_two_channel_image_with_one_channel_model_shows_the_error(
    make_window, stage1, tmp_path, qtbot
):
    arr, truth = phantom(**DISC_2D)
    pa = write(tmp_path, "a.nii.gz", arr, (1.0, 1.0))
    pb = write(tmp_path, "b.nii.gz", arr * 2, (1.0, 1.0))
    w = make_window(FakeModel(2, channels=1))
    w.open_image(pa, second=pb)
    qtbot.waitUntil(lambda: not w.jobs.busy and w.last_error is not None)
    assert w.session is None
    assert "channel" in w.last_error and "expects 1" in w.last_error  # Session's own message
    assert isinstance(w._error_box, QMessageBox) and w._error_box.isVisible()
    assert len(w.views) == 2  # both images are still shown
    assert not w.act_segment.isEnabled()


def test_bad_inputs_give_a_dialog_not_a_crash(make_window, stage1, tmp_path, qtbot):
    w = make_window(FakeModel(2))
    w.open_image(tmp_path / "missing.nii.gz")
    qtbot.waitUntil(lambda: not w.jobs.busy and w.last_error is not None)
    assert "no such file" in w.last_error and w.image is None
    dismiss(qtbot, w)
    arr, _ = phantom(**DISC_2D)
    far = midseg.Image(arr, spacing=(1.0, 1.0), origin=(500.0, 0.0))
    midseg.write_image(tmp_path / "far.nii.gz", far)
    w.open_image(write(tmp_path, "a.nii.gz", arr, (1.0, 1.0)), second=tmp_path / "far.nii.gz")
    qtbot.waitUntil(lambda: not w.jobs.busy and w.last_error is not None)
    assert "do not overlap" in w.last_error
    dismiss(qtbot, w)
    w.open_image(tmp_path / "a.nii.gz")
    wait_session(qtbot, w)
    view = w.views[("2d", 0)]
    click(qtbot, view, (20, 25))  # too few margin points
    qtbot.keyClick(view, Qt.Key_Return)
    qtbot.waitUntil(lambda: not w.jobs.busy and w.last_error is not None)
    assert "at least 3" in w.last_error and w.session.mask is None


# -- never freeze, never lose work ------------------------------------------------------


def test_event_loop_runs_while_a_slow_stage1_works(window_2d, monkeypatch, qtbot):
    w, path, truth = window_2d

    def slow(*args, **kw):
        time.sleep(1.0)
        return fake_predict(*args, **kw)

    monkeypatch.setattr(midseg.predict, "predict_probability", slow)
    view = w.views[("2d", 0)]
    for p in MARGIN_2D:
        click(qtbot, view, p)
    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start(20)
    t0 = time.perf_counter()
    assert w.run_segment()
    assert time.perf_counter() - t0 < 0.3  # the call returns at once
    assert w.jobs.busy
    assert (
        not w.act_undo.isEnabled() and not w.act_segment.isEnabled() and not w.act_open.isEnabled()
    )  # conflicting actions are off
    click(qtbot, view, (2, 2))  # the UI still takes clicks meanwhile
    assert w.pending_margin == [(2, 2)]
    qtbot.waitUntil(lambda: w.session.mask is not None, timeout=5000)
    elapsed = time.perf_counter() - t0
    timer.stop()
    assert elapsed >= 1.0
    assert len([t for t in ticks if t < t0 + 1.0]) >= 10  # the timer kept firing during stage 1
    wait_idle(qtbot, w)
    assert w.act_undo.isEnabled()


@needs_refine
def test_margin_points_placed_before_enter_are_autosaved(window_2d, make_window, qtbot):
    w, path, truth = window_2d
    view = w.views[("2d", 0)]
    for p in MARGIN_2D[:3]:
        click(qtbot, view, p)
    auto = autosave_path(path)
    doc = json.loads(auto.read_text())
    assert doc["format"] == "midseg-pending-margin-points" and len(doc["margin_points"]) == 3
    # after a crash, the points come back as placed (no stage 1 has run)
    w2 = make_window(FakeModel(2))
    w2.ask.script = [QMessageBox.Yes]
    w2.open_image(path)
    wait_session(qtbot, w2)
    assert w2.pending_margin == [tuple(p) for p in MARGIN_2D[:3]]
    assert w2.session.mask is None
    w.clear_pending()
    assert not auto.exists()


def test_autosave_after_each_step_and_offered_back(window_2d, make_window, qtbot):
    w, path, truth = window_2d
    view = segment_2d(qtbot, w)
    auto = autosave_path(path)
    assert auto.parent == path.parent and auto.is_file()
    assert len(json.loads(auto.read_text())["margin_points"]) == 4
    click(qtbot, view, (3, 3))
    wait_idle(qtbot, w)
    assert len(json.loads(auto.read_text())["rounds"]) == 1
    mask = w.session.mask.copy()
    # a second window (as after a crash) offers the autosave back and replays it
    w2 = make_window(FakeModel(2))
    w2.ask.script = [QMessageBox.Yes]
    w2.open_image(path)
    wait_session(qtbot, w2)
    assert w2.ask.asked == ["Restore autosaved session?"]
    assert np.array_equal(w2.session.margin_points, w.session.margin_points)
    assert [r.foreground.tolist() for r in w2.session.rounds] == [[[3, 3]]]
    assert np.array_equal(w2.session.mask, mask) and w2.state.tool == "refine"
    assert w2.dirty  # restored work is not saved work
    # undo back to nothing removes the autosave
    w.undo()
    w.undo()
    assert w.session.mask is None and not auto.exists()


@needs_refine
def test_save_mask_and_clicks_then_replay(window_2d, make_window, tmp_path, qtbot):
    w, path, truth = window_2d
    view = segment_2d(qtbot, w)
    click(qtbot, view, (3, 3))
    wait_idle(qtbot, w)
    assert w.dirty
    assert w.save_mask(tmp_path / "out" / "disc_mask.nii.gz")
    assert not w.dirty
    image = midseg.read_image(path)
    saved = midseg.read_mask(tmp_path / "out" / "disc_mask.nii.gz", like=image)
    assert np.array_equal(saved, w.session.mask)
    assert w.save_clicks(tmp_path / "out" / "disc.clicks.json")
    w2 = make_window(FakeModel(2), autosave=False)
    w2.open_image(path)
    wait_session(qtbot, w2)
    assert w2.load_clicks(tmp_path / "out" / "disc.clicks.json")
    qtbot.waitUntil(lambda: not w2.jobs.busy and w2.session.mask is not None)
    assert np.array_equal(w2.session.mask, w.session.mask)
    assert len(w2.session.rounds) == 1 and not w2.dirty


def test_closing_with_unsaved_work_asks(window_2d, qtbot):
    w, path, truth = window_2d
    segment_2d(qtbot, w)
    auto = autosave_path(path)
    assert w.dirty and auto.exists()
    w.ask.script = [QMessageBox.Cancel]
    assert not w.close()  # cancelled: window and work stay
    assert w.isVisible() and w.ask.asked[-1] == "Quit midseg" and auto.exists()
    w.ask.script = [QMessageBox.Discard]
    assert w.close()
    assert not auto.exists()  # discarded on purpose


def test_reset_asks_and_forgets(window_2d, qtbot):
    w, path, truth = window_2d
    segment_2d(qtbot, w)
    w.ask.script = [QMessageBox.No]
    w.reset()
    assert w.session.mask is not None
    w.ask.script = [QMessageBox.Yes]
    w.reset()
    assert w.session.mask is None and not w.session.can_undo and w.state.tool == "margin"


# -- command line -------------------------------------------------------------------------


def test_command_line_hooks_do_not_import_qt():
    code = (
        "import sys, midseg.cli; p = midseg.cli.build_parser(); "
        "a = p.parse_args(['gui', 'img.nii.gz', '--second', 'ct.nii.gz', '--lam', '3']); "
        "assert a.image == 'img.nii.gz' and a.second == 'ct.nii.gz' and a.lam == 3.0; "
        "assert a._run.__module__ == 'midseg.gui.app'; "
        "assert 'PyQt5' not in sys.modules, 'Qt imported by the parser'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_gui_script_help(capsys):
    from midseg.gui.app import main

    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--second" in out and "Margin points" in out


# -- real stage 1 (torch) with a tiny untrained network --------------------------------------


@needs_refine
@pytest.mark.skipif(
    importlib.util.find_spec("midseg.cues") is None,
    reason="midseg.cues (stage-1 cue maps) is not available",
)
def test_real_stage1_runs_off_the_ui_thread_for_two_modalities(
    make_window, tmp_path, qtbot, monkeypatch
):
    """PET/CT style: two co-registered images, a 2-channel model, stage 1 in the worker thread."""
    import threading

    pytest.importorskip("torch")
    from test_session import write_tiny_model  # a tiny untrained model with its card

    model = write_tiny_model(tmp_path, 2, channels=2)
    arr, truth = phantom(**DISC_2D)
    pa = write(tmp_path, "pet.nii.gz", arr, (1.0, 1.0))
    pb = write(tmp_path, "ct.nii.gz", (1 - arr) * 100, (1.0, 1.0))
    threads, real = [], midseg.predict.predict_probability

    def spy(*args, **kw):
        threads.append(threading.get_ident())
        return real(*args, **kw)

    monkeypatch.setattr(midseg.predict, "predict_probability", spy)
    w = make_window(str(model))
    w.open_image(pa, second=pb)
    wait_session(qtbot, w, timeout=30_000)
    assert w.last_error is None and w.session.model.name == model.stem
    assert w.session.image.channels == 2
    assert np.array_equal(w.session.image.array[1], midseg.read_image(pb).array)
    segment_2d(qtbot, w)
    qtbot.waitUntil(lambda: not w.jobs.busy, timeout=30_000)
    assert w.last_error is None
    assert threads and threads[0] != threading.get_ident()  # not the UI thread
    assert w.session.mask.shape == truth.shape
    assert sorted(map(tuple, w.session.margin_points.tolist())) == sorted(MARGIN_2D)
    click(qtbot, w.views[("2d", 1)], (3, 3))  # a click on the CT view
    wait_idle(qtbot, w)
    assert w.session.rounds[-1].foreground.tolist() == [[3, 3]] and w.session.mask[3, 3] == 1


# -- shipped weights ------------------------------------------------------------------------


def _shipped(name):
    from midseg.models import list_models

    return name in list_models()


@pytest.mark.skipif(not _shipped("2d"), reason="shipped 2D model (models/2d.json) not present")
def test_shipped_2d_model_segments_a_disc_from_gui_clicks(make_window, tmp_path, qtbot):
    from midseg.metrics import dice

    arr, truth = phantom(**DISC_2D)
    path = write(tmp_path, "disc.nii.gz", arr, (1.0, 1.0))
    w = make_window(None)
    w.open_image(path)
    wait_session(qtbot, w, timeout=60_000)
    assert w.last_error is None and w.session.model.name == "2d"
    segment_2d(qtbot, w)
    qtbot.waitUntil(lambda: not w.jobs.busy, timeout=60_000)
    assert w.last_error is None
    assert dice(w.session.mask, truth) > 0.8


@pytest.mark.skipif(not _shipped("3d"), reason="shipped 3D weights (models/3d.pt) not present")
def test_shipped_3d_model_segments_a_ball_from_gui_clicks(make_window, tmp_path, qtbot):
    from midseg.metrics import dice

    shape, center, radii = (24, 40, 40), (12, 20, 20), (6, 10, 10)
    arr, truth = phantom(shape, center, radii)
    path = write(tmp_path, "ball.nii.gz", arr, (1.0, 1.0, 1.0))
    w = make_window(None, size=(1100, 560))
    w.open_image(path)
    wait_session(qtbot, w, timeout=60_000)
    assert w.last_error is None and w.session.model.name == "3d"
    points = [(7, 20, 20), (17, 20, 20), (12, 11, 20), (12, 29, 20), (12, 20, 11), (12, 20, 29)]
    for p in points:
        w.state.set_cursor(p)
        click(qtbot, w.views[("axial", 0)], p)
    assert w.pending_margin == points
    qtbot.keyClick(w.views[("axial", 0)], Qt.Key_Return)
    qtbot.waitUntil(lambda: not w.jobs.busy and w.session.mask is not None, timeout=60_000)
    assert w.last_error is None
    assert dice(w.session.mask, truth) > 0.8


def test_an_image_with_a_recommended_window_opens_with_it(make_window, qtbot):
    arr, truth = phantom(**DISC_2D)
    w = make_window(FakeModel(2))
    w.set_image(midseg.Image(arr * 1000.0, window=(40.0, 400.0)))
    wait_session(qtbot, w)
    assert w.state.windows[0] == (40.0, 400.0)


def test_a_picture_reports_its_area_in_pixels(stage1, make_window, tmp_path, qtbot):
    arr, truth = phantom(**DISC_2D)
    path = tmp_path / "disc.png"
    midseg.write_image(path, midseg.Image((arr * 200).clip(0, 255).astype(np.uint8)))
    w = make_window(FakeModel(2))
    assert w.open_image(path)
    wait_session(qtbot, w)
    segment_2d(qtbot, w)
    assert "pixels" in w.info_label.text() and "mm" not in w.info_label.text()


def test_gui_without_a_display_is_a_one_line_error(monkeypatch):
    import sys

    from midseg.errors import MidsegError
    from midseg.gui.app import _check_display

    for name in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    with pytest.raises(MidsegError, match="needs a display"):
        _check_display()
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")  # an explicit platform: Qt decides
    _check_display()
