"""The Markdown report: one function per table or generated list, the Dice-vs-clicks plots.

`write_report` reads per-step CSVs (and the ``.json`` run records beside them), writes
``steps.csv``, ``summary.csv`` and one PNG per dataset into the figures folder and the
Markdown report with its tables, targets and the cells where midseg loses. The report's
prose (headings, protocol, method descriptions, caveats) is the template
``report_template.md`` beside this module; the functions here fill its placeholders.
"""

from __future__ import annotations

import csv
import json
import os
import string
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import InvalidInputError
from .cases import DATASETS
from .methods import METHOD_NAMES, MIDSEG_VARIANTS, _order, _peer_names
from .protocol import DEFAULT_CLICKS, read_csv, write_csv
from .summary import _curves, _num, _pct, paired_differences, summarise
from .targets import _targets

__all__ = ["write_report", "MIN_CASES_INTERVAL", "EXTRA_MODEL_COLOURS"]

#: Fewest cases for which the report gives a bootstrap interval of a paired difference.
MIN_CASES_INTERVAL = 10


def _plot(rows, path: Path, title: tuple, clicks: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4), dpi=110)
    curves_all = {k[2]: v for k, v in _curves(rows).items() if k[:2] == title}
    for method, (colour, line, marker) in _plot_styles(_order(curves_all)).items():
        cases = curves_all[method]
        curves = np.array(
            [
                [float(r["dice"]) for r in st][: clicks + 1]
                + [float(st[-1]["dice"])] * (clicks + 1 - len(st))
                for st in cases.values()
            ]
        )
        ax.plot(
            range(clicks + 1),
            curves.mean(axis=0),
            line,
            marker=marker,
            ms=3,
            color=colour,
            label=f"{method}",
        )
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
EXTRA_MODEL_COLOURS = ("#a6761d", "#bcbd22", "#17becf", "#000000", "#1b9e77", "#e6ab02", "#7570b3")


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
            out[m] = (base[known.index(m) % len(base)], "-" if m in MIDSEG_VARIANTS else "--", "o")
        else:
            out[m] = (EXTRA_MODEL_COLOURS[extras.index(m) % len(EXTRA_MODEL_COLOURS)], "-.", "s")
    return out


def write_report(
    csv_paths: Sequence[str | os.PathLike],
    report: str | os.PathLike,
    *,
    figures: str | os.PathLike | None = None,
    clicks: int = DEFAULT_CLICKS,
) -> dict:
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
    rows, metas = _read_runs(csv_paths)
    report = Path(report)
    fig_dir = Path(figures) if figures is not None else report.with_suffix("")
    fig_dir.mkdir(parents=True, exist_ok=True)
    report.parent.mkdir(parents=True, exist_ok=True)
    summary = summarise(rows, clicks=clicks)
    by = {(s["dataset"], s["dims"], s["method"]): s for s in summary}
    groups = sorted({(s["dataset"], s["dims"]) for s in summary}, key=lambda g: (g[1], g[0]))
    _write_step_and_summary_csv(rows, summary, fig_dir)

    targets = _targets(by, groups, clicks)
    rel = os.path.relpath(fig_dir, report.parent)
    text = _template().substitute(
        generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        runs="".join(line + "\n" for line in _run_lines(metas)),
        csv_paths=" ".join(str(p) for p in csv_paths),
        report=report,
        figures=fig_dir,
        peers="".join(line + "\n" for line in _peer_lines()),
        extra_models="".join("\n" + line for line in _extra_model_lines(summary, metas)),
        clicks=clicks,
        stage1_table="\n".join(_stage1_table(by, groups, clicks)),
        refinement_table="\n".join(_refinement_table(by, groups, clicks)),
        all_methods_tables="\n\n".join(
            "\n".join(lines)
            for lines in _all_methods_tables(rows, by, groups, clicks, fig_dir, rel)
        ),
        min_cases_interval=MIN_CASES_INTERVAL,
        paired_table="\n".join(_paired_table(rows, clicks)),
        targets_table="\n".join(_targets_table(targets)),
        losses="\n".join(_loss_lines(rows, by, groups, clicks)),
    )
    report.write_text(text + "\n", encoding="utf-8")
    return {"summary": summary, "targets": targets}


def _template() -> string.Template:
    """``report_template.md`` (package data) without its leading comment."""
    text = resources.files(__package__).joinpath("report_template.md").read_text("utf-8")
    if text.startswith("<!--"):
        text = text[text.index("-->\n") + len("-->\n") :]
    return string.Template(text)


