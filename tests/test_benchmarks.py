"""The benchmark scripts that need no data still run (they are not timed here)."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _script(name):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_synthetic_dev_scores_every_kind_with_the_same_shapes(capsys):
    import midseg.models as mm

    dev = _script("synthetic_dev")
    model = mm.load_model("2d", device="cpu")
    res = dev.evaluate({"a": model, "b": model}, 2, 2)
    assert set(res) == {(m, k) for m in "ab" for k in dev.KINDS}
    for kind in dev.KINDS:
        assert len(res[("a", kind)]) == 2 and all(0.0 <= d <= 1.0 for d in res[("a", kind)])
        assert res[("a", kind)] == res[("b", kind)]  # same shapes, same points
    assert dev.main(["--models", "2d", "--dims", "2", "--count", "1", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "| 2d |" in out and all(k in out for k in dev.KINDS)
    with pytest.raises(SystemExit):
        dev.main(["--models", "2d", "--dims", "3", "--count", "1"])  # a 2D model


def test_masked_kind_keeps_only_the_object():
    dev = _script("synthetic_dev")
    image = np.arange(16, dtype=np.float32).reshape(4, 4)
    mask = np.zeros((4, 4), bool)
    mask[1:3, 1:3] = True
    out = dev._masked(image, mask)
    assert (out[~mask] == 0).all()
    assert out[mask].mean() == pytest.approx(0.0, abs=1e-6)
    assert out[mask].std() == pytest.approx(1.0, abs=1e-5)


def test_refine_benchmark_runs_with_every_installed_geodesic_backend(capsys):
    # GeodisTK has no additive step cost: the click-local rows must use numba only
    bench = _script("refine")
    bench.main(["--repeats-2d", "1", "--repeats-3d", "1"])
    out = capsys.readouterr().out
    assert "ifgc (click-local, default)" in out and "ifgc-global" in out


def test_stage1_benchmark_checks_tasks_and_data_before_any_work(tmp_path, capsys, monkeypatch):
    stage1 = _script("stage1")
    # a wrong task name stops before a model is loaded or a task runs
    monkeypatch.setattr(stage1, "evaluate", lambda *a, **k: pytest.fail("ran a task"))
    assert stage1.main(["--tasks", "tc2d,nosuch", "--models", "no-such-model"]) == 2
    assert "unknown task(s) ['nosuch']" in capsys.readouterr().err
    missing = tmp_path / "nothing"
    assert stage1.main(["--tasks", "hc18", "--data", str(missing)]) == 1
    assert f"data folder {missing} not found" in capsys.readouterr().err
    monkeypatch.setenv("MIDSEG_DATA", str(missing))  # the default root honours it
    assert _script("stage1").DATA == missing
    only_hc = tmp_path / "only_hc18"
    (only_hc / "hc18").mkdir(parents=True)
    monkeypatch.undo()  # the real evaluate: the task stops at the missing BraTS folder
    stage1 = _script("stage1")
    assert stage1.main(["--tasks", "tc2d", "--models", "2d", "--data", str(only_hc)]) == 1
    assert "stage1: error: BraTS data not found" in capsys.readouterr().err
    (only_hc / "hc18" / "images").mkdir()  # an empty image folder
    assert stage1.main(["--tasks", "hc18", "--models", "2d", "--data", str(only_hc)]) == 1
    assert "no hc18 images" in capsys.readouterr().err
    case = only_hc / "brats2013" / "brats_2013_pat0001_1"
    case.mkdir(parents=True)  # a case folder without its files
    assert stage1.main(["--tasks", "tc2d", "--models", "2d", "--data", str(only_hc)]) == 1
    assert "stage1: error:" in capsys.readouterr().err
