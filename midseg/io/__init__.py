"""Reading and writing images and masks, and the `Image` value (array + geometry).

Everything goes through SimpleITK. Arrays are in SimpleITK array order
((y, x) / (z, y, x), channel axis first for multi-channel images) and so are
spacing, origin and direction: the (x, y, z) order of SimpleITK is converted
here, once. Nothing in this package resamples but `resample_to` and the
co-registered channels of `read_image`.

``midseg.io`` is the import path; the code lives in its modules:

- `midseg.io.image`: the `Image` class, geometry helpers, SimpleITK conversion;
- `midseg.io.read`: `read_image`, `read_mask`, `resample_to` (and grey + alpha PNG);
- `midseg.io.checks`: the integrity checks run before SimpleITK reads a file
  (truncated or corrupt data, NaN/inf NIfTI voxels);
- `midseg.io.dicom`: DICOM series reading, display window, the GDCM locale guard;
- `midseg.io.write`: `write_image`, `write_mask`, `check_output_path` and the
  atomic writes (temporaries, fsync, rename) other modules use too.

Tests that patch a module global (e.g. ``_CHUNK``) patch it in the module that
uses it, not here.
"""

from __future__ import annotations

from .image import RGB_TO_GREY as RGB_TO_GREY
from .image import Image
from .image import geometry_differences as geometry_differences
from .read import MIN_OVERLAP, read_image, read_mask, resample_to
from .write import STALE_TEMPORARY_AGE as STALE_TEMPORARY_AGE
from .write import (
    MASK_SUFFIXES,
    SIDECAR_SUFFIX,
    WRITE_SUFFIXES,
    check_output_path,
    file_sha256,
    write_bytes_atomic,
    write_file_atomic,
    write_image,
    write_json_atomic,
    write_mask,
)

__all__ = [
    "Image",
    "read_image",
    "read_mask",
    "write_image",
    "write_mask",
    "resample_to",
    "check_output_path",
    "write_json_atomic",
    "write_bytes_atomic",
    "write_file_atomic",
    "file_sha256",
    "SIDECAR_SUFFIX",
    "MIN_OVERLAP",
    "WRITE_SUFFIXES",
    "MASK_SUFFIXES",
]
