"""Batch replay: manifest, summary, failures recorded, kill + resume, Dask, `midseg segment`;
bad inputs and faults: unsafe case names, unreadable manifests, stale results, dying workers."""

from __future__ import annotations

import csv
import json
import os
import re
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
from midseg.batch import records, runner  # noqa: E402
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
        rows.append(
            {
                "image": f"case{k}.nii.gz",
                "clicks": f"case{k}.clicks.json",
                "ground_truth": f"case{k}.gt.nii.gz",
            }
        )
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


def test_one_failing_case_is_recorded_and_the_rest_go_on(cases, tmp_path):  # B03
    root, manifest, model = cases
    bad = tmp_path / "manifest.csv"
    lines = ["image,clicks,ground_truth"] + [
        f"{root / f'case{k}.nii.gz'},{root / f'case{k}.clicks.json'},{root / f'case{k}.gt.nii.gz'}"
        for k in range(N_CASES)
    ]
    lines.insert(2, f"{root / 'missing.nii.gz'},{root / 'case0.clicks.json'},")
    bad.write_text("\n".join(lines) + "\n")
    res = batch.run_batch(bad, tmp_path / "out", workers=1, model=str(model), progress=False)
    assert res["failed"] == 1 and res["done"] == N_CASES
    failed = [r for r in _summary(tmp_path / "out") if r["status"] == "failed"]
    assert failed[0]["case"] == "missing" and "no such file" in failed[0]["error"]


def test_kill_and_resume(cases, tmp_path):
    root, manifest, model = cases
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "midseg.cli",
        "batch",
        str(manifest),
        "--out",
        str(out),
        "--workers",
        "1",
        "--model",
        str(model),
        "--no-progress",
    ]
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


def test_worker_processes_print_warnings_as_the_command_does(cases, tmp_path):
    root, manifest, model = cases
    rows = []
    for k in range(2):  # two clicks files of version 7: replayed with a warning each
        doc = json.loads((root / f"case{k}.clicks.json").read_text())
        doc["version"] = 7
        doc["parameters"].pop("thick_slice_ratio", None)
        (tmp_path / f"v7_{k}.clicks.json").write_text(json.dumps(doc))
        rows.append(f"{root / f'case{k}.nii.gz'},{tmp_path / f'v7_{k}.clicks.json'}")
    m = tmp_path / "m.csv"
    m.write_text("image,clicks\n" + "\n".join(rows) + "\n")
    cmd = [sys.executable, "-m", "midseg.cli", "batch", str(m), "--out", str(tmp_path / "out"),
           "--workers", "2", "--model", str(model), "--no-progress"]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if "clicks file version 7" in ln]
    assert len(lines) == 2, proc.stderr
    assert all(ln.startswith("midseg batch: warning: ") for ln in lines)
    assert "OlderClicksWarning" not in proc.stderr


def test_dask_local_cluster(cases, tmp_path):
    distributed = pytest.importorskip("distributed")
    root, manifest, model = cases
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster:
        res = batch.run_batch(
            manifest,
            tmp_path / "out",
            scheduler=cluster.scheduler_address,
            model=str(model),
            progress=False,
        )
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
    status = cli.main(
        [
            "segment",
            str(root / "case1.nii.gz"),
            "--clicks",
            str(root / "case1.clicks.json"),
            "-o",
            str(out),
            "--model",
            str(model),
            "--ground-truth",
            str(root / "case1.gt.nii.gz"),
        ]
    )
    assert status == 0 and out.is_file()
    assert "Dice" in capsys.readouterr().out
    status = cli.main(
        [
            "segment",
            str(root / "case1.nii.gz"),
            "--clicks",
            str(root / "case2.clicks.json"),
            "-o",
            str(out),
            "--model",
            str(model),
        ]
    )
    # case2's clicks were made on a shifted image with the same geometry: allowed
    assert status == 0
    status = cli.main(
        [
            "segment",
            str(root / "nope.nii.gz"),
            "--clicks",
            str(root / "case1.clicks.json"),
            "-o",
            str(out),
        ]
    )
    err = capsys.readouterr().err
    assert status == 1 and "no such file" in err and err.count("\n") == 1


