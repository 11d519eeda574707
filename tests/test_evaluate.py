"""The robot-user protocol: CSV rows and columns, NoC/AUC, same points for all, determinism, report."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from midseg import evaluate as ev
from midseg.errors import InvalidInputError
from midseg.data_sim import interior_margin_points

from conftest import disc


class FakeMethod:
    """Stage 1 = the relaxed box's inscribed nothing: just the margin points; each click
    paints a disc of radius 4 around the click with its label. Records the points it got."""

    kind = "fake"

    def __init__(self, name="fake"):
        self.name = name
        self.seen_points = []

    def start(self, image, points, *, spacing):
        self.seen_points.append(np.array(points))
        self.mask = np.zeros(image.shape, np.uint8)
        self.mask[tuple(np.asarray(points).T)] = 1
        return self.mask.copy()

    def update(self, click):
        r = disc(self.mask.shape, center=click.point, radius=4).astype(bool)
        self.mask[r] = 1 if click.foreground else 0
        return self.mask.copy()


class PerfectMethod(FakeMethod):
    def __init__(self, gt, name="perfect"):
        super().__init__(name)
        self.gt = gt

    def start(self, image, points, *, spacing):
        super().start(image, points, spacing=spacing)
        return self.gt.copy()


def _cases(n=2):
    out = []
    for i in range(n):
        gt = disc((40, 44), radius=9 + i)
        img = (gt + np.random.default_rng(i).normal(0, 0.1, gt.shape)).astype(np.float32)
        out.append(ev.Case("toy", f"c{i}", img, gt, (1.0, 1.0)))
    return out


def test_protocol_rows_and_columns(tmp_path):
    cases = _cases(2)
    methods = [FakeMethod("a"), FakeMethod("b")]
    rows = ev.run_protocol(cases, methods, clicks=3, seed=0, progress=False)
    assert len(rows) == 2 * 2 * 4  # cases x methods x (stage 1 + K)
    assert [r["click"] for r in rows[:4]] == [0, 1, 2, 3]
    assert [(r["case"], r["method"]) for r in rows[::4]] == [
        ("c0", "a"),
        ("c0", "b"),
        ("c1", "a"),
        ("c1", "b"),
    ]
    assert {r["click_type"] for r in rows if r["click"] > 0} <= {"fg", "bg", "none"}
    path = tmp_path / "steps.csv"
    ev.write_csv(rows, path)
    with open(path, newline="") as fh:
        header = next(csv.reader(fh))
    from midseg.evaluation.protocol import USER_FIELDS

    assert tuple(header) == ev.CSV_FIELDS + USER_FIELDS
    back = ev.read_csv(path)
    assert len(back) == len(rows)
    # the fake paints discs at deepest-error clicks, so Dice rises click after click
    d = [r["dice"] for r in back if r["case"] == "c0" and r["method"] == "a"]
    assert d[0] < 0.1 and all(b > a for a, b in zip(d, d[1:]))


def test_same_margin_points_for_every_method():
    cases = _cases(2)
    a, b = FakeMethod("a"), FakeMethod("b")
    ev.run_protocol(cases, [a, b], clicks=1, seed=5, progress=False)
    for pa, pb, case in zip(a.seen_points, b.seen_points, cases):
        np.testing.assert_array_equal(pa, pb)
        want = interior_margin_points(
            case.gt,
            rng=np.random.default_rng(ev.case_seed(5, case.dataset, case.case)),
            spacing=case.spacing,
        )
        np.testing.assert_array_equal(pa, want)
    assert not np.array_equal(a.seen_points[0], a.seen_points[1])  # per-case seeds differ


def test_perfect_mask_stops_clicking():
    case = _cases(1)[0]
    rows = ev.run_protocol([case], [PerfectMethod(case.gt)], clicks=3, progress=False)
    assert [r["click_type"] for r in rows] == ["stage1", "none", "none", "none"]
    assert all(float(r["dice"]) == 1.0 for r in rows)


def test_determinism_apart_from_seconds(tmp_path):
    def once(path):
        rows = ev.run_protocol(
            _cases(2),
            [FakeMethod("a"), ev.PeerMethod("graph-cut")],
            clicks=2,
            seed=1,
            progress=False,
        )
        ev.write_csv(rows, path)
        with open(path, newline="") as fh:  # the raw text, minus the timing columns
            return [{k: v for k, v in r.items() if "seconds" not in k} for r in csv.DictReader(fh)]

    assert once(tmp_path / "1.csv") == once(tmp_path / "2.csv")


def test_noc_and_auc_on_hand_made_sequences():
    d = [0.5, 0.8, 0.86, 0.88, 0.91, 0.95, 0.95, 0.95, 0.96, 0.97, 0.97]
    assert ev.noc(d, 0.85) == 2
    assert ev.noc(d, 0.90) == 4
    assert ev.noc(d, 0.99) == ev.NOC_CAP == 20
    assert ev.noc([0.95] + [0.0] * 10, 0.9) == 0
    assert ev.auc(d) == pytest.approx(np.mean(d))
    assert ev.auc([0.5, 1.0], clicks=3) == pytest.approx((0.5 + 1 + 1 + 1) / 4)
    assert ev.consistent_improvement([0.5, 0.6, 0.6, 0.55, 0.7]) == (2, 4)
    assert ev.consistent_improvement([0.5, 0.6, 0.6], made=[True, False]) == (1, 1)


def test_summary_and_report(tmp_path):
    case = _cases(1)[0]
    rows = ev.run_protocol(
        [case], [FakeMethod("midseg"), ev.PeerMethod("graph-cut")], clicks=2, progress=False
    )
    path = tmp_path / "steps.csv"
    ev.write_csv(rows, path)
    out = ev.write_report([path], tmp_path / "results.md", clicks=2)
    s = {x["method"]: x for x in out["summary"]}
    d = [float(r["dice"]) for r in rows if r["method"] == "midseg"]
    assert s["midseg"]["dice@0"] == pytest.approx(d[0], abs=1e-6)
    assert s["midseg"]["auc"] == pytest.approx(np.mean(d), abs=1e-6)
    text = (tmp_path / "results.md").read_text()
    assert "## Protocol" in text and "graph-cut" in text
    assert (tmp_path / "results" / "dice_toy_2d.png").stat().st_size > 1000
    assert (tmp_path / "results" / "summary.csv").is_file()


def test_cli_parses_and_rejects_bad_input(tmp_path):
    import argparse

    p = argparse.ArgumentParser()
    ev.add_arguments(p)
    args = p.parse_args(["hc18", "--limit", "3", "--extra-model", "x=y.pt"])
    assert args.max_cases == 3 and args.datasets == ["hc18"]
    with pytest.raises(ValueError, match="NAME=PATH"):
        ev._parse_extra(["nonsense"])
    with pytest.raises(ValueError, match="unknown dataset"):
        ev.load_cases("nope")
    with pytest.raises(ValueError, match="unknown peer"):
        ev.make_methods(["midseg", "magic"])


@pytest.mark.data
def test_real_hc18_loads_seeded_subset(shared_data):
    a = ev.load_cases("hc18", data_root=shared_data, hc18_count=5, seed=0)
    b = ev.load_cases("hc18", data_root=shared_data, hc18_count=5, seed=0, max_cases=2)
    assert [c.case for c in a[:2]] == [c.case for c in b]
    c = ev.load_cases("hc18", data_root=shared_data, hc18_count=5, skip_cases=2, max_cases=2)
    assert [x.case for x in c] == [x.case for x in a[2:4]]
    assert all(c.gt.any() and c.image.shape == c.gt.shape for c in a)


@pytest.mark.data
def test_real_brats_slices_hold_the_object(shared_data):
    cases = ev.load_cases(
        "brats-tc-t1c", dims=2, data_root=shared_data, slices_per_case=3, min_pixels=100
    )
    assert len(cases) == 6
    assert all(int(c.gt.sum()) >= 100 for c in cases)
    assert {c.case.split(":")[0] for c in cases} == set(ev.BRATS_TEST_CASES)


def test_report_command_from_csv(tmp_path, capsys):
    rows = ev.run_protocol(_cases(1), [FakeMethod("midseg")], clicks=1, progress=False)
    ev.write_csv(rows, tmp_path / "a.csv")
    status = ev.main(
        ["--from-csv", str(tmp_path / "a.csv"), "--report", str(tmp_path / "r.md"), "--clicks", "1"]
    )
    assert status == 0 and (tmp_path / "r.md").is_file()
    assert (
        ev.main(["--from-csv", str(tmp_path / "missing.csv"), "--report", str(tmp_path / "r.md")])
        == 1
    )
    assert "no such results file" in capsys.readouterr().err


def test_report_targets_compare_encodings_on_unseen_sets(tmp_path):
    cases = [ev.Case("hc18", c.case, c.image, c.gt, c.spacing) for c in _cases(2)]
    methods = [
        PerfectMethod(cases[0].gt, "midseg"),
        FakeMethod("euclidean"),
        FakeMethod("gaussian"),
        FakeMethod("egd-30ep"),
        FakeMethod("bbox-none"),
    ]
    rows = []
    for case in cases:  # PerfectMethod knows one gt: give it each case's own
        methods[0].gt = case.gt
        rows += ev.run_protocol([case], methods, clicks=1, progress=False)
    path = tmp_path / "steps.csv"
    ev.write_csv(rows, path)
    targets = {
        (t["target"], t["dataset"]): t
        for t in ev.write_report([path], tmp_path / "r.md", clicks=1)["targets"]
    }
    main = targets[("midseg (shipped model) beats ≥ 2 single-cue models at stage 1", "hc18 (2D)")]
    assert main["reached"] and "euclidean" in main["result"] and "gaussian" in main["result"]
    # the like-for-like control ties the others (same fake): a tie is not a win
    assert not targets[("EGD (egd-30ep) beats ≥ 2 other encodings at stage 1", "hc18 (2D)")][
        "reached"
    ]
    assert targets[("midseg's cue beats bounding-box-only (bbox-none) at stage 1", "hc18 (2D)")][
        "reached"
    ]


def test_paired_differences_on_hand_made_rows():
    def rows(method, dice0, dice1):
        out = []
        for i, (a, b) in enumerate(zip(dice0, dice1)):
            for k, d in ((0, a), (1, b)):
                out.append(
                    {
                        "dataset": "hc18",
                        "dims": "2",
                        "case": f"c{i}",
                        "method": method,
                        "click": str(k),
                        "dice": str(d),
                    }
                )
        return out

    r = (
        rows("midseg", [0.9, 0.8, 0.7, 0.6], [0.95, 0.9, 0.8, 0.7])
        + rows("euclidean", [0.8, 0.8, 0.8, 0.5], [0.9, 0.9, 0.9, 0.9])
        + rows("midseg-gc", [0.9, 0.8, 0.7, 0.6], [0.9, 0.9, 0.7, 0.7])
        + rows("graph-cut", [0.1, 0.1, 0.1, 0.1], [0.2, 0.2, 0.2, 0.2])
    )  # a peer: skipped
    got = {(p["other"], p["click"]): p for p in ev.paired_differences(r, clicks=1)}
    assert set(got) == {("euclidean", 0), ("midseg-gc", 1)}
    e = got[("euclidean", 0)]  # stage 1: differences +10, 0, -10, +10 points
    assert e["n"] == 4 and e["mean"] == pytest.approx(2.5)
    assert e["better"] == 2 and e["worse"] == 1
    assert e["low"] <= e["mean"] <= e["high"] and e["low"] < 0 < e["high"]
    g = got[("midseg-gc", 1)]  # after 1 click: +5, 0, +10, 0 points
    assert g["mean"] == pytest.approx(3.75) and (g["better"], g["worse"]) == (2, 0)
    assert g["low"] >= 0
    # deterministic
    assert ev.paired_differences(r, clicks=1) == ev.paired_differences(r, clicks=1)


def test_run_record_names_the_code_version():
    from pathlib import Path

    v = ev._code_version()
    assert v.startswith("midseg ")
    if (Path(ev.__file__).resolve().parents[1] / ".git").exists():
        assert "commit " in v


def test_extra_model_origin_reads_the_card_from_new_and_old_run_records(tmp_path):
    import json

    card = {
        "cue": "gaussian",
        "command": "midseg train --cue gaussian",
        "validation": {"dice": 0.8},
    }
    (tmp_path / "enc model.json").write_text(json.dumps(card))
    pt = tmp_path / "enc model.pt"
    new = [
        {
            "models": {"enc": f"{pt} (sha256 0123456789ab)"},
            "model_cards": {"enc": str(tmp_path / "enc model.json")},
        }
    ]
    old = [{"models": {"enc": f"{pt} (sha256 0123456789ab)"}}]
    want = " Cue `gaussian`; trained by `midseg train --cue gaussian`; held-out Dice 0.800."
    assert ev._extra_model_origin("enc", new) == want
    assert ev._extra_model_origin("enc", old) == want
    assert ev._extra_model_origin("other", new) == ""
    card["training"] = {
        "initialised_from": {"model": "r1/enc.pt", "command": "midseg train --x"},
        "weights_from_iteration": 0,
    }
    (tmp_path / "enc model.json").write_text(json.dumps(card))
    assert ev._extra_model_origin("enc", new) == (
        " Cue `gaussian`; trained by `midseg train --cue gaussian`, fine-tuned from `r1/enc.pt`"
        " (itself trained by `midseg train --x`); the last run kept its starting weights (no"
        " iteration beat them); held-out Dice 0.800."
    )
    card["lineage"] = [
        {"round": 1, "command": "midseg train --a"},
        {"round": 2, "command": "midseg train --b"},
    ]
    (tmp_path / "enc model.json").write_text(json.dumps(card))
    assert ev._extra_model_origin("enc", new) == (
        " Cue `gaussian`; trained in 2 runs, each fine-tuning the one before: (1) `midseg train"
        " --a`; (2) `midseg train --b`; the last run kept its starting weights (no iteration"
        " beat them); held-out Dice 0.800."
    )
    del card["lineage"]
    card["training"]["weights_from_iteration"] = 50
    (tmp_path / "enc model.json").write_text(json.dumps(card))
    assert "starting weights" not in ev._extra_model_origin("enc", new)
    (tmp_path / "enc model.json").unlink()
    assert ev._extra_model_origin("enc", new) == ""


def test_plot_styles_give_every_curve_its_own_colour_and_known_methods_a_fixed_one():
    extras = ["bbox-none", "egd-30ep", "euclidean", "gaussian", "geodesic-cue", "x", "y"]
    methods = ev._order(list(ev.METHOD_NAMES) + extras)
    styles = ev._plot_styles(methods)
    assert set(styles) == set(methods)
    colours = [c for c, _, _ in styles.values()]
    assert len(set(colours)) == len(colours)
    # a known method looks the same whatever else is plotted beside it
    assert ev._plot_styles(["midseg", "graph-cut"]) == {
        "midseg": styles["midseg"],
        "graph-cut": styles["graph-cut"],
    }
    assert styles["midseg"][1] == "-" and styles["graph-cut"][1] == "--"
    assert all(styles[e][1] == "-." for e in extras)


def test_losses_print_enough_digits_to_tell_a_near_tie_apart():
    from midseg.evaluate import _losses

    nan = float("nan")
    base = {"dice@0": nan, "dice@3": nan, "dice@10": nan, "noc90": nan, "assd@10": nan}
    by = {
        ("ds", 2, "midseg"): dict(base, **{"dice@10": 0.948060, "noc90": 2.0}),
        ("ds", 2, "peer"): dict(base, **{"dice@10": 0.948100, "noc90": 1.5}),
        ("ds", 2, "worse"): dict(base, **{"dice@10": 0.90, "noc90": 3.0}),
    }
    lines = _losses(by, [("ds", 2)], 10)
    assert lines == [
        "- ds (2D), Dice after 10 clicks: midseg 94.806 is beaten by peer 94.810.",
        "- ds (2D), NoC@90: midseg 2.00 is beaten by peer 1.50.",
    ]


@pytest.mark.data
def test_dev_unseen_objects_load_as_cases(shared_data):
    from midseg.datasets import DEV_UNSEEN

    names = ["spinal_cord_mr/t2s", "spect_liver_lesions/scan002_lesion2"]
    for dims in (2, 3):
        cases = ev.load_cases("dev-unseen", dims=dims, data_root=shared_data, objects=names)
        assert [c.case.split(":")[0] for c in cases] == names
        for c in cases:
            assert c.dims == dims and c.gt.shape == c.image.shape and c.gt.any()
            assert c.image.dtype == np.float32 and len(c.spacing) == dims
            # the crop keeps a margin around the object on every side that has room
            nz = np.argwhere(c.gt)
            assert (nz.min(0) > 0).all() or c.gt.shape[0] < 12
    assert len({o.name for o in DEV_UNSEEN}) == len(DEV_UNSEEN) == 16
    with pytest.raises(InvalidInputError, match="unknown dev_unseen object"):
        ev.load_cases("dev-unseen", dims=3, data_root=shared_data, objects=["liver"])
    with pytest.raises(InvalidInputError, match="dev-unseen objects"):
        ev.load_cases("hc18", data_root=shared_data, objects=["x"])


def test_evaluate_module_is_the_evaluation_package():
    """`midseg.evaluate` (older name) and `midseg.evaluation` hand out the same objects."""
    import midseg.evaluation as pkg
    import midseg.metrics as metrics

    for name in ev.__all__:
        assert getattr(ev, name) is getattr(pkg, name), name
    assert ev.noc is metrics.noc and ev.auc is metrics.auc
    assert ev.consistent_improvement is metrics.consistent_improvement
    assert isinstance(ev.PeerMethod("graph-cut"), pkg.Method)
    assert isinstance(ev.SessionMethod("midseg"), pkg.Method)
    assert isinstance(FakeMethod(), pkg.Method)
    assert not isinstance(object(), pkg.Method)


def test_development_targets_follow_issue_17():
    from midseg.evaluation.targets import _development_targets

    mid = {
        "n": 4,
        "clicks_made": 40,
        "harmful_clicks_2pt": 0.025,
        **{f"dice@{k}": 0.80 + 0.01 * k for k in range(11)},
    }
    rw = {"n": 4, **{f"dice@{k}": 0.70 + 0.025 * k for k in range(11)}}  # ahead from k = 7
    out = {
        t["target"]: t for t in _development_targets("dev (3D)", 3, mid, {"random-walker": rw}, 10)
    }
    assert out["Dice after 3 clicks ≥ 85 %"]["reached"] is False  # 83 %
    assert out["Dice after 5 clicks ≥ 88 %"]["reached"] is False  # 85 %
    assert out["clicks lowering Dice by > 2 points ≤ 2 %"]["reached"] is False
    walker = out["Dice ≥ random-walker at every click count 1-10"]
    assert walker["reached"] is False and "[7, 8, 9, 10]" in walker["result"]
    mid.update({"dice@3": 0.86, "dice@5": 0.9, "harmful_clicks_2pt": 0.0, "dice@10": 0.95})
    rw = {"n": 4, **{f"dice@{k}": 0.70 + 0.01 * k for k in range(11)}}
    out = {
        t["target"]: t for t in _development_targets("dev (3D)", 3, mid, {"random-walker": rw}, 10)
    }
    assert all(t["reached"] for t in out.values())
    two_d = _development_targets("dev (2D)", 2, mid, {}, 10)
    assert [t["target"] for t in two_d][0] == "Dice after 3 clicks ≥ 95 %"
