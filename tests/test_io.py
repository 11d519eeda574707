"""Image I/O: geometry round trips, pictures, DICOM series, bad input."""

from __future__ import annotations

import os

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


def test_empty_directory_is_not_a_series(tmp_path, capfd):
    with pytest.raises(ImageReadError, match="no DICOM series"):
        read_image(tmp_path)
    assert "No Series" not in capfd.readouterr().err  # ITK's own warning is not printed


def test_4d_image_rejected(tmp_path):
    sitk.WriteImage(
        sitk.GetImageFromArray(np.zeros((2, 3, 4, 5), np.float32), isVector=False),
        str(tmp_path / "t.nii.gz"),
    )
    with pytest.raises(ImageReadError, match="4D"):
        read_image(tmp_path / "t.nii.gz")


def test_nan_pixels_rejected(tmp_path):
    arr = np.zeros((4, 5, 6), np.float32)
    arr[1, 2, 3] = np.nan
    arr[0, 0, 0] = np.inf
    # NRRD keeps NaN through ITK; the NIfTI rows (I10, I11) are below
    sitk.WriteImage(sitk.GetImageFromArray(arr), str(tmp_path / "nan.nrrd"))
    with pytest.raises(InvalidInputError, match="2 NaN or infinite"):
        read_image(tmp_path / "nan.nrrd")
    with pytest.raises(ValueError, match="NaN"):
        midseg.Image(arr)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(array=np.zeros((2, 3, 4, 5))), "2 or 3 spatial dimensions"),
        (dict(array=np.zeros(5)), "2 or 3 spatial dimensions"),
        (dict(array=np.zeros((3, 4)), spacing=(1.0,)), "2 or 3 spatial"),
        (dict(array=np.zeros((3, 4)), spacing=(1.0, -2.0)), "positive"),
        (dict(array=np.zeros((3, 4)), direction=[[1, 1], [0, 1]]), "orthonormal"),
        (dict(array=np.array([["a"]])), "numeric"),
    ],
)
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


@pytest.mark.parametrize("suffix", [".nrrd", ".mha", ".nii.gz"])
def test_nan_in_a_co_registered_image_is_named_with_its_own_file(tmp_path, suffix):
    ct = _physical_ramp((4, 8, 8), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    pet = _physical_ramp((4, 8, 8), (2.0, 2.0, 1.0), (0.0, 0.0, 0.0))
    arr = sitk.GetArrayFromImage(pet)
    arr[1, 2, 3] = np.nan  # one voxel; resampling onto the finer grid spreads it
    bad = sitk.GetImageFromArray(arr)
    bad.CopyInformation(pet)
    sitk.WriteImage(ct, str(tmp_path / "ct.nii.gz"))
    sitk.WriteImage(bad, str(tmp_path / f"pet{suffix}"))
    with pytest.raises(InvalidInputError, match=rf"pet\{suffix} contains 1 NaN") as err:
        read_image(tmp_path / "ct.nii.gz", tmp_path / f"pet{suffix}")
    assert "ct.nii.gz" not in str(err.value)


def test_json_written_atomically_gets_ordinary_permissions(tmp_path):
    from midseg.io import write_json_atomic

    old = os.umask(0o022)
    try:
        write_json_atomic(tmp_path / "a" / "card.json", {"x": 1})
    finally:
        os.umask(old)
    assert (tmp_path / "a" / "card.json").stat().st_mode & 0o777 == 0o644
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["card.json"]


# ---------------------------------------------------------------------------
# Bad image files and outputs: rows of ../shared/reports/bad-inputs.md
# ---------------------------------------------------------------------------


def _volume(dtype=np.float32, shape=(20, 30, 40)):
    """Noise that gzip cannot squeeze much (so a cut lands in the voxel data)."""
    arr = np.random.default_rng(3).normal(0, 100, size=shape)
    return arr.astype(dtype)


def _write(path, arr, compress=True, spacing=(0.5, 0.8, 3.0)):
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing[: arr.ndim])
    sitk.WriteImage(img, str(path), compress)
    return path


