"""The checks and warnings of `midseg.session`: parameters, the model, the image, the points.

`Session` refuses bad parameters and a model that does not fit the image
(`_check_params`, `_check_ifgc_settings`, `_load_model`), computes a volume one voxel
thick as its 2D slice (`_flat_axis`, `_work_image`), and warns when stage 1 has nothing
to go on (`_constant_warning`, `_coplanar_warning`).
"""

from __future__ import annotations

import os

import numpy as np

from ._checks import check_fraction, check_lam_sigma, flat_axis_of_shape
from .errors import (
    ChannelsWarning,
    ConstantImageWarning,
    CoplanarPointsWarning,
    InvalidInputError,
)
from .io import Image
from .fusion import (
    check_band_reach,
    check_click_depth_min,
    check_margin_floor,
    check_thick_slice_ratio,
)
from .refine import CLICK_CLAIM_KEEP, REFINE_METHODS


def _check_params(lam, sigma, method):
    lam, sigma = check_lam_sigma(lam, sigma)
    if not isinstance(method, str) or method not in REFINE_METHODS:
        raise InvalidInputError(f"method must be one of {REFINE_METHODS}, got {method!r}")
    return lam, sigma, method


#: The "ifgc" settings a Session takes as keywords and a clicks file stores as parameters.
IFGC_SETTINGS = ("margin_floor", "claim_keep", "min_click_depth", "band_reach", "thick_slice_ratio")


def _check_ifgc_settings(given: dict, ndim: int) -> dict[str, float]:
    """The session's "ifgc" settings (`IFGC_SETTINGS`: stage-1 margin floor, click-claim
    guard, smallest click depth, boundary-band reach, thick-slice ratio), checked, with
    the defaults of `ndim` for those `given` lacks or gives as None."""
    keep = given.get("claim_keep")
    return {
        "margin_floor": check_margin_floor(given.get("margin_floor"), ndim, "margin_floor"),
        "claim_keep": check_fraction(CLICK_CLAIM_KEEP if keep is None else keep, "claim_keep"),
        "min_click_depth": check_click_depth_min(given.get("min_click_depth"), ndim),
        "band_reach": check_band_reach(given.get("band_reach"), ndim),
        "thick_slice_ratio": check_thick_slice_ratio(given.get("thick_slice_ratio"), ndim),
    }


def default_model(ndim: int, channels: int) -> str:
    """The shipped model a `Session` takes for an image computed in `ndim` dimensions with
    `channels` channels: ``"2d"``/``"3d"``, or ``"2d_petct"``/``"3d_petct"`` for two."""
    from . import models as _models

    name = f"{ndim}d"
    if channels == 2 and f"{name}_petct" in _models.list_models():
        return f"{name}_petct"
    return name


#: The PET/CT models' channels: CT in HU has air, lung or fat below this value somewhere in
#: a scan; PET in SUV has (almost) no negative values.
PETCT_CT_BELOW_HU = -200.0
PETCT_PET_NEGATIVE_SHARE = 0.01


def _petct_doubt(array: np.ndarray) -> str | None:
    """Why a (2, ...) array does not look like CT (HU) then PET (SUV), or None (read on a
    subsampled grid: a check, not a measurement)."""
    step = (slice(None, None, 2),) * (array.ndim - 1)
    ct, pet = array[0][step], array[1][step]
    low = float(np.min(ct))
    if low > PETCT_CT_BELOW_HU:
        return f"channel 0 has no value below {PETCT_CT_BELOW_HU:g} (its smallest is {low:.4g})"
    share = float(np.mean(pet < -1.0))
    if share > PETCT_PET_NEGATIVE_SHARE:
        return f"{100 * share:.0f} % of channel 1 is below -1, where PET in SUV is not negative"
    return None


def channels_warning(model_name: str, image: Image) -> ChannelsWarning | None:
    """The warning for a shipped PET/CT model (name ending ``_petct``, chosen by default or
    named) on an `image` whose channels do not look like CT in HU then PET in SUV
    (`_petct_doubt`), else None."""
    if not model_name.endswith("_petct"):
        return None
    doubt = _petct_doubt(image.array)
    if not doubt:
        return None
    return ChannelsWarning(
        f"the PET/CT model {model_name!r} segments this two-channel image; it expects "
        f"channel 0 CT in HU and channel 1 PET in SUV, but {doubt}. Give the CT first "
        "(read_image('ct', 'pet'); on the command line CT --with PET) or choose another model"
    )


