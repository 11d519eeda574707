"""3D Slicer point lists: read/write, conversion to and from clicks, `midseg markups`."""

from __future__ import annotations

import json

import numpy as np
import pytest

import midseg
from midseg import cli
from midseg.errors import InvalidInputError
from midseg.markups import (
    PLANE_TOLERANCE_MM,
    SLICER_SCHEMA,
    Markups,
    clicks_from_markups,
    markups_from_clicks,
    read_markups,
    write_markups,
)

from test_session import write_tiny_model  # a tiny untrained model with its card


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    return {dims: write_tiny_model(folder, dims) for dims in (2, 3)}


def phantom(dims):
    """A bright ellipse / ellipsoid with anisotropic spacing, an origin and (3D) a rotation.

    Returns the image and, in array order, interior margin points, one
    foreground and one background click.
    """
    rng = np.random.default_rng(5)
    if dims == 2:
        shape, c, r = (30, 36), (15, 18), (8, 11)
        geometry = {"spacing": (0.9, 0.7), "origin": (4.0, -6.0)}
    else:
        angle = np.deg2rad(30)
        rot_xyz = np.array(
            [[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]]
        )
        shape, c, r = (12, 20, 22), (6, 10, 11), (4, 6, 7)
        geometry = {
            "spacing": (2.5, 0.9, 0.8),
            "origin": (-30.0, 12.5, 40.0),
            "direction": rot_xyz[::-1, ::-1],
        }
    g = np.indices(shape, dtype=float)
    truth = sum(((gi - ci) / ri) ** 2 for gi, ci, ri in zip(g, c, r)) <= 1
    arr = truth + rng.normal(scale=0.1, size=shape)
    image = midseg.Image(arr.astype(np.float32), **geometry)
    margin = []
    for axis in range(dims):
        for sign in (-1, 1):
            p = list(c)
            p[axis] += sign * (r[axis] - 1)
            margin.append(p)
    fg = [list(c)]
    bg = [[1] * dims]
    return image, np.array(margin), np.array(fg), np.array(bg)


def lps(image, index):
    """LPS (x, y, z) mm of array-order (continuous) indices; z = 0 for a 2D image."""
    xy = image.index_to_physical(np.asarray(index, float))[:, ::-1]
    return np.column_stack([xy, np.zeros(len(xy))]) if image.ndim == 2 else xy


def jittered(image, index, rng):
    """Points inside the voxels of ``index`` but off their centres (and off the 2D plane)."""
    xyz = lps(image, np.asarray(index) + rng.uniform(-0.45, 0.45, size=np.shape(index)))
    if image.ndim == 2:
        xyz[:, 2] = rng.uniform(-0.4, 0.4, size=len(xyz))
    return xyz


# ---------------------------------------------------------------------------
# Slicer files
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("system", ["LPS", "RAS"])
def test_write_then_read_gives_the_same_lps_points(tmp_path, system):
    points = np.array([[12.25, -3.5, 40.125], [-7.0, 0.1, -2.75], [0.0, 1e-9, 3.0]])
    path = tmp_path / "sub" / "p.mrk.json"
    write_markups(
        path,
        points,
        name="margin",
        labels=["a", "b", "c"],
        coordinate_system=system,
        color=(1.0, 0.5, 0.0),
    )
    (m,) = read_markups(path)
    np.testing.assert_array_equal(m.points, points)
    assert m.name == "margin" and m.labels == ("a", "b", "c")
    raw = json.loads(path.read_text())
    assert raw["@schema"] == SLICER_SCHEMA
    node = raw["markups"][0]
    assert node["type"] == "Fiducial" and node["coordinateSystem"] == system
    assert node["display"]["selectedColor"] == [1.0, 0.5, 0.0]
    stored = np.array([cp["position"] for cp in node["controlPoints"]])
    flip = np.array([-1.0, -1.0, 1.0]) if system == "RAS" else np.ones(3)
    np.testing.assert_array_equal(stored, points * flip)
    assert [cp["id"] for cp in node["controlPoints"]] == ["1", "2", "3"]


def test_default_labels_follow_slicer_label_format(tmp_path):
    write_markups(tmp_path / "f.mrk.json", [[1, 2, 3], [4, 5, 6]], name="foreground")
    (m,) = read_markups(tmp_path / "f.mrk.json")
    assert m.labels == ("foreground-1", "foreground-2")


