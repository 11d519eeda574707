"""A scripted session of the midseg GUI on a real chest CT: two structures, brushes, a label map.

Drives the real application window with real mouse clicks (QTest) on the views, the
shipped 3D model and the chest CT of ``dev_unseen/lung_ct`` (NSCLC-Radiomics LUNG1-001,
development data only): the tumour and the spinal cord, each from interior margin points
of the simulated user (`midseg.data_sim.interior_margin_points`, fixed seed) and one
corrective click (`midseg.data_sim.corrective_click`); then a paint stroke, an erase
stroke, an undo, and the label map saved as ``.seg.nrrd`` and read back. Screenshots of
the window (``QWidget.grab``) go to ``docs/screenshots/``.

Run it under a real X server, e.g.::

    Xvfb :99 -screen 0 1600x1000x24 &
    DISPLAY=:99 python scripts/gui_session.py --out /tmp/gui-session

(``QT_QPA_PLATFORM=offscreen`` works too, without a display.) It prints each step and
exits non-zero when a step does not do what it should.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
TUMOUR, CORD = 1, 2  # values in dev_unseen/lung_ct/label.nii.gz
MAX_PNG = 300_000  # bytes per screenshot in docs/


def _fail(msg: str) -> None:
    raise SystemExit(f"gui_session: {msg}")


def _save_png(widget, path: Path) -> int:
    """Grab ``widget`` to ``path`` (8-bit palette when the full colour PNG is too big)."""
    from PyQt5.QtCore import Qt
    from PyQt5.QtGui import QImage

    image = widget.grab().toImage()
    image.save(str(path), "PNG")
    if path.stat().st_size > MAX_PNG:
        image.convertToFormat(QImage.Format_Indexed8, Qt.ThresholdDither).save(str(path), "PNG")
    return path.stat().st_size


class Driver:
    """Real mouse input on the window's views, with waits for the worker."""

    def __init__(self, window, app):
        self.w, self.app = window, app

    def idle(self, timeout: float = 600) -> None:
        if not self.w.wait_idle(timeout):
            _fail(f"a step did not finish in {timeout} s")
        self.app.processEvents()

    def view(self, name: str = "axial"):
        return self.w.views[(name, 0)]

    def show_slice(self, voxel) -> None:
        self.w.state.set_cursor(tuple(int(v) for v in voxel))
        self.app.processEvents()

    def click(self, voxel, button=None, view: str = "axial") -> None:
        from PyQt5.QtCore import QPoint, Qt
        from PyQt5.QtTest import QTest

        self.show_slice(voxel)
        v = self.view(view)
        p = v.widget_pos(voxel)
        QTest.mouseClick(v, button or Qt.LeftButton, Qt.NoModifier, QPoint(int(p.x()), int(p.y())))
        self.app.processEvents()

    def hover(self, voxel, view: str = "axial") -> None:
        from PyQt5.QtCore import QEvent, Qt
        from PyQt5.QtGui import QMouseEvent

        v = self.view(view)
        self.app.sendEvent(
            v,
            QMouseEvent(
                QEvent.MouseMove, v.widget_pos(voxel), Qt.NoButton, Qt.NoButton, Qt.NoModifier
            ),
        )
        self.app.processEvents()

    def stroke(self, start, end, button=None, view: str = "axial") -> None:
        """Press on voxel ``start``, move to ``end`` with the button held, release."""
        from PyQt5.QtCore import QEvent, QPointF, Qt
        from PyQt5.QtGui import QMouseEvent
        from PyQt5.QtTest import QTest

        button = button or Qt.LeftButton
        self.show_slice(start)
        v = self.view(view)
        a, b = v.widget_pos(start), v.widget_pos(end)
        QTest.mousePress(v, button, Qt.NoModifier, a.toPoint())
        for t in np.linspace(0, 1, 16)[1:]:
            pos = QPointF((a + (b - a) * t).toPoint())
            self.app.sendEvent(
                v, QMouseEvent(QEvent.MouseMove, pos, Qt.NoButton, button, Qt.NoModifier)
            )
        QTest.mouseRelease(v, button, Qt.NoModifier, b.toPoint())
        self.app.processEvents()


