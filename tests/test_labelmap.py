"""Label maps with named, coloured segments (midseg.labelmap): .seg.nrrd and NIfTI + sidecar."""

import json

import numpy as np
import pytest

from midseg import Image, write_mask
from midseg import write_image as midseg_write_image
from midseg.errors import InvalidInputError
from midseg.labelmap import SIDECAR_SUFFIX, Segment, read_labelmap, write_labelmap

pytest.importorskip("slicerio")


@pytest.fixture
def two_objects():
    lab = np.zeros((6, 20, 30), np.uint8)
    lab[1:4, 2:10, 3:12] = 1
    lab[2:5, 12:18, 15:28] = 2
    like = Image(
        np.zeros(lab.shape, np.float32),
        spacing=(3.0, 0.8, 0.7),
        origin=(10.0, -20.0, 5.0),
        direction=np.diag([1.0, -1.0, 1.0]),
    )
    segs = [Segment(1, "spleen", (1.0, 0.0, 0.0)), Segment(2, "left kidney", (0.0, 0.5, 1.0))]
    return lab, like, segs


def test_seg_nrrd_round_trip_keeps_names_colours_values_and_geometry(tmp_path, two_objects):
    import SimpleITK as sitk

    lab, like, segs = two_objects
    path = tmp_path / "two.seg.nrrd"
    write_labelmap(path, lab, like=like, segments=segs)
    image, back = read_labelmap(path)
    np.testing.assert_array_equal(image.array, lab)
    assert back == segs
    assert image.spacing == like.spacing and image.origin == like.origin
    np.testing.assert_allclose(image.direction, like.direction)
    header = path.read_bytes()[:2000].decode("latin1")
    for line in (
        "Segment0_Name:=spleen",
        "Segment1_Name:=left kidney",
        "Segment1_LabelValue:=2",
        "Segment0_Color:=1.0 0.0 0.0",
        "space: left-posterior-superior",
        "Segment0_Extent:=0 29 0 19 0 5",
    ):
        assert line in header, line
    # any NRRD reader sees the same voxels in the same place
    ref = sitk.ReadImage(str(path))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(ref), lab)
    assert ref.GetOrigin() == (5.0, -20.0, 10.0)


def test_nifti_label_map_keeps_its_segments_in_a_sidecar(tmp_path, two_objects):
    lab, like, segs = two_objects
    path = tmp_path / "two.nii.gz"
    write_labelmap(path, lab, like=like, segments=segs)
    side = json.loads((tmp_path / ("two.nii.gz" + SIDECAR_SUFFIX)).read_text())
    assert [s["name"] for s in side["segments"]] == ["spleen", "left kidney"]
    image, back = read_labelmap(path)
    np.testing.assert_array_equal(image.array, lab)
    assert back == segs


def test_a_2d_label_map_goes_to_seg_nrrd_as_one_slice_and_back(tmp_path):
    lab = np.zeros((20, 30), np.uint8)
    lab[5:9, 5:20] = 3
    like = Image(np.zeros(lab.shape, np.float32), spacing=(0.5, 0.25))
    write_labelmap(tmp_path / "a.seg.nrrd", lab, like=like, segments=[Segment(3, "lesion")])
    image, segs = read_labelmap(tmp_path / "a.seg.nrrd")
    np.testing.assert_array_equal(image.array, lab)  # one slice comes back 2D
    assert image.spacing == (0.5, 0.25)
    assert segs[0].value == 3 and segs[0].name == "lesion"


def test_write_mask_to_seg_nrrd_writes_one_named_segment(tmp_path, two_objects):
    lab, like, _ = two_objects
    write_mask(tmp_path / "m.seg.nrrd", lab == 1, like=like)
    image, segs = read_labelmap(tmp_path / "m.seg.nrrd")
    np.testing.assert_array_equal(image.array, (lab == 1).astype(np.uint8))
    assert [s.name for s in segs] == ["Segment_1"]


@pytest.mark.parametrize(
    "labels, segments, match",
    [
        ("unnamed", [Segment(1, "a")], "without a segment"),
        ("ok", [Segment(1, "a"), Segment(1, "b")], "share a value"),
        ("float", [Segment(1, "a"), Segment(2, "b")], "integers"),
    ],
)
def test_label_maps_that_do_not_fit_their_segments_are_refused(
    tmp_path, two_objects, labels, segments, match
):
    lab, like, _ = two_objects
    arr = {"unnamed": lab, "ok": lab, "float": lab.astype(np.float32)}[labels]
    with pytest.raises(InvalidInputError, match=match):
        write_labelmap(tmp_path / "x.seg.nrrd", arr, like=like, segments=segments)


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(value=0, name="a"), "1..65535"),
        (dict(value=1, name=" "), "name"),
        (dict(value=1, name="a", color=(2, 0, 0)), "colour"),
    ],
)
def test_bad_segments_are_refused(kw, match):
    with pytest.raises(InvalidInputError, match=match):
        Segment(**kw)


