"""Pure view geometry of the GUI (midseg.gui.planes, midseg.gui.sidecar): no display needed."""

from __future__ import annotations

import os
import itertools

import numpy as np
import pytest

from midseg.gui.planes import (
    ViewTransform,
    auto_window,
    boundary,
    plane_for,
    planes_for,
    stroke_pixels,
    window_to_uint8,
)
from midseg.gui import sidecar
from midseg.gui.sidecar import AUTOSAVE_SUFFIX, autosave_path

SHAPE = (5, 6, 7)  # (z, y, x), all different so a swapped axis shows
VOL = np.arange(np.prod(SHAPE)).reshape(SHAPE)

# direction cosines (array order, column j = physical direction of array axis j)
DIRECTIONS = {
    "identity": np.eye(3),
    "flip_all": -np.eye(3),
    "flip_y": np.diag([1.0, -1.0, 1.0]),
}


@pytest.mark.parametrize("direction", list(DIRECTIONS), ids=list(DIRECTIONS))
@pytest.mark.parametrize("name", ["axial", "coronal", "sagittal"])
def test_slice_pixels_are_the_voxels_to_voxel_names(name, direction):
    """What a view shows at (row, col) is exactly the voxel a click there is mapped to."""
    plane = plane_for(name, DIRECTIONS[direction])
    for s in range(plane.n_slices(SHAPE)):
        sl = plane.slice_of(VOL, s)
        assert sl.shape == plane.size(SHAPE)
        for r, c in itertools.product(range(sl.shape[0]), range(sl.shape[1])):
            voxel = plane.to_voxel(r, c, s, SHAPE)
            assert sl[r, c] == VOL[voxel]
            assert plane.from_voxel(voxel, SHAPE) == (r, c, s)


def test_plane_axes_and_radiological_orientation():
    axial, coronal, sagittal = planes_for(3)
    # axial: rows y, columns x, slices z; stored orientation for an LPS identity image
    assert (axial.row_axis, axial.col_axis, axial.normal_axis) == (1, 2, 0)
    assert not axial.flip_rows and not axial.flip_cols
    # coronal and sagittal: z runs up the screen (superior at the top)
    assert (coronal.row_axis, coronal.col_axis, coronal.normal_axis) == (0, 2, 1)
    assert (sagittal.row_axis, sagittal.col_axis, sagittal.normal_axis) == (0, 1, 2)
    assert coronal.flip_rows and sagittal.flip_rows
    assert coronal.to_voxel(0, 0, 3, SHAPE) == (SHAPE[0] - 1, 3, 0)
    # an image stored with reversed axes is shown the same way round
    flipped = plane_for("axial", -np.eye(3))
    assert flipped.flip_rows and flipped.flip_cols
    assert plane_for("coronal", -np.eye(3)).flip_rows is False


def test_2d_plane_is_identity():
    (plane,) = planes_for(2)
    img = np.arange(12).reshape(3, 4)
    assert np.array_equal(plane.slice_of(img, None), img)
    assert plane.to_voxel(2, 3, 0, img.shape) == (2, 3)
    assert plane.from_voxel((2, 3), img.shape) == (2, 3, None)


def test_pixel_size_follows_spacing():
    spacing = (3.0, 0.5, 0.8)
    axial, coronal, sagittal = planes_for(3)
    assert axial.pixel_size(spacing) == (0.5, 0.8)
    assert coronal.pixel_size(spacing) == (3.0, 0.8)
    assert sagittal.pixel_size(spacing) == (3.0, 0.5)


def test_view_transform_fits_and_keeps_the_physical_aspect():
    # 8 rows of 2 mm, 30 columns of 1 mm in a 300x300 widget: width limits, 10 px/mm
    tf = ViewTransform((8, 30), (2.0, 1.0), (300, 300))
    assert tf.scale == (10.0, 20.0)  # a row is drawn twice as tall as a column is wide
    assert tf.image_to_widget(0, 0) == (0.0, 70.0)
    assert tf.image_to_widget(8, 30) == (300.0, 230.0)
    assert tf.pixel_at(5, 80) == (0, 0)
    assert tf.pixel_at(295, 215) == (7, 29)
    assert tf.pixel_at(150, 60) is None  # above the image
    r, c = tf.widget_to_image(*tf.image_to_widget(3.25, 17.5))
    assert (r, c) == pytest.approx((3.25, 17.5))


def test_zoom_keeps_the_point_under_the_pointer_and_pan_moves_it():
    tf = ViewTransform((40, 50), (1.0, 1.0), (200, 160))
    about = (37.0, 121.0)
    before = tf.widget_to_image(*about)
    zoomed = tf.zoomed(2.5, about=about)
    assert zoomed.zoom == 2.5
    assert zoomed.widget_to_image(*about) == pytest.approx(before)
    panned = zoomed.panned(10, -4)
    x, y = zoomed.image_to_widget(*before)
    assert panned.image_to_widget(*before) == pytest.approx((x + 10, y - 4))
    assert tf.zoomed(1e6).zoom == 64.0  # clamped


