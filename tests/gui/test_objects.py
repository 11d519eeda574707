"""Several objects in the GUI (issue 21): the label list, paint/erase brushes, label maps.

Real mouse input on real views drives a real `midseg.LabelSession`; stage 1 is a fast
stand-in (monkeypatched `midseg.predict.predict_probability`), everything else
(refinement, `Session.paint`, undo, label map files) is the library's own code.
"""

from __future__ import annotations


import numpy as np
import pytest

pytest.importorskip("PyQt5")
pytest.importorskip("pytestqt")

from PyQt5.QtCore import QEvent, QPointF, Qt  # noqa: E402
from PyQt5.QtGui import QMouseEvent  # noqa: E402
from PyQt5.QtWidgets import QApplication, QMessageBox  # noqa: E402

import midseg  # noqa: E402
import midseg.predict  # noqa: E402
from midseg.gui.window import MainWindow  # noqa: E402
from midseg.labelmap import Segment, read_labelmap, write_labelmap  # noqa: E402

from test_gui import (  # noqa: E402  (tests/ is on sys.path)
    Answers,
    FakeModel,
    fake_predict,
    needs_refine,
    click,
    wait_idle,
)


SHAPE = (48, 64)
A_CENTRE, A_RADII = (14, 16), (7, 8)
B_CENTRE, B_RADII = (32, 44), (8, 9)
MARGIN_A = [(8, 16), (20, 16), (14, 9), (14, 23)]
MARGIN_B = [(25, 44), (39, 44), (32, 36), (32, 52)]


def ellipse(center, radii):
    g = np.indices(SHAPE, dtype=float)
    return (sum(((gi - c) / r) ** 2 for gi, c, r in zip(g, center, radii)) <= 1).astype(np.uint8)


@pytest.fixture
def two_discs(monkeypatch, qtbot, tmp_path):
    monkeypatch.setattr(midseg.predict, "predict_probability", fake_predict)
    a, b = ellipse(A_CENTRE, A_RADII), ellipse(B_CENTRE, B_RADII)
    noise = np.random.default_rng(0).normal(scale=0.04, size=SHAPE)
    arr = (a + b + noise).astype(np.float32)
    path = tmp_path / "two.nii.gz"
    midseg.write_image(path, midseg.Image(arr, spacing=(1.0, 1.0)))
    w = MainWindow(model=FakeModel(2), autosave_dir=tmp_path / "cache")
    w.ask = Answers()
    qtbot.addWidget(w)
    w.resize(1100, 640)
    w.show()
    qtbot.waitExposed(w)
    assert w.open_image(path)
    qtbot.waitUntil(lambda: not w.jobs.busy and w.session is not None, timeout=10_000)
    assert w.last_error is None
    return w, path, a, b


def stroke(qtbot, view, start, end, button=Qt.LeftButton):
    """A real brush stroke from voxel ``start`` to voxel ``end`` (press, moves, release)."""
    a, b = view.widget_pos(start), view.widget_pos(end)
    qtbot.mousePress(view, button, Qt.NoModifier, a.toPoint())
    for t in np.linspace(0, 1, 10)[1:]:
        ev = QMouseEvent(
            QEvent.MouseMove,
            QPointF((a + (b - a) * t).toPoint()),
            Qt.NoButton,
            button,
            Qt.NoModifier,
        )
        QApplication.sendEvent(view, ev)
    qtbot.mouseRelease(view, button, Qt.NoModifier, b.toPoint())


def segment(qtbot, w, margin):
    view = w.views[("2d", 0)]
    w.set_tool("margin")
    for p in margin:
        click(qtbot, view, p)
    qtbot.keyClick(view, Qt.Key_Return)
    wait_idle(qtbot, w)
    assert w.session.mask is not None, w.last_error
    return view


def overlay_rgb(view, voxel):
    """The overlay's (r, g, b, a) at ``voxel`` of a 2D view."""
    img = view._mask_image()
    if img is None:
        return (0, 0, 0, 0)
    c = img.pixelColor(int(voxel[1]), int(voxel[0]))
    return (c.red(), c.green(), c.blue(), c.alpha())


# -- two objects ---------------------------------------------------------------------


