"""The robot-user protocol: every method on every case with the same clicks; per-step CSV.

Protocol
--------
For every case (a 2D image/slice or a 3D volume with its ground truth):

1. *Stage 1.* Interior margin points are simulated once per case by
   `midseg.data_sim.interior_margin_points(gt, rng=case_seed, spacing=spacing)`,
   ``case_seed = [seed, crc32("dataset/case")]``; every method gets exactly these
   points. midseg (and every model method) runs `Session.segment(points)`;
   classical peers use the points as foreground seeds and the border of their
   relaxed bounding box (`midseg.crop.relaxed_bbox`, default margin) as
   background seeds, computed on that crop.
2. *Clicks.* Up to K = 10 corrective clicks from the robot user,
   ``corrective_click(gt, current_mask, mode="deepest", spacing=spacing)``:
   deterministic, deep inside the largest error of *that* method's current mask.
   ``user="suggest"`` / ``"random"`` replace the robot user by the
   suggestion-following or the random-voxel user (`midseg.evaluation.users`).
   midseg adds each click as one `Session.refine` round (clicks accumulate);
   peers re-segment with all seeds so far. When a mask equals the ground truth
   no click is made and the step repeats the previous metrics.
3. *Per step* (click 0 = stage 1, then after each click): Dice, ASSD and HD95
   in mm (`midseg.metrics`, image spacing) and the wall time of the step.
4. *Per case*: NoC@85 and NoC@90 (`midseg.metrics.clicks_to_reach`, cap 20:
   not reached within K clicks counts as 20), AUC = mean Dice over clicks
   0..K (K + 1 steps, as in the autoPET papers), consistent improvement =
   share of the clicks made that raised Dice. For stage-1 models also the
   guidance metrics of Marinov et al. 2023: initial and final Dice, efficiency
   (seconds to compute the cue map on the network grid), ground-truth overlap
   ``sum(G * M) / sum(G)`` of the cue map G with the ground truth M on the grid
   (for the image-only "none" model the guidance is the box, G = 1).
"""

from __future__ import annotations

import csv
import os
import time
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..errors import InvalidInputError
from .cases import Case, case_seed

__all__ = [
    "DEFAULT_CLICKS",
    "NOC_CAP",
    "CSV_FIELDS",
    "USER_FIELDS",
    "evaluate_case",
    "run_protocol",
    "write_csv",
    "read_csv",
]

#: Corrective clicks per case after stage 1 (K).
DEFAULT_CLICKS = 10
#: NoC value for a target not reached within the clicks made.
NOC_CAP = 20
#: Columns of the per-step CSV, in order.
CSV_FIELDS = (
    "dataset",
    "dims",
    "case",
    "method",
    "click",
    "click_type",
    "click_point",
    "dice",
    "assd",
    "hd95",
    "seconds",
    "guidance_seconds",
    "guidance_overlap",
)
#: Columns written after `CSV_FIELDS` (optional when read): the simulated user, whether
#: its click was in an error region (1/0, empty without a click) and the seconds its
#: suggestion took (`midseg.evaluation.users.next_click`).
USER_FIELDS = ("user", "in_error", "suggest_seconds")


def _surface_metrics(pred: np.ndarray, gt: np.ndarray, spacing) -> tuple[float, float]:
    """ASSD and HD95 (mm) as `midseg.metrics`, computed once on the union's bounding box."""
    from ..metrics import surface_distances

    a, b = pred != 0, gt != 0
    ea, eb = not a.any(), not b.any()
    if ea and eb:
        return 0.0, 0.0
    if ea or eb:
        return float("inf"), float("inf")
    nz = np.argwhere(a | b)
    # one voxel of padding keeps surfaces (and the nearest surface voxels) identical
    sl = tuple(slice(max(lo - 1, 0), hi + 2) for lo, hi in zip(nz.min(0), nz.max(0)))
    dab, dba = surface_distances(a[sl], b[sl], spacing)
    return (
        float((dab.mean() + dba.mean()) / 2.0),
        float(max(np.percentile(dab, 95), np.percentile(dba, 95))),
    )


def _fmt_point(p) -> str:
    return " ".join(str(int(v)) for v in p)