def segment_structure(d: Driver, truth: np.ndarray, spacing, seed: int, label: str) -> dict:
    """Margin points (real clicks) -> Segment -> one corrective click; Dice before and after."""
    from PyQt5.QtCore import Qt

    from midseg.data_sim import corrective_click, interior_margin_points
    from midseg.metrics import dice

    w = d.w
    points = interior_margin_points(truth, rng=seed, spacing=spacing)
    w.set_tool("margin")
    for p in points:
        d.click(p)
    if len(w.pending_margin) != len(points):
        _fail(f"{label}: {len(points)} margin clicks gave {len(w.pending_margin)} points")
    t0 = time.perf_counter()
    w.act_segment.trigger()  # Edit > Segment (Enter)
    d.idle()
    if w.session.mask is None:
        _fail(f"{label}: stage 1 failed: {w.last_error}")
    stats = {
        "points": len(points),
        "stage1_s": time.perf_counter() - t0,
        "dice_stage1": dice(w.session.mask, truth),
    }
    click = corrective_click(truth, w.session.mask, rng=seed, spacing=spacing)
    if click is not None:
        d.click(click.point, Qt.LeftButton if click.foreground else Qt.RightButton)
        d.idle()
        stats["click"] = ("fg" if click.foreground else "bg", tuple(int(v) for v in click.point))
    stats["dice"] = dice(w.session.mask, truth)
    stats["rounds"] = len(w.session.rounds)
    print(
        f"{label}: {stats['points']} margin points, stage 1 {stats['stage1_s']:.1f} s, "
        f"Dice {stats['dice_stage1']:.3f} -> {stats['dice']:.3f} after "
        f"{stats['rounds']} click round(s) {stats.get('click', '')}"
    )
    return stats


