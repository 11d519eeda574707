"""Tests for midseg.train: the sample pipeline, the schedule, learning, determinism, resume."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from midseg.errors import InvalidInputError, MidsegError  # noqa: E402
from midseg.train import TrainConfig, TrainItem, lr_at, make_sample, train  # noqa: E402


def _discs(n, seed, size=48):
    """Bright discs of random centre and radius on a noisy background (2D)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    items = []
    for k in range(n):
        cy, cx = rng.uniform(0.35, 0.65, 2) * size
        r = rng.uniform(0.12, 0.25) * size
        mask = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
        image = mask * 1.0 + rng.normal(0, 0.25, mask.shape)
        items.append(TrainItem(image.astype(np.float32), mask, (1.0, 1.0), f"disc{k}"))
    return items


def _cfg(**kw):
    base = dict(
        spatial_dims=2,
        grid_shape=(32, 32),
        base=4,
        depth=2,
        epochs=5,
        batch_size=4,
        lr=3e-3,
        schedule="constant",
        val_every=1,
        threads=1,
        seed=3,
    )
    base.update(kw)
    return TrainConfig(**base)


def test_schedule_follows_the_paper_recipe():
    # Constant for the first half, then halved every tenth of the run.
    assert lr_at(0, 300, 1e-4, "step") == lr_at(149, 300, 1e-4, "step") == 1e-4
    assert lr_at(150, 300, 1e-4, "step") == pytest.approx(5e-5)
    assert lr_at(180, 300, 1e-4, "step") == pytest.approx(2.5e-5)
    assert lr_at(299, 300, 1e-4, "step") == pytest.approx(1e-4 / 32)
    assert lr_at(0, 100, 1.0, "poly") == 1.0 and lr_at(100, 100, 1.0, "poly") == 0.0
    assert lr_at(77, 100, 0.5, "constant") == 0.5


@pytest.mark.parametrize("cue, channels", [("egd", 2), ("none", 1)])
def test_sample_without_augmentation_is_the_cropped_object(cue, channels):
    item = _discs(1, 0)[0]
    cfg = _cfg(cue=cue, augment=False)
    x, y = make_sample(item, cfg, np.random.default_rng(0))
    assert x.shape == (channels, 32, 32) and y.shape == (32, 32)
    assert set(np.unique(y)) == {0.0, 1.0}
    # The relaxed box covers the whole disc, so the grid target holds a disc
    # that does not touch the grid border and fills a good part of it.
    assert y[0].sum() == y[-1].sum() == y[:, 0].sum() == y[:, -1].sum() == 0
    assert 0.1 < y.mean() < 0.9
    # The image channel is z-scored and brighter on the object.
    assert abs(x[0].mean()) < 1e-3 and x[0][y == 1].mean() > x[0][y == 0].mean()
    if cue == "egd":
        assert x[1].min() >= 0 and x[1].max() == pytest.approx(1.0)


def test_samples_are_reproducible_and_augmentation_varies_them():
    item = _discs(1, 0)[0]
    cfg = _cfg()
    a = make_sample(item, cfg, np.random.default_rng(5))
    b = make_sample(item, cfg, np.random.default_rng(5))
    c = make_sample(item, cfg, np.random.default_rng(6))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_sample_3d_shapes():
    zz, yy, xx = np.mgrid[:24, :32, :32]
    mask = (zz - 12) ** 2 + (yy - 16) ** 2 + (xx - 15) ** 2 < 36
    item = TrainItem(
        mask.astype(np.float32)
        + 0.1 * np.random.default_rng(0).normal(size=mask.shape).astype(np.float32),
        mask,
    )
    cfg = _cfg(spatial_dims=3, grid_shape=(16, 24, 24))
    x, y = make_sample(item, cfg, np.random.default_rng(0))
    assert x.shape == (2, 16, 24, 24) and y.shape == (16, 24, 24) and y.sum() > 0


def test_loss_decreases_on_discs():
    result = train(_discs(8, 1), _cfg(epochs=10), progress=False)  # 20 iterations
    losses = [h["train_loss"] for h in result.history]
    assert len(losses) == 20
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path):
    items = _discs(6, 2)
    cfg = _cfg(epochs=3, schedule="step")  # 6 iterations, lr changes on the way
    full = train(items, cfg, tmp_path / "full", progress=False)
    part = train(items, cfg, tmp_path / "part", progress=False, max_iterations=4)
    assert part.history[-1]["iteration"] == 4
    resumed = train(
        items, cfg, tmp_path / "part2", progress=False, resume=tmp_path / "part" / "checkpoint.pt"
    )
    a, b = full.net.state_dict(), resumed.net.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k

    def timeless(history):  # the loss average carries over too: the same history (NaN too)
        return json.dumps([{k: v for k, v in h.items() if k != "elapsed_s"} for h in history])

    assert timeless(resumed.history) == timeless(full.history)
    # Same seed, fresh run: identical too.
    again = train(items, cfg, None, progress=False)
    for k in a:
        assert torch.equal(a[k], again.net.state_dict()[k]), k


def test_resume_with_another_config_is_refused(tmp_path):
    items = _discs(4, 2)
    train(items, _cfg(epochs=1), tmp_path, progress=False)
    with pytest.raises(Exception, match="different configuration"):
        train(
            items,
            _cfg(epochs=1, lr=1.0),
            tmp_path / "b",
            progress=False,
            resume=tmp_path / "checkpoint.pt",
        )


def test_resume_error_names_the_changed_setting(tmp_path):
    items = _discs(4, 2)
    train(items, _cfg(epochs=1), tmp_path, progress=False)
    with pytest.raises(MidsegError, match=r"lr: 0\.003 \(checkpoint\) vs 1\.0 \(now\)") as err:
        train(
            items, _cfg(epochs=1, lr=1.0), None, progress=False, resume=tmp_path / "checkpoint.pt"
        )
    assert "seed" not in str(err.value)  # only what differs