def _truncate(path, fraction=0.5):
    raw = path.read_bytes()
    out = path.with_name("cut_" + path.name)
    out.write_bytes(raw[: int(len(raw) * fraction)])
    return out


def _flip(path, at=0.6, count=64):
    raw = bytearray(path.read_bytes())
    start = int(len(raw) * at)
    for i in range(start, start + count):
        raw[i] ^= 0xFF
    out = path.with_name("flip_" + path.name)
    out.write_bytes(bytes(raw))
    return out


def _with_bad_voxels(tmp, name, dtype=np.float32, compress=True, **bad):
    arr = _volume(dtype)
    if "nan" in bad:
        arr[bad["nan"]] = np.nan
    if "inf" in bad:
        arr[bad["inf"]] = np.inf
    return _write(tmp / name, arr, compress)


BAD_FILES = [
    # id, make(tmp) -> path, exception, message fragment
    (
        "I04",
        lambda t: _truncate(_write(t / "a.nii.gz", _volume())),
        ImageReadError,
        r"cut_a\.nii\.gz.*truncated",
    ),
    (
        "I04-int16",
        lambda t: _truncate(_write(t / "a.nii.gz", _volume(np.int16)), 0.9),
        ImageReadError,
        "truncated",
    ),
    (
        "I04-nii",
        lambda t: _truncate(_write(t / "a.nii", _volume(), False)),
        ImageReadError,
        r"truncated: it holds \d+ bytes of voxel data where its NIfTI header announces 96000",
    ),
    (
        "I04-nii-int16",
        lambda t: _truncate(_write(t / "a.nii", _volume(np.int16), False)),
        ImageReadError,
        "NIfTI header announces 48000",
    ),
    (
        "I04-nrrd-gzip",
        lambda t: _truncate(_write(t / "a.nrrd", _volume())),
        ImageReadError,
        "truncated",
    ),
    (
        "I04-mha-zlib",
        lambda t: _truncate(_write(t / "a.mha", _volume())),
        ImageReadError,
        "truncated",
    ),
    (
        "I04-mha-raw",
        lambda t: _truncate(_write(t / "a.mha", _volume(), False)),
        ImageReadError,
        "MetaImage header announces 96000",
    ),
    (
        "I05",
        lambda t: _flip(_write(t / "a.nii.gz", _volume())),
        ImageReadError,
        r"flip_a\.nii\.gz.*corrupt",
    ),
    ("I05-nrrd-gzip", lambda t: _flip(_write(t / "a.nrrd", _volume())), ImageReadError, "corrupt"),
    ("I05-mha-zlib", lambda t: _flip(_write(t / "a.mha", _volume())), ImageReadError, "corrupt"),
    (
        "I10",
        lambda t: _with_bad_voxels(t, "nan.nii.gz", nan=(1, 2, 3)),
        InvalidInputError,
        r"nan\.nii\.gz contains 1 NaN or infinite",
    ),
    (
        "I10-nii",
        lambda t: _with_bad_voxels(t, "nan.nii", compress=False, nan=(0, 0, 0)),
        InvalidInputError,
        "1 NaN or infinite",
    ),
    (
        "I10-float64",
        lambda t: _with_bad_voxels(t, "nan.nii.gz", np.float64, nan=(19, 29, 39)),
        InvalidInputError,
        "1 NaN or infinite",
    ),
    (
        "I10-pair",
        lambda t: _with_bad_voxels(t, "nan.hdr", nan=(5, 5, 5), inf=(6, 6, 6)),
        InvalidInputError,
        "2 NaN or infinite",
    ),
    (
        "I11",
        lambda t: _with_bad_voxels(t, "inf.nii.gz", inf=(4, 5, 6)),
        InvalidInputError,
        "1 NaN or infinite",
    ),
    (
        "I11-mha",
        lambda t: _with_bad_voxels(t, "inf.mha", inf=(4, 5, 6)),
        InvalidInputError,
        "1 NaN or infinite",
    ),
]


