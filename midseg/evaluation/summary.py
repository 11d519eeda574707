"""Summaries of per-step rows: per-method means at fixed clicks, NoC, AUC, paired differences.

Rows are the dicts of `midseg.evaluation.read_csv` / `run_protocol` (keys `CSV_FIELDS`).
"""

from __future__ import annotations

import inspect

from typing import Any, Sequence

import numpy as np
from scipy import stats

from ..metrics import auc, consistent_improvement, noc
from .methods import MIDSEG_VARIANTS, _peer_names
from .protocol import DEFAULT_CLICKS

__all__ = ["summarise", "paired_differences"]


def _pct(m, sd=None) -> str:
    """A fraction as percent with two decimals (and ± sd); "–" for None or non-finite."""
    if m is None or not np.isfinite(m):
        return "–"
    return f"{100 * m:.2f}" + (f" ± {100 * sd:.2f}" if sd is not None and np.isfinite(sd) else "")


def _num(m, sd=None, digits=2) -> str:
    """A number with `digits` decimals (and ± sd); "–" for None or non-finite."""
    if m is None or not np.isfinite(m):
        return "–"
    return f"{m:.{digits}f}" + (f" ± {sd:.{digits}f}" if sd is not None and np.isfinite(sd) else "")


def _curves(rows: Sequence[dict]) -> dict:
    """(dataset, dims, method) -> case -> sorted list of rows."""
    out: dict = {}
    for r in rows:
        out.setdefault((r["dataset"], int(r["dims"]), r["method"]), {}).setdefault(
            r["case"], []
        ).append(r)
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
    """Per (dataset, dims, method) summary: Dice at every click count 0..K, ASSD/HD95 at 0,
    1, 3, 5, K clicks, NoC@85/90, AUC, consistent improvement, harmful clicks (Dice down by
    more than 5 points, and by more than 2), times and guidance metrics (means, sds)."""
    out = []
    for (ds, dims, method), cases in sorted(
        _curves(rows).items(), key=lambda kv: (kv[0][1], kv[0][0])
    ):
        s: dict[str, Any] = {"dataset": ds, "dims": dims, "method": method, "n": len(cases)}
        for k in sorted({0, 1, 3, 5, clicks} | set(range(clicks + 1))):
            for key in ("dice", "assd", "hd95") if k in (0, 1, 3, 5, clicks) else ("dice",):
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
            u, n = consistent_improvement(
                [float(r["dice"]) for r in st], [r["click_type"] in ("fg", "bg") for r in st[1:]]
            )
            up, made = up + u, made + n
        s["consistent_improvement"] = up / made if made else float("nan")
        for key, fall in (("harmful_clicks", 0.05), ("harmful_clicks_2pt", 0.02)):
            drops = sum(
                1
                for st in cases.values()
                for a, b in zip(st, st[1:])
                if b["click_type"] in ("fg", "bg") and float(b["dice"]) < float(a["dice"]) - fall
            )
            s[key] = drops / made if made else float("nan")
        s["clicks_made"] = made
        s["sec_stage1"] = _mean_sd([float(st[0]["seconds"]) for st in cases.values()])[0]
        s["sec_click"] = _mean_sd(
            [
                float(r["seconds"])
                for st in cases.values()
                for r in st[1:]
                if r["click_type"] in ("fg", "bg")
            ]
        )[0]
        s["guidance_seconds"] = _mean_sd(
            [float(st[0]["guidance_seconds"] or "nan") for st in cases.values()]
        )[0]
        s["guidance_overlap"] = _mean_sd(
            [float(st[0]["guidance_overlap"] or "nan") for st in cases.values()]
        )[0]
        out.append(s)
    return out


def paired_differences(
    rows: Sequence[dict],
    *,
    clicks: int = DEFAULT_CLICKS,
    reference: str = "midseg",
    resamples: int = 2000,
    seed: int = 0,
) -> list[dict]:
    """Per-case Dice differences of `reference` against the other midseg variants and stage-1 models.

    Stage-1 models (extra models, ``midseg-*`` variants share midseg's stage 1 and are
    skipped there) are compared after 0 clicks; ``midseg-gc`` / ``midseg-paper`` after
    1, 3 and `clicks` clicks. Only cases both methods ran count. Returns dicts with
    dataset, dims, other, click, n, mean, low, high (Dice points; 95 % percentile
    bootstrap interval of the mean over cases, `_bootstrap_interval`) and the number of cases where the reference is better /
    worse (ties count for neither).
    """
    curves = _curves(rows)
    out = []
    for (ds, dims, method), ref in sorted(curves.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        if method != reference:
            continue
        others = sorted(
            m
            for (d2, n2, m) in curves
            if (d2, n2) == (ds, dims) and m != reference and m not in _peer_names()
        )
        for other in others:
            theirs = curves[(ds, dims, other)]
            common = sorted(set(ref) & set(theirs))
            if not common:
                continue
            ks = (
                sorted({k for k in (1, 3, clicks) if k <= clicks})
                if other in MIDSEG_VARIANTS
                else [0]
            )
            for k in ks:
                diff = 100.0 * np.array(
                    [_at(ref[c], k, "dice") - _at(theirs[c], k, "dice") for c in common]
                )
                low, high = _bootstrap_interval(diff, resamples, seed)
                out.append(
                    {
                        "dataset": ds,
                        "dims": dims,
                        "other": other,
                        "click": k,
                        "n": int(diff.size),
                        "mean": float(diff.mean()),
                        "low": float(low),
                        "high": float(high),
                        "better": int((diff > 0).sum()),
                        "worse": int((diff < 0).sum()),
                    }
                )
    return out


def _bootstrap_interval(diff: np.ndarray, resamples: int, seed: int) -> tuple[float, float]:
    """95 % percentile bootstrap interval of the mean of paired differences `diff` (1-D).

    ``scipy.stats.bootstrap`` on the one sample of per-case differences (the same as
    ``paired=True`` on the two methods' values for the mean of differences), `resamples`
    resamples drawn by ``numpy.random.default_rng(seed)``, ``method="percentile"``. With
    fewer than 2 cases (which scipy refuses) every resample is the one case: (d, d).
    """
    if diff.size < 2:
        return float(diff.mean()), float(diff.mean())
    # scipy >= 1.15 names the generator `rng`; older versions took it as `random_state`
    kw = "rng" if "rng" in inspect.signature(stats.bootstrap).parameters else "random_state"
    res = stats.bootstrap(
        (diff,),
        np.mean,
        n_resamples=resamples,
        method="percentile",
        confidence_level=0.95,
        **{kw: np.random.default_rng(seed)},
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)
