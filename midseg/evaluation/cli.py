"""The `midseg evaluate` command (also ``python -m midseg.evaluate``): options and runs.

`add_arguments` and `run` are the hooks of `midseg.cli`; `main` is the stand-alone
entry point. A run loads the cases, evaluates the methods (`run_protocol`), writes the
per-step CSV with a ``.json`` run record beside it and, with ``--report``, the report.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

from ..errors import InvalidInputError
from .cases import DATASETS, Case, load_cases
from .methods import METHOD_NAMES, SessionMethod, make_methods
from .protocol import DEFAULT_CLICKS, run_protocol, write_csv
from .report import write_report
from .users import USERS

__all__ = ["add_arguments", "run", "main"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `midseg evaluate`."""
    parser.description = (
        "Robot-user evaluation: stage 1 from simulated interior margin points, then up to K "
        "corrective clicks placed on each method's own errors; midseg against classical "
        "peers on the same points. Writes a per-step CSV (+ a .json run record) and, with "
        "--report, a Markdown report with tables and Dice-vs-clicks plots."
    )
    _add_method_arguments(parser)
    _add_case_arguments(parser)
    _add_run_arguments(parser)
    _add_report_arguments(parser)


def _add_method_arguments(parser: argparse.ArgumentParser) -> None:
    """What is evaluated: datasets, dimension, output, methods and models, clicks, seed."""
    parser.add_argument(
        "datasets", nargs="*", metavar="DATASET", help=f"dataset names: {', '.join(DATASETS)}"
    )
    parser.add_argument(
        "--dims",
        type=int,
        choices=(2, 3),
        default=2,
        help="2: images / axial slices, 3: volumes (default 2)",
    )
    parser.add_argument(
        "--out",
        default="runs/eval/steps.csv",
        help="per-step CSV to write (default runs/eval/steps.csv)",
    )
    parser.add_argument(
        "--methods",
        default=",".join(METHOD_NAMES),
        help=f"comma-separated methods (default: all of {','.join(METHOD_NAMES)})",
    )
    parser.add_argument(
        "--extra-model",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="add a stage-1 model (.pt with its card, or an ensemble card .json) as method "
        "NAME; repeatable",
    )
    parser.add_argument(
        "--model", default=None, help="model of midseg / midseg-gc (default: shipped 2d/3d)"
    )
    parser.add_argument(
        "--clicks",
        type=int,
        default=DEFAULT_CLICKS,
        help=f"corrective clicks per case, K (default {DEFAULT_CLICKS})",
    )
    parser.add_argument("--seed", type=int, default=0, help="global seed (default 0)")
    parser.add_argument(
        "--user",
        choices=USERS,
        default="robot",
        help="simulated user: robot (deepest error, knows the ground truth), suggest "
        "(clicks Session.suggest's top suggestion, labelled from the ground truth), random "
        "(a random voxel of the stage-1 box); default robot",
    )


