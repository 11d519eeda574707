"""Batch replay: manifest, summary, failures recorded, kill + resume, Dask, `midseg segment`."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

import midseg  # noqa: E402
from midseg import batch, cli  # noqa: E402
from test_session import margin_points, phantom, write_tiny_model  # noqa: E402

N_CASES = 6


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    """Six 3D cases (image, clicks, ground truth) made with a tiny model, plus a manifest."""
    root = tmp_path_factory.mktemp("batch")
    model = write_tiny_model(root, 3)
    image, truth = phantom(3)
    rows = []
    for k in range(N_CASES):
        img = image.with_array(np.roll(image.array, k, axis=2))
        gt = np.roll(truth, k, axis=2)
        midseg.write_image(root / f"case{k}.nii.gz", img)
        midseg.write_mask(root / f"case{k}.gt.nii.gz", gt, like=img)
        s = midseg.Session(img, model=model)
        s.segment(margin_points(gt))
        inside = np.argwhere(gt)
        s.refine(foreground=[tuple(inside[len(inside) // 2])])
        s.save_clicks(root / f"case{k}.clicks.json")
        rows.append({"image": f"case{k}.nii.gz", "clicks": f"case{k}.clicks.json",
                     "ground_truth": f"case{k}.gt.nii.gz"})
    manifest = root / "manifest.csv"
    with manifest.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["image", "clicks", "ground_truth"])
        w.writeheader()
        w.writerows(rows)
    return root, manifest, model


def _summary(out):
    with (out / "summary.csv").open() as fh:
        return list(csv.DictReader(fh))


def test_batch_writes_masks_and_summary(cases, tmp_path):
    root, manifest, model = cases
    out = tmp_path / "out"
    res = batch.run_batch(manifest, out, workers=1, model=str(model), progress=False)
    assert res == {"done": N_CASES, "failed": 0, "skipped": 0, "summary": str(out / "summary.csv")}
    rows = _summary(out)
    assert [r["case"] for r in rows] == [f"case{k}" for k in range(N_CASES)]
    for r in rows:
        assert r["status"] == "ok" and r["rounds"] == "1" and float(r["dice"]) > 0
        assert float(r["assd"]) >= 0 and Path(r["mask"]).is_file()
    # the mask equals an in-process replay
    img = midseg.read_image(root / "case2.nii.gz")
    s = midseg.Session.from_clicks(root / "case2.clicks.json", img, model=model)
    assert np.array_equal(midseg.read_image(rows[2]["mask"]).array, s.mask)
    # re-running does nothing
    again = batch.run_batch(manifest, out, workers=1, model=str(model), progress=False)
    assert again["skipped"] == N_CASES and again["done"] == 0


def test_one_failing_case_is_recorded_and_the_rest_go_on(cases, tmp_path):
    root, manifest, model = cases
    bad = tmp_path / "manifest.csv"
    lines = ["image,clicks,ground_truth"] + [
        f"{root / f'case{k}.nii.gz'},{root / f'case{k}.clicks.json'},{root / f'case{k}.gt.nii.gz'}"
        for k in range(N_CASES)]
    lines.insert(2, f"{root / 'missing.nii.gz'},{root / 'case0.clicks.json'},")
    bad.write_text("\n".join(lines) + "\n")
    res = batch.run_batch(bad, tmp_path / "out", workers=1, model=str(model), progress=False)
    assert res["failed"] == 1 and res["done"] == N_CASES
    failed = [r for r in _summary(tmp_path / "out") if r["status"] == "failed"]
    assert failed[0]["case"] == "missing" and "no such file" in failed[0]["error"]


def test_kill_and_resume(cases, tmp_path):
    root, manifest, model = cases
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "midseg.cli", "batch", str(manifest), "--out", str(out),
           "--workers", "1", "--model", str(model), "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    records = out / "cases"
    while time.time() < deadline:
        done = list(records.glob("case*.json")) if records.is_dir() else []
        if len(done) >= 2:
            break
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = {p.name: p.stat().st_mtime_ns for p in records.glob("case*.json")}
    assert 2 <= len(done_before), "batch made no progress before the kill"

    res = batch.run_batch(manifest, out, workers=1, model=str(model), progress=False)
    assert res["skipped"] == len(done_before)
    assert res["done"] == N_CASES - len(done_before) and res["failed"] == 0
    for name, mtime in done_before.items():  # finished cases were not redone
        assert (records / name).stat().st_mtime_ns == mtime
    assert len(_summary(out)) == N_CASES
    assert len(done_before) < N_CASES, "the kill came after the end: no resume was exercised"


def test_dask_local_cluster(cases, tmp_path):
    distributed = pytest.importorskip("distributed")
    root, manifest, model = cases
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster:
        res = batch.run_batch(manifest, tmp_path / "out", scheduler=cluster.scheduler_address,
                              model=str(model), progress=False)
    assert res["done"] == N_CASES and res["failed"] == 0
    local = tmp_path / "local"
    batch.run_batch(manifest, local, workers=1, model=str(model), progress=False)
    for k in range(N_CASES):
        a = midseg.read_image(tmp_path / "out" / "masks" / f"case{k}.mask.nii.gz").array
        b = midseg.read_image(local / "masks" / f"case{k}.mask.nii.gz").array
        assert np.array_equal(a, b)


def test_segment_command(cases, tmp_path, capsys):
    root, manifest, model = cases
    out = tmp_path / "m.nii.gz"
    status = cli.main(["segment", str(root / "case1.nii.gz"), "--clicks",
                       str(root / "case1.clicks.json"), "-o", str(out), "--model", str(model),
                       "--ground-truth", str(root / "case1.gt.nii.gz")])
    assert status == 0 and out.is_file()
    assert "Dice" in capsys.readouterr().out
    status = cli.main(["segment", str(root / "case1.nii.gz"), "--clicks",
                       str(root / "case2.clicks.json"), "-o", str(out), "--model", str(model)])
    # case2's clicks were made on a shifted image with the same geometry: allowed
    assert status == 0
    status = cli.main(["segment", str(root / "nope.nii.gz"), "--clicks",
                       str(root / "case1.clicks.json"), "-o", str(out)])
    err = capsys.readouterr().err
    assert status == 1 and "no such file" in err and err.count("\n") == 1


def test_manifest_errors(tmp_path):
    bad = tmp_path / "m.csv"
    bad.write_text("img,clk\na,b\n")
    with pytest.raises(ValueError, match=r"lacks the column\(s\) \['clicks', 'image'\]"):
        batch.read_manifest(bad)
    bad.write_text("image,clicks\na.nii,b.json\na.nii,c.json\n")
    with pytest.raises(ValueError, match="duplicate case name 'a'"):
        batch.read_manifest(bad)


def test_segment_and_batch_with_a_co_registered_second_image(tmp_path, capsys):
    """PET/CT: the second image on a coarser grid is read onto the first one's grid."""
    model = write_tiny_model(tmp_path, 3, channels=2)
    image, truth = phantom(3)
    midseg.write_image(tmp_path / "ct.nii.gz", image)
    coarse = image.with_array(image.array[:, ::2, ::2].copy())
    coarse = midseg.Image(coarse.array, spacing=(image.spacing[0], 2 * image.spacing[1],
                                                 2 * image.spacing[2]),
                          origin=image.origin, direction=image.direction)
    midseg.write_image(tmp_path / "pet.nii.gz", coarse)
    both = midseg.read_image(tmp_path / "ct.nii.gz", tmp_path / "pet.nii.gz")
    s = midseg.Session(both, model=model)
    s.segment(margin_points(truth))
    s.save_clicks(tmp_path / "c.clicks.json")
    out = tmp_path / "m.nii.gz"
    assert cli.main(["segment", str(tmp_path / "ct.nii.gz"), "--with", str(tmp_path / "pet.nii.gz"),
                     "--clicks", str(tmp_path / "c.clicks.json"), "-o", str(out),
                     "--model", str(model)]) == 0
    np.testing.assert_array_equal(midseg.read_mask(out), s.mask)
    # without the second image the 2-channel model refuses: a one-line error
    assert cli.main(["segment", str(tmp_path / "ct.nii.gz"), "--clicks",
                     str(tmp_path / "c.clicks.json"), "-o", str(out), "--model",
                     str(model)]) == 1
    assert "channels 1 vs 2" in capsys.readouterr().err
    (tmp_path / "m.csv").write_text("image,clicks,co_registered\n"
                                    "ct.nii.gz,c.clicks.json,pet.nii.gz\n")
    res = batch.run_batch(tmp_path / "m.csv", tmp_path / "out", workers=1, model=str(model),
                          progress=False)
    assert res["done"] == 1 and res["failed"] == 0
    np.testing.assert_array_equal(
        midseg.read_mask(tmp_path / "out" / "masks" / "ct.mask.nii.gz"), s.mask)
