"""DICOM-SEG through highdicom (midseg.dicomseg): references its source series, round-trips."""

import numpy as np
import pytest

pytest.importorskip("highdicom")
pydicom = pytest.importorskip("pydicom")

from midseg.dicomseg import SEG_SOP_CLASS_UID, read_dicom_seg, write_dicom_seg  # noqa: E402
from midseg.errors import InvalidInputError  # noqa: E402
from midseg.labelmap import Segment  # noqa: E402


def _series(folder, shape=(5, 16, 20)):
    """A small CT-like DICOM series written by SimpleITK (one file per slice)."""
    import locale

    saved = locale.setlocale(locale.LC_ALL)  # GDCM's writer sets the C locale
    try:
        return _write_series(folder, shape)
    finally:
        locale.setlocale(locale.LC_ALL, saved)


def _write_series(folder, shape):
    import time

    import SimpleITK as sitk

    arr = (np.arange(np.prod(shape)).reshape(shape) % 200).astype(np.int16)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((0.7, 0.7, 2.5))
    img.SetOrigin((-10.0, 20.0, 30.0))
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    stamp = time.strftime("%Y%m%d")
    series_uid = "1.2.826.0.1.3680043.2.1125." + str(int(time.time() * 1e3))
    tags = [
        ("0008|0060", "CT"),
        ("0020|000d", series_uid + ".1"),
        ("0020|000e", series_uid),
        ("0008|0020", stamp),
        ("0020|0011", "3"),
        ("0010|0010", "Test^Patient"),
        ("0010|0020", "T1"),
        ("0008|0016", "1.2.840.10008.5.1.4.1.1.2"),
        ("0020|0037", "1\\0\\0\\0\\1\\0"),
        ("0020|0052", series_uid + ".2"),
        ("0018|0050", "2.5"),
    ]
    folder.mkdir()
    for z in range(shape[0]):
        s = img[:, :, z]
        for k, v in tags:
            s.SetMetaData(k, v)
        s.SetMetaData("0008|0018", f"{series_uid}.{z + 10}")
        s.SetMetaData(
            "0020|0032", "\\".join(map(str, img.TransformIndexToPhysicalPoint((0, 0, z))))
        )
        s.SetMetaData("0020|0013", str(z + 1))
        writer.SetFileName(str(folder / f"s{z:03d}.dcm"))
        writer.Execute(s)
    return series_uid


def test_dicom_seg_references_its_series_and_round_trips(tmp_path):
    from midseg import read_image

    uid = _series(tmp_path / "ct")
    ct = read_image(tmp_path / "ct")
    labels = np.zeros(ct.shape, np.uint8)
    labels[1:4, 3:9, 4:12] = 5
    labels[2:5, 10:14, 14:18] = 7
    segs = [Segment(5, "spleen", (1.0, 0.0, 0.0)), Segment(7, "kidney", (0.0, 0.0, 1.0))]
    write_dicom_seg(tmp_path / "seg.dcm", labels, source_dir=tmp_path / "ct", segments=segs)
    ds = pydicom.dcmread(tmp_path / "seg.dcm")
    assert ds.SOPClassUID == SEG_SOP_CLASS_UID and ds.Modality == "SEG"
    assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == uid
    assert [s.SegmentLabel for s in ds.SegmentSequence] == ["spleen", "kidney"]
    back, segments = read_dicom_seg(tmp_path / "seg.dcm", source_dir=tmp_path / "ct")
    np.testing.assert_array_equal(back, labels)  # the label values come back
    assert [(s.value, s.name) for s in segments] == [(5, "spleen"), (7, "kidney")]
    assert segments[0].color[0] > 0.9 and segments[1].color[2] > 0.9


def test_dicom_seg_refuses_a_label_map_of_another_shape(tmp_path):
    _series(tmp_path / "ct")
    with pytest.raises(InvalidInputError, match="series' shape"):
        write_dicom_seg(
            tmp_path / "x.dcm",
            np.zeros((2, 3, 4), np.uint8),
            source_dir=tmp_path / "ct",
            segments=[Segment(1, "a")],
        )


