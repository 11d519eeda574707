"""Several objects in one session (midseg.LabelSession): own clicks and undo, one label map."""

import numpy as np
import pytest

pytest.importorskip("torch")

from midseg import Image, LabelSession  # noqa: E402
from midseg.errors import InvalidInputError, MidsegError  # noqa: E402

YY, XX = np.mgrid[:80, :100]
LEFT = (YY - 40) ** 2 + (XX - 30) ** 2 < 15**2
RIGHT = (YY - 40) ** 2 + (XX - 68) ** 2 < 16**2
IMG = Image(
    (LEFT * 1.0 + RIGHT * 2.0 + np.random.default_rng(0).normal(0, 0.1, LEFT.shape)).astype(
        np.float32
    ),
    spacing=(0.5, 0.5),
)
P_LEFT = [(27, 30), (53, 30), (40, 17), (40, 43)]
P_RIGHT = [(26, 68), (54, 68), (40, 54), (40, 82)]


def _two():
    ls = LabelSession(IMG)
    ls.add("left", color=(1.0, 0.0, 0.0)).segment(P_LEFT)
    ls.add("right").segment(P_RIGHT)
    return ls


def test_two_objects_keep_their_own_clicks_and_undo():
    ls = _two()
    right_before = ls.object("right").mask.copy()
    ls.object("left").refine(background=[(40, 30)])
    assert ls.object("left").mask[40, 30] == 0
    ls.object("left").undo()  # undo one object: the other is untouched
    np.testing.assert_array_equal(ls.object("right").mask, right_before)
    assert len(ls.object("left").rounds) == 0 and ls.object("right").can_undo
    labels = ls.labelmap()
    assert set(np.unique(labels)) == {0, 1, 2}
    assert (labels[LEFT] == 1).mean() > 0.9 and (labels[RIGHT] == 2).mean() > 0.9


def test_overlap_policy_decides_who_holds_a_shared_voxel():
    ls = _two()
    ls.add("both").segment([(26, 30), (54, 68), (40, 15), (40, 84)])
    keep, over = ls.labelmap("keep"), ls.labelmap("overwrite")
    shared = (ls.object("left").mask != 0) & (ls.object("both").mask != 0)
    assert shared.any()
    assert (keep[shared] == 1).all() and (over[shared] == 3).all()
    with pytest.raises(InvalidInputError, match="overlap"):
        ls.labelmap("merge")


def test_save_and_load_replays_every_object(tmp_path):
    ls = _two()
    ls.object("right").refine(foreground=[(40, 68)])
    ls.save(tmp_path / "objects.json")
    back = LabelSession.load(tmp_path / "objects.json", IMG)
    assert back.names == ("left", "right")
    np.testing.assert_array_equal(back.labelmap(), ls.labelmap())
    assert back.segment_of("left").color == (1.0, 0.0, 0.0)
    # a plain clicks file is a session of one object
    ls.object("left").save_clicks(tmp_path / "left.clicks.json")
    one = LabelSession.load(tmp_path / "left.clicks.json", IMG)
    assert one.names == ("Segment_1",)
    np.testing.assert_array_equal(one.object("Segment_1").mask, ls.object("left").mask)


def test_label_map_file_carries_the_object_names(tmp_path):
    pytest.importorskip("slicerio")
    from midseg.labelmap import read_labelmap

    ls = _two()
    ls.write_labelmap(tmp_path / "objects.seg.nrrd")
    image, segments = read_labelmap(tmp_path / "objects.seg.nrrd")
    assert [s.name for s in segments] == ["left", "right"]
    np.testing.assert_array_equal(image.array, ls.labelmap())


def test_bad_object_requests_are_refused():
    ls = LabelSession(IMG)
    ls.add("left")
    with pytest.raises(InvalidInputError, match="exists already"):
        ls.add("left")
    with pytest.raises(InvalidInputError, match="label value 1"):
        ls.add("other", value=1)
    with pytest.raises(InvalidInputError, match="no object named 'nope'"):
        ls.object("nope")
    with pytest.raises(MidsegError, match="nothing to save"):
        ls.to_dict()


def test_objects_start_from_an_existing_label_map_and_refine():
    from midseg.labelmap import Segment

    labels = np.zeros(LEFT.shape, np.uint8)
    labels[LEFT] = 4
    labels[RIGHT & (XX < 70)] = 9  # half of the right object missing
    ls = LabelSession.from_labelmap(IMG, labels, [Segment(4, "left"), Segment(9, "right")])
    np.testing.assert_array_equal(ls.labelmap(), labels)
    ls.object("right").refine(foreground=[(40, 76)])
    assert ls.labelmap()[40, 76] == 9
    assert (ls.labelmap()[LEFT] == 4).all()  # the other object is untouched
    from midseg.errors import MidsegWarning

    with pytest.warns(MidsegWarning, match="no voxel"):
        ghost = LabelSession.from_labelmap(IMG, labels, [Segment(5, "ghost")])
    assert ghost.object("ghost").mask is None


def test_a_session_started_from_a_label_map_reloads_with_it(tmp_path):
    from midseg.labelmap import Segment

    labels = np.zeros(LEFT.shape, np.uint8)
    labels[LEFT] = 4
    ls = LabelSession.from_labelmap(IMG, labels, [Segment(4, "left")], lam=3.0)
    ls.object("left").refine(background=[(40, 30)])
    ls.save(tmp_path / "l.json")
    back = LabelSession.load(tmp_path / "l.json", IMG, initial_labelmap=labels)
    np.testing.assert_array_equal(back.labelmap(), ls.labelmap())
    assert back.add("more").lam == 3.0  # the session's parameters too