def _load_model(model, image: Image, work: Image, flat_axis: int | None, device: str | None):
    """The session's model, loaded (default: the shipped one for `work`'s dimensions and
    `image`'s channels) and checked against the image `work` computes on."""
    from . import models as _models

    if model is None:
        model = default_model(work.ndim, image.channels)
    loaded = (
        _models.load_model(model, device=device) if isinstance(model, (str, os.PathLike)) else model
    )
    if not isinstance(getattr(loaded, "spatial_dims", None), int):
        raise InvalidInputError(
            "model must be a shipped model's name (e.g. '2d'), the path of a .pt file "
            f"with its card or of an ensemble card (.json), or a loaded model (midseg.models.load_model), got "
            f"{type(model).__name__} {model!r}"
        )
    dims = getattr(loaded, "spatial_dims", None)
    if dims != work.ndim:
        flat = (
            " (a volume one voxel thick is segmented as a 2D image)"
            if flat_axis is not None
            else ""
        )
        raise InvalidInputError(
            f"model {getattr(loaded, 'name', model)!r} is a {dims}D model but the image is "
            f"{work.ndim}D (shape {image.shape}){flat}; use a "
            f"{work.ndim}D model"
        )
    want = getattr(loaded, "image_channels", None)
    if want is not None and want != image.channels:
        raise InvalidInputError(
            f"model {getattr(loaded, 'name', model)!r} expects {want} image channel(s), "
            f"the image has {image.channels}"
        )
    return loaded


def _coplanar_warning(points: np.ndarray, spacing) -> CoplanarPointsWarning | None:
    """A warning when all 3D margin points lie within half a voxel of one plane, else None.

    The plane is the least-squares one of the points in physical units (its
    normal: the right singular vector of the centred points with the smallest
    singular value); "half a voxel" is half a voxel's extent along that normal.
    """
    sp = np.asarray(spacing, dtype=np.float64)
    pts = np.asarray(points, dtype=np.float64) * sp
    centred = pts - pts.mean(axis=0)
    normal = np.linalg.svd(centred)[2][-1]
    half_voxel = 0.5 * float(np.abs(normal) @ sp)
    if np.abs(centred @ normal).max() >= half_voxel * (1 - 1e-9):  # exactly half: not coplanar
        return None
    axis = int(np.argmax(np.abs(normal)))
    if abs(normal[axis]) > 0.999:
        index = int(np.rint(np.mean(np.asarray(points)[:, axis])))
        where = f"the plane {'zyx'[axis]} = {index}"
    else:
        n = normal * np.sign(normal[axis])
        where = "one oblique plane (normal (z, y, x) = ({:.2f}, {:.2f}, {:.2f}))".format(*n)
    return CoplanarPointsWarning(
        f"all {len(points)} margin points lie in {where}: the object's extent across that "
        "plane is unknown to the network, which sees only a thin slab around it, so the mask "
        "is likely cut short there. Add margin points on the slices above and below that "
        "plane, at the object's top and bottom extremes"
    )


def _constant_warning(image: Image, box) -> ConstantImageWarning | None:
    """A warning when every channel holds one value inside the box stage 1 looked at."""
    chans = image.channels_first()

    def flat(a):
        v = a.reshape(a.shape[0], -1)
        return bool(v.size) and bool(np.all(v.min(axis=1) == v.max(axis=1)))

    if not flat(chans[(slice(None),) + tuple(box.slices)]):
        return None
    where = "the image" if flat(chans) else "the box of the margin points"
    return ConstantImageWarning(
        f"{where} holds a single value: there is no edge to segment, and the mask only "
        "follows the margin points; check that the right image was opened"
    )


def _as_image(image) -> Image:
    if isinstance(image, Image):
        return image
    if isinstance(image, np.ndarray):
        return Image(image)
    raise InvalidInputError(
        f"image must be a midseg.Image or a numpy array, got {type(image).__name__}"
    )


def _flat_axis(image: Image) -> int | None:
    """The spatial axis of a 3D image that is one voxel thick (the others longer), or None."""
    return flat_axis_of_shape(image.shape)


def _work_image(image: Image, axis: int | None) -> Image:
    """The image a session computes on: a one-slice volume as its 2D slice (spacing kept)."""
    if axis is None:
        return image
    arr = np.take(np.asarray(image.array), 0, axis=axis + (1 if image.multichannel else 0))
    return Image(
        arr,
        spacing=tuple(sp for a, sp in enumerate(image.spacing) if a != axis),
        multichannel=image.multichannel,
        path=image.path,
    )
