"""Geodesic distance transforms of 2D/3D, scalar or multi-channel images from a seed set.

Lives here: `geodesic_distance` (backends: built-in numba raster scan, GeodisTK, FastGeodis),
`available_backends` and `load_kernels`. Must not need an optional backend to work, nor import torch.

Step costs
----------
Every backend approximates the minimal path cost by raster scanning (forward then backward pass,
repeated `iterations` times) over the 8-neighbourhood in 2D and the 26-neighbourhood in 3D. With
``L = ||(q - p) * spacing||`` the physical length of the step from voxel ``p`` to its neighbour
``q`` and ``g = ||I(q) - I(p)||`` the Euclidean norm of the intensity change over channels, a step
costs, by `cost`:

``"geodistk"`` (default; the built-in and the GeodisTK backends)::

    c(p, q) = L / ((1 - lamb) + lamb / (g + EPS))        EPS = 1e-5
            = L * (g + EPS) / ((1 - lamb) * (g + EPS) + lamb)

``"additive"`` (the built-in and the FastGeodis backends)::

    c(p, q) = (1 - lamb) * L + lamb * g

Both give ``L`` at ``lamb = 0``: a chamfer approximation of the Euclidean distance in physical
units, exact along axes and index diagonals, elsewhere at most 8.3 % (2D) or 12.8 % (3D) too long
for isotropic spacing, more for strongly anisotropic spacing. At ``lamb = 1`` they differ.

MIDeepSeg's Eq. 2 (Luo et al. 2021) is the path integral of ``|grad I . v|``, the total
variation of the intensity along the path; ``"additive"`` at ``lamb = 1`` is its literal
discretisation: a step costs its intensity change ``g`` whatever its length, so an intensity
edge costs its jump whichever axis or diagonal crosses it, and `spacing` acts on the spatial
term only. It is also the generalised geodesic distance of GeoS (Criminisi et al. 2008) as
FastGeodis computes it (``l_eucl * L + l_grad * g`` with ``l_grad = lamb``,
``l_eucl = 1 - lamb``, ``FastGeodis/fastgeodis_cpu.cpp``), except that FastGeodis takes the L1
norm over channels and, in 3D (and for anisotropic 2D, which runs through its 3D function), the
city-block step length ``sum_i |q_i - p_i| * spacing_i``: the two backends agree for scalar
images when ``lamb = 1`` or, in 2D, with unit spacing.

``"geodistk"`` is the cost of the authors' own library, GeodisTK (``cpp/geodesic_distance_2d.cpp``
/ ``_3d.cpp``, ``geodesic*_raster_scan``), which produced the paper's results and the EGD cues
the shipped stage-1 models were trained on, hence the default: ``L / speed`` with the speed
``(1 - lamb) + lamb / (g + EPS)``. At ``lamb = 1`` it *multiplies* step length and intensity
change, ``L * (g + EPS)`` (EPS a vanishing spatial term that breaks ties in flat regions): an
edge crossed along a 0.5 mm axis costs half of one crossed along a 1 mm axis, a diagonal
crossing sqrt(2) (sqrt(3)) times an axial one, and distances scale linearly with `spacing`.

Both costs define an undirected graph whose exact minimal path costs the raster scan reaches
after enough iterations (the tests compare it with Dijkstra's); `geodesic_distance` states the
accuracy after a given number of iterations.

Agreement with GeodisTK 0.1.7, measured as ``max|D_ours - D_gk| / max(D_gk)`` over the map.
2D: both scan the same causal neighbours in the same order with the same float32 cost, so they
are identical up to rounding (about 3e-7 after 2 iterations; the tests require < 1e-5).
3D: GeodisTK's forward pass reads 4 neighbours of the *next* slice instead of 4 of the previous
one (its ``dd_f`` table), so it needs many more iterations to converge: after 2 iterations its
distances are too long (by up to 20 % of the maximum at ``lamb = 0`` on a 64x96x96 volume), while
ours, with the causal half-neighbourhood, is exact for ``lamb = 0`` after one iteration. Both
converge to the same minimal-path distances: with enough iterations they agree to about 1e-7
(the tests require < 1e-5 after 20 iterations on a small volume).
"""

from __future__ import annotations

import importlib.util
import threading
from typing import Any, NamedTuple

import numpy as np
from numba import njit

from ._checks import SpacingLike, as_points, as_spacing, channels_first
from .crop import tight_slices
from ._geodesic_optional import _run_fastgeodis, _run_geodistk
from .errors import InvalidInputError

__all__ = ["geodesic_distance", "available_backends", "load_kernels", "BACKENDS", "COSTS", "EPS"]


