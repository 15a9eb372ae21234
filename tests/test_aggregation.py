"""Tests for duel_tutorial.aggregation: V (B, 1) + A (B, n) -> Q (B, n).

Unit tests pin the shapes and the errors; hypothesis checks the algebra of eqs. 7-9 of
Wang et al. (2016) on float64 tensors made from bounded, finite numpy arrays.
"""

from __future__ import annotations

import hypothesis.strategies as st
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis.extra.numpy import arrays

from duel_tutorial.aggregation import AGGREGATIONS, aggregate

# ---------------------------------------------------------------- strategies

# 50 examples a property keeps the file at a few seconds on a 2-core CPU
PROPERTY = settings(max_examples=50, deadline=None)
BOUND = 1e3
_finite = st.floats(-BOUND, BOUND, allow_nan=False, allow_infinity=False, width=64)


@st.composite
def streams(draw, min_actions: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """A value (B, 1) and advantages (B, n) as float64 tensors, entries in [-1e3, 1e3]."""
    batch = draw(st.integers(1, 8))
    n_actions = draw(st.integers(min_actions, 8))
    value = draw(arrays(np.float64, (batch, 1), elements=_finite))
    advantage = draw(arrays(np.float64, (batch, n_actions), elements=_finite))
    return torch.from_numpy(value), torch.from_numpy(advantage)


@st.composite
def streams_with_unique_argmax(draw) -> tuple[torch.Tensor, torch.Tensor]:
    """Like :func:`streams`, but each row of A has one largest entry, at least 1 ahead."""
    value, advantage = draw(streams())
    batch, n_actions = advantage.shape
    best = draw(arrays(np.int64, (batch,), elements=st.integers(0, n_actions - 1)))
    bump = draw(arrays(np.float64, (batch,), elements=st.floats(1.0, 10.0)))
    rows = torch.arange(batch)
    advantage[rows, torch.from_numpy(best)] = advantage.max(dim=-1).values + torch.from_numpy(bump)
    return value, advantage


def _shift(draw, batch: int) -> torch.Tensor:
    return torch.from_numpy(draw(arrays(np.float64, (batch, 1), elements=_finite)))


# ---------------------------------------------------------------- shapes

@pytest.mark.parametrize("method", AGGREGATIONS)
def test_batched_streams_give_batch_by_actions_q(method):
    q = aggregate(torch.zeros(5, 1), torch.zeros(5, 6), method=method)
    assert q.shape == (5, 6)


@pytest.mark.parametrize("method", AGGREGATIONS)
def test_unbatched_streams_give_unbatched_q(method):
    q = aggregate(torch.tensor([2.0]), torch.tensor([1.0, 3.0, -1.0, 1.0]), method=method)
    assert q.shape == (4,)


def test_default_method_is_mean():
    value, advantage = torch.tensor([[2.0]]), torch.tensor([[1.0, 3.0, -1.0, 1.0]])
    assert torch.equal(aggregate(value, advantage), aggregate(value, advantage, method="mean"))


def test_worked_example_matches_equations_7_8_9():
    value, advantage = torch.tensor([5.0]), torch.tensor([1.0, 4.0, 0.0, -1.0])
    assert aggregate(value, advantage, "naive").tolist() == [6.0, 9.0, 5.0, 4.0]
    assert aggregate(value, advantage, "max").tolist() == [2.0, 5.0, 1.0, 0.0]
    assert aggregate(value, advantage, "mean").tolist() == [5.0, 8.0, 4.0, 3.0]


def test_gradient_flows_to_both_streams():
    value = torch.zeros(3, 1, requires_grad=True)
    advantage = torch.randn(3, 4, generator=torch.Generator().manual_seed(0), requires_grad=True)
    aggregate(value, advantage)[:, 0].sum().backward()
    assert value.grad is not None and torch.equal(value.grad, torch.ones(3, 1))
    # d Q_0 / d A_b = [b == 0] - 1/4
    expected = torch.tensor([[0.75, -0.25, -0.25, -0.25]]).expand(3, 4)
    assert advantage.grad is not None and torch.allclose(advantage.grad, expected)


# ---------------------------------------------------------------- errors

def test_flat_value_is_rejected_with_expected_and_got_shapes():
    # (B,) + (B, n) would broadcast along the wrong axis when B == n: rejected, never guessed
    with pytest.raises(ValueError, match=r"value must have shape \(4, 1\).*got \(4,\)"):
        aggregate(torch.zeros(4), torch.zeros(4, 4))


def test_value_with_wrong_batch_is_rejected():
    expected = r"shape \(3, 1\) to match advantage \(3, 4\); got \(2, 1\)"
    with pytest.raises(ValueError, match=expected):
        aggregate(torch.zeros(2, 1), torch.zeros(3, 4))


def test_value_with_one_value_per_action_is_rejected():
    with pytest.raises(ValueError, match=r"got \(3, 4\)"):
        aggregate(torch.zeros(3, 4), torch.zeros(3, 4))


def test_scalar_advantage_is_rejected():
    expected = r"advantage must have shape \(B, n_actions\); got a scalar"
    with pytest.raises(ValueError, match=expected):
        aggregate(torch.zeros(1), torch.tensor(1.0))


@pytest.mark.parametrize("method", ["avg", "MEAN", "", "softmax"])
def test_unknown_method_is_rejected_naming_the_choices(method):
    with pytest.raises(ValueError) as error:
        aggregate(torch.zeros(2, 1), torch.zeros(2, 4), method=method)  # type: ignore[arg-type]
    message = str(error.value)
    assert "('mean', 'max', 'naive')" in message and f"got {method!r}" in message
    assert "\n" not in message


# ---------------------------------------------------------------- properties (eqs. 7-9)

@PROPERTY
@given(streams(), st.data())
def test_naive_sum_is_shift_invariant(streams_, data):
    """Eq. 7 is unidentifiable: (V + c, A - c) gives the same Q, for any c per state."""
    value, advantage = streams_
    c = _shift(data.draw, value.shape[0])
    torch.testing.assert_close(
        aggregate(value + c, advantage - c, "naive"), aggregate(value, advantage, "naive"),
        rtol=1e-12, atol=1e-9,
    )


@PROPERTY
@given(streams(), st.data())
@pytest.mark.parametrize("method", ["mean", "max"])
def test_centred_methods_ignore_a_constant_added_to_advantages(method, streams_, data):
    """Eqs. 8 and 9 subtract a statistic of A that moves with A: A + c gives the same Q."""
    value, advantage = streams_
    c = _shift(data.draw, value.shape[0])
    torch.testing.assert_close(
        aggregate(value, advantage + c, method), aggregate(value, advantage, method),
        rtol=1e-12, atol=1e-9,
    )


@PROPERTY
@given(streams(), st.data())
@pytest.mark.parametrize("method", ["mean", "max"])
def test_centred_methods_pass_a_value_shift_through_to_q(method, streams_, data):
    """Under eqs. 8 and 9, V is pinned: (V + c, A - c) shifts Q by c instead of cancelling."""
    value, advantage = streams_
    c = _shift(data.draw, value.shape[0])
    torch.testing.assert_close(
        aggregate(value + c, advantage - c, method), aggregate(value, advantage, method) + c,
        rtol=1e-12, atol=1e-9,
    )


@PROPERTY
@given(streams_with_unique_argmax())
@pytest.mark.parametrize("method", AGGREGATIONS)
def test_mean_centering_keeps_argmax(method, streams_):
    """Every aggregation adds one constant per state, so argmax_a Q = argmax_a A."""
    value, advantage = streams_
    q = aggregate(value, advantage, method)
    assert torch.equal(q.argmax(dim=-1), advantage.argmax(dim=-1))


@PROPERTY
@given(streams())
def test_centred_advantages_average_to_zero_per_state(streams_):
    value, advantage = streams_
    centred = aggregate(value, advantage, "mean") - value  # A - mean_a' A
    torch.testing.assert_close(
        centred.mean(dim=-1), torch.zeros(value.shape[0], dtype=torch.float64),
        rtol=0, atol=1e-9,
    )


@PROPERTY
@given(streams())
def test_value_is_mean_of_q_under_mean(streams_):
    value, advantage = streams_
    q = aggregate(value, advantage, "mean")
    torch.testing.assert_close(q.mean(dim=-1, keepdim=True), value, rtol=1e-12, atol=1e-9)


@PROPERTY
@given(streams())
def test_value_is_max_of_q_under_max(streams_):
    value, advantage = streams_
    q = aggregate(value, advantage, "max")
    # the greedy action's term is A - max A = 0 exactly, so this holds to the last bit
    assert torch.equal(q.max(dim=-1, keepdim=True).values, value)


@PROPERTY
@given(streams(min_actions=2))
def test_mean_value_never_exceeds_max_value(streams_):
    """The same Q read through eq. 9 gives V = mean_a Q <= max_a Q, the V of eq. 8."""
    value, advantage = streams_
    q = aggregate(value, advantage, "naive")
    assert bool((q.mean(dim=-1) <= q.max(dim=-1).values + 1e-9).all())


@PROPERTY
@given(streams())
def test_aggregate_matches_the_equations_written_out(streams_):
    value, advantage = streams_
    torch.testing.assert_close(aggregate(value, advantage, "naive"), value + advantage)
    torch.testing.assert_close(
        aggregate(value, advantage, "max"),
        value + advantage - advantage.max(dim=-1, keepdim=True).values,
    )
    torch.testing.assert_close(
        aggregate(value, advantage, "mean"),
        value + advantage - advantage.mean(dim=-1, keepdim=True),
    )
