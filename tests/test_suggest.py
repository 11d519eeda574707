"""Suggested clicks (issue 23): `midseg.suggest.suggest_clicks`, `Session.suggest`, the users."""

from __future__ import annotations

import numpy as np
import pytest

from midseg.errors import InvalidInputError
from midseg.suggest import Suggestion, suggest_clicks


def scene(dims=2, seed=0):
    """A bright disc / ball on a dark noisy background; spacing anisotropic in 3D."""
    rng = np.random.default_rng(seed)
    shape = (60, 64) if dims == 2 else (24, 48, 48)
    spacing = (1.0, 1.0) if dims == 2 else (2.0, 1.0, 1.0)
    c = np.array(shape) / 2
    r = np.array([18, 18]) if dims == 2 else np.array([8, 16, 16])
    g = np.indices(shape, dtype=float)
    truth = sum(((gi - ci) / ri) ** 2 for gi, ci, ri in zip(g, c, r)) <= 1
    image = (100 + 60 * truth + rng.normal(0, 6, shape)).astype(np.float32)
    return image, truth, spacing


def test_a_missed_part_is_suggested_as_foreground():
    image, truth, sp = scene()
    mask = truth.copy()
    mask[:, 40:] = False  # the right side of the disc missed
    found = suggest_clicks(image, mask, spacing=sp)
    assert len(found) == 1 and isinstance(found[0], Suggestion)
    p = found[0].point
    assert truth[p] and not mask[p] and found[0].foreground
    assert found[0].score > 0


def test_a_leak_is_suggested_as_background_in_3d():
    image, truth, sp = scene(3)
    mask = truth.copy()
    mask[8:16, 2:14, 18:30] = True  # a leak into the background above the ball
    found = suggest_clicks(image, mask, spacing=sp)
    p = found[0].point
    assert mask[p] and not truth[p] and not found[0].foreground


def test_deterministic_separated_and_away_from_clicks():
    image, truth, sp = scene()
    mask = truth.copy()
    mask[:, 40:] = False
    a = suggest_clicks(image, mask, spacing=sp, k=3)
    b = suggest_clicks(image, mask, spacing=sp, k=3)
    assert a == b and len(a) == 3
    pts = np.array([s.point for s in a], float)
    for i in range(3):
        for j in range(i):
            assert np.linalg.norm(pts[i] - pts[j]) >= 8.0
    assert [s.score for s in a] == sorted((s.score for s in a), reverse=True)
    moved = suggest_clicks(image, mask, spacing=sp, clicks=[a[0].point])[0]
    assert np.linalg.norm(np.array(moved.point) - pts[0]) > 3.0


def test_large_crops_are_subsampled_but_points_are_full_grid_voxels(monkeypatch):
    import midseg.suggest as sug

    image, truth, sp = scene(3)
    mask = truth.copy()
    mask[:, :, 34:] = False
    monkeypatch.setattr(sug, "SUGGEST_MAX_VOXELS", 4000)
    found = suggest_clicks(image, mask, spacing=sp, k=2)
    assert found and all(s.foreground == (not mask[s.point]) for s in found)


@pytest.mark.parametrize("shape", [(7, 9), (1, 12), (5, 1, 8), (6, 7, 5)])
def test_shift_reduce_equals_scipy_filters(shape):
    from scipy import ndimage

    from midseg.suggest import _shift_reduce

    rng = np.random.default_rng(len(shape))
    a = rng.normal(size=shape).astype(np.float32)
    a[a > 1] = np.inf
    half = [int(v) for v in rng.integers(0, 4, len(shape))]
    size = [2 * h + 1 for h in half]
    assert np.array_equal(_shift_reduce(a, half, np.minimum), ndimage.minimum_filter(a, size))
    b = a > 0
    assert np.array_equal(_shift_reduce(b, half, np.maximum), ndimage.maximum_filter(b, size))


