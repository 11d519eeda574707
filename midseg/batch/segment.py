"""One case: replaying a clicks file on an image, writing the mask, scoring it.

Part of `midseg.batch`: `segment_one` is `midseg segment`, and what each batch
worker runs for its case; `read_ground_truth` reads the reference it is scored on.
"""

from __future__ import annotations

import math
import os
import time

from ..errors import GeometryMismatchError, InvalidInputError
from .manifest import _check_label


def _label_list(values) -> str:
    shown = [int(v) if float(v).is_integer() else float(v) for v in values[:10]]
    more = f" and {len(values) - 10} more" if len(values) > 10 else ""
    return f"{shown}{more}"


def read_ground_truth(path: str | os.PathLike, like, label: int | None = None):
    """Read a reference segmentation as a uint8 0/1 mask of the object.

    Parameters
    ----------
    path : path
        A label image with the geometry of ``like`` (`midseg.Image`).
    label : int, optional
        The value of the object. Without it the file must hold at most one
        nonzero value (a binary mask, 0/1 or 0/255); with it, the object is
        where the file equals ``label``.

    Raises
    ------
    InvalidInputError
        More than one nonzero label and no ``label``; ``label`` not in a
        non-empty file; more than one channel.
    GeometryMismatchError
        The file's geometry differs from ``like``'s.
    """
    import numpy as np

    from ..io import read_image

    ref = read_image(path)
    if ref.multichannel:
        raise InvalidInputError(
            f"ground truth {str(path)!r} has {ref.channels} channels; expected one"
        )
    diffs = like.same_geometry(ref)
    if diffs:
        raise GeometryMismatchError(
            f"ground truth {str(path)!r} does not match the image geometry: " + "; ".join(diffs)
        )
    arr = ref.array
    labels = np.unique(arr[arr != 0])
    if label is None:
        if labels.size > 1:
            raise InvalidInputError(
                f"ground truth {str(path)!r} holds {labels.size} labels {_label_list(labels)}; "
                "choose the object with --label N (manifest column label)"
            )
        return (arr != 0).astype(np.uint8)
    label = _check_label(label)
    if labels.size and not (labels == label).any():
        raise InvalidInputError(
            f"label {label} does not occur in ground truth {str(path)!r}; "
            f"it holds {_label_list(labels)}"
        )
    return (arr == label).astype(np.uint8)


def _finite(value: float) -> float | None:
    return round(value, 6) if math.isfinite(value) else None


def segment_one(
    image_path: str,
    clicks_path: str,
    out_path: str,
    *,
    model=None,
    ground_truth: str | None = None,
    co_registered=(),
    label: int | None = None,
) -> dict:
    """Replay one clicks file on one image and write the mask; returns a result dict.

    `co_registered` paths are read onto the image's grid as further channels
    (`midseg.io.read_image`); the mask has the image's geometry. The output path is
    checked (`midseg.io.check_output_path`) before the image is read and again, for a
    3D image, before the replay. With
    `ground_truth` (read by `read_ground_truth` with `label`, before the
    replay) the result holds Dice, ASSD and HD95; ASSD and HD95 are None when
    the ground truth or the mask is empty, and ``note`` says why.
    """
    from .. import metrics
    from ..io import check_output_path, read_image, write_mask
    from ..session import Session

    t0 = time.perf_counter()
    check_output_path(out_path, mask=True)  # a bad output path fails before any work
    inputs = [q for q in (image_path, clicks_path, ground_truth, *co_registered) if q]
    if os.path.abspath(out_path) in {os.path.abspath(q) for q in inputs}:
        raise InvalidInputError(
            f"the output {str(out_path)!r} is one of the inputs; name another file"
        )
    for q in (image_path, *co_registered):
        if os.path.isdir(q) and os.path.commonpath(
            [os.path.abspath(q), os.path.abspath(out_path)]
        ) == os.path.abspath(q):
            raise InvalidInputError(
                f"the output {str(out_path)!r} lies inside the DICOM "
                f"series folder {str(q)!r}, which would then hold another "
                "series; write it elsewhere"
            )
    image = read_image(image_path, *co_registered)
    check_output_path(out_path, image.ndim, mask=True)
    if ground_truth is not None and not str(ground_truth):
        raise InvalidInputError("the ground-truth path is empty")
    gt = read_ground_truth(ground_truth, image, label) if ground_truth else None
    session = Session.from_clicks(clicks_path, image, model=model)
    mask = session.mask
    assert mask is not None  # from_clicks ran stage 1 (or started from a mask)
    write_mask(out_path, mask, like=image)
    result = {
        "rounds": len(session.rounds),
        "seconds": round(time.perf_counter() - t0, 3),
        "mask": str(out_path),
        "dice": None,
        "assd": None,
        "hd95": None,
        "note": None,
    }
    if gt is not None:
        result["dice"] = _finite(metrics.dice(mask, gt))
        if not gt.any():
            result["note"] = "ground truth empty: ASSD/HD95 undefined"
        elif not mask.any():
            result["note"] = "mask empty: ASSD/HD95 undefined"
        else:
            result["assd"] = _finite(metrics.assd(mask, gt, image.spacing))
            result["hd95"] = _finite(metrics.hd95(mask, gt, image.spacing))
    return result