SLICER_RAS_FILE = """{
 "@schema": "https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/Markups/Resources/Schema/markups-schema-v1.0.3.json#",
 "markups": [{
  "type": "Fiducial", %s "coordinateUnits": "mm", "locked": false,
  "fixedNumberOfControlPoints": false, "labelFormat": "%%N-%%d", "lastUsedControlPointNumber": 4,
  "controlPoints": [
   {"id": "1", "label": "F-1", "description": "", "associatedNodeID": "vtkMRMLScalarVolumeNode1",
    "position": [10.5, -20.25, 3.0], "orientation": [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
    "selected": true, "locked": false, "visibility": true, "positionStatus": "defined"},
   {"id": "2", "label": "F-2", "description": "", "associatedNodeID": "",
    "position": "", "orientation": [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
    "selected": true, "locked": false, "visibility": true, "positionStatus": "undefined"},
   {"id": "3", "label": "F-3", "position": [1.0, 2.0, 3.0], "positionStatus": "preview"},
   {"id": "4", "label": "F-4", "position": [-1.0, 0.0, -7.5]}
  ],
  "measurements": [],
  "display": {"visibility": true, "opacity": 1.0, "color": [0.4, 1.0, 1.0]}
 }]
}
"""


@pytest.mark.parametrize(
    "system, flip",
    [('"coordinateSystem": "RAS",', (-1, -1, 1)), ("", (1, 1, 1))],
    ids=["RAS", "missing-is-LPS"],
)
def test_reads_a_slicer_file_and_skips_undefined_points(tmp_path, system, flip):
    path = tmp_path / "F.mrk.json"
    path.write_text(SLICER_RAS_FILE % system)
    (m,) = read_markups(path)
    assert m.name == "F"  # no "name" entry: the file name, as in Slicer
    assert m.labels == ("F-1", "F-4")  # undefined and preview points are skipped
    np.testing.assert_array_equal(
        m.points, np.array([[10.5, -20.25, 3.0], [-1.0, 0.0, -7.5]]) * flip
    )
    assert not m.points.flags.writeable


def _node(**changes):
    node = {
        "type": "Fiducial",
        "coordinateSystem": "LPS",
        "coordinateUnits": "mm",
        "controlPoints": [
            {"id": "1", "label": "P-1", "position": [1.0, 2.0, 3.0], "positionStatus": "defined"}
        ],
    }
    node.update(changes)
    return node


@pytest.mark.parametrize(
    "content, message",
    [
        ("this is not JSON {", "is not valid JSON"),
        (json.dumps({"@schema": SLICER_SCHEMA, "points": []}), "no 'markups' list"),
        (json.dumps({"markups": [_node()]}), "schema 1.x"),
        (
            json.dumps({"@schema": SLICER_SCHEMA, "markups": [_node(type="Curve")]}),
            r"markups node 1 .* has type 'Curve'; only point lists",
        ),
        (
            json.dumps({"@schema": SLICER_SCHEMA, "markups": [_node(), _node(type="ROI")]}),
            r"markups node 2 .* 'ROI'",
        ),
        (
            json.dumps({"@schema": SLICER_SCHEMA, "markups": [_node(coordinateUnits="um")]}),
            "only millimetres",
        ),
        (
            json.dumps({"@schema": SLICER_SCHEMA, "markups": [_node(coordinateSystem="IJK")]}),
            "'LPS' or 'RAS'",
        ),
        (
            json.dumps(
                {
                    "@schema": SLICER_SCHEMA,
                    "markups": [_node(controlPoints=[{"label": "P-1", "position": [1.0, 2.0]}])],
                }
            ),
            r"control point 1 \('P-1'\) has position \[1.0, 2.0\]; expected 3 finite numbers",
        ),
        (
            json.dumps(
                {
                    "@schema": SLICER_SCHEMA,
                    "markups": [
                        _node(controlPoints=[{"label": "P-1", "position": ["1", 2.0, 3.0]}])
                    ],
                }
            ),
            "expected 3 finite numbers",
        ),
    ],
    ids=[
        "not-json",
        "no-markups",
        "no-schema",
        "curve",
        "roi",
        "micrometres",
        "ijk",
        "two-coordinates",
        "string-coordinate",
    ],
)
def test_read_rejects_what_is_not_a_millimetre_point_list(tmp_path, content, message):
    path = tmp_path / "bad.mrk.json"
    path.write_text(content)
    with pytest.raises(InvalidInputError, match=message):
        read_markups(path)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"points_xyz": [[1, 2]]}, r"\(N, 3\) array"),
        ({"labels": ["only-one"]}, "1 labels for 2 points"),
        ({"coordinate_system": "IJK"}, "'LPS' or 'RAS'"),
        ({"color": (255, 0, 0)}, r"3 values in \[0, 1\]"),
        ({"name": ""}, "non-empty string"),
    ],
)
def test_write_rejects_bad_arguments(tmp_path, kwargs, message):
    args = {"points_xyz": [[1, 2, 3], [4, 5, 6]], "name": "p", **kwargs}
    with pytest.raises(InvalidInputError, match=message):
        write_markups(tmp_path / "p.mrk.json", args.pop("points_xyz"), **args)
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------------------
# clicks
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("dims", [2, 3], ids=["2d", "3d"])
def test_clicks_from_markups_snaps_to_voxel_centres_and_replays(dims, tiny_models):
    image, margin, fg, bg = phantom(dims)
    rng = np.random.default_rng(0)
    given = {
        k: jittered(image, idx, rng)
        for k, idx in (("margin", margin), ("foreground", fg), ("background", bg))
    }
    clicks, moved = clicks_from_markups(
        image, given["margin"], given["foreground"], given["background"], model=tiny_models[dims]
    )
    centres = np.concatenate([lps(image, idx) for idx in (margin, fg, bg)])
    expected = np.max(np.linalg.norm(np.concatenate(list(given.values())) - centres, axis=1))
    assert moved == pytest.approx(expected, abs=1e-9) and moved > 0

    session = midseg.Session.from_clicks(clicks, image, model=tiny_models[dims])
    np.testing.assert_array_equal(session.margin_points, margin)
    (round_,) = session.rounds
    np.testing.assert_array_equal(round_.foreground, fg)
    np.testing.assert_array_equal(round_.background, bg)
    assert session.clicks_dict() == clicks  # exactly what midseg itself would save