def test_resume_on_other_training_data_is_refused(tmp_path):
    items = _discs(4, 2)
    train(items, _cfg(epochs=1), tmp_path, progress=False)
    ck = tmp_path / "checkpoint.pt"
    more = items + _discs(2, 5)[:1]  # another pool: one item more
    with pytest.raises(MidsegError, match="other training data.*items: 4 .checkpoint. vs 5"):
        train(more, _cfg(epochs=1), None, progress=False, resume=ck)
    renamed = [TrainItem(it.image, it.mask, it.spacing, it.name + "b") for it in items]
    other = [TrainItem(it.image + 0.5, it.mask, it.spacing, it.name) for it in items]
    spaced = [TrainItem(it.image, it.mask, (3.0, 1.0), it.name) for it in items]
    for changed in (renamed, other, spaced):  # other names; other pixels; other spacing
        with pytest.raises(MidsegError, match="items_sha256"):
            train(changed, _cfg(epochs=1), None, progress=False, resume=ck)
    with pytest.raises(MidsegError, match="validation_items: 0 .checkpoint. vs 1"):
        train(items, _cfg(epochs=1), None, val_items=_discs(1, 9), progress=False, resume=ck)
    # two channels: refused by midseg before torch meets weights of another shape
    two = [TrainItem(np.stack([it.image, it.image]), it.mask, it.spacing, it.name) for it in items]
    with pytest.raises(MidsegError, match="image_channels: 1 .checkpoint. vs 2"):
        train(two, _cfg(epochs=1), None, progress=False, resume=ck)
    train(items, _cfg(epochs=1), None, progress=False, resume=ck)  # the same data resumes


def test_data_fingerprint_ignores_a_crop_around_the_object():
    from midseg.training.loop import _fingerprint

    items = _discs(4, 2)
    crop = (slice(2, -2), slice(3, -1))  # every disc lies inside (as --cache stores items)
    cropped = [TrainItem(it.image[crop], it.mask[crop], it.spacing, it.name) for it in items]
    assert all(c.mask.sum() == it.mask.sum() for c, it in zip(cropped, items))
    assert _fingerprint(cropped) == _fingerprint(items)
    two = [TrainItem(np.stack([it.image, -it.image]), it.mask, it.spacing, it.name) for it in items]
    assert _fingerprint(two) != _fingerprint(items)


def test_resume_of_a_checkpoint_without_data_record(tmp_path, capsys):
    items = _discs(4, 2)
    train(items, _cfg(epochs=2), tmp_path, progress=False, max_iterations=1)
    old = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    del old["data"], old["state"]["ema"]  # as written before the data record
    torch.save(old, tmp_path / "old.pt")
    two = [TrainItem(np.stack([it.image, it.image]), it.mask, it.spacing, it.name) for it in items]
    with pytest.raises(MidsegError, match=r"network of other shapes \(inc.0.weight"):
        train(two, _cfg(epochs=2), None, progress=False, resume=tmp_path / "old.pt")
    train(items, _cfg(epochs=2), None, progress=False, resume=tmp_path / "old.pt")
    assert "predates the data record" in capsys.readouterr().out
    old["data"] = {"items": 4, "names_sha256": "0" * 16, "image_channels": 1}  # first format
    old["data"] = {**old["data"], "items_sha256": "1" * 16}  # the second, without "record"
    torch.save(old, tmp_path / "first.pt")
    train(items, _cfg(epochs=2), None, progress=False, resume=tmp_path / "first.pt")
    assert "predates the data record" in capsys.readouterr().out


def test_written_model_loads_and_segments(tmp_path):
    import midseg.models as models
    from midseg.predict import predict_probability

    items = _discs(8, 3)
    res = train(
        items,
        _cfg(epochs=15),
        tmp_path,
        val_items=_discs(3, 4),
        name="tiny",
        progress=False,
        card_extra={"licence": "test data"},
    )
    card = json.loads((tmp_path / "tiny.json").read_text())
    for key in (
        "architecture",
        "grid_shape",
        "cue",
        "in_channels",
        "training",
        "validation",
        "licence",
        "weights",
    ):
        assert key in card
    assert card["training"]["iterations"] == 30 and card["training"]["seed"] == 3
    assert card["weights"]["bytes"] == (tmp_path / "tiny.pt").stat().st_size
    assert card["validation"]["dice"] == pytest.approx(res.history[-1]["val_dice"], abs=1e-4)
    model = models.load_model(tmp_path / "tiny.pt", device="cpu")
    item = _discs(1, 9)[0]
    idx = np.argwhere(item.mask)
    pts = [
        idx[idx[:, 0].argmin()],
        idx[idx[:, 0].argmax()],
        idx[idx[:, 1].argmin()],
        idx[idx[:, 1].argmax()],
    ]
    prob, _ = predict_probability(item.image, pts, model)
    inter = np.logical_and(prob >= 0.5, item.mask).sum()
    assert 2 * inter / ((prob >= 0.5).sum() + item.mask.sum()) > 0.7


def test_bad_items_are_rejected():
    item = _discs(1, 0)[0]
    with pytest.raises(InvalidInputError, match="empty"):
        train([TrainItem(item.image, np.zeros_like(item.mask))], _cfg(), progress=False)
    with pytest.raises(InvalidInputError, match="3D"):
        train([item], _cfg(spatial_dims=3, grid_shape=(8, 8, 8)), progress=False)


def test_keep_best_ships_the_best_validation_weights(tmp_path):
    res = train(
        _discs(6, 5),
        _cfg(epochs=6, keep_best=True, val_every=2),
        tmp_path,
        val_items=_discs(2, 6),
        name="best",
        progress=False,
    )
    vals = {h["iteration"]: h["val_dice"] for h in res.history}
    best_it = max(vals, key=lambda k: (vals[k], -k))
    assert res.card["training"]["weights_from_iteration"] == best_it
    assert res.card["validation"]["dice"] == pytest.approx(vals[best_it], abs=1e-4)