@pytest.mark.parametrize(
    "make, error, match", [r[1:] for r in BAD_FILES], ids=[r[0] for r in BAD_FILES]
)
def test_bad_image_files_are_refused(tmp_path, make, error, match):
    """Truncated or damaged files and NaN/inf voxels (ITK zero-fills all three for NIfTI)."""
    path = make(tmp_path)
    with pytest.raises(error, match=match) as info:
        read_image(path)
    assert "\n" not in str(info.value)
    if error is ImageReadError:
        assert "copy or export it again" in str(info.value)
    # the co-registered channel goes through the same check
    good = _write(tmp_path / "good.nii.gz", _volume())
    with pytest.raises(error, match=match):
        read_image(good, path)


@pytest.mark.parametrize(
    "name, dtype, compress",
    [
        ("a.nii.gz", np.float32, True),
        ("a.nii.gz", np.int16, True),
        ("a.nii", np.float64, False),
        ("a.nii", np.uint8, False),
        ("a.hdr", np.float32, False),
        ("a.nrrd", np.float32, True),
        ("a.mha", np.float32, True),
        ("a.mha", np.int16, False),
        ("a.img.gz", np.float32, True),
    ],
)
def test_whole_files_still_read(tmp_path, name, dtype, compress):
    arr = _volume(dtype)
    back = read_image(_write(tmp_path / name, arr, compress))
    np.testing.assert_array_equal(back.array, arr)


def test_gzip_check_reads_in_chunks(tmp_path, monkeypatch):
    """The integrity check never holds more than one chunk of decompressed data."""
    import midseg.io.checks as io_checks  # the chunked readers look `_CHUNK` up there

    monkeypatch.setattr(io_checks, "_CHUNK", 4096)
    arr = _volume()
    path = _write(tmp_path / "a.nii.gz", arr)
    np.testing.assert_array_equal(read_image(path).array, arr)
    with pytest.raises(ImageReadError, match="truncated"):
        read_image(_truncate(path, 0.8))
    arr[-1, -1, -1] = np.nan  # the last voxel, after many chunk boundaries
    with pytest.raises(InvalidInputError, match="1 NaN"):
        read_image(_write(tmp_path / "b.nii.gz", arr))


def _png(path, grey, alpha, depth, extra=b""):
    """A grey + alpha PNG (colour type 4) written by hand, Sub-filtered rows."""
    import struct
    import zlib

    def chunk(kind, payload):
        return (
            struct.pack(">I", len(payload))
            + kind
            + payload
            + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)
        )

    dt = ">u1" if depth == 8 else ">u2"
    rows = np.stack([grey, alpha], axis=-1).astype(dt).reshape(grey.shape[0], -1)  # big-endian
    raw = rows.view(np.uint8).reshape(grey.shape[0], -1)
    bpp = 2 * depth // 8
    filtered = raw.copy()
    filtered[:, bpp:] = raw[:, bpp:] - raw[:, :-bpp]  # filter 1 (Sub), modulo 256
    data = b"".join(b"\x01" + r.tobytes() for r in filtered)
    ihdr = struct.pack(">IIBBBBB", grey.shape[1], grey.shape[0], depth, 4, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + extra
        + chunk(b"gAMA", struct.pack(">I", 45455))
        + chunk(b"IDAT", zlib.compress(data))
        + chunk(b"IEND", b"")
    )
    return path


@pytest.mark.parametrize("depth", [8, 16])
def test_grey_alpha_png_reads_as_grey(tmp_path, depth):
    """I17c: SimpleITK refuses 2-component PNGs ("Unknown PixelType"); alpha is dropped."""
    rng = np.random.default_rng(4)
    top = 255 if depth == 8 else 65535
    grey = rng.integers(0, top + 1, size=(13, 17))
    alpha = rng.integers(0, top + 1, size=(13, 17))
    path = _png(tmp_path / "la.png", grey, alpha, depth)
    img = read_image(path)
    assert img.shape == (13, 17) and not img.multichannel
    assert img.array.dtype == (np.uint8 if depth == 8 else np.uint16)
    np.testing.assert_array_equal(img.array, grey)


