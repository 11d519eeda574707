"""Several named objects in one session over one image, and their label map.

`LabelSession` holds one `midseg.Session` per object (its own margin points, click
rounds, undo and redo) over a shared image and model, and composes their masks into a
label map (0 = background, one value per object) with an explicit overlap policy: by
default an object never takes voxels another object already holds (``"keep"``); with
``"overwrite"`` later objects win. `save` writes every object's clicks into one JSON
document (format ``midseg-labels``, each object's clicks the clicks document of
`Session.save_clicks`); `LabelSession.load` replays it, and also accepts a plain clicks
file as a session of one object. `write_labelmap` writes the label map with names and
colours (`midseg.labelmap`: ``.seg.nrrd``, NIfTI + sidecar; ``.dcm`` DICOM-SEG for an
image read from a DICOM series, `midseg.dicomseg`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .errors import InvalidInputError, MidsegError
from .io import Image
from .labelmap import DEFAULT_COLORS, Segment, on_image_grid

if TYPE_CHECKING:
    from .session import Session

__all__ = ["LabelSession", "LABELS_FORMAT", "OVERLAP_POLICIES"]

LABELS_FORMAT = "midseg-labels"
LABELS_VERSION = 1
#: "keep": an object never takes voxels an earlier object holds; "overwrite": later wins.
OVERLAP_POLICIES = ("keep", "overwrite")


class LabelSession:
    """Segment several objects of one image, each with its own clicks and undo.

    Parameters
    ----------
    image : midseg.Image or ndarray
    model : optional
        As for `midseg.Session` (loaded once, shared by the objects).
    **session_kw
        `lam`, `sigma`, `method`, `device`, passed to every object's `Session`.

    Examples
    --------
    >>> ls = LabelSession(ct)                                   # doctest: +SKIP
    >>> ls.add("spleen", color=(1, 0, 0)).segment(spleen_points)  # doctest: +SKIP
    >>> ls.add("left kidney").segment(kidney_points)           # doctest: +SKIP
    >>> ls.object("spleen").refine(foreground=[(40, 100, 120)])   # doctest: +SKIP
    >>> ls.write_labelmap("organs.seg.nrrd")                    # doctest: +SKIP
    """

    def __init__(self, image, model=None, **session_kw):
        from .session import Session, _as_image

        self.image = _as_image(image)
        first = Session(self.image, model=model, **session_kw)  # checks and loads once
        self.model = first.model
        self._kw = session_kw
        self._spare = first
        self._objects: dict[str, tuple[Segment, Session]] = {}

    # -- objects ---------------------------------------------------------------------
    @property
    def names(self) -> tuple[str, ...]:
        """The objects' names, in the order they were added (their label values rise)."""
        return tuple(self._objects)

    def add(self, name: str, *, color=None, value: int | None = None):
        """Add an object and return its `midseg.Session` (call `segment` on it).

        Parameters
        ----------
        name : str
            Unique, non-empty.
        color : 3 floats in [0, 1], optional
            Display colour (default: the next of `midseg.labelmap.DEFAULT_COLORS`).
        value : int, optional
            Its label value (default: one more than the largest so far).

        Raises
        ------
        InvalidInputError
            A name or value already used, or a bad name, colour or value.
        """
        from .session import Session

        if name in self._objects:
            raise InvalidInputError(f"an object named {name!r} exists already")
        used = {seg.value for seg, _ in self._objects.values()}
        if value is None:
            value = (
                next(v for v in range(1, 65537) if v not in used)
                if used and max(used) >= 65535
                else (max(used) + 1 if used else 1)
            )
        Segment(value, name)  # checks the value and the name first
        if value in used:
            raise InvalidInputError(f"label value {value} is used by another object")
        color = DEFAULT_COLORS[len(self._objects) % len(DEFAULT_COLORS)] if color is None else color
        segment = Segment(value, name, color)
        session = (
            self._spare
            if self._spare is not None
            else Session(self.image, model=self.model, **self._kw)
        )
        self._spare = None
        self._objects[name] = (segment, session)
        return session

    @classmethod
    def from_labelmap(cls, image, labels, segments, model=None, **session_kw) -> "LabelSession":
        """A session whose objects start from an existing label map, to refine them.

        Each `midseg.labelmap.Segment` becomes an object started from ``labels ==
        segment.value`` (`midseg.Session.start_from_mask`); e.g. from
        ``midseg.labelmap.read_labelmap(path)``, whose `midseg.Image` is accepted as
        `labels`: placed on the image's grid by physical position
        (`midseg.labelmap.on_image_grid`, so a ``.seg.nrrd`` cropped to its segments
        works too). A bare array must have the image's shape.

        Raises
        ------
        InvalidInputError
            A label map of another shape, an `Image` whose grid does not line up with the
            image's, or a segment with no voxel.
        """
        ls = cls(image, model=model, **session_kw)
        if isinstance(labels, Image):
            placed = on_image_grid(labels, ls.image)
            if placed is None:
                raise InvalidInputError(
                    "the label map's grid does not line up with the image's (another "
                    "spacing, direction or dimensionality, an origin off its voxel centres, "
                    "or labels outside it)"
                )
            labels = placed
        arr = np.asarray(labels)
        if arr.shape != tuple(ls.image.shape):
            raise InvalidInputError(
                f"the label map must have the image's shape "
                f"{ls.image.shape}, got {arr.shape} (one cropped to its "
                "segments on the image's grid, as 3D Slicer 4.11 saved "
                ".seg.nrrd: midseg.labelmap.on_image_grid)"
            )
        import warnings

        from .errors import MidsegWarning

        for seg in segments:
            where = arr == seg.value
            session = ls.add(seg.name, color=seg.color, value=seg.value)
            if where.any():
                session.start_from_mask(where)
            else:  # e.g. covered by another object ("keep")
                warnings.warn(
                    MidsegWarning(
                        f"segment {seg.name!r} (value {seg.value}) has no "
                        "voxel in the label map: added, not started"
                    ),
                    stacklevel=2,
                )
        return ls

    def object(self, name: str):
        """The `midseg.Session` of object `name` (KeyError-free: a clear error)."""
        try:
            return self._objects[name][1]
        except KeyError:
            raise InvalidInputError(
                f"no object named {name!r}; objects: {', '.join(self._objects) or 'none'}"
            ) from None

    def segment_of(self, name: str) -> Segment:
        """The `midseg.labelmap.Segment` (value, name, colour) of object `name`."""
        self.object(name)
        return self._objects[name][0]

    def rename(self, name: str, new_name: str) -> None:
        """Give object `name` the name `new_name` (its place, value, colour and history stay).

        Raises
        ------
        InvalidInputError
            No object `name`, `new_name` used by another object, or not a valid name
            (`midseg.labelmap.Segment`).
        """
        from dataclasses import replace

        self.object(name)
        if new_name == name:
            return
        if new_name in self._objects:
            raise InvalidInputError(f"an object named {new_name!r} exists already")
        seg, session = self._objects[name]
        seg = replace(seg, name=new_name)  # checks the name
        self._objects = {
            (new_name if k == name else k): ((seg, session) if k == name else v)
            for k, v in self._objects.items()
        }

    def set_color(self, name: str, color) -> None:
        """Set the display colour of object `name`.

        Parameters
        ----------
        color : 3 floats in [0, 1]
            r, g, b.

        Raises
        ------
        InvalidInputError
            No object `name`, or a bad colour.
        """
        from dataclasses import replace

        self.object(name)
        seg, session = self._objects[name]
        self._objects[name] = (replace(seg, color=tuple(color)), session)

    def remove(self, name: str) -> None:
        """Forget object `name` and its history."""
        self.object(name)
        del self._objects[name]

    # -- the label map -------------------------------------------------------------------
    def labelmap(self, overlap: str = "keep") -> np.ndarray:
        """The objects' current masks as one label map (image shape, uint8 or uint16).

        Objects are painted in the order they were added; `overlap` (`OVERLAP_POLICIES`)
        says who holds a voxel two masks claim. Objects without a mask yet are skipped.
        """
        if overlap not in OVERLAP_POLICIES:
            raise InvalidInputError(f"overlap must be one of {OVERLAP_POLICIES}, got {overlap!r}")
        values = [seg.value for seg, _ in self._objects.values()]
        out = np.zeros(self.image.shape, np.uint8 if max(values, default=0) < 256 else np.uint16)
        for seg, session in self._objects.values():
            mask = session.mask
            if mask is None:
                continue
            where = mask != 0
            if overlap == "keep":
                where &= out == 0
            out[where] = seg.value
        return out

    def write_labelmap(self, path: str | os.PathLike, overlap: str = "keep") -> None:
        """Write the label map with the objects' names and colours.

        ``.seg.nrrd`` or any `midseg.io.write_mask` format with a sidecar
        (`midseg.labelmap.write_labelmap`); ``.dcm``: DICOM-SEG of the series the image
        was read from (`midseg.dicomseg.write_dicom_seg`).
        """
        segments = [seg for seg, s in self._objects.values() if s.mask is not None]
        labels = self.labelmap(overlap)
        if Path(path).name.lower().endswith(".dcm"):
            from .dicomseg import write_dicom_seg

            if not self.image.path or not Path(self.image.path).is_dir():
                raise InvalidInputError(
                    "a .dcm label map is a DICOM-SEG of the series the "
                    "image was read from; this image was not read from a "
                    "DICOM series folder"
                )
            write_dicom_seg(
                path,
                labels,
                source_dir=self.image.path,
                segments=segments,
                spacing=self.image.spacing,
            )
            return
        from .labelmap import write_labelmap

        write_labelmap(path, labels, like=self.image, segments=segments)

    # -- stored clicks -------------------------------------------------------------------
    def to_dict(self, names=None) -> dict:
        """Every segmented object's clicks document, with its name, value and colour.

        Parameters
        ----------
        names : sequence of str, optional
            Only these objects (default: all); objects without a mask are left out.

        Raises
        ------
        MidsegError
            No object to save, or an object's `midseg.Session.clicks_dict` refuses (brush
            edits; the message names the object).
        """
        objects = []
        keep = None if names is None else set(names)
        for seg, session in self._objects.values():
            if session.mask is None or (keep is not None and seg.name not in keep):
                continue
            try:
                clicks = session.clicks_dict()
            except MidsegError as exc:
                raise MidsegError(f"object {seg.name!r}: {exc}") from None
            objects.append(
                {"name": seg.name, "value": seg.value, "color": list(seg.color), "clicks": clicks}
            )
        if not objects:
            raise MidsegError("nothing to save: no object has been segmented")
        return {"format": LABELS_FORMAT, "version": LABELS_VERSION, "objects": objects}

    def save(self, path: str | os.PathLike) -> None:
        """Write `to_dict` as JSON (atomically)."""
        from .io import write_json_atomic

        write_json_atomic(path, self.to_dict())

    @classmethod
    def load(
        cls, path, image, model=None, *, device: str | None = None, initial_labelmap=None
    ) -> "LabelSession":
        """Replay a `save`d file (or a plain clicks file, as one object) on `image`.

        `initial_labelmap`: for objects started from a label map (`from_labelmap`), that
        label map; each such object replays from ``initial_labelmap == its value``. Objects
        added later get the settings of the first object's file: lam, sigma, method and
        the other parameters it stores. Where that file is of an older clicks-file version,
        only what its user chose carries over (lam, sigma, method as named in the file,
        ``stage1_cut`` from version 4 on, ``margin_floor`` and ``claim_keep`` from version
        5 on, ``min_click_depth`` from version 6 on, ``band_reach`` from version 7 on), the
        rest takes today's defaults; one
        `OlderClicksWarning` names the file and its older objects.

        Raises
        ------
        InvalidInputError
            Not a labels or clicks document, or a bad object entry (the message names it);
            what `Session.from_clicks` raises for each object's clicks.
        """
        import warnings

        from .errors import OlderClicksWarning
        from .session import Session

        p = Path(path)
        doc = _read_labels_document(p)
        ls = None
        older = []
        for k, entry in enumerate(doc["objects"]):
            start = _object_start(p, k, entry, initial_labelmap)
            try:
                with warnings.catch_warnings():  # one warning for the file, below
                    warnings.simplefilter("ignore", OlderClicksWarning)
                    replayed = Session.from_clicks(
                        entry["clicks"], image, model=model, device=device, initial_mask=start
                    )
            except InvalidInputError as exc:
                raise InvalidInputError(
                    f"{str(p)!r}: objects[{k}] ({entry['name']!r}): {exc}"
                ) from None
            if _older_version(entry["clicks"]):
                older.append(entry["name"])
            if ls is None:
                ls = cls._with_settings_of(replayed, device, older=_chosen(entry["clicks"]))
            seg = _object_segment(p, k, entry)
            if seg.name in ls._objects or seg.value in {s.value for s, _ in ls._objects.values()}:
                raise InvalidInputError(f"{str(p)!r}: objects[{k}] repeats a name or value")
            ls._objects[seg.name] = (seg, replayed)
        if ls is None:
            raise InvalidInputError(f"{str(p)!r} holds no object")
        if older:
            warnings.warn(
                OlderClicksWarning(
                    f"{str(p)!r}: the clicks of {', '.join(repr(n) for n in older)} are of an "
                    "older clicks-file version and replay with the settings of their time; "
                    "further rounds of those objects use them too; new objects take the "
                    "settings that file's user chose and today's defaults for the rest"
                ),
                stacklevel=2,
            )
        return ls

    @classmethod
    def _with_settings_of(
        cls, session: "Session", device: str | None, *, older: dict | None = None
    ) -> "LabelSession":
        """An empty LabelSession with the image, model and settings (lam, sigma, method,
        stage1_cut, margin_floor, claim_keep, min_click_depth, band_reach,
        thick_slice_ratio) of `session`. `older`: for a session replayed from an older
        clicks-file version, the settings its user chose (`_chosen`), which replace those;
        the others are left to today's defaults."""
        ls = cls.__new__(cls)
        ls.image, ls.model = session.image, session.model
        ls._kw = {"device": device, "lam": session.lam, "sigma": session.sigma}
        ls._kw.update(older if older is not None else session._settings())
        ls._spare, ls._objects = None, {}
        return ls


