"""The paired bootstrap interval of `midseg.evaluation.summary` (scipy.stats.bootstrap)."""

from __future__ import annotations

import numpy as np
import pytest

from midseg.evaluation.summary import _bootstrap_interval


def _by_hand(diff: np.ndarray, resamples: int, seed: int) -> tuple[float, float]:
    """The percentile bootstrap the report used before scipy's (same draws, same quantiles)."""
    rng = np.random.default_rng(seed)
    boot = diff[rng.integers(0, diff.size, (resamples, diff.size))].mean(axis=1)
    low, high = np.percentile(boot, [2.5, 97.5])
    return float(low), float(high)


def test_interval_excludes_zero_when_every_case_is_better():
    diff = np.array([1.0, 2.0, 3.0, 1.5, 2.5, 0.5, 4.0, 2.0, 1.0, 3.0])
    low, high = _bootstrap_interval(diff, 2000, 0)
    assert 0 < low < diff.mean() < high <= diff.max()


def test_interval_includes_zero_for_differences_around_it():
    diff = np.array([3.0, -2.0, 1.0, -1.0, 0.5, -0.5, 2.0, -3.0, 0.0, -0.5])
    low, high = _bootstrap_interval(diff, 2000, 0)
    assert low < 0 < high


def test_interval_matches_the_former_hand_written_bootstrap():
    diff = np.random.default_rng(3).normal(1.0, 4.0, 40)
    for seed in (0, 1):
        assert _bootstrap_interval(diff, 2000, seed) == pytest.approx(
            _by_hand(diff, 2000, seed), abs=1e-9
        )


def test_interval_is_deterministic_and_handles_degenerate_samples():
    diff = np.array([0.4, -1.2, 2.2, 0.0])
    assert _bootstrap_interval(diff, 2000, 0) == _bootstrap_interval(diff, 2000, 0)
    assert _bootstrap_interval(np.array([2.5]), 2000, 0) == (2.5, 2.5)  # one case
    assert _bootstrap_interval(np.zeros(12), 2000, 0) == (0.0, 0.0)  # all ties
