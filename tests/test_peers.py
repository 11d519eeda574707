"""Classical peers: each segments a bright disc/ball from its seeds and keeps the seed labels."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from midseg import peers
from midseg.crop import relaxed_bbox
from midseg.data_sim import interior_margin_points
from midseg.errors import InvalidInputError
from midseg.metrics import dice

from conftest import disc

NAMES = sorted(peers.PEERS)


def _noisy(mask, seed=0, noise=0.15):
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 0.3, mask.shape[-1])  # a mild intensity gradient
    return (mask * 1.0 + ramp + rng.normal(0, noise, mask.shape)).astype(np.float32)


@pytest.mark.parametrize("name", NAMES)
def test_peer_segments_disc_from_margin_points(name):
    gt = disc((70, 80), radius=18)
    img = _noisy(gt)
    pts = interior_margin_points(gt, rng=3)
    mask = peers.PEERS[name](img, pts, [], spacing=(1.0, 1.0), box=relaxed_bbox(pts, gt.shape))
    assert mask.shape == gt.shape and mask.dtype == np.uint8
    assert dice(mask, gt) >= 0.9
    assert mask[tuple(pts.T)].all()  # foreground seeds stay foreground


@pytest.mark.parametrize("name", NAMES)
def test_peer_respects_background_seed_and_border(name):
    gt = disc((60, 60), radius=15)
    img = _noisy(gt, seed=1)
    pts = interior_margin_points(gt, rng=0)
    bg = np.array([[30, 52]])  # outside the disc, inside the box
    box = relaxed_bbox(np.concatenate([pts, bg]), gt.shape)
    mask = peers.PEERS[name](img, pts, bg, spacing=None, box=box)
    assert mask[30, 52] == 0
    assert mask[tuple(pts.T)].all()
    outside = np.ones(gt.shape, bool)
    outside[box.slices] = False
    assert not mask[outside].any()  # nothing outside the crop


@pytest.mark.parametrize("name", NAMES)
def test_peer_3d_ball(name):
    gt = disc((24, 30, 30), radius=8)
    img = _noisy(gt, seed=2, noise=0.1)
    pts = interior_margin_points(gt, rng=1)
    mask = peers.PEERS[name](img, pts, [], spacing=(2.0, 1.0, 1.0))
    assert dice(mask, gt) >= 0.9
    assert mask[tuple(pts.T)].all()


def test_seed_labels_skips_faces_on_image_border():
    lab = peers.seed_labels(
        (5, 6), np.array([[2, 2]]), np.zeros((0, 2), int), open_faces=[(False, True), (True, True)]
    )
    assert (lab[0, 1:-1] == 0).all()  # low y face lies on the image edge: not a seed
    assert (lab[-1] == 2).all() and (lab[:, 0] == 2).all()
    assert lab[2, 2] == 1


def test_conflicting_seeds_rejected():
    img = np.zeros((20, 20), np.float32)
    with pytest.raises(InvalidInputError, match="both a foreground and a background"):
        peers.random_walker(img, [(5, 5)], [(5, 5)])


def test_normalise_crop_range():
    x = np.arange(100, dtype=float).reshape(10, 10)
    n = peers.normalise_crop(x)
    assert n.min() == 0.0 and n.max() == 1.0
    assert (peers.normalise_crop(np.ones((4, 4))) == 0).all()


# ------------------------------------------------------------------ seed balls


@pytest.mark.parametrize(
    "spacing, size",
    [((1.0, 1.0), 13), ((1.0, 1.0, 1.0), 33), ((3.0, 1.0, 1.0), 13), ((1.0, 1.5), 11)],
)
def test_seed_ball_size_follows_spacing(spacing, size):
    nd = len(spacing)
    lab = peers.seed_labels(
        (15,) * nd, np.array([[7] * nd]), np.zeros((0, nd), int), radius=2.0, spacing=spacing
    )
    assert int((lab == 1).sum()) == size
    if spacing[0] == 3.0:  # 3 mm slices: a radius of 2 mm stays in its slice
        assert int((lab[7] == 1).sum()) == size


def test_seed_ball_radius_zero_is_the_point_and_tiny_radius_keeps_it():
    for radius in (0.0, 0.5):
        lab = peers.seed_labels((9, 9), np.array([[4, 4]]), np.zeros((0, 2), int), radius=radius)
        assert (lab == 1).sum() == 1 and lab[4, 4] == 1


def test_seed_ball_clipped_to_crop():
    lab = peers.seed_labels(
        (6, 6),
        np.array([[0, 0]]),
        np.zeros((0, 2), int),
        open_faces=[(False, True), (False, True)],
        radius=2.0,
    )
    assert (lab == 1).sum() == 6  # the quarter of the 13-pixel disc inside the crop


def test_seed_ball_overlap_is_unlabelled_and_points_keep_their_label():
    none = np.zeros((0, 2), int)
    lab = peers.seed_labels((9, 12), np.array([[4, 4]]), np.array([[4, 7]]), radius=2.0)
    ball_f = peers.seed_labels((9, 12), np.array([[4, 4]]), none, radius=2.0) == 1
    ball_b = peers.seed_labels((9, 12), none, np.array([[4, 7]]), radius=2.0) == 2
    ball_b[[0, -1]] = ball_b[:, [0, -1]] = False  # the shell, not the ball
    assert np.argwhere(ball_f & ball_b).tolist() == [[4, 5], [4, 6]]
    assert lab[4, 5] == 0 and lab[4, 6] == 0
    assert (lab[ball_f & ~ball_b] == 1).all() and (lab[ball_b & ~ball_f] == 2).all()
    # a point inside the other label's ball keeps its own label
    lab = peers.seed_labels((9, 12), np.array([[4, 4]]), np.array([[4, 5]]), radius=2.0)
    assert lab[4, 4] == 1 and lab[4, 5] == 2 and lab[4, 3] == 0 and lab[4, 6] == 0


def test_seed_ball_bad_radius_rejected():
    with pytest.raises(InvalidInputError, match="radius"):
        peers.seed_labels((5, 5), np.array([[2, 2]]), np.zeros((0, 2), int), radius=-1.0)


# ------------------------------------------------------------- random walker


class _Spy:
    """Wraps skimage's random_walker and records what the peer passed to it."""

    def __init__(self, monkeypatch):
        import skimage.segmentation

        self.real = skimage.segmentation.random_walker
        self.calls = []
        monkeypatch.setattr(skimage.segmentation, "random_walker", self)

    def __call__(self, data, labels, **kw):
        self.calls.append((data, labels.copy(), kw))
        return self.real(data, labels, **kw)