@needs_refine
def test_two_objects_each_with_its_own_clicks_and_undo(two_discs, qtbot):
    w, path, a, b = two_discs
    assert w.labels.names == ("Segment_1",) and w.current == "Segment_1"
    view = segment(qtbot, w, MARGIN_A)
    click(qtbot, view, (14, 16), Qt.LeftButton)  # a refine click on A
    wait_idle(qtbot, w)
    first = w.session
    mask_a = first.mask.copy()
    assert len(first.rounds) == 1 and mask_a[A_CENTRE] == 1 and mask_a[B_CENTRE] == 0

    name = w.add_object("kidney")
    assert name == "kidney" and w.current == "kidney" and w.session is not first
    assert w.labels.names == ("Segment_1", "kidney")
    assert w.state.tool == "margin"  # a new object starts with points
    segment(qtbot, w, MARGIN_B)
    click(qtbot, view, (32, 44), Qt.LeftButton)
    wait_idle(qtbot, w)
    second = w.session
    assert second.mask[B_CENTRE] == 1 and second.mask[A_CENTRE] == 0
    assert len(second.rounds) == 1

    # the overlay shows both objects, each in its own colour
    ca = w.labels.segment_of("Segment_1").color
    cb = w.labels.segment_of("kidney").color
    assert ca != cb
    rgb = overlay_rgb(view, A_CENTRE)
    assert rgb[:3] == tuple(int(round(255 * c)) for c in ca) and rgb[3] > 0
    assert overlay_rgb(view, B_CENTRE)[:3] == tuple(int(round(255 * c)) for c in cb)

    # undo on the current object (kidney) leaves Segment_1 untouched
    qtbot.keyClick(view, Qt.Key_Z, Qt.ControlModifier)
    assert len(second.rounds) == 0
    qtbot.keyClick(view, Qt.Key_Z, Qt.ControlModifier)
    assert second.mask is None
    assert np.array_equal(first.mask, mask_a) and len(first.rounds) == 1
    assert overlay_rgb(view, B_CENTRE)[3] == 0 and overlay_rgb(view, A_CENTRE)[3] > 0

    # back to Segment_1: its own history
    assert w.set_current_object("Segment_1")
    assert w.session is first and w.state.tool == "refine"
    qtbot.keyClick(view, Qt.Key_Z, Qt.ControlModifier)
    assert len(first.rounds) == 0 and second.mask is None
    qtbot.keyClick(view, Qt.Key_Z, Qt.ControlModifier | Qt.ShiftModifier)
    assert np.array_equal(first.mask, mask_a)


def test_where_objects_overlap_the_overlay_shows_the_label_maps_owner(two_discs, qtbot):
    w, path, a, b = two_discs
    view = w.views[("2d", 0)]
    assert w.paint_stroke(np.argwhere(a), 1)
    w.add_object("later")
    assert w.paint_stroke(np.argwhere(a | b), 1)  # covers the first object too
    first = tuple(int(round(255 * c)) for c in w.labels.segment_of("Segment_1").color)
    later = tuple(int(round(255 * c)) for c in w.labels.segment_of("later").color)
    assert w.labels.labelmap()[A_CENTRE] == 1  # "keep": the earlier object
    assert overlay_rgb(view, A_CENTRE)[:3] == first
    assert overlay_rgb(view, B_CENTRE)[:3] == later
    # the stroke shows nothing over the first object: the user is told why
    assert "belong to Segment_1" in (w.last_warning or "")
    assert f"{int(a.sum())} of the voxels" in w.last_warning


def test_painting_where_no_earlier_object_is_gives_no_warning(two_discs, qtbot):
    w, path, a, b = two_discs
    assert w.paint_stroke(np.argwhere(a), 1)
    w.add_object("later")
    assert w.paint_stroke(np.argwhere(b), 1)
    assert w.set_current_object("Segment_1")
    assert w.paint_stroke(np.argwhere(b), 1)  # the later object yields
    assert w.last_warning is None


def test_margin_points_stay_with_their_object(two_discs, qtbot):
    w, path, a, b = two_discs
    view = w.views[("2d", 0)]
    for p in MARGIN_A[:2]:
        click(qtbot, view, p)
    w.add_object()
    assert w.pending_margin == []
    click(qtbot, view, MARGIN_B[0])
    assert w.set_current_object("Segment_1")
    assert w.pending_margin == MARGIN_A[:2]
    assert w.set_current_object("Segment_2")
    assert w.pending_margin == [MARGIN_B[0]]