def test_write_mask_to_dcm_is_a_dicom_seg_of_the_series(tmp_path):
    from midseg import Image, read_image, write_mask

    uid = _series(tmp_path / "ct")
    ct = read_image(tmp_path / "ct")
    mask = np.zeros(ct.shape, np.uint8)
    mask[1:4, 3:9, 4:12] = 1
    write_mask(tmp_path / "m.dcm", mask, like=ct)
    ds = pydicom.dcmread(tmp_path / "m.dcm")
    assert ds.SOPClassUID == SEG_SOP_CLASS_UID
    assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == uid
    with pytest.raises(InvalidInputError, match="DICOM series"):
        write_mask(tmp_path / "n.dcm", mask, like=Image(ct.array, spacing=ct.spacing))


def test_a_dicom_series_brings_its_display_window(tmp_path):
    from midseg import read_image

    _series(tmp_path / "ct")
    for f in sorted((tmp_path / "ct").glob("*.dcm")):  # add Window Center/Width
        ds = pydicom.dcmread(f)
        ds.WindowCenter, ds.WindowWidth = "40", "400"
        ds.save_as(f)
    assert read_image(tmp_path / "ct").window == (40.0, 400.0)


def test_dicom_seg_is_never_written_into_its_series_folder_and_reads_only_as_seg(tmp_path):
    from midseg import read_image

    _series(tmp_path / "ct")
    labels = np.zeros(read_image(tmp_path / "ct").shape, np.uint8)
    labels[1:3, 2:5, 2:5] = 1
    with pytest.raises(InvalidInputError, match="inside the series folder"):
        write_dicom_seg(
            tmp_path / "ct" / "seg.dcm",
            labels,
            source_dir=tmp_path / "ct",
            segments=[Segment(1, "a")],
        )
    write_dicom_seg(
        tmp_path / "seg.dcm", labels, source_dir=tmp_path / "ct", segments=[Segment(1, "Tümor")]
    )
    assert pydicom.dcmread(tmp_path / "seg.dcm").SegmentSequence[0].SegmentLabel == "Tümor"
    with pytest.raises(InvalidInputError, match="DICOM Segmentation"):
        read_image(tmp_path / "seg.dcm")


def test_dicom_seg_of_a_series_without_slice_thickness(tmp_path):
    from midseg import read_image

    _series(tmp_path / "ct")
    for f in sorted((tmp_path / "ct").glob("*.dcm")):
        ds = pydicom.dcmread(f)
        del ds.SliceThickness
        ds.save_as(f)
    labels = np.zeros(read_image(tmp_path / "ct").shape, np.uint8)
    labels[1:3, 2:5, 2:5] = 1
    write_dicom_seg(
        tmp_path / "seg.dcm", labels, source_dir=tmp_path / "ct", segments=[Segment(1, "a")]
    )
    back, _ = read_dicom_seg(tmp_path / "seg.dcm", source_dir=tmp_path / "ct")
    np.testing.assert_array_equal(back, labels)


def test_segment_refuses_an_output_inside_the_dicom_series_folder(tmp_path):
    from midseg.batch import segment_one

    _series(tmp_path / "ct")
    with pytest.raises(InvalidInputError, match="inside the DICOM series folder"):
        segment_one(
            str(tmp_path / "ct"), str(tmp_path / "c.json"), str(tmp_path / "ct" / "s000.dcm")
        )


def test_dicom_seg_stores_only_the_frames_an_object_is_in(tmp_path):
    # one frame per segment and slice would make 300 objects on a 134-slice CT a
    # gigabyte file; empty frames are left out (readers fill them with background)
    from midseg import read_image

    _series(tmp_path / "ct", shape=(12, 16, 20))
    ct = read_image(tmp_path / "ct")
    labels = np.zeros(ct.shape, np.uint8)
    labels[3:5, 2:6, 2:6] = 1
    labels[8, 10:14, 10:14] = 2
    segs = [Segment(1, "a"), Segment(2, "b"), Segment(3, "erased")]
    write_dicom_seg(tmp_path / "seg.dcm", labels, source_dir=tmp_path / "ct", segments=segs)
    ds = pydicom.dcmread(tmp_path / "seg.dcm")
    assert int(ds.NumberOfFrames) == 3  # 2 slices of a, 1 of b
    assert [s.SegmentLabel for s in ds.SegmentSequence] == ["a", "b", "erased"]
    back, segments = read_dicom_seg(tmp_path / "seg.dcm", source_dir=tmp_path / "ct")
    np.testing.assert_array_equal(back, labels)
    assert [s.name for s in segments] == ["a", "b", "erased"]
