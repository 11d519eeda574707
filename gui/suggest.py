"""The suggested next click (issue 23): shown as a marker, accepted with one key, or ignored.

`SuggestMixin` is a part of `midseg.gui.window.MainWindow`. When *Suggest next click*
(`act_suggest`, off by default) is on, every change of the current object's mask (stage 1,
a click round, undo, redo, a brush stroke) is followed by `midseg.Session.suggest` with
``k=1``: after stage 1 and click rounds in the worker, right after the round and in the
same job; after the steps the UI thread makes itself (undo, redo, brushes) on the UI
thread, where it takes milliseconds. The suggestion is a hint, not an instruction: its
top suggestion lay in an error region for about half of the suggestion-following user's
clicks on ``dev_unseen`` (45 % in 2D, 55 % in 3D; ``docs/results-suggest.md``). The views draw it as
a dashed ring with a cross (`midseg.gui.views.MARKER_COLORS` ``"suggest"``) on the slices
that contain it; the status bar names the voxel, the class and the score.

Keys: A accepts it as a click of the suggested class, Shift+A as foreground, Alt+A as
background (the same path as a click of the Refine tool: one round, undo, the clicks
file); G moves the linked cursor, and with it the 3D views' slices, to it; Esc hides it.
Ignoring it does nothing: the next round replaces it. Not in the per-slice 2D mode,
whose rounds are those of a 2D session on one slice.
"""

from __future__ import annotations

from PyQt5.QtWidgets import QLabel

__all__ = ["SuggestMixin", "SUGGEST_HELP"]

SUGGEST_HELP = (
    "After each round, mark where the mask is most likely wrong (a hint: right about a "
    "third to half of the time); A accepts it, Shift+A / Alt+A as foreground / background, "
    "G goes there, Esc hides it"
)