def test_clicks_from_markups_without_clicks_has_no_round():
    image, margin, _, _ = phantom(2)
    clicks, moved = clicks_from_markups(image, lps(image, margin))
    assert clicks["rounds"] == [] and moved == pytest.approx(0, abs=1e-9)
    assert clicks["model"]["name"] == "2d" and len(clicks["model"]["sha256"]) == 64
    assert np.array(clicks["margin_points"]).shape == (len(margin), 2)  # 2D: (x, y)


@pytest.mark.parametrize("dims", [2, 3], ids=["2d", "3d"])
def test_clicks_from_markups_names_a_point_outside_the_image(dims):
    image, margin, _, _ = phantom(dims)
    xyz = lps(image, margin)
    corner = np.array(image.shape) - 1
    xyz[1] = lps(image, [corner + 0.6])[0]  # just past the last voxel
    labels = tuple(f"M-{k}" for k in range(1, len(xyz) + 1))
    with pytest.raises(InvalidInputError, match=r"margin point 2 \('M-2'\) at LPS .* lies outside"):
        clicks_from_markups(image, Markups("M", xyz, labels))
    xyz[1] = lps(image, [corner + 0.45])[0]  # still inside the last voxel
    clicks_from_markups(image, Markups("M", xyz, labels))


def test_clicks_from_markups_2d_needs_points_on_the_image_plane():
    image, margin, fg, _ = phantom(2)
    off = lps(image, fg)
    off[0, 2] = PLANE_TOLERANCE_MM + 0.1
    with pytest.raises(
        InvalidInputError, match=r"foreground point 1 at LPS .* 0.6 mm off the plane"
    ):
        clicks_from_markups(image, lps(image, margin), foreground=off)


def test_clicks_from_markups_refuses_both_classes_in_one_voxel():
    image, margin, fg, _ = phantom(2)
    f = lps(image, fg)
    b = f + np.array([0.2, -0.1, 0.0])  # a few tenths of a mm away: the same voxel
    with pytest.raises(
        InvalidInputError, match="foreground point 1 and background point 1 fall in the same voxel"
    ):
        clicks_from_markups(image, lps(image, margin), foreground=f, background=b)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"margin": "first two"}, "at least 3 interior margin points, got 2"),
        ({"model": "3d"}, "is a 3D model but the image is 2D"),
        ({"method": "ifg"}, "method must be one of"),
        ({"background": [[1.0, 2.0]]}, r"background points must be an \(N, 3\) array"),
    ],
    ids=["two-margin-points", "3d-model", "unknown-method", "2d-background"],
)
def test_clicks_from_markups_rejects(change, message):
    image, margin, _, _ = phantom(2)
    xyz = lps(image, margin)
    kwargs = {**change, "margin": xyz[:2] if "margin" in change else xyz}
    with pytest.raises(InvalidInputError, match=message):
        clicks_from_markups(image, **kwargs)


