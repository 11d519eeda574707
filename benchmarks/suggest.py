"""Suggested clicks (issue 23): the suggestion-following user against the robot and random users.

For each set, the midseg method (IF-GC, shipped models) is run three times on the same
cases and margin points (`midseg.evaluation.run_protocol`), once per simulated user of
`midseg.evaluation.users`: the robot user (knows the errors), the suggestion-following user
(clicks `Session.suggest`'s top suggestion, labelled from the ground truth) and the random
user (a random voxel of the stage-1 box, labelled from the ground truth). Prints a Markdown
table: precision of the top suggestion (share of the suggestion user's clicks 1..K that lie
in an error region of the mask they were made on), mean Dice % at 0 and K clicks for each
user, NoC@85 / NoC@90 (cap 20: not reached within K clicks counts 20), and the median time
of a suggestion beside the median time of the refinement round that follows it.

The subsets are sized to run in minutes on 2 cores (``--quick`` smaller still): dev_unseen
2D and 3D all 16 objects, hc18 20 images, BraTS 2D 3 slices per testing case and target,
BraTS 3D the 2 testing volumes per target. Run: ``python benchmarks/suggest.py`` (CSVs of
every run under ``--out``, default ``runs/suggest/bench``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from midseg.evaluation import load_cases, run_protocol, write_csv
from midseg.evaluation.methods import SessionMethod
from midseg.evaluation.users import USERS
from midseg.metrics import clicks_to_reach

#: set id -> (dataset names, dims, load_cases options)
SETS = {
    "dev2d": (("dev-unseen",), 2, {}),
    "dev3d": (("dev-unseen",), 3, {}),
    "hc18": (("hc18",), 2, {"hc18_count": 20}),
    "brats2d": (("brats-tc-t1c", "brats-wt-flair", "brats-brain"), 2, {"slices_per_case": 3}),
    "brats3d": (("brats-tc-t1c", "brats-wt-flair", "brats-brain"), 3, {}),
}
QUICK = {"dev2d": 6, "dev3d": 4, "hc18": 6, "brats2d": 2, "brats3d": 1}


def _curves(rows, clicks):
    """case -> Dice per click (0..clicks)."""
    out: dict[str, list[float]] = {}
    for r in rows:
        out.setdefault(f"{r['dataset']}/{r['case']}", [0.0] * (clicks + 1))[int(r["click"])] = (
            float(r["dice"])
        )
    return out


def summarise(rows_by_user: dict, clicks: int) -> dict:
    """The table's numbers of one set."""
    res: dict = {}
    for user, rows in rows_by_user.items():
        curves = _curves(rows, clicks)
        d = np.array(list(curves.values()))
        res[user] = {
            "n": len(curves),
            "d0": 100 * d[:, 0].mean(),
            "dk": 100 * d[:, clicks].mean(),
            "noc85": np.mean([clicks_to_reach(c, 0.85) for c in curves.values()]),
            "noc90": np.mean([clicks_to_reach(c, 0.90) for c in curves.values()]),
        }
    rows = rows_by_user.get("suggest", [])
    made = [r for r in rows if int(r["click"]) >= 1 and r["in_error"] != ""]
    res["precision"] = 100 * np.mean([int(r["in_error"]) for r in made]) if made else float("nan")
    res["n_clicks"] = len(made)
    ss = [float(r["suggest_seconds"]) for r in rows if r["suggest_seconds"] != ""]
    rs = [float(r["seconds"]) for r in made]
    res["suggest_ms"] = 1000 * statistics.median(ss) if ss else float("nan")
    res["round_ms"] = 1000 * statistics.median(rs) if rs else float("nan")
    res["ratio"] = (
        statistics.median(
            float(r["suggest_seconds"]) / max(float(r["seconds"]), 1e-6) for r in made
        )
        if made
        else float("nan")
    )
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sets", default=",".join(SETS), help=f"comma-separated: {','.join(SETS)}")
    ap.add_argument("--clicks", type=int, default=5, help="K, clicks per case (default 5)")
    ap.add_argument("--users", default=",".join(USERS))
    ap.add_argument("--out", default="runs/suggest/bench", help="folder of the per-run CSVs")
    ap.add_argument("--quick", action="store_true", help="a few cases per set")
    ap.add_argument("--seed", type=int, default=0, help="seed of the margin points (default 0)")
    args = ap.parse_args(argv)
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover
        pass
    users = [u for u in args.users.split(",") if u]
    lines = [
        f"| set | cases | precision % (clicks) | Dice@0 | Dice@{args.clicks} robot / suggest / "
        "random | NoC@85 robot / suggest / random | NoC@90 robot / suggest / random | "
        "suggest ms / round ms (median ratio) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    t0 = time.perf_counter()
    for sid in args.sets.split(","):
        names, dims, opts = SETS[sid]
        cases = []
        for name in names:
            got = load_cases(name, dims=dims, **opts)
            cases.extend(got[: QUICK[sid]] if args.quick else got)
        method = SessionMethod("midseg")
        by_user = {}
        for user in users:
            rows = run_protocol(
                cases, [method], clicks=args.clicks, user=user, progress=False, seed=args.seed
            )
            write_csv(rows, Path(args.out) / f"{sid}_{user}.csv")
            by_user[user] = [{k: str(v) for k, v in r.items()} for r in rows]
            print(f"{sid} {user}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
        s = summarise(by_user, args.clicks)

        def three(key, fmt):
            return " / ".join(format(s[u][key], fmt) if u in s else "-" for u in USERS)

        lines.append(
            f"| {sid} | {len(cases)} | {s['precision']:.0f} ({s['n_clicks']}) | "
            f"{s[users[0]]['d0']:.1f} | {three('dk', '.1f')} | {three('noc85', '.1f')} | "
            f"{three('noc90', '.1f')} | {s['suggest_ms']:.1f} / {s['round_ms']:.1f} "
            f"({s['ratio']:.2f}) |"
        )
        print(lines[-1], file=sys.stderr, flush=True)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
