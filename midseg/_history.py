"""The history of a `midseg.session.Session`: click rounds, states, undo and redo.

Each state keeps only the region its step changed (`_Change`), and the session one
full-size probability and mask, those of the current state (`_History`, a base of
`Session`): undo, redo and a new step cost what the region costs, not what the image
does. Here too: which clicks of the rounds still hold (`_clicks_in_force`) and the
check that one round gives no voxel both classes (`_check_round`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import InvalidInputError, MidsegError, MidsegWarning
from .io import Image


@dataclass(frozen=True)
class ClickRound:
    """One refinement round: clicks (array-order indices) and the parameters used."""

    foreground: np.ndarray  # (N, D) int64
    background: np.ndarray  # (M, D) int64
    lam: float
    sigma: float
    method: str


@dataclass(frozen=True, eq=False)
class _Change:
    """What a step changed: a region of the probability and the mask, before and after.

    ``before`` is None when the maps were all zero there (the first step).
    """

    slices: tuple[slice, ...]
    prob_before: np.ndarray | None
    mask_before: np.ndarray | None
    prob_after: np.ndarray
    mask_after: np.ndarray

    def apply(self, prob: np.ndarray, mask: np.ndarray, forward: bool) -> None:
        if forward:
            prob[self.slices], mask[self.slices] = self.prob_after, self.mask_after
        elif self.prob_before is None:
            prob[self.slices], mask[self.slices] = 0.0, 0
        else:
            prob[self.slices], mask[self.slices] = self.prob_before, self.mask_before


@dataclass(frozen=True, eq=False)
class _State:
    """A point in the history: what it holds and how the maps got there from the step before.

    The session keeps one full-size probability and mask, those of the current state;
    every state keeps only the region its step changed (`_Change`), so undo, redo and
    a new step cost what the region costs, not what the image does.
    """

    margin_points: np.ndarray
    rounds: tuple[ClickRound, ...]
    cnn: tuple  # stage-1 output: (box, its values), never modified (shared)
    box: Any  # stage-1 crop box (midseg.crop.Box)
    change: _Change
    extent: Any  # Box holding every nonzero voxel of the maps (or None)
    seconds: float = 0.0
    warnings: tuple[MidsegWarning, ...] = ()  # issued by the stage 1 this state builds on
    initial_mask: str | None = None  # sha256 of the mask `start_from_mask` started from
    edits: int = 0  # brush edits (`Session.paint`) the current mask holds


def _clicks_in_force(rounds) -> tuple[np.ndarray, np.ndarray]:
    """The foreground and background clicks of `rounds` that still hold, in click order.

    A click is dropped when a later round has a click of the other class on
    the same voxel: the later correction wins. Each round must be free of
    conflicts itself (`Session.refine` checks that when the round is added).
    """
    last: dict[tuple, bool] = {}  # voxel -> True (foreground) / False, of its latest click
    for r in rounds:
        last.update((p, True) for p in map(tuple, r.foreground.tolist()))
        last.update((p, False) for p in map(tuple, r.background.tolist()))

    def kept(points, foreground):
        keep = np.array([last[p] is foreground for p in map(tuple, points.tolist())], bool)
        return points[keep] if len(points) else points

    def once(points):  # a voxel clicked again with the same class counts once
        if not len(points):
            return points
        _, first = np.unique(points, axis=0, return_index=True)
        return points[np.sort(first)]

    ndim = rounds[0].foreground.shape[1] if rounds else 0
    fg = [kept(r.foreground, True) for r in rounds]
    bg = [kept(r.background, False) for r in rounds]
    empty = np.zeros((0, ndim), np.int64)
    return once(np.concatenate([empty, *fg])), once(np.concatenate([empty, *bg]))


def _check_round(fg: np.ndarray, bg: np.ndarray) -> None:
    """One round may not give a voxel both classes: which one was meant is unknown."""
    if not len(fg) or not len(bg):
        return
    both = set(map(tuple, fg.tolist())) & set(map(tuple, bg.tolist()))
    if both:
        voxel = min(both)
        more = f" (and {len(both) - 1} more)" if len(both) > 1 else ""
        raise InvalidInputError(
            f"voxel {voxel}{more} is both a foreground and a background click of the same "
            "round; give it in one list only. To change the class of an earlier click, click "
            "its voxel again in a later round: the later click wins"
        )


def _within(outer, inner, values: np.ndarray) -> np.ndarray:
    """An `outer`-shaped array, 0 except `values` at `inner`'s place (`midseg.crop.Box`es)."""
    out = np.zeros(outer.shape, dtype=values.dtype)
    out[inner.slices_in(outer)] = values
    return out


