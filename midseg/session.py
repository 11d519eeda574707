"""The interactive session: one image, its margin points, click rounds and history.

`Session` is what the GUI, the CLI and users drive: `segment(points)` runs
stage 1 (CNN), `refine(foreground, background)` adds a click round (stage 2,
no CNN pass), `undo()`/`redo()` walk the history, `save_clicks()` /
`Session.from_clicks()` store and replay it exactly (the clicks-file format itself:
`midseg.clicks`). It must not import Qt.

The history (states, undo, redo and the views of the current state) is `Session`'s
base `midseg._history._History`; the checks of parameters, model and image and the
warnings of stage 1 are in `midseg._session_checks`.
"""

from __future__ import annotations

import os
import time
import warnings as _warnings
from dataclasses import replace
from typing import Any

import numpy as np

from ._checks import DEFAULT_LAM, DEFAULT_SIGMA, as_points
from ._history import ClickRound as ClickRound
from ._history import _check_round, _clicks_in_force, _History, _State, _within
from ._session_checks import (
    _as_image,
    IFGC_SETTINGS,
    _check_ifgc_settings,
    _check_params,
    _constant_warning,
    _coplanar_warning,
    _flat_axis,
    _load_model,
    channels_warning,
    _work_image,
)
from .errors import (
    GeometryMismatchError,
    InvalidInputError,
    MidsegError,
    MidsegWarning,
    ModelMismatchWarning,
    OlderClicksWarning,
)
from .crop import Box, relaxed_bbox
from .clicks import (
    CLICKS_FORMAT,
    CLICKS_VERSION,
    check_clicks_geometry,
    clicks_document,
    clicks_from_dict,
    mask_sha256,
    mm_to_index,
    read_clicks,
    write_clicks,
)
from .clicks import model_ref as _model_ref
from .clicks import CLICKS_SCHEMA, geometry_xyz  # noqa: F401  (re-exported: tests, gui/)

__all__ = ["Session", "CLICKS_FORMAT", "CLICKS_VERSION", "read_clicks", "MIN_POINTS"]

#: Fewest interior margin points accepted by `Session.segment`, per dimensionality.
MIN_POINTS = {2: 3, 3: 4}


