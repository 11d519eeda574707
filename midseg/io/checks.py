"""File integrity checks: what SimpleITK does not check before reading a file.

Truncated or damaged compressed data (gzip, zlib), NIfTI/MetaImage data shorter than
the header announces, NaN/inf NIfTI voxels and JPEG files without their end marker;
`_verify_file` runs the checks that apply to a file (`read_image` calls it).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import ImageReadError, InvalidInputError


# ---------------------------------------------------------------------------
# File integrity: what SimpleITK does not check
# ---------------------------------------------------------------------------
# ITK zero-fills the tail of a truncated .nii.gz or .nii, reads a damaged
# compressed .mha without a word and turns NaN/inf voxels of NIfTI files into 0.
# These checks read the file once more, in chunks of `_CHUNK` bytes (memory stays
# bounded), before SimpleITK reads it.

_CHUNK = 1 << 20
_GZIP_MAGIC = b"\x1f\x8b"
#: NIfTI datatype code -> numpy dtype name, for the types that can hold NaN/inf
_NIFTI_FLOATS = {16: "f4", 64: "f8"}
#: MetaImage element type -> bytes per component (the unambiguous ones)
_MET_SIZES = {
    "MET_UCHAR": 1,
    "MET_CHAR": 1,
    "MET_USHORT": 2,
    "MET_SHORT": 2,
    "MET_UINT": 4,
    "MET_INT": 4,
    "MET_FLOAT": 4,
    "MET_DOUBLE": 8,
    "MET_LONG_LONG": 8,
    "MET_ULONG_LONG": 8,
}
_REEXPORT = "copy or export it again"


def _damaged(path: Path, detail: str) -> ImageReadError:
    return ImageReadError(f"cannot read {str(path)!r}: {detail}; {_REEXPORT}")


def _file_chunks(fh):
    """The bytes of an open binary file from its current position, in chunks."""
    while True:
        chunk = fh.read(_CHUNK)
        if not chunk:
            return
        yield chunk


def _gzip_chunks(fh, path: Path):
    """The decompressed bytes of the gzip stream(s) of `fh`, in chunks.

    Python's gzip module checks each member's CRC-32 and length at its end.
    Raises `ImageReadError` for a stream that ends early or is damaged.
    """
    import gzip
    import zlib

    with gzip.GzipFile(fileobj=fh, mode="rb") as gz:
        while True:
            try:
                chunk = gz.read(_CHUNK)
            except EOFError:
                raise _damaged(
                    path,
                    "the file is truncated (its compressed data ends before the "
                    "end-of-stream marker)",
                ) from None
            except (gzip.BadGzipFile, zlib.error) as exc:
                raise _damaged(
                    path, f"the file is corrupt (its compressed data fails the gzip check: {exc})"
                ) from None
            if not chunk:
                return
            yield chunk


def _zlib_chunks(fh, path: Path):
    """The decompressed bytes of the zlib stream of `fh` (compressed MetaImage), in chunks.

    zlib checks the stream's Adler-32 at its end. Raises `ImageReadError` for a
    stream that ends early or is damaged.
    """
    import zlib

    dec = zlib.decompressobj()
    for data in _file_chunks(fh):
        while True:  # at most _CHUNK bytes out per call; a full one may leave more pending
            try:
                out = dec.decompress(data, _CHUNK)
            except zlib.error as exc:
                raise _damaged(
                    path, f"the file is corrupt (its compressed data fails the zlib check: {exc})"
                ) from None
            if out:
                yield out
            if dec.eof:
                return
            data = dec.unconsumed_tail
            if not data and len(out) < _CHUNK:
                break
    if not dec.eof:
        raise _damaged(
            path, "the file is truncated (its compressed data ends before the end-of-stream marker)"
        )


def _nifti_layout(head: bytes):
    """(vox_offset, data bytes, float dtype or None, single file) of a NIfTI-1/2 header.

    None when `head` is not a NIfTI header this check understands.
    """
    import struct

    if len(head) < 348:
        return None
    for e in "<>":
        size = struct.unpack(e + "i", head[:4])[0]
        if size == 348 and head[344:348] in (b"n+1\0", b"ni1\0"):
            dim = struct.unpack(e + "8h", head[40:56])
            datatype, bitpix = struct.unpack(e + "hh", head[70:74])
            offset = struct.unpack(e + "f", head[108:112])[0]
            single = head[344:348] == b"n+1\0"
            break
        if size == 540 and len(head) >= 540 and head[4:8] in (b"n+2\0", b"ni2\0"):
            datatype, bitpix = struct.unpack(e + "hh", head[12:16])
            dim = struct.unpack(e + "8q", head[16:80])
            offset = struct.unpack(e + "q", head[168:176])[0]
            single = head[4:8] == b"n+2\0"
            break
    else:
        return None
    ndim = dim[0]
    if not 1 <= ndim <= 7 or min(dim[1 : ndim + 1]) < 1 or bitpix < 8 or bitpix % 8:
        return None
    if not np.isfinite(offset) or offset < (size if single else 0):
        return None
    nbytes = int(np.prod(np.asarray(dim[1 : ndim + 1], dtype=np.int64))) * (bitpix // 8)
    floating = _NIFTI_FLOATS.get(datatype)
    if floating is not None and int(floating[1]) * 8 != bitpix:
        floating = None
    dtype = np.dtype(e + floating) if floating else None
    return int(offset), nbytes, dtype, single


def _scan(chunks, path: Path, start: int, nbytes: int, dtype, what: str) -> None:
    """Consume `chunks`; refuse data shorter than `start + nbytes`, or NaN/inf `dtype` values.

    Raises `ImageReadError` (truncated) or `InvalidInputError` (NaN or infinite values).
    """
    pos = 0
    bad = 0
    carry = b""
    for chunk in chunks:
        lo, hi = max(start - pos, 0), min(start + nbytes - pos, len(chunk))
        pos += len(chunk)
        if dtype is None or hi <= lo:
            continue
        data = carry + chunk[lo:hi]
        usable = len(data) - len(data) % dtype.itemsize
        values = np.frombuffer(data, dtype=dtype, count=usable // dtype.itemsize)
        bad += values.size - int(np.count_nonzero(np.isfinite(values)))
        carry = data[usable:]
    if pos < start + nbytes:
        have = max(pos - start, 0)
        raise _damaged(
            path,
            f"the file is truncated: it holds {have} bytes of voxel data where "
            f"its {what} header announces {nbytes}",
        )
    if bad:
        raise InvalidInputError(
            f"image {path} contains {bad} NaN or infinite pixel values; replace them "
            f"(e.g. np.nan_to_num) before segmenting"
        )


def _peek(chunks, size: int):
    """(first >= `size` bytes or all of them, an iterator over all the bytes again)."""
    import itertools

    head = b""
    taken = []
    for chunk in chunks:
        taken.append(chunk)
        head += chunk
        if len(head) >= size:
            break
    return head, itertools.chain(taken, chunks)


def _nifti_pair(p: Path):
    """(header file, data file) of a NIfTI/Analyze pair given either of them, else None."""
    name = p.name.lower()
    for hdr_suffix, data_suffixes in (
        (".hdr", (".img", ".img.gz")),
        (".hdr.gz", (".img.gz", ".img")),
    ):
        if name.endswith(hdr_suffix):
            stem = p.name[: -len(hdr_suffix)]
            for s in data_suffixes:
                for cand in (p.with_name(stem + s), p.with_name(stem + s.upper())):
                    if cand.is_file():
                        return p, cand
            return None
    for data_suffix in (".img", ".img.gz"):
        if name.endswith(data_suffix):
            stem = p.name[: -len(data_suffix)]
            for s in (".hdr", ".hdr.gz", ".HDR"):
                if p.with_name(stem + s).is_file():
                    return p.with_name(stem + s), p
    return None


def _open_stream(fh, path: Path):
    """The decompressed bytes of a file that may be gzip-compressed, in chunks."""
    magic = fh.read(2)
    fh.seek(0)
    return _gzip_chunks(fh, path) if magic == _GZIP_MAGIC else _file_chunks(fh)


def _text_header(fh, end_marker, limit: int = 1 << 16):
    """(header lines, data offset) of a text header ended by `end_marker(line)`, else None."""
    fh.seek(0)
    offset = 0
    lines = []
    for raw in iter(lambda: fh.readline(limit), b""):
        offset += len(raw)
        if offset > limit:
            return None
        line = raw.decode("latin-1").rstrip("\r\n")
        lines.append(line)
        if end_marker(line):
            return lines, offset
    return None


def _verify_nrrd(fh, path: Path) -> None:
    """Check the attached gzip data of a ``.nrrd`` file (ITK's own messages are cryptic)."""
    found = _text_header(fh, lambda line: line == "")
    if found is None:
        return
    fields = {}
    for line in found[0][1:]:
        if ":" in line and not line.startswith("#"):
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.lstrip("=").strip().lower()
    detached = {"data file", "datafile", "line skip", "lineskip", "byte skip", "byteskip"}
    if fields.get("encoding") in ("gzip", "gz") and not detached & set(fields):
        fh.seek(found[1])
        for _ in _gzip_chunks(fh, path):
            pass


def _verify_mha(fh, path: Path) -> None:
    """Check a MetaImage ``.mha`` with its data in the file: length, zlib stream."""
    found = _text_header(fh, lambda line: line.split("=")[0].strip() == "ElementDataFile")
    if found is None:
        return
    fields = {}
    for line in found[0]:
        key, _, value = line.partition("=")
        fields[key.strip()] = value.strip()
    if fields.get("ElementDataFile") != "LOCAL" or "HeaderSize" in fields:
        return
    try:
        count = int(np.prod([int(v) for v in fields["DimSize"].split()], dtype=np.int64))
        count *= int(fields.get("ElementNumberOfChannels", "1"))
        size = _MET_SIZES.get(fields["ElementType"])
    except (KeyError, ValueError):
        return
    nbytes = None if size is None else count * size
    fh.seek(found[1])
    if fields.get("CompressedData", "False").lower() == "true":
        chunks = _zlib_chunks(fh, path)
    elif nbytes is not None:
        have = os.fstat(fh.fileno()).st_size - found[1]
        if have < nbytes:
            raise _damaged(
                path,
                f"the file is truncated: it holds {have} bytes of voxel data "
                f"where its MetaImage header announces {nbytes}",
            )
        return
    else:
        return
    _scan(chunks, path, 0, nbytes or 0, None, "MetaImage")


def _verify_jpeg(p: Path) -> None:
    """Refuse a JPEG without its end-of-image marker (libjpeg reads a truncated one as
    grey, with only a warning on its own output)."""
    size = p.stat().st_size
    with open(p, "rb") as fh:
        fh.seek(max(0, size - 4096))
        tail = fh.read().rstrip(b"\x00\r\n \t")
    if not tail.endswith(b"\xff\xd9"):
        raise ImageReadError(
            f"cannot read {str(p)!r}: the JPEG file is truncated (it has no "
            "end-of-image marker); copy or export it again"
        )


def _verify_file(p: Path) -> None:
    """Refuse a truncated or damaged image file, or a NIfTI file with NaN/inf voxels.

    Checks (each reads the file in chunks, memory stays bounded):

    - any gzip-compressed file (``.nii.gz``, ``.img.gz``, ...): the whole stream
      decompresses and its CRC-32 and length match;
    - NIfTI-1/2 (``.nii``, ``.nii.gz``, ``.hdr``/``.img`` pairs): the data holds
      ``prod(dim) * bitpix / 8`` bytes after ``vox_offset``, and float32/float64
      voxels are finite (ITK's NIfTI reader turns NaN and inf into 0);
    - ``.nrrd`` with attached gzip data and ``.mha`` with data in the file: the
      compressed stream is whole (zlib checks Adler-32) or the raw data long enough.

    Raises `ImageReadError` (truncated or corrupt) or `InvalidInputError` (NaN/inf).
    """
    name = p.name.lower()
    if name.endswith((".jpg", ".jpeg")):
        _verify_jpeg(p)
        return
    pair = _nifti_pair(p)
    if pair is not None:
        hdr, data = pair
        with open(hdr, "rb") as fh:
            head, _ = _peek(_open_stream(fh, hdr), 540)
        layout = _nifti_layout(head)
        if layout is None or layout[3]:
            return
        offset, nbytes, dtype, _ = layout
        with open(data, "rb") as fh:
            _scan(_open_stream(fh, data), data, offset, nbytes, dtype, "NIfTI")
        return
    with open(p, "rb") as fh:
        magic = fh.read(4)
        fh.seek(0)
        if magic[:2] == _GZIP_MAGIC:
            head, chunks = _peek(_gzip_chunks(fh, p), 540)
            layout = _nifti_layout(head)
            if layout is not None and layout[3]:
                offset, nbytes, dtype, _ = layout
                _scan(chunks, p, offset, nbytes, dtype, "NIfTI")
            else:
                for _ in chunks:  # the gzip check alone
                    pass
        elif name.endswith(".nii"):
            layout = _nifti_layout(fh.read(540))
            fh.seek(0)
            if layout is None or not layout[3]:
                return
            offset, nbytes, dtype, _ = layout
            if dtype is None:  # no NaN possible: the length is enough
                have = os.fstat(fh.fileno()).st_size - offset
                if have < nbytes:
                    raise _damaged(
                        p,
                        f"the file is truncated: it holds {max(have, 0)} bytes of "
                        f"voxel data where its NIfTI header announces {nbytes}",
                    )
                return
            _scan(_file_chunks(fh), p, offset, nbytes, dtype, "NIfTI")
        elif magic == b"NRRD":
            _verify_nrrd(fh, p)
        elif name.endswith(".mha"):
            _verify_mha(fh, p)
