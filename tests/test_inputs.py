"""Bad and unusual inputs (issue 20; rows of ../shared/reports/bad-inputs.md).

One table: each row is an input, the entry point it goes through (API or CLI) and
the outcome it must give: an exception class and a fragment of its one-line
message, a CLI exit status and a fragment of its stderr, a warning, or a
correct result (checked by the row). Row ids are the report's. Every kind of
the report has a row here; tests/test_batch.py and tests/test_io.py hold more
cases of the batch and image-file kinds (runs, stale results, dying workers,
permissions), which need their own fixtures.
"""

from __future__ import annotations

import json
import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from midseg import Image, Session, read_image, write_image, write_mask  # noqa: E402
from midseg.batch import read_manifest  # noqa: E402
from midseg.errors import (
    ConstantImageWarning,
    GeometryLossWarning,  # noqa: E402
    GeometryMismatchError,
    ImageReadError,
    InvalidInputError,
    MidsegError,
    ModelError,
)

YY, XX = np.mgrid[:64, :64]
DISC = (YY - 32) ** 2 + (XX - 30) ** 2 < 14**2
IMG2 = (DISC * 1.0 + np.random.default_rng(0).normal(0, 0.1, DISC.shape)).astype(np.float32)
PTS2 = [(19, 30), (45, 30), (32, 17), (32, 43)]
ZZ, Y3, X3 = np.mgrid[:20, :40, :40]
BALL = ((ZZ - 10) ** 2 * 4 + (Y3 - 20) ** 2 + (X3 - 20) ** 2) < 12**2
VOL = (BALL * 1.0 + np.random.default_rng(1).normal(0, 0.1, BALL.shape)).astype(np.float32)
PTS3 = [(10, 9, 20), (10, 31, 20), (10, 20, 9), (10, 20, 31), (5, 20, 20), (15, 20, 20)]


