"""Image I/O: geometry round trips, pictures, DICOM series, bad input."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

import midseg
from midseg.errors import GeometryMismatchError, ImageReadError, InvalidInputError
from midseg.io import Image, read_image, read_mask, write_image, write_mask


def _rotation(ndim, angle=0.3):
    c, s = np.cos(angle), np.sin(angle)
    if ndim == 2:
        return np.array([[c, -s], [s, c]])
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def _image(ndim, dtype=np.float32):
    rng = np.random.default_rng(0)
    shape = (7, 9, 11)[-ndim:] if ndim == 3 else (9, 11)
    arr = rng.normal(size=shape).astype(dtype)
    spacing = (3.0, 0.8, 0.5)[-ndim:]
    origin = (-10.5, 20.25, 3.0)[-ndim:]
    return Image(arr, spacing=spacing, origin=origin, direction=_rotation(ndim))


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha"])
def test_geometry_round_trip(tmp_path, ndim, suffix):
    if ndim == 2 and suffix == ".nii.gz":
        suffix = ".nii"
    img = _image(ndim)
    path = tmp_path / f"img{suffix}"
    write_image(path, img)
    back = read_image(path)
    assert back.shape == img.shape
    np.testing.assert_array_equal(back.array, img.array)
    np.testing.assert_allclose(back.spacing, img.spacing, rtol=1e-6)
    np.testing.assert_allclose(back.origin, img.origin, atol=1e-4)
    np.testing.assert_allclose(back.direction, img.direction, atol=1e-5)
    assert back.same_geometry(img) == []


@pytest.mark.parametrize("ndim", [2, 3])
def test_axis_order_matches_simpleitk(tmp_path, ndim):
    """Array order is (z, y, x): spacing is SimpleITK's (x, y, z) reversed."""
    shape_xyz = (11, 9, 7)[:ndim]
    sitk_img = sitk.Image(shape_xyz, sitk.sitkFloat32)
    sitk_img.SetSpacing((0.5, 0.8, 3.0)[:ndim])
    sitk_img.SetOrigin((1.0, 2.0, 3.0)[:ndim])
    idx_xyz = (10, 1, 5)[:ndim]
    sitk_img[idx_xyz] = 42.0
    path = tmp_path / "a.nrrd"
    sitk.WriteImage(sitk_img, str(path))
    img = read_image(path)
    assert img.shape == shape_xyz[::-1]
    assert img.spacing == (0.5, 0.8, 3.0)[:ndim][::-1]
    assert img.array[idx_xyz[::-1]] == 42.0
    # physical point of that voxel agrees with SimpleITK's (reversed order)
    phys_itk = sitk_img.TransformIndexToPhysicalPoint(idx_xyz)
    np.testing.assert_allclose(img.index_to_physical(idx_xyz[::-1]), phys_itk[::-1])


def test_physical_index_inverse():
    img = _image(3)
    idx = np.array([[0, 0, 0], [6, 8, 10], [3.5, 1.25, 7]])
    np.testing.assert_allclose(img.physical_to_index(img.index_to_physical(idx)), idx, atol=1e-9)


@pytest.mark.parametrize("ndim", [2, 3])
def test_write_mask_carries_geometry(tmp_path, ndim):
    img = _image(ndim)
    mask = img.array > 0.5
    path = tmp_path / "mask.nii.gz"
    write_mask(path, mask, like=img)
    back = read_image(path)
    assert back.array.dtype == np.uint8
    np.testing.assert_array_equal(back.array, mask.astype(np.uint8))
    assert back.same_geometry(img) == []
    np.testing.assert_array_equal(read_mask(path, like=img), mask)
    assert not list(tmp_path.glob(".*")), "temporary file left behind"


def test_read_mask_geometry_mismatch(tmp_path):
    img = _image(3)
    write_mask(tmp_path / "m.nii.gz", img.array > 0, like=img)
    other = Image(img.array, spacing=(1.0, 1.0, 1.0))
    with pytest.raises(GeometryMismatchError, match="spacing"):
        read_mask(tmp_path / "m.nii.gz", like=other)


def test_write_mask_shape_mismatch():
    img = _image(2)
    with pytest.raises(InvalidInputError, match=r"same spatial shape, got \(3, 3\) and \(9, 11\)"):
        write_mask("x.nii", np.zeros((3, 3)), like=img)


