"""`Session.paint`: brush edits as undoable history steps, and what clicks files do with them."""

from __future__ import annotations

import numpy as np
import pytest

import midseg
from midseg.errors import InvalidInputError, MidsegError
from midseg.session import Session


class FakeModel:
    """All `Session` asks of a model when it starts from a mask (no stage 1 runs)."""

    def __init__(self, dims):
        self.name, self.spatial_dims, self.image_channels = f"fake{dims}d", dims, 1


def ball(shape, center, radius):
    g = np.indices(shape, dtype=float)
    return (sum((gi - c) ** 2 for gi, c in zip(g, center)) <= radius**2).astype(np.uint8)


@pytest.fixture(params=[2, 3], ids=["2d", "3d"])
def started(request):
    dims = request.param
    shape = (40, 50) if dims == 2 else (12, 30, 32)
    center = tuple(s / 2 for s in shape)
    truth = ball(shape, center, 8 if dims == 2 else 5)
    rng = np.random.default_rng(0)
    image = (truth + rng.normal(scale=0.05, size=shape)).astype(np.float32)
    session = Session(midseg.Image(image), model=FakeModel(dims))
    session.start_from_mask(truth)
    return session, truth


def test_paint_then_undo_restores_mask_and_probability_exactly(started):
    s, truth = started
    mask0, prob0 = s.mask.copy(), s.probability.copy()
    corner = tuple(1 for _ in truth.shape)
    far = tuple(n - 2 for n in truth.shape)
    out = s.paint([corner, far], 1)
    assert out[corner] == 1 and out[far] == 1 and s.edits == 1
    assert int(out.sum()) == int(mask0.sum()) + 2
    assert s.probability[corner] == 1.0 and s.probability[far] == 1.0
    assert np.array_equal(s.probability >= 0.5, s.mask == 1)
    s.undo()
    assert np.array_equal(s.mask, mask0) and np.array_equal(s.probability, prob0)
    assert s.edits == 0
    s.redo()
    assert np.array_equal(s.mask, out) and s.edits == 1


def test_erase_is_a_step_of_its_own(started):
    s, truth = started
    inside = tuple(int(n // 2) for n in truth.shape)
    line = [inside[:-1] + (inside[-1] + d,) for d in range(-3, 4)]
    before = s.mask.copy()
    s.paint(line, 0)
    erased = s.mask.copy()
    assert all(erased[p] == 0 for p in line)
    assert int(erased.sum()) == int(before.sum()) - len(line)
    s.paint(line, 1)  # paint back: a second step
    assert np.array_equal(s.mask, before) and s.edits == 2
    s.undo()
    assert np.array_equal(s.mask, erased)
    s.undo()
    assert np.array_equal(s.mask, before)
    s.undo()  # the start itself
    assert s.mask is None and not s.can_undo


def test_painting_what_is_there_records_nothing(started):
    s, truth = started
    inside = tuple(int(n // 2) for n in truth.shape)
    s.paint([inside], 1)
    assert s.edits == 0 and s.can_undo  # only the start is in the history
    s.undo()
    assert s.mask is None


def test_a_new_step_after_undo_drops_the_redo(started):
    s, truth = started
    a = tuple(1 for _ in truth.shape)
    b = tuple(2 for _ in truth.shape)
    s.paint([a], 1)
    s.undo()
    s.paint([b], 1)
    assert not s.can_redo and s.mask[a] == 0 and s.mask[b] == 1


def test_bad_paint_input_is_refused(started):
    s, truth = started
    with pytest.raises(InvalidInputError, match="outside the image"):
        s.paint([tuple(n for n in truth.shape)], 1)
    with pytest.raises(InvalidInputError, match="1 \\(paint\\) or 0 \\(erase\\)"):
        s.paint([tuple(0 for _ in truth.shape)], 2)
    with pytest.raises(InvalidInputError, match="1 \\(paint\\) or 0 \\(erase\\)"):
        s.paint([tuple(0 for _ in truth.shape)], True)
    with pytest.raises(InvalidInputError):
        s.paint([], 1)
    fresh = Session(s.image, model=s.model)
    with pytest.raises(MidsegError, match="segment\\(points\\) or start_from_mask"):
        fresh.paint([tuple(0 for _ in truth.shape)], 1)


def test_save_clicks_refuses_brush_edits_until_undone(started, tmp_path):
    s, truth = started
    s.paint([tuple(1 for _ in truth.shape)], 1)
    target = tmp_path / "c.clicks.json"
    with pytest.raises(MidsegError, match="brush edit"):
        s.save_clicks(target)
    assert not target.exists()
    s.undo()
    s.save_clicks(target)  # without the edit, the clicks file is exact
    assert target.is_file()


def test_the_next_click_local_round_starts_from_the_painted_mask():
    pytest.importorskip("midseg.geodesic")
    shape = (40, 50)
    truth = ball(shape, (20, 25), 8)
    image = (truth + np.random.default_rng(1).normal(scale=0.05, size=shape)).astype(np.float32)
    s = Session(midseg.Image(image), model=FakeModel(2))
    s.start_from_mask(truth)
    s.paint([(2, 2), (2, 3), (3, 2)], 1)  # far from the next click: outside its zone
    s.refine(foreground=[(20, 33)])  # the edge of the disc, on the other side
    assert s.mask[2, 2] == s.mask[2, 3] == s.mask[3, 2] == 1
    assert s.edits == 1
    with pytest.raises(MidsegError, match="brush edit"):
        s.clicks_dict()
    s.refine(background=[(20, 20)], method="gc")  # a global method recomputes everything
    assert s.edits == 0 and s.mask[2, 2] == 0


def test_per_voxel_values_write_a_slice_in_one_step(started):
    s, truth = started
    before = s.mask.copy()
    rows = np.argwhere(np.ones(truth.shape[-2:], bool))
    if truth.ndim == 3:
        rows = np.insert(rows, 0, truth.shape[0] // 2, axis=1)
    values = np.zeros(len(rows), np.int64)
    values[: len(values) // 3] = 1  # the top third of the plane painted
    s.paint(rows, values)
    assert s.edits == 1
    assert np.array_equal(s.mask[tuple(rows.T)], values)
    s.undo()
    assert np.array_equal(s.mask, before)
    with pytest.raises(InvalidInputError, match="one integer per voxel"):
        s.paint(rows, values[:-1])
    with pytest.raises(InvalidInputError, match="one integer per voxel"):
        s.paint(rows, np.full(len(rows), 2))
    with pytest.raises(InvalidInputError, match="both paint values"):
        s.paint(np.concatenate([rows[:1], rows[:1]]), np.array([0, 1]))