@pytest.mark.parametrize("shape", [(128, 128), (32, 48, 48)])
def test_synthetic_items_are_one_solid_object_and_reproducible(shape):
    from scipy import ndimage

    from midseg.train import synthetic_item

    for seed in range(6):
        a = synthetic_item(shape, seed)
        b = synthetic_item(shape, np.random.default_rng(seed))
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.mask, b.mask)
        assert a.image.shape == a.mask.shape == shape and a.image.dtype == np.float32
        assert np.isfinite(a.image).all()
        assert ndimage.label(a.mask)[1] == 1  # one connected object
        assert (ndimage.binary_fill_holes(a.mask) == a.mask).all()  # without holes
        assert 0.005 < a.mask.mean() < 0.6  # an object, not the scene
    # different seeds, different scenes
    assert not np.array_equal(synthetic_item(shape, 0).mask, synthetic_item(shape, 1).mask)


def test_synthetic_items_train_like_real_ones():
    from midseg.train import synthetic_item, synthetic_items

    items = synthetic_items(3, 2, seed=4)
    assert [it.name for it in items] == ["synthetic:0", "synthetic:1", "synthetic:2"]
    x, y = make_sample(items[0], _cfg(cue="egd"), np.random.default_rng(0))
    assert x.shape == (2, 32, 32) and y.shape == (32, 32) and 0 < y.mean() < 1
    with pytest.raises(InvalidInputError, match="shape"):
        synthetic_item((8, 8), 0)
    with pytest.raises(InvalidInputError, match="shape"):
        synthetic_item((64,), 0)


def test_synthetic_inner_parts_change_the_inside_only():
    from scipy import ndimage

    from midseg.train import synthetic_item

    changed = 0
    for seed in range(4):
        plain = synthetic_item((64, 64), seed)
        inner = synthetic_item((64, 64), seed, inclusions=1.0)
        # the object is drawn first: the option changes the scene, never the target
        np.testing.assert_array_equal(plain.mask, inner.mask)
        assert ndimage.label(inner.mask)[1] == 1 and np.isfinite(inner.image).all()
        changed += not np.array_equal(plain.image, inner.image)
        # probability 0 draws nothing: the same item as without the option
        np.testing.assert_array_equal(plain.image, synthetic_item((64, 64), seed, "s", 0.0).image)
    assert changed == 4
    with pytest.raises(InvalidInputError, match="inclusions"):
        synthetic_item((64, 64), 0, inclusions=1.5)


def test_synthetic_large_items_are_twice_the_size_and_deterministic():
    from midseg.train import synthetic_items

    plain = synthetic_items(6, 2, seed=4)
    mixed = synthetic_items(6, 2, seed=4, large=0.5)
    again = synthetic_items(6, 2, seed=4, large=0.5)
    sizes = [it.mask.shape for it in mixed]
    assert set(sizes) == {(128, 128), (256, 256)}  # both kinds at p = 0.5
    for a, b, c in zip(plain, mixed, again):
        np.testing.assert_array_equal(b.image, c.image)
        if b.mask.shape == (128, 128):  # a normal item is unchanged
            np.testing.assert_array_equal(a.image, b.image)
    assert all(it.mask.shape == (96, 192, 192) for it in synthetic_items(1, 3, seed=0, large=1))
    with pytest.raises(InvalidInputError, match="large"):
        synthetic_items(1, 2, large=-0.1)


def test_synthetic_mix_is_part_of_the_config(tmp_path):
    items = _discs(4, 8)
    res = train(items, _cfg(epochs=1, synthetic=3, grid_shape=(32, 32)), tmp_path, progress=False)
    assert res.card["training"]["items"] == 7  # 4 real + 3 synthetic
    with pytest.raises(Exception, match="different configuration"):
        train(
            items,
            _cfg(epochs=1, synthetic=0),
            None,
            progress=False,
            resume=tmp_path / "checkpoint.pt",
        )
    with pytest.raises(Exception, match="different configuration"):
        train(
            items,
            _cfg(epochs=1, synthetic=3, synthetic_large=0.5),
            None,
            progress=False,
            resume=tmp_path / "checkpoint.pt",
        )
    with pytest.raises(InvalidInputError, match="synthetic"):
        _cfg(synthetic=-1)
    for name in ("synthetic_inclusions", "synthetic_large"):
        with pytest.raises(InvalidInputError, match=name):
            _cfg(**{name: 2.0})


def test_init_starts_from_a_model_and_its_weights_can_stay(tmp_path):
    """--init: fine-tuning starts from the model's weights; the card records which."""
    items, val = _discs(6, 11), _discs(2, 12)
    first = train(items, _cfg(epochs=8), tmp_path / "a", val_items=val, name="a", progress=False)
    # lr ~ 0: the starting weights are kept (Adam with weight decay still moves
    # them by ~lr), and the iteration-0 validation is the starting model's.
    res = train(
        items,
        _cfg(epochs=1, lr=1e-12, weight_decay=0.0, keep_best=True, init=str(first.weights_path)),
        tmp_path / "b",
        val_items=val,
        name="b",
        progress=False,
    )
    a, b = first.net.state_dict(), res.net.state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=0), k
    init = res.card["training"]["initialised_from"]
    assert init["file"] == str(first.weights_path)
    assert init["sha256"] == first.card["weights"]["sha256"]
    assert init["val_dice"] == pytest.approx(first.card["validation"]["dice"], abs=1e-4)
    assert res.history[0]["iteration"] == 0
    import midseg.models as models

    assert f"fine-tuned from: a (sha256 {init['sha256'][:12]}" in models.describe(res.weights_path)
    # Without --init nothing is recorded.
    assert first.card["training"]["initialised_from"] is None