class Evil:
    """Unpickling it would create the file named by its argument."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


@dataclass
class Ctx:
    tmp: Path

    def image2(self) -> Image:
        return Image(IMG2, spacing=(0.5, 0.5))

    def session2(self, **kw) -> Session:
        s = Session(self.image2(), **kw)
        s.segment(PTS2)
        return s

    def clicks2(self) -> dict:
        s = self.session2()
        s.refine(foreground=[(32, 30)])
        return s.clicks_dict()

    def write_clicks(self, name: str, doc: Any = None, raw: bytes | None = None) -> Path:
        p = self.tmp / name
        p.write_bytes(raw if raw is not None else json.dumps(doc).encode())
        return p

    def mutated(self, name: str, change: Callable[[dict], Any]) -> Path:
        doc = self.clicks2()
        change(doc)
        return self.write_clicks(name, doc)

    def image_file(self, name: str = "img.nii.gz") -> Path:
        p = self.tmp / name
        if not p.exists():
            write_image(p, self.image2())
        return p

    def model_copy(self, name: str, weights: bytes | None = None, card: bool = True) -> Path:
        from midseg.models import model_path

        src = model_path("2d_egd")  # one network (the shipped "2d" is an ensemble card)
        pt = self.tmp / f"{name}.pt"
        pt.write_bytes(src.read_bytes() if weights is None else weights)
        if card:
            pt.with_suffix(".json").write_text(src.with_suffix(".json").read_text())
        return pt


@dataclass
class Row:
    id: str
    what: str
    call: Callable[[Ctx], Any]
    raises: type | None = None  # expected exception class (None: no exception)
    match: str = ""  # fragment of the message (or of the CLI's stderr)
    check: Callable[[Any, Ctx], None] | None = None  # for rows that must succeed
    warns: type | None = None
    cli: bool = False  # call returns (status, stderr)
    refuse: tuple[str, ...] = ()  # fragments the message must NOT contain


def _set(path, value):
    def change(doc):
        *head, last = path
        node = doc
        for k in head:
            node = node[k]
        if value is _DROP:
            del node[last]
        else:
            node[last] = value

    return change


_DROP = object()


def _cli(args):
    def run(ctx):
        from midseg.cli import main

        import contextlib
        import io as _io

        err = _io.StringIO()
        with contextlib.redirect_stderr(err):
            status = main([a(ctx) if callable(a) else a for a in args])
        return status, err.getvalue()

    return run


def _resume_evil(ctx):
    from midseg.train import main

    flag = ctx.tmp / "PWNED"
    ck = ctx.tmp / "evil_checkpoint.pt"
    with open(ck, "wb") as fh:
        pickle.dump(Evil(flag), fh)
    try:
        main(
            [
                "--dims",
                "2",
                "--data",
                str(ctx.tmp),
                "--train-cases",
                "x",
                "--out",
                str(ctx.tmp / "run"),
                "--resume",
                str(ck),
                "--no-progress",
            ]
        )
    finally:
        assert not flag.exists(), "the checkpoint's code ran"


def _evil_model(ctx):
    flag = ctx.tmp / "PWNED_MODEL"
    pt = ctx.model_copy("evil")
    with open(pt, "wb") as fh:
        pickle.dump(Evil(flag), fh)
    try:
        Session(ctx.image2(), model=str(pt))
    finally:
        assert not flag.exists(), "the weights file's code ran"


def _jit_without_cache(ctx):
    """Numba cannot write its cache (read-only install, no home folder): compile anyway."""
    import midseg.geodesic as g

    real = g.njit

    def njit(**kw):
        if kw.get("cache"):
            raise RuntimeError("cannot cache function 'f': no locator available for file 'x'")
        return real(**kw)

    g.njit = njit
    try:
        f = g._jit(lambda a: a + 1)
    finally:
        g.njit = real
    return f(1)


def _damaged(ctx, how: str) -> Path:
    data = ctx.image_file("whole.nii.gz").read_bytes()
    p = ctx.tmp / f"{how}.nii.gz"
    if how == "trunc":
        p.write_bytes(data[: len(data) // 2])
    else:
        mid = len(data) // 2
        p.write_bytes(data[:mid] + bytes(b ^ 0xFF for b in data[mid : mid + 64]) + data[mid + 64 :])
    return p


def _nan_nifti(ctx, value) -> Path:
    import SimpleITK as sitk

    arr = IMG2.copy()
    arr[5, 5] = value
    p = ctx.tmp / "nan.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(arr), str(p))
    return p


def _grey_alpha(ctx) -> Path:
    from PIL import Image as PILImage

    grey = (DISC * 200 + 20).astype(np.uint8)
    la = np.stack([grey, np.full_like(grey, 255)], axis=-1)
    p = ctx.tmp / "la.png"
    PILImage.fromarray(la, mode="LA").save(p)
    return p


def _manifest(ctx, text: str | None = None, raw: bytes | None = None) -> Path:
    p = ctx.tmp / "manifest.csv"
    p.write_bytes(raw if raw is not None else text.encode())
    return p


def _truncated_jpeg(ctx) -> Path:
    from PIL import Image as PILImage

    p = ctx.tmp / "whole.jpg"
    PILImage.fromarray((DISC * 200 + 20).astype(np.uint8)).save(p, quality=95)
    t = ctx.tmp / "trunc.jpg"
    t.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    return t


def _batch_with_loop(ctx):
    """A case whose image is a symlink loop fails on its own; the batch goes on (exit 1)."""
    from midseg.batch import run_batch

    (ctx.tmp / "la.png").symlink_to(ctx.tmp / "lb.png")
    (ctx.tmp / "lb.png").symlink_to(ctx.tmp / "la.png")
    clicks = ctx.write_clicks("ok3.json", ctx.clicks2())
    m = _manifest(ctx, f"image,clicks,case\nla.png,{clicks},loop\n")
    run_batch(m, ctx.tmp / "out", workers=1, progress=False)
    rows = (ctx.tmp / "out" / "summary.csv").read_text()
    return (1 if "failed" in rows else 0), rows


def _masks_equal(expected_call):
    def check(result, ctx):
        np.testing.assert_array_equal(result, expected_call(ctx))

    return check


def _ok_mask(result, ctx):
    assert np.asarray(result).any()


ROWS = [
    # -- images ------------------------------------------------------------------------
    Row(
        "I01",
        "missing file",
        lambda c: read_image(c.tmp / "nope.nii.gz"),
        ImageReadError,
        "no such file",
    ),
    Row(
        "I01-cli",
        "missing file, CLI",
        _cli(
            [
                "segment",
                lambda c: str(c.tmp / "nope.nii.gz"),
                "--clicks",
                "x.json",
                "-o",
                "m.nii.gz",
            ]
        ),
        cli=True,
        match="no such file",
    ),
    Row("I03", "empty directory", lambda c: read_image(c.tmp), ImageReadError, "DICOM"),
    Row(
        "I06",
        "text file named .nii.gz",
        lambda c: (c.tmp / "t.nii.gz").write_text("hello") and read_image(c.tmp / "t.nii.gz"),
        ImageReadError,
        "cannot read",
    ),
    Row(
        "I07",
        "0-byte .nii.gz",
        lambda c: (c.tmp / "e.nii.gz").write_bytes(b"") or read_image(c.tmp / "e.nii.gz"),
        ImageReadError,
        "e.nii.gz",
    ),
    Row(
        "I08b",
        "4D array",
        lambda c: Session(np.zeros((3, 20, 30, 40), np.float32)),
        InvalidInputError,
        "2 or 3 spatial dimensions",
    ),
    Row(
        "I09",
        "2D image stored as a one-slice volume: the 2D model, the volume's shape",
        lambda c: (lambda s: (s.model.name, s.segment([(0,) + p for p in PTS2])))(
            Session(Image(IMG2[None], spacing=(2.0, 0.5, 0.5)))
        ),
        check=lambda r, c: (
            (
                r[0] == "2d"
                and r[1].shape == (1, 64, 64)
                and np.array_equal(r[1][0], c.session2().mask)
            )
            or pytest.fail(f"one-slice volume: model {r[0]}, shape {r[1].shape}")
        ),
    ),
    Row(
        "I09b",
        "one-slice volume with the 3D model asked for",
        lambda c: Session(Image(IMG2[None]), model="3d"),
        InvalidInputError,
        "segmented as a 2D image",
    ),
    Row(
        "I12",
        "NaN in a numpy array",
        lambda c: Session(np.where(DISC, np.nan, IMG2)),
        InvalidInputError,
        "NaN",
    ),
    Row(
        "I13",
        "constant image",
        lambda c: Session(np.full((64, 64), 3.5, np.float32)).segment(PTS2),
        warns=ConstantImageWarning,
        check=lambda r, c: None,
    ),
    Row(
        "I14",
        "all-zero image",
        lambda c: Session(np.zeros((64, 64), np.float32)).segment(PTS2),
        warns=ConstantImageWarning,
        check=lambda r, c: None,
    ),
    Row(
        "I20",
        "tiny 3x3 image",
        lambda c: Session(np.eye(3, dtype=np.float32)).segment([(0, 0), (2, 2), (0, 2)]),
        check=lambda r, c: None,
    ),
    Row(
        "I23",
        "image as a list",
        lambda c: Session([[1, 2], [3, 4]]),
        InvalidInputError,
        "midseg.Image or a numpy array",
    ),
    Row(
        "I24",
        "complex pixels",
        lambda c: Session(np.zeros((10, 10), np.complex64)),
        InvalidInputError,
        "numeric",
    ),
    Row(
        "I04",
        "truncated .nii.gz",
        lambda c: read_image(_damaged(c, "trunc")),
        ImageReadError,
        "truncated",
    ),
    Row(
        "I05",
        "corrupt .nii.gz (bytes flipped mid-stream)",
        lambda c: read_image(_damaged(c, "flip")),
        ImageReadError,
        "corrupt",
    ),
    Row(
        "I10",
        "NaN voxel in a float NIfTI",
        lambda c: read_image(_nan_nifti(c, np.nan)),
        InvalidInputError,
        "NaN or infinite",
    ),
    Row(
        "I11",
        "Inf voxel in a float NIfTI",
        lambda c: read_image(_nan_nifti(c, np.inf)),
        InvalidInputError,
        "NaN or infinite",
    ),
    Row(
        "I17c",
        "grey + alpha PNG reads as the grey image",
        lambda c: read_image(_grey_alpha(c)),
        check=lambda r, c: (r.ndim == 2 and r.channels == 1) or pytest.fail(repr(r)),
    ),
    # -- margin points -------------------------------------------------------------------
    Row(
        "P01",
        "no margin points",
        lambda c: Session(c.image2()).segment([]),
        InvalidInputError,
        "empty",
    ),
    Row(
        "P10",
        "points=None",
        lambda c: Session(c.image2()).segment(None),
        InvalidInputError,
        "empty",
    ),
    Row(
        "P02",
        "one point",
        lambda c: Session(c.image2()).segment([PTS2[0]]),
        InvalidInputError,
        "at least 3",
    ),
    Row(
        "P03",
        "six copies of one point",
        lambda c: Session(c.image2()).segment([PTS2[0]] * 6),
        InvalidInputError,
        "(1 distinct)",
    ),
    Row(
        "P04",
        "collinear points",
        lambda c: Session(c.image2()).segment([(32, 20), (32, 30), (32, 40)]),
        check=lambda r, c: None,
    ),
    Row(
        "P05",
        "point outside the image",
        lambda c: Session(c.image2()).segment(PTS2[:3] + [(200, 10)]),
        InvalidInputError,
        "lies outside the image",
    ),
    Row(
        "P06",
        "negative index",
        lambda c: Session(c.image2()).segment(PTS2[:3] + [(-1, 10)]),
        InvalidInputError,
        "lies outside the image",
    ),
    Row(
        "P07",
        "float indices are rounded",
        lambda c: Session(c.image2()).segment([(a + 0.4, b - 0.3) for a, b in PTS2]),
        check=_masks_equal(lambda c: c.session2().mask),
    ),
    Row(
        "P08",
        "2D points on a 3D image",
        lambda c: Session(VOL).segment(PTS2),
        InvalidInputError,
        "3 coordinates",
    ),
    Row(
        "P09",
        "non-numeric strings",
        lambda c: Session(c.image2()).segment([("a", "b")] * 4),
        InvalidInputError,
        "margin points must be index tuples",
    ),
    Row(
        "P09b",
        "numeric strings",
        lambda c: Session(c.image2()).segment([tuple(map(str, p)) for p in PTS2]),
        check=_masks_equal(lambda c: c.session2().mask),
    ),
    Row(
        "P11",
        "ragged list",
        lambda c: Session(c.image2()).segment([(1, 2), (1,)] * 2),
        InvalidInputError,
        "rows of different lengths",
    ),
    Row(
        "P12",
        "dict instead of points",
        lambda c: Session(c.image2()).segment({"a": 1}),
        InvalidInputError,
        "got dict",
    ),
    Row(
        "P14",
        "coordinate 1e300",
        lambda c: Session(c.image2()).segment(PTS2[:3] + [(1e300, 1)]),
        InvalidInputError,
        "outside any image",
    ),
    # -- session verbs ---------------------------------------------------------------
    Row(
        "S01",
        "fg and bg click on one voxel",
        lambda c: c.session2().refine(foreground=[(30, 30)], background=[(30, 30)]),
        InvalidInputError,
        "both a foreground",
    ),
    Row(
        "S01c",
        "a later click of the other class on the same voxel wins",
        lambda c: (lambda s: (s.refine(foreground=[(5, 5)]), s.refine(background=[(5, 5)]))[1])(
            c.session2()
        ),
        check=lambda r, c: r[5, 5] == 0 or pytest.fail("earlier click won"),
    ),
    Row(
        "S02",
        "refine before segment",
        lambda c: Session(c.image2()).refine([(30, 30)]),
        MidsegError,
        "call segment(points) first",
    ),
    Row(
        "S03",
        "undo with empty history",
        lambda c: Session(c.image2()).undo(),
        MidsegError,
        "nothing to undo",
    ),
    Row(
        "S04",
        "redo with nothing to redo",
        lambda c: c.session2().redo(),
        MidsegError,
        "nothing to redo",
    ),
    Row(
        "S05",
        "refine with no clicks",
        lambda c: c.session2().refine([], []),
        InvalidInputError,
        "at least one",
    ),
    Row(
        "S06",
        "save_clicks before segment",
        lambda c: Session(c.image2()).save_clicks(c.tmp / "x.json"),
        MidsegError,
        "nothing to save",
    ),
    # -- models --------------------------------------------------------------------------
    Row(
        "M01",
        "2d model on a 3D image",
        lambda c: Session(VOL, model="2d"),
        InvalidInputError,
        "is a 2D model",
    ),
    Row(
        "M02",
        "3d model on a 2D image",
        lambda c: Session(IMG2, model="3d"),
        InvalidInputError,
        "is a 3D model",
    ),
    Row(
        "M03",
        "model path missing",
        lambda c: Session(IMG2, model=str(c.tmp / "no.pt")),
        ModelError,
        "does not exist",
    ),
    Row(
        "M04",
        "truncated .pt",
        lambda c: Session(
            IMG2, model=str(c.model_copy("trunc", weights=c.model_copy("full").read_bytes()[:5000]))
        ),
        ModelError,
        "truncated or not a PyTorch file",
        refuse=("weights_only",),
    ),
    Row(
        "M05",
        "random bytes .pt",
        lambda c: Session(
            IMG2, model=str(c.model_copy("rnd", weights=np.random.default_rng(0).bytes(4000)))
        ),
        ModelError,
        "rnd.pt",
        refuse=("weights_only",),
    ),
    Row(
        "M06",
        "malicious pickle as weights",
        _evil_model,
        ModelError,
        "could run code",
        refuse=("weights_only",),
    ),
    Row(
        "M07",
        ".pt without a card",
        lambda c: Session(IMG2, model=str(c.model_copy("nocard", card=False))),
        ModelError,
        "card",
    ),
    Row(
        "M08",
        "unknown model name",
        lambda c: Session(IMG2, model="foo"),
        ModelError,
        "no shipped model",
    ),
    Row(
        "M09", ".pth suffix", lambda c: Session(IMG2, model=str(c.tmp / "x.pth")), ModelError, ".pt"
    ),
    Row(
        "M10",
        "model=123",
        lambda c: Session(IMG2, model=123),
        InvalidInputError,
        "model must be a shipped model's name",
    ),
    Row(
        "M11",
        "train --resume with a malicious checkpoint",
        _resume_evil,
        MidsegError,
        "could run code",
        refuse=("weights_only",),
    ),
    # -- clicks files --------------------------------------------------------------------
    Row(
        "C01",
        "malformed JSON",
        lambda c: Session.from_clicks(
            c.write_clicks("bad.json", raw=b'{"format": "midseg-clicks", x}'), c.image2()
        ),
        InvalidInputError,
        "not valid JSON",
    ),
    Row(
        "C02",
        "unknown version",
        lambda c: Session.from_clicks(c.mutated("v.json", _set(["version"], 99)), c.image2()),
        InvalidInputError,
        "version 99",
    ),
    Row(
        "C02b",
        "version as a string",
        lambda c: Session.from_clicks(c.mutated("vs.json", _set(["version"], "3")), c.image2()),
        InvalidInputError,
        "version '3'",
    ),
    Row(
        "C03",
        "wrong format",
        lambda c: Session.from_clicks(
            c.mutated("f.json", _set(["format"], "slicer-markups")), c.image2()
        ),
        InvalidInputError,
        "not a midseg clicks file",
    ),
    Row(
        "C04",
        "another image's clicks",
        lambda c: Session.from_clicks(c.clicks2(), Image(IMG2[:50])),
        GeometryMismatchError,
        "different geometry",
    ),
    Row(
        "C05",
        "unknown extra keys",
        lambda c: (
            Session.from_clicks(
                c.mutated("extra.json", _set(["image", "colour"], "red")), c.image2()
            ).mask
        ),
        check=_masks_equal(lambda c: Session.from_clicks(c.clicks2(), c.image2()).mask),
    ),
    Row(
        "C06",
        "coordinate 1e300",
        lambda c: Session.from_clicks(
            c.mutated("huge.json", _set(["margin_points", 0, 0], 1e300)), c.image2()
        ),
        InvalidInputError,
        "1e+300",
    ),
    Row(
        "C07",
        "NaN coordinate",
        lambda c: Session.from_clicks(
            c.write_clicks(
                "nan.json",
                raw=json.dumps(c.clicks2())
                .replace('"margin_points": [[', '"margin_points": [[NaN, ', 1)
                .encode(),
            ),
            c.image2(),
        ),
        InvalidInputError,
        "NaN",
    ),
    Row(
        "C07b",
        "Infinity coordinate",
        lambda c: Session.from_clicks(
            c.write_clicks(
                "inf.json",
                raw=json.dumps(c.clicks2())
                .replace('"margin_points": [[', '"margin_points": [[Infinity, ', 1)
                .encode(),
            ),
            c.image2(),
        ),
        InvalidInputError,
        "Infinity",
    ),
    Row(
        "C08",
        "top-level list",
        lambda c: Session.from_clicks(c.write_clicks("list.json", [1, 2]), c.image2()),
        InvalidInputError,
        "not a midseg clicks file",
    ),
    Row(
        "C09",
        "empty file",
        lambda c: Session.from_clicks(c.write_clicks("empty.json", raw=b""), c.image2()),
        InvalidInputError,
        "not valid JSON",
    ),
    Row(
        "C10",
        "parameters without lam",
        lambda c: Session.from_clicks(
            c.mutated("nolam.json", _set(["parameters", "lam"], _DROP)), c.image2()
        ),
        InvalidInputError,
        "parameters: 'lam' is a required property",
    ),
    Row(
        "C10-cli",
        "parameters without lam, CLI segment",
        _cli(
            [
                "segment",
                lambda c: str(c.image_file()),
                "--clicks",
                lambda c: str(c.mutated("nolam2.json", _set(["parameters", "lam"], _DROP))),
                "-o",
                lambda c: str(c.tmp / "m.nii.gz"),
            ]
        ),
        cli=True,
        match="parameters: 'lam' is a required property",
    ),
    Row(
        "C11",
        "margin_points is a string",
        lambda c: Session.from_clicks(
            c.mutated("mps.json", _set(["margin_points"], "abc")), c.image2()
        ),
        InvalidInputError,
        "margin_points: 'abc' is not of type 'array'",
    ),
    Row(
        "C12",
        "a round without lam",
        lambda c: Session.from_clicks(
            c.mutated("rnl.json", _set(["rounds", 0, "lam"], _DROP)), c.image2()
        ),
        InvalidInputError,
        "rounds[0]: 'lam' is a required property",
    ),
    Row(
        "C13",
        "image without shape",
        lambda c: Session.from_clicks(
            c.mutated("ns.json", _set(["image", "shape"], _DROP)), c.image2()
        ),
        InvalidInputError,
        "image: 'shape' is a required property",
    ),
    Row(
        "C14",
        "negative lam",
        lambda c: Session.from_clicks(
            c.mutated("nl.json", _set(["parameters", "lam"], -1)), c.image2()
        ),
        InvalidInputError,
        "parameters.lam",
    ),
    Row(
        "C15",
        "point off a voxel centre",
        lambda c: Session.from_clicks(
            c.mutated(
                "off.json",
                lambda d: d["margin_points"][0].__setitem__(0, d["margin_points"][0][0] + 0.2),
            ),
            c.image2(),
        ),
        GeometryMismatchError,
        "voxel centres",
    ),
    Row(
        "C16",
        "two margin points",
        lambda c: Session.from_clicks(
            c.mutated("two.json", lambda d: d.__setitem__("margin_points", d["margin_points"][:2])),
            c.image2(),
        ),
        InvalidInputError,
        "at least 3",
    ),
    Row(
        "C17",
        "a round without clicks",
        lambda c: Session.from_clicks(
            c.mutated("er.json", lambda d: d["rounds"][0].update(foreground=[], background=[])),
            c.image2(),
        ),
        InvalidInputError,
        "holds no click",
    ),
    Row(
        "C18",
        "unknown method",
        lambda c: Session.from_clicks(
            c.mutated("bm.json", _set(["rounds", 0, "method"], "bogus")), c.image2()
        ),
        InvalidInputError,
        "rounds[0].method",
    ),
    Row(
        "C19",
        "3 coordinates in a 2D file",
        lambda c: Session.from_clicks(
            c.mutated(
                "c3.json",
                lambda d: d.__setitem__("margin_points", [p + [0.0] for p in d["margin_points"]]),
            ),
            c.image2(),
        ),
        InvalidInputError,
        "2 coordinates",
    ),
    Row(
        "C20",
        "spacing holds a string",
        lambda c: Session.from_clicks(
            c.mutated("ss.json", _set(["image", "spacing", 0], "a")), c.image2()
        ),
        InvalidInputError,
        "image.spacing[0]",
    ),
    Row(
        "C21",
        "rounds is a dict",
        lambda c: Session.from_clicks(c.mutated("rd.json", _set(["rounds"], {"a": 1})), c.image2()),
        InvalidInputError,
        "rounds: {'a': 1} is not of type 'array'",
    ),
    Row(
        "C22",
        "non-UTF-8 bytes",
        lambda c: Session.from_clicks(
            c.write_clicks("nu.json", raw=b'{"format": "\xff"}'), c.image2()
        ),
        InvalidInputError,
        "not UTF-8",
    ),
    Row(
        "C23",
        "clicks path missing",
        lambda c: Session.from_clicks(c.tmp / "nope.json", c.image2()),
        InvalidInputError,
        "no such clicks file",
    ),
    # -- parameters ----------------------------------------------------------------------
    Row("L01", "lam = -1", lambda c: Session(IMG2, lam=-1), InvalidInputError, "lam must"),
    Row("L02", "lam = 0", lambda c: c.session2(lam=0).refine([(32, 30)]), check=_ok_mask),
    Row(
        "L03", "lam = NaN", lambda c: Session(IMG2, lam=float("nan")), InvalidInputError, "lam must"
    ),
    Row(
        "L13", "lam = inf", lambda c: Session(IMG2, lam=float("inf")), InvalidInputError, "lam must"
    ),
    Row(
        "L04", "sigma = -0.1", lambda c: Session(IMG2, sigma=-0.1), InvalidInputError, "sigma must"
    ),
    Row("L05", "sigma = 0", lambda c: Session(IMG2, sigma=0), InvalidInputError, "sigma must"),
    Row(
        "L06",
        "sigma = NaN",
        lambda c: Session(IMG2, sigma=float("nan")),
        InvalidInputError,
        "sigma must",
    ),
    Row(
        "L07",
        "lam = 'abc'",
        lambda c: Session(IMG2, lam="abc"),
        InvalidInputError,
        "lam must be a finite number, got 'abc'",
    ),
    Row(
        "L08",
        "lam = None",
        lambda c: Session(IMG2, lam=None),
        InvalidInputError,
        "lam must be a number",
    ),
    Row(
        "L09",
        "method = 'bogus'",
        lambda c: Session(IMG2, method="bogus"),
        InvalidInputError,
        "method must be one of",
    ),
    Row(
        "L10",
        "per-round lam = -1",
        lambda c: c.session2().refine([(32, 30)], lam=-1),
        InvalidInputError,
        "lam must",
    ),
    Row(
        "L11",
        "sigma = 1e-30 (max-flow never returned)",
        lambda c: c.session2().refine([(32, 30)], sigma=1e-30),
        InvalidInputError,
        "sigma must be a finite number >= 1e-06",
    ),
    Row(
        "L12",
        "lam = 1e300 (ran 220 s, collapsed the mask)",
        lambda c: c.session2().refine([(32, 30)], lam=1e300),
        InvalidInputError,
        "lam must be a finite number in [0, 10000]",
    ),
    Row(
        "L14",
        "sigma = 1e300",
        lambda c: c.session2().refine([(32, 30)], sigma=1e300),
        check=_ok_mask,
    ),
    # -- outputs -------------------------------------------------------------------------
    Row(
        "W02",
        "unsupported output ending",
        lambda c: write_mask(c.tmp / "m.xyz", DISC, like=c.image2()),
        InvalidInputError,
        ".xyz",
    ),
    Row(
        "W02-cli",
        "unsupported output ending, CLI, before any work",
        _cli(
            [
                "segment",
                lambda c: str(c.image_file()),
                "--clicks",
                lambda c: str(c.write_clicks("ok.json", c.clicks2())),
                "-o",
                lambda c: str(c.tmp / "m.xyz"),
            ]
        ),
        cli=True,
        match=".xyz",
    ),
    Row(
        "W03",
        "output folder is a file",
        lambda c: (
            (c.tmp / "afile").write_text("x")
            and write_mask(c.tmp / "afile" / "m.nii.gz", DISC, like=c.image2())
        ),
        ImageReadError,
        "is a file",
    ),
    Row(
        "W05",
        "NaN float mask",
        lambda c: write_mask(c.tmp / "m.nii.gz", np.where(DISC, np.nan, 0.0), like=c.image2()),
        InvalidInputError,
        "NaN",
    ),
    Row(
        "W07",
        "3D mask to .png",
        lambda c: write_mask(c.tmp / "m.png", BALL, like=Image(VOL)),
        InvalidInputError,
        "3D",
    ),
    Row(
        "W07b",
        "3D mask to .tif loses the geometry",
        lambda c: write_mask(
            c.tmp / "m.tif", BALL, like=Image(VOL, spacing=(3.0, 0.8, 0.8), origin=(5, 6, 7))
        ),
        warns=GeometryLossWarning,
        check=lambda r, c: None,
    ),
    # -- batch manifests -----------------------------------------------------------------
    Row(
        "B06",
        "case name escaping --out",
        lambda c: read_manifest(_manifest(c, "image,clicks,case\nimg.nii.gz,c.json,../../x\n")),
        InvalidInputError,
        "..",
    ),
    Row(
        "B07",
        "absolute case name",
        lambda c: read_manifest(_manifest(c, "image,clicks,case\nimg.nii.gz,c.json,/tmp/x\n")),
        InvalidInputError,
        "absolute",
    ),
    Row(
        "B08",
        "two names for one file",
        lambda c: read_manifest(
            _manifest(c, "image,clicks,case\na.nii.gz,c.json,pat\nb.nii.gz,c.json,./pat\n")
        ),
        InvalidInputError,
        "duplicate case name",
    ),
    Row(
        "B10",
        "manifest not UTF-8",
        lambda c: read_manifest(_manifest(c, raw=b"image,clicks\n\xff.nii.gz,c.json\n")),
        InvalidInputError,
        "not UTF-8",
    ),
    Row(
        "B11",
        "manifest with a byte-order mark",
        lambda c: read_manifest(
            _manifest(c, raw="\ufeffimage,clicks\nimg.nii.gz,c.json\n".encode())
        ),
        check=lambda r, c: (len(r) == 1 and r[0].case == "img") or pytest.fail(repr(r)),
    ),
    Row(
        "B13",
        "unterminated quote",
        lambda c: read_manifest(_manifest(c, 'image,clicks\n"img.nii.gz,c.json\n')),
        InvalidInputError,
        "quote",
    ),
    Row(
        "B16",
        "binary file as manifest",
        lambda c: read_manifest(_manifest(c, raw=b"image,clicks\n\x00\x01\x02\n")),
        InvalidInputError,
        "manifest",
    ),
    Row(
        "B21",
        "manifest is a folder",
        lambda c: read_manifest(c.tmp),
        InvalidInputError,
        "is a folder",
    ),
    # -- found by a fresh user after the fixes (2026-11-30) -------------------------------
    Row(
        "N01",
        "clicks JSON nested 100 000 levels deep, CLI",
        _cli(
            [
                "segment",
                lambda c: str(c.image_file()),
                "--clicks",
                lambda c: str(
                    c.write_clicks(
                        "deep.json",
                        raw=json.dumps(c.clicks2())[:-1].encode()
                        + b', "x": '
                        + b"[" * 100000
                        + b"]" * 100000
                        + b"}",
                    )
                ),
                "-o",
                lambda c: str(c.tmp / "m.nii.gz"),
            ]
        ),
        cli=True,
        match="nested too deeply",
    ),
    Row(
        "N02",
        "a 400-digit integer in a clicks file",
        lambda c: Session.from_clicks(
            c.write_clicks(
                "big.json",
                raw=json.dumps(c.clicks2())
                .replace('"sigma": 0.1', '"sigma": ' + "9" * 400, 1)
                .encode(),
            ),
            c.image2(),
        ),
        InvalidInputError,
        "is not a finite number",
    ),
    Row(
        "N03",
        "ragged direction in a clicks file",
        lambda c: Session.from_clicks(
            c.mutated("rag.json", _set(["image", "direction"], [[1, 0], [0, 1, 0]])), c.image2()
        ),
        InvalidInputError,
        "clicks file: image",
    ),
    Row(
        "N04",
        "ragged margin points in a clicks file",
        lambda c: Session.from_clicks(
            c.mutated("ragp.json", lambda d: d["margin_points"][1].append(0.0)), c.image2()
        ),
        InvalidInputError,
        "margin_points",
    ),
    Row(
        "N05",
        "truncated JPEG",
        lambda c: read_image(_truncated_jpeg(c)),
        ImageReadError,
        "truncated",
    ),
    Row(
        "N06",
        "upper-case .NII.GZ output",
        lambda c: write_mask(c.tmp / "m.NII.GZ", DISC, like=c.image2()),
        InvalidInputError,
        "lower case",
    ),
    Row(
        "N07",
        "clicks given as a list",
        lambda c: Session.from_clicks([1, 2], c.image2()),
        InvalidInputError,
        "clicks must be a path or a dict",
    ),
    Row(
        "N08",
        "image path as a number",
        lambda c: read_image(123),
        InvalidInputError,
        "must be a str",
    ),
    Row("N09", "empty image path", lambda c: read_image(""), InvalidInputError, "empty"),
    Row(
        "N10",
        "device 'bogus'",
        lambda c: Session(IMG2, device="bogus"),
        ModelError,
        "not a torch device",
    ),
    Row(
        "N11",
        "lam = 10**400",
        lambda c: Session(IMG2, lam=10**400),
        InvalidInputError,
        "lam must be a finite number",
    ),
    Row(
        "N12",
        "a point 10**400",
        lambda c: Session(c.image2()).segment(PTS2[:3] + [(10**400, 5)]),
        InvalidInputError,
        "too large",
    ),
    Row(
        "N13",
        "output path = the input image, CLI",
        _cli(
            [
                "segment",
                lambda c: str(c.image_file()),
                "--clicks",
                lambda c: str(c.write_clicks("ok2.json", c.clicks2())),
                "-o",
                lambda c: str(c.image_file()),
            ]
        ),
        cli=True,
        match="one of the inputs",
    ),
    Row(
        "N14",
        "manifest whose image is a symlink loop",
        _batch_with_loop,
        check=lambda r, c: (r[0] == 1 and "no such file" in r[1]) or pytest.fail(repr(r)),
    ),
    Row(
        "N15",
        "a round without clicks is refused before stage 1",
        lambda c: Session.from_clicks(
            c.mutated("er2.json", lambda d: d["rounds"][0].update(foreground=[], background=[])),
            c.image2(),
        ),
        InvalidInputError,
        "rounds[0] holds no click",
    ),
    Row(
        "N16",
        "--ground-truth ''",
        _cli(
            [
                "segment",
                lambda c: str(c.image_file()),
                "--clicks",
                lambda c: str(c.write_clicks("ok4.json", c.clicks2())),
                "-o",
                lambda c: str(c.tmp / "m4.nii.gz"),
                "--ground-truth",
                "",
            ]
        ),
        cli=True,
        match="ground-truth path is empty",
    ),
    Row(
        "N17",
        "output path = the ground truth, CLI",
        _cli(
            [
                "segment",
                lambda c: str(c.image_file()),
                "--clicks",
                lambda c: str(c.write_clicks("ok5.json", c.clicks2())),
                "--ground-truth",
                lambda c: str(c.image_file("gt.nii.gz")),
                "-o",
                lambda c: str(c.image_file("gt.nii.gz")),
            ]
        ),
        cli=True,
        match="one of the inputs",
    ),
    # -- environment ---------------------------------------------------------------------
    Row(
        "E03",
        "evaluate --threads 0 with an extra model",
        _cli(["evaluate", "hc18", "--threads", "0", "--extra-model", "x=foo"]),
        cli=True,
        match="--threads must be >= 1",
    ),
    Row(
        "E04",
        "evaluate --max-cases 0 (would write an empty table)",
        _cli(["evaluate", "hc18", "--max-cases", "0"]),
        cli=True,
        match="--max-cases must be >= 1",
    ),
    Row(
        "E02",
        "numba cannot write its cache",
        _jit_without_cache,
        check=lambda r, c: r == 2 or pytest.fail(str(r)),
    ),
]


@pytest.fixture
def ctx(tmp_path):
    return Ctx(tmp_path)


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_input_table(row: Row, ctx: Ctx):
    if row.cli:
        status, err = row.call(ctx)
        assert status == 1, (status, err)
        assert row.match in err, err
        assert "Traceback" not in err and err.count("\n") <= 2, err
        return
    if row.raises is not None:
        with pytest.raises(row.raises) as info:
            row.call(ctx)
        msg = str(info.value)
        assert row.match in msg, msg
        assert "\n" not in msg.strip(), msg
        for bad in row.refuse:
            assert bad not in msg, msg
        return
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        result = row.call(ctx)
    if row.warns is not None:
        assert any(issubclass(w.category, row.warns) for w in seen), [str(w) for w in seen]
    if row.check is not None:
        row.check(result, ctx)


def test_every_row_id_is_unique():
    ids = [r.id for r in ROWS]
    assert len(ids) == len(set(ids))


def test_schema_bounds_follow_the_code():
    """The clicks schema's methods and ranges are the ones the code checks."""
    from midseg._checks import LAM_MAX, SIGMA_MIN
    from midseg.refine import REFINE_METHODS
    from midseg.session import CLICKS_SCHEMA

    params = json.loads(CLICKS_SCHEMA.read_text())["$defs"]["parameters"]["properties"]
    assert params["method"]["enum"] == list(REFINE_METHODS)
    assert params["lam"]["maximum"] == LAM_MAX and params["sigma"]["minimum"] == SIGMA_MIN


hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=10,
)


def _paths(doc, prefix=()):
    yield prefix
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _paths(v, prefix + (i,))


_BASE = None


def _base_doc():
    global _BASE
    if _BASE is None:
        s = Session(Image(IMG2, spacing=(0.5, 0.5)))
        s.segment(PTS2)
        s.refine(foreground=[(32, 30)])
        _BASE = s.clicks_dict()
    return json.loads(json.dumps(_BASE))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fuzzed_clicks_documents_give_a_result_or_a_midseg_error(data):
    """Any field of a valid clicks document replaced or removed: a replay or a MidsegError."""
    doc = _base_doc()
    paths = [p for p in _paths(doc) if p]
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(paths))
        node = doc
        try:
            for k in path[:-1]:
                node = node[k]
            if data.draw(st.booleans()):
                node[path[-1]] = data.draw(_JSON)
            elif isinstance(node, dict):
                del node[path[-1]]
        except (KeyError, IndexError, TypeError):
            continue
    try:
        Session.from_clicks(doc, Image(IMG2, spacing=(0.5, 0.5)))
    except MidsegError as exc:
        assert str(exc).strip() and "\n" not in str(exc).strip()


@settings(max_examples=40, deadline=None)
@given(raw=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_fuzzed_clicks_bytes_give_a_midseg_error(raw, tmp_path_factory):
    p = tmp_path_factory.mktemp("fz") / "c.json"
    p.write_bytes(raw)
    with pytest.raises(MidsegError):
        Session.from_clicks(p, Image(IMG2, spacing=(0.5, 0.5)))


@settings(max_examples=80, deadline=None)
@given(
    text=st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=120),
    header=st.sampled_from(
        ["image,clicks\n", "image,clicks,case\n", "\ufeffimage,clicks,ground_truth,label\n", ""]
    ),
)
def test_fuzzed_manifests_give_cases_or_a_midseg_error(text, header, tmp_path_factory):
    """Any manifest text: a list of cases or one `InvalidInputError` line, never a traceback."""
    p = tmp_path_factory.mktemp("mf") / "m.csv"
    p.write_text(header + text, encoding="utf-8")
    try:
        cases = read_manifest(p)
    except MidsegError as exc:
        assert str(exc).strip() and "\n" not in str(exc).strip()
    else:
        assert all(c.case and not Path(c.case).is_absolute() for c in cases)
