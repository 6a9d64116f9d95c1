"""runtime.stats against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from lsnet_deploy.runtime.stats import bootstrap_median_ci, summarize

ONE_TO_TEN = np.arange(1.0, 11.0)


def test_summary_of_one_to_ten():
    s = summarize(ONE_TO_TEN)
    # linear interpolation: p90 sits at rank 0.9 * 9 = 8.1 -> 9 + 0.1 * (10 - 9)
    assert (s.mean, s.median, s.min, s.max, s.n) == (5.5, 5.5, 1.0, 10.0, 10)
    assert (s.p90, s.p95, s.p99) == pytest.approx((9.1, 9.55, 9.91))
    assert s.std == pytest.approx((82.5 / 9) ** 0.5)  # sum of squared deviations 82.5, ddof=1
    assert s.cv == pytest.approx(3.0276504 / 5.5)
    assert s.noisy
    assert list(s.latency_ms()) == ["mean", "median", "p90", "p95", "p99", "min", "max", "std"]


def test_quiet_run_is_not_noisy():
    s = summarize(np.array([10.0, 10.2, 9.8, 10.1, 9.9]))
    assert s.std == pytest.approx(0.1581139) and s.cv == pytest.approx(0.01581139)
    assert not s.noisy


def test_single_and_constant_samples():
    one = summarize(np.array([4.0]))
    assert (one.std, one.ci_low, one.ci_high, one.p99) == (0.0, 4.0, 4.0, 4.0)
    assert bootstrap_median_ci(np.full(20, 3.0)) == (3.0, 3.0)
    with pytest.raises(ValueError):
        summarize(np.array([]))


def test_bootstrap_ci_is_reproducible_and_brackets_the_median():
    x = np.random.default_rng(1).exponential(size=51)
    lo, hi = bootstrap_median_ci(x, seed=0)
    assert lo < np.median(x) < hi
    assert (lo, hi) == bootstrap_median_ci(x, seed=0)
    assert bootstrap_median_ci(x, level=0.5)[1] - bootstrap_median_ci(x, level=0.5)[0] < hi - lo


def test_bootstrap_ci_width_matches_theory_for_a_normal_sample():
    # the median of n normal samples has sd ~ 1.2533 * sigma / sqrt(n): 95% CI width ~ 2 * 1.96 * that
    x = np.random.default_rng(2).normal(100.0, 2.0, size=400)
    lo, hi = bootstrap_median_ci(x)
    assert hi - lo == pytest.approx(2 * 1.96 * 1.2533 * 2.0 / 20, rel=0.3)
    assert lo < 100.0 < hi
