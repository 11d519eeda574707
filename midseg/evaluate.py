"""Robot-user evaluation: midseg against its peers on the same clicks, with tables and plots.

Lives here: dataset loading by name, the protocol loop (`run_protocol`), per-step CSV,
summaries (NoC, AUC, guidance metrics), the Markdown report and the `midseg evaluate` command.
It must not implement segmentation itself: it drives `Session` and `midseg.peers`.

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

import argparse
import csv
import json
import os
import platform
import shlex
import sys
import time
import warnings
import zlib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from .datasets import REGISTRY
from .errors import InvalidInputError, MidsegError

__all__ = [
    "Case", "DATASETS", "load_cases", "case_seed", "run_protocol", "SessionMethod",
    "PeerMethod", "make_methods", "METHOD_NAMES", "CSV_FIELDS", "write_csv", "read_csv",
    "noc", "auc", "consistent_improvement", "summarise", "write_report", "paired_differences",
    "add_arguments", "run", "main", "DEFAULT_CLICKS", "NOC_CAP",
]

#: Corrective clicks per case after stage 1 (K).
DEFAULT_CLICKS = 10
#: NoC value for a target not reached within the clicks made.
NOC_CAP = 20
#: Columns of the per-step CSV, in order.
CSV_FIELDS = ("dataset", "dims", "case", "method", "click", "click_type", "click_point",
              "dice", "assd", "hd95", "seconds", "guidance_seconds", "guidance_overlap")

#: Datasets known by name: what they are and whether the models saw the object.
DATASETS: dict[str, dict] = {
    "brats-tc-t1c": {"object": "tumour core", "image": "T1c", "seen": True,
                     "target": "tumour_core"},
    "brats-wt-flair": {"object": "whole tumour", "image": "FLAIR", "seen": False,
                       "target": "whole_tumour"},
    "brats-brain": {"object": "brain", "image": "T1c", "seen": False, "target": "brain"},
    "hc18": {"object": "fetal head", "image": "ultrasound", "seen": False, "dims": (2,)},
    "dev-unseen": {"object": "16 development objects (midseg.datasets.DEV_UNSEEN)",
                   "image": "CT, MR, SPECT", "seen": False, "development": True},
}
#: The fixed BraTS testing split of ../shared/data/README.md (`midseg.datasets.REGISTRY`).
BRATS_TEST_CASES = REGISTRY["brats2013"].splits["test"]

#: Built-in method names: midseg's refinements, then the classical peers.
METHOD_NAMES = ("midseg", "midseg-global", "midseg-gc", "midseg-paper", "random-walker",
                "graph-cut", "region-growing", "geodesic")

#: Fewest cases for which the report gives a bootstrap interval of a paired difference.
MIN_CASES_INTERVAL = 10

#: midseg's refinement variants: method name -> `Session` method and report label.
MIDSEG_VARIANTS = {"midseg": ("ifgc", "IF-GC, click-local"),
                   "midseg-global": ("ifgc-global", "IF-GC, all clicks fused with the CNN map"),
                   "midseg-gc": ("gc", "GC"),
                   "midseg-paper": ("ifgc-paper", "IF-GC, Eq. 7 as printed")}


def default_data_root() -> Path:
    """``$MIDSEG_DATA`` or ``../shared/data`` next to the repository."""
    env = os.environ.get("MIDSEG_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1].parent / "shared" / "data"


# ------------------------------------------------------------------------------ data

@dataclass(frozen=True, eq=False)
class Case:
    """One evaluation case.

    Attributes
    ----------
    dataset, case : str
        Dataset name and case id (``"brats_2013_pat0001_1:z072"`` for a slice).
    image : (Y, X) or (Z, Y, X) ndarray of float32
    gt : ndarray of uint8, the image's shape (0/1)
    spacing : tuple of float, array order (mm)
    """

    dataset: str
    case: str
    image: np.ndarray
    gt: np.ndarray
    spacing: tuple[float, ...]

    @property
    def dims(self) -> int:
        return self.gt.ndim


def _seed_of(*parts: Any) -> int:
    return zlib.crc32("/".join(str(p) for p in parts).encode())


def case_seed(seed: int, dataset: str, case: str) -> list[int]:
    """Seed sequence of a case's margin points: the global seed and a hash of the case."""
    return [int(seed), _seed_of(dataset, case)]


def _brats_target(name: str, case_dir: Path) -> np.ndarray:
    from .io import read_image

    target = REGISTRY["brats2013"].target(DATASETS[name]["target"])
    labels = np.rint(read_image(case_dir / target.label).array).astype(np.int16)
    return np.isin(labels, target.values).astype(np.uint8)


def load_cases(name: str, *, dims: int = 2, data_root: str | os.PathLike | None = None,
               seed: int = 0, hc18_count: int = 200, slices_per_case: int = 10,
               min_pixels: int = 100, max_cases: int | None = None,
               skip_cases: int = 0, objects: Sequence[str] | None = None) -> list[Case]:
    """Load the testing cases of a named dataset.

    Parameters
    ----------
    name : str
        A key of `DATASETS`.
    dims : {2, 3}
        3: whole volumes (BraTS testing cases; dev-unseen objects cropped around
        the object, `midseg.datasets.dev_unseen_cases`). 2: hc18 images, the
        dev-unseen objects' largest axial slices, or axial BraTS
        slices: of each testing case's slices whose object has at least
        `min_pixels` pixels, a seeded sample of `slices_per_case` (rng seeded
        with ``[seed, crc32("dataset/case")]``), in slice order.
    seed : int
        Chooses the hc18 subset (the first `hc18_count` names of a seeded
        permutation of the sorted names) and the BraTS slices.
    max_cases : int, optional
        Keep only the first cases (after sampling; for quick runs).
    objects : sequence of str, optional
        dev-unseen only: the objects to load (names of `midseg.datasets.DEV_UNSEEN`;
        default all).
    skip_cases : int
        Drop this many cases first (to split one selection over several runs:
        ``skip_cases=60, max_cases=40`` is cases 60..99 of the same selection).

    Returns
    -------
    list of Case
    """
    from .io import read_image, read_mask

    if name not in DATASETS:
        raise InvalidInputError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    if dims not in DATASETS[name].get("dims", (2, 3)):
        raise InvalidInputError(f"dataset {name!r} has no {dims}D version")
    root = Path(data_root) if data_root is not None else default_data_root()
    cases: list[Case] = []
    if objects is not None and name != "dev-unseen":
        raise InvalidInputError(f"objects selects dev-unseen objects, not {name!r} cases")
    if name == "dev-unseen":
        from .datasets import dev_unseen_cases

        cases = dev_unseen_cases(dims=dims, data_root=root, objects=objects)[skip_cases:]
        return cases[:max_cases] if max_cases is not None else cases
    if name == "hc18":
        folder = root / "hc18"
        if not folder.is_dir():
            raise InvalidInputError(f"hc18 data not found at '{folder}'")
        target = REGISTRY["hc18"].target("fetal_head")     # image / mask folders
        names = sorted(p.name for p in (folder / target.image).glob("*.png"))
        order = np.random.default_rng([seed, _seed_of("hc18")]).permutation(len(names))
        chosen = [names[i] for i in order[:hc18_count]][skip_cases:]
        if max_cases is not None:
            chosen = chosen[:max_cases]
        for n in chosen:
            img = read_image(folder / target.image / n)
            gt = (read_mask(folder / target.label / n) > 0).astype(np.uint8)
            cases.append(Case(name, Path(n).stem, img.array.astype(np.float32), gt,
                              tuple(img.spacing)))
        return cases
    folder = root / "brats2013"
    if not folder.is_dir():
        raise InvalidInputError(f"BraTS data not found at '{folder}'")
    for cid in BRATS_TEST_CASES:
        if max_cases is not None and len(cases) >= skip_cases + max_cases:
            break
        case_dir = folder / cid
        target = REGISTRY["brats2013"].target(DATASETS[name]["target"])
        img = read_image(case_dir / target.image)
        arr = img.array.astype(np.float32)
        gt = _brats_target(name, case_dir)
        if dims == 3:
            cases.append(Case(name, cid, arr, gt, tuple(img.spacing)))
            continue
        area = gt.reshape(gt.shape[0], -1).sum(axis=1)
        eligible = np.flatnonzero(area >= min_pixels)
        rng = np.random.default_rng(case_seed(seed, name, cid))
        pick = np.sort(rng.choice(eligible, size=min(slices_per_case, eligible.size),
                                  replace=False))
        for z in pick:
            cases.append(Case(name, f"{cid}:z{int(z):03d}", np.ascontiguousarray(arr[z]),
                              np.ascontiguousarray(gt[z]), tuple(img.spacing[1:])))
    cases = cases[skip_cases:]
    return cases[:max_cases] if max_cases is not None else cases


