"""The graph-cut CRF of MIDeepSeg (Eq. 8-11), solved exactly by max-flow (PyMaxflow).

`graph_cut` is the public entry; `_solve` (a whole grid) and `_solve_sparse` /
`_solve_in_band` (only the free voxels of a click-local round, `midseg.refine`) share its
energy. Intensities enter the pairwise term normalised to [0, 1] per channel
(`_normalise01`, `_window_normalise`). This module must not call the CNN.
"""

from __future__ import annotations

from itertools import product
from typing import Sequence

import numpy as np
from scipy import ndimage

from ._checks import (
    DEFAULT_LAM,
    DEFAULT_SIGMA,
    as_points,
    as_spacing,
    channels_first,
    check_lam_sigma,
    check_spatial,
    flat_axis_of_shape,
)
from .errors import InvalidInputError, MidsegError

__all__ = ["graph_cut", "PROB_EPS", "DEFAULT_CONNECTIVITY"]


#: Probabilities are clamped to [PROB_EPS, 1 - PROB_EPS] before the log of the unary term,
#: so a confident CNN costs at most -log(1e-6) ~ 13.8 per voxel instead of infinity.
PROB_EPS = 1e-6


#: Neighbourhood of the graph cut by spatial dimensionality, as a number of neighbours.
#: 3D uses 6: with 26 the graph has 13 instead of 3 edges per voxel and the cut of a
#: 64x96x96 crop takes about 4x longer, for the same Dice on the benchmark
#: (``benchmarks/refine.py``); 18 and 26 stay available per call.
DEFAULT_CONNECTIVITY = {2: 8, 3: 6}


_CONNECTIVITIES = {2: {4: 1, 8: 2}, 3: {6: 1, 18: 2, 26: 3}}


def _check_prob(prob, name="prob") -> np.ndarray:
    arr = check_spatial(prob, name)
    if arr.size and (arr.min() < 0 or arr.max() > 1):
        raise InvalidInputError(
            f"{name} must be a probability map with values in [0, 1], "
            f"got values in [{float(arr.min())}, {float(arr.max())}]"
        )
    return arr


# -- graph cut --------------------------------------------------------------------------
def _normalise01(channels: np.ndarray, *, like: np.ndarray | None = None) -> np.ndarray:
    """Min-max normalise each channel of a (C, ...) array to [0, 1], float32.

    The per-channel minimum and maximum are taken over `like` (a (C, ...) array with the
    same channels; default `channels` itself), and values outside that range are clipped.
    A constant channel becomes 0. The subtraction happens in float64 so that large values
    with small differences lose no precision; only the result is float32.
    """
    ref = channels if like is None else like
    flat = ref.reshape(ref.shape[0], -1)
    return _window_normalise(
        channels, np.stack([flat.min(axis=1), flat.max(axis=1)], axis=1).astype(np.float64)
    )