def test_session_suggest_reads_only_the_extent_and_matches_suggest_clicks(monkeypatch):
    pytest.importorskip("torch")
    import midseg
    import midseg.suggest as sug

    image, truth, sp = scene(3)
    big = np.full((40, 90, 100), 100, np.float32)
    big += np.random.default_rng(1).normal(0, 6, big.shape).astype(np.float32)
    big[5:29, 30:78, 40:88] = image
    start = np.zeros(big.shape, bool)
    start[5:29, 30:78, 40:88] = truth
    start[:, :, 70:] = False
    session = midseg.Session(midseg.Image(big, spacing=sp), model="3d")
    session.start_from_mask(start)
    session.refine(foreground=[(17, 54, 72)])
    expected = suggest_clicks(big, session.mask, spacing=sp, clicks=[(17, 54, 72)], k=3)
    seen = []
    inner = sug._suggest
    monkeypatch.setattr(sug, "_suggest", lambda *a: seen.append(a[5]) or inner(*a))
    assert session.suggest(3) == expected and len(expected) == 3
    (extent,) = seen  # a box smaller than the image that holds the whole mask
    inside = np.zeros(big.shape, bool)
    inside[extent] = True
    assert not inside.all() and not (session.mask.astype(bool) & ~inside).any()
    with pytest.raises(InvalidInputError, match="k must be an integer >= 1"):
        session.suggest(0)


def test_in_crop_equals_strided_slicing_of_the_full_map():
    from midseg.suggest import _in_crop

    rng = np.random.default_rng(3)
    shape = (13, 17, 11)
    for _ in range(50):
        box = tuple(slice(int(a), int(a + rng.integers(1, n - a + 1))) for a, n in
                    zip((rng.integers(0, n) for n in shape), shape))  # fmt: skip
        full = np.zeros(shape, np.float32)
        full[box] = rng.random([b.stop - b.start for b in box])
        step = int(rng.integers(1, 4))
        sl = tuple(slice(int(a), int(rng.integers(a + 1, n + 1)), step) for a, n in
                   zip((rng.integers(0, n) for n in shape), shape))  # fmt: skip
        crop = full[sl]
        assert np.array_equal(_in_crop((box, full[box]), sl, crop.shape), crop)
        inside = np.zeros(shape, bool)
        inside[box] = True
        filled = _in_crop((box, full[box]), sl, crop.shape, fill=0.5)
        assert np.array_equal(filled, np.where(inside[sl], crop, np.float32(0.5)))


def test_a_disagreeing_cnn_map_moves_the_3d_suggestion():
    image, truth, sp = scene(3)
    leak = np.zeros_like(truth)
    leak[8:16, 18:30, 30:44] = True
    leak &= ~truth
    image[leak] += 60  # a neighbour as bright as the object: the intensities cannot tell
    mask = truth | leak
    plain = suggest_clicks(image, mask, spacing=sp)[0]
    prob = np.where(truth, 0.95, 0.05).astype(np.float32)  # the CNN knows better
    moved = suggest_clicks(image, mask, spacing=sp, probability=prob)[0]
    assert not leak[plain.point]
    assert leak[moved.point] and not moved.foreground
    with pytest.raises(InvalidInputError, match="probability must be an array"):
        suggest_clicks(image, mask, spacing=sp, probability=prob * 2)
    # a foreground click in the leak contradicts the CNN: its term is dropped in the leak
    where = [moved.point]
    unknown = suggest_clicks(image, mask, spacing=sp, probability=prob, clicks=where)[0]
    kept = suggest_clicks(image, mask, spacing=sp, probability=prob, clicks=where,
                          click_foreground=[False])[0]  # fmt: skip
    assert kept == unknown and leak[kept.point]
    dropped = suggest_clicks(image, mask, spacing=sp, probability=prob, clicks=where,
                             click_foreground=[True])[0]  # fmt: skip
    assert dropped.score < kept.score - 0.8  # 0.3 x log(0.95 / 0.05) less
    with pytest.raises(InvalidInputError, match="click_foreground must give one class"):
        suggest_clicks(image, mask, spacing=sp, clicks=where, click_foreground=[True, False])
    flat = suggest_clicks(image[12], mask[12], spacing=sp[1:], probability=prob[12])[0]
    assert flat == suggest_clicks(image[12], mask[12], spacing=sp[1:])[0]  # no 2D weight


def test_nothing_to_suggest():
    image, truth, sp = scene()
    assert suggest_clicks(image, np.zeros_like(truth), spacing=sp) == []
    assert suggest_clicks(image, np.ones_like(truth), spacing=sp) == []


def test_a_float64_image_beyond_float32_range():
    image, truth, sp = scene()
    mask = truth.copy()
    mask[:, 40:] = False
    (expected,) = suggest_clicks(image, mask, spacing=sp)
    (found,) = suggest_clicks(image.astype(np.float64) * 1e300, mask, spacing=sp)
    assert found.point == expected.point and found.foreground == expected.foreground
    assert found.score == pytest.approx(expected.score, rel=1e-4)