# --------------------------------------------------------------------------- methods

class SessionMethod:
    """midseg itself (or a stage-1 model with another cue) driven through `Session`.

    Parameters
    ----------
    name : str
        Column name in the results.
    model : str or path, optional
        Model name or ``.pt`` path (default: the shipped model of the image's
        dimensionality). Loaded once, on first use.
    refine : {"ifgc", "gc"}
        Refinement of `Session` (information fusion + graph cut, or naive graph cut).
    """

    kind = "model"

    def __init__(self, name: str, model=None, refine: str = "ifgc", device: str | None = None):
        self.name, self.model, self.refine_method, self.device = name, model, refine, device
        self._loaded: dict[int, Any] = {}
        self._warm: set[int] = set()
        self._session = None

    def __getstate__(self):
        return {**self.__dict__, "_loaded": {}, "_warm": set(), "_session": None}

    def _model(self, ndim: int):
        if ndim not in self._loaded:
            from .models import load_model
            self._loaded[ndim] = load_model(self.model or f"{ndim}d", device=self.device)
        return self._loaded[ndim]

    def warm_up(self, image: np.ndarray, points: np.ndarray, *, spacing) -> None:
        """Load the model and compile the numba kernels once, outside any timing."""
        if image.ndim in self._warm:
            return
        self._warm.add(image.ndim)
        self.start(image, points, spacing=spacing)
        self._session.refine(foreground=[tuple(points[0])])
        model = self._model(image.ndim)
        if model.cue != "none":
            from .cues import cue_map
            from .predict import crop_to_grid

            g = crop_to_grid(image, points, model.grid_shape, spacing=spacing,
                             margin=getattr(model, "margin", None))
            cue_map(model.cue, g.image[0], g.points, spacing=g.spacing,
                    **(getattr(model, "cue_params", None) or {}))
        self._session = None

    def start(self, image: np.ndarray, points: np.ndarray, *, spacing) -> np.ndarray:
        from .io import Image
        from .session import Session

        self._session = Session(Image(image, spacing=spacing), model=self._model(image.ndim),
                                method=self.refine_method, device=self.device)
        return self._session.segment(points)

    def update(self, click) -> np.ndarray:
        fg, bg = ([click.point], []) if click.foreground else ([], [click.point])
        return self._session.refine(foreground=fg, background=bg)

    def guidance(self, image: np.ndarray, points: np.ndarray, gt: np.ndarray, *,
                 spacing) -> tuple[float, float]:
        """Seconds to compute the model's cue map on its grid, and its overlap with gt."""
        from .predict import CUE_NONE, crop_to_grid

        model = self._model(image.ndim)
        g = crop_to_grid(image, points, model.grid_shape, spacing=spacing,
                         margin=getattr(model, "margin", None))
        gt_grid = g.transform.to_grid(gt.astype(np.uint8), order=0).astype(np.float64)
        if model.cue == CUE_NONE:
            return 0.0, float(gt_grid.mean())
        from .cues import cue_map

        t0 = time.perf_counter()
        cue = cue_map(model.cue, g.image[0], g.points, spacing=g.spacing,
                      **(getattr(model, "cue_params", None) or {}))
        sec = time.perf_counter() - t0
        cue = np.asarray(cue, dtype=np.float64)
        total = cue.sum()
        return sec, float((cue * gt_grid).sum() / total) if total > 0 else float("nan")


class PeerMethod:
    """A classical peer of `midseg.peers`: margin points + fg clicks are foreground
    seeds, bg clicks and the relaxed box border background seeds; recomputed each click."""

    kind = "peer"

    def __init__(self, name: str):
        from .peers import PEERS

        if name not in PEERS:
            raise InvalidInputError(f"unknown peer {name!r}; known: {', '.join(PEERS)}")
        self.name = name
        self._fn = PEERS[name]
        self._state: dict = {}

    def __getstate__(self):
        return {"name": self.name, "_state": {}}

    def __setstate__(self, state):
        self.__init__(state["name"])

    def warm_up(self, image: np.ndarray, points: np.ndarray, *, spacing) -> None:
        """Run once untimed per dimensionality (numba compilation, imports)."""
        warm = self.__dict__.setdefault("_warm", set())
        if image.ndim not in warm:
            warm.add(image.ndim)
            self.start(image, points, spacing=spacing)

    def start(self, image: np.ndarray, points: np.ndarray, *, spacing) -> np.ndarray:
        from .crop import relaxed_bbox

        self._state = {"image": image, "spacing": spacing, "fg": [tuple(p) for p in points],
                       "bg": [], "box": relaxed_bbox(points, image.shape)}
        return self._segment()

    def update(self, click) -> np.ndarray:
        self._state["fg" if click.foreground else "bg"].append(tuple(click.point))
        return self._segment()

    def _segment(self) -> np.ndarray:
        s = self._state
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)   # random walker's tolerance notes
            return self._fn(s["image"], np.array(s["fg"]),
                            np.array(s["bg"]).reshape(-1, s["image"].ndim),
                            spacing=s["spacing"], box=s["box"])


