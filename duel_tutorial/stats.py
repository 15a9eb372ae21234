"""Scores over runs: the interquartile mean (IQM), percentile bootstrap intervals, and the
probability of improvement of one algorithm over another across tasks.

A deep RL result is a handful of runs, one per seed, and runs differ a lot. Agarwal et al.
(2021, "Deep reinforcement learning at the edge of the statistical precipice") recommend
reporting an aggregate that is robust to a few outlying runs, the interquartile mean, with
a confidence interval that says how much it could move with other seeds, from a bootstrap
over runs (their library is rliable). Both take ``scores: (runs,)`` (one number per run)
or ``(runs, points)`` (e.g. a learning curve per run) and aggregate over axis 0::

    from duel_tutorial.stats import bootstrap_ci, iqm

    iqm([500, 500, 480, 12, 500, 497])              # 494.25: the 12 is cut off
    estimate, low, high = bootstrap_ci(final_returns)   # IQM and its 95% interval
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, NamedTuple

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats as _scipy_stats

Statistic = Literal["iqm", "mean", "median"]
STATISTICS: tuple[str, ...] = ("iqm", "mean", "median")
IQM_CUT = 0.25  # fraction of runs cut from each end


class Interval(NamedTuple):
    """A point estimate and its confidence interval; floats, or ``(points,)`` arrays."""

    estimate: float | np.ndarray
    low: float | np.ndarray
    high: float | np.ndarray


def _iqm(x: np.ndarray, axis: int = 0) -> np.ndarray:
    # sort the n runs, drop k = floor(n/4) from each end, average the rest
    return _scipy_stats.trim_mean(x, IQM_CUT, axis=axis)


_FUNCTIONS: dict[str, Callable[..., np.ndarray]] = {
    "iqm": _iqm, "mean": np.mean, "median": np.median}


def _check_scores(scores: ArrayLike, min_runs: int) -> np.ndarray:
    """``scores`` as a float array of shape (runs,) or (runs, points), finite."""
    x = np.asarray(scores, dtype=float)
    if x.ndim not in (1, 2):
        raise ValueError(f"scores must have shape (runs,) or (runs, points); got shape {x.shape}")
    if x.shape[0] < min_runs:
        raise ValueError(f"scores need at least {min_runs} run(s) along axis 0; "
                         f"got {x.shape[0]}")
    if not np.isfinite(x).all():
        raise ValueError(f"scores must be finite; got {int((~np.isfinite(x)).sum())} NaN or "
                         "infinite value(s)")
    return x


def _as_output(x: np.ndarray) -> float | np.ndarray:
    return float(x) if np.ndim(x) == 0 else np.asarray(x)


def iqm(scores: ArrayLike) -> float | np.ndarray:
    """Interquartile mean over runs (axis 0): the mean of the runs left after cutting
    ``k = floor(n / 4)`` of the ``n`` runs from each end of the sorted scores.

    IQM = 1/(n - 2k) * sum_{i=k+1}^{n-k} x_(i), with x_(1) <= ... <= x_(n) the sorted
    scores. For n = 10 it is the mean of the middle 6. ``scores: (runs,)`` gives a
    float, ``(runs, points)`` a ``(points,)`` array (one IQM per point).
    """
    return _as_output(_iqm(_check_scores(scores, min_runs=1)))


def bootstrap_ci(
    scores: ArrayLike,
    statistic: Statistic = "iqm",
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> Interval:
    """The statistic over runs (axis 0) and its percentile bootstrap confidence interval.

    Draw ``n_resamples`` sets of ``n`` runs with replacement from the ``n`` runs, compute
    the statistic on each, and take the ``(1 - confidence) / 2`` and ``(1 + confidence) /
    2`` quantiles of those values as the interval (``scipy.stats.bootstrap``,
    ``method="percentile"``, seeded with ``seed``). ``scores: (runs,)`` gives floats,
    ``(runs, points)`` ``(points,)`` arrays, each point resampled with the same runs.
    """
    if statistic not in STATISTICS:
        raise ValueError(f"statistic must be one of {STATISTICS}; got {statistic!r}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1); got {confidence!r}")
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, int) or n_resamples < 1:
        raise ValueError(f"n_resamples must be an int >= 1; got {n_resamples!r}")
    x = _check_scores(scores, min_runs=2)
    function = _FUNCTIONS[statistic]
    result = _scipy_stats.bootstrap(
        (x,), function, n_resamples=n_resamples, axis=0, confidence_level=confidence,
        method="percentile", vectorized=True, rng=np.random.default_rng(seed))
    low, high = result.confidence_interval
    return Interval(_as_output(function(x, axis=0)), _as_output(low), _as_output(high))


# --- comparing two algorithms over several tasks (Agarwal et al., 2021) ---------------------


def probability_of_improvement(x: ArrayLike, y: ArrayLike) -> float:
    """``P(X > Y) + P(X = Y) / 2`` for a run ``X`` drawn from ``x`` and a run ``Y`` from
    ``y`` (one score per run): how often one algorithm's run beats the other's on this
    task. It is the Mann-Whitney U statistic divided by ``len(x) * len(y)``; 0.5 means
    neither is ahead."""
    x, y = _check_scores(x, min_runs=1), _check_scores(y, min_runs=1)
    if x.ndim != 1 or y.ndim != 1:
        raise ValueError(f"x and y must be one score per run, (runs,); got shapes "
                         f"{x.shape} and {y.shape}")
    diff = x[:, None] - y[None, :]
    return float((diff > 0).mean() + 0.5 * (diff == 0).mean())


def stratified_bootstrap_ci(
    tasks: list[tuple[ArrayLike, ...]],
    statistic: Callable[[list[tuple[np.ndarray, ...]]], float],
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> Interval:
    """An aggregate over tasks and its percentile interval from a stratified bootstrap.

    ``tasks`` holds, for each task (game), one array of per-run scores for each
    algorithm; ``statistic(tasks)`` aggregates them into one number (e.g. the mean over
    tasks of :func:`probability_of_improvement`). Each resample redraws, with
    replacement, the runs of every algorithm within every task, so each task keeps its
    number of runs (rliable's "stratified" bootstrap); the interval is the
    ``(1 -+ confidence) / 2`` quantiles of the resampled statistic.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1); got {confidence!r}")
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, int) or n_resamples < 1:
        raise ValueError(f"n_resamples must be an int >= 1; got {n_resamples!r}")
    if not tasks:
        raise ValueError("tasks must hold at least one task; got none")
    data = [tuple(_check_scores(runs, min_runs=2) for runs in task) for task in tasks]
    rng = np.random.default_rng(seed)
    values = np.empty(n_resamples)
    for i in range(n_resamples):
        values[i] = statistic([tuple(runs[rng.integers(0, len(runs), len(runs))]
                                     for runs in task) for task in data])
    low, high = np.quantile(values, [(1 - confidence) / 2, (1 + confidence) / 2])
    return Interval(float(statistic(data)), float(low), float(high))