class SuggestMixin:
    """The suggested next click of `MainWindow` (a mixin).

    Attributes
    ----------
    suggestion : midseg.suggest.Suggestion or None
        The suggestion shown for the current object's current mask (read-only property).
    """

    # =====================================================================
    # construction (called by ActionsMixin._build_actions / _build_statusbar)
    # =====================================================================
    def _build_suggest_actions(self) -> None:
        a = self._action
        self._suggested = None  # (session, Suggestion) shown, or None
        self._from_worker = None  # (session, [Suggestion] or error) of the last job
        self.act_suggest = a(
            "Suggest next click",
            lambda on: self._suggest_toggled(on),
            None,
            SUGGEST_HELP,
            checkable=True,
        )
        self.act_accept_suggestion = a(
            "Accept suggestion",
            lambda: self.accept_suggestion(),
            "A",
            "Click the suggested voxel as the suggested class (A); it refines as a click does",
        )
        self.act_accept_fg = a(
            "Accept suggestion as foreground",
            lambda: self.accept_suggestion(foreground=True),
            "Shift+A",
            "Click the suggested voxel as foreground (Shift+A)",
        )
        self.act_accept_bg = a(
            "Accept suggestion as background",
            lambda: self.accept_suggestion(foreground=False),
            "Alt+A",
            "Click the suggested voxel as background (Alt+A)",
        )
        self.act_goto_suggestion = a(
            "Go to suggestion",
            lambda: self.goto_suggestion(),
            "G",
            "Move the cursor, and the 3D views' slices, to the suggested voxel (G)",
        )

    @property
    def suggest_actions(self) -> tuple:
        """The actions of the Tools menu's suggestion section, in menu order."""
        return (
            self.act_suggest,
            self.act_accept_suggestion,
            self.act_accept_fg,
            self.act_accept_bg,
            self.act_goto_suggestion,
        )

    def _build_suggest_label(self) -> QLabel:
        self.suggest_label = QLabel("")
        self.suggest_label.setObjectName("suggest_label")
        self.suggest_label.setContentsMargins(0, 0, 12, 0)  # apart from the next label
        self.suggest_label.hide()
        return self.suggest_label

    # =====================================================================
    # computing
    # =====================================================================
    @property
    def suggest_enabled(self) -> bool:
        """True when the option is on and suggestions apply (not in the 2D slice mode)."""
        return self.act_suggest.isChecked() and not self.slice_mode

    @property
    def suggestion(self):
        """The suggestion shown for the current object (None: none shown)."""
        if (
            self._suggested is None
            or self._suggested[0] is not self.session
            or not self.suggest_enabled
        ):
            return None
        return self._suggested[1]

    def _then_suggest(self, session, work):
        """``work`` for the worker, followed there by ``session.suggest(k=1)`` if the option is on.

        The result (or the error, which never fails the round) waits in ``_from_worker``
        for `_update_suggestion`, called by the job's done callback through `_changed`.
        """
        self._from_worker = None
        if not self.suggest_enabled:
            return work

        def run():
            result = work()
            try:
                found = session.suggest(k=1)
            except Exception as exc:  # a hint must never fail the round
                found = exc
            self._from_worker = (session, found)
            return result

        return run

    def _update_suggestion(self) -> None:
        """After a step of the session: take the worker's suggestion or compute one here."""
        done, self._from_worker = self._from_worker, None
        self._suggested = None
        s = self.session
        if not self.suggest_enabled or s is None or s.mask is None:
            self._show_suggestion()
            return
        if done is not None and done[0] is s:
            found = done[1]
        elif self.jobs.busy:  # the worker holds the session: its job's end brings one
            found = []
        else:  # a step made on the UI thread (undo, redo, brush): cheap, done here
            try:
                found = s.suggest(k=1)
            except Exception as exc:
                found = exc
        if isinstance(found, Exception):
            self.statusBar().showMessage(f"no suggestion: {found}", 6000)
        elif found and found[0].score > 0:
            self._suggested = (s, found[0])
        elif found:  # the best candidate's image agrees with the mask: nothing to point at
            self.statusBar().showMessage(
                "no suggestion: along the mask's boundary the image agrees with it", 6000
            )
        self._show_suggestion()

    def _suggest_toggled(self, on: bool) -> None:
        if on and self.slice_mode:
            self.statusBar().showMessage("no suggestions in the 2D slice mode", 5000)
        if on and not self.jobs.busy:
            self._update_suggestion()  # the running job's done callback does it otherwise
        elif not on:
            self._suggested = None
            self._show_suggestion()
        self._refresh()

    def hide_suggestion(self) -> None:
        """Hide the suggestion until the next round (Esc)."""
        if self._suggested is not None:
            self._suggested = None
            self._show_suggestion()
            self._refresh()

    def _escape(self) -> None:
        """Esc: remove the margin points not yet segmented and hide the suggestion."""
        if self.pending_margin:
            self.clear_pending()
        self.hide_suggestion()

    # =====================================================================
    # showing and acting
    # =====================================================================
    def _show_suggestion(self) -> None:
        """The status bar's hint for the suggestion shown (hidden when there is none)."""
        sg = self.suggestion
        if sg is None:
            self.suggest_label.hide()
            self.suggest_label.setText("")
            return
        where = ", ".join(str(v) for v in sg.point)
        kind = "foreground" if sg.foreground else "background"
        axes = "z, y, x" if len(sg.point) == 3 else "y, x"
        self.suggest_label.setText(f"suggest {kind} ({where}) score {sg.score:.2f}")
        self.suggest_label.setToolTip(
            f"Suggested next click: {kind} at ({axes}) = ({where}); score {sg.score:.3g} (how "
            "strongly the image contradicts the mask there, in the object's intensity SDs). "
            + SUGGEST_HELP
        )
        self.suggest_label.show()

    def _suggestion_markers(self) -> list:
        """The marker of the suggestion shown, for `ViewerState.markers`."""
        sg = self.suggestion
        return [] if sg is None else [(tuple(int(v) for v in sg.point), "suggest")]

    def accept_suggestion(self, foreground: bool | None = None) -> bool:
        """Click the suggested voxel: as its suggested class, or as `foreground` if given.

        The click goes the way of a Refine-tool click (`refine_click`): one round, in the
        history, the autosave and the clicks file like any other. Returns False when no
        suggestion is shown.
        """
        sg = self.suggestion
        if sg is None:
            return False
        fg = sg.foreground if foreground is None else bool(foreground)
        self._suggested = None
        self._show_suggestion()
        self.refine_click(tuple(int(v) for v in sg.point), foreground=fg)
        return True

    def goto_suggestion(self) -> bool:
        """Move the linked cursor (the 3D views' slices) to the suggestion; False if none."""
        sg = self.suggestion
        if sg is None:
            return False
        self.state.set_cursor(tuple(int(v) for v in sg.point))
        return True

    def _update_suggest_actions(self) -> None:
        shown = self.suggestion is not None
        for act in (
            self.act_accept_suggestion,
            self.act_accept_fg,
            self.act_accept_bg,
            self.act_goto_suggestion,
        ):
            act.setEnabled(shown)
        self.act_clear_points.setEnabled(bool(self.pending_margin) or shown)
