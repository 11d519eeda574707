"""`midseg demo`: the main job on a bundled default, or on the user's image and clicks.

The default is a deterministic 2D phantom made by code (no download, no shared
data) with stored margin points and two stored click rounds. It prints Dice
after every step and writes the mask, the clicks file and an overlay PNG.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import numpy as np

from .errors import InvalidInputError

__all__ = ["phantom", "demo_add_arguments", "demo_run", "run_demo"]

PHANTOM_SHAPE = (160, 192)
PHANTOM_SPACING = (0.8, 0.8)


def phantom(seed: int = 7):
    """A 2D MR-like phantom with a lobed lesion and its ground truth.

    Returns
    -------
    image : Image
        (160, 192) float32, spacing (0.8, 0.8) mm: a bright head-like ellipse
        with texture, a darker ventricle, and a bright lesion with a lobe,
        plus Gaussian noise. Deterministic for a given ``seed``.
    truth : (160, 192) ndarray of uint8
        The lesion mask.
    """
    from scipy import ndimage

    from .io import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.indices(PHANTOM_SHAPE, dtype=np.float64)
    head = ((yy - 80) / 70) ** 2 + ((xx - 96) / 84) ** 2 <= 1
    ventricle = ((yy - 70) / 14) ** 2 + ((xx - 80) / 9) ** 2 <= 1
    body = ((yy - 95) / 20) ** 2 + ((xx - 122) / 16) ** 2 <= 1
    lobe = ((yy - 118) / 9) ** 2 + ((xx - 140) / 12) ** 2 <= 1
    lesion = body | lobe
    texture = ndimage.gaussian_filter(rng.normal(size=PHANTOM_SHAPE), 3) * 6
    img = np.where(head, 0.9, 0.0) + texture * head
    img = np.where(ventricle, 0.25, img)
    img = np.where(lesion, 1.6, img)
    img = ndimage.gaussian_filter(img, 1.0) + rng.normal(scale=0.08, size=PHANTOM_SHAPE)
    return Image(img.astype(np.float32), spacing=PHANTOM_SPACING), lesion.astype(np.uint8)


def _stored_clicks() -> dict:
    text = (
        resources.files("midseg").joinpath("data/phantom.clicks.json").read_text(encoding="utf-8")
    )
    return json.loads(text)


def _overlay_png(
    path: Path, image, steps: list[tuple[str, np.ndarray]], session, truth=None
) -> None:
    """One panel per step: the mask's outline (yellow) over the image, the ground truth's
    (green) when given, the points (margin magenta, foreground red, background cyan),
    and a legend. A volume shows the axial slice with the most foreground, oriented as
    the GUI shows it (`midseg.gui.planes.plane_for`: anterior at the top, patient left on
    the right, as in 3D Slicer and ITK-SNAP), so a CT is not shown upside down."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    from .gui.planes import plane_for

    arr = image.array if not image.multichannel else image.array[0]
    plane = plane_for("2d") if image.ndim == 2 else plane_for("axial", image.direction)
    z = None
    if image.ndim == 3:
        z = int(
            np.argmax(steps[-1][1].sum(axis=tuple(a for a in range(3) if a != plane.normal_axis)))
        )
    view = plane.slice_of(arr, z)
    fig, axes = plt.subplots(1, len(steps), figsize=(3.2 * len(steps), 3.7), squeeze=False)
    lo, hi = np.percentile(view, [1, 99])

    def points(ax, pts, **style):
        pts = [
            plane.from_voxel(p, arr.shape)
            for p in np.atleast_2d(pts)
            if z is None or int(p[plane.normal_axis]) == z
        ]
        if pts:
            ax.plot([c for r, c, _ in pts], [r for r, c, _ in pts], "o", mec="white", **style)

    for ax, (title, mask) in zip(axes[0], steps):
        ax.imshow(view, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
        if truth is not None and np.asarray(truth).any():
            ax.contour(
                plane.slice_of(np.asarray(truth) != 0, z),
                levels=[0.5],
                colors=["#2bd94a"],
                linewidths=1.0,
            )
        if mask.any():
            ax.contour(plane.slice_of(mask, z), levels=[0.5], colors=["#ffd400"], linewidths=1.2)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    if len(session.margin_points):
        points(axes[0][0], session.margin_points, ms=4, mfc="#ff3df5")
    for k, r in enumerate(session.rounds, start=1):
        ax = axes[0][min(k, len(steps) - 1)]
        if len(r.foreground):
            points(ax, r.foreground, ms=5, mfc="#e8202a")
        if len(r.background):
            points(ax, r.background, ms=5, mfc="#18d0e8")
    handles = [Line2D([], [], color="#ffd400", label="mask")]
    if truth is not None:
        handles.append(Line2D([], [], color="#2bd94a", label="ground truth"))
    for colour, label in (
        ("#ff3df5", "margin points"),
        ("#e8202a", "foreground click"),
        ("#18d0e8", "background click"),
    ):
        handles.append(
            Line2D([], [], ls="", marker="o", mfc=colour, mec="white", color=colour, label=label)
        )
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_demo(
    *,
    image_path=None,
    clicks_path=None,
    truth_path=None,
    out_dir="midseg-demo",
    model=None,
    echo=print,
    label: int | None = None,
) -> dict:
    """Run stage 1 and every stored click round; returns Dice per step and the files written."""
    from . import metrics
    from .batch import read_ground_truth
    from .io import read_image, write_image, write_mask
    from .session import Session, read_clicks

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if image_path is None:
        if clicks_path is not None:
            raise InvalidInputError("--clicks needs --image (the clicks belong to an image)")
        image, truth = phantom()
        data = _stored_clicks()
        stem = "phantom"
        write_image(out / "phantom.image.nii.gz", image)
        echo("midseg demo: built-in 2D phantom (160x192, 0.8 mm), stored margin points and clicks")
    else:
        if clicks_path is None:
            raise InvalidInputError("--image needs --clicks (a clicks JSON made for that image)")
        image = read_image(image_path)
        data = read_clicks(clicks_path)
        if truth_path is not None and not str(truth_path):
            raise InvalidInputError("the ground-truth path is empty")
        truth = (
            (read_ground_truth(truth_path, image, label) != 0).astype(np.uint8)
            if truth_path
            else None
        )
        stem = Path(image_path).name.split(".")[0]
        echo(f"midseg demo: {image!r}")
    steps, dices = [], []

    def report(session):
        n = len(session.rounds)
        if n == 0:
            title = f"stage 1 ({len(session.margin_points)} margin points)"
        else:
            r = session.rounds[-1]
            title = f"round {n} (+{len(r.foreground)} fg, +{len(r.background)} bg)"
        mask = session.mask
        steps.append((title, mask))
        ms = session.last_seconds * 1000
        if truth is not None:
            d = metrics.dice(mask, truth)
            dices.append(d)
            echo(f"  {title:<28s} Dice {d:.4f}   ({ms:.0f} ms)")
        else:
            echo(f"  {title:<28s} {int(mask.sum())} voxels   ({ms:.0f} ms)")

    session = Session.from_clicks(data, image, model=model, callback=report)

    suffix = ".nii.gz"
    mask_path = out / f"{stem}.mask{suffix}"
    clicks_out = out / f"{stem}.clicks.json"
    overlay = out / f"{stem}.overlay.png"
    final = session.mask
    assert final is not None  # from_clicks ran stage 1
    write_mask(mask_path, final, like=image)
    session.save_clicks(clicks_out)
    _overlay_png(overlay, image, steps, session, truth)
    written = ([out / "phantom.image.nii.gz"] if image_path is None else []) + [
        mask_path,
        clicks_out,
        overlay,
    ]
    echo("wrote " + ", ".join(str(p) for p in written))
    return {
        "dice": dices,
        "mask": str(mask_path),
        "clicks": str(clicks_out),
        "overlay": str(overlay),
    }


def demo_add_arguments(parser) -> None:
    parser.description += (
        "\n\nWithout arguments: a deterministic 2D phantom with stored margin points and two "
        "stored click rounds; prints Dice after each step and writes the mask, the clicks "
        "file and an overlay PNG to --out."
    )
    parser.add_argument("--image", default=None, help="your image instead of the phantom")
    parser.add_argument("--clicks", default=None, help="clicks JSON for --image")
    parser.add_argument(
        "--ground-truth", default=None, help="reference mask for --image (to print Dice)"
    )
    parser.add_argument(
        "--label",
        type=int,
        default=None,
        metavar="N",
        help="the object's value in a multi-label --ground-truth",
    )
    parser.add_argument(
        "--model",
        default=None,
        help="model name, weights path or ensemble card (.json) (default: the clicks file's)",
    )
    parser.add_argument(
        "--out", default="midseg-demo", help="output directory (default: ./midseg-demo)"
    )


def demo_run(args) -> int:
    run_demo(
        image_path=args.image,
        clicks_path=args.clicks,
        truth_path=args.ground_truth,
        out_dir=args.out,
        model=args.model,
        label=args.label,
    )
    return 0


def make_phantom_clicks(path: str | Path, *, model="2d", seed: int = 0) -> dict:
    """(Re)create the stored demo clicks: simulated margin points + two robot click rounds.

    This is how ``midseg/data/phantom.clicks.json`` was made; the demo itself
    only reads that file, so its output does not depend on the simulator.
    """
    from .data_sim import corrective_click, interior_margin_points
    from .session import Session

    image, truth = phantom()
    session = Session(image, model=model)
    session.segment(interior_margin_points(truth, rng=seed))
    for _ in range(2):
        click = corrective_click(truth, session.mask, mode="deepest", spacing=image.spacing)
        if click is None:
            break
        fg, bg = ([click.point], []) if click.foreground else ([], [click.point])
        session.refine(fg, bg)
    session.save_clicks(path)
    return session.clicks_dict()
