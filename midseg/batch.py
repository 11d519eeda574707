"""Replaying stored clicks over many images: `midseg segment` and `midseg batch`.

A manifest (CSV) lists cases; each case is replayed by a `Session` in a worker
(local process pool by default, a Dask cluster with ``--scheduler``). Outputs
are written atomically and each finished case leaves a record, so a killed run
resumes where it stopped.
"""
from __future__ import annotations

import csv
import json
import os
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from .errors import InvalidInputError
from .io import write_json_atomic

__all__ = ["Case", "read_manifest", "run_case", "run_batch", "segment_one"]

SUMMARY_FIELDS = ["case", "status", "rounds", "seconds", "dice", "assd", "hd95", "mask", "error"]


@dataclass(frozen=True)
class Case:
    """One manifest row: paths are absolute after `read_manifest`."""

    case: str
    image: str
    clicks: str
    ground_truth: str | None = None
    co_registered: tuple[str, ...] = ()


def _mask_suffix(image_path: str) -> str:
    lower = image_path.lower()
    for suffix in (".png", ".tif", ".tiff", ".bmp"):
        if lower.endswith(suffix):
            return suffix
    if lower.endswith((".jpg", ".jpeg")):
        return ".png"  # lossless for masks
    return ".nii.gz"


def read_manifest(path: str | os.PathLike) -> list[Case]:
    """Read a batch manifest.

    The CSV has a header with the columns ``image`` and ``clicks`` (required),
    ``ground_truth``, ``case`` and ``co_registered`` (optional). Relative paths
    are relative to the manifest's folder. ``case`` defaults to the image file
    name without its suffix and must be unique. ``co_registered`` lists further
    images of the case separated by ``;`` (a PET with its CT), read onto the
    image's grid as channels (`midseg.io.read_image`).
    """
    p = Path(path)
    if not p.is_file():
        raise InvalidInputError(f"no such manifest: {str(p)!r}")
    with p.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        fields = [f.strip() for f in (reader.fieldnames or [])]
        missing = {"image", "clicks"} - set(fields)
        if missing:
            raise InvalidInputError(
                f"manifest {str(p)!r} lacks the column(s) {sorted(missing)}; it has {fields}")
        rows = [{k.strip(): (v or "").strip() for k, v in row.items() if k} for row in reader]
    base = p.parent
    cases, seen = [], set()
    for n, row in enumerate(rows, start=2):
        if not row.get("image") or not row.get("clicks"):
            raise InvalidInputError(f"manifest {str(p)!r} line {n}: image and clicks are required")
        image = str((base / row["image"]).resolve())
        name = row.get("case") or Path(row["image"]).name.split(".")[0]
        if name in seen:
            raise InvalidInputError(f"manifest {str(p)!r} line {n}: duplicate case name {name!r}")
        seen.add(name)
        gt = row.get("ground_truth") or None
        extra = tuple(str((base / q.strip()).resolve())
                      for q in (row.get("co_registered") or "").split(";") if q.strip())
        cases.append(Case(name, image, str((base / row["clicks"]).resolve()),
                          str((base / gt).resolve()) if gt else None, extra))
    if not cases:
        raise InvalidInputError(f"manifest {str(p)!r} lists no cases")
    return cases


def segment_one(image_path: str, clicks_path: str, out_path: str, *, model=None,
                ground_truth: str | None = None, co_registered=()) -> dict:
    """Replay one clicks file on one image and write the mask; returns a result dict.

    `co_registered` paths are read onto the image's grid as further channels
    (`midseg.io.read_image`); the mask has the image's geometry.
    """
    from . import metrics
    from .io import read_image, read_mask, write_mask
    from .session import Session

    t0 = time.perf_counter()
    image = read_image(image_path, *co_registered)
    session = Session.from_clicks(clicks_path, image, model=model)
    write_mask(out_path, session.mask, like=image)
    result = {"rounds": len(session.rounds), "seconds": round(time.perf_counter() - t0, 3),
              "mask": str(out_path), "dice": None, "assd": None, "hd95": None}
    if ground_truth:
        gt = read_mask(ground_truth, like=image)
        result["dice"] = round(metrics.dice(session.mask, gt), 6)
        result["assd"] = round(metrics.assd(session.mask, gt, image.spacing), 6)
        result["hd95"] = round(metrics.hd95(session.mask, gt, image.spacing), 6)
    return result


