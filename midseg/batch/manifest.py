"""The batch manifest: reading and checking it, the cases it lists, their safe file names.

Part of `midseg.batch`: a case name becomes file names inside the output folder
(``cases/NAME.json``, ``masks/NAME.mask.SUFFIX``), so it is normalised and
checked here, before any case runs.
"""

from __future__ import annotations

import codecs
import csv
import io
import operator
import os
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from ..errors import InvalidInputError


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
            "to the output folder"
        )
    parts = [part for part in text.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise InvalidInputError(
            f"case name {name!r} has a '..' component; a case name must stay inside the "
            "output folder"
        )
    if not parts:
        raise InvalidInputError(f"case name {name!r} is empty as a file name")
    return "/".join(parts)


def _name_key(name: str) -> str:
    """Names with equal keys name the same files on some file system.

    Case-insensitive (Windows, macOS), Unicode-normalised (macOS) and without
    the trailing dots and spaces Windows drops.
    """
    return "/".join(
        unicodedata.normalize("NFC", part).casefold().rstrip(". ") for part in name.split("/")
    )


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
        raise InvalidInputError(
            f"manifest {str(p)!r} is not a text CSV file: NUL byte on line "
            f"{_line_of(data, at)} (byte offset {at})"
        )
    skip = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        return data[skip:].decode("utf-8")
    except UnicodeDecodeError as exc:
        at = exc.start + skip
        raise InvalidInputError(
            f"manifest {str(p)!r} is not UTF-8 text: byte 0x{data[at]:02x} on line "
            f"{_line_of(data, at)} (byte offset {at}); save it as UTF-8 ('CSV UTF-8' in a "
            "spreadsheet)"
        ) from None


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
                f"{where} lacks the column(s) {sorted(missing)}; it has {fields}"
            )
        for values in reader:
            start, line = line + 1, reader.line_num
            if not any(v.strip() for v in values):
                continue
            row = {k: v.strip() for k, v in zip(fields, values) if k}
            yield start, row
    except csv.Error as exc:
        if "unexpected end of data" in str(exc):
            raise InvalidInputError(
                f"{where} line {line + 1}: a quoted field is never closed (unterminated quote)"
            ) from None
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
                    f"{where}: label must be a nonzero integer, got {row['label']!r}"
                ) from None
            try:
                label = _check_label(label)
            except InvalidInputError as exc:
                raise InvalidInputError(f"{where}: {exc}") from None
            if gt is None:
                raise InvalidInputError(f"{where}: a label needs a ground_truth")
        # absolute, links not followed (a link loop is then the case's read error, not ours)
        extra = tuple(
            os.path.abspath(base / q.strip())
            for q in (row.get("co_registered") or "").split(";")
            if q.strip()
        )
        cases.append(
            Case(
                name,
                os.path.abspath(base / row["image"]),
                os.path.abspath(base / row["clicks"]),
                os.path.abspath(base / gt) if gt else None,
                extra,
                label,
            )
        )
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
                    "a folder"
                )
