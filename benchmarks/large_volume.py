"""Whole CT volumes at interactive speed: per-click cost, history memory, stage 1 (issue 19).

Every row is measured in this run beside its reference:

* **region vs image** -- the same tumour-sized region (BraTS pat0001 tumour core, or a
  synthetic ball without the data) refined by the same robot clicks inside its BraTS
  volume (155x240x240) and inside a 300x512x512 volume that holds it (the BraTS volume
  pasted into a larger one at background intensity). Target: <= 1.3x.
* **organ-sized region** -- a synthetic organ (about 3.8 M voxels, a liver at 1 mm) in a
  300x512x512 CT-like volume, and a larger one (about 6 M) in 400x512x512: seconds per
  click. Targets 1.5 s and 2 s.
* **history memory** -- RSS of a process segmenting the 300x512x512 volume and refining
  it with 20 clicks: peak, and growth per click against the refined region's bytes
  (probability + mask). Targets: peak < 1.5 GB, growth <= 2x the region's bytes.
* **stage 1** -- median `Session.segment` seconds, 2D (HC18-sized 540x800 image) and 3D
  (BraTS volume). Targets 0.03 s and 0.6 s.

Each scenario runs in a fresh process (`multiprocessing`, spawn) so that its peak RSS is
its own. Prints a Markdown table. Run: ``python benchmarks/large_volume.py [--quick]``.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import statistics
import time

import numpy as np

from midseg.datasets import REGISTRY, case_files, data_root_default

DATA = data_root_default()  # $MIDSEG_DATA or ../shared/data
#: the first BraTS testing case's T1c, its tumour core
BRATS_IMAGE, BRATS_LABEL, BRATS_VALUES = case_files(
    "brats2013", REGISTRY["brats2013"].splits["test"][0], "tumour_core", DATA
)


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _brats():
    """(image float32, tumour-core mask, spacing) of BraTS pat0001, or a synthetic stand-in."""
    if BRATS_IMAGE.is_file():
        from midseg import read_image

        img = read_image(BRATS_IMAGE)
        lab = read_image(BRATS_LABEL).array
        return np.asarray(img.array, np.float32), np.isin(lab, BRATS_VALUES), img.spacing, "BraTS"
    rng = np.random.default_rng(0)
    zz, yy, xx = np.indices((155, 240, 240), dtype=np.float32)
    gt = ((zz - 80) / 14) ** 2 + ((yy - 110) / 20) ** 2 + ((xx - 130) / 18) ** 2 < 1
    img = (gt * 2.0 + rng.normal(0, 0.5, gt.shape)).astype(np.float32)
    return img, gt, (1.0, 1.0, 1.0), "synthetic ball"


def _embed(img, gt, shape, offset):
    big = np.full(shape, float(img.min()), np.float32)
    big_gt = np.zeros(shape, bool)
    sl = tuple(slice(o, o + n) for o, n in zip(offset, img.shape))
    big[sl], big_gt[sl] = img, gt
    return big, big_gt


def _organ(shape, radii, seed=0):
    """A CT-like volume (HU) with an organ (ellipsoid with lobes) and its mask."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    c = np.array(shape) / 2
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    r = sum(((g - ci) / ri) ** 2 for g, ci, ri in zip(grids, c, radii))
    gt = r < 1
    lobe = (
        sum(
            ((g - ci) / ri) ** 2
            for g, ci, ri in zip(grids, c + np.array(radii) * [0, 0.8, 0.6], np.array(radii) * 0.45)
        )
        < 1
    )
    gt |= lobe
    img = np.where(gt, 60.0, 10.0).astype(np.float32)
    img[: shape[0] // 10] = -1000.0  # air above
    img += (
        ndimage.gaussian_filter(rng.normal(0, 25, (shape[0] // 4, shape[1] // 4, shape[2] // 4)), 1)
        .repeat(4, 0)
        .repeat(4, 1)
        .repeat(4, 2)[: shape[0], : shape[1], : shape[2]]
        .astype(np.float32)
    )
    return img, gt


def _clicks_run(image, gt, spacing, n_clicks, seed=0):
    """Segment (simulated margin points) and refine with robot clicks; per-click seconds."""
    from midseg import Image, Session
    from midseg.data_sim import corrective_click, interior_margin_points

    rss0 = _rss_mb()
    s = Session(Image(image, spacing=spacing))
    pts = interior_margin_points(gt, rng=seed, spacing=spacing)
    t0 = time.perf_counter()
    s.segment(pts)
    stage1 = time.perf_counter() - t0
    times, growth, regions = [], [], []
    mask = s.mask
    # the robot works on the box of the object and the mask (+10 voxels), not the image:
    # its distance transforms would otherwise dominate the process's memory
    for _ in range(n_clicks):
        nz = np.argwhere(gt | (np.asarray(mask) != 0))
        lo = np.maximum(nz.min(0) - 10, 0)
        hi = np.minimum(nz.max(0) + 11, gt.shape)
        crop = tuple(slice(a, b) for a, b in zip(lo, hi))
        click = corrective_click(gt[crop], np.asarray(mask)[crop], mode="deepest", spacing=spacing)
        if click is None:
            break
        point = tuple(int(v) for v in np.add(click.point, lo))
        before = _rss_mb()
        t0 = time.perf_counter()
        if click.foreground:
            s.refine(foreground=[point])
        else:
            s.refine(background=[point])
        times.append(time.perf_counter() - t0)
        mask = s.mask
        change = s._history[-1].change
        regions.append(int(np.prod([x.stop - x.start for x in change.slices])) * 5)
        growth.append((_rss_mb() - before) * 2**20)
    return {
        "stage1": stage1,
        "times": times,
        "growth": growth,
        "regions": regions,
        "rss_start": rss0,
        "peak": _peak_mb(),
        "dice": _dice(mask, gt),
    }


def _dice(a, b):
    a, b = np.asarray(a) != 0, np.asarray(b) != 0
    return 2 * (a & b).sum() / max(1, a.sum() + b.sum())


def scenario(name, quick):
    import torch

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    n = 3 if quick else 8
    if name in ("brats", "brats_big"):
        img, gt, sp, what = _brats()
        if name == "brats_big":
            img, gt = _embed(img, gt, (300, 512, 512), (70, 130, 140))
        out = _clicks_run(img, gt, sp, n)
        out["what"] = what
        return out
    if name in ("organ", "organ_big"):
        shape = (300, 512, 512) if name == "organ" else (400, 512, 512)
        radii = (75, 115, 100) if name == "organ" else (85, 150, 125)
        img, gt = _organ(shape, radii)
        out = _clicks_run(img, gt, (1.0, 1.0, 1.0), 2 if quick else 4)
        out["what"] = f"{int(gt.sum()) / 1e6:.1f} M voxel organ"
        return out
    if name == "history":
        img, gt, sp, what = _brats()
        img, gt = _embed(img, gt, (300, 512, 512), (70, 130, 140))
        out = _clicks_run(img, gt, sp, 5 if quick else 20)
        out["what"] = what
        return out
    if name == "stage1":
        from midseg import Image, Session

        img, gt, sp, _ = _brats()
        from midseg.data_sim import interior_margin_points

        res = {}
        s3 = Session(Image(img, spacing=sp))
        p3 = interior_margin_points(gt, rng=0, spacing=sp)
        res["3d"] = _median(lambda: s3.segment(p3), 3 if quick else 7)
        yy, xx = np.mgrid[:540, :800]
        disc = ((yy - 270) / 180) ** 2 + ((xx - 400) / 250) ** 2 < 1
        im2 = (disc * 50 + np.random.default_rng(0).normal(0, 20, disc.shape)).astype(np.float32)
        s2 = Session(Image(im2, spacing=(0.2, 0.2)))
        p2 = interior_margin_points(disc, rng=0)
        res["2d"] = _median(lambda: s2.segment(p2), 5 if quick else 21)
        return res
    raise ValueError(name)


def _median(fn, repeats):
    from midseg.geodesic import load_kernels

    load_kernels()  # compiled here, not in a background process while the loop runs
    fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def _run(name, quick):
    ctx = mp.get_context("spawn")
    with ctx.Pool(1) as pool:
        return pool.apply(scenario, (name, quick))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer clicks and repeats")
    ap.add_argument(
        "--only",
        default="brats,brats_big,organ,organ_big,history,stage1",
        help="comma-separated scenarios (default: all)",
    )
    args = ap.parse_args(argv)
    only = args.only.split(",")
    res = {name: _run(name, args.quick) for name in only}
    med = lambda xs: statistics.median(xs) if xs else float("nan")  # noqa: E731
    print(
        f"\nmidseg large-volume benchmark, {platform.machine()} {os.cpu_count()} CPUs, "
        f"{time.strftime('%Y-%m-%d %H:%M')}\n"
    )
    print("| measurement | result | reference (same run) | target | met |")
    print("|---|---|---|---|---|")
    if "brats" in res and "brats_big" in res:
        a, b = med(res["brats"]["times"]), med(res["brats_big"]["times"])
        print(
            f"| s per click, {res['brats']['what']} tumour region in 300x512x512 | {b:.3f} | "
            f"{a:.3f} in 155x240x240 (ratio {b / a:.2f}) | ratio <= 1.3 | "
            f"{'yes' if b / a <= 1.3 else 'NO'} |"
        )
    for key, label, target in (("organ", "300x512x512", 1.5), ("organ_big", "400x512x512", 2.0)):
        if key in res:
            t = med(res[key]["times"])
            print(
                f"| s per click, {res[key]['what']} in {label} | {t:.2f} | stage 1 "
                f"{res[key]['stage1']:.2f} s, Dice {res[key]['dice']:.3f} | <= {target} | "
                f"{'yes' if t <= target else 'NO'} |"
            )
    if "history" in res:
        h = res["history"]
        ratio = max(g / r for g, r in zip(h["growth"], h["regions"])) if h["growth"] else 0
        print(
            f"| peak RSS, 300x512x512 + {len(h['times'])} clicks, MB | {h['peak']:.0f} | "
            f"{h['rss_start']:.0f} before the session | < 1536 | "
            f"{'yes' if h['peak'] < 1536 else 'NO'} |"
        )
        print(
            f"| RSS growth per click / region bytes (max) | {ratio:.2f} | region "
            f"{med(h['regions']) / 2**20:.1f} MB (median) | <= 2 | "
            f"{'yes' if ratio <= 2 else 'NO'} |"
        )
    if "stage1" in res:
        st = res["stage1"]
        print(
            f"| stage 1, 2D 540x800, s (median) | {st['2d']:.3f} | - | <= 0.03 | "
            f"{'yes' if st['2d'] <= 0.03 else 'NO'} |"
        )
        print(
            f"| stage 1, 3D BraTS, s (median) | {st['3d']:.3f} | - | <= 0.6 | "
            f"{'yes' if st['3d'] <= 0.6 else 'NO'} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