def test_random_walker_full_resolution_with_ball_seeds(monkeypatch):
    spy = _Spy(monkeypatch)
    gt = disc((40, 60, 60), radius=14)  # crop ~44x44x44 = 85k voxels: was subsampled
    img = _noisy(gt, seed=4, noise=0.1)
    pts = interior_margin_points(gt, rng=2)
    box = relaxed_bbox(pts, gt.shape)
    mask = peers.random_walker(img, pts, [], spacing=(1.0, 1.0, 1.0), box=box)
    ((data, labels, kw),) = spy.calls
    assert data.shape == tuple(b - a for a, b in zip(box.start, box.stop))
    assert kw["beta"] == peers.RW_BETA[data.ndim] and kw["tol"] == peers.RW_TOL
    np.testing.assert_array_equal(kw["spacing"], [1.0, 1.0, 1.0])
    local = pts - np.asarray(box.start)
    grid = np.indices(data.shape).reshape(3, -1).T
    near = (((grid[:, None, :] - local[None]) ** 2).sum(axis=2) <= 4).any(axis=1)
    np.testing.assert_array_equal(labels.ravel() == 1, near)  # balls of radius 2 voxels
    assert mask[tuple(pts.T)].all()
    assert dice(mask, gt) >= 0.9


def test_random_walker_one_voxel_gap_survives():
    # two bright bars split by a one-voxel dark gap, in a crop a 20k-voxel grid would subsample
    from midseg.crop import Box

    img = np.zeros((16, 48, 48), np.float32)
    img[4:12, 6:42, 8:23] = 1.0
    img[4:12, 6:42, 24:40] = 1.0
    mask = peers.random_walker(
        img, [(8, 24, 15)], [(8, 24, 32)], spacing=(1.0, 1.0, 1.0), box=Box((0, 0, 0), img.shape)
    )
    assert mask[4:12, 6:42, 8:23].all()
    assert not mask[:, :, 23:].any()


def test_random_walker_mode_cg_mg_with_pyamg(monkeypatch):
    pytest.importorskip("pyamg")
    spy = _Spy(monkeypatch)
    gt = disc((30, 30), radius=8)
    peers.random_walker(_noisy(gt), interior_margin_points(gt, rng=0), [])
    assert spy.calls[0][2]["mode"] == "cg_mg"


def test_random_walker_falls_back_to_cg_j_without_pyamg(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyamg", None)  # import pyamg now raises ImportError
    spy = _Spy(monkeypatch)
    gt = disc((30, 30), radius=8)
    pts = interior_margin_points(gt, rng=0)
    mask = peers.random_walker(_noisy(gt), pts, [])
    assert spy.calls[0][2]["mode"] == "cg_j"
    assert dice(mask, gt) >= 0.9