def test_resumed_fine_tuning_keeps_its_starting_model(tmp_path):
    """A resume takes the weights and the starting model's record from the checkpoint,
    even when the file named by init has been replaced since (as a shipped model is)."""
    items, val = _discs(4, 17), _discs(1, 18)
    start = train(items, _cfg(epochs=1), tmp_path / "start", name="s", progress=False)
    sha = start.card["weights"]["sha256"]
    cfg = _cfg(epochs=2, keep_best=True, init=str(start.weights_path))
    full = train(items, cfg, tmp_path / "full", val_items=val, progress=False)
    train(items, cfg, tmp_path / "part", val_items=val, progress=False, max_iterations=1)
    train(_discs(4, 19), _cfg(epochs=1, seed=9), tmp_path / "start", name="s", progress=False)
    assert (
        start.weights_path.is_file()
        and json.loads((tmp_path / "start" / "s.json").read_text())["weights"]["sha256"] != sha
    )
    resumed = train(
        items,
        cfg,
        tmp_path / "part2",
        val_items=val,
        progress=False,
        resume=tmp_path / "part" / "checkpoint.pt",
    )
    assert resumed.card["training"]["initialised_from"] == full.card["training"]["initialised_from"]
    assert resumed.card["training"]["initialised_from"]["sha256"] == sha
    for k, v in full.net.state_dict().items():
        assert torch.equal(v, resumed.net.state_dict()[k]), k


def test_init_with_another_architecture_or_cue_is_refused(tmp_path):
    items = _discs(4, 13)
    first = train(items, _cfg(epochs=1), tmp_path, name="a", progress=False)
    with pytest.raises(InvalidInputError, match="cue"):
        train(items, _cfg(epochs=1, cue="none", init=str(first.weights_path)), None, progress=False)
    with pytest.raises(InvalidInputError, match="architecture"):
        train(items, _cfg(epochs=1, base=8, init=str(first.weights_path)), None, progress=False)
    with pytest.raises(InvalidInputError, match="does not exist"):
        train(items, _cfg(epochs=1, init=str(tmp_path / "nope.pt")), None, progress=False)


def test_one_channel_model_starts_a_two_channel_run(tmp_path):
    """PET/CT from a single-modality model: the first convolution is shared out."""
    from midseg.models import load_model

    items = _discs(4, 13)
    first = train(items, _cfg(epochs=1), tmp_path, name="a", progress=False)
    two = [TrainItem(np.stack([i.image, i.image]), i.mask, i.spacing, i.name) for i in items]
    run = train(
        two, _cfg(epochs=1, init=str(first.weights_path)), None, progress=False, max_iterations=None
    )
    info = run.card["training"]["initialised_from"]
    assert info["image_channels_expanded"].startswith("1 -> 2")
    # before any step, the expanded network maps (x, x) exactly as the original maps x
    net2 = type(run.net)(2, 3, 2, base=4, depth=2)
    from midseg.train import _init_from

    _init_from(net2, _cfg(epochs=1, init=str(first.weights_path)), 3)
    one = load_model(str(first.weights_path), device="cpu").net
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(1, 2, 32, 32)).astype(np.float32))
    with torch.no_grad():
        a = one.eval()(x)
        b = net2.eval()(torch.cat([x[:, :1], x[:, :1], x[:, 1:]], dim=1))
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    three = [TrainItem(np.stack([i.image] * 3), i.mask, i.spacing, i.name) for i in items]
    assert (
        train(three, _cfg(epochs=1, init=str(first.weights_path)), None, progress=False)
        .card["training"]["initialised_from"]["image_channels_expanded"]
        .startswith("1 -> 3")
    )


def test_several_validation_point_sets(tmp_path):
    from midseg.train import _make_val_cases

    val = _discs(2, 14)
    one = _make_val_cases(val, _cfg(), seed=3)
    three = _make_val_cases(val, _cfg(val_point_sets=3), seed=3)
    assert len(one) == 2 and len(three) == 6
    # set 0 of each item is the single set of before; the others differ
    np.testing.assert_array_equal(one[0].x, three[0].x)
    np.testing.assert_array_equal(one[1].x, three[3].x)
    assert not np.array_equal(three[0].x, three[1].x)
    res = train(
        _discs(4, 15), _cfg(epochs=1, val_point_sets=3), None, val_items=val, progress=False
    )
    assert "mean over 3 fixed sets" in res.card["validation"]["metric"]
    with pytest.raises(InvalidInputError, match="val_point_sets"):
        _cfg(val_point_sets=0)


def test_checkpoint_from_before_new_options_still_resumes(tmp_path):
    """A checkpoint whose config lacks later fields (init, val_point_sets) resumes."""
    items = _discs(4, 16)
    cfg = _cfg(epochs=2)
    train(items, cfg, tmp_path, progress=False, max_iterations=1)
    ck = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    for k in ("init", "val_point_sets"):
        del ck["config"][k]
    torch.save(ck, tmp_path / "checkpoint.pt")
    res = train(items, cfg, None, progress=False, resume=tmp_path / "checkpoint.pt")
    assert res.card["training"]["iterations"] == 2


def test_val_seed_fixes_the_validation_points_across_training_seeds(monkeypatch):
    import midseg.training.loop as mt

    seen = []
    real = mt._make_val_cases
    monkeypatch.setattr(
        mt, "_make_val_cases", lambda items, cfg, seed: seen.append(seed) or real(items, cfg, seed)
    )
    val = _discs(1, 14)
    r1 = train(_discs(4, 15), _cfg(epochs=1, seed=1), None, val_items=val, progress=False)
    r2 = train(
        _discs(4, 15), _cfg(epochs=1, seed=1, val_seed=7), None, val_items=val, progress=False
    )
    r3 = train(
        _discs(4, 15), _cfg(epochs=1, seed=2, val_seed=7), None, val_items=val, progress=False
    )
    assert seen == [1, 7, 7]
    assert "seeded by the training seed" in r1.card["validation"]["metric"]
    assert "seeded by val_seed 7" in r2.card["validation"]["metric"]
    assert r3.card["validation"]["metric"] == r2.card["validation"]["metric"]


def _brats_like(root, case, seed):
    """A tiny BraTS-style case folder: a bright blob labelled 1 in a noisy 6x40x40 volume."""
    import SimpleITK as sitk

    rng = np.random.default_rng(seed)
    zz, yy, xx = np.mgrid[:6, :40, :40]
    cy, cx = rng.uniform(15, 25, 2)
    lab = (((yy - cy) ** 2 + (xx - cx) ** 2 < 64) & (zz > 0) & (zz < 5)).astype(np.uint8)
    img = (lab * 2.0 + rng.normal(0, 0.3, lab.shape)).astype(np.float32)
    (root / case).mkdir(parents=True)
    sitk.WriteImage(sitk.GetImageFromArray(img), str(root / case / "T1c_subtrMeanDivStd.nii.gz"))
    sitk.WriteImage(sitk.GetImageFromArray(lab), str(root / case / "OTMultiClass.nii.gz"))