def _jit(fn):
    """``numba.njit(nogil=True, error_model="numpy")``, compiled code cached on disk.

    Numba caches beside this file or in the user's cache folder (``NUMBA_CACHE_DIR``
    overrides both); where neither is writable (a read-only install, no home folder) the
    kernel is compiled in every process instead of failing.
    """
    global _CACHING
    try:
        return njit(cache=True, nogil=True, error_model="numpy")(fn)
    except RuntimeError:  # "cannot cache function ...: no locator available"
        _CACHING = False
        return njit(cache=False, nogil=True, error_model="numpy")(fn)


#: Whether numba caches the kernels on disk (False: no writable cache folder).
_CACHING = True


#: Names accepted by ``geodesic_distance(backend=...)``; "auto" is the built-in numba backend.
BACKENDS: tuple[str, ...] = ("auto", "numba", "geodistk", "fastgeodis")

#: Step costs accepted by ``geodesic_distance(cost=...)`` (see the module docstring), and the
#: backends that compute each.
COSTS: dict[str, tuple[str, ...]] = {
    "geodistk": ("numba", "geodistk"),
    "additive": ("numba", "fastgeodis"),
}

#: Added to the intensity change of every step of the "geodistk" cost (GeodisTK's constant):
#: keeps its ``lamb = 1`` steps in flat regions strictly positive. The additive cost has none.
EPS: float = 1e-5

_OPTIONAL_MODULES = {"geodistk": "GeodisTK", "fastgeodis": "FastGeodis"}


def available_backends() -> list[str]:
    """Names of the backends usable here, the built-in one first.

    Returns
    -------
    list of str
        Always starts with ``"numba"`` (built-in); ``"geodistk"`` and ``"fastgeodis"`` follow
        when their packages are importable. Nothing is imported to find out.
    """
    names = ["numba"]
    for name, module in _OPTIONAL_MODULES.items():
        if importlib.util.find_spec(module) is not None:
            names.append(name)
    return names


# ----------------------------------------------------------------------------- input checks


def _check_image(image, channel_axis: int | None) -> np.ndarray:
    """Image as a C-contiguous float32 (C, *spatial) array, C >= 1, spatial 2D or 3D."""
    return np.ascontiguousarray(channels_first(image, channel_axis), dtype=np.float32)


def _check_seeds(seeds, shape: tuple[int, ...]) -> np.ndarray:
    """Seeds (bool mask or index points) as a bool mask of `shape` with at least one voxel."""
    if seeds is None:
        raise InvalidInputError("seeds is None; expected a bool mask or (N, ndim) index points")
    arr = np.asarray(seeds)
    if arr.dtype == bool:
        if arr.shape != shape:
            raise InvalidInputError(
                f"seeds mask must have the image's spatial shape {shape}, got {arr.shape}"
            )
        mask = arr.copy()
    else:
        try:
            pts = as_points(arr, shape, name="seeds")
        except InvalidInputError as err:
            if arr.shape == shape:
                raise InvalidInputError(
                    f"{err}; a seed mask of shape {shape} must have dtype bool, got {arr.dtype}"
                ) from None
            raise
        mask = np.zeros(shape, dtype=bool)
        mask[tuple(pts.T)] = True
    if not mask.any():
        raise InvalidInputError("seeds is empty; expected at least one seed voxel")
    return mask


def _check_roi(roi, shape: tuple[int, ...], seeds: np.ndarray) -> np.ndarray | None:
    if roi is None:
        return None
    arr = np.asarray(roi)
    if arr.dtype != bool:
        raise InvalidInputError(f"roi must be a bool mask, got dtype {arr.dtype}")
    if arr.shape != shape:
        raise InvalidInputError(f"roi must have the image's spatial shape {shape}, got {arr.shape}")
    if not np.any(arr & seeds):
        raise InvalidInputError(
            f"roi contains none of the {int(seeds.sum())} seed voxels; every distance would be "
            f"infinite"
        )
    return arr


def _check_lamb(lamb) -> float:
    try:
        value = float(lamb)
    except (TypeError, ValueError):
        raise InvalidInputError(f"lamb must be a number in [0, 1], got {lamb!r}") from None
    if not 0.0 <= value <= 1.0:  # also rejects NaN
        raise InvalidInputError(f"lamb must be in [0, 1], got {lamb!r}")
    return value


def _check_iterations(iterations) -> int:
    if (
        isinstance(iterations, bool)
        or not isinstance(iterations, (int, np.integer))
        or iterations < 1
    ):
        raise InvalidInputError(
            f"iterations must be a positive int (forward + backward passes), got {iterations!r}"
        )
    return int(iterations)


def _check_cost(cost) -> str:
    if not isinstance(cost, str) or cost not in COSTS:
        raise InvalidInputError(f"cost must be one of {', '.join(map(repr, COSTS))}, got {cost!r}")
    return cost


