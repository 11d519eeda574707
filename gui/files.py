"""Files of the segmentation: masks, label maps and clicks (load and save), the
autosave, and the question about unsaved work.

`FilesMixin` is a part of `midseg.gui.window.MainWindow`. Reading runs in the worker;
writing goes through `midseg.io`, `midseg.labelmap` and the label session.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from PyQt5.QtWidgets import QMessageBox

from midseg.errors import MidsegError
from midseg.io import write_json_atomic

from .images import _has_physical_size, _image_name
from .sidecar import autosave_path, pending_document

__all__ = ["FilesMixin"]

MASK_FILTER = "NIfTI (*.nii.gz *.nii);;NRRD (*.nrrd);;MetaImage (*.mha);;PNG (*.png);;All files (*)"
CLICKS_FILTER = "midseg clicks (*.clicks.json *.json);;All files (*)"
LABELMAP_FILTER = (
    "Label maps (*.seg.nrrd *.nii.gz *.nii *.nrrd *.mha *.dcm);;"
    "3D Slicer segmentation (*.seg.nrrd);;NIfTI (*.nii.gz *.nii);;"
    "DICOM-SEG (*.dcm);;All files (*)"
)
LABELMAP_SAVE_FILTER = "3D Slicer segmentation (*.seg.nrrd);;NIfTI + segments sidecar (*.nii.gz)"
DICOM_SEG_FILTER = ";;DICOM-SEG of the opened series (*.dcm)"


def _clicks_beside(mask_path: str) -> str:
    """``case_mask.nii.gz`` -> ``case_mask.clicks.json`` (where the close dialog saves clicks)."""
    for suffix in (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd", ".png", ".jpg", ".tif", ".tiff"):
        if mask_path.lower().endswith(suffix):
            return mask_path[: -len(suffix)] + ".clicks.json"
    return mask_path + ".clicks.json"


def _replayable(session) -> bool:
    """A clicks file rebuilds this object's mask: no brush edits, not started from a mask."""
    if session.edits:
        return False
    try:
        return "initial_mask" not in session.clicks_dict()
    except MidsegError:
        return False


