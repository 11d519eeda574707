"""Latency of one MIDeepSeg refinement round (geodesic distances + fusion + graph cut).

Rows: the click-local default ``"ifgc"`` (its first round, all clicks new) and
``"ifgc-global"`` with its stages timed separately (Df+Db, fusion, graph cut).

Times `midseg.refine.refine` on deterministic synthetic crops (2D about 200x200, 3D
64x96x96) with the built-in geodesic backend beside GeodisTK, and the 3D graph cut with
6- and 26-neighbourhoods; prints a Markdown table. Run: ``python benchmarks/refine.py``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np
from scipy import ndimage
from scipy.special import expit

from midseg.crop import Box
from midseg.geodesic import available_backends, load_kernels
from midseg.metrics import dice
from midseg.fusion import _click_distances
from midseg.graphcut import _normalise01, _solve
from midseg.refine import DEFAULT_CONNECTIVITY, fuse_probabilities, refine

TARGETS_MS = {2: 25.0, 3: 300.0}


def scene(crop_shape, seed=0):
    """A textured object (ellipsoid + lobe) in a crop, a CNN map missing the lobe and leaking.

    The image is the crop plus a 10-voxel rim; the returned box is exactly the crop.
    """
    rng = np.random.default_rng(seed)
    rim = 10
    shape = tuple(n + 2 * rim for n in crop_shape)
    ndim = len(shape)
    c = np.array(shape) / 2.0
    radii = np.array(crop_shape) * 0.35
    grids = np.indices(shape, dtype=float)
    body = sum(((g - ci) / ri) ** 2 for g, ci, ri in zip(grids, c, radii)) <= 1
    lobe_c = c.copy()
    lobe_c[-1] += radii[-1] * 1.0
    lobe_r = radii * 0.3
    lobe = sum(((g - ci) / ri) ** 2 for g, ci, ri in zip(grids, lobe_c, lobe_r)) <= 1
    leak_c = c.copy()
    leak_c[0] -= radii[0] * 1.0
    leak = (sum(((g - ci) / ri) ** 2 for g, ci, ri in zip(grids, leak_c, lobe_r)) <= 1) & ~body
    gt = body | lobe
    texture = ndimage.gaussian_filter(rng.normal(size=shape), 2.0) * 40
    image = 80 + 70 * gt + texture + rng.normal(0, 8, shape)
    # the "CNN" found the body and a false blob (leak) but missed the lobe
    cnn_mask = body | leak
    sd = ndimage.distance_transform_edt(cnn_mask) - ndimage.distance_transform_edt(~cnn_mask)
    cnn = expit((sd - 1) / 2.0).astype(np.float32)
    margin = []
    for ax in range(ndim):
        for sgn in (-1, 1):
            pt = np.round(c).astype(int)
            pt[ax] = int(round(c[ax] + sgn * (radii[ax] - 3)))
            margin.append(pt)
    fg = [np.round(lobe_c).astype(int)]  # one click in the missed lobe
    bg = [np.round(leak_c).astype(int)]  # one click in the false blob
    box = Box(tuple([rim] * ndim), tuple(rim + n for n in crop_shape))
    return image, cnn, gt, np.array(margin), np.array(fg), np.array(bg), box


def median_ms(fn, repeats):
    load_kernels()  # compiled here, not in a background process while the loop runs
    fn()  # warm-up (caches)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def stage_times(image, cnn, margin, fg, bg, box, backend, connectivity, repeats):
    """Median ms of the parts of one round on the crop (geodesics, fusion, graph cut)."""
    sl = box.slices
    origin = np.asarray(box.start)
    norm = _normalise01(image[sl][None].astype(np.float64))
    p = cnn[sl]
    unit = np.ones(image.ndim)
    seeds = np.concatenate([margin, fg]) - origin
    d = {}

    def geo():
        d["fg"], d["bg"] = _click_distances(norm, seeds, bg - origin, unit, backend)

    t_geo = median_ms(geo, repeats)
    t_fuse = median_ms(lambda: d.__setitem__("r", fuse_probabilities(p, d["fg"], d["bg"])), repeats)
    t_gc = median_ms(
        lambda: _solve(
            d["r"],
            norm,
            seeds[-1:],
            bg - origin,
            lam=5.0,
            sigma=0.1,
            spacing=unit,
            connectivity=connectivity,
        ),
        repeats,
    )
    return t_geo, t_fuse, t_gc


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats-2d", type=int, default=30)
    parser.add_argument("--repeats-3d", type=int, default=7)
    args = parser.parse_args(argv)

    backends = ["auto"] + (["geodistk"] if "geodistk" in available_backends() else [])
    cases = [((200, 200), [8], args.repeats_2d), ((64, 96, 96), [6, 26], args.repeats_3d)]
    rows = []
    for crop, conns, repeats in cases:
        image, cnn, gt, margin, fg, bg, box = scene(crop)
        for conn in conns:
            for backend in backends:

                def one_round(method="ifgc"):
                    return refine(
                        image,
                        cnn,
                        margin_points=margin,
                        foreground=fg,
                        background=bg,
                        box=box,
                        connectivity=conn,
                        backend=backend,
                        method=method,
                    )

                name = f"{len(crop)}D {'x'.join(map(str, crop))}"
                label = "numba (auto)" if backend == "auto" else backend
                nan = float("nan")
                if backend == "auto":  # GeodisTK has no additive cost: no click-local round
                    rows.append(
                        (
                            name,
                            conn,
                            f"{label}, ifgc (click-local, default)",
                            median_ms(one_round, repeats),
                            nan,
                            nan,
                            nan,
                            TARGETS_MS[len(crop)],
                            dice(one_round().mask, gt),
                        )
                    )
                total = median_ms(lambda: one_round("ifgc-global"), repeats)
                geo, fuse, gc = stage_times(image, cnn, margin, fg, bg, box, backend, conn, repeats)
                res = one_round("ifgc-global")
                rows.append(
                    (
                        name,
                        conn,
                        f"{label}, ifgc-global",
                        total,
                        geo,
                        fuse,
                        gc,
                        TARGETS_MS[len(crop)],
                        dice(res.mask, gt),
                    )
                )
        name = f"{len(crop)}D {'x'.join(map(str, crop))}"
        nan = float("nan")

        def naive_round():
            return refine(
                image, cnn, margin_points=margin, foreground=fg, background=bg, box=box, method="gc"
            )

        rows.append(
            (
                name,
                DEFAULT_CONNECTIVITY[len(crop)],
                "naive gc (no fusion)",
                median_ms(naive_round, repeats),
                nan,
                nan,
                nan,
                nan,
                dice(naive_round().mask, gt),
            )
        )
        rows.append(
            (name, "-", "CNN only (threshold)", nan, nan, nan, nan, nan, dice(cnn >= 0.5, gt))
        )

    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(
        f"\nOne refinement round, median ms ({platform.machine()}, {os.cpu_count()} CPUs, "
        f"load average {load}, numpy {np.__version__}); 1 foreground + 1 background click; "
        f"Dice against the synthetic ground truth.\n"
    )
    print(
        "| crop | neighbours | geodesic backend, method | round (ms) | geodesics Df+Db | fusion "
        "| graph cut | target | Dice |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, conn, backend, total, geo, fuse, gc, target, d in rows:
        fmt = lambda v: "-" if np.isnan(v) else f"{v:.1f}"
        print(
            f"| {name} | {conn} | {backend} | {fmt(total)} | {fmt(geo)} | {fmt(fuse)} "
            f"| {fmt(gc)} | {fmt(target)} | {d:.3f} |"
        )


if __name__ == "__main__":
    main()