def test_manifest_errors(tmp_path):  # B01, B05
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
    coarse = midseg.Image(
        coarse.array,
        spacing=(image.spacing[0], 2 * image.spacing[1], 2 * image.spacing[2]),
        origin=image.origin,
        direction=image.direction,
    )
    midseg.write_image(tmp_path / "pet.nii.gz", coarse)
    both = midseg.read_image(tmp_path / "ct.nii.gz", tmp_path / "pet.nii.gz")
    s = midseg.Session(both, model=model)
    s.segment(margin_points(truth))
    s.save_clicks(tmp_path / "c.clicks.json")
    out = tmp_path / "m.nii.gz"
    assert (
        cli.main(
            [
                "segment",
                str(tmp_path / "ct.nii.gz"),
                "--with",
                str(tmp_path / "pet.nii.gz"),
                "--clicks",
                str(tmp_path / "c.clicks.json"),
                "-o",
                str(out),
                "--model",
                str(model),
            ]
        )
        == 0
    )
    np.testing.assert_array_equal(midseg.read_mask(out), s.mask)
    # without the second image the 2-channel model refuses: a one-line error
    assert (
        cli.main(
            [
                "segment",
                str(tmp_path / "ct.nii.gz"),
                "--clicks",
                str(tmp_path / "c.clicks.json"),
                "-o",
                str(out),
                "--model",
                str(model),
            ]
        )
        == 1
    )
    assert "channels 1 vs 2" in capsys.readouterr().err
    (tmp_path / "m.csv").write_text(
        "image,clicks,co_registered\nct.nii.gz,c.clicks.json,pet.nii.gz\n"
    )
    res = batch.run_batch(
        tmp_path / "m.csv", tmp_path / "out", workers=1, model=str(model), progress=False
    )
    assert res["done"] == 1 and res["failed"] == 0
    np.testing.assert_array_equal(
        midseg.read_mask(tmp_path / "out" / "masks" / "ct.mask.nii.gz"), s.mask
    )


# ---------------------------------------------------------------------------
# Bad inputs and faults (report rows B01-B23, multi-label / empty ground truth, dying workers)
# ---------------------------------------------------------------------------


def _manifest(path, header, *rows, encoding="utf-8"):
    """Write a manifest from a header list and rows of values; returns the path."""
    with open(path, "w", newline="", encoding=encoding) as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def _case_row(root, k, name=None, gt=True):
    row = [str(root / f"case{k}.nii.gz"), str(root / f"case{k}.clicks.json")]
    row.append(str(root / f"case{k}.gt.nii.gz") if gt else "")
    if name is not None:
        row.append(name)
    return row


def _strict_json(path):
    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    return json.loads(Path(path).read_text(), parse_constant=refuse)


@pytest.mark.parametrize(
    "name, message",
    [
        ("../../escaped", "has a '..' component"),  # B06
        ("a/../../escaped", "has a '..' component"),
        ("..\\..\\escaped", "has a '..' component"),
        ("/tmp/escaped", "is an absolute path"),  # B07
        ("\\\\server\\share\\x", "is an absolute path"),
        ("C:\\escaped", "is an absolute path"),
        ("c:escaped", "is an absolute path"),
        ("./", "is empty as a file name"),
        ("a\x00b", "control character '\\x00'"),
        ("a\nb", "control character '\\n'"),
        ("a\x1bb", "control character '\\x1b'"),
    ],
)
def test_unsafe_case_names_are_refused_naming_the_line(tmp_path, name, message):
    m = _manifest(
        tmp_path / "m.csv",
        ["image", "clicks", "case"],
        ["a.nii.gz", "a.json", "fine"],
        ["b.nii.gz", "b.json", name],
    )
    with pytest.raises(midseg.errors.InvalidInputError) as exc:
        batch.read_manifest(m)
    text = str(exc.value)
    if "\x00" in name:  # a NUL byte: not a text file at all
        message = "is not a text CSV file: NUL byte on line 3"
    assert message in text and f"manifest {str(m)!r}" in text and "line 3" in text
    assert "\n" not in text
    with pytest.raises(midseg.errors.InvalidInputError, match="case name"):
        batch.Case(name, "a.nii.gz", "a.json")  # the API refuses it too


def test_missing_clicks_file_fails_its_case(cases, tmp_path):  # B04
    root, manifest, model = cases
    m = _manifest(
        tmp_path / "m.csv",
        ["image", "clicks"],
        [str(root / "case0.nii.gz"), str(tmp_path / "nope.clicks.json")],
        _case_row(root, 1)[:2],
    )
    res = batch.run_batch(m, tmp_path / "out", workers=1, model=str(model), progress=False)
    assert res["done"] == 1 and res["failed"] == 1
    row = _summary(tmp_path / "out")[0]
    assert row["status"] == "failed" and "no such clicks file" in row["error"]