def test_cli_max_iterations_stops_where_a_timed_run_stopped(tmp_path, capsys):
    from midseg.train import main

    for k, case in enumerate(("a", "b")):
        _brats_like(tmp_path / "data", case, k)
    args = [
        "--dims",
        "2",
        "--data",
        str(tmp_path / "data"),
        "--train-cases",
        "a",
        "--val-cases",
        "b",
        "--labels",
        "1",
        "--grid",
        "32,32",
        "--base",
        "4",
        "--epochs",
        "4",
        "--lr",
        "3e-3",
        "--threads",
        "1",
        "--val-every",
        "2",
        "--keep-best",
        "--no-progress",
    ]
    assert main(args + ["--out", str(tmp_path / "full")]) == 0
    assert main(args + ["--out", str(tmp_path / "cut"), "--max-iterations", "3"]) == 0
    full = json.loads((tmp_path / "full" / "2d.json").read_text())["training"]
    cut = json.loads((tmp_path / "cut" / "2d.json").read_text())["training"]
    assert full["iterations"] == full["iterations_planned"] == 4 and not full["stopped_early"]
    assert cut["iterations"] == 3 and cut["iterations_planned"] == 4 and cut["stopped_early"]

    # the same schedule and the same first iterations: validation at 2 agrees, 3 is validated
    def same(h):
        return {k: v for k, v in h.items() if k != "elapsed_s"}

    assert same(cut["history"][0]) == same(full["history"][0])
    assert [h["iteration"] for h in cut["history"]] == [2, 3]
    assert "--max-iterations 3" in json.loads((tmp_path / "cut" / "2d.json").read_text())["command"]
    with pytest.raises(InvalidInputError, match="max-iterations"):
        main(args + ["--out", str(tmp_path / "bad"), "--max-iterations", "0"])


def _data_run(tmp_path, data, cases, *extra):
    from midseg.train import main

    return main(
        ["--dims", "2", "--data", str(data), "--train-cases", cases, "--grid", "32,32"]
        + ["--base", "4", "--epochs", "1", "--threads", "1", "--no-progress"]
        + ["--out", str(tmp_path / "out"), *extra]
    )


def test_cli_data_folders_the_registry_refuses(tmp_path):
    # refused by the registry before any file is read: no case folders needed
    b = tmp_path / "brats2013"
    (b / "brats_2013_pat0001_1").mkdir(parents=True)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "p1").symlink_to(b / "brats_2013_pat0001_1")  # a link to a test case
    t1 = "brats_2013_pat0001_1"
    (tmp_path / "mine" / "files").mkdir()
    for name in ("T1c_subtrMeanDivStd.nii.gz", "OTMultiClass.nii.gz"):
        (tmp_path / "mine" / "files" / name).symlink_to(b / t1 / name)
    flair = ("--image-name", "Flair_subtrMeanDivStd.nii.gz")
    refused = [
        (tmp_path / "dev_unseen" / "lung_ct", "x", (), "not in the training pool"),
        (tmp_path / "dev_unseen", "lung_ct", (), "not in the training pool"),
        (tmp_path, "dev_unseen", (), "not in the training pool"),
        (tmp_path / "hc18", "images", (), "not in the training pool"),
        (b, "brats_2013_pat0003_1,../dev_unseen/lung_ct", (), "not in the training pool"),
        (b, "brats_2013_pat0001_1", (), "test split"),
        (b, "brats_2013_pat0001_1/", (), "test split"),
        (b, "./brats_2013_pat0001_1", (), "test split"),
        (tmp_path, "brats2013/brats_2013_pat0001_1", (), "test split"),
        (tmp_path, "BraTS2013/BRATS_2013_PAT0001_1", (), "test split"),  # any case
        (b / "brats_2013_pat0002_1", ".", (), "test split"),
        (tmp_path / "mine", "p1", (), "test split"),
        (b, "brats_2013_pat0003_1", ("--val-cases", "brats_2013_pat0002_1"), "test split"),
        (b, "brats_2013_pat0003_1", (*flair, "--labels", "1,2,3,4"), "brats2013/whole_tumour"),
        (b, "brats_2013_pat0003_1", (*flair, "--labels", "1,2,3,4,5"), "brats2013/whole_tumour"),
        (b, "brats_2013_pat0003_1", ("--labels", "4,3,2,1"), "brats2013/whole_tumour"),
        (
            b,
            "brats_2013_pat0003_1",
            ("--label-name", "brainmask.nii.gz", "--labels", "1,2"),
            "brats2013/brain",
        ),
        (b, "brats_2013_pat0003_1", ("--label-name", "./brainmask.nii.gz"), "brats2013/brain"),
        # the files are what counts, wherever their names lead
        (b, "brats_2013_pat0003_1", ("--image-name", f"../{t1}/T1c.nii.gz"), "test split"),
        (b, "brats_2013_pat0003_1", ("--label-name", str(b / t1 / "seg.nii.gz")), "test split"),
        (tmp_path, "brats2013", ("--image-name", "brats_2013_pat0002_1/T1c.nii.gz"), "test split"),
        (
            b,
            "brats_2013_pat0003_1",
            ("--image-name", "../../dev_unseen/lung_ct/image.nii.gz"),
            "not in the training pool",
        ),
        (tmp_path / "mine", "files", (), "test split"),  # file links into a test case
        (
            tmp_path / "fetal_brain_atlas",
            "fetal_SB_atlas_GA25_notoperated",
            ("--image-name", "srr.nii.gz", "--label-name", "mask.nii.gz", "--labels", "1"),
            "fetal_brain_atlas/brain",
        ),
        (tmp_path / "nope", "a", (), "--data folder .* does not exist"),
        # the same files gunzipped or renamed in case; most of a test object
        (
            b,
            "brats_2013_pat0003_1",
            ("--label-name", "otmulticlass.nii", "--labels", "1,2,3,4"),
            "brats2013/whole_tumour",
        ),
        (
            b,
            "brats_2013_pat0003_1",
            ("--label-name", "BrainMask.nii", "--labels", "1"),
            "brats2013/brain",
        ),
        (
            b,
            "brats_2013_pat0003_1",
            ("--labels", "1,2,4"),
            "most of .all values but one. the test object brats2013/whole_tumour",
        ),
        (
            tmp_path / "fetal_brain_atlas",
            "fetal_SB_atlas_GA25_notoperated",
            (
                "--image-name",
                "srr.nii.gz",
                "--label-name",
                "parcellation.nii.gz",
                "--labels",
                "1,2,3,4,5,6,7",
            ),
            "most of .all values but one. the test object fetal_brain_atlas/brain_structures",
        ),
        (b, "brats_2013_pat0003_1", ("--labels", "1,2,3,4,"), "brats2013/whole_tumour"),
        (
            b,
            "brats_2013_pat0003_1",
            ("--labels", "1.0,2"),
            "--labels must be comma-separated integers",
        ),
        (b, "brats_2013_pat0003_1", ("--labels", "1_0"), "--labels must be comma-separated"),
        (b, "brats_2013_pat0003_1", ("--labels", "\u0664"), "--labels must be comma-separated"),
        (  # the refusal says what may be trained on this label file
            b,
            "brats_2013_pat0003_1",
            ("--labels", "1,2,3"),
            r"training targets of this file: tumour_core \[1, 3, 4\], enhancing_tumour \[4\]",
        ),
        (b, "brats_2013_pat0003_1,./brats_2013_pat0003_1/", (), "are the same image file"),
    ]
    for data, cases, extra, match in refused:
        with pytest.raises(InvalidInputError, match=match):
            _data_run(tmp_path, data, cases, *extra)
    assert not (tmp_path / "out").exists()
    with pytest.raises(InvalidInputError, match="--train-cases, --labels: go with --data"):
        _data_run(tmp_path, b, "brats_2013_pat0003_1", "--pool", "sts", "--labels", "1")
    with pytest.raises(
        InvalidInputError, match="--label-name, --train-cases: go with --data"
    ):  # even a default or ""
        _data_run(tmp_path, b, "", "--pool", "sts", "--label-name", "OTMultiClass.nii.gz")
    with pytest.raises(InvalidInputError, match="--slice-step, --pool-targets: go with --pool"):
        _data_run(
            tmp_path,
            b,
            "brats_2013_pat0003_1",
            "--slice-step",
            "brats2013=5",
            "--pool-targets",
            "brats2013=brain",
        )