def test_label_list_rename_recolour_hide_delete(two_discs, qtbot):
    w, path, a, b = two_discs
    segment(qtbot, w, MARGIN_A)
    w.add_object("liver")
    panel = w.label_panel
    assert [panel.list.item(i).text() for i in range(panel.list.count())] == ["Segment_1", "liver"]
    assert panel.list.currentItem().text() == "liver"

    # choosing a row in the list makes that object current
    panel.list.setCurrentRow(0)
    qtbot.waitUntil(lambda: w.current == "Segment_1")

    # rename by editing the item, as a double-click does
    item = panel.list.item(0)
    item.setText("spleen")
    qtbot.waitUntil(lambda: w.current == "spleen")
    assert w.labels.names == ("spleen", "liver")
    assert not w.rename_object("spleen", "liver")  # in use: an error, nothing changes
    assert "exists already" in w.last_error and w.labels.names == ("spleen", "liver")
    w._error_box.close()

    assert w.recolor_object("spleen", (1.0, 0.0, 1.0))
    assert w.labels.segment_of("spleen").color == (1.0, 0.0, 1.0)
    view = w.views[("2d", 0)]
    assert overlay_rgb(view, A_CENTRE)[:3] == (255, 0, 255)

    # hide by unticking: the overlay no longer shows it, the label map still holds it
    panel.list.item(0).setCheckState(Qt.Unchecked)
    qtbot.waitUntil(lambda: "spleen" in w.hidden)
    assert overlay_rgb(view, A_CENTRE)[3] == 0
    assert w.labels.labelmap()[A_CENTRE] == 1
    w.set_object_visible("spleen", True)
    assert overlay_rgb(view, A_CENTRE)[3] > 0

    # delete asks when the object has a mask
    w.ask.script = [QMessageBox.No]
    assert not w.delete_object("spleen")
    w.ask.script = [QMessageBox.Yes]
    assert w.delete_object("spleen")
    assert w.labels.names == ("liver",) and w.current == "liver"
    assert w.delete_object("liver")  # the last: a fresh empty one
    assert w.labels.names == ("Segment_1",) and w.session.mask is None


# -- brushes -------------------------------------------------------------------------


def test_paint_stroke_then_undo_restores_the_mask_exactly(two_discs, qtbot):
    w, path, a, b = two_discs
    view = segment(qtbot, w, MARGIN_A)
    s = w.session
    before, prob_before = s.mask.copy(), s.probability.copy()
    w.set_tool("paint")
    w.brush_box.setValue(1.0)
    stroke(qtbot, view, (40, 5), (40, 20))  # far from both discs
    painted = s.mask.copy()
    assert s.edits == 1 and painted[40, 5:21].all() and painted[39, 10] == 1
    assert painted[43, 10] == 0  # radius 1: rows 39..41 only
    assert np.array_equal(painted[:30], before[:30])
    assert np.array_equal(w.state.mask, painted)  # the overlay shows it
    qtbot.keyClick(view, Qt.Key_Z, Qt.ControlModifier)
    assert np.array_equal(s.mask, before) and np.array_equal(s.probability, prob_before)
    assert s.edits == 0
    qtbot.keyClick(view, Qt.Key_Z, Qt.ControlModifier | Qt.ShiftModifier)
    assert np.array_equal(s.mask, painted)


def test_erase_tool_and_right_drag_of_paint_erase(two_discs, qtbot):
    w, path, a, b = two_discs
    view = segment(qtbot, w, MARGIN_A)
    s = w.session
    before = s.mask.copy()
    assert before[14, 10:23].all()
    w.set_tool("erase")
    w.brush_box.setValue(0.0)
    stroke(qtbot, view, (14, 10), (14, 22))
    assert not s.mask[14, 10:23].any() and s.mask[12, 16] == 1
    erased = s.mask.copy()
    w.set_tool("paint")
    stroke(qtbot, view, (12, 10), (12, 22), Qt.RightButton)  # right-drag of paint erases
    assert not s.mask[12, 10:23].any() and s.edits == 2
    qtbot.keyClick(view, Qt.Key_Z, Qt.ControlModifier)
    assert np.array_equal(s.mask, erased)
    qtbot.keyClick(view, Qt.Key_Z, Qt.ControlModifier)
    assert np.array_equal(s.mask, before)


