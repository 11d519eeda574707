"""Input checks shared by the public functions of midseg (private).

Each helper raises :class:`midseg.errors.InvalidInputError` (a ValueError)
with the offending value and what was expected.
"""

from __future__ import annotations

from typing import Sequence, Union

import numpy as np

from .errors import InvalidInputError

#: Graph-cut CRF weight of the pairwise (smoothness) term, MIDeepSeg Eq. 8, and its default.
DEFAULT_LAM = 5.0
#: Intensity scale of the pairwise term exp(-(I_i - I_j)^2 / 2 sigma^2) on the [0, 1] crop.
DEFAULT_SIGMA = 0.1
#: Accepted ranges. Above LAM_MAX the smoothness term outweighs any unary term (at most
#: -log 1e-6 = 13.8) by more than 700 times: the mask collapses to the hard constraints and
#: max-flow slows down (lam=1e300 ran 220 s). Below SIGMA_MIN every intensity step of
#: 16-bit data already cuts the edge weight to 0; far below it the weights overflow.
LAM_MAX = 1e4
SIGMA_MIN = 1e-6

#: What a ``spacing`` argument may be: a sequence of floats or an array, e.g. the output of
#: `as_spacing` (an ndarray is not a ``Sequence`` to a type checker).
SpacingLike = Union[Sequence[float], np.ndarray]


def as_rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    """Return a Generator from a Generator, a seed or None (fresh entropy)."""
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or isinstance(rng, (int, np.integer)):
        return np.random.default_rng(rng)
    raise InvalidInputError(
        f"rng must be a numpy Generator, an int seed or None, got {type(rng).__name__}"
    )


def check_json_numbers(data, where: str) -> None:
    """Refuse a number a float64 cannot hold (an integer beyond 1e308, inf) in a JSON document.

    Walks `data` without recursion (any depth); raises `InvalidInputError` naming `where`
    and the path of the first such number.
    """
    stack = [(data, "")]
    while stack:
        node, path = stack.pop()
        if isinstance(node, dict):
            stack.extend((v, f"{path}.{k}") for k, v in node.items())
        elif isinstance(node, list):
            stack.extend((v, f"{path}[{i}]") for i, v in enumerate(node))
        elif isinstance(node, (int, float)) and not isinstance(node, bool):
            try:
                ok = np.isfinite(float(node))
            except OverflowError:
                ok = False
            if not ok:
                text = repr(node)
                raise InvalidInputError(
                    f"{where}: {path.lstrip('.') or 'top level'}: "
                    f"{text if len(text) < 30 else text[:12] + '...'} is not a finite number"
                )