def test_names_outside_ascii_are_refused_in_seg_nrrd_and_kept_in_the_sidecar(tmp_path, two_objects):
    lab, like, _ = two_objects
    segs = [Segment(1, "naïve"), Segment(2, "肝臓")]
    with pytest.raises(InvalidInputError, match="ASCII"):
        write_labelmap(tmp_path / "u.seg.nrrd", lab, like=like, segments=segs)
    write_labelmap(tmp_path / "u.nii.gz", lab, like=like, segments=segs)
    assert [s.name for s in read_labelmap(tmp_path / "u.nii.gz")[1]] == ["naïve", "肝臓"]


def test_a_float_label_file_reads_as_integers_and_a_new_mask_drops_old_names(tmp_path, two_objects):
    lab, like, segs = two_objects
    midseg_write_image(tmp_path / "f.nii.gz", Image(lab.astype(np.float32), spacing=like.spacing))
    image, found = read_labelmap(tmp_path / "f.nii.gz")
    assert image.array.dtype == np.uint8 and [s.value for s in found] == [1, 2]
    write_labelmap(tmp_path / "s.nii.gz", lab, like=like, segments=segs)
    write_mask(tmp_path / "s.nii.gz", lab == 1, like=like)  # the sidecar is stale now
    assert [s.name for s in read_labelmap(tmp_path / "s.nii.gz")[1]] == ["Segment 1"]
    write_labelmap(tmp_path / "t.nii.gz", lab, like=like, segments=segs)
    midseg_write_image(tmp_path / "t.nii.gz", Image(lab, spacing=like.spacing))
    assert not (tmp_path / ("t.nii.gz" + SIDECAR_SUFFIX)).exists()  # write_image too


def test_seg_nrrd_goes_into_a_new_folder(tmp_path, two_objects):
    lab, like, segs = two_objects
    write_labelmap(tmp_path / "new" / "x.seg.nrrd", lab, like=like, segments=segs)
    assert (tmp_path / "new" / "x.seg.nrrd").is_file()


def test_a_sidecar_naming_one_value_twice_is_refused(tmp_path, two_objects):
    # two names for value 1: which one is the spleen? Refuse rather than keep the last
    lab, like, segs = two_objects
    path = tmp_path / "two.nii.gz"
    write_labelmap(path, lab, like=like, segments=segs)
    side = tmp_path / ("two.nii.gz" + SIDECAR_SUFFIX)
    doc = json.loads(side.read_text())
    doc["segments"].append({"value": 1, "name": "liver", "color": [0.0, 1.0, 0.0]})
    side.write_text(json.dumps(doc))
    with pytest.raises(InvalidInputError, match=r"damaged.*label value\(s\) \[1\] more than once"):
        read_labelmap(path)


def test_a_label_map_cropped_to_its_segments_goes_back_onto_the_image_grid(tmp_path, two_objects):
    # 3D Slicer 4.11 saved .seg.nrrd cropped to the segments' extent
    from midseg.labelmap import on_image_grid

    lab, like, segs = two_objects
    crop = lab[1:5, 2:18, 3:28]
    origin = np.asarray(like.origin) + np.asarray(like.direction) @ (
        np.asarray(like.spacing) * np.array([1, 2, 3])
    )
    small = Image(crop, spacing=like.spacing, origin=tuple(origin), direction=like.direction)
    write_labelmap(tmp_path / "crop.seg.nrrd", crop, like=small, segments=segs)
    back, _ = read_labelmap(tmp_path / "crop.seg.nrrd")
    np.testing.assert_array_equal(on_image_grid(back, like), lab)
    # half a voxel off, another spacing, or labels outside the image: not placed
    off = Image(crop, spacing=like.spacing, origin=tuple(origin + 0.4), direction=like.direction)
    assert on_image_grid(off, like) is None
    other = Image(crop, spacing=(3.0, 0.8, 0.75), origin=tuple(origin), direction=like.direction)
    assert on_image_grid(other, like) is None
    out = Image(lab, spacing=like.spacing, origin=tuple(origin), direction=like.direction)
    assert on_image_grid(out, like) is None