def test_cli_data_licence_comes_from_the_registry(tmp_path, capsys):
    _brats_like(tmp_path / "brats2013", "brats_2013_pat0003_1", 0)
    assert _data_run(tmp_path, tmp_path / "brats2013", "brats_2013_pat0003_1") == 0
    card = json.loads((tmp_path / "out" / "2d.json").read_text())
    assert card["licence"].startswith("brats2013: CC BY-NC-SA 3.0 CH.")
    assert "no registry target" not in capsys.readouterr().out  # labels 1,3,4: tumour core
    # the user's own folders, even below or beside a folder named like a set
    # a validation case that is a training case under another spelling is no held-out case
    (tmp_path / "own" / "link").mkdir(parents=True)
    (tmp_path / "own" / "link" / "c").symlink_to(tmp_path / "brats2013" / "brats_2013_pat0003_1")
    (tmp_path / "own" / "files").mkdir()  # a validation case of links to its files
    for name in ("T1c_subtrMeanDivStd.nii.gz", "OTMultiClass.nii.gz"):
        (tmp_path / "own" / "files" / name).symlink_to(
            tmp_path / "brats2013" / "brats_2013_pat0003_1" / name
        )
    for val in ("./brats_2013_pat0003_1/", "../own/link/c", "../own/files"):
        assert (
            _data_run(tmp_path, tmp_path / "brats2013", "brats_2013_pat0003_1", "--val-cases", val)
            == 0
        )
        card = json.loads((tmp_path / "out" / "2d.json").read_text())
        assert card["split"]["validation_held_out"] is False, val
    capsys.readouterr()
    # (a case folder named like a set too)
    for own, case in (
        ("own", "a"),
        ("hc18/project/mydata", "a"),
        ("own/sts", "a"),
        ("own2", "sts"),
    ):
        _brats_like(tmp_path / own, case, 0)
        assert _data_run(tmp_path, tmp_path / own, case, "--labels", "1") == 0
        card = json.loads((tmp_path / "out" / "2d.json").read_text())
        assert card["licence"].startswith(f"Not stated for ['{case}']: no registry set"), own
        assert "cannot state their licence; write it into the card" in capsys.readouterr().out
    with pytest.raises(InvalidInputError, match="no training items: no slice .* labels \\[7\\]"):
        _data_run(tmp_path, tmp_path / "own", "a", "--labels", "7")


def test_cli_synthetic_options_reach_the_card(tmp_path):
    from midseg.train import main

    _brats_like(tmp_path / "data", "a", 0)
    assert (
        main(
            [
                "--dims",
                "2",
                "--data",
                str(tmp_path / "data"),
                "--train-cases",
                "a",
                "--labels",
                "1",
                "--grid",
                "32,32",
                "--base",
                "4",
                "--epochs",
                "1",
                "--threads",
                "1",
                "--no-progress",
                "--synthetic",
                "2",
                "--synthetic-inclusions",
                "0.5",
                "--synthetic-large",
                "1",
                "--out",
                str(tmp_path / "out"),
            ]
        )
        == 0
    )
    card = json.loads((tmp_path / "out" / "2d.json").read_text())
    assert card["data"]["synthetic_items"] == 2
    assert card["training"]["items"] == card["data"]["real_items"] + 2
    desc = card["data"]["description"]
    assert "probability 0.5 a shape has inner parts" in desc
    assert "probability 1 a shape is twice as large" in desc
    assert "--synthetic-large 1" in card["command"]