def test_case_name_taken_from_an_unusable_image_name_says_so(tmp_path):
    m = _manifest(tmp_path / "m.csv", ["image", "clicks"], [".nii.gz", "a.json"])
    with pytest.raises(
        ValueError,
        match=r"line 2: case name '' is empty as a file name "
        r"\(taken from the image file name: set a case column\)",
    ):
        batch.read_manifest(m)


@pytest.mark.parametrize(
    "first, second",
    [
        ("pat", "./pat"),  # B08
        ("sub/x", "sub//./x"),
        ("sub/x", "sub\\x"),
        ("Pat", "pat"),  # one file on Windows and macOS
        ("pat", "pat."),  # Windows drops trailing dots and spaces
        ("caf\u00e9", "cafe\u0301"),  # NFC and NFD: one file on macOS
    ],
)
def test_names_of_the_same_files_are_duplicates(tmp_path, first, second):
    m = _manifest(
        tmp_path / "m.csv",
        ["image", "clicks", "case"],
        ["a.nii.gz", "a.json", first],
        ["b.nii.gz", "b.json", second],
    )
    with pytest.raises(
        ValueError,
        match=rf"line 3: duplicate case name {re.escape(repr(second))}"
        rf"( \(same file names as {re.escape(repr(first))} on "
        r"line 2\))?$",
    ):
        batch.read_manifest(m)


@pytest.mark.parametrize(
    "first, second, file",
    [
        ("a", "a.json/b", "cases/a.json"),
        ("A.mask.nii.gz/b", "a", "masks/a.mask.nii.gz"),
    ],
)
def test_a_case_file_cannot_be_another_case_folder(tmp_path, first, second, file):
    m = _manifest(
        tmp_path / "m.csv",
        ["image", "clicks", "case"],
        ["a.nii.gz", "a.json", first],
        ["b.nii.gz", "b.json", second],
    )
    line, other, other_line = (2, second, 3) if first == "a" else (3, first, 2)
    with pytest.raises(
        ValueError,
        match=re.escape(
            f"line {line}: case name 'a' needs the file {file!r}, which case {other!r} on line "
            f"{other_line} needs as a folder"
        ),
    ):
        batch.read_manifest(m)


def test_case_names_are_normalised_and_slashes_make_subfolders(cases, tmp_path):
    root, manifest, model = cases
    m = _manifest(
        tmp_path / "m.csv",
        ["image", "clicks", "ground_truth", "case"],
        _case_row(root, 0, "./sub//dir/x"),
        _case_row(root, 1, "sub\\y"),
    )
    assert [c.case for c in batch.read_manifest(m)] == ["sub/dir/x", "sub/y"]
    out = tmp_path / "out"
    res = batch.run_batch(m, out, workers=1, model=str(model), progress=False)
    assert res["done"] == 2  # B09
    assert (out / "masks" / "sub" / "dir" / "x.mask.nii.gz").is_file()
    assert (out / "cases" / "sub" / "y.json").is_file()
    assert [r["case"] for r in _summary(out)] == ["sub/dir/x", "sub/y"]


def test_traversal_writes_nothing_outside_out(cases, tmp_path, capsys):
    root, manifest, model = cases
    run = tmp_path / "run"
    m = _manifest(
        tmp_path / "m.csv",
        ["image", "clicks", "case"],
        _case_row(root, 0, "../../escaped", gt=False)[:2] + ["../../escaped"],
    )
    status = cli.main(
        ["batch", str(m), "--out", str(run / "a" / "out"), "--model", str(model), "--no-progress"]
    )
    err = capsys.readouterr().err
    assert status == 1 and err.count("\n") == 1 and "'..' component" in err
    assert not run.exists()  # refused before anything is written


def test_manifest_with_a_byte_order_mark_reads(tmp_path):  # B11
    m = _manifest(
        tmp_path / "m.csv",
        ["image", "clicks", "case"],
        ["a.nii.gz", "a.json", "x"],
        encoding="utf-8-sig",
    )
    assert m.read_bytes().startswith(b"\xef\xbb\xbf")
    (case,) = batch.read_manifest(m)
    assert case.case == "x" and case.image == str(tmp_path / "a.nii.gz")


