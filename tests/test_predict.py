"""Tests for midseg.predict: crop -> cue -> network -> probability pasted back into the image."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from midseg.errors import InvalidInputError, ModelError  # noqa: E402
from midseg.models import LoadedModel  # noqa: E402
from midseg.nets import UNet  # noqa: E402
from midseg.predict import predict_probability, prepare_input  # noqa: E402


def _constant_model(dims, fg_logit=10.0, cue="egd", channels=1):
    """A model whose network says 'foreground' everywhere (probability ~1)."""
    net = UNet(dims, in_channels=channels + (cue != "none"), base=2, depth=1)
    with torch.no_grad():
        net.head.weight.zero_()
        net.head.bias.copy_(torch.tensor([0.0, fg_logit]))
    net.eval()
    grid = (32, 32) if dims == 2 else (16, 24, 24)
    return LoadedModel(
        name="const",
        path=None,
        _net=net,
        card={},
        spatial_dims=dims,
        grid_shape=grid,
        cue=cue,
        cue_params={},
        image_channels=channels,
        in_channels=net.in_channels,
        out_channels=2,
        margin=None,
        device="cpu",
    )


def _points(dims):
    return (
        [(20, 30), (40, 30), (30, 18), (30, 45)]
        if dims == 2
        else [(10, 20, 30), (20, 40, 30), (15, 30, 18), (15, 30, 45), (12, 30, 30)]
    )


@pytest.mark.parametrize("dims", [2, 3])
def test_probability_is_one_inside_the_box_and_zero_outside(dims):
    from midseg import crop

    shape = (64, 80) if dims == 2 else (30, 64, 80)
    image = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    model = _constant_model(dims)
    result = predict_probability(image, _points(dims), model)
    prob, box = result  # unpacks as (probability, box)
    assert prob.shape == shape and prob.dtype == np.float32
    assert box == crop.relaxed_bbox(np.array(_points(dims)), shape)
    inside = np.zeros(shape, bool)
    inside[box.slices] = True
    assert np.all(prob[~inside] == 0.0)
    assert prob[inside].min() > 0.99
    assert result.grid_probability.shape == model.grid_shape


def test_points_on_the_image_border_give_a_clipped_box():
    shape = (40, 50)
    model = _constant_model(2)
    prob, box = predict_probability(
        np.ones(shape, np.float32) + np.eye(40, 50), [(0, 0), (39, 10), (20, 49)], model
    )
    assert box.start == (0, 0) and box.stop == (40, 50)
    assert prob.min() > 0.99


def test_multichannel_image_with_channel_axis():
    model = _constant_model(2, channels=2)
    image = np.random.default_rng(1).normal(size=(2, 64, 64)).astype(np.float32)
    prob, box = predict_probability(image, _points(2), model, channel_axis=0)
    assert prob.shape == (64, 64)
    x, _ = prepare_input(image, _points(2), model.grid_shape, "egd", channel_axis=0)
    assert x.shape == (3, 32, 32)  # two image channels + one cue


def test_input_is_z_scored_crop_plus_cue_in_zero_one():
    image = np.random.default_rng(2).normal(5.0, 3.0, size=(64, 64)).astype(np.float32)
    x, g = prepare_input(image, _points(2), (32, 32), "egd")
    assert x.shape == (2, 32, 32)
    assert abs(float(x[0].mean())) < 1e-4 and abs(float(x[0].std()) - 1.0) < 1e-3
    assert x[1].min() >= 0.0 and x[1].max() <= 1.0
    assert np.allclose(x[1][tuple(g.points.T)], 1.0)  # EGD is 1 at the points
    x_none, _ = prepare_input(image, _points(2), (32, 32), "none")
    assert x_none.shape == (1, 32, 32) and np.array_equal(x_none[0], x[0])


def test_model_and_image_dimensionality_must_match():
    with pytest.raises(InvalidInputError, match="3D"):
        predict_probability(np.zeros((64, 64), np.float32), _points(2), _constant_model(3))
    with pytest.raises(InvalidInputError, match="channel"):
        predict_probability(
            np.zeros((2, 64, 64), np.float32), _points(2), _constant_model(2), channel_axis=0
        )


def test_points_outside_the_image_and_non_models_are_rejected():
    with pytest.raises(InvalidInputError, match="outside"):
        predict_probability(np.zeros((64, 64), np.float32), [(70, 3), (3, 3)], _constant_model(2))
    with pytest.raises(ModelError):
        predict_probability(np.zeros((64, 64), np.float32), _points(2), object())


def test_same_input_same_output():
    image = np.random.default_rng(3).normal(size=(64, 64)).astype(np.float32)
    model = _constant_model(2, fg_logit=0.3)
    a, _ = predict_probability(image, _points(2), model)
    b, _ = predict_probability(image, _points(2), model)
    assert np.array_equal(a, b)