def make_methods(names: Sequence[str] = METHOD_NAMES, *, model=None,
                 extra_models: dict[str, str] | None = None,
                 device: str | None = None) -> list:
    """Method objects for `run_protocol` from names (see `METHOD_NAMES`).

    ``midseg`` / ``midseg-gc`` / ``midseg-paper`` use `model` (default: shipped); each entry
    ``NAME: PATH`` of `extra_models` adds a stage-1 model refined with IF-GC.
    """
    out = []
    for n in names:
        if n in MIDSEG_VARIANTS:
            out.append(SessionMethod(n, model, MIDSEG_VARIANTS[n][0], device))
        else:
            out.append(PeerMethod(n))
    for n, path in (extra_models or {}).items():
        out.append(SessionMethod(n, path, "ifgc", device))
    names_seen = [m.name for m in out]
    if len(set(names_seen)) != len(names_seen):
        raise InvalidInputError(f"method names must be unique, got {names_seen}")
    return out


# --------------------------------------------------------------------------- metrics

def _surface_metrics(pred: np.ndarray, gt: np.ndarray, spacing) -> tuple[float, float]:
    """ASSD and HD95 (mm) as `midseg.metrics`, computed once on the union's bounding box."""
    from .metrics import surface_distances

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
    return (float((dab.mean() + dba.mean()) / 2.0),
            float(max(np.percentile(dab, 95), np.percentile(dba, 95))))


def noc(dices: Sequence[float], target: float, *, cap: int = NOC_CAP) -> int:
    """Clicks needed to reach Dice >= target (``dices[0]`` = stage 1); `cap` if never."""
    from .metrics import clicks_to_reach

    return clicks_to_reach(list(dices), target, cap=cap)


def auc(dices: Sequence[float], clicks: int = DEFAULT_CLICKS) -> float:
    """Mean Dice over clicks 0..`clicks` (normalised area under the Dice-vs-clicks curve).

    A sequence shorter than ``clicks + 1`` is padded with its last value (the
    robot stops clicking once the mask is perfect).
    """
    d = [float(v) for v in dices]
    if not d:
        raise InvalidInputError("auc needs at least one Dice value")
    d = (d + [d[-1]] * (clicks + 1 - len(d)))[:clicks + 1]
    return float(np.mean(d))


def consistent_improvement(dices: Sequence[float],
                           made: Sequence[bool] | None = None) -> tuple[int, int]:
    """(clicks that raised Dice, clicks made) over ``dices[1:]``.

    `made[k]` tells whether click k+1 was actually made (default: all).
    """
    d = [float(v) for v in dices]
    flags = list(made) if made is not None else [True] * (len(d) - 1)
    up = sum(1 for k in range(1, len(d)) if flags[k - 1] and d[k] > d[k - 1])
    return up, sum(bool(f) for f in flags[:len(d) - 1])


# -------------------------------------------------------------------------- protocol

def _fmt_point(p) -> str:
    return " ".join(str(int(v)) for v in p)


def evaluate_case(case: Case, methods: Sequence, *, clicks: int = DEFAULT_CLICKS,
                  seed: int = 0) -> list[dict]:
    """Run the protocol on one case for every method; returns its CSV rows."""
    from .data_sim import corrective_click, interior_margin_points
    from .metrics import dice

    gt = (np.asarray(case.gt) != 0).astype(np.uint8)
    points = interior_margin_points(gt, rng=np.random.default_rng(
        case_seed(seed, case.dataset, case.case)),
                                    spacing=case.spacing)
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
            return {"dataset": case.dataset, "dims": gt.ndim, "case": case.case,
                    "method": m.name, "click": k, "click_type": ctype, "click_point": cpoint,
                    "dice": f"{dice(mask, gt):.6f}", "assd": f"{a:.6f}", "hd95": f"{h:.6f}",
                    "seconds": f"{sec:.4f}", "guidance_seconds": extra.get("gs", ""),
                    "guidance_overlap": extra.get("go", "")}

        rows.append(row(0, "stage1", "", mask, sec, gs=guid_s, go=guid_o))
        for k in range(1, clicks + 1):
            c = corrective_click(gt, mask, mode="deepest", spacing=case.spacing)
            if c is None:            # perfect mask: nothing left to click
                last = dict(rows[-1], click=k, click_type="none", click_point="",
                            seconds="0.0000", guidance_seconds="", guidance_overlap="")
                rows.append(last)
                continue
            t0 = time.perf_counter()
            mask = np.asarray(m.update(c))
            sec = time.perf_counter() - t0
            rows.append(row(k, "fg" if c.foreground else "bg", _fmt_point(c.point), mask, sec))
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
    case, clicks, seed = args
    return evaluate_case(case, _WORKER_METHODS, clicks=clicks, seed=seed)


def run_protocol(cases: Iterable[Case], methods: Sequence, *, clicks: int = DEFAULT_CLICKS,
                 seed: int = 0, progress: bool = True, jobs: int = 1) -> list[dict]:
    """Evaluate every method on every case with the robot user (see the module docstring).

    Parameters
    ----------
    cases : iterable of Case
    methods : sequence of method objects
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
                rows.extend(evaluate_case(case, methods, clicks=clicks, seed=seed))
                bar.update()
        else:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            ctx = mp.get_context("spawn")
            with ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_worker_init,
                                     initargs=(list(methods),)) as pool:
                for part in pool.map(_worker_run, [(c, clicks, seed) for c in cases]):
                    rows.extend(part)
                    bar.update()
    finally:
        bar.close()
    return rows


# ------------------------------------------------------------------------------- CSV

def write_csv(rows: Sequence[dict], path: str | os.PathLike) -> None:
    """Write protocol rows (keys `CSV_FIELDS`) to a CSV file."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with open(p, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=CSV_FIELDS, lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k, "") for k in CSV_FIELDS})


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
            out.append(r)
    return out


# --------------------------------------------------------------------------- summary

def _curves(rows: Sequence[dict]) -> dict:
    """(dataset, dims, method) -> case -> sorted list of rows."""
    out: dict = {}
    for r in rows:
        out.setdefault((r["dataset"], int(r["dims"]), r["method"]), {}).setdefault(
            r["case"], []).append(r)
    for group in out.values():
        for case in group:
            group[case].sort(key=lambda r: int(r["click"]))
    return out


def _mean_sd(values) -> tuple[float, float, int]:
    v = np.asarray([x for x in values if np.isfinite(x)], dtype=np.float64)
    if v.size == 0:
        return float("nan"), float("nan"), 0
    return float(v.mean()), float(v.std()), int(v.size)


def _at(steps: list[dict], k: int, key: str) -> float:
    k = min(k, len(steps) - 1)
    return float(steps[k][key])


