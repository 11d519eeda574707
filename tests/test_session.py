"""The Session API of the README, line by line, in 2D and 3D."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import midseg  # noqa: E402
from midseg import models  # noqa: E402
from midseg.errors import (  # noqa: E402
    GeometryMismatchError,
    InvalidInputError,
    MidsegError,
    OlderClicksWarning,
)
from midseg.nets import UNet  # noqa: E402
from midseg.session import read_clicks  # noqa: E402


def write_tiny_model(folder, dims, channels=1, seed=0):
    """A small untrained U-Net with a card: enough to exercise the session's mechanics."""
    torch.manual_seed(seed)
    net = UNet(dims, in_channels=channels + 1, base=4, depth=2)
    name = f"tiny{dims}d_c{channels}"
    path = folder / f"{name}.pt"
    torch.save(net.state_dict(), path)
    card = {
        "format": models.CARD_FORMAT,
        "name": name,
        "architecture": net.config,
        "grid_shape": [32, 32] if dims == 2 else [16, 32, 32],
        "cue": "egd",
        "image_channels": channels,
        "in_channels": channels + 1,
        "margin": None,
    }
    path.with_suffix(".json").write_text(json.dumps(card))
    return path


def phantom(dims):
    """A bright ellipse / ellipsoid on a dark noisy background, anisotropic spacing."""
    rng = np.random.default_rng(3)
    shape = (48, 56) if dims == 2 else (20, 40, 44)
    c = [s / 2 for s in shape]
    r = (12, 15) if dims == 2 else (6, 11, 13)
    g = np.indices(shape, dtype=float)
    truth = (sum(((gi - ci) / ri) ** 2 for gi, ci, ri in zip(g, c, r)) <= 1).astype(np.uint8)
    arr = truth * 1.0 + rng.normal(scale=0.1, size=shape)
    spacing = (0.9, 0.7) if dims == 2 else (2.5, 0.9, 0.8)
    image = midseg.Image(arr.astype(np.float32), spacing=spacing, origin=(5.0,) * dims)
    return image, truth


def margin_points(truth):
    from midseg.data_sim import interior_margin_points

    return interior_margin_points(truth, rng=1)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    return {key: write_tiny_model(folder, *key) for key in [(2, 1), (3, 1), (2, 2)]}


@pytest.fixture(params=[2, 3], ids=["2d", "3d"])
def case(request, model_dir):
    dims = request.param
    image, truth = phantom(dims)
    return image, truth, model_dir[(dims, 1)]


