"""The suggested next click in the GUI (issue 23): marker, accept keys, go to, option off.

Real key presses and mouse clicks on real views drive a real `midseg.Session`; stage 1 is
the fast stand-in of `test_gui` (monkeypatched `midseg.predict.predict_probability`),
`Session.suggest` and the refinement are the library's own code (wrapped only to count
the calls and record their thread).
"""

from __future__ import annotations

import threading
from dataclasses import replace

import numpy as np
import pytest

pytest.importorskip("PyQt5")
pytest.importorskip("pytestqt")

from PyQt5.QtCore import Qt  # noqa: E402
from PyQt5.QtWidgets import QMessageBox  # noqa: E402

import midseg  # noqa: E402
import midseg.predict  # noqa: E402
from midseg.gui.views import MARKER_COLORS  # noqa: E402
from midseg.gui.window import MainWindow  # noqa: E402

from test_gui import (  # noqa: E402  (tests/ is on sys.path)
    FakeModel,
    fake_predict,
    needs_refine,
    phantom,
    click,
    wait_idle,
)
from test_gui import segment_2d as _segment_2d  # noqa: E402

MARGIN_3D = [(6, 12, 22), (6, 28, 22), (6, 20, 13), (6, 20, 31), (3, 20, 22), (9, 20, 22)]


@pytest.fixture
def calls(monkeypatch):
    """Every `Session.suggest` call, as the name of the thread it ran on.

    The suggestions are the real ones with their score made positive: the GUI shows only
    a suggestion where the image contradicts the mask (score > 0), and these small
    synthetic scenes do not always have one (`test_no_marker_where_the_image_agrees`).
    """
    seen: list[str] = []
    real = midseg.Session.suggest

    def counting(self, k=1):
        seen.append(threading.current_thread().name)
        return [replace(sg, score=abs(sg.score) + 1.0) for sg in real(self, k)]

    monkeypatch.setattr(midseg.Session, "suggest", counting)
    return seen


@pytest.fixture
def open_window(monkeypatch, qtbot, tmp_path):
    monkeypatch.setattr(midseg.predict, "predict_probability", fake_predict)

    def make(arr, spacing, dims, size=(1100, 640)):
        path = tmp_path / "image.nii.gz"
        midseg.write_image(path, midseg.Image(arr, spacing=spacing))
        w = MainWindow(model=FakeModel(dims), autosave=False)
        w.ask = lambda title, text, buttons, default: QMessageBox.No
        qtbot.addWidget(w)
        w.resize(*size)
        w.show()
        qtbot.waitExposed(w)
        assert w.open_image(path)
        qtbot.waitUntil(lambda: not w.jobs.busy and w.session is not None, timeout=10_000)
        return w

    return make


def marker_drawn(view, voxel) -> bool:
    """True when the view shows pixels of the suggestion's colour around ``voxel``."""
    img = view.grab().toImage()
    p = view.widget_pos(voxel)
    want = MARKER_COLORS["suggest"]
    for x in range(int(p.x()) - 12, int(p.x()) + 13):
        for y in range(int(p.y()) - 12, int(p.y()) + 13):
            c = img.pixelColor(x, y)
            if (
                abs(c.red() - want.red()) < 40
                and c.green() < 60
                and abs(c.blue() - want.blue()) < 40
            ):
                return True
    return False


def suggest_markers(w):
    return [v for v, kind in w.state.markers if kind == "suggest"]


@pytest.fixture
def disc(open_window, qtbot):
    g = np.indices((40, 50), dtype=float)
    truth = (((g[0] - 20) / 10) ** 2 + ((g[1] - 25) / 12) ** 2 <= 1).astype(np.float32)
    arr = (truth + np.random.default_rng(0).normal(scale=0.05, size=truth.shape)).astype(np.float32)
    return open_window(arr, (1.0, 1.0), 2)


def segment_2d(qtbot, w):
    view = _segment_2d(qtbot, w)
    assert w.session.mask is not None and w.last_error is None
    return view