def test_reloading_an_object_started_from_a_label_map_without_it_names_the_object(tmp_path):
    from midseg.labelmap import Segment

    labels = np.zeros(LEFT.shape, np.uint8)
    labels[LEFT] = 4
    ls = LabelSession.from_labelmap(IMG, labels, [Segment(4, "left kidney")])
    ls.object("left kidney").refine(background=[(40, 30)])
    ls.save(tmp_path / "l.json")
    with pytest.raises(
        InvalidInputError, match=r"objects\[0\] \('left kidney'\).*initial_labelmap"
    ):
        LabelSession.load(tmp_path / "l.json", IMG)
    wrong = np.where(labels == 4, 4, 0).astype(np.uint8)
    wrong[40, 30] = 0
    with pytest.raises(InvalidInputError, match=r"objects\[0\] \('left kidney'\): initial_mask"):
        LabelSession.load(tmp_path / "l.json", IMG, initial_labelmap=wrong)


def test_from_labelmap_takes_what_read_labelmap_returns(tmp_path):
    from midseg.labelmap import Segment, read_labelmap, write_labelmap

    labels = np.zeros(LEFT.shape, np.uint8)
    labels[LEFT] = 3
    write_labelmap(tmp_path / "lab.nii.gz", labels, like=IMG, segments=[Segment(3, "left")])
    image_labels, segments = read_labelmap(tmp_path / "lab.nii.gz")
    ls = LabelSession.from_labelmap(IMG, image_labels, segments)
    np.testing.assert_array_equal(ls.labelmap(), labels)
    shifted = Image(np.asarray(image_labels.array), spacing=(0.25, 0.25))
    with pytest.raises(InvalidInputError, match="does not line up"):
        LabelSession.from_labelmap(IMG, shifted, segments)


def test_objects_added_after_loading_an_older_file_use_todays_settings(tmp_path):
    import json

    from midseg.errors import OlderClicksWarning

    ls = LabelSession(IMG)
    ls.add("left").segment(P_LEFT)
    doc = ls.object("left").clicks_dict()
    doc["version"] = 4
    for key in ("margin_floor", "claim_keep", "min_click_depth", "band_reach", "thick_slice_ratio"):
        del doc["parameters"][key]
    (tmp_path / "v4.clicks.json").write_text(json.dumps(doc))
    with pytest.warns(OlderClicksWarning, match=r"v4\.clicks\.json.*'Segment_1'"):
        back = LabelSession.load(tmp_path / "v4.clicks.json", IMG)
    old = back.object("Segment_1")
    assert (old.margin_floor, old.claim_keep) == (0.0, 0.0)  # replayed as made
    new = back.add("right")
    assert (new.margin_floor, new.claim_keep) == (0.0, 0.1)  # today's defaults in 2D
    # what the old file's user chose carries over: its method, and stage1_cut (version 4)
    doc["parameters"].update(method="gc", stage1_cut=False)
    (tmp_path / "v4.clicks.json").write_text(json.dumps(doc))
    with pytest.warns(OlderClicksWarning):
        back = LabelSession.load(tmp_path / "v4.clicks.json", IMG)
    chosen = back.add("right")
    assert (chosen.method, chosen.stage1_cut, chosen.claim_keep) == ("gc", False, 0.1)
    # a version-5 file also stored margin_floor and claim_keep, which carry over; its
    # min_click_depth was 1 for its own rounds, and a new object takes today's default
    doc.update(version=5)
    doc["parameters"].update(margin_floor=0.3, claim_keep=0.0)
    (tmp_path / "v5.clicks.json").write_text(json.dumps(doc))
    with pytest.warns(OlderClicksWarning):
        back = LabelSession.load(tmp_path / "v5.clicks.json", IMG)
    assert back.object("Segment_1").min_click_depth == 1.0
    chosen = back.add("right")
    assert (chosen.margin_floor, chosen.claim_keep, chosen.method) == (0.3, 0.0, "gc")
    assert chosen.min_click_depth == 1.0  # 2D default (3D: 2)
    # a version-6 file also stored min_click_depth, which carries over; its band_reach was
    # 0 for its own rounds, and a new object takes today's default
    doc.update(version=6)
    doc["parameters"].update(min_click_depth=1.5)
    (tmp_path / "v6.clicks.json").write_text(json.dumps(doc))
    with pytest.warns(OlderClicksWarning):
        back = LabelSession.load(tmp_path / "v6.clicks.json", IMG)
    old = back.object("Segment_1")
    assert (old.min_click_depth, old.band_reach) == (1.5, 0.0)
    chosen = back.add("right")
    assert (chosen.min_click_depth, chosen.band_reach, chosen.margin_floor) == (1.5, 6.0, 0.3)
    # a version-7 file also stored band_reach, which carries over
    doc.update(version=7)
    doc["parameters"].update(band_reach=2.0)
    (tmp_path / "v7.clicks.json").write_text(json.dumps(doc))
    with pytest.warns(OlderClicksWarning):
        back = LabelSession.load(tmp_path / "v7.clicks.json", IMG)
    assert back.object("Segment_1").band_reach == 2.0
    assert back.add("right").band_reach == 2.0
