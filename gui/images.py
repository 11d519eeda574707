"""Opening images: the first image, a second modality, and the session started on them.

`ImagesMixin` is a part of `midseg.gui.window.MainWindow`. Reading runs in the worker
(`midseg.gui.jobs`); the label session (which loads the model) is created there too,
with one empty object, or replayed from a clicks file or an autosave.
"""

from __future__ import annotations

import os
import time
import traceback
from pathlib import Path

import numpy as np
from PyQt5.QtWidgets import QFileDialog, QMessageBox

from midseg.errors import MidsegError

from .objects import OBJECT_COLORS
from .sidecar import read_pending
from .tools import TOOL_HELP

__all__ = ["ImagesMixin", "IMAGE_FILTER"]

IMAGE_FILTER = (
    "Images (*.nii *.nii.gz *.nrrd *.nhdr *.mha *.mhd *.dcm *.png *.jpg *.jpeg "
    "*.tif *.tiff *.bmp);;All files (*)"
)


def _has_physical_size(image) -> bool:
    """False for a picture (PNG, JPEG, BMP...), whose pixel size is unknown (unit spacing)."""
    path = str(getattr(image, "path", "") or "").lower()
    return not path.endswith((".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"))


def _image_name(image, fallback: str = "image") -> str:
    path = getattr(image, "path", None)
    if not path:
        return fallback
    name = Path(path).name
    for suffix in (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd", ".png", ".jpg", ".tif", ".tiff"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _dicom_series_folder(path: str) -> str | None:
    """The folder of ``path``'s DICOM series when ``path`` is a ``.dcm`` file of a series
    of several files that is the only series in its folder, else None."""
    p = Path(path)
    if not (p.suffix.lower() == ".dcm" and p.is_file()):
        return None
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    try:
        ids = reader.GetGDCMSeriesIDs(str(p.parent))
        if len(ids) != 1:
            return None
        files = reader.GetGDCMSeriesFileNames(str(p.parent), ids[0])
        if len(files) > 1 and any(os.path.samefile(f, p) for f in files):
            return str(p.parent)
    except (RuntimeError, OSError):
        pass
    return None


def _onto(image, first):
    """`image` on `first`'s grid: unchanged when the grids agree, else resampled (physical)."""
    from midseg.io import resample_to

    if tuple(image.shape) == tuple(first.shape) and not first.same_geometry(image):
        return image
    if image.multichannel:
        return image  # _install explains why it cannot be used
    return resample_to(image, first)


class ImagesMixin:
    """Opening images and starting the session of `MainWindow` (a mixin)."""

    # =====================================================================
    # file dialogs
    # =====================================================================
    def _get_open_path(self, title: str, filt: str) -> str | None:
        path, _ = QFileDialog.getOpenFileName(self, title, self._start_dir(), filt)
        return path or None

    def _get_save_path(self, title: str, suggestion: str, filt: str) -> str | None:
        path, _ = QFileDialog.getSaveFileName(self, title, suggestion, filt)
        return path or None

    def _start_dir(self) -> str:
        return str(Path(self.image_path).parent) if self.image_path else os.getcwd()

    # =====================================================================
    # opening images
    # =====================================================================
    def open_image(
        self,
        path: str | os.PathLike | None = None,
        *,
        second=None,
        clicks=None,
        dicom: bool = False,
    ) -> bool:
        """Open an image (file dialog when ``path`` is None); reading runs in the worker.

        ``second`` opens a co-registered second modality with it (resampled
        onto the first image's grid in physical coordinates when its grid
        differs, `midseg.io.resample_to`); ``clicks`` replays a clicks file
        once the image is shown. Returns False if
        nothing was started (cancelled, busy, or unsaved work kept).
        """
        if self.jobs.busy:
            self.statusBar().showMessage("busy: wait for the running step to finish", 4000)
            return False
        if not self._maybe_keep_work("Open another image"):
            return False
        if path is None:
            if dicom:
                path = QFileDialog.getExistingDirectory(
                    self, "Open DICOM folder", self._start_dir()
                )
            else:
                path = self._get_open_path("Open image", IMAGE_FILTER)
            if not path:
                return False
        from midseg.io import read_image

        paths = [str(path)] + ([str(second)] if second else [])

        def work():
            # one file of a DICOM series stands for the series (as in DICOM viewers), not
            # for a one-slice image that cannot be saved as a DICOM-SEG of its series
            paths[0] = _dicom_series_folder(paths[0]) or paths[0]
            images = [read_image(p) for p in paths]
            return images[:1] + [_onto(im, images[0]) for im in images[1:]]

        def done(images, error, seconds):
            if error is not None:
                self.show_error("Cannot open image", error)
                return
            self._install(images[0], images[1:], clicks=clicks)

        self.statusBar().showMessage(f"reading {paths[0]}...")
        return self._submit(work, done, "reading")

    def set_image(self, image, second=None, *, clicks=None) -> None:
        """Show ``image`` (a `midseg.Image`) and start a session on it (scripts, tests)."""
        self._install(image, [second] if second is not None else [], clicks=clicks)

    def open_second(self, path: str | os.PathLike | None = None) -> bool:
        """Add a co-registered second modality, shown beside the first and fed as channel 2.

        A second image on another grid (a PET beside its CT) is resampled onto the first
        image's grid in physical coordinates (`midseg.io.resample_to`); one that does not
        overlap it is refused with an error.
        """
        if self.image is None or self.jobs.busy:
            return False
        if (
            self.session is not None
            and self.session.mask is not None
            and not self._maybe_keep_work("Add a second modality (starts a new session)")
        ):
            return False
        if path is None:
            path = self._get_open_path("Open second modality", IMAGE_FILTER)
            if not path:
                return False
        from midseg.io import read_image

        def done(image, error, seconds):
            if error is not None:
                self.show_error("Cannot open second modality", error)
                return
            self._install(self.modalities[0], [*self.modalities[1:], image], keep_view=True)

        first = self.modalities[0]
        return self._submit(lambda: _onto(read_image(str(path)), first), done, "reading")

    def remove_second(self) -> None:
        if (
            len(self.modalities) > 1
            and not self.jobs.busy
            and self._maybe_keep_work("Remove the second modality (starts a new session)")
        ):
            self._install(self.modalities[0], [], keep_view=True)

    def _compose(self, first, others):
        """The session image: the first image, or all modalities stacked as channels."""
        from midseg.io import Image

        if not others:
            return first
        for other in others:
            if tuple(other.shape) != tuple(first.shape):
                raise MidsegError(
                    f"the second modality has shape {tuple(other.shape)} but the image has "
                    f"{tuple(first.shape)}; resample it onto the first image's grid (co-register) first"
                )
        chans = []
        for im in (first, *others):
            arr = im.array.astype(np.float32)
            chans.extend(list(arr) if im.multichannel else [arr])
        return Image(
            np.stack(chans),
            spacing=first.spacing,
            origin=first.origin,
            direction=first.direction,
            multichannel=True,
            path=first.path,
        )

    def _install(self, first, others, *, clicks=None, keep_view: bool = False) -> None:
        others = [o for o in others if o is not None]
        for other in others:
            diffs = first.same_geometry(other) if tuple(other.shape) == tuple(first.shape) else []
            if (
                diffs
                and self.ask(
                    "Geometry differs",
                    "The second modality's geometry differs from the first image's:\n  "
                    + "\n  ".join(diffs)
                    + "\n\nShow and segment them together anyway "
                    "(the voxel grids are assumed to be co-registered)?",
                    QMessageBox.Yes | QMessageBox.No,
                    QMessageBox.No,
                )
                != QMessageBox.Yes
            ):
                return
        try:
            image = self._compose(first, others)
        except MidsegError as exc:
            self.show_error("Cannot use the second modality", exc)
            return
        old_cursor = self.state.cursor if keep_view else None
        self.modalities = [first, *others]
        self.image = image
        self.image_path = first.path
        self.labels, self.current = None, None
        self.hidden, self._pending_by_object = set(), {}
        self._slice, self._slice_model = None, None
        self.pending_margin, self.pending_fg, self.pending_bg = [], [], []
        self._revision = self._saved_revision = 0
        names, channels = [], []
        for k, im in enumerate(self.modalities):
            base = _image_name(im, f"image {k + 1}")
            if im.multichannel:
                channels.extend(list(im.array))
                names.extend(f"{base} [{c}]" for c in range(im.channels))
            else:
                channels.append(im.array)
                names.append(base)
        if not keep_view:
            self.links = {}
        # a DICOM series' own window (Window Center/Width) is the first view of it
        windows = []
        for im in self.modalities:
            windows.extend([getattr(im, "window", None)] * im.channels)
        self.state.set_channels(channels, names, image.spacing, image.direction, windows)
        if old_cursor and len(old_cursor) == self.state.ndim:
            self.state.set_cursor(old_cursor)
        self._rebuild_views()
        title = f"midseg - {Path(first.path).name if first.path else names[0]}"
        self.setWindowTitle(title + (f" + {names[-1]}" if len(names) > 1 else ""))
        self.set_tool("margin")
        self._refresh()
        self._start_session(clicks)

    def _start_session(self, clicks=None) -> None:
        """Create the label session (loads the model) in the worker, with one empty object;
        or replay a clicks or labels file, or an autosave."""
        from midseg.label_session import LabelSession

        image, model = self.image, self.model_spec
        restore = None
        if clicks is not None:
            restore = str(clicks)
        else:
            auto = self._autosave_file()
            if auto is not None and auto.is_file():
                when = time.strftime("%Y-%m-%d %H:%M", time.localtime(auto.stat().st_mtime))
                if (
                    self.ask(
                        "Restore autosaved session?",
                        f"Clicks autosaved on {when} exist for this image:\n{auto}\n\n"
                        "Restore them (replays stage 1 and every click round)?",
                        QMessageBox.Yes | QMessageBox.No,
                        QMessageBox.Yes,
                    )
                    == QMessageBox.Yes
                ):
                    restore = str(auto)

        lam, sigma, device = self.lam_box.value(), self.sigma_box.value(), self.device
        from_autosave = restore is not None and clicks is None
        pending = None
        if from_autosave:
            try:
                pending = read_pending(restore, image)
            except MidsegError as exc:
                self.show_error(f"Cannot restore {Path(restore).name}", exc)
                restore = from_autosave = None
            else:
                if pending is not None:
                    restore = None  # no clicks to replay: the points come back as placed

        def work():  # worker thread: touch no widget here
            # compile (or load from numba's cache) the geodesic kernels here, off the UI
            # thread, while the model loads: the first Enter or click does not wait for them
            import midseg._preload  # noqa: F401

            def fresh():
                labels = LabelSession(image, model=model, lam=lam, sigma=sigma, device=device)
                labels.add("Segment_1", color=OBJECT_COLORS[0])
                return labels

            if restore is None:
                return fresh(), None
            try:
                return LabelSession.load(restore, image, model=model, device=device), None
            except Exception as exc:  # replay failed: still give the user a session
                exc.__midseg_traceback__ = traceback.format_exc()
                return fresh(), exc

        def done(result, error, seconds):
            if image is not self.image:  # another image was opened meanwhile
                return
            if error is not None:
                self.show_error("Cannot start a segmentation session", error)
                self.statusBar().showMessage("no session: the model does not fit this image", 8000)
                return
            labels, replay_error = result
            self.labels, self.current = labels, labels.names[0]
            if pending is not None:
                self.pending_margin = [tuple(int(v) for v in p) for p in pending]
            if replay_error is not None:
                self.show_error(f"Cannot replay {Path(restore).name}", replay_error)
            if self._any_mask():
                # a replayed clicks file is saved work; a restored autosave is not
                self._revision = 1
                self._saved_revision = 0 if from_autosave else 1
                self.set_tool("refine")
                self.time_label.setText(f"replayed in {seconds:.2f} s")
            self.statusBar().showMessage("ready: " + TOOL_HELP[self.state.tool], 6000)
            self._refresh()
            if restore is not None and replay_error is None:
                self._show_session_warnings(f"Replayed {Path(restore).name}")

        self.statusBar().showMessage("loading the model...")
        self._submit(work, done, "session")