def _read_runs(csv_paths: Sequence[str | os.PathLike]) -> tuple[list[dict], list[dict]]:
    """The rows of all per-step CSVs and the ``.json`` run records found beside them."""
    rows: list[dict] = []
    metas = []
    for p in csv_paths:
        rows.extend(read_csv(p))
        mp = Path(p).with_suffix(".json")
        if mp.is_file():
            metas.append(json.loads(mp.read_text(encoding="utf-8")))
    if not rows:
        raise InvalidInputError("no rows in the given result files")
    return rows, metas


def _write_step_and_summary_csv(
    rows: Sequence[dict], summary: Sequence[dict], fig_dir: Path
) -> None:
    """``steps.csv`` (every step of every run) and ``summary.csv`` beside the plots."""
    # every step of every run in one file beside the plots, so the tables can be checked
    write_csv(
        sorted(
            rows,
            key=lambda r: (int(r["dims"]), r["dataset"], r["case"], r["method"], int(r["click"])),
        ),
        fig_dir / "steps.csv",
    )
    with open(fig_dir / "summary.csv", "w", newline="", encoding="utf-8") as fh:
        keys = list(summary[0].keys())
        w = csv.DictWriter(fh, fieldnames=keys, lineterminator="\n")
        w.writeheader()
        for s in summary:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in s.items()})


def _run_lines(metas: Sequence[dict]) -> list[str]:
    """One list item per run record: its command, cases, time, host, models and code."""
    return [
        f"- `{m.get('command', '?')}`  \n  {m.get('n_cases', '?')} cases "
        f"({m.get('selection', '')}); {m.get('wall_s', 0) / 60:.1f} min on "
        f"{m.get('host', '?')}; models: {m.get('models', {})}"
        + (f"; code: {m['code']}" if m.get("code") else "")
        for m in metas
    ]


def _peer_lines() -> list[str]:
    """One list item per peer: its configuration (`midseg.peers.PEER_CONFIG`)."""
    from ..peers import PEER_CONFIG

    return [f"- **{k}**: {v}" for k, v in PEER_CONFIG.items()]


def _extra_model_lines(summary: Sequence[dict], metas: Sequence[dict]) -> list[str]:
    """One list item per extra stage-1 model: where it comes from (its model card)."""
    extra = sorted({s["method"] for s in summary} - set(METHOD_NAMES))
    return [
        f"- **{e}**: extra stage-1 model given with `--extra-model`, refined with "
        f"IF-GC.{_extra_model_origin(e, metas)}"
        for e in extra
    ]


def _stage1_table(by: dict, groups, clicks: int) -> list[str]:
    """Table 2-like: stage-1 encodings with the guidance metrics."""
    models = [
        m
        for m in _order(k[2] for k in by)
        if m not in _peer_names() and (m == "midseg" or m not in MIDSEG_VARIANTS)
    ]
    L: list[str] = []
    L.append(
        "| dataset | model | n | initial Dice % | ASSD@0 mm | final Dice % | efficiency s "
        "| consistent impr. % | GT overlap |"
    )
    L.append("|---|---|---|---|---|---|---|---|---|")
    for g in groups:
        for m in models:
            s = by.get((*g, m))
            if s is None:
                continue
            L.append(
                f"| {g[0]} ({g[1]}D) | {m} | {s['n']} | {_pct(s['dice@0'], s['dice@0_sd'])} "
                f"| {_num(s['assd@0'], s['assd@0_sd'])} | "
                f"{_pct(s[f'dice@{clicks}'], s[f'dice@{clicks}_sd'])} "
                f"| {_num(s['guidance_seconds'], None, 4)} | "
                f"{_pct(s['consistent_improvement'])} | {_num(s['guidance_overlap'], None, 3)} |"
            )
    return L