def _window_normalise(channels: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Map each channel of a (C, ...) array from its window (C, 2) to [0, 1], float32, clipped.

    A channel whose window is empty becomes 0. The subtraction happens in float64 so that
    large values with small differences lose no precision; only the result is float32.
    """
    shape = (-1,) + (1,) * (channels.ndim - 1)
    lo = window[:, 0].reshape(shape)
    span = (window[:, 1] - window[:, 0]).reshape(shape)
    scale = np.divide(1.0, span, out=np.zeros_like(span), where=span > 0)
    out = ((channels - lo) * scale).astype(np.float32)
    return np.clip(out, 0.0, 1.0, out=out)


BAND_WIDTH = 4


def _boundary_distance(sure: np.ndarray, free: np.ndarray, labels: np.ndarray):
    """Chessboard distance of the free voxels to the cut the labels alone would make.

    The labels are ``sure`` on the free voxels and `labels` on the others; a voxel
    touches the cut when a face neighbour has the other label. Computed on the box of
    the free voxels plus one voxel; returns that box's slices and the distances there
    (int32; large where no cut is near).
    """
    nz = np.argwhere(free)
    lo = np.maximum(nz.min(0) - 1, 0)
    hi = np.minimum(nz.max(0) + 2, free.shape)
    sub = tuple(slice(a, b) for a, b in zip(lo, hi))
    lab = np.where(free[sub], sure[sub], labels[sub] != 0)
    edge = np.zeros(lab.shape, dtype=bool)
    for ax in range(lab.ndim):
        a = [slice(None)] * lab.ndim
        b = [slice(None)] * lab.ndim
        a[ax], b[ax] = slice(1, None), slice(None, -1)
        diff = lab[tuple(a)] != lab[tuple(b)]
        edge[tuple(a)] |= diff
        edge[tuple(b)] |= diff
    if not edge.any():
        return sub, np.full(lab.shape, np.iinfo(np.int32).max, dtype=np.int32)
    return sub, ndimage.distance_transform_cdt(~edge, metric="chessboard").astype(np.int32)


def _solve_in_band(
    prob: np.ndarray, norm_image: np.ndarray, free: np.ndarray, labels: np.ndarray, **solve
) -> np.ndarray:
    """`_solve_sparse` on the free voxels near the cut of ``prob >= 0.5`` (a narrow band).

    The band holds the free voxels within `BAND_WIDTH` steps (chessboard) of the cut the
    labels ``prob >= 0.5`` (free voxels) and `labels` (fixed ones) make; the other free
    voxels keep ``prob >= 0.5``. When the solved cut reaches the band's outer shell (a
    voxel there takes the other label) the band may not hold the whole boundary: the
    width is doubled and the band solved again, up to 3 times, then everything free is
    solved. Where the cut stays inside the band the result is the full solve's; the band
    cannot do what the full CRF might far from that cut (remove a whole confident island),
    which is its limit.
    """
    sure = prob >= 0.5
    sub, dist = _boundary_distance(sure, free, labels)
    width = BAND_WIDTH
    for _ in range(3):
        band = np.zeros(free.shape, dtype=bool)
        band[sub] = free[sub] & (dist <= width)
        fixed_labels = labels.copy()
        rest = free & ~band
        fixed_labels[rest] = sure[rest]
        out = _solve_sparse(prob, norm_image, band, fixed_labels, **solve)
        shell = free[sub] & (dist == width)
        if not np.any(out[sub][shell] != sure[sub][shell]):
            return out
        width *= 2
    return _solve_sparse(prob, norm_image, free, labels, **solve)


def _solve_sparse(
    prob: np.ndarray,
    norm_image: np.ndarray,
    free: np.ndarray,
    labels: np.ndarray,
    *,
    lam: float,
    sigma: float,
    spacing: np.ndarray,
    connectivity: int | None,
) -> np.ndarray:
    """The CRF of `_solve` over the `free` voxels, the others fixed at `labels`.

    Same energy (Eq. 8-11: unary -log r, pairwise lam exp(-|dI|^2 / 2 sigma^2) / dist)
    as the grid graph with those voxels as hard constraints, but the graph holds only the
    free voxels: an edge to a fixed neighbour becomes terminal capacity (the cost of the
    free voxel taking the other label). Returns `labels` with the free voxels solved
    (a new uint8 array).
    """
    import maxflow  # PyMaxflow; imported here so `import midseg` stays light

    out = labels.astype(np.uint8, copy=True)
    flat = np.flatnonzero(free)
    n = flat.size
    if n == 0:
        return out
    shape = free.shape
    ids = np.full(free.size, -1, dtype=np.int64)
    ids[flat] = np.arange(n)
    coords = np.unravel_index(flat, shape)
    r = np.clip(prob.reshape(-1)[flat].astype(np.float64), PROB_EPS, 1.0 - PROB_EPS)
    cost_fg = -np.log(r)
    cost_bg = -np.log1p(-r)
    chans = norm_image.reshape(norm_image.shape[0], -1).astype(np.float32, copy=False)
    lab = labels.reshape(-1)
    unit = spacing / spacing.min()
    neg_inv = -1.0 / (2.0 * sigma * sigma)
    strides = np.asarray([int(np.prod(shape[k + 1 :])) for k in range(len(shape))])
    g = maxflow.GraphFloat(n, n * len(_offsets(shape, connectivity)))
    g.add_nodes(n)
    for off in _offsets(shape, connectivity):
        dist = float(np.sqrt(np.sum((np.asarray(off) * unit) ** 2)))
        step = int(np.dot(off, strides))
        for sign in (1, -1):  # the edge to the neighbour on each side of a free voxel
            ok = np.ones(n, dtype=bool)
            for ax, o in enumerate(off):
                c = coords[ax] + sign * o
                ok &= (c >= 0) & (c < shape[ax])
            v = flat[ok]
            w = v + sign * step
            d2 = np.sum((chans[:, v] - chans[:, w]) ** 2, axis=0, dtype=np.float64)
            wt = lam * np.exp(d2 * neg_inv) / dist
            if not np.all(np.isfinite(wt)):
                raise MidsegError(
                    f"the graph cut's pairwise weights are not finite "
                    f"(lam={lam!r}, sigma={sigma!r})"
                )
            iw = ids[w]
            both = iw >= 0
            if sign == 1:  # each free-free edge once
                g.add_edges(ids[v[both]], iw[both], wt[both], wt[both])
            fixed_w = ~both
            iv = ids[v[fixed_w]]
            fg_nb = lab[w[fixed_w]] != 0
            # a fixed foreground neighbour: cost when this voxel is background, and v.v.
            np.add.at(cost_bg, iv[fg_nb], wt[fixed_w][fg_nb])
            np.add.at(cost_fg, iv[~fg_nb], wt[fixed_w][~fg_nb])
    nodes = np.arange(n)
    g.add_grid_tedges(nodes, cost_fg, cost_bg)
    g.maxflow()
    out.reshape(-1)[flat] = g.get_grid_segments(nodes).astype(np.uint8)
    return out


def _offsets(shape: Sequence[int], connectivity: int | None) -> list[tuple[int, ...]]:
    """Half of the neighbourhood offsets (one per undirected edge direction) of a grid of
    spatial `shape`. The default connectivity is `DEFAULT_CONNECTIVITY`; for a volume one
    voxel thick it is 18, which holds the 8 in-plane neighbours a 2D image gets (the
    result equals the 2D one)."""
    ndim = len(shape)
    if connectivity is None:
        connectivity = 18 if flat_axis_of_shape(shape) is not None else DEFAULT_CONNECTIVITY[ndim]
    allowed = _CONNECTIVITIES[ndim]
    if connectivity not in allowed:
        raise InvalidInputError(
            f"connectivity for a {ndim}D image must be one of {sorted(allowed)} "
            f"(number of neighbours), got {connectivity!r}"
        )
    rank = allowed[connectivity]
    offsets = []
    for off in product((-1, 0, 1), repeat=ndim):
        nonzero = [o for o in off if o != 0]
        # keep one of each +/- pair: the first nonzero component is positive
        if nonzero and nonzero[0] > 0 and len(nonzero) <= rank:
            offsets.append(off)
    return offsets


def _pairwise_weights(
    norm_image: np.ndarray,
    spacing: np.ndarray,
    *,
    lam: float,
    sigma: float,
    connectivity: int | None,
):
    """Edge capacities of the CRF, one full-size array per neighbourhood offset.

    Returns a list of ``(offset, weights)`` where ``weights[i]`` is the capacity of the
    edge from voxel ``i`` to ``i + offset`` (0 where that neighbour is outside the grid):
    ``lam * exp(-|I_i - I_j|^2 / (2 sigma^2)) / dist_ij``, with ``dist_ij`` the physical
    length of the offset divided by the smallest spacing.
    """
    shape = norm_image.shape[1:]
    unit = spacing / spacing.min()
    img = norm_image.astype(np.float32, copy=False)
    neg_inv = np.float32(-1.0 / (2.0 * sigma * sigma))
    out = []
    for off in _offsets(shape, connectivity):
        src = tuple(slice(max(0, -o), n - max(0, o)) for o, n in zip(off, shape))
        dst = tuple(slice(s.start + o, s.stop + o) for s, o in zip(src, off))
        if img.shape[0] == 1:
            diff2 = img[0][src] - img[0][dst]
            diff2 *= diff2
        else:  # squared Euclidean norm of the channel-vector difference
            diff2 = np.sum((img[(slice(None),) + src] - img[(slice(None),) + dst]) ** 2, axis=0)
        dist = float(np.sqrt(np.sum((np.asarray(off) * unit) ** 2)))
        w = np.zeros(shape, dtype=np.float64)  # PyMaxflow's capacity type: no cast inside
        diff2 *= neg_inv
        w[src] = np.exp(diff2, out=diff2)
        w[src] *= lam / dist
        out.append((off, w))
    return out


def _same_voxel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) bool: point a[i] and point b[j] are the same voxel."""
    return (a[:, None, :] == b[None, :, :]).all(axis=2)