def test_png_grey_and_rgb(tmp_path):
    grey = (np.arange(20 * 30).reshape(20, 30) % 256).astype(np.uint8)
    sitk.WriteImage(sitk.GetImageFromArray(grey), str(tmp_path / "g.png"))
    img = read_image(tmp_path / "g.png")
    assert img.shape == (20, 30) and not img.multichannel
    np.testing.assert_array_equal(img.array, grey)

    rgb = np.stack([grey, 255 - grey, np.full_like(grey, 10)], axis=-1)
    sitk.WriteImage(sitk.GetImageFromArray(rgb, isVector=True), str(tmp_path / "c.png"))
    img = read_image(tmp_path / "c.png")
    assert img.shape == (20, 30) and not img.multichannel
    expected = 0.299 * grey + 0.587 * (255.0 - grey) + 0.114 * 10
    np.testing.assert_allclose(img.array, expected, atol=1e-3)


def test_png_mask_is_visible(tmp_path):
    img = Image(np.zeros((8, 8), np.uint8))
    mask = np.zeros((8, 8), bool)
    mask[2:5, 3:6] = True
    write_mask(tmp_path / "m.png", mask, like=img)
    raw = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "m.png")))
    assert set(np.unique(raw)) == {0, 255}
    np.testing.assert_array_equal(read_mask(tmp_path / "m.png"), mask)


def test_vector_image_keeps_channels_first(tmp_path):
    arr = np.random.default_rng(1).normal(size=(5, 6, 7, 2)).astype(np.float32)  # z, y, x, c
    s = sitk.GetImageFromArray(arr, isVector=True)
    s.SetSpacing((1.0, 2.0, 3.0))
    sitk.WriteImage(s, str(tmp_path / "v.nii.gz"))
    img = read_image(tmp_path / "v.nii.gz")
    assert img.multichannel and img.channels == 2 and img.shape == (5, 6, 7)
    assert img.spacing == (3.0, 2.0, 1.0)
    np.testing.assert_array_equal(img.array[1], arr[..., 1])
    write_image(tmp_path / "v2.nii.gz", img)
    back = read_image(tmp_path / "v2.nii.gz")
    np.testing.assert_array_equal(back.array, img.array)


def test_dicom_series_directory(tmp_path):
    vol = (np.arange(4 * 6 * 8).reshape(4, 6, 8) % 97).astype(np.int16)
    spacing_xyz = (0.7, 0.9, 2.5)
    origin_xyz = (-5.0, 12.0, 30.0)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    series_uid = "1.2.826.0.1.3680043.2.1125.1.1"
    for z in range(vol.shape[0]):
        sl = sitk.GetImageFromArray(vol[z])
        sl.SetSpacing(spacing_xyz[:2])
        pos = (origin_xyz[0], origin_xyz[1], origin_xyz[2] + z * spacing_xyz[2])
        for tag, value in [
            ("0008|0060", "MR"),
            ("0020|000d", "1.2.826.0.1.3680043.2.1125.1.0"),
            ("0020|000e", series_uid),
            ("0008|0018", f"{series_uid}.{z + 1}"),
            ("0020|0013", str(z + 1)),
            ("0020|0032", "\\".join(f"{v:g}" for v in pos)),
            ("0020|0037", "1\\0\\0\\0\\1\\0"),
            ("0018|0050", str(spacing_xyz[2])),
        ]:
            sl.SetMetaData(tag, value)
        writer.SetFileName(str(tmp_path / f"slice{z:03d}.dcm"))
        writer.Execute(sl)
    img = read_image(tmp_path)
    assert img.shape == vol.shape
    np.testing.assert_array_equal(img.array, vol)
    np.testing.assert_allclose(img.spacing, spacing_xyz[::-1], rtol=1e-5)
    np.testing.assert_allclose(img.origin, origin_xyz[::-1], atol=1e-4)


def test_missing_file_message(tmp_path):
    with pytest.raises(ImageReadError, match="no such file"):
        read_image(tmp_path / "nope.nii.gz")


def test_unreadable_file_message(tmp_path):
    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(b"this is not an image")
    with pytest.raises(ImageReadError, match="cannot read .*broken.nii.gz"):
        read_image(bad)


def test_empty_directory_is_not_a_series(tmp_path):
    with pytest.raises(ImageReadError, match="no DICOM series"):
        read_image(tmp_path)


def test_4d_image_rejected(tmp_path):
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((2, 3, 4, 5), np.float32), isVector=False),
                    str(tmp_path / "t.nii.gz"))
    with pytest.raises(ImageReadError, match="4D"):
        read_image(tmp_path / "t.nii.gz")


