"""The data sets of ``../shared/data``, described once: the dataset registry.

`REGISTRY` maps a set's name to a `DataSet`: its folder, licence, modality, fixed split
(train / validation / test case folders) and its `Target` objects (which image file, which
label file, which label values make the object, which role it has). Training reads the
pool through `training_items`; evaluation reads ``dev_unseen/`` through `dev_unseen_cases`
(objects in `DEV_UNSEEN`). Roles follow ``../shared/data/README.md`` ("Roles"):

- ``train``: a target of a training-pool set; its train split may be trained on, its
  validation split chooses weights;
- ``report``: a test object (seen or unseen), never trained on;
- ``choose``: the role of the ``dev_unseen`` *set*, whose objects are for choosing methods
  and reporting development results, never for training (each object is a target of role
  ``report``). `training_items` and `check_case_training` refuse the last two, and every
  set marked development-use-only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import InvalidInputError

__all__ = [
    "DevObject",
    "DEV_UNSEEN",
    "dev_unseen_cases",
    "object_crop",
    "CROP_MARGIN_MM",
    "Target",
    "DataSet",
    "REGISTRY",
    "training_items",
    "data_root_default",
    "registry_case",
    "check_case_training",
    "case_files",
]

#: Margin (mm) kept around an object's bounding box when its volume is cropped for the
#: evaluation, at least `CROP_MARGIN_VOXELS` voxels per axis: the relaxed box of the margin
#: points and of every click lies inside it, and a 512x512x134 CT does not cost every
#: method a whole-volume pass per click (speed on whole volumes is measured elsewhere).
CROP_MARGIN_MM = 30.0
CROP_MARGIN_VOXELS = 8


@dataclass(frozen=True)
class DevObject:
    """One development object of ``dev_unseen/``.

    Attributes
    ----------
    name : str
        Case id, ``"<folder>/<object>"``.
    image, label : str
        Paths relative to ``dev_unseen/``.
    values : tuple of int
        Label values whose union is the target.
    modality : str
        ``"CT"`` (HU), ``"MR"``, ``"SPECT"``.
    largest_component : bool
        Keep only the largest 26-connected component of the target (the robot user
        segments one object; a label split into pieces by the labelling is one organ).
    """

    name: str
    image: str
    label: str
    values: tuple[int, ...]
    modality: str
    largest_component: bool = True


#: The development objects (``../shared/data/README.md``, ``dev_unseen/``). No object of
#: these types is in the training pool. Grey matter of mni152 (a 1 mm cortical ribbon in
#: 288 pieces) is left out: a click protocol cannot delineate it; so are the spinal cord's
#: grey-matter masks (a butterfly a few voxels wide per slice). ``spinal_cord_mr/mt``
#: (five 17 mm slices of 40x40 voxels, the cord about 8 voxels across) was left out when
#: the list was fixed and stays out, so that development numbers stay comparable.
DEV_UNSEEN: tuple[DevObject, ...] = (
    DevObject("lung_ct/tumour", "lung_ct/image.nii.gz", "lung_ct/label.nii.gz", (1,), "CT"),
    DevObject("lung_ct/spinal_cord", "lung_ct/image.nii.gz", "lung_ct/label.nii.gz", (2,), "CT"),
    DevObject("lung_ct/left_lung", "lung_ct/image.nii.gz", "lung_ct/label.nii.gz", (3,), "CT"),
    DevObject("lung_ct/right_lung", "lung_ct/image.nii.gz", "lung_ct/label.nii.gz", (4,), "CT"),
    DevObject(
        "spinal_cord_mr/t1",
        "spinal_cord_mr/t1/t1w.nii.gz",
        "spinal_cord_mr/t1/t1w_seg-manual.nii.gz",
        (1,),
        "MR",
    ),
    DevObject(
        "spinal_cord_mr/t2",
        "spinal_cord_mr/t2/t2.nii.gz",
        "spinal_cord_mr/t2/t2_seg-manual.nii.gz",
        (1,),
        "MR",
    ),
    DevObject(
        "spinal_cord_mr/t2s",
        "spinal_cord_mr/t2s/t2s.nii.gz",
        "spinal_cord_mr/t2s/t2s_seg.nii.gz",
        (1,),
        "MR",
    ),
    DevObject(
        "brain_structures_t1/left_hippocampus",
        "brain_structures_t1/image.nii.gz",
        "brain_structures_t1/label_aseg.nii.gz",
        (17,),
        "MR",
    ),
    DevObject(
        "brain_structures_t1/left_thalamus",
        "brain_structures_t1/image.nii.gz",
        "brain_structures_t1/label_aseg.nii.gz",
        (10,),
        "MR",
    ),
    DevObject(
        "brain_structures_t1/right_lateral_ventricle",
        "brain_structures_t1/image.nii.gz",
        "brain_structures_t1/label_aseg.nii.gz",
        (43,),
        "MR",
    ),
    DevObject("mni152/white_matter", "mni152/t1.nii.gz", "mni152/label_gm1_wm2.nii.gz", (2,), "MR"),
    DevObject(
        "radiomics_mr/brain1_tumour",
        "radiomics_mr/brain1_image.nrrd",
        "radiomics_mr/brain1_label.nrrd",
        (1,),
        "MR",
    ),
    DevObject(
        "radiomics_mr/brain2_tumour",
        "radiomics_mr/brain2_image.nrrd",
        "radiomics_mr/brain2_label.nrrd",
        (1,),
        "MR",
    ),
    DevObject(
        "radiomics_mr/breast1_lesion",
        "radiomics_mr/breast1_image.nrrd",
        "radiomics_mr/breast1_label.nrrd",
        (1,),
        "MR",
    ),
    DevObject(
        "spect_liver_lesions/scan001_lesion1",
        "spect_liver_lesions/scan001_image.nii.gz",
        "spect_liver_lesions/scan001_label.nii.gz",
        (1,),
        "SPECT",
    ),
    DevObject(
        "spect_liver_lesions/scan002_lesion2",
        "spect_liver_lesions/scan002_image.nii.gz",
        "spect_liver_lesions/scan002_label.nii.gz",
        (2,),
        "SPECT",
    ),
)


@dataclass(frozen=True)
class Target:
    """One object kind of a `DataSet`.

    Attributes
    ----------
    name : str
        Target id inside its set (``"tumour_core"``, ``"ventricles"``).
    image, label : str
        File names inside a case folder (a path relative to the set's folder when the set
        has no case folders).
    values : tuple of int
        Label values whose union is the object.
    modality : str
        ``"CT"`` (HU), ``"MR"``, ``"PET"`` (SUV), ``"US"``, ``"SPECT"``.
    role : {"train", "report", "excluded"}
        ``"train"``: may be trained on (train split) and chosen on (validation split);
        ``"report"``: a test object, never trained on; ``"excluded"``: left out of the
        default training targets (the registry says why), trainable when named.
    co_registered : tuple of str
        Further images of the case in the same physical frame, resampled onto `image`'s
        grid as extra channels (`midseg.io.read_image`); such multi-channel targets are
        trained only when named.
    """

    name: str
    image: str
    label: str
    values: tuple[int, ...]
    modality: str
    role: str = "train"
    co_registered: tuple[str, ...] = ()


@dataclass(frozen=True)
class DataSet:
    """One folder of ``../shared/data`` (`REGISTRY`).

    Attributes
    ----------
    name : str
        Set name, also its folder under the data root.
    description, licence : str
    splits : dict of str -> tuple of str
        Case folders per split: ``"train"``, ``"validation"``, ``"test"`` (fixed; model cards
        quote them).
    targets : tuple of Target
    spacing : str
        What the voxel spacing is (mm).
    non_commercial : bool
        Weights trained on the set are non-commercial (its licence).
    development_only : bool
        Never in shipped weights (``dev_unseen`` parts whose provenance is undocumented).
    role : {"pool", "test", "choose"}
        Training pool, test set, or development set (``dev_unseen``).
    """

    name: str
    description: str
    licence: str
    splits: dict
    targets: tuple
    spacing: str
    non_commercial: bool = False
    development_only: bool = False
    role: str = "pool"

    def target(self, name: str) -> Target:
        """The `Target` called `name`; `InvalidInputError` when the set has none."""
        for t in self.targets:
            if t.name == name:
                return t
        raise InvalidInputError(
            f"data set {self.name!r} has no target {name!r}; known: "
            f"{', '.join(t.name for t in self.targets)}"
        )


_FETAL_STRUCTURES = (
    "white_matter",
    "ventricles",
    "cerebellum",
    "extra_ventricular_csf",
    "cortical_grey_matter",
    "deep_grey_matter",
    "brainstem",
    "corpus_callosum",
)
#: Left out of the default fetal targets. Extra-ventricular CSF and cortical grey matter are
#: thin shells around the whole brain (1-3 voxels thick): no box of margin points delineates
#: them, as for the mni152 grey matter ribbon left out of `DEV_UNSEEN`. White matter wraps
#: around the ventricles, so margin points on its outer boundary enclose a large part that is
#: not the object: trained on, it taught the 2D model to hollow out large objects (dev_unseen
#: lungs 0.98 -> 0.91-0.94 at stage 1; docs/decisions.md).
_FETAL_SHELLS = ("extra_ventricular_csf", "cortical_grey_matter", "white_matter")
_FETAL = tuple(
    f"fetal_SB_atlas_GA{g}"
    for g in (
        "21_notoperated",
        "22_notoperated",
        "23_notoperated",
        "24_notoperated",
        "25_notoperated",
        "25_operated",
        "26_operated",
        "27_operated",
        "28_operated",
        "29_operated",
        "30_operated",
        "31_operated",
        "32_operated",
        "33_operated",
        "34_operated",
    )
)
_FETAL_VALIDATION = ("fetal_SB_atlas_GA24_notoperated", "fetal_SB_atlas_GA31_operated")

#: The dataset registry: every set of ``../shared/data`` (``README.md`` there), by name.
REGISTRY: dict[str, DataSet] = {
    "brats2013": DataSet(
        "brats2013",
        "BRATS 2013/2015 brain tumour MR (DeepMedic example data), "
        "T1c and FLAIR z-scored inside the brain",
        "CC BY-NC-SA 3.0 CH",
        non_commercial=True,
        spacing="1 mm isotropic",
        splits={
            "train": ("brats_2013_pat0003_1", "brats_2013_pat0004_1", "brats_2013_pat0005_1"),
            "validation": ("brats_2013_pat0006_1",),
            "test": ("brats_2013_pat0001_1", "brats_2013_pat0002_1"),
        },
        targets=(
            Target(
                "tumour_core", "T1c_subtrMeanDivStd.nii.gz", "OTMultiClass.nii.gz", (1, 3, 4), "MR"
            ),
            Target(
                "enhancing_tumour", "T1c_subtrMeanDivStd.nii.gz", "OTMultiClass.nii.gz", (4,), "MR"
            ),
            # unseen test objects (paper protocol): never trained on
            Target(
                "whole_tumour",
                "Flair_subtrMeanDivStd.nii.gz",
                "OTMultiClass.nii.gz",
                (1, 2, 3, 4),
                "MR",
                role="report",
            ),
            Target(
                "brain", "T1c_subtrMeanDivStd.nii.gz", "brainmask.nii.gz", (1,), "MR", role="report"
            ),
        ),
    ),
    "sts": DataSet(
        "sts",
        "soft-tissue sarcoma (IBSI validation set from TCIA Soft-tissue-Sarcoma): CT, "
        "MR T1 and FDG-PET (SUV) per patient, each with its tumour mask on its own grid",
        "CC BY 3.0",
        spacing="CT/MR ~0.98x0.98x3.27, PET ~4.7-5.5 in-plane x 3.27",
        splits={
            "train": tuple(f"STS_{i:03d}" for i in range(1, 10)),
            "validation": ("STS_010", "STS_011", "STS_012"),
        },
        targets=(
            Target("tumour_ct", "CT_image.nii.gz", "CT_mask.nii.gz", (1,), "CT"),
            Target("tumour_mr", "MR_T1_image.nii.gz", "MR_T1_mask.nii.gz", (1,), "MR"),
            Target("tumour_pet", "PET_image.nii.gz", "PET_mask.nii.gz", (1,), "PET"),
            # two channels (CT in HU, PET in SUV resampled onto the CT grid): the PET/CT model
            Target(
                "tumour_petct",
                "CT_image.nii.gz",
                "CT_mask.nii.gz",
                (1,),
                "CT+PET",
                co_registered=("PET_image.nii.gz",),
            ),
        ),
    ),
    "fetal_brain_atlas": DataSet(
        "fetal_brain_atlas",
        "spina-bifida fetal brain MR atlas (Fidon et al. 2021), "
        "super-resolved T2, 8 structures; the whole brain (mask.nii.gz, or all 8 structures "
        "together) is a test object (BraTS brain), never trained on",
        "CC0 1.0",
        spacing="0.8 mm isotropic",
        splits={
            "train": tuple(c for c in _FETAL if c not in _FETAL_VALIDATION),
            "validation": _FETAL_VALIDATION,
        },
        targets=tuple(
            Target(
                n,
                "srr.nii.gz",
                "parcellation.nii.gz",
                (v,),
                "MR",
                role="excluded" if n in _FETAL_SHELLS else "train",
            )
            for v, n in enumerate(_FETAL_STRUCTURES, start=1)
        )
        # the whole brain: one of the unseen test objects (../shared/data/README.md)
        + (
            Target("brain", "srr.nii.gz", "mask.nii.gz", (1,), "MR", role="report"),
            Target(
                "brain_structures",
                "srr.nii.gz",
                "parcellation.nii.gz",
                tuple(range(1, len(_FETAL_STRUCTURES) + 1)),
                "MR",
                role="report",
            ),
        ),
    ),
    "hc18": DataSet(
        "hc18",
        "HC18 fetal head ultrasound, 2D, downsampled by 2 (unseen test object)",
        "CC BY 4.0",
        spacing="pixels (no physical spacing)",
        role="test",
        splits={"test": ()},
        # image and label are folders of same-named PNGs (masks 0/255)
        targets=(Target("fetal_head", "images", "masks", (255,), "US", role="report"),),
    ),
    "dev_unseen": DataSet(
        "dev_unseen",
        "development objects (DEV_UNSEEN): choose on them, never train",
        "per folder (see its README); several non-commercial or development use only",
        spacing="native",
        non_commercial=True,  # lung_ct and the SPECT lesions are CC BY-NC
        development_only=True,
        role="choose",
        splits={},
        targets=tuple(
            Target(o.name, o.image, o.label, o.values, o.modality, role="report")
            for o in DEV_UNSEEN
        ),
    ),
}


def data_root_default() -> Path:
    """``$MIDSEG_DATA`` or ``../shared/data`` next to the repository."""
    from .evaluation.cases import default_data_root

    return Path(default_data_root())


def case_files(
    set_name: str,
    case: str,
    target: str,
    data_root: str | os.PathLike | None = None,
) -> tuple[Path, Path, tuple[int, ...]]:
    """``(image path, label path, label values)`` of `target` in case folder `case` of the
    registry set `set_name` (the files need not exist). For scripts and benchmarks that read
    one case; `training_items` and `midseg.evaluation.load_cases` read whole splits.
    Raises InvalidInputError for an unknown set or target."""
    if set_name not in REGISTRY:
        raise InvalidInputError(f"unknown data set {set_name!r}; known: {', '.join(REGISTRY)}")
    t = REGISTRY[set_name].target(target)
    folder = (Path(data_root) if data_root is not None else data_root_default()) / set_name / case
    return folder / t.image, folder / t.label, t.values


def _case_folders(ds: DataSet) -> dict[str, str] | None:
    """The folders directly inside set `ds`'s folder that hold its data, lower-cased name ->
    name: its case folders (every split), HC18's image and mask folders; None for
    ``dev_unseen``, where every folder is development data."""
    if ds.name == "dev_unseen":
        return None
    names: set[str] = {c for cases in ds.splits.values() for c in cases}
    if not names:
        names = {x for t in ds.targets for x in (t.image, t.label)}
    return {n.lower(): n for n in names}


def registry_case(path: str | os.PathLike) -> tuple[DataSet, str, str] | None:
    """``(set, case, rest)`` when `path`, resolved (symbolic links followed, also a file's),
    lies in a case folder of a `REGISTRY` set: ``.../<set>/<case>/<rest>`` whose ``<set>`` is
    a set's name and ``<case>`` one of its case folders (`_case_folders`; names compared
    case-insensitively, wherever the data root lies); `rest` is the path below the case
    folder (POSIX, "" for the folder itself). ``(set, "", "")`` for a set's own folder. None
    for any other path."""
    parts = Path(path).resolve().parts  # as the files are read: no "~" expansion
    by_name = {n.lower(): ds for n, ds in REGISTRY.items()}
    for i in range(len(parts) - 1, -1, -1):  # the innermost set folder first
        ds = by_name.get(parts[i].lower())
        if ds is None:
            continue
        if i == len(parts) - 1:  # the set's own folder
            return ds, "", ""
        known = _case_folders(ds)
        case = parts[i + 1] if known is None else known.get(parts[i + 1].lower())
        if case is not None:
            return ds, case, "/".join(parts[i + 2 :])
    return None


def _file_key(name: str) -> str:
    """A file name as the registry compares it: lower case, without a trailing ``.gz``
    (``OTMultiClass.nii.gz``, ``otmulticlass.nii``: one file, gunzipped or renamed)."""
    key = name.lower()
    return key[:-3] if key.endswith(".gz") else key


def check_case_training(
    ds: DataSet, cases: Sequence[str], image: str, label: str, values: Sequence[int]
) -> Target | None:
    """Check that case folders `cases` of registry set `ds` may be trained on (or chosen
    on) with that image, label file and label values, as `training_items` would.

    File names are compared by `_file_key` (case and ``.gz`` aside). Returns the matching
    `Target` (same image, label file and set of values), or None when the combination is
    no registry target. Raises InvalidInputError for a set that is not in the training pool
    or is development-only (``dev_unseen``, HC18), a case of its test split, or label values
    of a ``"report"`` target's label file that hold that target, or all its values but
    one without being a training target themselves (BraTS whole tumour as 1,2,4; the
    fetal brain without one structure): a test object, whatever the image.
    """
    if ds.role != "pool" or ds.development_only:
        raise InvalidInputError(
            f"data set {ds.name!r} is not in the training pool (role {ds.role!r}): never "
            "train on it (../shared/data/README.md, Roles)"
        )
    test = sorted(set(cases) & set(ds.splits.get("test", ())))
    if test:
        raise InvalidInputError(
            f"case(s) {test} are in the test split of {ds.name!r}: never train or choose on "
            f"them; its train cases are {list(ds.splits.get('train', ()))}"
        )
    chosen = set(values)
    same_label = [t for t in ds.targets if _file_key(t.label) == _file_key(label)]
    match = next(
        (
            t
            for t in same_label
            if _file_key(t.image) == _file_key(image) and set(t.values) == chosen
        ),
        None,
    )
    trained = any(t.role != "report" and set(t.values) == chosen for t in same_label)
    for t in same_label:
        held = set(t.values) & chosen
        if t.role == "report" and (
            held == set(t.values) or (not trained and len(held) >= max(len(t.values) - 1, 2))
        ):
            allowed = [
                f"{u.name} {list(u.values)}"
                for u in same_label
                if u.role != "report" and _file_key(u.image) == _file_key(image)
            ]
            raise InvalidInputError(
                f"labels {sorted(chosen)} of {label} hold "
                + ("" if held == set(t.values) else "most of (all values but one) ")
                + f"the test object {ds.name}/{t.name} (labels {list(t.values)}): never "
                "train or choose on it"
                + (f"; training targets of this file: {', '.join(allowed)}" if allowed else "")
            )
    return match


def training_items(
    set_name: str,
    split: str = "train",
    *,
    dims: int,
    targets: tuple[str, ...] | None = None,
    data_root: str | os.PathLike | None = None,
    min_area: int = 30,
    slice_step: int = 1,
    largest_component: bool = False,
) -> list:
    """Training pairs of one pool set's split, read with `midseg.io.read_image`.

    Parameters
    ----------
    set_name : str
        A `REGISTRY` set whose role is ``"pool"``.
    split : {"train", "validation"}
    dims : {2, 3}
        3: one item per (case, target), the whole volume. 2: one item per axial slice (first
        array axis) whose target has at least `min_area` pixels, every `slice_step`-th of
        them.
    targets : tuple of str, optional
        Target names (default: every single-channel target whose role is ``"train"``); a
        ``"report"`` target is refused.
    largest_component : bool
        Keep only the largest 26-connected part of each target (3D).

    Returns
    -------
    list of midseg.train.TrainItem
        float32 image in native units ((C, *S) for a target with co-registered images),
        bool mask, spacing (mm, array order), name ``"set/case/target"`` (``":zNNN"``
        appended in 2D).

    Raises
    ------
    InvalidInputError
        Unknown set, split or target; a set or target that is not for training
        (``dev_unseen``, test sets, report targets, development-only sets); missing files;
        image and label of different shapes.
    """
    from .io import read_image
    from .train import TrainItem

    if set_name not in REGISTRY:
        raise InvalidInputError(f"unknown data set {set_name!r}; known: {', '.join(REGISTRY)}")
    ds = REGISTRY[set_name]
    if ds.role != "pool" or ds.development_only:
        raise InvalidInputError(
            f"data set {set_name!r} is not in the training pool (role {ds.role!r}): never "
            "train on it (../shared/data/README.md, Roles)"
        )
    if split not in ("train", "validation") or split not in ds.splits:
        raise InvalidInputError(f"split must be 'train' or 'validation', got {split!r}")
    if dims not in (2, 3):
        raise InvalidInputError(f"dims must be 2 or 3, got {dims!r}")
    if int(slice_step) < 1:
        raise InvalidInputError(f"slice_step must be >= 1, got {slice_step!r}")
    chosen = (
        [t for t in ds.targets if t.role == "train" and not t.co_registered]
        if targets is None
        else [ds.target(n) for n in targets]
    )
    for t in chosen:
        if t.role == "report":
            raise InvalidInputError(
                f"target {set_name}/{t.name} is a test object (role {t.role!r}): never train on it"
            )
    root = (Path(data_root) if data_root is not None else data_root_default()) / ds.name
    if not root.is_dir():
        raise InvalidInputError(f"data set folder '{root}' does not exist")
    items = []
    for case in ds.splits[split]:
        cache: dict = {}
        for t in chosen:
            key = (t.image,) + t.co_registered
            if key not in cache:
                cache[key] = read_image(
                    root / case / t.image, *(root / case / f for f in t.co_registered)
                )
            if (t.label,) not in cache:
                cache[(t.label,)] = read_image(root / case / t.label)
            img, lab = cache[key], cache[(t.label,)]
            if img.shape[-lab.ndim :] != lab.shape:
                raise InvalidInputError(
                    f"{set_name}/{case}: {t.image} {img.shape} and "
                    f"{t.label} {lab.shape} differ in shape"
                )
            arr = np.asarray(img.array, dtype=np.float32)
            mask = np.isin(np.rint(lab.array).astype(np.int32), t.values)
            if largest_component and mask.any():
                mask = _largest_component(mask).astype(bool)
            spacing = tuple(float(s) for s in img.spacing)
            name = f"{set_name}/{case}/{t.name}"
            if dims == 3:
                if mask.any():
                    items.append(TrainItem(arr, mask, spacing, name))
                continue
            zs = np.nonzero(mask.reshape(mask.shape[0], -1).sum(axis=1) >= min_area)[0]
            for z in zs[:: int(slice_step)]:
                items.append(
                    TrainItem(
                        np.ascontiguousarray(arr[..., z, :, :]),
                        np.ascontiguousarray(mask[z]),
                        spacing[1:],
                        f"{name}:z{int(z):03d}",
                    )
                )
    return items


def _largest_component(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    labels, n = ndimage.label(mask, structure=np.ones((3,) * mask.ndim, dtype=bool))
    if n <= 1:
        return mask
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return (labels == int(np.argmax(sizes))).astype(np.uint8)


def object_crop(
    gt: np.ndarray,
    spacing,
    *,
    margin_mm: float = CROP_MARGIN_MM,
    min_voxels: int = CROP_MARGIN_VOXELS,
) -> tuple[slice, ...]:
    """Slices of the object's bounding box grown by `margin_mm` (at least `min_voxels`).

    Parameters
    ----------
    gt : (Y, X) or (Z, Y, X) ndarray, non-zero = object (at least one voxel)
    spacing : sequence of float, array order (mm)

    Returns
    -------
    tuple of slice, clipped to the array
    """
    nz = np.argwhere(gt)
    if not len(nz):
        raise InvalidInputError("object_crop needs a non-empty mask")
    lo, hi = nz.min(0), nz.max(0) + 1
    pad = [max(min_voxels, int(np.ceil(margin_mm / s))) for s in spacing]
    return tuple(slice(max(0, a - p), min(n, b + p)) for a, b, p, n in zip(lo, hi, pad, gt.shape))


def dev_unseen_cases(
    *,
    dims: int = 3,
    data_root: str | os.PathLike | None = None,
    objects: Sequence[str] | None = None,
):
    """The ``dev_unseen`` objects as evaluation cases.

    Parameters
    ----------
    dims : {2, 3}
        3: the object's volume cropped around it (`object_crop`). 2: the axial slice
        (first array axis) where the object's area is largest, cropped the same way.
    data_root : path, optional
        Folder holding ``dev_unseen/`` (default: `midseg.evaluation.default_data_root`).
    objects : sequence of str, optional
        Case ids of `DEV_UNSEEN` to load (default all), in `DEV_UNSEEN` order.

    Returns
    -------
    list of midseg.evaluation.Case
        ``dataset="dev-unseen"``, ``case`` the object's name; float32 images in their
        native units (HU for CT), uint8 ground truth, spacing in mm (array order).

    Raises
    ------
    InvalidInputError
        ``dev_unseen/`` missing, an unknown object name, `dims` not 2 or 3.
    """
    from .evaluation.cases import Case, default_data_root
    from .io import read_image

    if dims not in (2, 3):
        raise InvalidInputError(f"dims must be 2 or 3, got {dims!r}")
    root = (Path(data_root) if data_root is not None else default_data_root()) / "dev_unseen"
    if not root.is_dir():
        raise InvalidInputError(f"dev_unseen data not found at '{root}'")
    known = {o.name: o for o in DEV_UNSEEN}
    if objects is not None:
        unknown = [n for n in objects if n not in known]
        if unknown:
            raise InvalidInputError(
                f"unknown dev_unseen object(s) {unknown}; known: {', '.join(known)}"
            )
    chosen = [o for o in DEV_UNSEEN if objects is None or o.name in objects]
    cases = []
    last: tuple = (None, None)  # objects of one volume are listed together: read it once
    for obj in chosen:
        if last[0] != (obj.image, obj.label):
            img = read_image(root / obj.image)
            last = (
                (obj.image, obj.label),
                (
                    img.array.astype(np.float32),
                    tuple(img.spacing),
                    np.rint(read_image(root / obj.label).array).astype(np.int32),
                ),
            )
        arr, spacing, labels = last[1]
        if labels.shape != arr.shape:
            raise InvalidInputError(
                f"{obj.name}: label shape {labels.shape} differs from image {arr.shape}"
            )
        gt = np.isin(labels, obj.values).astype(np.uint8)
        if obj.largest_component:
            gt = _largest_component(gt)
        if dims == 2:
            z = int(np.argmax(gt.reshape(gt.shape[0], -1).sum(axis=1)))
            img2, gt2, sp = arr[z], gt[z], spacing[1:]
            sl = object_crop(gt2, sp)
            cases.append(
                Case(
                    "dev-unseen",
                    f"{obj.name}:z{z:03d}",
                    np.ascontiguousarray(img2[sl]),
                    np.ascontiguousarray(gt2[sl]),
                    sp,
                )
            )
        else:
            sl = object_crop(gt, spacing)
            cases.append(
                Case(
                    "dev-unseen",
                    obj.name,
                    np.ascontiguousarray(arr[sl]),
                    np.ascontiguousarray(gt[sl]),
                    spacing,
                )
            )
    return cases