@pytest.mark.parametrize(
    "content, message",
    [
        (
            b"image,clicks\na.nii.gz,b\xffc.json\n",  # B10
            r"is not UTF-8 text: byte 0xff on line 2 \(byte offset 23\)",
        ),
        (
            b"\xef\xbb\xbfimage,clicks\na.nii.gz,\xe9.json\n",
            r"is not UTF-8 text: byte 0xe9 on line 2 \(byte offset 25\)",
        ),
        (
            b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",  # B16
            r"is not a text CSV file: NUL byte on line 3 \(byte offset 8\)",
        ),
        (b"\x9a\x01\x02\x03", r"is not UTF-8 text: byte 0x9a on line 1 \(byte offset 0\)"),
        (
            b'image,clicks,case\na.nii.gz,a.json,"x\nb.nii.gz,b.json,y\n',  # B13
            r"line 2: a quoted field is never closed \(unterminated quote\)",
        ),
        (b'image,clicks\n\n\na.nii.gz,"a"x.json\n', r"line 4: ',' expected after '\"'"),
        (b"image,clicks,image\na,b,c\n", r"has the column\(s\) \['image'\] more than once"),
        (
            b"case,clicks\nx,b\n",  # B01
            r"lacks the column\(s\) \['image'\]; it has \['case', 'clicks'\]",
        ),
        (b"", r"lacks the column\(s\) \['clicks', 'image'\]; it has \[\]"),
        (b"image,clicks\n", "lists no cases"),  # B02
        (b"image,clicks,case\na.nii.gz\n", "line 2: image and clicks are required"),  # B14
        (
            b"image,clicks,ground_truth,label\na,b,c,two\n",
            "line 2: label must be a nonzero integer, got 'two'",
        ),
        (
            b"image,clicks,ground_truth,label\na,b,c,0\n",
            "line 2: label must be a nonzero integer, got 0",
        ),
        (b"image,clicks,ground_truth,label\na,b,,2\n", "line 2: a label needs a ground_truth"),
    ],
)
def test_unreadable_manifests_give_one_line_naming_file_and_line(tmp_path, content, message):
    m = tmp_path / "m.csv"
    m.write_bytes(content)
    with pytest.raises(midseg.errors.InvalidInputError) as exc:
        batch.read_manifest(m)
    assert re.search(message, str(exc.value)), str(exc.value)
    assert f"manifest {str(m)!r}" in str(exc.value) and "\n" not in str(exc.value)


def test_manifest_that_is_a_folder_or_missing(tmp_path, capsys):  # B21
    with pytest.raises(ValueError, match=r"manifest '.*' is a folder; expected a CSV file"):
        batch.read_manifest(tmp_path)
    with pytest.raises(ValueError, match="no such manifest"):
        batch.read_manifest(tmp_path / "nope.csv")
    assert cli.main(["batch", str(tmp_path), "--out", str(tmp_path / "o"), "--no-progress"]) == 1
    assert "is a folder" in capsys.readouterr().err


def test_blank_lines_short_and_long_rows(tmp_path):  # B12, B15
    m = tmp_path / "m.csv"
    m.write_text(
        "image,clicks,extra\n\na.nii.gz,a.json,1\n  ,  \n\nb.nii.gz,b.json,2,more,values\n"
    )
    assert [c.case for c in batch.read_manifest(m)] == ["a", "b"]


def test_summary_neutralises_formulas_but_not_file_names(cases, tmp_path):  # B23
    root, manifest, model = cases
    names = ['=HYPERLINK("http://evil.example","x")', "+1", "-2", "@SUM(A1)"]
    m = _manifest(
        tmp_path / "m.csv",
        ["image", "clicks", "ground_truth", "case"],
        *[_case_row(root, k, name, gt=False) for k, name in enumerate(names)],
    )
    out = tmp_path / "out"
    res = batch.run_batch(m, out, workers=1, model=str(model), progress=False)
    assert res["done"] == 4
    want = [batch._case_name(n) for n in names]
    assert [r["case"] for r in _summary(out)] == ["'" + n for n in want]
    for n in want:
        assert (out / "masks" / f"{n}.mask.nii.gz").is_file()
        assert _strict_json(out / "cases" / f"{n}.json")["case"] == n
    assert [batch._csv_cell(v) for v in ("\tx", "\rx", "a=b", 1.5, -1.0, None)] == [
        "'\tx",
        "'\rx",
        "a=b",
        1.5,
        -1.0,
        "",
    ]


