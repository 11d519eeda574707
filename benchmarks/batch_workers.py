"""`midseg batch` with 2 workers against 1 worker, whole commands (issue 19).

Makes clicks files for N HC18 images with the robot user (simulated margin points and
`--clicks` corrective clicks, 2D model) in a temporary folder, then times
``midseg batch MANIFEST --out OUT --workers W`` as a new process for W = 1 and 2,
alternating, `--repeats` times each. Prints a Markdown table; target: 2 workers at least
1.6x faster. Run: ``python benchmarks/batch_workers.py [--cases 16] [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


HC18 = Path(__file__).resolve().parents[2] / "shared" / "data" / "hc18"


def make_cases(folder: Path, n: int, clicks: int) -> Path:
    from midseg import Session, read_image
    from midseg.data_sim import corrective_click, interior_margin_points

    names = sorted(p.name for p in (HC18 / "images").glob("*.png"))[:n]
    rows = []
    for name in names:
        img = read_image(HC18 / "images" / name)
        gt = read_image(HC18 / "masks" / name).array != 0
        s = Session(img)
        s.segment(interior_margin_points(gt, rng=0, spacing=img.spacing))
        for _ in range(clicks):
            c = corrective_click(gt, s.mask, mode="deepest", spacing=img.spacing)
            if c is None:
                break
            s.refine(**({"foreground": [c.point]} if c.foreground else {"background": [c.point]}))
        path = folder / (Path(name).stem + ".clicks.json")
        s.save_clicks(path)
        rows.append({"image": str(HC18 / "images" / name), "clicks": str(path)})
    manifest = folder / "manifest.csv"
    with open(manifest, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["image", "clicks"])
        w.writeheader()
        w.writerows(rows)
    return manifest


def run(manifest: Path, out: Path, workers: int) -> float:
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "midseg.cli",
            "batch",
            str(manifest),
            "--out",
            str(out),
            "--workers",
            str(workers),
            "--no-progress",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=16)
    ap.add_argument("--clicks", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    if not HC18.is_dir():
        print(f"HC18 not found at {HC18}")
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        manifest = make_cases(tmp, args.cases, args.clicks)
        times = {1: [], 2: []}
        run(manifest, tmp / "warm", 1)  # caches (numba, ONNX) warm for both
        for _ in range(args.repeats):
            for w in (1, 2):
                times[w].append(run(manifest, tmp / f"out{w}", w))
    t1, t2 = statistics.median(times[1]), statistics.median(times[2])
    print(
        f"\nmidseg batch, {args.cases} HC18 images x {args.clicks} clicks, "
        f"{platform.machine()} {os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d %H:%M')}\n"
    )
    print("| workers | median s (whole command) | runs | speed-up vs 1 | target |")
    print("|---|---|---|---|---|")
    print(f"| 1 | {t1:.2f} | {', '.join(f'{t:.2f}' for t in times[1])} | 1.00 | reference |")
    print(
        f"| 2 | {t2:.2f} | {', '.join(f'{t:.2f}' for t in times[2])} | {t1 / t2:.2f} | "
        f">= 1.6: {'yes' if t1 / t2 >= 1.6 else 'NO'} |"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
