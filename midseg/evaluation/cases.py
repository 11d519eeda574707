"""Evaluation cases: the datasets known by name, their fixed selection and per-case seeds.

`load_cases` turns a dataset name into `Case` objects (image, ground truth,
spacing); `case_seed` gives the seed sequence of a case's simulated margin points.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..datasets import REGISTRY
from ..errors import InvalidInputError

__all__ = ["DATASETS", "BRATS_TEST_CASES", "default_data_root", "Case", "case_seed", "load_cases"]


#: Datasets known by name: what they are and whether the models saw the object.
DATASETS: dict[str, dict] = {
    "brats-tc-t1c": {
        "object": "tumour core",
        "image": "T1c",
        "seen": True,
        "target": "tumour_core",
    },
    "brats-wt-flair": {
        "object": "whole tumour",
        "image": "FLAIR",
        "seen": False,
        "target": "whole_tumour",
    },
    "brats-brain": {"object": "brain", "image": "T1c", "seen": False, "target": "brain"},
    "hc18": {"object": "fetal head", "image": "ultrasound", "seen": False, "dims": (2,)},
    "dev-unseen": {
        "object": "16 development objects (midseg.datasets.DEV_UNSEEN)",
        "image": "CT, MR, SPECT",
        "seen": False,
        "development": True,
    },
}
#: The fixed BraTS testing split of ../shared/data/README.md (`midseg.datasets.REGISTRY`).
BRATS_TEST_CASES = REGISTRY["brats2013"].splits["test"]


def default_data_root() -> Path:
    """``$MIDSEG_DATA`` or ``../shared/data`` next to the repository."""
    env = os.environ.get("MIDSEG_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2].parent / "shared" / "data"


@dataclass(frozen=True, eq=False)
class Case:
    """One evaluation case.

    Attributes
    ----------
    dataset, case : str
        Dataset name and case id (``"brats_2013_pat0001_1:z072"`` for a slice).
    image : (Y, X) or (Z, Y, X) ndarray of float32
    gt : ndarray of uint8, the image's shape (0/1)
    spacing : tuple of float, array order (mm)
    """

    dataset: str
    case: str
    image: np.ndarray
    gt: np.ndarray
    spacing: tuple[float, ...]

    @property
    def dims(self) -> int:
        return self.gt.ndim


def _seed_of(*parts: Any) -> int:
    return zlib.crc32("/".join(str(p) for p in parts).encode())


def case_seed(seed: int, dataset: str, case: str) -> list[int]:
    """Seed sequence of a case's margin points: the global seed and a hash of the case."""
    return [int(seed), _seed_of(dataset, case)]


def _brats_target(name: str, case_dir: Path) -> np.ndarray:
    from ..io import read_image

    target = REGISTRY["brats2013"].target(DATASETS[name]["target"])
    labels = np.rint(read_image(case_dir / target.label).array).astype(np.int16)
    return np.isin(labels, target.values).astype(np.uint8)


def load_cases(
    name: str,
    *,
    dims: int = 2,
    data_root: str | os.PathLike | None = None,
    seed: int = 0,
    hc18_count: int = 200,
    slices_per_case: int = 10,
    min_pixels: int = 100,
    max_cases: int | None = None,
    skip_cases: int = 0,
    objects: Sequence[str] | None = None,
) -> list[Case]:
    """Load the testing cases of a named dataset.

    Parameters
    ----------
    name : str
        A key of `DATASETS`.
    dims : {2, 3}
        3: whole volumes (BraTS testing cases; dev-unseen objects cropped around
        the object, `midseg.datasets.dev_unseen_cases`). 2: hc18 images, the
        dev-unseen objects' largest axial slices, or axial BraTS
        slices: of each testing case's slices whose object has at least
        `min_pixels` pixels, a seeded sample of `slices_per_case` (rng seeded
        with ``[seed, crc32("dataset/case")]``), in slice order.
    seed : int
        Chooses the hc18 subset (the first `hc18_count` names of a seeded
        permutation of the sorted names) and the BraTS slices.
    max_cases : int, optional
        Keep only the first cases (after sampling; for quick runs).
    objects : sequence of str, optional
        dev-unseen only: the objects to load (names of `midseg.datasets.DEV_UNSEEN`;
        default all).
    skip_cases : int
        Drop this many cases first (to split one selection over several runs:
        ``skip_cases=60, max_cases=40`` is cases 60..99 of the same selection).

    Returns
    -------
    list of Case
    """
    from ..io import read_image, read_mask

    if name not in DATASETS:
        raise InvalidInputError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    if dims not in DATASETS[name].get("dims", (2, 3)):
        raise InvalidInputError(f"dataset {name!r} has no {dims}D version")
    root = Path(data_root) if data_root is not None else default_data_root()
    cases: list[Case] = []
    if objects is not None and name != "dev-unseen":
        raise InvalidInputError(f"objects selects dev-unseen objects, not {name!r} cases")
    if name == "dev-unseen":
        from ..datasets import dev_unseen_cases

        cases = dev_unseen_cases(dims=dims, data_root=root, objects=objects)[skip_cases:]
        return cases[:max_cases] if max_cases is not None else cases
    if name == "hc18":
        folder = root / "hc18"
        if not folder.is_dir():
            raise InvalidInputError(f"hc18 data not found at '{folder}'")
        target = REGISTRY["hc18"].target("fetal_head")  # image / mask folders
        names = sorted(p.name for p in (folder / target.image).glob("*.png"))
        if not names:
            raise InvalidInputError(f"no hc18 images (*.png) in '{folder / target.image}'")
        order = np.random.default_rng([seed, _seed_of("hc18")]).permutation(len(names))
        chosen = [names[i] for i in order[:hc18_count]][skip_cases:]
        if max_cases is not None:
            chosen = chosen[:max_cases]
        for n in chosen:
            img = read_image(folder / target.image / n)
            gt = (read_mask(folder / target.label / n) > 0).astype(np.uint8)
            cases.append(
                Case(name, Path(n).stem, img.array.astype(np.float32), gt, tuple(img.spacing))
            )
        return cases
    folder = root / "brats2013"
    if not folder.is_dir():
        raise InvalidInputError(f"BraTS data not found at '{folder}'")
    for cid in BRATS_TEST_CASES:
        if max_cases is not None and len(cases) >= skip_cases + max_cases:
            break
        case_dir = folder / cid
        target = REGISTRY["brats2013"].target(DATASETS[name]["target"])
        img = read_image(case_dir / target.image)
        arr = img.array.astype(np.float32)
        gt = _brats_target(name, case_dir)
        if dims == 3:
            cases.append(Case(name, cid, arr, gt, tuple(img.spacing)))
            continue
        area = gt.reshape(gt.shape[0], -1).sum(axis=1)
        eligible = np.flatnonzero(area >= min_pixels)
        rng = np.random.default_rng(case_seed(seed, name, cid))
        pick = np.sort(
            rng.choice(eligible, size=min(slices_per_case, eligible.size), replace=False)
        )
        for z in pick:
            cases.append(
                Case(
                    name,
                    f"{cid}:z{int(z):03d}",
                    np.ascontiguousarray(arr[z]),
                    np.ascontiguousarray(gt[z]),
                    tuple(img.spacing[1:]),
                )
            )
    cases = cases[skip_cases:]
    return cases[:max_cases] if max_cases is not None else cases