def test_changed_inputs_are_computed_again(cases, tmp_path):  # B22
    root, manifest, model = cases
    work = tmp_path / "inputs"
    work.mkdir()
    for name in ("case1.nii.gz", "case1.gt.nii.gz", "case1.clicks.json"):
        (work / name).write_bytes((root / name).read_bytes())
    m = _manifest(
        work / "m.csv",
        ["image", "clicks", "ground_truth"],
        ["case1.nii.gz", "case1.clicks.json", "case1.gt.nii.gz"],
    )
    out = tmp_path / "out"
    mask = out / "masks" / "case1.mask.nii.gz"
    assert batch.run_batch(m, out, workers=1, model=str(model), progress=False)["done"] == 1
    first = midseg.read_mask(mask)
    assert batch.run_batch(m, out, workers=1, model=str(model), progress=False)["skipped"] == 1
    # other clicks (made on a shifted copy with the same geometry): the case runs again
    (work / "case1.clicks.json").write_bytes((root / "case3.clicks.json").read_bytes())
    res = batch.run_batch(m, out, workers=1, model=str(model), progress=False)
    assert res["done"] == 1 and res["skipped"] == 0
    img = midseg.read_image(work / "case1.nii.gz")
    replay = midseg.Session.from_clicks(work / "case1.clicks.json", img, model=model).mask
    np.testing.assert_array_equal(midseg.read_mask(mask), replay)
    assert not np.array_equal(first, replay)
    # another ground truth, another image: again
    (work / "case1.gt.nii.gz").write_bytes((root / "case0.gt.nii.gz").read_bytes())
    assert batch.run_batch(m, out, workers=1, model=str(model), progress=False)["done"] == 1
    (work / "case1.nii.gz").write_bytes((root / "case2.nii.gz").read_bytes())
    assert batch.run_batch(m, out, workers=1, model=str(model), progress=False)["done"] == 1
    # the same weights under another path and name: nothing to do
    other = tmp_path / "weights" / "renamed.pt"
    other.parent.mkdir()
    other.write_bytes(model.read_bytes())
    other.with_suffix(".json").write_bytes(model.with_suffix(".json").read_bytes())
    assert batch.run_batch(m, out, workers=1, model=str(other), progress=False)["skipped"] == 1
    # a deleted mask: again
    mask.unlink()
    assert batch.run_batch(m, out, workers=1, model=str(model), progress=False)["done"] == 1
    record = _strict_json(out / "cases" / "case1.json")
    assert set(record["inputs"]) == {
        "image",
        "co_registered",
        "clicks",
        "ground_truth",
        "label",
        "model_sha256",
    }
    assert Path(record["mask"]).is_absolute()


def test_resume_from_another_working_directory(cases, tmp_path, monkeypatch):
    root, manifest, model = cases
    (tmp_path / "a").mkdir()
    (tmp_path / "b" / "c").mkdir(parents=True)
    _manifest(
        tmp_path / "m.csv",
        ["image", "clicks", "ground_truth"],
        *[_case_row(root, k) for k in range(2)],
    )
    monkeypatch.chdir(tmp_path / "a")
    res = batch.run_batch(
        "../m.csv", "../out", workers=1, model=os.path.relpath(model), progress=False
    )
    assert res["done"] == 2
    monkeypatch.chdir(tmp_path / "b" / "c")
    res = batch.run_batch(
        "../../m.csv", "../../out", workers=1, model=os.path.relpath(model), progress=False
    )
    assert res["skipped"] == 2 and res["done"] == 0
    assert all(Path(r["mask"]).is_file() for r in _summary(tmp_path / "out"))


def _multilabel(root, tmp_path, k=0):
    """case k's ground truth with its lower half relabelled 2."""
    img = midseg.read_image(root / f"case{k}.nii.gz")
    gt = midseg.read_mask(root / f"case{k}.gt.nii.gz").astype(np.int16)
    z = np.argwhere(gt)[:, 0]
    gt[: int(np.median(z))] *= 2
    midseg.write_image(tmp_path / "labels.nii.gz", img.with_array(gt))
    return gt