def run_case(case: Case, out_dir: str, model=None) -> dict:
    """Run one case in a worker; never raises: failures are recorded in the result."""
    out = Path(out_dir)
    record = {"case": case.case, "status": "ok", "error": None}
    try:
        mask_path = out / "masks" / f"{case.case}.mask{_mask_suffix(case.image)}"
        record.update(segment_one(case.image, case.clicks, str(mask_path), model=model,
                                  ground_truth=case.ground_truth,
                                  co_registered=case.co_registered))
    except Exception as exc:  # one bad case must not stop the batch
        record.update(status="failed", error=f"{type(exc).__name__}: {exc}".splitlines()[0],
                      traceback=traceback.format_exc())
    write_json_atomic(out / "cases" / f"{case.case}.json", record)
    return record


def _done(out: Path, case: Case) -> bool:
    rec = out / "cases" / f"{case.case}.json"
    if not rec.is_file():
        return False
    try:
        data = json.loads(rec.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    return data.get("status") == "ok" and Path(data.get("mask", "")).is_file()


def _write_summary(out: Path, cases: Iterable[Case]) -> Path:
    rows = []
    for case in cases:
        rec = out / "cases" / f"{case.case}.json"
        if rec.is_file():
            data = json.loads(rec.read_text(encoding="utf-8"))
            rows.append({k: data.get(k) for k in SUMMARY_FIELDS})
    path = out / "summary.csv"
    fd, tmp = tempfile.mkstemp(prefix=".summary.", dir=out)
    with os.fdopen(fd, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=SUMMARY_FIELDS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    os.replace(tmp, path)
    return path


def _init_worker(threads: int) -> None:
    # Each worker process gets its share of the cores for torch.
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    try:
        import torch
        torch.set_num_threads(threads)
    except ImportError:  # pragma: no cover - torch is a core dependency
        pass


def run_batch(manifest: str | os.PathLike, out_dir: str | os.PathLike, *, workers: int | None = None,
              scheduler: str | None = None, model=None, progress: bool = True) -> dict:
    """Replay every case of a manifest; resumable, one failure does not stop the rest.

    Parameters
    ----------
    manifest : path
        CSV, see `read_manifest`.
    out_dir : path
        Gets ``masks/CASE.mask.nii.gz`` (or ``.png`` for pictures),
        ``cases/CASE.json`` (one record per finished case) and ``summary.csv``.
    workers : int, optional
        Local worker processes (default: the number of cores, at most the
        number of cases). 1 runs in this process.
    scheduler : str, optional
        Address of a Dask distributed scheduler (``tcp://host:8786``); the
        cases then run on that cluster instead of a local pool.

    Returns
    -------
    dict
        ``{"done": n_ok, "failed": n_failed, "skipped": n_already_done, "summary": path}``.
    """
    from tqdm import tqdm

    cases = read_manifest(manifest)
    out = Path(out_dir)
    (out / "cases").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    todo = [c for c in cases if not _done(out, c)]
    skipped = len(cases) - len(todo)
    if isinstance(model, os.PathLike):
        model = str(model)
    if model is not None and not isinstance(model, str):
        raise InvalidInputError("batch model must be a shipped model name or a path to weights")
    results = []
    bar = tqdm(total=len(todo), desc="cases", unit="case", disable=not progress,
               initial=0, postfix={"skipped": skipped})
    try:
        if scheduler:
            results = _run_dask(todo, out, model, scheduler, bar)
        else:
            n = workers or os.cpu_count() or 1
            n = max(1, min(n, len(todo)))
            if n == 1 or not todo:
                for case in todo:
                    results.append(run_case(case, str(out), model))
                    bar.update(1)
            else:
                results = _run_pool(todo, out, model, n, bar)
    finally:
        bar.close()
        summary = _write_summary(out, cases)
    failed = sum(r["status"] != "ok" for r in results)
    return {"done": len(results) - failed, "failed": failed, "skipped": skipped,
            "summary": str(summary)}


def _run_pool(todo, out, model, n, bar):
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    threads = max(1, (os.cpu_count() or 1) // n)
    results = []
    ctx = mp.get_context("spawn")  # torch and fork do not mix well
    with ProcessPoolExecutor(n, mp_context=ctx, initializer=_init_worker,
                             initargs=(threads,)) as pool:
        futures = [pool.submit(run_case, c, str(out), model) for c in todo]
        for fut in as_completed(futures):
            results.append(fut.result())
            bar.update(1)
    return results


def _run_dask(todo, out, model, scheduler, bar):
    try:
        from distributed import Client, as_completed
    except ImportError:
        raise InvalidInputError(
            "--scheduler needs Dask: pip install 'midseg[dist]'") from None
    results = []
    with Client(scheduler, timeout="30s") as client:
        futures = client.map(run_case, todo, out_dir=str(out), model=model, pure=False)
        for fut in as_completed(futures):
            results.append(fut.result())
            bar.update(1)
    return results


# ---------------------------------------------------------------------------
# CLI hooks (wired by midseg.cli)
# ---------------------------------------------------------------------------

def segment_add_arguments(parser) -> None:
    parser.add_argument("image", help="image file or DICOM directory")
    parser.add_argument("--clicks", required=True, help="clicks JSON written by midseg (Session.save_clicks)")
    parser.add_argument("-o", "--output", required=True, help="mask file to write (same geometry as the image)")
    parser.add_argument("--model", default=None, help="shipped model name or weights path (default: the one in the clicks file)")
    parser.add_argument("--ground-truth", default=None, help="reference mask: also print Dice/ASSD/HD95")
    parser.add_argument("--with", dest="co_registered", action="append", default=[],
                        metavar="SECOND",
                        help="a co-registered image of the same patient (e.g. the PET of a CT), "
                             "resampled onto the first image's grid in physical coordinates as "
                             "a further channel (repeatable)")


def segment_run(args) -> int:
    result = segment_one(args.image, args.clicks, args.output, model=args.model,
                         ground_truth=args.ground_truth,
                         co_registered=tuple(args.co_registered))
    msg = f"wrote {args.output} ({result['rounds']} click rounds, {result['seconds']:.2f} s)"
    if result["dice"] is not None:
        msg += f"; Dice {result['dice']:.4f}, ASSD {result['assd']:.2f} mm, HD95 {result['hd95']:.2f} mm"
    print(msg)
    return 0


def batch_add_arguments(parser) -> None:
    parser.description += (
        "\n\nThe manifest is a CSV with columns image, clicks and optionally ground_truth, "
        "case and co_registered (further images of the case onto the image's grid, "
        "separated by ';'; paths relative to the manifest). Writes DIR/masks/, DIR/cases/ (one "
        "record per case) and DIR/summary.csv. Re-running skips finished cases; failed "
        "cases are retried.")
    parser.add_argument("manifest", help="CSV manifest")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--workers", type=int, default=None, help="local worker processes (default: cores)")
    parser.add_argument("--scheduler", default=None, help="Dask scheduler address: run on that cluster instead")
    parser.add_argument("--model", default=None, help="override the model named in each clicks file")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def batch_run(args) -> int:
    if args.workers is not None and args.workers < 1:
        raise InvalidInputError(f"--workers must be >= 1, got {args.workers}")
    res = run_batch(args.manifest, args.out, workers=args.workers, scheduler=args.scheduler,
                    model=args.model, progress=not args.no_progress)
    print(f"{res['done']} done, {res['failed']} failed, {res['skipped']} already done; "
          f"summary: {res['summary']}")
    return 1 if res["failed"] else 0