def focus(d: Driver, centre, zoom: float) -> None:
    """Cursor on ``centre``, every plane zoomed around it."""
    w = d.w
    w.state.set_cursor(tuple(int(v) for v in centre))
    for (name, ch), view in w.views.items():
        r, c, _ = view.plane.from_voxel(centre, w.state.shape)
        w.links[name].set(zoom, (r + 0.5, c + 0.5))
    d.app.processEvents()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder for the saved label map (default: a temporary folder)",
    )
    parser.add_argument(
        "--shots",
        type=Path,
        default=REPO / "docs" / "screenshots",
        help="folder for the screenshots",
    )
    parser.add_argument("--model", default="3d", help='3D stage-1 model (default: shipped "3d")')
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    if not os.environ.get("DISPLAY") and os.environ.get("QT_QPA_PLATFORM") != "offscreen":
        print(
            "gui_session: no X display; run under Xvfb (DISPLAY=:99) or set "
            "QT_QPA_PLATFORM=offscreen",
            file=sys.stderr,
        )
        return 1
    case = args.data / "dev_unseen" / "lung_ct"
    if not (case / "image.nii.gz").is_file():
        print(f"gui_session: data not found at {case}", file=sys.stderr)
        return 1
    from PyQt5.QtWidgets import QApplication

    import midseg
    from midseg.gui.window import MainWindow
    from midseg.labelmap import read_labelmap

    out = args.out or Path(tempfile.mkdtemp(prefix="midseg-gui-session-"))
    out.mkdir(parents=True, exist_ok=True)
    args.shots.mkdir(parents=True, exist_ok=True)
    truth_all = np.asarray(midseg.read_image(case / "label.nii.gz").array)

    app = QApplication.instance() or QApplication(sys.argv[:1])
    w = MainWindow(model=args.model, autosave=False)
    w.resize(1560, 900)
    w.show()
    app.processEvents()
    d = Driver(w, app)
    print(f"platform {app.platformName()}, display {os.environ.get('DISPLAY')}")

    # 1. open the CT through the window (read in the worker), lung window
    t0 = time.perf_counter()
    if not w.open_image(case / "image.nii.gz"):
        _fail("open_image refused")
    d.idle()
    if w.session is None:
        _fail(f"no session: {w.last_error}")
    print(f"opened {case / 'image.nii.gz'} {w.state.shape} in {time.perf_counter() - t0:.1f} s")
    w.apply_window_preset("CT soft tissue (40/400)", 0)
    spacing = w.image.spacing

    # 2. the tumour, then the spinal cord, each its own object
    if not w.rename_object("Segment_1", "tumour"):
        _fail(f"rename: {w.last_error}")
    tumour = segment_structure(
        d, (truth_all == TUMOUR).astype(np.uint8), spacing, args.seed, "tumour"
    )
    if w.add_object("spinal cord") != "spinal cord":
        _fail(f"add_object: {w.last_error}")
    cord_truth = (truth_all == CORD).astype(np.uint8)
    cord = segment_structure(d, cord_truth, spacing, args.seed, "spinal cord")
    tumour_mask = w.labels.object("tumour").mask.copy()

    # a view where both show: the axial slice through the tumour's centre
    obj = np.argwhere(truth_all == TUMOUR)
    centre = tuple(int(v) for v in (obj.min(0) + obj.max(0)) // 2)
    cz = np.argwhere(cord_truth[centre[0]])
    mid = ((np.array(centre[1:]) + cz.mean(0)) / 2).astype(int)
    w.set_tool("navigate")
    focus(d, (centre[0], int(mid[0]), int(mid[1])), 2.2)
    # the cursor: axial through the tumour, coronal through it too, sagittal along the cord
    w.state.set_cursor((centre[0], centre[1], int(cz[:, 1].mean())))
    app.processEvents()
    size = _save_png(w, args.shots / "gui-objects.png")
    print(f"screenshot gui-objects.png ({size / 1e3:.0f} kB)")

    # 3. paint on the spinal cord on this slice, erase part of it, undo the erase
    s = w.session
    before = s.mask.copy()
    z = centre[0]
    cord_here = np.argwhere(cord_truth[z])
    cy, cx = (int(v) for v in cord_here.mean(0))
    w.set_tool("paint")
    w.brush_box.setValue(3.0)
    d.stroke((z, cy - 4, cx - 12), (z, cy + 4, cx - 12))  # beside the cord, on purpose
    painted = s.mask.copy()
    if s.edits != 1 or int(painted.sum()) <= int(before.sum()):
        _fail(f"the paint stroke changed nothing (edits {s.edits})")
    w.set_tool("erase")
    w.brush_box.setValue(2.0)
    d.stroke((z, cy - 6, cx - 12), (z, cy + 6, cx - 12))
    erased = s.mask.copy()
    if s.edits != 2 or int(erased.sum()) >= int(painted.sum()):
        _fail("the erase stroke removed nothing")
    print(
        f"painted {int(painted.sum() - before.sum())} voxels, erased "
        f"{int(painted.sum() - erased.sum())} (slice z={z})"
    )
    # re-paint (for the screenshot) and show it before undoing
    w.set_tool("paint")
    w.brush_box.setValue(3.0)
    d.stroke((z, cy - 4, cx - 12), (z, cy + 4, cx - 12))
    focus(d, (z, cy, cx - 6), 4.0)
    w.state.set_cursor((z, cy, cx - 6))
    d.hover((z, cy + 4, cx - 12))  # the pointer rests where the stroke ended
    app.processEvents()
    size = _save_png(w, args.shots / "gui-paint.png")
    print(f"screenshot gui-paint.png ({size / 1e3:.0f} kB)")
    w.act_undo.trigger()  # Edit > Undo: the re-paint
    if not np.array_equal(s.mask, erased):
        _fail("undo did not restore the mask after the erase")
    w.act_undo.trigger()  # and the erase
    if not np.array_equal(s.mask, painted):
        _fail("undo did not restore the painted mask")
    if not np.array_equal(w.labels.object("tumour").mask, tumour_mask):
        _fail("painting the spinal cord changed the tumour")
    print("undo: back to the painted mask; the tumour untouched")

    # 4. save the label map and read it back
    target = out / "lung1_structures.seg.nrrd"
    if not w.save_labelmap(target):
        _fail(f"save_labelmap: {w.last_error}")
    back, segments = read_labelmap(target)
    arr = np.asarray(back.array)
    for seg in segments:
        print(
            f"  {target.name}: value {seg.value} {seg.name!r} colour "
            f"({', '.join(f'{c:.2f}' for c in seg.color)}), {int((arr == seg.value).sum())} voxels"
        )
    names = [seg.name for seg in segments]
    if names != ["tumour", "spinal cord"]:
        _fail(f"the label map holds {names}")
    if not np.array_equal(arr == 2, w.labels.labelmap() == 2):
        _fail("the saved spinal cord differs from the session's")
    print(f"saved {target}")
    print(f"tumour Dice {tumour['dice']:.3f}, spinal cord Dice {cord['dice']:.3f}")
    w._revision = w._saved_revision
    w.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