def test_multi_label_ground_truth_needs_a_label(cases, tmp_path, capsys):
    root, manifest, model = cases
    gt = _multilabel(root, tmp_path)
    labels = str(tmp_path / "labels.nii.gz")
    rows = [_case_row(root, 0)[:2] + [labels], _case_row(root, 1)]
    m = _manifest(tmp_path / "m.csv", ["image", "clicks", "ground_truth"], *rows)
    res = batch.run_batch(m, tmp_path / "out", workers=1, model=str(model), progress=False)
    assert res["failed"] == 1 and res["done"] == 1
    row = _summary(tmp_path / "out")[0]
    assert (
        row["status"] == "failed"
        and "holds 2 labels [1, 2]; choose the object with --label N (manifest column label)"
        in row["error"]
    )
    assert not (tmp_path / "out" / "masks" / "case0.mask.nii.gz").exists()
    # a label column (or --label for the rows without one) picks the object
    m = _manifest(
        tmp_path / "m.csv",
        ["image", "clicks", "ground_truth", "label"],
        rows[0] + ["2"],
        rows[1] + [""],
    )
    assert (
        cli.main(
            [
                "batch",
                str(m),
                "--out",
                str(tmp_path / "out"),
                "--workers",
                "1",
                "--model",
                str(model),
                "--label",
                "1",
                "--no-progress",
            ]
        )
        == 0
    )
    # case1 ran again: its label (from --label) is one of its inputs
    assert capsys.readouterr().out.startswith("2 done, 0 failed, 0 already done")
    img = midseg.read_image(root / "case0.nii.gz")
    mask = midseg.read_mask(tmp_path / "out" / "masks" / "case0.mask.nii.gz")
    assert float(_summary(tmp_path / "out")[0]["dice"]) == pytest.approx(
        midseg.dice(mask, gt == 2), abs=1e-6
    )
    assert batch.read_ground_truth(labels, img, 1).sum() == (gt == 1).sum()
    with pytest.raises(
        ValueError, match=r"label 3 does not occur in ground truth .*; it holds \[1, 2\]"
    ):
        batch.read_ground_truth(labels, img, 3)
    # midseg segment: refused before the replay, then --label
    args = [
        "segment",
        str(root / "case0.nii.gz"),
        "--clicks",
        str(root / "case0.clicks.json"),
        "-o",
        str(tmp_path / "m.nii.gz"),
        "--model",
        str(model),
        "--ground-truth",
        labels,
    ]
    assert cli.main(args) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds 2 labels [1, 2]" in err
    assert not (tmp_path / "m.nii.gz").exists()
    assert cli.main(args + ["--label", "2"]) == 0
    assert "Dice" in capsys.readouterr().out
    assert cli.main(args[:-2] + ["--label", "2"]) == 1
    assert "give --ground-truth" in capsys.readouterr().err


def test_empty_ground_truth_writes_strict_json(cases, tmp_path, capsys):
    root, manifest, model = cases
    img = midseg.read_image(root / "case0.nii.gz")
    midseg.write_mask(tmp_path / "empty.nii.gz", np.zeros(img.shape, np.uint8), like=img)
    m = _manifest(
        tmp_path / "m.csv",
        ["image", "clicks", "ground_truth"],
        _case_row(root, 0)[:2] + [str(tmp_path / "empty.nii.gz")],
    )
    res = batch.run_batch(
        m, tmp_path / "out", workers=1, model=str(model), progress=False, label=1
    )  # a label default does not fail an empty ground truth
    assert res["done"] == 1
    record = _strict_json(tmp_path / "out" / "cases" / "case0.json")
    assert record["status"] == "ok" and record["dice"] == 0.0
    assert record["assd"] is None and record["hd95"] is None
    assert record["note"] == "ground truth empty: ASSD/HD95 undefined"
    row = _summary(tmp_path / "out")[0]
    assert row["assd"] == "" and row["note"] == "ground truth empty: ASSD/HD95 undefined"
    assert (
        cli.main(
            [
                "segment",
                str(root / "case0.nii.gz"),
                "--clicks",
                str(root / "case0.clicks.json"),
                "-o",
                str(tmp_path / "m.nii.gz"),
                "--model",
                str(model),
                "--ground-truth",
                str(tmp_path / "empty.nii.gz"),
            ]
        )
        == 0
    )
    assert "Dice 0.0000 (ground truth empty: ASSD/HD95 undefined)" in capsys.readouterr().out


def test_a_record_that_cannot_be_written_fails_its_case_only(cases, tmp_path, monkeypatch):  # B18
    root, manifest, model = cases
    write = records.write_json_atomic

    def flaky(path, data, *args, **kwargs):
        if Path(path).name == "case1.json":
            raise PermissionError(13, "Permission denied", str(path))
        return write(path, data, *args, **kwargs)

    monkeypatch.setattr(records, "write_json_atomic", flaky)
    m = _manifest(
        tmp_path / "m.csv",
        ["image", "clicks", "ground_truth"],
        *[_case_row(root, k) for k in range(3)],
    )
    out = tmp_path / "out"
    res = batch.run_batch(m, out, workers=1, model=str(model), progress=False)
    assert res["done"] == 2 and res["failed"] == 1
    rows = {r["case"]: r for r in _summary(out)}
    assert rows["case1"]["status"] == "failed"
    assert (
        "cannot write the case record" in rows["case1"]["error"]
        and "Permission denied" in rows["case1"]["error"]
    )
    assert not (out / "masks" / "case1.mask.nii.gz").exists()
    assert rows["case2"]["status"] == "ok"
    monkeypatch.setattr(records, "write_json_atomic", write)
    res = batch.run_batch(m, out, workers=1, model=str(model), progress=False)
    assert res["done"] == 1 and res["skipped"] == 2


