"""The stage-1 network: one U-Net class for 2D and 3D (instance norm, reduced widths).

`UNet` is a plain ``torch.nn.Module`` in the style of MONAI's ``BasicUNet``,
parametrised by ``spatial_dims``. It must not load files: weights are handled by
`midseg.models` and written by `midseg.train`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from .errors import InvalidInputError

__all__ = ["UNet", "DEFAULT_BASE", "DEFAULT_DEPTH"]

#: Width of the first level. The classic U-Net (Ronneberger 2015) starts at 64
#: channels and the 3D U-Net (Çiçek 2016) at 32; MIDeepSeg (§2.3) divides both
#: by four.
DEFAULT_BASE = {2: 16, 3: 8}

#: Number of 2x down-sampling steps. Four fits both grids: 64x64 -> 4x4 and
#: 64x96x96 -> 4x6x6 at the bottleneck.
DEFAULT_DEPTH = 4


def _conv(spatial_dims: int):
    return nn.Conv2d if spatial_dims == 2 else nn.Conv3d


def _norm(spatial_dims: int):
    return nn.InstanceNorm2d if spatial_dims == 2 else nn.InstanceNorm3d


class _TwoConv(nn.Sequential):
    """(conv 3^d -> instance norm (affine) -> LeakyReLU) x 2, with optional dropout."""

    def __init__(self, spatial_dims: int, cin: int, cout: int, slope: float, dropout: float):
        conv, norm = _conv(spatial_dims), _norm(spatial_dims)
        layers: list[nn.Module] = [
            conv(cin, cout, 3, padding=1),
            norm(cout, affine=True),
            nn.LeakyReLU(slope, inplace=True),
        ]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers += [
            conv(cout, cout, 3, padding=1),
            norm(cout, affine=True),
            nn.LeakyReLU(slope, inplace=True),
        ]
        super().__init__(*layers)


class _Down(nn.Sequential):
    """2x max-pool followed by `_TwoConv`."""

    def __init__(self, spatial_dims: int, cin: int, cout: int, slope: float, dropout: float):
        pool = nn.MaxPool2d(2) if spatial_dims == 2 else nn.MaxPool3d(2)
        super().__init__(pool, _TwoConv(spatial_dims, cin, cout, slope, dropout))


class _UpCat(nn.Module):
    """2x transposed-conv up-sampling, concatenation with the skip, `_TwoConv`."""

    def __init__(
        self, spatial_dims: int, cin: int, cskip: int, cout: int, slope: float, dropout: float
    ):
        super().__init__()
        up = nn.ConvTranspose2d if spatial_dims == 2 else nn.ConvTranspose3d
        self.up = up(cin, cin // 2, kernel_size=2, stride=2)
        self.conv = _TwoConv(spatial_dims, cin // 2 + cskip, cout, slope, dropout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([self.up(x), skip], dim=1))


class UNet(nn.Module):
    """U-Net for 2D or 3D images with instance normalisation.

    Encoder widths are ``base * 2**k`` for ``k = 0..depth``; every level is two
    3^d convolutions, each followed by affine instance normalisation and a
    LeakyReLU; down-sampling is 2x max-pooling, up-sampling a 2x transposed
    convolution, and the head a 1^d convolution to `out_channels` logits.

    Parameters
    ----------
    spatial_dims : {2, 3}
        2 for (B, C, Y, X) input, 3 for (B, C, Z, Y, X).
    in_channels : int
        Image channels plus cue channels (e.g. 2 = one image channel + EGD).
    out_channels : int
        2 (background/foreground logits, read with a softmax) or 1 (a
        foreground logit, read with a sigmoid).
    base : int, optional
        Width of the first level. Default 16 in 2D and 8 in 3D: a quarter of
        the classic U-Net / 3D U-Net widths, as in MIDeepSeg §2.3.
    depth : int
        Number of down-sampling steps (default 4).
    negative_slope : float
        LeakyReLU slope (default 0.1, as in MONAI's BasicUNet).
    dropout : float
        Dropout probability inside each level (default 0).

    Notes
    -----
    Inputs whose spatial size is not a multiple of ``2**depth`` are padded
    (replicate) to the next multiple and the output is cropped back, so the
    logits always have the input's spatial shape. The constructor arguments
    are kept in `config` so a model card can rebuild the network.

    Examples
    --------
    >>> net = UNet(2, in_channels=2)
    >>> net(torch.zeros(1, 2, 64, 64)).shape
    torch.Size([1, 2, 64, 64])
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int = 2,
        base: int | None = None,
        depth: int = DEFAULT_DEPTH,
        negative_slope: float = 0.1,
        dropout: float = 0.0,
    ):
        super().__init__()
        if spatial_dims not in (2, 3):
            raise InvalidInputError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
        if int(in_channels) < 1:
            raise InvalidInputError(f"in_channels must be >= 1, got {in_channels!r}")
        if out_channels not in (1, 2):
            raise InvalidInputError(
                f"out_channels must be 1 (sigmoid) or 2 (softmax), got {out_channels!r}"
            )
        base = DEFAULT_BASE[spatial_dims] if base is None else int(base)
        if base < 2 or base % 2:
            raise InvalidInputError(f"base must be an even width >= 2, got {base!r}")
        if not 1 <= int(depth) <= 6:
            raise InvalidInputError(f"depth must be in 1..6, got {depth!r}")
        if not 0.0 <= dropout < 1.0:
            raise InvalidInputError(f"dropout must be in [0, 1), got {dropout!r}")
        self.spatial_dims = int(spatial_dims)
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.base = base
        self.depth = int(depth)
        self.config: dict[str, Any] = dict(
            spatial_dims=self.spatial_dims,
            in_channels=self.in_channels,
            out_channels=self.out_channels,
            base=base,
            depth=self.depth,
            negative_slope=float(negative_slope),
            dropout=float(dropout),
        )

        widths = [base * 2**k for k in range(self.depth + 1)]
        self.widths = tuple(widths)
        self.inc = _TwoConv(spatial_dims, self.in_channels, widths[0], negative_slope, dropout)
        self.downs = nn.ModuleList(
            _Down(spatial_dims, widths[k], widths[k + 1], negative_slope, dropout)
            for k in range(self.depth)
        )
        self.ups = nn.ModuleList(
            _UpCat(spatial_dims, widths[k + 1], widths[k], widths[k], negative_slope, dropout)
            for k in reversed(range(self.depth))
        )
        self.head = _conv(spatial_dims)(widths[0], self.out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape (B, out_channels, *spatial) for input (B, in_channels, *spatial)."""
        if x.ndim != self.spatial_dims + 2 or x.shape[1] != self.in_channels:
            raise InvalidInputError(
                f"expected input of shape (B, {self.in_channels}, "
                f"{', '.join('*' * self.spatial_dims)}) for a {self.spatial_dims}D UNet, "
                f"got {tuple(x.shape)}"
            )
        size = x.shape[2:]
        mult = 2**self.depth
        pad = [(-s) % mult for s in size]
        if any(pad):
            # F.pad takes (last_lo, last_hi, ..., first_lo, first_hi).
            spec: list[int] = []
            for p in reversed(pad):
                spec += [0, p]
            x = F.pad(x, spec, mode="replicate")
        skips = [self.inc(x)]
        for down in self.downs:
            skips.append(down(skips[-1]))
        h = skips.pop()
        for up in self.ups:
            h = up(h, skips.pop())
        out = self.head(h)
        if any(pad):
            out = out[(slice(None), slice(None)) + tuple(slice(0, s) for s in size)]
        return out

    def foreground_probability(self, logits: torch.Tensor) -> torch.Tensor:
        """Foreground probability (B, *spatial) from logits: softmax channel 1, or sigmoid."""
        if self.out_channels == 2:
            return torch.softmax(logits, dim=1)[:, 1]
        return torch.sigmoid(logits[:, 0])

    def extra_repr(self) -> str:
        return (
            f"spatial_dims={self.spatial_dims}, in_channels={self.in_channels}, "
            f"out_channels={self.out_channels}, widths={self.widths}"
        )