class Session(_History):
    """Interactive segmentation of one image.

    Parameters
    ----------
    image : Image or ndarray
        2D or 3D, single- or multi-channel (`Image.multichannel`). A bare
        array is wrapped with unit spacing. A volume one voxel thick along
        one axis (a 2D image stored as a one-slice volume, shape (1, Y, X))
        is segmented as the 2D image it is, with a 2D model; points, masks
        and clicks files stay in the volume's shape and geometry.
    model : str, path or loaded model, optional
        ``"2d"``/``"3d"`` (shipped; ``"2d"`` is an ensemble of three networks), a
        path to a ``.pt`` file with its model card beside it or to an ensemble card
        (``.json``), or an object returned by `midseg.models.load_model`. Default:
        the shipped model matching the image's dimensionality; for a two-channel image the shipped PET/CT
        model ``"2d_petct"``/``"3d_petct"`` (channel 0 CT in HU, channel 1
        PET in SUV, as `midseg.io.read_image("ct", "pet")` stacks them). With a
        PET/CT model (chosen so or named), a `midseg.errors.ChannelsWarning`
        when channel 0 has no value below -200 or over 1 % of channel 1 is below
        -1 (not CT, then PET); it is also in `warnings`.
        Loaded once, here.
    lam, sigma : float
        Graph-cut weight λ and intensity scale σ of the pairwise term
        (defaults 5 and 0.1, the paper's values); each `refine` call may
        override them for its round.
    method : {"ifgc", "ifgc-global", "ifgc-paper", "gc"}
        Refinement: click-local information fusion + graph cut (each round
        starts from the previous round's result, see `midseg.refine.refine`);
        ``"ifgc-global"``: certainty-weighted fusion of all clicks with the
        CNN probability; ``"ifgc-paper"``: Eq. 7 as printed (see
        `midseg.refine.fuse_probabilities`); ``"gc"``: the naive graph cut
        baseline.
    stage1_cut : bool, default True
        With ``method="ifgc"`` in 3D: the stage-1 mask is the graph cut of the
        fused map (`midseg.refine.cut_margin_points_box`); False keeps its 0.5
        threshold, as midseg did before clicks-file version 4 (replays of
        version 1-3 files use it). Stored in clicks files.
    margin_floor : float in [0, 1], optional
        With ``method="ifgc"``: the smallest weight of the margin points' geodesic
        evidence against the CNN map at stage 1 (`midseg.refine.fuse_margin_points`);
        default ``MARGIN_FUSION_FLOOR[ndim]`` (0 in 2D, 0.9 in 3D; clicks files before
        version 5 replay with 0.8 in 3D). Stored in clicks files.
    claim_keep : float in [0, 1], optional
        With ``method="ifgc"``: the guard that keeps a new foreground click's claim
        against the graph cut (`midseg.refine.refine`, Notes); default
        `midseg.refine.CLICK_CLAIM_KEEP` (0.1), 0 turns it off (clicks files before
        version 5 replay with 0). Stored in clicks files.
    min_click_depth : float >= 1, optional
        With ``method="ifgc"``: the smallest depth, in units of the smallest spacing,
        from which a click's reach is computed (`midseg.refine.refine`, Notes); default
        ``CLICK_DEPTH_MIN[ndim]`` of `midseg.fusion` (1 in 2D, 2 in 3D; a volume one
        voxel thick counts as 2D; clicks files before version 6 replay with 1). Stored
        in clicks files.
    band_reach : float >= 0, optional
        With ``method="ifgc"``: how many times its reach away a click also relabels the
        thin layer of error along the boundary it lies in (`midseg.refine.refine`,
        Notes, "The boundary band"); default ``CLICK_BAND_REACH[ndim]`` of
        `midseg.fusion` (6 in 2D, 0 = off in 3D; clicks files before version 7 replay
        with 0). Stored in clicks files.
    thick_slice_ratio : float, 0 or > 1, optional
        With ``method="ifgc"``: along an axis whose spacing is at least this many times
        the smallest, a click no deeper than a slice is thick relabels only its own
        slice (`midseg.refine.refine`, Notes, "Thick slices"); default
        ``THICK_SLICE_RATIO[ndim]`` of `midseg.fusion` (5 in 3D; 0 = off; clicks files
        before version 8 replay with 0). Stored in clicks files.
    device : str, optional
        Torch device for stage 1 (default: CUDA if available, else CPU).

    Notes
    -----
    The session reads the image's array without copying it and keeps what it computed
    from it (the stage-1 maps, and the last click-local round's windowed intensities of
    the refined region, reused while the region and the object window stay the same):
    do not change the array in place while the session is in use.

    Examples
    --------
    >>> session = Session(image)                               # doctest: +SKIP
    >>> mask = session.segment([(40, 60), (80, 62), (60, 30)])  # doctest: +SKIP
    >>> mask = session.refine(foreground=[(70, 70)])            # doctest: +SKIP
    >>> session.undo(); session.save_clicks("case.clicks.json") # doctest: +SKIP
    """

    def __init__(
        self,
        image,
        model=None,
        *,
        lam: float = DEFAULT_LAM,
        sigma: float = DEFAULT_SIGMA,
        method: str = "ifgc",
        stage1_cut: bool = True,
        margin_floor: float | None = None,
        claim_keep: float | None = None,
        min_click_depth: float | None = None,
        band_reach: float | None = None,
        thick_slice_ratio: float | None = None,
        device: str | None = None,
    ):
        self.image = _as_image(image)
        self._flat = _flat_axis(self.image)
        self._work = _work_image(self.image, self._flat)
        self.lam, self.sigma, self.method = self._check_params(lam, sigma, method)
        if not isinstance(stage1_cut, (bool, np.bool_)):
            raise InvalidInputError(f"stage1_cut must be True or False, got {stage1_cut!r}")
        self.stage1_cut = bool(stage1_cut)
        ifgc = _check_ifgc_settings(
            {
                "margin_floor": margin_floor,
                "claim_keep": claim_keep,
                "min_click_depth": min_click_depth,
                "band_reach": band_reach,
                "thick_slice_ratio": thick_slice_ratio,
            },
            self._work.ndim,
        )
        self.margin_floor, self.claim_keep = ifgc["margin_floor"], ifgc["claim_keep"]
        self.min_click_depth, self.band_reach = ifgc["min_click_depth"], ifgc["band_reach"]
        self.thick_slice_ratio = ifgc["thick_slice_ratio"]
        self.device = device
        self.model = _load_model(model, self.image, self._work, self._flat, self.device)
        # a PET/CT model on channels unlike CT then PET: holds for every state (`warnings`)
        self._model_warnings = ()
        found = channels_warning(str(getattr(self.model, "name", "")), self.image)
        if found is not None:
            self._model_warnings = (found,)
            _warnings.warn(found, stacklevel=2)
        self._history: list[_State] = []
        self._pos = -1
        # click-local rounds' windowed region intensities, reused while they hold
        # (midseg.refine.refine_region; see Notes: the image must not change in place)
        self._intensities: dict = {}
        self._prob: np.ndarray | None = None  # the current state's maps (image shape)
        self._mask: np.ndarray | None = None
        # (state.cnn, cnn_probability) of the last use
        self._cnn_full: tuple[Any, np.ndarray] | None = None

    # -- construction helpers -------------------------------------------------
    _check_params = staticmethod(_check_params)

    # -- state (the history and its views: the base, midseg._history._History) --
    @property
    def cnn_probability(self) -> np.ndarray | None:
        """The untouched stage-1 probability of the current margin points (image shape,
        float32, 0 outside the stage-1 box; read-only, built on first access)."""
        s = self._state
        if s is None:
            return None
        if self._cnn_full is None or self._cnn_full[0] is not s.cnn:
            box, values = s.cnn
            full = np.zeros(self._work.shape, np.float32)
            full[box.slices] = values
            full = self._ex(full)
            full.setflags(write=False)
            self._cnn_full = (s.cnn, full)
        return self._cnn_full[1]

    def _settings(self) -> dict:
        """The refinement settings a clicks file stores besides lam and sigma (method,
        stage1_cut, margin_floor, claim_keep, min_click_depth, band_reach,
        thick_slice_ratio), as Session keywords."""
        return {
            "method": self.method,
            "stage1_cut": self.stage1_cut,
            **{key: getattr(self, key) for key in IFGC_SETTINGS},
        }

    def _w(self, points: np.ndarray) -> np.ndarray:
        """Points of the image's index space in the index space of the computation."""
        return points if self._flat is None else np.delete(points, self._flat, axis=1)

    def _sq(self, array: np.ndarray) -> np.ndarray:
        """An image-shaped map as the computation's (a one-slice volume: its slice)."""
        return array if self._flat is None else array.reshape(self._work.shape)

    def _ex(self, array: np.ndarray) -> np.ndarray:
        """A map of the computation's shape in the image's shape."""
        return array if self._flat is None else array.reshape(self.image.shape)

    # -- the verbs ---------------------------------------------------------------
    def segment(self, points) -> np.ndarray:
        """Stage 1: initial segmentation from interior margin points.

        Parameters
        ----------
        points : sequence of index tuples, or (N, D) array
            Interior margin points in array order (``(y, x)`` or ``(z, y, x)``),
            at least `MIN_POINTS` of them, placed just inside the target's
            boundary on its extremes. Replaces any earlier points and click
            rounds (the previous state stays reachable with `undo`).

        Returns
        -------
        (Y, X) or (Z, Y, X) ndarray of uint8
            The mask. With ``method="ifgc"`` (the default) the probability is
            the CNN map fused with the margin points' geodesic evidence against
            the border of their box (`midseg.refine.fuse_margin_points`), and in
            3D the mask is its graph cut with the margin points as foreground
            constraints (`midseg.refine.cut_margin_points_box`; in 2D the
            probability >= 0.5); with the other methods it is the CNN map
            >= 0.5 (`cnn_probability` is always the CNN map).

        Warns
        -----
        CoplanarPointsWarning
            3D only: every point lies within half a voxel of one plane. The
            warning is also kept in `warnings` for this state and its rounds.

        Notes
        -----
        Stage 1 sees only the relaxed bounding box of the points
        (`midseg.crop.relaxed_bbox`: the points' box grown by a few voxels),
        so the points must reach the object's extremes along every axis. When
        all 3D points lie in one plane (typically all on one slice, but any
        orientation counts), the object's extent across that plane is unknown
        to the network and the box is a thin slab around it: the mask comes out
        cut short. With the shipped 3D model, a ball over slices 10-50 marked
        only on slice 30 is segmented on slices 23-37 (Dice 0.43). The mask is
        still returned, with a `CoplanarPointsWarning` naming the plane; add
        points on the slices above and below it, at the object's top and
        bottom extremes, and segment again.
        """
        from .predict import predict_probability

        pts = as_points(points, self.image.shape, name="margin points")
        need = MIN_POINTS[self._work.ndim]
        distinct = len(np.unique(self._w(pts), axis=0))
        if distinct < need:
            raise InvalidInputError(
                f"segment needs at least {need} distinct interior margin points for a "
                f"{self._work.ndim}D image, got {len(pts)}"
                + (f" ({distinct} distinct)" if distinct != len(pts) else "")
            )
        t0 = time.perf_counter()
        work = self._work
        pw = self._w(pts)
        # Everything happens inside the box of the points: no image-sized map is built.
        result = predict_probability(
            work.array,
            pw,
            self.model,
            spacing=work.spacing,
            channel_axis=work.channel_axis,
            device=self.device,
            box_only=True,
        )
        cnn = np.asarray(result.probability, dtype=np.float32)
        cnn.setflags(write=False)
        region = result.box
        if self.method == "ifgc":  # stage-1 information fusion (fuse_margin_points) and cut
            from .fusion import fuse_margin_points_box
            from .refine import cut_margin_points_box

            fbox = relaxed_bbox(pw, work.shape)
            region = result.box.union(fbox)
            prob_r = _within(region, result.box, cnn)
            chans = work.channels_first()
            inner = fbox.slices_in(region)
            sp = np.asarray(work.spacing, np.float64)
            prob_r[inner] = fuse_margin_points_box(
                chans, prob_r[inner], pw, fbox, sp, floor=self.margin_floor
            )
            mask_r = (prob_r >= 0.5).astype(np.uint8)
            if self.stage1_cut:
                mask_r[inner] = cut_margin_points_box(
                    chans, prob_r[inner], pw, fbox, sp, lam=self.lam, sigma=self.sigma
                )
        else:
            prob_r = cnn.copy()
            mask_r = (prob_r >= 0.5).astype(np.uint8)
        seconds = time.perf_counter() - t0
        notes: tuple[MidsegWarning, ...] = ()
        constant = _constant_warning(work, result.box)
        if constant is not None:
            _warnings.warn(constant, stacklevel=2)
            notes += (constant,)
        if work.ndim == 3:
            coplanar = _coplanar_warning(pts, self.image.spacing)
            if coplanar is not None:
                _warnings.warn(coplanar, stacklevel=2)
                notes += (coplanar,)
        box = self._file_box(region)
        prev = self._state
        total = box if prev is None or prev.extent is None else box.union(prev.extent)
        change = self._change(
            total.slices,
            _within(total, box, prob_r.reshape(box.shape)),
            _within(total, box, mask_r.reshape(box.shape)),
            first=prev is None,
        )
        state = _State(
            margin_points=pts,
            rounds=(),
            cnn=(result.box, cnn),
            box=result.box,
            change=change,
            extent=box,
            seconds=seconds,
            warnings=notes,
        )
        return self._push(state)

    def start_from_mask(self, mask) -> np.ndarray:
        """Start from an existing mask instead of stage 1, to refine it with clicks.

        The mask stands in for the stage-1 result: it is the current mask, its 0/1 values
        the probability and the CNN map, and its bounding box (grown by the default
        margin of `midseg.crop.relaxed_bbox`) the stage-1 box. There are no margin
        points. Refinement then works as after `segment`. Replaces any earlier state (the
        previous one stays reachable with `undo`). A clicks file saved from here records
        the mask's sha256; replaying it needs the same mask (`from_clicks(...,
        initial_mask=)`).

        Parameters
        ----------
        mask : array of the image's spatial shape
            Nonzero = object; at least one voxel.

        Returns
        -------
        ndarray of uint8
            The mask (a copy), 0/1.

        Raises
        ------
        InvalidInputError
            Wrong shape, non-numeric or NaN values, an empty mask.
        """
        if not isinstance(mask, np.ndarray):
            raise InvalidInputError(
                f"the mask must be a numpy array of the image's shape "
                f"{self.image.shape}, got {type(mask).__name__}"
            )
        m = np.asarray(mask)
        if m.shape != tuple(self.image.shape):
            raise InvalidInputError(
                f"the mask must have the image's shape {self.image.shape}, got {m.shape}"
            )
        if m.dtype.kind not in "biuf" or (m.dtype.kind == "f" and not np.isfinite(m).all()):
            raise InvalidInputError("the mask must hold finite numbers (nonzero = object)")
        m = (m != 0).astype(np.uint8)
        if not m.any():
            raise InvalidInputError("the mask is empty: nothing to start from (use segment)")
        t0 = time.perf_counter()
        mw = self._sq(m)
        nz = np.argwhere(mw)
        box = relaxed_bbox(np.stack([nz.min(0), nz.max(0)]), mw.shape)
        values = mw[box.slices].astype(np.float32)
        values.setflags(write=False)
        fbox = self._file_box(box)
        prev = self._state
        total = fbox if prev is None or prev.extent is None else fbox.union(prev.extent)
        change = self._change(
            total.slices,
            _within(total, fbox, values.reshape(fbox.shape)),
            _within(total, fbox, m[fbox.slices]),
            first=prev is None,
        )
        empty = np.zeros((0, self.image.ndim), np.int64)
        state = _State(
            margin_points=empty,
            rounds=(),
            cnn=(box, values),
            box=box,
            change=change,
            extent=fbox,
            seconds=time.perf_counter() - t0,
            initial_mask=mask_sha256(m),
        )
        return self._push(state)

    def refine(
        self,
        foreground=(),
        background=(),
        *,
        lam: float | None = None,
        sigma: float | None = None,
        method: str | None = None,
    ) -> np.ndarray:
        """Stage 2: add one round of corrective clicks and return the refined mask.

        Parameters
        ----------
        foreground, background : sequence of index tuples
            New clicks in array order: foreground where the object was missed,
            background where the mask leaks. All clicks of earlier rounds stay
            in force (they accumulate); every click is a hard constraint, and so
            is every interior margin point unless a background click is on it.
            A click on the voxel of an earlier click of the other class
            overrides it: the later click wins (`clicks_in_force`; `rounds`
            keeps both, as made). One voxel in both lists of one round is an
            error.
        lam, sigma, method : optional
            Override the session's parameters for this round.

        Returns
        -------
        ndarray of uint8
            The refined mask (image shape).

        Raises
        ------
        InvalidInputError
            No click, a click outside the image, a voxel in both lists, bad
            parameters.
        """
        state = self._state
        if state is None:
            raise MidsegError("refine needs an initial segmentation: call segment(points) first")
        lam, sigma, method = self._check_params(
            self.lam if lam is None else lam,
            self.sigma if sigma is None else sigma,
            self.method if method is None else method,
        )
        fg = as_points(foreground, self.image.shape, name="foreground clicks", allow_empty=True)
        bg = as_points(background, self.image.shape, name="background clicks", allow_empty=True)
        if len(fg) + len(bg) == 0:
            raise InvalidInputError("refine needs at least one foreground or background click")
        _check_round(fg, bg)
        rounds = state.rounds + (ClickRound(fg, bg, lam, sigma, method),)
        all_fg, all_bg = _clicks_in_force(rounds)
        t0 = time.perf_counter()
        if method == "ifgc":
            change, extent = self._refine_local(state, fg, bg, all_fg, all_bg, lam, sigma)
        else:
            change, extent = self._refine_global(state, all_fg, all_bg, lam, sigma, method)
        new = _State(
            margin_points=state.margin_points,
            rounds=rounds,
            cnn=state.cnn,
            box=state.box,
            change=change,
            extent=extent,
            seconds=time.perf_counter() - t0,
            warnings=state.warnings,
            initial_mask=state.initial_mask,
            # the global methods recompute the whole mask: brush edits are gone
            edits=state.edits if method == "ifgc" else 0,
        )
        return self._push(new)

    def _refine_local(self, state, fg, bg, all_fg, all_bg, lam, sigma) -> tuple[Any, Box]:
        """A click-local round ("ifgc"): the region's work only (issue 19).

        `fg`, `bg`: this round's clicks; `all_fg`, `all_bg`: the clicks in force (image
        index space). No full-size copy, scan or threshold. Returns the history change of
        the region and the new extent of the maps' nonzero voxels.
        """
        from .refine import refine_region, refine_region_box

        work, w, sq = self._work, self._w, self._sq
        chans = work.channels_first()
        margin, f_w, b_w = w(state.margin_points), w(all_fg), w(all_bg)
        region = refine_region_box(np.concatenate([margin, f_w, b_w]), work.shape, state.box)
        res = refine_region(
            chans,
            None,
            region,
            margin,
            f_w,
            b_w,
            np.asarray(work.spacing, np.float64),
            lam=lam,
            sigma=sigma,
            method="ifgc",
            connectivity=None,
            backend="auto",
            prev_mask=sq(self._maps()[1]),
            new_fg=w(fg),
            new_bg=w(bg),
            claim_keep=self.claim_keep,
            min_click_depth=self.min_click_depth,
            band_reach=self.band_reach,
            thick_slice_ratio=self.thick_slice_ratio,
            cache=self._intensities,
        )
        sl = self._file_box(res.box).slices
        prob_r = res.probability.reshape(self._maps()[1][sl].shape)
        mask_r = res.mask.astype(np.uint8, copy=False).reshape(prob_r.shape)
        change = self._change(sl, prob_r, mask_r, first=False)
        return change, self._file_box(res.box).union(state.extent)

    def _refine_global(self, state, all_fg, all_bg, lam, sigma, method) -> tuple[Any, Box]:
        """A round of a global method: the whole mask again from the CNN map and the clicks.

        Returns the history change of the whole image and its box as the extent.
        """
        from .refine import refine as _refine

        work, w, sq = self._work, self._w, self._sq
        cnn = self.cnn_probability
        assert cnn is not None  # a state exists: stage 1 ran
        result = _refine(
            work.array,
            sq(cnn),
            margin_points=w(state.margin_points),
            foreground=w(all_fg),
            background=w(all_bg),
            spacing=work.spacing,
            lam=lam,
            sigma=sigma,
            method=method,
            channel_axis=work.channel_axis,
            box=state.box,
        )
        whole = tuple(slice(0, n) for n in self.image.shape)
        change = self._change(
            whole,
            self._ex(np.asarray(result.probability, np.float32)),
            self._ex(np.asarray(result.mask, np.uint8)),
            first=False,
        )
        return change, Box(tuple(0 for _ in self.image.shape), tuple(self.image.shape))

    def suggest(self, k: int = 1) -> list:
        """Up to `k` suggested next clicks for the current mask, best first.

        Each is a `midseg.suggest.Suggestion`: ``point`` (array order, image index space),
        ``foreground`` (the class the mask does not give it) and ``score``; computed from
        the image, the mask and the clicks in force (none within 3 voxels of one), no ground truth
        (`midseg.suggest.suggest_clicks`, reasoning and evidence there; in 3D the stage-1
        CNN map's disagreement with the mask counts too, inside the stage-1 box only, where
        the network looked). Empty before
        `segment` or when nothing is left to suggest. Raises InvalidInputError for k < 1.
        Never at a voxel that a brush edit (`paint`) the current mask holds has changed.
        Only the box holding every voxel the session has set is read, so the cost follows
        the object's size, not the image's (a tumour in a 300x512x512 CT: about 17 ms).
        """
        from .suggest import _suggest

        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise InvalidInputError(f"k must be an integer >= 1, got {k!r}")
        if self._state is None:
            return []
        fg_clicks, bg_clicks = self.clicks_in_force  # not the margin points: near them
        # errors are common (stage 1's box is tight there), see docs/decisions.md
        done = self._w(np.concatenate([fg_clicks, bg_clicks]))
        w = self._work
        ext = self._state.extent  # holds every object voxel: nothing outside it is read
        ext = None if ext is None else self._w_box(ext).slices
        cnn = None  # the stage-1 CNN map (not a mask given to start_from_mask)
        if len(self._state.margin_points):
            cnn = (self._state.cnn[0].slices, self._state.cnn[1])
        fg = np.arange(len(done)) < len(fg_clicks)
        found = _suggest(w.channels_first(), self._sq(self._maps()[1]),
                         np.asarray(w.spacing, np.float64), done, int(k),
                         ext, cnn, fg, self._painted())  # fmt: skip
        if self._flat is None:
            return found
        return [replace(s, point=tuple(np.insert(s.point, self._flat, 0).tolist())) for s in found]

    def paint(self, voxels, value=1) -> np.ndarray:
        """Brush edit: set the mask to `value` at `voxels`, as one undoable step.

        The step goes into the history exactly as a refinement round does (the changed
        region's probability and mask before and after), so `undo` restores the mask
        voxel for voxel and `redo` re-applies the edit. Margin points and click rounds
        are unchanged. The probability at the painted voxels becomes 1.0 (paint) or 0.0
        (erase), so ``probability >= 0.5`` still equals the mask.

        How edits meet later clicks: the edited mask becomes the previous mask that the
        next click-local round (``method="ifgc"``, the default) starts from. That round
        recomputes only a zone around its new clicks (`midseg.refine.refine`): edits
        outside the zone stay as painted, voxels inside it may change (the edited mask is
        the prior there). The global methods (``"ifgc-global"``, ``"ifgc-paper"``,
        ``"gc"``) recompute the whole mask from the CNN map and the clicks, so their next
        round discards every edit. A new `segment` or `start_from_mask` discards them too.

        A clicks file cannot hold brush edits: `save_clicks` and `clicks_dict` refuse
        (`MidsegError`) while the current mask holds any (`edits` > 0), rather than write
        a file whose replay would give another mask. Save the mask
        (`midseg.io.write_mask`) or the label map instead, or undo the edits.

        Parameters
        ----------
        voxels : (N, D) int array or sequence of index tuples
            Array order (``(y, x)`` or ``(z, y, x)``), inside the image; at least one.
            Repeated voxels are fine.
        value : {1, 0} or (N,) array of 0/1
            1 paints the object, 0 erases it; an array gives each voxel its own value
            (e.g. a 2D result written into one slice of a volume in one step).

        Returns
        -------
        ndarray of uint8
            The edited mask (a copy, image shape). When every voxel already had `value`
            nothing is recorded (no history step) and the current mask is returned.

        Raises
        ------
        MidsegError
            No mask to edit yet (call `segment` or `start_from_mask` first).
        InvalidInputError
            No voxel, a voxel outside the image or of the wrong dimension, a value
            other than 0 or 1, values of another length than `voxels`, or one voxel given
            both values.
        """
        state = self._state
        if state is None:
            raise MidsegError(
                "paint edits a mask: call segment(points) or start_from_mask(mask) first"
            )
        pts = as_points(voxels, self.image.shape, name="painted voxels")
        if np.ndim(value) == 0:
            if (
                isinstance(value, (bool, np.bool_))
                or not isinstance(value, (int, np.integer))
                or int(value) not in (0, 1)
            ):
                raise InvalidInputError(
                    f"paint value must be 1 (paint) or 0 (erase), got {value!r}"
                )
            values = np.full(len(pts), int(value), np.uint8)
        else:
            arr = np.asarray(value)
            if (
                arr.shape != (len(pts),)
                or arr.dtype.kind not in "iu"
                or not np.isin(arr, (0, 1)).all()
            ):
                raise InvalidInputError(
                    f"paint values must be 1 (paint) or 0 (erase), one integer per voxel "
                    f"({len(pts)}), got an array of shape {arr.shape} and dtype {arr.dtype}"
                )
            values = arr.astype(np.uint8)
            order = np.lexsort(pts.T[::-1])
            same = np.all(pts[order][1:] == pts[order][:-1], axis=1)
            clash = same & (values[order][1:] != values[order][:-1])
            if clash.any():
                p = tuple(int(v) for v in pts[order][1:][np.argmax(clash)])
                raise InvalidInputError(f"voxel {p} is given both paint values (0 and 1)")
        t0 = time.perf_counter()
        lo, hi = pts.min(axis=0), pts.max(axis=0) + 1
        box = Box(tuple(int(v) for v in lo), tuple(int(v) for v in hi))
        sl = box.slices
        where = tuple((pts - lo).T)
        cur_prob, cur_mask = self._maps()
        mask_r = cur_mask[sl].copy()
        if np.array_equal(mask_r[where], values):
            return cur_mask.copy()
        prob_r = cur_prob[sl].copy()
        mask_r[where] = values
        prob_r[where] = values.astype(np.float32)
        change = self._change(sl, prob_r, mask_r, first=False)
        extent = box if state.extent is None else box.union(state.extent)
        new = replace(
            state,
            change=change,
            extent=extent,
            seconds=time.perf_counter() - t0,
            edits=state.edits + 1,
        )
        return self._push(new)

    def _painted(self) -> list:
        """(slices, bool array) of the voxels each brush edit the current mask holds changed,
        in the computation's axes (a suggestion never undoes an edit)."""
        out = []
        hist, i = self._history, self._pos
        while i > 0 and hist[i].edits > 0:
            if hist[i].edits > hist[i - 1].edits:
                ch = hist[i].change
                box = self._w_box(Box(tuple(x.start for x in ch.slices),
                                      tuple(x.stop for x in ch.slices)))  # fmt: skip
                before = ch.mask_before if ch.mask_before is not None else 0
                out.append((box.slices, (ch.mask_after != before).reshape(box.shape)))
            i -= 1
        return out

    def _w_box(self, box):
        """A box of the image's axes in the computation's (a one-slice volume: drop its axis)."""
        if self._flat is None:
            return box
        return Box(tuple(np.delete(box.start, self._flat)), tuple(np.delete(box.stop, self._flat)))

    def _file_box(self, box):
        """A box of the computation's axes in the image's (a one-slice volume: add its axis)."""
        if self._flat is None:
            return box
        start, stop = list(box.start), list(box.stop)
        start.insert(self._flat, 0)
        stop.insert(self._flat, 1)
        return Box(tuple(start), tuple(stop))

    # -- stored clicks ------------------------------------------------------------
    def clicks_dict(self) -> dict:
        """The current points and rounds as the versioned JSON-ready dict (see `save_clicks`)."""
        state = self._state
        if state is None:
            raise MidsegError("nothing to save: call segment(points) first")
        if state.edits:
            raise MidsegError(
                f"the mask holds {state.edits} brush edit(s) (Session.paint), which a clicks "
                "file cannot store: its replay would give another mask. Save the mask or the "
                "label map instead, or undo the edits"
            )
        doc = clicks_document(
            self.image,
            _model_ref(self.model),
            {"lam": self.lam, "sigma": self.sigma, **self._settings()},
            state.margin_points,
            [
                (r.foreground, r.background, {"lam": r.lam, "sigma": r.sigma, "method": r.method})
                for r in state.rounds
            ],
        )
        if state.initial_mask is not None:
            doc["initial_mask"] = {
                "sha256": state.initial_mask,
                "note": "started from a mask (start_from_mask); replay "
                "with from_clicks(..., initial_mask=that mask)",
            }
        return doc

    def save_clicks(self, path: str | os.PathLike) -> None:
        """Write the current margin points and click rounds to a JSON file (atomically).

        The file holds the format name and version, the geometry of the image
        the clicks were made on, the model and parameters, and every point in
        physical coordinates (mm), so `Session.from_clicks` replays it exactly
        and detects a different image. Undone rounds are not saved.

        Raises
        ------
        MidsegError
            Nothing segmented yet, or the mask holds brush edits (`paint`, `edits` > 0),
            which a clicks file cannot store: save the mask or the label map instead.
        """
        write_clicks(path, self.clicks_dict())

    @classmethod
    def from_clicks(
        cls,
        clicks,
        image,
        model=None,
        *,
        device: str | None = None,
        callback=None,
        initial_mask=None,
    ) -> "Session":
        """Replay a clicks file (or dict) on ``image``: stage 1, then every round in order.

        Parameters
        ----------
        clicks : path or dict
            Written by `save_clicks`.
        image : Image
            Must have the geometry the clicks were made on (shape, spacing,
            origin, direction); a mismatch raises `GeometryMismatchError`
            naming what differs.
        model : optional
            Overrides the model named in the file. When the file records the
            sha256 of the weights it was made with and the weights used now
            differ, a `ModelMismatchWarning` says so: the replay then runs,
            but its masks are not the ones the clicks were made on.
        callback : callable, optional
            Called as ``callback(session)`` after stage 1 and after each round
            (progress reports, per-step metrics).
        initial_mask : array, optional
            For a file saved after `start_from_mask`: the same mask (its sha256 must
            match the file's); refused for other files.
        """
        data = _clicks_data(clicks)
        image = _as_image(image)
        check_clicks_geometry(data, image)
        params = data["parameters"]
        model_ref = data.get("model") or {}
        if model is None:
            model = model_ref.get("name")
        session = cls(
            image,
            model=model,
            lam=params["lam"],
            sigma=params["sigma"],
            method=params["method"],
            stage1_cut=params.get("stage1_cut", True),
            **{key: params.get(key) for key in IFGC_SETTINGS},
            device=device,
        )
        mismatch = _model_mismatch(model_ref, session.model)
        if mismatch is not None:
            _warnings.warn(mismatch, stacklevel=2)
        older = data.get("upgraded_from_version")
        if older is not None:
            where = f"{os.fspath(clicks)}: " if isinstance(clicks, (str, os.PathLike)) else ""
            _warnings.warn(
                OlderClicksWarning(
                    f"{where}clicks file version {older} replays with the settings of its "
                    f"time ({', '.join(f'{k} {v!r}' for k, v in session._settings().items())}); "
                    "further rounds of this session use them too, a new Session uses "
                    "today's defaults"
                ),
                stacklevel=2,
            )
        try:
            margin = mm_to_index(image, data["margin_points"], "margin_points")
            rounds = _replay_rounds(data, image)  # every round checked before stage 1 runs
        except (InvalidInputError, GeometryMismatchError) as exc:
            if not isinstance(clicks, (str, os.PathLike)):
                raise
            raise type(exc)(f"{os.fspath(clicks)}: {exc}") from None
        start = data.get("initial_mask")
        if start is not None or initial_mask is not None:
            session.start_from_mask(_replay_initial_mask(start, initial_mask))
        else:
            session.segment(margin)
        if mismatch is not None:  # kept with the replayed states, for clients such as the GUI
            state = session._history[session._pos]
            session._history[session._pos] = replace(state, warnings=(mismatch,) + state.warnings)
        if callback is not None:
            callback(session)
        for fg, bg, r in rounds:
            session.refine(fg, bg, lam=r["lam"], sigma=r["sigma"], method=r["method"])
            if callback is not None:
                callback(session)
        return session

    def __repr__(self) -> str:
        state = self._state
        what = (
            "no segmentation yet"
            if state is None
            else f"{len(state.margin_points)} margin points, {len(state.rounds)} click rounds"
        )
        return f"Session({self.image!r}, model={_model_ref(self.model).get('name')!r}, {what})"