def test_output_folder_is_checked_before_computing(cases, tmp_path, monkeypatch, capsys):
    root, manifest, model = cases
    afile = tmp_path / "afile"
    afile.write_text("x")
    m = _manifest(tmp_path / "m.csv", ["image", "clicks"], _case_row(root, 0)[:2])
    assert (
        cli.main(
            [
                "batch",
                str(m),
                "--out",
                str(afile),
                "--model",
                str(model),  # B19
                "--no-progress",
            ]
        )
        == 1
    )
    assert f"output folder {str(afile)!r} is a file" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"output folder '.*afile/out' is not writable: "):
        batch.run_batch(m, afile / "out", workers=1, model=str(model), progress=False)
    calls = []
    monkeypatch.setattr(records, "segment_one", lambda *a, **k: calls.append(a))
    real = records.tempfile.mkstemp

    def refuse(*args, dir=None, **kwargs):
        if Path(dir).name == "cases":
            raise PermissionError(13, "Permission denied")
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(records.tempfile, "mkstemp", refuse)
    with pytest.raises(
        ValueError,
        match=r"output folder '.*out/cases' is not writable: "
        "Permission denied$",
    ):
        batch.run_batch(m, tmp_path / "out", workers=1, model=str(model), progress=False)
    assert calls == []


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes into read-only folders"
)
def test_read_only_output_folder(cases, tmp_path):  # B17
    root, manifest, model = cases
    m = _manifest(tmp_path / "m.csv", ["image", "clicks"], _case_row(root, 0)[:2])
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(ValueError, match=r"output folder '.*ro/out' is not writable"):
            batch.run_batch(m, ro / "out", workers=1, model=str(model), progress=False)
    finally:
        ro.chmod(0o755)


def test_bad_workers_and_model_are_refused_before_computing(cases, tmp_path):  # B20
    root, manifest, model = cases
    for workers in (0, -1, 1.5):
        with pytest.raises(ValueError, match="workers must be an integer >= 1"):
            batch.run_batch(manifest, tmp_path / "out", workers=workers, progress=False)
    with pytest.raises(midseg.errors.ModelError, match="does not exist"):
        batch.run_batch(manifest, tmp_path / "out", model=str(tmp_path / "nope.pt"), progress=False)
    assert not (tmp_path / "out").exists()


# Module-level so that spawned workers can import them (they run there, not in the test).
_RUN_CASE = batch.run_case


def _die_on_case1_and_2(case, out_dir, model=None, inputs=None):
    if case.case == "case1":
        os._exit(3)
    if case.case == "case2":
        os.kill(os.getpid(), signal.SIGKILL)
    return _RUN_CASE(case, out_dir, model, inputs)


def _mark_and_wait(case, out_dir, model=None, inputs=None):
    Path(out_dir, f"worker.{os.getpid()}").touch()
    time.sleep(120)


def _raise_on_case0(case, out_dir, model=None, inputs=None):
    if case.case == "case0":
        raise RuntimeError("worker lost (simulated)")
    return _RUN_CASE(case, out_dir, model, inputs)


def test_a_dying_worker_fails_its_case_and_the_batch_goes_on(cases, tmp_path, monkeypatch, capsys):
    root, manifest, model = cases
    m = _manifest(
        tmp_path / "m.csv",
        ["image", "clicks", "ground_truth"],
        *[_case_row(root, k) for k in range(3)],
    )
    monkeypatch.setattr(runner, "run_case", _die_on_case1_and_2)
    out = tmp_path / "out"
    status = cli.main(
        [
            "batch",
            str(m),
            "--out",
            str(out),
            "--workers",
            "2",
            "--model",
            str(model),
            "--no-progress",
        ]
    )
    assert status == 1
    assert capsys.readouterr().out.startswith("1 done, 2 failed, 0 already done")
    rows = {r["case"]: r for r in _summary(out)}
    assert rows["case0"]["status"] == "ok"
    assert [rows[c]["status"] for c in ("case1", "case2")] == ["failed", "failed"]
    assert rows["case1"]["error"] == (
        "the worker process running this case died: it exited with status 3"
    )
    assert rows["case2"]["error"] == (
        "the worker process running this case died: it was killed by SIGKILL (out of memory?)"
    )
    assert _strict_json(out / "cases" / "case2.json")["status"] == "failed"
    assert not (out / "masks" / "case1.mask.nii.gz").exists()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_killing_the_batch_ends_its_workers(cases, tmp_path):
    root, manifest, model = cases
    m = _manifest(
        tmp_path / "m.csv", ["image", "clicks"], *[_case_row(root, k)[:2] for k in range(3)]
    )
    out = tmp_path / "out"
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import test_batch; "
        "from midseg.batch import runner; runner.run_case = test_batch._mark_and_wait; "
        "runner.run_batch(sys.argv[2], sys.argv[3], workers=2, model=sys.argv[4], "
        "progress=False)"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(Path(__file__).parent), str(m), str(out), str(model)]
    )
    try:
        deadline = time.time() + 60
        while time.time() < deadline and len(list(out.glob("worker.*"))) < 2:
            time.sleep(0.05)
        pids = [int(p.suffix[1:]) for p in out.glob("worker.*")]
        assert len(pids) == 2, "the workers did not start"
    finally:
        proc.kill()
        proc.wait()

    def alive(pid):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")

    deadline = time.time() + 15
    while time.time() < deadline and any(alive(p) for p in pids):
        time.sleep(0.05)
    left = [p for p in pids if alive(p)]
    for p in left:
        os.kill(p, signal.SIGKILL)
    assert not left, "workers outlived the killed batch"