def _check_backend(backend, cost: str) -> str:
    if backend not in BACKENDS:
        raise InvalidInputError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    name = "numba" if backend == "auto" else backend
    if name not in COSTS[cost]:
        raise InvalidInputError(
            f"backend {name!r} cannot compute cost={cost!r}; backends for it: "
            f"{', '.join(COSTS[cost])}"
        )
    if name != "numba" and name not in available_backends():  # the built-in one always is
        raise InvalidInputError(
            f"backend {name!r} is not available: the package {_OPTIONAL_MODULES[name]} is not "
            f"installed; available backends: {', '.join(available_backends())}"
        )
    return name


# ----------------------------------------------------------------------------- public API


def geodesic_distance(
    image,
    seeds,
    *,
    spacing: SpacingLike | None = None,
    lamb: float = 1.0,
    iterations: int = 2,
    roi=None,
    channel_axis: int | None = None,
    backend: str = "auto",
    cost: str = "geodistk",
) -> np.ndarray:
    """Generalised geodesic distance from a seed set, by raster scanning.

    Parameters
    ----------
    image : (Y, X) or (Z, Y, X) ndarray, or channel-first (C, Y, X) / (C, Z, Y, X)
        Numeric, finite. Multi-channel images need `channel_axis` (normally 0); the
        intensity change of a step is then the Euclidean norm over channels. Intensities
        are used as given: normalise them first (the distance scales with them at ``lamb > 0``).
    seeds : (Y, X) / (Z, Y, X) bool ndarray, or (N, ndim) int array / sequence of index tuples
        A mask of seed voxels, or voxel indices in array order. At least one seed.
    spacing : sequence of float, optional
        Voxel size in array order (default 1 per axis), e.g. in mm; step lengths are physical.
    lamb : float
        Blend in [0, 1] of the geodesic (1, MIDeepSeg Eq. 2) and Euclidean (0) terms of the
        step cost.
    iterations : int
        Number of forward + backward raster-scan pairs (2 is GeodisTK's and MIDeepSeg's
        choice). More iterations shorten the distances whose minimal paths change direction
        several times, common in textured images; distances never grow with more iterations
        and converge to the exact minimal path cost. See Notes for the accuracy.
    roi : bool ndarray of the spatial shape, optional
        Region of interest (Hallitschke et al. 2023): only voxels inside it are computed
        (on the bounding box of the roi, for speed); distances outside are ``inf``. With the
        built-in backend, paths stay inside the roi; the GeodisTK and FastGeodis backends
        compute on the roi's bounding box and mask afterwards, so their paths may cross
        box voxels outside the roi. Seeds outside the roi are ignored; the roi must contain
        at least one seed. Voxels of the roi that no path inside it reaches stay ``inf``.
    channel_axis : int, optional
        Axis of `image` holding channels; None for a scalar image.
    backend : {"auto", "numba", "geodistk", "fastgeodis"}
        "auto" is the built-in numba backend; the others need their package
        (`available_backends`) and compute one cost each: "geodistk" the GeodisTK cost,
        "fastgeodis" (FastGeodis' variant of) the additive one.
    cost : {"geodistk", "additive"}
        Step cost from a voxel ``p`` to its neighbour ``q``, with ``L`` the physical step
        length (the only place `spacing` enters) and ``g = ||I(q) - I(p)||``:

        - "geodistk" (default): ``L / ((1 - lamb) + lamb / (g + EPS))``, GeodisTK's cost,
          with which the shipped stage-1 models' EGD cues were computed.
        - "additive": ``(1 - lamb) * L + lamb * g``. At ``lamb = 1`` the total intensity
          variation along the path, MIDeepSeg's Eq. 2: an intensity edge costs its jump
          whichever axis or diagonal crosses it, whatever the spacing.

    Returns
    -------
    (Y, X) or (Z, Y, X) ndarray of float32
        Distance to the nearest seed, in intensity units at ``lamb = 1`` ("additive") or
        intensity x length units ("geodistk"), in `spacing` units at ``lamb = 0``; 0 at the
        seeds, ``inf`` outside `roi`.

    Raises
    ------
    InvalidInputError
        Non-numeric, NaN/inf or wrongly shaped image; seeds empty, outside the image or of
        the wrong shape; spacing, lamb or iterations invalid; roi not a bool mask of the
        spatial shape or without a seed; unknown or unavailable backend; unknown cost, or a
        backend that cannot compute it (GeodisTK: "additive"; FastGeodis: "geodistk").

    Notes
    -----
    Both costs are defined on the 8- (2D) / 26-neighbourhood (3D) graph, undirected; the
    module docstring gives their sources. The raster scan relaxes every voxel from its
    causal half-neighbourhood, forward then backward; it reaches the graph's exact minimal
    path costs (Dijkstra's) after enough iterations (the tests check this to 1e-4), and until
    then overestimates those whose paths turn back against the scan. Accuracy, as
    ``max(D_scan - D_exact) / max(D_exact)`` over the map, worst of 3 draws of 5 seeds in a
    tumour, on a BraTS T1c slice (200x200) / volume crop (64x96x96) smoothed and divided by
    its SD, ``lamb = 1``, "additive" cost (``python benchmarks/geodesic.py --accuracy``):

    ==========  ===========  ===========
    iterations  2D           3D
    ==========  ===========  ===========
    2           26 %         24 %
    6           8.2 %        7.6 %
    8           3.3 %        5.6 %
    10          1.3 %        3.9 %
    15          exact        1.3 %
    20          exact        0.4 %
    25          exact        exact
    ==========  ===========  ===========

    "exact": below 1e-6. The "geodistk" cost converges a little more slowly. Each iteration
    takes about 0.17 ms of one CPU core on the 2D and 3.7 ms on the 3D image.

    The numba kernel compiles once per installation into numba's disk cache (2-3 s of
    CPU). Where a process's first call finds that cache cold and its job small, another
    process compiles it while this one scans in NumPy, bit for bit the kernel's result
    (`_kernels_ready`); `load_kernels` compiles or loads it here and now instead.

    References
    ----------
    .. [1] Luo X. et al., "MIDeepSeg: Minimally interactive segmentation of unseen objects
       from medical images using deep learning", Medical Image Analysis 72, 2021 (Eq. 2).
    .. [2] Wang G. et al., GeodisTK, https://github.com/taigw/GeodisTK (raster scan and the
       "geodistk" cost).
    .. [3] Criminisi A., Sharp T., Blake A., "GeoS: Geodesic image segmentation", ECCV 2008;
       Asad M. et al., FastGeodis, https://github.com/masadcv/FastGeodis (the additive cost).

    Examples
    --------
    >>> img = np.zeros((5, 5), np.float32); img[:, 3:] = 10.0
    >>> d = geodesic_distance(img, [(2, 0)])
    >>> bool(d[2, 2] < 1e-3 < 10.0 <= d[2, 3])
    True
    >>> d = geodesic_distance(img, [(2, 0)], spacing=(1.0, 0.5), cost="additive")
    >>> float(d[2, 2]), float(d[2, 3]), float(d[0, 4])
    (0.0, 10.0, 10.0)
    """
    chans = _check_image(image, channel_axis)
    shape = chans.shape[1:]
    sp = as_spacing(spacing, len(shape))
    seed_mask = _check_seeds(seeds, shape)
    roi_mask = _check_roi(roi, shape, seed_mask)
    lam = _check_lamb(lamb)
    iters = _check_iterations(iterations)
    cost = _check_cost(cost)
    name = _check_backend(backend, cost)

    if roi_mask is None:
        return _RUNNERS[name](chans, seed_mask, None, sp, lam, iters, cost)
    box = tight_slices(roi_mask)
    sub = _RUNNERS[name](
        np.ascontiguousarray(chans[(slice(None),) + box]),
        seed_mask[box] & roi_mask[box],
        roi_mask[box],
        sp,
        lam,
        iters,
        cost,
    )
    out = np.full(shape, np.inf, dtype=np.float32)
    out[box] = np.where(roi_mask[box], sub, np.float32(np.inf))
    return out


