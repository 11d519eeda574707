"""DICOM specifics of reading: one series from a folder, its display window, and the
guard that restores the process locale after GDCM (SimpleITK's DICOM library)."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np

from ..errors import ImageReadError


@contextlib.contextmanager
def _keep_locale():
    """Restore the process locale after a SimpleITK call: its DICOM library (GDCM) can set
    the C locale, after which Python reads and writes text files as ASCII."""
    import locale

    saved = locale.setlocale(locale.LC_ALL)
    try:
        yield
    finally:
        if locale.setlocale(locale.LC_ALL) != saved:
            locale.setlocale(locale.LC_ALL, saved)


def _dicom_window(img) -> tuple[float, float] | None:
    """(level, width) from DICOM's Window Center/Width (the first pair), if the file has it."""
    try:
        values = [img.GetMetaData(t).split("\\")[0].strip() for t in ("0028|1050", "0028|1051")]
        level, width = float(values[0]), float(values[1])
    except (RuntimeError, ValueError, IndexError):
        return None
    return (level, width) if np.isfinite(level) and np.isfinite(width) and width > 0 else None


def _read_dicom_series(p: Path):
    """The SimpleITK image of the one DICOM series in the folder `p` (`read_image`), with
    the window centre / width of its first slice."""
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    shown = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)  # ITK's "No Series were found" on
    try:  # stderr would come before the one-line error below
        series = reader.GetGDCMSeriesIDs(str(p))
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(shown)
    if not series:
        raise ImageReadError(f"directory {str(p)!r} holds no DICOM series")
    if len(series) > 1:
        raise ImageReadError(
            f"directory {str(p)!r} holds {len(series)} DICOM series ({', '.join(series)}); "
            f"put each series in its own directory"
        )
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(p), series[0]))
    reader.MetaDataDictionaryArrayUpdateOn()
    with _keep_locale():  # GDCM may set the C locale for the whole process
        img = reader.Execute()
    for tag in ("0028|1050", "0028|1051"):  # window centre / width of slice 0
        if reader.HasMetaDataKey(0, tag):
            img.SetMetaData(tag, reader.GetMetaData(0, tag))
    return img