def test_window_to_uint8_is_linear_and_clipped():
    out = window_to_uint8(np.array([-10.0, 0.0, 50.0, 100.0, 200.0]), level=50, width=100)
    assert out.dtype == np.uint8 and out.flags.c_contiguous
    assert out.tolist() == [0, 0, 127, 255, 255]


def test_auto_window_spans_percentiles_and_survives_constant_images():
    level, width = auto_window(np.arange(1001, dtype=float))
    assert level == pytest.approx(500) and width == pytest.approx(980)
    level, width = auto_window(np.full((4, 4), 7.0))
    assert width > 0 and level - width / 2 <= 7 <= level + width / 2


def test_stroke_pixels_cover_the_path_and_stay_inside():
    pix = stroke_pixels([(2.5, 0.5), (2.5, 9.5)], 0, (5, 10))
    assert pix.tolist() == [[2, c] for c in range(10)]  # a horizontal line, no gaps
    thick = stroke_pixels([(2.5, 0.5), (2.5, 9.5)], 1, (5, 10))
    assert {tuple(p) for p in thick} == {(r, c) for r in (1, 2, 3) for c in range(10)}
    edge = stroke_pixels([(0.2, 0.2)], 2, (5, 10))
    assert edge.min() >= 0 and len(edge) == len(np.unique(edge, axis=0))
    assert stroke_pixels([], 3, (5, 5)).shape == (0, 2)


def test_boundary_is_the_outline():
    m = np.zeros((6, 6), np.uint8)
    m[1:5, 1:5] = 1
    b = boundary(m)
    assert b.sum() == 12 and not b[2:4, 2:4].any() and b[1, 1] and b[4, 4]


def test_autosave_beside_the_image_or_in_the_cache(tmp_path, monkeypatch):
    img = tmp_path / "case.nii.gz"
    img.write_bytes(b"")
    assert autosave_path(img) == tmp_path / ("case.nii.gz" + AUTOSAVE_SUFFIX)
    two = autosave_path(img, with_images=[str(tmp_path / "ct.nii.gz")])
    assert two == tmp_path / ("case.nii.gz+ct.nii.gz" + AUTOSAVE_SUFFIX)  # its own file
    # a read-only folder (e.g. the shared data) is never written to
    monkeypatch.setattr(sidecar, "_writable", lambda folder: False)
    a = autosave_path(img, cache_dir=tmp_path / "cache")
    assert a.parent == tmp_path / "cache"
    assert a.name.startswith("case.nii.gz-") and a.name.endswith(AUTOSAVE_SUFFIX)
    other = tmp_path / "other" / "case.nii.gz"
    assert autosave_path(other, cache_dir=tmp_path / "cache") != a  # same name, other folder


def test_autosave_avoids_a_writable_folder_owned_by_someone_else(tmp_path, monkeypatch):
    img = tmp_path / "case.nii.gz"
    img.write_bytes(b"")
    monkeypatch.setattr(os, "getuid", lambda: tmp_path.stat().st_uid + 1, raising=False)
    a = autosave_path(img, cache_dir=tmp_path / "mine")
    assert a.parent == tmp_path / "mine"
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert sidecar.default_data_dir() == tmp_path / "data" / "midseg" / "autosave"


def test_axial_is_normal_to_head_foot_for_a_sagittal_acquisition():
    """Array axis 0 runs left-right (a sagittal series): 'axial' must still be the plane
    normal to the head-foot axis, shown with posterior down the rows and left across."""
    from midseg.gui.planes import plane_for

    # rows of d: physical S, P, L (array order of physical coordinates); column j: axis j
    d = np.array(
        [
            [0.0, 0.0, 1.0],  # array axis 2 runs along S
            [0.0, 1.0, 0.0],  # array axis 1 runs along P
            [1.0, 0.0, 0.0],
        ]
    )  # array axis 0 runs along L
    axial = plane_for("axial", d)
    assert axial.normal_axis == 2 and axial.row_axis == 1 and axial.col_axis == 0
    sagittal = plane_for("sagittal", d)
    assert sagittal.normal_axis == 0
    assert plane_for("axial").normal_axis == 0  # the usual acquisition is unchanged


def test_orientation_letters_name_the_patient_directions_at_the_edges():
    from midseg.gui.planes import orientation_letters, plane_for

    axial = orientation_letters(plane_for("axial"))
    assert axial == {"top": "A", "bottom": "P", "left": "R", "right": "L"}
    coronal = orientation_letters(plane_for("coronal"))
    assert coronal["top"] == "S" and coronal["bottom"] == "I" and coronal["right"] == "L"
    sagittal = orientation_letters(plane_for("sagittal"))
    assert sagittal["top"] == "S" and sagittal["left"] == "A" and sagittal["right"] == "P"
    assert orientation_letters(plane_for("2d")) is None
