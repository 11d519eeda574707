"""A new process to its first mask, with numba's cache cold and warm (issue 19).

Each run starts ``python benchmarks/cold_start.py --child 2d|3d`` as a new process, which
imports midseg, reads an image (HC18 ``000_HC.png``, 2D; BraTS pat0001 T1c, 3D; synthetic
stand-ins without the data), opens a `Session` with the shipped model and segments it from
interior margin points of the ground truth. The time is from just before the process starts
to the mask (not to the process's exit). "cold": an empty ``NUMBA_CACHE_DIR``, so the
geodesic kernels compile in that process; "warm": the same folder again, filled by the cold
run before it (the reference). The stage-1 runtime's own caches (the ONNX export) are left
as they are: warm after the first run. A cold run's first geodesic distances come from NumPy
while another process compiles the kernel (`midseg.geodesic`); the next run starts when that
process has ended. Cold and warm runs alternate. Targets: cold 2D <= 3 s, 3D <= 5 s.
Run: ``python benchmarks/cold_start.py [--repeats 3] [--dims 2d 3d]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# $MIDSEG_DATA or ../shared/data, as `midseg.datasets.data_root_default` (not imported here:
# the child's imports are part of what is timed)
DATA = Path(
    os.environ.get("MIDSEG_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data"
)
TARGETS = {"2d": 3.0, "3d": 5.0}


def child(dim: str) -> None:
    """Segment one image in this (new) process; print the monotonic time of the mask."""
    import numpy as np

    from midseg import Session, read_image
    from midseg.data_sim import interior_margin_points
    from midseg.io import Image

    if dim == "2d" and (DATA / "hc18").is_dir():
        img = read_image(DATA / "hc18" / "images" / "000_HC.png")
        gt = read_image(DATA / "hc18" / "masks" / "000_HC.png").array != 0
    elif dim == "3d" and (DATA / "brats2013").is_dir():
        from midseg.datasets import REGISTRY, case_files

        case = REGISTRY["brats2013"].splits["test"][0]
        image, label, values = case_files("brats2013", case, "tumour_core", DATA)
        img = read_image(image)
        gt = np.isin(read_image(label).array, values)
    else:  # a bright ellipse (ellipsoid) in noise
        shape = (270, 400) if dim == "2d" else (155, 240, 240)
        grids = np.ogrid[tuple(slice(0, n) for n in shape)]
        gt = sum(((g - n / 2) / (n / 5)) ** 2 for g, n in zip(grids, shape)) < 1
        noise = np.random.default_rng(0).normal(0, 0.3, shape)
        img = Image((gt + noise).astype(np.float32))
    points = interior_margin_points(gt, rng=0, spacing=img.spacing)
    session = Session(img)
    mask = session.segment(points)
    stamp = time.monotonic()
    assert mask.any()
    from midseg.geodesic import _Kernels

    compiling = _Kernels.process.pid if _Kernels.process is not None else 0
    print(f"MASK {stamp!r} {compiling}", flush=True)


def run(dim: str, cache: str) -> float:
    env = dict(os.environ, NUMBA_CACHE_DIR=cache)
    t0 = time.monotonic()
    out = subprocess.run(
        [sys.executable, __file__, "--child", dim],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    _, stamp, compiling = next(
        line for line in out.splitlines() if line.startswith("MASK ")
    ).split()
    while int(compiling) and os.path.exists(f"/proc/{compiling}"):
        time.sleep(0.1)  # the kernel still compiling in the background: not into the next run
    return float(stamp) - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dims", nargs="+", default=["2d", "3d"], choices=["2d", "3d"])
    ap.add_argument("--child", choices=["2d", "3d"], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args.child)
        return 0
    times: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for dim in args.dims:
            run(dim, os.path.join(tmp, "first"))  # the ONNX export and the OS's file cache
        for r in range(args.repeats):
            for dim in args.dims:
                cache = os.path.join(tmp, f"{dim}-{r}")
                times.setdefault((dim, "cold"), []).append(run(dim, cache))
                times.setdefault((dim, "warm"), []).append(run(dim, cache))
    load = os.getloadavg()[0]
    print(
        f"\nnew process to first mask, {platform.machine()} {os.cpu_count()} CPUs, "
        f"load {load:.2f}, {time.strftime('%Y-%m-%d %H:%M')}\n"
    )
    print("| image | numba cache | median s | runs | target |")
    print("|---|---|---|---|---|")
    for dim in args.dims:
        for state in ("cold", "warm"):
            ts = times[(dim, state)]
            med = statistics.median(ts)
            target = (
                f"<= {TARGETS[dim]:g}: {'yes' if med <= TARGETS[dim] else 'NO'}"
                if state == "cold"
                else "reference"
            )
            print(
                f"| {dim.upper()} | {state} | {med:.2f} | {', '.join(f'{t:.2f}' for t in ts)} "
                f"| {target} |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
