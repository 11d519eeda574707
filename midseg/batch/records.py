"""What makes a finished case finished: the inputs' digests, the case records, the summary.

Part of `midseg.batch`. Each finished case leaves a record (``cases/CASE.json``)
holding the sha256 of its inputs, so a re-run skips it only while they are
unchanged; `run_case` (what a worker runs) never raises: a failure is its record.
Tests that patch a global of this code (``write_json_atomic``, ``segment_one``)
patch it here.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import json
import os
import tempfile
import traceback
from pathlib import Path
from typing import Any, Iterable

from ..errors import InvalidInputError
from ..io import file_sha256, write_bytes_atomic, write_json_atomic
from .manifest import Case, _mask_path, _record_path
from .segment import segment_one

SUMMARY_FIELDS = [
    "case",
    "status",
    "rounds",
    "seconds",
    "dice",
    "assd",
    "hd95",
    "mask",
    "error",
    "note",
]


# First characters that make a spreadsheet read a cell as a formula (OWASP: CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


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
    from ..models import model_path

    pt = model_path(model)
    shipped = not (model.endswith((".pt", ".json")) or "/" in model or os.sep in model)
    return {"name": model if shipped else os.path.abspath(pt), "sha256": _model_sha256(pt)}


def _model_files(pt: Path) -> tuple[str, ...]:
    """The files a model's results depend on: its weights and card, or for an ensemble card
    the card and every member's weights and card."""
    pt = Path(pt)
    if pt.suffix != ".json":
        return (os.path.abspath(pt), os.path.abspath(pt.with_suffix(".json")))
    from ..errors import MidsegError
    from ..models import ENSEMBLE_FIELD, read_card

    try:
        names = [str(m.get("file")) for m in read_card(pt)[ENSEMBLE_FIELD]["members"]]
    except MidsegError:  # unreadable: the card alone (loading the model will say why)
        names = []
    out = [os.path.abspath(pt)]
    for name in names:
        member = pt.parent / Path(name).name
        out += [os.path.abspath(member), os.path.abspath(member.with_suffix(".json"))]
    return tuple(out)


def _model_sha256(pt: Path) -> str | None:
    """sha256 of a model's weights and its card (the card sets the grid, margin and cue; an
    ensemble: its card and its members' weights and cards); once per process for unchanged
    files (every case of a batch names the same model)."""
    files = _model_files(pt)
    try:
        stamps = tuple((st.st_mtime_ns, st.st_size) for st in map(os.stat, files))
    except OSError:
        stamps = None
    return _model_sha256_of(files, stamps)


@functools.lru_cache(maxsize=16)
def _model_sha256_of(files: tuple[str, ...], stamps) -> str | None:
    parts = [_sha256(f) for f in files]
    if parts[0] is None:
        return None
    return hashlib.sha256("\n".join(str(x) for x in parts).encode()).hexdigest()


def _clicks_model_sha256(clicks: str) -> str | None:
    """sha256 of the shipped model a clicks file names (the one its replay loads), if any."""
    try:
        from ..models import model_path

        data = json.loads(Path(clicks).read_text(encoding="utf-8"))
        return _model_sha256(model_path(data["model"]["name"]))
    except Exception:  # no such model or no readable name: the clicks digest covers the name
        return None


def _inputs(case: Case, model_ref: dict) -> dict:
    """The content digests a case's result depends on (no paths: resuming from elsewhere works)."""
    return {
        "image": _sha256(case.image),
        "co_registered": [_sha256(q) for q in case.co_registered],
        "clicks": _sha256(case.clicks),
        "ground_truth": _sha256(case.ground_truth),
        "label": case.label,
        "model_sha256": (
            model_ref["sha256"]
            if model_ref.get("name") is not None
            else _clicks_model_sha256(case.clicks)
        ),
    }


def _read_record(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _done(out: Path, case: Case, inputs: dict) -> bool:
    """A case is done when its record says ok for these inputs and its mask exists."""
    data = _read_record(_record_path(out, case))
    return (
        data is not None
        and data.get("status") == "ok"
        and data.get("inputs") == inputs
        and _mask_path(out, case).is_file()
    )


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
            record.update(
                status="failed",
                error=f"cannot write the case record {str(path)!r}: {_first_line(exc)}",
            )
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
        record.update(
            segment_one(
                case.image,
                case.clicks,
                str(mask_path),
                model=model,
                ground_truth=case.ground_truth,
                co_registered=case.co_registered,
                label=case.label,
            )
        )
        record["mask"] = str(mask_path.absolute())
    except Exception as exc:  # one bad case must not stop the batch
        record.update(status="failed", error=_first_line(exc), traceback=traceback.format_exc())
    return _finish(out, case, record)


def _lost(out: Path, case: Case, inputs: dict, why: str) -> dict:
    """The record of a case whose worker ended without returning."""
    return _finish(
        out,
        case,
        {"case": case.case, "status": "failed", "error": why, "note": None, "inputs": inputs},
    )


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
                f"output folder {str(folder)!r} is not writable: {exc.strerror or exc}"
            ) from None