# ----------------------------------------------------------------------------- built-in backend


@_jit
def _edge_costs(img, a, b, n, step, lamb, eps, additive, out):  # pragma: no cover
    """out[w] = cost of the step between flat voxels a + w and b + w, for w < n.

    `step` is the step's spatial term: L for the GeodisTK cost, (1 - lamb) * L for the
    additive one (which is called with eps = 0). Slices keep the loop indices non-negative so
    that LLVM vectorises the loops.
    """
    if lamb == 0.0:
        for w in range(n):
            out[w] = step
        return
    ia = img[0, a : a + n]
    ib = img[0, b : b + n]
    if img.shape[0] == 1:
        for w in range(n):
            out[w] = abs(ia[w] - ib[w]) + eps
    else:
        for w in range(n):
            diff = ia[w] - ib[w]
            out[w] = diff * diff
        for ch in range(1, img.shape[0]):
            ia = img[ch, a : a + n]
            ib = img[ch, b : b + n]
            for w in range(n):
                diff = ia[w] - ib[w]
                out[w] += diff * diff
        for w in range(n):
            out[w] = np.sqrt(out[w]) + eps
    if additive:
        for w in range(n):
            out[w] = step + lamb * out[w]
    elif lamb == 1.0:
        for w in range(n):
            out[w] = step * out[w]
    else:
        rest = np.float32(1.0) - lamb
        for w in range(n):
            out[w] = step * out[w] / (rest * out[w] + lamb)


