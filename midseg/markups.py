"""3D Slicer markups point lists (``*.mrk.json``): read, write, and convert to and from clicks.

Points cross this module as physical LPS millimetres in (x, y, z) order, the
convention of SimpleITK and of midseg's clicks files. Nothing here runs the CNN
or resamples: turning points into clicks only snaps them to voxel centres.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ._checks import DEFAULT_LAM, DEFAULT_SIGMA, check_json_numbers, computing_ndim
from .errors import InvalidInputError
from .io import write_json_atomic

__all__ = [
    "Markups",
    "read_markups",
    "write_markups",
    "clicks_from_markups",
    "markups_from_clicks",
    "SLICER_SCHEMA",
    "PLANE_TOLERANCE_MM",
]

#: ``@schema`` written by 3D Slicer 5 (and by `write_markups`).
SLICER_SCHEMA = (
    "https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/"
    "Markups/Resources/Schema/markups-schema-v1.0.3.json#"
)
# Slicer accepts any 1.x schema; the same test, as Slicer makes it (case-insensitive).
_SCHEMA_PATTERN = re.compile(r"markups-schema-v1\.[0-9]+\.[0-9]+\.json#*$", re.IGNORECASE)

#: Largest |z| (mm) accepted for a point meant for a 2D image. Slicer shows a 2D
#: image as one slice at z = 0, 1 mm thick (its z spacing); this is half of it.
PLANE_TOLERANCE_MM = 0.5

# Slicer stores orientation matrices in the file's coordinate system: the identity
# in RAS, and the RAS identity with x and y negated in LPS.
_ORIENTATION = {
    "LPS": [-1.0, -0.0, -0.0, -0.0, -1.0, -0.0, 0.0, 0.0, 1.0],
    "RAS": [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
}

# Per point class: the colours of the GUI's markers (RGB in [0, 1]).
_CLASS_COLORS = {
    "margin": (1.0, 0.843, 0.0),
    "foreground": (0.157, 0.863, 0.235),
    "background": (0.941, 0.157, 0.157),
}

_LPS_FROM_RAS = np.array([-1.0, -1.0, 1.0])


@dataclass(frozen=True, eq=False)
class Markups:
    """One Slicer point list ("Fiducial" markups node).

    Attributes
    ----------
    name : str
        The node name: the file's ``name`` entry, else the file name without
        ``.mrk.json`` (what Slicer shows).
    points : (N, 3) ndarray of float64
        Defined control points in LPS millimetres, (x, y, z) order, read-only.
    labels : tuple of str
        The control points' labels (``"F-1"``, ...), one per row of `points`.
    """

    name: str
    points: np.ndarray
    labels: tuple[str, ...]


# ---------------------------------------------------------------------------
# Slicer files
# ---------------------------------------------------------------------------


def read_markups(path: str | os.PathLike) -> list[Markups]:
    """Read the point lists of a 3D Slicer markups file (``*.mrk.json``).

    Parameters
    ----------
    path : str or PathLike
        A markups JSON file written by 3D Slicer (schema 1.x) or `write_markups`.

    Returns
    -------
    list of Markups
        One per markups node in the file, in file order (Slicer writes one).
        Positions in RAS are converted to LPS. Control points whose
        ``positionStatus`` is not ``"defined"`` (``"undefined"``, ``"preview"``,
        ``"missing"``) have no usable position and are skipped.

    Raises
    ------
    InvalidInputError
        Missing file, not JSON, no 1.x ``@schema`` or no ``markups`` list, a
        markups node that is not a point list (``"Curve"``, ``"ClosedCurve"``,
        ``"Line"``, ``"Angle"``, ``"Plane"``, ``"ROI"``), a coordinate system
        other than LPS/RAS, units other than millimetres, or a defined control
        point without 3 finite coordinates.

    Notes
    -----
    A node without ``coordinateSystem`` is LPS and one without
    ``coordinateUnits`` is in mm: the defaults of the schema, and what Slicer
    itself assumes when reading.
    """
    p = Path(path)
    if not p.is_file():
        raise InvalidInputError(f"no such markups file: {str(p)!r}")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except RecursionError:
        raise InvalidInputError(
            f"markups file {str(p)!r} is nested too deeply to be a Slicer markups file"
        ) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInputError(f"markups file {str(p)!r} is not valid JSON: {exc}") from None
    check_json_numbers(data, f"markups file {str(p)!r}")
    if not isinstance(data, dict) or not isinstance(data.get("markups"), list):
        raise InvalidInputError(
            f"{str(p)!r} is not a Slicer markups file: it has no 'markups' list"
        )
    schema = data.get("@schema")
    if not isinstance(schema, str) or not _SCHEMA_PATTERN.search(schema):
        raise InvalidInputError(
            f"{str(p)!r} is not a Slicer markups file of schema 1.x: '@schema' is {schema!r}, "
            f"expected {SLICER_SCHEMA!r} (other 1.x versions are accepted)"
        )
    default_name = p.name[: -len(".mrk.json")] if p.name.endswith(".mrk.json") else p.stem
    return [_read_node(node, n, default_name, p) for n, node in enumerate(data["markups"], start=1)]


def _read_node(node, n: int, default_name: str, path: Path) -> Markups:
    where = f"markups node {n} of {str(path)!r}"
    if not isinstance(node, dict):
        raise InvalidInputError(f"{where} is not a JSON object")
    kind = node.get("type")
    if kind != "Fiducial":
        raise InvalidInputError(
            f"{where} has type {kind!r}; only point lists (type 'Fiducial') hold clicks: "
            f"place the points with Slicer's point list tool"
        )
    system = node.get("coordinateSystem", "LPS")
    if system not in _ORIENTATION:
        raise InvalidInputError(f"{where}: coordinateSystem must be 'LPS' or 'RAS', got {system!r}")
    units = node.get("coordinateUnits", "mm")
    if isinstance(units, list) and units:  # coded entry: [value, scheme, meaning]
        units = units[0]
    if units != "mm":
        raise InvalidInputError(
            f"{where}: coordinateUnits is {node.get('coordinateUnits')!r}; only millimetres "
            f"('mm') are supported"
        )
    controls = node.get("controlPoints", [])
    if not isinstance(controls, list):
        raise InvalidInputError(f"{where}: controlPoints must be a list")
    points, labels = [], []
    for k, cp in enumerate(controls, start=1):
        if not isinstance(cp, dict):
            raise InvalidInputError(f"{where}: control point {k} is not a JSON object")
        if cp.get("positionStatus", "defined") != "defined":
            continue  # Slicer writes "position": "" for these
        pos = cp.get("position")
        if (
            not isinstance(pos, list)
            or len(pos) != 3
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in pos)
            or not np.all(np.isfinite(pos))
        ):
            raise InvalidInputError(
                f"{where}: control point {k} ({cp.get('label', '')!r}) has position {pos!r}; "
                f"expected 3 finite numbers"
            )
        points.append(pos)
        labels.append(str(cp.get("label", "")))
    xyz = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    if system == "RAS":
        xyz = xyz * _LPS_FROM_RAS
    xyz.setflags(write=False)
    return Markups(name=str(node.get("name") or default_name), points=xyz, labels=tuple(labels))


def write_markups(
    path: str | os.PathLike,
    points_xyz,
    *,
    name: str,
    labels: Sequence[str] | None = None,
    coordinate_system: str = "LPS",
    color: Sequence[float] | None = None,
) -> None:
    """Write points as a 3D Slicer point list file (one markups node), atomically.

    Parameters
    ----------
    path : str or PathLike
        Output file; Slicer recognises the ``.mrk.json`` suffix.
    points_xyz : (N, 3) array_like of float
        LPS millimetres, (x, y, z) order. N may be 0.
    name : str
        Node name shown by Slicer (also the ``%N`` of its label format).
    labels : sequence of str, optional
        One label per point; default ``"NAME-1"``, ``"NAME-2"``, ... (what
        Slicer would give them).
    coordinate_system : {"LPS", "RAS"}
        Coordinate system of the positions in the file. The points are
        converted, so reading the file back gives the same LPS points.
    color : sequence of 3 float, optional
        RGB in [0, 1] of the points in Slicer; default: Slicer's own.

    Raises
    ------
    InvalidInputError
        Points not (N, 3) or not finite, an empty name, a label count or
        coordinate system or colour that does not fit.
    """
    xyz = np.asarray(points_xyz, dtype=np.float64)
    if xyz.size == 0:
        xyz = xyz.reshape(0, 3)
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise InvalidInputError(
            f"points_xyz must be an (N, 3) array of LPS (x, y, z) mm, got shape {xyz.shape}"
        )
    if not np.all(np.isfinite(xyz)):
        raise InvalidInputError("points_xyz contains NaN or infinite coordinates")
    if not isinstance(name, str) or not name:
        raise InvalidInputError(f"name must be a non-empty string, got {name!r}")
    labels = (
        [f"{name}-{k}" for k in range(1, len(xyz) + 1)]
        if labels is None
        else [str(label) for label in labels]
    )
    if len(labels) != len(xyz):
        raise InvalidInputError(f"got {len(labels)} labels for {len(xyz)} points")
    if coordinate_system not in _ORIENTATION:
        raise InvalidInputError(
            f"coordinate_system must be 'LPS' or 'RAS', got {coordinate_system!r}"
        )
    if coordinate_system == "RAS":
        xyz = xyz * _LPS_FROM_RAS
    node = {
        "name": name,
        "type": "Fiducial",
        "coordinateSystem": coordinate_system,
        "coordinateUnits": "mm",
        "locked": False,
        "fixedNumberOfControlPoints": False,
        "labelFormat": "%N-%d",
        "lastUsedControlPointNumber": len(xyz),
        "controlPoints": [
            {
                "id": str(k),
                "label": label,
                "description": "",
                "associatedNodeID": "",
                "position": [float(v) for v in pos],
                "orientation": _ORIENTATION[coordinate_system],
                "selected": True,
                "locked": False,
                "visibility": True,
                "positionStatus": "defined",
            }
            for k, (pos, label) in enumerate(zip(xyz, labels), start=1)
        ],
        "measurements": [],
    }
    if color is not None:
        rgb = np.asarray(color, dtype=np.float64).reshape(-1)
        if rgb.shape != (3,) or not np.all((rgb >= 0) & (rgb <= 1)):
            raise InvalidInputError(f"color must be 3 values in [0, 1] (RGB), got {color!r}")
        # Slicer draws selected points (all of ours) in selectedColor.
        node["display"] = {"color": rgb.tolist(), "selectedColor": rgb.tolist()}
    write_json_atomic(Path(path), {"@schema": SLICER_SCHEMA, "markups": [node]})


# ---------------------------------------------------------------------------
# conversion to and from clicks
# ---------------------------------------------------------------------------


def clicks_from_markups(
    image,
    margin,
    foreground=(),
    background=(),
    *,
    model=None,
    lam: float = DEFAULT_LAM,
    sigma: float = DEFAULT_SIGMA,
    method: str = "ifgc",
) -> tuple[dict, float]:
    """A clicks dict (as `Session.clicks_dict` makes) from Slicer points placed on ``image``.

    Parameters
    ----------
    image : Image
        The image the points were placed on; its geometry goes into the dict.
    margin : Markups or (N, 3) array_like
        Interior margin points, LPS mm (x, y, z); at least
        `midseg.session.MIN_POINTS` of them (3 in 2D, 4 in 3D).
    foreground, background : Markups or (M, 3) array_like, optional
        Corrective clicks, LPS mm. When either is given they form one click
        round; when both are empty the dict has no rounds.
    model : str, path or loaded model, optional
        Recorded for the replay, with its sha256 (`midseg.models.model_sha256`):
        ``"2d"``, ``"3d"``, a ``.pt`` path with its card or an ensemble card
        (default: the shipped model of the image's dimensionality). Its card is read and its weights hashed;
        the network is not loaded.
    lam, sigma, method
        Refinement parameters recorded for the session and the round (see
        `midseg.Session`).

    Returns
    -------
    clicks : dict
        A clicks dict of the current version (`midseg.clicks.CLICKS_VERSION`);
        `midseg.Session.from_clicks` replays it on ``image`` and `json.dump` stores it
        as a clicks file.
    max_snap_mm : float
        The largest distance (mm) a point moved to reach its voxel centre
        (0.0 for no points). In 2D it includes the point's distance from the
        image plane.

    Raises
    ------
    InvalidInputError
        Too few margin points, a point outside the image (named by class,
        number, label and position), a foreground and a background point in
        the same voxel, a point more than `PLANE_TOLERANCE_MM`
        off the plane z = 0 of a 2D image, a model of another dimensionality
        or channel count, bad parameters.

    Notes
    -----
    Slicer points are continuous, while midseg's clicks are voxels: each
    point is moved to the centre of the voxel containing it. A 2D image lies
    in the plane z = 0 (as Slicer shows it), so z is dropped after the check.
    """
    from .clicks import clicks_document, clicks_from_dict
    from .graphcut import _same_voxel
    from ._session_checks import _check_ifgc_settings
    from .session import MIN_POINTS, Session, _as_image

    image = _as_image(image)
    lam, sigma, method = Session._check_params(lam, sigma, method)
    snapped, moved = {}, [0.0]
    for what, given in (("margin", margin), ("foreground", foreground), ("background", background)):
        xyz, labels = _as_xyz(given, what)
        snapped[what], furthest = _snap(image, xyz, labels, what)
        moved.append(furthest)
    fg, bg = snapped["foreground"], snapped["background"]
    both = _same_voxel(fg, bg)
    if both.any():
        i, j = (int(v) for v in np.argwhere(both)[0])
        raise InvalidInputError(
            f"foreground point {i + 1} and background point {j + 1} fall in the same voxel "
            f"{tuple(int(v) for v in fg[i])} (array order); move or remove one of them"
        )
    need = MIN_POINTS[image.ndim]
    if len(snapped["margin"]) < need:
        raise InvalidInputError(
            f"a {image.ndim}D image needs at least {need} interior margin points, got "
            f"{len(snapped['margin'])}"
        )

    params = {"lam": lam, "sigma": sigma, "method": method}
    work_ndim = computing_ndim(image.shape)
    defaults = {"stage1_cut": True, **_check_ifgc_settings({}, work_ndim)}
    clicks = clicks_document(
        image,
        _model_ref_for(model, image),
        {**params, **defaults},  # a Session's defaults, as its clicks_dict writes them
        snapped["margin"],
        [(fg, bg, params)] if len(fg) + len(bg) else [],
    )
    return clicks_from_dict(clicks), max(moved)


def _as_xyz(points, what: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """(N, 3) float64 LPS points and their labels from a `Markups` or an array."""
    if isinstance(points, Markups):
        return points.points, points.labels
    xyz = np.asarray(points, dtype=np.float64)
    if xyz.size == 0:
        return np.zeros((0, 3)), ()
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise InvalidInputError(
            f"{what} points must be an (N, 3) array of LPS (x, y, z) mm, got shape {xyz.shape}"
        )
    if not np.all(np.isfinite(xyz)):
        raise InvalidInputError(f"{what} points contain NaN or infinite coordinates")
    return xyz, ("",) * len(xyz)


def _point_name(what: str, k: int, labels: Sequence[str], xyz: np.ndarray) -> str:
    label = f" ({labels[k]!r})" if labels[k] else ""
    x, y, z = xyz[k]
    return f"{what} point {k + 1}{label} at LPS ({x:.2f}, {y:.2f}, {z:.2f}) mm"


def _snap(image, xyz: np.ndarray, labels: Sequence[str], what: str) -> tuple[np.ndarray, float]:
    """Indices (array order) of the voxels holding LPS points, and the largest move in mm."""
    if not len(xyz):
        return np.zeros((0, image.ndim), np.int64), 0.0
    if image.ndim == 2:
        off = np.abs(xyz[:, 2]) > PLANE_TOLERANCE_MM
        if np.any(off):
            k = int(np.argmax(off))
            raise InvalidInputError(
                f"{_point_name(what, k, labels, xyz)} is {abs(xyz[k, 2]):.3g} mm off the plane "
                f"z = 0 of the 2D image (at most {PLANE_TOLERANCE_MM} mm is accepted)"
            )
    index = np.rint(image.physical_to_index(xyz[:, : image.ndim][:, ::-1])).astype(np.int64)
    outside = np.any((index < 0) | (index >= np.asarray(image.shape)), axis=1)
    if np.any(outside):
        k = int(np.argmax(outside))
        raise InvalidInputError(
            f"{_point_name(what, k, labels, xyz)} lies outside the image: its voxel would be "
            f"{tuple(int(v) for v in index[k])} (array order) in an image of shape {image.shape}"
        )
    centres = np.zeros_like(xyz)
    centres[:, : image.ndim] = image.index_to_physical(index)[:, ::-1]
    return index, float(np.max(np.linalg.norm(xyz - centres, axis=1)))


def _model_ref_for(model, image) -> dict:
    """``{"name", "sha256"}`` of a model as `Session.clicks_dict` records it, without loading it."""
    from . import models
    from .clicks import model_ref

    from ._checks import computing_ndim

    ndim = computing_ndim(image.shape)  # a one-slice volume is computed in 2D
    if model is None:  # what a Session on this image takes
        from ._session_checks import default_model

        model = default_model(ndim, image.channels)
    if isinstance(model, (str, os.PathLike)):
        pt = models.model_path(model)
        card = models.read_card(pt)
        dims = card.get("spatial_dims") or card.get("architecture", {}).get("spatial_dims")
        channels = card["image_channels"]
        ref = {"name": str(card.get("name", pt.stem)), "sha256": models.model_sha256(pt)}
    else:
        dims, channels = (
            getattr(model, "spatial_dims", None),
            getattr(model, "image_channels", None),
        )
        ref = model_ref(model)
    if dims != ndim:
        raise InvalidInputError(
            f"model {ref['name']!r} is a {dims}D model but the image is {ndim}D"
            + (
                " (a volume one voxel thick is segmented as a 2D image)"
                if ndim != image.ndim
                else ""
            )
            + f"; use a {ndim}D model"
        )
    if channels != image.channels:
        raise InvalidInputError(
            f"model {ref['name']!r} expects {channels} image channel(s), the image has "
            f"{image.channels}"
        )
    from ._session_checks import channels_warning

    found = channels_warning(ref["name"], image)  # as a Session with this model warns
    if found is not None:
        import warnings

        warnings.warn(found, stacklevel=3)
    return ref


def markups_from_clicks(clicks) -> dict[str, np.ndarray]:
    """The points of a clicks file as LPS arrays, ready for `write_markups`.

    Parameters
    ----------
    clicks : path or dict
        A clicks file (or dict) written by `Session.save_clicks` or made by
        `clicks_from_markups`.

    Returns
    -------
    dict of str to (N, 3) ndarray of float64
        ``"margin"``: the interior margin points; ``"foreground"`` and
        ``"background"``: the clicks of all rounds still in force, merged in
        order (a click overridden by a later click of the other class on the
        same point is left out, so the export re-imports as one round). LPS
        millimetres, (x, y, z); points of a 2D image get z = 0, the plane
        Slicer shows a 2D image in.

    Raises
    ------
    InvalidInputError
        Not a readable clicks file, or points whose coordinate count does
        not fit the image.
    """
    from .clicks import clicks_from_dict, read_clicks

    data = clicks_from_dict(clicks) if isinstance(clicks, dict) else read_clicks(clicks)
    ndim = len(data["image"]["shape"])

    def xyz(points, what):
        arr = np.asarray(points, dtype=np.float64)
        if arr.size == 0:
            return np.zeros((0, 3))
        if arr.ndim != 2 or arr.shape[1] != ndim:
            raise InvalidInputError(
                f"clicks file: {what} must be points with {ndim} coordinates (the image is "
                f"{ndim}D), got an array of shape {arr.shape}"
            )
        return np.column_stack([arr, np.zeros(len(arr))]) if ndim == 2 else arr

    rounds = [
        (xyz(r["foreground"], "foreground clicks"), xyz(r["background"], "background clicks"))
        for r in data["rounds"]
    ]
    # a later click of the other class on the same point overrides an earlier one (as in
    # `Session.clicks_in_force`): only the clicks still in force are exported
    last: dict[tuple[float, ...], bool] = {}  # rounded point -> foreground
    for fg, bg in rounds:
        last.update((tuple(np.round(p, 6)), True) for p in fg)
        last.update((tuple(np.round(p, 6)), False) for p in bg)

    def in_force(points, foreground):
        keep = [last[tuple(np.round(p, 6))] is foreground for p in points]
        return points[np.array(keep, dtype=bool)] if len(points) else points

    return {
        "margin": xyz(data["margin_points"], "margin_points"),
        "foreground": np.concatenate([np.zeros((0, 3))] + [in_force(f, True) for f, _ in rounds]),
        "background": np.concatenate([np.zeros((0, 3))] + [in_force(b, False) for _, b in rounds]),
    }


# ---------------------------------------------------------------------------
# CLI hooks (wired by midseg.cli)
# ---------------------------------------------------------------------------


def markups_add_arguments(parser) -> None:
    parser.description += (
        "\n\nPoints cross as 3D Slicer point lists (.mrk.json, schema 1.x, LPS or RAS,\n"
        "mm): one file per class (interior margin points, foreground clicks,\n"
        "background clicks)."
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    export = actions.add_parser(
        "export",
        help="write the points of a clicks file as Slicer point lists",
        description="Write PREFIX.margin.mrk.json, PREFIX.foreground.mrk.json and "
        "PREFIX.background.mrk.json (a class without points gets no file). The "
        "clicks of all rounds are merged; points of a 2D image get z = 0.",
    )
    export.add_argument("clicks", help="clicks JSON written by midseg")
    export.add_argument(
        "--out-prefix", required=True, metavar="PREFIX", help="path prefix of the files to write"
    )
    export.add_argument(
        "--coordinate-system",
        choices=sorted(_ORIENTATION),
        default="LPS",
        help="coordinate system of the positions in the files (default: LPS)",
    )
    export.set_defaults(markups_action=_export_run)
    imp = actions.add_parser(
        "import",
        help="make a clicks file from Slicer point lists",
        description="Write a clicks file that `midseg segment` and Session.from_clicks replay: "
        "the margin points start the session, foreground and background clicks "
        "form one round. Each file must hold one point list. Points are moved to "
        "the centre of the voxel holding them; points of a 2D image must lie within "
        f"{PLANE_TOLERANCE_MM} mm of the plane z = 0.",
    )
    imp.add_argument(
        "--image",
        required=True,
        metavar="IMG",
        help="image file or DICOM directory the points were placed on",
    )
    imp.add_argument(
        "--with",
        dest="co_registered",
        action="append",
        default=[],
        metavar="SECOND",
        help="a co-registered image the points go with (e.g. the PET of a CT), resampled "
        "onto IMG's grid as a further channel, as `midseg segment --with` reads it "
        "(repeatable)",
    )
    imp.add_argument(
        "--margin",
        required=True,
        metavar="M.mrk.json",
        help="point list of the interior margin points",
    )
    imp.add_argument("--foreground", metavar="F.mrk.json", help="point list of foreground clicks")
    imp.add_argument("--background", metavar="B.mrk.json", help="point list of background clicks")
    imp.add_argument(
        "--model",
        metavar="MODEL",
        help="model recorded for the replay: 2d, 3d, a .pt path or an ensemble card (.json) "
        "(default: the shipped one of the image's dimensionality)",
    )
    imp.add_argument(
        "--method", default="ifgc", help="refinement: ifgc (default), ifgc-global, ifgc-paper or gc"
    )
    imp.add_argument("--out", required=True, metavar="CLICKS.json", help="clicks JSON to write")
    imp.set_defaults(markups_action=_import_run)
    for sub in (export, imp):
        sub.add_argument(
            "--debug",
            action="store_true",
            default=argparse.SUPPRESS,
            help="show full tracebacks on errors",
        )


def markups_run(args) -> int:
    return args.markups_action(args)


def _export_run(args) -> int:
    written, empty = [], []
    for what, xyz in markups_from_clicks(args.clicks).items():
        if not len(xyz):
            empty.append(what)
            continue
        path = Path(f"{args.out_prefix}.{what}.mrk.json")
        write_markups(
            path,
            xyz,
            name=what,
            coordinate_system=args.coordinate_system,
            color=_CLASS_COLORS[what],
        )
        written.append(f"{path} ({len(xyz)} point{'s' if len(xyz) > 1 else ''})")
    print(
        "wrote "
        + ", ".join(written)
        + (f"; no {' or '.join(empty)} points, no file for them" if empty else "")
    )
    return 0


def _one_point_list(path: str, what: str) -> Markups:
    lists = read_markups(path)
    if len(lists) != 1:
        raise InvalidInputError(
            f"{what} file {path!r} holds {len(lists)} point lists; give one point list per file"
        )
    return lists[0]


def _import_run(args) -> int:
    from .io import read_image

    image = read_image(args.image, *args.co_registered)
    given = {"margin": args.margin, "foreground": args.foreground, "background": args.background}
    points = {what: _one_point_list(path, what) if path else () for what, path in given.items()}
    clicks, max_snap = clicks_from_markups(
        image,
        points["margin"],
        points["foreground"],
        points["background"],
        model=args.model,
        method=args.method,
    )
    write_json_atomic(Path(args.out), clicks)
    n_fg = sum(len(r["foreground"]) for r in clicks["rounds"])
    n_bg = sum(len(r["background"]) for r in clicks["rounds"])
    print(
        f"wrote {args.out}: {len(clicks['margin_points'])} margin points, {n_fg} foreground "
        f"and {n_bg} background clicks; largest move to a voxel centre {max_snap:.2f} mm"
    )
    return 0
