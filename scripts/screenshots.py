"""Render screenshots of the midseg GUI on real data (BraTS 2013, tumour core on T1c).

Drives the real application window with the shipped models, headless
(QT_QPA_PLATFORM=offscreen): margin points from the simulated user
(`midseg.data_sim.interior_margin_points`, fixed seed), stage 1, then robot
corrective clicks. Writes docs/screenshots/gui-2d.png and gui-3d.png.

    python scripts/screenshots.py [--data ../shared/data] [--case brats_2013_pat0001_1]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TUMOUR_CORE = (1, 3, 4)


def _focus(window, cursor, centre, zoom: float) -> None:
    """Put the linked cursor on ``cursor``, zoom every plane around ``centre``, hover the cursor."""
    from PyQt5.QtCore import QEvent, QPointF, Qt
    from PyQt5.QtGui import QMouseEvent
    from PyQt5.QtWidgets import QApplication

    window.state.set_cursor(cursor)
    for (name, ch), view in window.views.items():
        if ch:
            continue
        r, c, _ = view.plane.from_voxel(centre, window.state.shape)
        window.links[name].set(zoom, (r + 0.5, c + 0.5))
    first = next(iter(window.views.values()))
    pos = first.widget_pos(
        cursor
    )  # the pointer rests on the cursor: the status bar shows its value
    QApplication.sendEvent(
        first, QMouseEvent(QEvent.MouseMove, QPointF(pos), Qt.NoButton, Qt.NoButton, Qt.NoModifier)
    )


def _drive(window, image, truth, seed: int, n_clicks: int, zoom: float, label: str) -> dict:
    """Margin points -> stage 1 -> robot clicks, through the window's own actions."""
    from midseg.data_sim import corrective_click, interior_margin_points
    from midseg.metrics import dice

    window.set_image(image)
    if not window.wait_idle(300) or window.session is None:
        raise SystemExit(f"{label}: no session: {window.last_error}")
    points = interior_margin_points(truth, rng=seed, spacing=image.spacing)
    window.set_tool("margin")
    for p in points:
        window.add_margin_point(tuple(int(v) for v in p))
    t0 = time.perf_counter()
    window.run_segment()
    window.wait_idle(600)
    if window.session.mask is None:
        raise SystemExit(f"{label}: stage 1 failed: {window.last_error}")
    stats = {
        "points": len(points),
        "stage1_s": time.perf_counter() - t0,
        "dice_stage1": dice(window.session.mask, truth),
    }
    last = None
    for k in range(n_clicks):
        click = corrective_click(truth, window.session.mask, rng=seed + k, spacing=image.spacing)
        if click is None:
            break
        window.refine_click(click.point, foreground=click.foreground)
        window.wait_idle(600)
        last = click.point
    stats["clicks"] = len(window.session.rounds)
    stats["dice_final"] = dice(window.session.mask, truth)
    stats["refine_s"] = window.session.last_seconds
    # show the object: cursor at the last click (or the object's centre), zoomed in
    obj = np.argwhere(truth)
    centre = tuple(int(v) for v in (obj.min(axis=0) + obj.max(axis=0)) // 2)
    # 2D: the cursor on the last click; 3D: on the object's centre, so every view cuts it
    _focus(window, centre if truth.ndim == 3 or last is None else last, centre, zoom)
    window.state.touch()
    window.wait_idle(5)
    return stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--case", default="brats_2013_pat0001_1")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--clicks", type=int, default=2, help="robot corrective clicks after stage 1"
    )
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "screenshots")
    parser.add_argument("--model-2d", default="2d", help='2D stage-1 model (default: shipped "2d")')
    parser.add_argument("--model-3d", default="3d", help='3D stage-1 model (default: shipped "3d")')
    args = parser.parse_args(argv)

    from PyQt5.QtWidgets import QApplication

    import midseg
    from midseg.gui.window import MainWindow

    case = args.data / "brats2013" / args.case
    if not case.is_dir():
        print(f"screenshots: data not found at {case}", file=sys.stderr)
        return 1
    t1c = midseg.read_image(case / "T1c_subtrMeanDivStd.nii.gz")
    labels = midseg.read_image(case / "OTMultiClass.nii.gz").array
    core = np.isin(labels, TUMOUR_CORE).astype(np.uint8)
    args.out.mkdir(parents=True, exist_ok=True)
    app = QApplication.instance() or QApplication(sys.argv[:1])

    # 3D: the whole volume, tri-planar
    win3 = MainWindow(model=args.model_3d, autosave=False)
    win3.resize(1500, 640)
    win3.show()
    app.processEvents()
    s3 = _drive(win3, t1c, core, args.seed, args.clicks, zoom=1.7, label="3D")
    win3.apply_window_preset("z-score (-3..3)", 0)
    app.processEvents()
    win3.grab().save(str(args.out / "gui-3d.png"))

    # 2D: the axial slice with the largest tumour-core area
    z = int(np.argmax(core.sum(axis=(1, 2))))
    slice_img = midseg.Image(
        np.ascontiguousarray(t1c.array[z]), spacing=t1c.spacing[1:], path=f"T1c axial slice {z}"
    )
    win2 = MainWindow(model=args.model_2d, autosave=False)
    win2.resize(1100, 800)
    win2.show()
    app.processEvents()
    s2 = _drive(win2, slice_img, core[z], args.seed, args.clicks, zoom=1.8, label="2D")
    win2.apply_window_preset("z-score (-3..3)", 0)
    win2.contour_box.setChecked(True)
    app.processEvents()
    win2.grab().save(str(args.out / "gui-2d.png"))

    for name, s, w in (("2D", s2, win2), ("3D", s3, win3)):
        print(
            f"{name} ({w.session.model.name}): {s['points']} margin points, stage 1 {s['stage1_s']:.2f} s, "
            f"Dice {s['dice_stage1']:.3f} -> {s['dice_final']:.3f} after {s['clicks']} click(s) "
            f"(last refine {s['refine_s']:.2f} s)"
        )
    print(f"wrote {args.out / 'gui-2d.png'} and {args.out / 'gui-3d.png'}")
    for w in (win2, win3):
        w._revision = w._saved_revision  # a script's session needs no "save?" question
        w.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