def test_dask_failure_of_one_case_is_recorded(cases, tmp_path, monkeypatch):
    distributed = pytest.importorskip("distributed")
    root, manifest, model = cases
    m = _manifest(
        tmp_path / "m.csv", ["image", "clicks"], *[_case_row(root, k)[:2] for k in range(2)]
    )
    monkeypatch.setattr(runner, "run_case", _raise_on_case0)
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster:
        res = batch.run_batch(
            m,
            tmp_path / "out",
            scheduler=cluster.scheduler_address,
            model=str(model),
            progress=False,
        )
    assert res["done"] == 1 and res["failed"] == 1
    rows = {r["case"]: r for r in _summary(tmp_path / "out")}
    assert rows["case0"]["error"] == "RuntimeError: worker lost (simulated)"


def test_a_model_card_edit_changes_the_model_digest(tmp_path):
    """The card sets the grid, margin and cue: editing it must recompute a finished case."""
    import shutil

    from midseg.batch import _model_sha256
    from midseg.models import model_path

    src = model_path("2d_egd")
    pt = tmp_path / "my.pt"
    shutil.copy(src, pt)
    shutil.copy(src.with_suffix(".json"), pt.with_suffix(".json"))
    before = _model_sha256(pt)
    card = json.loads(pt.with_suffix(".json").read_text())
    card["margin"] = 30
    pt.with_suffix(".json").write_text(json.dumps(card))
    assert _model_sha256(pt) != before


def test_an_ensemble_member_card_edit_changes_the_model_digest(tmp_path):
    """An ensemble's results depend on its members' cards too (cue parameters, margin)."""
    import shutil

    from midseg.batch import _model_sha256
    from midseg.models import model_path

    card = model_path("2d")
    for f in card.parent.glob("2d*"):
        if f.suffix in (".pt", ".json") and not f.stem.endswith("petct"):
            shutil.copy(f, tmp_path / f.name)
    before = _model_sha256(tmp_path / "2d.json")
    member = tmp_path / "2d_gaussian.json"
    data = json.loads(member.read_text())
    data["cue_params"] = {"sigma": 99}
    member.write_text(json.dumps(data))
    assert _model_sha256(tmp_path / "2d.json") != before


def test_a_worker_gets_its_share_of_the_cores(monkeypatch):
    """1 thread per worker on 2 cores with 2 workers: torch when loaded, and ONNX Runtime
    through OMP_NUM_THREADS (read by midseg.models without torch)."""
    import torch

    from midseg.batch.workers import _init_worker
    from midseg.models import _ort_threads

    monkeypatch.setenv("OMP_NUM_THREADS", "7")  # restored afterwards
    before = torch.get_num_threads()
    try:
        _init_worker(1)
        assert os.environ["OMP_NUM_THREADS"] == "1" and torch.get_num_threads() == 1
        monkeypatch.delitem(sys.modules, "torch")
        assert _ort_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_the_fork_server_preload_leaves_torch_to_the_torch_runtime():
    """With ONNX Runtime running the networks, the fork server does not import torch (about
    1 s of every batch with workers); with MIDSEG_RUNTIME=torch it does."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from midseg.models import _no_gpu

    if not _no_gpu():
        pytest.skip("a GPU driver is visible: the preload imports torch")
    code = "import sys, midseg._preload; print('torch' in sys.modules)"
    for runtime, torch_loaded in (("auto", "False"), ("torch", "True")):
        env = dict(os.environ, MIDSEG_RUNTIME=runtime)
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
        )
        assert out.stdout.strip() == torch_loaded, runtime