def _number(value, name: str) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(
        value, (int, float, np.integer, np.floating, str)
    ):
        raise InvalidInputError(f"{name} must be a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        raise InvalidInputError(f"{name} must be a finite number, got {value!r}"[:200]) from None


def shown_value(value) -> str:
    """`value` as an error message shows it: its repr, at most 200 characters (an int too
    long for repr is shown by its size)."""
    try:
        return repr(value.item() if isinstance(value, np.generic) else value)[:200]
    except ValueError:  # int beyond sys.get_int_max_str_digits()
        return f"<an int of {value.bit_length()} bits>"


def real_number(value, name: str, wanted: str) -> tuple[float, str]:
    """`value` (a real number: not a bool, a string or anything else) as a float, inf for
    an int beyond float range, and as the error messages show it; InvalidInputError
    "`name` must be `wanted`, got ..." otherwise."""
    shown = shown_value(value)
    if isinstance(value, (bool, np.bool_)) or not isinstance(
        value, (int, float, np.integer, np.floating)
    ):
        raise InvalidInputError(f"{name} must be {wanted}, got {shown}")
    try:
        return float(value), shown
    except OverflowError:  # an int beyond float range
        return np.inf, shown


def check_fraction(value, name: str) -> float:
    """`value` as a float in [0, 1] (a number, not a bool or a string); InvalidInputError
    naming `name` otherwise."""
    out, shown = real_number(value, name, "a number in [0, 1]")
    if not 0.0 <= out <= 1.0:  # NaN fails too
        raise InvalidInputError(f"{name} must be in [0, 1], got {shown}")
    return out


def flat_axis_of_shape(shape: Sequence[int]) -> int | None:
    """The axis of a 3D spatial `shape` that is one voxel thick (the others longer), or
    None: such a volume is a 2D image stored as one slice, and midseg computes it in 2D."""
    if len(shape) != 3:
        return None
    ones = [a for a, n in enumerate(shape) if n == 1]
    return ones[0] if len(ones) == 1 else None


def computing_ndim(shape: Sequence[int]) -> int:
    """The dimensionality midseg computes a spatial `shape` in: 2 for a volume one voxel
    thick (`flat_axis_of_shape`), else its length. Per-dimensionality defaults use it."""
    return 2 if flat_axis_of_shape(shape) is not None else len(shape)


def check_lam_sigma(lam, sigma) -> tuple[float, float]:
    """`lam` and `sigma` of the graph cut as floats, checked against their ranges.

    ``0 <= lam <= LAM_MAX`` and ``SIGMA_MIN <= sigma``, both finite; numbers or numeric
    strings. Raises `InvalidInputError` naming the parameter.
    """
    lam_f, sigma_f = _number(lam, "lam"), _number(sigma, "sigma")
    if not np.isfinite(lam_f) or not 0 <= lam_f <= LAM_MAX:
        raise InvalidInputError(f"lam must be a finite number in [0, {LAM_MAX:g}], got {lam!r}")
    if not np.isfinite(sigma_f) or sigma_f < SIGMA_MIN:
        raise InvalidInputError(f"sigma must be a finite number >= {SIGMA_MIN:g}, got {sigma!r}")
    return lam_f, sigma_f


def as_spacing(spacing: SpacingLike | None, ndim: int) -> np.ndarray:
    """Spacing as a float64 array of length `ndim` (array axis order); None means 1."""
    if spacing is None:
        return np.ones(ndim, dtype=np.float64)
    try:
        sp = np.asarray(spacing, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError, OverflowError):
        raise InvalidInputError(
            f"spacing must be {ndim} positive numbers, got {spacing!r}"[:200]
        ) from None
    if sp.shape != (ndim,):
        raise InvalidInputError(
            f"spacing must have {ndim} values (one per array axis), got {tuple(sp.tolist())}"
        )
    if not np.all(np.isfinite(sp)) or np.any(sp <= 0):
        raise InvalidInputError(f"spacing must be finite and positive, got {tuple(sp.tolist())}")
    return sp


def check_spatial(
    array: np.ndarray, name: str = "image", ndims: tuple[int, ...] = (2, 3)
) -> np.ndarray:
    """Check that `array` is a finite 2D/3D numeric array and return it."""
    arr = np.asarray(array)
    if arr.ndim not in ndims:
        raise InvalidInputError(
            f"{name} must have {' or '.join(map(str, ndims))} dimensions, got shape {arr.shape}"
        )
    if arr.dtype.kind not in "biuf":
        raise InvalidInputError(f"{name} must be numeric, got dtype {arr.dtype}")
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        raise InvalidInputError(f"{name} contains {bad} NaN or infinite values")
    return arr


def as_index_array(
    points, ndim: int, *, name: str = "points", allow_empty: bool = False
) -> np.ndarray:
    """Convert index tuples to an (N, ndim) int64 array (rounded), without bounds checks."""
    if isinstance(points, (dict, str, bytes, set)):
        raise InvalidInputError(
            f"{name} must be a sequence of index tuples (array order) or an (N, {ndim}) "
            f"array, got {type(points).__name__}"
        )
    try:
        arr = np.asarray(points if points is not None else [], dtype=np.float64)
    except OverflowError:
        raise InvalidInputError(f"{name}: a coordinate is too large for any image") from None
    except (TypeError, ValueError) as exc:
        why = (
            "rows of different lengths"
            if "inhomogeneous" in str(exc) or "sequence" in str(exc)
            else str(exc).splitlines()[0]
        )
        raise InvalidInputError(
            f"{name} must be index tuples of {ndim} numbers (array order): {why}"
        ) from None
    if arr.size == 0:
        if allow_empty:
            return np.zeros((0, ndim), dtype=np.int64)
        raise InvalidInputError(f"{name} is empty; expected at least one point")
    if arr.ndim == 1 and arr.shape[0] == ndim:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] != ndim:
        raise InvalidInputError(
            f"{name} must be index tuples with {ndim} coordinates (array order), "
            f"got an array of shape {arr.shape}"
        )
    if not np.all(np.isfinite(arr)):
        raise InvalidInputError(f"{name} contains NaN or infinite coordinates")
    if np.any(np.abs(arr) > 2.0**53):
        bad = arr[np.argmax(np.any(np.abs(arr) > 2.0**53, axis=1))]
        raise InvalidInputError(
            f"{name}: point ({', '.join(f'{v:g}' for v in bad)}) lies outside any image"
        )
    return np.rint(arr).astype(np.int64)


def as_points(
    points, shape: Sequence[int], name: str = "points", allow_empty: bool = False
) -> np.ndarray:
    """Convert index tuples to an (N, ndim) int64 array, checking bounds.

    Parameters
    ----------
    points : sequence of index tuples in array order, or (N, ndim) array
    shape : spatial shape the points must lie in
    """
    idx = as_index_array(points, len(shape), name=name, allow_empty=allow_empty)
    if len(idx) == 0:
        return idx
    outside = np.any((idx < 0) | (idx >= np.asarray(shape)), axis=1)
    if np.any(outside):
        first = tuple(int(v) for v in idx[np.argmax(outside)])
        raise InvalidInputError(
            f"{name}: point {first} lies outside the image of shape {tuple(shape)}"
        )
    return idx


def channels_first(image, channel_axis: int | None) -> np.ndarray:
    """Validated image as a (C, *spatial) view, C >= 1, spatial 2D or 3D (no copy).

    ``channel_axis=None`` means a scalar image (a channel axis of length 1 is
    added); otherwise that axis holds the channels. Raises for a bad axis,
    wrong dimensions, non-numeric or NaN/inf values.
    """
    arr = np.asarray(image)
    if channel_axis is None:
        return check_spatial(arr, "image")[None]
    if isinstance(channel_axis, bool) or not isinstance(channel_axis, (int, np.integer)):
        raise InvalidInputError(f"channel_axis must be an int or None, got {channel_axis!r}")
    if arr.ndim not in (3, 4):
        raise InvalidInputError(
            f"a multi-channel image must have 3 or 4 dimensions (channel + 2D/3D), got shape "
            f"{arr.shape}"
        )
    if not -arr.ndim <= channel_axis < arr.ndim:
        raise InvalidInputError(
            f"channel_axis {channel_axis} is out of range for an image of shape {arr.shape}"
        )
    arr = np.moveaxis(arr, channel_axis, 0)
    if arr.shape[0] < 1:
        raise InvalidInputError(f"image has no channels (shape {arr.shape}, channels first)")
    check_spatial(arr.reshape((-1,) + arr.shape[2:]), "image")  # numeric + finite
    return arr
