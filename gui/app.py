"""Entry points of the PyQt5 application: `midseg-gui [IMAGE]` and `midseg gui [IMAGE]`.

`add_arguments`/`run` are the hooks `midseg.cli` looks for; `main` is the
console script. This module imports Qt only inside `run`, so building the
`midseg` command line never needs PyQt5.
"""

from __future__ import annotations

import argparse
import os
import sys

from midseg._package import exit_if_shadowed

exit_if_shadowed("midseg-gui")  # a one-line error, not a broken import below
from midseg._checks import DEFAULT_LAM, DEFAULT_SIGMA  # noqa: E402
from midseg.errors import MidsegError  # noqa: E402

__all__ = ["add_arguments", "run", "main"]

DESCRIPTION = """\
Interactive segmentation of a 2D image or a 3D volume with midseg (MIDeepSeg).

Workflow: with the Margin points tool (M), left-click 3-6 points just inside the
object's boundary on its extremes and press Enter (stage 1, CNN). Then with the
Refine tool (R) left-click where the object was missed and right-click where the
mask leaks; every click refines at once (no CNN pass). Scribble (B) paints
many clicks at a time. Ctrl+Z / Ctrl+Shift+Z undo and redo. Tools > Suggest next
click (off by default) marks, after each round, where the mask is most likely wrong: a
hint, right about a third to half of the time; A accepts it as the suggested class
(Shift+A foreground, Alt+A background), G goes to its slices, Esc hides it.

Several structures: the Objects panel adds (Ctrl+N), renames, recolours, hides and
deletes objects; the selected one is what the tools, undo and redo act on. Paint (P)
and Erase (E) brushes edit its mask, one undoable step per stroke. File > Load label
map / Save label map (Ctrl+E): .seg.nrrd, NIfTI + segments sidecar, DICOM-SEG.

Views: wheel zooms, Shift+wheel or Up/Down scrolls slices, middle-drag or
Ctrl+drag pans, Shift+drag (or right-drag in Navigate) sets window/level.
Clicks are autosaved beside the image (or in ~/.cache/midseg/autosave when that
folder is read-only) and offered back when the image is opened again.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the GUI's options to ``parser`` (used by `midseg gui` and `midseg-gui`)."""
    parser.add_argument("image", nargs="?", help="image file or DICOM folder to open")
    parser.add_argument(
        "--second",
        metavar="IMAGE",
        help="co-registered second modality (e.g. CT with PET): shown side by side "
        "and given to the model as a second channel (needs a 2-channel model)",
    )
    parser.add_argument(
        "--model",
        metavar="NAME_OR_PT",
        help='stage-1 model: "2d", "3d", a .pt file with its model card or an ensemble '
        "card (.json) "
        "(default: the shipped model matching the image)",
    )
    parser.add_argument(
        "--clicks", metavar="JSON", help="replay this clicks file on the image at start"
    )
    parser.add_argument(
        "--lam",
        type=float,
        default=DEFAULT_LAM,
        help=f"initial λ, weight of the graph cut's smoothness term (default {DEFAULT_LAM:g})",
    )
    parser.add_argument(
        "--sigma",
        type=float,
        default=DEFAULT_SIGMA,
        help=f"initial σ, intensity scale of the smoothness term (default {DEFAULT_SIGMA:g})",
    )
    parser.add_argument(
        "--device", help="torch device for stage 1 (default: cuda if available, else cpu)"
    )
    parser.add_argument(
        "--no-autosave", action="store_true", help="do not autosave clicks after every step"
    )
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = DESCRIPTION


def _check_display() -> None:
    """A one-line error instead of Qt's abort when Linux has no display to open."""
    if not sys.platform.startswith("linux") or os.environ.get("QT_QPA_PLATFORM"):
        return
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise MidsegError(
            "the GUI needs a display: neither DISPLAY nor WAYLAND_DISPLAY is set (on a server, "
            "run it under Xvfb, e.g. xvfb-run midseg gui, or use the Python API / CLI)"
        )


def run(args: argparse.Namespace) -> int:
    """Open the main window with the options of `add_arguments`; returns Qt's exit status."""
    try:
        from PyQt5.QtWidgets import QApplication
    except ImportError as exc:
        raise MidsegError(
            f'the GUI needs PyQt5 ({exc}); install it with: pip install -e ".[gui]" in the midseg checkout'
        ) from None
    if args.second and not args.image:
        raise MidsegError("--second needs an IMAGE to go with")
    _check_display()
    from .window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("midseg")
    window = MainWindow(
        model=args.model,
        autosave=not args.no_autosave,
        lam=args.lam,
        sigma=args.sigma,
        device=args.device,
    )
    _show_uncaught_errors(window)
    window.show()
    if args.image:
        window.open_image(args.image, second=args.second, clicks=args.clicks)
    return int(app.exec_())


def _show_uncaught_errors(window) -> None:
    """Route exceptions escaping a Qt slot to an error box instead of aborting (PyQt's default)."""
    previous = sys.excepthook

    def hook(exc_type, exc, tb):
        previous(exc_type, exc, tb)  # still printed, for bug reports
        if issubclass(exc_type, Exception):
            try:
                window.show_error("Unexpected error", exc)
            except Exception:  # pragma: no cover - the box itself failed; the print stands
                pass

    sys.excepthook = hook


def main(argv: list[str] | None = None) -> int:
    """The `midseg-gui` console script; returns the exit status."""
    parser = argparse.ArgumentParser(prog="midseg-gui")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    add_arguments(parser)
    args = parser.parse_args(argv)
    from midseg.cli import run_entry

    # the window shows midseg's warnings itself
    return run_entry("midseg-gui", run, args, print_warnings=False)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
