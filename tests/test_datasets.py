"""Tests for midseg.datasets: the registry's roles and splits, and reading the training pool."""

import numpy as np
import pytest

from midseg import datasets
from midseg.datasets import DEV_UNSEEN, REGISTRY, training_items
from midseg.errors import InvalidInputError


def test_pool_splits_are_disjoint_and_tests_are_never_trained():
    for ds in REGISTRY.values():
        parts = [set(v) for v in ds.splits.values()]
        for i, a in enumerate(parts):
            for b in parts[i + 1 :]:
                assert not a & b, ds.name
    assert set(REGISTRY["brats2013"].splits["test"]) == {
        "brats_2013_pat0001_1",
        "brats_2013_pat0002_1",
    }
    brats = REGISTRY["brats2013"]
    # the paper's unseen objects are report targets, never training targets
    assert brats.target("whole_tumour").role == brats.target("brain").role == "report"
    assert REGISTRY["dev_unseen"].development_only
    assert {t.name for t in REGISTRY["dev_unseen"].targets} == {o.name for o in DEV_UNSEEN}


def test_a_case_folder_is_known_by_its_registry_names_wherever_it_lies(tmp_path):
    brats = REGISTRY["brats2013"]
    case = tmp_path / "copy" / "BraTS2013" / "Brats_2013_pat0001_1"
    assert datasets.registry_case(case / "sub" / "a.nii.gz") == (
        brats,
        "brats_2013_pat0001_1",
        "sub/a.nii.gz",
    )
    assert datasets.registry_case(case / ".." / "x") is None  # no case of the set
    assert datasets.registry_case(tmp_path / "brats2013") == (brats, "", "")  # the set's folder
    assert datasets.registry_case(tmp_path / "brats2013" / "img.nii.gz") is None
    dev = REGISTRY["dev_unseen"]
    got = datasets.registry_case(tmp_path / "dev_unseen" / "new_folder")
    assert got == (dev, "new_folder", "")
    assert datasets.registry_case(tmp_path / "hc18" / "project" / "mine") is None
    sts = REGISTRY["sts"]
    assert datasets.registry_case(tmp_path / "sts" / "STS_001") == (sts, "STS_001", "")
    assert datasets.registry_case(tmp_path / "sts" / "patA") is None
    (tmp_path / "link").symlink_to(tmp_path / "sts" / "STS_010", target_is_directory=True)
    assert datasets.registry_case(tmp_path / "link" / "CT.nii.gz") == (sts, "STS_010", "CT.nii.gz")
    tc = brats.target("tumour_core")
    ok = datasets.check_case_training(
        brats, ["brats_2013_pat0003_1"], tc.image, tc.label, (4, 3, 1)
    )
    assert ok is tc  # the values as a set
    assert (
        datasets.check_case_training(brats, ["brats_2013_pat0003_1"], tc.image, tc.label, (2,))
        is None
    )
    with pytest.raises(InvalidInputError, match="test split"):
        datasets.check_case_training(brats, ["brats_2013_pat0002_1"], tc.image, tc.label, (1,))
    wt = brats.target("whole_tumour")
    with pytest.raises(InvalidInputError, match="brats2013/whole_tumour"):
        datasets.check_case_training(brats, ["brats_2013_pat0004_1"], wt.image, wt.label, wt.values)
    with pytest.raises(InvalidInputError, match="brats2013/whole_tumour"):  # more values, T1c
        datasets.check_case_training(
            brats, ["brats_2013_pat0004_1"], tc.image, wt.label, (1, 2, 3, 4, 5)
        )
    fetal = REGISTRY["fetal_brain_atlas"]  # the whole brain is a test object
    for label, values in (("mask.nii.gz", (1,)), ("parcellation.nii.gz", range(1, 9))):
        with pytest.raises(InvalidInputError, match="fetal_brain_atlas/brain"):
            datasets.check_case_training(fetal, ["x"], "srr.nii.gz", label, values)
    assert datasets.check_case_training(fetal, ["x"], "srr.nii.gz", "parcellation.nii.gz", (2,))
    for name in ("dev_unseen", "hc18"):
        with pytest.raises(InvalidInputError, match="not in the training pool"):
            datasets.check_case_training(REGISTRY[name], ["x"], "a", "b", (1,))


