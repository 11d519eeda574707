"""DICOM Segmentation objects (DICOM-SEG) for images read from a DICOM series, via highdicom.

`write_dicom_seg` stores a label map (`midseg.labelmap`) as a DICOM-SEG instance that
references the source series (its frames point at the source instances, the study and
patient are the source's), one segment per object with its name and display colour,
so PACS and DICOM viewers overlay it on the images it was made on. `read_dicom_seg`
reads one back as a label map on the source series' grid. Both need the optional
packages highdicom and pydicom (``pip install -e ".[dicom]"``).

Segment property codes: every object is category "Tissue" and type "Tissue" (SNOMED CT
85756007); its name is the segment label. midseg segments objects no list names in
advance, and a made-up code would be worse than a generic one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import ImageReadError, InvalidInputError
from .labelmap import DEFAULT_COLORS, Segment

__all__ = ["write_dicom_seg", "read_dicom_seg", "SEG_SOP_CLASS_UID"]

#: SOP Class UID of Segmentation Storage.
SEG_SOP_CLASS_UID = "1.2.840.10008.5.1.4.1.1.66.4"


def _libraries():
    try:
        import highdicom
        import pydicom
    except ImportError:
        raise InvalidInputError(
            "DICOM-SEG needs the packages highdicom and pydicom: "
            'pip install -e ".[dicom]" in the midseg checkout'
        ) from None
    return highdicom, pydicom


def _source_files(source_dir: str | os.PathLike) -> list[str]:
    """The files of the one DICOM series in `source_dir`, in the order SimpleITK reads it
    (the order of `midseg.io.read_image`'s first array axis)."""
    import SimpleITK as sitk

    d = Path(source_dir)
    if not d.is_dir():
        raise ImageReadError(f"{str(d)!r} is not a folder holding a DICOM series")
    reader = sitk.ImageSeriesReader()
    series = reader.GetGDCMSeriesIDs(str(d))
    if len(series) != 1:
        raise ImageReadError(
            f"{str(d)!r} must hold exactly one DICOM series, it holds {len(series)}"
        )
    return list(reader.GetGDCMSeriesFileNames(str(d), series[0]))


def write_dicom_seg(
    path: str | os.PathLike,
    labels,
    *,
    source_dir: str | os.PathLike,
    segments: Sequence[Segment],
    spacing: Sequence[float] | None = None,
) -> None:
    """Write a label map as a DICOM-SEG instance referencing its source series.

    Parameters
    ----------
    path : path
        The ``.dcm`` file to write.
    labels : (Z, Y, X) integer array
        The label map on the source series' grid, as `midseg.io.read_image(source_dir)`
        returns it (0 = background).
    source_dir : path
        The folder of the DICOM series the labels were made on.
    segments : sequence of Segment
        One per nonzero value; the SEG numbers them 1..N in this order.
    spacing : 3 floats, optional
        The series' voxel spacing in array order (``read_image(source_dir).spacing``);
        read from the series when not given.

    Raises
    ------
    InvalidInputError
        Missing libraries, a shape that is not the series', values without a segment.
    ImageReadError
        No single DICOM series in `source_dir`; the file cannot be written.
    """
    hd, pydicom = _libraries()
    from . import __version__

    p = Path(path)
    _check_seg_path(p, source_dir, segments)
    sources = [pydicom.dcmread(f) for f in _source_files(source_dir)]
    segments = list(segments)
    numbered = _numbered_labels(labels, sources, segments)
    descriptions = _segment_descriptions(hd, segments, __version__)
    measures = _pixel_measures(hd, sources, source_dir, spacing)
    series_number = int(getattr(sources[0], "SeriesNumber", 0) or 0) + 1000
    try:
        seg = hd.seg.Segmentation(
            source_images=sources,
            pixel_array=numbered,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=descriptions,
            series_instance_uid=hd.UID(),
            series_number=series_number,
            sop_instance_uid=hd.UID(),
            instance_number=1,
            manufacturer="midseg",
            manufacturer_model_name="midseg",
            software_versions=__version__,
            device_serial_number="0",
            series_description="midseg segmentation",
            omit_empty_frames=True,
            pixel_measures=measures,
        )
    except (AttributeError, ValueError, TypeError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InvalidInputError(
            f"cannot make a DICOM-SEG of the series in {str(source_dir)!r}: {first}"
        ) from None
    if any(not s.name.isascii() for s in segments):
        seg.SpecificCharacterSet = "ISO_IR 192"  # UTF-8 segment labels
    from .io import write_file_atomic

    try:
        write_file_atomic(p, seg.save_as)
    except OSError as exc:
        raise ImageReadError(str(exc)) from None


def _check_seg_path(p: Path, source_dir: str | os.PathLike, segments: Sequence[Segment]) -> None:
    """A ``.dcm`` path outside the series folder, segment labels of at most 64 characters.

    Raises `InvalidInputError` otherwise.
    """
    if p.suffix.lower() != ".dcm":
        raise InvalidInputError(f"a DICOM-SEG file ends in .dcm, got {str(p)!r}")
    if os.path.commonpath([os.path.abspath(source_dir), os.path.abspath(p)]) == os.path.abspath(
        source_dir
    ):
        raise InvalidInputError(
            f"{str(p)!r} lies inside the series folder {str(source_dir)!r}, "
            "which would then hold two series; write it elsewhere"
        )
    for s in segments:
        if len(s.name) > 64:
            raise InvalidInputError(
                f"a DICOM segment label holds at most 64 characters: {s.name!r}"
            )


def _numbered_labels(labels, sources: list, segments: list[Segment]) -> np.ndarray:
    """`labels` renumbered 1..N in the order of `segments`: (Z, Y, X) uint16.

    Raises `InvalidInputError` for a shape that is not the series' (`sources`, one
    dataset per slice) or a nonzero value without a segment.
    """
    arr = np.asarray(labels)
    want = (len(sources), int(sources[0].Rows), int(sources[0].Columns))
    if arr.shape != want:
        raise InvalidInputError(
            f"the label map must have the series' shape {want}, got {arr.shape}"
        )
    values = [s.value for s in segments]
    unnamed = sorted(set(np.unique(arr).tolist()) - {0} - set(values))
    if unnamed or not segments:
        raise InvalidInputError(f"every nonzero value needs a segment; missing: {unnamed}")
    numbered = np.zeros(arr.shape, dtype=np.uint16)
    for k, v in enumerate(values, start=1):
        numbered[arr == v] = k
    return numbered


def _segment_descriptions(hd, segments: list[Segment], version: str) -> list:
    """One highdicom ``SegmentDescription`` per segment, numbered from 1.

    Category and type "Tissue" (SNOMED CT), semi-automatic by midseg `version`, the
    segment's colour (CIELab), its label value as tracking id.
    """
    from pydicom.sr.codedict import codes

    algorithm = hd.AlgorithmIdentificationSequence(
        name="midseg", version=version, family=codes.cid7162.ArtificialIntelligence
    )
    return [
        hd.seg.SegmentDescription(
            segment_number=k,
            segment_label=s.name,
            segmented_property_category=codes.SCT.Tissue,
            segmented_property_type=codes.SCT.Tissue,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.SEMIAUTOMATIC,
            algorithm_identification=algorithm,
            display_color=hd.color.CIELabColor.from_rgb(*(int(round(255 * c)) for c in s.color)),
            tracking_id=f"midseg label value {s.value}",
            tracking_uid=hd.UID(),
        )
        for k, s in enumerate(segments, start=1)
    ]


def _pixel_measures(hd, sources: list, source_dir, spacing: Sequence[float] | None):
    """The SEG's ``PixelMeasuresSequence``: pixel spacing and slice thickness (mm).

    `spacing` (array order) is read from the series when None. A source dataset without
    SliceThickness gets the slice spacing, in memory only: highdicom reads it from every
    source.
    """
    if spacing is None:
        from .io import read_image

        spacing = read_image(source_dir).spacing  # for the SEG's frames
    spacing = [float(v) for v in spacing]
    for ds in sources:
        if not getattr(ds, "SliceThickness", None):
            ds.SliceThickness = spacing[0]
    return hd.PixelMeasuresSequence(
        pixel_spacing=spacing[1:],
        slice_thickness=float(getattr(sources[0], "SliceThickness", 0) or spacing[0]),
    )


def read_dicom_seg(
    path: str | os.PathLike, *, source_dir: str | os.PathLike
) -> tuple[np.ndarray, list[Segment]]:
    """Read a DICOM-SEG instance as a label map on its source series' grid.

    Returns
    -------
    (labels, segments)
        (Z, Y, X) uint16 label map in the order of `midseg.io.read_image(source_dir)`,
        value = the label value midseg wrote (its tracking id; else the segment number);
        the segments with their labels and colours.

    Raises
    ------
    InvalidInputError
        Missing libraries; not a Segmentation Storage instance; a SEG that does not
        reference the series in `source_dir`.
    ImageReadError
        Unreadable file or series.
    """
    hd, pydicom = _libraries()
    files = _source_files(source_dir)
    try:
        seg = hd.seg.segread(str(path))
    except Exception as exc:  # pydicom and highdicom raise several types for bad files
        raise ImageReadError(f"cannot read {str(path)!r} as DICOM-SEG: {exc}") from None
    if str(seg.SOPClassUID) != SEG_SOP_CLASS_UID:
        raise InvalidInputError(f"{str(path)!r} is not a DICOM Segmentation Storage instance")
    uids = [str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files]
    numbers = list(seg.get_segment_numbers())
    try:
        labels = seg.get_pixels_by_source_instance(
            source_sop_instance_uids=uids,
            segment_numbers=numbers,
            combine_segments=True,
            relabel=False,
        )
    except (KeyError, ValueError) as exc:
        raise InvalidInputError(
            f"{str(path)!r} does not refer to the series in {str(source_dir)!r}: {exc}"
        ) from None
    segments = []
    values = []
    for i, n in enumerate(numbers):
        d = seg.get_segment_description(n)
        tid = str(getattr(d, "tracking_id", "") or "")
        values.append(
            int(tid.rsplit(" ", 1)[1])
            if tid.startswith("midseg label value ") and tid.rsplit(" ", 1)[1].isdigit()
            else int(n)
        )
        color = DEFAULT_COLORS[i % len(DEFAULT_COLORS)]
        lab = getattr(d, "RecommendedDisplayCIELabValue", None)
        if lab is not None:
            rgb = hd.color.CIELabColor.from_dicom_value([int(v) for v in lab]).to_rgb()
            color = tuple(min(1.0, max(0.0, c / 255.0)) for c in rgb)
        segments.append(Segment(values[-1], str(d.segment_label), color))
    out = np.zeros(np.shape(labels), dtype=np.uint16)
    for n, v in zip(numbers, values):  # back to the label values written by midseg
        out[np.asarray(labels) == n] = v
    return out, segments
