"""`midseg demo`: runs on the bundled phantom, prints Dice per step, leaves three files."""

from __future__ import annotations

import re

import numpy as np
import pytest

pytest.importorskip("torch")

import midseg  # noqa: E402
from midseg import cli, models  # noqa: E402
from midseg.demo import phantom  # noqa: E402


def test_phantom_is_deterministic():
    a, ta = phantom()
    b, tb = phantom()
    assert np.array_equal(a.array, b.array) and np.array_equal(ta, tb)
    assert a.shape == (160, 192) and 500 < ta.sum() < 3000


@pytest.mark.skipif("2d" not in models.list_models(), reason="no shipped 2d model")
def test_demo_default(tmp_path, capsys):
    status = cli.main(["demo", "--out", str(tmp_path)])
    out, err = capsys.readouterr()
    assert status == 0
    assert "warning" not in err  # the bundled clicks are of the current file version
    dices = [float(d) for d in re.findall(r"Dice (\d\.\d+)", out)]
    assert len(dices) == 3  # stage 1 + two stored rounds
    assert dices[-1] > dices[0] and dices[-1] >= 0.8
    files = {p.name for p in tmp_path.iterdir()}
    assert {"phantom.mask.nii.gz", "phantom.clicks.json", "phantom.overlay.png"} <= files
    image, truth = phantom()
    mask = midseg.read_image(tmp_path / "phantom.mask.nii.gz")
    assert mask.shape == image.shape and mask.same_geometry(image) == []
    assert midseg.dice(mask.array, truth) == pytest.approx(dices[-1], abs=1e-4)
    # the demo on the user's data path: the files it wrote are a valid input
    status = cli.main(
        [
            "demo",
            "--image",
            str(tmp_path / "phantom.image.nii.gz"),
            "--clicks",
            str(tmp_path / "phantom.clicks.json"),
            "--ground-truth",
            str(tmp_path / "phantom.mask.nii.gz"),
            "--out",
            str(tmp_path / "again"),
        ]
    )
    out = capsys.readouterr().out
    assert status == 0 and "Dice 1.0000" in out.splitlines()[-2]


def test_demo_clicks_without_image_is_an_error(tmp_path, capsys):
    status = cli.main(["demo", "--clicks", "x.json", "--out", str(tmp_path)])
    assert status == 1 and "--clicks needs --image" in capsys.readouterr().err