@_jit
def _relax3(img, dist, a, b, n, s0, s1, s2, lamb, eps, additive, buf):  # pragma: no cover
    """dist[a + w] = min(dist[a + w], min_k dist[b + k - 1 + w] + cost) for k = 0, 1, 2, w < n.

    Three neighbours one row (or plane) away, shifted by -1, 0, +1 along x; s0, s1, s2 are
    their steps' spatial terms (see `_edge_costs`). [a, a + n) never overlaps [b - 1, b + n + 1).
    """
    da = dist[a : a + n]
    db = dist[b - 1 : b + n + 1]
    if lamb == 0.0:
        for w in range(n):
            v = min(min(db[w] + s0, db[w + 1] + s1), db[w + 2] + s2)
            da[w] = v if v < da[w] else da[w]
    elif additive and img.shape[0] == 1:
        ia = img[0, a : a + n]
        ib = img[0, b - 1 : b + n + 1]
        for w in range(n):
            x = ia[w]
            v = min(
                min(
                    db[w] + (s0 + lamb * abs(x - ib[w])),
                    db[w + 1] + (s1 + lamb * abs(x - ib[w + 1])),
                ),
                db[w + 2] + (s2 + lamb * abs(x - ib[w + 2])),
            )
            da[w] = v if v < da[w] else da[w]
    elif lamb == 1.0 and img.shape[0] == 1:  # scalar image: fused loops, for speed
        ia = img[0, a : a + n]
        ib = img[0, b - 1 : b + n + 1]
        for w in range(n):
            x = ia[w]
            v = min(
                min(
                    db[w] + s0 * (abs(x - ib[w]) + eps), db[w + 1] + s1 * (abs(x - ib[w + 1]) + eps)
                ),
                db[w + 2] + s2 * (abs(x - ib[w + 2]) + eps),
            )
            da[w] = v if v < da[w] else da[w]
    elif img.shape[0] == 1:
        ia = img[0, a : a + n]
        ib = img[0, b - 1 : b + n + 1]
        rest = np.float32(1.0) - lamb
        for w in range(n):
            x = ia[w]
            g0 = abs(x - ib[w]) + eps
            g1 = abs(x - ib[w + 1]) + eps
            g2 = abs(x - ib[w + 2]) + eps
            v = min(
                min(db[w] + s0 * g0 / (rest * g0 + lamb), db[w + 1] + s1 * g1 / (rest * g1 + lamb)),
                db[w + 2] + s2 * g2 / (rest * g2 + lamb),
            )
            da[w] = v if v < da[w] else da[w]
    else:
        c0 = buf[0]
        c1 = buf[1]
        c2 = buf[2]
        _edge_costs(img, a, b - 1, n, s0, lamb, eps, additive, c0)
        _edge_costs(img, a, b, n, s1, lamb, eps, additive, c1)
        _edge_costs(img, a, b + 1, n, s2, lamb, eps, additive, c2)
        for w in range(n):
            v = min(min(db[w] + c0[w], db[w + 1] + c1[w]), db[w + 2] + c2[w])
            da[w] = v if v < da[w] else da[w]


# numba inlines it into `_raster_scan` before typing: it has no compile (nor cache) of its own,
# which would add about 0.4 s to the kernel's 3 s
@njit(inline="always", nogil=True, error_model="numpy")
def _relax_plane(
    img, dist, dom, masked, a, b, n_y, n_x, sy, span, steps, lamb, eps, additive, buf
):  # pragma: no cover
    """Relax the plane starting at flat voxel `a` from its 9 neighbours in the plane at `b`.

    One `_relax3` per row offset dy in {-1, 0, 1} over the plane's whole interior `span`
    at once (those neighbours are final when the plane starts, see `_raster_scan`); the
    padding voxels inside the span (outside `dom` where `masked`) are set back to inf.
    """
    inf = np.float32(np.inf)
    for dy in range(-1, 2):
        s = steps[1, abs(dy)]
        _relax3(img, dist, a, b + dy * sy, span, s[1], s[0], s[1], lamb, eps, additive, buf)
    # the padding columns inside the span took values: make them inf again
    if masked:
        for w in range(span):
            if dom[a + w] == 0:
                dist[a + w] = inf
    else:
        for y in range(n_y - 1):
            dist[a + y * sy + n_x] = inf
            dist[a + y * sy + n_x + 1] = inf