def _add_case_arguments(parser: argparse.ArgumentParser) -> None:
    """Which cases of each dataset, and where the data is."""
    parser.add_argument(
        "--max-cases",
        "--limit",
        dest="max_cases",
        type=int,
        default=None,
        help="use only the first N cases of each dataset (quick runs)",
    )
    parser.add_argument(
        "--skip-cases",
        type=int,
        default=0,
        help="drop the first N cases of each dataset's selection (to split "
        "a selection over runs; default 0)",
    )
    parser.add_argument(
        "--objects",
        default=None,
        help="dev-unseen: comma-separated object names to evaluate (default "
        "all; see midseg.datasets.DEV_UNSEEN)",
    )
    parser.add_argument(
        "--hc18-count", type=int, default=200, help="size of the seeded hc18 subset (default 200)"
    )
    parser.add_argument(
        "--slices-per-case",
        type=int,
        default=10,
        help="2D BraTS: axial slices sampled per testing volume (default 10)",
    )
    parser.add_argument(
        "--min-pixels",
        type=int,
        default=100,
        help="2D BraTS: least object pixels of an eligible slice (default 100)",
    )
    parser.add_argument(
        "--data-root", default=None, help="data folder (default $MIDSEG_DATA or ../shared/data)"
    )


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Device, worker processes and threads."""
    parser.add_argument("--device", default=None, help="torch device for stage 1")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads for stage 1 (default 1: timings comparable "
        "with the single-threaded peers)",
    )


def _add_report_arguments(parser: argparse.ArgumentParser) -> None:
    """The report, its figures, a report from earlier runs' CSVs, progress bars."""
    parser.add_argument("--report", default=None, help="also write this Markdown report")
    parser.add_argument(
        "--figures",
        default=None,
        help="folder for the report's PNGs and summary.csv "
        "(default: beside the report, named after it)",
    )
    parser.add_argument(
        "--from-csv",
        nargs="+",
        default=None,
        metavar="CSV",
        help="do not evaluate: build --report from these per-step CSVs",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _parse_extra(items: Sequence[str]) -> dict[str, str]:
    out = {}
    for it in items:
        name, sep, path = it.partition("=")
        if not sep or not name or not path:
            raise InvalidInputError(f"--extra-model takes NAME=PATH, got {it!r}")
        from ..models import model_path

        model_path(path)  # fails early with a clear message
        out[name] = path
    return out


def _model_record(name_or_path) -> tuple[str, str]:
    """``name-or-path (sha256 prefix)`` of a model's weights and its card's path, for the run
    record."""
    from ..models import model_path, model_sha256

    pt = model_path(name_or_path)
    return (
        f"{name_or_path} (sha256 {model_sha256(pt)[:12]})",
        str(pt.with_suffix(".json")),
    )


def _code_version() -> str:
    """midseg's version and, in a git checkout, the commit (``+dirty`` with local changes)."""
    import subprocess

    from .. import __version__

    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return f"midseg {__version__}"
    return f"midseg {__version__}, commit {commit.stdout.strip()}" + (
        "+dirty" if dirty.stdout.strip() else ""
    )


def run(args: argparse.Namespace) -> int:
    """Entry point of `midseg evaluate`."""
    if args.from_csv:
        if not args.report:
            raise InvalidInputError("--from-csv needs --report to know what to write")
        write_report(args.from_csv, args.report, figures=args.figures, clicks=args.clicks)
        print(f"wrote {args.report}")
        return 0
    if not args.datasets:
        raise InvalidInputError(f"name at least one dataset: {', '.join(DATASETS)}")
    if args.threads is not None and args.threads < 1:
        raise InvalidInputError(f"--threads must be >= 1, got {args.threads}")
    if args.max_cases is not None and args.max_cases < 1:
        raise InvalidInputError(f"--max-cases must be >= 1, got {args.max_cases}")
    uses_torch = args.extra_model or any(
        m.strip().startswith("midseg") for m in args.methods.split(",")
    )
    if args.threads and uses_torch:
        import torch

        torch.set_num_threads(args.threads)
    names = [m.strip() for m in args.methods.split(",") if m.strip()]
    extra = _parse_extra(args.extra_model)
    methods = make_methods(names, model=args.model, extra_models=extra, device=args.device)
    t0 = time.perf_counter()
    cases: list[Case] = []
    selection = []
    for ds in args.datasets:
        got = load_cases(
            ds,
            dims=args.dims,
            data_root=args.data_root,
            seed=args.seed,
            hc18_count=args.hc18_count,
            slices_per_case=args.slices_per_case,
            min_pixels=args.min_pixels,
            max_cases=args.max_cases,
            skip_cases=args.skip_cases,
            objects=args.objects.split(",") if args.objects else None,
        )
        cases.extend(got)
        selection.append(f"{ds} {args.dims}D: {len(got)}")
    rows = run_protocol(
        cases,
        methods,
        clicks=args.clicks,
        seed=args.seed,
        progress=not args.no_progress,
        jobs=args.jobs,
        user=args.user,
    )
    write_csv(rows, args.out)
    refs = {m.name: m.model or f"{args.dims}d" for m in methods if isinstance(m, SessionMethod)}
    records = {ref: _model_record(ref) for ref in set(refs.values())}  # each file hashed once
    models = {name: records[ref][0] for name, ref in refs.items()}
    cards = {name: records[ref][1] for name, ref in refs.items()}
    prog = "midseg" if Path(sys.argv[0]).name == "midseg" else "python -m midseg.evaluate"
    meta = {
        "command": " ".join([prog] + [shlex.quote(a) for a in sys.argv[1:]]),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "n_cases": len(cases),
        "selection": "; ".join(selection),
        "methods": [m.name for m in methods],
        "models": models,
        "model_cards": cards,
        "clicks": args.clicks,
        "user": args.user,
        "seed": args.seed,
        "wall_s": time.perf_counter() - t0,
        "host": f"{platform.machine()} {os.cpu_count()} CPUs",
        "code": _code_version(),
    }
    Path(args.out).with_suffix(".json").write_text(
        json.dumps(meta, indent=1) + "\n", encoding="utf-8"
    )
    print(f"wrote {args.out} ({len(rows)} rows, {len(cases)} cases)")
    if args.report:
        write_report([args.out], args.report, figures=args.figures, clicks=args.clicks)
        print(f"wrote {args.report}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m midseg.evaluate``: the same options as `midseg evaluate`."""
    parser = argparse.ArgumentParser(prog="python -m midseg.evaluate")
    add_arguments(parser)
    parser.add_argument("--debug", action="store_true")
    args = parser.parse_args(argv)
    from ..cli import run_entry

    return run_entry("midseg evaluate", run, args)