def _fg_bg(truth):
    inside = np.argwhere(truth)
    outside = np.argwhere(truth == 0)
    return tuple(inside[len(inside) // 2]), tuple(outside[len(outside) // 3])


def test_segment_refine_undo_redo(case):
    image, truth, model = case
    session = midseg.Session(image, model=model)
    assert session.mask is None and not session.can_undo
    mask0 = session.segment(margin_points(truth))
    assert mask0.dtype == np.uint8 and mask0.shape == image.shape
    assert np.array_equal(session.mask, mask0) and not session.mask.flags.writeable
    kept = mask0.copy()
    prob = session.probability
    assert prob.dtype == np.float32 and prob.shape == image.shape
    assert 0.0 <= prob.min() and prob.max() <= 1.0
    cnn = session.cnn_probability.copy()
    # stage 1 of "ifgc": the CNN map fused with the margin points' geodesic evidence
    from midseg.refine import fuse_margin_points

    np.testing.assert_array_equal(
        prob, fuse_margin_points(image.array, cnn, session.margin_points, spacing=image.spacing)
    )
    # its mask: in 3D the graph cut of that map inside the margin points' box, in 2D >= 0.5
    from midseg.crop import relaxed_bbox
    from midseg.refine import cut_margin_points_box

    pts = session.margin_points
    box = relaxed_bbox(pts, image.shape)
    expected = (prob >= 0.5).astype(np.uint8)
    expected[box.slices] = cut_margin_points_box(
        image.array[None], prob[box.slices], pts, box, np.asarray(image.spacing), lam=5.0, sigma=0.1
    )
    assert np.array_equal(mask0, expected)
    if image.ndim == 2:
        assert np.array_equal(mask0, (prob >= 0.5).astype(np.uint8))

    fg, bg = _fg_bg(truth)
    mask1 = session.refine(foreground=[fg], background=[])
    assert mask1[fg] == 1
    mask2 = session.refine(foreground=[], background=[bg])
    assert mask2[bg] == 0 and mask2[fg] == 1  # clicks accumulate: the fg click still holds
    assert len(session.rounds) == 2

    assert np.array_equal(mask0, kept)  # a returned mask is the caller's copy
    assert np.array_equal(session.undo(), mask1)
    assert np.array_equal(session.undo(), mask0)
    assert len(session.rounds) == 0
    assert np.array_equal(session.redo(), mask1)
    assert np.array_equal(session.redo(), mask2)
    assert not session.can_redo
    with pytest.raises(MidsegError, match="nothing to redo"):
        session.redo()
    # a new round after undo drops the redo branch
    session.undo()
    session.refine(background=[bg])
    assert not session.can_redo and len(session.rounds) == 2
    # the CNN probability is never modified by refinement
    assert np.array_equal(session.cnn_probability, cnn)
    # undo past the first segment leaves an empty session
    for _ in range(3):
        session.undo()
    assert session.mask is None


def test_save_and_replay_is_bit_identical(case, tmp_path):
    image, truth, model = case
    session = midseg.Session(image, model=model, lam=3.0, sigma=0.2)
    session.segment(margin_points(truth))
    fg, bg = _fg_bg(truth)
    session.refine(foreground=[fg])
    session.refine(background=[bg], lam=8.0)
    path = tmp_path / "case.clicks.json"
    session.save_clicks(path)

    data = json.loads(path.read_text())
    assert data["format"] == "midseg-clicks" and data["version"] == 8
    assert data["parameters"]["stage1_cut"] is True
    assert data["parameters"]["claim_keep"] == 0.1
    assert data["parameters"]["min_click_depth"] == (2.0 if image.ndim == 3 else 1.0)
    assert data["parameters"]["band_reach"] == (0.0 if image.ndim == 3 else 6.0)
    assert data["parameters"]["thick_slice_ratio"] == (5.0 if image.ndim == 3 else 0.0)
    assert data["parameters"]["margin_floor"] == (0.9 if image.ndim == 3 else 0.0)
    assert data["image"]["spacing"] == list(image.spacing[::-1])
    assert len(data["rounds"]) == 2 and data["rounds"][1]["lam"] == 8.0
    # points are stored in millimetres, (x, y[, z]) order
    first = np.asarray(session.margin_points[0], float)
    np.testing.assert_allclose(
        data["margin_points"][0], image.index_to_physical(first)[::-1], atol=1e-6
    )

    replay = midseg.Session.from_clicks(path, image, model=model)
    assert np.array_equal(replay.mask, session.mask)
    assert np.array_equal(replay.probability, session.probability)
    assert replay.lam == 3.0 and replay.sigma == 0.2

    # and in a fresh process
    out = tmp_path / "mask.npy"
    code = (
        "import sys, numpy as np, midseg;"
        f"sys.path.insert(0, r'{Path(__file__).resolve().parent}');"
        "from test_session import phantom;"
        f"image, _ = phantom({image.ndim});"
        f"s = midseg.Session.from_clicks(r'{path}', image, model=r'{model}');"
        f"np.save(r'{out}', s.mask)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)
    assert np.array_equal(np.load(out), session.mask)

    midseg.write_mask(tmp_path / "case.mask.nii.gz", session.mask, like=image)
    back = midseg.read_image(tmp_path / "case.mask.nii.gz")
    assert np.array_equal(back.array, session.mask) and back.same_geometry(image) == []


def test_replay_on_other_geometry_says_what_differs(case, tmp_path):
    image, truth, model = case
    session = midseg.Session(image, model=model)
    session.segment(margin_points(truth))
    session.save_clicks(tmp_path / "c.json")
    other = midseg.Image(
        image.array, spacing=tuple(s * 2 for s in image.spacing), origin=image.origin
    )
    with pytest.raises(GeometryMismatchError, match="spacing"):
        midseg.Session.from_clicks(tmp_path / "c.json", other, model=model)
    cropped = midseg.Image(image.array[..., :-1], spacing=image.spacing, origin=image.origin)
    with pytest.raises(GeometryMismatchError, match="shape"):
        midseg.Session.from_clicks(tmp_path / "c.json", cropped, model=model)


def test_replay_with_other_weights_warns(tmp_path):
    import warnings

    from midseg.errors import ModelMismatchWarning

    image, truth = phantom(2)
    a = write_tiny_model(tmp_path, 2, seed=0)
    other_dir = tmp_path / "other"
    other_dir.mkdir()
    b = write_tiny_model(other_dir, 2, seed=1)  # same name, other weights
    session = midseg.Session(image, model=a)
    session.segment(margin_points(truth))
    session.save_clicks(tmp_path / "c.json")
    with pytest.warns(ModelMismatchWarning, match="sha256"):
        midseg.Session.from_clicks(tmp_path / "c.json", image, model=b)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same weights: silent
        midseg.Session.from_clicks(tmp_path / "c.json", image, model=a)


def test_replay_of_a_file_made_with_a_renamed_shipped_model_names_it(tmp_path):
    """Clicks made with the former shipped "2d" (now the ensemble's member "2d_egd")."""
    import json
    import warnings

    from midseg import models
    from midseg.errors import ModelMismatchWarning

    if not {"2d", "2d_egd"} <= set(models.list_models()):
        pytest.skip("shipped 2D models absent")
    image, truth = phantom(2)
    session = midseg.Session(image, model="2d_egd")
    session.segment(margin_points(truth))
    doc = session.clicks_dict()
    doc["model"]["name"] = "2d"  # as the file was written before the rename
    (tmp_path / "old.json").write_text(json.dumps(doc))
    with pytest.warns(ModelMismatchWarning, match="the shipped model '2d_egd' has those weights"):
        midseg.Session.from_clicks(tmp_path / "old.json", image)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        replay = midseg.Session.from_clicks(tmp_path / "old.json", image, model="2d_egd")
    np.testing.assert_array_equal(replay.mask, session.mask)


def test_bad_input_errors(case, model_dir):
    image, truth, model = case
    session = midseg.Session(image, model=model)
    with pytest.raises(MidsegError, match="call segment"):
        session.refine(foreground=[(0,) * image.ndim])
    outside = tuple(s + 3 for s in image.shape)
    with pytest.raises(ValueError, match=r"outside the image"):
        session.segment([outside] * 5)
    with pytest.raises(ValueError, match="at least"):
        session.segment(margin_points(truth)[:2])
    session.segment(margin_points(truth))
    with pytest.raises(ValueError, match="at least one"):
        session.refine()
    with pytest.raises(ValueError, match="outside the image"):
        session.refine(background=[outside])
    with pytest.raises(ValueError, match="sigma"):
        midseg.Session(image, model=model, sigma=0)
    wrong = model_dir[(5 - image.ndim, 1)]
    with pytest.raises(ValueError, match=f"{5 - image.ndim}D model but the image is {image.ndim}D"):
        midseg.Session(image, model=wrong)


def test_multichannel_image(model_dir):
    image, truth = phantom(2)
    two = midseg.Image(np.stack([image.array, -image.array]), spacing=image.spacing)
    assert two.multichannel
    with pytest.raises(ValueError, match="expects 1 image channel"):
        midseg.Session(two, model=model_dir[(2, 1)])
    session = midseg.Session(two, model=model_dir[(2, 2)])
    session.segment(margin_points(truth))
    fg, bg = _fg_bg(truth)
    mask = session.refine(foreground=[fg], background=[bg])
    assert mask.shape == image.shape and mask[fg] == 1 and mask[bg] == 0


def test_default_model_is_the_shipped_one():
    if "2d" not in models.list_models():
        pytest.skip("no shipped 2d model")
    image, truth = phantom(2)
    session = midseg.Session(image)
    assert session.model.name == "2d" and session.model.spatial_dims == 2


def _old_clicks_file(tmp_path, version, method):
    """A two-round session made with `method`, saved as a clicks file of an older `version`
    whose "ifgc" meant that method; returns (image, model, session, file dict, path)."""
    image, truth = phantom(2)
    model = write_tiny_model(tmp_path, 2)
    session = midseg.Session(image, model=model, method=method)
    session.segment(margin_points(truth))
    fg, bg = _fg_bg(truth)
    session.refine(foreground=[fg])
    session.refine(background=[bg])
    old = json.loads(json.dumps(session.clicks_dict()))
    old["version"] = version
    old["parameters"]["method"] = "ifgc"
    for r in old["rounds"]:
        r["method"] = "ifgc"
    path = tmp_path / f"v{version}.clicks.json"
    path.write_text(json.dumps(old))
    return image, model, session, old, path


@pytest.mark.parametrize("version, method", [(1, "ifgc-paper"), (2, "ifgc-global")])
def test_older_clicks_replay_with_the_fusion_they_were_made_with(tmp_path, version, method):
    """Version-1 "ifgc" was Eq. 7 as printed ("ifgc-paper"); version-2 "ifgc" was the
    certainty-weighted fusion of all clicks ("ifgc-global")."""
    image, model, session, old, path = _old_clicks_file(tmp_path, version, method)
    read = read_clicks(path)
    assert read["version"] == 8 and read["upgraded_from_version"] == version
    assert read["parameters"]["method"] == method
    assert [r["method"] for r in read["rounds"]] == [method, method]
    replay = midseg.Session.from_clicks(path, image, model=model)
    assert np.array_equal(replay.mask, session.mask)
    assert replay.method == method
    # "gc" rounds are left alone; an unknown version is refused
    old["rounds"][0]["method"] = "gc"
    path.write_text(json.dumps(old))
    read = read_clicks(path)
    assert [r["method"] for r in read["rounds"]] == ["gc", method]
    old["version"] = 9
    path.write_text(json.dumps(old))
    with pytest.raises(InvalidInputError, match="version 9"):
        midseg.Session.from_clicks(path, image, model=model)


def _older_ifgc_file(tmp_path, version, ndim=3, **settings):
    """An "ifgc" session (3D unless `ndim` is 2) made with `settings` and its clicks file
    relabelled `version` (without the parameters that version did not have)."""
    image, truth = phantom(ndim)
    model = write_tiny_model(tmp_path, ndim)
    before = midseg.Session(image, model=model, **settings)
    before.segment(margin_points(truth))
    fg, _ = _fg_bg(truth)
    before.refine(foreground=[fg])
    old = json.loads(json.dumps(before.clicks_dict()))
    old["version"] = version
    gone = ("thick_slice_ratio",) + (("band_reach",) if version < 7 else ())
    gone += ("min_click_depth",) if version < 6 else ()
    gone += ("margin_floor", "claim_keep") if version < 5 else ()
    for key in gone + (("stage1_cut",) if version < 4 else ()):
        del old["parameters"][key]
    path = tmp_path / f"v{version}.clicks.json"
    path.write_text(json.dumps(old))
    return image, model, before, path


def test_version_3_clicks_replay_stage_1_without_the_cut(tmp_path):
    """Version-3 files were made before 3D stage 1 ended with the graph cut: they replay
    with the 0.5 threshold of the fused map, the mask they were made with."""
    image, model, before, path = _older_ifgc_file(
        tmp_path,
        3,
        stage1_cut=False,
        margin_floor=0.8,
        claim_keep=0.0,
        min_click_depth=1.0,
        band_reach=0,
        thick_slice_ratio=0,
    )
    read = read_clicks(path)
    assert read["parameters"]["stage1_cut"] is False and read["upgraded_from_version"] == 3
    replay = midseg.Session.from_clicks(path, image, model=model)
    assert replay.stage1_cut is False and np.array_equal(replay.mask, before.mask)
    # a current file keeps the setting both ways
    before.save_clicks(tmp_path / "v6.clicks.json")
    assert read_clicks(tmp_path / "v6.clicks.json")["parameters"]["stage1_cut"] is False
    again = midseg.Session.from_clicks(tmp_path / "v6.clicks.json", image, model=model)
    assert again.stage1_cut is False and np.array_equal(again.mask, before.mask)
    assert midseg.Session(image, model=model).stage1_cut is True  # the default
    with pytest.raises(InvalidInputError, match="stage1_cut"):
        midseg.Session(image, model=model, stage1_cut="yes")


def test_version_4_clicks_replay_with_the_floor_and_no_claim_guard(tmp_path):
    """Version-4 files were made with the 3D stage-1 floor 0.8 and without the guard of a
    foreground click's claim: they replay with those, the masks they were made with."""
    image, model, before, path = _older_ifgc_file(
        tmp_path,
        4,
        margin_floor=0.8,
        claim_keep=0,
        min_click_depth=1,
        band_reach=0,
        thick_slice_ratio=0,
    )
    read = read_clicks(path)
    assert read["upgraded_from_version"] == 4 and read["parameters"]["stage1_cut"] is True
    assert read["parameters"]["margin_floor"] == 0.8 and read["parameters"]["claim_keep"] == 0
    replay = midseg.Session.from_clicks(path, image, model=model)
    assert (replay.margin_floor, replay.claim_keep) == (0.8, 0.0)
    assert np.array_equal(replay.mask, before.mask)
    now = midseg.Session(image, model=model)
    assert (now.margin_floor, now.claim_keep) == (0.9, 0.1)  # the defaults in 3D
    for bad in (
        {"margin_floor": 1.5},
        {"claim_keep": -0.1},
        {"claim_keep": True},
        {"claim_keep": 10**400},
    ):
        with pytest.raises(InvalidInputError, match=next(iter(bad))):
            midseg.Session(image, model=model, **bad)


def test_version_5_clicks_replay_with_min_click_depth_1(tmp_path):
    """Version-5 files were made when a click's reach came from its depth, at least 1:
    they replay with that (and keep their stored floor and guard); a new Session takes the
    3D default 2."""
    image, model, before, path = _older_ifgc_file(
        tmp_path,
        5,
        margin_floor=0.7,
        claim_keep=0.2,
        min_click_depth=1.0,
        band_reach=0,
        thick_slice_ratio=0,
    )
    read = read_clicks(path)
    assert read["upgraded_from_version"] == 5 and read["parameters"]["min_click_depth"] == 1
    assert (read["parameters"]["margin_floor"], read["parameters"]["claim_keep"]) == (0.7, 0.2)
    with pytest.warns(OlderClicksWarning, match="min_click_depth 1.0"):
        replay = midseg.Session.from_clicks(path, image, model=model)
    assert (replay.margin_floor, replay.claim_keep, replay.min_click_depth) == (0.7, 0.2, 1.0)
    assert np.array_equal(replay.mask, before.mask)
    assert midseg.Session(image, model=model).min_click_depth == 2.0  # the 3D default
    assert midseg.Session(image, model=model, min_click_depth=3).min_click_depth == 3.0
    for bad in (0.5, float("inf"), True, "2", 10**400):
        with pytest.raises(InvalidInputError, match="min_click_depth"):
            midseg.Session(image, model=model, min_click_depth=bad)


def test_version_6_clicks_replay_without_the_boundary_band(tmp_path):
    """Version-6 files were made before a click relabelled the boundary band: a 2D file
    replays with band_reach 0 (and keeps its stored depth floor); a new 2D Session takes
    the default 6, a 3D one 0."""
    image, model, before, path = _older_ifgc_file(
        tmp_path, 6, ndim=2, min_click_depth=1.5, band_reach=0, thick_slice_ratio=0
    )
    read = read_clicks(path)
    assert read["upgraded_from_version"] == 6 and read["parameters"]["band_reach"] == 0
    assert read["parameters"]["min_click_depth"] == 1.5
    with pytest.warns(OlderClicksWarning, match="band_reach 0.0"):
        replay = midseg.Session.from_clicks(path, image, model=model)
    assert (replay.min_click_depth, replay.band_reach) == (1.5, 0.0)
    assert np.array_equal(replay.mask, before.mask)
    assert midseg.Session(image, model=model).band_reach == 6.0  # the 2D default
    assert midseg.Session(image, model=model, band_reach=2).band_reach == 2.0
    image3, _ = phantom(3)
    assert midseg.Session(image3, model=write_tiny_model(tmp_path, 3)).band_reach == 0.0
    for bad in (-1, float("nan"), float("inf"), True, "2", 10**400):
        with pytest.raises(InvalidInputError, match="band_reach"):
            midseg.Session(image, model=model, band_reach=bad)


# -- a later click of the other class wins ------------------------------------------------


@pytest.mark.parametrize("first", ["foreground", "background"])
def test_a_later_click_of_the_other_class_wins(case, first, tmp_path):
    image, truth, model = case
    session = midseg.Session(image, model=model)
    session.segment(margin_points(truth))
    fg, bg = _fg_bg(truth)
    voxel = bg if first == "foreground" else fg  # a voxel the first click gets wrong
    second = "background" if first == "foreground" else "foreground"
    want = {"foreground": 1, "background": 0}
    mask1 = session.refine(**{first: [voxel]}).copy()
    assert mask1[voxel] == want[first]
    mask2 = session.refine(**{second: [voxel]}).copy()  # no error: the later click wins
    assert mask2[voxel] == want[second]
    # the rounds stay as made; only the later click is a constraint
    assert [len(getattr(r, first)) for r in session.rounds] == [1, 0]
    assert [len(getattr(r, second)) for r in session.rounds] == [0, 1]
    in_force = dict(zip(["foreground", "background"], session.clicks_in_force))
    assert in_force[first].shape == (0, image.ndim)
    assert in_force[second].tolist() == [list(voxel)]
    # the overridden click is dropped from the constraints: with a method that works from
    # the CNN map and the clicks in force, as if it had never been made
    glob = midseg.Session(image, model=model, method="ifgc-global")
    glob.segment(margin_points(truth))
    glob.refine(**{first: [voxel]})
    alone = midseg.Session(image, model=model, method="ifgc-global")
    alone.segment(margin_points(truth))
    assert np.array_equal(alone.refine(**{second: [voxel]}), glob.refine(**{second: [voxel]}))
    # and clicking it back restores the first class, listed once among the clicks in force
    mask3 = session.refine(**{first: [voxel]}).copy()
    assert mask3[voxel] == want[first]
    in_force = dict(zip(["foreground", "background"], session.clicks_in_force))
    assert in_force[first].tolist() == [list(voxel)] and len(in_force[second]) == 0

    # undo / redo walk through the same masks
    assert np.array_equal(session.undo(), mask2)
    assert np.array_equal(session.undo(), mask1)
    assert len(session.clicks_in_force[0]) + len(session.clicks_in_force[1]) == 1
    assert np.array_equal(session.redo(), mask2)
    assert np.array_equal(session.redo(), mask3)

    # a replay of the saved clicks goes through the same resolution, step by step
    session.save_clicks(tmp_path / "c.json")
    data = read_clicks(tmp_path / "c.json")
    assert [bool(r[first]) for r in data["rounds"]] == [True, False, True]
    steps = []
    replay = midseg.Session.from_clicks(
        tmp_path / "c.json", image, model=model, callback=lambda s: steps.append(s.mask.copy())
    )
    assert [np.array_equal(a, b) for a, b in zip(steps[1:], [mask1, mask2, mask3])] == [True] * 3
    assert np.array_equal(replay.probability, session.probability)


def test_one_round_with_a_voxel_in_both_lists_says_what_to_do(case):
    image, truth, model = case
    session = midseg.Session(image, model=model)
    session.segment(margin_points(truth))
    fg, bg = _fg_bg(truth)
    with pytest.raises(InvalidInputError, match=r"same round.*later round: the later click wins"):
        session.refine(foreground=[fg, bg], background=[fg])
    assert session.rounds == ()  # nothing was added
    assert session.refine(foreground=[fg], background=[bg])[fg] == 1


# -- coplanar margin points warn ------------------------------------------------------------


def ball(shape=(60, 64, 64), center=(30, 32, 32), radius=20):
    g = np.indices(shape, dtype=float)
    truth = (sum((gi - c) ** 2 for gi, c in zip(g, center)) <= radius**2).astype(np.uint8)
    arr = truth + np.random.default_rng(0).normal(scale=0.1, size=shape)
    return midseg.Image(arr.astype(np.float32)), truth


def test_margin_points_all_in_one_slice_warn(model_dir):
    """The issue's example: a ball over slices 10-50, every point on slice 30."""
    from midseg.errors import CoplanarPointsWarning, MidsegWarning

    image, truth = ball()
    session = midseg.Session(image, model=model_dir[(3, 1)])
    points = [(30, 13, 32), (30, 51, 32), (30, 32, 13), (30, 32, 51), (30, 20, 20)]
    with pytest.warns(CoplanarPointsWarning, match="plane z = 30") as record:
        mask = session.segment(points)
    message = str(record[0].message)
    assert "extent across that plane" in message and "slices above and below" in message
    assert mask.shape == image.shape  # the mask is still made
    assert issubclass(CoplanarPointsWarning, MidsegWarning)
    # the warning stays with this stage 1 and its rounds, until a new segment
    assert [type(w) for w in session.warnings] == [CoplanarPointsWarning]
    session.refine(foreground=[(30, 32, 32)])
    assert [str(w) for w in session.warnings] == [message]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        session.segment(points + [(11, 32, 32), (49, 32, 32)])  # top and bottom added
    assert session.warnings == ()
    session.undo()
    assert [str(w) for w in session.warnings] == [message]


@pytest.mark.parametrize(
    "points, warns",
    [
        ([(10, 10, 5), (20, 20, 40), (30, 30, 10), (40, 40, 50)], True),  # plane z = y, oblique
        ([(29, 13, 32), (29, 51, 32), (31, 32, 13), (31, 32, 51)], False),  # two slices, 5 mm apart
        ([(30, 13, 32), (30, 51, 32), (30, 32, 13), (30, 32, 51), (45, 32, 32)], False),
    ],
)
def test_coplanar_means_any_plane_within_half_a_voxel(model_dir, points, warns):
    from midseg.errors import CoplanarPointsWarning

    arr, _ = ball()
    image = midseg.Image(arr.array, spacing=(2.5, 0.8, 0.8))
    session = midseg.Session(image, model=model_dir[(3, 1)])
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        session.segment(points)
    got = [w for w in record if issubclass(w.category, CoplanarPointsWarning)]
    assert bool(got) == warns and bool(session.warnings) == warns
    if warns:
        assert "oblique plane" in str(got[0].message)


def test_2d_margin_points_never_warn(model_dir):
    image, truth = phantom(2)
    session = midseg.Session(image, model=model_dir[(2, 1)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        session.segment([(24, 10), (24, 40), (24, 20)])  # collinear, still no warning in 2D
    assert session.warnings == ()


def test_replay_keeps_the_warnings_and_the_cli_prints_them(model_dir, tmp_path, capsys):
    from midseg.cli import main
    from midseg.errors import CoplanarPointsWarning

    image, truth = ball(shape=(40, 44, 44), center=(20, 22, 22), radius=12)
    model = model_dir[(3, 1)]
    session = midseg.Session(image, model=model)
    points = [(20, 11, 22), (20, 33, 22), (20, 22, 11), (20, 22, 33)]
    with pytest.warns(CoplanarPointsWarning):
        session.segment(points)
    session.refine(background=[(20, 2, 2)])
    session.save_clicks(tmp_path / "c.json")
    with pytest.warns(CoplanarPointsWarning):
        replay = midseg.Session.from_clicks(tmp_path / "c.json", image, model=model)
    assert [str(w) for w in replay.warnings] == [str(w) for w in session.warnings]

    midseg.write_image(tmp_path / "ball.nii.gz", image)
    status = main(
        [
            "segment",
            str(tmp_path / "ball.nii.gz"),
            "--clicks",
            str(tmp_path / "c.json"),
            "-o",
            str(tmp_path / "mask.nii.gz"),
            "--model",
            str(model),
        ]
    )
    err = capsys.readouterr().err
    assert status == 0 and (tmp_path / "mask.nii.gz").is_file()
    assert "midseg segment: warning: all 4 margin points lie in the plane z = 20" in err
    assert "Traceback" not in err and "warnings.warn" not in err


def test_a_stored_point_far_outside_the_image_is_named_as_outside():
    from midseg.clicks import mm_to_index

    image = midseg.Image(np.zeros((20, 30), np.float32), spacing=(0.7, 0.9))
    with pytest.raises(InvalidInputError, match="lies outside the image"):
        mm_to_index(image, [[5000.3, 10.1]])  # off the grid as well
    with pytest.raises(midseg.errors.GeometryMismatchError, match="voxel centres"):
        mm_to_index(image, [[1.35, 0.35]])  # inside, between voxel centres


def test_session_rounds_equal_the_public_refine_chain(case):
    """The region-only path of Session gives refine()'s masks and probabilities exactly,
    also in background rounds that reuse the session's cached region intensities."""
    from midseg.refine import refine, refine_region_box

    image, truth, model = case
    session = midseg.Session(image, model=model)
    session.segment(margin_points(truth))
    fg, bg = _fg_bg(truth)
    # a second background click near the first whose round keeps the region
    pts = np.concatenate([np.asarray(session.margin_points), [fg], [bg]])
    region = refine_region_box(pts, image.shape, session.box)
    outside = np.argwhere(truth == 0)
    order = np.argsort(np.abs(outside - np.asarray(bg)).sum(axis=1))
    bg2 = next(
        tuple(p)
        for p in outside[order[1:]]
        if refine_region_box(np.concatenate([pts, [p]]), image.shape, session.box) == region
    )
    inside = np.argwhere(truth)
    fg2 = tuple(inside[np.argsort(np.abs(inside - np.asarray(fg)).sum(axis=1))[1]])
    prev = (session.probability.copy(), session.mask.copy())
    cnn = session.cnn_probability
    rounds = [([fg], []), ([], [bg]), ([], [bg2]), ([fg2], [])]
    all_fg, all_bg = [], []
    reused = []
    for f, b in rounds:
        before = session._intensities.get("sd")
        session.refine(foreground=f, background=b)
        reused.append(session._intensities.get("sd") is before)
        all_fg += f
        all_bg += b
        res = refine(
            image.array,
            cnn,
            margin_points=session.margin_points,
            foreground=all_fg,
            background=all_bg,
            spacing=image.spacing,
            box=session.box,
            previous=prev,
            new_foreground=f,
            new_background=b,
        )
        np.testing.assert_array_equal(session.mask, res.mask)
        np.testing.assert_array_equal(session.probability, res.probability)
        prev = (res.probability, res.mask)
    # round 3: same region and window; round 4: a foreground click changes the window
    assert reused == [False, False, True, False]
    after = session.mask.copy()
    session.undo()
    session.undo()
    session.redo()
    session.refine(foreground=[fg2])  # replaces the undone round: the same mask again
    np.testing.assert_array_equal(session.mask, after)


def test_history_keeps_the_refined_region_not_the_image():
    """A click in a large image stores about 2 x (probability + mask) bytes of its region."""
    from midseg.session import Session

    big = np.zeros((40, 400, 400), np.float32)
    big[15:25, 180:220, 180:220] = 1.0
    big += np.random.default_rng(0).normal(0, 0.05, big.shape).astype(np.float32)
    s = Session(big)
    s.segment(
        [
            (20, 180, 200),
            (20, 219, 200),
            (20, 200, 180),
            (20, 200, 219),
            (15, 200, 200),
            (24, 200, 200),
        ]
    )
    s.refine(foreground=[(20, 200, 200)])
    change = s._history[-1].change
    stored = sum(
        a.nbytes
        for a in (change.prob_before, change.mask_before, change.prob_after, change.mask_after)
    )
    region = int(np.prod([sl.stop - sl.start for sl in change.slices]))
    assert stored == 2 * region * (4 + 1)
    assert stored < big.nbytes / 20


def test_start_from_a_mask_and_refine_it(case, tmp_path):
    """An existing mask stands in for stage 1; clicks refine it; the replay needs it."""
    image, truth, model = case
    start = truth.copy()
    start[tuple(slice(0, n // 2) for n in truth.shape)] = 0  # a quarter missing
    session = midseg.Session(image, model=model)
    m0 = session.start_from_mask(start)
    np.testing.assert_array_equal(m0, (start != 0).astype(np.uint8))
    assert len(session.margin_points) == 0
    missed = np.argwhere((truth != 0) & (start == 0))
    fg = tuple(missed[len(missed) // 2])
    m1 = session.refine(foreground=[fg])
    assert m1[fg] == 1
    path = tmp_path / "from_mask.clicks.json"
    session.save_clicks(path)
    again = midseg.Session.from_clicks(path, image, model=model, initial_mask=start)
    np.testing.assert_array_equal(again.mask, session.mask)
    with pytest.raises(InvalidInputError, match="pass it as initial_mask"):
        midseg.Session.from_clicks(path, image, model=model)
    with pytest.raises(InvalidInputError, match="sha256 differs"):
        midseg.Session.from_clicks(path, image, model=model, initial_mask=truth)
    with pytest.raises(InvalidInputError, match="empty"):
        session.start_from_mask(np.zeros_like(truth))
    session.undo()
    np.testing.assert_array_equal(session.mask, m0)


def test_a_session_round_keeps_a_foreground_claim_the_cut_would_undo(tmp_path):
    """The claim guard through `Session.refine` (its region-only path): one noisy tissue,
    the previous mask a ball, a foreground click 8 voxels away, λ = 20."""
    n = 40
    z, y, x = np.mgrid[:n, :n, :n]
    image = np.random.default_rng(0).normal(0.0, 1.0, (n, n, n)).astype(np.float32)
    kept = ((z - 20) ** 2 + (y - 20) ** 2 + (x - 10) ** 2) <= 36
    model = write_tiny_model(tmp_path, 3)
    gained = {}
    for keep in (0.0, None):
        s = midseg.Session(image, model=model, lam=20.0, claim_keep=keep)
        s.start_from_mask(kept)
        mask = s.refine(foreground=[(20, 20, 24)])
        gained[keep] = int(np.count_nonzero(mask.astype(bool) & ~kept))
    assert gained[0.0] < 500 and gained[None] > 5000


def test_version_7_clicks_replay_without_the_thick_slice_rule(tmp_path):
    """Version-7 files were made before a click stayed in its own thick slice: a 3D file
    replays with thick_slice_ratio 0 and keeps its stored band_reach; a new 3D Session
    takes the default 5, a 2D one 0."""
    image, model, before, path = _older_ifgc_file(
        tmp_path, 7, band_reach=2.0, min_click_depth=1.0, thick_slice_ratio=0
    )
    read = read_clicks(path)
    assert read["upgraded_from_version"] == 7 and read["parameters"]["thick_slice_ratio"] == 0
    with pytest.warns(OlderClicksWarning, match="thick_slice_ratio 0.0"):
        replay = midseg.Session.from_clicks(path, image, model=model)
    assert (replay.band_reach, replay.thick_slice_ratio) == (2.0, 0.0)
    assert np.array_equal(replay.mask, before.mask)
    assert midseg.Session(image, model=model).thick_slice_ratio == 5.0  # the 3D default
    image2, _ = phantom(2)
    assert midseg.Session(image2, model=write_tiny_model(tmp_path, 2)).thick_slice_ratio == 0
    for bad in (-1, 0.5, 1, float("nan"), float("inf"), True, "2", 10**400):
        with pytest.raises(InvalidInputError, match="thick_slice_ratio"):
            midseg.Session(image, model=model, thick_slice_ratio=bad)


def test_a_session_on_thick_slices_keeps_a_click_in_its_own_slice(tmp_path):
    """A Session on 7.5 mm slices of 0.78 mm pixels passes its thick-slice ratio to every
    round: from a mask that overshoots the object by a whole slice, a background click in
    that slice leaves the object's slices alone (ratio 0 takes the object out of the next
    slice); a nonzero ratio is refused for a 2D image."""
    shape = (12, 40, 40)
    array = np.random.default_rng(6).normal(0.0, 0.05, shape).astype(np.float32)
    obj = np.zeros(shape, bool)
    obj[3:7, 12:28, 12:28] = True
    array[obj] += 1.0
    array[7, 12:28, 12:28] += 1.0
    image = midseg.Image(array, spacing=(7.5, 0.78, 0.78))
    model = write_tiny_model(tmp_path, 3)
    prev = obj.copy()
    prev[7, 12:28, 12:28] = True
    masks = {}
    for ratio in (None, 0):
        session = midseg.Session(image, model=model, thick_slice_ratio=ratio)
        session.start_from_mask(prev)
        masks[ratio] = session.refine(background=[(7, 20, 20)]).astype(bool)
    assert np.array_equal(masks[None][:7], prev[:7]) and not masks[None][7, 20, 20]
    assert np.count_nonzero(obj & ~masks[0]) > 50
    image2, _ = phantom(2)
    with pytest.raises(InvalidInputError, match="thick_slice_ratio applies to 3D"):
        midseg.Session(image2, model=write_tiny_model(tmp_path, 2), thick_slice_ratio=5)