def test_grey_alpha_png_keeps_spacing_and_pillow_files(tmp_path):
    import struct
    import zlib

    s_cal = b"\x01" + b"0.5\x000.25"  # ITK's spacing chunk: x then y, in mm
    extra = (
        struct.pack(">I", len(s_cal))
        + b"sCAL"
        + s_cal
        + struct.pack(">I", zlib.crc32(b"sCAL" + s_cal) & 0xFFFFFFFF)
    )
    grey = np.arange(6 * 7).reshape(6, 7) * 5
    img = read_image(_png(tmp_path / "s.png", grey, np.full_like(grey, 255), 8, extra))
    assert img.spacing == (0.25, 0.5)
    np.testing.assert_array_equal(img.array, grey)

    pil = pytest.importorskip("PIL.Image")
    grey = (np.arange(40 * 50).reshape(40, 50) * 7 % 256).astype(np.uint8)
    pil.fromarray(np.stack([grey, 255 - grey], -1), mode="LA").save(tmp_path / "pil.png")
    np.testing.assert_array_equal(read_image(tmp_path / "pil.png").array, grey)


def _bad_mask_call(tmp_path, name, mask_value=1.0, shape=(4, 5, 6)):
    img = Image(np.zeros(shape, np.float32))
    return lambda: write_mask(tmp_path / name, np.full(shape, mask_value), like=img)


BAD_OUTPUTS = [
    (
        "W02",
        lambda t: _bad_mask_call(t, "w.xyz"),
        InvalidInputError,
        r"w\.xyz'.*extension '\.xyz' is not a format midseg writes; use one of \.nii\.gz",
    ),
    ("W02-none", lambda t: _bad_mask_call(t, "mask"), InvalidInputError, "no file extension"),
    (
        "W03",
        lambda t: (t / "afile").write_text("x") and _bad_mask_call(t, "afile/w.nii.gz"),
        ImageReadError,
        r"afile/w\.nii\.gz'.*'.*afile' is a file, not a folder",
    ),
    (
        "W03-deep",
        lambda t: (t / "afile").write_text("x") and _bad_mask_call(t, "afile/sub/w.nii.gz"),
        ImageReadError,
        "is a file, not a folder",
    ),
    (
        "W03-folder",
        lambda t: (t / "d.nii.gz").mkdir() or _bad_mask_call(t, "d.nii.gz"),
        ImageReadError,
        r"d\.nii\.gz': it is a folder",
    ),
    (
        "W05",
        lambda t: _bad_mask_call(t, "nan.nii.gz", np.nan),
        InvalidInputError,
        "mask contains 120 NaN or infinite values",
    ),
    (
        "W05-inf",
        lambda t: _bad_mask_call(t, "inf.nii.gz", -np.inf),
        InvalidInputError,
        "120 NaN or infinite",
    ),
    (
        "W07",
        lambda t: _bad_mask_call(t, "w3d.png"),
        InvalidInputError,
        r"a \.png picture holds one 2D slice and this is a 3D volume; write \.nii\.gz",
    ),
    ("W07-jpg", lambda t: _bad_mask_call(t, "w3d.jpg"), InvalidInputError, r"\.jpg picture"),
    ("W07-bmp", lambda t: _bad_mask_call(t, "w3d.BMP"), InvalidInputError, r"\.bmp picture"),
    (
        "I19b",
        lambda t: _bad_mask_call(t, "long.nii.gz", shape=(1, 1, 40000)),
        ImageReadError,
        r"cannot write '.*long\.nii\.gz': .*greater than maximum possible dimension",
    ),
]


@pytest.mark.parametrize(
    "make, error, match", [r[1:] for r in BAD_OUTPUTS], ids=[r[0] for r in BAD_OUTPUTS]
)
def test_bad_outputs_are_refused(tmp_path, make, error, match):
    call = make(tmp_path)
    with pytest.raises(error, match=match) as info:
        call()
    message = str(info.value)
    assert "\n" not in message and "~midseg" not in message
    # nothing written, no temporary left (only the fixtures' own file or folder)
    assert {p.name for p in tmp_path.iterdir()} <= {"afile", "d.nii.gz"}
    assert not (tmp_path / "d.nii.gz").is_dir() or not list((tmp_path / "d.nii.gz").iterdir())