@pytest.mark.parametrize("backend", ["torchio", "torch"])
@pytest.mark.parametrize("ndim, spacing", [(2, (1.0, 1.0)), (3, (3.0, 0.8, 0.8))])
def test_augmentation_is_seeded_and_keeps_image_and_mask_aligned(ndim, spacing, backend):
    """Both backends (TorchIO; PyTorch alone): seeded, image and mask aligned, channels."""
    import midseg.train as tr

    augment = tr._augment_region if backend == "torchio" else tr._augment_region_torch
    shape = (24, 40, 40)[-ndim:]
    grid = np.indices(shape)
    centre = np.asarray(shape).reshape((-1,) + (1,) * ndim) / 2.0
    mask = (((grid - centre) * np.asarray(spacing).reshape(centre.shape)) ** 2).sum(0) < 10**2
    image = np.where(mask, 100.0, -50.0).astype(np.float32)
    a = augment(image, mask, spacing, np.random.default_rng(4), False)
    b = augment(image, mask, spacing, np.random.default_rng(4), False)
    c = augment(image, mask, spacing, np.random.default_rng(5), False)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    for img, m in (a, c):
        assert img.shape == shape and m.shape == shape and m.dtype == bool
        assert img.dtype == np.float32
        # the bright object moved with its mask (bias field and blur keep the contrast)
        assert img[m].mean() > img[~m].mean() + 75
        assert 0.6 < m.sum() / mask.sum() < 1.6
        assert img.min() >= -50.0 * 1.6  # outside the region: its minimum, not 0
    two = augment(np.stack([image, -image]), mask, spacing, np.random.default_rng(4), True)
    assert two[0].shape == (2,) + shape
    np.testing.assert_array_equal(two[1], a[1])