def _clicks_data(clicks) -> dict:
    """The checked clicks document of `clicks` (a path or a dict; `midseg.clicks`)."""
    if isinstance(clicks, dict):
        return clicks_from_dict(clicks)
    if isinstance(clicks, (str, os.PathLike)):
        return read_clicks(clicks)
    raise InvalidInputError(f"clicks must be a path or a dict, got {type(clicks).__name__}")


def _model_mismatch(model_ref: dict, model) -> ModelMismatchWarning | None:
    """The warning for a replay whose weights are not those the clicks were made with.

    `model_ref`: the clicks file's model entry (name, sha256); `model`: the replay's. None
    when the weights match or either hash is unknown. Hashes the weights file once; on a
    mismatch also the shipped models', to name the one that has the recorded weights (a
    shipped model renamed since, such as the former ``2d``, now ``2d_egd``).
    """
    stored_sha = model_ref.get("sha256")
    current = _model_ref(model)
    current_sha = current.get("sha256")
    if not (stored_sha and current_sha and stored_sha != current_sha):
        return None
    from . import models as _models

    def _has_them(name: str) -> bool:
        try:
            return _models.model_sha256(name) == stored_sha
        except MidsegError:  # an unreadable card in models/ must not break the warning
            return False

    shipped = [n for n in _models.list_models() if n != current.get("name") and _has_them(n)]
    hint = f"; the shipped model {shipped[0]!r} has those weights" if shipped else ""
    return ModelMismatchWarning(
        f"the clicks were made with model {model_ref.get('name')!r} "
        f"(weights sha256 {stored_sha[:12]}), the replay uses "
        f"{current.get('name')!r} (sha256 {current_sha[:12]}): "
        "stage 1 and every refined mask may differ from the original session" + hint
    )


