"""The clicks file: the JSON document that stores a session's points and replays it.

`midseg.Session.save_clicks` writes it and `midseg.Session.from_clicks` replays
it; `midseg.LabelSession` embeds one per object in its ``midseg-labels``
document, and `midseg.markups` converts it to and from 3D Slicer point lists.
This module is the format's one home: its name and versions, its schema
(`CLICKS_SCHEMA`, ``midseg/data/clicks.schema.json``), building a document
(`clicks_document`), reading and validating one (`read_clicks`,
`clicks_from_dict`, which also migrate older versions), writing one
(`write_clicks`), and the conversion of points between voxel indices and the
physical coordinates the file stores (`index_to_mm`, `mm_to_index`).

A document holds the format name and version, the geometry of the image the
clicks were made on (`geometry_xyz`), the model (`model_ref`) and the
refinement parameters, the interior margin points, and every click round, all
points in physical millimetres in SimpleITK's (x, y[, z]) order (LPS). A
session started from a mask also records that mask's sha256 (`mask_sha256`).
It must not import torch or Qt.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path

import numpy as np

from ._checks import as_points, check_json_numbers, computing_ndim
from .errors import GeometryMismatchError, InvalidInputError
from .io import Image, file_sha256, geometry_differences, write_json_atomic

__all__ = [
    "CLICKS_FORMAT",
    "CLICKS_VERSION",
    "READABLE_VERSIONS",
    "CLICKS_SCHEMA",
    "clicks_document",
    "clicks_from_dict",
    "read_clicks",
    "write_clicks",
    "geometry_xyz",
    "check_clicks_geometry",
    "model_ref",
    "index_to_mm",
    "mm_to_index",
    "mask_sha256",
]

#: The ``"format"`` entry of every clicks document.
CLICKS_FORMAT = "midseg-clicks"
#: Version 8: ``parameters.thick_slice_ratio`` (along an axis whose spacing is at least
#: that many times the smallest, a click in "ifgc" no deeper than a slice reaches only its
#: own slice; now 5 in 3D); files of versions 1-7 are read with 0 (off), the rule of
#: their time.
#: Version 7: ``parameters.band_reach`` (how far a click in "ifgc" also relabels the thin
#: layer of error along the boundary it lies in, now 6 reaches in 2D); files of versions
#: 1-6 are read with 0 (off), the rule of their time.
#: Version 6: ``parameters.min_click_depth`` (the smallest depth a click's reach in "ifgc"
#: is computed from, now 2 in 3D); files of versions 1-5 are read with 1, the rule of their
#: time. Version 5: ``parameters.margin_floor`` (3D stage 1 of "ifgc" now fuses the margin
#: points with a floor of 0.9, was 0.8) and ``parameters.claim_keep`` (the guard of a
#: foreground click's claim, new); files of versions 1-4 are read with the values of their
#: time (0.8 in 3D, 0 in 2D; claim_keep 0; version-3 files written before the 3D margin
#: fusion existed, with older `3d` weights, replay with it, and `ModelMismatchWarning` says
#: that their weights differ). Version 4: ``parameters.stage1_cut`` says whether 3D stage 1
#: of "ifgc" ends with the graph cut (`midseg.Session`, default True when absent); version-3
#: files were written before that cut existed and are read with ``stage1_cut: false``, so
#: they replay the masks they were made with. Version 3: method "ifgc" is click-local
#: information fusion (`midseg.refine.refine`).
#: Version-2 files were written when "ifgc" meant the certainty-weighted fusion of all clicks,
#: now "ifgc-global"; version-1 files when it meant Eq. 7 as printed, now "ifgc-paper". Older
#: files are read with those names in its place, so they replay the masks they were made with.
CLICKS_VERSION = 8
#: The versions `read_clicks` and `clicks_from_dict` accept (older ones are migrated).
READABLE_VERSIONS = (1, 2, 3, 4, 5, 6, 7, 8)
#: What "ifgc" meant in each older clicks-file version.
_OLD_IFGC = {1: "ifgc-paper", 2: "ifgc-global"}

#: The JSON Schema (draft 2020-12) every clicks document is validated against.
CLICKS_SCHEMA = Path(__file__).parent / "data" / "clicks.schema.json"


# ---------------------------------------------------------------------------
# building a document
# ---------------------------------------------------------------------------


def clicks_document(image: Image, model_ref: dict, parameters: dict, margin_points, rounds) -> dict:
    """The versioned clicks dict; points come as voxel indices (array order), go out in mm.

    Parameters
    ----------
    image : Image
        The image the points were placed on; its geometry goes into the document.
    model_ref : dict
        The ``"model"`` entry, ``{"name", "sha256"}`` as `model_ref` makes it.
    parameters : dict
        The session's ``{"lam", "sigma", "method"}``.
    margin_points : (N, D) array_like of int
        Interior margin points, array-order voxel indices.
    rounds : sequence
        ``(foreground, background, {"lam", "sigma", "method"})`` per click round, the
        clicks as array-order voxel indices.

    Returns
    -------
    dict
        The current-version document, ready for `write_clicks` (not validated here).
    """

    def mm(points):
        return index_to_mm(image, points)

    return {
        "format": CLICKS_FORMAT,
        "version": CLICKS_VERSION,
        "coordinates": "physical millimetres, (x, y[, z]) order as in SimpleITK/ITK (LPS)",
        "image": {**geometry_xyz(image), "channels": image.channels},
        "model": model_ref,
        "parameters": dict(parameters),
        "margin_points": mm(margin_points),
        "rounds": [
            {"foreground": mm(fg), "background": mm(bg), **params} for fg, bg, params in rounds
        ],
    }


def index_to_mm(image: Image, points) -> list:
    """Voxel indices (array order) as a clicks document stores them.

    Parameters
    ----------
    image : Image
        The image the indices refer to.
    points : (N, D) array_like
        Array-order voxel indices; N may be 0.

    Returns
    -------
    list of list of float
        Physical millimetres in (x, y[, z]) order, rounded to 6 decimals
        (``[]`` for no points).
    """
    to_mm = image.index_to_physical
    return (
        [[round(float(v), 6) for v in p[::-1]] for p in np.atleast_2d(to_mm(points))]
        if len(points)
        else []
    )


def geometry_xyz(image: Image) -> dict:
    """The image's geometry in SimpleITK's (x, y, z) order, as clicks files store it.

    Returns ``{"shape", "spacing", "origin", "direction"}`` as lists (mm for spacing and
    origin; ``direction[i][j]``: component i of axis j).
    """
    return {
        "shape": list(image.shape[::-1]),
        "spacing": list(image.spacing[::-1]),
        "origin": list(image.origin[::-1]),
        "direction": np.asarray(image.direction)[::-1, ::-1].tolist(),
    }


def model_ref(model) -> dict:
    """The ``"model"`` entry of a clicks document for a loaded model.

    Parameters
    ----------
    model : object
        A loaded model (its ``name`` and ``path`` attributes are read), or None.

    Returns
    -------
    dict
        ``{"name": model.name}``, plus ``"sha256"`` when the model has a ``path`` to an
        existing file: of the weights, or for an ensemble `midseg.models.model_sha256`
        (its members' weights).
    """
    ref = {"name": getattr(model, "name", None)}
    path = getattr(model, "path", None)
    if path is not None and Path(path).is_file():
        from . import models

        json_card = Path(path).suffix == ".json"
        ref["sha256"] = models.model_sha256(path) if json_card else file_sha256(path)
    return ref


def mask_sha256(mask: np.ndarray) -> str:
    """sha256 of a 0/1 uint8 mask's bytes (C order): what a clicks file records of the mask
    `Session.start_from_mask` started from."""
    return hashlib.sha256(np.ascontiguousarray(mask, dtype=np.uint8).tobytes()).hexdigest()


# ---------------------------------------------------------------------------
# using a document on an image
# ---------------------------------------------------------------------------


def check_clicks_geometry(data: dict, image: Image) -> None:
    """Raise `GeometryMismatchError` naming what differs between a clicks file and an image.

    Parameters
    ----------
    data : dict
        A validated clicks document (`clicks_from_dict`, `read_clicks`).
    image : Image
        The image to replay the clicks on.

    Raises
    ------
    GeometryMismatchError
        Shape, spacing, origin, direction or channel count differ (each difference named).
    InvalidInputError
        The document's geometry is not lists of numbers of the image's dimension.
    """
    stored = data["image"]
    try:
        diffs = geometry_differences(geometry_xyz(image), stored, atol=1e-4)
    except (TypeError, ValueError, OverflowError):
        raise InvalidInputError(
            "clicks file: image: shape, spacing, origin and direction must "
            "be lists of numbers of the image's dimension (direction a "
            "square matrix)"
        ) from None
    if stored.get("channels", image.channels) != image.channels:
        diffs.append(
            f"channels {image.channels} vs {stored['channels']}"
            + (
                " (open the co-registered image too: read_image(first, second), "
                "`midseg segment IMAGE --with SECOND`)"
                if stored["channels"] > image.channels
                else ""
            )
        )
    if diffs:
        raise GeometryMismatchError(
            "the clicks were made on an image with a different geometry (this image vs "
            "clicks file): " + "; ".join(diffs)
        )


def mm_to_index(image: Image, points_xyz, field: str = "points") -> np.ndarray:
    """Stored points (mm, (x, y[, z])) as the voxel indices (array order) of ``image``.

    Parameters
    ----------
    image : Image
        The image the points were made on.
    points_xyz : (N, D) array_like of float
        Points as a clicks document stores them; N may be 0.
    field : str
        The document field the points come from, named in errors.

    Returns
    -------
    (N, D) ndarray of int64

    Raises
    ------
    InvalidInputError
        Rows of another length or non-numbers, or a point outside the image.
    GeometryMismatchError
        A point that does not fall on a voxel centre (another image).
    """
    if not len(points_xyz):
        return np.zeros((0, image.ndim), np.int64)
    try:
        pts = np.asarray(points_xyz, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        raise InvalidInputError(
            f"clicks file: {field}: every point must be {image.ndim} "
            "numbers (rows of different lengths or non-numbers)"
        ) from None
    if pts.ndim != 2 or pts.shape[1] != image.ndim:
        raise InvalidInputError(
            f"clicks file: {field}: stored points must have {image.ndim} coordinates (mm), got "
            f"an array of shape {pts.shape}"
        )
    idx = image.physical_to_index(np.atleast_2d(pts[:, ::-1]))
    far = ~np.all(np.isfinite(idx) & (np.abs(idx) < 2.0**53), axis=1)
    if np.any(far):
        bad = pts[np.argmax(far)]
        raise InvalidInputError(
            f"clicks file: {field}: point ({', '.join(f'{v:g}' for v in bad)}) mm lies outside "
            f"the image of shape {tuple(image.shape)}"
        )
    rounded = np.rint(idx)
    name = f"clicks file: {field}"
    as_points(rounded.astype(np.int64), image.shape, name=name)  # outside: say so
    if np.max(np.abs(idx - rounded)) > 1e-3:
        raise GeometryMismatchError(
            f"clicks file: {field}: stored points do not fall on voxel centres of this image; "
            "it is not the image the clicks were made on"
        )
    return as_points(rounded.astype(np.int64), image.shape, name=name)


# ---------------------------------------------------------------------------
# reading, validating and writing
# ---------------------------------------------------------------------------


def clicks_from_dict(data: dict) -> dict:
    """Validate a clicks document given as a dict, migrating an older version.

    Parameters
    ----------
    data : dict
        A parsed clicks document of one of `READABLE_VERSIONS`.

    Returns
    -------
    dict
        ``data`` itself when it is of the current version; for an older version a
        new dict of the current version with the settings of its time: ``"ifgc"``
        methods renamed to what they meant then (versions 1-2), ``parameters.stage1_cut``
        false (versions 1-3), ``margin_floor`` 0.8 in 3D / 0 in 2D and ``claim_keep`` 0
        (versions 1-4), ``min_click_depth`` 1 (versions 1-5), ``band_reach`` 0
        (versions 1-6), ``thick_slice_ratio`` 0 (versions 1-7), and
        ``"upgraded_from_version"`` added.

    Raises
    ------
    InvalidInputError
        Another format or version, a missing entry, a non-finite number, or a
        schema violation, as ``"clicks file: field.path: what is wrong"``.
    """
    if not isinstance(data, dict) or data.get("format") != CLICKS_FORMAT:
        raise InvalidInputError(
            f"not a midseg clicks file: format is {data.get('format') if isinstance(data, dict) else None!r}, "
            f"expected {CLICKS_FORMAT!r}"
        )
    version = data.get("version")
    if version not in READABLE_VERSIONS:
        raise InvalidInputError(
            f"clicks file version {version!r} is not supported (this midseg reads versions "
            f"{', '.join(str(v) for v in READABLE_VERSIONS)})"
        )
    for key in ("image", "parameters", "margin_points", "rounds"):
        if key not in data:
            raise InvalidInputError(f"clicks file lacks the {key!r} entry")
    check_json_numbers(data, "clicks file")
    error = _schema_error(data)
    if error is not None:
        raise InvalidInputError(f"clicks file: {error}")
    if version != CLICKS_VERSION:
        data = _upgrade(data, version)
    return data


@functools.lru_cache(maxsize=1)
def _clicks_validator():
    import jsonschema

    schema = json.loads(CLICKS_SCHEMA.read_text(encoding="utf-8"))
    return jsonschema.Draft202012Validator(schema)


def _schema_error(data: dict) -> str | None:
    """The first violation of `CLICKS_SCHEMA` as ``"field.path: what is wrong"``, or None."""
    from jsonschema.exceptions import best_match

    error = best_match(_clicks_validator().iter_errors(data))
    if error is None:
        return None
    path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
    return f"{path.lstrip('.') or 'top level'}: {error.message}"


#: ``margin_floor`` of clicks files before version 5, by the dimensionality the session
#: computes in (a volume one voxel thick is 2D).
_OLD_MARGIN_FLOOR = {2: 0.0, 3: 0.8}


def _upgrade(data: dict, version: int) -> dict:
    """An older clicks dict as the current version: its "ifgc" becomes `_OLD_IFGC[version]`
    (versions 1-2), stage 1 keeps the 0.5 threshold before version 4 (``stage1_cut:
    false``), the stage-1 floor and claim guard are those of versions 1-4, the smallest
    click depth that of versions 1-5, the boundary band is off (versions 1-6), and so is
    the thick-slice rule (versions 1-7)."""

    def method(entry):
        if not isinstance(entry, dict) or entry.get("method") != "ifgc" or version >= 3:
            return entry
        return {**entry, "method": _OLD_IFGC[version]}

    params = method(data["parameters"])
    if isinstance(params, dict):
        ndim = computing_ndim(data["image"]["shape"])  # 2 or 3 entries: the schema holds
        params = {
            **params,
            **({"margin_floor": _OLD_MARGIN_FLOOR[ndim], "claim_keep": 0.0} if version < 5 else {}),
            **({"min_click_depth": 1.0} if version < 6 else {}),
            **({"band_reach": 0.0} if version < 7 else {}),
            "thick_slice_ratio": 0.0,
            **({"stage1_cut": False} if version < 4 else {}),
        }
    rounds = data["rounds"]
    return {
        **data,
        "version": CLICKS_VERSION,
        "upgraded_from_version": version,
        "parameters": params,
        "rounds": [method(r) for r in rounds] if isinstance(rounds, list) else rounds,
    }


def read_clicks(path: str | os.PathLike) -> dict:
    """Read and validate a clicks JSON file written by `Session.save_clicks`.

    Parameters
    ----------
    path : str or PathLike

    Returns
    -------
    dict
        The document, of the current version (see `clicks_from_dict`).

    Raises
    ------
    InvalidInputError
        No such file, a folder, unreadable, not UTF-8, not JSON, a NaN or
        infinity, or what `clicks_from_dict` refuses; the message names the file
        (and the field).
    """
    p = Path(path)
    if not p.exists():
        raise InvalidInputError(f"no such clicks file: {str(p)!r}")

    def no_constant(name):
        raise InvalidInputError(
            f"clicks file {str(p)!r} holds {name}, which is not a number a clicks file can store"
        )

    if p.is_dir():
        raise InvalidInputError(f"clicks file {str(p)!r} is a folder")
    try:
        data = json.loads(p.read_bytes().decode("utf-8"), parse_constant=no_constant)
    except RecursionError:
        raise InvalidInputError(
            f"clicks file {str(p)!r} is nested too deeply to be a clicks file"
        ) from None
    except UnicodeDecodeError as exc:
        raise InvalidInputError(
            f"clicks file {str(p)!r} is not UTF-8 text (byte {exc.start}: "
            f"{exc.object[exc.start : exc.start + 1]!r})"
        ) from None
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"clicks file {str(p)!r} is not valid JSON: {exc}") from None
    except OSError as exc:
        raise InvalidInputError(f"cannot read clicks file {str(p)!r}: {exc.strerror}") from None
    try:
        return clicks_from_dict(data)
    except InvalidInputError as exc:
        msg = str(exc)
        for lead in ("clicks file: ", "clicks file "):
            if msg.startswith(lead):
                msg = msg[len(lead) :]
                break
        raise InvalidInputError(f"clicks file {str(p)!r}: {msg}") from None


def write_clicks(path: str | os.PathLike, doc: dict) -> None:
    """Write a clicks document as JSON to ``path`` atomically.

    Parameters
    ----------
    path : str or PathLike
        The file; its folder is created. A reader never sees a half-written
        file (`midseg.io.write_json_atomic`).
    doc : dict
        The document, e.g. from `clicks_document` or `midseg.Session.clicks_dict`;
        it is written as given (indented by one space), not validated.
    """
    write_json_atomic(path, doc)