def summarise(rows: Sequence[dict], *, clicks: int = DEFAULT_CLICKS) -> list[dict]:
    """Per (dataset, dims, method) summary: Dice/ASSD/HD95 at 0, 1, 3, 5, K clicks,
    NoC@85/90, AUC, consistent improvement, times and guidance metrics (means, sds)."""
    out = []
    for (ds, dims, method), cases in sorted(_curves(rows).items(),
                                            key=lambda kv: (kv[0][1], kv[0][0])):
        s: dict[str, Any] = {"dataset": ds, "dims": dims, "method": method, "n": len(cases)}
        for k in (0, 1, 3, 5, clicks):
            for key in ("dice", "assd", "hd95"):
                vals = [_at(st, k, key) for st in cases.values()]
                m, sd, n = _mean_sd(vals)
                s[f"{key}@{k}"], s[f"{key}@{k}_sd"] = m, sd
                if key != "dice":
                    s[f"{key}@{k}_n_inf"] = len(vals) - n
        dl = {c: [float(r["dice"]) for r in st] for c, st in cases.items()}
        s["noc85"] = float(np.mean([noc(d, 0.85) for d in dl.values()]))
        s["noc90"] = float(np.mean([noc(d, 0.90) for d in dl.values()]))
        s["reach90"] = float(np.mean([noc(d, 0.90) <= clicks for d in dl.values()]))
        s["auc"] = float(np.mean([auc(d, clicks) for d in dl.values()]))
        up = made = 0
        for st in cases.values():
            u, n = consistent_improvement([float(r["dice"]) for r in st],
                                          [r["click_type"] in ("fg", "bg") for r in st[1:]])
            up, made = up + u, made + n
        s["consistent_improvement"] = up / made if made else float("nan")
        drops = sum(1 for st in cases.values() for a, b in zip(st, st[1:])
                    if b["click_type"] in ("fg", "bg") and float(b["dice"]) < float(a["dice"]) - 0.05)
        s["harmful_clicks"] = drops / made if made else float("nan")
        s["clicks_made"] = made
        s["sec_stage1"] = _mean_sd([float(st[0]["seconds"]) for st in cases.values()])[0]
        s["sec_click"] = _mean_sd([float(r["seconds"]) for st in cases.values() for r in st[1:]
                                   if r["click_type"] in ("fg", "bg")])[0]
        s["guidance_seconds"] = _mean_sd([float(st[0]["guidance_seconds"] or "nan")
                                          for st in cases.values()])[0]
        s["guidance_overlap"] = _mean_sd([float(st[0]["guidance_overlap"] or "nan")
                                          for st in cases.values()])[0]
        out.append(s)
    return out


# ---------------------------------------------------------------------------- report

def _pct(m, sd=None) -> str:
    if m is None or not np.isfinite(m):
        return "–"
    return f"{100 * m:.2f}" + (f" ± {100 * sd:.2f}" if sd is not None and np.isfinite(sd) else "")


def _num(m, sd=None, digits=2) -> str:
    if m is None or not np.isfinite(m):
        return "–"
    return f"{m:.{digits}f}" + (f" ± {sd:.{digits}f}" if sd is not None and np.isfinite(sd) else "")


def _plot(rows, path: Path, title: tuple, clicks: int) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4), dpi=110)
    curves_all = {k[2]: v for k, v in _curves(rows).items() if k[:2] == title}
    for method, (colour, line, marker) in _plot_styles(_order(curves_all)).items():
        cases = curves_all[method]
        curves = np.array([[float(r["dice"]) for r in st][:clicks + 1] +
                           [float(st[-1]["dice"])] * (clicks + 1 - len(st))
                           for st in cases.values()])
        ax.plot(range(clicks + 1), curves.mean(axis=0), line, marker=marker, ms=3,
                color=colour, label=f"{method}")
    ax.set_xlabel("corrective clicks")
    ax.set_ylabel("mean Dice")
    ax.set_title(f"{title[0]} ({title[1]}D)")
    ax.set_xticks(range(clicks + 1))
    ax.grid(alpha=0.3)
    # beside the axes, not over the curves (peers' curves run along the bottom)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


#: Colours of extra stage-1 models in plots: the three of matplotlib's default cycle that no
#: known method uses, then black and three Dark2 hues (teal, gold, slate); extra models are
#: also dash-dotted, which tells them from a peer of a similar hue.
EXTRA_MODEL_COLOURS = ("#a6761d", "#bcbd22", "#17becf", "#000000", "#1b9e77", "#e6ab02",
                       "#7570b3")