def test_case_files_name_a_targets_files(tmp_path):
    image, label, values = datasets.case_files("sts", "STS_010", "tumour_pet", tmp_path)
    assert image == tmp_path / "sts" / "STS_010" / "PET_image.nii.gz"
    assert label == tmp_path / "sts" / "STS_010" / "PET_mask.nii.gz" and values == (1,)
    with pytest.raises(InvalidInputError, match="no target 'liver'"):
        datasets.case_files("sts", "STS_010", "liver", tmp_path)
    with pytest.raises(InvalidInputError, match="unknown data set"):
        datasets.case_files("nosuch", "a", "b", tmp_path)


@pytest.mark.parametrize(
    "name, split, targets, message",
    [
        ("dev_unseen", "train", None, "not in the training pool"),
        ("hc18", "train", None, "not in the training pool"),
        ("brats2013", "test", None, "split must be"),
        ("brats2013", "train", ("whole_tumour",), "test object"),
        ("brats2013", "train", ("brain",), "test object"),
        ("sts", "train", ("liver",), "has no target"),
        ("nosuchset", "train", None, "unknown data set"),
    ],
)
def test_training_items_refuses_what_is_not_for_training(tmp_path, name, split, targets, message):
    with pytest.raises(InvalidInputError, match=message):
        training_items(name, split, dims=3, targets=targets, data_root=tmp_path)


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(InvalidInputError, match="does not exist"):
        training_items("sts", "train", dims=3, data_root=tmp_path)


def test_default_targets_skip_shells_and_multichannel():
    fetal = [
        t.name
        for t in REGISTRY["fetal_brain_atlas"].targets
        if t.role == "train" and not t.co_registered
    ]
    assert "cortical_grey_matter" not in fetal and "white_matter" not in fetal
    assert "ventricles" in fetal and len(fetal) == 5
    sts = [t.name for t in REGISTRY["sts"].targets if t.role == "train" and not t.co_registered]
    assert sts == ["tumour_ct", "tumour_mr", "tumour_pet"]


@pytest.mark.data
def test_sts_items_3d_2d_and_petct(shared_data):
    items = training_items("sts", "validation", dims=3, data_root=shared_data)
    assert [i.name for i in items][:3] == [
        "sts/STS_010/tumour_ct",
        "sts/STS_010/tumour_mr",
        "sts/STS_010/tumour_pet",
    ]
    for it in items:
        assert it.image.dtype == np.float32 and it.mask.dtype == bool and it.mask.any()
        assert it.image.shape == it.mask.shape and len(it.spacing) == 3
    ct = items[0]
    assert ct.image.min() < -500  # CT stays in HU
    pet = training_items(
        "sts", "validation", dims=3, targets=("tumour_petct",), data_root=shared_data
    )
    assert len(pet) == 3 and pet[0].image.shape == (2,) + ct.mask.shape
    np.testing.assert_array_equal(pet[0].mask, ct.mask)
    # the PET channel is bright in the tumour (FDG uptake), resampled onto the CT grid
    assert pet[0].image[1][pet[0].mask].mean() > 2 * pet[0].image[1][~pet[0].mask].mean()
    sl = training_items(
        "sts", "validation", dims=2, targets=("tumour_ct",), min_area=30, data_root=shared_data
    )
    every2 = training_items(
        "sts",
        "validation",
        dims=2,
        targets=("tumour_ct",),
        min_area=30,
        slice_step=2,
        data_root=shared_data,
    )
    assert len(every2) == sum(
        (len([i for i in sl if i.name.startswith(f"sts/{c}/")]) + 1) // 2
        for c in ("STS_010", "STS_011", "STS_012")
    )
    assert all(i.mask.sum() >= 30 and i.image.ndim == 2 and len(i.spacing) == 2 for i in sl)


@pytest.mark.data
def test_fetal_validation_items_are_its_structures(shared_data):
    items = training_items(
        "fetal_brain_atlas",
        "validation",
        dims=3,
        targets=("ventricles", "brainstem"),
        data_root=shared_data,
    )
    assert [i.name.split("/")[1] for i in items] == [
        c for c in datasets._FETAL_VALIDATION for _ in range(2)
    ]
    a, b = items[0].mask, items[1].mask
    assert a.any() and b.any() and not (a & b).any()