@needs_refine
def test_2d_suggestion_is_shown_accepted_with_a_key_and_refines(disc, calls, qtbot):
    w = disc
    assert not w.act_suggest.isChecked()  # off by default
    w.act_suggest.trigger()
    assert w.act_suggest.isChecked() and calls == []  # no session mask yet: nothing to do
    view = segment_2d(qtbot, w)
    s = w.session
    first = w.suggestion
    assert first is not None and len(first.point) == 2
    assert calls and calls[-1] != threading.main_thread().name  # in the worker, after stage 1
    assert suggest_markers(w) == [first.point]
    assert marker_drawn(view, first.point)
    hint = w.suggest_label.text()
    assert w.suggest_label.isVisible() and f"({first.point[0]}, {first.point[1]})" in hint
    assert ("foreground" if first.foreground else "background") in hint and "score" in hint
    assert w.act_accept_suggestion.isEnabled() and w.act_goto_suggestion.isEnabled()

    qtbot.keyClick(view, Qt.Key_A)  # accept as the suggested class
    wait_idle(qtbot, w)
    assert len(s.rounds) == 1  # one refinement round, as a click makes
    got = s.rounds[0].foreground if first.foreground else s.rounds[0].background
    assert got.tolist() == [list(first.point)]
    assert len(s.rounds[0].foreground) + len(s.rounds[0].background) == 1
    assert s.mask[first.point] == int(first.foreground)  # the click keeps its class
    assert calls[-1] != threading.main_thread().name
    second = w.suggestion
    assert second is not None and second.point != first.point  # the next round replaced it
    (saved,) = s.clicks_dict()["rounds"]  # the clicks file records it as a normal click
    kind, other = ("foreground", "background") if first.foreground else ("background", "foreground")
    assert len(saved[kind]) == 1 and len(saved[other]) == 0

    qtbot.keyClick(view, Qt.Key_Z, Qt.ControlModifier)  # undo: recomputed, on the UI thread
    assert len(s.rounds) == 0 and w.suggestion == first
    assert calls[-1] == threading.main_thread().name
    qtbot.keyClick(view, Qt.Key_A, Qt.ShiftModifier)  # accept as foreground explicitly
    wait_idle(qtbot, w)
    assert s.rounds[-1].foreground.tolist() == [list(first.point)]
    assert len(s.rounds[-1].background) == 0
    qtbot.keyClick(view, Qt.Key_Z, Qt.ControlModifier)
    qtbot.keyClick(view, Qt.Key_A, Qt.AltModifier)  # ... and as background
    wait_idle(qtbot, w)
    assert s.rounds[-1].background.tolist() == [list(first.point)]
    assert len(s.rounds[-1].foreground) == 0

    qtbot.keyClick(view, Qt.Key_Escape)  # Esc hides it; the keys then do nothing
    assert w.suggestion is None and suggest_markers(w) == [] and not w.suggest_label.isVisible()
    assert not marker_drawn(view, second.point if second else first.point)
    n = len(s.rounds)
    qtbot.keyClick(view, Qt.Key_A)
    wait_idle(qtbot, w)
    assert len(s.rounds) == n
    click(qtbot, view, (3, 3))  # the next round brings a new one
    wait_idle(qtbot, w)
    assert w.suggestion is not None and len(s.rounds) == n + 1
    w.act_suggest.trigger()  # turning the option off hides it
    assert w.suggestion is None and suggest_markers(w) == [] and not w.suggest_label.isVisible()


@needs_refine
def test_with_the_option_off_there_is_no_marker_and_no_call(disc, calls, qtbot):
    w = disc
    view = segment_2d(qtbot, w)
    click(qtbot, view, (3, 3))
    wait_idle(qtbot, w)
    qtbot.keyClick(view, Qt.Key_Z, Qt.ControlModifier)
    qtbot.keyClick(view, Qt.Key_A)
    qtbot.keyClick(view, Qt.Key_G)
    wait_idle(qtbot, w)
    assert calls == [] and w.suggestion is None and suggest_markers(w) == []
    assert not w.suggest_label.isVisible() and not w.act_accept_suggestion.isEnabled()
    assert len(w.session.rounds) == 0  # A accepted nothing
    w.act_suggest.trigger()  # turned on after the round: shown at once
    assert len(calls) == 1 and w.suggestion is not None


@needs_refine
def test_3d_go_to_moves_the_slices_and_the_marker_is_on_the_slices_holding_it(
    open_window, calls, qtbot
):
    arr, _ = phantom((12, 40, 44), (6, 20, 22), (4, 9, 10), seed=2)
    w = open_window(arr, (2.0, 1.0, 1.0), 3, size=(1300, 640))
    w.act_suggest.setChecked(True)
    w.set_tool("margin")
    for p in MARGIN_3D:
        w.add_margin_point(p)
    assert w.run_segment()
    wait_idle(qtbot, w)
    assert w.session.mask is not None and w.last_error is None
    sg = w.suggestion
    assert sg is not None and len(sg.point) == 3
    views = {name: w.views[(name, 0)] for name in ("axial", "coronal", "sagittal")}
    away = tuple(0 if v > 1 else v + 2 for v in sg.point)  # another slice on every axis
    w.state.set_cursor(away)
    assert all(not marker_drawn(v, sg.point) for v in views.values())
    qtbot.keyClick(views["axial"], Qt.Key_G)
    assert w.state.cursor == sg.point
    for v in views.values():
        assert v.slice_index == sg.point[v.plane.normal_axis]
        assert marker_drawn(v, sg.point)
    axial = views["axial"]
    axial.slice_step.emit(1 if sg.point[axial.plane.normal_axis] == 0 else -1)
    assert not marker_drawn(axial, sg.point)  # only on the slices that contain it
    assert marker_drawn(views["coronal"], sg.point)
    w.accept_suggestion()
    wait_idle(qtbot, w)
    rnd = w.session.rounds[-1]
    assert (rnd.foreground if sg.foreground else rnd.background).tolist() == [list(sg.point)]


def test_no_marker_where_the_image_agrees(disc, monkeypatch, qtbot):
    """A best candidate with score <= 0 (the image agrees with the mask) is not shown."""
    real = midseg.Session.suggest
    monkeypatch.setattr(
        midseg.Session,
        "suggest",
        lambda self, k=1: [replace(sg, score=-abs(sg.score)) for sg in real(self, k)],
    )
    w = disc
    w.act_suggest.trigger()
    segment_2d(qtbot, w)
    assert w.suggestion is None and suggest_markers(w) == []
    assert not w.suggest_label.isVisible() and not w.act_accept_suggestion.isEnabled()
