"""Running a manifest: `run_batch` and its two ways to run the cases.

Part of `midseg.batch`: the cases run in this process, on local one-process
pools (`_run_pool`) or on a Dask cluster (`_run_dask`). All three look
`run_case` up here, so a test that replaces it patches this module.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from ..errors import InvalidInputError
from .manifest import _check_label, read_manifest
from .records import (
    _done,
    _first_line,
    _inputs,
    _lost,
    _model_ref,
    _prepare_out,
    _write_summary,
    run_case,
)
from .workers import _boot_fork_server, _close_broken, _init_worker, _worker_context


def run_batch(
    manifest: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    model=None,
    progress: bool = True,
    label: int | None = None,
) -> dict:
    """Replay every case of a manifest; resumable, one failure does not stop the rest.

    Parameters
    ----------
    manifest : path
        CSV, see `read_manifest`.
    out_dir : path
        Gets ``masks/CASE.mask.nii.gz`` (or ``.png`` for pictures),
        ``cases/CASE.json`` (one record per case) and ``summary.csv``. It is
        created and checked to be writable before any case runs.
    workers : int, optional
        Local worker processes (default: the number of cores, at most the
        number of cases). 1 runs in this process. Workers end when this
        process ends (on Linux even when it is killed). A worker that dies
        fails its case only, with an ``error`` saying so.
    scheduler : str, optional
        Address of a Dask distributed scheduler (``tcp://host:8786``); the
        cases then run on that cluster instead of a local pool.
    model : str, optional
        Shipped model name or ``.pt`` path replacing the one each clicks file
        names.
    label : int, optional
        The object's value in multi-label ground truths, for rows whose
        ``label`` column is empty.

    Notes
    -----
    A case is done, and skipped by a re-run, when its record says ``ok``, its
    mask exists and the sha256 digests the record holds for the image,
    co-registered images, clicks, ground truth, label and model weights (of
    `model`, else of the shipped model the clicks file names) equal those of
    the files now: editing any of them computes the case again, and
    resuming from another working directory does not. A case that fails
    (its replay, or writing its mask or record) is recorded as failed, has no
    mask and is tried again by a re-run.

    ``summary.csv`` has one row per case with a record for the current
    inputs. ASSD and HD95 are empty when the ground truth or the mask is
    empty; the ``note`` column says so. A text cell that starts with ``=``,
    ``+``, ``-``, ``@``, a tab or a carriage return gets a leading ``'`` so
    that a spreadsheet shows it instead of running it as a formula (OWASP
    advice on CSV injection); the records and file names keep the names as
    they are.

    Returns
    -------
    dict
        ``{"done": n_ok, "failed": n_failed, "skipped": n_already_done, "summary": path}``.
    """
    from tqdm import tqdm

    if workers is not None and (
        isinstance(workers, bool) or not isinstance(workers, int) or workers < 1
    ):
        raise InvalidInputError(f"workers must be an integer >= 1, got {workers!r}")
    if not scheduler and (workers or os.cpu_count() or 1) > 1:
        _boot_fork_server()  # in parallel with what follows
    cases = read_manifest(manifest)
    if label is not None:
        label = _check_label(label)
        cases = [
            replace(c, label=label) if c.label is None and c.ground_truth else c for c in cases
        ]
    if isinstance(model, os.PathLike):
        model = str(model)
    if model is not None and not isinstance(model, str):
        raise InvalidInputError("batch model must be a shipped model name or a path to weights")
    model_ref = _model_ref(model)
    if model is not None and model_ref["name"] != model:
        model = model_ref["name"]  # an absolute path: the workers need not share our folder
    out = Path(out_dir)
    _prepare_out(out)
    inputs = {c.case: _inputs(c, model_ref) for c in cases}
    todo = [c for c in cases if not _done(out, c, inputs[c.case])]
    skipped = len(cases) - len(todo)
    results = {}
    bar = tqdm(
        total=len(todo),
        desc="cases",
        unit="case",
        disable=not progress,
        initial=0,
        postfix={"skipped": skipped},
    )

    def collect(record):
        results[record["case"]] = record
        bar.update(1)

    try:
        if scheduler:
            _run_dask(todo, out, model, scheduler, inputs, collect)
        else:
            n = workers or os.cpu_count() or 1
            n = max(1, min(n, len(todo)))
            if n == 1 or not todo:
                for case in todo:
                    collect(run_case(case, str(out), model, inputs[case.case]))
            else:
                _run_pool(todo, out, model, n, inputs, collect)
    finally:
        bar.close()
        summary = _write_summary(out, cases, results, inputs)
    failed = sum(r["status"] != "ok" for r in results.values())
    return {
        "done": len(results) - failed,
        "failed": failed,
        "skipped": skipped,
        "summary": str(summary),
    }


def _run_pool(todo, out, model, n, inputs, collect):
    """Run the cases on `n` one-process pools, so that a dying worker fails its own case only."""
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    threads = max(1, (os.cpu_count() or 1) // n)
    ctx = _worker_context(mp)

    def new_lane():
        return ProcessPoolExecutor(
            1, mp_context=ctx, initializer=_init_worker, initargs=(threads, os.getpid())
        )

    lanes = [new_lane() for _ in range(n)]
    waiting = list(reversed(todo))
    running = {}

    def start(i):
        case = waiting.pop()
        fut = lanes[i].submit(run_case, case, str(out), model, inputs[case.case])
        running[fut] = (i, case)

    try:
        for i in range(min(n, len(waiting))):
            start(i)
        while running:
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in finished:
                i, case = running.pop(fut)
                try:
                    record = fut.result()
                except BrokenProcessPool:
                    why = _close_broken(lanes[i])
                    lanes[i] = new_lane()
                    record = _lost(
                        out,
                        case,
                        inputs[case.case],
                        f"the worker process running this case died: {why}",
                    )
                except Exception as exc:  # e.g. the case could not be sent to the worker
                    record = _lost(out, case, inputs[case.case], _first_line(exc))
                collect(record)
                if waiting:
                    start(i)
    finally:
        for lane in lanes:
            lane.shutdown(wait=True, cancel_futures=True)


def _run_dask(todo, out, model, scheduler, inputs, collect):
    try:
        from distributed import Client, as_completed
    except ImportError:
        raise InvalidInputError(
            '--scheduler needs Dask: pip install -e ".[dist]" in the midseg checkout'
        ) from None
    with Client(scheduler, timeout="30s") as client:
        futures = {
            client.submit(run_case, c, str(out), model, inputs[c.case], pure=False): c for c in todo
        }
        for fut in as_completed(futures):
            case = futures[fut]
            try:
                record = fut.result()
            except Exception as exc:  # e.g. KilledWorker: the case's worker died
                record = _lost(out, case, inputs[case.case], _first_line(exc))
            collect(record)