def test_markups_from_clicks_merges_rounds_and_pads_2d(tiny_models):
    image, margin, fg, bg = phantom(2)
    session = midseg.Session(image, model=tiny_models[2])
    session.segment(margin)
    session.refine(foreground=fg)
    session.refine(foreground=margin[:1], background=bg)
    points = markups_from_clicks(session.clicks_dict())
    np.testing.assert_allclose(points["margin"], lps(image, margin), atol=1e-6)
    np.testing.assert_allclose(
        points["foreground"], lps(image, np.concatenate([fg, margin[:1]])), atol=1e-6
    )
    np.testing.assert_allclose(points["background"], lps(image, bg), atol=1e-6)
    assert np.all(points["margin"][:, 2] == 0)


def test_markups_export_only_the_clicks_in_force(tiny_models):
    # a background click on the voxel of an earlier foreground click overrides it: the
    # export must not put that point in both lists (it would not re-import as one round)
    image, margin, fg, bg = phantom(2)
    session = midseg.Session(image, model=tiny_models[2])
    session.segment(margin)
    session.refine(foreground=fg)
    session.refine(background=fg[:1])
    points = markups_from_clicks(session.clicks_dict())
    np.testing.assert_allclose(points["foreground"], lps(image, fg[1:]).reshape(-1, 3), atol=1e-6)
    np.testing.assert_allclose(points["background"], lps(image, fg[:1]), atol=1e-6)