def test_check_output_path_refuses_early_and_creates_nothing(tmp_path):
    from midseg.io import check_output_path

    assert check_output_path(tmp_path / "new" / "m.nii.gz", 3) == tmp_path / "new" / "m.nii.gz"
    assert check_output_path(str(tmp_path / "m.png"), 2) == tmp_path / "m.png"
    assert check_output_path(tmp_path / "m.png") == tmp_path / "m.png"  # ndim unknown
    with pytest.raises(InvalidInputError, match=r"\.png picture"):
        check_output_path(tmp_path / "m.png", 3)
    with pytest.raises(InvalidInputError, match=r"'\.xyz'"):
        check_output_path(tmp_path / "m.xyz")
    (tmp_path / "f").write_text("")
    with pytest.raises(ImageReadError, match="is a file, not a folder"):
        check_output_path(tmp_path / "f" / "m.nii.gz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_unwritable_folder_message_names_the_output(tmp_path, monkeypatch):
    """W08: a folder this user cannot write to; the message names the output, not a temporary."""
    import midseg.io as io
    import midseg.io.write as io_write  # where the output checks look `os` up

    monkeypatch.setattr(io_write.os, "access", lambda *a, **k: False)
    img = Image(np.zeros((4, 5), np.float32))
    with pytest.raises(
        ImageReadError,
        match=r"cannot write '.*m\.png': no permission to "
        r"create files in '.*'",
    ) as info:
        write_mask(tmp_path / "m.png", np.ones((4, 5)), like=img)
    assert "~midseg" not in str(info.value)
    with pytest.raises(ImageReadError, match="no permission to create folders"):
        io.check_output_path(tmp_path / "sub" / "m.png")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux /proc")
def test_output_under_proc_names_the_output():
    """W09: /proc exists but takes no files; the message names the output path."""
    img = Image(np.zeros((4, 5), np.float32))
    with pytest.raises(ImageReadError, match=r"cannot write '/proc/m\.nii\.gz': ") as info:
        write_mask("/proc/m.nii.gz", np.ones((4, 5)), like=img)
    assert "~midseg" not in str(info.value) and "\n" not in str(info.value)


def test_tiff_and_png_warn_about_the_geometry_they_lose(tmp_path):
    """W07b: TIFF keeps every slice but not origin, direction or slice spacing."""
    import warnings

    from midseg.errors import GeometryLossWarning

    img = _image(3)
    mask = img.array > 0
    with pytest.warns(
        GeometryLossWarning,
        match=r"\.tif format does not hold .*spacing "
        r".*origin .*direction",
    ):
        write_mask(tmp_path / "m.tif", mask, like=img)
    np.testing.assert_array_equal(read_mask(tmp_path / "m.tif"), mask)  # all 7 slices
    flat = _image(2)
    with pytest.warns(GeometryLossWarning, match=r"\.png format .*origin .*direction"):
        write_mask(tmp_path / "m.png", flat.array > 0, like=flat)
    plain = Image(flat.array, spacing=(0.5, 0.25))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a format that holds all of it: no warning
        write_mask(tmp_path / "p.png", plain.array > 0, like=plain)
        write_mask(tmp_path / "p.tif", plain.array > 0, like=plain)
        write_mask(tmp_path / "m.nii.gz", mask, like=img)
        write_image(tmp_path / "i.nrrd", img)


def test_jpeg_mask_warns_that_it_is_lossy(tmp_path):
    from midseg.errors import MidsegWarning

    img = Image(np.zeros((16, 16), np.uint8))
    with pytest.warns(MidsegWarning, match="JPEG is lossy"):
        write_mask(tmp_path / "m.jpg", np.eye(16), like=img)


@pytest.mark.parametrize(
    "suffix, side_file", [(".mhd", ".zraw"), (".hdr", ".img"), (".nhdr", ".raw.gz")]
)
def test_two_file_formats_are_written_whole(tmp_path, suffix, side_file):
    img = _image(3)
    write_mask(tmp_path / f"m{suffix}", img.array > 0, like=img)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f"m{suffix}", f"m{side_file}"])
    np.testing.assert_array_equal(read_mask(tmp_path / f"m{suffix}", like=img), img.array > 0)


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002], ids=oct)
def test_outputs_get_the_permissions_of_a_new_file(tmp_path, umask):
    from midseg.io import write_json_atomic

    img = _image(2)
    old = os.umask(umask)
    try:
        write_mask(tmp_path / "m.nii.gz", img.array > 0, like=img)
        write_image(tmp_path / "i.mhd", img)
        write_json_atomic(tmp_path / "c.json", {"x": 1})
    finally:
        os.umask(old)
    for name in ("m.nii.gz", "i.mhd", "i.zraw", "c.json"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~umask, name


def test_outputs_are_flushed_before_the_rename(tmp_path, monkeypatch):
    import midseg.io as io
    import midseg.io.write as io_write  # where the atomic writes look `os` up

    events = []
    real_fsync, real_replace = io_write.os.fsync, io_write.os.replace
    monkeypatch.setattr(io_write.os, "fsync", lambda fd: events.append("fsync") or real_fsync(fd))
    monkeypatch.setattr(
        io_write.os, "replace", lambda a, b: events.append("replace") or real_replace(a, b)
    )
    img = _image(2)
    write_mask(tmp_path / "m.nii.gz", img.array > 0, like=img)
    assert events[:2] == ["fsync", "replace"]
    events.clear()
    io.write_json_atomic(tmp_path / "c.json", {})
    assert events[:2] == ["fsync", "replace"]


def test_stale_temporaries_are_swept(tmp_path):
    """Left-overs of a killed write (our exact pattern, over an hour old) go; nothing else."""
    import time

    from midseg.io import write_json_atomic

    old = time.time() - 2 * 3600
    stale_dir = tmp_path / ".m.nii.gz.~midseg-0123456789ab.tmp"
    stale_dir.mkdir()
    (stale_dir / "m.nii.gz").write_bytes(b"half")
    stale_file = tmp_path / ".c.json.~midseg-abcdefabcdef.tmp"
    fresh_file = tmp_path / ".d.json.~midseg-000000000000.tmp"
    foreign = [
        tmp_path / ".m.nii.gz.4u4f97lx.nii.gz",
        tmp_path / "notes.~midseg-0123456789ab.tmp",
        tmp_path / ".x.~midseg-0123.tmp",
    ]
    for p in [stale_file, fresh_file, *foreign]:
        p.write_text("{")
    for p in [stale_dir / "m.nii.gz", stale_dir, stale_file, *foreign]:
        os.utime(p, (old, old))
    write_json_atomic(tmp_path / "c.json", {"x": 1})
    left = {p.name for p in tmp_path.iterdir()}
    assert left == {"c.json", fresh_file.name, *(p.name for p in foreign)}


def test_json_write_errors_name_the_path(tmp_path):
    """W06: the message names the output, never the temporary."""
    from midseg.io import write_json_atomic

    (tmp_path / "adir").mkdir()
    with pytest.raises(IsADirectoryError, match=r"cannot write '.*adir': it is a folder"):
        write_json_atomic(tmp_path / "adir", {})
    (tmp_path / "afile").write_text("")
    with pytest.raises(NotADirectoryError, match="is a file, not a folder"):
        write_json_atomic(tmp_path / "afile" / "c.json", {})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir", "afile"]


def test_images_are_not_written_as_dicom_masks_only_as_dicom_seg(tmp_path):
    """(SimpleITK's compressed DICOM writer crashed the process on a small image.)"""
    from midseg.io import Image, write_image

    with pytest.raises(InvalidInputError, match="not a format midseg writes"):
        write_image(tmp_path / "x.dcm", Image(np.arange(64, dtype=np.uint8).reshape(8, 8)))