@_jit
def _raster_scan(
    img, dist, dom, masked, n_z, n_y, n_x, start, sz, sy, steps, lamb, iterations, eps, additive
):  # pragma: no cover
    """Forward + backward raster scans, `iterations` times, in place on the flat padded `dist`.

    Stops early when a forward + backward pair changes no distance (the fixed point: the
    result is the same as with all `iterations`).

    Equivalent to the voxel-by-voxel raster scan (same result), reorganised for SIMD: when a
    plane (3D) starts, its 9 neighbours in the previous plane are final, so their minimum is
    taken over the whole plane at once; when a row starts, likewise for its 3 neighbours in
    the previous row; only the neighbour in the same row is swept voxel by voxel.
    `steps[dz, dy, dx]` is the spatial term of a step by (dz, dy, dx) in {0, 1}^3: its physical
    length L, times (1 - lamb) for the additive cost.
    """
    inf = np.float32(np.inf)
    span = (n_y - 1) * sy + n_x  # first to last interior voxel of a plane
    buf = np.empty((3, span), np.float32)
    c = np.empty(n_x, np.float32)
    step_x = steps[0, 0, 1]
    before = np.empty_like(dist)
    for _ in range(iterations):
        # an explicit loop: ``before[:] = dist`` makes numba compile its shape-mismatch
        # error path, about half of this kernel's compile time (2 s of 4)
        for k in range(dist.size):
            before[k] = dist[k]
        for sweep in range(2):
            sign = 1 if sweep == 0 else -1
            for zi in range(n_z):
                z = zi if sweep == 0 else n_z - 1 - zi
                a = start + z * sz
                if n_z > 1:
                    b = a - sign * sz  # the plane before, in the sweep's direction
                    _relax_plane(img, dist, dom, masked, a, b, n_y, n_x, sy, span, steps,
                                 lamb, eps, additive, buf)  # fmt: skip
                s = steps[0, 1]
                for yi in range(n_y):
                    y = yi if sweep == 0 else n_y - 1 - yi
                    r = a + y * sy
                    _relax3(
                        img, dist, r, r - sign * sy, n_x, s[1], s[0], s[1], lamb, eps, additive, buf
                    )
                    row = dist[r : r + n_x]
                    # c[w]: the step between x = w + 1 and x = w
                    _edge_costs(img, r + 1, r, n_x - 1, step_x, lamb, eps, additive, c)
                    if masked:
                        dm = dom[r : r + n_x]
                        for w in range(n_x):
                            row[w] = row[w] if dm[w] != 0 else inf
                        if sweep == 0:
                            for w in range(1, n_x):
                                v = row[w - 1] + c[w - 1]
                                if v < row[w] and dm[w] != 0:
                                    row[w] = v
                        else:
                            for w in range(n_x - 2, -1, -1):
                                v = row[w + 1] + c[w]
                                if v < row[w] and dm[w] != 0:
                                    row[w] = v
                    elif sweep == 0:
                        prev = row[0]
                        for w in range(1, n_x):
                            v = prev + c[w - 1]
                            cur = row[w]
                            prev = v if v < cur else cur
                            row[w] = prev
                    else:
                        prev = row[n_x - 1]
                        for w in range(n_x - 2, -1, -1):
                            v = prev + c[w]
                            cur = row[w]
                            prev = v if v < cur else cur
                            row[w] = prev
        # a pass pair that changed nothing reached the fixed point: more cannot change it
        same = True
        for k in range(dist.size):
            if dist[k] != before[k]:
                same = False
                break
        if same:
            break


def _run_numba(
    chans: np.ndarray,
    seeds: np.ndarray,
    domain: np.ndarray | None,
    spacing: np.ndarray,
    lamb: float,
    iterations: int,
    cost: str,
) -> np.ndarray:
    """Built-in backend: pad by one voxel (an inf border, never updated) and scan.

    2D runs as a single plane (no padding along z). The numba kernel scans; while it
    compiles in another process (`_kernels_ready`), small jobs (`_NUMPY_MAX_WORK`) are
    scanned by its NumPy twin (`_scan_numpy`: the same distances, bit for bit), which hands
    the remaining iterations over to the kernel once it is ready.
    """
    scan, shape, inner = _padded(chans, seeds, domain, spacing, lamb, cost)
    voxels = int(np.count_nonzero(scan.dom)) if scan.masked else seeds.size
    small = voxels <= _NUMPY_MAX_VOXELS and voxels * iterations <= _NUMPY_MAX_WORK
    if not _kernels_ready(scan, small):
        iterations -= _scan_numpy(scan, iterations, stop=_compiled)
    if iterations > 0:
        _raster_scan(*scan[:12], iterations, *scan[12:])
    out = scan.dist.reshape(shape)[inner]
    return np.ascontiguousarray(out[0] if seeds.ndim == 2 else out)


class _Scan(NamedTuple):
    """`_raster_scan`'s arguments but `iterations` (which goes between `lamb` and `eps`)."""

    img: np.ndarray
    dist: np.ndarray
    dom: np.ndarray
    masked: bool
    n_z: int
    n_y: int
    n_x: int
    start: int
    sz: int
    sy: int
    steps: np.ndarray
    lamb: np.float32
    eps: np.float32
    additive: bool