def _older_version(clicks) -> bool:
    """Whether `clicks` (an object's clicks entry) is a clicks dict of an older file version
    than this midseg writes (anything else: False)."""
    from .clicks import CLICKS_VERSION

    if isinstance(clicks, dict):
        upgraded = "upgraded_from_version" in clicks
        return upgraded or clicks.get("version", CLICKS_VERSION) != CLICKS_VERSION
    return False


def _chosen(clicks) -> dict | None:
    """For an older clicks dict, the settings its user chose, as Session keywords: the
    method as the file names it, ``stage1_cut`` from version 4 on, ``margin_floor`` and
    ``claim_keep`` from version 5 on, ``min_click_depth`` from version 6 on and
    ``band_reach`` from version 7 on (None for a current file)."""
    if not _older_version(clicks):
        return None
    params = clicks.get("parameters") or {}
    version = clicks.get("upgraded_from_version", clicks.get("version"))
    out = {}
    if isinstance(params.get("method"), str):
        out["method"] = params["method"]
    if isinstance(version, int) and version >= 4 and isinstance(params.get("stage1_cut"), bool):
        out["stage1_cut"] = params["stage1_cut"]
    keys = {5: ("margin_floor", "claim_keep"), 6: ("min_click_depth",), 7: ("band_reach",)}
    for since, names in keys.items():
        if not (isinstance(version, int) and version >= since):
            continue
        for key in names:
            if isinstance(params.get(key), (int, float)) and not isinstance(params[key], bool):
                out[key] = params[key]
    return out