def test_painting_a_new_object_starts_it_and_undo_empties_it(two_discs, qtbot):
    w, path, a, b = two_discs
    view = w.views[("2d", 0)]
    w.set_tool("paint")
    w.brush_box.setValue(2.0)
    stroke(qtbot, view, (30, 40), (34, 48))
    s = w.session
    assert s.mask is not None and s.mask[32, 44] == 1 and s.edits == 0
    qtbot.keyClick(view, Qt.Key_Z, Qt.ControlModifier)
    assert s.mask is None


def test_save_clicks_after_painting_is_refused_with_a_reason(two_discs, qtbot, tmp_path):
    w, path, a, b = two_discs
    view = segment(qtbot, w, MARGIN_A)
    w.set_tool("paint")
    stroke(qtbot, view, (40, 5), (40, 9))
    target = tmp_path / "out.clicks.json"
    assert not w.save_clicks(target)
    assert not target.exists() and "brush edit" in w.last_error
    w._error_box.close()
    qtbot.keyClick(view, Qt.Key_Z, Qt.ControlModifier)
    assert w.save_clicks(target) and target.is_file()


# -- label maps ----------------------------------------------------------------------


def test_load_a_label_map_and_save_it_back_with_names_and_colours(two_discs, qtbot, tmp_path):
    w, path, a, b = two_discs
    image = midseg.read_image(path)
    labels = (a * 3 + b * 7).astype(np.uint8)
    segs = [Segment(3, "left kidney", (0.2, 0.4, 0.9)), Segment(7, "spleen", (0.9, 0.1, 0.5))]
    src = tmp_path / "organs.seg.nrrd"
    write_labelmap(src, labels, like=image, segments=segs)
    assert w.load_labelmap(src)
    qtbot.waitUntil(lambda: not w.jobs.busy and "spleen" in (w.labels.names or ()), timeout=10_000)
    assert w.labels.names == ("left kidney", "spleen")  # the empty start object is gone
    assert w.current == "left kidney" and w.state.tool == "refine"
    assert np.array_equal(w.labels.object("spleen").mask, b)
    view = w.views[("2d", 0)]
    assert overlay_rgb(view, B_CENTRE)[:3] == (230, 26, 128)

    # edit one, save as .seg.nrrd and as NIfTI + sidecar: names, colours, values survive
    w.set_tool("erase")
    w.brush_box.setValue(0.0)
    stroke(qtbot, view, (14, 9), (14, 23))
    out = tmp_path / "out" / "organs_edit.seg.nrrd"
    assert w.save_labelmap(out) and not w.dirty
    back, back_segs = read_labelmap(out)
    assert [(s.value, s.name) for s in back_segs] == [(3, "left kidney"), (7, "spleen")]
    assert np.allclose([s.color for s in back_segs], [s.color for s in segs], atol=1e-3)
    expect = labels.copy()
    expect[14, 9:24] = 0
    got = np.asarray(back.array)
    assert np.array_equal(got, expect), np.argwhere(got != expect).tolist()
    nii = tmp_path / "out" / "organs.nii.gz"
    assert w.save_labelmap(nii)
    back2, segs2 = read_labelmap(nii)
    assert np.array_equal(np.asarray(back2.array), expect)
    assert [(s.value, s.name) for s in segs2] == [(3, "left kidney"), (7, "spleen")]


def test_objects_beyond_the_palette_still_get_colours_of_their_own(two_discs):
    w, path, a, b = two_discs
    for k in range(40):
        assert w.add_object(f"o{k}") is not None, w.last_error
    colors = [w.labels.segment_of(n).color for n in w.labels.names]
    assert len(set(colors)) == len(colors)  # was: every object from the 9th on
    assert all(0.0 <= c <= 1.0 for rgb in colors for c in rgb)


def test_a_label_map_loaded_into_a_new_image_keeps_its_label_values(two_discs, qtbot, tmp_path):
    # values 1 and 2, as most label maps have them: the empty start object (value 1) must
    # not push them to 2 and 3, or a re-saved map would no longer mean what it meant
    w, path, a, b = two_discs
    image = midseg.read_image(path)
    labels = (a * 1 + b * 2).astype(np.uint8)
    src = tmp_path / "organs12.seg.nrrd"
    write_labelmap(
        src,
        labels,
        like=image,
        segments=[Segment(1, "liver", (0.9, 0.2, 0.2)), Segment(2, "spleen")],
    )
    assert w.load_labelmap(src)
    qtbot.waitUntil(lambda: not w.jobs.busy and "spleen" in (w.labels.names or ()), timeout=10_000)
    assert w.labels.names == ("liver", "spleen")
    assert [w.labels.segment_of(n).value for n in w.labels.names] == [1, 2]
    assert np.array_equal(w.labels.labelmap(), labels)
    out = tmp_path / "resaved.nii.gz"
    assert w.save_labelmap(out)
    assert np.array_equal(np.asarray(read_labelmap(out)[0].array), labels)