def _replay_rounds(data: dict, image) -> list[tuple[np.ndarray, np.ndarray, dict]]:
    """Each round of clicks document `data` as ``(fg, bg, round)``, in `image` index space.

    Raises `InvalidInputError` naming the round for one without a click or with a voxel
    in both lists.
    """
    rounds = []
    for k, r in enumerate(data["rounds"]):
        fg = mm_to_index(image, r["foreground"], f"rounds[{k}].foreground")
        bg = mm_to_index(image, r["background"], f"rounds[{k}].background")
        if not len(fg) + len(bg):
            raise InvalidInputError(f"clicks file: rounds[{k}] holds no click")
        try:
            _check_round(fg, bg)
        except InvalidInputError as exc:
            raise InvalidInputError(f"clicks file: rounds[{k}]: {exc}") from None
        rounds.append((fg, bg, r))
    return rounds


def _replay_initial_mask(start, initial_mask) -> np.ndarray:
    """The mask a replay starts from: `initial_mask` as uint8 0/1, checked against `start`.

    `start`: the clicks file's ``initial_mask`` entry (its sha256), or None. Raises
    `InvalidInputError` when only one of the two is given or the sha256 differs.
    """
    if start is None:
        raise InvalidInputError("initial_mask given, but the clicks file did not start from a mask")
    if initial_mask is None:
        raise InvalidInputError(
            "the clicks file started from a mask (start_from_mask): pass it as initial_mask"
        )
    m = (np.asarray(initial_mask) != 0).astype(np.uint8)
    if not isinstance(start, dict) or start.get("sha256") != mask_sha256(m):
        raise InvalidInputError(
            "initial_mask is not the mask the clicks file started from (sha256 differs)"
        )
    return m