def _refinement_table(by: dict, groups, clicks: int) -> list[str]:
    """Table 3-like: IF-GC (click-local, Eq. 7 as printed) against naive GC."""
    L: list[str] = []
    L.append(
        "| dataset | refinement | Dice@0 % | Dice@1 % | Dice@3 % | Dice@10 % | ASSD@3 mm "
        "| ASSD@10 mm | NoC@90 | consistent impr. % | harmful clicks % |"
    )
    L.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for g in groups:
        for m in ("midseg", "midseg-paper", "midseg-gc"):
            s = by.get((*g, m))
            if s is None:
                continue
            L.append(
                f"| {g[0]} ({g[1]}D) | {MIDSEG_VARIANTS[m][1]} | "
                f"{_pct(s['dice@0'])} | {_pct(s['dice@1'])} | {_pct(s['dice@3'])} | "
                f"{_pct(s[f'dice@{clicks}'])} | {_num(s['assd@3'])} | "
                f"{_num(s[f'assd@{clicks}'])} | {_num(s['noc90'], None, 1)} | "
                f"{_pct(s['consistent_improvement'])} | {_pct(s['harmful_clicks'])} |"
            )
    return L


def _all_methods_tables(
    rows: Sequence[dict], by: dict, groups, clicks: int, fig_dir: Path, rel: str
) -> list[list[str]]:
    """Table 4/8-like: every method per dataset, each with its heading and Dice-vs-clicks
    plot (written to `fig_dir`, linked as `rel`); the lines of one section per dataset."""
    out: list[list[str]] = []
    for g in groups:
        seen = "seen object" if DATASETS.get(g[0], {}).get("seen") else "unseen object"
        L: list[str] = []
        L.append(f"### {g[0]}, {g[1]}D ({seen})\n")
        L.append(f"![Dice vs clicks]({rel}/dice_{g[0]}_{g[1]}d.png)\n")
        L.append(
            "| method | n | Dice@0 % | Dice@3 % | Dice@10 % | ASSD@10 mm | HD95@10 mm "
            "| NoC@85 | NoC@90 | AUC % | s stage 1 | s/click | empty@10 |"
        )
        L.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for m in _order(k[2] for k in by if k[:2] == g):
            s = by[g + (m,)]  # by[(*g, m)] is valid 3.10, but mypy reads it as 3.11 syntax
            L.append(
                f"| {m} | {s['n']} | {_pct(s['dice@0'], s['dice@0_sd'])} | "
                f"{_pct(s['dice@3'], s['dice@3_sd'])} | "
                f"{_pct(s[f'dice@{clicks}'], s[f'dice@{clicks}_sd'])} | "
                f"{_num(s[f'assd@{clicks}'], s[f'assd@{clicks}_sd'])} | "
                f"{_num(s[f'hd95@{clicks}'], s[f'hd95@{clicks}_sd'])} | "
                f"{_num(s['noc85'], None, 1)} | {_num(s['noc90'], None, 1)} | "
                f"{_pct(s['auc'])} | {_num(s['sec_stage1'], None, 3)} | "
                f"{_num(s['sec_click'], None, 3)} | {s[f'assd@{clicks}_n_inf']} |"
            )
        out.append(L)
        _plot(rows, fig_dir / f"dice_{g[0]}_{g[1]}d.png", g, clicks)
    return out


def _paired_table(rows: Sequence[dict], clicks: int) -> list[str]:
    """midseg minus its variants and the other stage-1 models on the same cases."""
    L: list[str] = []
    L.append(
        "| dataset | midseg vs | after clicks | n | mean Δ points | 95 % interval "
        "| midseg better / worse |"
    )
    L.append("|---|---|---|---|---|---|---|")
    for p in paired_differences(rows, clicks=clicks):
        interval = (
            f"[{p['low']:+.2f}, {p['high']:+.2f}]"
            if p["n"] >= MIN_CASES_INTERVAL
            else f"– (n < {MIN_CASES_INTERVAL})"
        )
        L.append(
            f"| {p['dataset']} ({p['dims']}D) | {p['other']} | {p['click']} | {p['n']} | "
            f"{p['mean']:+.2f} | {interval} | {p['better']} / {p['worse']} |"
        )
    return L


def _targets_table(targets: Sequence[dict]) -> list[str]:
    """The targets of `_targets` as a table."""
    L: list[str] = []
    L.append("| target | dataset | result | reached |")
    L.append("|---|---|---|---|")
    for t in targets:
        L.append(
            f"| {t['target']} | {t['dataset']} | {t['result']} | "
            f"{'yes' if t['reached'] else 'NO' if t['reached'] is False else 'n/a'} |"
        )
    return L


def _loss_lines(rows: Sequence[dict], by: dict, groups, clicks: int) -> list[str]:
    """Every table cell where another method beats midseg, and harmful first clicks."""
    losses = _losses(by, groups, clicks) + _first_click_harm(rows)
    return losses or [
        "- Nowhere in these runs: midseg has the best Dice@0, Dice@3, "
        f"Dice@{clicks} and NoC@90 on every dataset evaluated."
    ]


