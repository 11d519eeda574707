"""Development check: stage-1 Dice on plain, textured, large and masked synthetic shapes.

A model meant for unseen objects must segment an object whose inside is not uniform
(necrosis, ventricles, vessels), where the geodesic cue of its margin points fades at
every strong inner edge; an object larger than its training objects, whose crop is
shrunk to the grid; and an object that is all that is left of a masked scan. This
script measures these on synthetic shapes only (`midseg.train.synthetic_items`), drawn
with a seed no training command uses, so it can guide training choices without touching
the unseen test sets (whole tumour, brain, fetal head), which must never choose anything.

Usage::

    python benchmarks/synthetic_dev.py --models 3d runs/eval/models/3d_none.pt --dims 3
    python benchmarks/synthetic_dev.py --models 2d --dims 2 --count 40

Prints a Markdown table: mean Dice (p >= 0.5) per model on `--count` shapes of each kind
(`KINDS`): plain; all with inner parts (``inclusions=1``); all twice as large (``large=1``,
so the crop is shrunk to the grid as for a large organ); masked (the plain shapes' images
z-scored inside the object and 0 outside, as in a skull-stripped scan whose object is all
that was kept). Every model sees the same shapes and the same simulated points.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

#: Default seed of the shapes and points; training commands use small seeds (0-9).
DEV_SEED = 9001


def _masked(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The image z-scored inside the object and set to 0 outside it, as in a skull-stripped
    or masked scan whose object is everything that was kept."""
    inside = image[mask]
    out = (image - inside.mean()) / max(float(inside.std()), 1e-6)
    out[~mask] = 0.0
    return out.astype(np.float32)


#: Kinds of shapes: name -> (keyword arguments of `midseg.train.synthetic_items`,
#: image transform or None).
KINDS = {
    "plain": ({}, None),
    "inner parts": ({"inclusions": 1.0}, None),
    "large": ({"large": 1.0}, None),
    "masked": ({}, _masked),
}


def evaluate(models: dict, dims: int, count: int, seed: int = DEV_SEED) -> dict:
    """``{(model name, kind): [Dice per shape]}`` for every kind in `KINDS`.

    Every model gets the same shapes and the same simulated interior margin points."""
    from midseg import data_sim
    from midseg.metrics import dice
    from midseg.predict import predict_probability
    from midseg.train import synthetic_items

    out, drawn = {}, {}
    for kind, (kw, transform) in KINDS.items():
        key = tuple(sorted(kw.items()))  # kinds that differ by transform only share shapes
        if key not in drawn:
            shapes = synthetic_items(count, dims, seed=seed, **kw)
            drawn[key] = (
                shapes,
                [
                    data_sim.interior_margin_points(
                        it.mask, rng=np.random.default_rng([seed, 31, k])
                    )
                    for k, it in enumerate(shapes)
                ],
            )
        items, points = drawn[key]
        images = [it.image if transform is None else transform(it.image, it.mask) for it in items]
        for name, model in models.items():
            out[(name, kind)] = [
                dice(predict_probability(im, pts, model).probability >= 0.5, it.mask)
                for im, it, pts in zip(images, items, points)
            ]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--models",
        nargs="+",
        required=True,
        help="shipped model names or .pt paths (card beside it)",
    )
    parser.add_argument("--dims", type=int, choices=(2, 3), required=True)
    parser.add_argument("--count", type=int, default=16, help="shapes of each kind (default 16)")
    parser.add_argument(
        "--seed", type=int, default=DEV_SEED, help=f"seed of shapes and points (default {DEV_SEED})"
    )
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error("--count must be >= 1")

    import torch

    import midseg.models as mm

    torch.set_num_threads(args.threads)
    models = {}
    for spec in args.models:
        m = mm.load_model(spec, device="cpu")
        if m.spatial_dims != args.dims:
            parser.error(f"model {spec!r} is {m.spatial_dims}D, not {args.dims}D")
        models[spec if not spec.endswith(".pt") else str(Path(spec).with_suffix(""))] = m
    res = evaluate(models, args.dims, args.count, args.seed)
    print(
        f"\nStage 1 on synthetic {args.dims}D shapes (midseg.train.synthetic_items, seed "
        f"{args.seed}, {args.count} of each kind); mean Dice (p >= 0.5), [min]\n"
    )
    print("| model | " + " | ".join(KINDS) + " |")
    print("|---" * (len(KINDS) + 1) + "|")
    for name in models:
        cells = [f"{np.mean(res[(name, k)]):.3f} [{np.min(res[(name, k)]):.2f}]" for k in KINDS]
        print(f"| {name} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
