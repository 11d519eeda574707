"""Tests for midseg.nets: the 2D/3D U-Net's shapes, normalisation and size."""

import pytest

torch = pytest.importorskip("torch")

from midseg.errors import InvalidInputError  # noqa: E402
from midseg.nets import UNet  # noqa: E402


def _count(net):
    return sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize("dims, shape", [(2, (2, 2, 64, 64)), (3, (1, 2, 16, 32, 32))])
@pytest.mark.parametrize("out_channels", [1, 2])
def test_output_has_input_spatial_shape(dims, shape, out_channels):
    net = UNet(dims, in_channels=2, out_channels=out_channels).eval()
    with torch.no_grad():
        y = net(torch.randn(*shape))
    assert y.shape == (shape[0], out_channels) + shape[2:]
    p = net.foreground_probability(y)
    assert p.shape == (shape[0],) + shape[2:]
    assert float(p.min()) >= 0.0 and float(p.max()) <= 1.0


def test_size_not_a_multiple_of_16_is_padded_and_cropped_back():
    net = UNet(2, in_channels=1).eval()
    with torch.no_grad():
        assert net(torch.randn(1, 1, 50, 70)).shape == (1, 2, 50, 70)


def test_grids_of_the_paper_reach_a_4x4_or_4x6x6_bottleneck():
    # 4 down-sampling steps fit both grids without padding: 64 -> 4, 96 -> 6.
    for dims, grid in ((2, (64, 64)), (3, (64, 96, 96))):
        assert all(g % 2**4 == 0 for g in grid)
        assert UNet(dims, 2).depth == 4


@pytest.mark.parametrize("dims", [2, 3])
def test_instance_norm_with_affine_and_no_batch_norm(dims):
    net = UNet(dims, in_channels=2)
    norm_cls = torch.nn.InstanceNorm2d if dims == 2 else torch.nn.InstanceNorm3d
    norms = [m for m in net.modules() if isinstance(m, norm_cls)]
    assert len(norms) == 2 * (1 + 2 * net.depth)  # two per level, encoder and decoder
    assert all(m.affine for m in norms)
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in net.modules())
    assert any(isinstance(m, torch.nn.LeakyReLU) for m in net.modules())


def test_quarter_widths_and_parameter_counts():
    net2, net3 = UNet(2, 2), UNet(3, 2)
    assert net2.widths == (16, 32, 64, 128, 256)  # classic U-Net 64..1024 / 4
    assert net3.widths == (8, 16, 32, 64, 128)  # 3D U-Net 32..512 / 4
    assert _count(net2) == 1_943_922
    assert _count(net3) == 1_413_466
    # Well under the 20 MB budget for shipped weights in float32.
    assert 4 * max(_count(net2), _count(net3)) < 20e6


def test_config_rebuilds_an_identical_network():
    net = UNet(3, in_channels=3, out_channels=1, base=4, depth=3)
    clone = UNet(**net.config)
    clone.load_state_dict(net.state_dict())
    x = torch.randn(1, 3, 8, 16, 16)
    net.eval(), clone.eval()
    with torch.no_grad():
        assert torch.equal(net(x), clone(x))


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(spatial_dims=4, in_channels=2),
        dict(spatial_dims=2, in_channels=0),
        dict(spatial_dims=2, in_channels=2, out_channels=3),
        dict(spatial_dims=2, in_channels=2, base=7),
    ],
)
def test_bad_arguments_are_rejected(kwargs):
    with pytest.raises(InvalidInputError):
        UNet(**kwargs)


def test_wrong_input_channels_message_names_the_shape():
    net = UNet(2, in_channels=2)
    with pytest.raises(InvalidInputError, match=r"\(1, 3, 32, 32\)"):
        net(torch.zeros(1, 3, 32, 32))
