"""The clicks-file format (midseg.clicks): building, converting, validating, reading, writing."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

import midseg
from midseg import clicks
from midseg.clicks import (
    CLICKS_FORMAT,
    CLICKS_SCHEMA,
    CLICKS_VERSION,
    READABLE_VERSIONS,
    check_clicks_geometry,
    clicks_document,
    clicks_from_dict,
    geometry_xyz,
    index_to_mm,
    mask_sha256,
    mm_to_index,
    model_ref,
    read_clicks,
    write_clicks,
)
from midseg.errors import GeometryMismatchError, InvalidInputError

PARAMS = {"lam": 5.0, "sigma": 0.1, "method": "ifgc"}


def image_2d():
    return midseg.Image(np.zeros((20, 30), np.float32), spacing=(0.7, 0.9), origin=(4.0, -6.0))


def image_3d():
    """Anisotropic, with an origin and a rotation about z, so that no axis is trivial."""
    a = np.deg2rad(30)
    rot_xyz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    return midseg.Image(
        np.zeros((6, 10, 12), np.float32),
        spacing=(2.5, 0.9, 0.8),
        origin=(-30.0, 12.5, 40.0),
        direction=rot_xyz[::-1, ::-1],
    )


def document(image, rounds=None):
    margin = np.array([[1] * image.ndim, [3] * image.ndim, [5] * image.ndim, [2] * image.ndim])
    if rounds is None:
        rounds = [
            (np.array([[4] * image.ndim]), np.zeros((0, image.ndim), np.int64), PARAMS),
            (
                np.zeros((0, image.ndim), np.int64),
                np.array([[0] * image.ndim]),
                {**PARAMS, "method": "gc", "lam": 0.5},
            ),
        ]
    return clicks_document(image, {"name": "tiny"}, PARAMS, margin, rounds)


def test_constants_name_the_format_and_its_versions():
    assert CLICKS_FORMAT == "midseg-clicks" and CLICKS_VERSION == 8
    assert READABLE_VERSIONS == (1, 2, 3, 4, 5, 6, 7, 8) and CLICKS_VERSION == max(
        READABLE_VERSIONS
    )
    assert CLICKS_SCHEMA.is_file() and json.loads(CLICKS_SCHEMA.read_text())


def test_session_re_exports_the_same_objects():
    session = pytest.importorskip("midseg.session")
    for name in (
        "CLICKS_FORMAT",
        "CLICKS_VERSION",
        "CLICKS_SCHEMA",
        "read_clicks",
        "geometry_xyz",
        "check_clicks_geometry",
    ):
        assert getattr(session, name) is getattr(clicks, name), name


@pytest.mark.parametrize("make", [image_2d, image_3d])
def test_document_stores_points_in_mm_and_validates(make):
    image = make()
    doc = document(image)
    assert list(doc) == [
        "format",
        "version",
        "coordinates",
        "image",
        "model",
        "parameters",
        "margin_points",
        "rounds",
    ]
    assert doc["image"] == {**geometry_xyz(image), "channels": 1}
    # the first margin point, (1, 1[, 1]) in array order, in (x, y[, z]) mm
    expected = image.index_to_physical(np.array([[1] * image.ndim], float))[0][::-1]
    np.testing.assert_allclose(doc["margin_points"][0], expected, atol=1e-6)
    assert doc["rounds"][0]["background"] == [] and doc["rounds"][1]["method"] == "gc"
    assert doc["rounds"][1]["lam"] == 0.5 and doc["parameters"] == PARAMS
    assert clicks_from_dict(json.loads(json.dumps(doc))) == doc  # valid as built


@pytest.mark.parametrize("make", [image_2d, image_3d])
def test_index_to_mm_and_back_is_the_identity(make):
    image = make()
    index = np.array([[0] * image.ndim, [1] * image.ndim, [4, 5] + [3] * (image.ndim - 2)])
    mm = index_to_mm(image, index)
    assert all(len(p) == image.ndim for p in mm)
    back = mm_to_index(image, mm, "margin_points")
    assert back.dtype == np.int64
    np.testing.assert_array_equal(back, index)
    assert index_to_mm(image, np.zeros((0, image.ndim))) == []
    assert mm_to_index(image, []).shape == (0, image.ndim)


def test_mm_to_index_names_what_is_wrong():
    image = image_2d()
    with pytest.raises(InvalidInputError, match="rounds.0..foreground: every point must be 2"):
        mm_to_index(image, [[1.0, 2.0], [3.0]], "rounds[0].foreground")
    with pytest.raises(InvalidInputError, match="must have 2 coordinates"):
        mm_to_index(image, [[1.0, 2.0, 3.0]])
    with pytest.raises(InvalidInputError, match="lies outside the image"):
        mm_to_index(image, [[5000.3, 10.1]])
    with pytest.raises(GeometryMismatchError, match="voxel centres"):
        mm_to_index(image, [[-6.0 + 0.45, 4.0]])


def test_geometry_xyz_is_in_simpleitk_order():
    geo = geometry_xyz(image_3d())
    assert geo["shape"] == [12, 10, 6] and geo["spacing"] == [0.8, 0.9, 2.5]
    assert geo["origin"] == [40.0, 12.5, -30.0]
    assert np.isclose(geo["direction"][0][1], -np.sin(np.deg2rad(30)))


def test_check_clicks_geometry_names_each_difference():
    doc = document(image_2d())
    check_clicks_geometry(doc, image_2d())  # the same image: no error
    other = midseg.Image(np.zeros((20, 30), np.float32), spacing=(0.7, 1.0), origin=(4.0, -6.0))
    with pytest.raises(GeometryMismatchError, match=r"spacing \[1.0, 0.7\] vs \[0.9, 0.7\]"):
        check_clicks_geometry(doc, other)
    two = midseg.Image(
        np.zeros((2, 20, 30), np.float32), spacing=(0.7, 0.9), origin=(4.0, -6.0), multichannel=True
    )
    with pytest.raises(GeometryMismatchError, match="channels 2 vs 1"):
        check_clicks_geometry(doc, two)
    bad = {**doc, "image": {**doc["image"], "spacing": ["a", "b"]}}
    with pytest.raises(InvalidInputError, match="clicks file: image: shape, spacing"):
        check_clicks_geometry(bad, image_2d())


def test_model_ref_hashes_the_weights_file(tmp_path):
    class Model:
        name = "m"
        path = tmp_path / "m.pt"

    Model.path.write_bytes(b"weights")
    assert model_ref(Model()) == {"name": "m", "sha256": hashlib.sha256(b"weights").hexdigest()}
    Model.path = tmp_path / "missing.pt"
    assert model_ref(Model()) == {"name": "m"}
    assert model_ref(None) == {"name": None}


def test_mask_sha256_hashes_the_mask_as_uint8():
    mask = np.zeros((3, 4), bool)
    mask[1, 2] = True
    expected = hashlib.sha256(mask.astype(np.uint8).tobytes()).hexdigest()
    assert mask_sha256(mask) == expected == mask_sha256(mask.astype(np.int64))
    assert mask_sha256(mask.T) != expected


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: {**d, "format": "other"}, "not a midseg clicks file: format is 'other'"),
        (lambda d: [d], "not a midseg clicks file: format is None"),
        (
            lambda d: {**d, "version": 9},
            r"version 9 is not supported \(this midseg reads versions "
            r"1, 2, 3, 4, 5, 6, 7, 8\)",
        ),
        (lambda d: {k: v for k, v in d.items() if k != "rounds"}, "lacks the 'rounds' entry"),
        (
            lambda d: {**d, "parameters": {**d["parameters"], "lam": "a"}},
            "clicks file: parameters.lam: 'a' is not of type 'number'",
        ),
        (
            lambda d: {**d, "rounds": [{**d["rounds"][0], "method": "nope"}]},
            r"clicks file: rounds\[0\].method: 'nope' is not one of",
        ),
        (lambda d: {**d, "margin_points": [[1e309, 0.0]]}, "clicks file"),
    ],
)
def test_clicks_from_dict_refuses_with_the_field_path(change, message):
    doc = json.loads(json.dumps(document(image_2d())))
    with pytest.raises(InvalidInputError, match=message):
        clicks_from_dict(change(doc))


@pytest.mark.parametrize("version, meant", [(1, "ifgc-paper"), (2, "ifgc-global")])
def test_older_versions_are_migrated(version, meant):
    doc = json.loads(json.dumps(document(image_2d())))
    old = {**doc, "version": version}
    new = clicks_from_dict(old)
    assert new["version"] == CLICKS_VERSION and new["upgraded_from_version"] == version
    assert new["parameters"]["method"] == meant
    assert [r["method"] for r in new["rounds"]] == [meant, "gc"]
    assert old["parameters"]["method"] == "ifgc"  # the input is left alone
    assert clicks_from_dict(doc) is doc and "upgraded_from_version" not in doc


def test_write_then_read_gives_the_document_back(tmp_path):
    doc = document(image_3d())
    path = tmp_path / "sub" / "a.clicks.json"
    write_clicks(path, doc)
    assert read_clicks(path) == json.loads(json.dumps(doc))
    assert path.read_text().startswith('{\n "format": "midseg-clicks"')  # indented by one
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.clicks.json"]  # no temporary


def test_read_clicks_names_the_file_and_the_field(tmp_path):
    missing = tmp_path / "none.json"
    with pytest.raises(InvalidInputError, match="no such clicks file"):
        read_clicks(missing)
    with pytest.raises(InvalidInputError, match="is a folder"):
        read_clicks(tmp_path)
    nan = tmp_path / "nan.json"
    nan.write_text('{"a": NaN}')
    with pytest.raises(InvalidInputError, match="holds NaN, which is not a number"):
        read_clicks(nan)
    binary = tmp_path / "bin.json"
    binary.write_bytes(b"\xff")
    with pytest.raises(InvalidInputError, match=r"is not UTF-8 text \(byte 0"):
        read_clicks(binary)
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(InvalidInputError, match="is not valid JSON"):
        read_clicks(broken)
    doc = json.loads(json.dumps(document(image_2d())))
    doc["parameters"]["sigma"] = "x"
    bad = tmp_path / "bad.json"
    write_clicks(bad, doc)
    with pytest.raises(InvalidInputError) as info:
        read_clicks(bad)
    assert str(info.value) == (
        f"clicks file {str(bad)!r}: parameters.sigma: 'x' is not of type 'number'"
    )


def test_replay_errors_name_the_file_and_the_field(tmp_path):
    from midseg.errors import InvalidInputError

    rng = np.random.default_rng(0)
    img = midseg.Image(rng.normal(size=(20, 30, 30)).astype(np.float32), spacing=(2.0, 1.0, 1.0))
    s = midseg.Session(img)
    s.segment([(5, 10, 10), (15, 20, 20), (10, 10, 20), (10, 20, 10), (10, 15, 15), (8, 12, 18)])
    path = tmp_path / "c.clicks.json"
    s.save_clicks(path)
    doc = json.loads(path.read_text())
    doc["margin_points"] = [pt[:2] for pt in doc["margin_points"]]  # 2D points, 3D image
    path.write_text(json.dumps(doc))
    with pytest.raises(InvalidInputError, match=r"c\.clicks\.json: clicks file: margin_points: "):
        midseg.Session.from_clicks(path, img)


def test_read_clicks_names_the_file_for_every_refusal(tmp_path):
    doc = json.loads(json.dumps(document(image_2d())))
    path = tmp_path / "future.clicks.json"
    path.write_text(json.dumps({**doc, "version": 9}))
    with pytest.raises(InvalidInputError, match=r"future\.clicks\.json'?: version 9 is not"):
        read_clicks(path)
    path.write_text(json.dumps({k: v for k, v in doc.items() if k != "rounds"}))
    with pytest.raises(InvalidInputError, match=r"future\.clicks\.json'?: lacks the 'rounds'"):
        read_clicks(path)


@pytest.mark.parametrize(
    "shape, floor", [([40, 30], 0.0), ([40, 30, 1], 0.0), ([1, 40, 30], 0.0), ([40, 30, 20], 0.8)]
)
def test_older_files_get_the_floor_of_the_dimensionality_they_were_computed_in(shape, floor):
    """A volume one voxel thick was segmented in 2D (floor 0), a real volume in 3D (0.8)."""
    doc = json.loads(json.dumps(document(image_2d())))
    doc["image"]["shape"] = shape
    new = clicks_from_dict({**doc, "version": 4})
    assert new["parameters"]["margin_floor"] == floor and new["parameters"]["claim_keep"] == 0
    assert new["parameters"]["min_click_depth"] == 1.0


def test_version_6_files_keep_their_depth_and_replay_without_the_boundary_band():
    doc = json.loads(json.dumps(document(image_2d())))
    doc["parameters"] = {**doc["parameters"], "min_click_depth": 2.0}
    new = clicks_from_dict({**doc, "version": 6})
    assert new["upgraded_from_version"] == 6 and new["version"] == 8
    assert new["parameters"]["band_reach"] == 0.0
    assert new["parameters"]["min_click_depth"] == 2.0
    for old in (3, 5):
        assert clicks_from_dict({**doc, "version": old})["parameters"]["band_reach"] == 0.0


def test_version_7_files_keep_their_band_and_replay_without_the_thick_slice_rule():
    doc = json.loads(json.dumps(document(image_2d())))
    doc["parameters"] = {**doc["parameters"], "min_click_depth": 2.0, "band_reach": 3.0}
    new = clicks_from_dict({**doc, "version": 7})
    assert new["upgraded_from_version"] == 7 and new["version"] == 8
    assert new["parameters"]["thick_slice_ratio"] == 0.0
    assert (new["parameters"]["band_reach"], new["parameters"]["min_click_depth"]) == (3.0, 2.0)
    for old in (1, 4, 6):
        params = clicks_from_dict({**doc, "version": old})["parameters"]
        assert params["thick_slice_ratio"] == 0.0 and params["band_reach"] == 0.0