def evaluate_case(
    case: Case,
    methods: Sequence,
    *,
    clicks: int = DEFAULT_CLICKS,
    seed: int = 0,
    user: str = "robot",
) -> list[dict]:
    """Run the protocol on one case for every method; returns its CSV rows.

    `user` is one of `midseg.evaluation.users.USERS` (the robot user by default).
    """
    from ..data_sim import interior_margin_points
    from .users import next_click
    from ..metrics import dice

    gt = (np.asarray(case.gt) != 0).astype(np.uint8)
    points = interior_margin_points(
        gt,
        rng=np.random.default_rng(case_seed(seed, case.dataset, case.case)),
        spacing=case.spacing,
    )
    rows = []
    for m in methods:
        if hasattr(m, "warm_up"):
            m.warm_up(case.image, points.copy(), spacing=case.spacing)
        guid_s, guid_o = "", ""
        if getattr(m, "kind", "") == "model" and hasattr(m, "guidance"):
            gs, go = m.guidance(case.image, points, gt, spacing=case.spacing)
            guid_s, guid_o = f"{gs:.6f}", f"{go:.6f}"
        t0 = time.perf_counter()
        mask = np.asarray(m.start(case.image, points.copy(), spacing=case.spacing))
        sec = time.perf_counter() - t0

        def row(k, ctype, cpoint, mask, sec, **extra):
            a, h = _surface_metrics(mask, gt, case.spacing)
            return {
                "dataset": case.dataset,
                "dims": gt.ndim,
                "case": case.case,
                "method": m.name,
                "click": k,
                "click_type": ctype,
                "click_point": cpoint,
                "dice": f"{dice(mask, gt):.6f}",
                "assd": f"{a:.6f}",
                "hd95": f"{h:.6f}",
                "seconds": f"{sec:.4f}",
                "guidance_seconds": extra.get("gs", ""),
                "guidance_overlap": extra.get("go", ""),
                "user": user,
                "in_error": extra.get("in_error", ""),
                "suggest_seconds": extra.get("ss", ""),
            }

        rows.append(row(0, "stage1", "", mask, sec, gs=guid_s, go=guid_o))
        rng = np.random.default_rng(case_seed(seed, case.dataset, case.case) + [1])
        for k in range(1, clicks + 1):
            c, hit, ss = next_click(user, gt, mask, m, spacing=case.spacing, rng=rng)
            if c is None:  # perfect mask, or nothing suggested: no click
                last = dict(
                    rows[-1],
                    click=k,
                    click_type="none",
                    click_point="",
                    seconds="0.0000",
                    guidance_seconds="",
                    guidance_overlap="",
                    in_error="",
                    suggest_seconds=f"{ss:.4f}" if user == "suggest" else "",
                )
                rows.append(last)
                continue
            t0 = time.perf_counter()
            mask = np.asarray(m.update(c))
            sec = time.perf_counter() - t0
            extra = {"in_error": int(bool(hit)), "ss": f"{ss:.4f}" if user == "suggest" else ""}
            rows.append(
                row(k, "fg" if c.foreground else "bg", _fmt_point(c.point), mask, sec, **extra)
            )
    return rows


_WORKER_METHODS: list | None = None


def _worker_init(methods):
    global _WORKER_METHODS
    _WORKER_METHODS = methods
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover
        pass


def _worker_run(args):
    case, clicks, seed, user = args
    return evaluate_case(case, _WORKER_METHODS, clicks=clicks, seed=seed, user=user)


def run_protocol(
    cases: Iterable[Case],
    methods: Sequence,
    *,
    clicks: int = DEFAULT_CLICKS,
    seed: int = 0,
    progress: bool = True,
    jobs: int = 1,
    user: str = "robot",
) -> list[dict]:
    """Evaluate every method on every case with the robot user (see the module docstring).

    Parameters
    ----------
    cases : iterable of Case
    methods : sequence of `midseg.evaluation.methods.Method`
        Each has ``name``, ``start(image, points, *, spacing) -> mask`` and
        ``update(click) -> mask`` (see `SessionMethod`, `PeerMethod`); a
        ``kind == "model"`` method with ``guidance(...)`` also gets the guidance metrics.
    clicks : int
        K, corrective clicks after stage 1.
    seed : int
        Global seed of the margin points.
    progress : bool
        Show a tqdm progress bar over cases.
    jobs : int
        Worker processes (spawned; each loads the models once).
    user : {"robot", "suggest", "random"}
        The simulated user (`midseg.evaluation.users`).

    Returns
    -------
    list of dict
        One row per (case, method, click), keys `CSV_FIELDS`, in case order then
        method order then click order.
    """
    from tqdm.auto import tqdm

    cases = list(cases)
    if clicks < 0:
        raise InvalidInputError(f"clicks must be >= 0, got {clicks}")
    bar = tqdm(total=len(cases), desc="evaluate", unit="case", disable=not progress)
    rows: list[dict] = []
    try:
        if jobs <= 1:
            for case in cases:
                bar.set_postfix_str(f"{case.dataset} {case.case}")
                rows.extend(evaluate_case(case, methods, clicks=clicks, seed=seed, user=user))
                bar.update()
        else:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            ctx = mp.get_context("spawn")
            with ProcessPoolExecutor(
                jobs, mp_context=ctx, initializer=_worker_init, initargs=(list(methods),)
            ) as pool:
                for part in pool.map(_worker_run, [(c, clicks, seed, user) for c in cases]):
                    rows.extend(part)
                    bar.update()
    finally:
        bar.close()
    return rows


def write_csv(rows: Sequence[dict], path: str | os.PathLike) -> None:
    """Write protocol rows (keys `CSV_FIELDS`, then `USER_FIELDS`) to a CSV file."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fields = CSV_FIELDS + USER_FIELDS
    with open(p, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=fields, lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k, "") for k in fields})


def read_csv(path: str | os.PathLike) -> list[dict]:
    """Read a per-step CSV written by `write_csv` (numbers parsed)."""
    p = Path(path)
    if not p.is_file():
        raise InvalidInputError(f"no such results file: '{p}'")
    out = []
    with open(p, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = set(CSV_FIELDS) - set(reader.fieldnames or ())
        if missing:
            raise InvalidInputError(f"'{p}' is not an evaluation CSV: lacks {sorted(missing)}")
        for r in reader:
            r = dict(r)
            r["dims"], r["click"] = int(r["dims"]), int(r["click"])
            for k in ("dice", "assd", "hd95", "seconds", "guidance_seconds", "guidance_overlap"):
                r[k] = float(r[k]) if r[k] not in ("", None) else float("nan")
            r["user"] = r.get("user") or "robot"  # written before USER_FIELDS existed
            for k in ("in_error", "suggest_seconds"):
                r[k] = float(r[k]) if r.get(k) not in ("", None) else float("nan")
            out.append(r)
    return out
