"""Where the evaluation objects of ``../shared/data`` are, described once.

Lives here: the development objects of ``dev_unseen/`` (`DEV_UNSEEN`, `dev_unseen_cases`),
each an image, a label file, the label values that make the target and its modality.
`midseg.evaluate` loads them by the dataset name ``"dev-unseen"``. Nothing here trains:
``dev_unseen`` is for choosing methods and reporting development results, never for training
(``../shared/data/README.md``, "Roles").
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InvalidInputError

__all__ = ["DevObject", "DEV_UNSEEN", "dev_unseen_cases", "object_crop", "CROP_MARGIN_MM"]

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
#: 288 pieces) is left out: a click protocol cannot delineate it.
DEV_UNSEEN: tuple[DevObject, ...] = (
    DevObject("lung_ct/tumour", "lung_ct/image.nii.gz", "lung_ct/label.nii.gz", (1,), "CT"),
    DevObject("lung_ct/spinal_cord", "lung_ct/image.nii.gz", "lung_ct/label.nii.gz", (2,), "CT"),
    DevObject("lung_ct/left_lung", "lung_ct/image.nii.gz", "lung_ct/label.nii.gz", (3,), "CT"),
    DevObject("lung_ct/right_lung", "lung_ct/image.nii.gz", "lung_ct/label.nii.gz", (4,), "CT"),
    DevObject("spinal_cord_mr/t1", "spinal_cord_mr/t1/t1w.nii.gz",
              "spinal_cord_mr/t1/t1w_seg-manual.nii.gz", (1,), "MR"),
    DevObject("spinal_cord_mr/t2", "spinal_cord_mr/t2/t2.nii.gz",
              "spinal_cord_mr/t2/t2_seg-manual.nii.gz", (1,), "MR"),
    DevObject("spinal_cord_mr/t2s", "spinal_cord_mr/t2s/t2s.nii.gz",
              "spinal_cord_mr/t2s/t2s_seg.nii.gz", (1,), "MR"),
    DevObject("brain_structures_t1/left_hippocampus", "brain_structures_t1/image.nii.gz",
              "brain_structures_t1/label_aseg.nii.gz", (17,), "MR"),
    DevObject("brain_structures_t1/left_thalamus", "brain_structures_t1/image.nii.gz",
              "brain_structures_t1/label_aseg.nii.gz", (10,), "MR"),
    DevObject("brain_structures_t1/right_lateral_ventricle", "brain_structures_t1/image.nii.gz",
              "brain_structures_t1/label_aseg.nii.gz", (43,), "MR"),
    DevObject("mni152/white_matter", "mni152/t1.nii.gz", "mni152/label_gm1_wm2.nii.gz", (2,),
              "MR"),
    DevObject("radiomics_mr/brain1_tumour", "radiomics_mr/brain1_image.nrrd",
              "radiomics_mr/brain1_label.nrrd", (1,), "MR"),
    DevObject("radiomics_mr/brain2_tumour", "radiomics_mr/brain2_image.nrrd",
              "radiomics_mr/brain2_label.nrrd", (1,), "MR"),
    DevObject("radiomics_mr/breast1_lesion", "radiomics_mr/breast1_image.nrrd",
              "radiomics_mr/breast1_label.nrrd", (1,), "MR"),
    DevObject("spect_liver_lesions/scan001_lesion1", "spect_liver_lesions/scan001_image.nii.gz",
              "spect_liver_lesions/scan001_label.nii.gz", (1,), "SPECT"),
    DevObject("spect_liver_lesions/scan002_lesion2", "spect_liver_lesions/scan002_image.nii.gz",
              "spect_liver_lesions/scan002_label.nii.gz", (2,), "SPECT"),
)


def _largest_component(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    labels, n = ndimage.label(mask, structure=np.ones((3,) * mask.ndim, dtype=bool))
    if n <= 1:
        return mask
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return (labels == int(np.argmax(sizes))).astype(np.uint8)


def object_crop(gt: np.ndarray, spacing, *, margin_mm: float = CROP_MARGIN_MM,
                min_voxels: int = CROP_MARGIN_VOXELS) -> tuple[slice, ...]:
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


def dev_unseen_cases(*, dims: int = 3, data_root: str | os.PathLike | None = None,
                     objects: tuple[str, ...] | None = None):
    """The ``dev_unseen`` objects as evaluation cases.

    Parameters
    ----------
    dims : {2, 3}
        3: the object's volume cropped around it (`object_crop`). 2: the axial slice
        (first array axis) where the object's area is largest, cropped the same way.
    data_root : path, optional
        Folder holding ``dev_unseen/`` (default: `midseg.evaluate.default_data_root`).
    objects : tuple of str, optional
        Case ids of `DEV_UNSEEN` to load (default all), in `DEV_UNSEEN` order.

    Returns
    -------
    list of midseg.evaluate.Case
        ``dataset="dev-unseen"``, ``case`` the object's name; float32 images in their
        native units (HU for CT), uint8 ground truth, spacing in mm (array order).

    Raises
    ------
    InvalidInputError
        ``dev_unseen/`` missing, an unknown object name, `dims` not 2 or 3.
    """
    from .evaluate import Case, default_data_root
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
                f"unknown dev_unseen object(s) {unknown}; known: {', '.join(known)}")
    chosen = [o for o in DEV_UNSEEN if objects is None or o.name in objects]
    cases = []
    last: tuple = (None, None)       # objects of one volume are listed together: read it once
    for obj in chosen:
        if last[0] != (obj.image, obj.label):
            img = read_image(root / obj.image)
            last = ((obj.image, obj.label), (img.array.astype(np.float32), tuple(img.spacing),
                                             np.rint(read_image(root / obj.label).array)
                                             .astype(np.int32)))
        arr, spacing, labels = last[1]
        if labels.shape != arr.shape:
            raise InvalidInputError(
                f"{obj.name}: label shape {labels.shape} differs from image {arr.shape}")
        gt = np.isin(labels, obj.values).astype(np.uint8)
        if obj.largest_component:
            gt = _largest_component(gt)
        if dims == 2:
            z = int(np.argmax(gt.reshape(gt.shape[0], -1).sum(axis=1)))
            img2, gt2, sp = arr[z], gt[z], spacing[1:]
            sl = object_crop(gt2, sp)
            cases.append(Case("dev-unseen", f"{obj.name}:z{z:03d}",
                              np.ascontiguousarray(img2[sl]), np.ascontiguousarray(gt2[sl]),
                              sp))
        else:
            sl = object_crop(gt, spacing)
            cases.append(Case("dev-unseen", obj.name, np.ascontiguousarray(arr[sl]),
                              np.ascontiguousarray(gt[sl]), spacing))
    return cases
