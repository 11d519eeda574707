"""Stage-1 benchmark: Dice and CPU latency of the initial segmentation from simulated points.

Seen object: tumour core on T1c of the BraTS testing cases (pat0001/2), 2D over
slices and 3D over volumes. Unseen objects: whole tumour on FLAIR (2D, 3D), brain
on T1c (2D, a few slices per case), fetal head in hc18 ultrasound (2D, the 200 images
of ``midseg evaluate hc18``, `midseg.evaluation.load_cases`). Development objects:
``dev_unseen`` (2D largest axial slice, 3D crop; `midseg.datasets.dev_unseen_cases`, with
their spacing). Held-back pool patients: the sts validation split (CT, MR, PET tumour, 3D). Every model sees
the same simulated interior margin points: each item's seed is derived from the
seed, the task and the item's name, so it does not depend on which other tasks run
or in which order. Models compare side by side in one Markdown table.

Usage::

    python benchmarks/stage1.py                         # shipped 2d and 3d models
    python benchmarks/stage1.py --models 2d runs/2d_none/2d_none.pt --tasks tc2d,wt2d,hc18
    python benchmarks/stage1.py --quick                 # a few items per task

Nothing here trains or chooses anything: the testing cases are only evaluated.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from midseg.datasets import REGISTRY, data_root_default  # noqa: E402

#: The data root: ``$MIDSEG_DATA`` or ``../shared/data`` beside the repository (``--data``).
DATA = data_root_default()
TEST_CASES = REGISTRY["brats2013"].splits["test"]
MIN_AREA = 30  # 2D slices with fewer target pixels are skipped (as in training)

# task id -> (label, dims, target Dice)
TASKS = {
    "tc2d": ("seen: tumour core, T1c, 2D slices", 2, 0.85),
    "tc3d": ("seen: tumour core, T1c, 3D volumes", 3, 0.80),
    "wt2d": ("unseen: whole tumour, FLAIR, 2D slices", 2, 0.80),
    "wt3d": ("unseen: whole tumour, FLAIR, 3D volumes", 3, 0.75),
    "brain2d": ("unseen: brain, T1c, 2D (5 slices/case)", 2, None),
    "hc18": ("unseen: fetal head, ultrasound, 2D (200 images)", 2, 0.90),
    "dev2d": ("development: dev_unseen, 2D largest slice (16 objects)", 2, 0.88),
    "dev3d": ("development: dev_unseen, 3D crops (16 objects)", 3, 0.80),
    "sts3d": ("held-back pool: sts validation tumours, CT/MR/PET, 3D", 3, None),
    # the same held-back tumours on the CT grid, given as CT, as PET (resampled onto the CT
    # grid) or as both: single-modality models take the first two, PET/CT models the last
    "stsct2d": ("held-back sts tumours, CT alone, 2D slices", 2, None),
    "stspet2d": ("held-back sts tumours, PET alone (on the CT grid), 2D slices", 2, None),
    "stspetct2d": ("held-back sts tumours, PET/CT (2 channels), 2D slices", 2, None),
    "stsct3d": ("held-back sts tumours, CT alone, 3D", 3, None),
    "stspet3d": ("held-back sts tumours, PET alone (on the CT grid), 3D", 3, None),
    "stspetct3d": ("held-back sts tumours, PET/CT (2 channels), 3D", 3, None),
}
#: Tasks that share their items' points: the seed is taken from the group's name.
SEED_GROUP = {t: f"sts-ct-grid{t[-2:]}" for t in TASKS if t.startswith("sts") and t != "sts3d"}


def _read(path: Path) -> np.ndarray:
    from midseg import read_image  # a missing or damaged file: a MidsegError naming it

    return np.asarray(read_image(path).array)


#: task prefix -> target of the brats2013 registry entry
BRATS_TARGETS = {"tc": "tumour_core", "wt": "whole_tumour", "brain": "brain"}


def _brats(case: str, target: str):
    from midseg.datasets import case_files
    from midseg.errors import InvalidInputError

    image, label, values = case_files("brats2013", case, BRATS_TARGETS[target], DATA)
    if not image.parent.is_dir():
        raise InvalidInputError(f"BraTS data not found at '{image.parent}'")
    return _read(image).astype(np.float32), np.isin(_read(label), values)


def load_task(task: str, seed: int = 0, limit: int | None = None):
    """Items ``(name, image, mask, spacing)`` of one task, in a fixed order."""
    items = []
    if task in ("dev2d", "dev3d"):
        from midseg.datasets import dev_unseen_cases

        cases = dev_unseen_cases(dims=int(task[3]), data_root=DATA)
        items = [(c.case, c.image, c.gt != 0, tuple(c.spacing)) for c in cases]
        return items[:limit] if limit else items
    if task == "sts3d":
        from midseg.datasets import training_items

        items = [
            (i.name, i.image, i.mask, i.spacing)
            for i in training_items("sts", "validation", dims=3, data_root=DATA)
        ]
        return items[:limit] if limit else items
    if task in SEED_GROUP:
        from midseg.datasets import training_items

        dims = int(task[-2])
        pairs = training_items(
            "sts",
            "validation",
            dims=dims,
            targets=("tumour_petct",),
            min_area=MIN_AREA,
            data_root=DATA,
        )
        pick = {"ct": slice(0, 1), "pet": slice(1, 2), "petct": slice(0, 2)}[task[3:-2]]
        for i in pairs:
            img = i.image[pick]
            items.append((i.name, img[0] if img.shape[0] == 1 else img, i.mask, i.spacing))
        return items[:limit] if limit else items
    if task in ("tc2d", "tc3d", "wt2d", "wt3d", "brain2d"):
        for case in TEST_CASES:
            img, mask = _brats(case, task[:-2])
            if task.endswith("3d"):
                items.append((case, img, mask, None))
                continue
            areas = mask.sum(axis=(1, 2))
            zs = np.nonzero(areas >= MIN_AREA)[0]
            if task == "brain2d":
                big = np.nonzero(areas >= 0.5 * areas.max())[0]
                rng = np.random.default_rng([seed, 4242, int(case[-3])])
                zs = np.sort(rng.choice(big, size=min(5, len(big)), replace=False))
            items += [(f"{case}:z{int(z)}", img[z], mask[z], None) for z in zs]
    elif task == "hc18":
        from midseg.evaluation.cases import load_cases

        # the evaluation's subset (`midseg evaluate hc18`, its default seed 0), whatever the
        # point seed: the two reports compare the same 200 images
        for c in load_cases("hc18", dims=2, data_root=DATA, seed=0, hc18_count=200):
            items.append((c.case, c.image, c.gt != 0, None))
    else:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    return items[:limit] if limit else items


def evaluate(
    models: dict,
    tasks: list[str],
    *,
    seed: int = 0,
    limit: int | None = None,
    progress: bool = True,
) -> dict:
    """Mean Dice and median latency per (task, model); the same points for every model."""
    from tqdm import tqdm

    from midseg import data_sim
    from midseg.evaluate import case_seed
    from midseg.metrics import dice
    from midseg.predict import predict_probability
    from midseg.geodesic import load_kernels

    results: dict = {}
    for task in tasks:
        dims = TASKS[task][1]
        todo = {name: m for name, m in models.items() if m.spatial_dims == dims}
        if not todo:
            continue
        items = load_task(task, seed=seed, limit=limit)
        key = SEED_GROUP.get(task, task)
        points = [
            data_sim.interior_margin_points(
                mask, rng=np.random.default_rng(case_seed(seed, key, name)), spacing=spacing
            )
            for name, _, mask, spacing in items
        ]
        channels = 1 if items[0][1].ndim == dims else items[0][1].shape[0]
        todo = {name: m for name, m in todo.items() if m.image_channels == channels}
        if not todo:
            continue
        for name, model in todo.items():
            # One untimed call warms up numba/torch so the median is the steady state.
            load_kernels()  # compiled here, not in a background process while timing
            ca = None if channels == 1 else 0
            predict_probability(items[0][1], points[0], model, spacing=items[0][3], channel_axis=ca)
            scores, times = [], []
            for (_, img, mask, sp), pts in tqdm(
                list(zip(items, points)), desc=f"{task} {name}", disable=not progress, leave=False
            ):
                t0 = time.perf_counter()
                prob, _ = predict_probability(img, pts, model, spacing=sp, channel_axis=ca)
                times.append(time.perf_counter() - t0)
                scores.append(dice(prob >= 0.5, mask))
            results[(task, name)] = {
                "dice_mean": float(np.mean(scores)),
                "dice_std": float(np.std(scores)),
                "n": len(scores),
                "latency_median_s": float(np.median(times)),
            }
    return results


def markdown(results: dict, tasks: list[str], names: list[str]) -> str:
    head = "| task | target | " + " | ".join(f"{n} Dice | {n} ms" for n in names) + " |"
    sep = "|---|---|" + "---:|---:|" * len(names)
    rows = [head, sep]
    for task in tasks:
        label, dims, target = TASKS[task]
        cells = []
        for n in names:
            r = results.get((task, n))
            if r is None:
                cells += ["–", "–"]
            else:
                cells += [
                    f"{r['dice_mean']:.3f} ± {r['dice_std']:.3f} (n={r['n']})",
                    f"{1000 * r['latency_median_s']:.0f}",
                ]
        rows.append(
            f"| {label} | {'–' if target is None else f'≥ {target:.2f}'} | "
            + " | ".join(cells)
            + " |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--models",
        nargs="+",
        default=["2d", "3d"],
        help="shipped model names or .pt paths (card beside it)",
    )
    parser.add_argument(
        "--tasks", default=",".join(TASKS), help=f"comma-separated subset of {','.join(TASKS)}"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the simulated points")
    parser.add_argument("--quick", action="store_true", help="at most 5 items per task")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    parser.add_argument(
        "--data", default=None, help="data root (default: $MIDSEG_DATA or ../shared/data)"
    )
    args = parser.parse_args(argv)

    global DATA
    if args.data is not None:
        DATA = Path(args.data)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = [t for t in tasks if t not in TASKS]
    if unknown or not tasks:
        print(
            f"unknown task(s) {unknown or args.tasks!r}; known: {', '.join(TASKS)}",
            file=sys.stderr,
        )
        return 2
    if not DATA.is_dir():
        print(f"data folder {DATA} not found", file=sys.stderr)
        return 1
    import torch

    import midseg.models as mm

    torch.set_num_threads(args.threads)
    models = {}
    for spec in args.models:
        m = mm.load_model(spec, device="cpu")
        name = spec
        if spec.endswith(".pt"):
            name = (
                Path(spec).stem
                if Path(spec).stem not in models
                else f"{Path(spec).parent.name}/{Path(spec).stem}"
            )
        models[name] = m
    from midseg.errors import MidsegError

    try:
        results = evaluate(models, tasks, seed=args.seed, limit=5 if args.quick else None)
    except MidsegError as exc:  # a set missing under the data root, a bad file
        print(f"stage1: error: {exc}", file=sys.stderr)
        return 1
    print(
        f"\nStage 1, simulated interior margin points (seed {args.seed}), CPU, "
        f"{args.threads} torch thread(s); Dice at p >= 0.5; latency = median wall time of "
        f"predict_probability (crop + cue + CNN + paste)\n"
    )
    print(markdown(results, tasks, list(models)))
    if args.json:
        Path(args.json).write_text(
            json.dumps({f"{t}|{n}": r for (t, n), r in results.items()}, indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