class _History:
    """The states of a session and the maps of the current one; undo, redo and the views.

    A base of `midseg.session.Session`, whose ``__init__`` sets the attributes below.
    """

    image: Image
    _history: list[_State]
    _pos: int  # index of the current state in _history; -1: none
    _prob: np.ndarray | None  # the current state's maps (image shape)
    _mask: np.ndarray | None
    _model_warnings: tuple[MidsegWarning, ...]  # of the construction, for every state

    @property
    def _state(self) -> _State | None:
        return self._history[self._pos] if self._pos >= 0 else None

    @property
    def mask(self) -> np.ndarray | None:
        """Current mask, uint8 0/1 of the image's spatial shape (None before `segment`).

        A read-only view of the session's map: the next step, `undo` or `redo`
        changes it in place. Copy it to keep it (the masks `segment`, `refine`,
        `undo` and `redo` return are copies).
        """
        return None if self._state is None or self._mask is None else self._view(self._mask)

    @property
    def probability(self) -> np.ndarray | None:
        """Current foreground probability (stage 1, fused after refinement), float32.

        A read-only view, like `mask`.
        """
        return None if self._state is None or self._prob is None else self._view(self._prob)

    @staticmethod
    def _view(array: np.ndarray) -> np.ndarray:
        v = array.view()
        v.setflags(write=False)
        return v

    @property
    def margin_points(self) -> np.ndarray:
        """Interior margin points of the current state, (N, D) int64 (empty before segment)."""
        s = self._state
        return np.zeros((0, self.image.ndim), np.int64) if s is None else s.margin_points.copy()

    @property
    def rounds(self) -> tuple[ClickRound, ...]:
        """Click rounds applied in the current state, oldest first."""
        s = self._state
        return () if s is None else s.rounds

    @property
    def clicks_in_force(self) -> tuple[np.ndarray, np.ndarray]:
        """The foreground and background clicks of the current state that still hold.

        Both (N, D) int64, oldest first: the clicks of every round less those
        a later round overrode with a click of the other class on the same
        voxel. These are what the current mask was refined with.
        """
        s = self._state
        empty = np.zeros((0, self.image.ndim), np.int64)
        return (empty, empty.copy()) if s is None or not s.rounds else _clicks_in_force(s.rounds)

    @property
    def warnings(self) -> tuple[MidsegWarning, ...]:
        """Warnings about the current state, oldest first (also issued with `warnings.warn`).

        A `CoplanarPointsWarning` of `segment`, and the `ModelMismatchWarning`
        of a `from_clicks` replay, hold for that state and every round built on
        it; a new `segment` starts afresh. A `ChannelsWarning` of the session's
        construction (a PET/CT model chosen for channels unlike CT then PET) comes
        first and holds for every state, also before `segment`.
        """
        s = self._state
        return self._model_warnings + (() if s is None else s.warnings)

    @property
    def box(self):
        """Stage-1 crop box (`midseg.crop.Box`) of the current state.

        For a volume one voxel thick (segmented as 2D) the box is in the 2D slice's axes.
        """
        s = self._state
        return None if s is None else s.box

    @property
    def last_seconds(self) -> float:
        """Wall time of the step that produced the current state."""
        s = self._state
        return 0.0 if s is None else s.seconds

    @property
    def edits(self) -> int:
        """How many brush edits (`paint` steps) the current mask holds (0 before `segment`).

        A clicks file cannot store them: `save_clicks` refuses while this is nonzero.
        """
        s = self._state
        return 0 if s is None else s.edits

    @property
    def can_undo(self) -> bool:
        return self._pos >= 0

    @property
    def can_redo(self) -> bool:
        return self._pos < len(self._history) - 1

    def _maps(self) -> tuple[np.ndarray, np.ndarray]:
        """The current probability and mask maps (image shape); created empty on first use."""
        if self._prob is None or self._mask is None:
            self._mask = np.zeros(self.image.shape, np.uint8)
            self._prob = np.zeros(self.image.shape, np.float32)
        return self._prob, self._mask

    def _push(self, state: _State) -> np.ndarray:
        """Make `state` (built on the current one) current; returns a copy of its mask."""
        del self._history[self._pos + 1 :]
        prob, mask = self._maps()
        state.change.apply(prob, mask, forward=True)
        self._history.append(state)
        self._pos = len(self._history) - 1
        return mask.copy()

    def _change(
        self, slices: tuple[slice, ...], prob: np.ndarray, mask: np.ndarray, first: bool
    ) -> _Change:
        """The change that writes `prob` and `mask` into `slices` of the current maps."""
        if first:
            return _Change(slices, None, None, prob, mask)
        cur_prob, cur_mask = self._maps()
        return _Change(slices, cur_prob[slices].copy(), cur_mask[slices].copy(), prob, mask)

    def undo(self) -> np.ndarray | None:
        """Step back one action (a `segment` counts as one); returns the mask then current
        (a copy; None when back before the first `segment`)."""
        if not self.can_undo:
            raise MidsegError("nothing to undo")
        prob, mask = self._maps()
        self._history[self._pos].change.apply(prob, mask, forward=False)
        self._pos -= 1
        return None if self._state is None else mask.copy()

    def redo(self) -> np.ndarray | None:
        """Re-apply the last undone action; returns the mask (a copy)."""
        if not self.can_redo:
            raise MidsegError("nothing to redo")
        self._pos += 1
        prob, mask = self._maps()
        self._history[self._pos].change.apply(prob, mask, forward=True)
        return mask.copy()

    def reset(self) -> None:
        """Forget all points, rounds and history."""
        self._history.clear()
        self._pos = -1
        self._prob = self._mask = None