def _check_clicks(foreground, background, shape) -> tuple[np.ndarray, np.ndarray]:
    fg = as_points(foreground, shape, name="foreground clicks", allow_empty=True)
    bg = as_points(background, shape, name="background clicks", allow_empty=True)
    if len(fg) and len(bg):
        both = _same_voxel(fg, bg)
        if both.any():
            i = int(np.argwhere(both)[0, 0])
            raise InvalidInputError(
                f"voxel {tuple(int(v) for v in fg[i])} is both a foreground and a background "
                f"click; remove one of them"
            )
    return fg, bg


def _solve(
    prob: np.ndarray,
    norm_image: np.ndarray,
    fg: np.ndarray,
    bg: np.ndarray,
    *,
    lam: float,
    sigma: float,
    spacing: np.ndarray,
    connectivity: int | None,
) -> np.ndarray:
    """Max-flow on checked, normalised input: the shared core of `graph_cut` and `refine`."""
    import maxflow  # PyMaxflow; imported here so `import midseg` stays light

    r = np.clip(prob.astype(np.float64), PROB_EPS, 1.0 - PROB_EPS)
    cost_fg = -np.log(r)  # unary of y = 1 (Eq. 10)
    cost_bg = -np.log1p(-r)  # unary of y = 0 (float64: PyMaxflow's capacity type)
    edges = _pairwise_weights(norm_image, spacing, lam=lam, sigma=sigma, connectivity=connectivity)
    # Hard constraint: a terminal capacity above the largest possible gain of flipping one
    # voxel (both its unary costs plus every pairwise weight it touches, each <= lam/dist),
    # so flipping a violating voxel always lowers the energy and no optimum violates one.
    # A local bound keeps capacities small, where a global sum would lose precision.
    if not all(np.isfinite(w).all() for _, w in edges):  # a guard: max-flow never returns
        raise MidsegError(
            f"the graph cut's pairwise weights are not finite (lam={lam!r}, sigma={sigma!r})"
        )
    hard = 1.0 + 2.0 * -np.log(PROB_EPS) + sum(2.0 * float(w.max(initial=0.0)) for _, w in edges)
    if len(fg):
        idx = tuple(fg.T)
        cost_fg[idx], cost_bg[idx] = 0.0, hard
    if len(bg):
        idx = tuple(bg.T)
        cost_fg[idx], cost_bg[idx] = hard, 0.0

    # Pre-sizing the graph avoids reallocations (about 1.5x faster to build in 3D).
    g = maxflow.GraphFloat(prob.size, prob.size * len(edges))
    nodes = g.add_grid_nodes(prob.shape)
    centre = (1,) * prob.ndim
    for off, w in edges:
        structure = np.zeros((3,) * prob.ndim)
        structure[tuple(c + o for c, o in zip(centre, off))] = 1.0
        g.add_grid_edges(nodes, weights=w, structure=structure, symmetric=True)
    # A node left on the sink side has its source edge cut: the source capacity is the
    # cost of the sink label. get_grid_segments is True on the sink side = foreground.
    g.add_grid_tedges(nodes, cost_fg, cost_bg)
    g.maxflow()
    return g.get_grid_segments(nodes).astype(np.uint8)