class FilesMixin:
    """Loading and saving masks, label maps and clicks, and the autosave, of `MainWindow`
    (a mixin)."""

    # =====================================================================
    # masks and label maps
    # =====================================================================
    def load_mask(self, path: str | os.PathLike | None = None) -> bool:
        """Add a binary mask file (nonzero = object) as a new object, named after the file.

        Read in the worker; the object starts from the mask
        (`midseg.Session.start_from_mask`), to refine with clicks and brushes.
        """
        if self.labels is None or self.jobs.busy:
            return False
        if path is None:
            path = self._get_open_path("Load mask as object", MASK_FILTER)
            if not path:
                return False
        from midseg.io import read_image
        from midseg.labelmap import Segment

        name = _image_name(SimpleNamespace(path=str(path)), "mask")

        def done(image, error, seconds):
            if error is not None:
                self.show_error(f"Cannot load {Path(path).name}", error)
                return
            arr = (np.asarray(image.array) != 0).astype(np.uint8)
            self._add_objects(arr, [Segment(1, name, self._next_color())], image, path)

        return self._submit(lambda: read_image(str(path)), done, "reading")

    def load_labelmap(self, path: str | os.PathLike | None = None) -> bool:
        """Add every object of a label map, with its name and colour, started from its voxels.

        ``.seg.nrrd`` (3D Slicer), NIfTI/NRRD/MHA with a ``.segments.json`` sidecar
        (`midseg.labelmap.read_labelmap`), or ``.dcm`` DICOM-SEG of the opened DICOM series
        (`midseg.dicomseg.read_dicom_seg`). Read in the worker. A label map of another
        shape than the image is refused; another geometry is asked about.
        """
        if self.labels is None or self.jobs.busy:
            return False
        if path is None:
            path = self._get_open_path("Load label map", LABELMAP_FILTER)
            if not path:
                return False
        source = self.image_path

        def work():
            if str(path).lower().endswith(".dcm"):
                from midseg.dicomseg import read_dicom_seg

                if not source or not Path(source).is_dir():
                    raise MidsegError(
                        "a DICOM-SEG is read on the series it segments: open "
                        "that DICOM series folder as the image first"
                    )
                labels, segments = read_dicom_seg(str(path), source_dir=source)
                return np.asarray(labels), segments, None
            from midseg.labelmap import read_labelmap

            image, segments = read_labelmap(str(path))
            return np.asarray(image.array), segments, image

        def done(result, error, seconds):
            if error is not None:
                self.show_error(f"Cannot load {Path(path).name}", error)
                return
            self._add_objects(*result, path)

        return self._submit(work, done, "reading")

    def _add_objects(self, arr, segments, geometry, path) -> bool:
        """Objects from ``arr == segment.value`` for each segment (names kept unique)."""
        where_from = Path(str(path)).name
        arr = self._labels_on_image(arr, geometry, where_from)
        if arr is None:
            return False
        labels = self.labels
        only = labels.names[0] if len(labels.names) == 1 else None
        placeholder = (
            only is not None
            and labels.object(only).mask is None
            and not labels.object(only).can_redo
            and not self.pending_margin
        )
        held = None
        if placeholder:
            # the empty object a new image starts with goes first, so that it does not hold
            # label value 1 (the file's values are kept wherever they are free)
            held = labels.segment_of(only)
            labels.remove(only)
        added, empty, failed = self._add_segments(arr, segments, where_from)
        if not added:
            if held is not None:  # nothing loaded: the empty start object comes back
                labels.add(held.name, color=held.color, value=held.value)
            if not failed:
                self.show_error(
                    f"Nothing to load from {where_from}",
                    "it holds no labelled voxel"
                    + (f" (empty segments: {', '.join(empty)})" if empty else ""),
                )
            return False
        if placeholder:
            self.hidden.discard(only)
        self.current = None
        self.pending_margin = []
        self.current = added[0]
        self._changed()
        self.set_tool("refine")
        note = f"; empty, not added: {', '.join(empty)}" if empty else ""
        self.statusBar().showMessage(f"loaded {len(added)} object(s) from {where_from}{note}", 8000)
        return True

    def _labels_on_image(self, arr, geometry, where_from: str):
        """`arr` on the image's grid, or None (refused, with the reason shown or asked).

        A ``.seg.nrrd`` cropped to its segments is placed back on the grid; another shape
        is refused; another geometry of the same shape is asked about.
        """
        shape = tuple(self.state.shape)
        if (
            tuple(arr.shape) != shape
            and geometry is not None
            and where_from.lower().endswith(".seg.nrrd")
        ):
            from midseg.labelmap import on_image_grid

            # 3D Slicer 4.11 cropped a segmentation to its segments when saving it
            placed = on_image_grid(geometry, self.modalities[0])
            if placed is not None:
                arr, geometry = placed, None
        if tuple(arr.shape) != shape:
            self.show_error(
                f"Cannot load {where_from}",
                f"{where_from} has shape {tuple(arr.shape)} (array order) but the "
                f"image has {shape}: it was not drawn on this image (resample it "
                "onto the image's grid first)",
            )
            return None
        if geometry is not None and _has_physical_size(geometry):
            diffs = self.modalities[0].same_geometry(geometry)
            if (
                diffs
                and self.ask(
                    "Geometry differs",
                    f"{where_from} has the image's shape, but its geometry differs:\n  "
                    + "\n  ".join(diffs)
                    + "\n\nLoad it anyway (voxel for voxel)?",
                    QMessageBox.Yes | QMessageBox.No,
                    QMessageBox.No,
                )
                != QMessageBox.Yes
            ):
                return None
        return arr

    def _add_segments(self, arr, segments, where_from: str) -> tuple[list, list, bool]:
        """Add an object per segment with voxels in `arr`: (added names, empty, failed).

        A name already taken gets a number (``"liver 2"``); a label value already taken
        gets a free one. The first error is shown and ends the loop (``failed``).
        """
        labels = self.labels
        added, empty, failed = [], [], False
        for seg in segments:
            where = arr == seg.value
            if not where.any():
                empty.append(seg.name)
                continue
            name, k = seg.name, 2
            while name in labels.names:
                name, k = f"{seg.name} {k}", k + 1
            used = {labels.segment_of(n).value for n in labels.names}
            try:
                session = labels.add(
                    name, color=seg.color, value=None if seg.value in used else seg.value
                )
                session.start_from_mask(where)
            except MidsegError as exc:
                self.show_error(f"Cannot load {where_from}", exc)
                failed = True
                break
            added.append(name)
        return added, empty, failed

    def save_labelmap(self, path: str | os.PathLike | None = None) -> bool:
        """Write every object with a mask as one label map with names and colours.

        ``.seg.nrrd`` (3D Slicer), ``.nii.gz`` etc. with a ``.segments.json`` sidecar, or
        ``.dcm`` (DICOM-SEG; only for an image opened from a DICOM series folder), through
        `midseg.LabelSession.write_labelmap`. Overlaps: an object keeps the voxels an
        earlier object holds (``overlap="keep"``).
        """
        if not self._any_mask():
            self.show_error("Nothing to save", "no object has a mask yet: segment first")
            return False
        if path is None:
            dicom = bool(self.image_path) and Path(self.image_path).is_dir()
            path = self._get_save_path(
                "Save label map",
                self._default_out("_labels.seg.nrrd"),
                LABELMAP_SAVE_FILTER + (DICOM_SEG_FILTER if dicom else ""),
            )
            if not path:
                return False
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.labels.write_labelmap(path)
        except Exception as exc:
            self.show_error("Cannot save the label map", exc)
            return False
        self._saved_revision = self._revision
        self.statusBar().showMessage(
            f"label map of {len(self._masked_objects())} object(s) saved to {path}", 6000
        )
        return True

    # =====================================================================
    # saving
    # =====================================================================
    def _default_out(self, suffix: str) -> str:
        base = _image_name(self.modalities[0]) if self.modalities else "image"
        return str(Path(self._start_dir()) / f"{base}{suffix}")

    def save_mask(self, path: str | os.PathLike | None = None) -> bool:
        """Write the current mask with the image's geometry (`midseg.write_mask`)."""
        if self.session is None or self.session.mask is None:
            self.show_error("Nothing to save", "there is no mask yet: segment first")
            return False
        if path is None:
            path = self._get_save_path("Save mask", self._default_out("_mask.nii.gz"), MASK_FILTER)
            if not path:
                return False
        from midseg.io import write_mask

        try:
            write_mask(path, self.session.mask, like=self.modalities[0])
        except Exception as exc:
            self.show_error("Cannot save the mask", exc)
            return False
        self._saved_revision = self._revision
        self._last_mask_path = str(path)
        self.statusBar().showMessage(f"mask saved to {path}", 6000)
        return True

    def save_clicks(self, path: str | os.PathLike | None = None) -> bool:
        """Write the points and rounds: `Session.save_clicks` when one object has a mask,
        else every object's in one labels file (`midseg.LabelSession.save`).

        Brush edits cannot go into a clicks file: an object holding any is refused with an
        error that says so (save the label map instead).
        """
        done = self._masked_objects()
        if not done:
            self.show_error("Nothing to save", "there are no clicks yet: segment first")
            return False
        if path is None:
            path = self._get_save_path(
                "Save clicks", self._default_out(".clicks.json"), CLICKS_FILTER
            )
            if not path:
                return False
        try:
            if len(done) == 1:
                self.labels.object(done[0]).save_clicks(path)
            else:
                self.labels.save(path)
        except Exception as exc:
            self.show_error("Cannot save the clicks", exc)
            return False
        self._saved_revision = self._revision
        self.statusBar().showMessage(f"clicks saved to {path}", 6000)
        return True

    def load_clicks(self, path: str | os.PathLike | None = None) -> bool:
        """Replay a clicks file (one object) or a labels file (`midseg.LabelSession.save`,
        several) on the current image, in the worker; replaces every object."""
        if self.image is None or self.jobs.busy:
            return False
        if not self._maybe_keep_work("Load clicks (replaces the current session)"):
            return False
        if path is None:
            path = self._get_open_path("Load clicks", CLICKS_FILTER)
            if not path:
                return False
        from midseg.label_session import LabelSession

        image, model = self.image, self.model_spec

        def done(labels, error, seconds):
            if error is not None:
                self.show_error(f"Cannot replay {Path(path).name}", error)
                return
            self.labels, self.current = labels, labels.names[0]
            self.hidden, self._pending_by_object = set(), {}
            session = self.session
            self.pending_margin, self.pending_fg, self.pending_bg = [], [], []
            self.time_label.setText(f"replayed in {seconds:.2f} s")
            self._changed()
            self._saved_revision = self._revision
            self.set_tool("refine" if session.mask is not None else "margin")
            self._show_session_warnings(f"Replayed {Path(path).name}")

        self.statusBar().showMessage(f"replaying {path}...")
        return self._submit(
            lambda: LabelSession.load(str(path), image, model=model, device=self.device),
            done,
            "replay",
        )

    # =====================================================================
    # state of the files
    # =====================================================================
    @property
    def dirty(self) -> bool:
        """True when the session has a result not yet saved (mask or clicks)."""
        return self._any_mask() and self._revision != self._saved_revision

    def _masked_objects(self) -> list[str]:
        """Names of the objects that have a mask, in label order."""
        if self.labels is None:
            return []
        return [n for n in self.labels.names if self.labels.object(n).mask is not None]

    def _any_mask(self) -> bool:
        return bool(self._masked_objects())

    def _autosave_file(self) -> Path | None:
        if not self.autosave_enabled or not self.image_path:
            return None
        others = [m.path or f"image{k + 2}" for k, m in enumerate(self.modalities[1:])]
        return autosave_path(self.image_path, self.autosave_dir, with_images=others)

    def _autosave(self) -> None:
        target = self._autosave_file()
        if target is None or self.labels is None:
            return
        try:
            done = self._masked_objects()
            if not done and self.pending_margin:
                target.parent.mkdir(parents=True, exist_ok=True)
                write_json_atomic(target, pending_document(self.image, self.pending_margin))
                return
            if not done:
                target.unlink(missing_ok=True)
                return
            # what a replay rebuilds: objects with brush edits, or started from a loaded
            # mask, are left out (the status bar says so: save the label map to keep them)
            keep = [n for n in done if _replayable(self.labels.object(n))]
            left = [n for n in done if n not in keep]
            if keep:
                target.parent.mkdir(parents=True, exist_ok=True)
                if len(done) == 1:
                    self.labels.object(keep[0]).save_clicks(target)  # a plain clicks file
                else:
                    write_json_atomic(target, self.labels.to_dict(keep))
            if left:
                self.statusBar().showMessage(
                    f"autosave leaves out {', '.join(left)} (brush edits or a loaded mask "
                    "cannot be replayed from clicks): save the label map (Ctrl+E) to keep "
                    "them",
                    8000,
                )
        except Exception as exc:  # never lose the session over a failed autosave
            self.statusBar().showMessage(f"autosave failed: {exc}", 8000)

    # =====================================================================
    # unsaved work
    # =====================================================================
    def _maybe_keep_work(self, what: str) -> bool:
        """Ask about unsaved work; True when it is fine to go on (saved or discarded)."""
        if not self.dirty:
            return True
        answer = self.ask(
            what,
            "The segmentation has unsaved changes. Save the mask and clicks (the label "
            "map, with several objects) first?",
            QMessageBox.Save | QMessageBox.Discard | QMessageBox.Cancel,
            QMessageBox.Save,
        )
        if answer == QMessageBox.Cancel:
            return False
        if answer == QMessageBox.Save:
            done = self._masked_objects()
            if len(done) > 1:  # several objects: one label map holds them all
                return self.save_labelmap()
            if not self.save_mask():
                return False
            if self.session is not None and self.session.edits:
                return True  # brush edits: the mask is the record, no clicks file
            self.save_clicks(_clicks_beside(self._last_mask_path))
            return True
        self._discard_autosave()
        return True

    def _discard_autosave(self) -> None:
        target = self._autosave_file()
        if target is not None:
            target.unlink(missing_ok=True)
