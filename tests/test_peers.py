"""Classical peers: each segments a bright disc/ball from its seeds and keeps the seed labels."""
from __future__ import annotations

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
    ramp = np.linspace(0, 0.3, mask.shape[-1])          # a mild intensity gradient
    return (mask * 1.0 + ramp + rng.normal(0, noise, mask.shape)).astype(np.float32)


@pytest.mark.parametrize("name", NAMES)
def test_peer_segments_disc_from_margin_points(name):
    gt = disc((70, 80), radius=18)
    img = _noisy(gt)
    pts = interior_margin_points(gt, rng=3)
    mask = peers.PEERS[name](img, pts, [], spacing=(1.0, 1.0), box=relaxed_bbox(pts, gt.shape))
    assert mask.shape == gt.shape and mask.dtype == np.uint8
    assert dice(mask, gt) >= 0.9
    assert mask[tuple(pts.T)].all()                      # foreground seeds stay foreground


@pytest.mark.parametrize("name", NAMES)
def test_peer_respects_background_seed_and_border(name):
    gt = disc((60, 60), radius=15)
    img = _noisy(gt, seed=1)
    pts = interior_margin_points(gt, rng=0)
    bg = np.array([[30, 52]])                            # outside the disc, inside the box
    box = relaxed_bbox(np.concatenate([pts, bg]), gt.shape)
    mask = peers.PEERS[name](img, pts, bg, spacing=None, box=box)
    assert mask[30, 52] == 0
    assert mask[tuple(pts.T)].all()
    outside = np.ones(gt.shape, bool)
    outside[box.slices] = False
    assert not mask[outside].any()                       # nothing outside the crop


@pytest.mark.parametrize("name", NAMES)
def test_peer_3d_ball(name):
    gt = disc((24, 30, 30), radius=8)
    img = _noisy(gt, seed=2, noise=0.1)
    pts = interior_margin_points(gt, rng=1)
    mask = peers.PEERS[name](img, pts, [], spacing=(2.0, 1.0, 1.0))
    assert dice(mask, gt) >= 0.9
    assert mask[tuple(pts.T)].all()


def test_seed_labels_skips_faces_on_image_border():
    lab = peers.seed_labels((5, 6), np.array([[2, 2]]), np.zeros((0, 2), int),
                            open_faces=[(False, True), (True, True)])
    assert (lab[0, 1:-1] == 0).all()       # low y face lies on the image edge: not a seed
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
