"""The hooks `midseg.cli` wires for `midseg segment` and `midseg batch`.

Part of `midseg.batch` (re-exported there: the subcommand map names
``midseg.batch``): argument parsing and the one-line reports only.
"""

from __future__ import annotations

from ..errors import InvalidInputError
from .runner import run_batch
from .segment import segment_one


def segment_add_arguments(parser) -> None:
    parser.add_argument("image", help="image file or DICOM directory")
    parser.add_argument(
        "--clicks", required=True, help="clicks JSON written by midseg (Session.save_clicks)"
    )
    parser.add_argument(
        "-o", "--output", required=True, help="mask file to write (same geometry as the image)"
    )
    parser.add_argument(
        "--model",
        default=None,
        help="shipped model name, weights path or ensemble card (.json) (default: the one "
        "in the clicks file)",
    )
    parser.add_argument(
        "--ground-truth", default=None, help="reference mask: also print Dice/ASSD/HD95"
    )
    parser.add_argument(
        "--label",
        type=int,
        default=None,
        metavar="N",
        help="the object's value in a multi-label --ground-truth (required when "
        "it holds more than one nonzero value)",
    )
    parser.add_argument(
        "--with",
        dest="co_registered",
        action="append",
        default=[],
        metavar="SECOND",
        help="a co-registered image of the same patient (e.g. the PET of a CT), "
        "resampled onto the first image's grid in physical coordinates as "
        "a further channel (repeatable)",
    )


def segment_run(args) -> int:
    if args.label is not None and not args.ground_truth:
        raise InvalidInputError("--label selects the object in --ground-truth; give --ground-truth")
    result = segment_one(
        args.image,
        args.clicks,
        args.output,
        model=args.model,
        ground_truth=args.ground_truth,
        co_registered=tuple(args.co_registered),
        label=args.label,
    )
    msg = f"wrote {args.output} ({result['rounds']} click rounds, {result['seconds']:.2f} s)"
    if result["dice"] is not None:
        msg += f"; Dice {result['dice']:.4f}"
        if result["assd"] is not None:
            msg += f", ASSD {result['assd']:.2f} mm, HD95 {result['hd95']:.2f} mm"
        else:
            msg += f" ({result['note']})"
    print(msg)
    return 0


def batch_add_arguments(parser) -> None:
    parser.description += (
        "\n\nThe manifest is a CSV (UTF-8) with columns image, clicks and optionally "
        "ground_truth, case, label (the object's value in a multi-label ground truth) and "
        "co_registered (further images of the case onto the image's grid, separated by ';'); "
        "paths are relative to the manifest. Case names are file names inside DIR (no absolute "
        "names, no '..'). Writes DIR/masks/, DIR/cases/ (one record per case) and "
        "DIR/summary.csv. Re-running skips finished cases whose image, clicks, ground truth and "
        "model are unchanged (by content); failed and changed cases run again."
    )
    parser.add_argument("manifest", help="CSV manifest")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument(
        "--workers", type=int, default=None, help="local worker processes (default: cores)"
    )
    parser.add_argument(
        "--scheduler", default=None, help="Dask scheduler address: run on that cluster instead"
    )
    parser.add_argument(
        "--model", default=None, help="override the model named in each clicks file"
    )
    parser.add_argument(
        "--label",
        type=int,
        default=None,
        metavar="N",
        help="the object's value in multi-label ground truths (for rows without "
        "a label column value)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def batch_run(args) -> int:
    if args.workers is not None and args.workers < 1:
        raise InvalidInputError(f"--workers must be >= 1, got {args.workers}")
    res = run_batch(
        args.manifest,
        args.out,
        workers=args.workers,
        scheduler=args.scheduler,
        model=args.model,
        progress=not args.no_progress,
        label=args.label,
    )
    print(
        f"{res['done']} done, {res['failed']} failed, {res['skipped']} already done; "
        f"summary: {res['summary']}"
    )
    return 1 if res["failed"] else 0
