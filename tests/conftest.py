"""Shared fixtures: tiny synthetic images, the shared-data location, headless Qt."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MIDSEG_DATA") or REPO.parent / "shared" / "data")


def pytest_collection_modifyitems(config, items):
    if SHARED_DATA.is_dir():
        return
    skip = pytest.mark.skip(reason=f"real data not found at {SHARED_DATA}")
    for item in items:
        if "data" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA}")
    return SHARED_DATA


def disc(shape=(40, 50), center=None, radius=10.0) -> np.ndarray:
    """A filled disc (2D) or ball (3D) as a uint8 mask."""
    center = np.asarray(center if center is not None else [s / 2 for s in shape], float)
    grids = np.indices(shape, dtype=float)
    r2 = sum((g - c) ** 2 for g, c in zip(grids, center))
    return (r2 <= radius**2).astype(np.uint8)


@pytest.fixture
def disc_mask():
    return disc