# ---------------------------------------------------------------------------
# `midseg markups`
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("dims, system", [(2, "LPS"), (3, "RAS")], ids=["2d-LPS", "3d-RAS"])
def test_cli_export_then_import_replays_the_same_session(
    dims, system, tiny_models, tmp_path, capsys
):
    model = tiny_models[dims]
    image, margin, fg, bg = phantom(dims)
    session = midseg.Session(image, model=model)
    session.segment(margin)
    session.refine(foreground=fg, background=bg)
    session.save_clicks(tmp_path / "a.clicks.json")
    midseg.write_image(tmp_path / "img.mha", image)

    assert (
        cli.main(
            [
                "markups",
                "export",
                str(tmp_path / "a.clicks.json"),
                "--out-prefix",
                str(tmp_path / "case"),
                "--coordinate-system",
                system,
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    files = {k: tmp_path / f"case.{k}.mrk.json" for k in ("margin", "foreground", "background")}
    assert all(str(f) in out for f in files.values())
    assert json.loads(files["margin"].read_text())["markups"][0]["coordinateSystem"] == system

    assert (
        cli.main(
            [
                "markups",
                "import",
                "--image",
                str(tmp_path / "img.mha"),
                "--margin",
                str(files["margin"]),
                "--foreground",
                str(files["foreground"]),
                "--background",
                str(files["background"]),
                "--model",
                str(model),
                "--out",
                str(tmp_path / "b.clicks.json"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert f"{len(margin)} margin points, 1 foreground and 1 background clicks" in out
    assert "largest move to a voxel centre 0.00 mm" in out

    image_read = midseg.read_image(tmp_path / "img.mha")
    replay = midseg.Session.from_clicks(tmp_path / "b.clicks.json", image_read, model=model)
    np.testing.assert_array_equal(replay.margin_points, session.margin_points)
    np.testing.assert_array_equal(replay.rounds[0].foreground, fg)
    np.testing.assert_array_equal(replay.rounds[0].background, bg)
    np.testing.assert_array_equal(replay.mask, session.mask)


def test_cli_export_skips_empty_classes(tmp_path, capsys):
    image, margin, _, _ = phantom(3)
    clicks, _ = clicks_from_markups(image, lps(image, margin))
    (tmp_path / "c.json").write_text(json.dumps(clicks))
    assert (
        cli.main(
            ["markups", "export", str(tmp_path / "c.json"), "--out-prefix", str(tmp_path / "p")]
        )
        == 0
    )
    assert sorted(p.name for p in tmp_path.glob("*.mrk.json")) == ["p.margin.mrk.json"]
    assert "no foreground or background points" in capsys.readouterr().out


def test_cli_import_rejects_a_curve_with_one_line(tmp_path, capsys):
    image, _, _, _ = phantom(2)
    midseg.write_image(tmp_path / "img.mha", image)
    (tmp_path / "c.mrk.json").write_text(
        json.dumps({"@schema": SLICER_SCHEMA, "markups": [_node(type="Curve")]})
    )
    status = cli.main(
        [
            "markups",
            "import",
            "--image",
            str(tmp_path / "img.mha"),
            "--margin",
            str(tmp_path / "c.mrk.json"),
            "--out",
            str(tmp_path / "o.json"),
        ]
    )
    err = capsys.readouterr().err
    assert status == 1 and err.count("\n") == 1
    assert err.startswith("midseg markups: error:") and "'Curve'" in err
    assert not (tmp_path / "o.json").exists()


def test_cli_import_with_a_co_registered_image_records_the_petct_model(tmp_path, capsys):
    image, margin, _, _ = phantom(2)
    ct = midseg.Image(image.array * 1000 - 900, spacing=image.spacing, origin=image.origin)
    pet = midseg.Image(
        np.where(image.array > 0.5, 8.0, 1.0), spacing=image.spacing, origin=image.origin
    )
    midseg.write_image(tmp_path / "ct.mha", ct)
    midseg.write_image(tmp_path / "pet.mha", pet)
    write_markups(tmp_path / "m.mrk.json", lps(image, margin), name="margin")
    base = ["markups", "import", "--image", str(tmp_path / "ct.mha")]
    rest = ["--margin", str(tmp_path / "m.mrk.json"), "--out", str(tmp_path / "c.json")]
    assert cli.main(base + ["--with", str(tmp_path / "pet.mha")] + rest) == 0
    clicks = json.loads((tmp_path / "c.json").read_text())
    assert clicks["model"]["name"] == "2d_petct" and clicks["image"]["channels"] == 2
    capsys.readouterr()
    # the two-channel clicks file replays on the same pair, as `midseg segment --with` reads it
    seg = ["segment", str(tmp_path / "ct.mha"), "--with", str(tmp_path / "pet.mha")]
    out = ["--clicks", str(tmp_path / "c.json"), "-o", str(tmp_path / "mask.nii.gz")]
    assert cli.main(seg + out) == 0
    assert midseg.read_image(tmp_path / "mask.nii.gz").array.any()
    assert cli.main(base + rest) == 0  # without --with: the one-channel model, as before
    assert json.loads((tmp_path / "c.json").read_text())["model"]["name"] == "2d"


def test_cli_import_warns_like_a_session_and_computes_a_slice_in_2d(tmp_path, capsys):
    image, margin, _, _ = phantom(2)
    geo = {"spacing": image.spacing, "origin": image.origin}
    ct = midseg.Image(image.array * 1000 - 900, **geo)
    pet = midseg.Image(np.where(image.array > 0.5, 8.0, 1.0), **geo)
    midseg.write_image(tmp_path / "ct.mha", ct)
    midseg.write_image(tmp_path / "pet.mha", pet)
    write_markups(tmp_path / "m.mrk.json", lps(image, margin), name="margin")
    rest = ["--margin", str(tmp_path / "m.mrk.json"), "--out", str(tmp_path / "c.json")]
    pet_first = ["--image", str(tmp_path / "pet.mha"), "--with", str(tmp_path / "ct.mha")]
    assert cli.main(["markups", "import", *pet_first, *rest]) == 0
    err = capsys.readouterr().err
    assert "midseg markups: warning: the PET/CT model '2d_petct' segments this" in err
    assert "channel 0 has no value below -200" in err
    # a one-slice volume: the model a Session takes (2d), and `segment` replays it
    one = midseg.Image(image.array[None], spacing=(1.0, *image.spacing))
    midseg.write_image(tmp_path / "one.nii.gz", one)
    pts = np.column_stack([np.zeros(len(margin)), margin])
    one_read = midseg.read_image(tmp_path / "one.nii.gz")
    write_markups(tmp_path / "m1.mrk.json", lps(one_read, pts), name="margin")
    rest = ["--margin", str(tmp_path / "m1.mrk.json"), "--out", str(tmp_path / "c1.json")]
    assert cli.main(["markups", "import", "--image", str(tmp_path / "one.nii.gz"), *rest]) == 0
    assert json.loads((tmp_path / "c1.json").read_text())["model"]["name"] == "2d"
    out = ["-o", str(tmp_path / "s.nii.gz")]
    assert (
        cli.main(
            ["segment", str(tmp_path / "one.nii.gz"), "--clicks", str(tmp_path / "c1.json"), *out]
        )
        == 0
    )