@pytest.mark.data
def test_cli_pool_trains_on_registry_sets_and_writes_their_licences(tmp_path, shared_data):
    from midseg.train import main

    out = tmp_path / "out"
    assert (
        main(
            [
                "--dims",
                "2",
                "--pool",
                "sts:2",
                "--pool-targets",
                "sts=tumour_petct",
                "--slice-step",
                "sts=8",
                "--data",
                str(shared_data),
                "--grid",
                "32,32",
                "--base",
                "4",
                "--epochs",
                "1",
                "--max-iterations",
                "2",
                "--threads",
                "1",
                "--no-progress",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    card = json.loads((out / "2d.json").read_text())
    assert card["image_channels"] == 2 and card["in_channels"] == 3
    (sts,) = card["data"]["sets"]
    assert sts["set"] == "sts" and sts["targets"] == ["tumour_petct"] and sts["repeat"] == 2
    assert card["data"]["real_items"] == 2 * sts["items"]
    assert "CC BY 3.0" in card["licence"] and "Non-commercial" not in card["licence"]
    assert "sts/STS_010" in card["split"]["validation"]
    assert not set(card["split"]["train"]) & set(card["split"]["validation"])
    with pytest.raises(InvalidInputError, match="not in the training pool"):
        main(
            [
                "--dims",
                "2",
                "--pool",
                "dev_unseen",
                "--data",
                str(shared_data),
                "--out",
                str(tmp_path / "bad"),
            ]
        )
    with pytest.raises(InvalidInputError, match="not in --pool"):
        main(
            [
                "--dims",
                "2",
                "--pool",
                "sts",
                "--slice-step",
                "hc18=2",
                "--data",
                str(shared_data),
                "--out",
                str(tmp_path / "bad"),
            ]
        )


def test_fine_tuned_weights_carry_their_starting_model_licence(tmp_path):
    from midseg.train import _with_init_licence

    shipped = _with_init_licence("sts: CC BY 3.0", "2d")
    assert shipped.startswith("sts: CC BY 3.0 Initialised from the weights of model '2d'")
    assert "CC BY-NC-SA 3.0" in shipped
    first = train(_discs(4, 13), _cfg(epochs=1), tmp_path, name="a", progress=False)
    assert _with_init_licence("x", str(first.weights_path)) == "x"  # no licence to inherit


def test_training_refuses_items_of_different_channel_counts():
    items = _discs(2, 1)
    two = [TrainItem(np.stack([i.image, i.image]), i.mask, i.spacing, "two") for i in items]
    with pytest.raises(InvalidInputError, match="mix image channel counts"):
        train(items + two, _cfg(epochs=1), None, progress=False)


@pytest.mark.data
@pytest.mark.parametrize(
    "extra, message",
    [
        (["--pool", "sts,sts"], "more than once"),
        (["--pool", "sts", "--pool-targets", "sts=tumour_ct+tumour_ct"], "a target twice"),
        (
            [
                "--pool",
                "sts",
                "--pool-targets",
                "sts=tumour_ct",
                "--pool-targets",
                "sts=tumour_pet",
            ],
            "twice",
        ),
        (["--pool", "sts", "--pool-targets", "brats2013=tumour_core"], "--pool-targets names"),
        (["--pool", "sts", "--pool-targets", "sts=tumour_ct+tumour_petct"], "channel counts"),
    ],
)
def test_cli_pool_refuses_ambiguous_options(tmp_path, shared_data, extra, message):
    from midseg.train import main

    with pytest.raises(InvalidInputError, match=message):
        main(
            [
                "--dims",
                "2",
                "--data",
                str(shared_data),
                "--slice-step",
                "sts=16",
                "--grid",
                "32,32",
                "--base",
                "4",
                "--epochs",
                "1",
                "--max-iterations",
                "1",
                "--threads",
                "1",
                "--no-progress",
                "--out",
                str(tmp_path / "o"),
            ]
            + extra
        )
    with pytest.raises(InvalidInputError, match="2D"):
        main(
            [
                "--dims",
                "3",
                "--data",
                str(shared_data),
                "--pool",
                "sts",
                "--slice-step",
                "sts=2",
                "--out",
                str(tmp_path / "o3"),
            ]
        )


def test_torch_augmentation_rotates_and_scales_in_physical_space(monkeypatch):
    """Identity parameters give the input back; a quarter turn turns the array."""
    import midseg.training.augment as tr

    rng = np.random.default_rng(0)
    image = rng.normal(size=(5, 16, 16)).astype(np.float32)
    mask = np.zeros((5, 16, 16), dtype=bool)
    mask[1:4, 2:6, 3:12] = True
    monkeypatch.setattr(tr, "AUG_INTENSITY_P", 0.0)
    monkeypatch.setattr(tr, "AUG_SCALES", (1.0, 1.0))
    monkeypatch.setattr(tr, "AUG_DEGREES", {3: (0, 0, 0, 0, 0, 0)})
    img, m = tr._augment_region_torch(image, mask, (3.0, 1.0, 1.0), rng, False)
    np.testing.assert_allclose(img, image, atol=1e-5)
    np.testing.assert_array_equal(m, mask)
    monkeypatch.setattr(tr, "AUG_DEGREES", {3: (90, 90, 0, 0, 0, 0)})
    img, m = tr._augment_region_torch(image, mask, (3.0, 1.0, 1.0), rng, False)
    turned = [np.rot90(mask, k, axes=(1, 2)) for k in (1, 3)]
    assert any(np.array_equal(m, t) for t in turned)
    # scaling by 2 in mm along the 3 mm axis: the object keeps its place, not its size
    monkeypatch.setattr(tr, "AUG_DEGREES", {3: (0, 0, 0, 0, 0, 0)})
    monkeypatch.setattr(tr, "AUG_SCALES", (2.0, 2.0))
    _, m = tr._augment_region_torch(image, mask, (3.0, 1.0, 1.0), rng, False)
    assert m.sum() > 2 * mask.sum()


def test_sample_workers_give_the_same_weights(tmp_path):
    items = _discs(6, 2)
    cfg = _cfg(epochs=2, schedule="step", augment=True)
    seq = train(items, cfg, None, progress=False)
    par = train(
        items, _cfg(epochs=2, schedule="step", augment=True, workers=2), None, progress=False
    )
    a, b = seq.net.state_dict(), par.net.state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    with pytest.raises(InvalidInputError, match="workers"):
        _cfg(workers=-1)
    with pytest.raises(InvalidInputError, match="augment_backend"):
        _cfg(augment_backend="monai")


def test_synthetic_items_made_in_worker_processes_are_the_same():
    from midseg.train import synthetic_items

    one = synthetic_items(3, 2, seed=4, inclusions=0.5, large=0.5)
    two = synthetic_items(3, 2, seed=4, inclusions=0.5, large=0.5, workers=2)
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.mask, b.mask)


def test_cli_refuses_validation_options_that_cannot_work(tmp_path):
    from midseg.train import main

    with pytest.raises(InvalidInputError, match="--no-validation"):
        main(
            [
                "--dims",
                "2",
                "--pool",
                "sts",
                "--no-validation",
                "--keep-best",
                "--out",
                str(tmp_path / "o"),
            ]
        )
    with pytest.raises(InvalidInputError, match="--cache goes with --pool"):
        main(
            [
                "--dims",
                "2",
                "--data",
                str(tmp_path),
                "--train-cases",
                "a",
                "--cache",
                str(tmp_path / "c"),
                "--out",
                str(tmp_path / "o"),
            ]
        )


@pytest.mark.data
def test_pool_cache_gives_the_same_samples_as_the_data(tmp_path, shared_data):
    from midseg.train import TrainConfig, _pool_items

    kw = dict(dims=3, data_root=shared_data, min_area=30, slice_step=1, targets=None)
    direct = _pool_items(None, "sts", "validation", kw)
    _pool_items(tmp_path, "sts", "validation", kw)  # writes the cache
    (cached_file,) = tmp_path.glob("sts-validation-*.npz")
    cached = _pool_items(tmp_path, "sts", "validation", kw)  # reads it
    assert [i.name for i in cached] == [i.name for i in direct]
    assert cached_file.stat().st_size < sum(np.asarray(i.image).nbytes for i in direct) / 2
    cfg = TrainConfig(spatial_dims=3, augment_backend="torch")
    for a, b in zip(direct, cached):
        assert a.spacing == b.spacing and b.image.dtype == np.float32
        xa, ya = make_sample(a, cfg, np.random.default_rng(3))
        xb, yb = make_sample(b, cfg, np.random.default_rng(3))
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)


def test_the_old_module_reexports_the_training_package():
    """`midseg.train` is a compatibility module over `midseg.training`."""
    import midseg.train as old
    import midseg.training as new
    from midseg.training import cli, config, loop, samples, synthetic

    for name in new.__all__:
        assert getattr(old, name) is getattr(new, name), name
    assert old.train is loop.train and old.TrainConfig is config.TrainConfig
    assert (
        old._pool_items is samples._pool_items and old.synthetic_items is synthetic.synthetic_items
    )
    assert cli.DESCRIPTION == old.__doc__.split("\n\nThe code lives")[0] + "\n"


def test_train_state_round_trips_through_a_checkpoint_dict(tmp_path):
    from midseg.training import TrainState

    items = _discs(4, 16)
    train(
        items,
        _cfg(epochs=2, keep_best=True),
        tmp_path,
        val_items=_discs(1, 3),
        progress=False,
        max_iterations=1,
    )
    ck = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    state = TrainState.from_dict(ck["state"])
    assert state.iteration == 1 and state.best["iteration"] == 1 and state.init is None
    assert list(state.to_dict()) == ["iteration", "history", "elapsed", "best", "init", "ema"]
    assert round(state.ema, 5) == state.history[-1]["train_loss_ema"]
    del ck["state"]["init"]  # checkpoints from before fine-tuning
    del ck["state"]["ema"]  # and from before the loss average was kept
    assert TrainState.from_dict(ck["state"]).init is None
    assert TrainState.from_dict(ck["state"]).ema is None