def test_multichannel_image():
    image, truth, sp = scene()
    two = np.stack([image, image[::-1]])
    mask = truth.copy()
    mask[:, 40:] = False
    found = suggest_clicks(two, mask, spacing=sp, channel_axis=0)
    assert found and not mask[found[0].point]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"k": 0}, "k must be an integer >= 1"),
        ({"k": 1.5}, "k must be an integer >= 1"),
        ({"mask": np.zeros((3, 3), bool)}, "mask must have the image's spatial shape"),
        ({"clicks": [(1, 2, 3), (4, 5, 6)]}, "clicks must be index tuples with 2 coordinates"),
        ({"clicks": [(1, 2), (3,)]}, "clicks must be index tuples of 2 numbers"),
        ({"clicks": [(5, 5)], "click_foreground": ["False"]}, "click_foreground must hold"),
        ({"clicks": [(5, 5)], "click_foreground": [[True]]}, "one class per click"),
        ({"probability": np.full((60, 64), "x")}, "probability must be an array"),
    ],
)
def test_bad_input(kwargs, message):
    image, truth, sp = scene()
    args = {"mask": truth, **kwargs}
    with pytest.raises(InvalidInputError, match=message):
        suggest_clicks(image, args.pop("mask"), spacing=sp, **args)


def test_session_suggest_and_the_users():
    pytest.importorskip("torch")
    import midseg
    from midseg.evaluation.methods import SessionMethod
    from midseg.evaluation.users import next_click

    image, truth, sp = scene()
    session = midseg.Session(midseg.Image(image, spacing=sp), model="2d")
    assert session.suggest() == []  # before stage 1
    with pytest.raises(InvalidInputError, match="k must be an integer >= 1"):
        session.suggest(0)
    start = truth.copy()
    start[:, 40:] = False
    session.start_from_mask(start)
    s = session.suggest(2)
    assert len(s) == 2 and truth[s[0].point] and s[0].foreground
    session.refine(foreground=[s[0].point])
    assert session.mask.sum() > start.sum()
    # a brush edit is never suggested back, even where the image says it is wrong
    before = session.suggest(3)
    patch = [(y, x) for y in range(14, 19) for x in range(37, 40)]  # object voxels, erased
    session.paint(patch, 0)
    unaware = suggest_clicks(image, session.mask, spacing=sp, clicks=[s[0].point], k=3)
    assert any(p.point in patch for p in unaware)
    assert all(p.point not in patch for p in session.suggest(3))
    session.undo()
    assert session.suggest(3) == before

    method = SessionMethod("midseg", model="2d")
    points = np.array([[12, 32], [48, 32], [30, 14], [30, 50]])
    mask = method.start(image, points, spacing=sp)
    rng = np.random.default_rng(0)
    gt = truth.astype(np.uint8)
    for user in ("robot", "suggest", "random"):
        click, hit, seconds = next_click(user, gt, mask, method, spacing=sp, rng=rng)
        if click is not None:
            assert click.foreground == bool(gt[click.point])
            assert hit == bool(gt[click.point] != mask[click.point])
    with pytest.raises(InvalidInputError, match="user must be one of"):
        next_click("oracle", gt, mask, method, spacing=sp, rng=rng)


def test_protocol_with_the_suggestion_user_writes_user_columns(tmp_path):
    pytest.importorskip("torch")
    from midseg.evaluation import Case, read_csv, run_protocol, write_csv
    from midseg.evaluation.methods import SessionMethod

    image, truth, sp = scene()
    case = Case("synthetic", "disc", image, truth.astype(np.uint8), sp)
    rows = run_protocol(
        [case], [SessionMethod("midseg", model="2d")], clicks=2, user="suggest", progress=False
    )
    assert [r["click"] for r in rows] == [0, 1, 2] and all(r["user"] == "suggest" for r in rows)
    write_csv(rows, tmp_path / "steps.csv")
    back = read_csv(tmp_path / "steps.csv")
    assert back[0]["user"] == "suggest" and np.isnan(back[0]["in_error"])
    assert all(r["in_error"] in (0.0, 1.0) or np.isnan(r["in_error"]) for r in back[1:])
