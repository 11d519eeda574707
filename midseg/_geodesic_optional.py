"""The optional geodesic backends of `midseg.geodesic`: GeodisTK and FastGeodis.

Each runner takes the checked arguments of `midseg.geodesic.geodesic_distance` and imports
its package only when called (`midseg.geodesic.available_backends` says which are there).
"""

from __future__ import annotations

import numpy as np


def _run_geodistk(
    chans: np.ndarray,
    seeds: np.ndarray,
    domain: np.ndarray | None,
    spacing: np.ndarray,
    lamb: float,
    iterations: int,
    cost: str,
) -> np.ndarray:
    """GeodisTK raster scan. It wants float32 channel-last images and uint8 seeds.

    Its 2D function has no spacing argument, so anisotropic 2D runs through the 3D function on
    a one-slice volume (same neighbours, same scan order). 3D spacing is in array order.
    """
    import GeodisTK

    img = chans[0] if chans.shape[0] == 1 else np.moveaxis(chans, 0, -1)
    img = np.ascontiguousarray(img, dtype=np.float32)
    s = np.ascontiguousarray(seeds, dtype=np.uint8)
    if seeds.ndim == 2 and np.all(spacing == 1.0):
        return np.asarray(
            GeodisTK.geodesic2d_raster_scan(img, s, float(lamb), int(iterations)), dtype=np.float32
        )
    if seeds.ndim == 2:
        img, s, sp = img[None], s[None], [1.0] + [float(v) for v in spacing]
    else:
        sp = [float(v) for v in spacing]
    out = GeodisTK.geodesic3d_raster_scan(
        img, s, np.asarray(sp, dtype=np.float32), float(lamb), int(iterations)
    )
    return np.asarray(out, dtype=np.float32).reshape(seeds.shape)


def _run_fastgeodis(
    chans: np.ndarray,
    seeds: np.ndarray,
    domain: np.ndarray | None,
    spacing: np.ndarray,
    lamb: float,
    iterations: int,
    cost: str,
) -> np.ndarray:
    """FastGeodis (torch) on CPU. Its soft mask is 0 at seeds; its step cost is additive.

    FastGeodis' Python functions pass ``l_grad = lamb, l_eucl = 1 - lamb`` to its C++ kernels
    (``FastGeodis/fastgeodis_cpu.cpp``), which charge ``l_eucl * local_dist + l_grad * l_dist``
    with ``l_dist`` the L1 intensity change over channels and ``local_dist`` 1 or sqrt(2) in
    2D, the city-block length ``sum_i |d_i| spacing_i`` in 3D.
    """
    import FastGeodis
    import torch

    arr = np.ascontiguousarray(chans, dtype=np.float32)
    if not arr.flags.writeable:  # torch.from_numpy warns on read-only arrays
        arr = arr.copy()
    img = torch.from_numpy(arr)[None]
    soft = torch.from_numpy((~seeds).astype(np.float32))[None, None]
    big = 1e10
    if seeds.ndim == 2 and np.all(spacing == 1.0):
        out = FastGeodis.generalised_geodesic2d(img, soft, big, float(lamb), int(iterations))
    else:
        if seeds.ndim == 2:
            img, soft, sp = img[:, :, None], soft[:, :, None], [1.0] + [float(v) for v in spacing]
        else:
            sp = [float(v) for v in spacing]
        out = FastGeodis.generalised_geodesic3d(img, soft, sp, big, float(lamb), int(iterations))
    return out.detach().cpu().numpy().astype(np.float32).reshape(seeds.shape)
