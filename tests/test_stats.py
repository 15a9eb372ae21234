from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import mannwhitneyu

from duel_tutorial.stats import (
    bootstrap_ci,
    iqm,
    probability_of_improvement,
    stratified_bootstrap_ci,
)


def test_iqm_of_one_to_eight_is_the_mean_of_three_to_six():
    assert iqm(np.arange(1, 9)) == pytest.approx(4.5)  # n = 8: cut 2 from each end


def test_iqm_of_ten_runs_averages_the_middle_six():
    scores = [0, 1, 10, 11, 12, 13, 14, 15, 99, 1000]
    assert iqm(scores) == pytest.approx(np.mean([10, 11, 12, 13, 14, 15]))


def test_iqm_ignores_one_collapsed_run_that_drags_the_mean():
    scores = [500, 500, 480, 12, 500, 497]
    assert iqm(scores) == pytest.approx(494.25)
    assert np.mean(scores) < 420


def test_iqm_of_curves_is_taken_per_point_over_runs():
    curves = np.array([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0], [100.0, 1000.0]])
    np.testing.assert_allclose(iqm(curves), [2.5, 25.0])  # n = 4: cut 1 from each end


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=40))
def test_iqm_lies_between_the_smallest_and_largest_run(scores):
    value = iqm(scores)
    assert min(scores) - 1e-6 <= value <= max(scores) + 1e-6


def test_interval_contains_its_estimate():
    scores = np.random.default_rng(0).normal(400, 50, size=10)
    estimate, low, high = bootstrap_ci(scores)
    assert low < estimate < high
    assert estimate == pytest.approx(iqm(scores))


def test_interval_shrinks_with_more_runs():
    rng = np.random.default_rng(1)
    few, many = rng.normal(0, 1, size=10), rng.normal(0, 1, size=1000)
    _, low_few, high_few = bootstrap_ci(few)
    _, low_many, high_many = bootstrap_ci(many)
    assert high_many - low_many < 0.3 * (high_few - low_few)


def test_interval_widens_with_the_confidence_level():
    scores = np.random.default_rng(2).normal(size=12)
    _, low_90, high_90 = bootstrap_ci(scores, confidence=0.9)
    _, low_99, high_99 = bootstrap_ci(scores, confidence=0.99)
    assert low_99 <= low_90 < high_90 <= high_99


def test_interval_is_reproducible_with_its_seed():
    scores = np.random.default_rng(3).normal(size=10)
    assert bootstrap_ci(scores, seed=5) == bootstrap_ci(scores, seed=5)
    assert bootstrap_ci(scores, seed=5) != bootstrap_ci(scores, seed=6)


def test_interval_of_identical_runs_is_a_point():
    assert tuple(bootstrap_ci([500.0] * 10)) == (500.0, 500.0, 500.0)


def test_interval_of_the_mean_matches_a_hand_written_percentile_bootstrap():
    scores = np.random.default_rng(4).exponential(size=15)
    estimate, low, high = bootstrap_ci(scores, statistic="mean", n_resamples=4000)
    resampled = scores[np.random.default_rng(9).integers(0, 15, size=(4000, 15))].mean(axis=1)
    hand_low, hand_high = np.percentile(resampled, [2.5, 97.5])
    assert estimate == pytest.approx(scores.mean())
    assert low == pytest.approx(hand_low, abs=0.05) and high == pytest.approx(hand_high, abs=0.05)


def test_curve_intervals_are_one_per_point():
    curves = np.random.default_rng(5).normal(size=(10, 7)) + np.arange(7)
    estimate, low, high = bootstrap_ci(curves)
    assert estimate.shape == low.shape == high.shape == (7,)
    assert (low <= estimate).all() and (estimate <= high).all()


@pytest.mark.parametrize(
    ("scores", "kwargs", "message"),
    [
        ([1.0], {}, "at least 2 run"),
        (np.zeros((2, 2, 2)), {}, r"shape \(runs,\) or \(runs, points\); got shape \(2, 2, 2\)"),
        ([1.0, np.nan, 3.0], {}, "finite; got 1 NaN"),
        ([1.0, 2.0], {"confidence": 95}, r"confidence must be in \(0, 1\); got 95"),
        ([1.0, 2.0], {"statistic": "max"}, "statistic must be one of"),
        ([1.0, 2.0], {"n_resamples": 0}, "n_resamples must be an int >= 1; got 0"),
    ],
)
def test_bad_input_names_what_was_expected(scores, kwargs, message):
    with pytest.raises(ValueError, match=message):
        bootstrap_ci(scores, **kwargs)


def test_iqm_of_no_runs_is_an_error():
    with pytest.raises(ValueError, match="at least 1 run"):
        iqm([])


def test_probability_of_improvement_counts_wins_and_half_ties():
    assert probability_of_improvement([3, 4], [1, 2]) == 1.0
    assert probability_of_improvement([1, 2], [3, 4]) == 0.0
    assert probability_of_improvement([1, 3], [2, 2]) == 0.5  # one win, one loss per pair
    assert probability_of_improvement([2, 2], [2, 2]) == 0.5  # all ties
    assert probability_of_improvement([2, 5, 7], [1, 5]) == pytest.approx(4.5 / 6)


def test_probability_of_improvement_is_mann_whitney_u_over_nm():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=7).round(1), rng.normal(size=5).round(1)
    u = mannwhitneyu(x, y).statistic
    assert probability_of_improvement(x, y) == pytest.approx(u / (7 * 5))


def test_stratified_bootstrap_resamples_runs_within_each_task():
    seen = []

    def record(tasks):
        seen.append([tuple(len(runs) for runs in task) for task in tasks])
        return float(np.mean([runs.mean() for task in tasks for runs in task]))

    tasks = [([1.0, 2.0, 3.0], [4.0, 5.0]), ([0.0, 0.0, 9.0, 9.0], [1.0, 1.0])]
    estimate, low, high = stratified_bootstrap_ci(tasks, record, n_resamples=200)
    assert all(sizes == [(3, 2), (4, 2)] for sizes in seen)  # run counts kept per task
    assert low <= estimate <= high and low < high


def test_stratified_bootstrap_of_a_clear_winner_excludes_one_half():
    rng = np.random.default_rng(0)
    tasks = [(rng.normal(1.0, 0.1, 5), rng.normal(0.0, 0.1, 5)) for _ in range(5)]

    def poi(t):
        return float(np.mean([probability_of_improvement(x, y) for x, y in t]))

    estimate, low, _ = stratified_bootstrap_ci(tasks, poi)
    assert estimate == 1.0 and low > 0.5
    assert stratified_bootstrap_ci(tasks, poi, seed=3) == stratified_bootstrap_ci(
        tasks, poi, seed=3)


@pytest.mark.parametrize(("x", "y", "message"), [
    ([[1, 2]], [1], r"one score per run, \(runs,\); got shapes \(1, 2\) and \(1,\)"),
    ([], [1], "at least 1"),
])
def test_probability_of_improvement_rejects_bad_input(x, y, message):
    with pytest.raises(ValueError, match=message):
        probability_of_improvement(x, y)


def test_stratified_bootstrap_needs_tasks_with_two_runs_each():
    with pytest.raises(ValueError, match="at least one task"):
        stratified_bootstrap_ci([], lambda t: 0.0)
    with pytest.raises(ValueError, match="at least 2"):
        stratified_bootstrap_ci([([1.0], [2.0, 3.0])], lambda t: 0.0)