def _read_labels_document(p: Path) -> dict:
    """The labels document in `p`; a clicks file becomes a document of one object.

    Raises
    ------
    InvalidInputError
        `p` cannot be read, is not JSON, or is neither a labels nor a clicks file.
    """
    from .clicks import CLICKS_FORMAT, read_clicks

    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise InvalidInputError(f"cannot read {str(p)!r}: {exc}") from None
    if isinstance(doc, dict) and doc.get("format") == CLICKS_FORMAT:
        doc = {
            "format": LABELS_FORMAT,
            "version": LABELS_VERSION,
            "objects": [
                {
                    "name": "Segment_1",
                    "value": 1,
                    "color": DEFAULT_COLORS[0],
                    "clicks": read_clicks(p),
                }
            ],
        }
    if (
        not isinstance(doc, dict)
        or doc.get("format") != LABELS_FORMAT
        or doc.get("version") != LABELS_VERSION
        or not isinstance(doc.get("objects"), list)
    ):
        raise InvalidInputError(
            f"{str(p)!r} is not a midseg labels file (format "
            f"{LABELS_FORMAT!r}, version {LABELS_VERSION}) or a "
            "clicks file"
        )
    return doc


def _object_start(p: Path, k: int, entry, initial_labelmap) -> np.ndarray | None:
    """The initial mask that object `entry` (``objects[k]`` of `p`) replays from, or None.

    None for an object started from margin points; ``initial_labelmap == value`` for one
    started from a mask or label map.

    Raises
    ------
    InvalidInputError
        An entry that is not a dict with name, value, color and clicks; an object started
        from a mask without `initial_labelmap`; a value that is not an integer.
    """
    if not isinstance(entry, dict) or not {"name", "value", "color", "clicks"} <= set(entry):
        raise InvalidInputError(f"{str(p)!r}: objects[{k}] needs name, value, color and clicks")
    if not (isinstance(entry["clicks"], dict) and entry["clicks"].get("initial_mask")):
        return None
    if initial_labelmap is None:
        raise InvalidInputError(
            f"{str(p)!r}: objects[{k}] ({entry['name']!r}) started from a mask or "
            "label map (start_from_mask, from_labelmap), which a labels file does not "
            "hold: load that label map with it (initial_labelmap=...)"
        )
    try:
        return np.asarray(initial_labelmap) == int(entry["value"])
    except (TypeError, ValueError, OverflowError):
        raise InvalidInputError(f"{str(p)!r}: objects[{k}] has a bad value") from None


def _object_segment(p: Path, k: int, entry: dict) -> Segment:
    """The `Segment` (value, name, colour) of object `entry` (``objects[k]`` of `p`).

    Raises `InvalidInputError` naming the object for a bad colour, name or value.
    """
    try:
        return Segment(entry["value"], entry["name"], tuple(entry["color"]))
    except (TypeError, OverflowError):
        raise InvalidInputError(f"{str(p)!r}: objects[{k}] has a bad colour") from None
    except InvalidInputError as exc:
        raise InvalidInputError(f"{str(p)!r}: objects[{k}]: {exc}") from None