def _plot_styles(methods: Sequence[str]) -> dict[str, tuple[str, str, str]]:
    """(colour, line style, marker) per method: midseg variants solid, peers dashed, extra
    stage-1 models dash-dotted with square markers. Known methods keep their colour in every
    plot; extra models take `EXTRA_MODEL_COLOURS` in turn, so no two curves of a plot share
    a colour unless it has more than seven extra models."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_hex

    base = [to_hex(c) for c in plt.rcParams["axes.prop_cycle"].by_key()["color"]]
    known = list(METHOD_NAMES)
    extras = [m for m in methods if m not in known]
    out = {}
    for m in methods:
        if m in known:
            out[m] = (base[known.index(m) % len(base)],
                      "-" if m in MIDSEG_VARIANTS else "--", "o")
        else:
            out[m] = (EXTRA_MODEL_COLOURS[extras.index(m) % len(EXTRA_MODEL_COLOURS)], "-.", "s")
    return out


def _peer_names() -> tuple[str, ...]:
    return tuple(m for m in METHOD_NAMES if m not in MIDSEG_VARIANTS)


def _order(methods: Iterable[str]) -> list[str]:
    known = list(METHOD_NAMES)
    return sorted(set(methods), key=lambda m: (known.index(m) if m in known
                                               else len(MIDSEG_VARIANTS), m))


def write_report(csv_paths: Sequence[str | os.PathLike], report: str | os.PathLike, *,
                 figures: str | os.PathLike | None = None,
                 clicks: int = DEFAULT_CLICKS) -> dict:
    """Write the Markdown report, plots (PNG) and a summary CSV from per-step CSVs.

    Parameters
    ----------
    csv_paths : paths of per-step CSVs (each may have a ``.json`` run record beside it)
    report : path of the Markdown file
    figures : folder for PNGs and ``summary.csv`` (default: ``<report stem>/`` beside it)

    Returns
    -------
    dict
        ``{"summary": [...], "targets": [...]}``, as written.
    """
    rows: list[dict] = []
    metas = []
    for p in csv_paths:
        rows.extend(read_csv(p))
        mp = Path(p).with_suffix(".json")
        if mp.is_file():
            metas.append(json.loads(mp.read_text(encoding="utf-8")))
    if not rows:
        raise InvalidInputError("no rows in the given result files")
    report = Path(report)
    fig_dir = Path(figures) if figures is not None else report.with_suffix("")
    fig_dir.mkdir(parents=True, exist_ok=True)
    report.parent.mkdir(parents=True, exist_ok=True)
    summary = summarise(rows, clicks=clicks)
    by = {(s["dataset"], s["dims"], s["method"]): s for s in summary}
    groups = sorted({(s["dataset"], s["dims"]) for s in summary}, key=lambda g: (g[1], g[0]))

    # every step of every run in one file beside the plots, so the tables can be checked
    write_csv(sorted(rows, key=lambda r: (int(r["dims"]), r["dataset"], r["case"],
                                          r["method"], int(r["click"]))),
              fig_dir / "steps.csv")
    with open(fig_dir / "summary.csv", "w", newline="", encoding="utf-8") as fh:
        keys = list(summary[0].keys())
        w = csv.DictWriter(fh, fieldnames=keys, lineterminator="\n")
        w.writeheader()
        for s in summary:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in s.items()})

    rel = os.path.relpath(fig_dir, report.parent)
    L: list[str] = []
    L.append("# midseg evaluation: robot user, midseg against its peers\n")
    L.append("Generated by `midseg evaluate --from-csv ... --report` "
             f"({datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}); do not edit by "
             "hand: rerun the commands below.\n")
    L.append("## How these numbers were made\n")
    for m in metas:
        L.append(f"- `{m.get('command', '?')}`  \n  {m.get('n_cases', '?')} cases "
                 f"({m.get('selection', '')}); {m.get('wall_s', 0) / 60:.1f} min on "
                 f"{m.get('host', '?')}; models: {m.get('models', {})}"
                 + (f"; code: {m['code']}" if m.get("code") else ""))
    L.append(f"- report: `python -m midseg.evaluate --from-csv "
             f"{' '.join(str(p) for p in csv_paths)} --report {report} --figures {fig_dir}`\n")
    L.append(_PROTOCOL_MD)
    L.append("### Peer configurations\n")
    from .peers import PEER_CONFIG
    for k, v in PEER_CONFIG.items():
        L.append(f"- **{k}**: {v}")
    L.append("- **midseg**: `Session(image, model, method='ifgc', lam=5, sigma=0.1)`: "
             "shipped model (`models/2d.pt` / `models/3d.pt`, EGD cue), click-local "
             "information fusion + graph cut (each round starts from the previous result and "
             "relabels what the new click reaches), every click one refinement round; clicks "
             "and interior margin points are hard constraints.")
    L.append("- **midseg-global**: the same session with `method='ifgc-global'`: every round "
             "fuses all clicks with the CNN probability, certainty-weighted alpha "
             "(`midseg.refine.fuse_probabilities`; the default before clicks-file version 3).")
    L.append("- **midseg-gc**: the same session with `method='gc'` (naive graph cut on the "
             "CNN probability, the same hard constraints).")
    L.append("- **midseg-paper**: the same session with `method='ifgc-paper'`: the fusion "
             "weight of the paper's Eq. 7 as printed, alpha = exp(-min(Df, Db)), where "
             "midseg-global scales it by the click certainty |E_f - E_b| "
             "(`midseg.refine.fuse_probabilities`).")
    extra = sorted({s["method"] for s in summary} - set(METHOD_NAMES))
    for e in extra:
        L.append(f"- **{e}**: extra stage-1 model given with `--extra-model`, refined with "
                 f"IF-GC.{_extra_model_origin(e, metas)}")
    L.append("")

    # Table 2-like: stage-1 encodings with guidance metrics
    models = [m for m in _order({s["method"] for s in summary})
              if m not in _peer_names() and (m == "midseg" or m not in MIDSEG_VARIANTS)]
    L.append("## Stage-1 encodings (cf. paper Table 2; guidance metrics of Marinov et al. 2023)\n")
    L.append("Initial Dice = after stage 1 (same margin points for all); final Dice after "
             f"{clicks} clicks (IF-GC); efficiency = seconds to compute the cue map on the "
             "network grid; consistent improvement = share of clicks that raised Dice; "
             "GT overlap = Σ(G·M)/ΣG of the cue map with the ground truth on the grid.\n")
    L.append("| dataset | model | n | initial Dice % | ASSD@0 mm | final Dice % | efficiency s "
             "| consistent impr. % | GT overlap |")
    L.append("|---|---|---|---|---|---|---|---|---|")
    for g in groups:
        for m in models:
            s = by.get((*g, m))
            if s is None:
                continue
            L.append(f"| {g[0]} ({g[1]}D) | {m} | {s['n']} | {_pct(s['dice@0'], s['dice@0_sd'])} "
                     f"| {_num(s['assd@0'], s['assd@0_sd'])} | "
                     f"{_pct(s[f'dice@{clicks}'], s[f'dice@{clicks}_sd'])} "
                     f"| {_num(s['guidance_seconds'], None, 4)} | "
                     f"{_pct(s['consistent_improvement'])} | {_num(s['guidance_overlap'], None, 3)} |")
    L.append("")

    # Table 3-like: IF-GC vs GC
    L.append("## IF-GC against naive GC with the same robot (cf. paper Table 3)\n")
    L.append("Both start from the same stage-1 result; each then gets its own robot clicks "
             "(placed on its own errors).\n")
    L.append("Harmful clicks: share of clicks after which Dice fell by more than 5 points.\n")
    L.append("| dataset | refinement | Dice@0 % | Dice@1 % | Dice@3 % | Dice@10 % | ASSD@3 mm "
             "| ASSD@10 mm | NoC@90 | consistent impr. % | harmful clicks % |")
    L.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for g in groups:
        for m in ("midseg", "midseg-paper", "midseg-gc"):
            s = by.get((*g, m))
            if s is None:
                continue
            L.append(f"| {g[0]} ({g[1]}D) | {MIDSEG_VARIANTS[m][1]} | "
                     f"{_pct(s['dice@0'])} | {_pct(s['dice@1'])} | {_pct(s['dice@3'])} | "
                     f"{_pct(s[f'dice@{clicks}'])} | {_num(s['assd@3'])} | "
                     f"{_num(s[f'assd@{clicks}'])} | {_num(s['noc90'], None, 1)} | "
                     f"{_pct(s['consistent_improvement'])} | {_pct(s['harmful_clicks'])} |")
    L.append("")

    # Table 4/8-like: all methods per dataset
    L.append("## All methods per dataset (cf. paper Tables 4 and 8; unseen objects: Table 6/7)\n")
    L.append("Mean ± sd over cases. NoC@x: clicks to reach Dice ≥ x (20 when not reached in "
             f"{clicks}); AUC: mean Dice over clicks 0–{clicks}; s/click: mean wall time of one "
             "refinement (CPU). ASSD/HD95 in mm, over cases with a non-empty mask "
             "(empty masks counted in 'empty').\n")
    for g in groups:
        seen = "seen object" if DATASETS.get(g[0], {}).get("seen") else "unseen object"
        L.append(f"### {g[0]}, {g[1]}D ({seen})\n")
        L.append(f"![Dice vs clicks]({rel}/dice_{g[0]}_{g[1]}d.png)\n")
        L.append("| method | n | Dice@0 % | Dice@3 % | Dice@10 % | ASSD@10 mm | HD95@10 mm "
                 "| NoC@85 | NoC@90 | AUC % | s stage 1 | s/click | empty@10 |")
        L.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for m in _order(k[2] for k in by if k[:2] == g):
            s = by[(*g, m)]
            L.append(f"| {m} | {s['n']} | {_pct(s['dice@0'], s['dice@0_sd'])} | "
                     f"{_pct(s['dice@3'], s['dice@3_sd'])} | "
                     f"{_pct(s[f'dice@{clicks}'], s[f'dice@{clicks}_sd'])} | "
                     f"{_num(s[f'assd@{clicks}'], s[f'assd@{clicks}_sd'])} | "
                     f"{_num(s[f'hd95@{clicks}'], s[f'hd95@{clicks}_sd'])} | "
                     f"{_num(s['noc85'], None, 1)} | {_num(s['noc90'], None, 1)} | "
                     f"{_pct(s['auc'])} | {_num(s['sec_stage1'], None, 3)} | "
                     f"{_num(s['sec_click'], None, 3)} | {s[f'assd@{clicks}_n_inf']} |")
        L.append("")
        _plot(rows, fig_dir / f"dice_{g[0]}_{g[1]}d.png", g, clicks)

    L.append("## Paired differences (same cases)\n")
    L.append("midseg minus the other method on the same cases, in Dice points: mean, 95 % "
             "bootstrap interval (2000 resamples of the cases, seed 0) and how many cases "
             "each side wins. An interval that contains 0 means these cases cannot tell "
             f"the two apart; with fewer than {MIN_CASES_INTERVAL} cases no interval is "
             "given (a bootstrap of 2 volumes means nothing).\n")
    L.append("| dataset | midseg vs | after clicks | n | mean Δ points | 95 % interval "
             "| midseg better / worse |")
    L.append("|---|---|---|---|---|---|---|")
    for p in paired_differences(rows, clicks=clicks):
        interval = (f"[{p['low']:+.2f}, {p['high']:+.2f}]" if p["n"] >= MIN_CASES_INTERVAL
                    else f"– (n < {MIN_CASES_INTERVAL})")
        L.append(f"| {p['dataset']} ({p['dims']}D) | {p['other']} | {p['click']} | {p['n']} | "
                 f"{p['mean']:+.2f} | {interval} | {p['better']} / {p['worse']} |")
    L.append("")

    targets = _targets(by, groups, clicks)
    L.append("## Targets\n")
    L.append("| target | dataset | result | reached |")
    L.append("|---|---|---|---|")
    for t in targets:
        L.append(f"| {t['target']} | {t['dataset']} | {t['result']} | "
                 f"{'yes' if t['reached'] else 'NO' if t['reached'] is False else 'n/a'} |")
    L.append("")
    L.append("## Where midseg loses\n")
    L.append("Generated from the numbers above: every table cell where another method "
             "(a peer, midseg-gc or another stage-1 model) does better than midseg.\n")
    losses = _losses(by, groups, clicks) + _first_click_harm(rows)
    L.extend(losses or ["- Nowhere in these runs: midseg has the best Dice@0, Dice@3, "
                        f"Dice@{clicks} and NoC@90 on every dataset evaluated."])
    L.append("")
    L.append(_CAVEATS_MD)
    report.write_text("\n".join(L) + "\n", encoding="utf-8")
    return {"summary": summary, "targets": targets}


def _extra_model_origin(name: str, metas: Sequence[dict]) -> str:
    """" Trained by `...`; held-out Dice x." from the card beside an extra model's weights."""
    for m in metas:
        card_ref = (m.get("model_cards") or {}).get(name)
        ref = (m.get("models") or {}).get(name)
        if not card_ref and not ref:
            continue
        # records written before "model_cards" only hold the "path (sha256 ...)" string
        card_path = Path(card_ref) if card_ref else Path(
            str(ref).split(" (sha256")[0]).with_suffix(".json")
        try:
            card = json.loads(card_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return ""
        training = card.get("training") or {}
        init = training.get("initialised_from")
        lineage = [e for e in card.get("lineage") or [] if isinstance(e, dict) and e.get("command")]
        out = f" Cue `{card.get('cue')}`; "
        if len(lineage) > 1:
            # a chain of fine-tunings written out in the card: every command, in order
            out += (f"trained in {len(lineage)} runs, each fine-tuning the one before: "
                    + "; ".join(f"({i}) `{e['command']}`" for i, e in enumerate(lineage, 1)))
        else:
            out += f"trained by `{card.get('command', '?')}`"
            if isinstance(init, dict):
                # name what a fine-tuning started from, or it reads as a whole recipe
                out += f", fine-tuned from `{init.get('model', '?')}`"
                if init.get("command"):
                    out += f" (itself trained by `{init['command']}`)"
        if (len(lineage) > 1 or isinstance(init, dict)) and training.get("weights_from_iteration") == 0:
            out += "; the last run kept its starting weights (no iteration beat them)"
        dice = (card.get("validation") or {}).get("dice")
        return out + (f"; held-out Dice {dice:.3f}." if isinstance(dice, (int, float)) else ".")
    return ""


def _targets(by: dict, groups, clicks: int) -> list[dict]:
    out = []
    for g in groups:
        name = f"{g[0]} ({g[1]}D)"
        mid = by.get((*g, "midseg"))
        if mid is None:
            continue
        peers = {m: by[(*g, m)] for m in _peer_names() if (*g, m) in by}
        if g[0] == "hc18":
            best = max(peers.items(), key=lambda kv: kv[1]["dice@3"], default=None)
            res = f"midseg Dice@3 = {_pct(mid['dice@3'])}"
            if best:
                res += f"; best peer {best[0]} {_pct(best[1]['dice@3'])}"
            out.append({"target": "unseen: Dice after ≤3 clicks ≥ 90 % and above every peer",
                        "dataset": name, "result": res,
                        "reached": bool(mid["dice@3"] >= 0.90 and all(
                            mid["dice@3"] > p["dice@3"] for p in peers.values()))})
        for p in ("random-walker", "graph-cut"):
            if p in peers:
                out.append({"target": f"NoC@90 ≤ ½ of {p}", "dataset": name,
                            "result": f"{mid['noc90']:.2f} vs {peers[p]['noc90']:.2f}",
                            "reached": bool(mid["noc90"] <= 0.5 * peers[p]["noc90"])})
        gc = by.get((*g, "midseg-gc"))
        if gc is not None:
            for label, s in (("IF-GC", mid), ("IF-GC, Eq. 7 as printed",
                                              by.get((*g, "midseg-paper")))):
                if s is None:
                    continue
                for k in (1, 3, clicks):
                    d = s[f"dice@{k}"] - gc[f"dice@{k}"]
                    out.append({"target": f"{label} ≥ GC + 1 Dice point after {k} clicks",
                                "dataset": name, "result": f"{100 * d:+.2f} points",
                                "reached": bool(d >= 0.01)})
        if not DATASETS.get(g[0], {}).get("seen", True):
            # extra stage-1 models: "*none*" = image only; "egd*" = EGD trained like the
            # other encodings (the like-for-like control); anything else = another encoding
            extras = {m[2]: s for m, s in by.items() if m[:2] == g and m[2] not in METHOD_NAMES}
            image_only = {k: s for k, s in extras.items() if "none" in k.lower()}
            controls = {k: s for k, s in extras.items() if k.lower().startswith("egd")}
            others = {k: s for k, s in extras.items()
                      if k not in image_only and k not in controls}
            for k, s in sorted(image_only.items()):
                d = mid["dice@0"] - s["dice@0"]
                out.append({"target": f"EGD beats bounding-box-only ({k}) at stage 1",
                            "dataset": name,
                            "result": f"{_pct(mid['dice@0'])} vs {_pct(s['dice@0'])} "
                                      f"({100 * d:+.2f})",
                            "reached": bool(d > 0)})
            if len(others) >= 2:
                for label, ref in [("midseg", mid)] + sorted(controls.items()):
                    beaten = [k for k, o in sorted(others.items())
                              if ref["dice@0"] > o["dice@0"]]
                    out.append({
                        "target": f"EGD ({label}) beats ≥ 2 other encodings at stage 1",
                        "dataset": name,
                        "result": f"{_pct(ref['dice@0'])} vs " + ", ".join(
                            f"{k} {_pct(o['dice@0'])}" for k, o in sorted(others.items())),
                        "reached": len(beaten) >= 2})
    return out


def _first_click_harm(rows: Sequence[dict]) -> list[str]:
    """Lines on first clicks that lowered midseg's Dice by > 5 points, by click type."""
    lines = []
    for (ds, dims, method), cases in sorted(_curves(rows).items(), key=lambda kv: (kv[0][1], kv[0][0])):
        if method not in MIDSEG_VARIANTS or not cases:
            continue
        stat = {"fg": [0, 0, []], "bg": [0, 0, []]}
        for st in cases.values():
            if len(st) < 2 or st[1]["click_type"] not in stat:
                continue
            t = stat[st[1]["click_type"]]
            t[1] += 1
            delta = float(st[1]["dice"]) - float(st[0]["dice"])
            t[2].append(delta)
            t[0] += delta < -0.05
        if stat["fg"][0] + stat["bg"][0] == 0:
            continue
        parts = [f"{k} first click: {v[0]} of {v[1]} cases (mean change "
                 f"{100 * float(np.mean(v[2])):+.1f} points)" for k, v in stat.items() if v[1]]
        lines.append(f"- {ds} ({dims}D), {method}: the first corrective click lowered Dice by more "
                     f"than 5 points in " + "; ".join(parts) + ".")
    return lines


def _code_version() -> str:
    """midseg's version and, in a git checkout, the commit (``+dirty`` with local changes)."""
    import subprocess

    from . import __version__

    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root,
                                capture_output=True, text=True, timeout=10, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=root, capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return f"midseg {__version__}"
    return (f"midseg {__version__}, commit {commit.stdout.strip()}"
            + ("+dirty" if dirty.stdout.strip() else ""))


def paired_differences(rows: Sequence[dict], *, clicks: int = DEFAULT_CLICKS,
                       reference: str = "midseg", resamples: int = 2000,
                       seed: int = 0) -> list[dict]:
    """Per-case Dice differences of `reference` against the other midseg variants and stage-1 models.

    Stage-1 models (extra models, ``midseg-*`` variants share midseg's stage 1 and are
    skipped there) are compared after 0 clicks; ``midseg-gc`` / ``midseg-paper`` after
    1, 3 and `clicks` clicks. Only cases both methods ran count. Returns dicts with
    dataset, dims, other, click, n, mean, low, high (Dice points; percentile
    bootstrap over cases) and the number of cases where the reference is better /
    worse (ties count for neither).
    """
    curves = _curves(rows)
    out = []
    for (ds, dims, method), ref in sorted(curves.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        if method != reference:
            continue
        others = sorted(m for (d2, n2, m) in curves if (d2, n2) == (ds, dims)
                        and m != reference and m not in _peer_names())
        for other in others:
            theirs = curves[(ds, dims, other)]
            common = sorted(set(ref) & set(theirs))
            if not common:
                continue
            ks = (sorted({k for k in (1, 3, clicks) if k <= clicks})
                  if other in MIDSEG_VARIANTS else [0])
            for k in ks:
                diff = 100.0 * np.array([_at(ref[c], k, "dice") - _at(theirs[c], k, "dice")
                                         for c in common])
                rng = np.random.default_rng(seed)
                boot = diff[rng.integers(0, diff.size, (resamples, diff.size))].mean(axis=1)
                low, high = np.percentile(boot, [2.5, 97.5])
                out.append({"dataset": ds, "dims": dims, "other": other, "click": k,
                            "n": int(diff.size), "mean": float(diff.mean()),
                            "low": float(low), "high": float(high),
                            "better": int((diff > 0).sum()), "worse": int((diff < 0).sum())})
    return out


def _losses(by: dict, groups, clicks: int) -> list[str]:
    lines = []
    for g in groups:
        mid = by.get((*g, "midseg"))
        if mid is None:
            continue
        for key, label, better in (("dice@0", "stage-1 Dice", max),
                                   ("dice@3", "Dice after 3 clicks", max),
                                   (f"dice@{clicks}", f"Dice after {clicks} clicks", max),
                                   ("noc90", "NoC@90", min),
                                   (f"assd@{clicks}", f"ASSD after {clicks} clicks", min)):
            rivals = [(m[2], s[key]) for m, s in by.items()
                      if m[:2] == g and m[2] != "midseg" and np.isfinite(s[key])]
            if not rivals or not np.isfinite(mid[key]):
                continue
            wins = [(m, v) for m, v in rivals if (v > mid[key] if better is max else v < mid[key])]
            if wins:
                scale = 100.0 if key.startswith("dice") else 1.0
                digits = 2   # more where a win would print equal to midseg's value
                while digits < 6 and any(_num(scale * v, digits=digits)
                                         == _num(scale * mid[key], digits=digits) for _, v in wins):
                    digits += 1

                def fmt(v, scale=scale, digits=digits):
                    return _num(scale * v, digits=digits)
                lines.append(f"- {g[0]} ({g[1]}D), {label}: midseg {fmt(mid[key])} is beaten by "
                             + ", ".join(f"{m} {fmt(v)}" for m, v in wins) + ".")
    return lines


_PROTOCOL_MD = """## Protocol

- **Stage 1.** Interior margin points simulated once per case by
  `midseg.data_sim.interior_margin_points(gt, rng=[seed, crc32("dataset/case")], spacing)`
  (extreme-adjacent boundary points + 0-5 random ones, moved 1-3 voxels inward). Every
  method gets exactly these points. Peers use them as foreground seeds and the border of
  their relaxed bounding box (`midseg.crop.relaxed_bbox`, margin 8 voxels; faces on the
  image edge excluded) as background seeds, working on that crop.
- **Clicks.** Then up to K = 10 corrective clicks of the robot user,
  `corrective_click(gt, current_mask, mode="deepest", spacing)`: deterministic, at the
  voxel deepest inside the largest error of *that method's* current mask (foreground in a
  false negative, background in a false positive). midseg adds one `Session.refine` round
  per click (clicks accumulate); peers re-segment with all seeds so far.
- **Metrics.** Dice, ASSD and HD95 (mm, image spacing) after stage 1 and after each click;
  NoC@85/NoC@90 (cap 20: not reached within 10 clicks counts 20); AUC = mean Dice over
  clicks 0-10. Means ± standard deviations are over cases.
- **Data** (`../shared/data`, fixed split): BraTS 2013 testing cases pat0001 and pat0002
  only; tumour core on T1c is the *seen* object, whole tumour on FLAIR and brain on T1c
  are *unseen*; hc18 fetal head (unseen) is a seeded subset (the first N of a seeded
  permutation of the sorted names). 2D BraTS cases are axial slices whose object has at
  least `--min-pixels` pixels, a seeded sample of `--slices-per-case` per volume.
"""

_CAVEATS_MD = """## Caveats

- Times are wall-clock on a shared 2-core CPU with other jobs running: compare them
  within a table, not with the paper's GPU timings.
- The robot user clicks the deepest error voxel; real users click less optimally, so
  absolute NoC values are optimistic for every method alike.
- Peers get the same margin points and the box border as seeds; the paper's peers were
  driven by real users with scribbles, so these are not the paper's numbers.
- Sample sizes: hc18 is a seeded subset (see the commands); 2D BraTS has 20 slices per
  object (10 per testing volume); 3D has only the two testing volumes per object, so 3D
  differences are anecdotal.
- The BraTS images are constant outside the brain mask (the background of the
  skull-stripped, z-scored volumes), so "brain" is separable by intensity alone: the
  intensity graph cut is nearly perfect there by construction of the data.
- The random walker runs at full resolution on the crop with every seed painted as a
  small ball, and its beta was chosen for it on dev_unseen (`midseg.peers.RW_BETA`);
  with skimage's default beta = 130 its 3D Dice stays near zero. Rows made before
  2026-11-29 used a subsampled 3D grid and single-voxel seeds.
- Stage-1 seconds include cropping, the cue map and the CNN forward pass on the CPU with
  one torch thread; s/click is one refinement round (midseg) or one re-segmentation (peers).
"""


# ------------------------------------------------------------------------------- CLI

def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `midseg evaluate`."""
    parser.description = (
        "Robot-user evaluation: stage 1 from simulated interior margin points, then up to K "
        "corrective clicks placed on each method's own errors; midseg against classical "
        "peers on the same points. Writes a per-step CSV (+ a .json run record) and, with "
        "--report, a Markdown report with tables and Dice-vs-clicks plots.")
    parser.add_argument("datasets", nargs="*", metavar="DATASET",
                        help=f"dataset names: {', '.join(DATASETS)}")
    parser.add_argument("--dims", type=int, choices=(2, 3), default=2,
                        help="2: images / axial slices, 3: volumes (default 2)")
    parser.add_argument("--out", default="runs/eval/steps.csv",
                        help="per-step CSV to write (default runs/eval/steps.csv)")
    parser.add_argument("--methods", default=",".join(METHOD_NAMES),
                        help="comma-separated methods (default: all of "
                             f"{','.join(METHOD_NAMES)})")
    parser.add_argument("--extra-model", action="append", default=[], metavar="NAME=PATH",
                        help="add a stage-1 model (.pt with its card) as method NAME; repeatable")
    parser.add_argument("--model", default=None,
                        help="model of midseg / midseg-gc (default: shipped 2d/3d)")
    parser.add_argument("--clicks", type=int, default=DEFAULT_CLICKS,
                        help=f"corrective clicks per case, K (default {DEFAULT_CLICKS})")
    parser.add_argument("--seed", type=int, default=0, help="global seed (default 0)")
    parser.add_argument("--max-cases", "--limit", dest="max_cases", type=int, default=None,
                        help="use only the first N cases of each dataset (quick runs)")
    parser.add_argument("--skip-cases", type=int, default=0,
                        help="drop the first N cases of each dataset's selection (to split "
                             "a selection over runs; default 0)")
    parser.add_argument("--objects", default=None,
                        help="dev-unseen: comma-separated object names to evaluate (default "
                             "all; see midseg.datasets.DEV_UNSEEN)")
    parser.add_argument("--hc18-count", type=int, default=200,
                        help="size of the seeded hc18 subset (default 200)")
    parser.add_argument("--slices-per-case", type=int, default=10,
                        help="2D BraTS: axial slices sampled per testing volume (default 10)")
    parser.add_argument("--min-pixels", type=int, default=100,
                        help="2D BraTS: least object pixels of an eligible slice (default 100)")
    parser.add_argument("--data-root", default=None,
                        help="data folder (default $MIDSEG_DATA or ../shared/data)")
    parser.add_argument("--device", default=None, help="torch device for stage 1")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads for stage 1 (default 1: timings comparable "
                             "with the single-threaded peers)")
    parser.add_argument("--report", default=None, help="also write this Markdown report")
    parser.add_argument("--figures", default=None,
                        help="folder for the report's PNGs and summary.csv "
                             "(default: beside the report, named after it)")
    parser.add_argument("--from-csv", nargs="+", default=None, metavar="CSV",
                        help="do not evaluate: build --report from these per-step CSVs")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _parse_extra(items: Sequence[str]) -> dict[str, str]:
    out = {}
    for it in items:
        name, sep, path = it.partition("=")
        if not sep or not name or not path:
            raise InvalidInputError(f"--extra-model takes NAME=PATH, got {it!r}")
        from .models import model_path
        model_path(path)   # fails early with a clear message
        out[name] = path
    return out


def _model_record(name_or_path) -> tuple[str, str]:
    """``name-or-path (sha256 prefix)`` of a model's weights and its card's path, for the run
    record."""
    import hashlib

    from .models import model_path

    pt = model_path(name_or_path)
    return (f"{name_or_path} (sha256 {hashlib.sha256(pt.read_bytes()).hexdigest()[:12]})",
            str(pt.with_suffix(".json")))


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
    uses_torch = args.extra_model or any(m.strip().startswith("midseg")
                                         for m in args.methods.split(","))
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
        got = load_cases(ds, dims=args.dims, data_root=args.data_root, seed=args.seed,
                         hc18_count=args.hc18_count, slices_per_case=args.slices_per_case,
                         min_pixels=args.min_pixels, max_cases=args.max_cases,
                         skip_cases=args.skip_cases,
                         objects=args.objects.split(",") if args.objects else None)
        cases.extend(got)
        selection.append(f"{ds} {args.dims}D: {len(got)}")
    rows = run_protocol(cases, methods, clicks=args.clicks, seed=args.seed,
                        progress=not args.no_progress, jobs=args.jobs)
    write_csv(rows, args.out)
    refs = {m.name: m.model or f"{args.dims}d" for m in methods if isinstance(m, SessionMethod)}
    records = {ref: _model_record(ref) for ref in set(refs.values())}  # each file hashed once
    models = {name: records[ref][0] for name, ref in refs.items()}
    cards = {name: records[ref][1] for name, ref in refs.items()}
    prog = "midseg" if Path(sys.argv[0]).name == "midseg" else "python -m midseg.evaluate"
    meta = {"command": " ".join([prog] + [shlex.quote(a) for a in sys.argv[1:]]),
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "n_cases": len(cases), "selection": "; ".join(selection),
            "methods": [m.name for m in methods], "models": models, "model_cards": cards,
            "clicks": args.clicks,
            "seed": args.seed, "wall_s": time.perf_counter() - t0,
            "host": f"{platform.machine()} {os.cpu_count()} CPUs",
            "code": _code_version()}
    Path(args.out).with_suffix(".json").write_text(json.dumps(meta, indent=1) + "\n",
                                                   encoding="utf-8")
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
    try:
        return run(args)
    except (MidsegError, ValueError, OSError) as exc:
        if args.debug:
            raise
        print(f"midseg evaluate: error: {str(exc).splitlines()[0] if str(exc) else exc!r}",
              file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