def _extra_model_origin(name: str, metas: Sequence[dict]) -> str:
    """ " Trained by `...`; held-out Dice x." from the card beside an extra model's weights."""
    for m in metas:
        card_ref = (m.get("model_cards") or {}).get(name)
        ref = (m.get("models") or {}).get(name)
        if not card_ref and not ref:
            continue
        # records written before "model_cards" only hold the "path (sha256 ...)" string
        card_path = (
            Path(card_ref) if card_ref else Path(str(ref).split(" (sha256")[0]).with_suffix(".json")
        )
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
            out += f"trained in {len(lineage)} runs, each fine-tuning the one before: " + "; ".join(
                f"({i}) `{e['command']}`" for i, e in enumerate(lineage, 1)
            )
        elif isinstance(card.get("ensemble"), dict):
            # an ensemble card: its members' commands, and how the card was written
            members = [m for m in training.get("members") or [] if isinstance(m, dict)]
            out += "the mean of " + "; ".join(
                f"`{m.get('name', '?')}` (trained by `{m.get('command', '?')}`)" for m in members
            )
            if training.get("card_command"):
                out += f"; card written by `{training['card_command']}`"
        else:
            out += f"trained by `{card.get('command', '?')}`"
            if isinstance(init, dict):
                # name what a fine-tuning started from, or it reads as a whole recipe
                out += f", fine-tuned from `{init.get('model', '?')}`"
                if init.get("command"):
                    out += f" (itself trained by `{init['command']}`)"
        if (len(lineage) > 1 or isinstance(init, dict)) and training.get(
            "weights_from_iteration"
        ) == 0:
            out += "; the last run kept its starting weights (no iteration beat them)"
        dice = (card.get("validation") or {}).get("dice")
        return out + (f"; held-out Dice {dice:.3f}." if isinstance(dice, (int, float)) else ".")
    return ""


def _first_click_harm(rows: Sequence[dict]) -> list[str]:
    """Lines on first clicks that lowered midseg's Dice by > 5 points, by click type."""
    lines = []
    for (ds, dims, method), cases in sorted(
        _curves(rows).items(), key=lambda kv: (kv[0][1], kv[0][0])
    ):
        if method not in MIDSEG_VARIANTS or not cases:
            continue
        # click type -> [first clicks that lowered Dice > 5 points, cases, Dice changes]
        stat: dict[str, list[Any]] = {"fg": [0, 0, []], "bg": [0, 0, []]}
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
        parts = [
            f"{k} first click: {v[0]} of {v[1]} cases (mean change "
            f"{100 * float(np.mean(v[2])):+.1f} points)"
            for k, v in stat.items()
            if v[1]
        ]
        lines.append(
            f"- {ds} ({dims}D), {method}: the first corrective click lowered Dice by more "
            f"than 5 points in " + "; ".join(parts) + "."
        )
    return lines


def _losses(by: dict, groups, clicks: int) -> list[str]:
    lines = []
    for g in groups:
        mid = by.get((*g, "midseg"))
        if mid is None:
            continue
        for key, label, better in (
            ("dice@0", "stage-1 Dice", max),
            ("dice@3", "Dice after 3 clicks", max),
            (f"dice@{clicks}", f"Dice after {clicks} clicks", max),
            ("noc90", "NoC@90", min),
            (f"assd@{clicks}", f"ASSD after {clicks} clicks", min),
        ):
            rivals = [
                (m[2], s[key])
                for m, s in by.items()
                if m[:2] == g and m[2] != "midseg" and np.isfinite(s[key])
            ]
            if not rivals or not np.isfinite(mid[key]):
                continue
            wins = [(m, v) for m, v in rivals if (v > mid[key] if better is max else v < mid[key])]
            if wins:
                scale = 100.0 if key.startswith("dice") else 1.0
                digits = 2  # more where a win would print equal to midseg's value
                while digits < 6 and any(
                    _num(scale * v, digits=digits) == _num(scale * mid[key], digits=digits)
                    for _, v in wins
                ):
                    digits += 1

                def fmt(v, scale=scale, digits=digits):
                    return _num(scale * v, digits=digits)

                lines.append(
                    f"- {g[0]} ({g[1]}D), {label}: midseg {fmt(mid[key])} is beaten by "
                    + ", ".join(f"{m} {fmt(v)}" for m, v in wins)
                    + "."
                )
    return lines