def test_a_label_map_cropped_to_its_objects_is_placed_on_the_image(two_discs, qtbot, tmp_path):
    # as 3D Slicer 4.11 saved .seg.nrrd: the image's grid, cropped to the segments
    w, path, a, b = two_discs
    image = midseg.read_image(path)
    labels = (a * 1 + b * 2).astype(np.uint8)
    crop = labels[5:42, 6:55]
    origin = (image.origin[0] + 5 * image.spacing[0], image.origin[1] + 6 * image.spacing[1])
    small = midseg.Image(crop, spacing=image.spacing, origin=origin)
    src = tmp_path / "cropped.seg.nrrd"
    write_labelmap(src, crop, like=small, segments=[Segment(1, "liver"), Segment(2, "spleen")])
    assert w.load_labelmap(src)
    qtbot.waitUntil(lambda: not w.jobs.busy and "spleen" in (w.labels.names or ()), timeout=10_000)
    assert w.last_error is None
    assert np.array_equal(w.labels.labelmap(), labels)


def test_a_label_map_with_nothing_to_load_keeps_the_start_object(two_discs, qtbot, tmp_path):
    w, path, a, b = two_discs
    image = midseg.read_image(path)
    src = tmp_path / "empty.seg.nrrd"
    write_labelmap(src, np.zeros(SHAPE, np.uint8), like=image, segments=[Segment(1, "liver")])
    start = w.labels.names
    assert w.load_labelmap(src)
    qtbot.waitUntil(lambda: not w.jobs.busy and w.last_error is not None, timeout=10_000)
    assert "no labelled voxel" in w.last_error
    assert w.labels.names == start and w.current == start[0]
    assert w.labels.segment_of(start[0]).value == 1


def test_load_mask_as_object_and_a_label_map_of_another_shape_is_refused(
    two_discs, qtbot, tmp_path
):
    w, path, a, b = two_discs
    image = midseg.read_image(path)
    mpath = tmp_path / "tumour_mask.nii.gz"
    midseg.write_mask(mpath, b, like=image)
    assert w.load_mask(mpath)
    qtbot.waitUntil(lambda: not w.jobs.busy and "tumour_mask" in w.labels.names, timeout=10_000)
    assert w.current == "tumour_mask" and np.array_equal(w.session.mask, b)

    small = tmp_path / "small.nii.gz"
    midseg.write_image(small, midseg.Image(np.ones((10, 12), np.uint8)))
    assert w.load_labelmap(small)
    qtbot.waitUntil(lambda: not w.jobs.busy, timeout=10_000)
    assert "shape (10, 12)" in w.last_error and "(48, 64)" in w.last_error
    assert w.labels.names == ("tumour_mask",)


@needs_refine
def test_two_objects_are_autosaved_and_restored(two_discs, qtbot, tmp_path):
    w, path, a, b = two_discs
    segment(qtbot, w, MARGIN_A)
    w.add_object("second")
    segment(qtbot, w, MARGIN_B)
    masks = {n: w.labels.object(n).mask.copy() for n in w.labels.names}
    w2 = MainWindow(model=FakeModel(2), autosave_dir=tmp_path / "cache")
    w2.ask = Answers()
    w2.ask.script = [QMessageBox.Yes]
    qtbot.addWidget(w2)
    w2.open_image(path)
    qtbot.waitUntil(lambda: not w2.jobs.busy and w2.session is not None, timeout=10_000)
    assert w2.labels.names == ("Segment_1", "second")
    for n, m in masks.items():
        assert np.array_equal(w2.labels.object(n).mask, m)