def _padded(chans, seeds, domain, spacing, lamb, cost):
    """(`_Scan` of the padded flat arrays, padded shape, slices of the image in it)."""
    n_ch = chans.shape[0]
    if seeds.ndim == 2:
        sp3 = np.array([1.0, spacing[0], spacing[1]])
        chans, seeds = chans[:, None], seeds[None]
        domain = None if domain is None else domain[None]
        pad = [(0, 0), (1, 1), (1, 1)]
    else:
        sp3 = np.asarray(spacing, dtype=np.float64)
        pad = [(1, 1)] * 3
    n_z, n_y, n_x = seeds.shape
    padded = tuple(s + a + b for s, (a, b) in zip(seeds.shape, pad))
    inner = tuple(slice(a, a + s) for s, (a, _) in zip(seeds.shape, pad))
    strides = (padded[1] * padded[2], padded[2], 1)

    dist = np.full(padded, np.inf, dtype=np.float32)
    dist[inner][seeds] = 0.0
    img = np.zeros((n_ch,) + padded, dtype=np.float32)
    img[(slice(None),) + inner] = chans
    if domain is None:
        dom = np.zeros(1, dtype=np.uint8)  # unused
    else:
        dom = np.zeros(padded, dtype=np.uint8)
        dom[inner] = domain
    # steps[dz, dy, dx]: physical length of a step by (dz, dy, dx), each 0 or 1 voxel
    steps = np.sqrt(((np.indices((2, 2, 2)) * sp3[:, None, None, None]) ** 2).sum(axis=0))
    additive = cost == "additive"
    if additive:  # the spatial term of the additive cost
        steps = (1.0 - lamb) * steps
    scan = _Scan(
        img.reshape(n_ch, -1),
        dist.reshape(-1),
        dom.reshape(-1),
        domain is not None,
        n_z,
        n_y,
        n_x,
        int(np.dot([a for a, _ in pad], strides)),
        strides[0],
        strides[1],
        steps.astype(np.float32),
        np.float32(lamb),
        np.float32(0.0 if additive else EPS),
        additive,
    )
    return scan, padded, inner


# ------------------------------------------------ the kernel's NumPy twin, while it compiles

#: Largest job scanned in NumPy while the kernel compiles elsewhere: voxels (in the roi),
#: and voxels x iterations. NumPy is 15-20x slower than the kernel (3D stage-1 cue,
#: 64x96x96, 2 iterations: 0.23 s against 0.012 s; 69x75x52, 10 iterations: 0.40 s
#: against 0.026 s) and keeps 26 step costs per voxel (104 bytes): larger jobs wait for
#: the compiled kernel.
_NUMPY_MAX_VOXELS = 1_000_000
_NUMPY_MAX_WORK = 6_000_000


def _step_costs(ia, ib, step, lamb, eps, additive) -> np.ndarray:
    """Costs of the steps between the voxels of `ia` and `ib` ((C, N) intensities) as
    `_edge_costs` and `_relax3` compute them: the same float32 operations in the same
    order."""
    if lamb == 0.0:
        return np.full(ia.shape[1], step, np.float32)
    diff = ia[0] - ib[0]
    if ia.shape[0] == 1:
        g = np.abs(diff) + eps
    else:
        acc = diff * diff
        for ch in range(1, ia.shape[0]):
            diff = ia[ch] - ib[ch]
            acc += diff * diff
        g = np.sqrt(acc) + eps
    if additive:
        return step + lamb * g
    if lamb == 1.0:
        return step * g
    return step * g / ((np.float32(1.0) - lamb) * g + lamb)


