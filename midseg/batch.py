"""Replaying stored clicks over many images: `midseg segment` and `midseg batch`.

A manifest (CSV) lists cases; each case is replayed by a `Session` in a worker
(local process pool by default, a Dask cluster with ``--scheduler``). Outputs
are written atomically and each finished case leaves a record holding the
sha256 of its inputs, so a killed run resumes where it stopped and a case
whose image, clicks, ground truth, label or model changed is computed again.
"""
from __future__ import annotations

import codecs
import csv
import functools
import hashlib
import io
import json
import math
import operator
import os
import tempfile
import time
import traceback
import unicodedata
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable

from .errors import GeometryMismatchError, InvalidInputError
from .io import file_sha256, write_bytes_atomic, write_json_atomic

__all__ = ["Case", "read_manifest", "read_ground_truth", "run_case", "run_batch", "segment_one"]

SUMMARY_FIELDS = ["case", "status", "rounds", "seconds", "dice", "assd", "hd95", "mask", "error",
                  "note"]

# First characters that make a spreadsheet read a cell as a formula (OWASP: CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _case_name(name: str) -> str:
    """The normal form of a case name, or an `InvalidInputError` saying why it has none.

    A case name becomes the relative file names ``cases/NAME.json`` and
    ``masks/NAME.mask.SUFFIX`` inside the output folder: ``\\`` counts as
    ``/``, empty and ``.`` components are dropped (``./a//b`` -> ``a/b``);
    absolute names, drive letters, ``..`` components, control characters and
    names with nothing left are refused.
    """
    if not isinstance(name, str):
        raise InvalidInputError(f"case name must be a string, got {type(name).__name__}")
    bad = [ch for ch in name if unicodedata.category(ch) in ("Cc", "Zl", "Zp")]
    if bad:
        raise InvalidInputError(f"case name {name!r} contains the control character {bad[0]!r}")
    text = name.replace("\\", "/")
    drive = len(text) >= 2 and text[1] == ":" and text[0].isascii() and text[0].isalpha()
    if text.startswith("/") or drive:
        raise InvalidInputError(
            f"case name {name!r} is an absolute path; a case name is a file name relative "
            "to the output folder")
    parts = [part for part in text.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise InvalidInputError(
            f"case name {name!r} has a '..' component; a case name must stay inside the "
            "output folder")
    if not parts:
        raise InvalidInputError(f"case name {name!r} is empty as a file name")
    return "/".join(parts)


def _name_key(name: str) -> str:
    """Names with equal keys name the same files on some file system.

    Case-insensitive (Windows, macOS), Unicode-normalised (macOS) and without
    the trailing dots and spaces Windows drops.
    """
    return "/".join(unicodedata.normalize("NFC", part).casefold().rstrip(". ")
                    for part in name.split("/"))


def _check_label(label) -> int:
    if isinstance(label, bool):
        raise InvalidInputError(f"label must be a nonzero integer, got {label!r}")
    try:
        value = operator.index(label)
    except TypeError:
        raise InvalidInputError(f"label must be a nonzero integer, got {label!r}") from None
    if value == 0:
        raise InvalidInputError("label must be a nonzero integer, got 0 (0 is the background)")
    return value


@dataclass(frozen=True)
class Case:
    """One manifest row: paths are absolute after `read_manifest`.

    ``case`` is stored in its normal form (see `read_manifest`); a name that
    cannot be a file name inside the output folder raises `InvalidInputError`.
    ``label`` selects the object in a multi-label ground truth (None: the
    ground truth must hold at most one nonzero label).
    """

    case: str
    image: str
    clicks: str
    ground_truth: str | None = None
    co_registered: tuple[str, ...] = ()
    label: int | None = None

    def __post_init__(self):
        object.__setattr__(self, "case", _case_name(self.case))
        if self.label is not None:
            object.__setattr__(self, "label", _check_label(self.label))


def _mask_suffix(image_path: str) -> str:
    lower = image_path.lower()
    for suffix in (".png", ".tif", ".tiff", ".bmp"):
        if lower.endswith(suffix):
            return suffix
    if lower.endswith((".jpg", ".jpeg")):
        return ".png"  # lossless for masks
    return ".nii.gz"


def _mask_path(out: Path, case: Case) -> Path:
    return out / "masks" / f"{case.case}.mask{_mask_suffix(case.image)}"


def _record_path(out: Path, case: Case) -> Path:
    return out / "cases" / f"{case.case}.json"


def _line_of(data: bytes, at: int) -> int:
    return data.count(b"\n", 0, at) + 1


def _manifest_text(p: Path) -> str:
    """The manifest's text (UTF-8, with or without a byte-order mark) or a one-line error."""
    if p.is_dir():
        raise InvalidInputError(f"manifest {str(p)!r} is a folder; expected a CSV file")
    if not p.exists():
        raise InvalidInputError(f"no such manifest: {str(p)!r}")
    try:
        with p.open("rb") as fh:
            data = fh.read(1 << 16)
            if b"\x00" not in data:  # a binary file (an image?) is refused before reading it all
                data += fh.read()
    except OSError as exc:
        raise InvalidInputError(f"cannot read manifest {str(p)!r}: {exc.strerror or exc}") from None
    if b"\x00" in data:
        at = data.index(b"\x00")
        raise InvalidInputError(f"manifest {str(p)!r} is not a text CSV file: NUL byte on line "
                                f"{_line_of(data, at)} (byte offset {at})")
    skip = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        return data[skip:].decode("utf-8")
    except UnicodeDecodeError as exc:
        at = exc.start + skip
        raise InvalidInputError(
            f"manifest {str(p)!r} is not UTF-8 text: byte 0x{data[at]:02x} on line "
            f"{_line_of(data, at)} (byte offset {at}); save it as UTF-8 ('CSV UTF-8' in a "
            "spreadsheet)") from None


def _manifest_rows(p: Path, text: str):
    """Yield (line, {column: value}) for each non-blank row after the header."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    where = f"manifest {str(p)!r}"
    line = 0
    try:
        header = next(reader, None)
        line = reader.line_num
        fields = [f.strip() for f in (header or [])]
        named = [f for f in fields if f]
        doubled = sorted({f for f in named if named.count(f) > 1})
        if doubled:
            raise InvalidInputError(f"{where} has the column(s) {doubled} more than once")
        missing = {"image", "clicks"} - set(named)
        if missing:
            raise InvalidInputError(
                f"{where} lacks the column(s) {sorted(missing)}; it has {fields}")
        for values in reader:
            start, line = line + 1, reader.line_num
            if not any(v.strip() for v in values):
                continue
            row = {k: v.strip() for k, v in zip(fields, values) if k}
            yield start, row
    except csv.Error as exc:
        if "unexpected end of data" in str(exc):
            raise InvalidInputError(
                f"{where} line {line + 1}: a quoted field is never closed (unterminated "
                "quote)") from None
        raise InvalidInputError(f"{where} line {reader.line_num}: {exc}") from None


def read_manifest(path: str | os.PathLike) -> list[Case]:
    """Read a batch manifest.

    The CSV (UTF-8, with or without a byte-order mark) has a header with the
    columns ``image`` and ``clicks`` (required), ``ground_truth``, ``case``,
    ``co_registered`` and ``label`` (optional); blank lines and unknown
    columns are ignored. Relative paths are relative to the manifest's folder.
    ``co_registered`` lists further images of the case separated by ``;`` (a
    PET with its CT), read onto the image's grid as channels
    (`midseg.io.read_image`). ``label`` is the value of the object in a
    multi-label ground truth.

    ``case`` defaults to the image file name without its suffix. It becomes
    the file names ``cases/CASE.json`` and ``masks/CASE.mask.SUFFIX`` inside
    the output folder, so it is normalised (``\\`` counts as ``/``, empty and
    ``.`` components are dropped: ``./a//b`` is ``a/b``; a ``/`` makes
    subfolders) and must name files of its own: two names equal after
    normalisation, ignoring letter case, Unicode normalisation and trailing
    dots and spaces are duplicates, and no case's file may be another case's
    folder (``a`` and ``a.json/b``).

    Raises
    ------
    InvalidInputError
        One line naming the manifest (and the line): no such file, a folder,
        not UTF-8 text, a quote never closed, a missing column, a row without
        image or clicks, a case name that is absolute, has a ``..`` component,
        holds a control character or is empty, a duplicate case name, a file
        of one case that is the folder of another, a label that is not a
        nonzero integer or has no ground truth, no rows.
    """
    p = Path(path)
    rows = list(_manifest_rows(p, _manifest_text(p)))
    base = p.parent
    cases: list[Case] = []
    seen: dict[str, tuple[str, int]] = {}  # name key -> (case name as written, line)
    for n, row in rows:
        where = f"manifest {str(p)!r} line {n}"
        if not row.get("image") or not row.get("clicks"):
            raise InvalidInputError(f"{where}: image and clicks are required")
        raw = row.get("case") or Path(row["image"]).name.split(".")[0]
        try:
            name = _case_name(raw)
        except InvalidInputError as exc:
            hint = "" if row.get("case") else " (taken from the image file name: set a case column)"
            raise InvalidInputError(f"{where}: {exc}{hint}") from None
        key = _name_key(name)
        if key in seen:
            other, m = seen[key]
            same = "" if other == raw else f" (same file names as {other!r} on line {m})"
            raise InvalidInputError(f"{where}: duplicate case name {raw!r}{same}")
        seen[key] = (raw, n)
        gt = row.get("ground_truth") or None
        label = None
        if row.get("label"):
            try:
                label = int(row["label"])
            except ValueError:
                raise InvalidInputError(
                    f"{where}: label must be a nonzero integer, got {row['label']!r}") from None
            try:
                label = _check_label(label)
            except InvalidInputError as exc:
                raise InvalidInputError(f"{where}: {exc}") from None
            if gt is None:
                raise InvalidInputError(f"{where}: a label needs a ground_truth")
        # absolute, links not followed (a link loop is then the case's read error, not ours)
        extra = tuple(os.path.abspath(base / q.strip())
                      for q in (row.get("co_registered") or "").split(";") if q.strip())
        cases.append(Case(name, os.path.abspath(base / row["image"]),
                          os.path.abspath(base / row["clicks"]),
                          os.path.abspath(base / gt) if gt else None, extra, label))
    if not cases:
        raise InvalidInputError(f"manifest {str(p)!r} lists no cases")
    _check_file_and_folder(p, cases, [n for n, _ in rows])
    return cases


def _check_file_and_folder(p: Path, cases: list[Case], lines: list[int]) -> None:
    """Refuse a case whose record or mask file is another case's folder (``a``, ``a.json/b``)."""
    folders: dict[str, tuple[str, int]] = {}  # name key -> (case name, line)
    for case, n in zip(cases, lines):
        for rel in (_record_path(Path(), case), _mask_path(Path(), case)):
            for parent in list(rel.parents)[:-2]:  # not "." and not cases/ or masks/
                folders.setdefault(_name_key(parent.as_posix()), (case.case, n))
    for case, n in zip(cases, lines):
        for rel in (_record_path(Path(), case), _mask_path(Path(), case)):
            other = folders.get(_name_key(rel.as_posix()))
            if other is not None:
                raise InvalidInputError(
                    f"manifest {str(p)!r} line {n}: case name {case.case!r} needs the file "
                    f"{rel.as_posix()!r}, which case {other[0]!r} on line {other[1]} needs as "
                    "a folder")


def _label_list(values) -> str:
    shown = [int(v) if float(v).is_integer() else float(v) for v in values[:10]]
    more = f" and {len(values) - 10} more" if len(values) > 10 else ""
    return f"{shown}{more}"


def read_ground_truth(path: str | os.PathLike, like, label: int | None = None):
    """Read a reference segmentation as a uint8 0/1 mask of the object.

    Parameters
    ----------
    path : path
        A label image with the geometry of ``like`` (`midseg.Image`).
    label : int, optional
        The value of the object. Without it the file must hold at most one
        nonzero value (a binary mask, 0/1 or 0/255); with it, the object is
        where the file equals ``label``.

    Raises
    ------
    InvalidInputError
        More than one nonzero label and no ``label``; ``label`` not in a
        non-empty file; more than one channel.
    GeometryMismatchError
        The file's geometry differs from ``like``'s.
    """
    import numpy as np

    from .io import read_image

    ref = read_image(path)
    if ref.multichannel:
        raise InvalidInputError(f"ground truth {str(path)!r} has {ref.channels} channels; "
                                "expected one")
    diffs = like.same_geometry(ref)
    if diffs:
        raise GeometryMismatchError(
            f"ground truth {str(path)!r} does not match the image geometry: " + "; ".join(diffs))
    arr = ref.array
    labels = np.unique(arr[arr != 0])
    if label is None:
        if labels.size > 1:
            raise InvalidInputError(
                f"ground truth {str(path)!r} holds {labels.size} labels {_label_list(labels)}; "
                "choose the object with --label N (manifest column label)")
        return (arr != 0).astype(np.uint8)
    label = _check_label(label)
    if labels.size and not (labels == label).any():
        raise InvalidInputError(f"label {label} does not occur in ground truth {str(path)!r}; "
                                f"it holds {_label_list(labels)}")
    return (arr == label).astype(np.uint8)


def _finite(value: float) -> float | None:
    return round(value, 6) if math.isfinite(value) else None


def segment_one(image_path: str, clicks_path: str, out_path: str, *, model=None,
                ground_truth: str | None = None, co_registered=(),
                label: int | None = None) -> dict:
    """Replay one clicks file on one image and write the mask; returns a result dict.

    `co_registered` paths are read onto the image's grid as further channels
    (`midseg.io.read_image`); the mask has the image's geometry. The output path is
    checked (`midseg.io.check_output_path`) before the image is read and again, for a
    3D image, before the replay. With
    `ground_truth` (read by `read_ground_truth` with `label`, before the
    replay) the result holds Dice, ASSD and HD95; ASSD and HD95 are None when
    the ground truth or the mask is empty, and ``note`` says why.
    """
    from . import metrics
    from .io import check_output_path, read_image, write_mask
    from .session import Session

    t0 = time.perf_counter()
    check_output_path(out_path, mask=True)   # a bad output path fails before any work
    inputs = [q for q in (image_path, clicks_path, ground_truth, *co_registered) if q]
    if os.path.abspath(out_path) in {os.path.abspath(q) for q in inputs}:
        raise InvalidInputError(f"the output {str(out_path)!r} is one of the inputs; name "
                                "another file")
    for q in (image_path, *co_registered):
        if os.path.isdir(q) and os.path.commonpath(
                [os.path.abspath(q), os.path.abspath(out_path)]) == os.path.abspath(q):
            raise InvalidInputError(f"the output {str(out_path)!r} lies inside the DICOM "
                                    f"series folder {str(q)!r}, which would then hold another "
                                    "series; write it elsewhere")
    image = read_image(image_path, *co_registered)
    check_output_path(out_path, image.ndim, mask=True)
    if ground_truth is not None and not str(ground_truth):
        raise InvalidInputError("the ground-truth path is empty")
    gt = read_ground_truth(ground_truth, image, label) if ground_truth else None
    session = Session.from_clicks(clicks_path, image, model=model)
    mask = session.mask
    assert mask is not None  # from_clicks ran stage 1 (or started from a mask)
    write_mask(out_path, mask, like=image)
    result = {"rounds": len(session.rounds), "seconds": round(time.perf_counter() - t0, 3),
              "mask": str(out_path), "dice": None, "assd": None, "hd95": None, "note": None}
    if gt is not None:
        result["dice"] = _finite(metrics.dice(mask, gt))
        if not gt.any():
            result["note"] = "ground truth empty: ASSD/HD95 undefined"
        elif not mask.any():
            result["note"] = "mask empty: ASSD/HD95 undefined"
        else:
            result["assd"] = _finite(metrics.assd(mask, gt, image.spacing))
            result["hd95"] = _finite(metrics.hd95(mask, gt, image.spacing))
    return result


# ---------------------------------------------------------------------------
# Inputs' digests: what makes a finished case finished
# ---------------------------------------------------------------------------

def _sha256(path: str | os.PathLike | None) -> str | None:
    """sha256 of a file, or of a folder's files (a DICOM series); None when there is none."""
    if path is None:
        return None
    p = Path(path)
    try:
        if p.is_dir():
            h = hashlib.sha256()
            for f in sorted(q for q in p.rglob("*") if q.is_file()):
                h.update(f"{f.relative_to(p).as_posix()}\0{_sha256(f)}\n".encode())
            return h.hexdigest()
        return file_sha256(p)
    except OSError:
        return None


def _model_ref(model: str | None) -> dict:
    """The batch model as recorded: the name or absolute path given, and its weights' sha256."""
    if model is None:  # the clicks file names the model: its digest covers the choice
        return {"name": None, "sha256": None}
    from .models import model_path

    pt = model_path(model)
    shipped = not (model.endswith(".pt") or "/" in model or os.sep in model)
    return {"name": model if shipped else os.path.abspath(pt), "sha256": _model_sha256(pt)}


def _model_sha256(pt: Path) -> str | None:
    """sha256 of a model's weights and its card (the card sets the grid, margin and cue);
    once per process for unchanged files (every case of a batch names the same model)."""
    try:
        stamps = tuple((st.st_mtime_ns, st.st_size) for st in
                       (os.stat(pt), os.stat(Path(pt).with_suffix(".json"))))
    except OSError:
        stamps = None
    return _model_sha256_of(os.path.abspath(pt), stamps)


@functools.lru_cache(maxsize=16)
def _model_sha256_of(pt: str, stamps) -> str | None:
    parts = [_sha256(pt), _sha256(Path(pt).with_suffix(".json"))]
    if parts[0] is None:
        return None
    return hashlib.sha256("\n".join(str(x) for x in parts).encode()).hexdigest()


def _clicks_model_sha256(clicks: str) -> str | None:
    """sha256 of the shipped model a clicks file names (the one its replay loads), if any."""
    try:
        from .models import model_path

        data = json.loads(Path(clicks).read_text(encoding="utf-8"))
        return _model_sha256(model_path(data["model"]["name"]))
    except Exception:  # no such model or no readable name: the clicks digest covers the name
        return None


def _inputs(case: Case, model_ref: dict) -> dict:
    """The content digests a case's result depends on (no paths: resuming from elsewhere works)."""
    return {"image": _sha256(case.image),
            "co_registered": [_sha256(q) for q in case.co_registered],
            "clicks": _sha256(case.clicks),
            "ground_truth": _sha256(case.ground_truth),
            "label": case.label,
            "model_sha256": (model_ref["sha256"] if model_ref.get("name") is not None
                             else _clicks_model_sha256(case.clicks))}


def _read_record(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _done(out: Path, case: Case, inputs: dict) -> bool:
    """A case is done when its record says ok for these inputs and its mask exists."""
    data = _read_record(_record_path(out, case))
    return (data is not None and data.get("status") == "ok" and data.get("inputs") == inputs
            and _mask_path(out, case).is_file())


# ---------------------------------------------------------------------------
# Running cases
# ---------------------------------------------------------------------------

def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def _finish(out: Path, case: Case, record: dict) -> dict:
    """Write the case record; a failed case, or one whose record cannot be written, has no mask."""
    path = _record_path(out, case)
    if record["status"] == "ok":
        try:
            write_json_atomic(path, record)
            return record
        except Exception as exc:  # the record is the proof of a finished case: no record, no mask
            record.update(status="failed",
                          error=f"cannot write the case record {str(path)!r}: {_first_line(exc)}")
    try:
        _mask_path(out, case).unlink(missing_ok=True)
    except OSError:
        pass
    try:
        write_json_atomic(path, record)
    except Exception:  # the summary still lists the case from the returned record
        pass
    return record


def run_case(case: Case, out_dir: str, model=None, inputs: dict | None = None) -> dict:
    """Run one case in a worker and write its record; never raises.

    A failure (of the replay or of writing the mask or the record) is
    returned as ``status: "failed"`` with a one-line ``error``, and the case
    then has no mask. `inputs` is the digest of the case's inputs that the
    record holds (computed here when None).
    """
    out = Path(out_dir)
    record: dict[str, Any] = {"case": case.case, "status": "ok", "error": None, "note": None}
    mask_path = _mask_path(out, case)
    try:
        record["inputs"] = inputs if inputs is not None else _inputs(case, _model_ref(model))
        record.update(segment_one(case.image, case.clicks, str(mask_path), model=model,
                                  ground_truth=case.ground_truth,
                                  co_registered=case.co_registered, label=case.label))
        record["mask"] = str(mask_path.absolute())
    except Exception as exc:  # one bad case must not stop the batch
        record.update(status="failed", error=_first_line(exc), traceback=traceback.format_exc())
    return _finish(out, case, record)


def _lost(out: Path, case: Case, inputs: dict, why: str) -> dict:
    """The record of a case whose worker ended without returning."""
    return _finish(out, case, {"case": case.case, "status": "failed", "error": why, "note": None,
                               "inputs": inputs})


def _csv_cell(value):
    """A summary cell: empty for None; text a spreadsheet would run as a formula gets a ``'``."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def _write_summary(out: Path, cases: Iterable[Case], results: dict, inputs: dict) -> Path:
    rows = []
    for case in cases:
        data = results.get(case.case)
        if data is None:  # not run now: the record on disk, if it is for these inputs
            data = _read_record(_record_path(out, case))
            if data is None or data.get("inputs") != inputs.get(case.case):
                continue
        rows.append({k: data.get(k) for k in SUMMARY_FIELDS})
    path = out / "summary.csv"
    buf = io.StringIO(newline="")
    writer = csv.DictWriter(buf, fieldnames=SUMMARY_FIELDS)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_cell(v) for k, v in row.items()})
    write_bytes_atomic(path, buf.getvalue().encode("utf-8"))
    return path


def _prepare_out(out: Path) -> None:
    """Create the output folders and check they take files: one-line errors naming the folder."""
    if out.exists() and not out.is_dir():
        raise InvalidInputError(f"output folder {str(out)!r} is a file")
    for folder in (out, out / "cases", out / "masks"):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(prefix=".midseg-write-test.", dir=folder)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise InvalidInputError(
                f"output folder {str(folder)!r} is not writable: {exc.strerror or exc}") from None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _end_with_parent(parent: int) -> None:
    """Make this worker process end when the batch process `parent` ends, even when killed.

    A worker's own parent is the fork server (POSIX), which outlives a killed batch: a
    thread polls the batch process every half second. Where workers are spawned by the
    batch process itself (no fork server: Windows), a thread joins that parent.
    """
    import threading

    if os.name != "posix":
        import multiprocessing

        parent_process = multiprocessing.parent_process()
        if parent_process is None:
            return

        def watch():
            parent_process.join()
            os._exit(1)

        threading.Thread(target=watch, name="midseg-parent-watch", daemon=True).start()
        return
    if not _alive(parent):
        os._exit(1)

    def poll():
        while _alive(parent):
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=poll, name="midseg-batch-watch", daemon=True).start()


def _init_worker(threads: int, parent: int | None = None) -> None:
    # Each worker process gets its share of the cores for torch, and ends with the batch.
    if parent is not None:
        _end_with_parent(parent)
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    try:
        import torch
        torch.set_num_threads(threads)
    except ImportError:  # pragma: no cover - torch is a core dependency
        pass


def run_batch(manifest: str | os.PathLike, out_dir: str | os.PathLike, *, workers: int | None = None,
              scheduler: str | None = None, model=None, progress: bool = True,
              label: int | None = None) -> dict:
    """Replay every case of a manifest; resumable, one failure does not stop the rest.

    Parameters
    ----------
    manifest : path
        CSV, see `read_manifest`.
    out_dir : path
        Gets ``masks/CASE.mask.nii.gz`` (or ``.png`` for pictures),
        ``cases/CASE.json`` (one record per case) and ``summary.csv``. It is
        created and checked to be writable before any case runs.
    workers : int, optional
        Local worker processes (default: the number of cores, at most the
        number of cases). 1 runs in this process. Workers end when this
        process ends (on Linux even when it is killed). A worker that dies
        fails its case only, with an ``error`` saying so.
    scheduler : str, optional
        Address of a Dask distributed scheduler (``tcp://host:8786``); the
        cases then run on that cluster instead of a local pool.
    model : str, optional
        Shipped model name or ``.pt`` path replacing the one each clicks file
        names.
    label : int, optional
        The object's value in multi-label ground truths, for rows whose
        ``label`` column is empty.

    Notes
    -----
    A case is done, and skipped by a re-run, when its record says ``ok``, its
    mask exists and the sha256 digests the record holds for the image,
    co-registered images, clicks, ground truth, label and model weights (of
    `model`, else of the shipped model the clicks file names) equal those of
    the files now: editing any of them computes the case again, and
    resuming from another working directory does not. A case that fails
    (its replay, or writing its mask or record) is recorded as failed, has no
    mask and is tried again by a re-run.

    ``summary.csv`` has one row per case with a record for the current
    inputs. ASSD and HD95 are empty when the ground truth or the mask is
    empty; the ``note`` column says so. A text cell that starts with ``=``,
    ``+``, ``-``, ``@``, a tab or a carriage return gets a leading ``'`` so
    that a spreadsheet shows it instead of running it as a formula (OWASP
    advice on CSV injection); the records and file names keep the names as
    they are.

    Returns
    -------
    dict
        ``{"done": n_ok, "failed": n_failed, "skipped": n_already_done, "summary": path}``.
    """
    from tqdm import tqdm

    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)
                                or workers < 1):
        raise InvalidInputError(f"workers must be an integer >= 1, got {workers!r}")
    cases = read_manifest(manifest)
    if label is not None:
        label = _check_label(label)
        cases = [replace(c, label=label) if c.label is None and c.ground_truth else c
                 for c in cases]
    if isinstance(model, os.PathLike):
        model = str(model)
    if model is not None and not isinstance(model, str):
        raise InvalidInputError("batch model must be a shipped model name or a path to weights")
    model_ref = _model_ref(model)
    if model is not None and model_ref["name"] != model:
        model = model_ref["name"]  # an absolute path: the workers need not share our folder
    out = Path(out_dir)
    _prepare_out(out)
    inputs = {c.case: _inputs(c, model_ref) for c in cases}
    todo = [c for c in cases if not _done(out, c, inputs[c.case])]
    skipped = len(cases) - len(todo)
    results = {}
    bar = tqdm(total=len(todo), desc="cases", unit="case", disable=not progress,
               initial=0, postfix={"skipped": skipped})

    def collect(record):
        results[record["case"]] = record
        bar.update(1)

    try:
        if scheduler:
            _run_dask(todo, out, model, scheduler, inputs, collect)
        else:
            n = workers or os.cpu_count() or 1
            n = max(1, min(n, len(todo)))
            if n == 1 or not todo:
                for case in todo:
                    collect(run_case(case, str(out), model, inputs[case.case]))
            else:
                _run_pool(todo, out, model, n, inputs, collect)
    finally:
        bar.close()
        summary = _write_summary(out, cases, results, inputs)
    failed = sum(r["status"] != "ok" for r in results.values())
    return {"done": len(results) - failed, "failed": failed, "skipped": skipped,
            "summary": str(summary)}


def _close_broken(executor) -> str:
    """Shut a broken one-process pool down; says how its worker ended (exit code when known)."""
    import signal

    try:  # a private attribute: without it, no detail
        processes = list((executor._processes or {}).values())
    except Exception:
        processes = []
    executor.shutdown(wait=True)  # its manager thread collects the exit status first
    codes = [getattr(p, "exitcode", None) for p in processes]
    code = next((c for c in codes if c not in (None, 0)), None)
    if code is None:
        return "it ended abruptly"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (out of memory?)" if -code == getattr(signal, "SIGKILL", 9) else ""
        return f"it was killed by {name}{hint}"
    return f"it exited with status {code}"


def _worker_context(mp):
    """Where worker processes come from: a fork server that has imported midseg, torch
    and the compiled geodesic kernels once (`midseg._preload`), so that each worker starts
    in milliseconds; "spawn" where there is no fork server (Windows). The fork server
    forks before torch starts a thread, which plain "fork" from this process cannot
    promise."""
    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["midseg._preload"])
        return ctx
    return mp.get_context("spawn")


def _run_pool(todo, out, model, n, inputs, collect):
    """Run the cases on `n` one-process pools, so that a dying worker fails its own case only."""
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    threads = max(1, (os.cpu_count() or 1) // n)
    ctx = _worker_context(mp)

    def new_lane():
        return ProcessPoolExecutor(1, mp_context=ctx, initializer=_init_worker,
                                   initargs=(threads, os.getpid()))

    lanes = [new_lane() for _ in range(n)]
    waiting = list(reversed(todo))
    running = {}

    def start(i):
        case = waiting.pop()
        fut = lanes[i].submit(run_case, case, str(out), model, inputs[case.case])
        running[fut] = (i, case)

    try:
        for i in range(min(n, len(waiting))):
            start(i)
        while running:
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in finished:
                i, case = running.pop(fut)
                try:
                    record = fut.result()
                except BrokenProcessPool:
                    why = _close_broken(lanes[i])
                    lanes[i] = new_lane()
                    record = _lost(out, case, inputs[case.case],
                                   f"the worker process running this case died: {why}")
                except Exception as exc:  # e.g. the case could not be sent to the worker
                    record = _lost(out, case, inputs[case.case], _first_line(exc))
                collect(record)
                if waiting:
                    start(i)
    finally:
        for lane in lanes:
            lane.shutdown(wait=True, cancel_futures=True)


def _run_dask(todo, out, model, scheduler, inputs, collect):
    try:
        from distributed import Client, as_completed
    except ImportError:
        raise InvalidInputError(
            "--scheduler needs Dask: pip install -e \".[dist]\" in the midseg checkout") from None
    with Client(scheduler, timeout="30s") as client:
        futures = {client.submit(run_case, c, str(out), model, inputs[c.case], pure=False): c
                   for c in todo}
        for fut in as_completed(futures):
            case = futures[fut]
            try:
                record = fut.result()
            except Exception as exc:  # e.g. KilledWorker: the case's worker died
                record = _lost(out, case, inputs[case.case], _first_line(exc))
            collect(record)


# ---------------------------------------------------------------------------
# CLI hooks (wired by midseg.cli)
# ---------------------------------------------------------------------------

def segment_add_arguments(parser) -> None:
    parser.add_argument("image", help="image file or DICOM directory")
    parser.add_argument("--clicks", required=True, help="clicks JSON written by midseg (Session.save_clicks)")
    parser.add_argument("-o", "--output", required=True, help="mask file to write (same geometry as the image)")
    parser.add_argument("--model", default=None, help="shipped model name or weights path (default: the one in the clicks file)")
    parser.add_argument("--ground-truth", default=None, help="reference mask: also print Dice/ASSD/HD95")
    parser.add_argument("--label", type=int, default=None, metavar="N",
                        help="the object's value in a multi-label --ground-truth (required when "
                             "it holds more than one nonzero value)")
    parser.add_argument("--with", dest="co_registered", action="append", default=[],
                        metavar="SECOND",
                        help="a co-registered image of the same patient (e.g. the PET of a CT), "
                             "resampled onto the first image's grid in physical coordinates as "
                             "a further channel (repeatable)")


def segment_run(args) -> int:
    if args.label is not None and not args.ground_truth:
        raise InvalidInputError("--label selects the object in --ground-truth; give --ground-truth")
    result = segment_one(args.image, args.clicks, args.output, model=args.model,
                         ground_truth=args.ground_truth,
                         co_registered=tuple(args.co_registered), label=args.label)
    msg = f"wrote {args.output} ({result['rounds']} click rounds, {result['seconds']:.2f} s)"
    if result["dice"] is not None:
        msg += f"; Dice {result['dice']:.4f}"
        if result["assd"] is not None:
            msg += f", ASSD {result['assd']:.2f} mm, HD95 {result['hd95']:.2f} mm"
        else:
            msg += f" ({result['note']})"
    print(msg)
    return 0


def batch_add_arguments(parser) -> None:
    parser.description += (
        "\n\nThe manifest is a CSV (UTF-8) with columns image, clicks and optionally "
        "ground_truth, case, label (the object's value in a multi-label ground truth) and "
        "co_registered (further images of the case onto the image's grid, separated by ';'); "
        "paths are relative to the manifest. Case names are file names inside DIR (no absolute "
        "names, no '..'). Writes DIR/masks/, DIR/cases/ (one record per case) and "
        "DIR/summary.csv. Re-running skips finished cases whose image, clicks, ground truth and "
        "model are unchanged (by content); failed and changed cases run again.")
    parser.add_argument("manifest", help="CSV manifest")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--workers", type=int, default=None, help="local worker processes (default: cores)")
    parser.add_argument("--scheduler", default=None, help="Dask scheduler address: run on that cluster instead")
    parser.add_argument("--model", default=None, help="override the model named in each clicks file")
    parser.add_argument("--label", type=int, default=None, metavar="N",
                        help="the object's value in multi-label ground truths (for rows without "
                             "a label column value)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def batch_run(args) -> int:
    if args.workers is not None and args.workers < 1:
        raise InvalidInputError(f"--workers must be >= 1, got {args.workers}")
    res = run_batch(args.manifest, args.out, workers=args.workers, scheduler=args.scheduler,
                    model=args.model, progress=not args.no_progress, label=args.label)
    print(f"{res['done']} done, {res['failed']} failed, {res['skipped']} already done; "
          f"summary: {res['summary']}")
    return 1 if res["failed"] else 0