def test_label_session_rename_and_colour_keep_order_and_check_input(two_discs):
    w, path, a, b = two_discs
    ls = w.labels
    ls.add("b")
    ls.add("c")
    ls.rename("b", "bee")
    assert ls.names == ("Segment_1", "bee", "c") and ls.segment_of("bee").value == 2
    with pytest.raises(midseg.errors.InvalidInputError, match="exists already"):
        ls.rename("bee", "c")
    with pytest.raises(midseg.errors.InvalidInputError, match="name"):
        ls.rename("bee", " padded ")
    with pytest.raises(midseg.errors.InvalidInputError, match="no object named"):
        ls.rename("nope", "x")
    ls.set_color("c", (0, 0.5, 1))
    assert ls.segment_of("c").color == (0.0, 0.5, 1.0)
    with pytest.raises(midseg.errors.InvalidInputError, match="colour"):
        ls.set_color("c", (2, 0, 0))


# -- per-slice 2D mode ---------------------------------------------------------------


@pytest.fixture
def ball_volume(monkeypatch, qtbot, tmp_path):
    monkeypatch.setattr(midseg.predict, "predict_probability", fake_predict)
    shape = (12, 40, 44)
    g = np.indices(shape, dtype=float)
    truth = (((g[0] - 6) / 4) ** 2 + ((g[1] - 20) / 9) ** 2 + ((g[2] - 22) / 10) ** 2 <= 1).astype(
        np.uint8
    )
    arr = (truth + np.random.default_rng(2).normal(scale=0.04, size=shape)).astype(np.float32)
    path = tmp_path / "ball.nii.gz"
    midseg.write_image(path, midseg.Image(arr, spacing=(2.0, 1.0, 1.0)))
    w = MainWindow(model=FakeModel(3), autosave=False)
    w.slice_model_spec = FakeModel(2)
    w.ask = Answers()
    qtbot.addWidget(w)
    w.resize(1300, 640)
    w.show()
    qtbot.waitExposed(w)
    assert w.open_image(path)
    qtbot.waitUntil(lambda: not w.jobs.busy and w.session is not None, timeout=10_000)
    return w, truth


@needs_refine
def test_slice_mode_writes_the_2d_result_into_one_slice(ball_volume, qtbot):
    w, truth = ball_volume
    w.set_slice_mode(True)
    assert w.slice_mode
    view = w.views[("axial", 0)]
    w.state.set_cursor((6, 20, 22))
    for p in [(6, 12, 22), (6, 28, 22), (6, 20, 13), (6, 20, 31)]:
        click(qtbot, view, p)
    assert w.run_segment()
    wait_idle(qtbot, w)
    s = w.session
    assert s.mask is not None, w.last_error
    assert s.mask[6, 20, 22] == 1 and s.mask[6].sum() > 100
    assert s.mask.sum() == s.mask[6].sum()  # only that slice is written
    slice6 = s.mask[6].copy()
    assert w._slice_model is not None and w._slice_model.spatial_dims == 2

    # a click on the slice refines the 2D session and rewrites the slice: one step
    click(qtbot, view, (6, 3, 3), Qt.LeftButton)
    wait_idle(qtbot, w)
    assert s.mask[6, 3, 3] == 1 and s.mask.sum() == s.mask[6].sum()
    assert s.edits == 1 and len(s.rounds) == 0  # a brush-like edit of the 3D object
    qtbot.keyClick(view, Qt.Key_Z, Qt.ControlModifier)
    assert np.array_equal(s.mask[6], slice6)
    # after the undo the 2D session no longer matches the slice: clicks are refused
    click(qtbot, view, (6, 3, 3), Qt.LeftButton)
    wait_idle(qtbot, w)
    assert np.array_equal(s.mask[6], slice6)

    # margin points on two slices are refused with a reason
    w.set_tool("margin")
    w.state.set_cursor((4, 20, 22))
    for p in [(4, 12, 22), (4, 28, 22), (5, 20, 13), (4, 20, 31)]:
        w.add_margin_point(p)
    assert not w.run_segment()
    assert "one axial slice" in w.last_error and "[4, 5]" in w.last_error


# -- DICOM-SEG -----------------------------------------------------------------------


def _dicom_series(folder):
    """The small CT series of tests/test_dicomseg.py (one helper, not a copy)."""
    import importlib.util as iu
    from pathlib import Path

    spec = iu.spec_from_file_location(
        "_dicomseg_helpers", Path(__file__).resolve().parents[1] / "test_dicomseg.py"
    )
    module = iu.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module._series(folder)