def _scan_numpy(scan: _Scan, iterations: int, stop=None) -> int:
    """`_raster_scan` in NumPy, bit for bit, in place; returns the iterations it stands for.

    In a forward pass a voxel takes the minimum of its distance and, over its 13 (3D) or
    4 (2D) neighbours passed before it, their distance plus the step's cost, final by
    then. The raster scan visits the voxels one by one; here all voxels with the same
    ``x + 2y + 4z`` go at once, since each of those neighbours has a smaller one (the
    backward pass mirrors it). Every candidate is the kernel's float32 sum and minima are
    exact: the distances are the kernel's. Stops, like the kernel, at the fixed point
    (returning `iterations`), or when `stop()` says so after a forward + backward pair
    (the kernel then does the rest).
    """
    img, dist, dom, steps = scan.img, scan.dist, scan.dom, scan.steps
    n_z, n_y, n_x, sz, sy = scan.n_z, scan.n_y, scan.n_x, scan.sz, scan.sy
    zz, yy, xx = np.meshgrid(np.arange(n_z), np.arange(n_y), np.arange(n_x), indexing="ij")
    flat = (scan.start + zz * sz + yy * sy + xx).reshape(-1)
    rank = (xx + 2 * yy + 4 * zz).reshape(-1)
    if scan.masked:
        keep = dom[flat] != 0
        flat, rank = flat[keep], rank[keep]
    order = np.argsort(rank, kind="stable")
    idx, rank = flat[order], rank[order]
    cuts = np.concatenate(([0], np.flatnonzero(np.diff(rank)) + 1, [rank.size]))
    groups = list(zip(cuts[:-1].tolist(), cuts[1:].tolist()))
    # the neighbours passed before a voxel in a forward pass, and their step lengths
    nbrs = [
        (-sz + dy * sy + dx, steps[1, abs(dy), abs(dx)]) for dy in (-1, 0, 1) for dx in (-1, 0, 1)
    ]
    nbrs = (nbrs if n_z > 1 else []) + [(-sy + dx, steps[0, 1, abs(dx)]) for dx in (-1, 0, 1)]
    nbrs.append((-1, steps[0, 0, 1]))
    # step costs on the image's flat span (slices), then in the passes' voxel order
    lo_, hi_ = int(flat.min()), int(flat.max()) + 1
    passes = []
    for sign in (1, -1):  # forward, backward
        offs = np.array([sign * o for o, _ in nbrs], dtype=np.int64)
        costs = np.empty((offs.size, idx.size), np.float32)
        for k, (o, (_, ln)) in enumerate(zip(offs.tolist(), nbrs)):
            span = _step_costs(
                img[:, lo_:hi_], img[:, lo_ + o : hi_ + o], ln, scan.lamb, scan.eps, scan.additive
            )
            costs[k] = span[idx - lo_]
        passes.append((offs[:, None], costs, groups if sign == 1 else groups[::-1]))
    for done in range(1, iterations + 1):
        before = dist.copy()
        for offs, costs, order_ in passes:
            for lo, hi in order_:
                ids = idx[lo:hi]
                best = (dist[offs + ids] + costs[:, lo:hi]).min(axis=0)
                dist[ids] = np.minimum(dist[ids], best)
        if np.array_equal(dist, before):
            return iterations  # the fixed point: more passes change nothing
        if stop is not None and stop():
            return done
    return iterations


# --------------------------------------------------------- compiling in another process


class _Kernels:
    """Whether `_raster_scan` is ready in this process, or the process compiling it."""

    ready = False
    process: Any = None
    lock = threading.Lock()


def _compiled() -> bool:
    """True when the process compiling the kernel has ended (and cached it, if it could)."""
    return _Kernels.process is None or _Kernels.process.poll() is not None


def _kernels_ready(scan: _Scan, small: bool) -> bool:
    """Whether to run `_raster_scan` now (False: scan this `small` job in NumPy).

    True where it has run here, where numba's cache holds it (it loads in a fraction of a
    second), where caching is off (`_jit`: a read-only install; it compiles here), and for
    a large first job (it compiles here, 2-3 s). For a small first job with a cold cache,
    a new Python process compiles it into the cache (`_start_compile_process`, on another
    core) and this is False for small jobs until that process has ended; a large job
    waits for it (then loads the kernel, or compiles it where it was not cached).
    """
    if _Kernels.ready:
        return True
    with _Kernels.lock:
        if _Kernels.process is None:
            if not small or not _CACHING or _in_cache(scan):
                _Kernels.ready = True
                return True
            _Kernels.process = _start_compile_process()
            if _Kernels.process is None:
                _Kernels.ready = True
                return True
            return False
        if not small:
            _Kernels.process.wait()
        if _Kernels.process.poll() is None:
            return False
        _Kernels.ready = True
        return True


def _in_cache(scan: _Scan) -> bool:
    """Whether numba's cache holds `_raster_scan` for these argument types, loading
    nothing; True where numba's internals do not say (then it compiles here, as before)."""
    try:
        from numba import typeof

        types = [typeof(a) for a in scan]
        sig = tuple(types[:12] + [typeof(2)] + types[12:])
        if _raster_scan.overloads.get(sig) is not None:
            return True
        cache = _raster_scan._cache
        return cache.load_overload(sig, _raster_scan.targetctx) is not None
    except Exception:  # a private API: behave as before
        return True


def _start_compile_process():
    """A new Python process compiling the kernel into numba's cache (None: cannot start).

    It imports this very file, whose path names the cache entry, and outlives this
    process if need be, so the next one finds the kernel cached.
    """
    import subprocess
    import sys
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[1])
    code = (
        f"import os, sys; sys.path.insert(0, {root!r}); "
        "hasattr(os, 'nice') and os.nice(10); "  # in the background: after the user's work
        "from midseg.geodesic import load_kernels; load_kernels()"
    )
    try:
        return subprocess.Popen(
            [sys.executable, "-c", code],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    except OSError:
        return None


def load_kernels() -> None:
    """Load the numba kernel from numba's cache, or compile it, in this process, now.

    For a process about to fork workers or a thread warming up a GUI session: the
    geodesic distances after it run compiled at once, never in NumPy meanwhile.
    """
    with _Kernels.lock:
        _Kernels.ready = True
    geodesic_distance(np.zeros((4, 4), np.float32), [(1, 1)])


_RUNNERS = {"numba": _run_numba, "geodistk": _run_geodistk, "fastgeodis": _run_fastgeodis}