def graph_cut(
    prob: np.ndarray,
    image: np.ndarray,
    *,
    foreground=(),
    background=(),
    lam: float = DEFAULT_LAM,
    sigma: float = DEFAULT_SIGMA,
    spacing: Sequence[float] | None = None,
    channel_axis: int | None = None,
    connectivity: int | None = None,
) -> np.ndarray:
    """Binary CRF of MIDeepSeg Eq. 8-11 solved exactly by max-flow (PyMaxflow).

    Minimises ``sum_i -(y_i log r_i + (1 - y_i) log(1 - r_i))
    + sum_(i,j) [y_i != y_j] lam exp(-|I_i - I_j|^2 / (2 sigma^2)) / dist_ij``
    subject to ``y_i = 1`` at foreground clicks and ``y_i = 0`` at background clicks.

    Parameters
    ----------
    prob : (Y, X) or (Z, Y, X) ndarray of float
        Foreground probability r (the fused R_f, or the CNN map for the naive
        baseline), values in [0, 1]. Clamped to [PROB_EPS, 1 - PROB_EPS]
        before the log. Not modified.
    image : ndarray
        The image on the same grid: ``prob.shape``, or channel-first
        ``(C, *prob.shape)`` with ``channel_axis=0``. Each channel is min-max
        normalised to [0, 1] over this array (see Notes).
    foreground, background : sequence of index tuples or (N, ndim) int array
        Clicks in array order; each is a hard constraint. A voxel may not be in both.
    lam : float, default 5.0
        Weight of the pairwise term (λ of Eq. 8), >= 0.
    sigma : float, default 0.1
        Intensity scale of the pairwise term (σ of Eq. 11), > 0, in normalised units.
    spacing : sequence of float, optional
        Voxel spacing in array order (default 1). ``dist_ij`` is the physical
        length of the neighbour offset divided by the smallest spacing, so λ
        keeps its meaning whatever the unit and an isotropic image gives 1,
        √2, √3.
    channel_axis : int, optional
        Axis of `image` holding channels (midseg uses 0), None for a scalar image.
    connectivity : int, optional
        Number of neighbours: 4 or 8 in 2D (default 8), 6, 18 or 26 in 3D
        (default 6, see `DEFAULT_CONNECTIVITY`; 18 for a volume one voxel thick, whose
        in-plane neighbours are then the 8 of its 2D image).

    Returns
    -------
    ndarray of uint8, shape of `prob`
        The minimum-energy labelling, 1 = foreground.

    Raises
    ------
    InvalidInputError
        `prob` outside [0, 1], image/prob shape mismatch, NaN values, a click
        outside the image or in both sets, bad λ, σ, connectivity or spacing.

    Notes
    -----
    *Normalisation.* The pairwise term compares intensities min-max normalised
    to [0, 1] over the given array (per channel), the normalisation σ = 0.1
    was chosen for; for several channels ``|I_i - I_j|^2`` is the squared
    Euclidean norm of the difference of the channel vectors. `refine` calls
    this on its crop, so the range is that of the crop, and uses the same
    normalised crop for its geodesic distances: one normalisation per stage.

    *Hard constraints* are terminal capacities larger than anything flipping
    one voxel can gain (both its unary costs plus all its pairwise weights),
    so every minimum-energy labelling satisfies them.

    The graph is built with PyMaxflow's grid API: one ``add_grid_edges`` call
    per neighbour offset with a full weight array, no loop over voxels.

    References
    ----------
    Luo et al., MIDeepSeg, Med. Image Anal. 2021, Eq. 8-11.
    Boykov and Jolly, ICCV 2001.
    """
    p = _check_prob(prob)
    chans = channels_first(image, channel_axis)
    if chans.shape[1:] != p.shape:
        raise InvalidInputError(
            f"image and prob must have the same spatial shape, got {chans.shape[1:]} and {p.shape}"
        )
    lam, sigma = check_lam_sigma(lam, sigma)
    sp = as_spacing(spacing, p.ndim)
    fg, bg = _check_clicks(foreground, background, p.shape)
    return _solve(
        p, _normalise01(chans), fg, bg, lam=lam, sigma=sigma, spacing=sp, connectivity=connectivity
    )