def test_dicom_series_objects_saved_as_dicom_seg_and_loaded_back(monkeypatch, qtbot, tmp_path):
    pytest.importorskip("highdicom")
    monkeypatch.setattr(midseg.predict, "predict_probability", fake_predict)
    _dicom_series(tmp_path / "ct")
    windows = []
    for _ in range(2):
        w = MainWindow(model=FakeModel(3), autosave=False)
        w.ask = Answers()
        qtbot.addWidget(w)
        w.resize(1200, 600)
        w.show()
        assert w.open_image(tmp_path / "ct")
        qtbot.waitUntil(lambda w=w: not w.jobs.busy and w.session is not None, timeout=10_000)
        windows.append(w)
    w, w2 = windows
    assert w.state.shape == (5, 16, 20)
    z = np.zeros((5, 16, 20), np.uint8)
    a_vox = np.argwhere(np.ones((2, 4, 5), bool)) + (1, 3, 4)
    b_vox = np.argwhere(np.ones((2, 3, 3), bool)) + (2, 10, 14)
    w.rename_object("Segment_1", "spleen")
    assert w.paint_stroke(a_vox, 1)
    w.add_object("kidney")
    assert w.paint_stroke(b_vox, 1)
    target = tmp_path / "out" / "organs.dcm"
    assert w.save_labelmap(target), w.last_error
    assert w2.load_labelmap(target)
    qtbot.waitUntil(lambda: not w2.jobs.busy and "kidney" in w2.labels.names, timeout=10_000)
    assert w2.labels.names == ("spleen", "kidney")
    expect_a, expect_b = z.copy(), z.copy()
    expect_a[tuple(a_vox.T)] = 1
    expect_b[tuple(b_vox.T)] = 1
    assert np.array_equal(w2.labels.object("spleen").mask, expect_a)
    assert np.array_equal(w2.labels.object("kidney").mask, expect_b)
    for name in ("spleen", "kidney"):
        assert np.allclose(
            w2.labels.segment_of(name).color, w.labels.segment_of(name).color, atol=0.02
        )


def test_dicom_seg_needs_an_image_from_a_dicom_series(two_discs, qtbot, tmp_path):
    w, path, a, b = two_discs
    w.paint_stroke(np.argwhere(a), 1)
    assert not w.save_labelmap(tmp_path / "x.dcm")
    assert "DICOM series" in w.last_error and not (tmp_path / "x.dcm").exists()


# -- the scripted session on the real chest CT -----------------------------------------


@pytest.mark.data
@needs_refine
def test_scripted_gui_session_on_the_chest_ct(shared_data, tmp_path):
    """scripts/gui_session.py end to end (offscreen here; under Xvfb for the screenshots)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    run = subprocess.run(
        [
            sys.executable,
            str(repo / "scripts" / "gui_session.py"),
            "--data",
            str(shared_data),
            "--out",
            str(tmp_path / "out"),
            "--shots",
            str(tmp_path / "shots"),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "undo: back to the painted mask; the tumour untouched" in run.stdout
    back, segs = read_labelmap(tmp_path / "out" / "lung1_structures.seg.nrrd")
    assert [s.name for s in segs] == ["tumour", "spinal cord"]
    for name in ("gui-objects.png", "gui-paint.png"):
        size = (tmp_path / "shots" / name).stat().st_size
        assert 20_000 < size < 300_000


def test_opening_one_file_of_a_dicom_series_opens_the_series(monkeypatch, qtbot, tmp_path):
    # File > Open on one slice of a series gave a one-slice image (2D) that could not be
    # saved as a DICOM-SEG of its series; viewers open the whole series
    pytest.importorskip("highdicom")
    monkeypatch.setattr(midseg.predict, "predict_probability", fake_predict)
    _dicom_series(tmp_path / "ct")
    w = MainWindow(model=FakeModel(3), autosave=False)
    w.ask = Answers()
    qtbot.addWidget(w)
    w.show()
    one = sorted((tmp_path / "ct").glob("*.dcm"))[2]
    assert w.open_image(one)
    qtbot.waitUntil(lambda: not w.jobs.busy and w.session is not None, timeout=10_000)
    assert w.state.shape == (5, 16, 20)
    assert w.image_path == str(tmp_path / "ct")
    assert w.paint_stroke(np.argwhere(np.ones((2, 3, 3), bool)) + (1, 4, 4), 1)
    assert w.save_labelmap(tmp_path / "out" / "seg.dcm"), w.last_error