def test_nan_pixels_rejected(tmp_path):
    arr = np.zeros((4, 5, 6), np.float32)
    arr[1, 2, 3] = np.nan
    arr[0, 0, 0] = np.inf
    # NRRD keeps NaN (ITK's NIfTI reader already maps NaN to 0)
    sitk.WriteImage(sitk.GetImageFromArray(arr), str(tmp_path / "nan.nrrd"))
    with pytest.raises(InvalidInputError, match="2 NaN or infinite"):
        read_image(tmp_path / "nan.nrrd")
    with pytest.raises(ValueError, match="NaN"):
        midseg.Image(arr)


@pytest.mark.parametrize("kwargs, message", [
    (dict(array=np.zeros((2, 3, 4, 5))), "2 or 3 spatial dimensions"),
    (dict(array=np.zeros(5)), "2 or 3 spatial dimensions"),
    (dict(array=np.zeros((3, 4)), spacing=(1.0,)), "2 or 3 spatial"),
    (dict(array=np.zeros((3, 4)), spacing=(1.0, -2.0)), "positive"),
    (dict(array=np.zeros((3, 4)), direction=[[1, 1], [0, 1]]), "orthonormal"),
    (dict(array=np.array([["a"]])), "numeric"),
])
def test_image_validation(kwargs, message):
    with pytest.raises(InvalidInputError, match=message):
        Image(**kwargs)


def test_multichannel_from_spacing_and_repr():
    img = Image(np.zeros((2, 5, 6, 7)), spacing=(2.0, 1.0, 1.0))
    assert img.multichannel and img.channels == 2 and img.shape == (5, 6, 7)
    assert img.channel_axis == 0
    assert "channels=2" in repr(img) and "spacing=(2, 1, 1)" in repr(img)


def _physical_ramp(shape, spacing, origin):
    """An image whose value is the physical x coordinate (mm) of each voxel (ITK order)."""
    zz, yy, xx = np.indices(shape)
    arr = (origin[0] + xx * spacing[0]).astype(np.float32)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    return img


def test_co_registered_image_is_resampled_onto_the_first_grid(tmp_path):
    ct = _physical_ramp((6, 20, 24), (1.0, 1.0, 3.0), (0.0, 0.0, 0.0))
    # a coarser "PET" covering the same physical extent: 5 mm voxels
    pet = _physical_ramp((6, 5, 6), (5.0, 5.0, 3.0), (-1.0, -1.0, 0.0))
    sitk.WriteImage(ct, str(tmp_path / "ct.nii.gz"))
    sitk.WriteImage(pet, str(tmp_path / "pet.nii.gz"))
    both = read_image(tmp_path / "ct.nii.gz", tmp_path / "pet.nii.gz")
    first = read_image(tmp_path / "ct.nii.gz")
    assert both.multichannel and both.channels == 2 and both.shape == first.shape
    assert both.spacing == first.spacing and both.origin == first.origin
    np.testing.assert_array_equal(both.array[0], first.array)
    # linear interpolation of a linear ramp is exact inside the coarse image's extent
    inside = (slice(None), slice(0, 18), slice(0, 23))
    np.testing.assert_allclose(both.array[1][inside], first.array[inside], atol=1e-4)


def test_co_registered_images_that_do_not_overlap_are_refused(tmp_path):
    a = _physical_ramp((4, 8, 8), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    b = _physical_ramp((4, 8, 8), (1.0, 1.0, 1.0), (500.0, 0.0, 0.0))
    sitk.WriteImage(a, str(tmp_path / "a.nii.gz"))
    sitk.WriteImage(b, str(tmp_path / "b.nii.gz"))
    with pytest.raises(GeometryMismatchError, match="do not overlap"):
        read_image(tmp_path / "a.nii.gz", tmp_path / "b.nii.gz")
    flat = sitk.GetImageFromArray(np.zeros((8, 8), np.float32))
    sitk.WriteImage(flat, str(tmp_path / "c.nii.gz"))
    with pytest.raises(GeometryMismatchError, match="2D"):
        read_image(tmp_path / "a.nii.gz", tmp_path / "c.nii.gz")
    with pytest.raises(ImageReadError, match="no such file"):
        read_image(tmp_path / "a.nii.gz", tmp_path / "missing.nii.gz")


def test_json_written_atomically_gets_ordinary_permissions(tmp_path):
    import os

    from midseg.io import write_json_atomic

    old = os.umask(0o022)
    try:
        write_json_atomic(tmp_path / "a" / "card.json", {"x": 1})
    finally:
        os.umask(old)
    assert (tmp_path / "a" / "card.json").stat().st_mode & 0o777 == 0o644
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["card.json"]
