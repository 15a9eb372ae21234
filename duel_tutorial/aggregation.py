"""Combine a state value V(s) and advantages A(s, a) into Q(s, a).

The three aggregating modules of Wang et al. (2016), section 3:

- ``"naive"`` (eq. 7): ``Q = V + A``. Unidentifiable: ``(V + c, A - c)`` gives the same Q.
- ``"max"`` (eq. 8): ``Q = V + (A - max_a' A)``. The greedy action gets advantage 0, so
  ``V = max_a Q``.
- ``"mean"`` (eq. 9): ``Q = V + (A - mean_a' A)``. Advantages average to 0 in every state,
  so ``V = mean_a Q``. The paper's choice: the advantages only need to change as fast as
  their mean, which makes optimisation more stable.

All three add one constant per state to A, so each keeps ``argmax_a Q = argmax_a A``.
"""

from __future__ import annotations

from typing import Literal

import torch

Aggregation = Literal["mean", "max", "naive"]
AGGREGATIONS: tuple[Aggregation, ...] = ("mean", "max", "naive")


def check_aggregation(method: str) -> Aggregation:
    """Return ``method`` if it names an aggregation, else raise a one-line ValueError."""
    if method not in AGGREGATIONS:
        raise ValueError(f"aggregation must be one of {AGGREGATIONS}; got {method!r}")
    return method  # type: ignore[return-value]


def aggregate(
    value: torch.Tensor, advantage: torch.Tensor, method: Aggregation = "mean"
) -> torch.Tensor:
    """Q-values from a value stream and an advantage stream.

    Args:
        value: ``(B, 1)`` state values V(s), or ``(1,)`` for a single state.
        advantage: ``(B, n_actions)`` advantages A(s, a), or ``(n_actions,)``.
        method: ``"mean"`` (paper eq. 9, default), ``"max"`` (eq. 8) or ``"naive"`` (eq. 7).

    Returns:
        q: ``(B, n_actions)`` (or ``(n_actions,)``), ``V`` broadcast over actions.

    The value must keep its trailing axis of size 1: a ``(B,)`` value would broadcast
    against ``(B, n_actions)`` along the wrong axis, so it is rejected rather than guessed.
    """
    method = check_aggregation(method)
    if advantage.dim() < 1:
        raise ValueError(f"advantage must have shape (B, n_actions); got a scalar {advantage!r}")
    expected = (*advantage.shape[:-1], 1)
    if tuple(value.shape) != expected:
        raise ValueError(
            f"value must have shape {expected} to match advantage {tuple(advantage.shape)}; "
            f"got {tuple(value.shape)}"
        )
    if method == "naive":
        # Q = V + A
        return value + advantage
    if method == "max":
        # Q = V + (A - max_a' A)
        return value + (advantage - advantage.max(dim=-1, keepdim=True).values)
    # Q = V + (A - 1/|A| sum_a' A)
    return value + (advantage - advantage.mean(dim=-1, keepdim=True))
